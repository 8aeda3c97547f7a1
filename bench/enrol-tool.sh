#!/usr/bin/env bash
# Prints the path of the bench tool that enrols users one commit at a time (`validate_load`, from
# benches/validate_load.rs), building it first when it is missing or older than the mfadmin binary
# given (a tool built before the binary may not open the stores it makes).
# Usage: bench/enrol-tool.sh MFADMIN        (run from the repository's root)
set -euo pipefail
newest() { ls -t target/release/deps/validate_load-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true; }
LOAD=$(newest)
if [ -z "$LOAD" ] || [ "$LOAD" -ot "$1" ]; then
    cargo bench --bench validate_load --no-run >&2
    LOAD=$(newest)
fi
[ -n "$LOAD" ] || { echo "the validate_load bench tool was not built" >&2; exit 1; }
echo "$LOAD"
