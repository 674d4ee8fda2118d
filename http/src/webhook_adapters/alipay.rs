//! Alipay asynchronous notifies.

use super::{VerifiedWebhook, WebhookAdapter, WebhookRejection, WebhookReply, WebhookRequest};
use orderflow_protocols::alipay::{MerchantConfig, PROVIDER};
use std::sync::Arc;

pub struct AlipayWebhooks {
    config: Arc<MerchantConfig>,
    merchant: String,
}

impl AlipayWebhooks {
    pub fn new(config: Arc<MerchantConfig>) -> Self {
        let merchant = format!("app_id={} seller_id={}", config.app_id, config.seller_id);
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
        &[]
    }
    fn verify(
        &self,
        _req: &WebhookRequest<'_>,
        _now_unix: i64,
    ) -> Result<VerifiedWebhook, WebhookRejection> {
        let _ = &self.config;
        Err(WebhookRejection::SignatureMismatch)
    }
    fn ack(&self) -> WebhookReply {
        WebhookReply::json_received()
    }
    fn nack(&self, status: u16, code: &str, message: &str) -> WebhookReply {
        WebhookReply::json_error(status, code, message)
    }
}
