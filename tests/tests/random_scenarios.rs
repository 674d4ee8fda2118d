//! Seeded random scenarios — on SQLite and on PostgreSQL.
//!
//! Each order gets a script drawn from the seed: the customer pays (the right or a wrong amount;
//! at the gateway before or after it closed the charge), the provider's callback arrives zero to
//! three times by direct signal or through the signed-webhook pipeline (money on a closed charge
//! always through the webhook, also in the instant the order is closing), repeats with the same
//! event id, a second event with a new id, cancel requests, pauses that let the (short) payment
//! deadline pass, an operator's resolution of a wrong amount, and money that arrives after the
//! order is over. Twenty orders run at a time. Then, for every order: its final status is one the
//! design allows for what happened to it, its charge is kept exactly when the order is `PAID`
//! (late money refunded once), its reservations were confirmed or released once; and for the whole
//! database, sampled every 10 ms while it ran and again at the end: the stock invariants.
//!
//! Size: 60 orders; `ORDERFLOW_LONG=1` runs 200. Seed: `ORDERFLOW_SEED`, else printed with the
//! command that replays it; `ORDERFLOW_SCENARIO=<n>` replays only script `n` of that seed.

use futures::StreamExt;
use orderflow_activities::providers::sandbox::{SandboxPayment, SandboxProvider};
use orderflow_activities::sql;
use orderflow_client::orders::OrderOpError;
use orderflow_domain::{
    OrderStatus, PaymentNo, PaymentOutcome, PaymentSignal, ResolveAction, ResolveRequest,
};
use orderflow_http::DEV_SANDBOX_WEBHOOK_SECRET;
use orderflow_http::webhook_adapters::sandbox::{
    MERCHANT_ID, PAID, SIGNATURE_HEADER, SandboxEvent, SandboxEventData, sign_event,
};
use orderflow_tests::invariants::{
    self, Rng, Sampler, Seed, check_inventory, check_reservations, engine_name, read_inventory,
};
use orderflow_tests::{TestApp, Wait, eventually};
use rand::seq::IndexedRandom;
use rand::{Rng as _, SeedableRng};
use sqlx::Row;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IN_FLIGHT: usize = 20;
const SKUS: [&str; 5] = [
    "TEE-RED-M",
    "MUG-LOGO",
    "HOODIE-BLK-L",
    "STICKER-PACK",
    "FLASH-DEAL",
];
const WAIT: Duration = Duration::from_secs(120);

orderflow_tests::on_every_engine!(random_scenarios_keep_the_invariants);

/// How a provider callback reaches the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The `payment` signal, straight to the workflow.
    Signal,
    /// A signed webhook to the shim, which records, checks and signals (or refunds late money).
    Webhook,
}

#[derive(Debug, Clone)]
enum Action {
    /// The customer pays at the sandbox. `wrong`: a wrong amount. `after_close`: the gateway
    /// takes it even if our close of the charge got there first (the race every gateway has),
    /// and then always calls back through the webhook. The callback arrives `deliveries` times
    /// (0: lost; the deadline's query finds the money).
    Pay {
        wrong: bool,
        after_close: bool,
        deliveries: u32,
        route: Route,
    },
    /// The customer pays just as the order closes: as soon as the order has begun closing its
    /// payment (the charge is no longer `PENDING`), the gateway takes the money anyway and calls
    /// back through the webhook `deliveries` times.
    PayWhileClosing { deliveries: u32 },
    /// The provider repeats its callback (same event id).
    Repeat { route: Route },
    /// The provider sends another event, with a new id, for the same payment.
    SecondEvent { route: Route },
    /// The customer asks to cancel.
    Cancel,
    /// Nothing happens for a while; the payment deadline may pass.
    Pause { ms: u64 },
}

#[derive(Debug, Clone)]
struct Step {
    delay_ms: u64,
    action: Action,
}

#[derive(Debug, Clone)]
struct Script {
    index: usize,
    lines: Vec<(&'static str, i64)>,
    timeout_secs: u64,
    steps: Vec<Step>,
    /// What the operator decides if the order lands in `NEEDS_REVIEW`.
    resolution: ResolveAction,
    /// After the order is over, the customer pays anyway (callback through the webhook, this many
    /// times); 0: not.
    late_deliveries: u32,
}

fn draw(index: usize, rng: &mut Rng) -> Script {
    let mut skus: Vec<&'static str> = SKUS.to_vec();
    let mut lines = Vec::new();
    for _ in 0..rng.random_range(1..=2) {
        let at = rng.random_range(0..skus.len());
        lines.push((skus.remove(at), rng.random_range(1..=3) as i64));
    }
    let timeout_secs = *[2, 3, 4, 6].choose(rng).expect("not empty");
    let route = |rng: &mut Rng| {
        if rng.random_ratio(1, 2) {
            Route::Webhook
        } else {
            Route::Signal
        }
    };
    let steps = (0..rng.random_range(1..=4))
        .map(|_| {
            let delay_ms = rng.random_range(0..=400);
            let action = match rng.random_range(0..=99) {
                0..=29 => {
                    let after_close = rng.random_ratio(1, 5);
                    Action::Pay {
                        wrong: !after_close && rng.random_ratio(1, 4),
                        after_close,
                        deliveries: if after_close {
                            rng.random_range(1..=2) as u32
                        } else {
                            rng.random_range(0..=3) as u32
                        },
                        route: if after_close {
                            Route::Webhook
                        } else {
                            route(rng)
                        },
                    }
                }
                30..=37 => Action::PayWhileClosing {
                    deliveries: rng.random_range(1..=2) as u32,
                },
                38..=45 => Action::Repeat { route: route(rng) },
                46..=54 => Action::SecondEvent { route: route(rng) },
                55..=74 => Action::Cancel,
                _ => Action::Pause {
                    ms: rng.random_range(200..=timeout_secs * 1000 + 1500),
                },
            };
            Step { delay_ms, action }
        })
        .collect();
    Script {
        index,
        lines,
        timeout_secs,
        steps,
        resolution: if rng.random_ratio(1, 2) {
            ResolveAction::Accept
        } else {
            ResolveAction::Refund
        },
        late_deliveries: if rng.random_ratio(1, 5) {
            rng.random_range(1..=2) as u32
        } else {
            0
        },
    }
}

/// The first money the gateway took for the order during its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Money {
    /// The right amount, on an open charge.
    Right,
    /// A wrong amount, on an open charge.
    Wrong,
    /// The right amount, taken whether or not the charge had been closed.
    EvenIfClosed,
}

/// What happened to one order, as its driver saw it.
#[derive(Debug, Default)]
struct Facts {
    order_id: String,
    payment_no: String,
    money: Option<Money>,
    /// Money taken after the order was over (the `late_deliveries` part of the script).
    late_money: bool,
    paid: Option<SandboxPayment>,
    refused_pays: u32,
    cancels_accepted: u32,
    cancels_refused: u32,
    signals: u32,
    webhooks: u32,
    resolved: Option<ResolveAction>,
    late_refund: Option<String>,
    final_status: Option<OrderStatus>,
    charge: String,
    payment_row: String,
    reservations: Vec<String>,
    problems: Vec<String>,
    /// Allowed by the rules below but worth a line in the report.
    notes: Vec<String>,
}

struct Ctx<'a> {
    app: &'a TestApp,
    gateway: SandboxProvider,
    http: reqwest::Client,
    webhook_url: String,
}

async fn random_scenarios_keep_the_invariants(app: TestApp) {
    let test = format!(
        "{}::random_scenarios_keep_the_invariants",
        engine_name(app.engine)
    );
    let seed = Seed::pick("random_scenarios", &test);
    let _replay_on_failure = seed.guard();
    let count = invariants::sized(60, 200);
    let mut rng = seed.rng();
    let mut scripts: Vec<Script> = (0..count)
        .map(|i| draw(i, &mut Rng::from_rng(&mut rng)))
        .collect();
    if let Ok(only) = std::env::var("ORDERFLOW_SCENARIO") {
        let only: usize = only.parse().expect("ORDERFLOW_SCENARIO is a script number");
        scripts.retain(|s| s.index == only);
        eprintln!("replaying only script {only}: {:?}", scripts.first());
    }
    // Plenty of stock: these orders are about payments, not about running out.
    for sku in SKUS {
        app.set_stock(sku, 100_000).await;
    }
    let base = app.serve_http().await.base;
    let ctx = Ctx {
        app: &app,
        gateway: SandboxProvider::new(app.db.clone(), &app.settings.connection.public_url),
        http: reqwest::Client::new(),
        webhook_url: format!("{base}/v1/webhooks/sandbox"),
    };

    let sampler = Sampler::start(
        app.settings.connection.database_url.expose_secret(),
        Duration::from_millis(10),
    )
    .await;
    let started = Instant::now();
    let ran: Vec<(Script, Facts)> = futures::stream::iter(scripts)
        .map(|script| {
            let ctx = &ctx;
            async move {
                let facts = run(ctx, &script).await;
                (script, facts)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let report = sampler.stop().await;

    // Per order.
    let mut failures = Vec::new();
    for (script, facts) in &ran {
        if !facts.problems.is_empty() {
            failures.push(format!(
                "script {} (order {}): {:#?}\n  script: {script:?}\n  facts: {facts:?}",
                script.index, facts.order_id, facts.problems
            ));
        }
    }
    // The whole database.
    let mut global = check_inventory(&read_inventory(&app.db).await.unwrap());
    global.extend(
        orderflow_activities::inventory::audit(&app.db)
            .await
            .unwrap(),
    );
    global.extend(check_reservations(&app.db, true).await.unwrap());
    let paid = ran
        .iter()
        .filter(|(_, f)| f.final_status == Some(OrderStatus::Paid))
        .count() as i64;
    let kept = app.count("sandbox_charges WHERE status = 'PAID'").await;
    if kept != paid {
        global.push(format!(
            "{kept} charges kept at the sandbox for {paid} paid orders"
        ));
    }
    if report.samples == 0 || report.violations > 0 {
        global.push(format!("sampler: {report}: {:#?}", report.first_problems));
    }

    print_summary(&ran, elapsed, &report);
    let first_failing = ran
        .iter()
        .find(|(_, f)| !f.problems.is_empty())
        .filter(|_| std::env::var("ORDERFLOW_SCENARIO").is_err())
        .map(|(s, _)| {
            format!(
                "\nreplay only script {}: ORDERFLOW_SCENARIO={} {}",
                s.index,
                s.index,
                seed.reproduce()
            )
        })
        .unwrap_or_default();
    assert!(
        failures.is_empty() && global.is_empty(),
        "seed {}: {} of {} orders broke a rule:\n{}\nwhole database: {global:#?}\nreplay: {}{first_failing}",
        seed.value,
        failures.len(),
        ran.len(),
        failures.join("\n"),
        seed.reproduce()
    );
}

fn print_summary(ran: &[(Script, Facts)], elapsed: Duration, report: &invariants::SamplerReport) {
    let mut finals: BTreeMap<String, usize> = BTreeMap::new();
    let mut features: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bump = |k: &'static str, yes: bool| {
        if yes {
            *features.entry(k).or_default() += 1;
        }
    };
    for (_, f) in ran {
        *finals
            .entry(
                f.final_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".into()),
            )
            .or_default() += 1;
        bump("money right", f.money == Some(Money::Right));
        bump("money wrong", f.money == Some(Money::Wrong));
        bump("money even if closed", f.money == Some(Money::EvenIfClosed));
        bump("money after the order was over", f.late_money);
        bump("late refunds", f.late_refund.as_deref() == Some("REFUNDED"));
        bump("pays refused (charge closed)", f.refused_pays > 0);
        bump("cancel accepted", f.cancels_accepted > 0);
        bump("cancel refused", f.cancels_refused > 0);
        bump("resolved ACCEPT", f.resolved == Some(ResolveAction::Accept));
        bump("resolved REFUND", f.resolved == Some(ResolveAction::Refund));
    }
    let signals: u32 = ran.iter().map(|(_, f)| f.signals).sum();
    let webhooks: u32 = ran.iter().map(|(_, f)| f.webhooks).sum();
    eprintln!(
        "{} orders ({IN_FLIGHT} at a time) in {elapsed:.1?}; final: {finals:?}",
        ran.len()
    );
    eprintln!("orders with: {features:?}; callbacks: {signals} signals, {webhooks} webhooks");
    eprintln!("{report}");
    for (script, f) in ran {
        for note in &f.notes {
            eprintln!(
                "note: script {} (order {}): {note}",
                script.index, f.order_id
            );
        }
    }
}

/// Plays one script against one order, then checks what became of it.
async fn run(ctx: &Ctx<'_>, script: &Script) -> Facts {
    let app = ctx.app;
    let order_id = app
        .order(
            &format!("scenario-{}", script.index),
            &script.lines,
            Some(script.timeout_secs),
        )
        .await;
    let started = app.view(&order_id).await;
    let payment_no = started
        .payment_no
        .clone()
        .expect("the order has a payment number");
    let mut f = Facts {
        order_id: order_id.clone(),
        payment_no: payment_no.clone(),
        ..Facts::default()
    };
    let amount = started.amount_minor.unwrap_or_default();
    let pay_no = PaymentNo::parse(payment_no.as_str()).unwrap();

    for step in &script.steps {
        tokio::time::sleep(Duration::from_millis(step.delay_ms)).await;
        match &step.action {
            Action::Pay {
                wrong,
                after_close,
                deliveries,
                route,
            } => {
                let taken = if *after_close {
                    ctx.gateway.pay_after_close(&pay_no).await
                } else {
                    let paid = wrong.then_some(if amount > 100 {
                        amount - 99
                    } else {
                        amount + 1
                    });
                    ctx.gateway.pay(&pay_no, paid).await
                };
                match taken {
                    Ok(paid) => {
                        if paid.newly_paid && f.money.is_none() {
                            f.money = Some(match (after_close, wrong) {
                                (true, _) => Money::EvenIfClosed,
                                (false, true) => Money::Wrong,
                                (false, false) => Money::Right,
                            });
                        }
                        for _ in 0..*deliveries {
                            deliver(ctx, &mut f, &paid, &paid.event_id, *route).await;
                        }
                        f.paid = Some(paid);
                    }
                    Err(_) => f.refused_pays += 1,
                }
            }
            Action::PayWhileClosing { deliveries } => {
                if let Err(e) = closing_begun(app, &payment_no).await {
                    f.problems.push(e);
                    continue;
                }
                match ctx.gateway.pay_after_close(&pay_no).await {
                    Ok(paid) => {
                        if paid.newly_paid && f.money.is_none() {
                            f.money = Some(Money::EvenIfClosed);
                        }
                        for _ in 0..*deliveries {
                            deliver(ctx, &mut f, &paid, &paid.event_id, Route::Webhook).await;
                        }
                        f.paid = Some(paid);
                    }
                    Err(_) => f.refused_pays += 1,
                }
            }
            Action::Repeat { route } => {
                if let Some(paid) = f.paid.clone() {
                    deliver(ctx, &mut f, &paid, &paid.event_id, *route).await;
                }
            }
            Action::SecondEvent { route } => {
                if let Some(paid) = f.paid.clone() {
                    let event_id = format!("{}_again", paid.event_id);
                    deliver(ctx, &mut f, &paid, &event_id, *route).await;
                }
            }
            Action::Cancel => match app.orders.cancel(&order_id, "changed my mind").await {
                Ok(view) => {
                    f.cancels_accepted += 1;
                    if view.status != Some(OrderStatus::AwaitingPayment) {
                        f.problems.push(format!(
                            "a cancel was accepted while the order was {view:?}"
                        ));
                    }
                }
                Err(OrderOpError::Refused { .. }) => f.cancels_refused += 1,
                Err(e) => f.problems.push(format!("cancel failed: {e}")),
            },
            Action::Pause { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
        }
    }

    // The operator resolves a wrong amount; then the order must be over.
    let settled = |v: &orderflow_domain::OrderView| {
        v.status
            .is_some_and(|s| s.is_final() || s == OrderStatus::NeedsReview)
    };
    let mut over = app
        .orders
        .wait_until(&order_id, "a final status or NEEDS_REVIEW", WAIT, settled)
        .await;
    if let Ok(view) = &over
        && view.status == Some(OrderStatus::NeedsReview)
    {
        let request = ResolveRequest {
            action: script.resolution,
            operator: "ops-random".into(),
            note: format!("script {}", script.index),
        };
        match app.orders.resolve(&order_id, request).await {
            Ok(_) => f.resolved = Some(script.resolution),
            Err(e) => f.problems.push(format!("resolve failed: {e}")),
        }
        over = app.orders.wait_final(&order_id, WAIT).await;
    }
    let over = match over {
        Ok(view) => view,
        Err(e) => {
            f.problems.push(format!("never settled: {e}"));
            return f;
        }
    };
    f.final_status = over.status;
    let duplicates = {
        let mut events = over.payment_events.clone();
        events.sort();
        events.dedup();
        over.payment_events.len() - events.len()
    };
    if duplicates > 0 {
        f.problems.push(format!(
            "the order accepted an event id twice: {:?}",
            over.payment_events
        ));
    }

    // Money after the order is over: the gateway takes it, the callback must refund it.
    if script.late_deliveries > 0
        && matches!(
            f.final_status,
            Some(OrderStatus::Closed | OrderStatus::Cancelled)
        )
    {
        match ctx.gateway.pay_after_close(&pay_no).await {
            Ok(paid) => {
                f.late_money = paid.newly_paid;
                for _ in 0..script.late_deliveries {
                    deliver(ctx, &mut f, &paid, &paid.event_id, Route::Webhook).await;
                }
            }
            Err(e) => f.problems.push(format!("late pay failed: {e}")),
        }
    }
    check(ctx, script, &mut f).await;
    f
}

/// The callback of `paid`, with `event_id`, by `route`. A provider retries a webhook that was not
/// acknowledged (503: try again); a signal to an order already over is refused, which is fine:
/// a direct signal is only ever a repeat of what the order knew (money on a closed charge is
/// always called back through the webhook).
async fn deliver(
    ctx: &Ctx<'_>,
    f: &mut Facts,
    paid: &SandboxPayment,
    event_id: &str,
    route: Route,
) {
    match route {
        Route::Signal => {
            f.signals += 1;
            let signal = PaymentSignal {
                event_id: event_id.to_owned(),
                provider: "sandbox".into(),
                payment_no: paid.payment_no.to_string(),
                outcome: PaymentOutcome::Paid,
                amount_minor: paid.paid_amount_minor,
                currency: paid.currency.clone(),
                provider_txn_id: paid.txn_id.clone(),
            };
            match ctx.app.orders.signal_payment(&f.order_id, signal).await {
                Ok(()) | Err(OrderOpError::Refused { .. } | OrderOpError::UnknownOrder(_)) => {}
                Err(e) => f.problems.push(format!("signal failed: {e}")),
            }
        }
        Route::Webhook => {
            f.webhooks += 1;
            let event = SandboxEvent {
                id: event_id.to_owned(),
                kind: PAID.into(),
                created: unix_now(),
                data: SandboxEventData {
                    payment_no: paid.payment_no.to_string(),
                    amount_minor: paid.paid_amount_minor,
                    currency: paid.currency.clone(),
                    txn_id: paid.txn_id.clone(),
                    merchant_id: MERCHANT_ID.into(),
                },
            };
            let deadline = Instant::now() + WAIT;
            loop {
                let (signature, body) =
                    sign_event(DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(), &event, unix_now());
                let answer = ctx
                    .http
                    .post(&ctx.webhook_url)
                    .header(SIGNATURE_HEADER, signature)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) if r.status().as_u16() == 503 && Instant::now() < deadline => {}
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        f.problems
                            .push(format!("webhook {event_id} answered {status}: {text}"));
                        return;
                    }
                    Err(e) => {
                        f.problems.push(format!("webhook {event_id}: {e}"));
                        return;
                    }
                }
                // The provider's retry, a little later.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The rules. What the design allows an order to end as, given what happened to it:
///
/// * no money: `CLOSED` at the deadline, or `CANCELLED` if a cancel was accepted;
/// * the right amount on an open charge: `PAID` (whether the callback arrived or not, and even if
///   a cancel was accepted: the close path asks the provider first);
/// * a wrong amount on an open charge: `NEEDS_REVIEW`, then what the operator chose: `PAID` for
///   ACCEPT, `REFUNDED` for REFUND;
/// * the right amount taken even if the charge was closed: `PAID` if it landed before the close,
///   otherwise the no-money outcome and the money refunded once.
///
/// And always: the charge is kept (`PAID` at the gateway) exactly when the order is `PAID`; money
/// on a closed order is refunded by its `LatePaymentWorkflow`; every reservation of a `PAID`
/// order is `CONFIRMED`, of any other order `RELEASED`.
async fn check(ctx: &Ctx<'_>, script: &Script, f: &mut Facts) {
    use OrderStatus::*;
    let app = ctx.app;
    let Some(status) = f.final_status else {
        return;
    };
    let unpaid = if f.cancels_accepted > 0 {
        Cancelled
    } else {
        Closed
    };
    let allowed: Vec<OrderStatus> = match f.money {
        None => vec![unpaid],
        Some(Money::Right) => vec![Paid],
        Some(Money::Wrong) => vec![match script.resolution {
            ResolveAction::Accept => Paid,
            ResolveAction::Refund => Refunded,
        }],
        Some(Money::EvenIfClosed) => vec![Paid, unpaid],
    };
    if !allowed.contains(&status) {
        if status == Closed && unpaid == Cancelled && deadline_fired_before_cancel(app, f).await {
            f.notes.push(format!(
                "a cancel was accepted after the payment deadline had fired; the order ended \
                 CLOSED (allowed: {allowed:?})"
            ));
        } else {
            f.problems.push(format!(
                "ended {status}; the design allows {allowed:?} for money {:?}, cancels accepted \
                 {}, resolution {:?}",
                f.money, f.cancels_accepted, script.resolution
            ));
        }
    }
    if f.money == Some(Money::Wrong) && f.resolved.is_none() {
        f.problems
            .push("a wrong amount was paid but the order never asked for review".into());
    }
    if f.money != Some(Money::Wrong) && f.resolved.is_some() {
        f.problems
            .push("the order asked for review without a wrong amount".into());
    }

    // Money on an order that is over goes back, once, through its LatePaymentWorkflow.
    let money_back_expected = matches!(status, Closed | Cancelled)
        && (f.late_money || f.money == Some(Money::EvenIfClosed));
    if money_back_expected {
        let handle = app
            .orders
            .client
            .get_workflow_handle::<orderflow_workflows::LatePaymentWorkflow>(
                orderflow_workflows::late_payment_workflow_id(&f.payment_no),
            );
        match tokio::time::timeout(WAIT, handle.get_result(Default::default())).await {
            Ok(Ok(outcome)) => f.late_refund = Some(outcome.result),
            Ok(Err(e)) => f.problems.push(format!(
                "money arrived for a {status} order but no refund ran: {e}"
            )),
            Err(_) => f.problems.push(format!(
                "the late-payment refund did not finish in {WAIT:?}"
            )),
        }
    }
    f.charge = charge_status(app, "sandbox_charges", &f.payment_no).await;
    f.payment_row = charge_status(app, "payments", &f.payment_no).await;
    let expected = match status {
        Paid => ("PAID", "PAID"),
        Refunded => ("REFUNDED", "REFUNDED"),
        Closed | Cancelled if money_back_expected => ("REFUNDED", "REFUNDED"),
        Closed | Cancelled => ("CLOSED", "CLOSED"),
        _ => ("?", "?"),
    };
    if (f.charge.as_str(), f.payment_row.as_str()) != expected {
        f.problems.push(format!(
            "order {status}: the sandbox charge is {} and our payment row {}, expected {expected:?}",
            f.charge, f.payment_row
        ));
    }
    if money_back_expected && f.late_refund.as_deref() != Some("REFUNDED") {
        f.problems.push(format!(
            "late money: the refund workflow answered {:?}",
            f.late_refund
        ));
    }

    // Stock: confirmed for a paid order, released for any other; one row per line.
    let rows = sql!("SELECT state FROM stock_reservations WHERE order_id = $1 ORDER BY sku")
        .on(app.db.pool())
        .bind(&f.order_id)
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    f.reservations = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    let want = if status == Paid {
        "CONFIRMED"
    } else {
        "RELEASED"
    };
    if f.reservations.len() != script.lines.len() || f.reservations.iter().any(|s| s != want) {
        f.problems.push(format!(
            "order {status}: reservations {:?}, expected {} x {want}",
            f.reservations,
            script.lines.len()
        ));
    }
}

/// Waits (polling, up to [`WAIT`]) until the order's payment row has left `PENDING`: the order has
/// closed the charge at the gateway (or settled it) and is finishing.
async fn closing_begun(app: &TestApp, payment_no: &str) -> Result<(), String> {
    // Looked at often: the payment is meant to arrive while the order is closing.
    eventually(
        Wait::up_to(WAIT).every(Duration::from_millis(2)),
        || async {
            match charge_status(app, "payments", payment_no).await {
                status if status != "PENDING" => Ok(()),
                _ => Err(format!(
                    "payment {payment_no} was still PENDING after {WAIT:?}"
                )),
            }
        },
    )
    .await
}

/// True when the order's history shows its deadline timer firing before the cancel update was
/// accepted: the order was already closing when the cancel came in.
async fn deadline_fired_before_cancel(app: &TestApp, f: &Facts) -> bool {
    let events = app.history_event_types(&f.order_id).await;
    let fired = events.iter().position(|e| e.contains("TimerFired"));
    let accepted = events
        .iter()
        .position(|e| e.contains("WorkflowExecutionUpdateAccepted"));
    matches!((fired, accepted), (Some(t), Some(u)) if t < u)
}

async fn charge_status(app: &TestApp, table: &str, payment_no: &str) -> String {
    let statement = match table {
        "payments" => sql!("SELECT status FROM payments WHERE payment_no = $1"),
        "sandbox_charges" => sql!("SELECT status FROM sandbox_charges WHERE payment_no = $1"),
        other => panic!("no charge status in {other}"),
    };
    statement
        .on(&app.db)
        .bind(payment_no)
        .fetch_optional(app.db.pool())
        .await
        .unwrap()
        .map(|r| r.get::<String, _>(0))
        .unwrap_or_else(|| "MISSING".into())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}
