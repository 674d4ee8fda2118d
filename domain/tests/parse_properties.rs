//! `Money`, `Currency`, `Quantity`, the ids and the workflow input `OrderInput` against bad input.
//!
//! The properties themselves are in `fuzz/src/domain.rs`, shared with the libFuzzer targets
//! `money_parse`, `quantity_parse` and `ids_parse` (`scripts/fuzz.sh`); here proptest feeds them
//! inputs shaped like the mistakes people and programs make, and the hand-written cases pin the
//! verdict for each kind of bad input: amounts as strings, floats, `1e400`, negative, `2^63`,
//! `-2^63-1`, duplicate JSON keys, 10,000-deep nesting, invalid UTF-8, huge and over-long input.

#[path = "../../fuzz/src/domain.rs"]
mod checks;

use checks::{
    ExpectedAmount, check_ids, check_money, check_money_arithmetic, check_money_json,
    check_order_input_json, check_parse_major, check_quantity, check_quantity_json,
    check_quantity_value, check_validation, expected_major,
};
use orderflow_domain::{
    Currency, IdError, MAX_LINE_QUANTITY, Money, MoneyError, OrderId, OrderInput, OrderLineInput,
    Quantity, Sku,
};
use proptest::prelude::*;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn jpy() -> Currency {
    Currency::parse("JPY").unwrap()
}

/// `[[[…]]]` `depth` deep around `inner`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

const TWO_POW_63: &str = "9223372036854775808";
const MINUS_TWO_POW_63_MINUS_ONE: &str = "-9223372036854775809";

/// Number-ish JSON texts: the wrong types a client sends for an integer.
const BAD_JSON_NUMBERS: &[&str] = &[
    "\"5\"",
    "5.0",
    "5.5",
    "1e400",
    "-1e400",
    "1e2",
    TWO_POW_63,
    MINUS_TWO_POW_63_MINUS_ONE,
    "18446744073709551616",
    "NaN",
    "Infinity",
    "null",
    "true",
    "[5]",
    "{\"value\":5}",
    "0x10",
    "05",
    "+5",
    "",
];

// ---------------------------------------------------------------------------------------------
// Money

#[test]
fn decimal_amounts_reject_every_other_notation() {
    for bad in [
        "1e400", "1E2", "-5", "-0", "+5", "5.", ".5", "5.5.5", "1,000", "1_000", " 5", "5 ", "NaN",
        "inf", "0x10", "١٢", "５", "", ".", "1.999",
    ] {
        assert!(
            matches!(
                check_parse_major(bad, usd()),
                Err(MoneyError::BadAmount { .. })
            ),
            "{bad:?}"
        );
    }
    // JPY has no minor unit: any decimal point is refused.
    assert!(matches!(
        check_parse_major("12.0", jpy()),
        Err(MoneyError::BadAmount { .. })
    ));
}

#[test]
fn decimal_amounts_at_the_edges_of_i64() {
    // 2^63 - 1 minor units is the largest amount; 2^63 overflows, in either currency.
    assert_eq!(
        check_parse_major("9223372036854775807", jpy()).map(|m| m.minor()),
        Ok(i64::MAX)
    );
    assert_eq!(
        check_parse_major(TWO_POW_63, jpy()),
        Err(MoneyError::Overflow)
    );
    assert_eq!(
        check_parse_major("92233720368547758.08", usd()),
        Err(MoneyError::Overflow)
    );
    assert!(matches!(
        check_parse_major(MINUS_TWO_POW_63_MINUS_ONE, jpy()),
        Err(MoneyError::BadAmount { .. })
    ));
    // Leading zeros are digits like any other; a huge number is an overflow, quickly.
    assert_eq!(
        check_parse_major(&format!("{}1.5", "0".repeat(10_000)), usd()).map(|m| m.minor()),
        Ok(150)
    );
    assert_eq!(
        check_parse_major(&"9".repeat(100_000), usd()),
        Err(MoneyError::Overflow)
    );
    // A huge non-number is refused, and the error quotes only its start.
    match check_parse_major(&"x".repeat(1 << 20), usd()) {
        Err(MoneyError::BadAmount { input, .. }) => assert_eq!(input.len(), 40),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_reference_is_itself_right() {
    // The oracle the properties compare against, on cases worked out by hand.
    assert_eq!(expected_major("19.99", 2), ExpectedAmount::Minor(1999));
    assert_eq!(expected_major("19.9", 2), ExpectedAmount::Minor(1990));
    assert_eq!(expected_major("7", 0), ExpectedAmount::Minor(7));
    assert_eq!(expected_major("7.1", 0), ExpectedAmount::Bad);
    assert_eq!(expected_major("1e3", 2), ExpectedAmount::Bad);
    assert_eq!(expected_major(TWO_POW_63, 0), ExpectedAmount::Overflow);
    assert_eq!(expected_major(&"9".repeat(50), 2), ExpectedAmount::Overflow);
}

#[test]
fn money_json_takes_whole_non_negative_minor_units_only() {
    for minor in BAD_JSON_NUMBERS
        .iter()
        .copied()
        .chain(["-1", "-9223372036854775808"])
    {
        let json = format!(r#"{{"minor":{minor},"currency":"USD"}}"#);
        assert!(
            serde_json::from_str::<Money>(&json).is_err(),
            "{json} accepted"
        );
        assert_eq!(check_money_json(json.as_bytes()), None);
    }
    let max = format!(r#"{{"minor":{},"currency":"USD"}}"#, i64::MAX);
    assert_eq!(
        check_money_json(max.as_bytes()).map(|m| m.minor()),
        Some(i64::MAX)
    );
    // Serde's other struct shape is accepted too, with the same checks.
    assert_eq!(
        check_money_json(br#"[5,"JPY"]"#).map(|m| m.minor()),
        Some(5)
    );
    assert_eq!(check_money_json(br#"[-5,"JPY"]"#), None);
}

#[test]
fn money_json_refuses_duplicates_nesting_bad_utf8_and_unknown_currencies() {
    for bad in [
        br#"{"minor":1,"minor":2,"currency":"USD"}"#.to_vec(),
        br#"{"minor":1,"currency":"USD","currency":"JPY"}"#.to_vec(),
        format!(r#"{{"minor":{},"currency":"USD"}}"#, nested(10_000, "1")).into_bytes(),
        nested(10_000, "").into_bytes(),
        b"{\"minor\":1,\"currency\":\"US\xff\"}".to_vec(),
        b"\xff\xfe{}".to_vec(),
        br#"{"minor":1,"currency":"usd"}"#.to_vec(),
        format!(r#"{{"minor":1,"currency":"{}"}}"#, "U".repeat(10_000)).into_bytes(),
    ] {
        assert!(serde_json::from_slice::<Money>(&bad).is_err());
        check_money(&bad);
    }
}

#[test]
fn unknown_fields_are_skipped_unchecked() {
    // Found by the money_parse fuzz target (fuzz/seeds/money_parse/regress-*): serde skips an
    // unknown field's value without checking its UTF-8 or its number range, so these decode.
    // Harmless (the value is never read, and the API's own bodies refuse unknown fields), but a
    // check that re-reads such bytes as JSON must not assume a strict reader takes them.
    let bytes = b"{\"minor\":\t5240,\"curreicy\":\"US\xf3D\",\"currency\":\"USD\"}\n";
    assert!(serde_json::from_slice::<serde_json::Value>(bytes).is_err());
    assert_eq!(check_money_json(bytes).map(|m| m.minor()), Some(5240));
    let bytes = br#"{"minor":1,"x":1e400,"currency":"USD"}"#;
    assert!(serde_json::from_slice::<serde_json::Value>(bytes).is_err());
    assert_eq!(check_money_json(bytes).map(|m| m.minor()), Some(1));
}

#[test]
fn money_bytes_with_a_currency_selector() {
    // Byte 0 picks the currency (0 = USD, 1 = JPY), the rest is the amount.
    check_money(b"\x0019.99");
    check_money(b"\x011200");
    check_money(&[&[0u8][..], &[0xff, 0xfe, b'1']].concat());
    check_money(&[&[0u8][..], &i64::MAX.to_le_bytes(), &i64::MIN.to_le_bytes()].concat());
    check_money(&[]);
}

// ---------------------------------------------------------------------------------------------
// Quantity

#[test]
fn quantity_json_takes_integers_in_range_only() {
    for bad in BAD_JSON_NUMBERS.iter().copied().chain([
        "0",
        "-1",
        "1001",
        "4294967297",
        "-9223372036854775808",
    ]) {
        assert_eq!(check_quantity_json(bad.as_bytes()), None, "{bad}");
    }
    for good in ["1", "1000", " 7 "] {
        assert!(check_quantity_json(good.as_bytes()).is_some(), "{good}");
    }
    assert_eq!(check_quantity_json(nested(10_000, "1").as_bytes()), None);
    assert_eq!(check_quantity_json(b"\xff1"), None);
}

#[test]
fn quantity_values_at_the_edges() {
    for (value, ok) in [
        (i64::MIN, false),
        (-1, false),
        (0, false),
        (1, true),
        (i64::from(MAX_LINE_QUANTITY), true),
        (i64::from(MAX_LINE_QUANTITY) + 1, false),
        ((1 << 32) + 1, false),
        (i64::MAX, false),
    ] {
        assert_eq!(check_quantity_value(value).is_some(), ok, "{value}");
    }
    check_quantity(&(-1i64).to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Ids and the workflow input

#[test]
fn over_long_ids_are_refused_by_length() {
    let long = "A".repeat(10 * 1024);
    assert!(matches!(
        OrderId::parse(long.as_str()),
        Err(IdError::TooLong {
            len: 10240,
            max: 64,
            ..
        })
    ));
    assert!(matches!(
        Sku::parse(long.as_str()),
        Err(IdError::TooLong {
            len: 10240,
            max: 40,
            ..
        })
    ));
    // Length counts characters, not bytes.
    assert!(matches!(
        OrderId::parse("é".repeat(65)),
        Err(IdError::TooLong { len: 65, .. })
    ));
    for text in [
        long.as_str(),
        "",
        "ord_1",
        "TEE-RED-M",
        "pay_x",
        "ordér",
        "a b",
    ] {
        check_ids(text.as_bytes());
    }
    check_ids(b"\"ord_\xff\"");
    check_ids(format!("\"{long}\"").as_bytes());
}

fn order(lines: &[(&str, i64)]) -> OrderInput {
    OrderInput {
        order_id: "ord_1".into(),
        customer_id: "alice".into(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| OrderLineInput {
                sku: (*sku).into(),
                quantity: *quantity,
            })
            .collect(),
        provider: "sandbox".into(),
        payment_timeout_secs: None,
        coupon_code: None,
    }
}

#[test]
fn workflow_input_never_validates_a_zero_negative_or_huge_quantity() {
    for quantity in [0, -1, i64::MIN, 1001, i64::MAX, 1 << 32] {
        assert_eq!(check_validation(&order(&[("MUG", quantity)])), None);
    }
    let valid = check_validation(&order(&[("MUG", 1000), ("HAT", 1)])).unwrap();
    assert_eq!(valid.lines[0].quantity, Quantity::new(1).unwrap());

    let mut long = order(&[("MUG", 1)]);
    long.order_id = "o".repeat(10 * 1024);
    assert_eq!(check_validation(&long), None);
    let long_sku = "S".repeat(10 * 1024);
    assert_eq!(check_validation(&order(&[(long_sku.as_str(), 1)])), None);
}

#[test]
fn workflow_input_json_with_bad_numbers_and_duplicate_keys() {
    for quantity in BAD_JSON_NUMBERS {
        let json = format!(
            r#"{{"order_id":"o","customer_id":"c","provider":"sandbox","lines":[{{"sku":"MUG","quantity":{quantity}}}]}}"#
        );
        assert_eq!(check_order_input_json(json.as_bytes()), None, "{json}");
    }
    for bad in [
        &br#"{"order_id":"a","order_id":"b","customer_id":"c","provider":"sandbox","lines":[{"sku":"MUG","quantity":1}]}"#[..],
        br#"{"order_id":"a","customer_id":"c","provider":"sandbox","lines":[{"sku":"MUG","quantity":1,"quantity":2}]}"#,
        br#"{"order_id":"a","customer_id":"c","provider":"sandbox","lines":[{"sku":"MUG","quantity":1},{"sku":"MUG","quantity":2}]}"#,
        b"{\"order_id\":\"a\xff\",\"customer_id\":\"c\",\"provider\":\"sandbox\",\"lines\":[{\"sku\":\"MUG\",\"quantity\":1}]}",
    ] {
        assert_eq!(check_order_input_json(bad), None);
    }
    let lines = nested(10_000, "");
    let deep = format!(r#"{{"order_id":"a","customer_id":"c","lines":{lines}}}"#);
    assert!(serde_json::from_str::<OrderInput>(&deep).is_err());
    assert!(
        check_order_input_json(
            br#"{"order_id":"a","customer_id":"c","provider":"sandbox","lines":[{"sku":"MUG","quantity":1}]}"#
        )
        .is_some()
    );
}

// ---------------------------------------------------------------------------------------------
// Generated inputs

/// Amount texts near the grammar: digits with and without a point, signs, exponents, spaces,
/// and anything at all.
fn amount_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,22}(\\.[0-9]{0,4})?",
        "[-+ ]?[0-9]{0,6}[.,eE]?[-+]?[0-9]{0,4}",
        "0{0,30}[1-9][0-9]{14,20}(\\.[0-9]{1,2})?",
        any::<String>(),
    ]
}

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["USD", "JPY", "EUR", "KRW"]).prop_map(|c| Currency::parse(c).unwrap())
}

/// JSON numbers and near-numbers: every i64, the first values outside it, floats, exponents,
/// strings.
fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-5i64..1005).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i128>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,4}\\.[0-9]{1,3}",
        "-?[0-9]{1,3}[eE][-+]?[0-9]{1,4}",
        "\"-?[0-9]{1,5}\"",
        prop::sample::select(BAD_JSON_NUMBERS.to_vec()).prop_map(str::to_owned),
    ]
}

/// The value of `text` if it is a JSON integer literal (no `+`, no leading zero) that fits i64.
fn json_i64(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let literal = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if literal { text.parse().ok() } else { None }
}

fn sku() -> impl Strategy<Value = String> {
    // A small alphabet so that duplicates happen; sometimes lower-case or too long.
    prop_oneof![
        12 => prop::sample::select(vec!["MUG", "HAT", "TEE-RED-M", "A_1", "B", "C", "D", "E"])
            .prop_map(str::to_owned),
        1 => "[A-Za-z0-9 _-]{0,45}",
    ]
}

fn quantity() -> impl Strategy<Value = i64> {
    prop_oneof![
        20 => 1i64..=1000,
        1 => prop::sample::select(vec![i64::MIN, -1, 0, 1001, 1 << 32, i64::MAX]),
        1 => any::<i64>(),
    ]
}

fn order_input() -> impl Strategy<Value = OrderInput> {
    (
        prop_oneof![8 => "ord_[a-z0-9]{1,24}", 1 => ".{0,70}"],
        prop_oneof![8 => "[a-z]{1,10}", 1 => ".{0,70}"],
        prop_oneof![
            8 => prop::collection::vec((sku(), quantity()), 0..6),
            1 => prop::collection::vec((sku(), quantity()), 0..55),
        ],
        prop_oneof![8 => Just("sandbox".to_owned()), 1 => "[a-zA-Z_]{0,34}"],
        prop::option::of(prop_oneof![0u64..=700_000, any::<u64>()]),
    )
        .prop_map(
            |(order_id, customer_id, lines, provider, payment_timeout_secs)| OrderInput {
                order_id,
                customer_id,
                lines: lines
                    .into_iter()
                    .map(|(sku, quantity)| OrderLineInput { sku, quantity })
                    .collect(),
                provider,
                payment_timeout_secs,
                coupon_code: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_major_agrees_with_the_reference(text in amount_text(), currency in currency()) {
        let _ = check_parse_major(&text, currency);
    }

    #[test]
    fn every_non_negative_amount_round_trips(minor in 0..=i64::MAX, currency in currency()) {
        let money = Money::new(minor, currency).unwrap();
        checks::check_money_value(&money);
        let shown = money.to_string();
        let amount = shown.split(' ').next().unwrap();
        prop_assert_eq!(check_parse_major(amount, currency), Ok(money));
    }

    #[test]
    fn money_json_accepts_exactly_non_negative_i64(minor in json_number(), currency in currency()) {
        let json = format!(r#"{{"minor":{minor},"currency":"{currency}"}}"#);
        let accepted = check_money_json(json.as_bytes()).is_some();
        let expected = json_i64(&minor).is_some_and(|n| n >= 0);
        prop_assert_eq!(accepted, expected, "{}", json);
    }

    #[test]
    fn arithmetic_is_exact_or_an_error(
        a in 0..=i64::MAX,
        b in 0..=i64::MAX,
        q in 1i64..=1000,
        same in any::<bool>(),
    ) {
        let other = if same { usd() } else { Currency::parse("EUR").unwrap() };
        check_money_arithmetic(
            Money::new(a, usd()).unwrap(),
            Money::new(b, other).unwrap(),
            Quantity::new(q).unwrap(),
        );
    }

    #[test]
    fn money_and_quantity_bytes(data in prop::collection::vec(any::<u8>(), 0..64)) {
        check_money(&data);
        check_quantity(&data);
    }

    #[test]
    fn quantity_json_accepts_exactly_1_to_1000(text in json_number()) {
        let accepted = check_quantity_json(text.as_bytes()).is_some();
        let expected =
            json_i64(&text).is_some_and(|n| (1..=i64::from(MAX_LINE_QUANTITY)).contains(&n));
        prop_assert_eq!(accepted, expected, "{}", text);
    }

    #[test]
    fn validation_agrees_with_the_rules(input in order_input()) {
        check_validation(&input);
        // Through JSON too, as the workflow receives it.
        let json = serde_json::to_vec(&input).unwrap();
        prop_assert_eq!(
            check_order_input_json(&json).is_some(),
            input.validate().is_ok()
        );
    }

    #[test]
    fn ids_follow_their_alphabets_and_lengths(
        text in prop_oneof![
            "[A-Za-z0-9_.@+-]{0,70}",
            "[A-Z0-9_-]{38,42}",
            "[a-z0-9_]{30,34}",
            ".{0,70}",
        ]
    ) {
        check_ids(text.as_bytes());
        check_ids(format!("\"{text}\"").as_bytes());
    }
}
