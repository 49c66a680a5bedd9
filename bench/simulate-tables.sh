#!/usr/bin/env bash
# The simulation figures of issue 4's closing note: token RTT and time to acknowledge
# versus region size, and memory versus the number of perfectly overlapping groups
# (per-region indexing: it should not grow with groups). One sender at 1000 msg/s.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product qsm-bench >/dev/null
bench=$(swift build -c release --show-bin-path)/qsm-bench
seconds=${SECONDS_PER_RUN:-10}
echo "# token RTT and ack latency vs nodes (1 group, 1 sender, 1000 msg/s, ${seconds} s, 0.1% loss)"
for nodes in 10 50 200 500; do
  "$bench" simulate --nodes "$nodes" --seconds "$seconds" --loss 0.001 --json 2>/dev/null
done
echo "# memory vs groups (100 nodes, all in every group, 1 sender, 1000 msg/s, ${seconds} s)"
for groups in 1 1024 8192; do
  "$bench" simulate --nodes 100 --groups "$groups" --seconds "$seconds" --json 2>/dev/null
done
echo "# the issue's scale run: 500 nodes x 8192 groups x 60 s"
/usr/bin/time -f "wall %e s, peak RSS %M KB" "$bench" simulate --nodes 500 --groups 8192 --seconds 60 --json 2>&1 | grep -v "^qsm-bench"
