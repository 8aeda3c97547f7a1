#!/usr/bin/env bash
# Schemathesis against a live `mfadmin serve` (the real binary, 127.0.0.1 only, an Owner's API key):
# every operation of /openapi.json with generated input; no 5xx, and every answer fits its documented
# status codes, content type and schema. Usage: tests/schemathesis/run.sh [MAX_EXAMPLES] (default 25).
# Needs `st` on PATH or in $MFADMIN_ST, and openapi-spec-validator on PATH or in $MFADMIN_OSV, which
# first checks the served document against the OpenAPI spec (.ci/run installs both into a venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
examples="${1:-25}"
st="${MFADMIN_ST:-st}"
command -v "$st" >/dev/null || { echo "schemathesis (st) is not installed: see .ci/run" >&2; exit 1; }
osv="${MFADMIN_OSV:-openapi-spec-validator}"
command -v "$osv" >/dev/null || { echo "openapi-spec-validator is not installed: see .ci/run" >&2; exit 1; }
cargo build --locked --quiet
bin="$PWD/target/debug/mfadmin"
work="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export MFADMIN_DATA_DIR="$work/data" NO_COLOR=1
unset RUST_LOG MFADMIN_CONFIG MFADMIN_KEY_FILE
cat > "$work/config.toml" <<TOML
[server]
auth_rate_per_client = 0
auth_rate_per_account = 0
TOML
export MFADMIN_CONFIG="$work/config.toml"
echo "correct horse battery" | "$bin" init --org Acme --owner root --password-stdin --no-enforce-mfa >/dev/null
"$bin" org add Globex >/dev/null
for u in alice bob carol; do "$bin" user add "$u" --email "$u@acme.example" --org Acme >/dev/null; done
# The key's creator has no factor, so a generated reset of it (Resolver takes user numbers) is
# skipped and does not revoke the key mid-run.
"$bin" user add st-owner --email st@acme.example --org Acme --role owner >/dev/null
key="$("$bin" apikey create --user st-owner --name schemathesis --role owner 2>/dev/null)"

"$bin" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
server=$!
addr=""
for _ in $(seq 1 300); do
  addr="$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" | head -1 | sed 's|listening on http://||')" || true
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/serve.log" >&2; echo "mfadmin serve did not start" >&2; exit 1; }

# The document itself first: valid OpenAPI 3.1 (every $ref resolves, operation ids are unique).
python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' \
  "http://$addr/openapi.json" > "$work/openapi.json"
"$osv" "$work/openapi.json"

# Logout, and deleting a key the run found in GET /api/v1/apikeys, would revoke the key the rest of
# the run uses; so would a new password for the key's creator (any user number can name it). All
# three are covered by the Rust tests (authz_matrix, http_api, http_admin).
set +e
cd "$work"   # schemathesis keeps its cache (.schemathesis/) in the working directory
"$st" run "http://$addr/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" --seed 7 --workers 2 --request-timeout 30 \
  --exclude-path /api/v1/auth/logout --exclude-path '/api/v1/users/{id}/password' --exclude-method DELETE \
  --suppress-health-check all \
  --report junit --report-junit-path "$work/junit.xml" 2>&1 | tee "$work/st.log"
status=${PIPESTATUS[0]}
set -e
cases="$(grep -oE '[0-9]+ generated' "$work/st.log" | tail -1 || true)"
echo "schemathesis: ${cases:-? generated} test cases against $(grep -c 'testcase ' "$work/junit.xml" 2>/dev/null || echo '?') operations; exit $status"
if grep -q ' 5[0-9][0-9] ' "$work/serve.log" 2>/dev/null && grep -q 'status=5' "$work/serve.log"; then
  echo "the server answered 5xx:" >&2; grep 'status=5' "$work/serve.log" >&2
fi
exit "$status"
