#!/bin/sh
# mamori-agent post-removal script.
#
# When it runs: deb — "postrm remove" after the files went, "postrm purge"
# when the administrator asked for everything to go (dpkg --purge, apt
# purge), "postrm upgrade" and "abort-*" otherwise; RPM — %postun with
# $1 = 0 on erase, 1 on upgrade. Idempotent.
#
# remove keeps the state directory (/var/lib/mamori: device key and
# certificate, so a reinstall is the same terminal) and the enrolment
# settings; purge deletes them and forgets the debconf answers. rpm has no
# purge: remove /var/lib/mamori and /etc/default/mamori-agent by hand to
# forget the enrolment.
set -e
root="${DPKG_ROOT:-}"

case "$1" in
purge)
	rm -rf "$root/var/lib/mamori"
	rm -f "$root/etc/default/mamori-agent"
	# Forget the debconf answers (debconf follows DPKG_ROOT to the
	# target root's database, when that root has one).
	if [ -e /usr/share/debconf/confmodule ] &&
		{ [ -z "$root" ] || [ -e "$root/etc/debconf.conf" ] || [ -e "$root/usr/share/debconf/debconf.conf" ]; }; then
		. /usr/share/debconf/confmodule
		db_purge || true
		db_stop || true
	fi
	;;
remove | 0) ;;
*) exit 0 ;;
esac

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
if [ -z "$root" ] && command -v udevadm >/dev/null 2>&1 && [ -S /run/udev/control ]; then
	# The media rule is gone; new devices are no longer forced read-only.
	udevadm control --reload || true
fi
exit 0
