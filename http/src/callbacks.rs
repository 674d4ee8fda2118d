//! The webhook callback log (`webhook_callbacks`) and the API's idempotency keys, which also
//! say which client owns an order (`client_orders`); with `api_keys` (api_keys.rs), the HTTP
//! shim's only writes of its own.

use base64::prelude::*;
use orderflow_activities::db::{self, Db, now_ms};
use orderflow_activities::sql;
use orderflow_domain::ClientId;
use sqlx::Row;
use std::collections::BTreeMap;

/// Verdicts stored in the log. `RECEIVED` means verified and recorded but not yet fully handled
/// (a crash or an outage in between): a redelivery of that event is processed again.
pub mod verdict {
    pub const RECEIVED: &str = "RECEIVED";
    pub const SIGNALLED: &str = "SIGNALLED";
    pub const MISMATCH_SIGNALLED: &str = "MISMATCH_SIGNALLED";
    pub const FAILED_ATTEMPT_SIGNALLED: &str = "FAILED_ATTEMPT_SIGNALLED";
    pub const LATE_PAYMENT_REFUND: &str = "LATE_PAYMENT_REFUND";
    pub const ALREADY_SETTLED: &str = "ALREADY_SETTLED";
    pub const IGNORED: &str = "IGNORED";
    /// A provider's report on a refund, written to the payment's log.
    pub const REFUND_RECORDED: &str = "REFUND_RECORDED";
    pub const UNKNOWN_PAYMENT: &str = "UNKNOWN_PAYMENT";
    pub const MERCHANT_MISMATCH: &str = "MERCHANT_MISMATCH";
    pub const UNKNOWN_PROVIDER: &str = "UNKNOWN_PROVIDER";
    /// The body was over the size limit: recorded truncated to its first 64 KiB, answered `413`.
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
}

/// Headers that carry credentials (lower-case, as the pipeline passes them).
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// One inbound request as received.
pub struct Callback<'a> {
    pub provider: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
}

impl Callback<'_> {
    fn stored_body(&self) -> (String, &'static str) {
        match std::str::from_utf8(self.body) {
            Ok(text) => (text.to_owned(), "utf8"),
            Err(_) => (BASE64_STANDARD.encode(self.body), "base64"),
        }
    }

    /// The headers as logged. Credentials never are: a request to an unknown provider keeps all
    /// its headers, and an API client that posts there by mistake must not leave its key in the log.
    fn stored_headers(&self) -> String {
        let shown: BTreeMap<&str, &str> = self
            .headers
            .iter()
            .filter(|(name, _)| !CREDENTIAL_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        serde_json::to_string(&shown).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Records a request that was refused before its event could be trusted.
/// The widest values the callback log keeps (the narrowest engine's columns, MySQL's
/// `migrations/mysql/0002_http.sql`): a refused request's provider is whatever the URL said, and
/// is kept cut to this; a verified event's id and payment number must fit whole (they identify
/// the event), and one that does not is refused as malformed (`webhooks.rs`).
pub const MAX_PROVIDER_CHARS: usize = 255;
pub const MAX_EVENT_ID_CHARS: usize = 255;
pub const MAX_PAYMENT_NO_CHARS: usize = 500;

/// `text` cut to at most `max` characters.
fn clipped(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(at, _)| &text[..at])
}

pub async fn record_refused(
    db: &Db,
    callback: &Callback<'_>,
    verdict: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    let (body, encoding) = callback.stored_body();
    let now = now_ms();
    sql!(
        "INSERT INTO webhook_callbacks
            (provider, event_id, payment_no, verdict, detail, headers, body, body_encoding,
             received_at_ms, updated_at_ms)
         VALUES ($1, NULL, NULL, $2, $3, $4, $5, $6, $7, $7)",
    )
    .on(db.engine())
    .bind(clipped(callback.provider, MAX_PROVIDER_CHARS))
    .bind(verdict)
    .bind(detail)
    .bind(callback.stored_headers())
    .bind(body)
    .bind(encoding)
    .bind(now)
    .execute(db.writes())
    .await?;
    Ok(())
}

/// What the log knew of a verified event when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// First delivery: recorded as `RECEIVED`.
    New,
    /// Seen before; its verdict is final, so this delivery does nothing else.
    Duplicate { verdict: String },
    /// Seen before but never finished (`RECEIVED`), or refused for a reason that a later delivery
    /// may not have (the payment was not found): handle it again, answer again.
    Unfinished,
}

/// Records a verified event, once per (provider, event id).
pub async fn record_verified(
    db: &Db,
    callback: &Callback<'_>,
    event_id: &str,
    payment_no: Option<&str>,
) -> Result<Arrival, sqlx::Error> {
    let (body, encoding) = callback.stored_body();
    let now = now_ms();
    let inserted = sql!(
        "INSERT INTO webhook_callbacks
            (provider, event_id, payment_no, verdict, detail, headers, body, body_encoding,
             received_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, 'RECEIVED', NULL, $4, $5, $6, $7, $7)
         ON CONFLICT (provider, event_id) WHERE event_id IS NOT NULL DO NOTHING",
        key: "webhook_callbacks_event",
    )
    .on(db.engine())
    .bind(callback.provider)
    .bind(event_id)
    .bind(payment_no)
    .bind(callback.stored_headers())
    .bind(body)
    .bind(encoding)
    .bind(now)
    .execute(db.writes())
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Arrival::New);
    }
    let verdict = count_delivery(db, callback.provider, event_id, now).await?;
    let redo = [
        verdict::RECEIVED,
        verdict::UNKNOWN_PAYMENT,
        verdict::MERCHANT_MISMATCH,
    ];
    Ok(if redo.contains(&verdict.as_str()) {
        Arrival::Unfinished
    } else {
        Arrival::Duplicate { verdict }
    })
}

/// Sets the final verdict of a verified event.
pub async fn set_verdict(
    db: &Db,
    provider: &str,
    event_id: &str,
    verdict: &str,
    detail: Option<&str>,
) -> Result<(), sqlx::Error> {
    sql!(
        "UPDATE webhook_callbacks SET verdict = $3, detail = $4, updated_at_ms = $5
          WHERE provider = $1 AND event_id = $2",
    )
    .on(db.engine())
    .bind(provider)
    .bind(event_id)
    .bind(verdict)
    .bind(detail)
    .bind(now_ms())
    .execute(db.writes())
    .await?;
    Ok(())
}

/// A row of the log, for tests and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCallback {
    pub provider: String,
    pub event_id: Option<String>,
    pub verdict: String,
    pub deliveries: i64,
}

pub async fn list(db: &Db) -> Result<Vec<LoggedCallback>, sqlx::Error> {
    sql!("SELECT provider, event_id, verdict, deliveries FROM webhook_callbacks ORDER BY id")
        .on(db.engine())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(LoggedCallback {
                provider: r.try_get(0)?,
                event_id: r.try_get(1)?,
                verdict: r.try_get(2)?,
                deliveries: r.try_get(3)?,
            })
        })
        .collect()
}

/// The outcome of presenting an idempotency key with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// First use: the key now belongs to this request.
    Claimed,
    /// Used before with the same request: the same order.
    Repeat { order_id: String },
    /// Used before with a different request.
    Conflict { order_id: String },
}

/// Claims `key` for `client`'s request; the order it names becomes the client's.
pub async fn claim_idempotency_key(
    db: &Db,
    client: &ClientId,
    key: &str,
    request_sha256: &str,
    order_id: &str,
) -> Result<KeyClaim, sqlx::Error> {
    let inserted = sql!(
        "INSERT INTO client_orders
            (client_id, idempotency_key, request_sha256, order_id, created_at_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id, idempotency_key) DO NOTHING",
    )
    .on(db.engine())
    .bind(client.as_str())
    .bind(key)
    .bind(request_sha256)
    .bind(order_id)
    .bind(now_ms())
    .execute(db.writes())
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(KeyClaim::Claimed);
    }
    let row = sql!(
        "SELECT request_sha256, order_id FROM client_orders
          WHERE client_id = $1 AND idempotency_key = $2",
    )
    .on(db.engine())
    .bind(client.as_str())
    .bind(key)
    .fetch_one(db.pool())
    .await?;
    let (stored, order_id): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    Ok(if stored == request_sha256 {
        KeyClaim::Repeat { order_id }
    } else {
        KeyClaim::Conflict { order_id }
    })
}

/// Counts one more delivery of a recorded event and returns the verdict it has.
async fn count_delivery(
    db: &Db,
    provider: &str,
    event_id: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    if db.engine() != db::Engine::MySql {
        return sql!(
            "UPDATE webhook_callbacks SET deliveries = deliveries + 1, updated_at_ms = $3
              WHERE provider = $1 AND event_id = $2
              RETURNING verdict",
            only: [Sqlite, Postgres]
        )
        .on(db)
        .bind(provider)
        .bind(event_id)
        .bind(now)
        .fetch_one_scalar(db.writes())
        .await;
    }
    // No UPDATE … RETURNING on MySQL: the update, then a read of the row it locked, in one
    // transaction.
    let mut tx = db.begin_write().await?;
    sql!(
        "UPDATE webhook_callbacks SET deliveries = deliveries + 1, updated_at_ms = $3
          WHERE provider = $1 AND event_id = $2"
    )
    .on(db)
    .bind(provider)
    .bind(event_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let verdict =
        sql!("SELECT verdict FROM webhook_callbacks WHERE provider = $1 AND event_id = $2")
            .on(db)
            .bind(provider)
            .bind(event_id)
            .fetch_one_scalar(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::Callback;
    use std::collections::BTreeMap;

    #[test]
    fn credentials_are_never_logged() {
        let headers = BTreeMap::from([
            ("authorization".to_owned(), "Bearer ofk_secret".to_owned()),
            ("cookie".to_owned(), "session=secret".to_owned()),
            ("sandbox-signature".to_owned(), "t=1,v1=ab".to_owned()),
        ]);
        let stored = Callback {
            provider: "nope",
            headers: &headers,
            body: b"{}",
        }
        .stored_headers();
        assert_eq!(stored, r#"{"sandbox-signature":"t=1,v1=ab"}"#);
    }

    #[test]
    fn bodies_are_stored_as_text_or_padded_standard_base64() {
        let headers = BTreeMap::new();
        let stored = |body: &[u8]| {
            Callback {
                provider: "sandbox",
                headers: &headers,
                body,
            }
            .stored_body()
        };
        assert_eq!(stored(b"{\"id\":1}"), ("{\"id\":1}".to_owned(), "utf8"));
        assert_eq!(
            stored(&[0xff, 0xfe, 0x00, 0x80]),
            ("//4AgA==".to_owned(), "base64")
        );
    }
}
