//! Alipay open platform: the request signature over sorted parameters, response verification on
//! the raw `…_response` value, and notify verification.

use crate::rsa_keys::{PrivateKey, PublicKey};

/// The provider's name in Orderflow (`/v1/webhooks/alipay`, an order's `provider`).
pub const PROVIDER: &str = "alipay";
pub const DEFAULT_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channel {
    /// `alipay.trade.precreate`: a QR code scanned with the Alipay app.
    #[default]
    Qr,
    /// `alipay.trade.page.pay`: the desktop cashier page on Alipay's site.
    Page,
}

/// One application's Alipay credentials. `Debug` shows ids, never a key.
#[derive(Debug, Clone)]
pub struct MerchantConfig {
    /// `app_id` of the application on the open platform.
    pub app_id: String,
    /// `seller_id`: the merchant's Alipay user id (PID, `2088…`) that receives the money.
    pub seller_id: String,
    /// The application private key: signs our requests.
    pub app_private_key: PrivateKey,
    /// The Alipay public key: verifies answers and notifies.
    pub alipay_public_key: PublicKey,
}
