/**
 * The test projects. Vitest 4 removed workspace files, so `vitest.config.ts` imports this list as its `projects`;
 * the file keeps the name the project's layout asks for.
 *
 * - `unit`: pure code and the in-memory broker; no servers.
 * - `integration`: `*.integration.test.ts`, against the real Kafka, Redis and Postgres that `npm test` starts.
 *   They share one broker, so files run one at a time.
 */
import type { TestProjectInlineConfiguration } from "vitest/config"

export const projects: Array<TestProjectInlineConfiguration> = [
  {
    test: {
      name: "unit",
      include: ["packages/*/test/**/*.test.ts"],
      exclude: ["**/*.integration.test.ts", "**/node_modules/**"],
      testTimeout: 20_000
    }
  },
  {
    test: {
      name: "integration",
      include: ["packages/*/test/**/*.integration.test.ts"],
      fileParallelism: false,
      testTimeout: 180_000,
      hookTimeout: 120_000
    }
  }
]
