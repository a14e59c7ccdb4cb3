#!/usr/bin/env bash
# Installs the Debian packages the full test suite needs (`make deps`, run by
# `make test`). As root it installs what is missing; otherwise it names the
# packages and fails, so nothing is silently skipped.
#
# Each line: a file or command that proves the package is there, then the
# Debian package that provides it.
set -euo pipefail
needs=(
  "protoc                          protobuf-compiler"   # make proto-check
  "/usr/lib/postgresql/*/bin/initdb postgresql"         # store conformance on a real PostgreSQL
  "ip                              iproute2"             # isolation: network namespaces
  "mkfs.ext4                       e2fsprogs"            # media: ext4 on loop devices
  "qemu-system-x86_64              qemu-system-x86"      # media: USB hot-plug on a real kernel
  "/bin/busybox                    busybox-static"       # media: the VM's initramfs
  "/usr/lib/wine/wine64            wine64"               # Windows code run for real under wine
  "/usr/bin/wine                   wine"
  "x86_64-w64-mingw32-gcc          gcc-mingw-w64-x86-64" # the ProcessPrng stub wine 8 lacks (test scaffolding)
  "/usr/share/mingw-w64/include/ntsecapi.h mingw-w64-common" # mamori-cp.dll (KERB_INTERACTIVE_UNLOCK_LOGON) and its LogonUI stand-in
  "/usr/lib/gcc/x86_64-linux-gnu/*/libasan.so libgcc-12-dev" # the credential provider's parsing under -fsanitize=address
  "/usr/lib/gcc/x86_64-linux-gnu/*/libubsan.so libgcc-12-dev" # … and -fsanitize=undefined
  "wixl                            wixl"                 # the MSI
  "msibuild                        msitools"             # MSI inspection and build helpers
  "osslsigncode                    osslsigncode"         # Authenticode signing of .exe and .msi
  "rpm                             rpm"                  # rpm -qlp on the built .rpm
  "swtpm                           swtpm"                # TPM identity against a real software TPM
  "swtpm_setup                     swtpm-tools"
  "/usr/include/security/pam_modules.h libpam0g-dev"    # builds pam_mamori.so (C)
  "pamtester                       pamtester"            # drives the real PAM stack
  "/usr/sbin/sshd                  openssh-server"       # a real login over sshd through pam_mamori.so (keyboard-interactive)
  "oathtool                        oathtool"             # an independent TOTP implementation to cross-check
  "zbarimg                         zbar-tools"           # an independent QR decoder reads mamorictl's terminal QR code
  "pam-auth-update                 libpam-runtime"       # login-mfa: enables pam_mamori.so for real (in a mount namespace)
  "unshare                         util-linux"           # login-mfa: the private mount namespace for that test
  "openssl                         openssl"              # login-mfa: the test user's password hash
  "debconf-set-selections          debconf"              # the .deb's preseeded silent enrolment
  "gcc                             gcc"
  "chromium                        chromium"             # the console in a real browser (chromedp)
  "/usr/share/fonts/opentype/ipafont-gothic fonts-ipafont-gothic" # Japanese in the console screenshots
)
missing=()
for line in "${needs[@]}"; do
  read -r probe pkg _ <<<"$line"
  if [[ $probe == /* ]]; then
    compgen -G "$probe" >/dev/null && continue
  else
    command -v "$probe" >/dev/null 2>&1 && continue
  fi
  missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "make test needs these Debian packages: ${missing[*]}" >&2
  echo "run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
