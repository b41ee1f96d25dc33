#!/usr/bin/env bash
# Record a small capture of an NFLOG group fed by netwatch's own capture rules.
#
#   sudo bash tests/pcaps/recorded/record-nflog.sh          # record + tables
#   sudo bash tests/pcaps/recorded/record-nflog.sh tables   # only the FLOWS/MANIFEST rows
#
# Three network namespaces, nothing else:
#   nwn-rhome   10.74.11.2  a household PC: curl looks up an AnyDesk relay name and opens
#                           TLS to it (SNI relay-0a4a0c02.net.anydesk.com)
#   nwn-rrouter 10.74.11.1 / 10.74.12.1  the router: forwards, runs netwatch's table
#                           (inet netwatch, first 32 packets of each connection and every
#                           DNS answer to NFLOG group 74) and `tcpdump -i nflog:74`
#   nwn-rinet   10.74.12.2  "the internet": dnsmasq answers the name with its own address,
#                           openssl s_server accepts the TLS connection
# Every program runs under `timeout`; an EXIT trap stops what the script started, removes
# netwatch's table and deletes the namespaces and /etc/netns/nwn-rhome.
#
# Output (beside this script): nflog-anydesk-relay.pcap (LINKTYPE_NFLOG), and its rows in
# FLOWS.tsv and MANIFEST.tsv (other captures' rows are kept).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
OUT=${NW_RECORD_OUT:-$HERE}
PCAP_NAME=nflog-anydesk-relay.pcap
WHAT=${1:-all}
PY=${NW_PYTHON:-$REPO/.venv/bin/python}

H=nwn-rhome R=nwn-rrouter I=nwn-rinet
IP_HOME=10.74.11.2 IP_RLAN=10.74.11.1 IP_RWAN=10.74.12.1 IP_INET=10.74.12.2
GROUP=74
NAME=relay-0a4a0c02.net.anydesk.com

log() { printf '[record-nflog] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo '?'; }

write_tables() {
    local p=$OUT/$PCAP_NAME flows=$OUT/FLOWS.tsv man=$OUT/MANIFEST.tsv dport tport
    [[ -s $p ]] || return 0
    for f in "$flows" "$man"; do
        grep -v "^$PCAP_NAME	" "$f" >"$f.tmp" || true
        mv "$f.tmp" "$f"
    done
    dport=$(tshark -r "$p" -Y 'dns.flags.response==1' -T fields -e udp.dstport 2>/dev/null | head -1)
    tport=$(tshark -r "$p" -Y 'tcp.flags.syn==1 && tcp.flags.ack==0' -T fields -e tcp.srcport 2>/dev/null | head -1)
    printf '%s\tudp\t%s\t%s\t%s\t53\tanydesk\tdns\tDNS answer for %s (dnsmasq), logged by the dns-answer rule\n' \
        "$PCAP_NAME" "$IP_HOME" "${dport:-*}" "$IP_INET" "$NAME" >>"$flows"
    printf '%s\ttcp\t%s\t%s\t%s\t443\tanydesk\trelay\tcurl TLS ClientHello with SNI %s to openssl s_server; only the first 32 packets of the connection are in the group\n' \
        "$PCAP_NAME" "$IP_HOME" "${tport:-*}" "$IP_INET" "$NAME" >>"$flows"
    printf '%s\tpositive\tanydesk\t%s\t%s\t%s\t%s\t%s\t%s\n' "$PCAP_NAME" \
        "$(tshark -r "$p" -T fields -e frame.number 2>/dev/null | wc -l)" "$(stat -c %s "$p")" \
        "$(sha256sum "$p" | cut -d' ' -f1)" "tests/pcaps/recorded/record-nflog.sh" "-" \
        "RECORDED: tcpdump $(pkgver tcpdump) -i nflog:$GROUP on a router namespace running netwatch's capture rules (nftables $(pkgver nftables)); curl $(pkgver curl) in $IP_HOME resolves $NAME through dnsmasq $(pkgver dnsmasq-base) and opens TLS to openssl $(pkgver openssl) s_server at $IP_INET:443 (Debian 12 packages); LINKTYPE_NFLOG" >>"$man"
}

if [[ $WHAT == tables ]]; then write_tables; exit 0; fi
[[ $(id -u) -eq 0 ]] || die "run as root (sudo bash $0)"
for p in tcpdump tshark nft dnsmasq openssl curl; do command -v $p >/dev/null || die "$p is missing"; done
[[ -x $PY ]] || die "no netwatch virtualenv at $PY (set NW_PYTHON)"

WORK=$(mktemp -d /tmp/nwn-record-nflog.XXXXXX)
PIDS=()
cleanup() {
    local rc=$? pid ns
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    sleep 0.5
    if ip netns list | grep -qw $R; then
        ip netns exec $R "$PY" -c 'from netwatch import nft; from netwatch.sources import nflog; nft.remove_chains([c.name for c in nflog.chains_for(False)])' 2>/dev/null
    fi
    for ns in $H $R $I; do
        if ip netns list | grep -qw $ns; then
            for pid in $(ip netns pids $ns 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
            ip netns del $ns
        fi
    done
    rm -rf /etc/netns/$H "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bg_ns() { local ns=$1 secs=$2; shift 2; ip netns exec "$ns" timeout -k 2 "$secs" "$@" & PIDS+=("$!"); }

for ns in $H $R $I; do
    ! ip netns list | grep -qw $ns || die "namespace $ns exists (left over?): ip netns del $ns"
    ip netns add $ns
    ip -n $ns link set lo up
done
ip link add nwn-rh0 netns $H type veth peer name nwn-rr0 netns $R
ip link add nwn-rr1 netns $R type veth peer name nwn-ri0 netns $I
ip -n $H addr add $IP_HOME/24 dev nwn-rh0
ip -n $R addr add $IP_RLAN/24 dev nwn-rr0
ip -n $R addr add $IP_RWAN/24 dev nwn-rr1
ip -n $I addr add $IP_INET/24 dev nwn-ri0
for pair in "$H nwn-rh0" "$R nwn-rr0" "$R nwn-rr1" "$I nwn-ri0"; do
    set -- $pair
    ip -n "$1" link set "$2" up
    # MTU-sized packets as on a real LAN (no GRO/TSO super-packets)
    ip netns exec "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1 || true
done
ip -n $H route add default via $IP_RLAN
ip -n $I route add default via $IP_RWAN
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
for ns in $H $R $I; do ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
mkdir -p /etc/netns/$H
echo "nameserver $IP_INET" >/etc/netns/$H/resolv.conf

bg_ns $I 30 dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces \
    --listen-address=$IP_INET --address=/net.anydesk.com/$IP_INET --pid-file=$WORK/dnsmasq.pid \
    --log-facility=$WORK/dnsmasq.log
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$NAME" \
    -keyout $WORK/key.pem -out $WORK/cert.pem >/dev/null 2>&1
bg_ns $I 30 openssl s_server -accept $IP_INET:443 -cert $WORK/cert.pem -key $WORK/key.pem \
    -naccept 1 -www >$WORK/s_server.log 2>&1
sleep 1

ip netns exec $R "$PY" -c "from netwatch import nft; from netwatch.sources import nflog
nft.install_chains(nflog.chains_for(False), nflog.ruleset($GROUP, nflog.FIRST_PACKETS, False))"
pcap=$OUT/$PCAP_NAME
rm -f "$pcap"
bg_ns $R 20 tcpdump -i nflog:$GROUP -U -s 0 -w "$pcap" >$WORK/tcpdump.log 2>&1
CAP=${PIDS[-1]}
for _ in $(seq 50); do grep -q 'listening on' $WORK/tcpdump.log && break; sleep 0.1; done
grep -q 'listening on' $WORK/tcpdump.log || die "tcpdump did not start: $(cat $WORK/tcpdump.log)"

ip netns exec $H timeout 10 curl -4 -sk -o /dev/null "https://$NAME/" || true
sleep 1
kill -INT "$CAP"; wait "$CAP" || true
log "tcpdump: $(grep -E 'captured|dropped' $WORK/tcpdump.log | tr '\n' ' ')"
[[ -s $pcap ]] || die "empty capture"
write_tables
log "done: $(ls -l "$pcap")"
