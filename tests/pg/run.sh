#!/usr/bin/env bash
# The store suite, the backup tests and two `mfadmin serve` nodes on one database, against a real
# PostgreSQL: installs the Debian `postgresql`
# package if it is missing, then runs `cargo test --test store_suite --test backup --test pg_nodes` in a
# throw-away cluster (pg_virtualenv
# creates it, sets PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for the command, and removes it after).
# Extra arguments go to the test binary, e.g. `tests/pg/run.sh -- --nocapture`.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v pg_virtualenv >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: postgresql"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# A CA and a certificate for localhost, so that the TLS case runs too (skipped without openssl).
tls=()
if command -v openssl >/dev/null 2>&1; then
  certs=$(mktemp -d)
  trap 'rm -rf "$certs"' EXIT
  chmod 755 "$certs"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/ca.key" -out "$certs/ca.pem" -days 2 -subj "/CN=mfadmin test CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$certs/server.key" -out "$certs/server.csr" -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$certs/ext"
  openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" -CAcreateserial \
    -out "$certs/server.pem" -days 2 -extfile "$certs/ext" 2>/dev/null
  chmod 600 "$certs/server.key"
  # As root, pg_virtualenv runs the server as the postgres user, who must own its key.
  [ "$(id -u)" -ne 0 ] || chown postgres "$certs/server.key"
  tls=(-o ssl=on -o "ssl_cert_file=$certs/server.pem" -o "ssl_key_file=$certs/server.key")
  export MFADMIN_TEST_PG_CA="$certs/ca.pem"
fi

# -t: a temporary cluster directory even as root. MFADMIN_TEST_PG_REQUIRED makes a PostgreSQL case
# that finds no database fail instead of skipping.
pg_virtualenv -t "${tls[@]}" env MFADMIN_TEST_PG_REQUIRED=1 cargo test --locked --test store_suite --test backup --test pg_nodes "$@"
