//! The webhook verifiers against bad input, end to end: what an adapter accepts is genuinely
//! signed and says exactly what the body says; what is signed is never refused for the
//! signature; what is changed after signing always is.
//!
//! The properties are in `fuzz/src/webhooks.rs`, shared with the libFuzzer targets
//! `sandbox_webhook` and `stripe_webhook` (`scripts/fuzz.sh`). `signature_props.rs` already
//! covers the signature scheme alone (parse / verify never panic, flips never verify); this file
//! adds the event bodies: amounts as strings, floats, `1e400`, negative, `2^63`, `-2^63-1`,
//! duplicate JSON keys, 10,000-deep nesting, invalid UTF-8, huge bodies, over-long ids.

#[path = "../../fuzz/src/webhooks.rs"]
mod checks;

use checks::{
    Endpoint, NOW, SANDBOX_SECRET, STRIPE_ACCOUNT, STRIPE_SECRETS, check_sandbox_fields,
    check_sandbox_webhook, check_signature_header, check_stripe_fields, check_stripe_webhook,
    deliver, genuinely_signed, sandbox_adapter, stripe_adapter,
};
use orderflow_http::webhook_adapters::sandbox;
use orderflow_http::webhook_adapters::stripe;
use orderflow_http::webhook_adapters::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookReply,
    WebhookRequest, stripe_signature,
};
use proptest::prelude::*;

const TWO_POW_63: &str = "9223372036854775808";
const MINUS_TWO_POW_63_MINUS_ONE: &str = "-9223372036854775809";

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// A sandbox event with `amount` spliced in as raw JSON text.
fn sandbox_body(id: &str, kind: &str, amount: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"{kind}","created":{NOW},"data":{{"payment_no":"pay_1","amount_minor":{amount},"currency":"usd","txn_id":"sbx_txn_1","merchant_id":"orderflow-sandbox"}}}}"#
    )
    .into_bytes()
}

/// A Stripe `payment_intent.succeeded` with `amount` spliced in as `amount_received`.
fn stripe_body(id: &str, amount: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","object":"event","type":"payment_intent.succeeded","data":{{"object":{{"id":"pi_1","object":"payment_intent","amount":5248,"amount_received":{amount},"currency":"usd","latest_charge":"ch_1","metadata":{{"payment_no":"pay_1"}}}}}}}}"#
    )
    .into_bytes()
}

fn sandbox_endpoint<'a>(adapter: &'a sandbox::SandboxWebhooks) -> Endpoint<'a> {
    Endpoint {
        adapter,
        header_name: sandbox::SIGNATURE_HEADER,
        secrets: &[SANDBOX_SECRET],
        check_fields: check_sandbox_fields,
    }
}

fn stripe_endpoint<'a>(adapter: &'a stripe::StripeWebhooks) -> Endpoint<'a> {
    Endpoint {
        adapter,
        header_name: stripe::SIGNATURE_HEADER,
        secrets: &STRIPE_SECRETS,
        check_fields: check_stripe_fields,
    }
}

fn sandbox_signed(body: &[u8]) -> Result<VerifiedWebhook, WebhookRejection> {
    let adapter = sandbox_adapter();
    let header = stripe_signature::sign(SANDBOX_SECRET, NOW, body);
    deliver(&sandbox_endpoint(&adapter), Some(&header), body)
}

fn stripe_signed(body: &[u8]) -> Result<VerifiedWebhook, WebhookRejection> {
    let adapter = stripe_adapter();
    let header = stripe_signature::sign(STRIPE_SECRETS[1], NOW, body);
    deliver(&stripe_endpoint(&adapter), Some(&header), body)
}

fn malformed<T: std::fmt::Debug>(result: Result<T, WebhookRejection>) -> bool {
    matches!(result, Err(WebhookRejection::MalformedBody(_)))
}

/// The wrong types and sizes a sender could put where an amount goes.
const BAD_AMOUNTS: &[&str] = &[
    "\"5248\"",
    "52.48",
    "5248.0",
    "1e400",
    "-1e400",
    "5.248e3",
    TWO_POW_63,
    MINUS_TWO_POW_63_MINUS_ONE,
    "null",
    "[5248]",
    "{\"value\":5248}",
    "true",
];

#[test]
fn sandbox_amounts_must_be_whole_and_non_negative() {
    for amount in BAD_AMOUNTS {
        assert!(
            malformed(sandbox_signed(&sandbox_body("e1", sandbox::PAID, amount))),
            "{amount}"
        );
    }
    let max = sandbox_signed(&sandbox_body("e1", sandbox::PAID, &i64::MAX.to_string())).unwrap();
    assert_eq!(max.amount_minor, i64::MAX);
    // A negative amount is refused, signed or not (it is no payment), for a paid event and a
    // failed one; never clamped, never turned into another number. Zero is a payment.
    for kind in [sandbox::PAID, sandbox::FAILED] {
        for amount in ["-5", "-1", "-9223372036854775808"] {
            assert!(
                malformed(sandbox_signed(&sandbox_body("e1", kind, amount))),
                "{kind} {amount}"
            );
        }
    }
    let zero = sandbox_signed(&sandbox_body("e1", sandbox::PAID, "0")).unwrap();
    assert_eq!(zero.amount_minor, 0);
}

#[test]
fn stripe_amounts_must_be_whole_and_non_negative() {
    for amount in BAD_AMOUNTS.iter().chain(&["-1", "-9223372036854775808"]) {
        assert!(
            malformed(stripe_signed(&stripe_body("evt_1", amount))),
            "{amount}"
        );
    }
    let max = stripe_signed(&stripe_body("evt_1", &i64::MAX.to_string())).unwrap();
    assert_eq!(max.amount_minor, i64::MAX);
    assert_eq!(
        stripe_signed(&stripe_body("evt_1", "0"))
            .unwrap()
            .amount_minor,
        0
    );
}

#[test]
fn duplicate_keys() {
    // The sandbox's typed event refuses a field given twice: an ambiguous body is not guessed at.
    let twice = br#"{"id":"e1","type":"charge.paid","created":1,"data":{"payment_no":"pay_1","amount_minor":1,"amount_minor":999999,"currency":"USD","txn_id":"t","merchant_id":"m"}}"#;
    assert!(malformed(sandbox_signed(twice)));
    // Stripe events are read as generic JSON, where the last value wins (as in JSON.parse and
    // Stripe's own libraries); the signature covers the whole body, so nobody else can add one.
    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","object":"payment_intent","amount_received":1,"currency":"usd","amount_received":700}}}"#;
    assert_eq!(stripe_signed(body).unwrap().amount_minor, 700);
    let ids = br#"{"id":"evt_a","id":"evt_b","type":"charge.refunded","data":{"object":{}}}"#;
    assert_eq!(stripe_signed(ids).unwrap().event_id, "evt_b");
}

#[test]
fn invalid_utf8_in_a_field_nobody_reads() {
    // The sandbox's typed event skips unknown fields without checking their UTF-8 (serde), so a
    // signed body with such a field is accepted; Stripe's generic JSON reading refuses it.
    let body = b"{\"id\":\"e1\",\"note\":\"\xff\",\"type\":\"charge.paid\",\"created\":1,\"data\":{\"payment_no\":\"pay_1\",\"amount_minor\":1,\"currency\":\"USD\",\"txn_id\":\"t\",\"merchant_id\":\"m\"}}";
    assert_eq!(sandbox_signed(body).unwrap().amount_minor, 1);
    let body = b"{\"id\":\"evt_1\",\"note\":\"\xff\",\"type\":\"charge.refunded\",\"data\":{\"object\":{}}}";
    assert!(malformed(stripe_signed(body)));
}

#[test]
fn deep_nesting_invalid_utf8_and_non_objects_are_malformed() {
    let deep_amount = sandbox_body("e1", sandbox::PAID, &nested(10_000));
    assert!(malformed(sandbox_signed(&deep_amount)));
    assert!(malformed(stripe_signed(&stripe_body(
        "evt_1",
        &nested(10_000)
    ))));
    let deep = nested(10_000).into_bytes();
    assert!(malformed(sandbox_signed(&deep)));
    assert!(malformed(stripe_signed(&deep)));
    let deep_object = format!("{}{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    assert!(malformed(stripe_signed(deep_object.as_bytes())));

    let mut invalid = sandbox_body("e1", sandbox::PAID, "1");
    invalid[8] = 0xff;
    assert!(malformed(sandbox_signed(&invalid)));
    let mut invalid = stripe_body("evt_1", "1");
    invalid[9] = 0xc3;
    assert!(malformed(stripe_signed(&invalid)));
    for body in [&b"\xff\xfe\xfd"[..], b"", b"null", b"5248", b"\"evt\""] {
        assert!(malformed(sandbox_signed(body)));
        assert!(malformed(stripe_signed(body)));
    }
}

#[test]
fn huge_bodies_and_over_long_ids() {
    // The shim caps bodies at 64 KiB; the adapters themselves take whatever they are given.
    let mut padded = sandbox_body("e1", sandbox::PAID, "1");
    padded.extend(std::iter::repeat_n(b' ', 1 << 20));
    assert_eq!(sandbox_signed(&padded).unwrap().amount_minor, 1);
    let mut padded = stripe_body("evt_1", "1");
    padded.extend(std::iter::repeat_n(b'\n', 1 << 20));
    assert_eq!(stripe_signed(&padded).unwrap().amount_minor, 1);

    // A 10 KB event id is kept whole: truncating it could merge two events into one.
    let long_id = "e".repeat(10 * 1024);
    let verified = sandbox_signed(&sandbox_body(&long_id, sandbox::PAID, "1")).unwrap();
    assert_eq!(verified.event_id, long_id);
    let verified = stripe_signed(&stripe_body(&long_id, "1")).unwrap();
    assert_eq!(verified.event_id, long_id);

    // A 10 KB signature header is refused before any HMAC is computed.
    let body = stripe_body("evt_1", "1");
    let long_header = format!(
        "{},{}",
        stripe_signature::sign(STRIPE_SECRETS[0], NOW, &body),
        "v0=0".repeat(2_600)
    );
    check_signature_header(&long_header);
    let adapter = stripe_adapter();
    assert_eq!(
        deliver(&stripe_endpoint(&adapter), Some(&long_header), &body),
        Err(WebhookRejection::BadSignatureHeader(
            "header too long".into()
        ))
    );
}

#[test]
fn the_independent_signature_check_is_itself_right() {
    let body = b"{}";
    let good = stripe_signature::sign(SANDBOX_SECRET, NOW, body);
    assert!(genuinely_signed(&good, body, &[SANDBOX_SECRET]));
    assert!(genuinely_signed(
        &good
            .to_uppercase()
            .replace("T=", "t=")
            .replace("V1=", "v1="),
        body,
        &[SANDBOX_SECRET]
    ));
    assert!(!genuinely_signed(&good, b"{ }", &[SANDBOX_SECRET]));
    assert!(!genuinely_signed(&good, body, &[b"other".as_slice()]));
    assert!(!genuinely_signed(
        &format!("{good},t={NOW}"),
        body,
        &[SANDBOX_SECRET]
    ));
    let stale = stripe_signature::sign(SANDBOX_SECRET, NOW - 301, body);
    assert!(!genuinely_signed(&stale, body, &[SANDBOX_SECRET]));
}

#[test]
fn every_mode_of_the_fuzz_input_on_a_real_event() {
    // [mode][n][n header bytes][body], as the fuzz targets read it.
    let event = stripe_body("evt_1", "5248");
    for mode in 0..=255u8 {
        for header in [
            &b""[..],
            b"\x00\x01\x02\x03\x04",
            b"\xa0",
            b"\x7f",
            b"t=1,v1=00",
        ] {
            let input = [&[mode, header.len() as u8][..], header, &event].concat();
            check_stripe_webhook(&input);
            let input = [
                &[mode, header.len() as u8][..],
                header,
                &sandbox_body("e1", sandbox::PAID, "1"),
            ]
            .concat();
            check_sandbox_webhook(&input);
        }
    }
    // Truncated inputs: no mode byte, no length byte, a length past the end.
    for input in [&b""[..], b"\x01", b"\x01\xff", b"\x00\x05t="] {
        check_sandbox_webhook(input);
        check_stripe_webhook(input);
    }
}

// ---------------------------------------------------------------------------------------------
// The checks catch broken verifiers

/// The real Stripe adapter with one flaw injected, to show the shared checks are not vacuous.
struct Flawed {
    real: stripe::StripeWebhooks,
    flaw: Flaw,
}

enum Flaw {
    /// Re-signs whatever arrives, as if the signature were never looked at.
    SkipsSignature,
    /// Checks the signature but not its age.
    SkipsTimestamp,
    /// Reports one minor unit more than the body says.
    OffByOne,
}

impl WebhookAdapter for Flawed {
    fn provider(&self) -> &'static str {
        self.real.provider()
    }
    fn merchant_id(&self) -> Option<&str> {
        self.real.merchant_id()
    }
    fn recorded_headers(&self) -> &'static [&'static str] {
        self.real.recorded_headers()
    }
    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        now_unix: i64,
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        match self.flaw {
            Flaw::SkipsSignature => {
                let mut headers = req.headers.clone();
                headers.insert(
                    stripe::SIGNATURE_HEADER.to_owned(),
                    stripe_signature::sign(STRIPE_SECRETS[0], now_unix, req.body),
                );
                self.real.verify(
                    &WebhookRequest {
                        headers: &headers,
                        body: req.body,
                    },
                    now_unix,
                )
            }
            Flaw::SkipsTimestamp => {
                let t = req
                    .header(stripe::SIGNATURE_HEADER)
                    .and_then(|h| stripe_signature::parse(h).ok())
                    .map_or(now_unix, |p| p.timestamp);
                self.real.verify(req, t)
            }
            Flaw::OffByOne => self.real.verify(req, now_unix).map(|mut v| {
                v.amount_minor += 1;
                v
            }),
        }
    }
    fn ack(&self) -> WebhookReply {
        self.real.ack()
    }
    fn nack(&self, status: u16, code: &str, message: &str) -> WebhookReply {
        self.real.nack(status, code, message)
    }
}

fn check_flawed(flaw: Flaw, input: &[u8]) {
    let adapter = Flawed {
        real: stripe_adapter(),
        flaw,
    };
    checks::check_delivery(
        &Endpoint {
            adapter: &adapter,
            header_name: stripe::SIGNATURE_HEADER,
            secrets: &STRIPE_SECRETS,
            check_fields: check_stripe_fields,
        },
        input,
    );
}

#[test]
#[should_panic(expected = "accepted a body without a fresh, valid signature")]
fn a_verifier_that_skips_the_signature_is_caught() {
    // Mode 0, header "t=1,v1=00".
    let input = [&[0, 9][..], b"t=1,v1=00", &stripe_body("evt_1", "1")].concat();
    check_flawed(Flaw::SkipsSignature, &input);
}

#[test]
#[should_panic(expected = "without a fresh, valid signature: header Some(\"t=1700000381,")]
fn a_verifier_that_skips_the_timestamp_is_caught() {
    // Mode 1, skew 127 * 3 = 381 s: past the 300 s tolerance.
    let input = [&[1, 1, 127][..], &stripe_body("evt_1", "1")].concat();
    check_flawed(Flaw::SkipsTimestamp, &input);
}

#[test]
#[should_panic(expected = "assertion `left == right` failed")]
fn a_verifier_that_misreads_the_amount_is_caught() {
    let input = [&[1, 1, 0][..], &stripe_body("evt_1", "5248")].concat();
    check_flawed(Flaw::OffByOne, &input);
}

// ---------------------------------------------------------------------------------------------
// Generated inputs

fn json_amount() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i128>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,6}\\.[0-9]{1,3}",
        "-?[0-9]{1,3}[eE][-+]?[0-9]{1,4}",
        "\"-?[0-9]{1,6}\"",
        prop::sample::select(BAD_AMOUNTS.to_vec()).prop_map(str::to_owned),
    ]
}

/// The value of `text` if it is a JSON integer literal that fits i64.
fn json_i64(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let literal = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if literal { text.parse().ok() } else { None }
}

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_]{0,12}".prop_map(|s| format!("\"{s}\"")),
        1 => ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => prop::sample::select(vec!["null", "1", "[]", "{}", "\"\""]).prop_map(str::to_owned),
    ]
}

/// Sandbox-shaped events with odd values in every field, sometimes a field twice.
fn sandbox_event() -> impl Strategy<Value = Vec<u8>> {
    (
        json_string(),
        prop_oneof![
            Just("\"charge.paid\"".to_owned()),
            Just("\"charge.failed\"".to_owned()),
            json_string()
        ],
        json_amount(),
        json_amount(),
        json_string(),
        any::<bool>(),
    )
        .prop_map(|(id, kind, created, amount, currency, twice)| {
            let repeat = if twice { r#","amount_minor":1"# } else { "" };
            format!(
                r#"{{"id":{id},"type":{kind},"created":{created},"data":{{"payment_no":"pay_1","amount_minor":{amount}{repeat},"currency":{currency},"txn_id":"t","merchant_id":"orderflow-sandbox"}}}}"#
            )
            .into_bytes()
        })
}

/// Stripe-shaped events: either payment type or another, odd object kinds, amounts, charges,
/// accounts.
fn stripe_event() -> impl Strategy<Value = Vec<u8>> {
    (
        json_string(),
        prop_oneof![
            Just(format!("\"{}\"", stripe::SUCCEEDED)),
            Just(format!("\"{}\"", stripe::FAILED)),
            json_string()
        ],
        prop_oneof![Just(String::new()), json_string().prop_map(|a| format!(r#""account":{a},"#))],
        prop_oneof![Just("\"payment_intent\"".to_owned()), json_string()],
        json_amount(),
        json_amount(),
        json_string(),
        prop_oneof![json_string(), json_string().prop_map(|c| format!(r#"{{"id":{c}}}"#))],
    )
        .prop_map(|(id, kind, account, object, amount, received, currency, charge)| {
            format!(
                r#"{{"id":{id},"type":{kind},{account}"data":{{"object":{{"id":"pi_1","object":{object},"amount":{amount},"amount_received":{received},"currency":{currency},"latest_charge":{charge},"metadata":{{"payment_no":"pay_1"}}}}}}}}"#
            )
            .into_bytes()
        })
}

/// A fuzz-target input: any mode, a short header field, then the body.
fn framed(body: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), prop::collection::vec(any::<u8>(), 0..48), body)
        .prop_map(|(mode, header, body)| [&[mode, header.len() as u8][..], &header, &body].concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sandbox_deliveries(input in framed(prop_oneof![
        3 => sandbox_event(),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ])) {
        check_sandbox_webhook(&input);
    }

    #[test]
    fn stripe_deliveries(input in framed(prop_oneof![
        3 => stripe_event(),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ])) {
        check_stripe_webhook(&input);
    }

    #[test]
    fn a_signed_sandbox_amount_is_accepted_exactly_when_whole_and_non_negative(
        amount in json_amount(),
    ) {
        let result = sandbox_signed(&sandbox_body("e1", sandbox::PAID, &amount));
        match json_i64(&amount).filter(|n| *n >= 0) {
            Some(n) => prop_assert_eq!(result.map(|v| v.amount_minor), Ok(n)),
            None => prop_assert!(malformed(result), "{}", amount),
        }
    }

    #[test]
    fn a_signed_stripe_amount_is_accepted_exactly_when_whole_and_non_negative(
        amount in json_amount(),
    ) {
        let result = stripe_signed(&stripe_body("evt_1", &amount));
        match json_i64(&amount).filter(|n| *n >= 0) {
            Some(n) => {
                let verified = result.unwrap();
                prop_assert_eq!(verified.amount_minor, n);
                prop_assert_eq!(verified.kind, WebhookEventKind::PaymentSucceeded);
                prop_assert_eq!(verified.merchant_id.as_deref(), Some(STRIPE_ACCOUNT));
            }
            None => prop_assert!(malformed(result), "{}", amount),
        }
    }
}
