//! The QR payment page, `GET /pay/{payment_no}` (http/src/pay_page.rs), in a real browser.
//!
//! Headless Chromium (`tests/browser/qr_checkout.mjs`) opens the page of an order waiting for
//! payment, checks the amount and the running countdown, and takes a picture of the QR code. The
//! test reads the code off that picture (`rqrr`, as a phone's camera would) and checks it is the
//! payment's own payload; then the customer pays with it, and the page, still open, shows
//! `Order PAID`. Here the payment is the sandbox's (its QR payload is `orderflow-sandbox://pay/…`);
//! `tests/tests/wechatpay.rs` and `tests/tests/alipay.rs` do the same with those providers'
//! stand-ins. Also: what the page answers for numbers it does not know.

use orderflow_domain::OrderStatus;
use orderflow_tests::browser::{decode_qr_codes, is_png, require_browser_tools, run_node_script};
use orderflow_tests::{TestApp, on_every_engine, workspace_root};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

on_every_engine!(
    a_customer_scans_the_code_on_the_page_and_pays,
    the_page_answers_only_for_payments_it_has
);

const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

fn artifact(app: &TestApp, name: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/test-artifacts")
        .join(format!("{name}-{}.png", app.engine.name()));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("failure.png"));
    path
}

async fn a_customer_scans_the_code_on_the_page_and_pays(app: TestApp) {
    require_browser_tools();
    let shim = app.serve_http().await;
    let order_id = app.order("qr-page", &[("MUG-LOGO", 2)], None).await;
    let view = app.view(&order_id).await;
    let payment_no = view.payment_no.clone().expect("a payment number");
    let payload = view.qr_payload.clone().expect("a QR payload");
    let page_url = format!("{}/pay/{payment_no}", shim.base);

    let qr_shot = artifact(&app, "qr-code");
    let screenshot = artifact(&app, "qr-page-paid");
    let args = vec![
        "--url".to_owned(),
        page_url,
        "--qr-shot".to_owned(),
        qr_shot.display().to_string(),
        "--screenshot".to_owned(),
        screenshot.display().to_string(),
        "--expect".to_owned(),
        "PAID".to_owned(),
        "--amount".to_owned(),
        "25.00 USD".to_owned(),
        "--timeout-ms".to_owned(),
        BROWSER_TIMEOUT.as_millis().to_string(),
    ];
    let browser = tokio::task::spawn_blocking(move || run_node_script("qr_checkout.mjs", &args));

    // The phone: wait for the picture of the code, read it, pay with what it says.
    let started = Instant::now();
    let picture = loop {
        if let Ok(bytes) = std::fs::read(&qr_shot) {
            break bytes;
        }
        if browser.is_finished() {
            let run = browser.await.expect("the browser run");
            run.assert_success("QR page");
            panic!(
                "the browser ended without photographing the QR code: {}",
                run.stdout
            );
        }
        assert!(
            started.elapsed() < BROWSER_TIMEOUT,
            "the page's QR code was never photographed ({})",
            qr_shot.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(is_png(&picture));
    let codes = decode_qr_codes(&picture);
    assert_eq!(
        codes,
        vec![payload.clone()],
        "what a phone reads off the page"
    );
    let scanned = codes[0]
        .strip_prefix("orderflow-sandbox://pay/")
        .expect("a sandbox payment code");
    assert_eq!(scanned, payment_no);
    let paid = reqwest::Client::new()
        .post(format!("{}/sandbox/checkout/{scanned}/pay", shim.base))
        .send()
        .await
        .expect("paying at the sandbox");
    assert!(paid.status().is_success(), "{:?}", paid.text().await);

    let run = browser.await.expect("the browser run");
    run.assert_success("QR page");
    let seen = run.json_line("qr_checkout.mjs");
    assert_eq!(seen["status"], "PAID", "{seen}");
    assert_eq!(seen["waiting"], "Waiting for payment", "{seen}");
    assert_eq!(seen["order_id"], order_id.as_str(), "{seen}");
    assert_eq!(seen["cache_control"], "no-store", "{seen}");
    assert_eq!(
        app.final_view(&order_id).await.status,
        Some(OrderStatus::Paid)
    );
    assert!(is_png(
        &std::fs::read(&screenshot).expect("the final screenshot")
    ));
}

async fn the_page_answers_only_for_payments_it_has(app: TestApp) {
    let shim = app.serve_http().await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", shim.base);
        async move {
            let answer = http.get(&url).send().await.expect("GET");
            let status = answer.status().as_u16();
            (status, answer.text().await.unwrap_or_default())
        }
    };
    let code = |body: &str| -> String {
        let value: Value = serde_json::from_str(body).unwrap_or_default();
        value["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // Unknown, malformed and absurdly long numbers: the same 404, before or after the database.
    for number in [
        "pay_0000000000000000000000000000".to_owned(),
        "not a number".to_owned(),
        "x".repeat(10_000),
    ] {
        for suffix in ["", "/status"] {
            let (status, body) = get(format!("/pay/{}{suffix}", urlencode(&number))).await;
            assert_eq!(
                (status, code(&body).as_str()),
                (404, "UNKNOWN_PAYMENT"),
                "{body}"
            );
        }
    }
    // A payment it has: the page, and its status poll.
    let order_id = app.order("qr-page-2", &[("STICKER-PACK", 1)], None).await;
    let payment_no = app.view(&order_id).await.payment_no.unwrap();
    let (status, html) = get(format!("/pay/{payment_no}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg") && html.contains("3.99 USD"), "{html}");
    let (status, body) = get(format!("/pay/{payment_no}/status")).await;
    assert_eq!(status, 200, "{body}");
    let polled: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(polled["status"], "AWAITING_PAYMENT");
    assert_eq!(polled["final"], false);
    // It tells nothing the customer's own screen would not.
    assert!(
        !body.contains("qr-page-2") && !html.contains("qr-page-2"),
        "{body}"
    );
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
