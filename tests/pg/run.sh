#!/usr/bin/env bash
# The store suite against a real PostgreSQL: installs the Debian `postgresql` package if it is
# missing, then runs `cargo test --test store_suite` inside a throw-away cluster (pg_virtualenv
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

# -t: a temporary cluster directory even as root. MFADMIN_TEST_PG_REQUIRED makes a PostgreSQL case
# that finds no database fail instead of skipping.
exec pg_virtualenv -t env MFADMIN_TEST_PG_REQUIRED=1 cargo test --locked --test store_suite "$@"
