#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against a real Temporal dev server, a
# real worker, SQLite and (when TEST_POSTGRES_URL / TEST_MYSQL_URL are set) PostgreSQL and MySQL.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p orderflow-tests --test orders   # any `cargo test` arguments
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/browser.sh

ensure_temporal_tools
# schemathesis (PyPI) for the OpenAPI contract test.
ensure_contract_tools
# Headless Chromium (Debian) and playwright-core (npm) for the checkout-page browser test.
ensure_browser_tools
# nats-server (Debian) for the event tests that stop a broker of their own.
ensure_nats_tools

echo "==> building (all targets, so tests reuse one dependency build)"
cargo build --workspace --all-targets --quiet

# One dev server for every test binary; each test uses its own task queue and database.
port=$(free_port)
log=$(mktemp -t orderflow-temporal.XXXXXX.log)
# shellcheck disable=SC2046
.venv/bin/temporal server start-dev --headless --ip 127.0.0.1 --port "$port" \
  --log-level error $(search_attribute_flags) >"$log" 2>&1 &
server=$!
nats=""
trap 'kill $server $nats 2>/dev/null || true; wait $server $nats 2>/dev/null || true' EXIT
wait_port "$port" 60 "the Temporal dev server" || { cat "$log" >&2; exit 1; }
# NATS with JetStream for the event tests: the machine's (127.0.0.1:4222), else one of our own.
if [ -z "${TEST_NATS_URL:-}" ]; then
  if port_open 4222; then
    export TEST_NATS_URL=nats://127.0.0.1:4222
  else
    nats_port=$(free_port)
    nats_store=$(mktemp -d -t orderflow-nats.XXXXXX)
    nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$nats_store" >/dev/null 2>&1 &
    nats=$!
    wait_port "$nats_port" 30 "nats-server" || exit 1
    export TEST_NATS_URL=nats://127.0.0.1:$nats_port
  fi
fi
echo "==> NATS JetStream for the event tests: $TEST_NATS_URL"
export ORDERFLOW_TEST_TEMPORAL_ADDRESS="127.0.0.1:$port"
# Test output stays readable; failures still show the warnings.
export RUST_LOG=${RUST_LOG:-warn}
echo "==> Temporal dev server on $ORDERFLOW_TEST_TEMPORAL_ADDRESS"
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  echo "==> TEST_POSTGRES_URL is not set: PostgreSQL variants will be skipped"
fi
if [ -z "${TEST_MYSQL_URL:-}" ]; then
  echo "==> TEST_MYSQL_URL is not set: MySQL variants will be skipped"
fi

out=$(mktemp -t orderflow-tests.XXXXXX.log)
status=0
if [ "$#" -gt 0 ]; then
  cargo test "$@" 2>&1 | tee "$out" || status=$?
else
  cargo test --workspace --no-fail-fast 2>&1 | tee "$out" || status=$?
fi

# The whole suite also fuzzes every parser that takes outside bytes, briefly (scripts/fuzz.sh;
# longer runs and their figures: RELIABILITY.md).
if [ "$#" -eq 0 ]; then
  echo "==> fuzzing: scripts/fuzz.sh ${ORDERFLOW_FUZZ_SECS:-5} (seconds per target)"
  scripts/fuzz.sh "${ORDERFLOW_FUZZ_SECS:-5}" || status=$?
fi

# One closing line for the whole run (cargo prints one summary per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$out"
exit "$status"
