//! Coupons inside the order saga (TCC), on every engine: priced server-side, locked with the
//! stock, spent when paid, released on every other ending; a try after its own cancel fails; a
//! late payment never takes a coupon back from the order that holds it now; 50 orders racing for
//! one code leave exactly one holder. Every test ends with the coupon audit (`TestApp`'s drop).

use futures::future::join_all;
use orderflow_activities::coupons::{self, CouponDefinition, CouponKind};
use orderflow_activities::inventory::{self, InventoryError, ReserveStock};
use orderflow_activities::sql;
use orderflow_domain::{OrderInput, OrderLineInput, OrderStatus, ResolveAction, ResolveRequest};
use orderflow_http::api_keys::Scope;
use orderflow_tests::{TestApp, answer, bearer_client, on_every_engine, unique};
use serde_json::json;

on_every_engine!(
    a_paid_order_spends_its_coupon,
    every_other_ending_gives_the_coupon_back,
    review_accept_spends_and_review_refund_releases,
    unusable_coupons_reject_the_order_and_hold_nothing,
    a_try_after_its_own_cancel_fails,
    a_late_payment_is_refunded_and_never_takes_the_coupon_back,
    fifty_orders_race_for_one_coupon,
    operators_manage_coupons_over_http,
);

fn definition(id: &str, kind: CouponKind, amount_off: i64, min_spend: i64) -> CouponDefinition {
    CouponDefinition {
        id: id.to_owned(),
        kind,
        amount_off,
        currency: "USD".to_owned(),
        min_spend_minor: min_spend,
        valid_from_ms: 0,
        valid_until_ms: i64::MAX,
    }
}

/// A fresh single-use code under a fresh definition; `customer` None: open to anyone.
async fn coupon(app: &TestApp, def: CouponDefinition, customer: Option<&str>) -> String {
    coupons::define(&app.db, &def).await.expect("defined");
    let code = unique("C-");
    coupons::issue(&app.db, &def.id, customer, &code)
        .await
        .expect("issued");
    code
}

async fn state(app: &TestApp, code: &str) -> (String, Option<String>) {
    let c = coupons::coupon(&app.db, code).await.unwrap().unwrap();
    (c.state, c.order_id)
}

async fn a_paid_order_spends_its_coupon(app: TestApp) {
    let code = coupon(
        &app,
        definition("TEN-PCT", CouponKind::Percent, 10, 0),
        None,
    )
    .await;
    let id = app
        .order_with_coupon("alice", &[("TEE-RED-M", 2), ("MUG-LOGO", 1)], None, &code)
        .await;
    let view = app.view(&id).await;
    assert_eq!(view.status, Some(OrderStatus::AwaitingPayment));
    // Subtotal 2 × 1999 + 1250 = 5248; 10 % = 524.8, rounded down to 524.
    assert_eq!(view.subtotal_minor, Some(5248));
    assert_eq!(view.discount_minor, Some(524));
    assert_eq!(view.amount_minor, Some(5248 - 524));
    assert_eq!(view.coupon_code.as_deref(), Some(code.as_str()));
    // The discount spread over the lines by their totals: 124.8 and 399.2, the unit left over to
    // the larger remainder (MUG-LOGO).
    let lines: Vec<(String, i64, i64)> = sql!(
        "SELECT sku, line_total_minor, discount_minor FROM order_lines WHERE order_id = $1 ORDER BY sku",
    )
    .on(app.db.pool())
    .bind(&id)
    .fetch_all_as(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        lines,
        [
            ("MUG-LOGO".to_owned(), 1250, 125),
            ("TEE-RED-M".to_owned(), 3998, 399)
        ]
    );
    assert_eq!(
        app.count(&format!(
            "orders WHERE order_id = '{id}' AND subtotal_minor = 5248 AND discount_minor = 524 AND coupon_code = '{code}'"
        ))
        .await,
        1
    );
    assert_eq!(
        state(&app, &code).await,
        ("LOCKED".to_owned(), Some(id.clone()))
    );
    app.assert_stock_invariants().await;

    // The charge is for the discounted total, and paying it spends the coupon.
    app.orders.pay_sandbox(&id, None, 1).await.unwrap();
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Paid));
    assert_eq!(
        state(&app, &code).await,
        ("USED".to_owned(), Some(id.clone()))
    );
    assert_eq!(
        app.count(&format!(
            "payments WHERE order_id = '{id}' AND amount_minor = 4724 AND status = 'PAID'"
        ))
        .await,
        1
    );
    // The finished order's stored view shows the same pricing.
    let stored = orderflow_activities::orders::load(&app.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.subtotal_minor, stored.discount_minor),
        (Some(5248), 524)
    );

    // Spent: the next order with it is rejected, and holds no stock.
    let again = app
        .order_with_coupon("alice", &[("TEE-RED-M", 1)], None, &code)
        .await;
    let rejected = app.final_view(&again).await;
    assert_eq!(rejected.status, Some(OrderStatus::Rejected));
    let reason = rejected.reason.unwrap();
    assert!(
        reason.starts_with("COUPON_UNAVAILABLE: ") && reason.contains("already been used"),
        "{reason}"
    );
    assert_eq!(app.stock("TEE-RED-M").await.reserved, 0);
    app.assert_stock_invariants().await;
}

async fn every_other_ending_gives_the_coupon_back(app: TestApp) {
    let code = coupon(
        &app,
        definition("FIVE-OFF", CouponKind::Fixed, 500, 1000),
        Some("bob"),
    )
    .await;

    // Timed out.
    let id = app
        .order_with_coupon("bob", &[("MUG-LOGO", 1)], Some(1), &code)
        .await;
    assert_eq!(app.view(&id).await.amount_minor, Some(750));
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Closed));
    assert_eq!(state(&app, &code).await, ("AVAILABLE".to_owned(), None));

    // Cancelled.
    let id = app
        .order_with_coupon("bob", &[("MUG-LOGO", 1)], None, &code)
        .await;
    assert_eq!(
        state(&app, &code).await,
        ("LOCKED".to_owned(), Some(id.clone()))
    );
    app.orders.cancel(&id, "changed my mind").await.unwrap();
    assert_eq!(
        app.final_view(&id).await.status,
        Some(OrderStatus::Cancelled)
    );
    assert_eq!(state(&app, &code).await, ("AVAILABLE".to_owned(), None));

    // Rejected for stock: the try rolled back with the reservation, and the cancel records the
    // order's hold RELEASED.
    let id = app
        .order_with_coupon("bob", &[("FLASH-DEAL", 11)], None, &code)
        .await;
    let rejected = app.final_view(&id).await;
    assert_eq!(rejected.status, Some(OrderStatus::Rejected));
    assert!(rejected.reason.unwrap().starts_with("OUT_OF_STOCK"));
    assert_eq!(state(&app, &code).await, ("AVAILABLE".to_owned(), None));
    assert_eq!(
        app.count(&format!(
            "coupon_holds WHERE order_id = '{id}' AND state = 'RELEASED'"
        ))
        .await,
        1
    );

    // Still good for a paid order after all that.
    let id = app
        .order_with_coupon("bob", &[("MUG-LOGO", 1)], None, &code)
        .await;
    app.orders.pay_sandbox(&id, None, 1).await.unwrap();
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Paid));
    assert_eq!(state(&app, &code).await, ("USED".to_owned(), Some(id)));
    app.assert_stock_invariants().await;
}

async fn review_accept_spends_and_review_refund_releases(app: TestApp) {
    let code = coupon(&app, definition("REVIEW", CouponKind::Percent, 50, 0), None).await;
    let resolve = |action| ResolveRequest {
        action,
        operator: "ops-1".into(),
        note: "checked".into(),
    };

    let id = app
        .order_with_coupon("carol", &[("HOODIE-BLK-L", 1)], None, &code)
        .await;
    app.orders.pay_sandbox(&id, Some(100), 1).await.unwrap();
    app.wait_status(&id, OrderStatus::NeedsReview).await;
    // Under review the order keeps its coupon.
    assert_eq!(
        state(&app, &code).await,
        ("LOCKED".to_owned(), Some(id.clone()))
    );
    app.assert_stock_invariants().await;
    app.orders
        .resolve(&id, resolve(ResolveAction::Refund))
        .await
        .unwrap();
    assert_eq!(
        app.final_view(&id).await.status,
        Some(OrderStatus::Refunded)
    );
    assert_eq!(state(&app, &code).await, ("AVAILABLE".to_owned(), None));

    let id = app
        .order_with_coupon("carol", &[("HOODIE-BLK-L", 1)], None, &code)
        .await;
    app.orders.pay_sandbox(&id, Some(100), 1).await.unwrap();
    app.wait_status(&id, OrderStatus::NeedsReview).await;
    app.orders
        .resolve(&id, resolve(ResolveAction::Accept))
        .await
        .unwrap();
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Paid));
    assert_eq!(state(&app, &code).await, ("USED".to_owned(), Some(id)));
    app.assert_stock_invariants().await;
}

async fn unusable_coupons_reject_the_order_and_hold_nothing(app: TestApp) {
    let mine = coupon(
        &app,
        definition("MINE", CouponKind::Fixed, 100, 0),
        Some("dave"),
    )
    .await;
    let big_spend = coupon(
        &app,
        definition("BIG-SPEND", CouponKind::Fixed, 100, 10_000),
        None,
    )
    .await;
    let mut expired_def = definition("EXPIRED", CouponKind::Fixed, 100, 0);
    expired_def.valid_until_ms = 1;
    let expired = coupon(&app, expired_def, None).await;
    let mut later_def = definition("LATER", CouponKind::Fixed, 100, 0);
    later_def.valid_from_ms = i64::MAX - 1;
    let later = coupon(&app, later_def, None).await;
    let mut euro_def = definition("EURO", CouponKind::Fixed, 100, 0);
    euro_def.currency = "EUR".to_owned();
    let euro = coupon(&app, euro_def, None).await;

    for (customer, code, why) in [
        ("erin", "NO-SUCH-CODE".to_owned(), "unknown coupon code"),
        ("erin", mine.clone(), "another customer"),
        ("erin", big_spend.clone(), "minimum spend"),
        ("erin", expired.clone(), "expired"),
        ("erin", later.clone(), "not valid yet"),
        ("erin", euro.clone(), "EUR"),
    ] {
        let id = app
            .order_with_coupon(customer, &[("STICKER-PACK", 2)], None, &code)
            .await;
        let view = app.final_view(&id).await;
        assert_eq!(view.status, Some(OrderStatus::Rejected), "{code}");
        let reason = view.reason.unwrap();
        assert!(
            reason.starts_with("COUPON_UNAVAILABLE: ") && reason.contains(why),
            "{code}: {reason}"
        );
    }
    let stickers = app.stock("STICKER-PACK").await;
    assert_eq!((stickers.available, stickers.reserved), (500, 0));
    for code in [&mine, &big_spend, &expired, &later, &euro] {
        assert_eq!(state(&app, code).await, ("AVAILABLE".to_owned(), None));
    }
    // Its own customer may use it.
    let id = app
        .order_with_coupon("dave", &[("STICKER-PACK", 2)], None, &mine)
        .await;
    assert_eq!(app.view(&id).await.amount_minor, Some(2 * 399 - 100));
    app.orders.cancel(&id, "done testing").await.unwrap();
    app.final_view(&id).await;
    app.assert_stock_invariants().await;
}

/// Anti-hanging: an attempt of the try that outlived its order's cancel (here: run by hand after
/// the order was cancelled) must not lock the coupon for an order that is over.
async fn a_try_after_its_own_cancel_fails(app: TestApp) {
    let code = coupon(&app, definition("HANG", CouponKind::Fixed, 100, 0), None).await;
    let id = app
        .order_with_coupon("frank", &[("MUG-LOGO", 1)], None, &code)
        .await;
    // A repeat of the try while the order holds it succeeds and changes nothing.
    let order = OrderInput {
        order_id: id.clone(),
        customer_id: "frank".into(),
        lines: vec![OrderLineInput {
            sku: "MUG-LOGO".into(),
            quantity: 1,
        }],
        provider: "sandbox".into(),
        payment_timeout_secs: None,
        coupon_code: Some(code.clone()),
    }
    .validate()
    .unwrap();
    let req = ReserveStock::for_order(&order);
    inventory::reserve(&app.db, &req)
        .await
        .expect("a repeat try");
    assert_eq!(
        state(&app, &code).await,
        ("LOCKED".to_owned(), Some(id.clone()))
    );

    app.orders.cancel(&id, "changed my mind").await.unwrap();
    app.final_view(&id).await;
    assert_eq!(state(&app, &code).await, ("AVAILABLE".to_owned(), None));
    let late = inventory::reserve(&app.db, &req).await;
    assert!(
        matches!(&late, Err(InventoryError::CouponUnavailable(why)) if why.contains("already released")),
        "{late:?}"
    );
    assert_eq!(state(&app, &code).await, ("AVAILABLE".to_owned(), None));
    // Nothing of the late try stayed: no stock held for the cancelled order either.
    assert_eq!(app.stock("MUG-LOGO").await.reserved, 0);
    app.assert_stock_invariants().await;
}

/// Late payment after the coupon was released: refunded, never re-locked. The first order timed
/// out, a second order took the coupon, then the first order's money arrives: it is refunded and
/// the coupon stays with the second, which then spends it.
async fn a_late_payment_is_refunded_and_never_takes_the_coupon_back(app: TestApp) {
    let code = coupon(&app, definition("LATE", CouponKind::Fixed, 300, 0), None).await;
    let first = app
        .order_with_coupon("gina", &[("TEE-RED-M", 1)], Some(1), &code)
        .await;
    let first_view = app.final_view(&first).await;
    assert_eq!(first_view.status, Some(OrderStatus::Closed));
    let payment_no = first_view.payment_no.unwrap();
    let second = app
        .order_with_coupon("hank", &[("TEE-RED-M", 1)], None, &code)
        .await;
    assert_eq!(
        state(&app, &code).await,
        ("LOCKED".to_owned(), Some(second.clone()))
    );

    // The gateway took the first order's money after it closed.
    let gateway = orderflow_activities::providers::sandbox::SandboxProvider::new(
        app.db.clone(),
        &app.settings.connection.public_url,
    );
    gateway
        .pay_after_close(&orderflow_domain::PaymentNo::parse(&payment_no).unwrap())
        .await
        .unwrap();
    app.orders
        .start_late_payment_refund(&first, &payment_no, "sandbox", "evt_late_coupon")
        .await
        .unwrap();
    let refund = app
        .orders
        .client
        .get_workflow_handle::<orderflow_workflows::LatePaymentWorkflow>(
            orderflow_workflows::late_payment_workflow_id(&payment_no),
        )
        .get_result(Default::default())
        .await
        .unwrap();
    assert_eq!(refund.result, "REFUNDED");
    assert_eq!(app.view(&first).await.status, Some(OrderStatus::Closed));
    assert_eq!(
        state(&app, &code).await,
        ("LOCKED".to_owned(), Some(second.clone()))
    );
    assert_eq!(
        app.count(&format!(
            "coupon_holds WHERE order_id = '{first}' AND state = 'RELEASED'"
        ))
        .await,
        1
    );
    app.orders.pay_sandbox(&second, None, 1).await.unwrap();
    assert_eq!(
        app.final_view(&second).await.status,
        Some(OrderStatus::Paid)
    );
    assert_eq!(state(&app, &code).await, ("USED".to_owned(), Some(second)));
    app.assert_stock_invariants().await;
}

/// 50 orders for one single-use code at once: exactly one holds it, the other 49 are rejected
/// `COUPON_UNAVAILABLE` and hold no stock.
async fn fifty_orders_race_for_one_coupon(app: TestApp) {
    let code = coupon(&app, definition("RACE", CouponKind::Fixed, 100, 0), None).await;
    let ids = join_all((0..50).map(|i| {
        let (app, code) = (&app, &code);
        async move {
            app.order_with_coupon(&format!("racer-{i}"), &[("STICKER-PACK", 1)], None, code)
                .await
        }
    }))
    .await;
    let mut holders = Vec::new();
    let mut rejected = 0;
    for id in &ids {
        let view = app.view(id).await;
        match view.status {
            Some(OrderStatus::AwaitingPayment) => holders.push(id.clone()),
            Some(OrderStatus::Rejected) => {
                let reason = view.reason.unwrap_or_default();
                assert!(reason.starts_with("COUPON_UNAVAILABLE: "), "{reason}");
                rejected += 1;
            }
            other => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!((holders.len(), rejected), (1, 49));
    assert_eq!(
        state(&app, &code).await,
        ("LOCKED".to_owned(), Some(holders[0].clone()))
    );
    let stickers = app.stock("STICKER-PACK").await;
    assert_eq!((stickers.available, stickers.reserved), (499, 1));
    app.assert_stock_invariants().await;
    app.orders.pay_sandbox(&holders[0], None, 1).await.unwrap();
    assert_eq!(
        app.final_view(&holders[0]).await.status,
        Some(OrderStatus::Paid)
    );
    assert_eq!(
        state(&app, &code).await,
        ("USED".to_owned(), Some(holders[0].clone()))
    );
}

/// The operator API defines and issues coupons (operator scope only; bad input is a clear 4xx),
/// and a client's order carries a code and shows its discount.
async fn operators_manage_coupons_over_http(app: TestApp) {
    let shim = app.serve_http().await;
    let operator = bearer_client(&app.api_key("ops-coupons", &[Scope::Operator]).await);
    let url = |path: &str| format!("{}{path}", shim.base);
    let spring = json!({"id": "SPRING", "kind": "PERCENT", "amount_off": 15, "currency": "USD",
                        "min_spend_minor": 1000, "valid_from_ms": 0, "valid_until_ms": 4102444800000_i64});

    // A client key may not define coupons.
    let (status, _) = answer(shim.http.post(url("/v1/coupons")).json(&spring)).await;
    assert_eq!(status, 403);
    let (status, body) = answer(operator.post(url("/v1/coupons")).json(&spring)).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (201, Some("PERCENT")),
        "{body}"
    );
    // The same definition again is the same; other terms under its id are a conflict.
    assert_eq!(
        answer(operator.post(url("/v1/coupons")).json(&spring))
            .await
            .0,
        201
    );
    let mut other = spring.clone();
    other["amount_off"] = json!(20);
    let (status, body) = answer(operator.post(url("/v1/coupons")).json(&other)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("COUPON_CONFLICT"))
    );
    // Bad definitions: 400, never a 5xx.
    for (field, value) in [
        ("amount_off", json!(101)),
        ("amount_off", json!(0)),
        ("amount_off", json!(1.5)),
        ("kind", json!("HALF")),
        ("currency", json!("XXX")),
        ("id", json!("has space")),
        ("valid_until_ms", json!(0)),
        ("min_spend_minor", json!(-1)),
    ] {
        let mut bad = spring.clone();
        bad[field] = value.clone();
        let (status, body) = answer(operator.post(url("/v1/coupons")).json(&bad)).await;
        assert!(
            (400..500).contains(&status),
            "{field}={value}: {status} {body}"
        );
    }

    let code = unique("SPRING-");
    let (status, _) = answer(
        shim.http
            .post(url("/v1/coupons/SPRING/codes"))
            .json(&json!({"codes": [code]})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, issued) = answer(
        operator
            .post(url("/v1/coupons/SPRING/codes"))
            .json(&json!({"codes": [code]})),
    )
    .await;
    assert_eq!(
        (status, issued[0]["state"].as_str()),
        (200, Some("AVAILABLE")),
        "{issued}"
    );
    for (path, body, want) in [
        ("/v1/coupons/NOPE/codes", json!({"codes": ["X1"]}), 404),
        (
            "/v1/coupons/SPRING/codes",
            json!({"codes": ["bad code"]}),
            400,
        ),
        ("/v1/coupons/SPRING/codes", json!({"codes": []}), 400),
        (
            "/v1/coupons/SPRING/codes",
            json!({"codes": [code], "customer_id": "someone"}),
            409,
        ),
    ] {
        let (status, answer_body) = answer(operator.post(url(path)).json(&body)).await;
        assert_eq!(status, want, "{path} {body}: {answer_body}");
    }
    assert_eq!(answer(operator.get(url("/v1/coupons/NOPE"))).await.0, 404);
    assert_eq!(
        answer(shim.http.get(url("/v1/coupons/SPRING"))).await.0,
        403
    );

    // A client orders with the code: priced by the worker, shown in the answer.
    let order_body = json!({"customer_id": "ivy", "lines": [{"sku": "TEE-RED-M", "quantity": 1}],
                            "coupon_code": code});
    let (status, order) = answer(
        shim.http
            .post(url("/v1/orders"))
            .header("Idempotency-Key", unique("cpn-"))
            .json(&order_body),
    )
    .await;
    assert!(status == 201 || status == 202, "{status} {order}");
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let view = app
        .orders
        .wait_ready(&order_id, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    // 15 % of 1999 = 299.85, rounded down.
    assert_eq!(
        (view.subtotal_minor, view.discount_minor, view.amount_minor),
        (Some(1999), Some(299), Some(1700))
    );
    let (_, shown) = answer(shim.http.get(url(&format!("/v1/orders/{order_id}")))).await;
    assert_eq!(
        (
            shown["subtotal_minor"].as_i64(),
            shown["discount_minor"].as_i64(),
            shown["coupon_code"].as_str()
        ),
        (Some(1999), Some(299), Some(code.as_str())),
        "{shown}"
    );
    let (status, listed) = answer(operator.get(url("/v1/coupons/SPRING"))).await;
    assert_eq!(status, 200);
    assert_eq!(listed["codes"][0]["state"], "LOCKED", "{listed}");
    // A badly shaped code is the client's mistake: 422 before anything starts.
    let (status, _) = answer(
        shim.http
            .post(url("/v1/orders"))
            .header("Idempotency-Key", unique("cpn-"))
            .json(
                &json!({"customer_id": "ivy", "lines": [{"sku": "TEE-RED-M", "quantity": 1}],
                          "coupon_code": "no spaces allowed"}),
            ),
    )
    .await;
    assert_eq!(status, 422);
    app.orders.cancel(&order_id, "testing").await.unwrap();
    app.final_view(&order_id).await;
    assert_eq!(state(&app, &code).await, ("AVAILABLE".to_owned(), None));
}
