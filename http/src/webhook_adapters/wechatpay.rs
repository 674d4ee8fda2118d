//! WeChat Pay API v3 notifies.
//!
//! A notify is verified on its raw bytes first (`Wechatpay-Timestamp`, `-Nonce`, `-Signature`,
//! `-Serial`; message `timestamp\nnonce\nbody\n`; the key the serial names, a platform
//! certificate or a `PUB_KEY_ID_…`), then its `resource` is decrypted with the APIv3 key
//! (AEAD_AES_256_GCM) and only the decrypted fields are believed: the envelope's `summary` is not
//! signed by anything we check beyond the body, and names no order.
//!
//! Refused: missing headers, `WECHATPAY/SIGNTEST/` probes (WeChat Pay checking that merchants
//! verify), serials we have no key for, timestamps more than 5 minutes off, bad signatures, and
//! resources that do not decrypt. The answer WeChat Pay wants is an empty 200/204; anything else
//! (with `{"code":"FAIL","message":…}`) makes it retry on its schedule.

use super::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookReply,
    WebhookRequest,
};
use orderflow_protocols::wechatpay::{
    self as protocol, CURRENCY, HEADER_NONCE, HEADER_SERIAL, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    MerchantConfig, NotifyError, PROVIDER, RefundNotice, SignedHeaders, TIMESTAMP_TOLERANCE_SECS,
    Transaction, VerifyError,
};
use std::sync::Arc;

pub struct WechatPayWebhooks {
    config: Arc<MerchantConfig>,
    merchant: String,
}

/// How a notify names its merchant, the same way [`WechatPayWebhooks::merchant_id`] does.
fn merchant(mchid: &str, appid: &str) -> String {
    format!("mchid={mchid} appid={appid}")
}

impl WechatPayWebhooks {
    pub fn new(config: Arc<MerchantConfig>) -> Self {
        let merchant = merchant(&config.mchid, &config.appid);
        WechatPayWebhooks { config, merchant }
    }

    fn transaction(
        &self,
        id: String,
        plaintext: &[u8],
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        let t: Transaction = serde_json::from_slice(plaintext)
            .map_err(|e| malformed(format!("transaction resource: {e}")))?;
        if t.trade_state != "SUCCESS" {
            return Err(malformed(format!(
                "TRANSACTION.SUCCESS with trade_state {:?}",
                clip(&t.trade_state)
            )));
        }
        let (Some(mchid), Some(appid)) = (t.mchid.as_deref(), t.appid.as_deref()) else {
            return Err(malformed("the transaction names no mchid/appid".to_owned()));
        };
        let amount = t
            .amount
            .as_ref()
            .ok_or_else(|| malformed("the transaction has no amount".to_owned()))?;
        let total = amount
            .total
            .filter(|t| *t >= 0)
            .ok_or_else(|| malformed("the transaction has no amount.total".to_owned()))?;
        let currency = amount
            .currency
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| malformed("the transaction has no amount.currency".to_owned()))?;
        let transaction_id = t
            .transaction_id
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| malformed("the transaction has no transaction_id".to_owned()))?;
        let note = format!(
            "payer_total={} payer_currency={}",
            amount
                .payer_total
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            amount.payer_currency.as_deref().unwrap_or("-")
        );
        Ok(VerifiedWebhook {
            event_id: id,
            kind: WebhookEventKind::PaymentSucceeded,
            payment_no: Some(t.out_trade_no.clone()),
            amount_minor: total,
            currency: currency.to_ascii_uppercase(),
            provider_txn_id: transaction_id.to_owned(),
            merchant_id: Some(merchant(mchid, appid)),
            note: Some(note),
        })
    }

    fn refund(&self, id: String, plaintext: &[u8]) -> Result<VerifiedWebhook, WebhookRejection> {
        let r: RefundNotice = serde_json::from_slice(plaintext)
            .map_err(|e| malformed(format!("refund resource: {e}")))?;
        let mchid = r
            .mchid
            .as_deref()
            .ok_or_else(|| malformed("the refund names no mchid".to_owned()))?;
        let refund_amount = r.amount.as_ref().and_then(|a| a.refund).unwrap_or(0);
        Ok(VerifiedWebhook {
            event_id: id,
            kind: WebhookEventKind::RefundUpdate {
                refund_no: r.out_refund_no.clone(),
                status: r.refund_status.to_ascii_uppercase(),
            },
            payment_no: Some(r.out_trade_no.clone()),
            amount_minor: refund_amount,
            currency: CURRENCY.to_owned(),
            provider_txn_id: r.refund_id.clone().unwrap_or_default(),
            // A refund notify carries the mchid only; the appid is not part of a refund.
            merchant_id: Some(merchant(mchid, &self.config.appid)),
            note: None,
        })
    }
}

fn malformed(message: String) -> WebhookRejection {
    WebhookRejection::MalformedBody(message)
}

fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

impl WebhookAdapter for WechatPayWebhooks {
    fn provider(&self) -> &'static str {
        PROVIDER
    }
    fn merchant_id(&self) -> Option<&str> {
        Some(&self.merchant)
    }
    fn recorded_headers(&self) -> &'static [&'static str] {
        &[
            HEADER_TIMESTAMP,
            HEADER_NONCE,
            HEADER_SIGNATURE,
            HEADER_SERIAL,
            protocol::HEADER_SIGNATURE_TYPE,
            protocol::HEADER_REQUEST_ID,
        ]
    }
    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        now_unix: i64,
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        let header = |name: &'static str| {
            req.header(name)
                .ok_or(WebhookRejection::MissingHeader(name))
        };
        let signed = SignedHeaders {
            timestamp: header(HEADER_TIMESTAMP)?,
            nonce: header(HEADER_NONCE)?,
            signature: header(HEADER_SIGNATURE)?,
            serial: header(HEADER_SERIAL)?,
        };
        protocol::verify(&self.config.verifier_keys, &signed, req.body, now_unix).map_err(|e| {
            match e {
                VerifyError::Stale {
                    timestamp,
                    age_secs,
                } => WebhookRejection::StaleTimestamp {
                    timestamp,
                    age_secs,
                    tolerance_secs: TIMESTAMP_TOLERANCE_SECS,
                },
                VerifyError::SignatureMismatch => WebhookRejection::SignatureMismatch,
                other @ (VerifyError::Probe
                | VerifyError::UnknownSerial(_)
                | VerifyError::BadTimestamp(_)) => {
                    WebhookRejection::BadSignatureHeader(other.to_string())
                }
            }
        })?;
        let (notify, plaintext) =
            protocol::open_notify(&self.config.apiv3_key, req.body).map_err(|e| match e {
                // Signed by WeChat Pay yet unreadable: most likely our APIv3 key is wrong.
                NotifyError::Decrypt(e) => malformed(format!(
                    "the resource does not decrypt with the APIv3 key: {e}"
                )),
                other => malformed(other.to_string()),
            })?;
        match notify.event_type.as_str() {
            "TRANSACTION.SUCCESS" => self.transaction(notify.id, &plaintext),
            "REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED" => {
                self.refund(notify.id, &plaintext)
            }
            other => Ok(VerifiedWebhook {
                event_id: notify.id.clone(),
                kind: WebhookEventKind::Ignored(clip(other)),
                payment_no: None,
                amount_minor: 0,
                currency: String::new(),
                provider_txn_id: String::new(),
                merchant_id: None,
                note: None,
            }),
        }
    }
    fn ack(&self) -> WebhookReply {
        WebhookReply {
            status: 204,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }
    fn nack(&self, status: u16, _code: &str, message: &str) -> WebhookReply {
        WebhookReply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(&serde_json::json!({"code": "FAIL", "message": message}))
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_protocols::rsa_keys::{Certificate, PrivateKey, aead};
    use orderflow_protocols::wechatpay::{ApiV3Key, VerifierKeys};
    use std::collections::BTreeMap;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_700_000_000;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/providers/wechatpay/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn adapter() -> WechatPayWebhooks {
        let platform = Certificate::from_pem(&fixture("platform_cert.pem")).unwrap();
        WechatPayWebhooks::new(Arc::new(MerchantConfig {
            mchid: "1900000001".into(),
            appid: "wx8888888888888888".into(),
            merchant_serial: "3A7E1C2B4D5F6071829304A5B6C7D8E9F0A1B2C3".into(),
            merchant_key: PrivateKey::from_text(&fixture("merchant_private_key.pem")).unwrap(),
            apiv3_key: ApiV3Key::from_text(KEY).unwrap(),
            verifier_keys: VerifierKeys::default().with_certificate(platform),
        }))
    }

    fn notify(event_type: &str, resource: &str) -> (BTreeMap<String, String>, Vec<u8>) {
        let ciphertext = aead::encrypt(
            KEY.as_bytes(),
            "abcdefghijkl",
            "refund",
            resource.as_bytes(),
        )
        .unwrap();
        let body = format!(
            r#"{{"id":"EV-9","event_type":"{event_type}","resource_type":"encrypt-resource","resource":{{"algorithm":"AEAD_AES_256_GCM","ciphertext":"{ciphertext}","associated_data":"refund","nonce":"abcdefghijkl","original_type":"refund"}}}}"#
        )
        .into_bytes();
        let key = PrivateKey::from_text(&fixture("platform_private_key.pem")).unwrap();
        let mut message = format!("{NOW}\nn1\n").into_bytes();
        message.extend_from_slice(&body);
        message.push(b'\n');
        let headers = BTreeMap::from([
            ("wechatpay-timestamp".to_owned(), NOW.to_string()),
            ("wechatpay-nonce".to_owned(), "n1".to_owned()),
            ("wechatpay-signature".to_owned(), key.sign_base64(&message)),
            (
                "wechatpay-serial".to_owned(),
                "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".to_owned(),
            ),
        ]);
        (headers, body)
    }

    fn verify(
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        adapter().verify(&WebhookRequest { headers, body }, NOW)
    }

    #[test]
    fn refund_notifies_report_the_refund() {
        for status in ["SUCCESS", "ABNORMAL", "CLOSED"] {
            let (headers, body) = notify(
                &format!("REFUND.{status}"),
                &format!(
                    r#"{{"mchid":"1900000001","out_trade_no":"pay_1","transaction_id":"42","out_refund_no":"rf_1","refund_id":"50","refund_status":"{status}","amount":{{"total":16800,"refund":100,"payer_total":16800,"payer_refund":100}}}}"#
                ),
            );
            let v = verify(&headers, &body).unwrap();
            assert_eq!(
                v.kind,
                WebhookEventKind::RefundUpdate {
                    refund_no: "rf_1".into(),
                    status: status.into()
                }
            );
            assert_eq!(
                (v.payment_no.as_deref(), v.amount_minor),
                (Some("pay_1"), 100)
            );
            assert_eq!(v.merchant_id.as_deref(), adapter().merchant_id());
        }
    }

    #[test]
    fn other_events_are_ignored_and_missing_headers_named() {
        let (headers, body) = notify("TRANSACTION.CLOSED", "{}");
        assert_eq!(
            verify(&headers, &body).unwrap().kind,
            WebhookEventKind::Ignored("TRANSACTION.CLOSED".into())
        );
        for name in [
            HEADER_TIMESTAMP,
            HEADER_NONCE,
            HEADER_SIGNATURE,
            HEADER_SERIAL,
        ] {
            let mut partial = headers.clone();
            partial.remove(name);
            assert_eq!(
                verify(&partial, &body),
                Err(WebhookRejection::MissingHeader(name))
            );
        }
        // A payment notify without its merchant is malformed, not someone else's.
        let (headers, body) = notify(
            "TRANSACTION.SUCCESS",
            r#"{"out_trade_no":"pay_1","transaction_id":"42","trade_state":"SUCCESS","amount":{"total":1,"currency":"CNY"}}"#,
        );
        assert!(matches!(
            verify(&headers, &body),
            Err(WebhookRejection::MalformedBody(_))
        ));
    }

    #[test]
    fn answers_are_the_documented_ones() {
        let ack = adapter().ack();
        assert_eq!((ack.status, ack.body.len()), (204, 0));
        let nack = adapter().nack(400, "SIGNATURE_MISMATCH", "no");
        assert_eq!(nack.status, 400);
        let body: serde_json::Value = serde_json::from_slice(&nack.body).unwrap();
        assert_eq!(body, serde_json::json!({"code": "FAIL", "message": "no"}));
    }
}
