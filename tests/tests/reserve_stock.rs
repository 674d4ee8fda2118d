//! `reserve_stock`'s transaction, called directly against a real database (SQLite and
//! PostgreSQL): all lines or none, once per order however often it runs, and a SKU without stock
//! refused without holding anything. The ledger entry is written before the contended inventory
//! row is touched (see `inventory::reserve`), so these pin down that a refusal part-way through
//! the transaction still leaves nothing behind.

use orderflow_activities::inventory::{self, InventoryError, ReserveStock};
use orderflow_activities::orders::{self, CatalogItem};
use orderflow_domain::{Currency, Money, OrderInput, OrderLineInput, Sku};
use orderflow_tests::{TestApp, on_every_engine};

on_every_engine!(
    an_order_that_cannot_have_every_line_holds_none,
    reserving_twice_reserves_once,
    a_sku_without_stock_is_refused_and_holds_nothing
);

fn reservation(order_id: &str, lines: &[(&str, u32)]) -> ReserveStock {
    let order = OrderInput {
        order_id: order_id.to_owned(),
        customer_id: "reserver".to_owned(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| OrderLineInput {
                sku: (*sku).to_owned(),
                quantity: i64::from(*quantity),
            })
            .collect(),
        provider: "sandbox".to_owned(),
        payment_timeout_secs: None,
        coupon_code: None,
    }
    .validate()
    .expect("valid order");
    ReserveStock {
        order_id: order.order_id,
        lines: order.lines,
        coupon: None,
    }
}

/// (reservation rows, ledger entries) the order holds.
async fn held_by(app: &TestApp, order_id: &str) -> (i64, i64) {
    let reservations = app
        .count(&format!("stock_reservations WHERE order_id = '{order_id}'"))
        .await;
    let ledger = app
        .count(&format!("inventory_ledger WHERE order_id = '{order_id}'"))
        .await;
    (reservations, ledger)
}

async fn an_order_that_cannot_have_every_line_holds_none(app: TestApp) {
    app.set_stock("HOODIE-BLK-L", 1).await;
    let (mugs, hoodies) = (app.stock("MUG-LOGO").await, app.stock("HOODIE-BLK-L").await);

    // The first line fits; the second does not. The first line's rows were already written when
    // the second was refused.
    let req = reservation("reserve-partial", &[("MUG-LOGO", 2), ("HOODIE-BLK-L", 2)]);
    match inventory::reserve(&app.db, &req).await {
        Err(InventoryError::OutOfStock {
            sku,
            requested,
            available,
        }) => {
            assert_eq!(sku, "HOODIE-BLK-L");
            assert_eq!((requested, available), (2, 1));
        }
        other => panic!("expected OUT_OF_STOCK for the hoodie, got {other:?}"),
    }
    assert_eq!(app.stock("MUG-LOGO").await, mugs, "the mugs are not held");
    assert_eq!(app.stock("HOODIE-BLK-L").await, hoodies);
    assert_eq!(held_by(&app, "reserve-partial").await, (0, 0));
    app.assert_stock_invariants().await;
}

async fn reserving_twice_reserves_once(app: TestApp) {
    let before = app.stock("MUG-LOGO").await;
    let req = reservation("reserve-twice", &[("MUG-LOGO", 3), ("STICKER-PACK", 1)]);
    inventory::reserve(&app.db, &req).await.expect("first");
    inventory::reserve(&app.db, &req).await.expect("repeat");

    let after = app.stock("MUG-LOGO").await;
    assert_eq!(after.available, before.available - 3);
    assert_eq!(after.reserved, before.reserved + 3);
    assert_eq!(held_by(&app, "reserve-twice").await, (2, 2));
    app.assert_stock_invariants().await;
}

async fn a_sku_without_stock_is_refused_and_holds_nothing(app: TestApp) {
    // In the catalog (an order could be priced) but never stocked: no inventory row at all.
    let item = CatalogItem {
        sku: Sku::parse("PREORDER-ONLY").unwrap(),
        name: "Not stocked yet".to_owned(),
        price: Money::new(500, Currency::parse("USD").unwrap()).unwrap(),
    };
    orders::upsert_catalog_item(&app.db, &item).await.unwrap();
    let mugs = app.stock("MUG-LOGO").await;

    let req = reservation(
        "reserve-unstocked",
        &[("MUG-LOGO", 1), ("PREORDER-ONLY", 1)],
    );
    match inventory::reserve(&app.db, &req).await {
        Err(InventoryError::NotStocked(sku)) => assert_eq!(sku, "PREORDER-ONLY"),
        other => panic!("expected NOT_STOCKED, got {other:?}"),
    }
    assert_eq!(app.stock("MUG-LOGO").await, mugs);
    assert_eq!(held_by(&app, "reserve-unstocked").await, (0, 0));
    app.assert_stock_invariants().await;
}
