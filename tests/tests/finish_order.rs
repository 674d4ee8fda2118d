//! `finish_order`, the last step of a lean order: payment, stock and final status change together
//! or not at all, and a repeat changes nothing — on SQLite and on PostgreSQL.
//!
//! The orders here are real (started through Temporal, awaiting payment with a long window); the
//! step is then called directly against their rows, as the activity would be.

use orderflow_activities::finish::{FinishOrder, StockOutcome, finish};
use orderflow_activities::inventory;
use orderflow_activities::orders::StatusChange;
use orderflow_activities::payments::{self, ReceivedPayment};
use orderflow_domain::{OrderId, OrderStatus, PaymentNo};
use orderflow_tests::{TestApp, on_both_engines};

on_both_engines!(
    a_paid_finish_moves_payment_stock_and_status_once,
    a_finish_that_cannot_complete_changes_nothing
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
    app.assert_stock_invariants().await;
}
