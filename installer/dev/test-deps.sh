#!/usr/bin/env bash
# Installs the Debian packages the full test suite needs (`make deps`, run by
# `make test`). As root it installs what is missing; otherwise it names the
# packages and fails, so nothing is silently skipped.
#
# Each line: a probe, then the Debian package that satisfies it, then why.
# A probe names the very file or command the build or a test reads, never a
# neighbour that usually comes with it: protoc alone does not bring the
# well-known .proto files (they are in libprotobuf-dev, which
# protobuf-compiler only recommends, and we install without recommends).
#   /abs/path   a file (a glob is fine) must exist
#   name        a command must be on PATH
#   @check      a function below must succeed (a property, not a file)
#
# `make deps-check` proves this list is complete: it installs exactly these
# packages into a minimal Debian 12 root and runs the steps that read system
# files there (installer/dev/deps-check.sh).
set -euo pipefail
needs=(
  # make proto-check: protoc and the well-known types mamori.proto imports
  "protoc                                             protobuf-compiler"
  "/usr/include/google/protobuf/timestamp.proto       libprotobuf-dev"
  "/usr/include/google/protobuf/duration.proto        libprotobuf-dev"
  # C and cgo: pam_mamori.so, the PAM test drivers, the TPM simulator (cgo, links -lcrypto)
  "gcc                                                gcc"
  "/usr/include/stdio.h                               libc6-dev"
  "/usr/include/security/pam_modules.h                libpam0g-dev"
  "/usr/include/security/pam_ext.h                    libpam0g-dev"
  # pam_mamori.so dlopens libargon2 to check argon2id break-glass lines (agent/pam/pamtest TestPAMStack)
  "/usr/lib/x86_64-linux-gnu/libargon2.so.1           libargon2-1"
  "/usr/include/openssl/evp.h                         libssl-dev"
  "/usr/lib/x86_64-linux-gnu/libcrypto.so             libssl-dev"
  # store conformance on a real PostgreSQL (initdb and postgres run as the package's user)
  "/usr/lib/postgresql/*/bin/initdb                   postgresql"
  "/usr/lib/postgresql/*/bin/postgres                 postgresql"
  # isolation: network namespaces; login-mfa: a private mount namespace
  "ip                                                 iproute2"
  "unshare                                            util-linux"
  "mount                                              mount"
  # isolation: the boot unit is checked by systemd-analyze verify; installer/vmtest
  # boots this machine's systemd as PID 1 of a qemu guest (the agent under its unit)
  "systemd-analyze                                    systemd"
  "/lib/systemd/systemd                               systemd"
  # media: ext4 on loop devices and on the VM's stick; debugfs reads the image afterwards
  "mkfs.ext4                                          e2fsprogs"
  "debugfs                                            e2fsprogs"
  # media on a real kernel: qemu, a static busybox with depmod for the initramfs,
  # dpkg -x to unpack the kernel package apt-get downloads (@apt_lists below)
  "qemu-system-x86_64                                 qemu-system-x86"
  "@static_busybox                                    busybox-static"
  "dpkg                                               dpkg"
  # the busy-mount cut is shown on ext4, vfat and exFAT sticks made on the host
  "mkfs.vfat                                          dosfstools"
  "mkfs.exfat                                         exfatprogs"
  # Windows code run for real under wine; the ProcessPrng stub and C test programs
  # built with mingw (test scaffolding), which includes <windows.h>
  "/usr/lib/wine/wine64                               wine64"
  "/usr/lib/wine/wineserver                           libwine"
  "/usr/bin/wine                                      wine"
  "x86_64-w64-mingw32-gcc                             gcc-mingw-w64-x86-64"
  "/usr/share/mingw-w64/include/windows.h             mingw-w64-common"
  # mamori-cp.dll (KERB_INTERACTIVE_UNLOCK_LOGON) and its LogonUI stand-in
  "/usr/share/mingw-w64/include/ntsecapi.h            mingw-w64-common"
  # the credential provider's parsing under -fsanitize=address,undefined
  "/usr/lib/gcc/x86_64-linux-gnu/*/libasan.so         libgcc-12-dev"
  "/usr/lib/gcc/x86_64-linux-gnu/*/libubsan.so        libgcc-12-dev"
  # the MSI: built by wixl, inspected with msitools, Authenticode-signed
  "wixl                                               wixl"
  "msibuild                                           msitools"
  "msiinfo                                            msitools"
  "osslsigncode                                       osslsigncode"
  # the .rpm and .deb: rpm -qlp, dpkg-deb, and the .deb's preseeded silent enrolment
  "rpm                                                rpm"
  "dpkg-deb                                           dpkg"
  "debconf-set-selections                             debconf"
  # make packages and installer/packaging TestLinters: the distributions' linters
  "lintian                                            lintian"
  "rpmlint                                            rpmlint"
  # make pam strips pam_mamori.so; TestLinters strips its copy the same way
  "strip                                              binutils"
  # TPM identity and PIN keys against a real software TPM
  "swtpm                                              swtpm"
  # the real PAM stack: pamtester, pam-auth-update, a real sshd, test users
  "pamtester                                          pamtester"
  "pam-auth-update                                    libpam-runtime"
  "/usr/sbin/sshd                                     openssh-server"
  # login-mfa: a real OpenSSH client key login against that sshd (the public-key bypass)
  "ssh                                                openssh-client"
  "ssh-keygen                                         openssh-client"
  "useradd                                            passwd"
  "chpasswd                                           passwd"
  "openssl                                            openssl"
  # independent peers: a TOTP implementation and a QR decoder
  "oathtool                                           oathtool"
  "zbarimg                                            zbar-tools"
  # the console in a real browser, with a Japanese font for the screenshots
  "chromium                                           chromium"
  "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf  fonts-ipafont-gothic"
)

# The VM test's initramfs runs busybox as /init with no libraries beside
# it: the dynamically linked `busybox` package passes a /bin/busybox probe
# and then fails inside the guest. It also needs the depmod applet.
static_busybox() {
  local bb
  bb=$(command -v busybox) || return 1
  # grep without -q reads to the end: with pipefail, -q can kill busybox with SIGPIPE.
  busybox --list 2>/dev/null | grep -x depmod >/dev/null || return 1
  ! elf_interp "$bb"
}

# elf_interp FILE: true when the 64-bit ELF FILE names a program interpreter
# (a PT_INTERP program header), i.e. is dynamically linked. Reads the ELF
# header fields e_phoff (offset 32), e_phentsize (54), e_phnum (56) with od.
elf_interp() {
  local f=$1 phoff phentsize phnum i type
  phoff=$(od -An -t u8 -j 32 -N 8 "$f") || return 1
  phentsize=$(od -An -t u2 -j 54 -N 2 "$f")
  phnum=$(od -An -t u2 -j 56 -N 2 "$f")
  for ((i = 0; i < phnum; i++)); do
    type=$(od -An -t u4 -j $((phoff + i * phentsize)) -N 4 "$f")
    [ "$type" -eq 3 ] && return 0
  done
  return 1
}

probe() {
  case $1 in
    @*) "${1#@}" ;;
    /*) compgen -G "$1" >/dev/null ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for line in "${needs[@]}"; do
  read -r p pkg _ <<<"$line"
  probe "$p" || missing+=("$pkg")
done

# The VM test downloads the kernel package with apt-get download: that needs
# package lists, which a fresh machine may not have yet.
apt_lists() { apt-cache show linux-image-amd64 >/dev/null 2>&1; }

if [ ${#missing[@]} -eq 0 ] && apt_lists; then
  exit 0
fi
readarray -t missing < <(printf '%s\n' "${missing[@]}" | awk 'NF && !seen[$0]++')
if [ "$(id -u)" != 0 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "make test needs these Debian packages: ${missing[*]}" >&2
    echo "run as root, or: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  fi
  apt_lists || echo "the VM test downloads a kernel package: run sudo apt-get update first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Say so now if a probe still fails: a package that no longer ships the
# file named here would otherwise show up as a confusing test failure.
bad=()
for line in "${needs[@]}"; do
  read -r p pkg _ <<<"$line"
  probe "$p" || bad+=("$p ($pkg)")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "installed, but still missing: ${bad[*]}" >&2
  exit 1
fi
apt_lists || { echo "apt-cache knows no linux-image-amd64 after apt-get update" >&2; exit 1; }
