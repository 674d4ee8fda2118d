//! The transactional outbox of order events (migrations/*/0006_outbox.sql).
//!
//! Writing: every event is inserted inside the transaction of the change it announces — an order's
//! status (`orders::mark_status_in`, `orders::insert_order_in`), a late payment or a completed
//! refund (`payments`) — so an event exists if and only if its change committed. An order's events
//! are numbered 1, 2, 3… by bumping `orders.event_seq`, which takes the order row's lock: two
//! changes of one order commit one after the other, in sequence order, and a number is never
//! given out twice (not even after its event was pruned).
//!
//! Relaying (`orderflow-relay`): [`claim`] takes, in a transaction, the oldest unpublished events
//! that are first in line for their order (no earlier event of the same order is unpublished), so
//! an order's events are published in sequence whatever the number of relays; on PostgreSQL and
//! MySQL with `FOR UPDATE SKIP LOCKED`, so concurrent relays take different events. The relay
//! publishes, waits for the broker's acks, marks what was acked ([`mark_published`]) and commits.
//! A relay that dies before its commit leaves its events unpublished; the next relay publishes
//! them again under the same id, which the broker's duplicate window drops.

use crate::db::{Db, Engine, now_ms};
use crate::sql;
use crate::sql::Text;
use orderflow_domain::OrderStatus;
use orderflow_domain::events::{
    self, Amount, CloudEvent, EventLine, EventPayment, EventType, OrderEventData, PaymentEventData,
};
use serde::{Deserialize, Serialize};
use sqlx::{Any, AnyConnection, Row, Transaction};
use std::time::{Duration, UNIX_EPOCH};

/// An event as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The row's position: claims go oldest first.
    pub id: i64,
    pub event_id: String,
    pub order_id: String,
    pub sequence: i64,
    pub event_type: EventType,
    /// The event's data, JSON.
    pub data: String,
    pub created_at_ms: i64,
    pub published_at_ms: Option<i64>,
}

impl StoredEvent {
    /// The event as published: CloudEvents 1.0 attributes, structured JSON.
    pub fn cloud_event(&self) -> CloudEvent {
        CloudEvent {
            specversion: events::SPEC_VERSION.to_owned(),
            id: self.event_id.clone(),
            source: events::SOURCE.to_owned(),
            event_type: self.event_type.cloudevents_type(),
            subject: self.order_id.clone(),
            time: rfc3339_ms(self.created_at_ms),
            datacontenttype: "application/json".to_owned(),
            sequence: self.sequence,
            // Written by `insert_in` from a serialized struct: it parses.
            data: serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null),
        }
    }

    fn from_row(r: &sqlx::any::AnyRow) -> Result<StoredEvent, sqlx::Error> {
        let event_type: String = r.try_get(4)?;
        Ok(StoredEvent {
            id: r.try_get(0)?,
            event_id: r.try_get(1)?,
            order_id: r.try_get(2)?,
            sequence: r.try_get(3)?,
            event_type: event_type
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            data: r.try_get::<Text, _>(5)?.into(),
            created_at_ms: r.try_get(6)?,
            published_at_ms: r.try_get(7)?,
        })
    }
}

/// RFC 3339 UTC with milliseconds, as CloudEvents' `time` and the events' deadlines.
pub fn rfc3339_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0).unsigned_abs()))
        .to_string()
}

/// Inserts an event with the number the caller already took.
async fn insert_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
    sequence: i64,
    event_type: EventType,
    data: &impl Serialize,
    now: i64,
) -> Result<(), sqlx::Error> {
    let data = serde_json::to_string(data).expect("event data serializes");
    sql!(
        "INSERT INTO outbox (event_id, order_id, sequence, type, data, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .on(&**tx)
    .bind(events::event_id(order_id, sequence))
    .bind(order_id)
    .bind(sequence)
    .bind(event_type.as_str())
    .bind(data)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The first event of an order whose row the caller just inserted with `event_seq = 1`
/// (`orders::insert_order_in`): `order.created`, or `order.rejected` for an order refused as it
/// was placed. Its data is at hand, so nothing is read.
pub(crate) async fn first_in(
    tx: &mut Transaction<'static, Any>,
    data: &OrderEventData,
    now: i64,
) -> Result<(), sqlx::Error> {
    insert_in(
        tx,
        &data.order_id,
        1,
        EventType::for_status(data.status),
        data,
        now,
    )
    .await
}

/// The data of the first event, for the PostgreSQL statement that inserts an order in one go.
pub(crate) fn first_event_json(data: &OrderEventData) -> (String, &'static str, String) {
    (
        events::event_id(&data.order_id, 1),
        EventType::for_status(data.status).as_str(),
        serde_json::to_string(data).expect("event data serializes"),
    )
}

/// Takes the order's next event number (read back with the order): the update locks the order
/// row until the commit. False when there is no order row.
async fn bump_sequence(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
) -> Result<bool, sqlx::Error> {
    Ok(
        sql!("UPDATE orders SET event_seq = event_seq + 1 WHERE order_id = $1")
            .on(&**tx)
            .bind(order_id)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Announces that the order reached `status` (the caller recorded it in this transaction): the
/// order and its payment as they now stand, and the lines when it is paid (what to ship).
pub(crate) async fn status_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
    status: OrderStatus,
) -> Result<(), sqlx::Error> {
    if !bump_sequence(tx, order_id).await? {
        return Ok(());
    }
    let r = sql!(
        "SELECT o.customer_id, o.provider, o.amount_minor, o.currency, o.reason,
                p.payment_no, p.deadline_ms, p.checkout_url, p.qr_payload,
                p.paid_amount_minor, p.paid_currency, p.provider_txn_id, o.event_seq
           FROM orders o LEFT JOIN payments p ON p.order_id = o.order_id
          WHERE o.order_id = $1"
    )
    .on(&**tx)
    .bind(order_id)
    .fetch_one(&mut **tx)
    .await?;
    let sequence: i64 = r.try_get(12)?;
    let amount = match (r.try_get::<Option<i64>, _>(2)?, r.try_get(3)?) {
        (Some(minor), Some(currency)) => Some(Amount { minor, currency }),
        _ => None,
    };
    let payment = match r.try_get::<Option<String>, _>(5)? {
        Some(payment_no) => Some(EventPayment {
            payment_no,
            deadline: rfc3339_ms(r.try_get(6)?),
            checkout_url: r.try_get::<Option<Text>, _>(7)?.map(String::from),
            qr_payload: r.try_get::<Option<Text>, _>(8)?.map(String::from),
            paid: match (r.try_get::<Option<i64>, _>(9)?, r.try_get(10)?) {
                (Some(minor), Some(currency)) => Some(Amount { minor, currency }),
                _ => None,
            },
            provider_txn_id: r.try_get(11)?,
        }),
        None => None,
    };
    let lines = if status == OrderStatus::Paid {
        Some(lines_in(tx, order_id).await?)
    } else {
        None
    };
    let data = OrderEventData {
        order_id: order_id.to_owned(),
        status,
        customer_id: r.try_get(0)?,
        provider: r.try_get(1)?,
        amount,
        reason: r.try_get::<Option<Text>, _>(4)?.map(String::from),
        lines,
        payment,
    };
    insert_in(
        tx,
        order_id,
        sequence,
        EventType::for_status(status),
        &data,
        now_ms(),
    )
    .await
}

async fn lines_in(
    tx: &mut Transaction<'static, Any>,
    order_id: &str,
) -> Result<Vec<EventLine>, sqlx::Error> {
    sql!(
        "SELECT sku, quantity, unit_price_minor, line_total_minor FROM order_lines
          WHERE order_id = $1 ORDER BY sku"
    )
    .on(&**tx)
    .bind(order_id)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| {
        Ok(EventLine {
            sku: r.try_get(0)?,
            quantity: r.try_get(1)?,
            unit_price_minor: r.try_get(2)?,
            line_total_minor: r.try_get(3)?,
        })
    })
    .collect()
}

/// Announces a payment event of `payment_no`'s order (`payment.received_late`,
/// `refund.completed`). `data.order_id` and `data.provider` are filled in from the payment row.
pub(crate) async fn payment_in(
    tx: &mut Transaction<'static, Any>,
    payment_no: &str,
    event_type: EventType,
    mut data: PaymentEventData,
) -> Result<(), sqlx::Error> {
    let bumped = sql!(
        "UPDATE orders SET event_seq = event_seq + 1
          WHERE order_id = (SELECT order_id FROM payments WHERE payment_no = $1)"
    )
    .on(&**tx)
    .bind(payment_no)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if bumped == 0 {
        return Ok(());
    }
    let (order_id, provider, sequence): (String, String, i64) = sql!(
        "SELECT o.order_id, p.provider, o.event_seq
           FROM payments p JOIN orders o ON o.order_id = p.order_id
          WHERE p.payment_no = $1"
    )
    .on(&**tx)
    .bind(payment_no)
    .fetch_one_as(&mut **tx)
    .await?;
    data.order_id.clone_from(&order_id);
    data.provider = provider;
    insert_in(tx, &order_id, sequence, event_type, &data, now_ms()).await
}

/// Claims, on `conn` (in a transaction on PostgreSQL and MySQL: the rows stay locked until it
/// ends), up to `limit` unpublished events that are first in line for their order,
/// oldest first (see the module docs).
pub async fn claim(conn: &mut AnyConnection, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let stmt = if Engine::of(conn) == Engine::Sqlite {
        // One writer at a time, and a relay per file: nothing to skip.
        sql!(
            "SELECT id, event_id, order_id, sequence, type, data, created_at_ms, published_at_ms
               FROM outbox o
              WHERE published_at_ms IS NULL
                AND NOT EXISTS (SELECT 1 FROM outbox e
                                 WHERE e.order_id = o.order_id AND e.sequence < o.sequence
                                   AND e.published_at_ms IS NULL)
              ORDER BY id LIMIT $1",
            only: [Sqlite],
        )
    } else {
        sql!(
            "SELECT id, event_id, order_id, sequence, type, data, created_at_ms, published_at_ms
               FROM outbox o
              WHERE published_at_ms IS NULL
                AND NOT EXISTS (SELECT 1 FROM outbox e
                                 WHERE e.order_id = o.order_id AND e.sequence < o.sequence
                                   AND e.published_at_ms IS NULL)
              ORDER BY id LIMIT $1
                FOR UPDATE SKIP LOCKED",
            only: [Postgres, MySql],
        )
    };
    stmt.on(&*conn)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(StoredEvent::from_row)
        .collect()
}

/// Marks the events `ids` published (in the claim's transaction, where there is one).
pub async fn mark_published(conn: &mut AnyConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    // One statement for the batch; the list's length varies, so it is built here. Only integers
    // are spliced in.
    let list = ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "UPDATE outbox SET published_at_ms = {} WHERE id IN ({list}) AND published_at_ms IS NULL",
        now_ms()
    );
    sqlx::query(&text).execute(&mut *conn).await?;
    Ok(())
}

/// How far publishing is behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// Events not yet published.
    pub pending: i64,
    /// When the oldest of them was written.
    pub oldest_pending_at_ms: Option<i64>,
    /// Published events still kept (pruned after the retention).
    pub published_kept: i64,
    pub last_published_at_ms: Option<i64>,
}

impl Lag {
    /// Age of the oldest unpublished event at `now_ms` (zero when none waits).
    pub fn oldest_age(&self, now_ms: i64) -> Duration {
        self.oldest_pending_at_ms.map_or(Duration::ZERO, |at| {
            Duration::from_millis(now_ms.saturating_sub(at).max(0).unsigned_abs())
        })
    }
}

pub async fn lag(db: &Db) -> Result<Lag, sqlx::Error> {
    let r = sql!(
        "SELECT CAST(COUNT(*) AS BIGINT), MIN(created_at_ms) FROM outbox WHERE published_at_ms IS NULL"
    )
    .on(db)
    .fetch_one(db.pool())
    .await?;
    let p = sql!(
        "SELECT CAST(COUNT(*) AS BIGINT), MAX(published_at_ms) FROM outbox
          WHERE published_at_ms IS NOT NULL"
    )
    .on(db)
    .fetch_one(db.pool())
    .await?;
    Ok(Lag {
        pending: r.try_get(0)?,
        oldest_pending_at_ms: r.try_get(1)?,
        published_kept: p.try_get(0)?,
        last_published_at_ms: p.try_get(1)?,
    })
}

/// An order's events, in sequence.
pub async fn for_order(db: &Db, order_id: &str) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sql!(
        "SELECT id, event_id, order_id, sequence, type, data, created_at_ms, published_at_ms
           FROM outbox WHERE order_id = $1 ORDER BY sequence"
    )
    .on(db)
    .bind(order_id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(StoredEvent::from_row)
    .collect()
}

/// Every event still in the outbox, oldest first, `limit` after position `after` (for tests and
/// audits).
pub async fn page(db: &Db, after: i64, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sql!(
        "SELECT id, event_id, order_id, sequence, type, data, created_at_ms, published_at_ms
           FROM outbox WHERE id > $1 ORDER BY id LIMIT $2"
    )
    .on(db)
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(StoredEvent::from_row)
    .collect()
}

/// Deletes up to `limit` events published before `before_ms`. Returns how many it deleted.
pub async fn prune(db: &Db, before_ms: i64, limit: i64) -> Result<u64, sqlx::Error> {
    Ok(sql!(
        "DELETE FROM outbox WHERE id IN (
            SELECT id FROM outbox WHERE published_at_ms < $1 ORDER BY published_at_ms LIMIT $2)",
        // MySQL takes no LIMIT in an IN subquery, but has DELETE … LIMIT.
        mysql: "DELETE FROM outbox WHERE published_at_ms < $1 ORDER BY published_at_ms LIMIT $2",
    )
    .on(db)
    .bind(before_ms)
    .bind(limit)
    .execute(db.writes())
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_780_000_000_123), "2026-05-28T20:26:40.123Z");
    }

    #[test]
    fn stored_events_become_cloud_events() {
        let stored = StoredEvent {
            id: 7,
            event_id: events::event_id("ord_1", 2),
            order_id: "ord_1".into(),
            sequence: 2,
            event_type: EventType::OrderPaid,
            data: r#"{"order_id":"ord_1"}"#.into(),
            created_at_ms: 0,
            published_at_ms: None,
        };
        let ce = serde_json::to_value(stored.cloud_event()).unwrap();
        assert_eq!(ce["id"], "ord_1.2");
        assert_eq!(ce["type"], "io.orderflow.order.paid.v1");
        assert_eq!(ce["subject"], "ord_1");
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["sequence"], 2);
        assert_eq!(ce["data"]["order_id"], "ord_1");
    }
}
