#!/usr/bin/env bash
# Heap allocations per message on the real engine path, counted from outside the
# processes: `qsm-node publish` and `qsm-node subscribe` (authenticated, the default)
# run with an LD_PRELOAD allocation counter (the same C file as qsm-bench's counter,
# built as a shared object), once with a short and once with a long input; the
# difference in their allocation totals over the difference in messages is what each
# message costs, start-up and shutdown cancelling out.
#
#   bench/allocation-check.sh                  # 20,000 vs 120,000 messages of 1000 bytes
#   MESSAGES="20000 220000" SIZE=100 bench/allocation-check.sh
#
# Exits 1 if either side allocates more than LIMIT (default 0.05) per message. Needs
# root (a private network namespace), gcc and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${QSM_ALLOCATION_CHECK_NAMESPACE:-}" != 1 ]; then
    exec env QSM_ALLOCATION_CHECK_NAMESPACE=1 unshare -n bash "$0" "$@"
fi
ip link set lo up
read -r short long <<<"${MESSAGES:-20000 120000}"
size=${SIZE:-1000}
limit=${LIMIT:-0.05}
swift build -c release --product qsm-node >/dev/null
node="$(swift build -c release --show-bin-path)/qsm-node"
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
gcc -O2 -shared -fPIC -DCQSM_ALLOCATION_PRELOAD -I Sources/CQSMAllocationCounter/include \
    Sources/CQSMAllocationCounter/allocation_counter.c -o "$work/count.so"
"$node" secret new "$work/secret" >/dev/null
"$node" gms --listen 127.0.0.1:0 --secret-file "$work/secret" >"$work/gms.out" 2>"$work/gms.err" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/gms.out" 2>/dev/null && break; sleep 0.1; done
gms=$(grep -oE '[0-9.]+:[0-9]+' "$work/gms.out" | head -1)
[ -n "$gms" ] || { echo "allocation-check: the GMS did not start"; cat "$work/gms.err"; exit 2; }

# One run of COUNT messages: prints "publisher-allocations subscriber-allocations".
measure() {
    local count=$1 group="alloc$1"
    python3 -c "import sys; line = b'x' * ($size - 1) + b'\n'; sys.stdout.buffer.write(line * $count)" >"$work/input"
    env LD_PRELOAD="$work/count.so" QSM_ALLOCATION_COUNT_FILE="$work/sub.$count" \
        "$node" subscribe --gms "$gms" --group "$group" --count "$count" --secret-file "$work/secret" \
        >/dev/null 2>"$work/sub.$count.err" &
    local subscriber=$!
    env LD_PRELOAD="$work/count.so" QSM_ALLOCATION_COUNT_FILE="$work/pub.$count" \
        "$node" publish --gms "$gms" --group "$group" --wait-members 1 --secret-file "$work/secret" \
        <"$work/input" 2>"$work/pub.$count.err" || { echo "allocation-check: publish failed"; cat "$work/pub.$count.err"; exit 2; }
    wait "$subscriber" || { echo "allocation-check: subscribe failed"; cat "$work/sub.$count.err"; exit 2; }
    echo "$(awk '{print $2}' "$work/pub.$count") $(awk '{print $2}' "$work/sub.$count")"
}

read -r publisherShort subscriberShort <<<"$(measure "$short")"
read -r publisherLong subscriberLong <<<"$(measure "$long")"
python3 - "$short" "$long" "$publisherShort" "$publisherLong" "$subscriberShort" "$subscriberLong" "$size" "$limit" <<'PY'
import sys
short, long, ps, pl, ss, sl, size, limit = sys.argv[1:]
short, long = int(short), int(long)
per_publisher = (int(pl) - int(ps)) / (long - short)
per_subscriber = (int(sl) - int(ss)) / (long - short)
print(f"{short} vs {long} messages of {size} bytes, authenticated:")
print(f"  qsm-node publish:   {ps} vs {pl} allocations: {per_publisher:.4f} per message")
print(f"  qsm-node subscribe: {ss} vs {sl} allocations: {per_subscriber:.4f} per message")
if max(per_publisher, per_subscriber) > float(limit):
    print(f"allocation-check: FAILED: over {limit} allocations per message")
    sys.exit(1)
print(f"allocation-check: passed: at most {limit} allocations per message on both sides")
PY
