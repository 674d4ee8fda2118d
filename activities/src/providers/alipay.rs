//! `wechatpay`: WeChat Pay API v3, Native payments (a `code_url` shown as a QR code).

use super::{
    ChargeRequest, ChargeState, CloseResult, PayParams, PaymentProvider, ProviderError,
    ProviderRefund, RefundRequest,
};
use async_trait::async_trait;
use orderflow_domain::PaymentNo;
use orderflow_protocols::alipay::{Channel, MerchantConfig, PROVIDER};
use std::sync::Arc;

pub struct AlipayProvider {
    #[allow(dead_code)]
    config: Arc<MerchantConfig>,
    #[allow(dead_code)]
    gateway: String,
    #[allow(dead_code)]
    notify_url: String,
    #[allow(dead_code)]
    channel: Channel,
    #[allow(dead_code)]
    return_url: Option<String>,
}

impl AlipayProvider {
    pub fn new(
        config: Arc<MerchantConfig>,
        gateway: impl Into<String>,
        notify_url: impl Into<String>,
        channel: Channel,
        return_url: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        Ok(AlipayProvider {
            config,
            gateway: gateway.into(),
            notify_url: notify_url.into(),
            channel,
            return_url,
        })
    }
}

fn unbuilt() -> ProviderError {
    ProviderError::Unavailable("alipay: not built yet".into())
}

#[async_trait]
impl PaymentProvider for AlipayProvider {
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
