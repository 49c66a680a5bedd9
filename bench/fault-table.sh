#!/usr/bin/env bash
# The fault scenarios on namespaced hosts (bench/README.md, "Fault scenarios on namespaced
# hosts"): one `qsm-bench run --hosts` per perturbation, 1 sender, 4 receivers, 1000-byte
# messages, as fast as flow control allows, authenticated (the default). Prints one
# Markdown table; the JSON and log of each run stay in OUT (default: a new directory
# under /tmp). About 7 minutes on a 2-core machine. Needs root, ip, nftables and python3.
#
#     bench/fault-table.sh [OUT]
#
# Every run but `hostile --insecure` must exit 0 (everything delivered, in order, once):
# without a cluster secret a hostile network can forge packets the nodes cannot tell
# from real ones, which is what that row shows (exit 3 is its expected result).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d /tmp/qsm-faults.XXXXXX)}
mkdir -p "$out"
swift build -c release --product qsm-bench >/dev/null
bench=$(swift build -c release --show-bin-path)/qsm-bench

run() { # LABEL FLAGS...
  local label=$1; shift
  local status=0
  unshare -n sh -c "ip link set lo up && \"$bench\" run --hosts --no-raw --json $* > \"$out/$label.json\" 2> \"$out/$label.err\"" || status=$?
  echo "$status" > "$out/$label.rc"
  echo "$label: exit $status" >&2
}

run loss1-one --perturb random-loss --loss-percent 1 --fault-at one
run loss1-all --perturb random-loss --loss-percent 1 --fault-at all
run loss5-one --perturb random-loss --loss-percent 5 --fault-at one
run loss5-all --perturb random-loss --loss-percent 5 --fault-at all
run none --perturb none
run bursts-all --perturb loss --fault-at all
run loss20-one --perturb random-loss --loss-percent 20 --fault-at one --seconds 32 --fault-seconds 30
run freeze --perturb freeze --seconds 20
run crash --perturb crash
run crash-region-leader --perturb crash-region-leader --partition-size 2
run crash-partition-leader --perturb crash-partition-leader --partition-size 2
run crash-sender --perturb crash-sender
run cut --perturb cut
run cut-excluded --perturb cut --heartbeat-timeout 2 --seconds 15
run gms-restart --perturb gms-restart
run churn --perturb churn --churn-events 20 --seconds 30
run hostile --perturb hostile
run hostile-insecure --perturb hostile --insecure
run slow --perturb slow

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = [
    ("loss1-one", "1% random loss, one receiver"),
    ("loss1-all", "1% random loss, every receiver"),
    ("loss5-one", "5% random loss, one receiver"),
    ("loss5-all", "5% random loss, every receiver"),
    ("none", "no fault"),
    ("bursts-all", "drop-all bursts (10 ms) every 1 s, every receiver"),
    ("loss20-one", "20% loss on one host for 30 s (32 s run)"),
    ("freeze", "receiver frozen 10 s (20 s run)"),
    ("crash", "receiver crash"),
    ("crash-region-leader", "region leader crash (`--partition-size 2`)"),
    ("crash-partition-leader", "partition leader crash (`--partition-size 2`)"),
    ("crash-sender", "sender crash (the live receivers must agree)"),
    ("cut", "host cut off 5 s (ridden out)"),
    ("cut-excluded", "host cut off 5 s, `--heartbeat-timeout 2` (excluded, rejoins; 15 s run)"),
    ("gms-restart", "GMS restart"),
    ("churn", "churn: 20 join/leave events (30 s run)"),
    ("hostile", "hostile (authenticated, the default)"),
    ("hostile-insecure", "hostile, `--insecure` (expected to fail)"),
    ("slow", "slow receiver (25 s run)"),
]
def n(x, digits=0):
    if x is None: return "-"
    if isinstance(x, float): return f"{x:,.{digits}f}"
    return f"{x:,}"
print("| perturbation | exit | sent | fewest delivered | lost | dup | corrupt | skipped by members that stay | recovery s | msg/s slowest | RSS MB sender / receiver | packets dropped | retx / dup packets | other |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key, label in rows:
    status = open(f"{out}/{key}.rc").read().strip()
    path = f"{out}/{key}.json"
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        print(f"| {label} | {status} | (no result: see {out}/{key}.err) |")
        continue
    d = json.load(open(path))
    other = []
    if d.get("evictions"):
        other.append(f"evicted {d['evictions']}, {d.get('eviction_after_slowdown_s')} s after the slowdown; the others "
                     f"{n(d.get('others_msgs_per_sec_before_slow'))} -> {n(d.get('others_msgs_per_sec_after_eviction'))} msg/s")
    if d.get("hostile_datagrams"):
        other.append(f"{n(d['hostile_datagrams'])} injected, {n(d.get('foreign_deliveries'))} foreign deliveries")
    if d.get("messages_carried"): other.append(f"{n(d['messages_carried'])} carried into new regions")
    if d.get("skipped_after_rejoin"): other.append(f"{n(d['skipped_after_rejoin'])} sent while a receiver was out of the group")
    if d.get("sender_rate_ratio_during_freeze") is not None: other.append(f"sender rate during the freeze x{d['sender_rate_ratio_during_freeze']}")
    dropped = d.get("packets_dropped_by_nftables") or d.get("hostile_drops_counted")
    print(f"| {label} | {status} | {n(d.get('sent'))} | {n(d.get('delivered_min'))} | {n(d.get('lost'))} | {n(d.get('duplicates'))} "
          f"| {n(d.get('corrupt'))} | {n(d.get('skipped_by_members_that_stay'))} | {n(d.get('recovery_s'), 2)} | {n(d.get('msgs_per_sec_min'))} "
          f"| {n(d.get('sender_rss_mb'), 1)} / {n(d.get('receiver_rss_mb_max'), 1)} | {n(dropped)} "
          f"| {n(d.get('retransmissions'))} / {n(d.get('duplicate_packets_received'))} | {'; '.join(other)} |")
def rate(key):
    try:
        return json.load(open(f"{out}/{key}.json")).get("msgs_per_sec_min")
    except (OSError, ValueError):
        return None  # that run left no result: its row above says so
loss, clean = rate("loss5-all"), rate("none")
if loss and clean:
    print(f"\n5% random loss at every receiver against no fault, this sitting: {loss / clean:.2f}")
PY
echo "results: $out" >&2
