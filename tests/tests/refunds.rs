//! After-sale refunds of paid orders, end to end: requested through `orderflow-client` (what the
//! CLI and the HTTP API call), counted against the payment in the database, made by
//! `AfterSaleRefundWorkflow` at the sandbox gateway, recorded with the order's new status, the
//! stock returned when asked, and announced as events — on every engine.

use orderflow_activities::refunds::{RefundAsk, RefundLineAsk, RefundScope, StoredRefund};
use orderflow_client::orders::{OrderOpError, Refusal};
use orderflow_domain::{Currency, Money, OrderId, OrderStatus, PaymentNo, Sku};
use orderflow_http::api_keys::Scope;
use orderflow_tests::{Engine, TestApp, bearer_client, on_every_engine};
use serde_json::{Value, json};
use std::time::Duration;

on_every_engine!(
    a_discounted_order_refunds_its_lines_net_of_the_coupon,
    a_second_payment_during_review_is_refunded_once,
    lines_then_the_rest_refund_partially_then_wholly,
    concurrent_refunds_never_exceed_the_payment,
    refusals_say_why_and_change_nothing,
);

fn ask(order_id: &str, scope: RefundScope, key: &str) -> RefundAsk {
    RefundAsk {
        order_id: OrderId::parse(order_id).unwrap(),
        scope,
        reason: "customer returned it".to_owned(),
        restock: false,
        key: key.to_owned(),
        requested_by: "test".to_owned(),
    }
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::parse("USD").unwrap()).unwrap()
}

/// A paid order of 2 × TEE-RED-M (19.99) and 1 × MUG-LOGO (12.50): 52.48 USD.
async fn paid_order(app: &TestApp) -> String {
    let order_id = app
        .order("refundee", &[("TEE-RED-M", 2), ("MUG-LOGO", 1)], None)
        .await;
    app.orders
        .pay_sandbox(&order_id, None, 1)
        .await
        .expect("sandbox pays");
    app.wait_status(&order_id, OrderStatus::Paid).await;
    order_id
}

/// Waits (up to 60 s) until the refund's workflow has recorded it.
async fn succeeded(app: &TestApp, refund_no: &str) -> StoredRefund {
    let started = std::time::Instant::now();
    loop {
        let r = orderflow_activities::refunds::load(&app.db, refund_no)
            .await
            .unwrap()
            .expect("the refund exists");
        if r.state == "SUCCEEDED" {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "refund {refund_no} still {} after 60 s",
            r.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sandbox_refunded(app: &TestApp, order_id: &str) -> (i64, i64) {
    let payment_no = PaymentNo::for_order(&OrderId::parse(order_id).unwrap());
    let refunds = app
        .count(&format!(
            "sandbox_refunds WHERE payment_no = '{payment_no}'"
        ))
        .await;
    let (minor,): (i64,) = orderflow_activities::sql!(
        "SELECT refunded_minor FROM sandbox_charges WHERE payment_no = $1"
    )
    .on(&app.db)
    .bind(payment_no.as_str())
    .fetch_one_as(app.db.pool())
    .await
    .unwrap();
    (refunds, minor)
}

async fn lines_then_the_rest_refund_partially_then_wholly(app: TestApp) {
    let order_id = paid_order(&app).await;
    let before = app.stock("TEE-RED-M").await;

    // One T-shirt back, and on sale again.
    let mut first = ask(
        &order_id,
        RefundScope::Lines(vec![RefundLineAsk {
            sku: Sku::parse("TEE-RED-M").unwrap(),
            quantity: 1,
        }]),
        "first",
    );
    first.restock = true;
    let started = app.orders.refund(&first).await.expect("refund accepted");
    assert!(started.created);
    assert_eq!(started.refund.amount_minor, 1999);
    assert_eq!(started.refund.state, "REQUESTED");
    assert_eq!(
        started.workflow_id,
        format!("refund-{}", started.refund.refund_no)
    );
    let done = succeeded(&app, &started.refund.refund_no).await;
    assert!(done.provider_refund_id.is_some());
    app.maybe_record_workflow_history(&started.workflow_id, "after_sale_refund")
        .await;
    let view = app.view(&order_id).await;
    assert_eq!(
        view.status,
        Some(OrderStatus::PartiallyRefunded),
        "{view:?}"
    );
    let after = app.stock("TEE-RED-M").await;
    assert_eq!(
        (after.available, after.sold),
        (before.available + 1, before.sold - 1)
    );
    assert_eq!(sandbox_refunded(&app, &order_id).await, (1, 1999));

    // The same request again is the same refund: nothing new at the provider.
    let again = app.orders.refund(&first).await.expect("repeat accepted");
    assert!(!again.created);
    assert_eq!(again.refund.refund_no, started.refund.refund_no);
    assert_eq!(sandbox_refunded(&app, &order_id).await, (1, 1999));

    // Everything left: 52.48 − 19.99.
    let rest = app
        .orders
        .refund(&ask(&order_id, RefundScope::Rest, "rest"))
        .await
        .expect("the rest accepted");
    assert_eq!(rest.refund.amount_minor, 5248 - 1999);
    succeeded(&app, &rest.refund.refund_no).await;
    let view = app.view(&order_id).await;
    assert_eq!(view.status, Some(OrderStatus::Refunded), "{view:?}");
    assert_eq!(sandbox_refunded(&app, &order_id).await, (2, 5248));

    // Nothing is left to refund.
    let err = app
        .orders
        .refund(&ask(&order_id, RefundScope::Amount(usd(1)), "more"))
        .await
        .unwrap_err();
    assert_refused(&err, "NOT_REFUNDABLE");

    let refunds = app.orders.refunds(&order_id).await.unwrap();
    assert_eq!(refunds.len(), 2);
    assert_eq!(
        app.events(&order_id).await,
        [
            "order.created",
            "order.awaiting_payment",
            "order.paid",
            "refund.requested",
            "order.partially_refunded",
            "refund.completed",
            "refund.requested",
            "order.refunded",
            "refund.completed",
        ]
    );
    app.assert_stock_invariants().await;
}

fn assert_refused(err: &OrderOpError, code: &str) {
    match err {
        OrderOpError::Refused { refusal, message } => {
            assert_eq!(refusal.code(), code, "{message}");
        }
        other => panic!("expected a refusal {code}, got {other:?}"),
    }
}

/// 20 operators refund 7.00 each from a 52.48 payment at the same moment: 7 fit (49.00), the
/// other 13 are told what is left, and neither our books nor the gateway's pass what was paid.
async fn concurrent_refunds_never_exceed_the_payment(app: TestApp) {
    let order_id = paid_order(&app).await;
    let attempts = (0..20).map(|i| {
        let orders = app.orders.clone();
        let ask = ask(&order_id, RefundScope::Amount(usd(700)), &format!("op-{i}"));
        tokio::spawn(async move { orders.refund(&ask).await })
    });
    let results = futures::future::join_all(attempts).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for r in results {
        match r.expect("task") {
            Ok(started) => accepted.push(started.refund.refund_no),
            Err(OrderOpError::Refused {
                refusal: Refusal::Conflict(code),
                message,
            }) => {
                assert_eq!(code, "REFUND_EXCEEDS_PAYMENT", "{message}");
                assert!(message.contains("left"), "{message}");
                refused += 1;
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((accepted.len(), refused), (7, 13));
    for refund_no in &accepted {
        succeeded(&app, refund_no).await;
    }
    let (refunds, refunded) = sandbox_refunded(&app, &order_id).await;
    assert_eq!((refunds, refunded), (7, 4900));
    assert_eq!(
        app.count(&format!(
            "payments WHERE order_id = '{order_id}' AND refunded_minor = 4900"
        ))
        .await,
        1
    );
    assert_eq!(
        app.view(&order_id).await.status,
        Some(OrderStatus::PartiallyRefunded)
    );
}

async fn refusals_say_why_and_change_nothing(app: TestApp) {
    let order_id = paid_order(&app).await;
    let cases: Vec<(RefundAsk, &str)> = vec![
        (
            ask(&order_id, RefundScope::Amount(usd(5249)), "too-much"),
            "REFUND_EXCEEDS_PAYMENT",
        ),
        (
            ask(
                &order_id,
                RefundScope::Amount(Money::new(100, Currency::parse("CNY").unwrap()).unwrap()),
                "wrong-currency",
            ),
            "CURRENCY_MISMATCH",
        ),
        (
            ask(
                &order_id,
                RefundScope::Lines(vec![RefundLineAsk {
                    sku: Sku::parse("TEE-RED-M").unwrap(),
                    quantity: 3,
                }]),
                "too-many-units",
            ),
            "REFUND_EXCEEDS_LINE",
        ),
        (
            ask(
                &order_id,
                RefundScope::Lines(vec![RefundLineAsk {
                    sku: Sku::parse("HOODIE-BLK-L").unwrap(),
                    quantity: 1,
                }]),
                "not-a-line",
            ),
            "UNKNOWN_LINE",
        ),
        (
            RefundAsk {
                restock: true,
                ..ask(&order_id, RefundScope::Amount(usd(100)), "restock-amount")
            },
            "INVALID_REFUND",
        ),
        (
            RefundAsk {
                reason: "  ".to_owned(),
                ..ask(&order_id, RefundScope::Amount(usd(100)), "no-reason")
            },
            "INVALID_REFUND",
        ),
    ];
    for (a, code) in &cases {
        let err = app.orders.refund(a).await.unwrap_err();
        assert_refused(&err, code);
    }
    // A key used for one refund cannot name another.
    app.orders
        .refund(&ask(&order_id, RefundScope::Amount(usd(100)), "k"))
        .await
        .expect("accepted");
    let err = app
        .orders
        .refund(&ask(&order_id, RefundScope::Amount(usd(200)), "k"))
        .await
        .unwrap_err();
    assert_refused(&err, "IDEMPOTENCY_KEY_REUSED");

    // An order that is not paid cannot be refunded; an unknown one is unknown.
    let unpaid = app.order("refundee", &[("MUG-LOGO", 1)], None).await;
    let err = app
        .orders
        .refund(&ask(&unpaid, RefundScope::Amount(usd(100)), "unpaid"))
        .await
        .unwrap_err();
    assert_refused(&err, "NOT_REFUNDABLE");
    let err = app
        .orders
        .refund(&ask(
            "ord_000000000000000000000000",
            RefundScope::Rest,
            "unknown",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, OrderOpError::UnknownOrder(_)), "{err:?}");

    // Only the one accepted refund was counted.
    assert_eq!(
        app.count(&format!(
            "payments WHERE order_id = '{order_id}' AND refunded_minor = 100"
        ))
        .await,
        1
    );
    assert_eq!(app.count("refunds").await, 1);
}

/// The HTTP API: operators only; 201 accepted, 200 the same request again, 409 with what is
/// left, 404 an unknown order, 422 a request that names nothing to refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refunds_for_operators_only() {
    let Some(app) = TestApp::spawn(Engine::Sqlite).await else {
        return;
    };
    let shim = app.serve_http().await;
    let order_id = paid_order(&app).await;
    let url = format!("{}/v1/orders/{order_id}/refunds", shim.base);
    let operator = bearer_client(&app.api_key("ops-refunds", &[Scope::Operator]).await);
    let post = |client: &reqwest::Client, key: &str, body: Value| {
        client
            .post(&url)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"lines": [{"sku": "MUG-LOGO", "quantity": 1}], "reason": "chipped",
                      "restock": false});

    // A client key, even one that created orders, may not refund.
    let r = post(&shim.http, "a", body.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = operator.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400, "the Idempotency-Key is required");

    let r = post(&operator, "a", body.clone()).await.unwrap();
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["amount_minor"], 1250);
    assert_eq!(first["order_id"], json!(order_id));
    assert!(
        first["requested_by"]
            .as_str()
            .unwrap()
            .starts_with("ops-refunds")
    );
    let r = post(&operator, "a", body.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["refund_no"], first["refund_no"]);

    let r = post(
        &operator,
        "b",
        json!({"amount_minor": 5000, "currency": "USD", "reason": "too much"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 409);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "REFUND_EXCEEDS_PAYMENT");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("39.98 USD"),
        "{err}"
    );
    let r = post(&operator, "c", json!({"reason": "nothing named"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = operator
        .post(format!(
            "{}/v1/orders/ord_000000000000000000000000/refunds",
            shim.base
        ))
        .header("Idempotency-Key", "d")
        .json(&json!({"all": true, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    succeeded(&app, first["refund_no"].as_str().unwrap()).await;
    let listed: Value = operator
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["state"], "SUCCEEDED");
    let order: Value = operator
        .get(format!("{}/v1/orders/{order_id}", shim.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "PARTIALLY_REFUNDED");
}

/// The customer pays the wrong amount (the order waits for review), then pays again with another
/// transaction: the second payment is money no order keeps, refunded once however often its
/// callback arrives, and a later late-payment inquiry counts it as settled. The first payment
/// still waits for the operator, who accepts it.
async fn a_second_payment_during_review_is_refunded_once(app: TestApp) {
    use orderflow_activities::providers::sandbox::SandboxProvider;
    use orderflow_domain::{PaymentOutcome, PaymentSignal, ResolveAction, ResolveRequest};

    let order_id = app.order("twice", &[("MUG-LOGO", 1)], None).await;
    app.orders
        .pay_sandbox(&order_id, Some(1000), 1)
        .await
        .expect("first payment");
    app.wait_status(&order_id, OrderStatus::NeedsReview).await;

    let payment_no = PaymentNo::for_order(&OrderId::parse(order_id.as_str()).unwrap());
    let gateway = SandboxProvider::new(app.db.clone(), &app.orders.public_url);
    let second = gateway
        .pay_again(&payment_no, 1250)
        .await
        .expect("paid again");
    let signal = PaymentSignal {
        event_id: second.event_id.clone(),
        provider: "sandbox".to_owned(),
        payment_no: payment_no.to_string(),
        outcome: PaymentOutcome::Paid,
        amount_minor: 1250,
        currency: "USD".to_owned(),
        provider_txn_id: second.txn_id.clone(),
    };
    // Delivered three times, once under another event id: one transaction, one refund.
    for event_id in [
        &signal.event_id,
        &signal.event_id,
        &format!("{}-redelivered", signal.event_id),
    ] {
        let mut s = signal.clone();
        s.event_id = event_id.clone();
        app.orders.signal_payment(&order_id, s).await.unwrap();
    }
    let refunded = orderflow_tests::eventually(Duration::from_secs(60), || async {
        let n = app
            .count(&format!(
                "payment_log WHERE payment_no = '{payment_no}' AND event LIKE '2ND_REFUND:%'"
            ))
            .await;
        if n == 1 {
            Ok(n)
        } else {
            Err(format!("{n} second-payment refunds logged"))
        }
    })
    .await
    .expect("the second payment is refunded");
    assert_eq!(refunded, 1);
    assert_eq!(sandbox_refunded(&app, &order_id).await, (1, 1250));
    assert_eq!(
        app.view(&order_id).await.status,
        Some(OrderStatus::NeedsReview),
        "the first payment still waits for the operator"
    );

    app.orders
        .resolve(
            &order_id,
            ResolveRequest {
                action: ResolveAction::Accept,
                operator: "test".to_owned(),
                note: "short payment accepted".to_owned(),
            },
        )
        .await
        .expect("resolve");
    assert_eq!(
        app.final_view(&order_id).await.status,
        Some(OrderStatus::Paid)
    );

    // The second payment's callback once more, after the order is over: the late-payment check
    // finds everything the gateway holds settled (kept, or already given back).
    app.orders
        .start_late_payment_refund(&order_id, payment_no.as_str(), "sandbox", &signal.event_id)
        .await
        .unwrap();
    let outcome = app
        .orders
        .client
        .get_workflow_handle::<orderflow_workflows::LatePaymentWorkflow>(
            orderflow_workflows::late_payment_workflow_id(payment_no.as_str()),
        )
        .get_result(Default::default())
        .await
        .expect("late-payment outcome");
    assert_eq!(outcome.result, "KEPT_BY_ORDER");
    assert_eq!(sandbox_refunded(&app, &order_id).await, (1, 1250));
    let events = app.events(&order_id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "refund.completed").count(),
        1,
        "{events:?}"
    );
    app.maybe_record_history(&order_id, "second_payment_refunded")
        .await;
}

/// A 10 % coupon: each line refunds its price less its share of the discount, unit by unit
/// adding up to exactly what was paid; the coupon stays spent.
async fn a_discounted_order_refunds_its_lines_net_of_the_coupon(app: TestApp) {
    use orderflow_activities::coupons::{self, CouponDefinition, CouponKind};
    let definition = CouponDefinition {
        id: orderflow_tests::unique("REFUND-TEN-"),
        kind: CouponKind::Percent,
        amount_off: 10,
        currency: "USD".to_owned(),
        min_spend_minor: 0,
        valid_from_ms: 0,
        valid_until_ms: i64::MAX,
    };
    coupons::define(&app.db, &definition).await.unwrap();
    let code = orderflow_tests::unique("R-");
    coupons::issue(&app.db, &definition.id, None, &code)
        .await
        .unwrap();
    let order_id = app
        .order_with_coupon(
            "refundee",
            &[("TEE-RED-M", 2), ("MUG-LOGO", 1)],
            None,
            &code,
        )
        .await;
    app.orders.pay_sandbox(&order_id, None, 1).await.unwrap();
    app.wait_status(&order_id, OrderStatus::Paid).await;
    // Paid 5248 − 524 = 4724; TEE-RED-M's two units are worth 3998 − 399 = 3599, MUG-LOGO 1125.
    let line = |sku: &str, key: &str| {
        ask(
            &order_id,
            RefundScope::Lines(vec![RefundLineAsk {
                sku: Sku::parse(sku).unwrap(),
                quantity: 1,
            }]),
            key,
        )
    };
    let mut amounts = Vec::new();
    for (sku, key) in [("TEE-RED-M", "t1"), ("TEE-RED-M", "t2"), ("MUG-LOGO", "m1")] {
        let started = app.orders.refund(&line(sku, key)).await.unwrap();
        amounts.push(started.refund.amount_minor);
        succeeded(&app, &started.refund.refund_no).await;
    }
    assert_eq!(amounts, [1799, 1800, 1125]);
    assert_eq!(
        app.view(&order_id).await.status,
        Some(OrderStatus::Refunded)
    );
    assert_eq!(sandbox_refunded(&app, &order_id).await, (3, 4724));
    let coupon = coupons::coupon(&app.db, &code).await.unwrap().unwrap();
    assert_eq!(coupon.state, "USED");
}

/// A real `orderflow-worker` process is killed (SIGKILL) in the middle of a refund: after the
/// sandbox gateway made it, before our books recorded it (the test holds the refund's row lock,
/// so the worker's transaction waits there). The next worker's attempt asks again with the same
/// refund number: one refund at the gateway, recorded once. PostgreSQL and MariaDB: the test needs
/// a row lock that does not also block the gateway's own write (SQLite locks the whole file).
async fn killed_mid_refund(engine: Engine) -> anyhow::Result<()> {
    use anyhow::Context;
    use orderflow_client::orders::NewOrder;
    use orderflow_tests::chaos::{Shop, WorkerSpec, scratch_dir};
    let address = orderflow_tests::temporal_address();
    let Some(shop) = Shop::new(engine, &address, 100).await? else {
        eprintln!("{engine:?} is not configured here: skipped");
        return Ok(());
    };
    let dir = scratch_dir("refund-kill")?;
    let spec = WorkerSpec::new(&shop, &address, dir.join("worker.log"))?;
    let mut worker = spec.spawn().await?;
    let (order_id, _) = shop
        .orders
        .start(&NewOrder {
            client: orderflow_client::orders::cli_client(),
            idempotency_key: orderflow_tests::unique("kill-"),
            customer_id: "killed".to_owned(),
            lines: vec![("MUG-LOGO".to_owned(), 2)],
            provider: "sandbox".to_owned(),
            payment_timeout_secs: None,
            coupon_code: None,
        })
        .await?;
    let order_id = order_id.to_string();
    shop.orders
        .wait_ready(&order_id, Duration::from_secs(60))
        .await?;
    shop.orders.pay_sandbox(&order_id, None, 1).await?;
    shop.orders
        .wait_until(&order_id, "PAID", Duration::from_secs(60), |v| {
            v.status == Some(OrderStatus::Paid)
        })
        .await?;

    // No worker while the refund is accepted, so the test takes the lock before any attempt.
    worker.kill().await?;
    let started = shop
        .orders
        .refund(&ask(&order_id, RefundScope::Amount(usd(1000)), "kill"))
        .await?;
    let refund_no = started.refund.refund_no.clone();
    let mut lock = shop.db.pool().begin().await?;
    orderflow_activities::sql!(
        "SELECT state FROM refunds WHERE refund_no = $1 FOR UPDATE",
        only: [Postgres, MySql],
    )
    .on(&shop.db)
    .bind(refund_no.as_str())
    .fetch_one(&mut *lock)
    .await?;
    worker = spec.spawn().await?;
    let payment_no = PaymentNo::for_order(&OrderId::parse(order_id.as_str())?);
    // Refunds the gateway made, what it counts refunded, and what our books count.
    let books = || {
        let db = shop.db.clone();
        let payment_no = payment_no.to_string();
        async move {
            orderflow_activities::sql!(
                "SELECT CAST((SELECT COUNT(*) FROM sandbox_refunds r WHERE r.payment_no = c.payment_no) AS BIGINT),
                        c.refunded_minor, p.refunded_minor
                   FROM sandbox_charges c JOIN payments p ON p.payment_no = c.payment_no
                  WHERE c.payment_no = $1"
            )
            .on(&db)
            .bind(payment_no.as_str())
            .fetch_one_as::<(i64, i64, i64), _>(db.pool())
            .await
        }
    };
    orderflow_tests::eventually(Duration::from_secs(60), || async {
        match books().await {
            Ok((1, _, _)) => Ok(()),
            other => Err(format!("gateway refunds: {other:?}")),
        }
    })
    .await
    .map_err(anyhow::Error::msg)
    .context("the gateway makes the refund")?;
    // The worker now waits on the refund's row inside its transaction: kill it there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.kill().await?;
    lock.rollback().await?;
    let state = orderflow_activities::refunds::load(&shop.db, &refund_no)
        .await?
        .context("refund")?;
    assert_eq!(state.state, "REQUESTED", "killed before it was recorded");

    // The next worker retries the attempt once its start-to-close timeout (30 s) has passed.
    let mut worker = spec.spawn().await?;
    let done = orderflow_tests::eventually(
        orderflow_tests::Wait::up_to(Duration::from_secs(120)).every(Duration::from_millis(250)),
        || async {
            match orderflow_activities::refunds::load(&shop.db, &refund_no).await {
                Ok(Some(r)) if r.state == "SUCCEEDED" => Ok(r),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("the refund completes after the restart")?;
    worker.kill().await?;
    assert_eq!(
        books().await?,
        (1, 1000, 1000),
        "one refund at the gateway, counted once by it and by us"
    );
    assert!(done.provider_refund_id.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_refund_refunds_once_postgres() {
    killed_mid_refund(Engine::Postgres).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_refund_refunds_once_mysql() {
    killed_mid_refund(Engine::MySql).await.unwrap();
}
