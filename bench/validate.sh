#!/usr/bin/env bash
# /validate/check under load, on the path a site takes: `init`, `user import` of USERS people,
# CHECKS of them enrolled, a validate-only key, `mfadmin serve`; then one check per user (distinct
# users, each with its current code, each durable before it is answered) at 1 and at 8
# connections, ROUNDS times each, alternating. 127.0.0.1 only; stops by itself.
#
# Environment: MFADMIN=path (default target/release/mfadmin, built if missing)  USERS=100000  CHECKS=30000  ROUNDS=3  PORT=7393  WORK=dir (default: mktemp -d)
#              PEER=dir of a running, seeded privacyIDEA 3.14 (../shared/peers/privacyidea/
#              setup_privacyidea.sh; NUSERS=600 is enough): its /validate/check is measured in the
#              same run, first, with 1 and 8 clients on distinct users (PI_USERS=600 of them)
# Prints one JSON line per run (checks, accepted, per_second, p50_ms, p99_ms).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-100000}
CHECKS=${CHECKS:-30000}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-7393}
MFADMIN=${MFADMIN:-target/release/mfadmin}
[ -x "$MFADMIN" ] || cargo build --release --bin mfadmin
MFADMIN=$(realpath "$MFADMIN")
ls target/release/deps/validate_load-* >/dev/null 2>&1 || cargo bench --bench validate_load --no-run
LOAD=$(ls -t target/release/deps/validate_load-* | grep -v '\.d$' | head -n 1)
WORK=${WORK:-$(mktemp -d)}
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
M() { "$MFADMIN" --data-dir "$WORK/data" "$@"; }

if [ -n "${PEER:-}" ]; then
  PEERS=${PEERS:-$(pwd)/../shared/peers/privacyidea}
  PI_USERS=${PI_USERS:-600}
  echo "== privacyIDEA 3.14 /validate/check (users 1..$PI_USERS, a third with 1 client, the rest with 8)" >&2
  "$PEER/venv/bin/python" "$PEERS/pi_load.py" validate 1 $((PI_USERS / 3)) 1
  "$PEER/venv/bin/python" "$PEERS/pi_load.py" validate $((PI_USERS / 3 + 1)) "$PI_USERS" 8
fi

echo "== init + user import of $USERS people, $CHECKS enrolled ($WORK)" >&2
printf 'bench-owner-password\n' | M init --org Acme --owner root --password-stdin >/dev/null
python3 - "$USERS" > "$WORK/people.csv" <<'PY'
import sys
print("username,email,display_name,role,org")
for i in range(1, int(sys.argv[1]) + 1):
    print(f"user{i},user{i}@acme.example,User {i},member,Acme")
PY
M user import "$WORK/people.csv" >/dev/null
"$LOAD" enroll "$WORK/data" 1 "$CHECKS" "$WORK/secrets"
KEY=$(M apikey create --user root --name bench --validate-only 2>/dev/null)
MFADMIN_LISTEN="127.0.0.1:$PORT" "$MFADMIN" --data-dir "$WORK/data" serve >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
# One connection goes slower: a fifth of the users keeps its run inside the code's window.
head -n $((CHECKS / 5)) "$WORK/secrets" > "$WORK/secrets-1"
for round in $(seq 1 "$ROUNDS"); do
  for conns in 1 8; do
    file="$WORK/secrets"; [ "$conns" = 1 ] && file="$WORK/secrets-1"
    printf '{"round":%s,"path":"init + user import",' "$round"
    "$LOAD" load "127.0.0.1:$PORT" "$KEY" "$file" "$conns" | sed 's/^{//'
  done
done
