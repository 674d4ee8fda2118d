//! `orderflow order refund` / `order refunds` / `orders resume-refunds`: an operator's after-sale
//! refunds from the terminal (the CLI is an operator tool: direct access to the database and
//! Temporal, like `order resolve`).

use crate::cli::{parse_line, say};
use anyhow::Context;
use orderflow_activities::refunds::{RefundAsk, RefundLineAsk, RefundScope, StoredRefund};
use orderflow_client::orders::{OrderOpError, Orders};
use orderflow_domain::{Currency, Money, OrderId, Sku};
use orderflow_worker::settings::CliSettings;
use serde_json::json;
use std::time::{Duration, Instant};

/// Who asks, as recorded with the refund.
const CLI_OPERATOR: &str = "cli";

#[derive(clap::Args, Debug)]
pub struct RefundArgs {
    pub order_id: String,
    /// An amount in the order's currency, e.g. 12.50 (exact: never rounded).
    #[arg(long, conflicts_with_all = ["lines", "all"])]
    pub amount: Option<String>,
    /// Units of a line as SKU:QTY; repeat for more lines. The amount follows from the line's
    /// price less its share of the order's discount.
    #[arg(long = "line", value_parser = parse_line, conflicts_with = "all")]
    pub lines: Vec<(String, i64)>,
    /// Everything not yet refunded.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub reason: String,
    /// Put the refunded lines' units back on sale when the refund completes.
    #[arg(long)]
    pub restock: bool,
    /// Same key, same refund. Default: derived from what is asked, so running the same command
    /// twice refunds once; give a key to make a second identical refund.
    #[arg(long)]
    pub key: Option<String>,
    /// Return once the refund is accepted, without waiting for the provider.
    #[arg(long)]
    pub no_wait: bool,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub timeout: Duration,
}

pub(crate) async fn refund(
    g: &CliSettings,
    orders: &Orders,
    args: RefundArgs,
) -> anyhow::Result<()> {
    let order_id = OrderId::parse(args.order_id.as_str())
        .map_err(|e| anyhow::anyhow!("{:?} is not an order id: {e}", args.order_id))?;
    let scope = if args.all {
        RefundScope::Rest
    } else if let Some(amount) = &args.amount {
        let view = orders.view(order_id.as_str()).await?;
        let currency = view
            .currency
            .as_deref()
            .map(Currency::parse)
            .transpose()?
            .context("the order has no price: it cannot be refunded")?;
        RefundScope::Amount(Money::parse_major(amount, currency)?)
    } else if !args.lines.is_empty() {
        RefundScope::Lines(
            args.lines
                .iter()
                .map(|(sku, quantity)| {
                    Ok(RefundLineAsk {
                        sku: Sku::parse(sku.as_str())?,
                        quantity: *quantity,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        )
    } else {
        anyhow::bail!("say what to refund: --amount, --line SKU:QTY (repeatable) or --all");
    };
    let key = args.key.clone().unwrap_or_else(|| {
        let what = match &scope {
            RefundScope::Amount(m) => format!("amount={}", m.minor()),
            RefundScope::Lines(lines) => lines
                .iter()
                .map(|l| format!("{}x{}", l.sku, l.quantity))
                .collect::<Vec<_>>()
                .join(","),
            RefundScope::Rest => "all".to_owned(),
        };
        format!("cli:{what}:{}:{}", args.restock, args.reason.trim())
    });
    let ask = RefundAsk {
        order_id,
        scope,
        reason: args.reason.clone(),
        restock: args.restock,
        key,
        requested_by: CLI_OPERATOR.to_owned(),
    };
    let started = orders.refund(&ask).await?;
    let mut refund = started.refund;
    if !args.no_wait && refund.state != "SUCCEEDED" {
        if !g.json {
            eprintln!(
                "refund {} of {} accepted; waiting for {} to return the money…",
                refund.refund_no,
                amount_text(refund.amount_minor, &refund.currency),
                refund.provider
            );
        }
        refund = wait_done(orders, &refund.refund_no, args.timeout).await?;
    }
    let status = orders.view(ask.order_id.as_str()).await?.status;
    let mut value = serde_json::to_value(&refund)?;
    value["created"] = json!(started.created);
    value["workflow_id"] = json!(started.workflow_id);
    value["order_status"] = json!(status);
    say(g, value, || {
        let mut text = describe(&refund);
        if !started.created {
            text.push_str("\n(the same refund was asked for before: nothing new was refunded)");
        }
        if let Some(s) = status {
            text.push_str(&format!("\norder now {s}"));
        }
        text
    });
    Ok(())
}

/// Polls the refund until the provider has returned the money, or `timeout` passes.
async fn wait_done(
    orders: &Orders,
    refund_no: &str,
    timeout: Duration,
) -> anyhow::Result<StoredRefund> {
    let started = Instant::now();
    loop {
        let refund = orderflow_activities::refunds::load(&orders.db, refund_no)
            .await?
            .context("the refund vanished")?;
        if refund.state == "SUCCEEDED" {
            return Ok(refund);
        }
        if started.elapsed() >= timeout {
            let view = orders.refund_view(refund_no).await.ok();
            anyhow::bail!(
                "refund {refund_no} is still {} after {timeout:?} ({}); it goes on: \
                 `orderflow order refunds <order>` shows it",
                refund.state,
                view.and_then(|v| v.waiting_for)
                    .unwrap_or_else(|| "waiting for the worker".to_owned())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn list(g: &CliSettings, orders: &Orders, order_id: &str) -> anyhow::Result<()> {
    let refunds = orders.refunds(order_id).await?;
    say(g, serde_json::to_value(&refunds)?, || {
        if refunds.is_empty() {
            return format!("order {order_id} has no after-sale refunds");
        }
        refunds
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join("\n\n")
    });
    Ok(())
}

pub(crate) async fn resume(g: &CliSettings, orders: &Orders) -> Result<(), OrderOpError> {
    let n = orders.resume_refunds().await?;
    say(g, json!({"resumed": n}), || {
        format!("{n} accepted refund(s) not yet completed: each has its workflow")
    });
    Ok(())
}

fn amount_text(minor: i64, currency: &str) -> String {
    Currency::parse(currency)
        .and_then(|c| Money::new(minor, c))
        .map(|m| m.to_string())
        .unwrap_or_else(|_| format!("{minor} {currency}"))
}

fn describe(r: &StoredRefund) -> String {
    let mut rows = vec![
        ("refund", r.refund_no.clone()),
        ("order", r.order_id.clone()),
        ("amount", amount_text(r.amount_minor, &r.currency)),
        ("state", r.state.clone()),
        ("reason", r.reason.clone()),
        ("asked by", r.requested_by.clone()),
    ];
    for l in &r.lines {
        rows.push((
            "line",
            format!(
                "{} × {} ({})",
                l.sku,
                l.quantity,
                amount_text(l.amount_minor, &r.currency)
            ),
        ));
    }
    if r.restock {
        rows.push(("restock", "the units go back on sale".to_owned()));
    }
    if let Some(id) = &r.provider_refund_id {
        rows.push(("provider id", id.clone()));
    }
    rows.iter()
        .map(|(k, v)| format!("{k:<12} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}
