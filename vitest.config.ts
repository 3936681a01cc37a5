import { defineConfig } from "vitest/config"
import { projects } from "./vitest.workspace.ts"

// Inside the monorepo, packages resolve to their TypeScript sources (the `@sluice/source` export condition), so tests
// need no build; users of the published packages get `dist/`.
const conditions = ["@sluice/source"]

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: { projects }
})
