//! Alipay end to end: the real Temporal server, worker and HTTP shim, the Alipay client and notify
//! adapter, against the gateway stand-in (`orderflow_tests::alipay_standin`), on every engine.
//!
//! One app per engine runs every scenario (the outage first and alone, since it fails whichever
//! requests come next; the rest side by side): paid by notify; a lost notify found by the query at
//! the deadline; a close that finds it paid (`ACQ.TRADE_STATUS_ERROR` → query → paid); a QR never scanned, the order closed
//! (`ACQ.TRADE_NOT_EXIST`), then paid → exactly one refund and the order stays CLOSED; an amount
//! mismatch → NEEDS_REVIEW → operator REFUND, whose first answer is lost so the repeat gets
//! `fund_change=N` and is recognised as done; wrong app_id / seller_id, forged and tampered
//! notifies refused and recorded; the same notify ten times at once → one change; refund notifies
//! (a partial refund says TRADE_SUCCESS) recorded, never taken as payments.

use futures::future::join_all;
use orderflow_activities::providers::alipay::AlipayProvider;
use orderflow_activities::providers::{ChargeRequest, CloseResult, PaymentProvider, ProviderError};
use orderflow_domain::{
    Currency, Money, OrderId, OrderStatus, PaymentNo, ResolveAction, ResolveRequest,
};
use orderflow_protocols::alipay::{Channel, MerchantConfig};
use orderflow_protocols::rsa_keys::{PrivateKey, PublicKey};
use orderflow_tests::alipay_standin::{APP_ID, AlipayStandIn, SELLER_ID, fixture};
use orderflow_tests::{Engine, TestApp, eventually};
use orderflow_worker::settings::AlipaySettings;
use std::sync::Arc;
use std::time::Duration;

const SKU: &str = "TEA-LONGJING";
const PRICE_FEN: i64 = 16_800;

fn configure(settings: &mut AlipaySettings, gateway: &str) {
    settings.alipay_app_id = Some(APP_ID.to_owned());
    settings.alipay_seller_id = Some(SELLER_ID.to_owned());
    settings.alipay_app_private_key_file = Some(fixture("app_private_key.pem"));
    settings.alipay_public_key_file = Some(fixture("alipay_public_key.pem"));
    settings.alipay_gateway = gateway.to_owned();
}

async fn order(app: &TestApp, customer: &str, timeout_secs: u64) -> (String, String) {
    let id = app
        .order_paid_with("alipay", customer, &[(SKU, 1)], Some(timeout_secs))
        .await;
    let view = app.view(&id).await;
    let payment_no = view.payment_no.clone().expect("a payment number");
    let qr = view.qr_payload.clone().unwrap_or_default();
    assert!(qr.starts_with("https://qr.alipay.com/"), "{view:?}");
    (id, payment_no)
}

async fn count(app: &TestApp, table_where: String) -> i64 {
    app.count(&table_where).await
}

async fn run_on(engine: Engine) {
    let standin = AlipayStandIn::spawn().await;
    let gateway = standin.gateway.clone();
    let Some(app) = TestApp::spawn_with(engine, |s| configure(&mut s.alipay, &gateway)).await
    else {
        return;
    };
    let mut shim = app.shim_settings();
    configure(&mut shim.alipay, &standin.gateway);
    app.serve_http_with(orderflow_http::AppState::new(app.orders.clone(), shim).unwrap())
        .await;

    provider_down_nothing_lost(&app, &standin).await;
    tokio::join!(
        paid_by_notify(&app, &standin),
        lost_notify_found_by_the_deadline_close(&app, &standin),
        close_that_finds_it_paid(&app, &standin),
        never_scanned_closed_then_paid_is_refunded_once(&app, &standin),
        mismatch_review_refund_with_a_lost_refund_answer(&app, &standin),
        refused_notifies_change_nothing_and_ten_at_once_change_once(&app, &standin),
    );
    app.assert_stock_invariants().await;
    standin.assert_no_violations();
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alipay_end_to_end() {
        super::run_on(super::Engine::Sqlite).await;
    }
}
mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alipay_end_to_end() {
        super::run_on(super::Engine::Postgres).await;
    }
}
mod mysql {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alipay_end_to_end() {
        super::run_on(super::Engine::MySql).await;
    }
}

async fn provider_down_nothing_lost(app: &TestApp, s: &AlipayStandIn) {
    // Two HTTP 503s, then two signed `code=20000`: the create activity retries through them.
    s.go_down(2, 2);
    let (id, pno) = order(app, "ali-down", 120).await;
    assert!(s.calls("alipay.trade.precreate", &pno) >= 3);
    s.scan(&pno);
    let notify = s.pay(&pno, None);
    assert_eq!(s.deliver(&pno, &s.signed_form(&notify)).await, Some(1));
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Paid));
}

async fn paid_by_notify(app: &TestApp, s: &AlipayStandIn) {
    let (id, pno) = order(app, "ali-paid", 120).await;
    s.scan(&pno);
    let notify = s.pay(&pno, None);
    assert_eq!(s.deliver(&pno, &s.signed_form(&notify)).await, Some(1));
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Paid));
    let trade_no = s.trade(&pno).unwrap().trade_no;
    assert_eq!(
        count(app, format!(
            "payments WHERE payment_no = '{pno}' AND status = 'PAID' AND paid_amount_minor = {PRICE_FEN} AND provider_txn_id = '{trade_no}'"
        ))
        .await,
        1
    );
    // Reordered: a WAIT_BUYER_PAY notify (sent when the customer scanned) arrives after the
    // payment's. Acknowledged, ignored.
    let mut stale = notify.clone();
    stale.insert("trade_status".into(), "WAIT_BUYER_PAY".into());
    stale.insert("notify_id".into(), format!("{}w", notify["notify_id"]));
    stale.remove("gmt_payment");
    let (status, body) = s.post_notify(&pno, &s.signed_form(&stale)).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(
        count(
            app,
            format!("webhook_callbacks WHERE payment_no = '{pno}' AND verdict = 'IGNORED'")
        )
        .await,
        1
    );
    // The trap: after a partial refund Alipay notifies with trade_status TRADE_SUCCESS. It is a
    // refund report, never a second payment.
    let partial = s.refund_notify(&pno, "rf_partial_by_merchant", "10.00", "TRADE_SUCCESS");
    let (status, body) = s.post_notify(&pno, &s.signed_form(&partial)).await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(
        count(
            app,
            format!("webhook_callbacks WHERE payment_no = '{pno}' AND verdict = 'REFUND_RECORDED'")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            app,
            format!("payment_log WHERE payment_no = '{pno}' AND event = 'PAID'")
        )
        .await,
        1
    );
    assert_eq!(app.view(&id).await.status, Some(OrderStatus::Paid));
}

async fn close_that_finds_it_paid(app: &TestApp, s: &AlipayStandIn) {
    let (id, pno) = order(app, "ali-close-paid", 3).await;
    s.scan(&pno);
    // The customer pays between our query (WAIT_BUYER_PAY) and our close: the close gets
    // ACQ.TRADE_STATUS_ERROR, the query after it TRADE_SUCCESS.
    s.pay_when_closed(&pno);
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Paid), "{done:?}");
    assert!(s.calls("alipay.trade.close", &pno) >= 1);
    assert!(s.calls("alipay.trade.query", &pno) >= 2);
    assert_eq!(
        count(app, format!("payments WHERE payment_no = '{pno}' AND status = 'PAID' AND paid_amount_minor = {PRICE_FEN}")).await,
        1
    );
    assert!(s.money_moves(&pno).is_empty());
}

async fn lost_notify_found_by_the_deadline_close(app: &TestApp, s: &AlipayStandIn) {
    let (id, pno) = order(app, "ali-lost", 3).await;
    s.scan(&pno);
    // Paid, and the notify is lost: the close at the deadline gets ACQ.TRADE_STATUS_ERROR, the
    // query says TRADE_SUCCESS.
    let notify = s.pay(&pno, None);
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Paid), "{done:?}");
    assert!(s.calls("alipay.trade.query", &pno) >= 1);
    assert_eq!(
        count(app, format!("payments WHERE payment_no = '{pno}' AND status = 'PAID' AND paid_amount_minor = {PRICE_FEN}")).await,
        1
    );
    // The notify turns up after all: acknowledged, nothing changes.
    assert_eq!(s.deliver(&pno, &s.signed_form(&notify)).await, Some(1));
    assert_eq!(
        count(
            app,
            format!("payment_log WHERE payment_no = '{pno}' AND event = 'PAID'")
        )
        .await,
        1
    );
    assert!(s.money_moves(&pno).is_empty());
}

async fn never_scanned_closed_then_paid_is_refunded_once(app: &TestApp, s: &AlipayStandIn) {
    let (id, pno) = order(app, "ali-late", 2).await;
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Closed), "{done:?}");
    // The close found no trade (nobody scanned): ACQ.TRADE_NOT_EXIST.
    assert!(s.calls("alipay.trade.close", &pno) >= 1);
    // ... and the QR is still payable.
    s.scan(&pno);
    let notify = s.pay(&pno, None);
    let form = s.signed_form(&notify);
    assert_eq!(s.deliver(&pno, &form).await, Some(1));
    let outcome = app
        .orders
        .client
        .get_workflow_handle::<orderflow_workflows::LatePaymentWorkflow>(
            orderflow_workflows::late_payment_workflow_id(&pno),
        )
        .get_result(Default::default())
        .await
        .unwrap();
    assert_eq!(outcome.result, "REFUNDED");
    // Alipay retries and repeats: still one refund.
    for _ in 0..3 {
        assert_eq!(s.post_notify(&pno, &form).await.1, "success");
    }
    let moves = s.money_moves(&pno);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].1, PRICE_FEN);
    assert_eq!(
        count(
            app,
            format!(
                "webhook_callbacks WHERE payment_no = '{pno}' AND verdict = 'LATE_PAYMENT_REFUND'"
            )
        )
        .await,
        1
    );
    // The full refund's notify (TRADE_CLOSED with refund fields) is recorded as a refund.
    let refunded = s.refund_notify(&pno, &moves[0].0, "168.00", "TRADE_CLOSED");
    assert_eq!(s.deliver(&pno, &s.signed_form(&refunded)).await, Some(1));
    assert_eq!(app.view(&id).await.status, Some(OrderStatus::Closed));
}

async fn mismatch_review_refund_with_a_lost_refund_answer(app: &TestApp, s: &AlipayStandIn) {
    let (id, pno) = order(app, "ali-mismatch", 120).await;
    s.scan(&pno);
    let notify = s.pay(&pno, Some("1.00"));
    assert_eq!(s.deliver(&pno, &s.signed_form(&notify)).await, Some(1));
    let review = app.wait_status(&id, OrderStatus::NeedsReview).await;
    assert!(
        review
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("1.00 CNY"),
        "{review:?}"
    );
    // The refund is made but its answer is lost: the retry with the same out_request_no gets
    // fund_change=N, and the refund query says REFUND_SUCCESS. Never a second refund.
    s.lose_next_refund_answer();
    app.orders
        .resolve(
            &id,
            ResolveRequest {
                action: ResolveAction::Refund,
                operator: "ops-ali".into(),
                note: "paid the wrong amount".into(),
            },
        )
        .await
        .unwrap();
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Refunded), "{done:?}");
    let moves = s.money_moves(&pno);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].1, 100);
    assert!(s.calls("alipay.trade.refund", &pno) >= 2);
    assert!(s.calls("alipay.trade.fastpay.refund.query", &pno) >= 1);
}

async fn refused_notifies_change_nothing_and_ten_at_once_change_once(
    app: &TestApp,
    s: &AlipayStandIn,
) {
    let (id, pno) = order(app, "ali-forged", 120).await;
    s.scan(&pno);
    let notify = s.pay(&pno, None);
    let mut refused = Vec::new();
    for (key, value) in [
        ("app_id", "2021000000009999"),
        ("seller_id", "2088000000009999"),
    ] {
        // Another merchant's notify has a notify_id of its own.
        let mut other = notify.clone();
        other.insert(key.into(), value.into());
        other.insert("notify_id".into(), format!("{}{key}", notify["notify_id"]));
        refused.push(s.signed_form(&other));
    }
    let app_key =
        PrivateKey::from_text(&std::fs::read_to_string(fixture("app_private_key.pem")).unwrap())
            .unwrap();
    refused.push(s.form_signed_by(&notify, &app_key));
    let genuine = s.signed_form(&notify);
    let tampered = genuine.replace("total_amount=168.00", "total_amount=1.68");
    assert_ne!(tampered, genuine);
    refused.push(tampered);
    for form in &refused {
        let (status, body) = s.post_notify(&pno, form).await;
        assert_eq!(body, "fail");
        assert!((400..500).contains(&status), "{status}");
    }
    // Alipay keeps sending what is not answered `success`: all eight sends are refused.
    assert_eq!(
        s.deliver_every(Duration::from_millis(1), &pno, &refused[0])
            .await,
        None
    );
    assert_eq!(
        count(
            app,
            format!(
                "webhook_callbacks WHERE payment_no = '{pno}' AND verdict = 'MERCHANT_MISMATCH'"
            )
        )
        .await,
        2
    );
    assert_eq!(
        count(
            app,
            "webhook_callbacks WHERE provider = 'alipay' AND verdict = 'SIGNATURE_MISMATCH'".into()
        )
        .await,
        2
    );
    let view = app.view(&id).await;
    assert_eq!(view.status, Some(OrderStatus::AwaitingPayment));
    assert!(view.payment_events.is_empty(), "{view:?}");

    let answers = join_all((0..10).map(|_| s.post_notify(&pno, &genuine))).await;
    for (status, body) in answers {
        assert_eq!((status, body.as_str()), (200, "success"));
    }
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Paid));
    assert_eq!(
        count(
            app,
            format!("payment_log WHERE payment_no = '{pno}' AND event = 'PAID'")
        )
        .await,
        1
    );
    let notify_id = &notify["notify_id"];
    let deliveries: i64 = eventually(Duration::from_secs(10), || async {
        let n = count(
            app,
            format!("webhook_callbacks WHERE event_id = '{notify_id}' AND deliveries = 10"),
        )
        .await;
        if n == 1 { Ok(n) } else { Err(n) }
    })
    .await
    .unwrap_or(0);
    assert_eq!(deliveries, 1, "one callback row with ten deliveries");
}

/// The client alone: the desktop cashier's signed redirect, repeats, refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_signs_redirects_and_refuses_what_alipay_would() {
    let standin = AlipayStandIn::spawn().await;
    let text = |name: &str| std::fs::read_to_string(fixture(name)).unwrap();
    let config = Arc::new(MerchantConfig {
        app_id: APP_ID.into(),
        seller_id: SELLER_ID.into(),
        app_private_key: PrivateKey::from_text(&text("app_private_key.pem")).unwrap(),
        alipay_public_key: PublicKey::from_text(&text("alipay_public_key.pem")).unwrap(),
    });
    let cny = Currency::parse("CNY").unwrap();
    let order_id = OrderId::parse("ord_alipay_client_test").unwrap();
    let request = ChargeRequest {
        payment_no: PaymentNo::for_order(&order_id),
        order_id,
        amount: Money::new(8880, cny).unwrap(),
        deadline_ms: 1_796_000_000_000,
        description: "月饼 gift box & tea".into(),
    };

    let page = AlipayProvider::new(
        config.clone(),
        &standin.gateway,
        "https://shop.example/v1/webhooks/alipay",
        Channel::Page,
        Some("https://shop.example/done".into()),
    )
    .unwrap();
    let url = url::Url::parse(&page.create(&request).await.unwrap().checkout_url).unwrap();
    let params: std::collections::BTreeMap<String, String> =
        url.query_pairs().into_owned().collect();
    assert_eq!(params["method"], "alipay.trade.page.pay");
    assert_eq!(params["return_url"], "https://shop.example/done");
    let biz: serde_json::Value = serde_json::from_str(&params["biz_content"]).unwrap();
    assert_eq!(biz["product_code"], "FAST_INSTANT_TRADE_PAY");
    assert_eq!(biz["total_amount"], "88.80");
    // 1_796_000_000 s is 2026-11-30 00:53:20 UTC: 08:53:20 in Beijing.
    assert_eq!(biz["time_expire"], "2026-11-30 08:53:20");
    let content = params
        .iter()
        .filter(|(k, _)| *k != "sign")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let app_public = PublicKey::from_text(&text("app_public_key.pem")).unwrap();
    assert!(app_public.verifies(content.as_bytes(), &params["sign"]));

    let qr = AlipayProvider::new(
        config,
        &standin.gateway,
        "https://shop.example/v1/webhooks/alipay",
        Channel::Qr,
        None,
    )
    .unwrap();
    let first = qr.create(&request).await.unwrap();
    assert_eq!(
        qr.create(&request).await.unwrap(),
        first,
        "a repeat is the same QR"
    );
    let mut usd = request.clone();
    usd.amount = Money::new(8880, Currency::parse("USD").unwrap()).unwrap();
    assert!(matches!(
        qr.create(&usd).await,
        Err(ProviderError::Rejected(_))
    ));
    // An unscanned QR: query is PENDING, close is Closed.
    let state = qr.query(&request.payment_no).await.unwrap();
    assert_eq!(state.status, orderflow_domain::PaymentStatus::Pending);
    standin.go_down(1, 0);
    assert!(matches!(
        qr.query(&request.payment_no).await,
        Err(ProviderError::Unavailable(_))
    ));
    // An answer changed after signing, or one without a sign, is not believed: not the QR code,
    // not "no such trade" (which would close the order, or skip a refund).
    standin.corrupt_answers(1, 0);
    assert!(matches!(
        qr.create(&request).await,
        Err(ProviderError::Unavailable(_))
    ));
    standin.corrupt_answers(0, 2);
    assert!(matches!(
        qr.query(&request.payment_no).await,
        Err(ProviderError::Unavailable(_))
    ));
    assert!(matches!(
        qr.close(&request.payment_no).await,
        Err(ProviderError::Unavailable(_))
    ));
    assert_eq!(
        qr.close(&request.payment_no).await.unwrap(),
        CloseResult::Closed
    );
    standin.assert_no_violations();
}
