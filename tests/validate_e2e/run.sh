#!/usr/bin/env bash
# End to end: mfadmin's validate API checked by real FreeRADIUS (rlm_rest), pam_radius_auth and a
# privacyIDEA-style client, against a real `mfadmin serve` on a fresh store.
#
#   sudo tests/validate_e2e/run.sh [MFADMIN_BIN]      (default: target/debug/mfadmin; env MFADMIN_BIN)
#
# Needs root (it copies /etc/freeradius/3.0 and writes /etc/pam.d/mfadmin-test for a moment) and
# the Debian packages of tests/validate_e2e/ci-install.sh. No network: everything binds 127.0.0.1.
# Prints one line per check and a closing "N passed, N failed"; exits 1 on any failure, 2 when the
# run could not be set up. KEEP=1 keeps the temporary directory (logs, store, FreeRADIUS config).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-${MFADMIN_BIN:-$ROOT/target/debug/mfadmin}}
RADDB_SRC=${RADDB_SRC:-/etc/freeradius/3.0}
PAM_SERVICE=mfadmin-test
PAM_FILE=/etc/pam.d/$PAM_SERVICE
SKEW=1          # [totp] skew of the test config: a code of the next step is accepted too
THRESHOLD=3     # [lockout] threshold of the test config
RAD_SECRET=e2e-$RANDOM-$RANDOM
DEADLINE=170    # seconds; the watchdog ends a run that hangs anyway

PASSED=0
FAILED=0
# The run's own output, kept on 3 and 4: a signal can arrive while a function's output goes to a log.
exec 3>&1 4>&2
T=""
SERVE_PID=""
FR_PID=""
WATCHDOG_PID=""
PAM_WRITTEN=""

pass() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
check() { # WHAT COMMAND...: passes when the command succeeds; shows its last line, or all on failure
    local what=$1; shift
    local out
    if out=$("$@" 2>&1); then pass "$what${out:+: ${out##*$'\n'}}"; else fail "$what: $out"; fi
}
# A problem that stops the run before its checks: say what and what to do, then stop.
die() {
    echo "run.sh: $*" >&2
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 2
}

stop_pid() { # pid: TERM, then KILL after 5 s
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 1>&3 2>&4
    stop_pid "$FR_PID"
    stop_pid "$SERVE_PID"
    [ -n "$PAM_WRITTEN" ] && rm -f "$PAM_FILE"
    if [ -n "$WATCHDOG_PID" ]; then
        pkill -P "$WATCHDOG_PID" 2>/dev/null    # its sleep
        kill "$WATCHDOG_PID" 2>/dev/null
    fi
    if [ -n "$T" ] && [ -d "$T" ]; then
        if [ "$rc" -ne 0 ] || [ "${KEEP:-}" = 1 ]; then
            for log in "$T/serve.log" "$T/freeradius.log"; do
                [ -s "$log" ] && [ "$rc" -ne 0 ] && { echo "--- last lines of $log"; tail -n 25 "$log"; }
            done
            echo "kept $T"
        else
            rm -rf "$T"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
on_signal() {
    exec 1>&3 2>&4
    if [ -e "/tmp/mfadmin-e2e-deadline.$$" ]; then
        rm -f "/tmp/mfadmin-e2e-deadline.$$"
        echo "run.sh: still running after $DEADLINE s, stopped"
    else
        echo "run.sh: interrupted"
    fi
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 130
}
trap on_signal INT TERM

# --- what the run needs ---------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (sudo $0): it copies $RADDB_SRC and writes $PAM_FILE"
[ -x "$BIN" ] || die "no mfadmin binary at $BIN: build it (cargo build) or give its path (MFADMIN_BIN or the first argument)"
for cmd in python3 freeradius radclient pamtester timeout; do
    command -v "$cmd" >/dev/null || die "$cmd is missing: install the packages with tests/validate_e2e/ci-install.sh"
done
[ -d "$RADDB_SRC" ] || die "no FreeRADIUS configuration in $RADDB_SRC: install freeradius (tests/validate_e2e/ci-install.sh)"
have_file() { local g; for g in "$@"; do compgen -G "$g" >/dev/null && return 0; done; return 1; }
have_file /usr/lib/freeradius/rlm_rest.so '/usr/lib/*/freeradius/rlm_rest.so' \
    || die "FreeRADIUS's rest module is missing: install freeradius-rest (tests/validate_e2e/ci-install.sh)"
have_file '/lib/*/security/pam_radius_auth.so' '/usr/lib/*/security/pam_radius_auth.so' /lib/security/pam_radius_auth.so \
    || die "pam_radius_auth.so is missing: install libpam-radius-auth (tests/validate_e2e/ci-install.sh)"
if [ -e "$PAM_FILE" ]; then
    die "$PAM_FILE exists already (another run, or not ours): remove it if it is a leftover of this test"
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# The run stops by itself whatever happens. (The watchdog holds no output open, or a pipe reading
# this script's output would wait for it.)
# `&&`: when the cleanup ends its sleep early, the watchdog does nothing more.
( sleep "$DEADLINE" && touch "/tmp/mfadmin-e2e-deadline.$$" && kill -TERM $$ ) >/dev/null 2>&1 3>&- 4>&- &
WATCHDOG_PID=$!

# Settings of the caller's shell must not reach the commands below (a remote, a token, a listen address).
while read -r var; do unset "$var"; done < <(compgen -e | grep '^MFADMIN_')

T=$(mktemp -d /tmp/mfadmin-e2e.XXXXXX)
HTTP_PORT=$(python3 "$HERE/totp.py" port tcp) || die "no free TCP port on 127.0.0.1"
RAD_PORT=$(python3 "$HERE/totp.py" port udp) || die "no free UDP port on 127.0.0.1"
URL=http://127.0.0.1:$HTTP_PORT
CONF=$T/mfadmin.toml
cat >"$CONF" <<EOF
data_dir = "$T/data"
token_file = "$T/token"

[server]
listen = "127.0.0.1:$HTTP_PORT"
# Every caller of this run is 127.0.0.1; the rate limits are not what is tested here.
auth_rate_per_client = 0
auth_rate_per_account = 0

[totp]
skew = $SKEW

[lockout]
threshold = $THRESHOLD

[validate]
enabled = true
allow_from = []
EOF

mf() { timeout 30 "$BIN" --config "$CONF" "$@"; }

# --- the store: one user per situation, so no check needs to wait for a new code ----------------
echo "# store in $T/data, mfadmin on $URL, FreeRADIUS on 127.0.0.1:$RAD_PORT"
OWNER_PASSWORD="e2e-Owner-$RANDOM-$RANDOM-pass"
printf '%s\n' "$OWNER_PASSWORD" | mf init --org Acme --owner root --password-stdin >"$T/init.log" 2>&1 \
    || { cat "$T/init.log"; die "mfadmin init failed"; }

declare -A SECRET LAST
add_user() { # name
    mf user add "$1" --email "$1@acme.example" --org Acme --role member >>"$T/setup.log" 2>&1 \
        || { tail -n 5 "$T/setup.log"; die "mfadmin user add $1 failed"; }
}
enroll() { # name: enroll and confirm, keeping the secret and the step of the code used
    local out secret code step
    out=$(mf mfa enroll "$1" 2>&1) || { echo "$out"; die "mfadmin mfa enroll $1 failed"; }
    secret=$(printf '%s\n' "$out" | awk '/^Secret:/ {print $2; exit}')
    [ -n "$secret" ] || { echo "$out"; die "mfadmin mfa enroll $1 printed no 'Secret:' line"; }
    read -r code step < <(python3 "$HERE/totp.py" fresh "$secret" 0 0)
    mf mfa confirm "$1" "$code" >>"$T/setup.log" 2>&1 \
        || { tail -n 5 "$T/setup.log"; die "mfadmin mfa confirm $1 failed"; }
    SECRET[$1]=$secret
    LAST[$1]=$step
}
# Sets CODE to a code of USER that the server has not accepted yet (waits only when it must).
fresh() {
    local step
    read -r CODE step < <(python3 "$HERE/totp.py" fresh "${SECRET[$1]}" "${LAST[$1]}" "$SKEW")
    LAST[$1]=$step
}
wrong() { python3 "$HERE/totp.py" wrong "${SECRET[$1]}" "$SKEW"; }

# Each user needs at most one code after the one that confirmed the enrollment: the next step's code
# is accepted at once (skew 1), so no check waits for the clock.
for u in alice bob carol dave erin gina hank ivan judy kate; do add_user "$u"; done
for u in alice bob carol erin gina hank ivan judy kate; do enroll "$u"; done     # dave: no MFA
mf user disable bob >>"$T/setup.log" 2>&1 || die "mfadmin user disable bob failed"

VALIDATE_KEY=$(mf apikey create --user root --name radius --validate-only 2>>"$T/setup.log") \
    || { tail -n 5 "$T/setup.log"; die "mfadmin apikey create --validate-only failed"; }
ADMIN_KEY=$(mf apikey create --user root --name e2e-admin --role admin 2>>"$T/setup.log") \
    || { tail -n 5 "$T/setup.log"; die "mfadmin apikey create --role admin failed"; }

# --- mfadmin serve ---------------------------------------------------------------------------------
"$BIN" --config "$CONF" serve >"$T/serve.log" 2>&1 3>&- 4>&- &
SERVE_PID=$!
python3 - "$URL/healthz" <<'EOF' || die "mfadmin serve did not answer $URL/healthz within 15 s (see $T/serve.log)"
import sys, time, urllib.request
for _ in range(150):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF

# --- FreeRADIUS with the contrib files, as an admin installs them --------------------------------
RADDB=$T/raddb
cp -a "$RADDB_SRC/." "$RADDB/" || die "cannot copy $RADDB_SRC"
rm -f "$RADDB"/sites-enabled/*
# The stock eap module wants the default site's Auth-Type EAP; the mfadmin site has none.
rm -f "$RADDB/mods-enabled/eap"
cp "$ROOT/contrib/freeradius/mods-available/mfadmin" "$RADDB/mods-available/mfadmin"
cp "$ROOT/contrib/freeradius/sites-available/mfadmin" "$RADDB/sites-available/mfadmin"
# The admin's edits: mfadmin's address, the API key, the listening address and port.
sed -i "s#connect_uri = \"http://127.0.0.1:7070\"#connect_uri = \"$URL\"#" "$RADDB/mods-available/mfadmin"
sed -i -e "s#^mfadmin_api_key = \"\"#mfadmin_api_key = \"$VALIDATE_KEY\"#" \
    -e "s#ipaddr = \*#ipaddr = 127.0.0.1#" -e "s#port = 1812#port = $RAD_PORT#" "$RADDB/sites-available/mfadmin"
{ grep -q "connect_uri = \"$URL\"" "$RADDB/mods-available/mfadmin" && grep -q "port = $RAD_PORT" "$RADDB/sites-available/mfadmin"; } \
    || die "the contrib FreeRADIUS files no longer have the lines this test edits (connect_uri, port = 1812)"
ln -s ../mods-available/mfadmin "$RADDB/mods-enabled/mfadmin"
ln -s ../sites-available/mfadmin "$RADDB/sites-enabled/mfadmin"
cat >"$RADDB/clients.conf" <<EOF
client e2e {
	ipaddr = 127.0.0.1
	secret = $RAD_SECRET
}
EOF
# A test instance: no proxy listener on every address, run as root from the temporary directory.
sed -i -e 's/^proxy_requests *= *yes/proxy_requests = no/' -e 's/^\(\s*\)\(user\|group\) = freerad/\1# \2 = freerad/' \
    -e "s#^run_dir = .*#run_dir = $T/run#" -e "s#^logdir = .*#logdir = $T/log#" "$RADDB/radiusd.conf"
mkdir -p "$T/run" "$T/log"
timeout 20 freeradius -XC -d "$RADDB" >"$T/freeradius-check.log" 2>&1 \
    || { tail -n 15 "$T/freeradius-check.log"; die "FreeRADIUS refuses the configuration with the contrib files"; }
freeradius -X -d "$RADDB" >"$T/freeradius.log" 2>&1 3>&- 4>&- &
FR_PID=$!
for _ in $(seq 150); do
    grep -q 'Ready to process requests' "$T/freeradius.log" && break
    kill -0 "$FR_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q 'Ready to process requests' "$T/freeradius.log" || die "FreeRADIUS did not start (see $T/freeradius.log)"

# What mfadmin answered FreeRADIUS since the log had SIZE bytes: a reject must be mfadmin's 400 (its
# verdict), not a 404, 401 or an unreachable server, which FreeRADIUS turns into rejects as well.
mfadmin_status() { # SIZE
    tail -c +"$(($1 + 1))" "$T/freeradius.log" | grep -o 'REST-HTTP-Status-Code = "[0-9]*"' | tail -n 1 | tr -dc '0-9'
}
verdict() { # KIND EXPECT WHAT GOT SIZE: pass when GOT is EXPECT and mfadmin said 204 / 400 for it
    local kind=$1 expect=$2 what=$3 got=$4 size=$5 status want
    status=$(mfadmin_status "$size")
    want=400; [ "$expect" = accept ] && want=204
    if [ "$got" = "$expect" ] && [ "$status" = "$want" ]; then
        pass "$kind $what: $expect (mfadmin $status)"
    else
        fail "$kind $what: expected $expect (mfadmin $want), got $got (mfadmin ${status:-not asked})"
    fi
}

# radius EXPECT USER PASSWORD WHAT: one Access-Request with radclient; EXPECT is accept or reject.
radius() {
    local expect=$1 user=$2 password=$3 what=$4 out got size
    size=$(stat -c %s "$T/freeradius.log")
    out=$(printf 'User-Name = "%s", User-Password = "%s"\n' "$user" "$password" \
        | timeout 20 radclient -r 1 -t 8 "127.0.0.1:$RAD_PORT" auth "$RAD_SECRET" 2>&1)
    case "$out" in
        *"Received Access-Accept"*) got=accept ;;
        *"Received Access-Reject"*) got=reject ;;
        *) got="no answer ($(printf '%s' "$out" | tail -n 1))" ;;
    esac
    verdict RADIUS "$expect" "$what" "$got" "$size"
}

echo "# FreeRADIUS (rlm_rest -> /validate/radiuscheck)"
fresh alice; radius accept alice "$CODE" "alice, right code"
radius reject alice "$CODE" "alice, the same code again (replay)"
radius reject alice "$(wrong alice)" "alice, wrong code"
fresh bob; radius reject bob "$CODE" "bob (disabled), right code"
check "bob is refused as disabled (/validate/check)" python3 "$HERE/pi_client.py" --url "$URL" --key "$VALIDATE_KEY" \
    --user bob --pass "$CODE" --expect reject --message "The user is disabled"
for i in $(seq "$THRESHOLD"); do radius reject carol "$(wrong carol)" "carol, wrong code $i of $THRESHOLD"; done
fresh carol; radius reject carol "$CODE" "carol (locked by wrong codes), right code"
check "carol is refused as locked (/validate/check)" python3 "$HERE/pi_client.py" --url "$URL" --key "$VALIDATE_KEY" \
    --user carol --pass "$CODE" --expect reject --message "matching 1 tokens, Failcounter exceeded"
radius reject dave 123456 "dave (no MFA), some code"
check "erin's MFA reset through the running server (remote CLI, admin API key)" \
    env MFADMIN_TOKEN="$ADMIN_KEY" timeout 30 "$BIN" --config "$CONF" --remote "$URL" mfa reset erin --reason "e2e: lost phone" --yes
fresh erin; radius reject erin "$CODE" "erin, right code a moment after her reset"
check "erin has no token now (/validate/check)" python3 "$HERE/pi_client.py" --url "$URL" --key "$VALIDATE_KEY" \
    --user erin --pass "$CODE" --expect reject --message "The user has no tokens assigned"

echo "# PAM (pam_radius_auth -> FreeRADIUS -> mfadmin), pamtester"
PAM_CONF=$T/pam_radius_auth.conf
sed "s#^127.0.0.1:1812 .*#127.0.0.1:$RAD_PORT $RAD_SECRET 10#" "$ROOT/contrib/pam/pam_radius_auth.conf" >"$PAM_CONF"
chmod 600 "$PAM_CONF"
grep -q "^127.0.0.1:$RAD_PORT " "$PAM_CONF" || die "contrib/pam/pam_radius_auth.conf no longer has the 127.0.0.1:1812 line this test edits"
PAM_WRITTEN=1
sed "s#conf=/etc/pam_radius_auth.conf#conf=$PAM_CONF#" "$ROOT/contrib/pam/mfadmin-otp" >"$PAM_FILE"
grep -q "conf=$PAM_CONF" "$PAM_FILE" || die "contrib/pam/mfadmin-otp no longer has conf=/etc/pam_radius_auth.conf"
# pamtester asks through libpam_misc's conversation, which reads standard input when it is no terminal.
pam() { # EXPECT USER CODE WHAT
    local expect=$1 user=$2 code=$3 what=$4 out got size
    size=$(stat -c %s "$T/freeradius.log")
    out=$(printf '%s\n' "$code" | timeout 30 pamtester "$PAM_SERVICE" "$user" authenticate 2>&1)
    case "$out" in
        *"successfully authenticated"*) got=accept ;;
        *"Authentication failure"*) got=reject ;;
        *) got="neither ($(printf '%s' "$out" | tail -n 1))" ;;
    esac
    verdict PAM "$expect" "$what" "$got" "$size"
}
fresh gina; pam accept gina "$CODE" "gina, right code"
pam reject gina "$(wrong gina)" "gina, wrong code"
pam reject gina "$CODE" "gina, the same code again (replay)"
rm -f "$PAM_FILE"
PAM_WRITTEN=""

echo "# privacyIDEA clients (/validate/check), pi_client.py"
pi() { python3 "$HERE/pi_client.py" --url "$URL" "$@"; }
fresh hank
check "hank, right code, form with realm, 'Authorization: KEY'" pi --key "$VALIDATE_KEY" --user hank --pass "$CODE" --realm Acme --expect accept
check "hank, the same code again" pi --key "$VALIDATE_KEY" --user hank --pass "$CODE" --realm Acme --expect reject \
    --message "wrong otp value. previous otp used again"
check "hank, wrong code" pi --key "$VALIDATE_KEY" --user hank --pass "$(wrong hank)" --expect reject --message "wrong otp value"
fresh kate
check "kate, right code but the realm of no org" pi --key "$VALIDATE_KEY" --user kate --pass "$CODE" --realm NoSuchOrg --expect notaccept
check "dave (no MFA), 'Authorization: Bearer KEY'" pi --key "$VALIDATE_KEY" --header bearer --user dave --pass 123456 \
    --expect reject --message "The user has no tokens assigned"
check "dave (no MFA), 'PI-Authorization: KEY'" pi --key "$VALIDATE_KEY" --header pi --user dave --pass 123456 --expect reject
check "no API key from an address not in allow_from" pi --user dave --pass 123456 --expect denied
check "a wrong API key" pi --key "not-a-key-$RANDOM" --user dave --pass 123456 --expect denied
fresh ivan
check "ivan, right code, JSON body" pi --key "$VALIDATE_KEY" --header bearer --json --user ivan --pass "$CODE" --expect accept
fresh judy
check "judy, right code, /validate/radiuscheck: 204, no body" pi --radiuscheck --key "$VALIDATE_KEY" --user judy --pass "$CODE" --expect accept
check "judy, wrong code, /validate/radiuscheck: 400, no body" pi --radiuscheck --key "$VALIDATE_KEY" --user judy --pass "$(wrong judy)" --expect reject
if kill -0 "$SERVE_PID" 2>/dev/null; then pass "mfadmin serve still running"; else fail "mfadmin serve exited during the run"; fi

echo "# took $SECONDS s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
