//! The event sink on NATS JetStream: one stream (`ORDERFLOW_ORDERS` by default) on the subjects
//! `<prefix>.>`, each event on `<prefix>.<type>` (`orderflow.orders.order.paid`) with the header
//! `Nats-Msg-Id` = the event id, so the stream stores an event once however often it is published
//! within the duplicate window.

use crate::sink::{EventSink, Outgoing};
use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use std::time::Duration;
use tokio::sync::Mutex;

/// Where events go and how long the broker keeps them. `{:?}` shows the URL without its
/// credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamSettings {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    /// How long the stream keeps an event (JetStream `max_age`).
    pub max_age: Duration,
    /// The broker drops a second publish of an event id seen within this window. It must be
    /// longer than any gap between two publishes of one event: the relay's longest back-off plus
    /// a publish's ack timeout (checked by [`StreamSettings::check`]).
    pub duplicate_window: Duration,
}

impl std::fmt::Debug for StreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSettings")
            .field("url", &redacted(&self.url))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("max_age", &self.max_age)
            .field("duplicate_window", &self.duplicate_window)
            .finish()
    }
}

/// How long a publish waits for the stream's ack before the relay counts it failed.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl StreamSettings {
    /// The subject an event of `event_type` (`order.paid`) is published on.
    pub fn subject(&self, event_type: &str) -> String {
        format!("{}.{event_type}", self.subject_prefix)
    }

    /// Refuses a duplicate window too short to cover the relay's retries.
    pub fn check(&self, max_backoff: Duration) -> anyhow::Result<()> {
        let needed = max_backoff + ACK_TIMEOUT * 2;
        anyhow::ensure!(
            self.duplicate_window >= needed,
            "the events duplicate window ({} s) must be longer than the relay's longest retry gap \
             ({} s back-off + {} s for two ack timeouts), or an event retried after it could be \
             stored twice",
            self.duplicate_window.as_secs(),
            max_backoff.as_secs(),
            (ACK_TIMEOUT * 2).as_secs()
        );
        anyhow::ensure!(
            !self.stream.is_empty()
                && !self.stream.contains(['.', ' ', '*', '>'])
                && !self.subject_prefix.is_empty()
                && !self.subject_prefix.contains([' ', '*', '>']),
            "the events stream name must not contain '.', ' ', '*' or '>', and the subject prefix \
             no wildcard"
        );
        Ok(())
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            max_age: self.max_age,
            duplicate_window: self.duplicate_window,
            storage: stream::StorageType::File,
            ..Default::default()
        }
    }
}

/// Connects to the server at `settings.url` (retrying in the background after a lost connection)
/// and returns its JetStream context with the publish ack timeout set.
pub async fn connect(settings: &StreamSettings) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .name("orderflow")
        .connection_timeout(Duration::from_secs(5))
        .connect(settings.url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", redacted(&settings.url)))?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .ack_timeout(ACK_TIMEOUT)
        .build(client))
}

/// Creates the stream if missing, or brings its retention and duplicate window to the settings.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<stream::Info> {
    let wanted = settings.stream_config();
    match js.get_stream(&settings.stream).await {
        Ok(mut existing) => {
            let info = existing.info().await?.clone();
            if info.config.max_age == wanted.max_age
                && info.config.duplicate_window == wanted.duplicate_window
                && info.config.subjects == wanted.subjects
            {
                return Ok(info);
            }
            let mut config = info.config.clone();
            config.max_age = wanted.max_age;
            config.duplicate_window = wanted.duplicate_window;
            config.subjects = wanted.subjects;
            tracing::info!(stream = %settings.stream, "updating the events stream's settings");
            Ok(js.update_stream(config).await?)
        }
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            tracing::info!(stream = %settings.stream, "creating the events stream");
            Ok(js
                .create_stream(wanted)
                .await
                .with_context(|| format!("creating the stream {}", settings.stream))?
                .info()
                .await?
                .clone())
        }
        Err(e) => Err(e).with_context(|| format!("looking up the stream {}", settings.stream)),
    }
}

/// A URL as it may be printed: without its password or token.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The JetStream sink. It connects on its first publish and creates the stream then, so a worker
/// starts while the broker is down; events wait in the outbox meanwhile.
pub struct JetStreamSink {
    settings: StreamSettings,
    context: Mutex<Option<jetstream::Context>>,
}

impl JetStreamSink {
    pub fn new(settings: StreamSettings) -> JetStreamSink {
        JetStreamSink {
            settings,
            context: Mutex::new(None),
        }
    }

    async fn context(&self) -> anyhow::Result<jetstream::Context> {
        let mut slot = self.context.lock().await;
        if let Some(js) = slot.as_ref() {
            return Ok(js.clone());
        }
        let js = connect(&self.settings).await?;
        ensure_stream(&js, &self.settings).await?;
        tracing::info!(
            url = %redacted(&self.settings.url),
            stream = %self.settings.stream,
            "publishing order events to NATS JetStream"
        );
        *slot = Some(js.clone());
        Ok(js)
    }
}

#[async_trait::async_trait]
impl EventSink for JetStreamSink {
    fn name(&self) -> &'static str {
        "nats-jetstream"
    }

    async fn publish(&self, events: &[Outgoing]) -> Vec<anyhow::Result<()>> {
        let js = match self.context().await {
            Ok(js) => js,
            Err(e) => {
                let e = format!("{e:#}");
                return events.iter().map(|_| Err(anyhow::anyhow!("{e}"))).collect();
            }
        };
        // All sent first, in order, then every ack awaited: one round trip for the batch.
        let mut acks = Vec::with_capacity(events.len());
        for Outgoing { event_type, event } in events {
            let payload = serde_json::to_vec(event).expect("an event serializes");
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(event.id.as_str());
            let subject = self.settings.subject(event_type.as_str());
            acks.push(js.send_publish(subject, publish).await);
        }
        // Awaited together: each ack's timeout runs from when it is awaited, so one after the
        // other a broker that went away would cost a timeout per event.
        futures::future::join_all(acks.into_iter().map(|ack| async move {
            match ack {
                Ok(future) => future.await.map(|_| ()).map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            }
        }))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StreamSettings {
        StreamSettings {
            url: "nats://user:secret@127.0.0.1:4222".into(),
            stream: "ORDERFLOW_ORDERS".into(),
            subject_prefix: "orderflow.orders".into(),
            max_age: Duration::from_secs(3600),
            duplicate_window: Duration::from_secs(120),
        }
    }

    #[test]
    fn subjects_are_the_prefix_and_the_short_type() {
        let s = settings();
        assert_eq!(s.subject("order.paid"), "orderflow.orders.order.paid");
        assert_eq!(s.stream_config().subjects, ["orderflow.orders.>"]);
    }

    #[test]
    fn a_duplicate_window_shorter_than_the_retry_gap_is_refused() {
        let s = settings();
        assert!(s.check(Duration::from_secs(30)).is_ok());
        let err = s.check(Duration::from_secs(115)).unwrap_err().to_string();
        assert!(err.contains("duplicate window (120 s)"), "{err}");
        let mut bad = settings();
        bad.stream = "orders.x".into();
        assert!(bad.check(Duration::from_secs(1)).is_err());
    }

    #[test]
    fn urls_print_without_credentials() {
        assert_eq!(
            redacted("nats://user:secret@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
        assert_eq!(redacted("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        let debug = format!("{:?}", settings());
        assert!(
            debug.contains("***@127.0.0.1") && !debug.contains("secret"),
            "{debug}"
        );
    }
}
