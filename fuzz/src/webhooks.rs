//! Properties of the webhook verifiers (`sandbox`, `stripe`) and the `Stripe-Signature` parser,
//! on raw request bytes as they arrive at the public endpoint.
//!
//! A fuzz input is `[mode][n][n header bytes][body]`; the mode decides how the header is made:
//!
//! * 0 — the header bytes as they are. Whatever they say, the adapter may accept the body only if
//!   the header really carries a fresh HMAC of it under a configured secret (checked here
//!   independently of the parser); and if it does and the header parses, the only possible
//!   complaint is the body.
//! * 1 — a genuine signature, `skew` seconds off (from the first header byte): fresh ones must
//!   never be refused for the signature, stale ones always are; what is accepted must be what the
//!   body says.
//! * 2 — a genuine signature for this body, then the body or the header is changed (a flipped
//!   byte, one byte more or less, another secret, another timestamp): always `SignatureMismatch`.
//! * 3 — a genuine signature with the header bytes as extra items before or after it: never
//!   `SignatureMismatch` or `StaleTimestamp`.
//!
//! Used by `fuzz/fuzz_targets/{sandbox,stripe}_webhook.rs` and, through `#[path]`, by
//! `http/tests/webhook_properties.rs`.

use orderflow_http::webhook_adapters::sandbox::{self, SandboxWebhooks};
use orderflow_http::webhook_adapters::stripe::{self, StripeWebhooks};
use orderflow_http::webhook_adapters::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookRequest,
    stripe_signature,
};
use serde_json::Value;
use std::collections::BTreeMap;

/// The verifiers' clock in every check.
pub const NOW: i64 = 1_700_000_000;
pub const TOLERANCE: i64 = stripe_signature::DEFAULT_TOLERANCE_SECS;
pub const SANDBOX_SECRET: &[u8] = b"sandbox-fuzz-secret";
/// Two endpoint secrets, as during a rotation: either one signs.
pub const STRIPE_SECRETS: [&[u8]; 2] = [b"whsec_fuzz_old", b"whsec_fuzz_new"];
pub const STRIPE_ACCOUNT: &str = "acct_fuzz";
const FOREIGN_SECRET: &[u8] = b"whsec_someone_else";

pub fn sandbox_adapter() -> SandboxWebhooks {
    SandboxWebhooks::new(SANDBOX_SECRET.to_vec())
}

pub fn stripe_adapter() -> StripeWebhooks {
    StripeWebhooks::new(STRIPE_SECRETS).with_account_id(STRIPE_ACCOUNT)
}

/// One adapter under test, with what the checks need to know about it.
pub struct Endpoint<'a> {
    pub adapter: &'a dyn WebhookAdapter,
    pub header_name: &'static str,
    pub secrets: &'a [&'a [u8]],
    /// Asserts that an accepted event says what the body says.
    pub check_fields: fn(&[u8], &VerifiedWebhook),
}

/// Calls the adapter the way the shim does: one header (if any), the raw body, [`NOW`].
pub fn deliver(
    endpoint: &Endpoint<'_>,
    header: Option<&str>,
    body: &[u8],
) -> Result<VerifiedWebhook, WebhookRejection> {
    let mut headers = BTreeMap::new();
    if let Some(header) = header {
        headers.insert(endpoint.header_name.to_owned(), header.to_owned());
    }
    let verified = endpoint.adapter.verify(
        &WebhookRequest {
            headers: &headers,
            body,
        },
        NOW,
    );
    if let Ok(verified) = &verified {
        assert!(
            header.is_some_and(|h| genuinely_signed(h, body, endpoint.secrets)),
            "{} accepted a body without a fresh, valid signature: header {header:?}",
            endpoint.adapter.provider()
        );
        (endpoint.check_fields)(body, verified);
    }
    verified
}

/// The header's hex value for `body` signed with `secret` at `t`.
fn tag(secret: &[u8], t: i64, body: &[u8]) -> String {
    let header = stripe_signature::sign(secret, t, body);
    let (_, tag) = header
        .split_once(",v1=")
        .expect("sign() writes t=...,v1=...");
    tag.to_owned()
}

/// Does `header` carry exactly one `t=` within the tolerance of [`NOW`] and a `v1=` equal to
/// the HMAC of `body` under one of `secrets`? Read item by item, without the parser under test.
pub fn genuinely_signed(header: &str, body: &[u8], secrets: &[&[u8]]) -> bool {
    let items: Vec<&str> = header.split(',').map(str::trim).collect();
    let timestamps: Vec<i64> = items
        .iter()
        .filter_map(|item| item.strip_prefix("t="))
        .filter_map(|t| t.parse().ok())
        .collect();
    let [t] = timestamps[..] else {
        return false;
    };
    if NOW.saturating_sub(t).saturating_abs() > TOLERANCE {
        return false;
    }
    secrets.iter().any(|secret| {
        let expected = tag(secret, t, body);
        items.iter().any(|item| {
            item.strip_prefix("v1=")
                .is_some_and(|v| v.eq_ignore_ascii_case(&expected))
        })
    })
}

/// `stripe_signature::parse`: what it accepts is short, has a `t=` item with that value and at
/// least one 32-byte `v1`; what `sign` writes parses back to its timestamp and tag.
pub fn check_signature_header(header: &str) {
    if let Ok(parsed) = stripe_signature::parse(header) {
        assert!(header.len() <= 4096, "{} bytes parsed", header.len());
        assert!(!parsed.signatures.is_empty());
        assert!(parsed.signatures.iter().all(|s| s.len() == 32));
        let t_items: Vec<&str> = header
            .split(',')
            .filter_map(|item| item.trim().strip_prefix("t="))
            .collect();
        assert_eq!(t_items.len(), 1, "{header:?}");
        assert_eq!(t_items[0].parse::<i64>().ok(), Some(parsed.timestamp));
    }
}

/// `[mode][n][n header bytes][body]`, tolerating any length.
pub fn split_input(data: &[u8]) -> (u8, &[u8], &[u8]) {
    let (mode, rest) = data.split_first().map_or((0, data), |(m, r)| (*m, r));
    let (n, rest) = rest.split_first().map_or((0, rest), |(n, r)| (*n, r));
    let n = usize::from(n).min(rest.len());
    (mode, &rest[..n], &rest[n..])
}

/// Runs the four modes described in the module docs against one endpoint.
pub fn check_delivery(endpoint: &Endpoint<'_>, data: &[u8]) {
    let (mode, header_bytes, body) = split_input(data);
    let pick = |i: usize| header_bytes.get(i).copied().unwrap_or(0);
    let secret = endpoint.secrets[usize::from(mode >> 2) % endpoint.secrets.len()];
    let provider = endpoint.adapter.provider();
    match mode % 4 {
        0 => {
            let header = String::from_utf8_lossy(header_bytes);
            check_signature_header(&header);
            let result = deliver(endpoint, Some(&header), body);
            if genuinely_signed(&header, body, endpoint.secrets)
                && stripe_signature::parse(&header).is_ok()
            {
                assert!(
                    matches!(result, Ok(_) | Err(WebhookRejection::MalformedBody(_))),
                    "{provider} refused a genuinely signed body: {result:?}"
                );
            }
            assert!(deliver(endpoint, None, body).is_err());
        }
        1 => {
            // -384..=381 s: both sides of the 300 s tolerance.
            let skew = i64::from(pick(0) as i8) * 3;
            let t = NOW + skew;
            let header = stripe_signature::sign(secret, t, body);
            let result = deliver(endpoint, Some(&header), body);
            if skew.abs() <= TOLERANCE {
                assert!(
                    matches!(result, Ok(_) | Err(WebhookRejection::MalformedBody(_))),
                    "{provider} refused a fresh signed body ({skew} s): {result:?}"
                );
            } else {
                assert!(
                    matches!(result, Err(WebhookRejection::StaleTimestamp { .. })),
                    "{provider}: {skew} s old, {result:?}"
                );
            }
        }
        2 => {
            let header = stripe_signature::sign(secret, NOW, body);
            let mismatch = |header: &str, body: &[u8], what: &str| {
                let result = deliver(endpoint, Some(header), body);
                assert_eq!(
                    result,
                    Err(WebhookRejection::SignatureMismatch),
                    "{provider}: {what}"
                );
            };
            if !body.is_empty() {
                let mut flipped = body.to_vec();
                let at = usize::from(pick(0)) * 256 + usize::from(pick(1));
                let at = at % flipped.len();
                flipped[at] ^= pick(2).max(1);
                mismatch(&header, &flipped, "a flipped byte");
                mismatch(&header, &body[..body.len() - 1], "a byte less");
            }
            let mut longer = body.to_vec();
            longer.push(pick(3));
            mismatch(&header, &longer, "a byte more");
            mismatch(
                &stripe_signature::sign(FOREIGN_SECRET, NOW, body),
                body,
                "another secret",
            );
            let moved = i64::from(pick(4) % 100) + 1;
            mismatch(
                &format!("t={},v1={}", NOW - moved, tag(secret, NOW, body)),
                body,
                "another timestamp",
            );
        }
        _ => {
            let extra = String::from_utf8_lossy(header_bytes);
            let signed = stripe_signature::sign(secret, NOW, body);
            for header in [format!("{signed},{extra}"), format!("{extra},{signed}")] {
                check_signature_header(&header);
                let result = deliver(endpoint, Some(&header), body);
                assert!(
                    !matches!(
                        result,
                        Err(WebhookRejection::SignatureMismatch
                            | WebhookRejection::StaleTimestamp { .. })
                    ),
                    "{provider}: a genuine signature among {extra:?}: {result:?}"
                );
            }
        }
    }
}

/// An accepted sandbox event says what its body says (read as plain JSON).
pub fn check_sandbox_fields(body: &[u8], verified: &VerifiedWebhook) {
    // The typed event skips unknown fields without checking them (UTF-8, number range), so an
    // accepted body need not be strict JSON: replace invalid UTF-8, and compare when it parses.
    let Ok(event) = serde_json::from_str::<Value>(&String::from_utf8_lossy(body)) else {
        return;
    };
    let data = &event["data"];
    assert_eq!(event["id"].as_str(), Some(verified.event_id.as_str()));
    let kind = match event["type"]
        .as_str()
        .expect("an accepted event has a type")
    {
        sandbox::PAID => WebhookEventKind::PaymentSucceeded,
        sandbox::FAILED => WebhookEventKind::PaymentFailed,
        other => WebhookEventKind::Ignored(other.to_owned()),
    };
    assert_eq!(verified.kind, kind);
    assert_eq!(data["amount_minor"].as_i64(), Some(verified.amount_minor));
    assert_eq!(
        data["currency"].as_str().map(str::to_ascii_uppercase),
        Some(verified.currency.clone())
    );
    assert_eq!(data["payment_no"].as_str(), verified.payment_no.as_deref());
    assert_eq!(
        data["txn_id"].as_str(),
        Some(verified.provider_txn_id.as_str())
    );
    assert_eq!(
        data["merchant_id"].as_str(),
        verified.merchant_id.as_deref()
    );
}

/// An accepted Stripe event says what its body says; a payment event's amount is a whole,
/// non-negative number of minor units from the field Stripe documents for it.
pub fn check_stripe_fields(body: &[u8], verified: &VerifiedWebhook) {
    let event: Value = serde_json::from_slice(body).expect("an accepted body is JSON");
    let object = &event["data"]["object"];
    assert!(object.is_object(), "accepted without data.object");
    assert!(!verified.event_id.is_empty());
    assert_eq!(event["id"].as_str(), Some(verified.event_id.as_str()));
    let merchant = match &event["account"] {
        Value::String(account) => Some(account.as_str()),
        _ => Some(STRIPE_ACCOUNT),
    };
    assert_eq!(verified.merchant_id.as_deref(), merchant);
    assert_eq!(
        object["metadata"]["payment_no"].as_str(),
        verified.payment_no.as_deref()
    );
    let (kind, amount_field) = match event["type"]
        .as_str()
        .expect("an accepted event has a type")
    {
        stripe::SUCCEEDED => (WebhookEventKind::PaymentSucceeded, "amount_received"),
        stripe::FAILED => (WebhookEventKind::PaymentFailed, "amount"),
        other => {
            assert_eq!(verified.kind, WebhookEventKind::Ignored(other.to_owned()));
            assert_eq!((verified.amount_minor, verified.currency.as_str()), (0, ""));
            return;
        }
    };
    assert_eq!(verified.kind, kind);
    assert!(
        object.get("object").is_none_or(|o| o == "payment_intent"),
        "a payment event about {}",
        object["object"]
    );
    assert!(verified.amount_minor >= 0, "{}", verified.amount_minor);
    assert_eq!(object[amount_field].as_i64(), Some(verified.amount_minor));
    assert_eq!(
        object["currency"].as_str().map(str::to_ascii_uppercase),
        Some(verified.currency.clone())
    );
    // The charge when Stripe names one, else the PaymentIntent itself.
    let txn = verified.provider_txn_id.as_str();
    let charge = &object["latest_charge"];
    assert!(
        Some(txn) == object["id"].as_str()
            || Some(txn) == charge.as_str()
            || Some(txn) == charge["id"].as_str(),
        "provider_txn_id {txn:?}"
    );
}

/// The `sandbox_webhook` target.
pub fn check_sandbox_webhook(data: &[u8]) {
    let adapter = sandbox_adapter();
    check_delivery(
        &Endpoint {
            adapter: &adapter,
            header_name: sandbox::SIGNATURE_HEADER,
            secrets: &[SANDBOX_SECRET],
            check_fields: check_sandbox_fields,
        },
        data,
    );
}

/// The `stripe_webhook` target.
pub fn check_stripe_webhook(data: &[u8]) {
    let adapter = stripe_adapter();
    check_delivery(
        &Endpoint {
            adapter: &adapter,
            header_name: stripe::SIGNATURE_HEADER,
            secrets: &STRIPE_SECRETS,
            check_fields: check_stripe_fields,
        },
        data,
    );
}
