#!/usr/bin/env bash
# CI check of what an operator installs: one release build (packaging/build.sh) for the .deb and the
# tarball; the binary's glibc baseline and size; lintian; systemd-analyze verify on the unit; then
# the .deb installed into a clean Debian root (debootstrap --variant=minbase), where `mfadmin init`,
# `mfadmin serve` and a CLI command against it run as the package sets them up, and the tarball's
# binary and install.sh run too. Prints "N passed, N failed"; exits non-zero on a failure.
#
# Needs root (debootstrap, chroot, mounts). MFADMIN_INSTALL_TOOLS=1 installs missing tools first.
# The pristine root is cached in $MFADMIN_DEBROOT_CACHE (default /var/cache/mfadmin-ci/debroot.tar)
# and unpacked anew each run; delete the file to bootstrap again.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/package
LOGS=$ROOT/target/package-check
CACHE=${MFADMIN_DEBROOT_CACHE:-/var/cache/mfadmin-ci/debroot.tar}
SUITE=${MFADMIN_DEBIAN_SUITE:-stable}
MIRROR=${MFADMIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
started=$(date +%s)
passed=0
failed=0
rm -rf "$LOGS"
mkdir -p "$LOGS"

ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [[ -n ${2:-} && -f $2 ]] && sed 's/^/      /' "$2" | tail -n 25; }
# check NAME COMMAND...: run it with its output in $LOGS/NAME.log.
check() {
    local name=$1
    shift
    local log=$LOGS/${name//[^A-Za-z0-9_.-]/_}.log
    if "$@" >"$log" 2>&1; then ok "$name"; else bad "$name" "$log"; fi
}
finish() {
    printf '\nchecked in %ss\n%d passed, %d failed\n' "$(($(date +%s) - started))" "$passed" "$failed"
    [[ $failed -eq 0 ]]
    exit
}
phase() { printf '== %s (%ss)\n' "$1" "$(($(date +%s) - started))"; }

if [[ ${MFADMIN_INSTALL_TOOLS:-0} = 1 ]]; then
    missing=()
    for tool in lintian debootstrap objdump; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian debootstrap binutils >/dev/null
    fi
fi

# ---------------------------------------------------------------- build
phase "build"
if ! MFADMIN_INSTALL_TOOLS=${MFADMIN_INSTALL_TOOLS:-0} packaging/build.sh >"$LOGS/build.log" 2>&1; then
    bad "packaging/build.sh" "$LOGS/build.log"
    finish
fi
ok "packaging/build.sh ($(grep -o 'glibc baseline: [^)]*' "$LOGS/build.log"))"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
DEB=$(ls "$OUT"/mfadmin_*.deb)
TARBALL=$OUT/mfadmin-$VERSION-x86_64-linux.tar.gz
BIN=$ROOT/target/package-assets/mfadmin

glibc_baseline() {
    local newest
    newest=$(objdump -T "$BIN" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
    echo "newest glibc symbol version needed: $newest"
    [[ $(printf '%s\n2.28\n' "$newest" | sort -V | tail -n1) = 2.28 ]]
}
check "binary needs glibc 2.28 at most" glibc_baseline
small() { local s; s=$(stat -c %s "$BIN"); echo "$s bytes"; [[ $s -le $((25 * 1024 * 1024)) ]]; }
check "installed binary is at most 25 MiB (debug info apart)" small
check "debug link names the .debug file" bash -c "readelf --string-dump=.gnu_debuglink '$BIN' | grep -q 'mfadmin-$VERSION.debug'"
check "SHA256SUMS match" bash -c "cd '$OUT' && sha256sum -c SHA256SUMS"

# ---------------------------------------------------------------- lintian, systemd-analyze
phase "lintian"
check "lintian: no errors" lintian --fail-on error --suppress-tags-from-file /dev/null "$DEB"
grep -E '^(E|W):' "$LOGS/lintian__no_errors.log" 2>/dev/null | sed 's/^/      /'

phase "systemd-analyze verify"
verify_unit() {
    # The unit as installed, but naming the binary that exists here; the man pages it cites from
    # the generated ones.
    local dir
    dir=$(mktemp -d)
    sed "s#/usr/bin/mfadmin#$BIN#" contrib/systemd/mfadmin.service >"$dir/mfadmin.service"
    mkdir -p "$dir/man/man1" && cp target/package-assets/man/*.1.gz "$dir/man/man1/"
    MANPATH=$dir/man SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$dir/mfadmin.service" 2>&1 | grep -v '^/lib/systemd/system/\|^/etc/systemd/system/' | tee "$dir/out"
    local rc=${PIPESTATUS[0]}
    rm -rf "$dir"
    return "$rc"
}
check "systemd-analyze verify mfadmin.service" verify_unit

# ---------------------------------------------------------------- a clean Debian root
phase "Debian root"
DEBROOT=$(mktemp -d /tmp/mfadmin-debroot.XXXXXX)
SERVE_PID=
cleanup() {
    [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null
    umount -l "$DEBROOT/proc" "$DEBROOT/dev" 2>/dev/null
    rm -rf --one-file-system "$DEBROOT"
}
trap cleanup EXIT

make_root() {
    if [[ -f $CACHE ]]; then
        echo "unpacking the cached root $CACHE"
        tar -C "$DEBROOT" -xf "$CACHE"
    else
        local t=$(date +%s)
        debootstrap --variant=minbase "$SUITE" "$DEBROOT" "$MIRROR" || return 1
        echo "debootstrap took $(($(date +%s) - t))s"
        mkdir -p "$(dirname "$CACHE")" && tar -C "$DEBROOT" -cf "$CACHE" .
    fi
}
if ! check "clean Debian root ($SUITE, minbase)" make_root; then finish; fi
# mktemp made the root 0700: as on any Debian system, / must be 0755 for mfadmin's own user to run there.
chmod 0755 "$DEBROOT"
grep -h 'took\|unpacking' "$LOGS"/clean_Debian_root*.log | sed 's/^/      /'
mount -t proc proc "$DEBROOT/proc"
mount --bind /dev "$DEBROOT/dev"
in_root() { chroot "$DEBROOT" "$@"; }
as_daemon() { chroot --userspec=mfadmin:mfadmin "$DEBROOT" env HOME=/var/lib/mfadmin "$@"; }

cp "$DEB" "$DEBROOT/tmp/mfadmin.deb"
check "dpkg -i the .deb" in_root dpkg -i /tmp/mfadmin.deb
check "the mfadmin user and group exist" in_root getent passwd mfadmin
check "/var/lib/mfadmin is the daemon's, mode 700" bash -c "chroot '$DEBROOT' stat -c '%U:%G %a' /var/lib/mfadmin | tee /dev/stderr | grep -qx 'mfadmin:mfadmin 700'"
check "config.toml is a conffile" bash -c "chroot '$DEBROOT' dpkg-query -W -f='\${Conffiles}' mfadmin | grep -q /etc/mfadmin/config.toml"
check "unit, sysusers, tmpfiles, completions, man pages installed" bash -c "cd '$DEBROOT' && ls lib/systemd/system/mfadmin.service usr/lib/sysusers.d/mfadmin.conf usr/lib/tmpfiles.d/mfadmin.conf usr/share/bash-completion/completions/mfadmin usr/share/zsh/vendor-completions/_mfadmin usr/share/fish/vendor_completions.d/mfadmin.fish usr/share/man/man1/mfadmin.1.gz usr/share/man/man1/mfadmin-serve.1.gz"

PASSWORD='a long enough password for ci'
check "mfadmin init (as mfadmin, system defaults)" bash -c "printf '%s\n' '$PASSWORD' | chroot --userspec=mfadmin:mfadmin '$DEBROOT' env HOME=/var/lib/mfadmin mfadmin init --org Acme --owner admin --password-stdin --no-enforce-mfa"
check "the store is in /var/lib/mfadmin" test -f "$DEBROOT/var/lib/mfadmin/mfadmin.key"
KEY=$(as_daemon mfadmin apikey create --user admin --name ci --role admin 2>"$LOGS/apikey.log")
if [[ $KEY == mfa_* || ${#KEY} -gt 20 ]]; then ok "mfadmin apikey create"; else bad "mfadmin apikey create" "$LOGS/apikey.log"; fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# What the unit's RuntimeDirectory=mfadmin (mode 0750) makes for the local socket under systemd.
install -d -m 0750 -o "$(in_root id -u mfadmin)" -g "$(in_root id -g mfadmin)" "$DEBROOT/run/mfadmin"
# Started directly (not through a function, which would fork a shell): $! is the server itself.
chroot --userspec=mfadmin:mfadmin "$DEBROOT" env HOME=/var/lib/mfadmin mfadmin serve --listen "127.0.0.1:$PORT" >"$LOGS/serve.log" 2>&1 &
SERVE_PID=$!
ready() {
    for _ in $(seq 1 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz") = 200 ]] && return 0
        kill -0 "$SERVE_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
check "mfadmin serve answers /readyz 200" ready
check "mfadmin user list --remote (MFADMIN_TOKEN)" bash -c "chroot '$DEBROOT' env MFADMIN_TOKEN='$KEY' mfadmin user list --remote http://127.0.0.1:$PORT | tee /dev/stderr | grep -qw admin"
check "the local socket /run/mfadmin/mfadmin.sock is mfadmin's group's, mode 660" bash -c "chroot '$DEBROOT' stat -c '%G %a' /run/mfadmin/mfadmin.sock | tee /dev/stderr | grep -qx 'mfadmin 660'"
# As root, then as a member of the mfadmin group: no token, no --remote; the CLI finds the daemon's socket.
check "mfadmin user list through the socket (root)" bash -c "chroot '$DEBROOT' mfadmin -v user list 2>&1 | tee /dev/stderr | grep -q 'through the running server' && chroot '$DEBROOT' mfadmin user list | grep -qw admin"
in_root useradd --create-home --groups mfadmin --shell /bin/sh ops
check "mfadmin mfa reset through the socket (a member of the mfadmin group)" bash -c "chroot --userspec=ops:ops --groups=mfadmin '$DEBROOT' env HOME=/home/ops mfadmin mfa reset admin --reason 'package check' --yes | tee /dev/stderr | grep -q 'admin' && chroot '$DEBROOT' mfadmin audit list --filter 'package check' | tee /dev/stderr | grep -q 'console:ops'"
check "mfadmin backup through the socket while the server runs" bash -c "chroot '$DEBROOT' mfadmin backup /root/while-serving.backup 2>&1 | tee /dev/stderr | grep -q 'Backed up'"
stop_serve() {
    kill -TERM "$SERVE_PID" && wait "$SERVE_PID"
    local rc=$?
    SERVE_PID=
    cat "$LOGS/serve.log"
    [[ $rc -eq 0 ]] && grep -q 'store flushed' "$LOGS/serve.log"
}
check "mfadmin serve stops on SIGTERM and flushes" stop_serve

mkdir -p "$DEBROOT/opt/tarball"
tar -C "$DEBROOT/opt/tarball" -xzf "$TARBALL"
T=/opt/tarball/mfadmin-$VERSION-x86_64-linux
check "the tarball's binary --version" bash -c "chroot '$DEBROOT' $T/bin/mfadmin --version | grep -qx 'mfadmin $VERSION'"
check "the tarball's install.sh (DESTDIR)" bash -c "chroot '$DEBROOT' env DESTDIR=/tmp/stage sh $T/install.sh && test -x '$DEBROOT/tmp/stage/usr/bin/mfadmin' && grep -q 'ExecStart=/usr/bin/mfadmin' '$DEBROOT/tmp/stage/etc/systemd/system/mfadmin.service'"

finish
