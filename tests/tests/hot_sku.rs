//! A flash sale: 200 orders race for one SKU with 50 in stock. Exactly 50 are paid, the other 150
//! are rejected (out of stock) or closed, and the stock invariant holds at the end — on SQLite and
//! on PostgreSQL.

use futures::future::join_all;
use orderflow_client::orders::NewOrder;
use orderflow_domain::OrderStatus;
use orderflow_tests::{TestApp, on_every_engine};
use std::collections::BTreeMap;
use std::time::Duration;

const ORDERS: usize = 200;
const STOCK: i64 = 50;

on_every_engine!(two_hundred_orders_for_fifty_units);

async fn two_hundred_orders_for_fifty_units(app: TestApp) {
    app.set_stock("FLASH-DEAL", STOCK).await;
    let starts = (0..ORDERS).map(|i| {
        let orders = app.orders.clone();
        let key = format!("flash-{i}-{}", app.settings.connection.task_queue);
        async move {
            let (id, _) = orders
                .start(&NewOrder {
                    client: orderflow_client::orders::cli_client(),
                    idempotency_key: key,
                    customer_id: format!("buyer-{i}"),
                    lines: vec![("FLASH-DEAL".into(), 1)],
                    provider: "sandbox".into(),
                    // Long enough that no order times out before it is paid.
                    payment_timeout_secs: Some(600),
                    coupon_code: None,
                })
                .await
                .expect("start");
            id.to_string()
        }
    });
    let ids: Vec<String> = join_all(starts).await;

    // Every order that got stock is paid, as soon as it is awaiting payment.
    let settle = ids.iter().map(|id| {
        let orders = app.orders.clone();
        async move {
            let view = orders
                .wait_ready(id, Duration::from_secs(180))
                .await
                .expect("order leaves PENDING");
            if view.status == Some(OrderStatus::AwaitingPayment) {
                orders.pay_sandbox(id, None, 1).await.expect("pay");
            }
            orders
                .wait_final(id, Duration::from_secs(180))
                .await
                .expect("final")
                .status
                .expect("status")
        }
    });
    let finals: Vec<OrderStatus> = join_all(settle).await;

    let mut counts: BTreeMap<OrderStatus, usize> = BTreeMap::new();
    for status in &finals {
        *counts.entry(*status).or_default() += 1;
    }
    assert_eq!(
        counts.get(&OrderStatus::Paid),
        Some(&(STOCK as usize)),
        "{counts:?}"
    );
    let others = counts.get(&OrderStatus::Rejected).unwrap_or(&0)
        + counts.get(&OrderStatus::Closed).unwrap_or(&0);
    assert_eq!(others, ORDERS - STOCK as usize, "{counts:?}");

    let stock = app.stock("FLASH-DEAL").await;
    assert_eq!(
        (stock.total, stock.available, stock.reserved, stock.sold),
        (STOCK, 0, 0, STOCK)
    );
    app.assert_stock_invariants().await;
    assert_eq!(
        app.count("sandbox_charges WHERE status = 'PAID'").await,
        STOCK,
        "one kept charge per paid order"
    );
}
