//! `finish_order` and `close_order`, the last steps of an order: payment, stock and final status
//! change together or not at all, and a repeat changes nothing — on SQLite and on PostgreSQL.
//!
//! The orders here are real (started through Temporal, awaiting payment with a long window); the
//! step is then called directly against their rows, as the activity would be.

use orderflow_activities::finish::{self, CloseOrder, FinishOrder, StockOutcome, finish};
use orderflow_activities::inventory;
use orderflow_activities::orders::StatusChange;
use orderflow_activities::payments::{self, PaymentRef, ReceivedPayment};
use orderflow_activities::providers::sandbox::SandboxProvider;
use orderflow_activities::providers::{CloseResult, Providers};
use orderflow_domain::{OrderId, OrderStatus, PaymentNo, ProviderName};
use orderflow_tests::{TestApp, on_every_engine};
use std::sync::Arc;

on_every_engine!(
    a_paid_finish_moves_payment_stock_and_status_once,
    a_finish_that_cannot_complete_changes_nothing,
    a_close_moves_payment_stock_and_status_once,
    a_close_that_finds_the_charge_paid_changes_nothing,
    a_repeated_close_stands_after_money_taken_since
);

/// The step as a paid order's workflow would ask for it.
fn paid_finish(order_id: &str) -> FinishOrder {
    let order = OrderId::parse(order_id).unwrap();
    FinishOrder {
        order_id: order.clone(),
        stock: StockOutcome::Confirm,
        paid: Some(ReceivedPayment {
            payment_no: PaymentNo::for_order(&order),
            paid_amount_minor: 1250,
            paid_currency: "USD".to_owned(),
            provider_txn_id: format!("txn-{order_id}"),
            source: "test".to_owned(),
        }),
        change: StatusChange {
            order_id: order_id.to_owned(),
            customer_id: "finisher".to_owned(),
            provider: "sandbox".to_owned(),
            status: OrderStatus::Paid,
            reason: None,
        },
    }
}

async fn payment_status(app: &TestApp, order_id: &str) -> String {
    payments::load_for_order(&app.db, order_id)
        .await
        .unwrap()
        .expect("payment row")
        .status
}

async fn order_status(app: &TestApp, order_id: &str) -> String {
    orderflow_activities::orders::load(&app.db, order_id)
        .await
        .unwrap()
        .expect("order row")
        .status
}

async fn a_paid_finish_moves_payment_stock_and_status_once(app: TestApp) {
    let id = app.order("finisher", &[("MUG-LOGO", 1)], Some(600)).await;
    let before = app.stock("MUG-LOGO").await;
    let req = paid_finish(&id);

    let first = finish(&app.db, &req).await.expect("finish");
    assert_eq!(first.stock.lines, 1);
    assert!(first.status_recorded);
    assert_eq!(payment_status(&app, &id).await, "PAID");
    assert_eq!(order_status(&app, &id).await, "PAID");
    let after = app.stock("MUG-LOGO").await;
    assert_eq!(after.reserved, before.reserved - 1);
    assert_eq!(after.sold, before.sold + 1);

    // A repeat (a retried activity) finds everything in place and moves nothing.
    let again = finish(&app.db, &req).await.expect("repeat");
    assert_eq!(again.stock.lines, 0);
    assert!(!again.status_recorded);
    assert_eq!(app.stock("MUG-LOGO").await, after);
    assert_eq!(
        app.count(&format!(
            "order_status_log WHERE order_id = '{id}' AND status = 'PAID'"
        ))
        .await,
        1
    );
    app.assert_stock_invariants().await;
}

async fn a_finish_that_cannot_complete_changes_nothing(app: TestApp) {
    let id = app.order("finisher", &[("MUG-LOGO", 1)], Some(600)).await;
    // The close path already gave the stock back; a payment now must not sell it again.
    inventory::release(&app.db, &OrderId::parse(id.as_str()).unwrap())
        .await
        .expect("release");
    let released = app.stock("MUG-LOGO").await;

    let err = finish(&app.db, &paid_finish(&id))
        .await
        .expect_err("confirming released stock is refused");
    assert!(err.to_string().contains("already released"), "{err}");
    // The payment was recorded first inside the transaction; it is rolled back with the rest.
    assert_eq!(payment_status(&app, &id).await, "PENDING");
    assert_eq!(order_status(&app, &id).await, "AWAITING_PAYMENT");
    assert_eq!(app.stock("MUG-LOGO").await, released);
    // The order.paid event was inserted with the status, before the stock refused: it went with
    // the rollback, and its number is free for the order's real next event.
    assert_eq!(
        app.events(&id).await,
        ["order.created", "order.awaiting_payment"]
    );
    assert_eq!(
        app.count(&format!("orders WHERE order_id = '{id}' AND event_seq = 2"))
            .await,
        1
    );
    app.assert_stock_invariants().await;
}

fn sandbox(app: &TestApp) -> SandboxProvider {
    SandboxProvider::new(app.db.clone(), &app.settings.connection.public_url)
}

/// The close step as a timed-out order's workflow would ask for it.
fn timeout_close(order_id: &str) -> CloseOrder {
    let order = OrderId::parse(order_id).unwrap();
    CloseOrder {
        order_id: order.clone(),
        payment: PaymentRef {
            payment_no: PaymentNo::for_order(&order),
            provider: ProviderName::parse("sandbox").unwrap(),
        },
        change: StatusChange {
            order_id: order_id.to_owned(),
            customer_id: "closer".to_owned(),
            provider: "sandbox".to_owned(),
            status: OrderStatus::Closed,
            reason: Some("not paid before the payment deadline".to_owned()),
        },
    }
}

async fn a_close_moves_payment_stock_and_status_once(app: TestApp) {
    let providers = Providers::default().with(Arc::new(sandbox(&app)));
    let id = app.order("closer", &[("MUG-LOGO", 2)], Some(600)).await;
    let before = app.stock("MUG-LOGO").await;
    let req = timeout_close(&id);

    let (result, done) = finish::close(&app.db, &providers, &req)
        .await
        .expect("close");
    assert_eq!(result, CloseResult::Closed);
    let done = done.expect("a closed charge records the ending");
    assert_eq!(done.stock.lines, 1);
    assert!(done.status_recorded);
    assert_eq!(payment_status(&app, &id).await, "CLOSED");
    assert_eq!(order_status(&app, &id).await, "CLOSED");
    let after = app.stock("MUG-LOGO").await;
    assert_eq!(after.reserved, before.reserved - 2);
    assert_eq!(after.available, before.available + 2);

    // A repeat: the provider answers Closed again; nothing moves a second time.
    let (again, done) = finish::close(&app.db, &providers, &req)
        .await
        .expect("repeat");
    assert_eq!(again, CloseResult::Closed);
    let done = done.expect("recorded again, as a no-op");
    assert_eq!(done.stock.lines, 0);
    assert!(!done.status_recorded);
    assert_eq!(app.stock("MUG-LOGO").await, after);
    assert_eq!(
        app.events(&id).await,
        ["order.created", "order.awaiting_payment", "order.closed"],
        "the repeat announces nothing"
    );
    assert_eq!(
        app.count(&format!(
            "payment_log WHERE payment_no = '{}' AND event = 'CLOSED'",
            req.payment.payment_no
        ))
        .await,
        1
    );
    app.assert_stock_invariants().await;
}

async fn a_close_that_finds_the_charge_paid_changes_nothing(app: TestApp) {
    let gateway = sandbox(&app);
    let id = app.order("closer", &[("MUG-LOGO", 1)], Some(600)).await;
    let req = timeout_close(&id);
    // The customer paid; the callback is lost (never delivered here).
    gateway
        .pay(&req.payment.payment_no, None)
        .await
        .expect("customer pays");
    let before = app.stock("MUG-LOGO").await;

    let providers = Providers::default().with(Arc::new(gateway));
    let (result, done) = finish::close(&app.db, &providers, &req)
        .await
        .expect("close");
    assert!(
        matches!(result, CloseResult::AlreadyPaid(ref state) if state.paid_amount_minor == Some(1250)),
        "{result:?}"
    );
    assert!(done.is_none(), "nothing recorded for a paid charge");
    // The order settles it instead: everything is still as it was.
    assert_eq!(payment_status(&app, &id).await, "PENDING");
    assert_eq!(order_status(&app, &id).await, "AWAITING_PAYMENT");
    assert_eq!(app.stock("MUG-LOGO").await, before);
    app.assert_stock_invariants().await;
}

/// The first attempt closed the charge and recorded the ending, but its completion was lost (a
/// worker died), so the step runs again — after the customer's money went through anyway
/// (`pay_after_close`, the race every gateway has). The repeat must not turn the closed order into
/// a paid one whose stock is already released: the ending stands, and the money is the late-payment
/// path's to refund.
async fn a_repeated_close_stands_after_money_taken_since(app: TestApp) {
    let gateway = sandbox(&app);
    let id = app.order("closer", &[("MUG-LOGO", 1)], Some(600)).await;
    let req = timeout_close(&id);
    let providers = Providers::default().with(Arc::new(sandbox(&app)));
    let (first, _) = finish::close(&app.db, &providers, &req)
        .await
        .expect("close");
    assert_eq!(first, CloseResult::Closed);
    let closed = app.stock("MUG-LOGO").await;
    gateway
        .pay_after_close(&req.payment.payment_no)
        .await
        .expect("the gateway takes the money after our close");

    let (again, done) = finish::close(&app.db, &providers, &req)
        .await
        .expect("repeat");
    assert_eq!(again, CloseResult::Closed);
    let done = done.expect("the ending stands");
    assert_eq!(done.stock.lines, 0);
    assert!(!done.status_recorded);
    assert_eq!(payment_status(&app, &id).await, "CLOSED");
    assert_eq!(order_status(&app, &id).await, "CLOSED");
    assert_eq!(app.stock("MUG-LOGO").await, closed);
    app.assert_stock_invariants().await;
}
