//! WeChat Pay API v3 notifies.

use super::{VerifiedWebhook, WebhookAdapter, WebhookRejection, WebhookReply, WebhookRequest};
use orderflow_protocols::wechatpay::{MerchantConfig, PROVIDER};
use std::sync::Arc;

pub struct WechatPayWebhooks {
    config: Arc<MerchantConfig>,
    merchant: String,
}

impl WechatPayWebhooks {
    pub fn new(config: Arc<MerchantConfig>) -> Self {
        let merchant = format!("mchid={} appid={}", config.mchid, config.appid);
        WechatPayWebhooks { config, merchant }
    }
}

impl WebhookAdapter for WechatPayWebhooks {
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
