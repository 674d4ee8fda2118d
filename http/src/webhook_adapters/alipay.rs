//! Alipay asynchronous notifies.
//!
//! A notify is a form post signed with the Alipay key: every parameter but `sign` and `sign_type`,
//! URL-decoded, sorted, `k=v` joined by `&`, RSA2 ([`orderflow_protocols::alipay::verify_notify`]).
//! There is no timestamp rule; Alipay repeats a notify (4m, 10m, 10m, 1h, 2h, 6h, 15h) with the
//! same `notify_id` until the answer's body is exactly `success`, so `notify_id` is the event id
//! the pipeline de-duplicates on, and every refusal answers `fail`.
//!
//! The trap: a notify sent after a **partial refund** says `trade_status=TRADE_SUCCESS`, like a
//! payment. Any notify carrying refund fields (`refund_fee`, `out_biz_no`, `gmt_refund`) is a
//! refund update, never a payment. WAIT_BUYER_PAY and TRADE_CLOSED are acknowledged and ignored.

use super::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookReply,
    WebhookRequest,
};
use orderflow_protocols::alipay::{
    MerchantConfig, NotifyError, NotifyKind, PROVIDER, merchant_id, parse_notify, verify_notify,
};
use std::sync::Arc;

pub struct AlipayWebhooks {
    config: Arc<MerchantConfig>,
    merchant: String,
}

impl AlipayWebhooks {
    pub fn new(config: Arc<MerchantConfig>) -> Self {
        let merchant = config.merchant_id();
        AlipayWebhooks { config, merchant }
    }
}

impl WebhookAdapter for AlipayWebhooks {
    fn provider(&self) -> &'static str {
        PROVIDER
    }
    fn merchant_id(&self) -> Option<&str> {
        Some(&self.merchant)
    }
    fn recorded_headers(&self) -> &'static [&'static str] {
        // Everything that is signed is in the form body, which is recorded raw.
        &["content-type"]
    }
    fn verify(
        &self,
        req: &WebhookRequest<'_>,
        _now_unix: i64,
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        let params =
            verify_notify(req.body, &self.config.alipay_public_key).map_err(|e| match e {
                NotifyError::BadSignature => WebhookRejection::SignatureMismatch,
                NotifyError::WrongSignType(t) => {
                    WebhookRejection::BadSignatureHeader(format!("sign_type {t:?} is not RSA2"))
                }
                other => WebhookRejection::MalformedBody(other.to_string()),
            })?;
        let notify =
            parse_notify(&params).map_err(|e| WebhookRejection::MalformedBody(e.to_string()))?;
        let (kind, amount) = match &notify.kind {
            NotifyKind::Paid => (WebhookEventKind::PaymentSucceeded, notify.total_amount),
            NotifyKind::Refund { out_biz_no } => (
                WebhookEventKind::RefundUpdate {
                    refund_no: out_biz_no.clone(),
                    // A refund notify is only sent for money that went back.
                    status: "SUCCESS".to_owned(),
                },
                notify.refund_fee,
            ),
            NotifyKind::Other(status) => (
                WebhookEventKind::Ignored(format!("trade_status {status}")),
                notify.total_amount,
            ),
        };
        Ok(VerifiedWebhook {
            event_id: notify.notify_id,
            kind,
            payment_no: Some(notify.out_trade_no),
            amount_minor: amount.map(|m| m.minor()).unwrap_or(0),
            currency: "CNY".to_owned(),
            provider_txn_id: notify.trade_no,
            merchant_id: Some(merchant_id(&notify.app_id, &notify.seller_id)),
            note: Some(format!("trade_status {}", notify.trade_status)),
        })
    }
    fn ack(&self) -> WebhookReply {
        WebhookReply {
            status: 200,
            content_type: "text/plain",
            body: b"success".to_vec(),
        }
    }
    fn nack(&self, status: u16, _code: &str, _message: &str) -> WebhookReply {
        // Anything but `success` makes Alipay send it again; the verdict is in the callback log.
        WebhookReply {
            status,
            content_type: "text/plain",
            body: b"fail".to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_protocols::alipay::{encode_form, sign_content};
    use orderflow_protocols::rsa_keys::{PrivateKey, PublicKey};
    use std::collections::BTreeMap;

    fn key(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../tests/fixtures/providers/alipay/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn adapter() -> (AlipayWebhooks, PrivateKey) {
        let config = MerchantConfig {
            app_id: "2021000000000001".into(),
            seller_id: "2088000000000001".into(),
            app_private_key: PrivateKey::from_text(&key("app_private_key.pem")).unwrap(),
            alipay_public_key: PublicKey::from_text(&key("alipay_public_key.pem")).unwrap(),
        };
        let alipay = PrivateKey::from_text(&key("alipay_private_key.pem")).unwrap();
        (AlipayWebhooks::new(Arc::new(config)), alipay)
    }

    fn signed(key: &PrivateKey, fields: &[(&str, &str)]) -> Vec<u8> {
        let sign = key.sign_base64(sign_content(fields.iter().copied(), &["sign_type"]).as_bytes());
        let tail = [("sign_type", "RSA2"), ("sign", sign.as_str())];
        encode_form(fields.iter().copied().chain(tail)).into_bytes()
    }

    fn verify(a: &AlipayWebhooks, body: &[u8]) -> Result<VerifiedWebhook, WebhookRejection> {
        let headers = BTreeMap::new();
        a.verify(
            &WebhookRequest {
                headers: &headers,
                body,
            },
            0,
        )
    }

    const PAID: &[(&str, &str)] = &[
        ("notify_id", "n1"),
        ("app_id", "2021000000000001"),
        ("seller_id", "2088000000000001"),
        ("out_trade_no", "pay_1"),
        ("trade_no", "2024010122001"),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "88.80"),
    ];

    #[test]
    fn a_payment_notify_is_read_exactly() {
        let (a, key) = adapter();
        let event = verify(&a, &signed(&key, PAID)).unwrap();
        assert_eq!(event.kind, WebhookEventKind::PaymentSucceeded);
        assert_eq!(event.amount_minor, 8880);
        assert_eq!(event.event_id, "n1");
        assert_eq!(event.merchant_id.as_deref(), a.merchant_id());
        assert_eq!(a.ack().body, b"success");
        assert_ne!(a.nack(400, "X", "y").body, b"success");
    }

    #[test]
    fn a_partial_refund_notify_is_never_a_payment() {
        let (a, key) = adapter();
        let mut fields = PAID.to_vec();
        fields.extend([("refund_fee", "1.00"), ("out_biz_no", "rf_1")]);
        let event = verify(&a, &signed(&key, &fields)).unwrap();
        assert_eq!(
            event.kind,
            WebhookEventKind::RefundUpdate {
                refund_no: "rf_1".into(),
                status: "SUCCESS".into()
            }
        );
    }

    #[test]
    fn forged_tampered_and_unsigned_notifies_are_refused() {
        let (a, alipay) = adapter();
        let body = signed(&alipay, PAID);
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("88.80", "0.01");
        assert_eq!(
            verify(&a, tampered.as_bytes()),
            Err(WebhookRejection::SignatureMismatch)
        );
        let app_key = PrivateKey::from_text(&key("app_private_key.pem")).unwrap();
        assert_eq!(
            verify(&a, &signed(&app_key, PAID)),
            Err(WebhookRejection::SignatureMismatch)
        );
        assert!(matches!(
            verify(&a, b"notify_id=1&trade_status=TRADE_SUCCESS"),
            Err(WebhookRejection::MalformedBody(_))
        ));
        let mut waiting = PAID.to_vec();
        waiting[5] = ("trade_status", "WAIT_BUYER_PAY");
        assert!(matches!(
            verify(&a, &signed(&alipay, &waiting)).unwrap().kind,
            WebhookEventKind::Ignored(_)
        ));
    }
}
