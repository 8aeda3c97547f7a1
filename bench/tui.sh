#!/usr/bin/env bash
# The console on a large store, end to end, in a real terminal (tmux):
#   1. first frame and first rows drawn, and every user loaded: time since the launch (demo path),
#      or since the Enter that logs in (import path)
#   2. filter keystrokes: from the key reaching the console to the frame showing its result drawn
#      (typed one at a time: growing text, backspaces, new words), median and p99
#   3. resident memory once every user is loaded
# The console writes its own timings (MFADMIN_TUI_TIMINGS, see src/tui/mod.rs); this script only
# drives it. Stops by itself; nothing listens on the network.
#
# Needs tmux. Builds target/release/mfadmin if missing.
# Environment: MFADMIN=path  USERS=1000000  ROUNDS=8  WORK=dir (default: mktemp -d; a WORK that
#              already holds WORK/data from an earlier run is reused, which skips making the store)
#              STORE=demo (`mfadmin demo` into an empty directory, `tui --demo` logs in by itself) or
#              STORE=import (`init`, `user import` of USERS people from bench/gen-users-csv.py; the
#              owner logs in at the console's login screen, typed through tmux; the owner's org does
#              not enforce MFA here, so no code is asked for)
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000000}
ROUNDS=${ROUNDS:-8}
MFADMIN=${MFADMIN:-target/release/mfadmin}

command -v tmux >/dev/null || { echo "tmux is missing: apt-get install -y tmux" >&2; exit 1; }
[ -x "$MFADMIN" ] || cargo build --release --bin mfadmin
MFADMIN=$(realpath "$MFADMIN")
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
DATA="$WORK/data"
TIMINGS="$WORK/tui-timings.txt"
SESSION="mfadmin-bench-tui-$$"
trap 'tmux kill-session -t "$SESSION" 2>/dev/null || true' EXIT

STORE=${STORE:-demo}
PASSWORD=bench-owner-password
export MFADMIN_SERVER_SOCKET=""  # the store itself, never a server's socket
if [ ! -e "$DATA/store" ] && [ "$STORE" = import ]; then
    echo "creating a store of $USERS imported users in $DATA…"
    printf '%s\n' "$PASSWORD" | MFADMIN_DATA_DIR="$DATA" "$MFADMIN" init --org Acme --owner owner --password-stdin >/dev/null
    MFADMIN_DATA_DIR="$DATA" "$MFADMIN" org enforce-mfa --org Acme off >/dev/null
    for org in Globex Initech; do MFADMIN_DATA_DIR="$DATA" "$MFADMIN" org add "$org" >/dev/null; done
    python3 bench/gen-users-csv.py "$USERS" 1 > "$WORK/users.csv"
    MFADMIN_DATA_DIR="$DATA" "$MFADMIN" user import "$WORK/users.csv" >/dev/null
elif [ ! -e "$DATA/store" ]; then
    echo "creating a demo store of $USERS users in $DATA (about a minute a million)…"
    MFADMIN_DATA_DIR="$DATA" "$MFADMIN" demo --users "$USERS" >/dev/null
fi

rm -f "$TIMINGS"
if [ "$STORE" = import ]; then
    tmux new-session -d -s "$SESSION" -x 160 -y 45 \
        "MFADMIN_TUI_TIMINGS='$TIMINGS' MFADMIN_DATA_DIR='$DATA' exec '$MFADMIN' tui"
    for _ in $(seq 1 100); do tmux capture-pane -p -t "$SESSION" | grep -q 'User name' && break; sleep 0.05; done
    tmux send-keys -t "$SESSION" owner Tab "$PASSWORD"
    sleep 0.3
    launch=$(date +%s%N)
    tmux send-keys -t "$SESSION" Enter
else
    launch=$(date +%s%N)
    tmux new-session -d -s "$SESSION" -x 160 -y 45 \
        "MFADMIN_TUI_TIMINGS='$TIMINGS' MFADMIN_DATA_DIR='$DATA' exec '$MFADMIN' tui --demo"
fi
since=$([ "$STORE" = import ] && echo "the Enter that logs in" || echo "launch")
for _ in $(seq 1 1200); do
    grep -q '^loaded' "$TIMINGS" 2>/dev/null && break
    sleep 0.1
done
grep -q '^loaded' "$TIMINGS" || { echo "the console did not finish loading within 120 s" >&2; tmux capture-pane -p -t "$SESSION" >&2; exit 1; }
pid=$(tmux list-panes -t "$SESSION" -F '#{pane_pid}')
sleep 2
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")

# Filter keystrokes, one at a time, each after the previous frame had time to be drawn.
keys_before=$(grep -c '^key_us' "$TIMINGS" || true)
key() { tmux send-keys -t "$SESSION" "$@"; sleep 0.12; }
for _ in $(seq 1 "$ROUNDS"); do
    key /
    for c in s m i t h; do key "$c"; done
    for _ in 1 2 3 4 5; do key BSpace; done
    for c in a n n; do key "$c"; done
    for _ in 1 2 3; do key BSpace; done
    for c in z q; do key "$c"; done
    for _ in 1 2; do key BSpace; done
    for c in e x a m p l e; do key "$c"; done
    key Escape
done
sleep 0.5
tmux send-keys -t "$SESSION" q
sleep 0.5

python3 - "$TIMINGS" "$launch" "$keys_before" "$rss_kb" "$hwm_kb" "$since" <<'PY'
import sys
path, launch, before, rss, hwm, since = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
marks, keys, rows = {}, [], 0
for line in open(path):
    what, value = line.split()
    if what == "key_us":
        keys.append(int(value))
    elif what == "rows":
        rows = int(value)
    else:
        marks[what] = (int(value) - launch) / 1e6
keys = sorted(keys[before:])
pick = lambda q: keys[min(len(keys) - 1, max(0, int(round(q * len(keys) + 0.5)) - 1))] / 1000
print(f"rows in the console's table: {rows:,}")
if since == "launch":
    print(f"first frame:        {marks['first_frame']:8.0f} ms after launch")
print(f"first rows drawn:   {marks['first_rows']:8.0f} ms after {since}")
print(f"every user loaded:  {marks['loaded']:8.0f} ms after {since}")
print(f"filter keystroke:   median {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {keys[-1]/1000:.1f} ms over {len(keys)} keys")
print(f"resident memory:    {rss/1024:.0f} MiB once loaded (peak {hwm/1024:.0f} MiB)")
PY
