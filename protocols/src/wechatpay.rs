//! WeChat Pay API v3: what is signed, how answers and notifies are verified, and how a notify's
//! `resource` is decrypted.

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
