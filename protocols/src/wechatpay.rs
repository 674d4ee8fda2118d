//! WeChat Pay API v3: what is signed, how answers and notifies are verified, and how a notify's
//! `resource` is decrypted.
//!
//! * Requests: SHA256withRSA with the merchant API key over `METHOD\nPATH?QUERY\ntimestamp\n
//!   nonce\nbody\n` (empty body for a GET), sent as `Authorization: WECHATPAY2-SHA256-RSA2048
//!   mchid=…,nonce_str=…,signature=…,timestamp=…,serial_no=…` with the merchant certificate serial.
//! * Answers (every one, errors and 204s included) and notifies: SHA256withRSA over
//!   `timestamp\nnonce\nbody\n` in `Wechatpay-Signature`, by the key `Wechatpay-Serial` names — a
//!   platform certificate's serial or a WeChat Pay public key's `PUB_KEY_ID_…`; merchants migrate
//!   from one to the other over days, so both may be configured at once.
//!
//! Traps handled here: signatures starting `WECHATPAY/SIGNTEST/` are WeChat Pay probing whether we
//! verify (refused, never "verified"); a timestamp more than 5 minutes off either way is a replay;
//! the body is verified as raw bytes before any parsing; `description` is limited in UTF-8 bytes
//! and must be cut on a character boundary; `time_expire` is rendered from the deadline given,
//! never from the clock.

use crate::rsa_keys::{Certificate, KeyError, PrivateKey, PublicKey};
use std::collections::BTreeMap;
use std::fmt;

/// The provider's name in Orderflow (`/v1/webhooks/wechatpay`, an order's `provider`).
pub const PROVIDER: &str = "wechatpay";
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";

/// The APIv3 key: 32 bytes set by the merchant on the merchant platform, decrypting notifies.
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key(<redacted>)")
    }
}

impl ApiV3Key {
    /// The key as the merchant platform shows it: 32 ASCII characters.
    pub fn from_text(text: &str) -> Result<ApiV3Key, KeyError> {
        let bytes: [u8; 32] = text.as_bytes().try_into().map_err(|_| {
            KeyError::Unreadable(format!(
                "the APIv3 key must be 32 characters, not {}",
                text.chars().count()
            ))
        })?;
        Ok(ApiV3Key(bytes))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The keys WeChat Pay signs with, by the name `Wechatpay-Serial` gives them: a platform
/// certificate's serial, or a WeChat Pay public key's id (`PUB_KEY_ID_…`). Merchants move from
/// certificates to the public key over days, so both may be configured at once.
#[derive(Debug, Clone, Default)]
pub struct VerifierKeys {
    by_serial: BTreeMap<String, PublicKey>,
}

impl VerifierKeys {
    pub fn with_certificate(mut self, certificate: Certificate) -> Self {
        self.by_serial
            .insert(certificate.serial, certificate.public_key);
        self
    }

    pub fn with_public_key(mut self, key_id: impl Into<String>, key: PublicKey) -> Self {
        self.by_serial.insert(key_id.into(), key);
        self
    }

    pub fn get(&self, serial: &str) -> Option<&PublicKey> {
        self.by_serial.get(serial)
    }

    pub fn is_empty(&self) -> bool {
        self.by_serial.is_empty()
    }

    pub fn serials(&self) -> impl Iterator<Item = &str> {
        self.by_serial.keys().map(String::as_str)
    }
}

/// One merchant's WeChat Pay credentials. `Debug` shows ids and serials, never a key.
#[derive(Debug, Clone)]
pub struct MerchantConfig {
    /// `mchid`: the merchant number.
    pub mchid: String,
    /// `appid`: the official account / mini program / app the payments are made under.
    pub appid: String,
    /// Serial of the merchant API certificate whose private key signs our requests (`serial_no`).
    pub merchant_serial: String,
    /// The merchant API private key (`apiclient_key.pem`).
    pub merchant_key: PrivateKey,
    pub apiv3_key: ApiV3Key,
    /// Platform certificates and/or the WeChat Pay public key: they verify answers and notifies.
    pub verifier_keys: VerifierKeys,
}

/// The `Authorization` scheme, and `Wechatpay-Signature-Type` of answers and notifies.
pub const SIGNATURE_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";
/// WeChat Pay sends some notifies signed with garbage starting with this, to find merchants who
/// do not verify: they must be refused.
pub const PROBE_SIGNATURE_PREFIX: &str = "WECHATPAY/SIGNTEST/";
/// How far `Wechatpay-Timestamp` may be from our clock, either way (the official clients' 5 min).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;
/// The only currency Native payments take.
pub const CURRENCY: &str = "CNY";
/// `description` is at most 127 bytes (UTF-8).
pub const DESCRIPTION_MAX_BYTES: usize = 127;
/// A refund's `reason` is at most 80 (counted here in bytes, the stricter reading).
pub const REFUND_REASON_MAX_BYTES: usize = 80;

/// Header names of a signed answer or notify, lower-case (as the shim and reqwest hand them).
pub const HEADER_TIMESTAMP: &str = "wechatpay-timestamp";
pub const HEADER_NONCE: &str = "wechatpay-nonce";
pub const HEADER_SIGNATURE: &str = "wechatpay-signature";
pub const HEADER_SERIAL: &str = "wechatpay-serial";
pub const HEADER_SIGNATURE_TYPE: &str = "wechatpay-signature-type";
pub const HEADER_REQUEST_ID: &str = "request-id";

/// What a request's signature covers: `METHOD\nPATH?QUERY\ntimestamp\nnonce\nbody\n`, where the
/// path is the URL's path and query exactly as sent and the body is empty for a GET.
pub fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &str,
) -> String {
    format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n")
}

/// The `Authorization` header of a request, signed with the merchant API key.
pub fn authorization(
    config: &MerchantConfig,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &str,
) -> String {
    let message = request_message(method, path_and_query, timestamp, nonce, body);
    let signature = config.merchant_key.sign_base64(message.as_bytes());
    format!(
        "{SIGNATURE_SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
        config.mchid, config.merchant_serial
    )
}

/// What an answer's or a notify's signature covers: `timestamp\nnonce\nbody\n`, the body as raw
/// bytes (it is verified before anything reads it).
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(nonce.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The four `Wechatpay-*` headers of an answer or a notify.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
    pub serial: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("Wechatpay-Timestamp {0:?} is not a unix time")]
    BadTimestamp(String),
    #[error("Wechatpay-Timestamp {timestamp} is {age_secs} s away from now")]
    Stale { timestamp: i64, age_secs: i64 },
    #[error("a WECHATPAY/SIGNTEST/ probe signature: WeChat Pay checking that we verify")]
    Probe,
    #[error("Wechatpay-Serial {0:?} names no configured platform certificate or public key")]
    UnknownSerial(String),
    #[error("the signature does not match the body")]
    SignatureMismatch,
}

/// Checks an answer or notify: the probe prefix, the key named by the serial, the timestamp
/// within [`TIMESTAMP_TOLERANCE_SECS`] of `now_unix` either way, and the signature over the raw
/// `body`. Nothing here reads the clock.
pub fn verify(
    keys: &VerifierKeys,
    headers: &SignedHeaders<'_>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    if headers.signature.starts_with(PROBE_SIGNATURE_PREFIX) {
        return Err(VerifyError::Probe);
    }
    let text = headers.timestamp.trim();
    let timestamp: i64 = match text.parse() {
        Ok(t) if !text.starts_with('+') => t,
        _ => {
            return Err(VerifyError::BadTimestamp(
                headers.timestamp.chars().take(40).collect(),
            ));
        }
    };
    let age_secs = now_unix.saturating_sub(timestamp);
    if age_secs.saturating_abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::Stale {
            timestamp,
            age_secs,
        });
    }
    let key = keys
        .get(headers.serial)
        .ok_or_else(|| VerifyError::UnknownSerial(headers.serial.chars().take(80).collect()))?;
    let message = response_message(headers.timestamp, headers.nonce, body);
    if key.verifies(&message, headers.signature) {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch)
    }
}

/// `time_expire` in RFC 3339 at China Standard Time (`2026-12-07T23:12:57+08:00`), from unix
/// milliseconds (rounded down to the second). Pure: the deadline is given, the clock not read.
pub fn time_expire(unix_ms: i64) -> String {
    format!(
        "{}+08:00",
        crate::china_time::wall_clock(unix_ms.div_euclid(1000))
    )
}

/// `description` cut to [`DESCRIPTION_MAX_BYTES`] on a character boundary (WeChat counts UTF-8
/// bytes; a cut inside a character would be invalid UTF-8 and fail the request).
pub fn description(text: &str) -> &str {
    cut_utf8(text, DESCRIPTION_MAX_BYTES)
}

/// A refund's `reason` cut to [`REFUND_REASON_MAX_BYTES`] the same way.
pub fn refund_reason(text: &str) -> &str {
    cut_utf8(text, REFUND_REASON_MAX_BYTES)
}

fn cut_utf8(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

// ---- JSON shapes -------------------------------------------------------------------------------

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Fen.
    pub total: i64,
    pub currency: String,
}

/// `POST /v3/pay/transactions/native`.
#[derive(Debug, Clone, Serialize)]
pub struct NativeOrder<'a> {
    pub appid: &'a str,
    pub mchid: &'a str,
    pub description: &'a str,
    pub out_trade_no: &'a str,
    pub time_expire: String,
    pub notify_url: &'a str,
    pub amount: Amount,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NativeOrderCreated {
    pub code_url: String,
}

/// `POST …/close` and its body.
#[derive(Debug, Clone, Serialize)]
pub struct CloseOrder<'a> {
    pub mchid: &'a str,
}

/// What the query answers and what a `TRANSACTION.*` notify's resource decrypts to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Transaction {
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub mchid: Option<String>,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    pub trade_state: String,
    #[serde(default)]
    pub trade_state_desc: Option<String>,
    #[serde(default)]
    pub success_time: Option<String>,
    #[serde(default)]
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransactionAmount {
    /// What the order was for, fen. Absent on an unpaid order in some answers.
    #[serde(default)]
    pub total: Option<i64>,
    /// What the payer paid, in `payer_currency` (after coupons).
    #[serde(default)]
    pub payer_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub payer_currency: Option<String>,
}

/// `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Clone, Serialize)]
pub struct RefundOrder<'a> {
    pub out_trade_no: &'a str,
    pub out_refund_no: &'a str,
    pub reason: &'a str,
    pub notify_url: &'a str,
    pub amount: RefundAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmount {
    pub refund: i64,
    pub total: i64,
    pub currency: String,
}

/// A refund as the refund API and its query answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    pub out_refund_no: String,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    /// `SUCCESS`, `CLOSED`, `PROCESSING`, `ABNORMAL`.
    pub status: String,
    #[serde(default)]
    pub amount: Option<RefundAmount>,
}

/// A `REFUND.*` notify's resource, decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundNotice {
    #[serde(default)]
    pub mchid: Option<String>,
    pub out_trade_no: String,
    pub out_refund_no: String,
    #[serde(default)]
    pub refund_id: Option<String>,
    pub refund_status: String,
    #[serde(default)]
    pub amount: Option<RefundNoticeAmount>,
}

/// A refund notify's amounts, fen (it names no currency: refunds are in the order's CNY).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundNoticeAmount {
    #[serde(default)]
    pub total: Option<i64>,
    #[serde(default)]
    pub refund: Option<i64>,
}

/// Every error answer: `{"code": "PARAM_ERROR", "message": "…"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A notify's envelope; only `resource` is secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Notify {
    pub id: String,
    pub event_type: String,
    #[serde(default)]
    pub resource_type: Option<String>,
    pub resource: EncryptedResource,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EncryptedResource {
    pub algorithm: String,
    pub ciphertext: String,
    pub nonce: String,
    #[serde(default)]
    pub associated_data: Option<String>,
    #[serde(default)]
    pub original_type: Option<String>,
}

pub const AEAD_ALGORITHM: &str = "AEAD_AES_256_GCM";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("not a notify: {0}")]
    Malformed(String),
    #[error("resource algorithm {0:?} is not AEAD_AES_256_GCM")]
    Algorithm(String),
    #[error("the resource does not decrypt: {0}")]
    Decrypt(crate::rsa_keys::aead::AeadError),
}

/// Reads a notify body (already verified) and decrypts its resource with the APIv3 key.
pub fn open_notify(key: &ApiV3Key, body: &[u8]) -> Result<(Notify, Vec<u8>), NotifyError> {
    let notify: Notify = serde_json::from_slice(body)
        .map_err(|e| NotifyError::Malformed(e.to_string().chars().take(200).collect()))?;
    if notify.resource.algorithm != AEAD_ALGORITHM {
        return Err(NotifyError::Algorithm(
            notify.resource.algorithm.chars().take(40).collect(),
        ));
    }
    let plaintext = crate::rsa_keys::aead::decrypt(
        key.bytes(),
        &notify.resource.nonce,
        notify.resource.associated_data.as_deref().unwrap_or(""),
        &notify.resource.ciphertext,
    )
    .map_err(NotifyError::Decrypt)?;
    Ok((notify, plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsa_keys::aead;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/providers/wechatpay/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn config() -> MerchantConfig {
        let platform = Certificate::from_pem(&fixture("platform_cert.pem")).unwrap();
        let pubkey = PublicKey::from_text(&fixture("pubkey_public_key.pem")).unwrap();
        MerchantConfig {
            mchid: "1900000001".into(),
            appid: "wx8888888888888888".into(),
            merchant_serial: "3A7E1C2B4D5F6071829304A5B6C7D8E9F0A1B2C3".into(),
            merchant_key: PrivateKey::from_text(&fixture("merchant_private_key.pem")).unwrap(),
            apiv3_key: ApiV3Key::from_text("0123456789abcdef0123456789abcdef").unwrap(),
            verifier_keys: VerifierKeys::default()
                .with_certificate(platform)
                .with_public_key(PUB_KEY_ID, pubkey),
        }
    }

    const PUB_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";
    const PLATFORM_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
    const NOW: i64 = 1_700_000_000;

    fn signed(key_file: &str, serial: &str, ts: i64, body: &[u8]) -> (String, String, String) {
        let key = PrivateKey::from_text(&fixture(key_file)).unwrap();
        let ts = ts.to_string();
        let sig = key.sign_base64(&response_message(&ts, "n0nce", body));
        (ts, sig, serial.to_owned())
    }

    #[test]
    fn the_request_message_is_the_documented_one() {
        // The example of the official signing guide (GET with an empty body).
        assert_eq!(
            request_message(
                "GET",
                "/v3/certificates",
                1_554_208_460,
                "593BEC0C930BF1AFEB40B4A08C8FB242",
                ""
            ),
            "GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
        );
    }

    #[test]
    fn authorization_is_signed_by_the_merchant_key() {
        let config = config();
        let header = authorization(&config, "POST", "/v3/x", 1, "abc", "{}");
        assert!(header.starts_with(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\",nonce_str=\"abc\",signature=\""
        ));
        assert!(
            header.ends_with(
                ",timestamp=\"1\",serial_no=\"3A7E1C2B4D5F6071829304A5B6C7D8E9F0A1B2C3\""
            )
        );
        let signature = header
            .split("signature=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        let public = PublicKey::from_text(&fixture("merchant_public_key.pem")).unwrap();
        assert!(public.verifies(b"POST\n/v3/x\n1\nabc\n{}\n", signature));
    }

    #[test]
    fn both_key_kinds_verify_at_once() {
        let keys = config().verifier_keys;
        let body = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=x"}"#;
        for (file, serial) in [
            ("platform_private_key.pem", PLATFORM_SERIAL),
            ("pubkey_private_key.pem", PUB_KEY_ID),
        ] {
            let (ts, sig, serial) = signed(file, serial, NOW, body);
            let headers = SignedHeaders {
                timestamp: &ts,
                nonce: "n0nce",
                signature: &sig,
                serial: &serial,
            };
            assert_eq!(verify(&keys, &headers, body, NOW), Ok(()));
            assert_eq!(verify(&keys, &headers, body, NOW + 300), Ok(()));
            assert_eq!(verify(&keys, &headers, body, NOW - 300), Ok(()));
            assert!(matches!(
                verify(&keys, &headers, body, NOW + 301),
                Err(VerifyError::Stale { .. })
            ));
            assert!(matches!(
                verify(&keys, &headers, body, NOW - 301),
                Err(VerifyError::Stale { .. })
            ));
            let mut tampered = body.to_vec();
            tampered[3] ^= 1;
            assert_eq!(
                verify(&keys, &headers, &tampered, NOW),
                Err(VerifyError::SignatureMismatch)
            );
        }
        // A key under the other one's name does not verify.
        let (ts, sig, _) = signed("pubkey_private_key.pem", "", NOW, body);
        let headers = SignedHeaders {
            timestamp: &ts,
            nonce: "n0nce",
            signature: &sig,
            serial: PLATFORM_SERIAL,
        };
        assert_eq!(
            verify(&keys, &headers, body, NOW),
            Err(VerifyError::SignatureMismatch)
        );
        let unknown = SignedHeaders {
            serial: "PUB_KEY_ID_999",
            ..headers
        };
        assert!(matches!(
            verify(&keys, &unknown, body, NOW),
            Err(VerifyError::UnknownSerial(_))
        ));
        let probe = SignedHeaders {
            signature: "WECHATPAY/SIGNTEST/abc",
            ..headers
        };
        assert_eq!(verify(&keys, &probe, body, NOW), Err(VerifyError::Probe));
        for bad in ["", "x", "+1700000000", "1e9", "99999999999999999999"] {
            let bad = SignedHeaders {
                timestamp: bad,
                ..headers
            };
            assert!(matches!(
                verify(&keys, &bad, body, NOW),
                Err(VerifyError::BadTimestamp(_))
            ));
        }
    }

    #[test]
    fn time_expire_is_rfc3339_at_china_time() {
        // 2018-06-08T10:34:56+08:00, the example of the Native order page.
        assert_eq!(time_expire(1_528_425_296_000), "2018-06-08T10:34:56+08:00");
        assert_eq!(time_expire(1_528_425_296_999), "2018-06-08T10:34:56+08:00");
        assert_eq!(time_expire(0), "1970-01-01T08:00:00+08:00");
        // Across a leap day and a year end in China.
        assert_eq!(time_expire(1_709_164_800_000), "2024-02-29T08:00:00+08:00");
        assert_eq!(time_expire(1_735_660_800_000), "2025-01-01T00:00:00+08:00");
    }

    #[test]
    fn description_is_cut_on_a_character_boundary() {
        let long = "龙井".repeat(40); // 240 bytes
        let cut = description(&long);
        assert!(cut.len() <= 127 && cut.len() >= 124, "{}", cut.len());
        assert!(long.starts_with(cut));
        assert_eq!(description("tea"), "tea");
        let exact = "a".repeat(127);
        assert_eq!(description(&exact), exact);
        let reason = refund_reason(&long);
        assert!(reason.len() <= 80 && reason.len() >= 77 && long.starts_with(reason));
    }

    #[test]
    fn notify_resource_decrypts_with_the_apiv3_key() {
        let key = ApiV3Key::from_text("0123456789abcdef0123456789abcdef").unwrap();
        let plain = br#"{"out_trade_no":"pay_1","trade_state":"SUCCESS"}"#;
        let ciphertext = aead::encrypt(key.bytes(), "fdasflkja484", "transaction", plain).unwrap();
        let body = format!(
            r#"{{"id":"EV-1","create_time":"2015-05-20T13:29:35+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"{ciphertext}","associated_data":"transaction","nonce":"fdasflkja484"}}}}"#
        );
        let (notify, opened) = open_notify(&key, body.as_bytes()).unwrap();
        assert_eq!(notify.event_type, "TRANSACTION.SUCCESS");
        assert_eq!(opened, plain);
        let wrong_aad = body.replace(
            r#""associated_data":"transaction""#,
            r#""associated_data":"refund""#,
        );
        assert!(matches!(
            open_notify(&key, wrong_aad.as_bytes()),
            Err(NotifyError::Decrypt(_))
        ));
        let other = ApiV3Key::from_text("fedcba9876543210fedcba9876543210").unwrap();
        assert!(matches!(
            open_notify(&other, body.as_bytes()),
            Err(NotifyError::Decrypt(_))
        ));
        assert!(matches!(
            open_notify(&key, b"{}"),
            Err(NotifyError::Malformed(_))
        ));
    }

    #[test]
    fn transaction_shapes_parse() {
        let t: Transaction = serde_json::from_str(
            r#"{"appid":"wxd678efh567hg6787","mchid":"1230000109","out_trade_no":"1217752501201407033233368018","transaction_id":"1217752501201407033233368018","trade_type":"NATIVE","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"CMC","success_time":"2018-06-08T10:34:56+08:00","payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"amount":{"total":100,"payer_total":100,"currency":"CNY","payer_currency":"CNY"}}"#,
        )
        .unwrap();
        assert_eq!(t.amount.unwrap().total, Some(100));
        let unpaid: Transaction = serde_json::from_str(
            r#"{"appid":"a","mchid":"m","out_trade_no":"x","trade_state":"NOTPAY","amount":{"currency":"CNY","payer_currency":"CNY"}}"#,
        )
        .unwrap();
        assert_eq!(unpaid.transaction_id, None);
    }
}
