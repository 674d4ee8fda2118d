//! Stock decided at the edge (`ORDERFLOW_RESERVE_AT_EDGE`, activities/src/edge.rs), against a real
//! Temporal server and a real database (SQLite and PostgreSQL): a flash sale sells exactly its
//! stock, losers are answered without a workflow, a reservation whose start was lost is started
//! by the relay, and a reserved order that is never paid releases what the edge reserved.

use orderflow_activities::sql;
use orderflow_client::orders::{EdgePlaced, order_id_for_key};
use orderflow_client::outbox;
use orderflow_domain::{OrderInput, OrderLineInput, OrderStatus};
use orderflow_tests::{TestApp, on_every_engine, unique};
use serde_json::{Value, json};

on_every_engine!(
    a_flash_sale_at_the_edge_sells_exactly_its_stock,
    a_reservation_whose_start_was_lost_is_started_by_the_relay,
    the_http_api_answers_a_sold_out_order_without_a_workflow
);

fn input(customer: &str, sku: &str, quantity: i64, timeout_secs: Option<u64>) -> OrderInput {
    OrderInput {
        order_id: order_id_for_key(
            &orderflow_client::orders::cli_client(),
            &unique(&format!("edge-{customer}-")),
        )
        .to_string(),
        customer_id: customer.to_owned(),
        lines: vec![OrderLineInput {
            sku: sku.to_owned(),
            quantity,
        }],
        provider: "sandbox".to_owned(),
        payment_timeout_secs: timeout_secs,
        coupon_code: None,
    }
}

async fn has_workflow(app: &TestApp, order_id: &str) -> bool {
    app.orders
        .handle(order_id)
        .describe(Default::default())
        .await
        .is_ok()
}

async fn status_row(app: &TestApp, order_id: &str) -> (String, Option<String>) {
    let (status, reason): (String, Option<sql::Text>) =
        sql!("SELECT status, reason FROM orders WHERE order_id = $1")
            .on(&app.db)
            .bind(order_id)
            .fetch_one_as(app.db.pool())
            .await
            .expect("the order is recorded");
    (status, reason.map(String::from))
}

async fn a_flash_sale_at_the_edge_sells_exactly_its_stock(app: TestApp) {
    app.set_stock("HOODIE-BLK-L", 3).await;
    // Eight buyers at once; the relay is not running, so nothing is started yet.
    let buyers: Vec<OrderInput> = (0..8)
        .map(|i| input(&format!("buyer-{i}"), "HOODIE-BLK-L", 1, None))
        .collect();
    let placed = futures::future::join_all(
        buyers
            .iter()
            .map(|b| app.orders.place_at_edge(b.clone(), false)),
    )
    .await;
    let mut winners = Vec::new();
    for (buyer, placed) in buyers.iter().zip(placed) {
        match placed.expect("placed") {
            EdgePlaced::Reserved => winners.push(buyer.clone()),
            EdgePlaced::Refused { reason } => {
                assert!(reason.starts_with("OUT_OF_STOCK: "), "{reason}");
                let (status, stored_reason) = status_row(&app, &buyer.order_id).await;
                assert_eq!(status, "REJECTED");
                assert_eq!(stored_reason.as_deref(), Some(reason.as_str()));
                assert!(
                    !has_workflow(&app, &buyer.order_id).await,
                    "a loser costs no workflow"
                );
                assert_eq!(app.events(&buyer.order_id).await, ["order.rejected"]);
            }
            other => panic!("a first placement is reserved or refused, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 3, "exactly the stock is reserved");
    let stock = app.stock("HOODIE-BLK-L").await;
    assert_eq!((stock.available, stock.reserved), (0, 3));
    app.assert_stock_invariants().await;

    // The relay starts the three winners' workflows, once.
    assert_eq!(outbox::relay_once(&app.orders).await.expect("relay"), 3);
    assert_eq!(outbox::relay_once(&app.orders).await.expect("relay"), 0);
    for winner in &winners {
        app.wait_status(&winner.order_id, OrderStatus::AwaitingPayment)
            .await;
        app.orders
            .pay_sandbox(&winner.order_id, None, 1)
            .await
            .expect("pay");
        assert_eq!(
            app.final_view(&winner.order_id).await.status,
            Some(OrderStatus::Paid)
        );
        assert_eq!(
            app.events(&winner.order_id).await,
            ["order.created", "order.awaiting_payment", "order.paid"]
        );
    }
    let stock = app.stock("HOODIE-BLK-L").await;
    assert_eq!((stock.available, stock.reserved, stock.sold), (0, 0, 3));
    app.assert_stock_invariants().await;

    // A refused buyer who tries again with the same order stays refused, even with stock back.
    app.set_stock("HOODIE-BLK-L", 10).await;
    let loser = buyers
        .iter()
        .find(|b| !winners.contains(b))
        .expect("a loser");
    assert_eq!(
        app.orders.place_at_edge(loser.clone(), true).await.unwrap(),
        EdgePlaced::Decided
    );
    assert!(!has_workflow(&app, &loser.order_id).await);
    assert_eq!(app.stock("HOODIE-BLK-L").await.reserved, 0);
}

async fn a_reservation_whose_start_was_lost_is_started_by_the_relay(app: TestApp) {
    let before = app.stock("MUG-LOGO").await;
    // Reserved and committed, then "the process died" before starting the workflow.
    let order = input("lost-start", "MUG-LOGO", 2, Some(2));
    assert_eq!(
        app.orders
            .place_at_edge(order.clone(), false)
            .await
            .unwrap(),
        EdgePlaced::Reserved
    );
    assert!(!has_workflow(&app, &order.order_id).await);
    assert_eq!(app.stock("MUG-LOGO").await.reserved, before.reserved + 2);

    // The customer repeats the request: nothing is reserved twice, and it is started now.
    assert_eq!(
        app.orders.place_at_edge(order.clone(), true).await.unwrap(),
        EdgePlaced::Started
    );
    let held = app
        .count(&format!(
            "stock_reservations WHERE order_id = '{}'",
            order.order_id
        ))
        .await;
    assert_eq!(held, 1);
    assert_eq!(app.stock("MUG-LOGO").await.reserved, before.reserved + 2);
    // The note is marked: the relay has nothing to do.
    assert_eq!(outbox::relay_once(&app.orders).await.expect("relay"), 0);

    // And a start lost without a repeat: the relay picks it up.
    let other = input("lost-start-2", "MUG-LOGO", 1, Some(2));
    app.orders
        .place_at_edge(other.clone(), false)
        .await
        .unwrap();
    assert_eq!(outbox::relay_once(&app.orders).await.expect("relay"), 1);
    assert!(has_workflow(&app, &other.order_id).await);

    // Nobody pays: the workflows release what the edge reserved.
    for id in [&order.order_id, &other.order_id] {
        assert_eq!(app.final_view(id).await.status, Some(OrderStatus::Closed));
    }
    let after = app.stock("MUG-LOGO").await;
    assert_eq!(
        (after.available, after.reserved, after.sold),
        (before.available, before.reserved, before.sold)
    );
    app.assert_stock_invariants().await;
}

async fn the_http_api_answers_a_sold_out_order_without_a_workflow(app: TestApp) {
    app.set_stock("HOODIE-BLK-L", 1).await;
    let mut settings = app.shim_settings();
    settings.reserve_at_edge = true;
    let state = orderflow_http::AppState::new(app.orders.clone(), settings).expect("app state");
    let shim = app.serve_http_with(state).await;
    let (base, http) = (shim.base, shim.http);
    // Keys unique to this run: the order id (and so the workflow id) is derived from the key,
    // and every test shares one Temporal namespace.
    let (key_1, key_2) = (unique("edge-http-1-"), unique("edge-http-2-"));
    let post = |key: &str| {
        http.post(format!("{base}/v1/orders"))
            .header("Idempotency-Key", key.to_owned())
            .json(&json!({"customer_id": "edge-http", "provider": "sandbox",
                          "lines": [{"sku": "HOODIE-BLK-L", "quantity": 1}]}))
            .send()
    };

    let first = post(&key_1).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "AWAITING_PAYMENT", "{first}");

    let second = post(&key_2).await.unwrap();
    assert_eq!(
        second.status(),
        201,
        "refused orders are created, as REJECTED"
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["status"], "REJECTED", "{second}");
    assert!(
        second["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("OUT_OF_STOCK")),
        "{second}"
    );
    let refused_id = second["order_id"].as_str().unwrap();
    assert!(!has_workflow(&app, refused_id).await);

    // The same request again: the same answer.
    let again = post(&key_2).await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "REJECTED");
    assert_eq!(again["order_id"], second["order_id"]);
    assert!(
        !has_workflow(&app, refused_id).await,
        "a repeat starts nothing"
    );
    app.assert_stock_invariants().await;
}
