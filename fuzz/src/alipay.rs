//! Properties of the Alipay notify verifier and parser on raw request bytes.
//!
//! A fuzz input is `[mode][rest]`:
//!
//! * 0 — `rest` is the form body as it arrives. Whatever it is, verifying never panics, and an
//!   accepted notify carries a genuine RSA2 signature over exactly its sorted parameters (decoded
//!   and checked here with a form decoder of our own, not the adapter's) and says exactly what
//!   its fields say.
//! * 1 — a genuine notify whose field values come from `rest` (amounts that may be anything,
//!   trade statuses, refund fields, arbitrary text): never refused for the signature; accepted
//!   exactly when its fields are well formed, and then read exactly (amount in fen, the refund
//!   trap: refund fields make it a refund update whatever the trade_status says).
//! * 2 — a genuine notify, then changed: a byte flipped, cut short, a parameter added, or signed
//!   with another key. Refused, unless the change left the decoded parameters as they were (a
//!   percent escape's case, say).
//!
//! Used by `fuzz/fuzz_targets/alipay_notify.rs` and, through `#[path]`, by
//! `http/tests/alipay_notify_properties.rs`.

use orderflow_http::webhook_adapters::alipay::AlipayWebhooks;
use orderflow_http::webhook_adapters::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookRequest,
};
use orderflow_protocols::alipay::MerchantConfig;
use orderflow_protocols::rsa_keys::{PrivateKey, PublicKey};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

pub const APP_ID: &str = "2021000000000001";
pub const SELLER_ID: &str = "2088000000000001";

struct Keys {
    adapter: AlipayWebhooks,
    alipay_private: PrivateKey,
    alipay_public: PublicKey,
    app_private: PrivateKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = "/../tests/fixtures/providers/alipay/";
        let read = |name: &str| {
            std::fs::read_to_string(format!("{}{dir}{name}", env!("CARGO_MANIFEST_DIR")))
                .expect("the alipay test keys")
        };
        let alipay_private = PrivateKey::from_text(&read("alipay_private_key.pem")).unwrap();
        let alipay_public = PublicKey::from_text(&read("alipay_public_key.pem")).unwrap();
        let app_private = PrivateKey::from_text(&read("app_private_key.pem")).unwrap();
        let config = MerchantConfig {
            app_id: APP_ID.into(),
            seller_id: SELLER_ID.into(),
            app_private_key: app_private.clone(),
            alipay_public_key: alipay_public.clone(),
        };
        Keys {
            adapter: AlipayWebhooks::new(Arc::new(config)),
            alipay_private,
            alipay_public,
            app_private,
        }
    })
}

fn verify(body: &[u8]) -> Result<VerifiedWebhook, WebhookRejection> {
    let headers = BTreeMap::new();
    keys().adapter.verify(
        &WebhookRequest {
            headers: &headers,
            body,
        },
        0,
    )
}

/// Panics only when a property fails.
pub fn check_notify(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        let _ = verify(data);
        return;
    };
    match mode % 3 {
        0 => check_raw(rest),
        1 => check_genuine(rest),
        _ => check_mutated(rest),
    }
}

// -- an independent reading of the form ---------------------------------------------------------

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(piece: &[u8]) -> String {
    let mut out = Vec::with_capacity(piece.len());
    let mut i = 0;
    while i < piece.len() {
        match piece[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < piece.len() => match (hex(piece[i + 1]), hex(piece[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` pairs, in order.
fn pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn signed_content(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, v)| *k != "sign" && *k != "sign_type" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn form(params: &BTreeMap<String, String>, key: &PrivateKey) -> Vec<u8> {
    let sign = key.sign_base64(signed_content(params).as_bytes());
    let mut out: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    out.push(format!("sign={}", encode(&sign)));
    out.join("&").into_bytes()
}

/// Yuan → fen by Alipay's rule, independently: digits, at most two decimals, 0.01..=1e8.
fn fen(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.len() > 2 || (text.contains('.') && !digits(frac)) {
        return None;
    }
    let whole: i64 = whole.parse().ok().filter(|w| *w <= 100_000_000)?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    let value = whole * 100 + frac;
    (1..=10_000_000_000).contains(&value).then_some(value)
}

/// What an accepted notify must say, from its parameters alone. `None`: it must be refused.
fn expected(params: &BTreeMap<String, String>) -> Option<(WebhookEventKind, i64)> {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    for k in [
        "notify_id",
        "app_id",
        "seller_id",
        "out_trade_no",
        "trade_no",
        "trade_status",
    ] {
        if get(k).is_empty() {
            return None;
        }
    }
    let amount = |k: &str| match get(k) {
        "" => Some(None),
        t => fen(t).map(Some),
    };
    let total = amount("total_amount")?;
    let refund = amount("refund_fee")?;
    if refund.is_some() || !get("out_biz_no").is_empty() || !get("gmt_refund").is_empty() {
        if get("out_biz_no").is_empty() {
            return None;
        }
        let kind = WebhookEventKind::RefundUpdate {
            refund_no: get("out_biz_no").to_owned(),
            status: "SUCCESS".to_owned(),
        };
        return Some((kind, refund.unwrap_or(0)));
    }
    match get("trade_status") {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => Some((WebhookEventKind::PaymentSucceeded, total?)),
        other => Some((
            WebhookEventKind::Ignored(format!("trade_status {other}")),
            total.unwrap_or(0),
        )),
    }
}

fn assert_reads(params: &BTreeMap<String, String>, event: &VerifiedWebhook) {
    let (kind, amount) = expected(params).expect("accepted a notify with malformed fields");
    assert_eq!(event.kind, kind);
    assert_eq!(event.amount_minor, amount);
    assert_eq!(event.currency, "CNY");
    assert_eq!(event.event_id, params["notify_id"]);
    assert_eq!(
        event.payment_no.as_deref(),
        Some(params["out_trade_no"].as_str())
    );
    assert_eq!(event.provider_txn_id, params["trade_no"]);
    assert_eq!(
        event.merchant_id,
        Some(format!(
            "app_id={} seller_id={}",
            params["app_id"], params["seller_id"]
        ))
    );
}

// -- the modes ----------------------------------------------------------------------------------

fn check_raw(body: &[u8]) {
    let Ok(event) = verify(body) else { return };
    let list = pairs(body);
    let params: BTreeMap<String, String> = list.iter().cloned().collect();
    assert_eq!(
        params.len(),
        list.len(),
        "accepted a notify with a repeated key"
    );
    assert!(std::str::from_utf8(body).is_ok());
    assert_eq!(params.get("sign_type").map(String::as_str), Some("RSA2"));
    let sign = params.get("sign").expect("accepted without a sign");
    assert!(
        keys()
            .alipay_public
            .verifies(signed_content(&params).as_bytes(), sign),
        "accepted a notify without a genuine signature"
    );
    assert_reads(&params, &event);
}

const STATUSES: [&str; 6] = [
    "TRADE_SUCCESS",
    "TRADE_FINISHED",
    "WAIT_BUYER_PAY",
    "TRADE_CLOSED",
    "",
    "trade_success",
];
const AMOUNTS: [&str; 12] = [
    "88.80",
    "0.01",
    "100000000.00",
    "100000000.01",
    "0.00",
    "1.001",
    "-1.00",
    "1e2",
    " 1.00",
    "168",
    "",
    "9223372036854775808",
];

/// A genuine notify's parameters, shaped by `rest`.
fn genuine(rest: &[u8]) -> BTreeMap<String, String> {
    let byte = |i: usize| rest.get(i).copied().unwrap_or(0);
    let text = String::from_utf8_lossy(rest.get(8..).unwrap_or(&[])).into_owned();
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    put("notify_id", format!("nid{}", byte(0)));
    put("notify_type", "trade_status_sync".into());
    put("app_id", APP_ID.into());
    put("seller_id", SELLER_ID.into());
    put("out_trade_no", "pay_0123456789abcdef0123456789ab".into());
    put("trade_no", "2026120722001400000000000001".into());
    put("sign_type", "RSA2".into());
    put(
        "trade_status",
        STATUSES[usize::from(byte(1)) % STATUSES.len()].into(),
    );
    let amount = if byte(2) % 4 == 3 {
        text.chars().take(24).collect()
    } else {
        AMOUNTS[usize::from(byte(3)) % AMOUNTS.len()].to_owned()
    };
    put("total_amount", amount);
    put("subject", text.clone());
    if byte(4) % 3 == 1 {
        put(
            "refund_fee",
            AMOUNTS[usize::from(byte(5)) % AMOUNTS.len()].into(),
        );
        put("out_biz_no", format!("rf_{}", byte(6)));
        put("gmt_refund", "2026-12-07 10:00:00.123".into());
    } else if byte(4) % 3 == 2 {
        // Only one of the refund fields: still a refund, and refused without out_biz_no.
        put("gmt_refund", "2026-12-07 10:00:00.123".into());
    }
    if byte(7) % 5 == 0 {
        p.remove(
            [
                "notify_id",
                "app_id",
                "seller_id",
                "trade_no",
                "out_trade_no",
            ][usize::from(byte(7)) % 5],
        );
    }
    p
}

fn check_genuine(rest: &[u8]) {
    let params = genuine(rest);
    let body = form(&params, &keys().alipay_private);
    // Our encoder and the independent decoder agree, so the check below is about the adapter.
    let back: BTreeMap<String, String> = pairs(&body).into_iter().collect();
    let mut with_sign = params.clone();
    with_sign.insert("sign".into(), back.get("sign").cloned().unwrap_or_default());
    assert_eq!(back, with_sign);
    match (verify(&body), expected(&params)) {
        (Ok(event), Some(_)) => assert_reads(&params, &event),
        (Err(WebhookRejection::MalformedBody(_)), None) => {}
        (got, want) => panic!("{params:?}: got {got:?}, expected {want:?}"),
    }
}

fn check_mutated(rest: &[u8]) {
    let byte = |i: usize| rest.get(i).copied().unwrap_or(0);
    let mut params = genuine(rest);
    // A notify that would be accepted, so only the change can make it refused.
    params.insert("total_amount".into(), "88.80".into());
    params.insert("trade_status".into(), "TRADE_SUCCESS".into());
    params.remove("refund_fee");
    params.remove("out_biz_no");
    params.remove("gmt_refund");
    for k in [
        "notify_id",
        "app_id",
        "seller_id",
        "trade_no",
        "out_trade_no",
    ] {
        params.entry(k.to_owned()).or_insert_with(|| "x".to_owned());
    }
    let mut body = form(&params, &keys().alipay_private);
    assert!(verify(&body).is_ok(), "a genuine notify was refused");
    let original: BTreeMap<String, String> = pairs(&body).into_iter().collect();
    let at = usize::from(byte(1)) * 256 + usize::from(byte(2));
    match byte(0) % 4 {
        0 => {
            let i = at % body.len();
            body[i] ^= 1 << (byte(3) % 8);
        }
        1 => body.truncate(at % body.len()),
        2 => body.extend_from_slice(format!("&x{}=1", byte(3)).as_bytes()),
        _ => body = form(&params, &keys().app_private),
    }
    let list = pairs(&body);
    let now: BTreeMap<String, String> = list.iter().cloned().collect();
    // Alipay signs only the parameters that have a value: one with an empty value says nothing,
    // and renaming, adding or dropping it leaves the signed content (and the event) as it was.
    let said = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let said_in_list = list.iter().filter(|(_, v)| !v.is_empty()).count();
    let unchanged = said(&now) == said(&original)
        && said_in_list == said(&now).len()
        && std::str::from_utf8(&body).is_ok();
    match verify(&body) {
        Ok(event) => {
            assert!(
                unchanged,
                "accepted a changed notify: {:?}",
                String::from_utf8_lossy(&body)
            );
            assert_reads(&now, &event);
        }
        Err(e) => assert!(!unchanged, "refused an unchanged notify: {e}"),
    }
}
