#!/bin/sh
# Install netwatch as a service on Raspberry Pi OS or Debian:
#   sudo sh deploy/raspberry-pi/install.sh [--interface eth0]
# netwatch goes into a virtual environment in /opt/netwatch, its settings into
# /etc/netwatch (kept when they exist), the systemd unit into /etc/systemd/system, enabled.
# Safe to run again: an upgrade installs the new netwatch and restarts a running service.
#
# Options:
#   --interface IF   the interface to capture on, written into a new netwatch.yaml (eth0)
#   --root DIR       install under DIR instead of / (an image being built, or a test):
#                    no user is made, nothing is started, the unit is enabled in DIR
#   --prefix DIR     where the virtual environment goes (/opt/netwatch)
#   --source DIR     the netwatch source to install (the tree this script is in)
#   --pip-args ARGS  more arguments for pip (a local wheel folder: "--no-index
#                    --find-links /media/usb/wheels")
#   --start          also start (or restart) the service now
set -eu

ROOT=/
PREFIX=/opt/netwatch
INTERFACE=eth0
SOURCE=$(cd "$(dirname "$0")/../.." && pwd)
PIP_ARGS=
START=no
USER_NAME=netwatch

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
	case "$1" in
		--interface) [ $# -ge 2 ] || die "$1 needs a value"; INTERFACE=$2; shift 2 ;;
		--root) [ $# -ge 2 ] || die "$1 needs a value"; ROOT=$2; shift 2 ;;
		--prefix) [ $# -ge 2 ] || die "$1 needs a value"; PREFIX=$2; shift 2 ;;
		--source) [ $# -ge 2 ] || die "$1 needs a value"; SOURCE=$2; shift 2 ;;
		--pip-args) [ $# -ge 2 ] || die "$1 needs a value"; PIP_ARGS=$2; shift 2 ;;
		--start) START=yes; shift ;;
		-h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		*) die "unknown option $1 (--help lists them)" ;;
	esac
done

case "$INTERFACE" in
	*[!A-Za-z0-9_.@-]*|"") die "--interface: '$INTERFACE' is not an interface name" ;;
esac
[ -f "$SOURCE/setup.cfg" ] || die "--source: $SOURCE is not netwatch's source tree"
ROOT=${ROOT%/}
LIVE=no
[ -z "$ROOT" ] && LIVE=yes
if [ "$LIVE" = yes ] && [ "$(id -u)" != 0 ]; then
	die "run it as root (sudo sh $0), or give --root DIR"
fi

VENV=$ROOT$PREFIX
ETC=$ROOT/etc/netwatch
UNIT_DIR=$ROOT/etc/systemd/system

# Python 3.11 or newer with venv (Raspberry Pi OS and Debian 12 have 3.11).
if ! python3 -c 'import sys, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then
	if [ "$LIVE" = yes ] && command -v apt-get >/dev/null; then
		say "installing python3-venv with apt-get"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			python3 python3-venv
	else
		die "needs python3 (3.11 or newer) with its venv module"
	fi
fi

# 1. netwatch in its own virtual environment (made once; pip upgrades it in place).
if [ ! -x "$VENV/bin/python" ]; then
	say "making the virtual environment $VENV"
	python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
fi
say "installing netwatch from $SOURCE"
# shellcheck disable=SC2086  # PIP_ARGS is a list of arguments
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_ARGS "$SOURCE"
install -d -m 0755 "$VENV/share/doc/netwatch"
install -m 0644 "$SOURCE/README.md" "$VENV/share/doc/netwatch/README.md"

# 2. The user the service runs as (no login, no home of its own).
if [ "$LIVE" = yes ] && ! getent passwd "$USER_NAME" >/dev/null; then
	say "adding the system user $USER_NAME"
	useradd --system --home-dir /var/lib/netwatch --no-create-home \
		--shell /usr/sbin/nologin --user-group "$USER_NAME"
fi

# 3. Settings, written only when absent: a second run keeps the family's edits. Readable
# by root and the netwatch group only (the household file holds the carers' addresses).
install -d -m 0750 "$ETC"
if [ ! -f "$ETC/netwatch.yaml" ]; then
	say "writing $ETC/netwatch.yaml (source af_packet on $INTERFACE)"
	sed -e "s/^interface: eth0$/interface: $INTERFACE/" \
		"$SOURCE/deploy/netwatch.example.yaml" > "$ETC/netwatch.yaml"
	chmod 0640 "$ETC/netwatch.yaml"
fi
if [ ! -f "$ETC/household.yaml" ]; then
	say "writing $ETC/household.yaml (the example: put your household in it)"
	install -m 0640 "$SOURCE/deploy/household.example.yaml" "$ETC/household.yaml"
fi
if [ "$LIVE" = yes ]; then
	chgrp -R "$USER_NAME" "$ETC"
fi
# Checked as the service will (under --root, the household file alone: the settings name
# it by its path on the finished system).
if [ "$LIVE" = yes ]; then
	CHECK="--kind daemon $ETC/netwatch.yaml"
else
	CHECK="--kind household $ETC/household.yaml"
fi
# shellcheck disable=SC2086  # CHECK is a list of arguments
"$VENV/bin/netwatch" check-config $CHECK >/dev/null 2>&1 ||
	say "warning: problems in $ETC: $PREFIX/bin/netwatch check-config $CHECK"

# 4. The systemd unit, pointing at this prefix, enabled at boot.
install -d -m 0755 "$UNIT_DIR"
sed -e "s|/opt/netwatch|$PREFIX|g" "$SOURCE/deploy/raspberry-pi/netwatch.service" \
	> "$UNIT_DIR/netwatch.service.new"
chmod 0644 "$UNIT_DIR/netwatch.service.new"
mv "$UNIT_DIR/netwatch.service.new" "$UNIT_DIR/netwatch.service"
if [ "$LIVE" = yes ]; then
	systemctl daemon-reload
	systemctl enable netwatch.service
	if [ "$START" = yes ] || systemctl --quiet is-active netwatch.service; then
		systemctl restart netwatch.service
		say "netwatch (re)started: journalctl -u netwatch -f"
	else
		say "enabled; put your household in $ETC/household.yaml, then:" \
			"systemctl start netwatch"
	fi
else
	# What `systemctl enable` does, done inside DIR.
	install -d -m 0755 "$UNIT_DIR/multi-user.target.wants"
	ln -sf /etc/systemd/system/netwatch.service \
		"$UNIT_DIR/multi-user.target.wants/netwatch.service"
	say "installed under $ROOT (enabled; nothing started)"
fi
