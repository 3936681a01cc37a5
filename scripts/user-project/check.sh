#!/usr/bin/env bash
# The published packages, used as a new user would (issue #12's CI check): build and `npm pack` every package, make
# a fresh project outside the repository that depends on the tarballs, write a topology in its own .ts file with
# public imports only, typecheck and build it with the user's own `tsc`, test it on the in-memory broker with
# @effect/vitest, and run it with the packed `sluice` CLI against the real broker (SLUICE_BROKERS, default
# 127.0.0.1:9092; `bash scripts/services.sh start` starts one).
#
#   bash scripts/user-project/check.sh [DIR]     # DIR: where to make the project (default: a fresh temp dir)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
here="$repo/scripts/user-project"
work="${1:-$(mktemp -d -t sluice-user-XXXXXX)}"
brokers="${SLUICE_BROKERS:-127.0.0.1:9092}"
# The user's Node 24: the one the repository brings (machines ship Node 20).
export PATH="$repo/node_modules/node/bin:$PATH"
node --version | grep -q '^v24\.' || { echo "user-project: needs Node 24 (run npm ci in $repo)" >&2; exit 1; }

echo "== build and pack @sluice/core, @sluice/processors, @sluice/cli into $work/tarballs"
(cd "$repo" && npm run build --silent)
mkdir -p "$work/tarballs" "$work/app/src" "$work/app/test"
for p in core processors cli; do
  (cd "$repo/packages/$p" && npm pack --silent --pack-destination "$work/tarballs" >/dev/null)
done
ls "$work/tarballs"
# The tarballs ship dist/, README and LICENSE only: no TypeScript sources, no internal modules in `exports`.
if tar -tzf "$work/tarballs/sluice-core-0.1.0.tgz" | grep -q '^package/src/'; then
  echo "user-project: @sluice/core's tarball contains src/" >&2; exit 1
fi

echo "== a fresh project in $work/app"
version() { node -p "require('$repo/node_modules/$1/package.json').version"; }
cat > "$work/app/package.json" <<JSON
{
  "name": "order-totals",
  "private": true,
  "type": "module",
  "scripts": { "build": "tsc -p .", "test": "vitest run" },
  "dependencies": {
    "@sluice/core": "file:../tarballs/sluice-core-0.1.0.tgz",
    "@sluice/processors": "file:../tarballs/sluice-processors-0.1.0.tgz",
    "@sluice/cli": "file:../tarballs/sluice-cli-0.1.0.tgz",
    "effect": "$(version effect)",
    "@effect/platform-node": "$(version @effect/platform-node)",
    "kafkajs": "$(version kafkajs)"
  },
  "devDependencies": {
    "typescript": "$(version typescript)",
    "vitest": "$(version vitest)",
    "@effect/vitest": "$(version @effect/vitest)",
    "@types/node": "$(version @types/node)"
  }
}
JSON
cat > "$work/app/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "target": "ES2023",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "types": ["node"],
    "strict": true,
    "exactOptionalPropertyTypes": true,
    "skipLibCheck": false,
    "outDir": "dist",
    "rewriteRelativeImportExtensions": true,
    "allowImportingTsExtensions": true
  },
  "include": ["src/**/*.ts", "test/**/*.ts"]
}
JSON
cp "$here/app/src/topology.ts" "$here/app/src/produce.ts" "$work/app/src/"
cp "$here/app/test/topology.test.ts" "$work/app/test/"
cd "$work/app"
npm install --no-audit --no-fund --loglevel=error

echo "== typecheck and build with the user's tsc (an emitting build: no TS5097, no .ts inside node_modules)"
npx tsc -p .
ls dist/src

echo "== the user's test, on the in-memory broker"
npx vitest run test/ --reporter=dot

echo "== the packed CLI's demo of the user's topology, on the in-memory broker"
printf '%s\n' '{"sku":"a","qty":2}' '{"sku":"b","qty":1}' '{"sku":"a","qty":3}' '{"sku":"c","qty":"oops"}' >orders.jsonl
npx sluice demo ./src/topology.ts --input orders=orders.jsonl --key-field sku | tee "$work/demo.txt"
grep -q "value=a=5" "$work/demo.txt" || { echo "user-project: sluice demo did not print the total of a" >&2; exit 1; }
grep -q "^orders.dlq: 1 record" "$work/demo.txt" || { echo "user-project: sluice demo did not dead-letter the bad order" >&2; exit 1; }

echo "== the packed CLI against the real broker ($brokers)"
prefix="user-$RANDOM$RANDOM-"
node dist/src/produce.js "$prefix"
npx sluice run --help | grep -q "sluice run ./topology.ts" || { echo "user-project: sluice run --help does not describe modules" >&2; exit 1; }
# The binary itself, not `npx sluice`: `$!` must be the worker's pid, so that the kill below stops it.
./node_modules/.bin/sluice run ./src/topology.ts --brokers "$brokers" --topic-prefix "$prefix" --guarantee exactly_once \
  >"$work/run.log" 2>&1 &
worker=$!
found=0
for _ in $(seq 1 150); do
  if npx sluice inspect "${prefix}totals" --brokers "$brokers" --from-beginning --json --limit 3 2>/dev/null \
    | node -e 'let n=0;process.stdin.on("data",d=>n+=String(d).split("\n").filter(Boolean).length).on("end",()=>process.exit(n>=3?0:1))'; then
    found=1; break
  fi
  sleep 0.2
done
kill -TERM "$worker"; wait "$worker" || true
cat "$work/run.log" | tail -5
[ "$found" = 1 ] || { echo "user-project: no totals from the user's topology" >&2; exit 1; }
npx sluice inspect "${prefix}totals" --brokers "$brokers" --from-beginning --limit 3 | tee "$work/totals.txt"
grep -q "value=a=5" "$work/totals.txt" || { echo "user-project: the total of a is not 5" >&2; exit 1; }
npx sluice inspect "${prefix}orders.dlq" --brokers "$brokers" --from-beginning --limit 1 | grep -q oops \
  || { echo "user-project: the bad order is not in the dead-letter topic" >&2; exit 1; }
npx sluice topics delete "${prefix}orders" "${prefix}totals" "${prefix}orders.dlq" "${prefix}order-totals-totals-changelog" \
  --brokers "$brokers" >/dev/null
echo "== user project OK ($work/app)"
