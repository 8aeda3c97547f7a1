#!/usr/bin/env bash
# End-to-end figures, on 127.0.0.1 only, bounded in time; stops by itself.
#   1. the store, built as a site builds it (STORE=import, the default): `mfadmin init`, then
#      `user import` of a CSV of $USERS people (bench/gen-users-csv.py), then $ENROLL of them enrolled
#      one commit at a time (bench tool validate_load, through the service as the console does);
#      or as the demo builds it (STORE=demo): `mfadmin demo --users $USERS` into an empty directory.
#      Wall time, resident memory and store size on disk.
#   2. (import path) every enrolled user's MFA reset through the API, one user per request, 8
#      connections, each reset durable (wrk); then the store's size on disk again
#   3. `mfadmin serve` on that store: time from exec to the first answer of /healthz (median of 7
#      starts; again with bench/serve-ready.py, which asks every millisecond), the time the
#      background directory read takes (from the server's log), and the server's resident memory
#      once the directory is read
#   4. list, page of 50, a different filter on every request (pieces of real names, from
#      bench/name-fragments.py), 1 and 8 connections; then the repeated filter q=smith, 64
#      connections (a cache hit after its first request)
#   5. a login storm (32 connections of password logins, argon2) while 4 connections list: the
#      list p99 during the storm (two wrk processes at once)
#   6. (demo path) single-user MFA reset, 8 connections, durable
# Needs wrk (apt-get install -y wrk), curl and python3. Builds target/release/mfadmin (and, for the
# import path, the validate_load bench tool) if missing.
#
# Environment: MFADMIN=path  USERS=1000000  STORE=import|demo  ENROLL=100000  DURATION=10s  PORT=7391
#              WORK=dir (default: mktemp -d)  KEEP=1 keeps the store (then WORK names it and a second
#              run skips building it)  DIR_WAIT=0 does not wait for the background directory read
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000000}
STORE=${STORE:-import}
ENROLL=${ENROLL:-100000}
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
echo "mfadmin bench: $USERS users, $STORE path, $(nproc) cores, $DURATION per load run, $(date -u +%F)"

size() { du -sb "$WORK/data/store" | cut -f1; }
# 1. the store
if [ ! -d "$WORK/data/store" ] && [ "$STORE" = demo ]; then
    /usr/bin/time -f "%e %M" -o "$WORK/demo.time" "$MFADMIN" demo --users "$USERS" >/dev/null 2>"$WORK/demo.log"
    read -r secs rss_kb < "$WORK/demo.time"
    printf 'demo --users %s: %s s, store %s MiB on disk (max RSS %s MiB)\n' "$USERS" "$secs" $(($(size) >> 20)) $((rss_kb >> 10))
elif [ ! -d "$WORK/data/store" ]; then
    LOAD=$(bash bench/enrol-tool.sh "$MFADMIN")
    printf 'demo-password\n' | "$MFADMIN" init --org Acme --owner owner --password-stdin >/dev/null
    "$MFADMIN" org add Globex >/dev/null
    "$MFADMIN" org add Initech >/dev/null
    python3 bench/gen-users-csv.py "$USERS" 1 > "$WORK/users.csv"
    /usr/bin/time -f "%e %M" -o "$WORK/import.time" "$MFADMIN" user import "$WORK/users.csv" >/dev/null 2>"$WORK/import.log"
    read -r secs rss_kb < "$WORK/import.time"
    printf 'init + user import of %s: %s s, store %s MiB on disk (max RSS %s MiB)\n' "$USERS" "$secs" $(($(size) >> 20)) $((rss_kb >> 10))
    # Enrolled one by one, as people enroll: users of Acme, the org the bench's API key is of.
    awk -F, -v n="$ENROLL" '$NF == "Acme" && c < n { print $1; c++ }' "$WORK/users.csv" > "$WORK/enroll.names"
    t0=$(date +%s)
    "$LOAD" enroll-names "$WORK/data" "$WORK/enroll.names" "$WORK/secrets"
    printf '%s users enrolled (two commits each): %s s, store %s MiB on disk\n' "$(wc -l < "$WORK/enroll.names")" $(( $(date +%s) - t0 )) $(($(size) >> 20))
    touch "$WORK/resets-due"
fi
TOKEN=$("$MFADMIN" apikey create --user owner --name "bench$$" --role owner 2>/dev/null)
"$MFADMIN" user list --mfa enrolled --org Acme --output csv > "$WORK/enrolled.csv"
sed 1d "$WORK/enrolled.csv" | cut -d, -f1 > "$WORK/ids.all"
if [ "$STORE" = demo ]; then
    sed -n 2,2001p "$WORK/enrolled.csv" | cut -d, -f3 > "$WORK/names"
else
    # Imported people have no password: the storm logs the owner in, again and again.
    seq 2000 | sed 's/.*/owner/' > "$WORK/names"
fi
# Filters as people type them: pieces of real names, each asked once.
"$MFADMIN" user list --output csv | python3 bench/name-fragments.py /dev/stdin 100000 > "$WORK/fragments"

start_server() {
    RUST_LOG=${RUST_LOG:-info} timeout 600 "$MFADMIN" serve --listen "$ADDR" >"$WORK/serve.out" 2>"$WORK/serve.log" &
    SERVER=$!
}

# Resident memory of the server (started under `timeout`: its child).
rss_mib() { local pid; pid=$(pgrep -P "$SERVER" | head -n 1); echo $(( $(awk '/^VmRSS/ {print $2}' "/proc/${pid:-$SERVER}/status") >> 10 )); }
wait_ready() {
    until curl -fs -o /dev/null "http://$ADDR/healthz"; do
        kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
        sleep 0.002
    done
}
wait_directory() {
    for _ in $(seq 1 1200); do [ "${DIR_WAIT:-1}" = 1 ] || break; grep -q "user directory ready" "$WORK/serve.log" && break; sleep 0.05; done
}
load() { # scenario conns ids-file query -> "rps p50 p99 n non2xx errors"
    local t=$(( $2 < 2 ? $2 : 2 ))
    SCENARIO=$1 TOKEN=$TOKEN IDS_FILE=$3 QUERY=$4 PASSWORD=demo-password THREADS=$t \
        timeout 600 wrk -t"$t" -c"$2" -d"${D:-$DURATION}" --timeout 10s -s "$LUA" "http://$ADDR" | grep '^RESULT' | cut -d' ' -f2-
}
header() { printf '\n%-52s %6s %10s %9s %9s %9s %8s\n' scenario conns "req/s" "p50 ms" "p99 ms" requests non-2xx; }
row() { read -r rps p50 p99 n non2xx errors <<<"$3"; printf '%-52s %6s %10s %9s %9s %9s %8s\n' "$1" "$2" "$rps" "$p50" "$p99" "$n" "$non2xx"; }

# 2. (import path) every enrolled user reset, one request each; repeats past the end answer 409
if [ -e "$WORK/resets-due" ]; then
    start_server
    wait_ready
    due=$(wc -l < "$WORK/ids.all")
    header
    row "reset, single user, durable, each enrolled user once" 8 "$(D=$(( due / 1000 + 10 ))s load reset 8 "$WORK/ids.all" "")"
    stop_server
    rm "$WORK/resets-due"
    left=$("$MFADMIN" user list --mfa enrolled --org Acme --output csv | sed 1d | wc -l)
    printf 'after %s resets (%s users still enrolled): store %s MiB on disk\n' $(( due - left )) "$left" $(($(size) >> 20))
fi
"$MFADMIN" check | tail -n 2

# 3. serve: ready time, median of 7 starts
ready=()
for _ in 1 2 3 4 5 6 7; do
    t0=$(date +%s%N)
    start_server
    wait_ready
    t1=$(date +%s%N)
    ready+=($(( (t1 - t0) / 1000000 )))
    wait_directory
    dir_ms=$(grep "user directory ready" "$WORK/serve.log" | grep -o 'ms=[0-9]*' | cut -d= -f2 || true)
    rss=$(rss_mib)
    stop_server
done
sorted=$(printf '%s\n' "${ready[@]}" | sort -n | tr '\n' ' ')
printf 'serve ready (healthz answered): median %s ms of [%s] ms; directory read in the background: %s ms; then %s MiB resident\n' \
    "$(printf '%s\n' "${ready[@]}" | sort -n | sed -n 4p)" "${sorted% }" "${dir_ms:-?}" "$rss"
# The same, probed every millisecond over a raw socket instead of a curl process every 2 ms.
python3 bench/serve-ready.py "$MFADMIN" 7 "${ADDR##*:}"

# 4-6. load
start_server
wait_ready
wait_directory
header
row "list, page of 50, a new filter each request" 1 "$(load search 1 "$WORK/fragments" "")"
row "list, page of 50, a new filter each request" 8 "$(load search 8 "$WORK/fragments" "")"
echo "  ($(wc -l < "$WORK/fragments") different filters; a run of more requests than that repeats some)"
row "list, page of 50, q=smith (cache hit)" 64 "$(load list 64 "$WORK/ids.all" "q=smith")"
# the storm and the listing at the same time
D=$(( ${DURATION%s} + 2 ))s load login 32 "$WORK/names" "" > "$WORK/storm" &
STORM=$!
sleep 1
row "list, page of 50, q=smith (cache hit), during the storm" 4 "$(load list 4 "$WORK/ids.all" "q=smith")"
wait "$STORM"
row "login storm (argon2), password step" 32 "$(cat "$WORK/storm")"
if [ "$STORE" = demo ]; then
    row "reset, single user, durable" 8 "$(load reset 8 "$WORK/ids.all" "")"
fi
echo "serve resident after the load: $(rss_mib) MiB"
stop_server
