//! Webhooks of the `sandbox` gateway: Stripe's signature scheme in a `Sandbox-Signature` header,
//! a small JSON event, any 2xx answer.
//!
//! ```json
//! {"id": "sbx_evt_pay_…_paid", "type": "charge.paid", "created": 1700000000,
//!  "data": {"payment_no": "pay_…", "amount_minor": 5248, "currency": "USD",
//!           "txn_id": "sbx_txn_…", "merchant_id": "orderflow-sandbox"}}
//! ```

use super::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookReply,
    WebhookRequest, stripe_signature,
};
use serde::{Deserialize, Serialize};

pub const SIGNATURE_HEADER: &str = "sandbox-signature";
/// The account id the sandbox puts on its events.
pub const MERCHANT_ID: &str = "orderflow-sandbox";
pub const PAID: &str = "charge.paid";
pub const FAILED: &str = "charge.failed";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: SandboxEventData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxEventData {
    pub payment_no: String,
    pub amount_minor: i64,
    pub currency: String,
    pub txn_id: String,
    pub merchant_id: String,
}

/// Signs an event the way the sandbox gateway sends it: returns the header value and the body.
pub fn sign_event(secret: &[u8], event: &SandboxEvent, now_unix: i64) -> (String, Vec<u8>) {
    let body = serde_json::to_vec(event).expect("events serialize");
    (stripe_signature::sign(secret, now_unix, &body), body)
}

pub struct SandboxWebhooks {
    secret: Vec<u8>,
    tolerance_secs: i64,
}

impl SandboxWebhooks {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        SandboxWebhooks {
            secret: secret.into(),
            tolerance_secs: stripe_signature::DEFAULT_TOLERANCE_SECS,
        }
    }
}

impl WebhookAdapter for SandboxWebhooks {
    fn provider(&self) -> &'static str {
        orderflow_activities::providers::sandbox::NAME
    }

    fn merchant_id(&self) -> Option<&str> {
        Some(MERCHANT_ID)
    }

    fn recorded_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER, "content-type", "user-agent"]
    }

    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        now_unix: i64,
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        let header = req
            .header(SIGNATURE_HEADER)
            .ok_or(WebhookRejection::MissingHeader("Sandbox-Signature"))?;
        stripe_signature::verify(
            header,
            req.body,
            &[self.secret.as_slice()],
            now_unix,
            self.tolerance_secs,
        )?;
        let event: SandboxEvent = serde_json::from_slice(req.body)
            .map_err(|e| WebhookRejection::MalformedBody(e.to_string()))?;
        // A signature proves who sent the event, not that it makes sense. A negative amount is
        // no payment (the sandbox never charges one); zero is one: a free order costs nothing.
        if event.data.amount_minor < 0 {
            return Err(WebhookRejection::MalformedBody(format!(
                "data.amount_minor is {}; amounts are never negative",
                event.data.amount_minor
            )));
        }
        let kind = match event.kind.as_str() {
            PAID => WebhookEventKind::PaymentSucceeded,
            FAILED => WebhookEventKind::PaymentFailed,
            other => WebhookEventKind::Ignored(other.to_owned()),
        };
        Ok(VerifiedWebhook {
            event_id: event.id,
            kind,
            payment_no: Some(event.data.payment_no),
            amount_minor: event.data.amount_minor,
            currency: event.data.currency.to_ascii_uppercase(),
            provider_txn_id: event.data.txn_id,
            merchant_id: Some(event.data.merchant_id),
            note: None,
        })
    }

    fn ack(&self) -> WebhookReply {
        WebhookReply::json_received()
    }

    fn nack(&self, status: u16, code: &str, message: &str) -> WebhookReply {
        WebhookReply::json_error(status, code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event() -> SandboxEvent {
        SandboxEvent {
            id: "sbx_evt_1".into(),
            kind: PAID.into(),
            created: 1_700_000_000,
            data: SandboxEventData {
                payment_no: "pay_1".into(),
                amount_minor: 999,
                currency: "USD".into(),
                txn_id: "sbx_txn_1".into(),
                merchant_id: MERCHANT_ID.into(),
            },
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let adapter = SandboxWebhooks::new(b"s3cret".to_vec());
        let (header, body) = sign_event(b"s3cret", &event(), 1_700_000_000);
        let mut headers = BTreeMap::new();
        headers.insert(SIGNATURE_HEADER.to_owned(), header.clone());
        let req = WebhookRequest {
            headers: &headers,
            body: &body,
        };
        let verified = adapter.verify(&req, 1_700_000_005).unwrap();
        assert_eq!(verified.kind, WebhookEventKind::PaymentSucceeded);
        assert_eq!(verified.payment_no.as_deref(), Some("pay_1"));
        assert_eq!(verified.amount_minor, 999);

        let mut flipped = body.clone();
        flipped[10] ^= 1;
        let req = WebhookRequest {
            headers: &headers,
            body: &flipped,
        };
        assert_eq!(
            adapter.verify(&req, 1_700_000_005),
            Err(WebhookRejection::SignatureMismatch)
        );

        let empty = BTreeMap::new();
        let req = WebhookRequest {
            headers: &empty,
            body: &body,
        };
        assert!(matches!(
            adapter.verify(&req, 0),
            Err(WebhookRejection::MissingHeader(_))
        ));

        let (header, body) = sign_event(b"s3cret", &event(), 1_700_000_000);
        headers.insert(SIGNATURE_HEADER.to_owned(), header);
        let req = WebhookRequest {
            headers: &headers,
            body: &body,
        };
        assert!(matches!(
            adapter.verify(&req, 1_700_001_000),
            Err(WebhookRejection::StaleTimestamp { .. })
        ));

        // Signed, fresh, and still refused: a negative amount is no payment, for a paid event
        // and a failed one alike. Zero is a payment (a free order).
        for kind in [PAID, FAILED] {
            for (amount, accepted) in [(-1, false), (i64::MIN, false), (0, true)] {
                let mut negative = event();
                negative.kind = kind.into();
                negative.data.amount_minor = amount;
                let (header, body) = sign_event(b"s3cret", &negative, 1_700_000_000);
                headers.insert(SIGNATURE_HEADER.to_owned(), header);
                let req = WebhookRequest {
                    headers: &headers,
                    body: &body,
                };
                let verified = adapter.verify(&req, 1_700_000_005);
                if accepted {
                    assert_eq!(verified.map(|v| v.amount_minor), Ok(amount));
                } else {
                    let rejection = verified.expect_err("a negative amount is refused");
                    assert!(
                        matches!(rejection, WebhookRejection::MalformedBody(_)),
                        "{rejection:?}"
                    );
                    assert_eq!(rejection.code(), "MALFORMED_BODY");
                }
            }
        }

        let garbage = b"not json";
        let header = stripe_signature::sign(b"s3cret", 5, garbage);
        headers.insert(SIGNATURE_HEADER.to_owned(), header);
        let req = WebhookRequest {
            headers: &headers,
            body: garbage,
        };
        assert!(matches!(
            adapter.verify(&req, 5),
            Err(WebhookRejection::MalformedBody(_))
        ));
    }
}
