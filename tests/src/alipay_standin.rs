//! The alipay stand-in (filled in with the adapter).
