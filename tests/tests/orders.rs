//! Every path of OrderWorkflow, against a real Temporal dev server and a real worker, each on
//! SQLite and on PostgreSQL.

use orderflow_activities::sql;
use orderflow_client::orders::{NewOrder, OrderOpError, Refusal};
use orderflow_domain::{
    OrderId, OrderInput, OrderLineInput, OrderStatus, PaymentNo, PaymentOutcome, PaymentSignal,
    ResolveAction, ResolveRequest,
};
use orderflow_tests::{TestApp, eventually, on_every_engine};
use std::time::Duration;
use temporalio_client::{WorkflowCancelOptions, WorkflowDescribeOptions, WorkflowExecutionStatus};

on_every_engine!(
    paid,
    timed_out,
    cancelled,
    cancel_after_paid_is_rejected,
    out_of_stock_is_rejected_and_reserves_nothing,
    invalid_input_is_rejected,
    same_idempotency_key_gives_one_order,
    duplicate_payment_events_confirm_once,
    amount_mismatch_then_accept,
    amount_mismatch_then_refund,
    lost_callback_is_found_by_the_timeout_query,
    cancelled_from_temporal_compensates,
);

async fn paid(app: TestApp) {
    let id = app
        .order("alice", &[("TEE-RED-M", 2), ("MUG-LOGO", 1)], None)
        .await;
    let waiting = app.view(&id).await;
    assert_eq!(waiting.status, Some(OrderStatus::AwaitingPayment));
    assert_eq!(waiting.amount_minor, Some(2 * 1999 + 1250));
    assert_eq!(waiting.currency.as_deref(), Some("USD"));
    // Both lines recorded with their prices (one statement on PostgreSQL, three on SQLite).
    let lines: Vec<(String, i64, i64)> = sql!(
        "SELECT sku, quantity, line_total_minor FROM order_lines WHERE order_id = $1 ORDER BY sku",
    )
    .on(app.db.pool())
    .bind(&id)
    .fetch_all_as(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        lines,
        [
            ("MUG-LOGO".to_owned(), 1, 1250),
            ("TEE-RED-M".to_owned(), 2, 2 * 1999)
        ]
    );
    assert_eq!(
        app.count(&format!(
            "order_status_log WHERE order_id = '{id}' AND status = 'PENDING'"
        ))
        .await,
        1
    );
    assert!(
        waiting
            .checkout_url
            .as_deref()
            .unwrap()
            .contains("/sandbox/checkout/pay_")
    );
    assert_eq!(app.stock("TEE-RED-M").await.reserved, 2);

    app.orders.pay_sandbox(&id, None, 1).await.unwrap();
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Paid));
    let tee = app.stock("TEE-RED-M").await;
    assert_eq!((tee.available, tee.reserved, tee.sold), (98, 0, 2));
    assert_eq!(
        app.count(&format!(
            "payments WHERE order_id = '{id}' AND status = 'PAID'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!("order_status_log WHERE order_id = '{id}'"))
            .await,
        3,
        "PENDING, AWAITING_PAYMENT, PAID"
    );
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "paid").await;
    assert_eq!(
        app.events(&id).await,
        ["order.created", "order.awaiting_payment", "order.paid"]
    );
}

async fn timed_out(app: TestApp) {
    let id = app.order("bob", &[("FLASH-DEAL", 3)], Some(2)).await;
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Closed));
    assert_eq!(
        done.reason.as_deref(),
        Some("not paid before the payment deadline")
    );
    let stock = app.stock("FLASH-DEAL").await;
    assert_eq!((stock.available, stock.reserved, stock.sold), (10, 0, 0));
    assert_eq!(
        app.count(&format!(
            "sandbox_charges WHERE payment_no = '{}' AND status = 'CLOSED'",
            done.payment_no.unwrap()
        ))
        .await,
        1,
        "the charge is closed at the provider"
    );
    // The timer is set to end at the stored deadline counted from the opening step's own end (the
    // server starts it just after), not from its task's start, which would fire it that whole
    // task late; and it cannot fire before the deadline.
    let timer = app.deadline_timer(&id).await;
    let deadline = done.payment_deadline_ms.expect("the payment deadline");
    let opened_at = timer
        .opened_at_ms
        .expect("open_order reports when it ended");
    assert_eq!(timer.duration_ms, deadline - opened_at, "{timer:?}");
    assert!(
        timer.started_at_ms + timer.duration_ms >= deadline,
        "the deadline timer fires before the deadline: {timer:?}, deadline {deadline}"
    );
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "timed_out").await;
    assert_eq!(
        app.events(&id).await,
        ["order.created", "order.awaiting_payment", "order.closed"]
    );
}

async fn cancelled(app: TestApp) {
    let id = app.order("carol", &[("HOODIE-BLK-L", 2)], None).await;
    let accepted = app.orders.cancel(&id, "changed my mind").await.unwrap();
    assert_eq!(accepted.status, Some(OrderStatus::AwaitingPayment));
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Cancelled));
    assert_eq!(done.reason.as_deref(), Some("changed my mind"));
    assert_eq!(app.stock("HOODIE-BLK-L").await.available, 20);
    // A second cancel is refused with a reason, not an error about Temporal.
    match app.orders.cancel(&id, "again").await {
        Err(OrderOpError::Refused {
            refusal: Refusal::Finished,
            message,
        }) => assert!(message.contains("CANCELLED"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "cancelled").await;
    assert_eq!(
        app.events(&id).await,
        ["order.created", "order.awaiting_payment", "order.cancelled"]
    );
}

async fn cancel_after_paid_is_rejected(app: TestApp) {
    let id = app.order("dan", &[("MUG-LOGO", 1)], None).await;
    app.orders.pay_sandbox(&id, None, 1).await.unwrap();
    app.wait_status(&id, OrderStatus::Paid).await;
    match app.orders.cancel(&id, "too late").await {
        Err(OrderOpError::Refused {
            refusal: Refusal::Finished,
            message,
        }) => assert!(message.contains("PAID"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Paid));
    assert_eq!(app.stock("MUG-LOGO").await.sold, 1);
}

async fn out_of_stock_is_rejected_and_reserves_nothing(app: TestApp) {
    // Two lines: the first could be reserved, the second cannot — all or none.
    let id = app
        .order("eve", &[("FLASH-DEAL", 5), ("HOODIE-BLK-L", 21)], None)
        .await;
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Rejected));
    assert!(
        done.reason.as_deref().unwrap().starts_with("OUT_OF_STOCK"),
        "{done:?}"
    );
    assert_eq!(app.stock("FLASH-DEAL").await.available, 10);
    assert_eq!(app.stock("HOODIE-BLK-L").await.available, 20);
    assert_eq!(
        app.count(&format!("stock_reservations WHERE order_id = '{id}'"))
            .await,
        0
    );
    assert_eq!(
        app.count(&format!("payments WHERE order_id = '{id}'"))
            .await,
        0
    );
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "out_of_stock").await;
    assert_eq!(
        app.events(&id).await,
        ["order.created", "order.rejected"],
        "no order.awaiting_payment: nothing was reserved"
    );
}

async fn invalid_input_is_rejected(app: TestApp) {
    let cases: Vec<(&str, Vec<OrderLineInput>, &str, &str)> = vec![
        ("empty-cart", vec![], "sandbox", "no lines"),
        (
            "zero-qty",
            vec![line("MUG-LOGO", 0)],
            "sandbox",
            "at least 1",
        ),
        (
            "negative-qty",
            vec![line("MUG-LOGO", -2)],
            "sandbox",
            "at least 1",
        ),
        (
            "huge-qty",
            vec![line("MUG-LOGO", i64::MAX)],
            "sandbox",
            "per-line limit",
        ),
        ("bad-sku", vec![line("mug", 1)], "sandbox", "SKU"),
        (
            "unknown-sku",
            vec![line("NO-SUCH-SKU", 1)],
            "sandbox",
            "UNKNOWN_SKU",
        ),
        (
            "unknown-provider",
            vec![line("MUG-LOGO", 1)],
            "paypal",
            "UNKNOWN_PROVIDER",
        ),
    ];
    for (suffix, lines, provider, expect) in cases {
        let order_id = format!("invalid-{suffix}-{}", app.settings.connection.task_queue);
        let input = OrderInput {
            order_id: order_id.clone(),
            customer_id: "mallory".into(),
            lines,
            provider: provider.into(),
            payment_timeout_secs: None,
            coupon_code: None,
        };
        assert!(app.orders.start_input(input).await.unwrap());
        let outcome = app.orders.outcome(&order_id).await.unwrap();
        assert_eq!(outcome.status, OrderStatus::Rejected, "{suffix}");
        let reason = outcome.reason.unwrap_or_default();
        assert!(reason.contains(expect), "{suffix}: {reason}");
        if suffix == "empty-cart" {
            app.maybe_record_history(&order_id, "rejected_invalid")
                .await;
        }
        let stored = orderflow_activities::orders::load(&app.db, &order_id)
            .await
            .unwrap()
            .expect("a rejected order is on record");
        assert_eq!(stored.status, "REJECTED");
        assert_eq!(app.events(&order_id).await, ["order.rejected"], "{suffix}");
    }
    assert_eq!(app.count("stock_reservations").await, 0);
    app.assert_stock_invariants().await;
}

async fn same_idempotency_key_gives_one_order(app: TestApp) {
    let request = NewOrder {
        client: orderflow_client::orders::cli_client(),
        idempotency_key: format!("checkout-42-{}", app.settings.connection.task_queue),
        customer_id: "frank".into(),
        lines: vec![("STICKER-PACK".into(), 3)],
        provider: "sandbox".into(),
        payment_timeout_secs: None,
        coupon_code: None,
    };
    let (first, started_first) = app.orders.start(&request).await.unwrap();
    let (second, started_second) = app.orders.start(&request).await.unwrap();
    assert_eq!(first, second);
    assert!(started_first);
    assert!(!started_second);
    app.orders
        .wait_ready(first.as_str(), Duration::from_secs(60))
        .await
        .unwrap();
    // Still one order after it has finished: a closed workflow id is never reused.
    app.orders
        .pay_sandbox(first.as_str(), None, 1)
        .await
        .unwrap();
    app.final_view(first.as_str()).await;
    let (third, started_third) = app.orders.start(&request).await.unwrap();
    assert_eq!(third, first);
    assert!(!started_third);
    assert_eq!(app.count("orders").await, 1);
    assert_eq!(app.count("payments").await, 1);
    assert_eq!(app.stock("STICKER-PACK").await.sold, 3);
}

async fn duplicate_payment_events_confirm_once(app: TestApp) {
    let id = app.order("grace", &[("TEE-RED-M", 1)], None).await;
    app.orders.pay_sandbox(&id, None, 3).await.unwrap();
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Paid));
    assert_eq!(done.payment_events.len(), 1, "{done:?}");
    let payment_no = done.payment_no.unwrap();
    assert_eq!(
        app.count(&format!(
            "payment_log WHERE payment_no = '{payment_no}' AND event = 'PAID'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "inventory_ledger WHERE order_id = '{id}' AND event = 'CONFIRM'"
        ))
        .await,
        1
    );
    assert_eq!(app.stock("TEE-RED-M").await.sold, 1);
    // Paying again at the gateway charges nothing new.
    let again = app.orders.pay_sandbox(&id, None, 0).await.unwrap();
    assert!(!again.newly_paid);
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "duplicate_payments").await;
}

async fn amount_mismatch_then_accept(app: TestApp) {
    let id = app.order("heidi", &[("HOODIE-BLK-L", 1)], None).await;
    app.orders.pay_sandbox(&id, Some(4800), 1).await.unwrap();
    let review = app.wait_status(&id, OrderStatus::NeedsReview).await;
    assert!(
        review.reason.as_deref().unwrap().contains("48.00 USD"),
        "{review:?}"
    );
    assert_eq!(
        app.stock("HOODIE-BLK-L").await.reserved,
        1,
        "stock stays reserved"
    );
    // Only NEEDS_REVIEW orders can be cancelled? No: a cancel is refused here.
    assert!(matches!(
        app.orders.cancel(&id, "no").await,
        Err(OrderOpError::Refused {
            refusal: Refusal::WrongState,
            ..
        })
    ));
    app.orders
        .resolve(
            &id,
            ResolveRequest {
                action: ResolveAction::Accept,
                operator: "ops-1".into(),
                note: "customer used a coupon".into(),
            },
        )
        .await
        .unwrap();
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Paid));
    assert_eq!(app.stock("HOODIE-BLK-L").await.sold, 1);
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "mismatch_accept").await;
    assert_eq!(
        app.events(&id).await,
        [
            "order.created",
            "order.awaiting_payment",
            "order.needs_review",
            "order.paid"
        ]
    );
}

async fn amount_mismatch_then_refund(app: TestApp) {
    let id = app.order("ivan", &[("HOODIE-BLK-L", 1)], None).await;
    app.orders.pay_sandbox(&id, Some(100), 1).await.unwrap();
    app.wait_status(&id, OrderStatus::NeedsReview).await;
    app.orders
        .resolve(
            &id,
            ResolveRequest {
                action: ResolveAction::Refund,
                operator: "ops-2".into(),
                note: "wrong amount".into(),
            },
        )
        .await
        .unwrap();
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Refunded));
    let stock = app.stock("HOODIE-BLK-L").await;
    assert_eq!((stock.available, stock.reserved, stock.sold), (20, 0, 0));
    let payment_no = done.payment_no.unwrap();
    assert_eq!(
        app.count(&format!(
            "sandbox_charges WHERE payment_no = '{payment_no}' AND status = 'REFUNDED'"
        ))
        .await,
        1
    );
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "mismatch_refund").await;
    assert_eq!(
        app.events(&id).await,
        [
            "order.created",
            "order.awaiting_payment",
            "order.needs_review",
            "refund.completed",
            "order.refunded"
        ]
    );
}

async fn lost_callback_is_found_by_the_timeout_query(app: TestApp) {
    let id = app.order("judy", &[("STICKER-PACK", 2)], Some(2)).await;
    // The customer pays; the provider's callback never arrives.
    app.orders.pay_sandbox(&id, None, 0).await.unwrap();
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Paid), "{done:?}");
    assert!(done.payment_events.is_empty());
    assert_eq!(app.stock("STICKER-PACK").await.sold, 2);
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "lost_callback").await;
    assert_eq!(
        app.events(&id).await,
        ["order.created", "order.awaiting_payment", "order.paid"]
    );
}

async fn cancelled_from_temporal_compensates(app: TestApp) {
    let id = app.order("ken", &[("MUG-LOGO", 4)], None).await;
    assert_eq!(app.stock("MUG-LOGO").await.reserved, 4);
    app.orders
        .handle(&id)
        .cancel(
            WorkflowCancelOptions::builder()
                .reason("operator".to_owned())
                .build(),
        )
        .await
        .unwrap();
    let done = app.final_view(&id).await;
    assert_eq!(done.status, Some(OrderStatus::Cancelled));
    assert_eq!(app.stock("MUG-LOGO").await.available, 50);
    let payment_no = PaymentNo::for_order(&OrderId::parse(id.as_str()).unwrap());
    assert_eq!(
        app.count(&format!(
            "sandbox_charges WHERE payment_no = '{payment_no}' AND status = 'CLOSED'"
        ))
        .await,
        1
    );
    // The execution itself ends Canceled, as the operator who cancelled it expects.
    eventually(Duration::from_secs(30), || async {
        let described = app
            .orders
            .handle(&id)
            .describe(WorkflowDescribeOptions::default())
            .await
            .unwrap();
        match described.status() {
            WorkflowExecutionStatus::Canceled => Ok(()),
            other => Err(other),
        }
    })
    .await
    .unwrap_or_else(|status| panic!("status {status:?}"));
    app.assert_stock_invariants().await;
    app.maybe_record_history(&id, "workflow_cancelled").await;
    assert_eq!(
        app.events(&id).await,
        ["order.created", "order.awaiting_payment", "order.cancelled"]
    );
}

fn line(sku: &str, quantity: i64) -> OrderLineInput {
    OrderLineInput {
        sku: sku.into(),
        quantity,
    }
}

/// The workflow's contract is plain JSON: the `temporal` CLI (a client that knows nothing of our
/// Rust types) can start, query, signal and update orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_temporal_cli_can_drive_an_order() {
    let app = TestApp::spawn(orderflow_tests::Engine::Sqlite)
        .await
        .unwrap();
    let cli = |args: &[&str]| -> String {
        let out = std::process::Command::new(orderflow_tests::temporal_bin())
            .args(args)
            .args(["--address", &orderflow_tests::temporal_address()])
            .output()
            .expect("run the temporal CLI");
        assert!(
            out.status.success(),
            "temporal {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tq = app.settings.connection.task_queue.clone();
    let start = |order_id: &str| {
        let input = serde_json::json!({
            "order_id": order_id,
            "customer_id": "cli-user",
            "lines": [{"sku": "MUG-LOGO", "quantity": 2}],
            "provider": "sandbox"
        })
        .to_string();
        cli(&[
            "workflow",
            "start",
            "--task-queue",
            &tq,
            "--type",
            "OrderWorkflow",
            "--workflow-id",
            &format!("order-{order_id}"),
            "--input",
            &input,
        ]);
    };

    let paid = format!("cli-paid-{tq}");
    start(&paid);
    app.orders
        .wait_ready(&paid, Duration::from_secs(60))
        .await
        .unwrap();
    let status = cli(&[
        "workflow",
        "query",
        "--workflow-id",
        &format!("order-{paid}"),
        "--name",
        "status",
        "-o",
        "json",
    ]);
    assert!(status.contains("AWAITING_PAYMENT"), "{status}");
    assert!(
        status.contains("\"amount_minor\": 2500") || status.contains("\"amount_minor\":2500"),
        "{status}"
    );
    // The customer pays at the sandbox; the callback arrives through the CLI.
    let charge = app.orders.pay_sandbox(&paid, None, 0).await.unwrap();
    let signal = serde_json::json!({
        "event_id": charge.event_id,
        "provider": "sandbox",
        "payment_no": charge.payment_no.to_string(),
        "outcome": "PAID",
        "amount_minor": charge.paid_amount_minor,
        "currency": charge.currency,
        "provider_txn_id": charge.txn_id
    })
    .to_string();
    cli(&[
        "workflow",
        "signal",
        "--workflow-id",
        &format!("order-{paid}"),
        "--name",
        "payment",
        "--input",
        &signal,
    ]);
    assert_eq!(app.final_view(&paid).await.status, Some(OrderStatus::Paid));

    let cancelled = format!("cli-cancel-{tq}");
    start(&cancelled);
    app.orders
        .wait_ready(&cancelled, Duration::from_secs(60))
        .await
        .unwrap();
    cli(&[
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        &format!("order-{cancelled}"),
        "--name",
        "cancel",
        "--input",
        r#"{"reason":"cancelled from the CLI"}"#,
    ]);
    let done = app.final_view(&cancelled).await;
    assert_eq!(done.status, Some(OrderStatus::Cancelled));
    assert_eq!(done.reason.as_deref(), Some("cancelled from the CLI"));
    app.assert_stock_invariants().await;
}

/// `orderflow orders stuck` finds an order whose deadline passed while no worker was there to
/// close it, and not an order that is still within its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_orders_are_found_through_visibility() {
    use orderflow_client::orders::{status_query, stuck_query};
    let mut app = TestApp::spawn(orderflow_tests::Engine::Sqlite)
        .await
        .unwrap();
    let waiting = app.order("patient", &[("MUG-LOGO", 1)], Some(3600)).await;
    let stuck = app.order("stranded", &[("MUG-LOGO", 1)], Some(1)).await;
    app.stop_worker();
    let found = eventually(Duration::from_secs(30), || async {
        let query = stuck_query(None, Duration::from_secs(600), std::time::SystemTime::now());
        let found = app.orders.list(&query, 50).await.unwrap();
        if found.iter().any(|o| o.order_id == stuck) {
            Ok(found)
        } else {
            Err(found)
        }
    })
    .await
    .unwrap_or_else(|found| panic!("stuck order not listed: {found:?}"));
    let ids: Vec<&str> = found.iter().map(|o| o.order_id.as_str()).collect();
    assert!(!ids.contains(&waiting.as_str()), "{ids:?}");
    let row = found.iter().find(|o| o.order_id == stuck).unwrap();
    assert_eq!(row.status.as_deref(), Some("AWAITING_PAYMENT"));
    assert_eq!(row.customer_id.as_deref(), Some("stranded"));
    assert_eq!(row.provider.as_deref(), Some("sandbox"));
    assert_eq!(row.amount_minor, Some(1250));
    assert!(row.payment_deadline_ms.is_some());
    let all = app
        .orders
        .list(&status_query(OrderStatus::AwaitingPayment), 50)
        .await
        .unwrap();
    let mine: Vec<_> = all
        .iter()
        .filter(|o| o.order_id == waiting || o.order_id == stuck)
        .collect();
    assert_eq!(mine.len(), 2, "{all:?}");
}

/// A step that keeps failing is retried, not failed, and `pending_steps` (what
/// `orderflow order status` prints) says which step and why; once the cause is gone the order
/// completes. The outage here: the table the paid order's last step (`finish_order`: payment,
/// stock and status in one transaction) writes its payment log to is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_step_is_explained_and_recovers() {
    let app = TestApp::spawn(orderflow_tests::Engine::Sqlite)
        .await
        .unwrap();
    let id = app.order("olga", &[("MUG-LOGO", 1)], None).await;
    sqlx::query("ALTER TABLE payment_log RENAME TO payment_log_away")
        .execute(app.db.pool())
        .await
        .unwrap();
    let payment_no = PaymentNo::for_order(&OrderId::parse(id.as_str()).unwrap());
    let gateway = orderflow_activities::providers::sandbox::SandboxProvider::new(
        app.db.clone(),
        &app.settings.connection.public_url,
    );
    let paid = gateway.pay(&payment_no, None).await.unwrap();
    app.orders
        .signal_payment(
            &id,
            PaymentSignal {
                event_id: paid.event_id,
                provider: "sandbox".into(),
                payment_no: payment_no.to_string(),
                outcome: PaymentOutcome::Paid,
                amount_minor: paid.paid_amount_minor,
                currency: paid.currency,
                provider_txn_id: paid.txn_id,
            },
        )
        .await
        .unwrap();
    let step = eventually(Duration::from_secs(60), || async {
        let pending = app.orders.pending_steps(&id).await.unwrap();
        pending
            .iter()
            .find(|s| s.attempt >= 2)
            .cloned()
            .ok_or(pending)
    })
    .await
    .unwrap_or_else(|pending| panic!("no retrying step seen: {pending:?}"));
    assert_eq!(step.activity, "finish_order");
    assert!(
        step.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("payment_log"),
        "{step:?}"
    );
    let view = app.view(&id).await;
    assert_eq!(view.status, Some(OrderStatus::AwaitingPayment));
    assert!(view.waiting_for.unwrap().contains("confirming"));
    assert!(view.waiting_since_ms.is_some());
    sqlx::query("ALTER TABLE payment_log_away RENAME TO payment_log")
        .execute(app.db.pool())
        .await
        .unwrap();
    assert_eq!(app.final_view(&id).await.status, Some(OrderStatus::Paid));
    // The view turns PAID as soon as the status is written; wait for the workflow itself to
    // finish before asking for its pending steps, or the last activity's completion may race us.
    let outcome = app.orders.outcome(&id).await.unwrap();
    assert_eq!(outcome.status, OrderStatus::Paid);
    assert!(
        app.orders
            .pending_steps(&id)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    app.assert_stock_invariants().await;
}
