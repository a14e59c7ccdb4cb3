#!/bin/sh
# mamori-agent pre-removal script.
#
# When it runs: deb — "prerm remove" before the files go, "prerm upgrade
# new-version" before an upgrade (nothing to do: postinst restarts the
# service with the new binary); rpm — %preun with $1 = 0 on erase, 1 on
# upgrade. Idempotent.
set -e
root="${DPKG_ROOT:-}"

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl stop mamori-agent.service || true
	systemctl disable mamori-agent.service || true
fi
exit 0
