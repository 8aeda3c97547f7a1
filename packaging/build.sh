#!/usr/bin/env bash
# Build mfadmin's release artifacts from one release build: the .deb (cargo deb), the tarball for
# other distributions with install.sh, the split debug info, and SHA256SUMS, in target/package/.
#
# The binary is built against glibc 2.28 with cargo-zigbuild when it and zig (the `ziglang` PyPI
# package, in target/zig-venv) are there; MFADMIN_PLAIN_BUILD=1 or a missing tool falls back to a
# plain `cargo build --release` (whose binary needs the build host's glibc).
# MFADMIN_INSTALL_TOOLS=1 installs what is missing first (cargo-deb, cargo-zigbuild, ziglang);
# MFADMIN_BINARY=PATH packages that binary instead of building one.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# cargo deb reads the assets at these paths, relative to the crate.
ASSETS=$ROOT/target/package-assets
OUT=$ROOT/target/package
TRIPLE=x86_64-unknown-linux-gnu
GLIBC=2.28
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
NAME=mfadmin-$VERSION-x86_64-linux
ZIG_VENV=$ROOT/target/zig-venv

say() { printf '== %s\n' "$*" >&2; }

if [[ ${MFADMIN_INSTALL_TOOLS:-0} = 1 ]]; then
    command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
    command -v cargo-zigbuild >/dev/null || cargo install cargo-zigbuild --locked
    if ! "$ZIG_VENV/bin/python" -m ziglang version >/dev/null 2>&1; then
        python3 -m venv "$ZIG_VENV" && "$ZIG_VENV/bin/pip" install --quiet ziglang
    fi
fi
command -v cargo-deb >/dev/null || { echo "cargo-deb is missing: cargo install cargo-deb --locked (or MFADMIN_INSTALL_TOOLS=1)" >&2; exit 1; }

# ---- one release build
zig_ok() {
    [[ ${MFADMIN_PLAIN_BUILD:-0} != 1 ]] && command -v cargo-zigbuild >/dev/null \
        && [[ -x $ZIG_VENV/bin/python ]] && "$ZIG_VENV/bin/python" -m ziglang version >/dev/null 2>&1
}
if [[ -n ${MFADMIN_BINARY:-} ]]; then
    say "packaging the given binary $MFADMIN_BINARY (no build)"
    BIN=$MFADMIN_BINARY
    BASELINE=given
elif zig_ok; then
    say "release build against glibc $GLIBC (cargo zigbuild)"
    # cargo-zigbuild finds zig through `python3 -m ziglang` of the venv first on PATH.
    PATH=$ZIG_VENV/bin:$PATH cargo zigbuild --release --locked --target "$TRIPLE.$GLIBC"
    BIN=$TARGET_DIR/$TRIPLE/release/mfadmin
    BASELINE=$GLIBC
else
    say "release build for this host's glibc (cargo-zigbuild or ziglang not found)"
    cargo build --release --locked
    BIN=$TARGET_DIR/release/mfadmin
    BASELINE=host
fi

rm -rf "$ASSETS" "$OUT"
mkdir -p "$ASSETS/completions" "$ASSETS/man" "$OUT"

# ---- debug info apart, so the installed binary is small; the .debug file is an artifact of its own
say "splitting debug info"
objcopy --only-keep-debug "$BIN" "$OUT/mfadmin-$VERSION.debug"
objcopy --strip-all --remove-section=.comment --add-gnu-debuglink="$OUT/mfadmin-$VERSION.debug" "$BIN" "$ASSETS/mfadmin"
chmod 755 "$ASSETS/mfadmin"

# ---- completions and man pages, from the binary's own clap definitions
say "completions and man pages"
"$ASSETS/mfadmin" completions bash >"$ASSETS/completions/mfadmin.bash"
"$ASSETS/mfadmin" completions zsh >"$ASSETS/completions/_mfadmin"
"$ASSETS/mfadmin" completions fish >"$ASSETS/completions/mfadmin.fish"
"$ASSETS/mfadmin" man "$ASSETS/man" 2>/dev/null
gzip -9n "$ASSETS"/man/*.1

# ---- the .deb
say "cargo deb"
cargo deb --no-build --no-strip --output "$OUT/"

# ---- the tarball: the same files, laid out by kind, with install.sh
say "tarball"
STAGE=$ROOT/target/package-stage/$NAME
rm -rf "$ROOT/target/package-stage"
mkdir -p "$STAGE"/{bin,systemd,completions,man/man1,doc}
install -m 755 "$ASSETS/mfadmin" "$STAGE/bin/mfadmin"
install -m 644 contrib/systemd/mfadmin.service "$STAGE/systemd/mfadmin.service"
install -m 644 contrib/systemd/mfadmin.sysusers "$STAGE/systemd/mfadmin.sysusers"
install -m 644 contrib/systemd/mfadmin.tmpfiles "$STAGE/systemd/mfadmin.tmpfiles"
install -m 644 config.example.toml "$STAGE/config.toml"
install -m 644 "$ASSETS"/completions/* "$STAGE/completions/"
install -m 644 "$ASSETS"/man/*.1.gz "$STAGE/man/man1/"
install -m 644 packaging/README-install.md "$STAGE/doc/README-install.md"
install -m 644 packaging/debian/copyright "$STAGE/doc/copyright"
install -m 755 packaging/install.sh "$STAGE/install.sh"
(cd "$STAGE" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
tar -C "$ROOT/target/package-stage" --owner=0 --group=0 --numeric-owner --sort=name -czf "$OUT/$NAME.tar.gz" "$NAME"

(cd "$OUT" && sha256sum -- *.deb "$NAME.tar.gz" "mfadmin-$VERSION.debug" >SHA256SUMS)

size() { stat -c %s "$1"; }
say "built (glibc baseline: $BASELINE):"
ls -l "$OUT" >&2
printf 'binary: %s bytes installed (%s before splitting debug info)\n' "$(size "$ASSETS/mfadmin")" "$(size "$BIN")" >&2
