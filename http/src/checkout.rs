//! The sandbox gateway's hosted checkout page: `GET /sandbox/checkout/{payment_no}`.
//!
//! It plays the gateway's side: **Pay** takes the money at the sandbox (its own books) and then
//! delivers a signed `charge.paid` webhook to the shim, exactly as a real gateway would call us;
//! **Decline** delivers `charge.failed`. Query parameters on the page (passed through to the
//! buttons) exercise the hard paths:
//!
//! * `deliveries=N` — deliver the callback N times (0: it is lost; the deadline check finds it);
//! * `delay_ms=M` — deliver it late;
//! * `amount_minor=X` — the gateway reports a different amount (the order goes to review).

use super::AppState;
use super::error::ApiError;
use crate::webhook_adapters::sandbox::{
    FAILED, MERCHANT_ID, PAID, SIGNATURE_HEADER, SandboxEvent, SandboxEventData, sign_event,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use orderflow_activities::db::now_ms;
use orderflow_activities::payments;
use orderflow_activities::providers::PaymentProvider;
use orderflow_activities::providers::sandbox::{self, SandboxProvider};
use orderflow_domain::{Currency, Money, PaymentNo, PaymentStatus};
use orderflow_worker::settings::ExposeSecret;
use serde::Deserialize;
use std::time::Duration;

/// Most deliveries one click may ask for.
const MAX_DELIVERIES: u32 = 20;
/// Longest delivery delay one click may ask for.
const MAX_DELAY_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    pub deliveries: Option<u32>,
    pub delay_ms: Option<u64>,
    pub amount_minor: Option<i64>,
}

/// The page and its buttons; none of them unless the sandbox is switched on (`ORDERFLOW_SANDBOX`),
/// so that `/sandbox/...` is then answered like any path the shim does not have.
pub fn routes(sandbox_on: bool) -> Router<AppState> {
    if !sandbox_on {
        return Router::new();
    }
    Router::new()
        .route("/sandbox/checkout/{payment_no}", get(page))
        .route("/sandbox/checkout/{payment_no}/pay", post(pay))
        .route("/sandbox/checkout/{payment_no}/decline", post(decline))
        .route("/sandbox/checkout/{payment_no}/order", get(order_status))
}

/// What the page shows while it waits: the status of the order this payment is for. The
/// customer's browser has no API key; like a real gateway's hosted page, it knows the payment
/// number, and that is all this answers for.
pub async fn order_status(
    State(app): State<AppState>,
    Path(payment_no): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, stored) = sandbox_payment(&app, &payment_no).await?;
    let view = app.orders.view(&stored.order_id).await?;
    Ok(Json(serde_json::json!({
        "status": view.status.map(|s| s.to_string()),
    })))
}

fn gateway(app: &AppState) -> SandboxProvider {
    SandboxProvider::new(app.orders.db.clone(), app.orders.public_url.clone())
}

async fn sandbox_payment(
    app: &AppState,
    payment_no: &str,
) -> Result<(PaymentNo, payments::StoredPayment), ApiError> {
    let unknown = || {
        ApiError::not_found(
            "UNKNOWN_PAYMENT",
            format!("no sandbox payment {payment_no}"),
        )
    };
    let parsed = PaymentNo::parse(payment_no).map_err(|_| unknown())?;
    let stored = payments::load(&app.orders.db, payment_no)
        .await
        .map_err(ApiError::database)?
        .filter(|p| p.provider == sandbox::NAME)
        .ok_or_else(unknown)?;
    Ok((parsed, stored))
}

pub async fn page(
    State(app): State<AppState>,
    Path(payment_no): Path<String>,
) -> Result<Html<String>, ApiError> {
    let (parsed, stored) = sandbox_payment(&app, &payment_no).await?;
    let charge = gateway(&app).query(&parsed).await.ok();
    let amount = Currency::parse(&stored.currency)
        .and_then(|c| Money::new(stored.amount_minor, c))
        .map(|m| m.to_string())
        .unwrap_or_else(|_| format!("{} {}", stored.amount_minor, stored.currency));
    let state = charge.map(|c| c.status).unwrap_or(PaymentStatus::Pending);
    Ok(Html(render(&stored, &amount, state)))
}

fn render(stored: &payments::StoredPayment, amount: &str, state: PaymentStatus) -> String {
    let payable = state == PaymentStatus::Pending;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sandbox checkout · {amount}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
 body {{ font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; }}
 main {{ max-width: 26rem; margin: 4rem auto; background: #fff; border-radius: 12px; padding: 2rem;
        box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
 h1 {{ font-size: 1.1rem; color: #555; margin: 0 0 .25rem; }}
 .amount {{ font-size: 2.2rem; font-weight: 700; margin: .5rem 0 1rem; }}
 dl {{ display: grid; grid-template-columns: auto 1fr; gap: .3rem 1rem; font-size: .9rem; color: #333; }}
 dt {{ color: #888; }}
 .buttons {{ display: flex; gap: .75rem; margin-top: 1.5rem; }}
 button {{ flex: 1; font-size: 1rem; padding: .8rem; border-radius: 8px; border: 0; cursor: pointer; }}
 #pay {{ background: #2563eb; color: #fff; }} #decline {{ background: #e5e7eb; }}
 button:disabled {{ opacity: .5; cursor: default; }}
 #result {{ margin-top: 1.25rem; font-weight: 600; min-height: 1.5rem; }}
 .note {{ font-size: .75rem; color: #999; margin-top: 1.5rem; }}
</style></head>
<body><main>
 <h1>Orderflow sandbox · test payment</h1>
 <div class="amount" id="amount">{amount}</div>
 <dl>
  <dt>Order</dt><dd id="order">{order}</dd>
  <dt>Payment</dt><dd id="payment-no">{payment_no}</dd>
  <dt>Pay within</dt><dd id="countdown" data-deadline="{deadline}">…</dd>
  <dt>Charge</dt><dd id="charge-state">{state}</dd>
 </dl>
 <div class="buttons">
  <button id="pay" {disabled}>Pay</button>
  <button id="decline" {disabled}>Decline</button>
 </div>
 <div id="result" role="status"></div>
 <p class="note">A simulated gateway: no real money moves. Knobs: <code style="white-space:nowrap">?deliveries=N&amp;delay_ms=M&amp;amount_minor=X</code></p>
</main>
<script>
const paymentNo = {payment_no_js};
const knobs = window.location.search;
const countdown = document.getElementById('countdown');
const result = document.getElementById('result');
function tick() {{
  const left = Math.max(0, Number(countdown.dataset.deadline) - Date.now());
  const s = Math.floor(left / 1000);
  countdown.textContent = left > 0 ? `${{Math.floor(s / 60)}}m ${{String(s % 60).padStart(2, '0')}}s` : 'expired';
}}
tick(); const ticking = setInterval(tick, 1000);
async function follow() {{
  for (let i = 0; i < 600; i++) {{
    const r = await fetch(`/sandbox/checkout/${{paymentNo}}/order`);
    if (r.ok) {{
      const o = await r.json();
      result.dataset.status = o.status || '';
      result.textContent = `Order ${{o.status}}`;
      if (['PAID','CLOSED','CANCELLED','REJECTED','REFUNDED','NEEDS_REVIEW'].includes(o.status)) {{
        clearInterval(ticking);
        countdown.textContent = o.status.toLowerCase().replace('_', ' ');
        return;
      }}
    }}
    await new Promise(res => setTimeout(res, 500));
  }}
}}
async function act(what) {{
  document.getElementById('pay').disabled = true;
  document.getElementById('decline').disabled = true;
  result.textContent = what === 'pay' ? 'Paying…' : 'Declining…';
  const r = await fetch(`/sandbox/checkout/${{paymentNo}}/${{what}}${{knobs}}`, {{ method: 'POST' }});
  const body = await r.json();
  if (!r.ok) {{ result.textContent = body.error ? body.error.message : 'failed'; return; }}
  document.getElementById('charge-state').textContent = body.charge_status;
  if (what === 'decline') {{
    result.textContent = 'Payment declined';
    document.getElementById('pay').disabled = false;
    document.getElementById('decline').disabled = false;
    return;
  }}
  follow();
}}
document.getElementById('pay').addEventListener('click', () => act('pay'));
document.getElementById('decline').addEventListener('click', () => act('decline'));
</script>
</body></html>"#,
        amount = esc(amount),
        order = esc(&stored.order_id),
        payment_no = esc(&stored.payment_no),
        deadline = stored.deadline_ms,
        state = state,
        disabled = if payable { "" } else { "disabled" },
        payment_no_js = serde_json::to_string(&stored.payment_no).unwrap_or_default(),
    )
}

fn check(knobs: &Knobs) -> Result<(u32, u64), ApiError> {
    let deliveries = knobs.deliveries.unwrap_or(1);
    let delay = knobs.delay_ms.unwrap_or(0);
    // A negative payment is no payment: its webhook would be refused, leaving the charge
    // paid in the sandbox's books with nobody told.
    if deliveries > MAX_DELIVERIES
        || delay > MAX_DELAY_MS
        || knobs.amount_minor.is_some_and(|a| a < 0)
    {
        return Err(ApiError::bad_request(
            "INVALID_KNOB",
            format!(
                "deliveries <= {MAX_DELIVERIES}, delay_ms <= {MAX_DELAY_MS}, amount_minor >= 0"
            ),
        ));
    }
    Ok((deliveries, delay))
}

/// The customer pays. The charge is taken at once; its callback is delivered in the background as
/// the knobs say.
pub async fn pay(
    State(app): State<AppState>,
    Path(payment_no): Path<String>,
    Query(knobs): Query<Knobs>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (deliveries, delay) = check(&knobs)?;
    let (parsed, _) = sandbox_payment(&app, &payment_no).await?;
    let paid = gateway(&app)
        .pay(&parsed, knobs.amount_minor)
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "CHARGE_NOT_PAYABLE", e.to_string()))?;
    let event = SandboxEvent {
        id: paid.event_id.clone(),
        kind: PAID.to_owned(),
        created: now_ms() / 1000,
        data: SandboxEventData {
            payment_no: payment_no.clone(),
            amount_minor: paid.paid_amount_minor,
            currency: paid.currency.clone(),
            txn_id: paid.txn_id.clone(),
            merchant_id: MERCHANT_ID.to_owned(),
        },
    };
    deliver(&app, event, deliveries, delay);
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "payment_no": payment_no,
            "charge_status": "PAID",
            "newly_paid": paid.newly_paid,
            "event_id": paid.event_id,
            "deliveries": deliveries,
            "delay_ms": delay,
        })),
    ))
}

/// The customer's card is declined: the charge stays open, the gateway reports a failed attempt.
pub async fn decline(
    State(app): State<AppState>,
    Path(payment_no): Path<String>,
    Query(knobs): Query<Knobs>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (deliveries, delay) = check(&knobs)?;
    let (_, stored) = sandbox_payment(&app, &payment_no).await?;
    let event = SandboxEvent {
        // A decline is a new attempt each time: a new event.
        id: format!("sbx_evt_{payment_no}_declined_{}", now_ms()),
        kind: FAILED.to_owned(),
        created: now_ms() / 1000,
        data: SandboxEventData {
            payment_no: payment_no.clone(),
            amount_minor: stored.amount_minor,
            currency: stored.currency.clone(),
            txn_id: String::new(),
            merchant_id: MERCHANT_ID.to_owned(),
        },
    };
    let id = event.id.clone();
    deliver(&app, event, deliveries, delay);
    Ok(Json(serde_json::json!({
        "payment_no": payment_no,
        "charge_status": "PENDING",
        "event_id": id,
    })))
}

/// Delivers the event to the shim's webhook endpoint over real HTTP, signed at send time, like
/// a gateway with its own retry loop (a 5xx answer is retried a few times).
fn deliver(app: &AppState, event: SandboxEvent, deliveries: u32, delay_ms: u64) {
    let url = app.sandbox_webhook_url();
    let secret = app
        .settings
        .sandbox_webhook_secret
        .expose_secret()
        .as_bytes()
        .to_vec();
    let http = app.http.clone();
    tokio::spawn(async move {
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        for _ in 0..deliveries {
            for attempt in 0..5u32 {
                let (signature, body) = sign_event(&secret, &event, now_ms() / 1000);
                let sent = http
                    .post(&url)
                    .header(SIGNATURE_HEADER, signature)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if !r.status().is_server_error() => break,
                    other => {
                        tracing::warn!(event_id = %event.id, attempt, "sandbox webhook delivery failed: {:?}", other.map(|r| r.status()));
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt + 1)))
                            .await;
                    }
                }
            }
        }
    });
}
