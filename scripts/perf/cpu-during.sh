#!/usr/bin/env bash
# Runs a command and reports, on stderr, how busy the machine's CPUs were while it ran (/proc/stat: the share of
# time not idle or waiting, over all CPUs) and how much CPU the Kafka broker's process used (utime+stime from
# /proc/<pid>/stat), with the load averages before and after. For the issue #13 scale runs: what bounds N workers.
#
#   bash scripts/perf/cpu-during.sh node_modules/.bin/node packages/cli/bin/sluice.js bench join --workers 3 ...
set -euo pipefail
broker=$(pgrep -f 'kafka\.Kafka' | head -1 || true)
cpu() { awk '/^cpu / { idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i; print total, idle }' /proc/stat; }
ticks() { [ -n "$broker" ] && awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$broker/stat" || echo 0; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
read -r total0 idle0 < <(cpu)
broker0=$(ticks)
start=$(date +%s%N)
"$@"
status=$?
end=$(date +%s%N)
read -r total1 idle1 < <(cpu)
broker1=$(ticks)
wall_ms=$(( (end - start) / 1000000 ))
busy=$(awk -v t=$((total1 - total0)) -v i=$((idle1 - idle0)) 'BEGIN { printf "%.0f", 100 * (t - i) / t }')
# /proc/<pid>/stat counts in clock ticks (USER_HZ, 100 a second).
echo "cpu-during: ${wall_ms} ms wall, CPUs ${busy}% busy ($(nproc) CPUs), broker CPU $(( (broker1 - broker0) * 10 )) ms, load before ${load_before}, after $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exit $status
