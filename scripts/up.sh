#!/usr/bin/env bash
# Brings Orderflow up on the embedded defaults and shows it working:
#   Temporal dev server (persisted in data/temporal.db) + its UI, SQLite orders database,
#   the demo catalog, an orderflow-worker, the HTTP shim (`orderflow serve`), both with the sandbox
#   payment gateway switched on (ORDERFLOW_SANDBOX=true, development only) — then one order
#   down each path (paid through the sandbox checkout and its signed webhook, timed out,
#   cancelled) and one left open for you to pay in a browser. Keeps running until ctrl-c.
#
# Settings (all optional): TEMPORAL_PORT (7233), TEMPORAL_UI_PORT (8233), SHIM_PORT (8080),
# DATABASE_URL (sqlite://data/orderflow.db; postgres://… and mysql://… work too), DEMO_TIMEOUT (5s: the timed-out order's window).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}
DEMO_TIMEOUT=${DEMO_TIMEOUT:-5s}
SHIM_PORT=${SHIM_PORT:-8080}
export ORDERFLOW_LISTEN="127.0.0.1:${SHIM_PORT}"
export ORDERFLOW_PUBLIC_URL="http://127.0.0.1:${SHIM_PORT}"
export DATABASE_URL=${DATABASE_URL:-sqlite://data/orderflow.db}
export TEMPORAL_ADDRESS="127.0.0.1:${TEMPORAL_PORT}"
# The sandbox payment gateway: a development tool, off unless switched on (never in production).
# The worker and the shim both log a warning that it is on; orders that name no provider use it.
export ORDERFLOW_SANDBOX=true
export ORDERFLOW_DEFAULT_PROVIDER=sandbox
mkdir -p data .run

ensure_temporal_tools

echo "==> building orderflow and orderflow-worker"
cargo build --quiet --bins -p orderflow-starter -p orderflow-worker
bin="${CARGO_TARGET_DIR:-target}/debug"
of() { "$bin/orderflow" "$@"; }

pids=()
cleanup() {
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if port_open "$TEMPORAL_PORT"; then
  echo "==> a Temporal server already listens on ${TEMPORAL_ADDRESS}; using it"
  for flag in $(search_attribute_flags | sed 's/--search-attribute //g'); do
    .venv/bin/temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" \
      --name "${flag%%=*}" --type "${flag#*=}" >/dev/null 2>&1 || true
  done
else
  echo "==> starting the Temporal dev server on ${TEMPORAL_ADDRESS} (UI on :${TEMPORAL_UI_PORT})"
  # shellcheck disable=SC2046
  .venv/bin/temporal server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" \
    --ui-port "$TEMPORAL_UI_PORT" --db-filename data/temporal.db \
    --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
    --log-level error $(search_attribute_flags) >.run/temporal.log 2>&1 &
  pids+=($!)
  wait_port "$TEMPORAL_PORT" 60 "the Temporal dev server" || { cat .run/temporal.log >&2; exit 1; }
fi

field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# The URL without its password (user:password@ → user:***@): secrets never print.
echo "==> migrating $(sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$DATABASE_URL") and seeding the demo catalog"
of db migrate
of catalog seed

# The demo shop's API key: every call to /v1/orders needs one. Shown once by the CLI; kept in
# .run/api-key for this demo only.
ORDERFLOW_API_KEY=$(of --json api-keys create --client demo-shop | field key)
echo "$ORDERFLOW_API_KEY" >.run/api-key
echo "==> API key of the demo shop (orders:create, orders:read, orders:cancel): ${ORDERFLOW_API_KEY}"

echo "==> starting orderflow-worker (log: .run/worker.log)"
"$bin/orderflow-worker" >.run/worker.log 2>&1 &
pids+=($!)

if port_open "$SHIM_PORT"; then
  echo "error: port ${SHIM_PORT} is taken; set SHIM_PORT to a free port" >&2
  exit 1
fi
echo "==> starting the HTTP shim on ${ORDERFLOW_PUBLIC_URL} (log: .run/shim.log)"
of serve >.run/shim.log 2>&1 &
pids+=($!)
wait_port "$SHIM_PORT" 30 "orderflow serve" || { cat .run/shim.log >&2; exit 1; }

echo
echo "==> 1. an order paid at the sandbox checkout (the gateway sends a signed webhook to the shim)"
created=$(curl -sS -X POST "${ORDERFLOW_PUBLIC_URL}/v1/orders" -H 'content-type: application/json' \
  -H "Authorization: Bearer ${ORDERFLOW_API_KEY}" -H "Idempotency-Key: demo-$(date +%s%N)" \
  -d '{"customer_id":"demo-alice","lines":[{"sku":"TEE-RED-M","quantity":2},{"sku":"MUG-LOGO","quantity":1}]}')
paid=$(echo "$created" | field order_id)
payment_no=$(echo "$created" | field payment_no)
echo "POST /v1/orders -> $(echo "$created" | field status) $(echo "$created" | field amount), pay at $(echo "$created" | field checkout_url)"
curl -sS -X POST "${ORDERFLOW_PUBLIC_URL}/sandbox/checkout/${payment_no}/pay" >/dev/null
of order wait "$paid" --timeout 60s

echo
echo "==> 2. an order nobody pays (payment window ${DEMO_TIMEOUT})"
late=$(of --json order create --customer demo-bob --line HOODIE-BLK-L:1 --timeout "$DEMO_TIMEOUT" | field order_id)
of order wait "$late" --timeout 120s

echo
echo "==> 3. an order the customer cancels"
gone=$(of --json order create --customer demo-carol --line FLASH-DEAL:2 | field order_id)
of order cancel "$gone" --reason "changed my mind"

echo
echo "==> 4. an order waiting for you"
open_order=$(of --json order create --customer demo-you --line STICKER-PACK:3 | field checkout_url)
echo "open ${open_order} in a browser and press Pay"

echo
echo "==> stock now (order 4 holds its 3 stickers until it is paid or expires)"
of stock show

cat <<EOF

Orderflow is running.
  pay order 4:   ${open_order}
  Temporal UI:   http://localhost:${TEMPORAL_UI_PORT}/namespaces/default/workflows
  stuck orders:  http://localhost:${TEMPORAL_UI_PORT}/namespaces/default/workflows?query=OrderStatus%3D%22AWAITING_PAYMENT%22
  orders API:    ${ORDERFLOW_PUBLIC_URL}/openapi.json (Authorization: Bearer ${ORDERFLOW_API_KEY})
  metrics:       http://${ORDERFLOW_ADMIN_LISTEN:-127.0.0.1:9465}/metrics
  CLI:           $bin/orderflow --help
  logs:          .run/worker.log, .run/shim.log, .run/temporal.log
Press ctrl-c to stop.
EOF
wait "${pids[@]}"
