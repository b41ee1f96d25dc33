#!/usr/bin/env bash
# One entry point for a fresh Debian machine:
#   bash run.sh demo   install netwatch in .venv and replay the bundled demo capture
#   bash run.sh test   install netwatch, its test tools and tshark, then run every test
#   bash run.sh bench  the full benchmark on the 1M-packet home mix (minutes, not in CI)
#   bash run.sh faults alert delivery under faults: receivers down, slow, dripping or
#                      answering 500, kill -9 of replay --notify and alert deliver (minutes)
#   bash run.sh live-bench [--long]  netwatch run in network namespaces: live throughput
#                      against ndpiReader, time to alert, memory (minutes, not in CI)
#   bash run.sh fuzz   one million mutated corpus packets through the pipeline (not in CI)
#   bash run.sh floods the four floods at full size around a real session (not in CI)
# Installs with apt-get (as root, or through sudo) and pip into .venv; safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "run.sh: need root (or sudo) to run: $*" >&2; return 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "run.sh: installing ${missing[*]} with apt-get" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

venv() {
  # The interpreter: $PYTHON when given (to measure another version), else the
  # distribution's python3 (Debian builds it with profile-guided and link-time optimisation:
  # netwatch's replay runs about a quarter faster on it than on one built from source
  # without them), else the first python3 on the PATH. A .venv made from another
  # interpreter is made again.
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    if ! /usr/bin/python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
        && ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
      apt_install python3
    fi
    py=python3
    /usr/bin/python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
      && py=/usr/bin/python3
  fi
  py="$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
  if [ -x .venv/bin/python ] && ! grep -qx "home = $(dirname "$py")" .venv/pyvenv.cfg; then
    echo "run.sh: making .venv again, from $py" >&2
    rm -rf .venv
  fi
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$py" -m venv .venv; }
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".$1"
}

case "${1:-}" in
  demo)
    venv ""
    exec .venv/bin/netwatch replay tests/pcaps/synthetic/demo-anydesk-scam.pcap \
      --household deploy/household.example.yaml
    ;;
  test)
    # tshark is the oracle the decoding tests compare against; ndpiReader is the peer the
    # speed guard measures netwatch against; promtool (in prometheus) checks /metrics;
    # dnsmasq-base and iproute2: the dnslog test runs a real dnsmasq in namespaces; the nflog
    # tests build a router from nftables, dnsmasq and openssl in network namespaces;
    # nftables and conntrack: the live blocking tests (tests/test_block_live.py); tcpreplay
    # (with tcprewrite) puts traffic on the veth pairs of the af_packet and netwatch run
    # tests. The live tests (tests/test_live.py) run real VNC, RDP, SSH and HTTP programs in
    # network namespaces, watched by netwatch run and a Prometheus server. (On a machine
    # without systemd, xrdp's postinst may start a system xrdp; the live tests stop it, as
    # its pid files would clash with theirs.)
    # The deploy files' tests (tests/test_deploy_*.py), the fleet's alert path and log
    # shipping among them, use shellcheck, systemd (systemd-analyze), prometheus-alertmanager
    # and rsyslog.
    apt_install tshark libndpi-bin iproute2 iputils-ping ethtool tcpdump tcpreplay nftables \
      conntrack dnsmasq-base procps passwd openssl xvfb x11-apps x11-xserver-utils xdotool \
      x11vnc tigervnc-viewer freerdp2-x11 xrdp xorgxrdp openssh-server openssh-client \
      prometheus shellcheck systemd prometheus-alertmanager rsyslog
    venv "[test]"
    .venv/bin/ruff check netwatch tests --exclude tests/pcaps
    .venv/bin/mypy netwatch
    .venv/bin/netwatch signatures check
    .venv/bin/python -m pytest -q -p no:cacheprovider tests
    # Speed guard: a short paired run against ndpiReader, on the mix as classic pcap and as
    # pcapng; fails only when either speed ratio falls below half the one recorded in
    # benchmarks/ratio.json.
    if [ -f ../shared/bench/make_home_mix.py ] || [ -n "${NETWATCH_SHARED:-}" ]; then
      exec .venv/bin/netwatch bench --packets 100000 --runs 3 --no-stages --no-nflog --no-table \
        --guard benchmarks/ratio.json
    fi
    echo "run.sh: speed guard skipped: the home-mix generator (../shared/bench) is not here"
    ;;
  bench)
    # The full benchmark: the 1M-packet home mix (classic pcap and pcapng), 3 paired runs,
    # start-up, stages, nflog share.
    apt_install libndpi-bin
    venv ""
    exec .venv/bin/netwatch bench --packets 1000000 --runs 3 "${@:2}"
    ;;
  live-bench)
    # netwatch run on a router in network namespaces (needs root): the highest tcpreplay
    # rate it keeps up with against ndpiReader on the same veth, time to alert over 20
    # real VNC sessions, and its memory over a long replay (--long: 10 million packets).
    apt_install libndpi-bin iproute2 ethtool tcpdump tcpreplay procps xvfb x11-apps xdotool \
      x11vnc tigervnc-viewer
    venv "[test]"
    as_root .venv/bin/python benchmarks/live_bench.py "${@:2}"
    ;;
  fuzz)
    venv ""
    exec .venv/bin/netwatch fuzz --packets 1000000 "${@:2}"
    ;;
  floods)
    venv ""
    exec .venv/bin/netwatch floods "${@:2}"
    ;;
  bench-nflog)
    # The nflog mode on a router namespace: the home mix through tcpreplay, what reaches
    # Python and its CPU per packet of line traffic (needs root; about 3 minutes).
    apt_install tcpreplay nftables iproute2
    venv ""
    as_root .venv/bin/python benchmarks/nflog_live.py "${@:2}"
    ;;
  faults)
    # The alert fault loops at full size (tests/test_fault_loops.py; about 8 minutes):
    # 200 iterations of kill -9 at random points of replay --notify and alert deliver, and
    # 10 cycles of each receiver fault (down, slow, dripping, answering 500) then recovery.
    # NETWATCH_FAULT_KILLS, NETWATCH_FAULT_CYCLES and NETWATCH_FAULT_SEED change the sizes.
    venv "[test]"
    exec env NETWATCH_FAULT_KILLS="${NETWATCH_FAULT_KILLS:-200}" \
      NETWATCH_FAULT_CYCLES="${NETWATCH_FAULT_CYCLES:-10}" \
      .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/test_fault_loops.py
    ;;
  *)
    echo "usage: bash run.sh demo|test|bench|bench-nflog|live-bench|faults|fuzz|floods" >&2
    exit 64
    ;;
esac
