//! Hot SKUs under concurrency, watched while it happens — on SQLite and on PostgreSQL.
//!
//! Orders with random quantities (seeded) race for a few SKUs whose stock is below demand, many
//! at a time, while a sampler reads every inventory row (with what the reservations hold) every
//! 10 ms and runs [`check_inventory`] on each sample: `available + reserved + sold == total`,
//! nothing negative, and no more units handed to orders than the row accounts for, at every
//! sample. At the end exactly as many units are sold as the stock allowed.
//!
//! The same check, run by the same sampler over a deliberately naive read-then-write reservation
//! (written here, in the test only), reports the oversell: the check can fail.
//!
//! Size: 200 orders; `ORDERFLOW_LONG=1` runs 2,000. Seed: `ORDERFLOW_SEED`, else printed.

use futures::StreamExt;
use futures::future::join_all;
use orderflow_activities::db::Db;
use orderflow_activities::sql;
use orderflow_client::orders::NewOrder;
use orderflow_domain::OrderStatus;
use orderflow_tests::invariants::{
    self, Sampler, Seed, check_inventory, check_reservations, engine_name, read_inventory,
};
use orderflow_tests::{TestApp, on_every_engine};
use rand::Rng as _;
use rand::seq::IndexedRandom;
use sqlx::Row;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The hot SKUs and their stock as a share of the demand drawn for them (percent): every one of
/// them sells out, at different rates.
const HOT: [(&str, i64); 3] = [("FLASH-DEAL", 50), ("HOODIE-BLK-L", 70), ("MUG-LOGO", 90)];
/// Largest quantity of one order.
const MAX_QUANTITY: u64 = 4;
/// Orders in progress at once.
const IN_FLIGHT: usize = 64;
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

on_every_engine!(
    hot_skus_never_oversell_under_concurrency,
    a_naive_read_then_write_reservation_is_caught,
);

#[derive(Debug)]
struct Placed {
    sku: &'static str,
    quantity: i64,
    order_id: String,
    status: OrderStatus,
    reason: Option<String>,
}

async fn hot_skus_never_oversell_under_concurrency(app: TestApp) {
    let seed = Seed::pick(
        "hot_sku_sampler",
        &format!(
            "{}::hot_skus_never_oversell_under_concurrency",
            engine_name(app.engine)
        ),
    );
    let _replay_on_failure = seed.guard();
    let orders = invariants::sized(200, 2000);
    let mut rng = seed.rng();
    let drawn: Vec<(&'static str, i64)> = (0..orders)
        .map(|_| {
            let sku = HOT.choose(&mut rng).expect("not empty").0;
            (sku, rng.random_range(1..=MAX_QUANTITY) as i64)
        })
        .collect();
    let mut stock: BTreeMap<&'static str, i64> = BTreeMap::new();
    for (sku, percent) in HOT {
        let demand: i64 = drawn
            .iter()
            .filter(|(s, _)| *s == sku)
            .map(|(_, q)| q)
            .sum();
        let total = (demand * percent / 100).max(1);
        app.set_stock(sku, total).await;
        stock.insert(sku, total);
    }

    let sampler = Sampler::start(
        app.settings.connection.database_url.expose_secret(),
        SAMPLE_EVERY,
    )
    .await;
    let started = Instant::now();
    let tq = app.settings.connection.task_queue.clone();
    let placed: Vec<Placed> = futures::stream::iter(drawn.iter().copied().enumerate())
        .map(|(i, (sku, quantity))| {
            let orders = app.orders.clone();
            let key = format!("hot-{i}-{tq}");
            async move {
                let (id, _) = orders
                    .start(&NewOrder {
                        client: orderflow_client::orders::cli_client(),
                        idempotency_key: key,
                        customer_id: format!("buyer-{i}"),
                        lines: vec![(sku.to_owned(), quantity)],
                        provider: "sandbox".into(),
                        // Long enough that no order times out: all stock that is reserved is paid.
                        payment_timeout_secs: Some(900),
                        coupon_code: None,
                    })
                    .await
                    .expect("order starts");
                let id = id.to_string();
                let ready = orders
                    .wait_ready(&id, Duration::from_secs(300))
                    .await
                    .expect("order leaves PENDING");
                if ready.status == Some(OrderStatus::AwaitingPayment) {
                    orders.pay_sandbox(&id, None, 1).await.expect("pay");
                }
                let done = orders
                    .wait_final(&id, Duration::from_secs(300))
                    .await
                    .expect("order reaches a final status");
                Placed {
                    sku,
                    quantity,
                    order_id: id,
                    status: done.status.expect("status"),
                    reason: done.reason,
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let report = sampler.stop().await;

    let end = read_inventory(&app.db).await.expect("read inventory");
    let mut problems: Vec<String> = check_inventory(&end);
    let mut statuses: BTreeMap<OrderStatus, usize> = BTreeMap::new();
    for p in &placed {
        *statuses.entry(p.status).or_default() += 1;
        match p.status {
            OrderStatus::Paid => {}
            OrderStatus::Rejected
                if p.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("OUT_OF_STOCK")) => {}
            other => problems.push(format!(
                "order {} ({} x{}) ended {other}: {:?}",
                p.order_id, p.sku, p.quantity, p.reason
            )),
        }
    }
    eprintln!(
        "{} orders ({IN_FLIGHT} at a time) in {:.1?}: {statuses:?}",
        placed.len(),
        elapsed
    );
    eprintln!("{report}");
    for (sku, total) in &stock {
        let row = end
            .iter()
            .find(|r| r.sku == *sku)
            .expect("the hot SKU has a row");
        let mine = placed.iter().filter(|p| p.sku == *sku);
        let demand: i64 = mine.clone().map(|p| p.quantity).sum();
        let paid: i64 = mine
            .clone()
            .filter(|p| p.status == OrderStatus::Paid)
            .map(|p| p.quantity)
            .sum();
        let smallest_refused = mine
            .clone()
            .filter(|p| p.status == OrderStatus::Rejected)
            .map(|p| p.quantity)
            .min();
        eprintln!(
            "{sku}: stock {total}, demand {demand}, sold {} (paid orders hold {paid}), left {}, \
             smallest refused order {smallest_refused:?}",
            row.sold, row.available
        );
        if row.total != *total || row.reserved != 0 || row.sold != paid {
            problems.push(format!(
                "{sku}: expected total {total}, nothing reserved, sold {paid} (the paid orders' \
                 units); the row is {row:?}"
            ));
        }
        // Stock only went down during the run (every reservation was paid), so an order refused
        // for want of stock needed more than what is left now. Otherwise stock was refused that
        // was there: sold < what the stock allowed.
        match smallest_refused {
            Some(q) if q > row.available => {}
            Some(q) => problems.push(format!(
                "{sku}: an order for {q} was refused as out of stock, yet {} units are left",
                row.available
            )),
            None => problems.push(format!(
                "{sku}: demand {demand} exceeded stock {total} but no order was refused"
            )),
        }
    }
    problems.extend(check_reservations(&app.db, true).await.expect("ledger"));
    let paid_orders = statuses.get(&OrderStatus::Paid).copied().unwrap_or(0) as i64;
    let kept = app.count("sandbox_charges WHERE status = 'PAID'").await;
    if kept != paid_orders {
        problems.push(format!(
            "{kept} charges kept at the sandbox for {paid_orders} paid orders"
        ));
    }
    assert!(
        report.samples > 0 && report.violations == 0,
        "seed {}: the sampler saw the invariants broken ({report}): {:#?}\nreplay: {}",
        seed.value,
        report.first_problems,
        seed.reproduce()
    );
    assert!(
        problems.is_empty(),
        "seed {}: {problems:#?}\nreplay: {}",
        seed.value,
        seed.reproduce()
    );
    app.assert_stock_invariants().await;
}

/// A read-then-write reservation, the bug `inventory::reserve` is written to avoid: read the
/// row, decide, then write the numbers computed from what was read. Every writer keeps the row
/// adding up (so the database's CHECK lets it through), but each overwrites the others' work:
/// units are handed out that the row no longer accounts for. The barrier makes every buyer of a
/// wave read before any of them writes — the window a real race leaves open, made certain.
async fn naive_reserve(
    db: &Db,
    order_id: &str,
    sku: &str,
    quantity: i64,
    all_read: &tokio::sync::Barrier,
) -> bool {
    let row = sql!("SELECT available, reserved FROM inventory WHERE sku = $1")
        .on(db.engine())
        .bind(sku)
        .fetch_one(db.pool())
        .await
        .expect("read the row");
    let (available, reserved): (i64, i64) = (row.get(0), row.get(1));
    all_read.wait().await;
    if available < quantity {
        return false;
    }
    let mut tx = db.begin_write().await.expect("begin");
    sql!("UPDATE inventory SET available = $2, reserved = $3 WHERE sku = $1")
        .on(&*tx)
        .bind(sku)
        .bind(available - quantity)
        .bind(reserved + quantity)
        .execute(&mut *tx)
        .await
        .expect("the row still adds up, so the write is accepted");
    sql!(
        "INSERT INTO stock_reservations (order_id, sku, quantity, state, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, 'RESERVED', 0, 0)",
    ).on(&*tx)
    .bind(order_id)
    .bind(sku)
    .bind(quantity)
    .execute(&mut *tx)
    .await
    .expect("record the reservation");
    tx.commit().await.expect("commit");
    true
}

async fn a_naive_read_then_write_reservation_is_caught(app: TestApp) {
    const SKU: &str = "FLASH-DEAL";
    const STOCK: i64 = 10;
    // More buyers of one unit in a wave than there is stock: one wave alone oversells.
    const BUYERS: usize = 12;
    const WAVES: usize = 3;
    app.set_stock(SKU, STOCK).await;
    let sampler = Sampler::start(
        app.settings.connection.database_url.expose_secret(),
        SAMPLE_EVERY,
    )
    .await;
    assert!(
        check_inventory(&read_inventory(&app.db).await.unwrap()).is_empty(),
        "the fresh database starts consistent"
    );
    sampler.wait_for_more(2).await;
    let mut granted = 0;
    for wave in 0..WAVES {
        let all_read = Arc::new(tokio::sync::Barrier::new(BUYERS));
        let buyers = (0..BUYERS).map(|b| {
            let db = app.db.clone();
            let all_read = all_read.clone();
            async move { naive_reserve(&db, &format!("naive-{wave}-{b}"), SKU, 1, &all_read).await }
        });
        granted += join_all(buyers).await.into_iter().filter(|ok| *ok).count() as i64;
        // Let the sampler look at the result of this wave before the next one.
        sampler.wait_for_more(2).await;
    }
    let report = sampler.stop().await;
    let end = check_inventory(&read_inventory(&app.db).await.unwrap());
    eprintln!(
        "naive reservations: {granted} units handed out of {STOCK}; sampler {report}; \
         first problems: {:#?}",
        &report.first_problems[..report.first_problems.len().min(4)]
    );
    assert!(
        granted > STOCK,
        "the naive reservation oversold: {granted} of {STOCK}"
    );
    assert!(
        report.violations > 0 && report.first_problems.iter().any(|p| p.contains("oversold")),
        "the sampler must catch the oversell: {report} {:#?}",
        report.first_problems
    );
    assert!(
        end.iter().any(|p| p.contains("oversold")),
        "the final check must catch it too: {end:?}"
    );
    // And the audit the other tests use agrees.
    let audit = orderflow_activities::inventory::audit(&app.db)
        .await
        .unwrap();
    assert!(!audit.is_empty(), "the audit must catch it too");
}
