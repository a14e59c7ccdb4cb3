#!/bin/sh
# mamori-agent post-removal script.
#
# When it runs: deb — "postrm remove" after the files went, "postrm purge"
# when the administrator asked for everything to go (dpkg --purge, apt
# purge), "postrm upgrade" and "abort-*" otherwise; rpm — %postun with
# $1 = 0 on erase, 1 on upgrade. Idempotent.
#
# remove keeps the state directory (/var/lib/mamori: device key and
# certificate, so a reinstall is the same terminal) and the enrolment
# settings; purge deletes them. rpm has no purge: remove /var/lib/mamori
# and /etc/default/mamori-agent by hand to forget the enrolment.
set -e
root="${DPKG_ROOT:-}"

case "$1" in
purge)
	rm -rf "$root/var/lib/mamori"
	rm -f "$root/etc/default/mamori-agent"
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
