//! `orderflow`: the command line. Every command prints a human-readable summary, or JSON with
//! `--json`, and exits non-zero with a one-line reason when it cannot do what was asked.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use orderflow_activities::{coupons, inventory};
use orderflow_client::catalog;
use orderflow_client::orders::{NewOrder, Orders};
use orderflow_domain::{
    ClientId, Currency, Money, OrderView, ResolveAction, ResolveRequest, Sku, messages::MAX_LINES,
};
use orderflow_http::api_keys::{self, Scope};
use orderflow_worker::settings::{CliSettings, ExposeSecret};
use orderflow_worker::{connect_temporal, open_database};
use orderflow_workflows::search_attributes;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(
    name = "orderflow",
    version,
    about = "Start and operate Orderflow orders: durable order-and-payment workflows on Temporal."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: CliSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start and operate orders.
    #[command(subcommand)]
    Order(OrderCommand),
    /// Find orders: stuck ones, or all with a status (Temporal visibility).
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Stock levels.
    #[command(subcommand)]
    Stock(StockCommand),
    /// The catalog that prices orders.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Coupons: define them, issue codes, see where each code is.
    #[command(subcommand)]
    Coupon(CouponCommand),
    /// Workflow histories, for replay tests.
    #[command(subcommand)]
    History(HistoryCommand),
    /// API keys of the HTTP API's clients and operators.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// Database administration.
    #[command(subcommand)]
    Db(DbCommand),
    /// Helpers for development scripts.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Run the HTTP shim: orders API, provider webhooks, sandbox checkout page.
    Serve(Box<orderflow_http::ServeSettings>),
    /// Order events for downstream services: the outbox, the relay's lag, a consumer.
    #[command(subcommand)]
    Events(crate::events::EventsCommand),
    /// Run the order events' relay on its own (the worker runs one unless
    /// ORDERFLOW_EVENTS_RELAY=false): publishes the outbox to NATS JetStream.
    Relay,
}

#[derive(Subcommand, Debug)]
pub enum OrderCommand {
    /// Start an order (idempotent: the same key always means the same order).
    Create {
        #[arg(long)]
        customer: String,
        /// A line as SKU:QUANTITY; repeat for more lines.
        #[arg(long = "line", required = true, value_parser = parse_line)]
        lines: Vec<(String, i64)>,
        #[arg(long, default_value = "sandbox")]
        provider: String,
        /// Same key, same order. Without one a fresh key is generated.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The API client the order is placed for: its idempotency keys are its own.
        #[arg(long, default_value = orderflow_client::orders::CLI_CLIENT, value_parser = parse_client)]
        client: ClientId,
        /// How long the customer has to pay, e.g. 90s, 15m (default: the worker's setting).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        /// A coupon code; the worker prices it (an unusable one rejects the order).
        #[arg(long)]
        coupon: Option<String>,
    },
    /// Show an order.
    Status { order_id: String },
    /// Cancel an order that is awaiting payment.
    Cancel {
        order_id: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Return without waiting for the order to close.
        #[arg(long)]
        no_wait: bool,
    },
    /// Sandbox only: the customer pays, then the provider callback is delivered.
    Pay {
        order_id: String,
        /// Pay a different amount (minor units) than the order's, to exercise NEEDS_REVIEW.
        #[arg(long)]
        amount_minor: Option<i64>,
        /// How many times the callback is delivered; 0 simulates a lost callback.
        #[arg(long, default_value_t = 1)]
        deliveries: u32,
    },
    /// Decide an order in NEEDS_REVIEW.
    Resolve {
        order_id: String,
        #[arg(long, value_enum)]
        action: ResolveArg,
        #[arg(long, default_value = "")]
        operator: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Refund a paid order after the sale, whole or in part (an operator's decision): an amount,
    /// lines with quantities, or --all.
    Refund(crate::refunds::RefundArgs),
    /// An order's after-sale refunds.
    Refunds { order_id: String },
    /// Wait until an order reaches a final status and print it.
    Wait {
        order_id: String,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "20m")]
        timeout: Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrdersCommand {
    /// Running orders that should have moved on: awaiting payment past their deadline, or in
    /// NEEDS_REVIEW / PENDING for longer than --older-than.
    Stuck {
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
        older_than: Duration,
        /// Only this status (AWAITING_PAYMENT, NEEDS_REVIEW or PENDING).
        #[arg(long)]
        status: Option<orderflow_domain::OrderStatus>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Start the workflow of every after-sale refund accepted but not yet completed (after a
    /// crash between accepting a refund and starting it; safe to run at any time).
    ResumeRefunds,
    /// Orders with a status, running or finished.
    List {
        #[arg(long)]
        status: orderflow_domain::OrderStatus,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ResolveArg {
    Accept,
    Refund,
}

#[derive(Subcommand, Debug)]
pub enum CouponCommand {
    /// Define a coupon (idempotent: the same id and terms again change nothing).
    Define {
        /// The definition's id, e.g. SPRING-10.
        id: String,
        /// Whole percent off, 1..=100 (rounded down to the minor unit).
        #[arg(long, conflicts_with = "fixed", required_unless_present = "fixed")]
        percent: Option<i64>,
        /// A fixed amount off, in minor units of --currency.
        #[arg(long)]
        fixed: Option<i64>,
        #[arg(long, default_value = "USD")]
        currency: String,
        /// The smallest subtotal (minor units) it applies to.
        #[arg(long, default_value_t = 0)]
        min_spend: i64,
        /// Valid from (Unix ms; default: now).
        #[arg(long)]
        valid_from_ms: Option<i64>,
        /// Valid for this long from --valid-from-ms, e.g. 30d, 12h.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
        valid_for: Duration,
    },
    /// Issue single-use codes under a definition (idempotent by code).
    Issue {
        definition: String,
        /// Only this customer may use them (default: anyone).
        #[arg(long)]
        customer: Option<String>,
        /// A code to issue; repeat for more.
        #[arg(long = "code", required = true)]
        codes: Vec<String>,
    },
    /// Every definition.
    List,
    /// A definition and its codes, or one code.
    Show { id_or_code: String },
}

#[derive(Subcommand, Debug)]
pub enum StockCommand {
    /// Set a SKU's total stock (refused below what is reserved or sold).
    Set { sku: String, total: i64 },
    /// Show stock levels and check the invariants.
    Show { sku: Option<String> },
}

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Add the small demo catalog and its initial stock.
    Seed,
    /// Add or reprice one item.
    Add {
        sku: String,
        #[arg(long)]
        name: String,
        /// Price in major units, e.g. 19.99.
        #[arg(long)]
        price: String,
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    /// List the catalog.
    Show,
}

#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// Write an order's workflow history as JSON the SDK's replayer reads.
    Export {
        order_id: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeysCommand {
    /// Create a key; it is printed once and cannot be shown again.
    Create {
        /// The client the key belongs to (a shop, a service, an operator's name).
        #[arg(long, value_parser = parse_client)]
        client: ClientId,
        /// Comma-separated: orders:create, orders:read, orders:cancel, operator.
        #[arg(long, value_delimiter = ',', value_parser = Scope::parse,
              default_value = "orders:create,orders:read,orders:cancel")]
        scopes: Vec<Scope>,
    },
    /// List keys (ids, clients, scopes; never the keys themselves).
    List,
    /// Revoke a key by its id (or the whole key); effective on its next request.
    Revoke { key_id: String },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Create or upgrade the schema (and, on PostgreSQL or MySQL, the database if missing).
    Migrate,
}

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Print `--search-attribute NAME=TYPE` flags for `temporal server start-dev`.
    SearchAttributes,
}

/// `SKU:QTY` → (sku, qty). Syntax only; the workflow validates the values.
pub fn parse_line(s: &str) -> Result<(String, i64), String> {
    let (sku, qty) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not SKU:QUANTITY (for example TEE-RED-M:2)"))?;
    let sku = Sku::parse(sku).map_err(|e| e.to_string())?;
    let qty: i64 = qty
        .parse()
        .map_err(|_| format!("{qty:?} in {s:?} is not a whole number"))?;
    orderflow_domain::Quantity::new(qty).map_err(|e| format!("{s}: {e}"))?;
    Ok((sku.to_string(), qty))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Dev(DevCommand::SearchAttributes) => {
            let flags: Vec<String> = search_attributes::REGISTRATION
                .iter()
                .map(|(name, kind)| format!("--search-attribute {name}={kind}"))
                .collect();
            println!("{}", flags.join(" "));
            Ok(())
        }
        Command::Db(DbCommand::Migrate) => {
            let url = &g.connection.database_url;
            let created = orderflow_activities::db::create_if_missing(url.expose_secret())
                .await
                .with_context(|| format!("creating the database {url}"))?;
            open_database(url).await?;
            say(&g, json!({"migrated": true, "created": created}), || {
                if created {
                    format!("created {url}; database is up to date")
                } else {
                    "database is up to date".to_owned()
                }
            });
            Ok(())
        }
        Command::ApiKeys(cmd) => api_keys_command(&g, cmd).await,
        Command::Catalog(cmd) => catalog_command(&g, cmd).await,
        Command::Stock(cmd) => stock_command(&g, cmd).await,
        Command::Coupon(cmd) => coupon_command(&g, cmd).await,
        Command::History(HistoryCommand::Export { order_id, out }) => {
            let orders = connect(&g).await?;
            let bytes = orders.export_history(&order_id).await?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            say(
                &g,
                json!({"order_id": order_id, "path": out, "bytes": bytes.len()}),
                || {
                    format!(
                        "wrote {} bytes of history to {}",
                        bytes.len(),
                        out.display()
                    )
                },
            );
            Ok(())
        }
        Command::Order(cmd) => order_command(&g, cmd).await,
        Command::Orders(cmd) => orders_command(&g, cmd).await,
        Command::Serve(settings) => {
            let orders = connect(&g).await?;
            orderflow_http::serve(orderflow_http::AppState::new(orders, *settings)?).await
        }
        Command::Events(cmd) => crate::events::events_command(&g, cmd).await,
        Command::Relay => crate::events::relay(&g).await,
    }
}

async fn api_keys_command(g: &CliSettings, cmd: ApiKeysCommand) -> anyhow::Result<()> {
    let db = open_database(&g.connection.database_url).await?;
    match cmd {
        ApiKeysCommand::Create { client, scopes } => {
            let created = api_keys::create(&db, &client, &scopes.into_iter().collect()).await?;
            let scopes: Vec<&str> = created.scopes.iter().map(|s| s.as_str()).collect();
            let key = created.key.expose_secret();
            say(
                g,
                json!({"key_id": created.key_id, "client": created.client, "scopes": scopes, "key": key}),
                || {
                    format!(
                        "key {} for {} ({})\n{key}\nshown once: store it now",
                        created.key_id,
                        created.client,
                        scopes.join(" ")
                    )
                },
            );
        }
        ApiKeysCommand::List => {
            let keys = api_keys::list(&db).await?;
            let rows: Vec<_> = keys
                .iter()
                .map(|k| {
                    json!({"key_id": k.key_id, "client": k.client, "scopes": k.scopes,
                                "created_at_ms": k.created_at_ms, "revoked_at_ms": k.revoked_at_ms})
                })
                .collect();
            say(g, json!(rows), || {
                let mut out = format!("{:<14} {:<24} {:<8} SCOPES", "KEY ID", "CLIENT", "STATE");
                for k in &keys {
                    let state = if k.revoked_at_ms.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    out.push_str(&format!(
                        "\n{:<14} {:<24} {:<8} {}",
                        k.key_id,
                        k.client,
                        state,
                        k.scopes.join(" ")
                    ));
                }
                out
            });
        }
        ApiKeysCommand::Revoke { key_id } => {
            // Given the whole key, print only its public id: the secret stays off the screen.
            let key_id = api_keys::public_id(&key_id).to_owned();
            if !api_keys::revoke(&db, &key_id).await? {
                bail!("no API key {key_id}");
            }
            say(g, json!({"key_id": key_id, "revoked": true}), || {
                format!("key {key_id} revoked")
            });
        }
    }
    Ok(())
}

async fn connect(g: &CliSettings) -> anyhow::Result<Orders> {
    let c = &g.connection;
    let db = open_database(&c.database_url).await?;
    let client = connect_temporal(c.temporal_address.as_deref(), c.grpc_compression).await?;
    Ok(Orders {
        client,
        db,
        task_queue: c.task_queue.clone(),
        public_url: c.public_url.clone(),
    })
}

async fn order_command(g: &CliSettings, cmd: OrderCommand) -> anyhow::Result<()> {
    let orders = connect(g).await?;
    match cmd {
        OrderCommand::Create {
            customer,
            lines,
            provider,
            idempotency_key,
            client,
            timeout,
            coupon,
        } => {
            if lines.len() > MAX_LINES {
                bail!("an order has at most {MAX_LINES} lines");
            }
            let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let (order_id, started) = orders
                .start(&NewOrder {
                    client,
                    idempotency_key: key.clone(),
                    customer_id: customer,
                    lines,
                    provider,
                    payment_timeout_secs: timeout.map(|t| t.as_secs().max(1)),
                    coupon_code: coupon,
                })
                .await?;
            let view = orders
                .wait_ready(order_id.as_str(), Duration::from_secs(30))
                .await?;
            let mut value = serde_json::to_value(&view)?;
            value["idempotency_key"] = json!(key);
            value["created"] = json!(started);
            say(g, value, || {
                let head = if started {
                    "order started"
                } else {
                    "order already exists for this idempotency key"
                };
                format!("{head}\n{}", describe(&view))
            });
            Ok(())
        }
        OrderCommand::Status { order_id } => {
            let view = orders.view(&order_id).await?;
            // A finished order has no workflow to describe; that is not an error here.
            let pending = orders.pending_steps(&order_id).await.unwrap_or_default();
            let mut value = serde_json::to_value(&view)?;
            value["pending_steps"] = json!(pending);
            say(g, value, || {
                let mut out = describe(&view);
                for step in &pending {
                    out.push_str(&format!(
                        "\n{:<9} {} (attempt {}){}",
                        "retrying",
                        step.activity,
                        step.attempt,
                        step.last_error
                            .as_deref()
                            .map(|e| format!(": last error: {e}"))
                            .unwrap_or_default()
                    ));
                }
                out
            });
            Ok(())
        }
        OrderCommand::Cancel {
            order_id,
            reason,
            no_wait,
        } => {
            let mut view = orders.cancel(&order_id, &reason).await?;
            if !no_wait {
                view = orders
                    .wait_final(&order_id, Duration::from_secs(60))
                    .await?;
            }
            say(g, serde_json::to_value(&view)?, || describe(&view));
            Ok(())
        }
        OrderCommand::Pay {
            order_id,
            amount_minor,
            deliveries,
        } => {
            let paid = orders
                .pay_sandbox(&order_id, amount_minor, deliveries)
                .await?;
            let value = json!({
                "order_id": order_id,
                "payment_no": paid.payment_no,
                "paid_amount_minor": paid.paid_amount_minor,
                "currency": paid.currency,
                "txn_id": paid.txn_id,
                "event_id": paid.event_id,
                "newly_paid": paid.newly_paid,
                "callbacks_delivered": deliveries,
            });
            say(g, value, || {
                format!(
                    "{} {} at the sandbox ({}); callback {} delivered {deliveries} time(s)",
                    if paid.newly_paid {
                        "paid"
                    } else {
                        "already paid"
                    },
                    money(Some(paid.paid_amount_minor), Some(&paid.currency)),
                    paid.txn_id,
                    paid.event_id
                )
            });
            Ok(())
        }
        OrderCommand::Resolve {
            order_id,
            action,
            operator,
            note,
        } => {
            let req = ResolveRequest {
                action: match action {
                    ResolveArg::Accept => ResolveAction::Accept,
                    ResolveArg::Refund => ResolveAction::Refund,
                },
                operator,
                note,
            };
            orders.resolve(&order_id, req).await?;
            let view = orders
                .wait_final(&order_id, Duration::from_secs(60))
                .await?;
            say(g, serde_json::to_value(&view)?, || describe(&view));
            Ok(())
        }
        OrderCommand::Refund(args) => crate::refunds::refund(g, &orders, args).await,
        OrderCommand::Refunds { order_id } => crate::refunds::list(g, &orders, &order_id).await,
        OrderCommand::Wait { order_id, timeout } => {
            let view = orders.wait_final(&order_id, timeout).await?;
            say(g, serde_json::to_value(&view)?, || describe(&view));
            Ok(())
        }
    }
}

async fn orders_command(g: &CliSettings, cmd: OrdersCommand) -> anyhow::Result<()> {
    let orders = connect(g).await?;
    let (query, limit) = match cmd {
        OrdersCommand::ResumeRefunds => {
            return Ok(crate::refunds::resume(g, &orders).await?);
        }
        OrdersCommand::Stuck {
            older_than,
            status,
            limit,
        } => (
            orderflow_client::orders::stuck_query(status, older_than, SystemTime::now()),
            limit,
        ),
        OrdersCommand::List { status, limit } => {
            (orderflow_client::orders::status_query(status), limit)
        }
    };
    let found = orders.list(&query, limit).await?;
    let namespace = orders.client.options().namespace.clone();
    let link = |wf: &str| {
        format!(
            "{}/namespaces/{namespace}/workflows/{wf}",
            g.ui_url.trim_end_matches('/')
        )
    };
    let value = json!({
        "query": query,
        "orders": found.iter().map(|o| {
            let mut v = serde_json::to_value(o).unwrap_or_default();
            v["ui_url"] = json!(link(&o.workflow_id));
            v
        }).collect::<Vec<_>>(),
    });
    say(g, value, || {
        if found.is_empty() {
            return format!("no orders match\nquery: {query}");
        }
        let now = SystemTime::now();
        let mut out = format!(
            "{:<30} {:<17} {:<14} {:>12} {:<22} {:>8}  {}",
            "ORDER", "STATUS", "CUSTOMER", "AMOUNT MINOR", "DEADLINE", "AGE", "TEMPORAL UI"
        );
        for o in &found {
            let deadline = o
                .payment_deadline_ms
                .map(|ms| {
                    humantime::format_rfc3339_seconds(
                        UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
                    )
                    .to_string()
                })
                .unwrap_or_else(|| "-".to_owned());
            let age = o
                .started_ms
                .and_then(|ms| {
                    now.duration_since(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
                        .ok()
                })
                .map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string())
                .unwrap_or_else(|| "-".to_owned());
            out.push_str(&format!(
                "\n{:<30} {:<17} {:<14} {:>12} {:<22} {:>8}  {}",
                o.order_id,
                o.status.as_deref().unwrap_or("-"),
                o.customer_id.as_deref().unwrap_or("-"),
                o.amount_minor
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                deadline,
                age,
                link(&o.workflow_id)
            ));
        }
        out
    });
    Ok(())
}

async fn catalog_command(g: &CliSettings, cmd: CatalogCommand) -> anyhow::Result<()> {
    let db = open_database(&g.connection.database_url).await?;
    match cmd {
        CatalogCommand::Seed => {
            let seeded = catalog::seed_demo(&db).await?;
            let value = json!(
                seeded
                    .iter()
                    .map(|(item, level)| json!({"item": item, "stock": level}))
                    .collect::<Vec<_>>()
            );
            say(g, value, || {
                let mut out = String::from("demo catalog ready:\n");
                for (item, level) in &seeded {
                    out.push_str(&format!(
                        "  {:<14} {:>10}  available {:>4}  {}\n",
                        item.sku,
                        item.price.to_string(),
                        level.available,
                        item.name
                    ));
                }
                out.trim_end().to_owned()
            });
        }
        CatalogCommand::Add {
            sku,
            name,
            price,
            currency,
        } => {
            let item = orderflow_activities::orders::CatalogItem {
                sku: Sku::parse(sku)?,
                name,
                price: Money::parse_major(&price, Currency::parse(&currency)?)?,
            };
            orderflow_activities::orders::upsert_catalog_item(&db, &item).await?;
            say(g, json!(item), || {
                format!("{} now costs {}", item.sku, item.price)
            });
        }
        CatalogCommand::Show => {
            let items = orderflow_activities::orders::catalog(&db).await?;
            say(g, json!(items), || {
                items
                    .iter()
                    .map(|i| format!("{:<14} {:>10}  {}", i.sku, i.price.to_string(), i.name))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

async fn coupon_command(g: &CliSettings, cmd: CouponCommand) -> anyhow::Result<()> {
    let db = open_database(&g.connection.database_url).await?;
    match cmd {
        CouponCommand::Define {
            id,
            percent,
            fixed,
            currency,
            min_spend,
            valid_from_ms,
            valid_for,
        } => {
            let (kind, amount_off) = match (percent, fixed) {
                (Some(p), _) => (coupons::CouponKind::Percent, p),
                (None, Some(f)) => (coupons::CouponKind::Fixed, f),
                (None, None) => bail!("give --percent or --fixed"),
            };
            let from = valid_from_ms.unwrap_or_else(orderflow_activities::db::now_ms);
            let span = i64::try_from(valid_for.as_millis()).unwrap_or(i64::MAX);
            let def = coupons::define(
                &db,
                &coupons::CouponDefinition {
                    id,
                    kind,
                    amount_off,
                    currency: currency.to_ascii_uppercase(),
                    min_spend_minor: min_spend,
                    valid_from_ms: from,
                    valid_until_ms: from.saturating_add(span),
                },
            )
            .await?;
            say(g, json!(def), || definition_text(&def));
        }
        CouponCommand::Issue {
            definition,
            customer,
            codes,
        } => {
            let mut issued = Vec::with_capacity(codes.len());
            for code in &codes {
                issued.push(coupons::issue(&db, &definition, customer.as_deref(), code).await?);
            }
            say(g, json!(issued), || codes_text(&issued));
        }
        CouponCommand::List => {
            let defs = coupons::definitions(&db).await?;
            say(g, json!(defs), || {
                defs.iter()
                    .map(definition_text)
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        CouponCommand::Show { id_or_code } => {
            if let Some(def) = coupons::definition(&db, &id_or_code).await? {
                let codes = coupons::codes(&db, &def.id).await?;
                say(g, json!({"definition": def, "codes": codes}), || {
                    format!("{}\n{}", definition_text(&def), codes_text(&codes))
                });
            } else {
                let code = coupons::coupon(&db, &id_or_code)
                    .await?
                    .with_context(|| format!("no coupon definition or code {id_or_code}"))?;
                say(g, json!(code), || codes_text(std::slice::from_ref(&code)));
            }
        }
    }
    Ok(())
}

fn definition_text(d: &coupons::CouponDefinition) -> String {
    let off = match d.kind {
        coupons::CouponKind::Percent => format!("{}% off", d.amount_off),
        coupons::CouponKind::Fixed => {
            format!("{} off", money(Some(d.amount_off), Some(&d.currency)))
        }
    };
    let at = |ms: i64| {
        humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
        )
        .to_string()
    };
    format!(
        "{}: {off}, {} orders from {}, valid {} .. {}",
        d.id,
        d.currency,
        money(Some(d.min_spend_minor), Some(&d.currency)),
        at(d.valid_from_ms),
        at(d.valid_until_ms)
    )
}

fn codes_text(codes: &[coupons::IssuedCoupon]) -> String {
    let mut out = format!(
        "{:<24} {:<16} {:<10} {:<16} order",
        "code", "definition", "state", "customer"
    );
    for c in codes {
        out.push_str(&format!(
            "\n{:<24} {:<16} {:<10} {:<16} {}",
            c.code,
            c.definition_id,
            c.state,
            c.customer_id.as_deref().unwrap_or("anyone"),
            c.order_id.as_deref().unwrap_or("-")
        ));
    }
    out
}

async fn stock_command(g: &CliSettings, cmd: StockCommand) -> anyhow::Result<()> {
    let db = open_database(&g.connection.database_url).await?;
    match cmd {
        StockCommand::Set { sku, total } => {
            let level = catalog::set_stock(&db, &Sku::parse(sku)?, total).await?;
            say(g, json!(level), || {
                stock_table(std::slice::from_ref(&level))
            });
        }
        StockCommand::Show { sku } => {
            let levels = match sku {
                Some(sku) => {
                    let sku = Sku::parse(sku)?;
                    vec![
                        inventory::level(&db, &sku)
                            .await?
                            .with_context(|| format!("{sku} has no stock record"))?,
                    ]
                }
                None => inventory::levels(&db).await?,
            };
            let problems = inventory::audit(&db).await?;
            say(
                g,
                json!({"stock": levels, "invariant_problems": problems}),
                || {
                    let mut out = stock_table(&levels);
                    if problems.is_empty() {
                        out.push_str("\ninvariants hold: available + reserved + sold = total; ledger matches");
                    } else {
                        out.push_str("\nINVARIANT PROBLEMS:\n");
                        out.push_str(&problems.join("\n"));
                    }
                    out
                },
            );
            if !problems.is_empty() {
                bail!("stock invariants are violated");
            }
        }
    }
    Ok(())
}

fn stock_table(levels: &[inventory::StockLevel]) -> String {
    let mut out = format!(
        "{:<14} {:>7} {:>9} {:>8} {:>6}",
        "SKU", "total", "available", "reserved", "sold"
    );
    for l in levels {
        out.push_str(&format!(
            "\n{:<14} {:>7} {:>9} {:>8} {:>6}",
            l.sku, l.total, l.available, l.reserved, l.sold
        ));
    }
    out
}

pub fn say(g: &CliSettings, value: serde_json::Value, text: impl FnOnce() -> String) {
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        println!("{}", text());
    }
}

/// A multi-line, human-readable order summary.
pub fn describe(view: &OrderView) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("order", view.order_id.clone()),
        (
            "status",
            view.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "starting".to_owned()),
        ),
        ("customer", view.customer_id.clone()),
    ];
    if view.amount_minor.is_some() {
        rows.push(("amount", money(view.amount_minor, view.currency.as_deref())));
    }
    if let Some(code) = &view.coupon_code {
        rows.push((
            "coupon",
            format!(
                "{code}: {} off a subtotal of {}",
                money(view.discount_minor, view.currency.as_deref()),
                money(view.subtotal_minor, view.currency.as_deref())
            ),
        ));
    }
    if let Some(p) = &view.payment_no {
        rows.push(("payment", format!("{p} ({})", view.provider)));
    }
    let awaiting = view.status == Some(orderflow_domain::OrderStatus::AwaitingPayment);
    if let Some(url) = view.checkout_url.as_ref().filter(|_| awaiting) {
        rows.push(("pay at", url.clone()));
    }
    let deadline_matters = awaiting || view.status == Some(orderflow_domain::OrderStatus::Closed);
    if let Some(deadline) = view.payment_deadline_ms.filter(|_| deadline_matters) {
        rows.push(("deadline", deadline_text(deadline)));
    }
    if let Some(w) = &view.waiting_for {
        let since = view
            .waiting_since_ms
            .map(|ms| {
                let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                format!(" (since {})", humantime::format_rfc3339_seconds(at))
            })
            .unwrap_or_default();
        rows.push(("waiting", format!("for {w}{since}")));
    }
    if let Some(r) = &view.reason {
        rows.push(("reason", r.clone()));
    }
    rows.iter()
        .map(|(k, v)| format!("{k:<9} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn money(minor: Option<i64>, currency: Option<&str>) -> String {
    match (minor, currency.map(Currency::parse)) {
        (Some(m), Some(Ok(c))) => Money::new(m, c)
            .map(|m| m.to_string())
            .unwrap_or_else(|_| format!("{m} {c}")),
        (Some(m), _) => format!("{m} (minor units)"),
        _ => "-".to_owned(),
    }
}

fn deadline_text(deadline_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(deadline_ms).unwrap_or(0));
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    match at.duration_since(SystemTime::now()) {
        Ok(left) => format!(
            "{stamp} (in {})",
            humantime::format_duration(Duration::from_secs(left.as_secs()))
        ),
        Err(_) => format!("{stamp} (passed)"),
    }
}
fn parse_client(s: &str) -> Result<ClientId, String> {
    ClientId::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole command line, settings of every subcommand included, as `{:?}` would print it
    /// in a log: no secret given to it appears.
    #[test]
    fn the_parsed_command_line_prints_no_secret() {
        let secrets = [
            "db-PASSWORD-1",
            "sandbox-SECRET",
            "whsec_OLDSECRET",
            "whsec_NEWSECRET",
        ];
        let cli = Cli::try_parse_from([
            "orderflow",
            "serve",
            "--database-url",
            "postgres://app:db-PASSWORD-1@db.internal:5432/orders",
            "--sandbox-webhook-secret",
            "sandbox-SECRET",
            "--stripe-webhook-secrets",
            "whsec_OLDSECRET,whsec_NEWSECRET",
        ])
        .unwrap();
        let debug = format!("{cli:?}");
        for secret in secrets {
            assert!(!debug.contains(secret), "{secret:?} in {debug}");
        }
        assert!(
            debug.contains("postgres://app:***@db.internal:5432/orders"),
            "{debug}"
        );
    }
}
