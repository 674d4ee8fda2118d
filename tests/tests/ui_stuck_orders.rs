//! An operator finds a stuck order in the Temporal Web UI.
//!
//! This test starts its own `temporal server start-dev` with the Web UI on (the shared test
//! server runs `--headless`), registering every search attribute of
//! `orderflow_workflows::search_attributes::REGISTRATION`, and a worker on it (SQLite). Three
//! orders:
//!
//! * A: a one-hour payment window; it is AWAITING_PAYMENT and not late (excluded by the deadline);
//! * B: a window of a few seconds, and the worker is stopped as soon as B is AWAITING_PAYMENT, so
//!   its deadline timer fires with nobody to close it: a stuck order;
//! * C: a window as short as B's, paid at once (excluded by the status only).
//!
//! Once B's timer has fired, the operators' query
//! `OrderStatus = "AWAITING_PAYMENT" AND PaymentDeadline < "<now, RFC3339>"` must list B and only
//! B: first through the client's visibility API (each half of the query on its own too, so the
//! semantics are pinned down apart from the UI), then in headless Chromium at
//! `<ui>/namespaces/default/workflows?query=<url-encoded query>` (`tests/browser/ui_query.mjs`),
//! which leaves a screenshot in `target/test-artifacts/ui-stuck-orders.png`.
//!
//! Needs the `temporal` CLI (with its UI), Node.js 20+, `tests/browser/node_modules` and
//! `/usr/bin/chromium` (or `ORDERFLOW_CHROMIUM`); when one is missing the test fails and says how
//! to install it; it never skips.

use futures::TryStreamExt;
use orderflow_domain::OrderStatus;
use orderflow_tests::browser::{is_png, png_size, require_browser_tools, run_node_script};
use orderflow_tests::{
    Engine, TestApp, eventually, free_port, spawn_watched, temporal_bin, wait_for_port,
    workspace_root,
};
use orderflow_worker::dev_server::DevServer;
use orderflow_workflows::search_attributes as sa;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use temporalio_client::{WorkflowExecution, WorkflowExecutionStatus, WorkflowListOptions};
use temporalio_common::search_attributes::Timestamp;

/// B's (and C's) payment window: long enough to stop the worker inside it on a slow machine.
const SHORT_WINDOW_SECS: u64 = 8;
/// A's payment window: far from over while the test runs.
const LONG_WINDOW_SECS: u64 = 3600;
/// How long visibility may take to show a change (it is eventually consistent).
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the page may take to list the stuck order (the script's own limit).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails (never skips) with how to install whatever this test is missing.
fn require_tools() {
    let temporal = temporal_bin();
    match Command::new(&temporal).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{} --version` failed ({}): this test runs `temporal server start-dev` with its Web \
             UI; install the Temporal CLI (scripts/lib.sh puts it in .venv/bin) or set \
             ORDERFLOW_TEMPORAL_BIN",
            temporal.display(),
            out.status
        ),
        Err(e) => panic!(
            "`{}` cannot be run ({e}): this test runs `temporal server start-dev` with its Web UI; \
             install the Temporal CLI (scripts/lib.sh puts it in .venv/bin) or set \
             ORDERFLOW_TEMPORAL_BIN",
            temporal.display()
        ),
    }
    require_browser_tools();
}

/// A dev server of this test's own, with the Web UI: `(frontend address, UI base URL)`.
fn start_dev_server_with_ui() -> (String, String) {
    let ui_port = free_port();
    let server = DevServer::on(free_port()).with_ui(ui_port);
    spawn_watched(&temporal_bin(), &server.args()).expect("start the Temporal dev server");
    wait_for_port(server.port, Duration::from_secs(60)).expect("the dev server's frontend is up");
    wait_for_port(ui_port, Duration::from_secs(60)).expect("the dev server's Web UI is up");
    (server.address(), format!("http://127.0.0.1:{ui_port}"))
}

/// `2026-01-01T00:00:00Z`: whole seconds, UTC, as operators type it.
fn rfc3339_seconds(unix_secs: i64) -> String {
    let text = Timestamp::new(unix_secs, 0).to_string();
    let text = text.replace(".000000000Z", "Z");
    assert!(
        text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
        "unexpected RFC3339 rendering {text:?}"
    );
    text
}

fn unix_ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}

fn deadline_ms(execution: &WorkflowExecution) -> Option<i64> {
    execution
        .search_attributes()
        .get(&sa::PAYMENT_DEADLINE)
        .map(|t| t.seconds() * 1000 + i64::from(t.nanos() / 1_000_000))
}

async fn list(app: &TestApp, query: &str) -> Vec<WorkflowExecution> {
    app.orders
        .client
        .list_workflows(query, WorkflowListOptions::default())
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("list_workflows({query:?}) failed: {e}"))
}

/// Polls `query` until it lists exactly `expected` (visibility is eventually consistent).
async fn wait_listed(app: &TestApp, query: &str, expected: &[&str]) -> Vec<WorkflowExecution> {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    eventually(VISIBILITY_TIMEOUT, || async {
        let rows = list(app, query).await;
        let ids: BTreeSet<String> = rows.iter().map(|w| w.id().to_owned()).collect();
        if ids == expected { Ok(rows) } else { Err(ids) }
    })
    .await
    .unwrap_or_else(|ids| {
        panic!(
            "after {VISIBILITY_TIMEOUT:?} the query {query:?} lists {ids:?}, expected {expected:?}"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_order_is_found_in_the_temporal_ui() {
    let test_started = Instant::now();
    require_tools();
    let (address, ui) = start_dev_server_with_ui();
    let mut app = TestApp::spawn_on(Engine::Sqlite, &address, |_| {})
        .await
        .expect("a worker on the dev server with the UI")
        .expect("SQLite is always available");

    // A: waiting for money, well within its window.
    let a = app
        .order("ui-waiting", &[("MUG-LOGO", 1)], Some(LONG_WINDOW_SECS))
        .await;
    assert_eq!(
        app.view(&a).await.status,
        Some(OrderStatus::AwaitingPayment)
    );

    // C: paid at once; its deadline passes as B's does, only its status keeps it out.
    let c = app
        .order("ui-paid", &[("MUG-LOGO", 1)], Some(SHORT_WINDOW_SECS))
        .await;
    app.orders
        .pay_sandbox(&c, None, 1)
        .await
        .expect("pay C at the sandbox");
    let c_view = app.wait_status(&c, OrderStatus::Paid).await;

    // B: awaiting payment, then the worker goes away before its deadline.
    let b_started = Instant::now();
    let b = app
        .order("ui-stuck", &[("MUG-LOGO", 1)], Some(SHORT_WINDOW_SECS))
        .await;
    let b_view = app.view(&b).await;
    assert_eq!(
        b_view.status,
        Some(OrderStatus::AwaitingPayment),
        "{b_view:?}"
    );
    tokio::task::block_in_place(|| app.stop_worker());
    let stopped_after = b_started.elapsed();
    let b_deadline_ms = b_view.payment_deadline_ms.expect("B has a deadline");
    let c_deadline_ms = c_view.payment_deadline_ms.expect("C has a deadline");
    let (wa, wb, wc) = (
        format!("order-{a}"),
        format!("order-{b}"),
        format!("order-{c}"),
    );
    eprintln!("A = {wa}, B = {wb} (worker stopped {stopped_after:?} after it started), C = {wc}");

    // B's deadline timer fires on the server; with no worker, nothing acts on it.
    let events = eventually(Duration::from_secs(SHORT_WINDOW_SECS + 30), || async {
        let events = app.history_event_types(&b).await;
        if events.iter().any(|e| e == "TimerFired") {
            Ok(events)
        } else {
            Err(events)
        }
    })
    .await
    .unwrap_or_else(|events| panic!("B's payment deadline timer never fired: {events:?}"));
    let fired = events.iter().rposition(|e| e == "TimerFired").unwrap();
    eprintln!("B's history after its deadline: {:?}", &events[fired..]);
    assert!(
        events[fired + 1..]
            .iter()
            .all(|e| e == "WorkflowTaskScheduled"),
        "something acted on B after its deadline (the worker was stopped {stopped_after:?} after \
         B started, its window is {SHORT_WINDOW_SECS} s: too slow a machine?): {events:?}"
    );

    // "Now": whole seconds, past both short deadlines.
    let now_secs = eventually(Duration::from_secs(5), || async {
        let secs = unix_ms(SystemTime::now()) / 1000;
        (secs * 1000 > b_deadline_ms.max(c_deadline_ms))
            .then_some(secs)
            .ok_or(secs)
    })
    .await
    .unwrap_or_else(|secs| panic!("{secs} s is not past both deadlines"));
    let now = rfc3339_seconds(now_secs);
    let query = format!(r#"OrderStatus = "AWAITING_PAYMENT" AND PaymentDeadline < "{now}""#);
    eprintln!("query: {query}");
    // The same clause `orderflow orders stuck --status AWAITING_PAYMENT` sends.
    let cli_query = orderflow_client::orders::stuck_query(
        Some(OrderStatus::AwaitingPayment),
        Duration::ZERO,
        UNIX_EPOCH + Duration::from_secs(now_secs.unsigned_abs()),
    );
    assert!(cli_query.contains(&format!("({query})")), "{cli_query}");

    // Through the visibility API: each half of the query, then the whole of it.
    let awaiting = wait_listed(&app, r#"OrderStatus = "AWAITING_PAYMENT""#, &[&wa, &wb]).await;
    let overdue = wait_listed(&app, &format!(r#"PaymentDeadline < "{now}""#), &[&wb, &wc]).await;
    let stuck = wait_listed(&app, &query, &[&wb]).await;
    assert_eq!(
        wait_listed(&app, &cli_query, &[&wb]).await.len(),
        1,
        "{cli_query}"
    );
    let row = |rows: &[WorkflowExecution], id: &str| {
        rows.iter()
            .find(|w| w.id() == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed"))
    };
    let a_row = row(&awaiting, &wa);
    assert!(
        deadline_ms(&a_row).is_some_and(|d| d > now_secs * 1000),
        "A's PaymentDeadline is not in the future: {:?}",
        deadline_ms(&a_row)
    );
    let c_row = row(&overdue, &wc);
    assert_eq!(
        c_row.search_attributes().get(&sa::ORDER_STATUS).as_deref(),
        Some("PAID")
    );
    assert_eq!(c_row.status(), WorkflowExecutionStatus::Completed);
    assert_eq!(deadline_ms(&c_row), Some(c_deadline_ms));
    let b_row = row(&stuck, &wb);
    assert_eq!(b_row.status(), WorkflowExecutionStatus::Running);
    assert_eq!(
        b_row.search_attributes().get(&sa::ORDER_STATUS).as_deref(),
        Some("AWAITING_PAYMENT")
    );
    assert_eq!(deadline_ms(&b_row), Some(b_deadline_ms));
    assert_eq!(
        b_row.search_attributes().get(&sa::CUSTOMER_ID).as_deref(),
        Some("ui-stuck")
    );
    assert_eq!(
        b_row
            .search_attributes()
            .get(&sa::PAYMENT_PROVIDER)
            .as_deref(),
        Some("sandbox")
    );
    assert_eq!(
        b_row.search_attributes().get(&sa::ORDER_AMOUNT_MINOR),
        Some(1250)
    );

    // In the Temporal UI, as an operator sees it.
    let screenshot = workspace_root().join("target/test-artifacts/ui-stuck-orders.png");
    let _ = std::fs::remove_file(&screenshot);
    let _ = std::fs::remove_file(screenshot.with_extension("failure.png"));
    let args: Vec<String> = [
        "--ui",
        &ui,
        "--query",
        &query,
        "--expect",
        &wb,
        "--absent",
        &wa,
        "--absent",
        &wc,
        "--screenshot",
        &screenshot.display().to_string(),
        "--timeout-ms",
        &BROWSER_TIMEOUT.as_millis().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = tokio::task::spawn_blocking(move || run_node_script("ui_query.mjs", &args))
        .await
        .expect("the browser run");
    run.assert_success("UI");
    let seen = run.json_line("ui_query.mjs");
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["api_query"], query.as_str(), "{seen}");
    assert_eq!(
        seen["listed"],
        serde_json::json!([{"workflow_id": wb, "status": "Running"}]),
        "{seen}"
    );
    assert_eq!(seen["count"], "1", "{seen}");
    let url = seen["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!(
            "{ui}/namespaces/default/workflows?query=OrderStatus%20%3D%20"
        )),
        "{url}"
    );

    // The picture an operator would see.
    let bytes = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(is_png(&bytes), "{} is not a PNG", screenshot.display());
    let (width, height) = png_size(&bytes);
    assert!(
        width >= 800 && height >= 400 && bytes.len() > 10_000,
        "{} is too small to show the page: {width}x{height}, {} bytes",
        screenshot.display(),
        bytes.len()
    );
    eprintln!(
        "screenshot {} ({width}x{height}); the whole test took {:?}",
        screenshot.display(),
        test_started.elapsed()
    );
}
