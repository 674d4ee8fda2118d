//! What the reliability tests share: the one inventory check (used by the sampler of real runs and
//! of the deliberately broken run alike, so a check that cannot fail would show), the sampler that
//! applies it every few milliseconds while orders run, the ledger check, and the seeded, sized run
//! settings (`ORDERFLOW_SEED`, `ORDERFLOW_LONG`).

use orderflow_activities::db::Db;
use orderflow_activities::sql;
use sqlx::Row;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// `sqlite`, `postgres` or `mysql`: the module `on_every_engine!` puts a test in.
pub fn engine_name(engine: crate::Engine) -> &'static str {
    engine.name()
}

/// `ORDERFLOW_LONG=1`: the full-size runs, run before resolving a reliability issue.
pub fn long_run() -> bool {
    std::env::var("ORDERFLOW_LONG").as_deref() == Ok("1")
}

/// `default` in the normal suite, `long` with `ORDERFLOW_LONG=1`.
pub fn sized(default: usize, long: usize) -> usize {
    if long_run() { long } else { default }
}

/// The seed of a randomised test: `ORDERFLOW_SEED` (decimal or `0x` hex) when set, otherwise a
/// random one. Printed at once, with the command that replays it.
#[derive(Debug, Clone)]
pub struct Seed {
    pub value: u64,
    /// `cargo test` filter of the test (`sqlite::name`), for the command line.
    pub test: String,
    pub test_file: String,
}

impl Seed {
    pub fn pick(test_file: &str, test: &str) -> Seed {
        let value = seed_from_env("ORDERFLOW_SEED");
        let seed = Seed {
            value,
            test: test.to_owned(),
            test_file: test_file.to_owned(),
        };
        eprintln!("{test}: seed {value} (replay: {})", seed.reproduce());
        seed
    }

    /// The exact command that runs this test again with this seed and size.
    pub fn reproduce(&self) -> String {
        let long = if long_run() { " ORDERFLOW_LONG=1" } else { "" };
        let pg = if self.test.starts_with("postgres") {
            " TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
        } else {
            ""
        };
        // Knobs that change what runs, passed on as they were set.
        let knobs: String = ["ORDERFLOW_SCENARIO"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| format!(" {k}={v}")))
            .collect();
        format!(
            "ORDERFLOW_SEED={}{long}{knobs}{pg} scripts/test.sh -p orderflow-tests --test {} {} -- --exact --nocapture",
            self.value, self.test_file, self.test
        )
    }

    pub fn rng(&self) -> Rng {
        seeded(self.value)
    }

    /// Prints the seed and the replay command again if the test panics after this point.
    pub fn guard(&self) -> SeedGuard {
        SeedGuard(self.clone())
    }
}

pub struct SeedGuard(Seed);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} FAILED with seed {}; replay with:\n  {}",
                self.0.test,
                self.0.value,
                self.0.reproduce()
            );
        }
    }
}

/// The seed that `var` holds (decimal or `0x` hex; anything else fails the test), or a fresh
/// random one. The caller prints it, so any run can be repeated.
pub fn seed_from_env(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(text) => parse_seed(&text)
            .unwrap_or_else(|| panic!("{var}={text:?} is not a u64 (decimal or 0x hex)")),
        Err(_) => rand::random(),
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The tests' random source: `rand`'s `StdRng`, the same sequence for the same seed with this
/// lockfile (a `rand` upgrade may change the sequence, not the replay of a seed it prints).
pub type Rng = rand::rngs::StdRng;

/// The one way a test seeds its randomness.
pub fn seeded(seed: u64) -> Rng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// One SKU as a single statement sees it: the inventory row and what its reservations hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventorySample {
    pub sku: String,
    pub total: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    /// Units of this SKU handed to orders and not yet confirmed or released.
    pub granted_reserved: i64,
    /// Units of this SKU handed to orders and confirmed as sold.
    pub granted_sold: i64,
}

/// Every inventory row with the quantities of its `RESERVED` and `CONFIRMED` reservations, in one
/// statement, so it is one consistent snapshot on every engine (stock and reservations move in
/// the same transaction).
pub async fn read_inventory(db: &Db) -> Result<Vec<InventorySample>, sqlx::Error> {
    let rows = sql!(
        "SELECT i.sku, i.total, i.available, i.reserved, i.sold,
                CAST(COALESCE((SELECT SUM(r.quantity) FROM stock_reservations r
                                WHERE r.sku = i.sku AND r.state = 'RESERVED'), 0) AS BIGINT),
                CAST(COALESCE((SELECT SUM(r.quantity) FROM stock_reservations r
                                WHERE r.sku = i.sku AND r.state = 'CONFIRMED'), 0) AS BIGINT)
           FROM inventory i ORDER BY i.sku",
    )
    .on(db.engine())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(InventorySample {
                sku: r.try_get(0)?,
                total: r.try_get(1)?,
                available: r.try_get(2)?,
                reserved: r.try_get(3)?,
                sold: r.try_get(4)?,
                granted_reserved: r.try_get(5)?,
                granted_sold: r.try_get(6)?,
            })
        })
        .collect()
}

/// THE inventory check, for real and naive runs alike. Per SKU: nothing negative,
/// `available + reserved + sold == total`, the units handed to orders are exactly the row's
/// `reserved` and `sold` (a lost update shows here even when the row itself adds up), and never
/// more units handed out than there are. One line per problem; empty when all holds.
pub fn check_inventory(samples: &[InventorySample]) -> Vec<String> {
    let mut problems = Vec::new();
    for s in samples {
        let row = format!(
            "total={} available={} reserved={} sold={}",
            s.total, s.available, s.reserved, s.sold
        );
        if s.total < 0 || s.available < 0 || s.reserved < 0 || s.sold < 0 {
            problems.push(format!("{}: negative stock: {row}", s.sku));
        }
        if s.available + s.reserved + s.sold != s.total {
            problems.push(format!(
                "{}: available + reserved + sold = {} != total: {row}",
                s.sku,
                s.available + s.reserved + s.sold
            ));
        }
        if (s.granted_reserved, s.granted_sold) != (s.reserved, s.sold) {
            problems.push(format!(
                "{}: orders hold reserved={} sold={} but the row says {row}",
                s.sku, s.granted_reserved, s.granted_sold
            ));
        }
        let granted = s.granted_reserved + s.granted_sold;
        if granted > s.total {
            problems.push(format!(
                "{}: oversold: {granted} units handed to orders, {} in stock",
                s.sku, s.total
            ));
        }
    }
    problems
}

/// What a [`Sampler`] saw.
#[derive(Debug, Clone, Default)]
pub struct SamplerReport {
    pub samples: u64,
    /// Samples with at least one problem.
    pub violations: u64,
    /// The first problems seen (at most 20), with the sample number.
    pub first_problems: Vec<String>,
    /// Reads that failed (not counted as samples).
    pub read_errors: u64,
    pub last_read_error: Option<String>,
}

impl std::fmt::Display for SamplerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "samples: {}, violations: {}, read errors: {}",
            self.samples, self.violations, self.read_errors
        )
    }
}

/// Reads every inventory row every `every` on its own connection pool and runs
/// [`check_inventory`] on each sample until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<SamplerReport>,
}

impl Sampler {
    pub async fn start(database_url: &str, every: Duration) -> Sampler {
        let db = Db::connect(database_url)
            .await
            .expect("the sampler connects to the database");
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let stop = stop.clone();
            let samples = samples.clone();
            async move {
                let mut report = SamplerReport::default();
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    match read_inventory(&db).await {
                        Ok(rows) => {
                            report.samples += 1;
                            let problems = check_inventory(&rows);
                            if !problems.is_empty() {
                                report.violations += 1;
                                for p in problems {
                                    if report.first_problems.len() < 20 {
                                        report
                                            .first_problems
                                            .push(format!("sample {}: {p}", report.samples));
                                    }
                                }
                            }
                            samples.store(report.samples, Ordering::SeqCst);
                        }
                        Err(e) => {
                            report.read_errors += 1;
                            report.last_read_error = Some(e.to_string());
                        }
                    }
                }
                db.close().await;
                report
            }
        });
        Sampler {
            stop,
            samples,
            task,
        }
    }

    /// Samples taken so far.
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` more samples than now have been taken (up to 30 s).
    pub async fn wait_for_more(&self, n: u64) {
        let target = self.samples() + n;
        let wait = crate::Wait::up_to(Duration::from_secs(30)).every(Duration::from_millis(5));
        crate::eventually(wait, || async {
            (self.samples() >= target).then_some(()).ok_or(())
        })
        .await
        .unwrap_or_else(|()| panic!("the sampler took no sample for 30 s"));
    }

    pub async fn stop(self) -> SamplerReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the sampler task")
    }
}

/// Every reservation moves at most once: per (order, SKU) the ledger holds one `RESERVE` and at
/// most one `CONFIRM` or `RELEASE` (never both, never twice), in agreement with the reservation
/// row's state, and no stock movement belongs to no reservation. `settled`: also require every reservation
/// to be confirmed or released (no order is still open).
pub async fn check_reservations(db: &Db, settled: bool) -> Result<Vec<String>, sqlx::Error> {
    use std::collections::BTreeMap;
    // (RESERVE, CONFIRM, RELEASE) movements per (order, SKU), in one pass over the ledger.
    let mut ledger: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    let rows = sql!(
        "SELECT order_id, sku,
                CAST(SUM(CASE WHEN event = 'RESERVE' THEN 1 ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN event = 'CONFIRM' THEN 1 ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN event = 'RELEASE' THEN 1 ELSE 0 END) AS BIGINT)
           FROM inventory_ledger WHERE order_id IS NOT NULL GROUP BY order_id, sku",
    )
    .on(db.engine())
    .fetch_all(db.pool())
    .await?;
    for r in rows {
        ledger.insert(
            (r.try_get(0)?, r.try_get(1)?),
            (r.try_get(2)?, r.try_get(3)?, r.try_get(4)?),
        );
    }
    let rows = sql!("SELECT order_id, sku, state FROM stock_reservations")
        .on(db.engine())
        .fetch_all(db.pool())
        .await?;
    let mut problems = Vec::new();
    for r in rows {
        let (order, sku, state): (String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let (reserve, confirm, release) = ledger
            .remove(&(order.clone(), sku.clone()))
            .unwrap_or_default();
        let expected = match state.as_str() {
            "RESERVED" => (1, 0, 0),
            "CONFIRMED" => (1, 1, 0),
            "RELEASED" => (1, 0, 1),
            _ => (-1, -1, -1),
        };
        if (reserve, confirm, release) != expected {
            problems.push(format!(
                "reservation {order}/{sku} is {state} but the ledger has RESERVE x{reserve}, \
                 CONFIRM x{confirm}, RELEASE x{release}"
            ));
        }
        if settled && state == "RESERVED" {
            problems.push(format!(
                "reservation {order}/{sku} is still RESERVED after every order ended"
            ));
        }
    }
    for ((order, sku), moves) in ledger {
        problems.push(format!(
            "the ledger moves {sku} for {order} (RESERVE, CONFIRM, RELEASE = {moves:?}) \
             without a reservation"
        ));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(total: i64, a: i64, r: i64, s: i64, gr: i64, gs: i64) -> InventorySample {
        InventorySample {
            sku: "X".into(),
            total,
            available: a,
            reserved: r,
            sold: s,
            granted_reserved: gr,
            granted_sold: gs,
        }
    }

    #[test]
    fn the_check_passes_a_consistent_row_and_fails_each_kind_of_wrong_one() {
        assert!(check_inventory(&[sample(10, 5, 3, 2, 3, 2)]).is_empty());
        // Row does not add up.
        assert!(!check_inventory(&[sample(10, 5, 3, 3, 3, 3)]).is_empty());
        // Negative.
        assert!(!check_inventory(&[sample(10, 11, -1, 0, -1, 0)]).is_empty());
        // A lost update: the row adds up, the orders hold more than it says.
        let lost = check_inventory(&[sample(10, 9, 1, 0, 12, 0)]);
        assert!(lost.iter().any(|p| p.contains("oversold")), "{lost:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        use rand::Rng as _;
        let draw = |seed| {
            let mut rng = seeded(seed);
            (0..100)
                .map(|_| rng.random_range(1..=6))
                .collect::<Vec<u64>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert_eq!(parse_seed("0x10"), Some(16));
        assert_eq!(parse_seed("16"), Some(16));
    }
}
