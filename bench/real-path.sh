#!/usr/bin/env bash
# The real-path figures of docs/performance.md in one run, as a site builds its store:
#   1. `init`, `user import` of 100,000 people, then `user import` of 1,000,000 more (a second
#      export whose names do not collide): time and resident peak of each, size, `mfadmin check`
#   2. bench/run.sh: `init` + `user import` of 1,000,000, 100,000 enrolled one commit at a time and
#      reset one request at a time through the API; the store's size, `serve`'s start, and lists
#      with a new filter on every request
#   3. bench/tui.sh STORE=import: the console's first rows on a store of 1,000,000 imported users
# Each step says the load average it started at. Stops by itself; nothing listens beyond 127.0.0.1.
# Needs what bench/run.sh and bench/tui.sh need (wrk, curl, tmux, python3).
# Environment: MFADMIN=path (default target/release/mfadmin, built if missing)  FIRST=100000
#              MORE=1000000 (the two imports of step 1)  USERS=1000000 (steps 2 and 3)  STEPS="1 2 3"
set -euo pipefail
cd "$(dirname "$0")/.."
MFADMIN=${MFADMIN:-target/release/mfadmin}
[ -x "$MFADMIN" ] || cargo build --release --bin mfadmin
MFADMIN=$(realpath "$MFADMIN")
export MFADMIN
FIRST=${FIRST:-100000}
MORE=${MORE:-1000000}
USERS=${USERS:-1000000}
STEPS=${STEPS:-"1 2 3"}
step() { [[ " $STEPS " == *" $1 "* ]]; }
load() { echo "== $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)"; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
step 1 && (
    load
    unset MFADMIN_CONFIG
    export MFADMIN_DATA_DIR="$WORK/data" MFADMIN_SERVER_SOCKET=""
    python3 bench/gen-users-csv.py "$FIRST" 1 > "$WORK/u100k.csv"
    python3 bench/gen-users-csv.py "$MORE" 2 x > "$WORK/x1m.csv"
    printf 'correct-horse-battery-staple-42\n' | "$MFADMIN" init --org Acme --owner boss --password-stdin >/dev/null
    "$MFADMIN" org add Globex >/dev/null
    "$MFADMIN" org add Initech >/dev/null
    timed() { /usr/bin/time -f '%e s, %M KB resident peak' "$MFADMIN" user import "$1" 2>&1 >/dev/null | tail -n 1; }
    echo "init + user import of $FIRST: $(timed "$WORK/u100k.csv")"
    echo "user import of $MORE into that store of $((FIRST + 1)): $(timed "$WORK/x1m.csv")"
    echo "store on disk: $(du -sb "$WORK/data/store" | cut -f1) bytes"
    "$MFADMIN" check | tail -n 3
)
rm -rf "$WORK/data"
if step 2; then
    load
    USERS=$USERS ENROLL=$((USERS / 10)) DURATION=10s bash bench/run.sh
fi
if step 3; then
    load
    STORE=import USERS=$USERS ROUNDS=2 bash bench/tui.sh | tail -n 6
fi
load
