//! Reliability under failure, against real processes:
//!
//! * `worker_killed_mid_flight`: orders (paid, timed out, cancelled) while the `orderflow-worker`
//!   process is SIGKILLed at random points and restarted at once.
//! * `temporal_server_restart`: a dev server of its own on a persistent SQLite file, stopped and
//!   started again while payment timers are open and payment signals are pending.
//! * `database_outage` (PostgreSQL) and `database_outage_mysql` (MariaDB/MySQL): the orders
//!   database, reached through a TCP proxy this test cuts, is unavailable for a while; activities retry, webhooks answer non-2xx, nothing is lost or
//!   duplicated.
//!
//! The normal suite runs small versions; `ORDERFLOW_LONG=1` runs the full sizes (500 orders, a
//! 30 s outage, two server restarts). `ORDERFLOW_CHAOS_SEED` replays a schedule. Every test prints
//! its figures (`-- --nocapture` to see them). Times are reported, never asserted.

use anyhow::{Context, bail};
use futures::future::join_all;
use orderflow_activities::providers::sandbox::SandboxProvider;
use orderflow_activities::sql;
use orderflow_client::orders::{NewOrder, OrderOpError, Orders};
use orderflow_domain::{OrderId, PaymentNo};
use orderflow_http::DEV_SANDBOX_WEBHOOK_SECRET;
use orderflow_http::webhook_adapters::sandbox::{
    MERCHANT_ID, PAID, SIGNATURE_HEADER, SandboxEvent, SandboxEventData, sign_event,
};
use orderflow_tests::chaos::{
    self, DevServer, Rng, Shop, StatusBoard, TcpProxy, WorkerSpec, audit, check_workflow_results,
    history_stats, now_ms, percentile, scratch_dir, secs, size, unique,
};
use orderflow_tests::{Engine, TestApp, eventually, temporal_address};
use rand::Rng as _;
use rand::seq::IndexedRandom;
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// One chaos scenario at a time: they share two cores, and their figures mean more alone.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_killed_mid_flight() {
    let _one_at_a_time = SERIAL.lock().await;
    worker_kills().await.expect("worker-kill scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporal_server_restart() {
    let _one_at_a_time = SERIAL.lock().await;
    server_restarts().await.expect("server-restart scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage() {
    let _one_at_a_time = SERIAL.lock().await;
    db_outage(Engine::Postgres)
        .await
        .expect("database-outage scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_mysql() {
    let _one_at_a_time = SERIAL.lock().await;
    db_outage(Engine::MySql)
        .await
        .expect("database-outage scenario on MySQL");
}

/// The figures above come from histories: the counting must see what a real history holds.
#[test]
fn history_stats_read_recorded_histories() {
    let path = orderflow_tests::workspace_root().join("tests/histories/paid.v1.json");
    let bytes = std::fs::read(&path).expect("a recorded history");
    let history: temporalio_common::protos::temporal::api::history::v1::History =
        serde_json::from_slice(&bytes).expect("history JSON");
    let mut stats = chaos::HistoryStats::default();
    let workers = stats.add(&history);
    assert!(stats.activities > 0, "{stats:?}");
    assert_eq!(stats.max_attempt, 1, "{stats:?}");
    assert_eq!(stats.activity_retries, 0);
    assert_eq!(workers.len(), 1, "{workers:?}");
}

// ---------------------------------------------------------------------------------------------
// Shared bits

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Intent {
    /// The customer pays (sandbox, callback delivered).
    Pay,
    /// The customer cancels.
    Cancel,
    /// Nobody pays: the payment deadline closes it.
    Timeout,
}

impl Intent {
    fn expected(self) -> &'static str {
        match self {
            Intent::Pay => "PAID",
            Intent::Cancel => "CANCELLED",
            Intent::Timeout => "CLOSED",
        }
    }
}

fn random_lines(rng: &mut Rng) -> Vec<(String, i64)> {
    let k = rng.random_range(1..=3);
    let skus: Vec<&str> = chaos::SKUS.choose_multiple(rng, k).copied().collect();
    skus.into_iter()
        .map(|sku| (sku.to_string(), rng.random_range(1..=3)))
        .collect()
}

/// Starts an order, retrying while Temporal cannot be reached.
async fn start_order(
    orders: &Orders,
    key: &str,
    lines: Vec<(String, i64)>,
    timeout_secs: u64,
    give_up: Duration,
) -> anyhow::Result<String> {
    let order = NewOrder {
        client: orderflow_client::orders::cli_client(),
        idempotency_key: key.to_owned(),
        customer_id: format!("chaos-{}", &key[key.len().saturating_sub(6)..]),
        lines,
        provider: "sandbox".to_owned(),
        payment_timeout_secs: Some(timeout_secs),
        coupon_code: None,
    };
    let start = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), orders.start(&order)).await {
            Ok(Ok((id, _))) => return Ok(id.to_string()),
            Ok(Err(OrderOpError::Temporal(e))) if start.elapsed() < give_up => {
                tracing::debug!("start {key}: {e}; retrying");
            }
            Err(_) if start.elapsed() < give_up => {}
            Ok(Err(e)) => bail!("starting order {key}: {e}"),
            Err(_) => bail!("starting order {key}: no answer within {give_up:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The customer pays at the sandbox and the callback is delivered as a signal; retried (paying
/// again is the same charge) while Temporal cannot be reached. Returns the attempts it took.
async fn pay(orders: &Orders, id: &str, give_up: Duration) -> Result<u32, OrderOpError> {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match tokio::time::timeout(Duration::from_secs(20), orders.pay_sandbox(id, None, 1)).await {
            // Refused: the workflow finished before the callback got through (it found the
            // money by asking the provider); the final audit judges the outcome.
            Ok(Ok(_)) | Ok(Err(OrderOpError::Refused { .. })) => return Ok(attempts),
            Ok(Err(OrderOpError::Temporal(_))) | Err(_) if start.elapsed() < give_up => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(OrderOpError::Temporal("pay: no answer".into())),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What became of a customer's cancel request.
struct Cancelled {
    attempts: u32,
    /// The refusal that ended it, if any: after an earlier attempt got through (its answer was
    /// lost to a dying worker), the workflow says it is already being cancelled, or the order is
    /// already CANCELLED. The report checks that no first attempt was refused.
    refusal: Option<String>,
}

/// Sends the cancel update until the workflow has taken it or refuses it. The workflow accepts a
/// cancel from the start (`validate_cancel` takes one before the order awaits payment, too), so
/// a refusal is final.
async fn cancel(orders: &Orders, id: &str, give_up: Duration) -> anyhow::Result<Cancelled> {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match tokio::time::timeout(
            Duration::from_secs(30),
            orders.cancel(id, "chaos: changed my mind"),
        )
        .await
        {
            Ok(Ok(_)) => {
                return Ok(Cancelled {
                    attempts,
                    refusal: None,
                });
            }
            Ok(Err(OrderOpError::Refused {
                message: reason, ..
            })) => {
                return Ok(Cancelled {
                    attempts,
                    refusal: Some(reason),
                });
            }
            Ok(Err(OrderOpError::Temporal(_))) | Err(_) if start.elapsed() < give_up => {}
            Ok(Err(e)) => bail!("cancelling {id}: {e}"),
            Err(_) => bail!("cancelling {id}: no answer within {give_up:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for every order to be final; on failure prints what Temporal knows about the open ones
/// (with their planned outcome) before failing.
async fn wait_all_final(
    scenario: &str,
    board: &StatusBoard,
    orders: &Orders,
    expected: &BTreeMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let ids: Vec<String> = expected.keys().cloned().collect();
    if let Err(e) = board.wait_all_final(&ids, timeout).await {
        let open = board.open(&ids);
        eprintln!(
            "[{scenario}] {} orders not final; planned outcomes: {:?}",
            open.len(),
            open.iter()
                .map(|id| expected.get(id).map(String::as_str).unwrap_or("?"))
                .fold(BTreeMap::<&str, usize>::new(), |mut m, s| {
                    *m.entry(s).or_default() += 1;
                    m
                })
        );
        for line in chaos::diagnose(orders, &open[..open.len().min(10)]).await {
            eprintln!("[{scenario}]   {line}");
        }
        return Err(e);
    }
    Ok(())
}

fn print_audit(scenario: &str, a: &chaos::Audit, paid: usize) {
    println!(
        "[{scenario}] audit: {} orders stored, {} kept charges for {paid} PAID orders, \
         {} duplicates (ledger {}, settled twice {}), {} reservation problems, \
         {} stock problems, {} status problems, {} unexpected orders",
        a.statuses.len(),
        a.kept_charges,
        a.duplicates(),
        a.ledger_duplicates.len(),
        a.settled_twice.len(),
        a.reservation_problems.len(),
        a.stock_problems.len(),
        a.status_problems.len(),
        a.unexpected_orders.len(),
    );
}

fn print_history(scenario: &str, h: &chaos::HistoryStats) {
    println!(
        "[{scenario}] histories: {} workflows, {} activities + {} local activities, {} retries \
         (max attempt {}) {:?}, {} workflow-task timeouts, {} workflow-task failures, {} orders \
         handled by more than one worker process, {} worker identities, {} unreadable",
        h.workflows,
        h.activities,
        h.local_activities,
        h.activity_retries,
        h.max_attempt,
        h.retries_by_activity,
        h.workflow_task_timeouts,
        h.workflow_task_failures,
        h.orders_on_several_workers,
        h.worker_identities,
        h.unreadable.len(),
    );
    for (cause, n) in &h.task_failure_causes {
        println!("[{scenario}]   workflow task failed {n}x: {cause}");
    }
}

/// Common end of every scenario: statuses as expected, no duplicate effect, the stock invariant,
/// every workflow finished with the stored result.
async fn verify(
    scenario: &str,
    shop_db: &orderflow_activities::db::Db,
    orders: &Orders,
    expected: &BTreeMap<String, String>,
) -> anyhow::Result<chaos::Audit> {
    let ids: Vec<String> = expected.keys().cloned().collect();
    let a = audit(shop_db, expected).await?;
    let paid = a.statuses.values().filter(|s| *s == "PAID").count();
    print_audit(scenario, &a, paid);
    let h = history_stats(orders, &ids).await;
    print_history(scenario, &h);
    a.assert_clean();
    assert_eq!(
        a.kept_charges, paid as i64,
        "one kept charge per PAID order, none for the others"
    );
    let results = check_workflow_results(orders, &ids).await;
    assert!(
        results.is_empty(),
        "workflows disagree with the database: {results:#?}"
    );
    assert!(h.unreadable.is_empty(), "{:#?}", h.unreadable);
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// 1. The worker is SIGKILLed again and again

struct Planned {
    key: String,
    intent: Intent,
    lines: Vec<(String, i64)>,
    timeout_secs: u64,
    start_after: Duration,
    act_after: Duration,
}

async fn worker_kills() -> anyhow::Result<()> {
    const S: &str = "worker-kill";
    let n = size(60, 500);
    let min_kills = size(3, 25);
    let arrival = Duration::from_millis(size(100, 100));
    let mut rng = chaos::rng_from_env(S);
    let dir = scratch_dir("kill")?;
    let address = temporal_address();
    let shop = Shop::new(Engine::Sqlite, &address, 1_000_000)
        .await?
        .context("SQLite is always available")?;
    let spec = WorkerSpec::new(&shop, &address, dir.join("worker.log"))?;
    println!(
        "[{S}] {n} orders, at least {min_kills} kills, worker {}, logs in {}",
        spec.binary.display(),
        dir.display()
    );

    let plans: Vec<Planned> = (0..n)
        .map(|i| {
            let intent = match rng.random_range(0..4) {
                0 | 1 => Intent::Pay,
                2 => Intent::Cancel,
                _ => Intent::Timeout,
            };
            Planned {
                key: unique(&format!("kill-{i}-")),
                intent,
                lines: random_lines(&mut rng),
                // Paid and cancelled orders must not time out first; the others close on their
                // deadline while the worker keeps dying.
                timeout_secs: match intent {
                    Intent::Timeout => 3 + rng.random_range(0..size(20, 40)),
                    _ => 3600,
                },
                start_after: arrival * i as u32,
                act_after: Duration::from_millis(rng.random_range(0..=3000)),
            }
        })
        .collect();

    let mut worker = spec.spawn().await?;
    let board = Arc::new(StatusBoard::start(
        shop.db.clone(),
        Duration::from_millis(250),
    ));
    let run_start = Instant::now();
    let give_up = Duration::from_secs(300);

    let drivers = {
        let orders = shop.orders.clone();
        let board = board.clone();
        tokio::spawn(async move {
            let mut set = JoinSet::new();
            for p in plans {
                let orders = orders.clone();
                let board = board.clone();
                set.spawn(async move {
                    tokio::time::sleep(p.start_after).await;
                    let id = start_order(&orders, &p.key, p.lines, p.timeout_secs, give_up).await?;
                    let mut client_retries = 0;
                    let mut refusal = None;
                    if p.intent != Intent::Timeout {
                        board
                            .wait_for(&id, "AWAITING_PAYMENT", give_up, |s| s != "PENDING")
                            .await?;
                        // The customer takes a moment (an action, not a wait for state).
                        tokio::time::sleep(p.act_after).await;
                        client_retries = match p.intent {
                            Intent::Pay => pay(&orders, &id, give_up)
                                .await
                                .with_context(|| format!("paying {id}"))?,
                            _ => {
                                let c = cancel(&orders, &id, give_up).await?;
                                refusal = c.refusal.map(|r| (c.attempts, r));
                                c.attempts
                            }
                        } - 1;
                    }
                    anyhow::Ok((id, p.intent, client_retries, refusal))
                });
            }
            let mut done = Vec::new();
            while let Some(r) = set.join_next().await {
                done.push(r.map_err(anyhow::Error::from).and_then(|r| r));
            }
            done
        })
    };

    // Kill at random points until the load is in and enough kills happened.
    let mut kill_at = Vec::new();
    let mut last_kill = Instant::now();
    loop {
        let pause = Duration::from_millis(rng.random_range(size(300, 300)..=size(4000, 5000)));
        tokio::time::sleep(pause).await;
        if drivers.is_finished() && kill_at.len() >= min_kills {
            break;
        }
        if let Some(status) = worker.try_exited() {
            bail!(
                "orderflow-worker exited on its own ({status}); see {}",
                spec.log.display()
            );
        }
        worker.kill().await?;
        kill_at.push(run_start.elapsed());
        worker = spec.spawn().await?;
        last_kill = Instant::now();
        if run_start.elapsed() > give_up {
            bail!("the load did not go through within {give_up:?}");
        }
    }
    let results = drivers.await?;
    let mut expected = BTreeMap::new();
    let mut client_retries = 0;
    let mut failures = Vec::new();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_at_once = Vec::new();
    for r in results {
        match r {
            Ok((id, intent, retries, refusal)) => {
                expected.insert(id.clone(), intent.expected().to_owned());
                client_retries += retries;
                if let Some((attempts, reason)) = refusal {
                    if attempts == 1 {
                        refused_at_once.push(format!("{id}: {reason}"));
                    }
                    *refusals.entry(reason).or_default() += 1;
                }
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    assert!(failures.is_empty(), "order drivers failed: {failures:#?}");
    // Each cancel was sent once the database showed the order AWAITING_PAYMENT, with an hour left
    // to pay and no payment: the workflow must take the first attempt. A refusal can only answer
    // a later attempt, after one that got through lost its answer to a dying worker.
    assert!(
        refused_at_once.is_empty(),
        "cancels of open orders refused at the first attempt: {refused_at_once:#?}"
    );
    println!("[{S}] cancels refused after an earlier attempt got through: {refusals:?}");
    let ids: Vec<String> = expected.keys().cloned().collect();
    wait_all_final(S, &board, &shop.orders, &expected, give_up).await?;
    let drain = last_kill.elapsed();
    let total = run_start.elapsed();
    if let Some(status) = worker.try_exited() {
        bail!("orderflow-worker exited on its own ({status})");
    }

    let mut by_intent: BTreeMap<&str, usize> = BTreeMap::new();
    for want in expected.values() {
        *by_intent.entry(want.as_str()).or_default() += 1;
    }
    println!(
        "[{S}] {} kills (SIGKILL) at {}",
        kill_at.len(),
        kill_at
            .iter()
            .map(|d| secs(d.as_millis() as i64))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "[{S}] orders {} planned {by_intent:?}, final {:?}; client-side retries {client_retries}",
        ids.len(),
        board.counts(&ids)
    );
    println!(
        "[{S}] drain (last kill -> every order final): {}; whole run {}",
        secs(drain.as_millis() as i64),
        secs(total.as_millis() as i64)
    );
    let a = verify(S, &shop.db, &shop.orders, &expected).await?;
    let log = std::fs::read_to_string(&spec.log).unwrap_or_default();
    println!(
        "[{S}] duplicates found: {}; worker log: {} panics, {} ERROR lines",
        a.duplicates(),
        log.matches("panicked").count(),
        log.matches("ERROR").count()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. The Temporal server restarts with timers open and signals pending

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PayWhen {
    /// Paid and signalled just before the server stops: the signal may still be unprocessed.
    Before,
    /// Paid at the provider while the server is down; the signal is retried until accepted.
    During,
    /// Paid after the restart (if the charge is still open).
    After,
    /// Never paid: the deadline closes it.
    Never,
}

async fn server_restarts() -> anyhow::Result<()> {
    const S: &str = "server-restart";
    let per_round = size(30, 100);
    let rounds = size(1, 2);
    let down_for = Duration::from_secs(size(5, 10));
    let mut rng = chaos::rng_from_env(S);
    let dir = scratch_dir("restart")?;
    let mut server = DevServer::start(&dir).await?;
    let address = server.address();
    println!(
        "[{S}] own dev server on {address}, state in {}; {rounds} restart(s), {per_round} orders \
         each, down for {down_for:?}",
        server.db_file.display()
    );
    let shop = Shop::new(Engine::Sqlite, &address, 1_000_000)
        .await?
        .context("SQLite is always available")?;
    let spec = WorkerSpec::new(&shop, &address, dir.join("worker.log"))?;
    let mut worker = spec.spawn().await?;
    let board = Arc::new(StatusBoard::start(
        shop.db.clone(),
        Duration::from_millis(200),
    ));
    let give_up = Duration::from_secs(300);
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut outages: Vec<(i64, i64, &'static str)> = Vec::new();
    let mut signal_attempts = Vec::new();

    for round in 0..rounds {
        // A wave of orders with short payment windows, all awaiting payment.
        let wave: Vec<(PayWhen, u64, String)> = (0..per_round)
            .map(|i| {
                let when = match rng.random_range(0..5) {
                    0 => PayWhen::Before,
                    1 => PayWhen::During,
                    2 => PayWhen::After,
                    _ => PayWhen::Never,
                };
                // Deadlines spread from just after the stop to a little after the restart.
                (
                    when,
                    8 + rng.random_range(0..down_for.as_secs() + 3),
                    unique(&format!("restart-{round}-{i}-")),
                )
            })
            .collect();
        let started = join_all(wave.iter().map(|(_, timeout, key)| {
            let orders = shop.orders.clone();
            let lines = vec![("STICKER-PACK".to_owned(), 1)];
            async move { start_order(&orders, key, lines, *timeout, give_up).await }
        }))
        .await;
        let mut ids = Vec::new();
        for ((when, _, _), id) in wave.iter().zip(started) {
            ids.push((*when, id?));
        }
        for (_, id) in &ids {
            board
                .wait_for(id, "AWAITING_PAYMENT", give_up, |s| s != "PENDING")
                .await?;
        }
        for (when, id) in &ids {
            if *when == PayWhen::Before {
                pay(&shop.orders, id, give_up).await?;
            }
        }

        // Stop the server a second before the wave's first deadline, with every timer open and
        // the last signals possibly unprocessed.
        let first_deadline: i64 = sqlx::query(&format!(
            "SELECT MIN(deadline_ms) FROM payments WHERE order_id IN ({})",
            ids.iter()
                .map(|(_, id)| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .fetch_one(shop.db.pool())
        .await?
        .try_get(0)?;
        let until_stop = u64::try_from(first_deadline - 1000 - now_ms()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(until_stop)).await;
        let down_at = now_ms();
        let down_since = Instant::now();
        let how = if round == 0 {
            server.stop(Duration::from_secs(5)).await?
        } else {
            server.crash().await?;
            "SIGKILL"
        };
        // While it is down the customers pay; the callbacks are retried until Temporal takes them.
        let during: Vec<_> = ids
            .iter()
            .filter(|(w, _)| *w == PayWhen::During)
            .map(|(_, id)| {
                let orders = shop.orders.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let paid = pay(&orders, &id, give_up).await;
                    (id, paid.map(|attempts| (attempts, now_ms())), now_ms())
                })
            })
            .collect();
        // The outage itself: a deliberate length of time, not a wait for some state.
        tokio::time::sleep(down_for.saturating_sub(down_since.elapsed())).await;
        let took = server.restart().await?;
        let up_at = now_ms();
        outages.push((down_at, up_at, how));
        println!(
            "[{S}] round {round}: server stopped by {how}, down {} (restart took {})",
            secs(up_at - down_at),
            secs(took.as_millis() as i64)
        );

        for (when, id) in &ids {
            let want = match when {
                PayWhen::Never => "CLOSED",
                PayWhen::Before => "PAID",
                PayWhen::During | PayWhen::After => "PAID",
            };
            expected.insert(id.clone(), want.to_owned());
        }
        for (when, id) in &ids {
            if *when == PayWhen::After {
                let paid = pay(&shop.orders, id, give_up).await;
                if too_late(&shop.db, id, paid.map(|_| ()), now_ms()).await? {
                    expected.insert(id.clone(), "CLOSED".to_owned());
                }
            }
        }
        for task in during {
            let (id, paid, at) = task.await?;
            match paid {
                Ok((attempts, accepted_at)) => {
                    signal_attempts.push((attempts, accepted_at - up_at))
                }
                Err(e) => {
                    if too_late(&shop.db, &id, Err(e), at).await? {
                        expected.insert(id.clone(), "CLOSED".to_owned());
                    }
                }
            }
        }
    }

    let ids: Vec<String> = expected.keys().cloned().collect();
    wait_all_final(S, &board, &shop.orders, &expected, give_up).await?;
    if let Some(status) = worker.try_exited() {
        bail!(
            "orderflow-worker exited while the server restarted ({status}); see {}",
            spec.log.display()
        );
    }

    // Timer lateness: when the order's row turned CLOSED minus its deadline.
    let rows = sql!(
        "SELECT l.order_id, l.at_ms, p.deadline_ms FROM order_status_log l
           JOIN payments p ON p.order_id = l.order_id WHERE l.status = 'CLOSED'",
    )
    .on(shop.db.pool())
    .fetch_all(shop.db.pool())
    .await?;
    let mut lateness = Vec::new();
    let mut during_outage = Vec::new();
    let mut after_restart = Vec::new();
    for r in rows {
        let (at, deadline): (i64, i64) = (r.try_get(1)?, r.try_get(2)?);
        lateness.push(at - deadline);
        if let Some((_, up, _)) = outages
            .iter()
            .find(|(d, u, _)| deadline >= *d && deadline <= *u)
        {
            during_outage.push(at - deadline);
            after_restart.push(at - up);
        }
    }
    let timers = lateness.len();
    let fmt = |v: Option<i64>| v.map(secs).unwrap_or_else(|| "-".to_owned());
    println!("[{S}] orders {} final {:?}", ids.len(), board.counts(&ids));
    println!(
        "[{S}] timer lateness over {timers} closed orders: max {}, p95 {}, p50 {}; over the {} \
         whose deadline fell while the server was down: max {} (closed at most {} after the \
         server was back)",
        fmt(percentile(&lateness, 100)),
        fmt(percentile(&lateness, 95)),
        fmt(percentile(&lateness, 50)),
        during_outage.len(),
        fmt(percentile(&during_outage, 100)),
        fmt(percentile(&after_restart, 100)),
    );
    println!(
        "[{S}] payments signalled while the server was down: {} orders, accepted at most {} \
         after the restart ({} client calls at most; the SDK client retries inside each)",
        signal_attempts.len(),
        secs(signal_attempts.iter().map(|a| a.1).max().unwrap_or(0)),
        signal_attempts.iter().map(|a| a.0).max().unwrap_or(0)
    );
    let a = verify(S, &shop.db, &shop.orders, &expected).await?;
    println!("[{S}] duplicates found: {}", a.duplicates());
    Ok(())
}

/// A payment attempt the sandbox refused because the charge was already closed: allowed only
/// once the order's deadline had passed at `at_ms` (the close path ran: local steps may even run
/// it while the server is shutting down). Returns whether the order is then expected CLOSED.
async fn too_late(
    db: &orderflow_activities::db::Db,
    id: &str,
    paid: Result<(), OrderOpError>,
    at_ms: i64,
) -> anyhow::Result<bool> {
    match paid {
        Ok(()) => Ok(false),
        Err(OrderOpError::Sandbox(e)) => {
            let deadline: i64 = sql!("SELECT deadline_ms FROM payments WHERE order_id = $1")
                .on(db.engine())
                .bind(id)
                .fetch_one(db.pool())
                .await?
                .try_get(0)?;
            if deadline > at_ms {
                bail!(
                    "{id}: the sandbox refused a payment {} before the deadline: {e}",
                    secs(deadline - at_ms)
                );
            }
            Ok(true)
        }
        Err(e) => bail!("paying {id}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The orders database is unavailable

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    /// Paid before the outage; its webhook arrives during it.
    PaidBefore,
    /// Paid during the outage (the provider is up); its webhook arrives during it.
    PaidDuring,
    /// Started during the outage (recording it must wait), paid after.
    StartedDuring,
    /// Cancelled during the outage (the close path must wait).
    CancelledDuring,
    /// Its deadline passes during the outage.
    ExpiresDuring,
}

impl Group {
    fn expected(self) -> &'static str {
        match self {
            Group::PaidBefore | Group::PaidDuring | Group::StartedDuring => "PAID",
            Group::CancelledDuring => "CANCELLED",
            Group::ExpiresDuring => "CLOSED",
        }
    }
}

#[derive(Clone)]
struct Webhooks {
    base: String,
    /// The shim's admin listener (`/readyz`).
    admin: String,
    /// Sends the test client's API key (webhooks ignore it).
    http: reqwest::Client,
}

impl Webhooks {
    /// Delivers the sandbox's signed "paid" callback once; returns the HTTP status.
    async fn deliver(&self, event: &SandboxEvent) -> u16 {
        let (signature, body) = sign_event(
            DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(),
            event,
            now_ms() / 1000,
        );
        match self
            .http
            .post(format!("{}/v1/webhooks/sandbox", self.base))
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            // No answer at all counts as a failure the provider retries (reported as 0).
            Err(_) => 0,
        }
    }

    async fn admin_get(&self, path: &str) -> u16 {
        match self
            .http
            .get(format!("{}{path}", self.admin))
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

/// The customer pays at the sandbox gateway (through `gateway`'s own connection: the provider is
/// not down with our database); returns the callback the gateway sends.
async fn sandbox_pays(gateway: &SandboxProvider, order_id: &str) -> anyhow::Result<SandboxEvent> {
    let payment_no = PaymentNo::for_order(&OrderId::parse(order_id)?);
    let paid = gateway.pay(&payment_no, None).await?;
    Ok(SandboxEvent {
        id: paid.event_id,
        kind: PAID.into(),
        created: now_ms() / 1000,
        data: SandboxEventData {
            payment_no: payment_no.to_string(),
            amount_minor: paid.paid_amount_minor,
            currency: paid.currency,
            txn_id: paid.txn_id,
            merchant_id: MERCHANT_ID.into(),
        },
    })
}

async fn db_outage(engine: Engine) -> anyhow::Result<()> {
    const S: &str = "db-outage";
    let variable = match engine {
        Engine::MySql => "TEST_MYSQL_URL",
        _ => "TEST_POSTGRES_URL",
    };
    let Ok(base) = std::env::var(variable) else {
        eprintln!("{variable} is not set: skipping the database-outage scenario");
        return Ok(());
    };
    let outage = Duration::from_secs(30);
    let per_group = size(4, 10);
    let mut rng = chaos::rng_from_env(S);
    let proxy = TcpProxy::start(chaos::url_host_port(&base)?).await?;
    let mut direct_url = None;
    let app = TestApp::spawn_on(engine, &temporal_address(), |s| {
        let url = &mut s.connection.database_url;
        direct_url = Some(url.clone());
        *url = chaos::url_via(url.expose_secret(), proxy.port())
            .expect("a database URL")
            .into();
    })
    .await?
    .with_context(|| format!("{variable} is set"))?;
    let direct_url = direct_url.context("configure ran")?;
    // The test's own view of the database, and the sandbox gateway's books, bypass the proxy.
    let direct = orderflow_worker::open_database(&direct_url).await?;
    for sku in chaos::SKUS {
        orderflow_client::catalog::set_stock(&direct, &orderflow_domain::Sku::parse(sku)?, 10_000)
            .await?;
    }
    let gateway = SandboxProvider::new(direct.clone(), &app.settings.connection.public_url);
    let board = Arc::new(StatusBoard::start(
        direct.clone(),
        Duration::from_millis(200),
    ));
    let shim = app.serve_http().await;
    let hooks = Webhooks {
        base: shim.base,
        admin: shim.admin,
        http: shim.http,
    };
    let orders = app.orders.clone();
    let give_up = Duration::from_secs(300);
    println!(
        "[{S}] worker, shim and client reach {engine:?} through a proxy on port {}; outage \
         {outage:?}, {per_group} orders per group",
        proxy.port()
    );

    // Before the outage: orders awaiting payment, some already paid at the provider.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut start_now = Vec::new();
    for group in [
        Group::PaidBefore,
        Group::PaidDuring,
        Group::CancelledDuring,
        Group::ExpiresDuring,
    ] {
        for i in 0..per_group {
            let timeout = match group {
                // Deadlines land inside the outage (it starts a few seconds from now).
                Group::ExpiresDuring => {
                    4 + rng.random_range(0..outage.as_secs().saturating_sub(4).max(1) / 2 + 1)
                }
                _ => 3600,
            };
            let lines = random_lines(&mut rng);
            start_now.push((group, unique(&format!("outage-{i}-")), timeout, lines));
        }
    }
    let started = join_all(start_now.iter().map(|(_, key, timeout, lines)| {
        let orders = orders.clone();
        async move { start_order(&orders, key, lines.clone(), *timeout, give_up).await }
    }))
    .await;
    for ((group, _, _, _), id) in start_now.iter().zip(started) {
        groups.insert(id?, *group);
    }
    for id in groups.keys() {
        board
            .wait_for(id, "AWAITING_PAYMENT", give_up, |s| s != "PENDING")
            .await?;
    }
    let mut events: BTreeMap<String, SandboxEvent> = BTreeMap::new();
    for (id, group) in &groups {
        if *group == Group::PaidBefore {
            events.insert(id.clone(), sandbox_pays(&gateway, id).await?);
        }
    }

    // The outage.
    proxy.cut().await;
    let cut_at = Instant::now();
    println!(
        "[{S}] cut: {} live connections dropped",
        proxy.stats().cut.load(std::sync::atomic::Ordering::Relaxed)
    );
    let mut during = JoinSet::new();
    // Providers deliver, and retry, while we are down.
    for (id, group) in &groups {
        if matches!(group, Group::PaidBefore | Group::PaidDuring) {
            let event = match events.get(id) {
                Some(e) => e.clone(),
                None => sandbox_pays(&gateway, id).await?,
            };
            events.insert(id.clone(), event.clone());
            let hooks = hooks.clone();
            let id = id.clone();
            during.spawn(async move {
                let mut codes = Vec::new();
                while cut_at.elapsed() + Duration::from_secs(1) < outage {
                    let sent = Instant::now();
                    let code = hooks.deliver(&event).await;
                    codes.push((code, sent.elapsed()));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                (format!("webhook {id}"), codes)
            });
        }
    }
    // Customers cancel.
    for (id, group) in &groups {
        if *group == Group::CancelledDuring {
            let orders = orders.clone();
            let id = id.clone();
            during.spawn(async move {
                let attempts = cancel(&orders, &id, Duration::from_secs(120))
                    .await
                    .map(|c| (c.attempts, c.refusal))
                    .map_err(|e| e.to_string());
                (
                    format!("cancel {id}: {attempts:?}"),
                    vec![(0, cut_at.elapsed())],
                )
            });
        }
    }
    // New orders arrive (Temporal is up; recording them has to wait).
    let mut started_during = Vec::new();
    for i in 0..per_group {
        let key = unique(&format!("outage-new-{i}-"));
        let id = start_order(&orders, &key, random_lines(&mut rng), 3600, give_up).await?;
        groups.insert(id.clone(), Group::StartedDuring);
        started_during.push(id);
    }
    // Readiness and the orders API while the database is down.
    {
        let hooks = hooks.clone();
        during.spawn(async move {
            let ready = hooks.admin_get("/readyz").await;
            ("readyz".to_owned(), vec![(ready, cut_at.elapsed())])
        });
    }
    {
        let hooks = hooks.clone();
        during.spawn(async move {
            let code = hooks
                .http
                .post(format!("{}/v1/orders", hooks.base))
                .header("Idempotency-Key", unique("outage-api-"))
                .json(&serde_json::json!({
                    "customer_id": "outage",
                    "lines": [{"sku": "MUG-LOGO", "quantity": 1}]
                }))
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            ("api-create".to_owned(), vec![(code, cut_at.elapsed())])
        });
    }
    let mut outage_codes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut slowest_answer = Duration::ZERO;
    let mut notes = Vec::new();
    let (mut ready, mut api_create) = (0, 0);
    while let Some(r) = during.join_next().await {
        let (what, codes) = r?;
        if what == "readyz" {
            ready = codes[0].0;
        } else if what == "api-create" {
            api_create = codes[0].0;
        } else if what.starts_with("webhook") {
            assert!(
                !codes.is_empty(),
                "{what}: no delivery during the outage (make the outage longer)"
            );
            for (code, took) in &codes {
                assert!(
                    !(200..300).contains(code),
                    "{what}: answered {code} during the outage; a provider would not retry"
                );
                *outage_codes.entry(*code).or_default() += 1;
                slowest_answer = slowest_answer.max(*took);
            }
        } else {
            notes.push(what);
        }
    }
    // What an operator sees while it lasts: steps retrying with the database error.
    let mut retrying = Vec::new();
    for id in groups.keys() {
        if let Ok(steps) = orders.pending_steps(id).await {
            retrying.extend(steps);
        }
    }
    retrying.sort_by_key(|s| std::cmp::Reverse(s.attempt));
    tokio::time::sleep(outage.saturating_sub(cut_at.elapsed())).await;
    proxy.restore().await?;
    let restored = Instant::now();
    println!(
        "[{S}] restored after {}: webhooks during the outage answered {outage_codes:?} \
         (slowest answer {}); /readyz {ready}; POST /v1/orders {api_create}",
        secs(cut_at.elapsed().as_millis() as i64),
        secs(slowest_answer.as_millis() as i64)
    );
    println!("[{S}] cancels during the outage: {notes:?}");
    println!(
        "[{S}] pending steps near the end of the outage: {}, max attempt {}, e.g. {:?}",
        retrying.len(),
        retrying.first().map(|s| s.attempt).unwrap_or(0),
        retrying.first().map(|s| format!(
            "{}: {}",
            s.activity,
            s.last_error.clone().unwrap_or_default()
        ))
    );
    assert_eq!(ready, 503, "/readyz with the database down");
    assert_eq!(api_create, 503, "POST /v1/orders with the database down");

    // The shim's pool recovers.
    let start = Instant::now();
    eventually(Duration::from_secs(60), || app.db.ping())
        .await
        .context("the pool behind the proxy did not recover within 60 s")?;
    let pool_back = start.elapsed();

    // Providers retry after the outage until they get a 2xx; orders started during it are paid.
    let mut redelivery_attempts = Vec::new();
    let mut after_codes: BTreeMap<u16, usize> = BTreeMap::new();
    for id in &started_during {
        board
            .wait_for(id, "AWAITING_PAYMENT", give_up, |s| s != "PENDING")
            .await?;
        events.insert(id.clone(), sandbox_pays(&gateway, id).await?);
    }
    for (id, event) in &events {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let code = hooks.deliver(event).await;
            *after_codes.entry(code).or_default() += 1;
            if (200..300).contains(&code) {
                break;
            }
            if restored.elapsed() > give_up {
                bail!("webhook for {id} still answers {code} {give_up:?} after the outage");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        redelivery_attempts.push(attempts);
    }
    let ids: Vec<String> = groups.keys().cloned().collect();
    let expected: BTreeMap<String, String> = groups
        .iter()
        .map(|(id, g)| (id.clone(), g.expected().to_owned()))
        .collect();
    wait_all_final(S, &board, &orders, &expected, give_up).await?;
    let drained = restored.elapsed();
    println!(
        "[{S}] after the outage: pool answered after {}, redeliveries answered {after_codes:?} \
         (attempts per webhook max {}), every order final {} after the restore",
        secs(pool_back.as_millis() as i64),
        redelivery_attempts.iter().max().copied().unwrap_or(0),
        secs(drained.as_millis() as i64)
    );
    println!(
        "[{S}] proxy: {} connections accepted, {} cut",
        proxy
            .stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        proxy.stats().cut.load(std::sync::atomic::Ordering::Relaxed)
    );

    println!("[{S}] orders {} final {:?}", ids.len(), board.counts(&ids));
    let a = verify(S, &direct, &orders, &expected).await?;
    // Every callback recorded once, signalled once.
    let rows = sql!(
        "SELECT event_id, verdict, deliveries FROM webhook_callbacks WHERE event_id IS NOT NULL",
    )
    .on(direct.engine())
    .fetch_all(direct.pool())
    .await?;
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        let verdict: String = r.try_get(1)?;
        *verdicts.entry(verdict).or_default() += 1;
    }
    println!(
        "[{S}] webhook_callbacks: {} events {verdicts:?}; duplicates found: {}",
        rows.len(),
        a.duplicates()
    );
    assert_eq!(rows.len(), events.len(), "one callback row per event");
    assert_eq!(
        verdicts.get("SIGNALLED").copied().unwrap_or(0),
        events.len(),
        "{verdicts:?}"
    );
    direct.close().await;
    Ok(())
}
