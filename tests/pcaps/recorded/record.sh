#!/usr/bin/env bash
# Record small, real captures of real remote-desktop programs for netwatch.
#
#   sudo bash tests/pcaps/recorded/record.sh            # record both
#   sudo bash tests/pcaps/recorded/record.sh vnc        # only VNC
#   sudo bash tests/pcaps/recorded/record.sh rdp        # only RDP
#
# Two network namespaces joined by a veth pair, nothing else:
#   nw-home   10.99.0.2  "home" machine: runs the remote-access SERVER
#                        (x11vnc on an Xvfb display, xrdp + xorgxrdp)
#   nw-remote 10.99.0.1  "remote" (scammer) machine: runs the VIEWER
#                        (TigerVNC vncviewer, FreeRDP xfreerdp) under Xvfb
# The namespaces have no route anywhere else; all traffic stays on the veth.
# tcpdump runs inside nw-home on its veth end.  Every server, viewer and the
# capture itself run under `timeout`; an EXIT trap kills what the script
# started, deletes the namespaces and removes the throwaway RDP user.
#
# Outputs (in this script's directory): vnc-x11vnc.pcap, rdp-xrdp.pcap,
# FLOWS.tsv, MANIFEST.tsv (both regenerated from the captures on disk).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${NW_RECORD_OUT:-$HERE}
WHAT=${1:-all}

NS_HOME=nw-home
NS_REMOTE=nw-remote
IF_HOME=veth-nwh          # lives in nw-home
IF_REMOTE=veth-nwr        # lives in nw-remote
IP_HOME=10.99.0.2         # server side
IP_REMOTE=10.99.0.1       # client side
SUBNET=24

VNC_PORT=5900
VNC_PASS=netwatch         # only ever crosses the wire as a DES challenge/response
RDP_PORT=3389
RDP_USER=nwrdp
RDP_PASS=nw-rdp-Pass1

DISP_VNC_SERVER=91        # Xvfb shared by x11vnc (nw-home)
DISP_VNC_CLIENT=92        # Xvfb of vncviewer (nw-remote)
DISP_RDP_CLIENT=93        # Xvfb of xfreerdp (nw-remote)
# xrdp-sesman starts its own Xorg (xorgxrdp) on :10 upwards in nw-home.

APT_PKGS=(iproute2 tcpdump tshark xvfb x11vnc tigervnc-viewer freerdp2-x11
          xrdp xorgxrdp x11-apps x11-xserver-utils xdotool ethtool openssl
          passwd procps iputils-ping)

log() { printf '[record] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (sudo bash $0)"

WORK=$(mktemp -d /tmp/nw-record.XXXXXX)
chmod 755 "$WORK"
PIDS=()
CREATED_USER=0

cleanup() {
    local rc=$? pid ns
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    sleep 0.5
    # Everything left inside our own namespaces was started by this script
    # (servers, viewers, Xvfb, sesman's Xorg session): end it by pid.
    for ns in "$NS_HOME" "$NS_REMOTE"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
        fi
    done
    sleep 1
    for ns in "$NS_HOME" "$NS_REMOTE"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
            ip netns del "$ns" 2>/dev/null
        fi
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    if [[ $CREATED_USER -eq 1 ]]; then
        userdel "$RDP_USER" 2>/dev/null
    fi
    rm -f /run/xrdp/xrdp.pid /run/xrdp/xrdp-sesman.pid 2>/dev/null
    if [[ -n ${KEEP_WORK:-} ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------
# packages
install_packages() {
    local missing=() p
    for p in "${APT_PKGS[@]}"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -q --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 \
            || { tail -20 "$WORK/apt.log" >&2; die "apt-get install failed"; }
    fi
    # On a systemd machine installing xrdp also starts the system xrdp service;
    # record_rdp refuses to run next to it (shared pid files in /run/xrdp).
}

pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo '?'; }

# --------------------------------------------------------------------------
# network namespaces
setup_netns() {
    local ns
    for ns in "$NS_HOME" "$NS_REMOTE"; do
        if ip netns list | grep -qw "$ns"; then
            die "namespace $ns already exists (left over from an earlier run?); remove it with: ip netns del $ns"
        fi
    done
    ip netns add "$NS_HOME"
    ip netns add "$NS_REMOTE"
    # create the pair directly inside the namespaces: never in the root ns
    ip link add "$IF_HOME" netns "$NS_HOME" type veth peer name "$IF_REMOTE" netns "$NS_REMOTE"
    for ns in "$NS_HOME" "$NS_REMOTE"; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
        ip netns exec "$ns" ip link set lo up
    done
    ip netns exec "$NS_HOME" ip addr add "$IP_HOME/$SUBNET" dev "$IF_HOME"
    ip netns exec "$NS_REMOTE" ip addr add "$IP_REMOTE/$SUBNET" dev "$IF_REMOTE"
    ip netns exec "$NS_HOME" ip link set "$IF_HOME" up
    ip netns exec "$NS_REMOTE" ip link set "$IF_REMOTE" up
    # No GSO/TSO/GRO: segments on the wire look like a real 1500-MTU link
    # instead of 64 KiB veth super-packets; no checksum offload so the
    # recorded checksums are valid.
    ip netns exec "$NS_HOME" ethtool -K "$IF_HOME" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    ip netns exec "$NS_REMOTE" ethtool -K "$IF_REMOTE" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    ip netns exec "$NS_REMOTE" ping -c1 -W2 "$IP_HOME" >/dev/null || die "veth link does not work"
}

# run "$@" in namespace $1 in the background, bounded by timeout $2 seconds
bg_ns() {
    local ns=$1 secs=$2; shift 2
    ip netns exec "$ns" timeout -k 2 "$secs" "$@" &
    PIDS+=("$!")
    LAST_PID=$!
}

free_display() {
    local d=$1
    [[ ! -e /tmp/.X$d-lock && ! -e /tmp/.X11-unix/X$d ]] || die "X display :$d is in use (/tmp/.X$d-lock)"
}

start_xvfb() {      # ns display secs geometry
    local ns=$1 d=$2 secs=$3 geom=$4
    free_display "$d"
    bg_ns "$ns" "$secs" Xvfb ":$d" -screen 0 "$geom" -nolisten tcp -noreset >"$WORK/xvfb$d.log" 2>&1
    for _ in $(seq 50); do
        [[ -e /tmp/.X11-unix/X$d ]] && return 0
        sleep 0.1
    done
    die "Xvfb :$d did not start (see $WORK/xvfb$d.log)"
}

wait_port() {       # ns port secs
    local ns=$1 port=$2 secs=$3
    for _ in $(seq $((secs * 10))); do
        ip netns exec "$ns" ss -Hltn "sport = :$port" | grep -q LISTEN && return 0
        sleep 0.1
    done
    return 1
}

start_capture() {   # file secs
    local file=$1 secs=$2
    rm -f "$file"
    bg_ns "$NS_HOME" "$secs" tcpdump -i "$IF_HOME" -n -U -s 0 -Z root -w "$file" ip >"$WORK/tcpdump.log" 2>&1
    CAP_PID=$LAST_PID
    for _ in $(seq 50); do
        grep -q 'listening on' "$WORK/tcpdump.log" 2>/dev/null && return 0
        sleep 0.1
    done
    die "tcpdump did not start: $(cat "$WORK/tcpdump.log")"
}

stop_capture() {
    sleep 1                     # let FIN/ACKs through
    kill -INT "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
    log "tcpdump: $(grep -E 'captured|dropped by kernel' "$WORK/tcpdump.log" | tr '\n' ' ')"
}

# --------------------------------------------------------------------------
# 1. VNC: x11vnc (nw-home) <- TigerVNC vncviewer (nw-remote)
record_vnc() {
    local pcap=$OUT/vnc-x11vnc.pcap
    log "VNC: x11vnc $(pkgver x11vnc) <- TigerVNC vncviewer $(pkgver tigervnc-viewer)"
    x11vnc -storepasswd "$VNC_PASS" "$WORK/vncpasswd" >/dev/null 2>&1

    # the home desktop: a coloured root window, a ticking clock and a logo
    start_xvfb "$NS_HOME" "$DISP_VNC_SERVER" 60 1024x768x24
    DISPLAY=:$DISP_VNC_SERVER ip netns exec "$NS_HOME" xsetroot -solid '#336699'
    DISPLAY=:$DISP_VNC_SERVER bg_ns "$NS_HOME" 60 xclock -update 1 -geometry 200x200+50+50 >/dev/null 2>&1
    DISPLAY=:$DISP_VNC_SERVER bg_ns "$NS_HOME" 60 xlogo -geometry 150x150+400+200 >/dev/null 2>&1

    bg_ns "$NS_HOME" 40 x11vnc -display ":$DISP_VNC_SERVER" -rfbport "$VNC_PORT" -listen "$IP_HOME" \
        -rfbauth "$WORK/vncpasswd" -desktop nw-home -once -timeout 30 -noxdamage -nolookup -no6 \
        -o "$WORK/x11vnc.log"  >/dev/null 2>&1
    wait_port "$NS_HOME" "$VNC_PORT" 15 || die "x11vnc does not listen (see $WORK/x11vnc.log)"

    start_xvfb "$NS_REMOTE" "$DISP_VNC_CLIENT" 60 1280x1024x24
    start_capture "$pcap" 40
    sleep 0.5
    DISPLAY=:$DISP_VNC_CLIENT HOME=$WORK bg_ns "$NS_REMOTE" 8 \
        vncviewer -passwd "$WORK/vncpasswd" -Shared=1 "$IP_HOME::$VNC_PORT" >"$WORK/vncviewer.log" 2>&1
    local viewer=$LAST_PID
    sleep 3
    # a little pointer activity in the viewer window -> RFB PointerEvents
    DISPLAY=:$DISP_VNC_CLIENT ip netns exec "$NS_REMOTE" timeout 5 sh -c \
        'xdotool mousemove 300 300 sleep 0.3 mousemove 420 330 sleep 0.3 mousemove 520 380 click 1 sleep 0.3 mousemove 600 400' \
        >/dev/null 2>&1 || true
    wait "$viewer" 2>/dev/null || true
    stop_capture
    [[ -s $pcap ]] || die "VNC capture is empty"
}

# --------------------------------------------------------------------------
# 2. RDP: xrdp + xorgxrdp (nw-home) <- FreeRDP xfreerdp (nw-remote)
record_rdp() {
    local pcap=$OUT/rdp-xrdp.pcap
    log "RDP: xrdp $(pkgver xrdp) + xorgxrdp $(pkgver xorgxrdp) <- xfreerdp $(pkgver freerdp2-x11)"

    # throwaway local user that the viewer logs in as; its session just
    # paints the root window and shows a clock for a few seconds.
    if id "$RDP_USER" >/dev/null 2>&1; then
        die "user $RDP_USER already exists (left over?); remove with: userdel $RDP_USER"
    fi
    mkdir -p "$WORK/rdphome"
    useradd -M -d "$WORK/rdphome" -s /bin/sh "$RDP_USER"
    CREATED_USER=1
    echo "$RDP_USER:$RDP_PASS" | chpasswd
    cat >"$WORK/rdphome/startwm.sh" <<'EOF'
#!/bin/sh
xsetroot -solid '#225588'
xlogo -geometry 150x150+500+100 &
exec timeout 40 xclock -update 1 -geometry 200x200+100+100
EOF
    chmod 755 "$WORK/rdphome/startwm.sh"
    chown -R "$RDP_USER:" "$WORK/rdphome"

    # own server certificate (CN=nw-home) instead of the machine's snakeoil
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=nw-home" \
        -keyout "$WORK/xrdp-key.pem" -out "$WORK/xrdp-cert.pem" >/dev/null 2>&1

    # private copies of the configs: log to the work dir, our certificate
    sed -e "s|^certificate=.*|certificate=$WORK/xrdp-cert.pem|" \
        -e "s|^key_file=.*|key_file=$WORK/xrdp-key.pem|" \
        -e "s|^LogFile=.*|LogFile=$WORK/xrdp.log|" \
        -e "s|^EnableSyslog=.*|EnableSyslog=false|" \
        -e "0,/^port=.*/s||port=$RDP_PORT|" \
        /etc/xrdp/xrdp.ini >"$WORK/xrdp.ini"
    sed -e "s|^LogFile=.*|LogFile=$WORK/xrdp-sesman.log|" \
        -e "s|^EnableSyslog=.*|EnableSyslog=false|" \
        -e "s|^KillDisconnected=.*|KillDisconnected=true|" \
        /etc/xrdp/sesman.ini >"$WORK/sesman.ini"

    mkdir -p /run/xrdp/sockdir
    chmod 3777 /run/xrdp/sockdir
    local f
    for f in /run/xrdp/xrdp.pid /run/xrdp/xrdp-sesman.pid; do
        if [[ -f $f ]] && ! kill -0 "$(cat "$f")" 2>/dev/null; then rm -f "$f"; fi
        [[ ! -f $f ]] || die "$f: an xrdp is already running on this machine; stop it first"
    done

    bg_ns "$NS_HOME" 60 xrdp-sesman --nodaemon --config "$WORK/sesman.ini" >"$WORK/sesman.out" 2>&1
    wait_port "$NS_HOME" 3350 15 || die "xrdp-sesman did not start (see $WORK/sesman.out)"
    bg_ns "$NS_HOME" 60 xrdp --nodaemon --config "$WORK/xrdp.ini" >"$WORK/xrdp.out" 2>&1
    wait_port "$NS_HOME" "$RDP_PORT" 15 || die "xrdp did not start (see $WORK/xrdp.out)"

    start_xvfb "$NS_REMOTE" "$DISP_RDP_CLIENT" 60 1280x1024x24
    mkdir -p "$WORK/clienthome"
    start_capture "$pcap" 40
    sleep 0.5
    DISPLAY=:$DISP_RDP_CLIENT HOME=$WORK/clienthome bg_ns "$NS_REMOTE" 12 \
        xfreerdp "/v:$IP_HOME:$RDP_PORT" "/u:$RDP_USER" "/p:$RDP_PASS" /cert:ignore \
        /client-hostname:nw-remote /size:800x600 /bpp:16 -grab-keyboard /log-level:INFO >"$WORK/xfreerdp.log" 2>&1
    local viewer=$LAST_PID
    sleep 7
    DISPLAY=:$DISP_RDP_CLIENT ip netns exec "$NS_REMOTE" timeout 5 sh -c \
        'xdotool mousemove 200 200 sleep 0.3 mousemove 300 260 sleep 0.3 mousemove 400 300 click 1 sleep 0.3 mousemove 450 320' \
        >/dev/null 2>&1 || true
    wait "$viewer" 2>/dev/null || true
    stop_capture
    [[ -s $pcap ]] || die "RDP capture is empty"
}

# --------------------------------------------------------------------------
# FLOWS.tsv / MANIFEST.tsv from what is on disk
tsh() { tshark -r "$@" 2>/dev/null; }

# "client_ip client_port server_ip server_port" of every SYN to $2
syn_flows() { tsh "$1" -Y "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.dstport==$2" \
                  -T fields -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport | sort -u; }

# first non-empty value of field $3 in packets of pcap $1 matching filter $2;
# further arguments are extra tshark options
first_field() { tsh "$1" "${@:4}" -Y "$2" -T fields -e "$3" | grep -v '^$' | head -1 || true; }

vnc_note() {        # pcap stream
    local p=$1 s="tcp.stream==$2" sv cv sec res w h nreq
    sv=$(first_field "$p" "$s && vnc.server_proto_ver" vnc.server_proto_ver)
    cv=$(first_field "$p" "$s && vnc.client_proto_ver" vnc.client_proto_ver)
    sec=$(first_field "$p" "$s && vnc.client_security_type" vnc.client_security_type)
    res=$(first_field "$p" "$s && vnc.auth_result" vnc.auth_result)
    w=$(first_field "$p" "$s && vnc.width" vnc.width)
    h=$(first_field "$p" "$s && vnc.height" vnc.height)
    nreq=$(tsh "$p" -Y "$s && vnc.client_message_type==3" -T fields -e frame.number | wc -l)
    printf 'RFB %s/%s, security type %s (VNC auth), auth result %s (0=OK), framebuffer %sx%s, %s FramebufferUpdateRequests answered with Tight/JPEG updates, pointer events; tshark 4.0 shows the updates as Server cut text after the ExtendedClipboard message' \
        "${sv:-?}" "${cv:-?}" "${sec:-?}" "${res:-?}" "${w:-?}" "${h:-?}" "$nreq"
}

rdp_note() {        # pcap stream
    local p=$1 s="tcp.stream==$2" ck req sel tlsv sni
    ck=$(first_field "$p" "$s && rdp.rt_cookie" rdp.rt_cookie)
    req=$(first_field "$p" "$s && rdp.negReq.requestedProtocols" rdp.negReq.requestedProtocols)
    sel=$(first_field "$p" "$s && rdp.negReq.selectedProtocol" rdp.negReq.selectedProtocol)
    # tshark 4.0 does not switch to TLS after the X.224 exchange by itself
    tlsv=$(first_field "$p" "$s && tls.handshake.type==2" tls.handshake.extensions.supported_version -d "tcp.port==$RDP_PORT,tls")
    [[ -n $tlsv ]] || tlsv=$(first_field "$p" "$s && tls.handshake.type==2" tls.handshake.version -d "tcp.port==$RDP_PORT,tls")
    sni=$(first_field "$p" "$s && tls.handshake.type==1" tls.handshake.extensions_server_name -d "tcp.port==$RDP_PORT,tls")
    printf 'X.224 CR %s, RDP_NEG_REQ requestedProtocols %s (TLS|CredSSP), RDP_NEG_RSP selectedProtocol %s (TLS), then TLS (ServerHello version %s, ClientHello SNI %s; decode with -d tcp.port==%s,tls), login and session data' \
        "${ck:-without cookie}" "${req:-?}" "${sel:-?}" "${tlsv:-?}" "${sni:-none}" "$RDP_PORT"
}

stream_of() {       # pcap client_port server_port
    first_field "$1" "tcp.srcport==$2 && tcp.dstport==$3 && tcp.flags.syn==1" tcp.stream
}

write_tables() {
    local flows=$OUT/FLOWS.tsv man=$OUT/MANIFEST.tsv p cip cport sip sport st
    printf 'pcap\tproto\tclient_ip\tclient_port\tserver_ip\tserver_port\ttool\troles\tnote\n' >"$flows"
    printf 'file\tkind\ttools\tpackets\tbytes\tsha256\tsource\tlicense\tdescription\n' >"$man"

    p=$OUT/vnc-x11vnc.pcap
    if [[ -s $p ]]; then
        while read -r cip cport sip sport; do
            [[ -n $cip ]] || continue
            st=$(stream_of "$p" "$cport" "$sport")
            printf 'vnc-x11vnc.pcap\ttcp\t%s\t%s\t%s\t%s\tvnc\tsession\t%s\n' \
                "$cip" "$cport" "$sip" "$sport" "$(vnc_note "$p" "$st")" >>"$flows"
        done < <(syn_flows "$p" "$VNC_PORT")
        printf 'vnc-x11vnc.pcap\tpositive\tvnc\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$(tsh "$p" -T fields -e frame.number | wc -l)" "$(stat -c %s "$p")" \
            "$(sha256sum "$p" | cut -d' ' -f1)" "tests/pcaps/recorded/record.sh" "-" \
            "RECORDED: x11vnc $(pkgver x11vnc) serving an Xvfb $(pkgver xvfb) display to TigerVNC vncviewer $(pkgver tigervnc-viewer) (Debian 12 packages), VNC password auth, between netns $IP_REMOTE -> $IP_HOME:$VNC_PORT" >>"$man"
    fi

    p=$OUT/rdp-xrdp.pcap
    if [[ -s $p ]]; then
        while read -r cip cport sip sport; do
            [[ -n $cip ]] || continue
            st=$(stream_of "$p" "$cport" "$sport")
            printf 'rdp-xrdp.pcap\ttcp\t%s\t%s\t%s\t%s\trdp\tsession\t%s\n' \
                "$cip" "$cport" "$sip" "$sport" "$(rdp_note "$p" "$st")" >>"$flows"
        done < <(syn_flows "$p" "$RDP_PORT")
        printf 'rdp-xrdp.pcap\tpositive\trdp\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$(tsh "$p" -T fields -e frame.number | wc -l)" "$(stat -c %s "$p")" \
            "$(sha256sum "$p" | cut -d' ' -f1)" "tests/pcaps/recorded/record.sh" "-" \
            "RECORDED: FreeRDP xfreerdp $(pkgver freerdp2-x11) logging in to xrdp $(pkgver xrdp) with xorgxrdp $(pkgver xorgxrdp) (Debian 12 packages), negotiated TLS security, between netns $IP_REMOTE -> $IP_HOME:$RDP_PORT" >>"$man"
    fi
    # the NFLOG capture has its own recorder; keep its rows
    bash "$HERE/record-nflog.sh" tables
}

# --------------------------------------------------------------------------
install_packages
mkdir -p "$OUT"
case $WHAT in
    all) setup_netns; record_vnc; record_rdp ;;
    vnc) setup_netns; record_vnc ;;
    rdp) setup_netns; record_rdp ;;
    tables) ;;
    *) die "usage: $0 [all|vnc|rdp|tables]" ;;
esac
write_tables
log "done:"
ls -l "$OUT"/*.pcap >&2 2>/dev/null || true
