//! Order events from the outbox to NATS JetStream, against real NATS servers: the shared one
//! (127.0.0.1:4222, each test on a stream of its own) and, for the outage, one of the test's own.
//! Each order path's own sequence of events is asserted where the path is tested
//! (tests/orders.rs, finish_order.rs, edge_reservation.rs, http_api.rs); every event any test
//! makes is checked against schemas/events/ when its app is dropped.

use futures::StreamExt;
use orderflow_activities::outbox;
use orderflow_domain::events::{CloudEvent, EventType};
use orderflow_relay::events::EventRelay;
use orderflow_relay::jetstream::{JetStreamSink, StreamSettings};
use orderflow_tests::events::{
    NatsServer, all_events, assert_stream_matches_outbox, shared_nats_url, stream_contents,
    stream_settings, validate,
};
use orderflow_tests::{TestApp, debug_binaries, on_every_engine};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

on_every_engine!(
    events_reach_the_stream_once_and_in_order,
    a_broker_outage_loses_nothing,
    relays_killed_over_and_over_publish_each_event_once,
    published_events_are_pruned_and_numbers_never_reused
);

/// An event whose data breaks its schema is caught: the check every test relies on can fail.
#[test]
fn an_event_that_breaks_its_schema_is_refused() {
    let good = CloudEvent {
        specversion: "1.0".into(),
        id: "ord_x.1".into(),
        source: "urn:orderflow:orders".into(),
        event_type: EventType::OrderCreated.cloudevents_type(),
        subject: "ord_x".into(),
        time: "2026-12-07T10:00:00.000Z".into(),
        datacontenttype: "application/json".into(),
        sequence: 1,
        data: json!({
            "order_id": "ord_x", "status": "PENDING", "customer_id": "c", "provider": "sandbox",
            "amount": {"minor": 1250, "currency": "USD"},
            "lines": [{"sku": "MUG-LOGO", "quantity": 1, "unit_price_minor": 1250, "line_total_minor": 1250}]
        }),
    };
    validate(EventType::OrderCreated, &good).expect("a good event passes");
    let mut float_amount = good.clone();
    float_amount.data["amount"]["minor"] = json!(12.5);
    let mut no_lines = good.clone();
    no_lines.data.as_object_mut().unwrap().remove("lines");
    let mut wrong_status = good.clone();
    wrong_status.data["status"] = json!("PAID");
    let mut unknown_field = good.clone();
    unknown_field.data["discount"] = json!(0);
    let mut bad_time = good.clone();
    bad_time.time = "yesterday".into();
    let mut gap = good.clone();
    gap.sequence = 0;
    for (what, bad) in [
        ("a float amount", float_amount),
        ("no lines", no_lines),
        ("another type's status", wrong_status),
        ("an undocumented field", unknown_field),
        ("a time that is not RFC 3339", bad_time),
        ("sequence 0", gap),
    ] {
        assert!(
            validate(EventType::OrderCreated, &bad).is_err(),
            "{what} passed"
        );
    }
    // And every type's data is checked against its own schema, not another's.
    assert!(validate(EventType::OrderPaid, &good).is_err());
}

/// Starts an in-process relay to `settings`, as the worker runs it.
fn relay(app: &TestApp, settings: &StreamSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(orderflow_relay::run(
        EventRelay::new(
            app.db.clone(),
            Arc::new(JetStreamSink::new(settings.clone())),
        ),
        Arc::new(Notify::new()),
        orderflow_relay::events::pacing(),
    ))
}

/// `n` orders through their workflows, `concurrency` at a time: even ones paid, odd ones
/// cancelled, so each ends with three events. Returns their ids.
async fn orders(app: &TestApp, prefix: &str, n: usize, concurrency: usize) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let id = app
                .order(&format!("{prefix}-{i}"), &[("STICKER-PACK", 1)], None)
                .await;
            if i % 2 == 0 {
                app.orders.pay_sandbox(&id, None, 1).await.expect("pay");
            } else {
                app.orders.cancel(&id, "test").await.expect("cancel");
            }
            app.final_view(&id).await;
            id
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Waits until every order has its three events and nothing is left unpublished.
async fn all_published(app: &TestApp, orders: usize, within: Duration) {
    let give_up = Instant::now() + within;
    loop {
        let lag = outbox::lag(&app.db).await.expect("lag");
        let events = all_events(&app.db).await.len();
        if lag.pending == 0 && events == orders * 3 {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "after {within:?}: {events} events for {orders} orders, {} unpublished",
            lag.pending
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn orderflow(app: &TestApp, settings: &StreamSettings) -> Command {
    orderflow_on(
        app.settings.connection.database_url.expose_secret(),
        settings,
    )
}

fn orderflow_on(database_url: &str, settings: &StreamSettings) -> Command {
    let mut cmd = Command::new(debug_binaries().join("orderflow"));
    cmd.env("DATABASE_URL", database_url)
        .env("ORDERFLOW_NATS_URL", &settings.url)
        .env("ORDERFLOW_EVENTS_STREAM", &settings.stream)
        .env("ORDERFLOW_EVENTS_SUBJECT_PREFIX", &settings.subject_prefix)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

async fn events_reach_the_stream_once_and_in_order(app: TestApp) {
    let settings = stream_settings(&shared_nats_url());
    // The relay as production runs it: inside an `orderflow-worker` process (here next to the
    // test's own worker, on the same task queue and database).
    let mut worker = Command::new(debug_binaries().join("orderflow-worker"));
    worker
        .env(
            "DATABASE_URL",
            app.settings.connection.database_url.expose_secret(),
        )
        .env("ORDERFLOW_TASK_QUEUE", &app.settings.connection.task_queue)
        .env("ORDERFLOW_PUBLIC_URL", &app.settings.connection.public_url)
        .env("ORDERFLOW_SANDBOX", "true")
        .env("ORDERFLOW_NATS_URL", &settings.url)
        .env("ORDERFLOW_EVENTS_STREAM", &settings.stream)
        .env("ORDERFLOW_EVENTS_SUBJECT_PREFIX", &settings.subject_prefix)
        .env("RUST_LOG", "warn")
        .args(["--temporal-address", &app.temporal_address])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut worker = KillOnDrop(worker.spawn().expect("orderflow-worker"));
    let ids = orders(&app, "ev", 12, 6).await;
    all_published(&app, ids.len(), Duration::from_secs(60)).await;
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "the worker with its relay is still running"
    );
    drop(worker);
    let outbox = all_events(&app.db).await;
    let stream = stream_contents(&settings).await.expect("the stream");
    assert_stream_matches_outbox(&stream, &outbox);
    for e in &stream {
        let stored = outbox.iter().find(|s| s.event_id == e.id).unwrap();
        validate(stored.event_type, e).unwrap();
    }

    // The consumer to copy: a durable consumer that prints each event and acks it.
    let count = stream.len().to_string();
    let tail = ["--json", "events", "tail", "--from-start", "--durable"];
    let (ok, out, err) = run_cli(
        &app,
        &settings,
        &[&tail[..], &["copy-me", "--count", &count]].concat(),
    );
    assert!(ok, "{err}");
    let tailed: Vec<CloudEvent> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one event per line"))
        .collect();
    assert_eq!(tailed, stream, "the consumer got the stream, in order");
    let js = orderflow_relay::jetstream::connect(&settings)
        .await
        .unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(&settings.stream)
        .await
        .unwrap()
        .get_consumer("copy-me")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "every event was acknowledged");
    assert_eq!(info.ack_floor.stream_sequence, stream.len() as u64);

    // Only one type, and the CLI's views of the outbox.
    let paid = stream
        .iter()
        .filter(|e| e.event_type == EventType::OrderPaid.cloudevents_type())
        .count()
        .to_string();
    let (ok, out, err) = run_cli(
        &app,
        &settings,
        &[
            &tail[..],
            &["paid-only", "--type", "order.paid", "--count", &paid],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count().to_string(), paid);
    let (ok, out, err) = run_cli(&app, &settings, &["--json", "events", "status"]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pending"], 0);
    assert_eq!(status["broker"]["messages"], stream.len());
    // Credentials in the broker's URL are never printed, connected or not.
    let mut with_password = settings.clone();
    with_password.url = shared_nats_url().replace("nats://", "nats://relay:s3cr3t-pw@");
    let (_, out, err) = run_cli(&app, &with_password, &["events", "status"]);
    let printed = format!("{out}{err}");
    assert!(printed.contains("***@"), "{printed}");
    assert!(!printed.contains("s3cr3t-pw"), "{printed}");
    let paid_order = stream
        .iter()
        .find(|e| e.event_type == EventType::OrderPaid.cloudevents_type())
        .map(|e| e.subject.clone())
        .expect("a paid order");
    let (ok, out, err) = run_cli(&app, &settings, &["events", "list", "--order", &paid_order]);
    assert!(ok, "{err}");
    assert!(
        out.contains("order.created") && out.contains("order.paid"),
        "{out}"
    );
    let (ok, _, err) = run_cli(
        &app,
        &settings,
        &["events", "tail", "--type", "order.shipped"],
    );
    assert!(!ok);
    assert!(
        err.contains("expected one of"),
        "an unknown type is refused with the list: {err}"
    );
}

/// A child process killed when the test lets go of it, passed or failed.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `orderflow ARGS` on the app's database and `settings`' stream: (succeeded, stdout, stderr).
fn run_cli(app: &TestApp, settings: &StreamSettings, args: &[&str]) -> (bool, String, String) {
    let out = orderflow(app, settings)
        .args(args)
        .output()
        .expect("orderflow runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn a_broker_outage_loses_nothing(app: TestApp) {
    let mut nats = NatsServer::start().expect("a NATS server of the test's own");
    let settings = stream_settings(&nats.url());
    let relay = relay(&app, &settings);
    let before = orders(&app, "up", 60, 10).await;
    all_published(&app, before.len(), Duration::from_secs(60)).await;

    // The broker goes away for 30 s while 140 more orders come and go.
    nats.stop();
    let down_at = Instant::now();
    let during = orders(&app, "down", 140, 10).await;
    let lag = outbox::lag(&app.db).await.unwrap();
    assert_eq!(
        (lag.pending, lag.published_kept),
        (during.len() as i64 * 3, before.len() as i64 * 3),
        "the events wait in the outbox: {lag:?}"
    );
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed())).await;
    nats.resume().expect("the broker returns");

    // The relay's back-off is at most 30 s: within a minute everything is out.
    all_published(&app, 200, Duration::from_secs(90)).await;
    relay.abort();
    let stream = stream_contents(&settings).await.expect("the stream");
    assert_stream_matches_outbox(&stream, &all_events(&app.db).await);
}

/// Two `orderflow relay` processes against the database and one stream, SIGKILLed at random.
struct Relays {
    database_url: String,
    settings: StreamSettings,
    running: [Option<Child>; 2],
    kills: usize,
}

impl Relays {
    fn start(database_url: String, settings: StreamSettings) -> Relays {
        let mut relays = Relays {
            database_url,
            settings,
            running: [None, None],
            kills: 0,
        };
        relays.fill();
        relays
    }

    fn fill(&mut self) {
        for slot in &mut self.running {
            if slot.is_none() {
                let child = orderflow_on(&self.database_url, &self.settings)
                    .arg("relay")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("orderflow relay");
                *slot = Some(child);
            }
        }
    }

    fn kill(&mut self, which: usize) {
        if let Some(mut child) = self.running[which].take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            self.kills += 1;
        }
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.kill(0);
        self.kill(1);
    }
}

async fn relays_killed_over_and_over_publish_each_event_once(app: TestApp) {
    let settings = stream_settings(&shared_nats_url());
    let relays = Arc::new(std::sync::Mutex::new(Relays::start(
        app.settings
            .connection
            .database_url
            .expose_secret()
            .to_owned(),
        settings.clone(),
    )));
    let killing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let killer = {
        let (relays, killing) = (relays.clone(), killing.clone());
        std::thread::spawn(move || {
            let mut round = 0usize;
            while killing.load(std::sync::atomic::Ordering::Relaxed) {
                // 150–450 ms apart, alternating, each restarted at once: always one or two
                // relays running, each killed mid-batch now and then.
                std::thread::sleep(Duration::from_millis(150 + (round * 97 % 300) as u64));
                let mut relays = relays.lock().unwrap();
                relays.kill(round % 2);
                relays.fill();
                round += 1;
            }
        })
    };
    let ids = orders(&app, "kill", 500, 25).await;
    killing.store(false, std::sync::atomic::Ordering::Relaxed);
    killer.join().unwrap();
    let kills = relays.lock().unwrap().kills;
    assert!(kills >= 10, "only {kills} kills");
    // The relays that are left publish the rest.
    all_published(&app, ids.len(), Duration::from_secs(120)).await;
    drop(relays);
    let stream = stream_contents(&settings).await.expect("the stream");
    assert_stream_matches_outbox(&stream, &all_events(&app.db).await);
    eprintln!(
        "[{:?}] {} events from 500 orders in the stream exactly once, in order, across {kills} relay kills",
        app.engine,
        stream.len()
    );
}

/// The relay's lag on the worker's Prometheus endpoint: unpublished events and the oldest one's
/// age grow while the broker is away, and fall to zero once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_lag_is_a_prometheus_metric() {
    use temporalio_common::telemetry::{
        PrometheusExporterOptions, start_prometheus_metric_exporter,
    };
    let Some(app) = TestApp::spawn(orderflow_tests::Engine::Sqlite).await else {
        return;
    };
    let mut nats = NatsServer::start().expect("a NATS server of the test's own");
    let settings = stream_settings(&nats.url());
    nats.stop();
    let port = orderflow_tests::free_port();
    let exporter = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder()
            .socket_addr(format!("127.0.0.1:{port}").parse().unwrap())
            .counters_total_suffix(false)
            .build(),
    )
    .expect("a Prometheus endpoint");
    let relay = tokio::spawn(orderflow_relay::run(
        EventRelay::new(
            app.db.clone(),
            Arc::new(JetStreamSink::new(settings.clone())),
        )
        .with_metrics(exporter.meter),
        Arc::new(Notify::new()),
        orderflow_relay::events::pacing(),
    ));
    let ids = orders(&app, "lag", 4, 4).await;
    let scrape = || async {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum()
        };
        (
            value("orderflow_events_pending"),
            value("orderflow_events_oldest_pending_age_seconds"),
            value("orderflow_events_published_total"),
            value("orderflow_events_relay_failures_total"),
        )
    };
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let (pending, age, published, failures) = scrape().await;
        if pending == (ids.len() * 3) as f64 && age >= 1.0 && failures >= 1.0 {
            assert_eq!(published, 0.0);
            break;
        }
        assert!(
            Instant::now() < give_up,
            "while the broker is away: pending {pending}, age {age}, failures {failures}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    nats.resume().unwrap();
    all_published(&app, ids.len(), Duration::from_secs(60)).await;
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let (pending, age, published, _) = scrape().await;
        if (pending, age, published) == (0.0, 0.0, (ids.len() * 3) as f64) {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "after the broker returned: pending {pending}, age {age}, published {published}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    relay.abort();
}

/// Published events are pruned, unpublished ones never, and an order's numbers go on where they
/// were: a consumer never sees a number twice.
async fn published_events_are_pruned_and_numbers_never_reused(app: TestApp) {
    let id = app.order("prune", &[("MUG-LOGO", 1)], None).await;
    assert_eq!(app.events(&id).await.len(), 2);
    let mut conn = app.db.pool().acquire().await.unwrap();
    let claimed = outbox::claim(&mut conn, 100).await.unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "only the first of an order's events is claimable"
    );
    let first: Vec<i64> = claimed.iter().map(|e| e.id).collect();
    outbox::mark_published(&mut conn, &first).await.unwrap();
    let second: Vec<i64> = outbox::claim(&mut conn, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(second.len(), 1, "then the next one");
    outbox::mark_published(&mut conn, &second).await.unwrap();
    drop(conn);

    app.orders.cancel(&id, "prune test").await.unwrap();
    app.final_view(&id).await;
    let far_future = orderflow_activities::db::now_ms() + 3_600_000;
    assert_eq!(
        outbox::prune(&app.db, far_future, 1).await.unwrap(),
        1,
        "in batches"
    );
    assert_eq!(outbox::prune(&app.db, far_future, 1000).await.unwrap(), 1);
    assert_eq!(outbox::prune(&app.db, far_future, 1000).await.unwrap(), 0);
    let left = outbox::for_order(&app.db, &id).await.unwrap();
    assert_eq!(left.len(), 1, "the unpublished event stays: {left:?}");
    assert_eq!(
        (left[0].event_type, left[0].sequence),
        (EventType::OrderCancelled, 3)
    );
    let lag = outbox::lag(&app.db).await.unwrap();
    assert_eq!((lag.pending, lag.published_kept), (1, 0));
    // Published and pruned too: the order has no events left (the check at the end of every
    // test wants an order's events from 1, or none).
    let mut conn = app.db.pool().acquire().await.unwrap();
    outbox::mark_published(&mut conn, &[left[0].id])
        .await
        .unwrap();
    drop(conn);
    assert_eq!(outbox::prune(&app.db, far_future, 1000).await.unwrap(), 1);
}
