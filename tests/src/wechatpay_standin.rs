//! The wechatpay stand-in (filled in with the adapter).
