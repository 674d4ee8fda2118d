//! The order events Orderflow announces to downstream services (fulfilment, marketing, risk): their
//! types, their CloudEvents envelope and their data. Each event is written to the outbox in the
//! transaction of the change it announces (`orderflow_activities::outbox`) and relayed to NATS
//! JetStream; the data of each type is documented by `schemas/events/<type>.json`.

use crate::status::OrderStatus;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The CloudEvents `source` of every event.
pub const SOURCE: &str = "urn:orderflow:orders";
/// The CloudEvents `specversion` this envelope follows.
pub const SPEC_VERSION: &str = "1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum EventType {
    OrderCreated,
    OrderAwaitingPayment,
    OrderPaid,
    OrderClosed,
    OrderCancelled,
    OrderRejected,
    OrderNeedsReview,
    OrderRefunded,
    OrderPartiallyRefunded,
    PaymentReceivedLate,
    RefundRequested,
    RefundCompleted,
}

impl EventType {
    pub const ALL: [EventType; 12] = [
        EventType::OrderCreated,
        EventType::OrderAwaitingPayment,
        EventType::OrderPaid,
        EventType::OrderClosed,
        EventType::OrderCancelled,
        EventType::OrderRejected,
        EventType::OrderNeedsReview,
        EventType::OrderRefunded,
        EventType::OrderPartiallyRefunded,
        EventType::PaymentReceivedLate,
        EventType::RefundRequested,
        EventType::RefundCompleted,
    ];

    /// The short name stored in the outbox and used in subjects: `order.paid`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "order.created",
            EventType::OrderAwaitingPayment => "order.awaiting_payment",
            EventType::OrderPaid => "order.paid",
            EventType::OrderClosed => "order.closed",
            EventType::OrderCancelled => "order.cancelled",
            EventType::OrderRejected => "order.rejected",
            EventType::OrderNeedsReview => "order.needs_review",
            EventType::OrderRefunded => "order.refunded",
            EventType::OrderPartiallyRefunded => "order.partially_refunded",
            EventType::PaymentReceivedLate => "payment.received_late",
            EventType::RefundRequested => "refund.requested",
            EventType::RefundCompleted => "refund.completed",
        }
    }

    /// The CloudEvents `type`: `io.orderflow.order.paid.v1`. A breaking change to a type's data
    /// gets a new version, published next to the old one until its consumers have moved.
    pub fn cloudevents_type(self) -> String {
        format!("io.orderflow.{}.v1", self.as_str())
    }

    /// The event that announces an order reaching `status`. `PENDING` is the order's creation.
    pub fn for_status(status: OrderStatus) -> EventType {
        match status {
            OrderStatus::Pending => EventType::OrderCreated,
            OrderStatus::AwaitingPayment => EventType::OrderAwaitingPayment,
            OrderStatus::Paid => EventType::OrderPaid,
            OrderStatus::Closed => EventType::OrderClosed,
            OrderStatus::Cancelled => EventType::OrderCancelled,
            OrderStatus::Rejected => EventType::OrderRejected,
            OrderStatus::NeedsReview => EventType::OrderNeedsReview,
            OrderStatus::Refunded => EventType::OrderRefunded,
            OrderStatus::PartiallyRefunded => EventType::OrderPartiallyRefunded,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<EventType> for &'static str {
    fn from(t: EventType) -> &'static str {
        t.as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}; expected one of: {list}", list = EventType::ALL.map(EventType::as_str).join(", "))]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;
    fn from_str(s: &str) -> Result<EventType, UnknownEventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

impl TryFrom<String> for EventType {
    type Error = UnknownEventType;
    fn try_from(s: String) -> Result<EventType, UnknownEventType> {
        s.parse()
    }
}

/// The event id (CloudEvents `id`, the broker's `Nats-Msg-Id`): derived from the order and the
/// event's sequence number, never random, so every retry of a publish carries the same id.
pub fn event_id(order_id: &str, sequence: i64) -> String {
    format!("{order_id}.{sequence}")
}

/// An amount as events carry it: integer minor units and the ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// The payment an order event refers to, as far as it is known when the event is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayment {
    pub payment_no: String,
    /// The payment deadline, RFC 3339 UTC.
    pub deadline: String,
    /// Where the customer pays (the hosted checkout or our QR payment page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
    /// What the QR code encodes (WeChat Pay's `code_url`, Alipay's `qr_code`), for shops that draw
    /// their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_payload: Option<String>,
    /// What the provider reported paid (`order.paid`, `order.needs_review`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_txn_id: Option<String>,
}

/// The data of every `order.*` event: the order as it stands after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEventData {
    pub order_id: String,
    pub status: OrderStatus,
    pub customer_id: String,
    pub provider: String,
    /// Absent for an order rejected before it could be priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The lines, on `order.created`, `order.paid` (what to ship) and a priced `order.rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<EventLine>>,
    /// On every event after the payment was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<EventPayment>,
}

/// A line of an after-sale refund: units of a SKU and the money that goes back for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEventLine {
    pub sku: String,
    pub quantity: i64,
    pub amount_minor: i64,
}

/// The data of `payment.received_late`, `refund.requested` and `refund.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEventData {
    pub order_id: String,
    pub payment_no: String,
    pub provider: String,
    /// Received late: what the provider holds. Refund completed: what went back.
    pub amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_txn_id: Option<String>,
    /// `refund.completed`: our refund number (the provider's `out_refund_no`) and its id there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An after-sale refund of lines: which units, and for how much each line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<RefundEventLine>>,
    /// An after-sale refund: whether the refunded units go back to sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restock: Option<bool>,
}

/// An event as published: CloudEvents 1.0 attributes in JSON (structured mode), with the order's
/// sequence number as the extension attribute `sequence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The order id.
    pub subject: String,
    /// When the change committed, RFC 3339 UTC.
    pub time: String,
    pub datacontenttype: String,
    /// The event's place among its order's events: 1, 2, 3… without gaps.
    pub sequence: i64,
    pub data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_event_and_names_round_trip() {
        for status in OrderStatus::ALL {
            let t = EventType::for_status(*status);
            assert!(t.as_str().starts_with("order."));
        }
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        assert_eq!(
            EventType::OrderPaid.cloudevents_type(),
            "io.orderflow.order.paid.v1"
        );
        let err = "order.shipped".parse::<EventType>().unwrap_err();
        assert!(err.to_string().contains("order.paid"), "{err}");
    }
}
