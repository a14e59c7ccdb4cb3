#!/bin/sh
# mamori-agent post-installation script.
#
# When it runs: deb — "postinst configure [old-version]" after the files are
# unpacked, on first install and on every upgrade (also "abort-*" after a
# failed upgrade, which needs nothing here); RPM — %post with $1 = 1 on
# install, 2 on upgrade. Every step is idempotent: running it twice changes
# nothing the first run did not.
#
# DPKG_ROOT is set when dpkg installs into another root (dpkg --root with
# --force-script-chrootless); every path is under it, and nothing touches
# the running system's services then.
#
# PAM is never changed here: pam_mamori.so and its pam-auth-update profile
# are installed switched off. The agent switches them on when the policy
# puts login-mfa in enforce mode (docs/mfa.md).
set -e
root="${DPKG_ROOT:-}"

case "$1" in
configure | 1 | 2) ;;
*) exit 0 ;;
esac

# debconf (deb only: dpkg sets DPKG_MAINTSCRIPT_PACKAGE, rpm does not).
# Sourcing confmodule re-runs this script under debconf's frontend, which
# runs the config script first. Values from the environment win over
# debconf's, so `MAMORI_SERVER=… apt-get install ./x.deb` keeps working.
# debconf follows DPKG_ROOT to the target root's own database; a root
# without a debconf configuration is installed without debconf.
use_debconf() {
	[ -n "${DPKG_MAINTSCRIPT_PACKAGE:-}" ] && [ -e /usr/share/debconf/confmodule ] &&
		{ [ -z "$root" ] || [ -e "$root/etc/debconf.conf" ] || [ -e "$root/usr/share/debconf/debconf.conf" ]; }
}
if use_debconf; then
	. /usr/share/debconf/confmodule
	if [ ! -e "$root/etc/default/mamori-agent" ]; then
		db_get mamori-agent/server && [ -z "${MAMORI_SERVER:-}" ] && MAMORI_SERVER="$RET"
		db_get mamori-agent/token && [ -z "${MAMORI_TOKEN:-}" ] && MAMORI_TOKEN="$RET"
		db_get mamori-agent/ca_fingerprint && [ -z "${MAMORI_CA_FINGERPRINT:-}" ] && MAMORI_CA_FINGERPRINT="$RET"
	fi
	# The token must not stay in debconf's database (a password question
	# lives in /var/cache/debconf/passwords.dat): clear it every time,
	# used or not.
	db_set mamori-agent/token "" || true
	db_stop
fi

umask 077

# State directory: device key, certificate, cached policy, spool. Root only.
mkdir -p "$root/var/lib/mamori"
chmod 0700 "$root/var/lib/mamori"

# Silent enrolment. /etc/default/mamori-agent is read by the systemd unit.
# Config management may write it before installing the package; then it is
# kept as it is (it is not a conffile, so dpkg never asks about it). When it
# is absent it is created from the installing command's environment, e.g.
#   MAMORI_SERVER=… MAMORI_TOKEN=… MAMORI_CA_FINGERPRINT=… apt-get install ./mamori-agent.deb
# or from the debconf answers above. It holds the enrolment token: mode
# 0600, root only.
defaults="$root/etc/default/mamori-agent"
# Each value is written in single quotes, which systemd's EnvironmentFile
# parser takes literally. What single quotes cannot carry is refused, and
# the installation fails: a newline or carriage return would start another
# assignment (MAMORI_TOKEN=$'x\nLD_PRELOAD=evil.so' put an LD_PRELOAD= line
# into this root service's environment), and a quote, backslash, $ or
# backtick would end or change the quoting. (A NUL cannot reach a shell
# variable.) Servers, tokens and fingerprints never contain any of these.
nl='
'
cr=$(printf '\r')
check_value() {
	case "$2" in
	*"$nl"* | *"$cr"* | *\'* | *\"* | *\\* | *\$* | *\`*)
		echo "mamori-agent: $1 contains a newline, quote, backslash, \$ or backtick; refusing to write it to /etc/default/mamori-agent" >&2
		echo "mamori-agent: $1 に改行・引用符・バックスラッシュ・\$・バッククォートが含まれているため、/etc/default/mamori-agent に書き込みません" >&2
		exit 1
		;;
	esac
}
if [ ! -e "$defaults" ]; then
	# Checked before anything is written: a refused value leaves no file.
	check_value MAMORI_SERVER "${MAMORI_SERVER:-}"
	check_value MAMORI_TOKEN "${MAMORI_TOKEN:-}"
	check_value MAMORI_CA_FINGERPRINT "${MAMORI_CA_FINGERPRINT:-}"
	mkdir -p "$root/etc/default"
	{
		echo "# mamori-agent enrolment settings, read by mamori-agent.service."
		echo "# The agent enrols itself on its first start when all three are set,"
		echo "# then removes the token from this file: it is not needed again."
		printf "MAMORI_SERVER='%s'\n" "${MAMORI_SERVER:-}"
		printf "MAMORI_TOKEN='%s'\n" "${MAMORI_TOKEN:-}"
		printf "MAMORI_CA_FINGERPRINT='%s'\n" "${MAMORI_CA_FINGERPRINT:-}"
	} >"$defaults"
fi
chown root:root "$defaults" 2>/dev/null || true
chmod 0600 "$defaults"

# Only on the live system, and only when systemd / udevd are running (not
# in a chroot, a container build or an image).
#
# Enabled on the first install only (deb: "configure" with no old version;
# rpm: $1 = 1), as deb-systemd-helper and %systemd_post do: an
# administrator's `systemctl disable mamori-agent` survives every upgrade.
# An upgrade restarts the service only if it is running (try-restart), so
# a stopped service stays stopped.
first_install=no
case "$1" in
configure) [ -z "${2:-}" ] && first_install=yes ;;
1) first_install=yes ;;
esac
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$first_install" = yes ]; then
		systemctl enable mamori-agent.service || true
		# Enabled, not started: it only matters at the next boot (the agent
		# puts the table in place itself while it runs).
		systemctl enable mamori-isolation-boot.service || true
		systemctl start mamori-agent.service ||
			echo "mamori-agent: the service did not start; see journalctl -u mamori-agent" >&2
	else
		# Picks up the new binary if it runs; leaves a stopped one alone.
		systemctl try-restart mamori-agent.service ||
			echo "mamori-agent: the service did not restart; see journalctl -u mamori-agent" >&2
	fi
fi
if [ -z "$root" ] && command -v udevadm >/dev/null 2>&1 && [ -S /run/udev/control ]; then
	# Apply the media rule to block devices already present.
	udevadm control --reload || true
	udevadm trigger --subsystem-match=block --action=change || true
fi
exit 0
