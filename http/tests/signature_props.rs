//! Properties of webhook signature checking, on inputs nobody would write by hand.
//!
//! Webhook endpoints are public: whatever bytes arrive must end in a verdict, never a panic (a
//! panic is a 500, and the provider retries it for days). And the verdict must be the right one:
//! a body signed with the secret always passes, a body changed in any byte never does.

use orderflow_http::webhook_adapters::sandbox::{self, SandboxWebhooks};
use orderflow_http::webhook_adapters::stripe::{self as stripe_webhooks, StripeWebhooks};
use orderflow_http::webhook_adapters::{
    WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookRequest, stripe_signature,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const TOLERANCE: i64 = stripe_signature::DEFAULT_TOLERANCE_SECS;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Headers that get past a naive split: the right keys, odd numbers, hex of every length.
fn near_valid_header() -> impl Strategy<Value = String> {
    "(t=-?[0-9]{0,22}|v1=[0-9a-fA-F]{0,70}|v0=[a-z0-9]{0,8}|[a-z0-9=]{0,6}| ){0,6}"
        .prop_map(|s| s.replace(' ', ","))
}

fn any_header() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), near_valid_header()]
}

/// A timestamp and a "now" within the tolerance of it, anywhere in the i64 range.
fn fresh_times() -> impl Strategy<Value = (i64, i64)> {
    (
        (i64::MIN + TOLERANCE)..(i64::MAX - TOLERANCE),
        -TOLERANCE..=TOLERANCE,
    )
        .prop_map(|(t, skew)| (t, t + skew))
}

fn request_headers(name: &str, value: Option<String>) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    if let Some(value) = value {
        headers.insert(name.to_owned(), value);
    }
    headers
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_never_panics(header in any_header()) {
        let _ = stripe_signature::parse(&header);
    }

    #[test]
    fn verify_never_panics(
        header in any_header(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        secrets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..3),
        now in any::<i64>(),
        tolerance in any::<i64>(),
    ) {
        let secrets: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
        let _ = stripe_signature::verify(&header, &body, &secrets, now, tolerance);
    }

    #[test]
    fn adapters_never_panic(
        header in proptest::option::of(any_header()),
        extra in proptest::collection::btree_map(".{0,20}", ".{0,40}", 0..4),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        now in any::<i64>(),
    ) {
        let sandbox = SandboxWebhooks::new(b"sandbox-secret".to_vec());
        let stripe = StripeWebhooks::new([b"whsec_a".as_slice(), b"whsec_b"]).with_account_id("acct_1");
        for (adapter, name) in [
            (&sandbox as &dyn WebhookAdapter, sandbox::SIGNATURE_HEADER),
            (&stripe, stripe_webhooks::SIGNATURE_HEADER),
        ] {
            let mut headers = extra.clone();
            headers.extend(request_headers(name, header.clone()));
            let _ = adapter.verify(&WebhookRequest { headers: &headers, body: &body }, now);
        }
    }

    #[test]
    fn adapters_never_panic_on_signed_garbage(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            // JSON that looks like an event, with the wrong types in the wrong places.
            "\\{\"id\":(\"evt_[a-z0-9]{0,5}\"|1|null),\"type\":(\"payment_intent\\.succeeded\"|\"payment_intent\\.payment_failed\"|\"charge\\.paid\"|\"x\"|2),\"data\":(\\{\"object\":\\{(\"[a-z_]{1,16}\":(-?[0-9]{1,20}|\"[a-z]{0,4}\"|null|1\\.5|\\[\\]|\\{\\}),?){0,6}\"id\":\"pi_1\"\\}\\}|null|\\[\\])\\}"
                .prop_map(String::into_bytes),
        ],
        (t, now) in fresh_times(),
    ) {
        let sandbox = SandboxWebhooks::new(b"k".to_vec());
        let stripe = StripeWebhooks::new([b"k".as_slice()]);
        for (adapter, name) in [
            (&sandbox as &dyn WebhookAdapter, sandbox::SIGNATURE_HEADER),
            (&stripe, stripe_webhooks::SIGNATURE_HEADER),
        ] {
            let headers = request_headers(name, Some(stripe_signature::sign(b"k", t, &body)));
            match adapter.verify(&WebhookRequest { headers: &headers, body: &body }, now) {
                // A good signature leaves only the body to object to.
                Ok(_) | Err(WebhookRejection::MalformedBody(_)) => {}
                Err(other) => prop_assert!(false, "{} refused a signed body: {other:?}", adapter.provider()),
            }
        }
    }

    #[test]
    fn a_signed_body_always_verifies(
        secret in proptest::collection::vec(any::<u8>(), 0..100),
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        (t, now) in fresh_times(),
    ) {
        let header = stripe_signature::sign(&secret, t, &body);
        prop_assert_eq!(
            stripe_signature::verify(&header, &body, &[b"other".as_slice(), &secret], now, TOLERANCE),
            Ok(t)
        );
    }

    #[test]
    fn flipping_any_byte_never_verifies(
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        body in proptest::collection::vec(any::<u8>(), 1..1024),
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        (t, now) in fresh_times(),
    ) {
        let header = stripe_signature::sign(&secret, t, &body);
        let mut flipped = body.clone();
        let i = index.index(flipped.len());
        flipped[i] ^= mask;
        prop_assert_eq!(
            stripe_signature::verify(&header, &flipped, &[secret.as_slice()], now, TOLERANCE),
            Err(WebhookRejection::SignatureMismatch)
        );
    }

    #[test]
    fn a_signed_stripe_event_verifies_and_a_flipped_one_does_not(
        event_id in "evt_[A-Za-z0-9]{1,24}",
        payment_no in "pay_[0-9a-f]{28}",
        amount in 0i64..=i64::MAX,
        currency in "[a-z]{3}",
        succeeded in any::<bool>(),
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        (t, now) in fresh_times(),
    ) {
        let event_type = if succeeded { stripe_webhooks::SUCCEEDED } else { stripe_webhooks::FAILED };
        let body = serde_json::to_vec(&serde_json::json!({
            "id": event_id, "object": "event", "type": event_type,
            "data": {"object": {
                "id": "pi_1", "object": "payment_intent", "amount": amount,
                "amount_received": if succeeded { amount } else { 0 },
                "currency": currency, "latest_charge": null,
                "metadata": {"payment_no": payment_no}
            }}
        })).unwrap();
        let adapter = StripeWebhooks::new([b"whsec_x".as_slice()]);
        let headers = request_headers(
            stripe_webhooks::SIGNATURE_HEADER,
            Some(stripe_signature::sign(b"whsec_x", t, &body)),
        );
        let verified = adapter
            .verify(&WebhookRequest { headers: &headers, body: &body }, now)
            .unwrap();
        prop_assert_eq!(&verified.event_id, &event_id);
        prop_assert_eq!(verified.payment_no.as_deref(), Some(payment_no.as_str()));
        prop_assert_eq!(verified.amount_minor, amount);
        prop_assert_eq!(verified.currency, currency.to_ascii_uppercase());
        prop_assert_eq!(
            verified.kind,
            if succeeded { WebhookEventKind::PaymentSucceeded } else { WebhookEventKind::PaymentFailed }
        );

        let mut flipped = body.clone();
        let i = index.index(flipped.len());
        flipped[i] ^= mask;
        prop_assert_eq!(
            adapter.verify(&WebhookRequest { headers: &headers, body: &flipped }, now),
            Err(WebhookRejection::SignatureMismatch)
        );
    }
}
