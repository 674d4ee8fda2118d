//! The payment providers' wire protocols, without I/O.
//!
//! What the outbound clients (`orderflow-activities`), the webhook adapters (`orderflow-http`),
//! the fuzz targets and the tests' stand-ins share: loading RSA keys and certificates, SHA256withRSA
//! signatures, AEAD_AES_256_GCM, and each provider's message formats (what is signed, how a
//! notify is verified and read). Nothing here touches the network, the clock or a database: the
//! time is passed in, so every rule can be tested on its own.

pub mod alipay;
pub mod china_time;
pub mod rsa_keys;
pub mod wechatpay;
