#!/usr/bin/env bash
# Checks that the event core's send and receive paths do no per-packet heap allocation:
# runs the loopback multicast micro-benchmark under valgrind for a short and a 4x longer
# interval and compares the heap allocation totals. With per-packet allocation the longer
# run would allocate hundreds of thousands more times; without it the totals match.
# Also fails on any memcheck error. Needs root (private network namespace) and valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "allocation-check: valgrind is not installed (apt-get install valgrind)"; exit 2; }
swift build -c release --product qsm-bench >/dev/null
binary=$(swift build -c release --show-bin-path)/qsm-bench

measure() {
    local seconds=$1 output
    output=$(valgrind --tool=memcheck --leak-check=no "$binary" --only multicast --rounds 1 --seconds "$seconds" 2>&1)
    local errors allocations packets
    errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' <<<"$output" | grep -oE '[0-9]+$')
    allocations=$(grep -oE 'total heap usage: [0-9,]+ allocs' <<<"$output" | grep -oE '[0-9,]+' | tr -d ,)
    packets=$(grep -E '^through the event core' <<<"$output" | awk '{print $5}' | tr -d ,)
    echo "$seconds s: $allocations heap allocations in the whole process, core path ~$packets packets/s under valgrind, $errors memcheck errors" >&2
    [ "$errors" = 0 ] || { echo "allocation-check: memcheck reported errors" >&2; exit 1; }
    echo "$allocations"
}

short=$(measure 0.5)
long=$(measure 2)
growth=$((long - short))
echo "allocations: $short (0.5 s) vs $long (2 s): growth $growth"
# A few allocations may differ with timing (progress lines); per-packet allocation would
# add at least tens of thousands.
if [ "$growth" -gt 100 ] || [ "$growth" -lt -100 ]; then
    echo "allocation-check: FAILED: allocations grow with the number of packets"
    exit 1
fi
echo "allocation-check: passed: no per-packet heap allocation"
