#!/usr/bin/env bash
# One entry point for a fresh Debian machine:
#   bash run.sh demo   install netwatch in .venv and replay the bundled demo capture
#   bash run.sh test   install netwatch, its test tools and tshark, then run every test
#   bash run.sh bench  the full benchmark on the 1M-packet home mix (minutes, not in CI)
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
  if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    apt_install python3
  fi
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; python3 -m venv .venv; }
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
    # nftables and conntrack: the live blocking tests (tests/test_block_live.py); Xvfb,
    # x11vnc and TigerVNC's viewer: the real VNC session they cut.
    apt_install tshark libndpi-bin prometheus nftables conntrack iproute2 dnsmasq-base \
      openssl tcpdump xvfb x11vnc tigervnc-viewer x11-apps
    venv "[test]"
    .venv/bin/ruff check netwatch tests --exclude tests/pcaps
    .venv/bin/mypy netwatch
    .venv/bin/netwatch signatures check
    .venv/bin/python -m pytest -q -p no:cacheprovider tests
    # Speed guard: a short paired run against ndpiReader; fails only when netwatch's speed
    # ratio falls below half the one recorded in benchmarks/ratio.json.
    if [ -f ../shared/bench/make_home_mix.py ] || [ -n "${NETWATCH_SHARED:-}" ]; then
      exec .venv/bin/netwatch bench --packets 100000 --runs 3 --no-stages --no-nflog \
        --guard benchmarks/ratio.json
    fi
    echo "run.sh: speed guard skipped: the home-mix generator (../shared/bench) is not here"
    ;;
  bench)
    # The full benchmark: the 1M-packet home mix, 3 paired runs, stages, nflog share.
    apt_install libndpi-bin
    venv ""
    exec .venv/bin/netwatch bench --packets 1000000 --runs 3 "${@:2}"
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
    exec as_root .venv/bin/python benchmarks/nflog_live.py "${@:2}"
    ;;
  *)
    echo "usage: bash run.sh demo|test|bench|bench-nflog|fuzz|floods" >&2
    exit 64
    ;;
esac
