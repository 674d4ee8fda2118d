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
