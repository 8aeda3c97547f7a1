#!/usr/bin/env bash
# mfadmin and privacyIDEA 3.14 side by side, in one run, on 127.0.0.1 only; stops both servers.
#
# Both get the same 2,000 users (user00001..user02000, each with a TOTP factor):
#   privacyIDEA: ../shared/peers/privacyidea/setup_privacyidea.sh (installs 3.14 from PyPI into
#                $PEER, default /tmp/peer, and seeds it: ~8 minutes, once; later runs `restore` the
#                seeded snapshot)
#   mfadmin:     a fresh store: `user import` of the same users, then `mfa enroll` + `mfa confirm`
#                of each through the CLI, as the console operator
# then one load client (bench/compare.py) measures, back to back on each system:
#   list page of 50 (random page 1..40) with 1 and 8 clients, single-user reset with 1 and 8
#   clients, and a bulk reset of 1,000 users in one call (each system restored/reseeded first)
# and prints each figure and the ratio mfadmin / privacyIDEA.
#
# Environment: PEER=/tmp/peer  MFADMIN=target/release/mfadmin  PEERS=path of the peer scripts
#              N_LIST=500 (list requests per run)  WORK=dir (default: mktemp -d)
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$(pwd)
PEERS=${PEERS:-$HERE/../shared/peers/privacyidea}
[ -d "$PEERS" ] || PEERS=/work/shared/peers/privacyidea
export PEER=${PEER:-/tmp/peer}
MFADMIN=${MFADMIN:-target/release/mfadmin}
N_LIST=${N_LIST:-500}
MF_PORT=${MF_PORT:-7392}
export MF_BASE="http://127.0.0.1:$MF_PORT"
[ -x "$MFADMIN" ] || cargo build --release --bin mfadmin
MFADMIN=$(realpath "$MFADMIN")
PY=python3
S="bash $PEERS/setup_privacyidea.sh"
C="$PY $HERE/bench/compare.py"
WARM="$PEER/venv/bin/python $PEERS/pi_load.py warmup 20"   # unrecorded list calls after a restart, as pi_bench.sh

WORK=${WORK:-$(mktemp -d)}
RESULTS="$WORK/results.jsonl"
SERVER=""
stop_mfadmin() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM "$SERVER" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER" 2>/dev/null || true
    fi
    SERVER=""
}
cleanup() {
    stop_mfadmin
    $S stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# ---- privacyIDEA: install and seed once, else back to the seeded snapshot
if [ ! -f "$PEER/etc/seeded.sqlite" ]; then
    echo "installing and seeding privacyIDEA 3.14 into $PEER (about 8 minutes)"
    timeout 3600 $S all > "$WORK/pi-setup.log" 2>&1
    $S stop
fi

# ---- mfadmin: a store with the same 2,000 users, enrolled
export MFADMIN_DATA_DIR="$WORK/mfadmin"
unset MFADMIN_CONFIG
seed_mfadmin() {
    rm -rf "$MFADMIN_DATA_DIR"
    "$MFADMIN" demo --users 0 >/dev/null 2>&1          # the demo orgs and owner, no generated users
    { echo "username,email,display_name,role,org"
      for i in $(seq 1 2000); do printf 'user%05d,user%05d@example.test,Given%d Sur%d,member,Acme\n' "$i" "$i" "$i" "$i"; done
    } > "$WORK/users.csv"
    "$MFADMIN" user import "$WORK/users.csv" >/dev/null
    $C seed-mfadmin "$MFADMIN" 1 2000 | tee -a "$RESULTS"
    TOKEN=$("$MFADMIN" apikey create --user owner --name compare --role owner 2>/dev/null)
    export TOKEN
}
start_mfadmin() {
    RUST_LOG=warn timeout 1800 "$MFADMIN" serve --listen "127.0.0.1:$MF_PORT" >"$WORK/serve.out" 2>"$WORK/serve.log" &
    SERVER=$!
    until curl -fs -o /dev/null "$MF_BASE/healthz"; do sleep 0.05; done
}

echo "seeding mfadmin with user00001..user02000 (import, then enroll + confirm each)"
seed_mfadmin
cp -r "$MFADMIN_DATA_DIR" "$WORK/mfadmin.seeded"
restore_mfadmin() { stop_mfadmin; rm -rf "$MFADMIN_DATA_DIR"; cp -r "$WORK/mfadmin.seeded" "$MFADMIN_DATA_DIR"; start_mfadmin; }

# ---- back to back
restore_mfadmin
$C mfadmin list "$N_LIST" 1 | tee -a "$RESULTS"
$C mfadmin list "$N_LIST" 8 | tee -a "$RESULTS"
$C mfadmin reset 1 300 1 | tee -a "$RESULTS"
$C mfadmin reset 301 1100 8 | tee -a "$RESULTS"
restore_mfadmin
$C mfadmin bulk 1 1000 | tee -a "$RESULTS"
stop_mfadmin

$S restore >/dev/null; $WARM
$C pi list "$N_LIST" 1 | tee -a "$RESULTS"
$C pi list "$N_LIST" 8 | tee -a "$RESULTS"
$C pi reset 1 300 1 | tee -a "$RESULTS"
$C pi reset 301 1100 8 | tee -a "$RESULTS"
$S restore >/dev/null; $WARM
$C pi bulk 1 1000 | tee -a "$RESULTS"
$S restore >/dev/null
$S stop >/dev/null

# ---- the table
$PY - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def get(system, phase, conc=None):
    for r in rows:
        if r["system"] == system and r["phase"] == phase and (conc is None or r.get("concurrency") == conc):
            return r
print(f"\n{'what':38} {'mfadmin':>14} {'privacyIDEA':>14} {'ratio':>10} {'better':>11}")
for label, phase, conc, key, better in [
    ("list page of 50, 1 client (req/s)", "list_page_50", 1, "req_per_s", "higher"),
    ("list page of 50, 8 clients (req/s)", "list_page_50", 8, "req_per_s", "higher"),
    ("single reset, 1 client (req/s)", "reset_single_c1", 1, "req_per_s", "higher"),
    ("single reset, 8 clients (req/s)", "reset_single_c8", 8, "req_per_s", "higher"),
    ("single reset, 8 clients p99 (ms)", "reset_single_c8", 8, "p99_ms", "lower"),
    ("bulk reset of 1,000, one call (s)", "bulk_reset_1000", 1, "wall_s", "lower"),
]:
    m, p = get("mfadmin", phase, conc), get("privacyidea", phase, conc)
    if not m or not p:
        print(f"{label:38} missing"); continue
    a, b = m[key], p[key]
    ratio = a / b if b else float("nan")
    faster = ratio if better == "higher" else (1 / ratio if ratio else float("nan"))
    errs = f"  (errors: mfadmin {m['errors']}, privacyIDEA {p['errors']})" if m["errors"] or p["errors"] else ""
    print(f"{label:38} {a:>14} {b:>14} {ratio:>10.4g} {faster:>10.0f}x{errs}")
print("\nratio = mfadmin / privacyIDEA (req/s: higher is better; ms and s: lower is better);")
print("the last column says how many times better mfadmin's figure is")
EOF
