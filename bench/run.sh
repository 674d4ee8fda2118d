#!/usr/bin/env bash
# The standard benchmark suite, one command:
#
#   bench/run.sh            # full suite (about 20 minutes on 2 cores, plus the release build)
#   BENCH_SCALE=0.1 bench/run.sh   # every order count scaled down, to try the script quickly
#   BENCH_ONLY=hot-sku bench/run.sh # only the scenarios whose name matches (grep -E); prints the
#                                   # figures, leaves BENCHMARKS.md alone
#   BENCH_BASELINE=<git ref> bench/run.sh  # also runs the order scenarios that a change to the
#                                   # workflow or its activities moves (burst, paced, hot SKU) with
#                                   # that ref's worker, each right after this build's: a same-run
#                                   # comparison ("Against the baseline" in the report); with
#                                   # BENCH_ONLY, a selected scenario brings its baseline run along
#   BENCH_ONLY=... BENCH_RECORD=1 bench/run.sh  # a partial run recorded in BENCHMARKS.md /
#                                   # BENCHMARKS.json as a dated section of its own, the full run's
#                                   # figures kept (`bench/report.py --partial`; also by hand on a
#                                   # kept bench/out)
#
# Builds in release, starts a fresh Temporal dev server (in memory, SQLite WAL) on a free port,
# and runs every scenario with `orderflow-load` against a fresh worker each time. Writes the
# figures, the machine, the versions and the exact commands to BENCHMARKS.md and BENCHMARKS.json
# (bench/report.py). Needs PostgreSQL at BENCH_POSTGRES_ADMIN_URL and MariaDB (or MySQL) at
# BENCH_MYSQL_ADMIN_URL (default mysql://root@127.0.0.1:3306/test), with the `mariadb` client; a
# fresh database `orderflow_bench` is created on each. The burst-postgres-events scenario publishes
# order events to NATS JetStream at BENCH_NATS_URL (default nats://127.0.0.1:4222), into a stream of
# its own per run (BENCH_EVENTS_<date>_<pid>, subjects bench.<date>_<pid>.>, messages kept an hour).
# Prints figures; asserts nothing about time.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SCALE=${BENCH_SCALE:-1}
PG_ADMIN=${BENCH_POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_URL=${PG_ADMIN%/*}/orderflow_bench
MY_ADMIN=${BENCH_MYSQL_ADMIN_URL:-mysql://root@127.0.0.1:3306/test}
MY_URL=${MY_ADMIN%/*}/orderflow_bench
NATS_URL=${BENCH_NATS_URL:-nats://127.0.0.1:4222}
# This run's own JetStream stream and subjects (runs never mix events).
EVENTS_TAG=$(date -u +%Y%m%dT%H%M%S)_$$
# The admin URL's host, port, user and password, one a line, for the `mariadb` client (the password
# goes to it through MYSQL_PWD, never on a command line; it may be empty).
{ IFS= read -r MY_HOST; IFS= read -r MY_PORT; IFS= read -r MY_USER; IFS= read -r MY_PWD; } < <(
  python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 3306, u.unquote(p.username or "root"), u.unquote(p.password or ""), sep="\n")' "$MY_ADMIN")
OUT=bench/out
rm -rf "$OUT" && mkdir -p "$OUT"
# The code measured, recorded before the run (the report may be written after later edits).
echo "$(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain --untracked-files=no)" ] && echo ' (uncommitted changes)')" >"$OUT/commit"
date -u +%Y-%m-%dT%H:%M:%SZ >"$OUT/started"
n() { python3 -c "import sys; print(max(10, int(round($1 * $SCALE))))"; }

ensure_temporal_tools
echo "==> building release binaries"
cargo build --release --quiet -p orderflow-starter -p orderflow-worker -p orderflow-load
BIN=${CARGO_TARGET_DIR:-target}/release
export ORDERFLOW_BIN=$BIN/orderflow

# The baseline's worker: that ref's source (git archive), built in a target directory of its own
# (the same workspace in two places would overwrite each other's artifacts in one), seeded with
# this build's dependencies. The load driver is this build's for both.
BASELINE_BIN=""
if [ -n "${BENCH_BASELINE:-}" ]; then
  base_ref=$(git rev-parse --short "$BENCH_BASELINE^{commit}")
  echo "==> building the baseline worker ($BENCH_BASELINE = $base_ref) in release"
  base_src=$OUT/baseline-src
  base_target=bench/baseline-target
  mkdir -p "$base_src" "$base_target/release"
  git archive "$base_ref" | tar -x -C "$base_src"
  rsync -a --ignore-existing --exclude '*orderflow*' "$BIN/.fingerprint" "$BIN/build" "$BIN/deps" "$base_target/release/"
  (cd "$base_src" && CARGO_TARGET_DIR="$PWD/../../baseline-target" cargo build --release --quiet -p orderflow-worker)
  BASELINE_BIN=$base_target/release
  echo "$base_ref" >"$OUT/baseline"
fi

port=$(free_port)
# shellcheck disable=SC2046
.venv/bin/temporal server start-dev --headless --ip 127.0.0.1 --port "$port" --log-level error \
  --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
  $(search_attribute_flags) >"$OUT/temporal.log" 2>&1 &
server=$!
worker=""
cleanup() {
  [ -n "$worker" ] && kill "$worker" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
wait_port "$port" 60 "the Temporal dev server"
export TEMPORAL_ADDRESS="127.0.0.1:$port"
export RUST_LOG=warn
# The server is on this host: gzip on the gRPC link would only cost CPU at both ends (the
# burst-postgres-gzip scenario measures how much). Applies to the workers and the driver.
export ORDERFLOW_GRPC_COMPRESSION=none

sqlite_url() { echo "sqlite://$OUT/$1.db"; }
fresh_pg() {
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS orderflow_bench" -c "CREATE DATABASE orderflow_bench" >/dev/null
}
# selected NAME: whether BENCH_ONLY (if set) selects the scenario NAME.
selected() { [ -z "${BENCH_ONLY:-}" ] || grep -qE "$BENCH_ONLY" <<<"$1"; }
# fresh_my NAME...: a fresh `orderflow_bench` on MariaDB/MySQL for the scenarios NAME..., unless
# BENCH_ONLY selects none of them (a partial run without them needs no MariaDB); records the
# server's version for the report.
fresh_my() {
  local name
  for name in "$@"; do
    if selected "$name"; then
      MYSQL_PWD=$MY_PWD mariadb --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -N \
        -e "DROP DATABASE IF EXISTS orderflow_bench; CREATE DATABASE orderflow_bench; SELECT VERSION()" >"$OUT/mysql_version"
      return
    fi
  done
}

# Tuning the worker for bursts of new workflows: more workflow-task polls, half of them on the
# shared queue (new workflows arrive there), and a sticky cache that holds every open order.
TUNED="--workflow-pollers 16 --nonsticky-poll-ratio 0.5 --activity-pollers 8 --max-cached-workflows 12000"

# run NAME DATABASE_URL "WORKER FLAGS" LOAD FLAGS...
run() {
  local name=$1 db=$2 wflags=$3
  shift 3
  [ -n "${RUN_SELECTED:-}" ] || selected "$name" || return 0
  local queue="bench-$name"
  # The worker's event settings, for the report (the broker's URL without credentials).
  local wenv=""
  if [ -n "${ORDERFLOW_NATS_URL:-}" ]; then
    wenv="ORDERFLOW_NATS_URL=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p._replace(netloc=p.hostname + (f":{p.port}" if p.port else "")).geturl())' "$ORDERFLOW_NATS_URL")"
    wenv+=" ORDERFLOW_EVENTS_STREAM=${ORDERFLOW_EVENTS_STREAM:-} ORDERFLOW_EVENTS_SUBJECT_PREFIX=${ORDERFLOW_EVENTS_SUBJECT_PREFIX:-}"
    wenv+="${ORDERFLOW_EVENTS_STREAM_MAX_AGE_HOURS:+ ORDERFLOW_EVENTS_STREAM_MAX_AGE_HOURS=$ORDERFLOW_EVENTS_STREAM_MAX_AGE_HOURS}"
  fi
  # shellcheck disable=SC2086
  # ORDERFLOW_SANDBOX: the load pays through the sandbox gateway (off by default; a baseline
  # worker from before the switch ignores the variable and always had it).
  DATABASE_URL=$db ORDERFLOW_TASK_QUEUE=$queue ORDERFLOW_SANDBOX=true "${WORKER_BIN:-$BIN}/orderflow-worker" $wflags >"$OUT/$name.worker.log" 2>&1 &
  worker=$!
  local cmd="orderflow-load $* --database-url <db> --task-queue $queue --worker-pid <worker> --server-pid <server> --json"
  echo "==> $name: $cmd"
  echo "    worker: ${wenv:+$wenv }orderflow-worker $wflags"
  local status=0
  "$BIN"/orderflow-load "$@" --database-url "$db" --task-queue "$queue" \
    --worker-pid "$worker" --server-pid "$server" --run-id "B$(echo "$name" | tr 'a-z-' 'A-Z_')" --json \
    >"$OUT/$name.json" 2>"$OUT/$name.err" || status=$?
  kill "$worker" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
  worker=""
  python3 - "$OUT/$name.json" "$name" "$cmd" "$wflags" "$status" "$wenv" <<'PY'
import json, sys
path, name, cmd, wflags, status, wenv = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"    FAILED ({e}); see {path[:-5]}.err")
    sys.exit(0)
r["bench_name"], r["command"], r["worker_flags"], r["exit_status"] = name, cmd, wflags, int(status)
if wenv:
    r["worker_env"] = wenv
json.dump(r, open(path, "w"), indent=1)
w = (r.get("worker_cpu") or {}).get("cpu_ms_per_order")
s = (r.get("server_cpu") or {}).get("cpu_ms_per_order")
print(f"    {r['finished']}/{r['orders']} in {r['window_s']} s = {r['orders_per_s']}/s; "
      f"outcomes {r['outcomes']} match={r['outcomes_match']}; worker {w} ms, server {s} ms per order; "
      f"{r.get('state_transitions_per_order')} transitions/order; exit {status}")
e = r.get("events")
if e:
    lag = e["publish_lag"]
    print(f"    events: {e['published']}/{e['events']} published ({e['events_per_order']}/order), "
          f"relay {e['events_per_s']}/s over {e['span_s']} s, lag p50/p99/max {lag['p50_ms']}/{lag['p99_ms']}/{lag['max_ms']} ms, "
          f"all published {e['drained_after_s']} s after the last order: {e['all_published']}")
PY
}

# pair NAME DATABASE_URL "WORKER FLAGS" LOAD FLAGS... (PostgreSQL): the scenario with this build's
# worker and, with BENCH_BASELINE, again as NAME-baseline with the baseline's, each on a fresh
# database; BENCH_BASELINE_FIRST=1 runs the baseline first (to see what going first is worth).
# BENCH_ONLY selecting NAME (or NAME-baseline) selects both.
pair() {
  local name=$1
  shift
  local base=""
  if [ -n "$BASELINE_BIN" ] && { selected "$name" || selected "$name-baseline"; }; then
    base=1
  fi
  if [ -n "$base" ] && [ -n "${BENCH_BASELINE_FIRST:-}" ]; then
    fresh_pg
    WORKER_BIN=$BASELINE_BIN RUN_SELECTED=1 run "$name-baseline" "$@"
  fi
  fresh_pg
  run "$name" "$@"
  if [ -n "$base" ] && [ -z "${BENCH_BASELINE_FIRST:-}" ]; then
    fresh_pg
    WORKER_BIN=$BASELINE_BIN RUN_SELECTED=1 run "$name-baseline" "$@"
  fi
}

B=$(n 2000)
# 1. The server's ceiling: workflows that complete at once.
run ceiling "$(sqlite_url ceiling)" "$TUNED" --workflow noop --orders "$B" --concurrency 500

# 2. Order throughput: unpaced bursts, half paid, half timing out after 5 s.
run burst-sqlite "$(sqlite_url burst)" "$TUNED" --orders "$B" --concurrency 1000 --mix paid=50,timeout=50 --payment-timeout-secs 5
pair burst-postgres "$PG_URL" "$TUNED" --orders "$B" --concurrency 1000 --mix paid=50,timeout=50 --payment-timeout-secs 5
# The same burst with order events published (issue 19): the worker's relay publishes every outbox
# row to NATS JetStream (this run's own stream); after the burst the load waits (at most 60 s) until
# the relay has published every event of the run and reports its sustained events/s and lag.
if selected burst-postgres-events && ! python3 -c 'import socket, sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); socket.create_connection((p.hostname or "127.0.0.1", p.port or 4222), 2)' "$NATS_URL" 2>/dev/null; then
  echo "error: burst-postgres-events needs NATS with JetStream at $NATS_URL (BENCH_NATS_URL)" >&2
  exit 1
fi
fresh_pg
ORDERFLOW_NATS_URL=$NATS_URL ORDERFLOW_EVENTS_STREAM="BENCH_EVENTS_$EVENTS_TAG" ORDERFLOW_EVENTS_SUBJECT_PREFIX="bench.$EVENTS_TAG" \
  ORDERFLOW_EVENTS_STREAM_MAX_AGE_HOURS=1 \
  run burst-postgres-events "$PG_URL" "$TUNED" --orders "$B" --concurrency 1000 --mix paid=50,timeout=50 --payment-timeout-secs 5 --events-report --events-wait-secs 60
# The same burst on MariaDB/MySQL (no baseline pair: a baseline from before MySQL support would
# refuse the URL).
fresh_my burst-mysql
run burst-mysql "$MY_URL" "$TUNED" --orders "$B" --concurrency 1000 --mix paid=50,timeout=50 --payment-timeout-secs 5
# The same burst with each setting put back, in the same run: gzip on, the SDK's default
# poller tuning.
fresh_pg
ORDERFLOW_GRPC_COMPRESSION=gzip run burst-postgres-gzip "$PG_URL" "$TUNED" --orders "$B" --concurrency 1000 --mix paid=50,timeout=50 --payment-timeout-secs 5
fresh_pg
run burst-postgres-default-tuning "$PG_URL" "" --orders "$B" --concurrency 1000 --mix paid=50,timeout=50 --payment-timeout-secs 5

# 3. Latency at a fixed load: 10 orders/s for 40 s.
pair paced-postgres "$PG_URL" "$TUNED" --orders "$(n 400)" --rate 10 --concurrency 1000 --mix paid=50,timeout=50 --payment-timeout-secs 5

# 4. Mass expiry: every deadline in the same second. Started at 40/s (what the server sustains
# for new orders with room to spare) so that all are open before the common deadline.
M=$(n 5000)
fresh_pg
run mass-expiry "$PG_URL" "$TUNED" --orders "$M" --rate 40 --concurrency "$M" --mix timeout=100 --expire-at-secs "$(n 150)"

# 5. Hot SKU: one SKU with stock 1,000, 5,000 buyers. First the raw conditional update on the
# fresh database (the database's ceiling, at its best: later scenarios leave a bigger file and
# WAL behind), then stock decided at the edge (--reserve-at-edge, as `orderflow serve
# --reserve-at-edge`: every buyer arrives at once, concurrency = buyers; losers are answered from
# the database, winners' workflows are started by the relay), then each order's workflow
# reserving, as by default.
H=$(n 5000)
HS=$(n 1000)
fresh_pg
run hot-sku-postgres-raw "$PG_URL" "" --workflow raw-reserve --orders "$H" --concurrency 64 --skus 1 --stock "$HS"
run hot-sku-postgres-edge "$PG_URL" "$TUNED" --orders "$H" --concurrency "$H" --skus 1 --stock "$HS" --mix paid=100 --payment-timeout-secs 60 --reserve-at-edge
# The same with every winner's workflow started at once (what the relay's hold buys).
run hot-sku-postgres-edge-no-hold "$PG_URL" "$TUNED" --orders "$H" --concurrency "$H" --skus 1 --stock "$HS" --mix paid=100 --payment-timeout-secs 60 --reserve-at-edge --relay-hold-secs 0
pair hot-sku-postgres "$PG_URL" "$TUNED" --orders "$H" --concurrency 1000 --skus 1 --stock "$HS" --mix paid=100 --payment-timeout-secs 60
# The same three on MariaDB/MySQL, each on a fresh database where PostgreSQL's is.
fresh_my hot-sku-mysql-raw hot-sku-mysql-edge
run hot-sku-mysql-raw "$MY_URL" "" --workflow raw-reserve --orders "$H" --concurrency 64 --skus 1 --stock "$HS"
run hot-sku-mysql-edge "$MY_URL" "$TUNED" --orders "$H" --concurrency "$H" --skus 1 --stock "$HS" --mix paid=100 --payment-timeout-secs 60 --reserve-at-edge
fresh_my hot-sku-mysql
run hot-sku-mysql "$MY_URL" "$TUNED" --orders "$H" --concurrency 1000 --skus 1 --stock "$HS" --mix paid=100 --payment-timeout-secs 60
run hot-sku-sqlite-raw "$(sqlite_url hot)" "" --workflow raw-reserve --orders "$H" --concurrency 64 --skus 1 --stock "$HS"
run hot-sku-sqlite-edge "$(sqlite_url hot)" "$TUNED" --orders "$H" --concurrency "$H" --skus 1 --stock "$HS" --mix paid=100 --payment-timeout-secs 60 --reserve-at-edge
run hot-sku-sqlite "$(sqlite_url hot)" "$TUNED" --orders "$H" --concurrency 1000 --skus 1 --stock "$HS" --mix paid=100 --payment-timeout-secs 60

# 6. The server's ceiling again, on the same server at the end: it varies between runs on this VM
# (report.py compares against the higher of the two).
run ceiling-end "$(sqlite_url ceiling-end)" "$TUNED" --workflow noop --orders "$B" --concurrency 500

if [ -n "${BENCH_ONLY:-}" ]; then
  echo "$BENCH_ONLY" >"$OUT/only"
  if [ -n "${BENCH_RECORD:-}" ]; then
    python3 bench/report.py --partial "$OUT" "$port"
  else
    echo "==> BENCH_ONLY=$BENCH_ONLY: a partial run; figures in $OUT, BENCHMARKS.md not written"
    echo "    (to record it as a dated section of BENCHMARKS.md: python3 bench/report.py --partial $OUT)"
  fi
else
  python3 bench/report.py "$OUT" "$port"
fi
