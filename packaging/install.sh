#!/bin/sh
# Install mfadmin from this unpacked tarball on a systemd distribution without the .deb: the
# binary, the unit, the sysusers.d and tmpfiles.d entries, /etc/mfadmin/config.toml (kept if it
# exists), completions and man pages; then the user, group and store directory, and a
# daemon-reload. The service is not enabled or started: make the store first (see
# doc/README-install.md).
#
#   sudo ./install.sh                 # binary in /usr/bin, like the package
#   sudo PREFIX=/usr/local ./install.sh
#   DESTDIR=/tmp/stage ./install.sh   # lay the files out only (no user, no systemctl)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/usr}
DESTDIR=${DESTDIR:-}

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run it as root (or set DESTDIR to lay the files out elsewhere)" >&2
    exit 1
fi
(cd "$here" && sha256sum --quiet -c SHA256SUMS) || {
    echo "install.sh: the files do not match SHA256SUMS; unpack the tarball again" >&2
    exit 1
}

bin=$PREFIX/bin/mfadmin
install -D -m 755 "$here/bin/mfadmin" "$DESTDIR$bin"
# The unit names the binary where this install put it; units in /etc/systemd/system are the admin's.
install -d "$DESTDIR/etc/systemd/system"
sed "s#/usr/bin/mfadmin#$bin#" "$here/systemd/mfadmin.service" >"$DESTDIR/etc/systemd/system/mfadmin.service"
chmod 644 "$DESTDIR/etc/systemd/system/mfadmin.service"
install -D -m 644 "$here/systemd/mfadmin.sysusers" "$DESTDIR/etc/sysusers.d/mfadmin.conf"
install -D -m 644 "$here/systemd/mfadmin.tmpfiles" "$DESTDIR/etc/tmpfiles.d/mfadmin.conf"
if [ -e "$DESTDIR/etc/mfadmin/config.toml" ]; then
    echo "keeping the existing /etc/mfadmin/config.toml (the new example: $here/config.toml)"
else
    install -D -m 644 "$here/config.toml" "$DESTDIR/etc/mfadmin/config.toml"
fi
install -D -m 644 "$here/completions/mfadmin.bash" "$DESTDIR$PREFIX/share/bash-completion/completions/mfadmin"
install -D -m 644 "$here/completions/_mfadmin" "$DESTDIR$PREFIX/share/zsh/site-functions/_mfadmin"
install -D -m 644 "$here/completions/mfadmin.fish" "$DESTDIR$PREFIX/share/fish/vendor_completions.d/mfadmin.fish"
install -d "$DESTDIR$PREFIX/share/man/man1"
install -m 644 "$here"/man/man1/*.1.gz "$DESTDIR$PREFIX/share/man/man1/"
install -D -m 644 "$here/doc/README-install.md" "$DESTDIR$PREFIX/share/doc/mfadmin/README-install.md"
install -D -m 644 "$here/doc/copyright" "$DESTDIR$PREFIX/share/doc/mfadmin/copyright"

if [ -n "$DESTDIR" ]; then
    echo "files laid out under $DESTDIR"
    exit 0
fi

if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers mfadmin.conf
else
    getent group mfadmin >/dev/null || groupadd --system mfadmin
    getent passwd mfadmin >/dev/null || useradd --system --gid mfadmin --home-dir /var/lib/mfadmin \
        --no-create-home --shell /usr/sbin/nologin --comment "mfadmin daemon" mfadmin
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create mfadmin.conf
else
    install -d -m 0700 -o mfadmin -g mfadmin /var/lib/mfadmin
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "installed $bin; next: sudo -u mfadmin $bin init --org NAME --owner YOU, then systemctl enable --now mfadmin"
