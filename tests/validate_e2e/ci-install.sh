#!/usr/bin/env bash
# Install what tests/validate_e2e/run.sh drives (Debian/Ubuntu), only when something is missing.
# Non-interactive; uses sudo only when not root. The packages' own services are not started here.
set -euo pipefail

PACKAGES=(freeradius freeradius-rest freeradius-utils libpam-radius-auth pamtester python3)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "validate e2e: packages present"
    exit 0
fi
command -v apt-get >/dev/null || { echo "validate e2e: apt-get not found; install ${missing[*]} by hand" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "validate e2e: not root and no sudo; install ${missing[*]} as root" >&2; exit 1; }
    SUDO=(sudo -n)
fi
echo "validate e2e: installing ${missing[*]}"
# policy-rc.d 101: the packages' postinst scripts must not start a system FreeRADIUS on port 1812.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    ADDED_POLICY=1
fi
trap '[ -n "$ADDED_POLICY" ] && "${SUDO[@]}" rm -f "$POLICY"' EXIT
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
