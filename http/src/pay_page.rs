//! The payment page for charges paid by scanning a QR code (WeChat Pay Native, Alipay precreate):
//! `GET /pay/{payment_no}`, the order's `checkout_url` for those providers.
//!
//! It shows what the customer needs and nothing else: the QR code (drawn here, as inline SVG,
//! from the provider's `code_url` / `qr_code`), the amount, the time left to pay, and the order's
//! status, which it asks `GET /pay/{payment_no}/status` for every second until the order ends
//! (PAID, CLOSED, …). The money itself moves at the provider; its notify (or the deadline query)
//! tells the workflow, and the page only reads what the workflow recorded.
//!
//! Who may call it: anyone holding the payment number, as for a provider's own hosted page. It
//! answers only for QR payments, and says no more than the customer's screen would (no customer
//! id, no transaction ids). The status is read from the database in one statement, never by
//! querying the workflow, so a customer refreshing the page costs the order nothing.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use orderflow_activities::payments::{self, PayPage};
use orderflow_domain::{Currency, Money, OrderStatus, PaymentNo};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pay/{payment_no}", get(page))
        .route("/pay/{payment_no}/status", get(status))
}

async fn load(app: &AppState, payment_no: &str) -> Result<PayPage, ApiError> {
    let unknown = || {
        ApiError::not_found(
            "UNKNOWN_PAYMENT",
            "no QR payment with this number".to_owned(),
        )
    };
    // Checked before the database is asked: an id of the wrong shape cannot exist.
    PaymentNo::parse(payment_no).map_err(|_| unknown())?;
    payments::pay_page(&app.orders.db, payment_no)
        .await
        .map_err(ApiError::database)?
        .filter(|p| !p.qr_payload.is_empty())
        .ok_or_else(unknown)
}

/// The page's status poll: the order's status and whether it is over.
pub async fn status(
    State(app): State<AppState>,
    Path(payment_no): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pay = load(&app, &payment_no).await?;
    Ok(Json(serde_json::json!({
        "status": pay.order_status,
        "final": is_over(&pay.order_status),
        "deadline_ms": pay.deadline_ms,
    })))
}

fn is_over(status: &str) -> bool {
    status
        .parse::<OrderStatus>()
        .is_ok_and(|s| s.is_final() || s == OrderStatus::NeedsReview)
}

pub async fn page(
    State(app): State<AppState>,
    Path(payment_no): Path<String>,
) -> Result<Response, ApiError> {
    let pay = load(&app, &payment_no).await?;
    let svg = qr_svg(&pay.qr_payload).ok_or_else(|| {
        ApiError::not_found(
            "UNKNOWN_PAYMENT",
            "this payment's QR payload cannot be drawn".to_owned(),
        )
    })?;
    let html = render(&pay, &svg);
    // The page holds a live payment code: never cached by a proxy or the browser's history.
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

/// The QR code as an SVG element: dark modules on white with the standard 4-module quiet zone,
/// error correction M (what both providers' own cashier pages use), crisp at any zoom.
fn qr_svg(payload: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(payload, qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
    )
}

/// How the page names the provider and what the customer does with the code.
fn provider_words(provider: &str) -> (&'static str, &'static str) {
    match provider {
        "wechatpay" => (
            "WeChat Pay · 微信支付",
            "Scan with WeChat to pay · 请用微信扫码支付",
        ),
        "alipay" => (
            "Alipay · 支付宝",
            "Scan with Alipay to pay · 请用支付宝扫码支付",
        ),
        _ => ("Payment", "Scan the code to pay"),
    }
}

fn render(pay: &PayPage, svg: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let amount = Currency::parse(&pay.currency)
        .and_then(|c| Money::new(pay.amount_minor, c))
        .map(|m| m.to_string())
        .unwrap_or_else(|_| format!("{} {}", pay.amount_minor, pay.currency));
    let (provider, instruction) = provider_words(&pay.provider);
    // The SVG's own XML declaration is not allowed inside HTML.
    let svg = svg.find("<svg").map(|at| &svg[at..]).unwrap_or(svg);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{provider} · {amount}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
 body {{ font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; }}
 main {{ max-width: 24rem; margin: 3rem auto; background: #fff; border-radius: 12px; padding: 2rem;
        box-shadow: 0 2px 12px rgba(0,0,0,.08); text-align: center; }}
 h1 {{ font-size: 1.05rem; color: #555; margin: 0 0 .25rem; }}
 .amount {{ font-size: 2.2rem; font-weight: 700; margin: .5rem 0 1rem; }}
 #qr {{ display: inline-block; padding: 0; line-height: 0; }}
 #qr svg {{ width: 260px; height: 260px; }}
 #qr.over svg {{ opacity: .08; }}
 .instruction {{ color: #333; margin: .75rem 0 0; }}
 dl {{ display: grid; grid-template-columns: auto 1fr; gap: .3rem 1rem; font-size: .9rem; color: #333;
       text-align: left; margin-top: 1.25rem; }}
 dt {{ color: #888; }}
 #result {{ margin-top: 1.25rem; font-weight: 600; font-size: 1.2rem; min-height: 1.5rem; }}
</style></head>
<body><main>
 <h1 id="provider">{provider}</h1>
 <div class="amount" id="amount">{amount}</div>
 <div id="qr" data-payload="{payload}">{svg}</div>
 <p class="instruction">{instruction}</p>
 <dl>
  <dt>Order</dt><dd id="order">{order}</dd>
  <dt>Time left</dt><dd id="countdown" data-deadline="{deadline}">…</dd>
 </dl>
 <div id="result" role="status" data-status="{status}">{status_text}</div>
</main>
<script>
const paymentNo = {payment_no_js};
const countdown = document.getElementById('countdown');
const result = document.getElementById('result');
const qr = document.getElementById('qr');
let over = false;
function tick() {{
  if (over) return;
  const left = Math.max(0, Number(countdown.dataset.deadline) - Date.now());
  const s = Math.floor(left / 1000);
  countdown.textContent = left > 0 ? `${{Math.floor(s / 60)}}m ${{String(s % 60).padStart(2, '0')}}s` : 'expired';
}}
function show(status, final) {{
  result.dataset.status = status;
  result.textContent = status === 'AWAITING_PAYMENT' ? 'Waiting for payment' : `Order ${{status}}`;
  if (final) {{
    over = true;
    qr.classList.add('over');
    countdown.textContent = status.toLowerCase().replace('_', ' ');
  }}
}}
async function follow() {{
  while (!over) {{
    try {{
      const r = await fetch(`/pay/${{paymentNo}}/status`, {{ cache: 'no-store' }});
      if (r.ok) {{ const o = await r.json(); show(o.status, o.final); }}
    }} catch (e) {{ /* offline for a moment: ask again */ }}
    await new Promise(res => setTimeout(res, 1000));
  }}
}}
tick(); setInterval(tick, 1000);
show(result.dataset.status, {is_over});
follow();
</script>
</body></html>"#,
        provider = esc(provider),
        instruction = esc(instruction),
        amount = esc(&amount),
        payload = esc(&pay.qr_payload),
        order = esc(&pay.order_id),
        deadline = pay.deadline_ms,
        status = esc(&pay.order_status),
        status_text = esc(&pay.order_status),
        is_over = is_over(&pay.order_status),
        payment_no_js = serde_json::to_string(&pay.payment_no).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_are_drawn_for_provider_payloads() {
        let svg = qr_svg("weixin://wxpay/bizpayurl?pr=abc1234").unwrap();
        assert!(svg.contains("<svg") && svg.contains("#000000"), "{svg}");
        // Longer than a QR code holds: no picture, never a panic.
        assert!(qr_svg(&"x".repeat(8000)).is_none());
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let pay = PayPage {
            payment_no: "pay_1".into(),
            order_id: "ord_<script>".into(),
            provider: "alipay".into(),
            amount_minor: 8880,
            currency: "CNY".into(),
            deadline_ms: 1,
            qr_payload: "https://qr.alipay.com/\"x".into(),
            order_status: "AWAITING_PAYMENT".into(),
        };
        let html = render(&pay, "<svg></svg>");
        assert!(html.contains("88.80 CNY"));
        assert!(html.contains("ord_&lt;script&gt;"));
        assert!(html.contains("https://qr.alipay.com/&quot;x"));
        assert!(!html.contains("ord_<script>"));
    }
}
