//! The WeChat Pay notify verifier against arbitrary and mutated input, with proptest: the
//! properties are in `fuzz/src/wechatpay.rs`, shared with the `wechatpay_notify` fuzz target.

#[path = "../../fuzz/src/wechatpay.rs"]
mod checks;

use checks::{NOW, PUB_KEY_ID, check_notify, deliver, genuine};
use orderflow_http::webhook_adapters::WebhookRejection;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic_nor_pass(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut raw = vec![0u8];
        raw.extend_from_slice(&data);
        check_notify(&raw);
    }

    #[test]
    fn genuine_notifies_pass_with_their_fields(data in proptest::collection::vec(any::<u8>(), 0..48)) {
        let mut raw = vec![1u8];
        raw.extend_from_slice(&data);
        check_notify(&raw);
    }

    #[test]
    fn changed_notifies_are_refused(data in proptest::collection::vec(any::<u8>(), 0..48)) {
        let mut raw = vec![2u8];
        raw.extend_from_slice(&data);
        check_notify(&raw);
    }
}

#[test]
fn every_mutation_kind_is_refused() {
    for kind in 0..7u8 {
        for key in 0..2u8 {
            check_notify(&[2, key, kind, 5, 100, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        }
    }
}

#[test]
fn rejections_say_why() {
    let fresh = genuine("pay_0123456789abcdef0123456789ab", 16800, true, NOW);
    assert!(deliver(&fresh).is_ok());
    let stale = genuine("pay_0123456789abcdef0123456789ab", 16800, false, NOW - 301);
    assert!(matches!(
        deliver(&stale),
        Err(WebhookRejection::StaleTimestamp { .. })
    ));
    let future = genuine("pay_0123456789abcdef0123456789ab", 16800, false, NOW + 301);
    assert!(matches!(
        deliver(&future),
        Err(WebhookRejection::StaleTimestamp { .. })
    ));
    let mut probe = fresh.clone();
    probe.signature = format!("WECHATPAY/SIGNTEST/{}", probe.signature);
    assert!(
        matches!(deliver(&probe), Err(WebhookRejection::BadSignatureHeader(m)) if m.contains("SIGNTEST"))
    );
    let mut unknown = fresh.clone();
    unknown.serial = format!("{PUB_KEY_ID}9");
    assert!(
        matches!(deliver(&unknown), Err(WebhookRejection::BadSignatureHeader(m)) if m.contains("Serial"))
    );
    let mut tampered = fresh.clone();
    tampered.body[10] ^= 1;
    assert_eq!(deliver(&tampered), Err(WebhookRejection::SignatureMismatch));
}
