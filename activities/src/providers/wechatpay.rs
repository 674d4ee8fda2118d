//! `wechatpay`: WeChat Pay API v3, Native payments (a `code_url` shown as a QR code).

use super::{
    ChargeRequest, ChargeState, CloseResult, PayParams, PaymentProvider, ProviderError,
    ProviderRefund, RefundRequest,
};
use async_trait::async_trait;
use orderflow_domain::PaymentNo;
use orderflow_protocols::wechatpay::{MerchantConfig, PROVIDER};
use std::sync::Arc;

pub struct WechatPayProvider {
    #[allow(dead_code)]
    config: Arc<MerchantConfig>,
    #[allow(dead_code)]
    api_base: String,
    #[allow(dead_code)]
    notify_url: String,
}

impl WechatPayProvider {
    pub fn new(
        config: Arc<MerchantConfig>,
        api_base: impl Into<String>,
        notify_url: impl Into<String>,
    ) -> Result<Self, reqwest::Error> {
        Ok(WechatPayProvider {
            config,
            api_base: api_base.into(),
            notify_url: notify_url.into(),
        })
    }
}

fn unbuilt() -> ProviderError {
    ProviderError::Unavailable("wechatpay: not built yet".into())
}

#[async_trait]
impl PaymentProvider for WechatPayProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }
    async fn create(&self, _req: &ChargeRequest) -> Result<PayParams, ProviderError> {
        Err(unbuilt())
    }
    async fn query(&self, _payment_no: &PaymentNo) -> Result<ChargeState, ProviderError> {
        Err(unbuilt())
    }
    async fn close(&self, _payment_no: &PaymentNo) -> Result<CloseResult, ProviderError> {
        Err(unbuilt())
    }
    async fn refund(&self, _req: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        Err(unbuilt())
    }
}
