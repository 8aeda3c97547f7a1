#!/usr/bin/env bash
# Figures of mfadmin on PostgreSQL, on 127.0.0.1 only, bounded in time; stops by itself.
# Runs itself inside a throw-away cluster (pg_virtualenv, fsync and synchronous_commit on), then:
#   1. `mfadmin demo --users $USERS` into the database (COPY): wall time
#   2. `mfadmin serve` node A: single-user MFA resets, 8 connections, each durable (COMMIT) before
#      it is answered (wrk; RUNS runs of DURATION, median)
#   3. list, page of 50, a text filter never used before (one pass over the in-memory directory,
#      after the listing's catch-up query): p50 and p99 of LISTS requests, each a new text (curl)
#   4. nodes A and B on the same database, 8 connections each, at once: single resets (RUNS runs,
#      median of the sums), against step 2
#   5. bulk reset of BULK users in one `mfadmin mfa reset -` on the database, durable: wall time
# Needs wrk and curl (apt-get install -y wrk curl). Builds target/release/mfadmin if missing.
#
# Environment: MFADMIN=path  USERS=1000000  BULK=100000  DURATION=5s  RUNS=3  LISTS=40
#              WORK=dir (default: mktemp -d; a store already in it is used, not made again)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PG_NODES_IN_CLUSTER:-}" ]; then
    command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
    command -v pg_virtualenv >/dev/null || { echo "pg_virtualenv is missing: apt-get install -y postgresql" >&2; exit 1; }
    MFADMIN=${MFADMIN:-target/release/mfadmin}
    [ -x "$MFADMIN" ] || cargo build --release --bin mfadmin
    export MFADMIN=$(realpath "$MFADMIN")
    # A cluster as a site would run it: durable commits, a buffer cache for a million users.
    exec pg_virtualenv -t -o fsync=on -o synchronous_commit=on -o shared_buffers=512MB -o max_connections=200 \
        env PG_NODES_IN_CLUSTER=1 "$0" "$@"
fi

USERS=${USERS:-1000000}
BULK=${BULK:-100000}
DURATION=${DURATION:-5s}
RUNS=${RUNS:-3}
LISTS=${LISTS:-40}
LUA="$(pwd)/bench/http-load.lua"

WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
SERVERS=()
cleanup() {
    for pid in "${SERVERS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SERVERS[@]}"; do
        for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

export MFADMIN_STORE_KIND=postgres
export MFADMIN_STORE_URL="host=${PGHOST:-localhost} port=${PGPORT:-5432} user=${PGUSER:-postgres} password=${PGPASSWORD:-} dbname=${PGDATABASE:-postgres}"
cat > "$WORK/bench.toml" <<EOF
[server]
auth_rate_per_client = 0
auth_rate_per_account = 0
EOF
export MFADMIN_CONFIG="$WORK/bench.toml"
export MFADMIN_DATA_DIR="$WORK/a"
echo "mfadmin on PostgreSQL $(psql -XAtc 'SHOW server_version') (loopback): $USERS users, $(nproc) cores, $RUNS runs of $DURATION, $(date -u +%F)"
echo "fsync=$(psql -XAtc 'SHOW fsync') synchronous_commit=$(psql -XAtc 'SHOW synchronous_commit')"

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "?"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# 1. demo (skipped when WORK holds a store from an earlier run in this cluster)
if [ ! -e "$WORK/a/mfadmin.key" ]; then
    t0=$(date +%s%N)
    "$MFADMIN" demo --users "$USERS" >/dev/null 2>"$WORK/demo.log" || { cat "$WORK/demo.log" >&2; exit 1; }
    printf 'demo --users %s into PostgreSQL: %.1f s\n' "$USERS" "$(echo "($(date +%s%N) - $t0) / 1000000000" | bc -l)"
fi
# The ids of the enrolled users in a CSV listing. (Listing with --mfa would read every user for
# each page of 500: a filter on MFA state depends on the clock and is never cached.)
enrolled() { python3 -c 'import csv, sys
rows = csv.DictReader(sys.stdin)
print("\n".join(r["id"] for r in rows if r["mfa"] == "enrolled"))'; }
TOKEN=$("$MFADMIN" apikey create --user owner --name "bench$$" --role owner 2>/dev/null)
# Enrolled users of the owner's org for the HTTP resets; every enrolled user for the bulk reset.
"$MFADMIN" user list --org Acme --output csv | enrolled > "$WORK/acme"
"$MFADMIN" user list --output csv | enrolled > "$WORK/all"
# Node B: its own data directory with the same key file.
mkdir -p -m 700 "$WORK/b" && cp -p "$WORK/a/mfadmin.key" "$WORK/b/"
# Each reset run its own share of Acme's enrolled users: RUNS one-node runs, 2*RUNS two-node ones.
parts=$((3 * RUNS))
split -n "l/$parts" -d -a 2 "$WORK/acme" "$WORK/ids."
echo "enrolled: $(wc -l < "$WORK/acme") in Acme (HTTP resets, $(( $(wc -l < "$WORK/acme") / parts )) a run), $(wc -l < "$WORK/all") in all"

start_node() { # data-dir log; sets NODE to its address (not in a subshell: SERVERS must keep its pid)
    MFADMIN_DATA_DIR=$1 RUST_LOG=info timeout 900 "$MFADMIN" serve --listen 127.0.0.1:0 >/dev/null 2>"$2" &
    SERVERS+=($!)
    local addr=""
    for _ in $(seq 1 600); do
        addr=$(grep -o 'listening on http://[0-9.:]*' "$2" | head -1 | sed 's|listening on http://||') || true
        [ -n "$addr" ] && grep -q "user directory ready" "$2" && break
        sleep 0.1
    done
    grep -q "user directory ready" "$2" || { echo "node did not read its directory:" >&2; cat "$2" >&2; exit 1; }
    NODE=$addr
}
# The machine's CPU time so far, busy and all (jiffies, from /proc/stat): with `busy_since`, how
# busy the cores were during a run (wrk, the nodes and PostgreSQL share them).
cpu_now() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
busy_since() { # "busy total" from cpu_now -> per cent busy since then
    read -r b0 t0 <<<"$1"
    read -r b1 t1 <<<"$(cpu_now)"
    echo $(( 100 * (b1 - b0) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
}
resets() { # address ids-file -> "rps p50 p99 n non2xx errors"
    SCENARIO=reset TOKEN=$TOKEN IDS_FILE=$2 THREADS=2 \
        timeout 120 wrk -t2 -c8 -d"$DURATION" --timeout 10s -s "$LUA" "http://$1" | grep '^RESULT' | cut -d' ' -f2-
}

start_node "$WORK/a" "$WORK/a.log"
A=$NODE
dir_ms=$(grep "user directory ready" "$WORK/a.log" | grep -o 'ms=[0-9]*' | cut -d= -f2 || true)
echo "node A on $A; directory of $USERS read in ${dir_ms:-?} ms"

# 2. single resets through one node
one=()
for r in $(seq 0 $((RUNS - 1))); do
    before=$(cpu_now)
    read -r rps p50 p99 n non2xx errors <<<"$(resets "$A" "$WORK/ids.$(printf %02d "$r")")"
    echo "  one node, run $((r + 1)): $rps resets/s, p50 $p50 ms, p99 $p99 ms, $n requests, $non2xx non-2xx; cores $(busy_since "$before") % busy"
    one+=("$rps")
done
one_median=$(printf '%s\n' "${one[@]}" | median)
echo "single resets, 8 connections, one node: median $one_median/s"

# 3. list with a new filter
words=$(for a in a b c d e f g h i k l m n o p r s t u w; do for b in a e i o u n r s t l; do echo "$a$b"; done; done | shuf -n "$LISTS" --random-source=<(yes))
: > "$WORK/lists"
for w in $words; do
    curl -fs -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "http://$A/api/v1/users?limit=50&q=$w" >> "$WORK/lists"
done
p50=$(awk '{print $1 * 1000}' "$WORK/lists" | median)
p99=$(awk '{print $1 * 1000}' "$WORK/lists" | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99+0.999); print a[i < 1 ? 1 : i]}')
echo "list, page of 50, a new 2-letter text each ($LISTS requests): p50 $p50 ms, p99 $p99 ms"

# 4. two nodes at once
start_node "$WORK/b" "$WORK/b.log"
B=$NODE
two=()
for r in $(seq 0 $((RUNS - 1))); do
    before=$(cpu_now)
    resets "$A" "$WORK/ids.$(printf %02d $((RUNS + 2 * r)))" > "$WORK/two.a" &
    wa=$!
    resets "$B" "$WORK/ids.$(printf %02d $((RUNS + 2 * r + 1)))" > "$WORK/two.b"
    wait "$wa"
    read -r ra _ pa _ na _ < "$WORK/two.a"
    read -r rb _ pb _ nb _ < "$WORK/two.b"
    sum=$(echo "$ra + $rb" | bc -l)
    echo "  two nodes, run $((r + 1)): A $ra/s (p99 $pa ms, non-2xx $na), B $rb/s (p99 $pb ms, non-2xx $nb): $sum/s; cores $(busy_since "$before") % busy"
    two+=("$sum")
done
two_median=$(printf '%s\n' "${two[@]}" | median)
printf 'single resets, 8 connections on each of two nodes: median %s/s, %.2fx one node\n' "$two_median" "$(echo "$two_median / $one_median" | bc -l)"
for pid in "${SERVERS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${SERVERS[@]}"; do wait "$pid" 2>/dev/null || true; done
SERVERS=()

# 5. bulk reset, through the CLI on the database (the users no HTTP run reset)
"$MFADMIN" user list --output csv | enrolled > "$WORK/left"
head -n "$BULK" "$WORK/left" > "$WORK/bulk"
n=$(wc -l < "$WORK/bulk")
t0=$(date +%s%N)
"$MFADMIN" mfa reset - --reason "bench" --yes --output json < "$WORK/bulk" > "$WORK/bulk.json"
secs=$(echo "($(date +%s%N) - $t0) / 1000000000" | bc -l)
done_n=$(grep -Eo '"outcome": ?"reset"' "$WORK/bulk.json" | wc -l)
printf 'bulk reset of %s users (mfadmin mfa reset -, one process): %.2f s, %s reset\n' "$n" "$secs" "$done_n"
# Of the user row updates so far, how many were HOT (no index written; needs layout 2).
psql -XAtc "SELECT 'users rows updated: ' || n_tup_upd || ', of them HOT: ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'users'"
