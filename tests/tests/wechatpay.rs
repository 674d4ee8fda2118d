//! WeChat Pay API v3 end to end: the real Temporal server, worker and shim, against the
//! stand-in in `orderflow_tests::wechatpay_standin` (real HTTP, its own keys, signed answers,
//! encrypted notifies), on SQLite, PostgreSQL and MariaDB.
//!
//! Scenarios are grouped so one app per engine runs several orders: payments (notify, lost
//! notify found by the deadline query, close that finds the money, unpaid expiry, both key kinds,
//! an outage, ten parallel copies of a notify), attacks (forged, tampered, stale, unknown serial,
//! probe, another merchant), and review → refund followed from PROCESSING to SUCCESS. Each ends
//! with the stock invariants and no stand-in violations. `client_contract` checks the outbound
//! client's answers to the traps directly (close's 204 for an unknown number, unsigned and
//! wrongly signed answers, non-CNY amounts, a repeated create).

use orderflow_activities::providers::wechatpay::WechatPayProvider;
use orderflow_activities::providers::{
    ChargeRequest, CloseResult, PaymentProvider, ProviderError, RefundRequest, RefundState,
};
use orderflow_domain::{
    Currency, Money, OrderId, OrderStatus, PaymentNo, ResolveAction, ResolveRequest,
};
use orderflow_tests::wechatpay_standin::{APPID, MCHID, NotifyForm, WechatPayStandIn, configure};
use orderflow_tests::{Engine, Shim, TestApp, eventually};
use orderflow_worker::settings::WechatPaySettings;
use std::sync::Arc;
use std::time::Duration;

const TEA: &str = "TEA-LONGJING";
/// 168.00 CNY.
const TEA_FEN: i64 = 16_800;

async fn spawn(engine: Engine) -> Option<(TestApp, Shim, WechatPayStandIn)> {
    let standin = WechatPayStandIn::spawn().await;
    let base = standin.base.clone();
    let app =
        TestApp::spawn_with(engine, |s| configure(&mut s.wechatpay, &base, true, true)).await?;
    let mut shim_settings = app.shim_settings();
    configure(&mut shim_settings.wechatpay, &standin.base, true, true);
    let state =
        orderflow_http::AppState::new(app.orders.clone(), shim_settings).expect("the shim's state");
    let shim = app.serve_http_with(state).await;
    Some((app, shim, standin))
}

async fn order(app: &TestApp, customer: &str, timeout_secs: u64) -> (String, String) {
    let id = app
        .order_paid_with("wechatpay", customer, &[(TEA, 1)], Some(timeout_secs))
        .await;
    let view = app.view(&id).await;
    assert_eq!(view.status, Some(OrderStatus::AwaitingPayment), "{view:?}");
    let payment_no = view.payment_no.clone().expect("a payment number");
    (id, payment_no)
}

async fn callbacks(app: &TestApp, verdict: &str, payment_no: Option<&str>) -> i64 {
    let and = payment_no.map_or(String::new(), |p| format!(" AND payment_no = '{p}'"));
    app.count(&format!(
        "webhook_callbacks WHERE provider = 'wechatpay' AND verdict = '{verdict}'{and}"
    ))
    .await
}

async fn payments(app: TestApp, _shim: Shim, standin: WechatPayStandIn) {
    // Paid, the notify delivered: the QR is WeChat Pay's code_url.
    let (id, no) = order(&app, "wx-notify", 60).await;
    let view = app.view(&id).await;
    assert_eq!(view.qr_payload, standin.code_url(&no), "{view:?}");
    assert_eq!(view.amount_minor, Some(TEA_FEN));
    let event = standin.pay(&no, None);
    let done = app.wait_status(&id, OrderStatus::Paid).await;
    assert_eq!(done.payment_events, vec![event.clone()]);
    eventually(Duration::from_secs(10), || async {
        let d = standin.deliveries();
        d.iter()
            .any(|(e, s)| *e == event && *s == 204)
            .then_some(())
            .ok_or(d)
    })
    .await
    .expect("the notify was acknowledged with an empty 204");

    // The first two deliveries spoiled on the way: refused, and WeChat Pay's retries (15 s,
    // 15 s, … here in ms) bring the same notify through.
    let (id, no) = order(&app, "wx-retried", 60).await;
    standin.spoil_next_deliveries(2);
    let event = standin.pay(&no, None);
    app.wait_status(&id, OrderStatus::Paid).await;
    eventually(Duration::from_secs(10), || async {
        let attempts: Vec<u16> = standin
            .deliveries()
            .into_iter()
            .filter(|(e, _)| *e == event)
            .map(|(_, s)| s)
            .collect();
        if attempts == [400, 400, 204] {
            Ok(())
        } else {
            Err(attempts)
        }
    })
    .await
    .expect("refused twice, then acknowledged");

    // The same notify ten times at once: one change.
    let (id, no) = order(&app, "wx-dup", 60).await;
    standin.lose_notifies(true);
    standin.pay(&no, None);
    standin.lose_notifies(false);
    let statuses = standin.send_notify_parallel(&no, 10).await;
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&204), "{statuses:?}");
    let done = app.wait_status(&id, OrderStatus::Paid).await;
    assert_eq!(done.payment_events.len(), 1, "{done:?}");
    assert_eq!(
        app.count(&format!("webhook_callbacks WHERE payment_no = '{no}'"))
            .await,
        1
    );

    // The notify lost: the deadline's query finds the money.
    let (id, no) = order(&app, "wx-lost", 3).await;
    standin.lose_notifies(true);
    standin.pay(&no, None);
    let done = app.final_view(&id).await;
    standin.lose_notifies(false);
    assert_eq!(done.status, Some(OrderStatus::Paid), "{done:?}");
    assert_eq!(callbacks(&app, "SIGNALLED", Some(&no)).await, 0);

    // The customer pays as we close: close's 204 says nothing, the query after it does.
    let (id, no) = order(&app, "wx-close-paid", 3).await;
    standin.pay_when_closed(&no);
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Paid), "{done:?}");
    assert_eq!(standin.trade_state(&no).as_deref(), Some("SUCCESS"));

    // Nobody pays: closed at WeChat Pay and here, stock back.
    let (id, no) = order(&app, "wx-unpaid", 3).await;
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Closed), "{done:?}");
    assert_eq!(standin.trade_state(&no).as_deref(), Some("CLOSED"));

    // Answers and notifies signed with the WeChat Pay public key (PUB_KEY_ID_…) instead.
    standin.sign_with_pubkey(true);
    let (id, no) = order(&app, "wx-pubkey", 60).await;
    standin.pay(&no, None);
    app.wait_status(&id, OrderStatus::Paid).await;
    standin.sign_with_pubkey(false);

    // WeChat Pay down for the create: retried, nothing lost, one trade.
    let trades = standin.trade_count();
    standin.fail_next(3);
    let (id, no) = order(&app, "wx-down", 60).await;
    assert_eq!(
        standin.failures_left(),
        0,
        "the outage was met and retried through"
    );
    assert_eq!(standin.trade_count(), trades + 1);
    standin.pay(&no, None);
    app.wait_status(&id, OrderStatus::Paid).await;

    let tea = app.stock(TEA).await;
    assert_eq!(tea.sold, 7, "{tea:?}");
    assert_eq!(tea.reserved, 0, "{tea:?}");
    app.assert_stock_invariants().await;
    standin.assert_no_violations();
}

async fn attacks(app: TestApp, _shim: Shim, standin: WechatPayStandIn) {
    let (id, no) = order(&app, "wx-attacked", 60).await;
    standin.lose_notifies(true);
    standin.pay(&no, None);
    standin.lose_notifies(false);
    let before = app.stock(TEA).await;
    for (form, verdict) in [
        (NotifyForm::Forged, "SIGNATURE_MISMATCH"),
        (NotifyForm::Tampered, "SIGNATURE_MISMATCH"),
        (NotifyForm::Stale, "STALE_TIMESTAMP"),
        (NotifyForm::WrongSerial, "BAD_SIGNATURE_HEADER"),
        (NotifyForm::Probe, "BAD_SIGNATURE_HEADER"),
    ] {
        let seen = callbacks(&app, verdict, None).await;
        let (_, status) = standin.send_notify(&no, form, None).await;
        assert!((400..500).contains(&status), "{form:?}: {status}");
        assert_eq!(callbacks(&app, verdict, None).await, seen + 1, "{form:?}");
    }
    for merchant in [("1900009999", APPID), (MCHID, "wx0000000000000000")] {
        let (_, status) = standin
            .send_notify(&no, NotifyForm::Genuine, Some(merchant))
            .await;
        assert_eq!(status, 400, "{merchant:?}");
    }
    assert_eq!(callbacks(&app, "MERCHANT_MISMATCH", Some(&no)).await, 2);
    let view = app.view(&id).await;
    assert_eq!(view.status, Some(OrderStatus::AwaitingPayment), "{view:?}");
    assert!(view.payment_events.is_empty(), "{view:?}");
    assert_eq!(app.stock(TEA).await, before);
    // Then the genuine one is accepted.
    let (event, status) = standin.send_notify(&no, NotifyForm::Genuine, None).await;
    assert_eq!(status, 204);
    let done = app.wait_status(&id, OrderStatus::Paid).await;
    assert_eq!(done.payment_events, vec![event.clone()]);
    // Another notify for the same payment arriving after it settled (reordered, or a second
    // event): acknowledged, nothing changes.
    let (late, status) = standin.send_notify(&no, NotifyForm::Genuine, None).await;
    assert_eq!(status, 204, "{late}");
    let after = app.final_view(&id).await;
    assert_eq!(after.status, Some(OrderStatus::Paid));
    assert_eq!(after.payment_events, vec![event]);
    eventually(Duration::from_secs(10), || async {
        let n = callbacks(&app, "ALREADY_SETTLED", Some(&no)).await;
        if n == 1 { Ok(()) } else { Err(n) }
    })
    .await
    .expect("the late notify recorded as already settled");
    assert_eq!(app.stock(TEA).await.sold, before.sold + 1);
    app.assert_stock_invariants().await;
    standin.assert_no_violations();
}

async fn review_and_refund(app: TestApp, _shim: Shim, standin: WechatPayStandIn) {
    standin.refunds_processing_for(2);
    let (id, no) = order(&app, "wx-mismatch", 60).await;
    standin.pay(&no, Some(100));
    app.wait_status(&id, OrderStatus::NeedsReview).await;
    // The verdict is written after the signal it reports, so it may trail the status.
    eventually(Duration::from_secs(10), || async {
        let n = callbacks(&app, "MISMATCH_SIGNALLED", Some(&no)).await;
        if n == 1 { Ok(()) } else { Err(n) }
    })
    .await
    .expect("the mismatch verdict recorded");
    app.orders
        .resolve(
            &id,
            ResolveRequest {
                action: ResolveAction::Refund,
                operator: "ops-wx".into(),
                note: "paid 1.00 of 168.00".into(),
            },
        )
        .await
        .expect("resolve");
    let done = eventually(Duration::from_secs(60), || async {
        let view = app.view(&id).await;
        if view.status == Some(OrderStatus::Refunded) {
            return Ok(view);
        }
        Err(format!(
            "{view:?}; refunds {:?}, posts {}, violations {:?}",
            standin.refunds_of(&no),
            standin.refund_posts(),
            standin.violations()
        ))
    })
    .await
    .expect("refunded");
    assert_eq!(done.status, Some(OrderStatus::Refunded), "{done:?}");
    let refunds = standin.refunds_of(&no);
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].1, "SUCCESS");
    assert_eq!(standin.refund_posts(), 1);
    assert_eq!(standin.trade_state(&no).as_deref(), Some("REFUND"));
    assert_eq!(
        app.count(&format!(
            "payments WHERE payment_no = '{no}' AND status = 'REFUNDED'"
        ))
        .await,
        1
    );
    // The REFUND.SUCCESS notify is verified, decrypted and logged.
    eventually(Duration::from_secs(10), || async {
        let n = callbacks(&app, "REFUND_RECORDED", Some(&no)).await;
        if n == 1 { Ok(()) } else { Err(n) }
    })
    .await
    .expect("REFUND.SUCCESS recorded");
    let tea = app.stock(TEA).await;
    assert_eq!((tea.reserved, tea.sold), (0, 0), "{tea:?}");
    app.assert_stock_invariants().await;
    standin.assert_no_violations();
}

macro_rules! on_every_engine_with_wechatpay {
    ($($name:ident),+ $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some((app, shim, standin)) = super::spawn(super::Engine::Sqlite).await {
                    super::$name(app, shim, standin).await;
                }
            }
        )+ }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some((app, shim, standin)) = super::spawn(super::Engine::Postgres).await {
                    super::$name(app, shim, standin).await;
                }
            }
        )+ }
        mod mysql { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some((app, shim, standin)) = super::spawn(super::Engine::MySql).await {
                    super::$name(app, shim, standin).await;
                }
            }
        )+ }
    };
}

on_every_engine_with_wechatpay!(payments, attacks, review_and_refund);

// ---- the outbound client's traps, directly ---------------------------------------------------

fn provider(base: &str, certificate: bool, public_key: bool) -> WechatPayProvider {
    let mut settings = WechatPaySettings::default();
    configure(&mut settings, base, certificate, public_key);
    let config = settings.load().expect("settings").expect("configured");
    WechatPayProvider::new(
        Arc::new(config),
        base,
        "https://shop.example/v1/webhooks/wechatpay",
    )
    .expect("client")
}

fn charge(order: &str, minor: i64, currency: &str) -> ChargeRequest {
    let order_id = OrderId::parse(order).unwrap();
    ChargeRequest {
        payment_no: PaymentNo::for_order(&order_id),
        order_id,
        amount: Money::new(minor, Currency::parse(currency).unwrap()).unwrap(),
        deadline_ms: 4_102_444_800_000,
        description: format!("{} {order}", "西湖龙井".repeat(20)),
    }
}

#[tokio::test]
async fn client_contract() {
    let standin = WechatPayStandIn::spawn().await;
    let wx = provider(&standin.base, true, true);

    // A repeated create answers the same code_url; one trade.
    let req = charge("ord-wx-contract-1", TEA_FEN, "CNY");
    let first = wx.create(&req).await.expect("create");
    assert!(first.qr_payload.starts_with("weixin://"), "{first:?}");
    assert_eq!(first.checkout_url, "");
    assert_eq!(wx.create(&req).await.expect("create again"), first);
    assert_eq!(standin.trade_count(), 1);
    let state = wx.query(&req.payment_no).await.expect("query");
    assert_eq!(state.status, orderflow_domain::PaymentStatus::Pending);

    // Non-CNY: refused before anything is sent.
    let usd = charge("ord-wx-contract-2", 500, "USD");
    assert!(matches!(wx.create(&usd).await, Err(ProviderError::Rejected(m)) if m.contains("CNY")));
    assert_eq!(standin.trade_count(), 1);

    // The trap: close answers 204 for a number WeChat Pay never saw; the query says NotFound.
    let unknown = PaymentNo::for_order(&OrderId::parse("ord-wx-never-created").unwrap());
    assert!(matches!(
        wx.close(&unknown).await,
        Err(ProviderError::NotFound(_))
    ));

    // Paid, then create again: ORDERPAID is not a rejection; close finds it paid.
    standin.lose_notifies(true);
    standin.pay(req.payment_no.as_str(), None);
    let again = wx.create(&req).await.expect("create after paid");
    assert_eq!(
        (again.qr_payload.as_str(), again.checkout_url.as_str()),
        ("", "")
    );
    assert!(
        matches!(wx.close(&req.payment_no).await, Ok(CloseResult::AlreadyPaid(s)) if s.paid_amount_minor == Some(TEA_FEN))
    );

    // Refund: one, followed from PROCESSING to SUCCESS with the same number.
    standin.refunds_processing_for(1);
    let refund = RefundRequest {
        payment_no: req.payment_no.clone(),
        refund_no: orderflow_activities::providers::refund_no_for(&req.payment_no),
        amount: req.amount,
        reason: "test".into(),
    };
    let r1 = wx.refund(&refund).await.expect("refund");
    assert_eq!(r1.state, RefundState::Processing);
    let r2 = wx.refund(&refund).await.expect("refund again");
    assert_eq!(
        (r2.refund_id.as_str(), r2.state),
        (r1.refund_id.as_str(), RefundState::Succeeded)
    );
    assert_eq!(standin.refund_posts(), 1);

    // Answers signed by a key we were not given are not believed.
    let cert_only = provider(&standin.base, true, false);
    standin.sign_with_pubkey(true);
    assert!(
        matches!(cert_only.query(&req.payment_no).await, Err(ProviderError::Unavailable(m)) if m.contains("verification"))
    );
    standin.sign_with_pubkey(false);
    // An outage is retryable.
    standin.fail_next(1);
    assert!(matches!(
        wx.query(&req.payment_no).await,
        Err(ProviderError::Unavailable(_))
    ));
    // Nothing listening (connection refused) is retryable too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let offline = provider(&nowhere, true, true);
    assert!(matches!(
        offline.query(&req.payment_no).await,
        Err(ProviderError::Unavailable(_))
    ));
    standin.assert_no_violations();
}
