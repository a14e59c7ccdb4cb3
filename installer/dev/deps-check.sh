#!/usr/bin/env bash
# `make deps-check`: proves that installer/dev/test-deps.sh names every
# Debian package the build and the tests read from the system, without
# trusting this machine's history (a package installed by hand, or pulled in
# as a recommendation, hides a missing line there).
#
# It builds a minimal Debian 12 root with mmdebstrap (variant minbase, plus
# what a fresh machine of ours always has: git, make, CA certificates), copies
# the work tree in (tracked and untracked, not ignored: what you are about to
# commit), lends it this machine's Go toolchain and module cache (read-only
# and shared; the build cache is fresh, so cgo compiles against the root's
# headers), and inside it with chroot, as root and with CI=true:
#
#   1. runs test-deps.sh, which installs with --no-install-recommends;
#   2. make proto-check, make pam, make packages (protoc and the well-known
#      types, gcc and the PAM headers, wixl, rpm);
#   3. go test of the packages named by DEPS_CHECK_PKGS (default: all, with
#      MAMORI_VM_TEST=1: the busybox initramfs and the kernel download, wine,
#      swtpm, PostgreSQL, pamtester, sshd, Chromium), where a test that would
#      skip fails because CI=true.
#
# Root only (mmdebstrap, chroot, mounts in a private mount namespace that
# vanish with it). About 25–40 minutes on 2 cores, most of it the test run;
# DEPS_CHECK_PKGS='./agent/pam/...' narrows step 3. DEPS_CHECK_ROOT=DIR reuses
# an unpacked root made by an earlier run (step 1 still runs inside it).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "deps-check needs root: it builds a Debian root with mmdebstrap and chroots into it" >&2
  exit 1
fi
src=$(git rev-parse --show-toplevel)
command -v mmdebstrap >/dev/null || {
  echo "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends mmdebstrap >/dev/null
}
goroot=$(go env GOROOT)
modcache=$(go env GOMODCACHE)
pkgs=${DEPS_CHECK_PKGS:-./...}

work=$(mktemp -d /var/tmp/mamori-deps-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ -n "${DEPS_CHECK_ROOT:-}" ]; then
  root=$DEPS_CHECK_ROOT
else
  root=$work/root
  echo "deps-check: building a minimal Debian 12 root in $root"
  start=$SECONDS
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,git,make bookworm "$root"
  echo "deps-check: root built in $((SECONDS - start)) s"
fi
rm -rf "$root/src"
mkdir -p "$root/src"
(cd "$src" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -C "$root/src" -xf -
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Where this machine reaches registries through a proxy whose CA it trusts
# locally, the root needs the same CA to fetch Go modules.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi

# The steps inside the root. Each is timed so the closing line says where
# the time went.
cat >"$root/deps-check-steps.sh" <<'EOF'
set -euo pipefail
cd /src
step() { local s=$SECONDS; echo "deps-check: $*"; "$@"; echo "deps-check: ok in $((SECONDS - s)) s: $*"; }
step bash installer/dev/test-deps.sh
step make --no-print-directory proto-check
step make --no-print-directory pam
step make --no-print-directory packages
step env MAMORI_VM_TEST=1 go test -count=1 -timeout 40m $DEPS_CHECK_PKGS
EOF

start=$SECONDS
unshare -m --propagation private bash -euo pipefail -c '
  root=$1 goroot=$2 modcache=$3
  # The root a mount point of its own, as / is on a machine: tests that
  # change the propagation of / (unshare -m, ip netns) need that.
  mount --bind "$root" "$root"
  mount --rbind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount -t tmpfs tmpfs "$root/run"
  mount -t tmpfs tmpfs "$root/tmp"
  mkdir -p "$root/usr/local/go" "$root/root/go/pkg/mod"
  mount --bind "$goroot" "$root/usr/local/go"
  mount -o remount,bind,ro "$root/usr/local/go"
  mount --bind "$modcache" "$root/root/go/pkg/mod"
  exec chroot "$root" /usr/bin/env -i \
    PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM=dumb CI=true LANG=C.UTF-8 \
    GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOPROXY="$4" \
    DEPS_CHECK_PKGS="$5" \
    bash /deps-check-steps.sh
' deps-check "$root" "$goroot" "$modcache" "$(go env GOPROXY)" "$pkgs"
echo "deps-check: passed in a fresh Debian 12 root in $((SECONDS - start)) s (root build not counted)"
