//! A real browser at the sandbox checkout page: an order is created through the HTTP API, then
//! headless Chromium (Debian's `chromium`, driven by `tests/browser/checkout.mjs` through the npm
//! package `playwright-core`) opens its `checkout_url`, sees the amount and a running countdown,
//! clicks **Pay** and waits for the page to show `Order PAID`. The harness then checks the order,
//! the stock and the screenshot. On SQLite and on PostgreSQL.
//!
//! Needs Node.js (20+), `tests/browser/node_modules` and `/usr/bin/chromium` (or
//! `ORDERFLOW_CHROMIUM`): `scripts/test.sh` installs them (`scripts/browser.sh`). When one is
//! missing the test fails and says how to install it; it never skips.

use orderflow_domain::OrderStatus;
use orderflow_tests::browser::{is_png, png_size, require_browser_tools, run_node_script};
use orderflow_tests::{Engine, TestApp, on_every_engine, workspace_root};
use serde_json::{Value, json};
use std::time::Duration;

on_every_engine!(a_customer_pays_in_a_real_browser);

/// How long the page may take from opening to `Order PAID` (the script's own limit).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

async fn a_customer_pays_in_a_real_browser(app: TestApp) {
    require_browser_tools();
    let shim = app.serve_http().await;
    let (base, http) = (shim.base, shim.http);

    // The customer's order, through the API as a shop front would create it.
    let answer = http
        .post(format!("{base}/v1/orders"))
        .header(
            "Idempotency-Key",
            format!("browser-{}", app.settings.connection.task_queue),
        )
        .json(&json!({
            "customer_id": "browser-1",
            "lines": [{"sku": "TEE-RED-M", "quantity": 2}],
            "provider": "sandbox",
        }))
        .send()
        .await
        .expect("POST /v1/orders");
    let status = answer.status().as_u16();
    let text = answer.text().await.expect("the answer's body");
    assert_eq!(status, 201, "POST /v1/orders answered: {text}");
    let order: Value = serde_json::from_str(&text).expect("an order as JSON");
    assert_eq!(order["status"], "AWAITING_PAYMENT", "{order}");
    assert_eq!(order["amount"], "39.98 USD", "{order}");
    let order_id = order["order_id"].as_str().expect("order_id").to_owned();
    let checkout_url = order["checkout_url"]
        .as_str()
        .expect("checkout_url")
        .to_owned();
    assert!(
        checkout_url.starts_with(&format!("{base}/sandbox/checkout/pay_")),
        "{checkout_url}"
    );
    let before = app.stock("TEE-RED-M").await;
    assert_eq!((before.reserved, before.sold), (2, 0), "{before:?}");

    // The browser: open, check, Pay, wait for `Order PAID`, screenshot.
    let name = match app.engine {
        Engine::Sqlite => "checkout-paid.png".to_owned(),
        other => format!("checkout-paid-{}.png", other.name()),
    };
    let screenshot = workspace_root().join("target/test-artifacts").join(name);
    let _ = std::fs::remove_file(&screenshot);
    let _ = std::fs::remove_file(screenshot.with_extension("failure.png"));
    let args = vec![
        "--url".to_owned(),
        checkout_url,
        "--screenshot".to_owned(),
        screenshot.display().to_string(),
        "--expect".to_owned(),
        "PAID".to_owned(),
        "--amount".to_owned(),
        "39.98 USD".to_owned(),
        "--timeout-ms".to_owned(),
        BROWSER_TIMEOUT.as_millis().to_string(),
    ];
    // The shim serves the page on this runtime; the script runs beside it.
    let run = tokio::task::spawn_blocking(move || run_node_script("checkout.mjs", &args))
        .await
        .expect("the browser run");
    run.assert_success("browser");
    let seen = run.json_line("checkout.mjs");
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["status"], "PAID", "{seen}");
    assert_eq!(seen["result"], "Order PAID", "{seen}");
    assert_eq!(seen["order_id"], order_id.as_str(), "{seen}");
    assert_eq!(seen["payment_no"], order["payment_no"], "{seen}");
    assert_eq!(seen["charge_after"], "PAID", "{seen}");

    // What the click did, seen from the system's side.
    let view = app.final_view(&order_id).await;
    assert_eq!(view.status, Some(OrderStatus::Paid), "{view:?}");
    assert_eq!(view.payment_events.len(), 1, "{view:?}");
    let after = app.stock("TEE-RED-M").await;
    assert_eq!(
        (after.available, after.reserved, after.sold),
        (before.available, 0, 2),
        "{after:?}"
    );
    app.assert_stock_invariants().await;

    // The picture a person would see.
    let bytes = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(is_png(&bytes), "{} is not a PNG", screenshot.display());
    let (width, height) = png_size(&bytes);
    assert!(
        width >= 400 && height >= 400 && bytes.len() > 10_000,
        "{} is too small to show the page: {width}x{height}, {} bytes",
        screenshot.display(),
        bytes.len()
    );
}
