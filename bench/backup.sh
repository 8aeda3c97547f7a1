#!/usr/bin/env bash
# Backup and restore on the path a site takes: `init`, `user import` of USERS people (three orgs),
# then ROUNDS backups to a file and to standard output, and a restore of the last into an empty
# data directory; each timed with its peak resident memory (GNU time). Stops by itself.
#
# Environment: MFADMIN=path (default target/release/mfadmin, built if missing)  USERS=100000
#              ROUNDS=3  WORK=dir (default: mktemp -d; removed at the end unless given)
# Prints one line per step: what, seconds, peak KB, bytes of the backup.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-100000}
ROUNDS=${ROUNDS:-3}
MFADMIN=${MFADMIN:-target/release/mfadmin}
[ -x "$MFADMIN" ] || cargo build --release --bin mfadmin
MFADMIN=$(realpath "$MFADMIN")
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
M() { "$MFADMIN" --data-dir "$WORK/data" "$@"; }
timed() { /usr/bin/time -f "%e %M" -o "$WORK/time" "$@"; read -r secs kb < "$WORK/time"; }

python3 bench/gen-users-csv.py "$USERS" 1 > "$WORK/users.csv"
echo 'correct-horse-battery-staple-42' | M init --org Acme --owner boss --password-stdin >/dev/null
M org add Globex >/dev/null && M org add Initech >/dev/null
timed "$MFADMIN" --data-dir "$WORK/data" user import "$WORK/users.csv" >/dev/null
echo "import $USERS users: ${secs} s, ${kb} KB"
for i in $(seq "$ROUNDS"); do
  timed "$MFADMIN" --data-dir "$WORK/data" backup "$WORK/b$i.backup" >/dev/null 2>&1
  echo "backup to a file ($i): ${secs} s, ${kb} KB, $(stat -c %s "$WORK/b$i.backup") bytes"
  timed sh -c "'$MFADMIN' --data-dir '$WORK/data' backup - > '$WORK/s$i.backup' 2>/dev/null"
  echo "backup - ($i): ${secs} s, ${kb} KB, $(stat -c %s "$WORK/s$i.backup") bytes"
done
mkdir -m 700 "$WORK/restored"
cp "$WORK/data/mfadmin.key" "$WORK/restored/"
timed "$MFADMIN" --data-dir "$WORK/restored" restore "$WORK/b$ROUNDS.backup" >/dev/null
echo "restore into an empty data directory: ${secs} s, ${kb} KB"
"$MFADMIN" --data-dir "$WORK/restored" check | tail -n 2
