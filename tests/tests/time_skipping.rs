//! The default 15-minute payment window, for real, on Temporal's time-skipping test server: the
//! order is created without a timeout of its own, nobody pays, and the durable timer closes it
//! after 15 minutes of workflow time (a few seconds of wall time).
//!
//! The test server has no custom search attributes, so this worker runs with the upserts off.

use orderflow_domain::OrderStatus;
use orderflow_tests::{Engine, TestApp, free_port, spawn_watched, test_server_bin, wait_for_port};
use std::time::Duration;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::protos::temporal::api::testservice::v1::{
    LockTimeSkippingRequest, UnlockTimeSkippingRequest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_fifteen_minute_timer_closes_an_unpaid_order() {
    let port = free_port();
    spawn_watched(&test_server_bin(), &[port.to_string()]).expect("start the test server");
    wait_for_port(port, Duration::from_secs(60)).expect("test server is up");
    let app = TestApp::spawn_on(Engine::Sqlite, &format!("127.0.0.1:{port}"), |s| {
        s.search_attributes = false;
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        app.settings.payment_timeout_secs,
        15 * 60,
        "the worker default"
    );

    let id = app.order("zoe", &[("MUG-LOGO", 2)], None).await;
    let waiting = app.view(&id).await;
    assert_eq!(waiting.status, Some(OrderStatus::AwaitingPayment));
    assert_eq!(app.stock("MUG-LOGO").await.reserved, 2);

    // The server starts with time skipping locked; let it skip while we wait for the result.
    let mut test_service = app.orders.client.connection().test_service();
    test_service
        .unlock_time_skipping(tonic_request(UnlockTimeSkippingRequest::default()))
        .await
        .expect("unlock time skipping");
    let outcome = app.orders.outcome(&id).await.unwrap();
    test_service
        .lock_time_skipping(tonic_request(LockTimeSkippingRequest::default()))
        .await
        .expect("lock time skipping");

    assert_eq!(outcome.status, OrderStatus::Closed, "{outcome:?}");
    assert_eq!(app.stock("MUG-LOGO").await.available, 50);
    app.assert_stock_invariants().await;

    // The durable timer that fired was the 15-minute payment window.
    let history = app.orders.export_history(&id).await.unwrap();
    let history: temporalio_common::protos::temporal::api::history::v1::History =
        serde_json::from_slice(&history).unwrap();
    let timers: Vec<u64> = history
        .events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::TimerStartedEventAttributes(t)) => {
                t.start_to_fire_timeout.as_ref().map(|d| d.seconds as u64)
            }
            _ => None,
        })
        .collect();
    assert_eq!(timers.len(), 1, "{timers:?}");
    assert!((895..=900).contains(&timers[0]), "timer of {} s", timers[0]);
    assert!(
        history
            .events
            .iter()
            .any(|e| matches!(e.attributes, Some(Attributes::TimerFiredEventAttributes(_))))
    );
}

fn tonic_request<T>(message: T) -> tonic::Request<T> {
    tonic::Request::new(message)
}
