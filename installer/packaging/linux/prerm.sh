#!/bin/sh
# mamori-agent pre-removal script.
#
# When it runs: deb — "prerm remove" before the files go, "prerm upgrade
# new-version" before an upgrade (nothing to do: postinst restarts the
# service with the new binary); RPM — %preun with $1 = 0 on erase, 1 on
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
	systemctl disable mamori-isolation-boot.service || true
fi

# pam_mamori.so is about to go. A `required` module that cannot be loaded
# fails every login, so take it out of PAM first — only what the agent
# switched on, and only on the live system.
if [ -z "$root" ]; then
	if [ -e /usr/share/pam-configs/mamori ] && command -v pam-auth-update >/dev/null 2>&1; then
		pam-auth-update --package --remove mamori || true
	fi
	if command -v authselect >/dev/null 2>&1 && authselect current --raw 2>/dev/null | grep -qw with-mamori; then
		authselect disable-feature with-mamori || true
	fi
	# A line added by hand (pam_config=manual) is not ours to edit: say so
	# loudly, the administrator must remove it or nobody can log in.
	if grep -rlsE '^[^#]*pam_mamori\.so' /etc/pam.d >/dev/null 2>&1; then
		echo "mamori-agent: WARNING: /etc/pam.d still names pam_mamori.so ($(grep -rlsE '^[^#]*pam_mamori\.so' /etc/pam.d | tr '\n' ' '))." >&2
		echo "mamori-agent: remove those lines now: once the module is gone, PAM refuses every login through them." >&2
	fi
fi
exit 0
