//! Properties of the alipay notify verifier and parser on raw request bytes (filled in with the adapter).

/// Panics only when a property fails.
pub fn check_notify(data: &[u8]) {
    let _ = data;
}
