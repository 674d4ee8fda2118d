//! The Alipay notify verifier against bad input, end to end on raw form bytes: what it accepts is
//! genuinely signed over exactly its sorted parameters and says exactly what its fields say
//! (amounts in fen, the partial-refund trap); what is changed after signing is refused.
//!
//! The properties are in `fuzz/src/alipay.rs`, shared with the libFuzzer target `alipay_notify`.

#[path = "../../fuzz/src/alipay.rs"]
mod checks;

use checks::check_notify;
use proptest::prelude::*;

/// A form body made of plausible pieces: keys Alipay sends, `=`, `&`, escapes, odd amounts.
fn form_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("sign=".to_owned()),
        Just("sign_type=RSA2".to_owned()),
        Just("trade_status=TRADE_SUCCESS".to_owned()),
        Just("total_amount=88.80".to_owned()),
        Just("notify_id=1".to_owned()),
        Just("&".to_owned()),
        Just("%".to_owned()),
        Just("%FF".to_owned()),
        Just("+".to_owned()),
        "[a-z_=&%0-9A-F.+-]{0,12}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| {
        let mut body = vec![0u8];
        body.extend(p.concat().into_bytes());
        body
    })
}

/// `data` behind the mode byte that tells `check_notify` what to make of it.
fn in_mode(mode: u8, data: Vec<u8>) {
    let mut framed = vec![mode];
    framed.extend(data);
    check_notify(&framed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_are_never_accepted_unsigned(data in prop::collection::vec(any::<u8>(), 0..512)) {
        in_mode(0, data);
    }

    #[test]
    fn form_like_bodies_are_never_accepted_unsigned(body in form_like()) {
        check_notify(&body);
    }

    #[test]
    fn genuine_notifies_are_read_exactly(data in prop::collection::vec(any::<u8>(), 0..64)) {
        in_mode(1, data);
    }

    #[test]
    fn changed_notifies_are_refused(data in prop::collection::vec(any::<u8>(), 0..64)) {
        in_mode(2, data);
    }
}

#[test]
fn any_first_byte_and_empty_input() {
    check_notify(&[]);
    for mode in 0..6 {
        check_notify(&[mode]);
    }
}
