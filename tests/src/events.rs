//! Order events in tests: the JSON Schemas in `schemas/events/` that every event must meet (checked
//! for every event any [`crate::TestApp`] produced, when it is dropped), NATS servers of a test's
//! own, and a stream read back.

use crate::{free_port, unique, wait_for_port, workspace_root};
use anyhow::Context as _;
use futures::StreamExt;
use orderflow_activities::db::Db;
use orderflow_activities::outbox::{self, StoredEvent};
use orderflow_domain::events::{CloudEvent, EventType};
use orderflow_relay::jetstream::StreamSettings;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

struct Schemas {
    envelope: jsonschema::Validator,
    data: BTreeMap<EventType, jsonschema::Validator>,
}

fn compile(name: &str) -> jsonschema::Validator {
    let path = workspace_root().join(format!("schemas/events/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas {
        envelope: compile("cloudevent"),
        data: EventType::ALL
            .into_iter()
            .map(|t| (t, compile(t.as_str())))
            .collect(),
    })
}

/// Checks one event against the envelope's schema and its type's data schema.
pub fn validate(event_type: EventType, event: &CloudEvent) -> Result<(), String> {
    let s = schemas();
    let json = serde_json::to_value(event).expect("an event serializes");
    let mut problems: Vec<String> = s
        .envelope
        .iter_errors(&json)
        .map(|e| format!("envelope {}: {e}", e.instance_path()))
        .collect();
    problems.extend(
        s.data[&event_type]
            .iter_errors(&event.data)
            .map(|e| format!("data{}: {e}", e.instance_path())),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "event {} ({}) does not meet its schema: {}\n{}",
            event.id,
            event_type,
            problems.join("; "),
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ))
    }
}

/// Every event in the outbox meets its schemas, and each order's events are numbered 1, 2, 3…
/// without gaps. Returns how many it checked.
pub async fn check_outbox(db: &Db) -> anyhow::Result<usize> {
    // One statement, so one snapshot: an order's later event never shows without the one before.
    let events = outbox::page(db, 0, i64::MAX).await?;
    let mut by_order: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for e in &events {
        validate(e.event_type, &e.cloud_event()).map_err(anyhow::Error::msg)?;
        by_order
            .entry(e.order_id.as_str())
            .or_default()
            .push(e.sequence);
    }
    for (order, mut seqs) in by_order {
        seqs.sort_unstable();
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        anyhow::ensure!(
            seqs == expected,
            "order {order}: event sequence numbers {seqs:?}, expected {expected:?}"
        );
    }
    Ok(events.len())
}

/// The order's events, by type, in sequence; asserts they are numbered 1, 2, 3… and meet their
/// schemas.
pub async fn event_types(db: &Db, order_id: &str) -> Vec<String> {
    let events = outbox::for_order(db, order_id).await.expect("the outbox");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, i as i64 + 1, "{events:#?}");
        assert_eq!(e.event_id, format!("{order_id}.{}", e.sequence));
        if let Err(problem) = validate(e.event_type, &e.cloud_event()) {
            panic!("{problem}");
        }
    }
    events
        .iter()
        .map(|e| e.event_type.as_str().to_owned())
        .collect()
}

/// The shared NATS server with JetStream (`TEST_NATS_URL`, default the development machines'
/// 127.0.0.1:4222).
pub fn shared_nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Stream settings of a test's own: a unique stream and subject prefix on the server at `url`.
pub fn stream_settings(url: &str) -> StreamSettings {
    let id = unique("t");
    StreamSettings {
        url: url.to_owned(),
        stream: format!("ORDERFLOW_TEST_{}", id.to_uppercase()),
        subject_prefix: format!("orderflow-test.{id}"),
        max_age: Duration::from_secs(3600),
        duplicate_window: Duration::from_secs(300),
    }
}

/// Every message the stream holds, in stream order, as events.
pub async fn stream_contents(settings: &StreamSettings) -> anyhow::Result<Vec<CloudEvent>> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    let js = orderflow_relay::jetstream::connect(settings).await?;
    let mut stream = js.get_stream(&settings.stream).await?;
    let total = stream.info().await?.state.messages;
    if total == 0 {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut events = Vec::with_capacity(total as usize);
    while (events.len() as u64) < total {
        let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .context("reading the stream back")?
            .context("the stream ended")?
            .map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
        events.push(serde_json::from_slice(&message.payload)?);
    }
    Ok(events)
}

/// The stream holds every outbox event exactly once (by id, and with the outbox's content), and
/// each order's events in sequence.
pub fn assert_stream_matches_outbox(stream: &[CloudEvent], outbox: &[StoredEvent]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for e in stream {
        *seen.entry(e.id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "events in the stream more than once: {twice:?}"
    );
    assert_eq!(
        stream.len(),
        outbox.len(),
        "the stream holds {} events, the outbox {}",
        stream.len(),
        outbox.len()
    );
    let published: BTreeMap<&str, &CloudEvent> =
        stream.iter().map(|e| (e.id.as_str(), e)).collect();
    for stored in outbox {
        let in_stream = published
            .get(stored.event_id.as_str())
            .unwrap_or_else(|| panic!("event {} never reached the stream", stored.event_id));
        assert_eq!(**in_stream, stored.cloud_event(), "published as stored");
    }
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for e in stream {
        let before = last.insert(e.subject.as_str(), e.sequence).unwrap_or(0);
        assert_eq!(
            e.sequence,
            before + 1,
            "order {}: event {} follows event {before} in the stream",
            e.subject,
            e.sequence
        );
    }
}

/// Every event in the outbox, oldest first.
pub async fn all_events(db: &Db) -> Vec<StoredEvent> {
    outbox::page(db, 0, i64::MAX).await.expect("the outbox")
}

/// A NATS server with JetStream of a test's own (`nats-server -js`, from Debian's `nats-server`),
/// on a free port, with its store in a directory that outlives a stop: a restart finds its
/// streams and its duplicate window as they were.
pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> anyhow::Result<NatsServer> {
        let store = workspace_root().join("target/test-nats").join(unique("js"));
        std::fs::create_dir_all(&store)?;
        let mut server = NatsServer {
            port: free_port(),
            store,
            child: None,
        };
        server.resume()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and store.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting nats-server (Debian package nats-server; scripts/lib.sh installs it)",
            )?;
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20))
    }

    /// Stops the server (SIGKILL: as abrupt as a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
