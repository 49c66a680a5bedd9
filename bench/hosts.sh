#!/usr/bin/env bash
# Several "hosts" on one machine: Linux network namespaces qsmh-1..N, each with an eth0
# (10.77.0.I/24) on a bridge in namespace qsmh-br, with real kernel IP multicast across
# the bridge (snooping off, so groups flood). Faults are nftables rules inside a host.
# It only ever touches namespaces named qsmh-* (QSMH_PREFIX-*); `down` removes them all.
#
#   bench/hosts.sh up N              create N hosts (removes old ones first)
#   bench/hosts.sh exec I CMD...     run CMD on host I
#   bench/hosts.sh loss I PCT        host I drops PCT% of inbound packets (random)
#   bench/hosts.sh burst I           host I drops everything inbound (until heal)
#   bench/hosts.sh cut I             host I drops everything, both ways (until heal)
#   bench/hosts.sh oneway I          host I can receive but not send (until heal)
#   bench/hosts.sh heal I            remove host I's fault rules
#   bench/hosts.sh down              remove every qsmh-* namespace
set -euo pipefail

prefix=${QSMH_PREFIX:-qsmh}
[[ "$prefix" =~ ^[a-z0-9]{1,8}$ ]] || { echo "hosts.sh: QSMH_PREFIX must be 1-8 lowercase letters or digits" >&2; exit 2; }
need_root() { [ "$(id -u)" = 0 ] || { echo "hosts.sh: needs root (network namespaces)" >&2; exit 2; }; }
need_nft() { command -v nft >/dev/null || { echo "hosts.sh: needs nftables (apt-get install nftables)" >&2; exit 2; }; }
# Names come from /run/netns (one file per named namespace): `ip netns list` can warn
# among its output, and fail, while other runs add and delete namespaces.
namespaces() { ls /run/netns 2>/dev/null || true; }
host_exists() { namespaces | grep -qx "$prefix-$1" || { echo "hosts.sh: no host $1 (run: hosts.sh up N)" >&2; exit 2; }; }
number() { [[ "$1" =~ ^[0-9]+$ ]] || { echo "hosts.sh: '$1' is not a number" >&2; exit 2; }; }

down() {
    for ns in $(namespaces | grep "^$prefix-" || true); do ip netns delete "$ns"; done
}

up() {
    number "$1"
    [ "$1" -ge 1 ] && [ "$1" -le 200 ] || { echo "hosts.sh: 1...200 hosts" >&2; exit 2; }
    down
    ip netns add "$prefix-br"
    ip -n "$prefix-br" link add br0 type bridge mcast_snooping 0
    ip -n "$prefix-br" link set br0 up
    ip -n "$prefix-br" link set lo up
    for i in $(seq 1 "$1"); do
        ip netns add "$prefix-$i"
        ip link add "${prefix}h$i" type veth peer name "${prefix}b$i"
        ip link set "${prefix}h$i" netns "$prefix-$i" name eth0
        ip link set "${prefix}b$i" netns "$prefix-br"
        ip -n "$prefix-br" link set "${prefix}b$i" master br0 up
        ip -n "$prefix-$i" addr add "10.77.0.$i/24" dev eth0
        ip -n "$prefix-$i" link set eth0 up
        ip -n "$prefix-$i" link set lo up
        ip -n "$prefix-$i" route add 224.0.0.0/4 dev eth0
    done
}

fault() {
    need_nft; host_exists "$1"
    ip netns exec "$prefix-$1" nft delete table inet qsmfault 2>/dev/null || true
    ip netns exec "$prefix-$1" nft -f - <<RULES
table inet qsmfault {
    chain input {
        type filter hook input priority 0;
        $2
    }
    chain output {
        type filter hook output priority 0;
        $3
    }
}
RULES
}

need_root
case "${1:-}" in
    up) up "${2:?hosts.sh up N}" ;;
    down) down ;;
    exec) host_exists "${2:?hosts.sh exec I CMD}"; host=$2; shift 2; exec ip netns exec "$prefix-$host" "$@" ;;
    loss) number "${3:?hosts.sh loss I PCT}"; fault "$2" "iifname \"eth0\" numgen random mod 100 < $3 counter drop" "" ;;
    burst) fault "${2:?hosts.sh burst I}" "iifname \"eth0\" counter drop" "" ;;
    cut) fault "${2:?hosts.sh cut I}" "iifname \"eth0\" counter drop" "oifname \"eth0\" counter drop" ;;
    oneway) fault "${2:?hosts.sh oneway I}" "" "oifname \"eth0\" counter drop" ;;
    heal) need_nft; host_exists "${2:?hosts.sh heal I}"; ip netns exec "$prefix-$2" nft delete table inet qsmfault 2>/dev/null || true ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
