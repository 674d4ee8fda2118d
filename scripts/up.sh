#!/usr/bin/env bash
# Brings Orderflow up on the embedded defaults and shows it working:
#   Temporal dev server (persisted in data/temporal.db) + its UI, SQLite orders database,
#   the demo catalog, an orderflow-worker, the HTTP shim (`orderflow serve`), both with the sandbox
#   payment gateway switched on (ORDERFLOW_SANDBOX=true, development only) — then one order
#   down each path (paid through the sandbox checkout and its signed webhook, timed out,
#   cancelled), one paid with WeChat Pay and one with Alipay (against local stand-ins of both,
#   with test keys: no real money), and one left open for you to pay in a browser. Keeps running
#   until ctrl-c.
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

echo "==> building orderflow, orderflow-worker and the payment provider stand-ins"
cargo build --quiet --bins -p orderflow-starter -p orderflow-worker
cargo build --quiet --bin provider-standins -p orderflow-tests
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

# WeChat Pay and Alipay, each played by a local stand-in that speaks its protocol (signed answers,
# signed and encrypted notifies) with the test keys in tests/fixtures/providers: a development
# tool, like the sandbox. A real deployment sets the same variables to the merchant's own.
"$bin/provider-standins" >.run/standins.json 2>.run/standins.log &
pids+=($!)
for _ in $(seq 100); do [ -s .run/standins.json ] && break; sleep 0.1; done
standins=$(head -n1 .run/standins.json)
[ -n "$standins" ] || { cat .run/standins.log >&2; exit 1; }
keys=tests/fixtures/providers
export WECHATPAY_MCHID=1900000001 WECHATPAY_APPID=wx8888888888888888
export WECHATPAY_MERCHANT_SERIAL=3A7E1C2B4D5F6071829304A5B6C7D8E9F0A1B2C3
export WECHATPAY_MERCHANT_KEY_FILE=$keys/wechatpay/merchant_private_key.pem
export WECHATPAY_APIV3_KEY=0123456789abcdef0123456789abcdef
export WECHATPAY_PLATFORM_CERT_FILES=$keys/wechatpay/platform_cert.pem
export WECHATPAY_API_BASE=$(field wechatpay_api_base <<<"$standins")
export ALIPAY_APP_ID=2021000117600001 ALIPAY_SELLER_ID=2088621000000001
export ALIPAY_APP_PRIVATE_KEY_FILE=$keys/alipay/app_private_key.pem
export ALIPAY_PUBLIC_KEY_FILE=$keys/alipay/alipay_public_key.pem
export ALIPAY_GATEWAY=$(field alipay_gateway <<<"$standins")
phone=$(field control <<<"$standins")
echo "==> WeChat Pay stand-in at ${WECHATPAY_API_BASE}, Alipay stand-in at ${ALIPAY_GATEWAY}"

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

pay_by_phone() { # provider, sku, customer
  local created order payment
  created=$(curl -sS -X POST "${ORDERFLOW_PUBLIC_URL}/v1/orders" -H 'content-type: application/json' \
    -H "Authorization: Bearer ${ORDERFLOW_API_KEY}" -H "Idempotency-Key: demo-$1-$(date +%s%N)" \
    -d "{\"customer_id\":\"$3\",\"provider\":\"$1\",\"lines\":[{\"sku\":\"$2\",\"quantity\":1}]}")
  order=$(echo "$created" | field order_id)
  payment=$(echo "$created" | field payment_no)
  echo "POST /v1/orders -> $(echo "$created" | field status) $(echo "$created" | field amount), QR $(echo "$created" | field qr_payload)"
  echo "  payment page: $(echo "$created" | field checkout_url)"
  echo "  the customer scans and pays: $(curl -sS -X POST "${phone}/$1/pay/${payment}")"
  of order wait "$order" --timeout 60s
}

echo
echo "==> 4. an order paid with WeChat Pay (the stand-in sends a signed, encrypted notify)"
pay_by_phone wechatpay TEA-LONGJING demo-dan

echo
echo "==> 5. an order paid with Alipay (QR code; the stand-in sends a signed notify)"
pay_by_phone alipay MOONCAKE-BOX demo-erin

echo
echo "==> 6. an order waiting for you"
open_order=$(of --json order create --customer demo-you --line STICKER-PACK:3 | field checkout_url)
echo "open ${open_order} in a browser and press Pay"

echo
echo "==> stock now (order 6 holds its 3 stickers until it is paid or expires)"
of stock show

echo
if [ -n "${ORDERFLOW_NATS_URL:-}" ]; then
  echo "==> the events order 1 announced (published to NATS JetStream: orderflow events tail --from-start)"
else
  echo "==> the events order 1 announced (kept in the outbox; ORDERFLOW_NATS_URL=nats://127.0.0.1:4222 publishes them)"
fi
of events list --order "$paid"

cat <<EOF

Orderflow is running.
  pay order 6:   ${open_order}
  Temporal UI:   http://localhost:${TEMPORAL_UI_PORT}/namespaces/default/workflows
  stuck orders:  http://localhost:${TEMPORAL_UI_PORT}/namespaces/default/workflows?query=OrderStatus%3D%22AWAITING_PAYMENT%22
  orders API:    ${ORDERFLOW_PUBLIC_URL}/openapi.json (Authorization: Bearer ${ORDERFLOW_API_KEY})
  metrics:       http://${ORDERFLOW_ADMIN_LISTEN:-127.0.0.1:9465}/metrics
  CLI:           $bin/orderflow --help
  logs:          .run/worker.log, .run/shim.log, .run/temporal.log
Press ctrl-c to stop.
EOF
wait "${pids[@]}"
