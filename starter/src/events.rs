//! `orderflow events …` and `orderflow relay`: the order events as the outbox holds them, how far
//! publishing is behind, a consumer to copy, and the relay on its own.

use crate::cli::say;
use anyhow::{Context, bail};
use clap::Subcommand;
use futures::StreamExt;
use orderflow_activities::db::now_ms;
use orderflow_activities::outbox::{self, StoredEvent, rfc3339_ms};
use orderflow_domain::events::{CloudEvent, EventType};
use orderflow_relay::jetstream;
use orderflow_worker::open_database;
use orderflow_worker::settings::CliSettings;
use serde_json::json;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// How far publishing is behind: unpublished events and the oldest one's age, and the
    /// stream's state when a broker is configured.
    Status,
    /// One order's events, in sequence, from the outbox (published ones until they are pruned).
    List {
        #[arg(long = "order")]
        order_id: String,
    },
    /// Follow the published events: a durable JetStream consumer that prints each event (one
    /// CloudEvents JSON line with --json) and acknowledges it after printing. A consumer of your
    /// own works the same way: README.md, "Consuming order events".
    Tail {
        /// Only this event type, e.g. order.paid.
        #[arg(long = "type")]
        event_type: Option<EventType>,
        /// Start from the oldest event the stream holds (a new consumer otherwise starts with
        /// the next event published). An existing consumer carries on where it stopped.
        #[arg(long)]
        from_start: bool,
        /// The durable consumer's name: run again with the same name to resume.
        #[arg(long, default_value = "orderflow-tail")]
        durable: String,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

pub async fn events_command(g: &CliSettings, cmd: EventsCommand) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::Status => status(g).await,
        EventsCommand::List { order_id } => {
            let db = open_database(&g.connection.database_url).await?;
            let events = outbox::for_order(&db, &order_id).await?;
            if events.is_empty() {
                bail!("no events for order {order_id}");
            }
            say(
                g,
                json!(events.iter().map(listed).collect::<Vec<_>>()),
                || events_table(&events),
            );
            Ok(())
        }
        EventsCommand::Tail {
            event_type,
            from_start,
            durable,
            count,
        } => tail(g, event_type, from_start, &durable, count).await,
    }
}

/// `orderflow relay`: the event relay alone, until ctrl-c or SIGTERM.
pub async fn relay(g: &CliSettings) -> anyhow::Result<()> {
    if g.events.nats_url.is_none() {
        bail!("ORDERFLOW_NATS_URL is not set: there is no broker to publish the events to");
    }
    let db = open_database(&g.connection.database_url).await?;
    let tasks = orderflow_worker::spawn_event_relay(&db, &g.events, None)?;
    eprintln!(
        "relaying order events from {} to stream {}; ctrl-c to stop",
        g.connection.database_url, g.events.events_stream
    );
    orderflow_worker::shutdown_signal().await;
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    db.close().await;
    Ok(())
}

fn listed(e: &StoredEvent) -> serde_json::Value {
    json!({
        "event": e.cloud_event(),
        "published_at": e.published_at_ms.map(rfc3339_ms),
    })
}

fn events_table(events: &[StoredEvent]) -> String {
    let mut out = format!(
        "{:>4}  {:<24} {:<26} {}",
        "SEQ", "TYPE", "TIME", "PUBLISHED"
    );
    for e in events {
        out.push_str(&format!(
            "\n{:>4}  {:<24} {:<26} {}",
            e.sequence,
            e.event_type.as_str(),
            rfc3339_ms(e.created_at_ms),
            e.published_at_ms
                .map_or_else(|| "not yet".to_owned(), rfc3339_ms)
        ));
    }
    out
}

async fn status(g: &CliSettings) -> anyhow::Result<()> {
    let db = open_database(&g.connection.database_url).await?;
    let lag = outbox::lag(&db).await?;
    let age = lag.oldest_age(now_ms());
    let stream = match g.events.stream()? {
        None => json!({"configured": false}),
        Some(settings) => match stream_state(&settings).await {
            Ok(info) => json!({
                "configured": true,
                "url": jetstream::redacted(&settings.url),
                "stream": settings.stream,
                "messages": info.state.messages,
                "last_sequence": info.state.last_sequence,
                "max_age_secs": info.config.max_age.as_secs(),
                "duplicate_window_secs": info.config.duplicate_window.as_secs(),
            }),
            Err(e) => json!({
                "configured": true,
                "url": jetstream::redacted(&settings.url),
                "stream": settings.stream,
                "error": format!("{e:#}"),
            }),
        },
    };
    let value = json!({
        "pending": lag.pending,
        "oldest_pending_age_secs": age.as_secs_f64(),
        "published_kept": lag.published_kept,
        "last_published_at": lag.last_published_at_ms.map(rfc3339_ms),
        "broker": stream,
    });
    say(g, value.clone(), || {
        let mut out = format!(
            "unpublished events: {} (oldest {})\npublished, kept in the outbox: {} (last {})",
            lag.pending,
            if lag.pending == 0 {
                "-".to_owned()
            } else {
                format!("{:.1} s ago", age.as_secs_f64())
            },
            lag.published_kept,
            lag.last_published_at_ms
                .map_or_else(|| "never".to_owned(), rfc3339_ms)
        );
        let b = &value["broker"];
        if b["configured"] == false {
            out.push_str("\nbroker: none (ORDERFLOW_NATS_URL is unset; events are not published)");
        } else if let Some(error) = b["error"].as_str() {
            out.push_str(&format!("\nbroker: {} UNREACHABLE: {error}", b["url"]));
        } else {
            out.push_str(&format!(
                "\nbroker: {} stream {}: {} events, last sequence {}, kept {} h, duplicate window {} s",
                b["url"].as_str().unwrap_or_default(),
                b["stream"].as_str().unwrap_or_default(),
                b["messages"],
                b["last_sequence"],
                b["max_age_secs"].as_u64().unwrap_or(0) / 3600,
                b["duplicate_window_secs"]
            ));
        }
        out
    });
    Ok(())
}

async fn stream_state(
    settings: &jetstream::StreamSettings,
) -> anyhow::Result<async_nats::jetstream::stream::Info> {
    let js = jetstream::connect(settings).await?;
    let mut stream = js.get_stream(&settings.stream).await.with_context(|| {
        format!(
            "the stream {} (it is created when a relay starts)",
            settings.stream
        )
    })?;
    Ok(stream.info().await?.clone())
}

async fn tail(
    g: &CliSettings,
    event_type: Option<EventType>,
    from_start: bool,
    durable: &str,
    count: Option<u64>,
) -> anyhow::Result<()> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    let Some(settings) = g.events.stream()? else {
        bail!("ORDERFLOW_NATS_URL is not set: there is no stream to follow");
    };
    let js = jetstream::connect(&settings).await?;
    let stream = js.get_stream(&settings.stream).await.with_context(|| {
        format!(
            "the stream {} (it is created when a relay starts)",
            settings.stream
        )
    })?;
    let consumer = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_owned()),
                deliver_policy: if from_start {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::New
                },
                ack_policy: AckPolicy::Explicit,
                filter_subject: event_type
                    .map(|t| settings.subject(t.as_str()))
                    .unwrap_or_default(),
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("the consumer {durable}"))?;
    let mut messages = consumer.messages().await?;
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        let Some(message) = messages.next().await else {
            break;
        };
        let message = message.map_err(|e| anyhow::anyhow!("receiving: {e}"))?;
        match serde_json::from_slice::<CloudEvent>(&message.payload) {
            Ok(event) if g.json => println!("{}", serde_json::to_string(&event)?),
            Ok(event) => println!(
                "{}  #{:<3} {:<24} {}",
                event.time,
                event.sequence,
                event_short_type(&event),
                event.subject
            ),
            Err(e) => eprintln!("skipping a message that is not an order event: {e}"),
        }
        // Acknowledged once handled, and the ack confirmed by the server: a consumer that dies
        // before this gets the event again (de-duplicate on the event id).
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?;
        seen += 1;
    }
    Ok(())
}

fn event_short_type(event: &CloudEvent) -> &str {
    event
        .event_type
        .strip_prefix("io.orderflow.")
        .and_then(|t| t.strip_suffix(".v1"))
        .unwrap_or(&event.event_type)
}
