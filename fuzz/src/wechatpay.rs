//! Properties of the wechatpay notify verifier and parser on raw request bytes.
//!
//! A fuzz input is `[mode][rest]`:
//!
//! * 0 — `rest` split at `\0` into timestamp, nonce, signature, serial and body, as they are.
//!   Whatever they say, a notify may be accepted only if the signature is genuinely by the key the
//!   serial names over exactly `timestamp\nnonce\nbody\n` (checked here with the RSA primitive,
//!   independently of the protocol module), the timestamp is fresh, and the resource decrypts;
//!   and what is accepted says exactly what the plaintext says.
//! * 1 — a genuine `TRANSACTION.SUCCESS` notify built from `rest` (amount, number, key kind): it
//!   is accepted with exactly its fields.
//! * 2 — the same genuine notify, then one thing changed (a body byte flipped, a byte more or
//!   less, another timestamp, nonce or serial, a probe signature): always refused.
//!
//! Used by `fuzz/fuzz_targets/wechatpay_notify.rs` and, through `#[path]`, by
//! `http/tests/wechatpay_notify_properties.rs`.

use orderflow_http::webhook_adapters::wechatpay::WechatPayWebhooks;
use orderflow_http::webhook_adapters::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookRequest,
};
use orderflow_protocols::rsa_keys::{Certificate, PrivateKey, PublicKey, aead};
use orderflow_protocols::wechatpay::{ApiV3Key, MerchantConfig, VerifierKeys};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

pub const NOW: i64 = 1_700_000_000;
pub const MCHID: &str = "1900000001";
pub const APPID: &str = "wx8888888888888888";
pub const APIV3_KEY: &str = "0123456789abcdef0123456789abcdef";
pub const PLATFORM_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
pub const PUB_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";

pub struct Keys {
    pub adapter: WechatPayWebhooks,
    pub platform: PrivateKey,
    pub pubkey: PrivateKey,
    /// The public keys by serial, for the independent check.
    pub public: BTreeMap<&'static str, PublicKey>,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let platform_cert = Certificate::from_pem(include_str!(
            "../../tests/fixtures/providers/wechatpay/platform_cert.pem"
        ))
        .expect("platform certificate fixture");
        let pubkey_public = PublicKey::from_text(include_str!(
            "../../tests/fixtures/providers/wechatpay/pubkey_public_key.pem"
        ))
        .expect("public key fixture");
        let config = MerchantConfig {
            mchid: MCHID.to_owned(),
            appid: APPID.to_owned(),
            merchant_serial: "3A7E1C2B4D5F6071829304A5B6C7D8E9F0A1B2C3".to_owned(),
            merchant_key: PrivateKey::from_text(include_str!(
                "../../tests/fixtures/providers/wechatpay/merchant_private_key.pem"
            ))
            .expect("merchant key fixture"),
            apiv3_key: ApiV3Key::from_text(APIV3_KEY).expect("APIv3 key"),
            verifier_keys: VerifierKeys::default()
                .with_certificate(platform_cert.clone())
                .with_public_key(PUB_KEY_ID, pubkey_public.clone()),
        };
        assert_eq!(platform_cert.serial, PLATFORM_SERIAL);
        Keys {
            adapter: WechatPayWebhooks::new(Arc::new(config)),
            platform: PrivateKey::from_text(include_str!(
                "../../tests/fixtures/providers/wechatpay/platform_private_key.pem"
            ))
            .expect("platform key fixture"),
            pubkey: PrivateKey::from_text(include_str!(
                "../../tests/fixtures/providers/wechatpay/pubkey_private_key.pem"
            ))
            .expect("pubkey key fixture"),
            public: BTreeMap::from([
                (PLATFORM_SERIAL, platform_cert.public_key),
                (PUB_KEY_ID, pubkey_public),
            ]),
        }
    })
}

/// A notify as it arrives: the four headers and the body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
    pub body: Vec<u8>,
}

/// Built here from the docs, not with the protocol module.
fn signed_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// Calls the adapter as the shim does, and checks what it accepted independently.
pub fn deliver(d: &Delivery) -> Result<VerifiedWebhook, WebhookRejection> {
    let headers = BTreeMap::from([
        ("wechatpay-timestamp".to_owned(), d.timestamp.clone()),
        ("wechatpay-nonce".to_owned(), d.nonce.clone()),
        ("wechatpay-signature".to_owned(), d.signature.clone()),
        ("wechatpay-serial".to_owned(), d.serial.clone()),
    ]);
    let result = keys().adapter.verify(
        &WebhookRequest {
            headers: &headers,
            body: &d.body,
        },
        NOW,
    );
    if let Ok(verified) = &result {
        let key = keys()
            .public
            .get(d.serial.as_str())
            .unwrap_or_else(|| panic!("accepted a notify under unknown serial {:?}", d.serial));
        assert!(
            key.verifies(
                &signed_message(&d.timestamp, &d.nonce, &d.body),
                &d.signature
            ),
            "accepted a notify whose signature is not genuine: {d:?}"
        );
        assert!(!d.signature.starts_with("WECHATPAY/SIGNTEST/"));
        let ts: i64 = d
            .timestamp
            .trim()
            .parse()
            .expect("accepted timestamp is a number");
        assert!((NOW - ts).abs() <= 300, "accepted a stale notify {ts}");
        check_fields(&d.body, verified);
    }
    result
}

/// What was accepted is what the decrypted resource says.
fn check_fields(body: &[u8], verified: &VerifiedWebhook) {
    let envelope: Value = serde_json::from_slice(body).expect("accepted body is JSON");
    assert_eq!(envelope["id"].as_str(), Some(verified.event_id.as_str()));
    let event_type = envelope["event_type"].as_str().expect("event_type");
    let resource = &envelope["resource"];
    let plaintext = aead::decrypt(
        APIV3_KEY.as_bytes(),
        resource["nonce"].as_str().expect("nonce"),
        resource["associated_data"].as_str().unwrap_or(""),
        resource["ciphertext"].as_str().expect("ciphertext"),
    )
    .expect("accepted resource decrypts");
    let plain: Value = serde_json::from_slice(&plaintext).expect("plaintext is JSON");
    match &verified.kind {
        WebhookEventKind::PaymentSucceeded => {
            assert_eq!(event_type, "TRANSACTION.SUCCESS");
            assert_eq!(plain["trade_state"].as_str(), Some("SUCCESS"));
            assert_eq!(
                verified.payment_no.as_deref(),
                plain["out_trade_no"].as_str()
            );
            assert_eq!(
                Some(verified.amount_minor),
                plain["amount"]["total"].as_i64()
            );
            assert_eq!(
                Some(verified.currency.as_str()),
                plain["amount"]["currency"]
                    .as_str()
                    .map(str::to_ascii_uppercase)
                    .as_deref()
            );
            assert_eq!(
                Some(verified.provider_txn_id.as_str()),
                plain["transaction_id"].as_str()
            );
            let merchant = format!(
                "mchid={} appid={}",
                plain["mchid"].as_str().expect("mchid"),
                plain["appid"].as_str().expect("appid")
            );
            assert_eq!(verified.merchant_id.as_deref(), Some(merchant.as_str()));
        }
        WebhookEventKind::RefundUpdate { refund_no, status } => {
            assert!(event_type.starts_with("REFUND."));
            assert_eq!(Some(refund_no.as_str()), plain["out_refund_no"].as_str());
            assert_eq!(
                Some(status.as_str()),
                plain["refund_status"]
                    .as_str()
                    .map(str::to_ascii_uppercase)
                    .as_deref()
            );
            assert_eq!(
                verified.payment_no.as_deref(),
                plain["out_trade_no"].as_str()
            );
        }
        WebhookEventKind::Ignored(kind) => {
            assert!(!event_type.starts_with("TRANSACTION.SUCCESS"));
            assert!(event_type.starts_with(kind.as_str()));
        }
        WebhookEventKind::PaymentFailed => panic!("WeChat Pay has no failed-payment notify"),
    }
}

/// A genuine encrypted `TRANSACTION.SUCCESS` notify.
pub fn genuine(out_trade_no: &str, total: i64, use_pubkey: bool, timestamp: i64) -> Delivery {
    let plain = serde_json::json!({
        "appid": APPID, "mchid": MCHID, "out_trade_no": out_trade_no,
        "transaction_id": "4200000000202612070000000001", "trade_type": "NATIVE",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
        "success_time": "2026-12-07T15:00:00+08:00", "payer": {"openid": "o-fuzz"},
        "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"}
    });
    let nonce12 = "fuzznonce123";
    let ciphertext = aead::encrypt(
        APIV3_KEY.as_bytes(),
        nonce12,
        "transaction",
        plain.to_string().as_bytes(),
    )
    .expect("encrypt");
    let body = serde_json::json!({
        "id": "EV-fuzz-1", "create_time": "2026-12-07T15:00:00+08:00",
        "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext, "associated_data": "transaction", "nonce": nonce12}
    })
    .to_string()
    .into_bytes();
    let timestamp = timestamp.to_string();
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS".to_owned();
    let (key, serial) = if use_pubkey {
        (&keys().pubkey, PUB_KEY_ID)
    } else {
        (&keys().platform, PLATFORM_SERIAL)
    };
    Delivery {
        signature: key.sign_base64(&signed_message(&timestamp, &nonce, &body)),
        timestamp,
        nonce,
        serial: serial.to_owned(),
        body,
    }
}

/// Panics only when a property fails.
pub fn check_notify(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let mut parts = rest.splitn(5, |b| *b == 0);
            let mut text =
                || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let (timestamp, nonce, signature, serial) = (text(), text(), text(), text());
            let body = parts.next().unwrap_or_default().to_vec();
            let _ = deliver(&Delivery {
                timestamp,
                nonce,
                signature,
                serial,
                body,
            });
        }
        1 => {
            let (use_pubkey, total, number) = params(rest);
            let d = genuine(&number, total, use_pubkey, NOW);
            let verified = deliver(&d).unwrap_or_else(|e| panic!("genuine notify refused: {e}"));
            assert_eq!(verified.amount_minor, total);
            assert_eq!(verified.payment_no.as_deref(), Some(number.as_str()));
            assert_eq!(verified.kind, WebhookEventKind::PaymentSucceeded);
        }
        _ => {
            let (use_pubkey, total, number) = params(rest);
            let mut d = genuine(&number, total, use_pubkey, NOW);
            let pick = rest.get(1).copied().unwrap_or(0);
            let at = rest.get(2).map_or(0, |b| usize::from(*b)) * 7 % d.body.len().max(1);
            match pick % 7 {
                0 => {
                    if let Some(b) = d.body.get_mut(at) {
                        *b ^= 1 << (pick % 8);
                    }
                }
                1 => d.body.insert(at, b' '),
                2 => {
                    d.body.remove(at);
                }
                3 => d.timestamp = (NOW + 1).to_string(),
                4 => d.nonce.push('x'),
                5 => {
                    d.serial = if use_pubkey {
                        PLATFORM_SERIAL
                    } else {
                        PUB_KEY_ID
                    }
                    .to_owned()
                }
                _ => d.signature = format!("WECHATPAY/SIGNTEST/{}", d.signature),
            }
            assert!(
                deliver(&d).is_err(),
                "a changed notify was accepted ({})",
                pick % 7
            );
        }
    }
}

/// Key kind, amount and payment number from the input.
fn params(rest: &[u8]) -> (bool, i64, String) {
    let use_pubkey = rest.first().is_some_and(|b| b & 1 == 1);
    let mut amount = [0u8; 8];
    for (slot, byte) in amount.iter_mut().zip(rest.iter().skip(3)) {
        *slot = *byte;
    }
    let total = i64::from_le_bytes(amount) & i64::MAX;
    let number: String = rest
        .iter()
        .skip(11)
        .take(28)
        .map(|b| char::from(b"0123456789abcdef"[usize::from(b % 16)]))
        .collect();
    (use_pubkey, total, format!("pay_{number}"))
}
