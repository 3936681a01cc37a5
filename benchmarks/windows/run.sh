#!/bin/bash
# How the raw outputs here were recorded: `bash benchmarks/windows/run.sh NAME [bench windows flags...]` writes
# NAME.jsonl (results), NAME.stderr.txt (progress, warnings, the load average at start and end) and
# NAME.loadavg.txt (/proc/loadavg every 15 s while it runs), because the machine is shared and loaded.
cd "$(dirname "$0")/../.." || exit 1
name=$1
shift
out=benchmarks/windows
(while true; do echo "$(date -u +%T) $(cat /proc/loadavg)"; sleep 15; done) > "$out/$name.loadavg.txt" &
sampler=$!
echo "# $(date -u +%FT%TZ) npx sluice bench windows $* (load average $(cut -d' ' -f1-3 /proc/loadavg))" > "$out/$name.stderr.txt"
npx sluice bench windows "$@" > "$out/$name.jsonl" 2>> "$out/$name.stderr.txt"
rc=$?
echo "# exit $rc $(date -u +%FT%TZ) (load average $(cut -d' ' -f1-3 /proc/loadavg))" >> "$out/$name.stderr.txt"
kill "$sampler"
exit $rc
