//! # Chaos helpers (`tests/tests/chaos.rs`)
//!
//! What the reliability scenarios share: run sizes (`ORDERFLOW_LONG=1` for the full runs), a
//! seeded random source, real processes that can be killed (`orderflow-worker`, a Temporal dev
//! server on a persistent SQLite file), a TCP proxy that can cut the orders database off, a status
//! board that polls the orders table, and the audits that prove nothing happened twice.
//!
//! Processes run under a small `bash` wrapper that kills them if this test process dies, so an
//! interrupted run leaves nothing behind; the tests signal them with the `kill` utility (the
//! workspace forbids `unsafe`, so no `libc::kill`).

pub use crate::unique;
use crate::{Wait, eventually, free_port, fresh_database, temporal_bin, workspace_root};
use anyhow::{Context, bail};
use orderflow_activities::db::{Db, Engine};
use orderflow_activities::inventory;
use orderflow_activities::sql;
use orderflow_client::orders::Orders;
use orderflow_domain::Sku;
use orderflow_worker::{connect_temporal, open_database};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use temporalio_common::protos::constants::LOCAL_ACTIVITY_MARKER_NAME;
use temporalio_common::protos::coresdk::common::extract_local_activity_marker_data;
use temporalio_common::protos::temporal::api::history::v1::History;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------------
// Sizes and randomness

/// `ORDERFLOW_LONG=1`: the full-size runs (500 orders, a 30 s outage, ...), run before resolving.
pub fn long_run() -> bool {
    std::env::var("ORDERFLOW_LONG").as_deref() == Ok("1")
}

/// `small` in the normal suite, `long` with `ORDERFLOW_LONG=1`.
pub fn size<T>(small: T, long: T) -> T {
    if long_run() { long } else { small }
}

pub use crate::invariants::Rng;

/// The scenario's random source, seeded from `ORDERFLOW_CHAOS_SEED` or at random; the seed is
/// printed so a run can be repeated.
pub fn rng_from_env(scenario: &str) -> Rng {
    let seed = crate::invariants::seed_from_env("ORDERFLOW_CHAOS_SEED");
    println!("[{scenario}] seed {seed} (repeat with ORDERFLOW_CHAOS_SEED={seed})");
    crate::invariants::seeded(seed)
}

pub fn now_ms() -> i64 {
    orderflow_activities::db::now_ms()
}

/// A fresh directory for one scenario's files (logs, the server's SQLite file).
pub fn scratch_dir(scenario: &str) -> anyhow::Result<PathBuf> {
    let dir = workspace_root()
        .join("target/chaos")
        .join(unique(&format!("{scenario}-")));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process under a `bash` wrapper that kills it (SIGKILL) when this test process dies.
/// stdout and stderr of the child are appended to `log`.
pub struct Watched {
    name: String,
    pid: u32,
    wrapper: tokio::process::Child,
    exited: Option<std::process::ExitStatus>,
}

const WRAPPER: &str = r#"
"$0" "$@" >>"$CHAOS_LOG" 2>&1 &
c=$!
echo "$c"
( while kill -0 "$CHAOS_PARENT" 2>/dev/null && kill -0 "$c" 2>/dev/null; do sleep 1; done
  kill -9 "$c" 2>/dev/null ) &
w=$!
wait "$c"
s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

impl Watched {
    pub async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Watched> {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg(program)
            .args(args)
            .env("CHAOS_LOG", log)
            .env("CHAOS_PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut wrapper = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let stdout = wrapper.stdout.take().context("the wrapper's stdout")?;
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .with_context(|| format!("{name} did not report its pid"))??;
        let pid: u32 = line
            .trim()
            .parse()
            .with_context(|| format!("{name}: pid line {line:?}"))?;
        Ok(Watched {
            name: name.to_owned(),
            pid,
            wrapper,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` (`KILL`, `TERM`, ...) with the `kill` utility.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .context("running kill")?;
        if !status.success() && self.exited.is_none() {
            bail!("kill -s {signal} {} ({}) failed", self.pid, self.name);
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit; true if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        if self.exited.is_some() {
            return Ok(true);
        }
        match tokio::time::timeout(timeout, self.wrapper.wait()).await {
            Ok(status) => {
                self.exited = Some(status?);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// SIGKILL and wait until it is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.signal("KILL")?;
        if !self.wait_exit(Duration::from_secs(30)).await? {
            bail!("{} (pid {}) survived SIGKILL for 30 s", self.name, self.pid);
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns the signal that ended it.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<&'static str> {
        self.signal("TERM")?;
        if self.wait_exit(grace).await? {
            return Ok("SIGTERM");
        }
        self.kill().await?;
        Ok("SIGKILL")
    }

    /// The exit status, if the process has exited (without waiting).
    pub fn try_exited(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_none()
            && let Ok(Some(status)) = self.wrapper.try_wait()
        {
            self.exited = Some(status);
        }
        self.exited
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.try_exited().is_none() {
            let _ = self.signal("KILL");
        }
    }
}

/// The `orderflow-worker` binary next to this test executable (`target/<profile>/`), built by
/// `cargo build --workspace --all-targets` (scripts/test.sh does that first).
pub fn worker_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/chaos-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not under target/<profile>/deps")?;
    let bin = profile_dir.join("orderflow-worker");
    if !bin.exists() {
        bail!(
            "{} is missing: build it first with `cargo build --workspace --all-targets` \
             (scripts/test.sh does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// How to start `orderflow-worker` processes for one scenario (all settings through the
/// environment, as a deployment would set them).
#[derive(Clone)]
pub struct WorkerSpec {
    pub binary: PathBuf,
    pub envs: Vec<(String, String)>,
    pub log: PathBuf,
}

impl WorkerSpec {
    pub fn new(shop: &Shop, temporal_address: &str, log: PathBuf) -> anyhow::Result<WorkerSpec> {
        let envs = [
            ("TEMPORAL_ADDRESS", temporal_address.to_owned()),
            ("TEMPORAL_NAMESPACE", "default".to_owned()),
            ("DATABASE_URL", shop.database_url.clone()),
            ("ORDERFLOW_TASK_QUEUE", shop.orders.task_queue.clone()),
            ("ORDERFLOW_PUBLIC_URL", shop.orders.public_url.clone()),
            ("ORDERFLOW_SHUTDOWN_GRACE_SECS", "1".to_owned()),
            // The scenarios pay through the sandbox gateway.
            ("ORDERFLOW_SANDBOX", "true".to_owned()),
            // Its own log file: warnings are kept whatever the test's RUST_LOG says.
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(WorkerSpec {
            binary: worker_binary()?,
            envs,
            log,
        })
    }

    pub async fn spawn(&self) -> anyhow::Result<Watched> {
        Watched::spawn("orderflow-worker", &self.binary, &[], &self.envs, &self.log).await
    }
}

/// Waits (polling) until something listens on 127.0.0.1:`port`.
pub async fn wait_port(port: u16, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    orderflow_worker::dev_server::wait_listening(port, timeout).await?;
    Ok(start.elapsed())
}

/// A Temporal dev server of the scenario's own, on a persistent SQLite file, that can be stopped
/// and started again on the same port and file.
pub struct DevServer {
    pub port: u16,
    pub db_file: PathBuf,
    log: PathBuf,
    process: Option<Watched>,
}

impl DevServer {
    pub async fn start(dir: &Path) -> anyhow::Result<DevServer> {
        let mut server = DevServer {
            port: free_port(),
            db_file: dir.join("temporal.db"),
            log: dir.join("temporal.log"),
            process: None,
        };
        server.launch().await?;
        Ok(server)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn args(&self) -> Vec<String> {
        orderflow_worker::dev_server::DevServer::on(self.port)
            .persistent(self.db_file.clone())
            .wal()
            .args()
    }

    /// Starts the server process and waits for its port; returns the time that took.
    async fn launch(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let process = Watched::spawn(
            "temporal dev server",
            &temporal_bin(),
            &self.args(),
            &[],
            &self.log,
        )
        .await?;
        self.process = Some(process);
        wait_port(self.port, Duration::from_secs(60))
            .await
            .with_context(|| format!("the dev server did not start; see {}", self.log.display()))?;
        Ok(started.elapsed())
    }

    /// SIGTERM (SIGKILL after `grace`): returns the signal that stopped it.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<&'static str> {
        let mut process = self.process.take().context("the server is not running")?;
        process.stop(grace).await
    }

    /// SIGKILL at once: a crash.
    pub async fn crash(&mut self) -> anyhow::Result<()> {
        let mut process = self.process.take().context("the server is not running")?;
        process.kill().await
    }

    /// Starts it again on the same port and file; returns how long until it listened.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        if self.process.is_some() {
            bail!("the server is still running");
        }
        self.launch().await
    }
}

// ---------------------------------------------------------------------------------------------
// A shop: a fresh orders database, plenty of stock, a client

/// The SKUs of the demo catalog (`orderflow catalog seed`).
pub const SKUS: [&str; 5] = [
    "TEE-RED-M",
    "MUG-LOGO",
    "HOODIE-BLK-L",
    "STICKER-PACK",
    "FLASH-DEAL",
];

pub struct Shop {
    pub database_url: String,
    /// The test's own handle on the database (direct, never through a chaos proxy).
    pub db: Db,
    pub orders: Orders,
}

impl Shop {
    /// A fresh database (`None` when the engine is not configured here) with the demo catalog
    /// and `stock` units of every SKU, a fresh task queue, and a client of `temporal_address`.
    pub async fn new(
        engine: Engine,
        temporal_address: &str,
        stock: i64,
    ) -> anyhow::Result<Option<Shop>> {
        orderflow_worker::telemetry::init();
        let Some(database_url) = fresh_database(engine).await? else {
            return Ok(None);
        };
        let db = open_database(&database_url.as_str().into()).await?;
        orderflow_client::catalog::seed_demo(&db).await?;
        for sku in SKUS {
            orderflow_client::catalog::set_stock(&db, &Sku::parse(sku)?, stock).await?;
        }
        let client = connect_temporal(Some(temporal_address), Default::default()).await?;
        let orders = Orders {
            client,
            db: db.clone(),
            task_queue: unique("tq-chaos-"),
            public_url: format!("http://127.0.0.1:{}", free_port()),
        };
        Ok(Some(Shop {
            database_url,
            db,
            orders,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Watching orders through the database

pub const FINAL_STATUSES: [&str; 5] = ["PAID", "CLOSED", "CANCELLED", "REJECTED", "REFUNDED"];

pub fn is_final(status: &str) -> bool {
    FINAL_STATUSES.contains(&status)
}

type Statuses = Arc<HashMap<String, String>>;

/// Polls `SELECT order_id, status FROM orders` and shares the latest answer, so hundreds of
/// order tasks wait on one query instead of each polling (a failed poll keeps the last answer).
pub struct StatusBoard {
    rx: watch::Receiver<Statuses>,
    errors: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusBoard {
    pub fn start(db: Db, every: Duration) -> StatusBoard {
        let (tx, rx) = watch::channel(Statuses::default());
        let errors = Arc::new(AtomicU64::new(0));
        let errs = errors.clone();
        let task = tokio::spawn(async move {
            loop {
                match sql!("SELECT order_id, status FROM orders")
                    .on(db.engine())
                    .fetch_all(db.pool())
                    .await
                {
                    Ok(rows) => {
                        let map: HashMap<String, String> = rows
                            .iter()
                            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
                            .collect();
                        if tx.send(Arc::new(map)).is_err() {
                            return;
                        }
                    }
                    Err(_) => {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        StatusBoard { rx, errors, task }
    }

    pub fn snapshot(&self) -> Statuses {
        self.rx.borrow().clone()
    }

    pub fn poll_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Waits until the order's stored status satisfies `done`; returns it.
    pub async fn wait_for(
        &self,
        order_id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let mut rx = self.rx.clone();
        let found = tokio::time::timeout(
            timeout,
            rx.wait_for(|m| m.get(order_id).is_some_and(|s| done(s))),
        )
        .await;
        match found {
            Ok(Ok(m)) => Ok(m.get(order_id).cloned().unwrap_or_default()),
            Ok(Err(_)) => bail!("the status board stopped"),
            Err(_) => bail!(
                "order {order_id} did not reach {what} within {timeout:?} (it is {:?})",
                self.snapshot().get(order_id)
            ),
        }
    }

    /// Waits until every order in `ids` has a final status; returns how long that took.
    pub async fn wait_all_final(&self, ids: &[String], timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.rx.clone();
        let all_final = |m: &Statuses| ids.iter().all(|id| m.get(id).is_some_and(|s| is_final(s)));
        match tokio::time::timeout(timeout, rx.wait_for(all_final)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("the status board stopped"),
            Err(_) => {
                let m = self.snapshot();
                let open: Vec<String> = ids
                    .iter()
                    .filter(|id| !m.get(*id).is_some_and(|s| is_final(s)))
                    .map(|id| format!("{id}: {:?}", m.get(id)))
                    .take(20)
                    .collect();
                bail!("orders not final after {timeout:?} (first 20): {open:#?}")
            }
        }
    }

    /// The orders among `ids` that have no final status yet.
    pub fn open(&self, ids: &[String]) -> Vec<String> {
        let m = self.snapshot();
        ids.iter()
            .filter(|id| !m.get(*id).is_some_and(|s| is_final(s)))
            .cloned()
            .collect()
    }

    /// Counts of each stored status among `ids`.
    pub fn counts(&self, ids: &[String]) -> BTreeMap<String, usize> {
        let m = self.snapshot();
        let mut counts = BTreeMap::new();
        for id in ids {
            let status = m.get(id).cloned().unwrap_or_else(|| "(no row)".to_owned());
            *counts.entry(status).or_default() += 1;
        }
        counts
    }
}

impl Drop for StatusBoard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Audits: nothing happened twice, nothing was lost

/// What the database says after a run. `problems()` lists every violation; empty means clean.
#[derive(Debug, Default)]
pub struct Audit {
    /// Orders with a row, and their statuses.
    pub statuses: BTreeMap<String, String>,
    /// (order, sku, event) with more than one ledger row: a reservation reserved, confirmed or
    /// released twice.
    pub ledger_duplicates: Vec<String>,
    /// (order, sku) both confirmed and released, or settled twice.
    pub settled_twice: Vec<String>,
    /// Sandbox charges that were kept (status PAID).
    pub kept_charges: i64,
    /// Kept charges per payment number above one, or kept charges of orders that are not PAID
    /// (and PAID orders without one).
    pub charge_problems: Vec<String>,
    /// Reservations whose state does not match their order's final status.
    pub reservation_problems: Vec<String>,
    /// `inventory::audit`: rows add up, the ledger sums to them, reservations match.
    pub stock_problems: Vec<String>,
    /// Orders whose status is not the expected one (or that have no row).
    pub status_problems: Vec<String>,
    /// Rows in `orders` that the scenario did not start.
    pub unexpected_orders: Vec<String>,
}

impl Audit {
    /// Duplicated effects (ledger rows, double settlements, extra kept charges).
    pub fn duplicates(&self) -> usize {
        self.ledger_duplicates.len()
            + self.settled_twice.len()
            + self
                .charge_problems
                .iter()
                .filter(|p| p.contains("kept twice"))
                .count()
    }

    pub fn problems(&self) -> Vec<String> {
        [
            &self.ledger_duplicates,
            &self.settled_twice,
            &self.charge_problems,
            &self.reservation_problems,
            &self.stock_problems,
            &self.status_problems,
            &self.unexpected_orders,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    pub fn assert_clean(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "{} problem(s) after the run: {:#?}",
            problems.len(),
            problems.iter().take(50).collect::<Vec<_>>()
        );
    }
}

/// Audits the database against `expected` (order id → expected final status; an entry whose
/// value lists several statuses separated by `|` accepts any of them).
pub async fn audit(db: &Db, expected: &BTreeMap<String, String>) -> anyhow::Result<Audit> {
    let pool = db.pool();
    let mut a = Audit::default();
    for r in sql!("SELECT order_id, status FROM orders")
        .on(pool)
        .fetch_all(pool)
        .await?
    {
        a.statuses.insert(r.try_get(0)?, r.try_get(1)?);
    }
    for (id, want) in expected {
        match a.statuses.get(id) {
            Some(got) if want.split('|').any(|w| w == got) => {}
            got => a
                .status_problems
                .push(format!("{id}: expected {want}, stored {got:?}")),
        }
    }
    for id in a.statuses.keys() {
        if !expected.contains_key(id) {
            a.unexpected_orders.push(format!("{id}: not started by us"));
        }
    }
    for r in sql!(
        "SELECT order_id, sku, event, CAST(COUNT(*) AS BIGINT) FROM inventory_ledger
          WHERE order_id IS NOT NULL GROUP BY order_id, sku, event HAVING COUNT(*) > 1",
    )
    .on(pool)
    .fetch_all(pool)
    .await?
    {
        let (o, s, e, n): (String, String, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        a.ledger_duplicates
            .push(format!("ledger: {e} of {s} for {o} recorded {n} times"));
    }
    for r in sql!(
        "SELECT order_id, sku, CAST(COUNT(*) AS BIGINT) FROM inventory_ledger
          WHERE event IN ('CONFIRM', 'RELEASE') GROUP BY order_id, sku HAVING COUNT(*) > 1",
    )
    .on(pool)
    .fetch_all(pool)
    .await?
    {
        let (o, s, n): (String, String, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        a.settled_twice.push(format!(
            "reservation of {s} for {o} settled {n} times (confirm + release)"
        ));
    }
    for r in sql!(
        "SELECT payment_no, CAST(COUNT(*) AS BIGINT) FROM sandbox_charges
          WHERE status = 'PAID' GROUP BY payment_no HAVING COUNT(*) > 1",
    )
    .on(pool)
    .fetch_all(pool)
    .await?
    {
        let (p, n): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
        a.charge_problems
            .push(format!("charge {p} kept twice ({n} PAID charges)"));
    }
    a.kept_charges =
        sql!("SELECT CAST(COUNT(*) AS BIGINT) FROM sandbox_charges WHERE status = 'PAID'")
            .on(pool)
            .fetch_one(pool)
            .await?
            .try_get(0)?;
    for r in sql!(
        "SELECT p.order_id, c.payment_no, c.status, o.status
           FROM sandbox_charges c
           JOIN payments p ON p.payment_no = c.payment_no
           JOIN orders o ON o.order_id = p.order_id",
    )
    .on(pool)
    .fetch_all(pool)
    .await?
    {
        let (order, payment, charge, status): (String, String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let kept = charge == "PAID";
        if kept != (status == "PAID") && is_final(&status) {
            a.charge_problems.push(format!(
                "order {order} is {status} but its charge {payment} is {charge}"
            ));
        }
    }
    for r in sql!(
        "SELECT r.order_id, r.sku, r.state, o.status
           FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id",
    )
    .on(pool)
    .fetch_all(pool)
    .await?
    {
        let (order, sku, state, status): (String, String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let want = match status.as_str() {
            "PAID" => "CONFIRMED",
            "CLOSED" | "CANCELLED" | "REJECTED" | "REFUNDED" => "RELEASED",
            _ => continue,
        };
        if state != want {
            a.reservation_problems.push(format!(
                "order {order} is {status} but its reservation of {sku} is {state}"
            ));
        }
    }
    a.stock_problems = inventory::audit(db).await?;
    Ok(a)
}

/// Temporal's side of a run, from the workflow histories.
#[derive(Debug, Default)]
pub struct HistoryStats {
    pub workflows: usize,
    /// Steps run as regular activities / recorded as local activities (markers).
    pub activities: usize,
    pub local_activities: usize,
    /// Attempts beyond the first (failed or timed-out attempts that were retried), regular and
    /// local activities together.
    pub activity_retries: i64,
    /// Retries per activity type.
    pub retries_by_activity: BTreeMap<String, i64>,
    pub max_attempt: i64,
    /// Workflow tasks that timed out (a worker died holding them) or failed.
    pub workflow_task_timeouts: usize,
    pub workflow_task_failures: usize,
    /// Why workflow tasks failed (cause and the start of the message), with counts.
    pub task_failure_causes: BTreeMap<String, usize>,
    /// Orders whose history shows more than one worker process.
    pub orders_on_several_workers: usize,
    /// Distinct worker identities seen.
    pub worker_identities: usize,
    /// Histories that could not be read (with the reason).
    pub unreadable: Vec<String>,
}

impl HistoryStats {
    fn attempt(&mut self, activity: String, attempt: i64) {
        self.max_attempt = self.max_attempt.max(attempt);
        if attempt > 1 {
            self.activity_retries += attempt - 1;
            *self.retries_by_activity.entry(activity).or_default() += attempt - 1;
        }
    }

    /// Adds one workflow history; returns the worker identities that worked on it.
    pub fn add(&mut self, history: &History) -> BTreeSet<String> {
        self.workflows += 1;
        let mut activity_types: HashMap<i64, String> = HashMap::new();
        let mut workers = BTreeSet::new();
        for event in &history.events {
            match &event.attributes {
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    let name = a.activity_type.as_ref().map(|t| t.name.clone());
                    activity_types.insert(event.event_id, name.unwrap_or_default());
                }
                Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
                    self.activities += 1;
                    let name = activity_types
                        .get(&a.scheduled_event_id)
                        .cloned()
                        .unwrap_or_default();
                    self.attempt(name, i64::from(a.attempt));
                    workers.insert(a.identity.clone());
                }
                Some(Attributes::MarkerRecordedEventAttributes(m))
                    if m.marker_name == LOCAL_ACTIVITY_MARKER_NAME =>
                {
                    self.local_activities += 1;
                    if let Some(data) = extract_local_activity_marker_data(&m.details) {
                        self.attempt(data.activity_type, i64::from(data.attempt));
                    }
                }
                Some(Attributes::WorkflowTaskStartedEventAttributes(a)) => {
                    workers.insert(a.identity.clone());
                }
                Some(Attributes::WorkflowTaskTimedOutEventAttributes(_)) => {
                    self.workflow_task_timeouts += 1;
                }
                Some(Attributes::WorkflowTaskFailedEventAttributes(a)) => {
                    self.workflow_task_failures += 1;
                    let msg = a.failure.as_ref().map(|f| f.message.clone());
                    let cause = format!(
                        "{:?}: {}",
                        a.cause(),
                        msg.unwrap_or_default()
                            .chars()
                            .take(160)
                            .collect::<String>()
                    );
                    *self.task_failure_causes.entry(cause).or_default() += 1;
                }
                _ => {}
            }
        }
        workers.retain(|w| !w.is_empty());
        if workers.len() > 1 {
            self.orders_on_several_workers += 1;
        }
        workers
    }
}

/// Reads every order's history (a few at a time) and counts retries and worker hand-overs.
pub async fn history_stats(orders: &Orders, ids: &[String]) -> HistoryStats {
    use futures::StreamExt;
    let histories: Vec<(String, Result<Vec<u8>, String>)> =
        futures::stream::iter(ids.iter().cloned().map(|id| {
            let orders = orders.clone();
            async move {
                let h = orders.export_history(&id).await.map_err(|e| e.to_string());
                (id, h)
            }
        }))
        .buffer_unordered(16)
        .collect()
        .await;
    let mut stats = HistoryStats::default();
    let mut identities = BTreeSet::new();
    for (id, bytes) in histories {
        match bytes.and_then(|b| {
            serde_json::from_slice::<History>(&b).map_err(|e| format!("history JSON: {e}"))
        }) {
            Ok(history) => identities.extend(stats.add(&history)),
            Err(e) => stats.unreadable.push(format!("{id}: {e}")),
        }
    }
    stats.worker_identities = identities.len();
    stats
}

/// What Temporal knows about orders that did not finish: the history's last events, failed
/// workflow tasks and their messages, pending steps. For the failure message of a scenario.
pub async fn diagnose(orders: &Orders, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let mut line = format!("{id}:");
        match orders
            .export_history(id)
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<History>(&b).map_err(|e| e.to_string()))
        {
            Ok(history) => {
                let n = history.events.len();
                let tail: Vec<String> = history.events[n.saturating_sub(6)..]
                    .iter()
                    .map(|e| format!("{:?}", e.event_type()))
                    .collect();
                line.push_str(&format!(" {n} events, last {tail:?}"));
                for e in &history.events {
                    match &e.attributes {
                        Some(Attributes::WorkflowTaskFailedEventAttributes(a)) => {
                            let msg = a.failure.as_ref().map(|f| f.message.clone());
                            line.push_str(&format!(
                                "; task failed at event {} ({:?}): {}",
                                e.event_id,
                                a.cause(),
                                msg.unwrap_or_default()
                                    .chars()
                                    .take(300)
                                    .collect::<String>()
                            ));
                        }
                        Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) => {
                            let msg = a.failure.as_ref().map(|f| f.message.clone());
                            line.push_str(&format!(
                                "; workflow failed: {}",
                                msg.unwrap_or_default()
                                    .chars()
                                    .take(300)
                                    .collect::<String>()
                            ));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => line.push_str(&format!(" no history: {e}")),
        }
        if let Ok(steps) = orders.pending_steps(id).await {
            for s in steps {
                line.push_str(&format!(
                    "; pending {} attempt {}: {}",
                    s.activity,
                    s.attempt,
                    s.last_error.unwrap_or_default()
                ));
            }
        }
        out.push(line);
    }
    out
}

/// Every order's workflow has finished, and its result agrees with the stored status. Returns
/// the problems found.
pub async fn check_workflow_results(orders: &Orders, ids: &[String]) -> Vec<String> {
    use futures::StreamExt;
    let results: Vec<(String, Result<String, String>)> =
        futures::stream::iter(ids.iter().cloned().map(|id| {
            let orders = orders.clone();
            async move {
                let outcome = tokio::time::timeout(Duration::from_secs(60), orders.outcome(&id))
                    .await
                    .map_err(|_| "no result within 60 s".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map(|o| o.status.as_str().to_owned());
                (id, outcome)
            }
        }))
        .buffer_unordered(16)
        .collect()
        .await;
    let stored: HashMap<String, String> = match sql!("SELECT order_id, status FROM orders")
        .on(orders.db.pool())
        .fetch_all(orders.db.pool())
        .await
    {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect(),
        Err(e) => return vec![format!("reading orders: {e}")],
    };
    let mut problems = Vec::new();
    for (id, result) in results {
        match result {
            Ok(status) if stored.get(&id) == Some(&status) => {}
            Ok(status) => problems.push(format!(
                "{id}: workflow result {status}, stored {:?}",
                stored.get(&id)
            )),
            Err(e) => problems.push(format!("{id}: {e}")),
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can cut a database off

/// Forwards 127.0.0.1:`port` to an upstream address. [`TcpProxy::cut`] drops every live
/// connection and stops listening (new connections are refused); [`TcpProxy::restore`] listens
/// on the same port again.
pub struct TcpProxy {
    port: u16,
    up: watch::Sender<bool>,
    stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct ProxyStats {
    pub accepted: AtomicU64,
    pub cut: AtomicU64,
    pub upstream_failures: AtomicU64,
}

impl TcpProxy {
    pub async fn start(upstream: String) -> anyhow::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (up, up_rx) = watch::channel(true);
        let stats = Arc::new(ProxyStats::default());
        let task = tokio::spawn(proxy_loop(listener, port, upstream, up_rx, stats.clone()));
        Ok(TcpProxy {
            port,
            up,
            stats,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// Drops every live connection and refuses new ones until [`TcpProxy::restore`].
    pub async fn cut(&self) {
        self.up.send_replace(false);
        // The accept loop has closed its listener once it answers connections with a refusal.
        let wait = Wait::up_to(Duration::from_secs(5)).every(Duration::from_millis(20));
        let _ = eventually(wait, || async {
            match TcpStream::connect(("127.0.0.1", self.port)).await {
                Ok(_) => Err(()),
                Err(_) => Ok(()),
            }
        })
        .await;
    }

    pub async fn restore(&self) -> anyhow::Result<()> {
        self.up.send_replace(true);
        wait_port(self.port, Duration::from_secs(10)).await?;
        Ok(())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.up.send_replace(false);
        self.task.abort();
    }
}

async fn proxy_loop(
    first: TcpListener,
    port: u16,
    upstream: String,
    mut up: watch::Receiver<bool>,
    stats: Arc<ProxyStats>,
) {
    let mut listener = Some(first);
    loop {
        let current = match listener.take() {
            Some(l) => l,
            None => {
                if up.wait_for(|u| *u).await.is_err() {
                    return;
                }
                match TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("proxy: cannot listen on {port} again: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
        };
        let mut down = up.clone();
        loop {
            tokio::select! {
                accepted = current.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(forward(client, upstream.clone(), up.clone(), stats.clone()));
                }
                changed = down.wait_for(|u| !*u) => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
        // Listener dropped here: connections are refused until the proxy is restored.
        drop(current);
    }
}

async fn forward(
    mut client: TcpStream,
    upstream: String,
    mut up: watch::Receiver<bool>,
    stats: Arc<ProxyStats>,
) {
    let mut server = match TcpStream::connect(&upstream).await {
        Ok(s) => s,
        Err(_) => {
            stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|u| !*u) => {
            stats.cut.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Both sockets are dropped (closed) here.
}

/// `host:port` of a postgres:// or mysql:// URL.
pub fn url_host_port(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url)?;
    let default_port = if parsed.scheme() == "mysql" {
        3306
    } else {
        5432
    };
    Ok(format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(default_port)
    ))
}

/// The same URL pointing at 127.0.0.1:`port`.
pub fn url_via(url: &str, port: u16) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url)?;
    parsed
        .set_host(Some("127.0.0.1"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    parsed
        .set_port(Some(port))
        .map_err(|_| anyhow::anyhow!("cannot set a port on {url}"))?;
    Ok(parsed.to_string())
}

/// Milliseconds as seconds with one decimal, for figures (no float arithmetic).
pub fn secs(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{}s", ms / 1000, (ms % 1000) / 100)
}

/// The `p`-th percentile (0..=100) of `values` in ms, through an HDR histogram (3 significant
/// digits, finer than the tenth of a second [`secs`] prints). A negative value counts as 0.
pub fn percentile(values: &[i64], p: u8) -> Option<i64> {
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits");
    for v in values {
        let ms = u64::try_from(*v).unwrap_or(0);
        histogram.record(ms).expect("the histogram grows as needed");
    }
    (!histogram.is_empty())
        .then(|| i64::try_from(histogram.value_at_percentile(f64::from(p))).unwrap_or(i64::MAX))
}
