#!/usr/bin/env bash
# Load benchmark of `mfadmin serve`, on 127.0.0.1 only, bounded in time, with wrk (Debian: apt-get
# install -y wrk). It builds a store in a temporary directory as a site does (STORE=import, the
# default: `init`, `user import` of USERS people from bench/gen-users-csv.py, ENROLL of them enrolled
# one commit at a time by the validate_load bench tool) or as the demo does (STORE=demo: `mfadmin
# demo --users USERS`), creates an API key, starts the server, and measures three scenarios with 8
# and 64 connections:
#   list   GET /api/v1/users?limit=50           (a page of 50 users, sorted by user name; the same
#          request each time, so a cache hit after the first)
#   search GET /api/v1/users?limit=50&q=PIECE   (a different filter each request: pieces of real
#          names from bench/name-fragments.py)
#   reset  POST /api/v1/users/{id}/mfa/reset    (one user per request, each a different enrolled user;
#          each run gets its own share of the enrolled users, so size USERS to outlast DURATION)
# It prints requests/s and p50/p99 latency, then stops the server (SIGTERM) and removes the store.
#
# Usage: bench/http-load.sh                     (builds and uses target/release/mfadmin)
# Environment: MFADMIN=path/to/mfadmin  USERS=100000  STORE=import|demo  ENROLL=20000  DURATION=10s
#              CONNECTIONS="8 64"  THREADS=2
set -euo pipefail

cd "$(dirname "$0")/.."
USERS=${USERS:-100000}
STORE=${STORE:-import}
ENROLL=${ENROLL:-20000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-"8 64"}
THREADS=${THREADS:-2}
MFADMIN=${MFADMIN:-target/release/mfadmin}
LUA="$(pwd)/bench/http-load.lua"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
if [ ! -x "$MFADMIN" ]; then
    cargo build --release --bin mfadmin
fi

WORK=$(mktemp -d)
SERVER=""
cleanup() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM "$SERVER" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

export MFADMIN_DATA_DIR="$WORK/data"
unset MFADMIN_CONFIG
if [ "$STORE" = demo ]; then
    "$MFADMIN" demo --users "$USERS" >/dev/null 2>"$WORK/demo.log"
    path="demo users (demo path)"
else
    LOAD=$(bash bench/enrol-tool.sh "$MFADMIN")
    printf 'load-owner-password\n' | "$MFADMIN" init --org Acme --owner owner --password-stdin >/dev/null
    "$MFADMIN" org add Globex >/dev/null
    "$MFADMIN" org add Initech >/dev/null
    python3 bench/gen-users-csv.py "$USERS" 1 > "$WORK/users.csv"
    "$MFADMIN" user import "$WORK/users.csv" >/dev/null 2>"$WORK/import.log"
    awk -F, -v n="$ENROLL" '$NF == "Acme" && c < n { print $1; c++ }' "$WORK/users.csv" > "$WORK/enroll.names"
    "$LOAD" enroll-names "$WORK/data" "$WORK/enroll.names" "$WORK/secrets"
    path="imported users (init + user import path)"
fi
TOKEN=$("$MFADMIN" apikey create --user owner --name load --role owner 2>/dev/null)
# Enrolled users of the owner's org, to reset one by one.
"$MFADMIN" user list --mfa enrolled --org Acme --output csv | tail -n +2 | cut -d, -f1 > "$WORK/ids"
# Filters as people type them: pieces of real names, each asked once.
"$MFADMIN" user list --output csv | python3 bench/name-fragments.py /dev/stdin 100000 > "$WORK/fragments"
echo "store: $USERS $path, $(wc -l < "$WORK/ids") enrolled in Acme to reset; $(nproc) cores; wrk threads: $THREADS; $DURATION per run"

# One log line per request, as in production, written to a file.
RUST_LOG=${RUST_LOG:-info} timeout 900 "$MFADMIN" serve --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER=$!
ADDR=""
for _ in $(seq 1 100); do
    ADDR=$(grep -o 'listening on http://[0-9.:]*' "$WORK/serve.log" | head -1 | sed 's|listening on http://||') || true
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { echo "the server did not start:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
case "$ADDR" in 127.0.0.1:*) ;; *) echo "refusing to load anything but 127.0.0.1 ($ADDR)" >&2; exit 1 ;; esac

printf '\n%-30s %6s %10s %9s %9s %9s %8s\n' scenario conns "req/s" "p50 ms" "p99 ms" requests non-2xx
# Each reset run gets its own share of the ids.
runs=$(echo $CONNECTIONS | wc -w)
split -n "l/$runs" -d "$WORK/ids" "$WORK/ids."
for scenario in list search reset; do
    run=0
    for c in $CONNECTIONS; do
        t=$(( c < THREADS ? c : THREADS ))
        ids="$WORK/ids.$(printf %02d $run)"
        [ "$scenario" = search ] && ids="$WORK/fragments"
        run=$((run + 1))
        line=$(SCENARIO=$scenario TOKEN=$TOKEN IDS_FILE="$ids" THREADS=$t \
            timeout 120 wrk -t"$t" -c"$c" -d"$DURATION" --timeout 10s -s "$LUA" "http://$ADDR" | grep '^RESULT')
        read -r _ rps p50 p99 n non2xx errors <<<"$line"
        case $scenario in
            list) label="list (page of 50, cache hit)" ;;
            search) label="list (new filter each)" ;;
            *) label="reset (single user)" ;;
        esac
        printf '%-30s %6s %10s %9s %9s %9s %8s\n' "$label" "$c" "$rps" "$p50" "$p99" "$n" "$non2xx"
        [ "$errors" = 0 ] || echo "  ($errors socket errors)"
        if [ "$scenario" = reset ] && [ "$n" -gt "$(wc -l < "$ids")" ]; then
            echo "  (only $(wc -l < "$ids") users to reset: the rest were repeats answered 409; raise ENROLL, or USERS with STORE=demo)"
        fi
    done
done

kill -TERM "$SERVER"
for _ in $(seq 1 300); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
wait "$SERVER" && echo "server stopped cleanly (SIGTERM, store flushed)"
SERVER=""
