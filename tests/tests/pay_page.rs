//! The QR payment page, `GET /pay/{payment_no}` (http/src/pay_page.rs), in a real browser.
//!
//! Headless Chromium (`tests/browser/qr_checkout.mjs`) opens the page of an order waiting for
//! payment, checks the amount and the running countdown, and takes a picture of the QR code. The
//! test reads the code off that picture (`rqrr`, as a phone's camera would) and checks it is the
//! payment's own payload; then the customer pays with it, and the page, still open, shows
//! `Order PAID`. Once with the sandbox (its QR payload is `orderflow-sandbox://pay/…`), once with
//! WeChat Pay's stand-in (the code is its `code_url`, `weixin://wxpay/bizpayurl?pr=…`, and paying
//! sends its signed, encrypted notify), on every engine. Also: what the page answers for numbers
//! it does not know.

use orderflow_domain::OrderStatus;
use orderflow_tests::browser::{decode_qr_codes, is_png, require_browser_tools, run_node_script};
use orderflow_tests::wechatpay_standin::{WechatPayStandIn, configure};
use orderflow_tests::{Engine, TestApp, on_every_engine, workspace_root};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

on_every_engine!(
    a_customer_scans_the_code_on_the_page_and_pays,
    the_page_answers_only_for_payments_it_has
);

const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

fn artifact(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/test-artifacts")
        .join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("failure.png"));
    path
}

async fn a_customer_scans_the_code_on_the_page_and_pays(app: TestApp) {
    let shim = app.serve_http().await;
    let order_id = app.order("qr-page", &[("MUG-LOGO", 2)], None).await;
    let base = shim.base.clone();
    scan_and_pay_in_a_browser(
        &app,
        &shim.base,
        &order_id,
        "25.00 USD",
        |code, payment_no| async move {
            let scanned = code
                .strip_prefix("orderflow-sandbox://pay/")
                .expect("a sandbox payment code");
            assert_eq!(scanned, payment_no);
            let paid = reqwest::Client::new()
                .post(format!("{base}/sandbox/checkout/{scanned}/pay"))
                .send()
                .await
                .expect("paying at the sandbox");
            assert!(paid.status().is_success(), "{:?}", paid.text().await);
        },
    )
    .await;
}

/// The same with WeChat Pay: the code on the page is the stand-in's `code_url`, and paying it
/// sends the signed, encrypted notify that makes the order PAID while the page looks on.
async fn a_wechatpay_customer_scans_the_code_on_the_page_and_pays(engine: Engine) {
    let standin = WechatPayStandIn::spawn().await;
    let base = standin.base.clone();
    let Some(app) =
        TestApp::spawn_with(engine, |s| configure(&mut s.wechatpay, &base, true, false)).await
    else {
        return;
    };
    let mut settings = app.shim_settings();
    configure(&mut settings.wechatpay, &standin.base, true, false);
    let state =
        orderflow_http::AppState::new(app.orders.clone(), settings).expect("the shim's state");
    let shim = app.serve_http_with(state).await;
    let order_id = app
        .order_paid_with("wechatpay", "qr-wechat", &[("TEA-LONGJING", 1)], None)
        .await;
    let view = app.view(&order_id).await;
    assert_eq!(
        view.checkout_url.as_deref(),
        Some(format!("{}/pay/{}", shim.base, view.payment_no.clone().unwrap()).as_str()),
        "a WeChat Pay order's checkout URL is the payment page"
    );
    scan_and_pay_in_a_browser(
        &app,
        &shim.base,
        &order_id,
        "168.00 CNY",
        |code, payment_no| {
            assert!(code.starts_with("weixin://wxpay/bizpayurl?pr="), "{code}");
            assert_eq!(Some(code.clone()), standin.code_url(&payment_no));
            standin.pay(&payment_no, None);
            async {}
        },
    )
    .await;
    standin.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpay_on_sqlite() {
    a_wechatpay_customer_scans_the_code_on_the_page_and_pays(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpay_on_postgres() {
    a_wechatpay_customer_scans_the_code_on_the_page_and_pays(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpay_on_mysql() {
    a_wechatpay_customer_scans_the_code_on_the_page_and_pays(Engine::MySql).await;
}

/// Opens the order's payment page in Chromium, reads the QR code off its picture, hands what it
/// says (and the payment number) to `pay` as a phone would, then checks the page shows PAID.
async fn scan_and_pay_in_a_browser<F, Fut>(
    app: &TestApp,
    shim_base: &str,
    order_id: &str,
    amount: &str,
    pay: F,
) where
    F: FnOnce(String, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    require_browser_tools();
    let view = app.view(order_id).await;
    let payment_no = view.payment_no.clone().expect("a payment number");
    let payload = view.qr_payload.clone().expect("a QR payload");
    let page_url = format!("{shim_base}/pay/{payment_no}");
    let name = format!("{}-{}", view.provider, app.engine.name());
    let qr_shot = artifact(&format!("qr-code-{name}"));
    let screenshot = artifact(&format!("qr-page-paid-{name}"));
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
        amount.to_owned(),
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
    pay(codes[0].clone(), payment_no.clone()).await;

    let run = browser.await.expect("the browser run");
    run.assert_success("QR page");
    let seen = run.json_line("qr_checkout.mjs");
    assert_eq!(seen["status"], "PAID", "{seen}");
    assert_eq!(seen["waiting"], "Waiting for payment", "{seen}");
    assert_eq!(seen["order_id"], order_id, "{seen}");
    assert_eq!(seen["cache_control"], "no-store", "{seen}");
    assert_eq!(
        app.final_view(order_id).await.status,
        Some(OrderStatus::Paid)
    );
    assert!(is_png(
        &std::fs::read(&screenshot).expect("the final screenshot")
    ));
    app.assert_stock_invariants().await;
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
