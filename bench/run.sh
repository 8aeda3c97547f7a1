#!/usr/bin/env bash
# End-to-end figures of issue #7, on 127.0.0.1 only, bounded in time; stops by itself.
#   1. `mfadmin demo --users $USERS` (default 1,000,000): wall time and store size on disk
#   2. `mfadmin serve` on that store: time from exec to the first answer of /healthz (median of 5
#      starts), and the time the background directory read takes (from the server's log)
#   3. single-user MFA reset, 8 connections, each reset durable before it is answered (wrk)
#   4. list, page of 50 with a text filter (q=smith), 64 connections (wrk)
#   5. a login storm (32 connections of password logins, argon2) while 4 connections list: the
#      list p99 during the storm (two wrk processes at once)
# Needs wrk (apt-get install -y wrk) and curl. Builds target/release/mfadmin if missing.
#
# Environment: MFADMIN=path  USERS=1000000  DURATION=10s  PORT=7391  WORK=dir (default: mktemp -d)
#              KEEP=1 keeps the store (then WORK names it and a second run skips the demo)
#              DIR_WAIT=0 does not wait for the background directory read (a binary without one)
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000000}
DURATION=${DURATION:-10s}
PORT=${PORT:-7391}
MFADMIN=${MFADMIN:-target/release/mfadmin}
LUA="$(pwd)/bench/http-load.lua"
ADDR="127.0.0.1:$PORT"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$MFADMIN" ] || cargo build --release --bin mfadmin
MFADMIN=$(realpath "$MFADMIN")

WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
SERVER=""
stop_server() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM "$SERVER" 2>/dev/null || true
        for _ in $(seq 1 200); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$SERVER" 2>/dev/null || true
    fi
    SERVER=""
}
cleanup() {
    stop_server
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

export MFADMIN_DATA_DIR="$WORK/data"
# Logins are rate-limited per client and account by default; the storm needs them unlimited.
cat > "$WORK/bench.toml" <<EOF
[server]
auth_rate_per_client = 0
auth_rate_per_account = 0
EOF
export MFADMIN_CONFIG="$WORK/bench.toml"
echo "mfadmin bench: $USERS users, $(nproc) cores, $DURATION per load run, $(date -u +%F)"

# 1. demo
if [ ! -d "$WORK/data/store" ]; then
    /usr/bin/time -f "%e %M" -o "$WORK/demo.time" "$MFADMIN" demo --users "$USERS" >/dev/null 2>"$WORK/demo.log"
    read -r secs rss_kb < "$WORK/demo.time"
    bytes=$(du -sb "$WORK/data/store" | cut -f1)
    printf 'demo --users %s: %s s, store %s MiB on disk (max RSS %s MiB)\n' "$USERS" "$secs" $((bytes >> 20)) $((rss_kb >> 10))
fi
TOKEN=$("$MFADMIN" apikey create --user owner --name "bench$$" --role owner 2>/dev/null)
"$MFADMIN" user list --mfa enrolled --org Acme --output csv > "$WORK/enrolled.csv"
sed 1d "$WORK/enrolled.csv" | cut -d, -f1 > "$WORK/ids.all"
sed -n 2,2001p "$WORK/enrolled.csv" | cut -d, -f3 > "$WORK/names"

start_server() {
    RUST_LOG=${RUST_LOG:-info} timeout 600 "$MFADMIN" serve --listen "$ADDR" >"$WORK/serve.out" 2>"$WORK/serve.log" &
    SERVER=$!
}

# 2. serve: ready time
ready=()
for _ in 1 2 3 4 5; do
    t0=$(date +%s%N)
    start_server
    until curl -fs -o /dev/null "http://$ADDR/healthz"; do
        kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
        sleep 0.002
    done
    t1=$(date +%s%N)
    ready+=($(( (t1 - t0) / 1000000 )))
    for _ in $(seq 1 600); do [ "${DIR_WAIT:-1}" = 1 ] || break; grep -q "user directory ready" "$WORK/serve.log" && break; sleep 0.05; done
    dir_ms=$(grep "user directory ready" "$WORK/serve.log" | grep -o 'ms=[0-9]*' | cut -d= -f2 || true)
    stop_server
done
sorted=$(printf '%s\n' "${ready[@]}" | sort -n | tr '\n' ' ')
printf 'serve ready (healthz answered): median %s ms of [%s] ms; directory read in the background: %s ms\n' \
    "$(printf '%s\n' "${ready[@]}" | sort -n | sed -n 3p)" "${sorted% }" "${dir_ms:-?}"

# 3-5. load
start_server
until curl -fs -o /dev/null "http://$ADDR/healthz"; do sleep 0.01; done
for _ in $(seq 1 1200); do [ "${DIR_WAIT:-1}" = 1 ] || break; grep -q "user directory ready" "$WORK/serve.log" && break; sleep 0.05; done
load() { # scenario conns ids-file query -> "rps p50 p99 n non2xx errors"
    local t=$(( $2 < 2 ? $2 : 2 ))
    SCENARIO=$1 TOKEN=$TOKEN IDS_FILE=$3 QUERY=$4 PASSWORD=demo-password THREADS=$t \
        timeout 300 wrk -t"$t" -c"$2" -d"${D:-$DURATION}" --timeout 10s -s "$LUA" "http://$ADDR" | grep '^RESULT' | cut -d' ' -f2-
}
printf '\n%-44s %6s %10s %9s %9s %9s %8s\n' scenario conns "req/s" "p50 ms" "p99 ms" requests non-2xx
row() { read -r rps p50 p99 n non2xx errors <<<"$3"; printf '%-44s %6s %10s %9s %9s %9s %8s\n' "$1" "$2" "$rps" "$p50" "$p99" "$n" "$non2xx"; }
row "reset, single user, durable" 8 "$(load reset 8 "$WORK/ids.all" "")"
row "list, page of 50, q=smith" 64 "$(load list 64 "$WORK/ids.all" "q=smith")"
# the storm and the listing at the same time
D=$(( ${DURATION%s} + 2 ))s load login 32 "$WORK/names" "" > "$WORK/storm" &
STORM=$!
sleep 1
row "list, page of 50, q=smith, during the storm" 4 "$(load list 4 "$WORK/ids.all" "q=smith")"
wait "$STORM"
row "login storm (argon2), password step" 32 "$(cat "$WORK/storm")"
stop_server
