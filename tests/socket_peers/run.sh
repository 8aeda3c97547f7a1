#!/usr/bin/env bash
# The local socket's peer checks with real OS users (run as root; .ci/run does it with sudo):
# a daemon user serves the store; a member of its socket group uses the CLI through the socket as
# the console operator (audited as console:<member>); root may too; an unprivileged user outside
# the group is refused with a clear message, whether the socket file's mode stops it or the
# server's SO_PEERCRED check does; a member taken out of the group is refused at once.
# Usage: MFADMIN_BIN=target/debug/mfadmin tests/socket_peers/run.sh
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "socket peers: needs root (it adds OS users and a group)" >&2
  exit 1
fi
bin_src="${MFADMIN_BIN:-target/debug/mfadmin}"
[ -x "$bin_src" ] || { echo "socket peers: no mfadmin binary at $bin_src (cargo build first)" >&2; exit 1; }

suffix="$$"
group="mfsock$suffix"
daemon="mfsockd$suffix"
member="mfsockm$suffix"
outsider="mfsocko$suffix"
work="$(mktemp -d /tmp/mfadmin-socket-peers.XXXXXX)"
server_pid=""

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  for u in "$member" "$outsider" "$daemon"; do
    userdel "$u" >/dev/null 2>&1 || true
  done
  groupdel "$group" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "socket peers: FAILED: $*" >&2
  [ -f "$work/serve.log" ] && { echo "--- server log" >&2; tail -n 30 "$work/serve.log" >&2; }
  exit 1
}

# The binary where every test user can run it; the site like the package lays it out: the store
# private to the daemon's user, the socket's directory open to its group only.
chmod 0755 "$work"
install -m 0755 "$bin_src" "$work/mfadmin"
groupadd "$group"
useradd -M -N -g "$group" -s /usr/sbin/nologin "$daemon"
useradd -M -N -G "$group" -s /bin/sh "$member"
useradd -M -N -s /bin/sh "$outsider"
install -d -m 0700 -o "$daemon" -g "$group" "$work/data"
install -d -m 0750 -o "$daemon" -g "$group" "$work/run"
socket="$work/run/mfadmin.sock"
cat >"$work/config.toml" <<EOF
[server]
socket = "$socket"
socket_group = "$group"
EOF
chmod 0644 "$work/config.toml"

# As OS user $1, the rest of the arguments to mfadmin; environment cleared of the caller's.
as() {
  local who="$1"; shift
  runuser -u "$who" -- env -i PATH=/usr/bin:/bin NO_COLOR=1 \
    "$work/mfadmin" --config "$work/config.toml" --data-dir "$work/data" "$@"
}

echo "socket-peers-password-1" | as "$daemon" init --org Acme --owner alice --password-stdin >/dev/null \
  || fail "init as the daemon's user"
as "$daemon" user add bob --email bob@acme.example >/dev/null || fail "user add"

# setpriv execs (runuser would stay as a parent and answer SIGTERM itself).
setpriv --reuid "$daemon" --regid "$group" --init-groups env -i PATH=/usr/bin:/bin NO_COLOR=1 \
  "$work/mfadmin" --config "$work/config.toml" --data-dir "$work/data" serve --listen 127.0.0.1:0 \
  >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  [ -S "$socket" ] && grep -q "listening on http://" "$work/serve.log" && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
  sleep 0.1
done
[ -S "$socket" ] || fail "no socket at $socket after 30 s"

mode=$(stat -c '%a %G' "$socket")
[ "$mode" = "660 $group" ] || fail "the socket is '$mode', expected '660 $group'"

# A member of the group: the console operator, through the socket, said once with -v.
out=$(as "$member" -v user list 2>"$work/err") || { cat "$work/err" >&2; fail "the member's user list"; }
grep -q "through the running server" "$work/err" || fail "the member was not told it went through the server: $(cat "$work/err")"
echo "$out" | grep -q bob || fail "the member's list lacks bob: $out"
as "$member" user add carol --email carol@acme.example >/dev/null 2>"$work/err" || { cat "$work/err" >&2; fail "the member's user add"; }
audit=$(as "$member" audit list --filter user.add --output json)
echo "$audit" | grep -Eq "\"actor\": *\"console:$member\"" || fail "carol's addition is not audited as console:$member: $audit"
echo "$audit" | grep -Eq '"source": *"socket:cli"' || fail "carol's addition's source is not socket:cli: $audit"
echo "member $member: allowed, audited as console:$member"

# Root: allowed too.
as root user list >/dev/null 2>"$work/err" || { cat "$work/err" >&2; fail "root's user list"; }
echo "root: allowed"

# Outside the group: the file modes keep the socket out of reach, and the CLI says why.
if as "$outsider" user list >"$work/out" 2>"$work/err"; then fail "the outsider listed users"; fi
grep -q "may not use that socket" "$work/err" || fail "the outsider's refusal does not say why: $(cat "$work/err")"
echo "outsider $outsider: refused by the socket file's mode ($(head -c 80 "$work/err")...)"

# With the socket opened to everyone, the server's own peer check still refuses the outsider (403).
chmod 0755 "$work/run"; chmod 0666 "$socket"
if as "$outsider" user list >"$work/out" 2>"$work/err"; then fail "the outsider listed users through an open socket"; fi
grep -q "may not use this server's local socket" "$work/err" || fail "no 403 from the server's peer check: $(cat "$work/err")"
grep -q "refusing the socket to an OS user outside its group" "$work/serve.log" || fail "the server did not log the refusal"
echo "outsider $outsider: refused by the server's SO_PEERCRED check"

# A member taken out of the group loses the socket at once (no restart).
gpasswd -d "$member" "$group" >/dev/null
if as "$member" user list >"$work/out" 2>"$work/err"; then fail "a former member still lists users"; fi
grep -q "may not use this server's local socket" "$work/err" || fail "the former member's refusal: $(cat "$work/err")"
echo "former member $member: refused"

kill -TERM "$server_pid"
wait "$server_pid" || fail "the server did not exit 0 on SIGTERM"
server_pid=""
[ ! -e "$socket" ] || fail "the socket file is left after a clean stop"
echo "socket peers: ok (member allowed, root allowed, outsider refused twice, former member refused)"
