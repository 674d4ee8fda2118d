//! Properties of the domain parsers: `Money` (decimal strings and JSON), `Currency`, `Quantity`,
//! the string ids, and the workflow input `OrderInput`.
//!
//! Each `check_*` takes arbitrary bytes, never panics on a correct implementation, and panics
//! (a libFuzzer crash, a proptest failure) when a property does not hold.
//!
//! Used by `fuzz/fuzz_targets/{money_parse,quantity_parse,ids_parse}.rs` and, through
//! `#[path]`, by `domain/tests/parse_properties.rs` and `http/tests/api_body_properties.rs`.

use orderflow_domain::messages::{MAX_LINES, MAX_PAYMENT_TIMEOUT_SECS, MIN_PAYMENT_TIMEOUT_SECS};
use orderflow_domain::{
    Currency, CustomerId, IdError, MAX_LINE_QUANTITY, Money, MoneyError, OrderId, OrderInput,
    PaymentNo, ProviderName, Quantity, Sku, ValidOrder, workflow_id_for,
};
use serde_json::Value;

/// Currencies the money check picks from with its first byte: both exponents, and a few codes
/// that must be refused.
pub const CURRENCY_CHOICES: &[&str] = &["USD", "JPY", "EUR", "KRW", "usd", "XXX", ""];

/// What `Money::parse_major` must answer, worked out another way: the grammar by hand and the
/// number by `u128::from_str`.
#[derive(Debug, PartialEq, Eq)]
pub enum ExpectedAmount {
    Minor(i64),
    Overflow,
    Bad,
}

pub fn expected_major(text: &str, exponent: u8) -> ExpectedAmount {
    let exponent = usize::from(exponent);
    let (whole, frac, has_point) = match text.split_once('.') {
        Some((whole, frac)) => (whole, frac, true),
        None => (text, "", false),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (has_point && !digits(frac)) || frac.len() > exponent {
        return ExpectedAmount::Bad;
    }
    let scaled = format!("{whole}{frac}{}", "0".repeat(exponent - frac.len()));
    // Only digits, so the one way `parse` can fail is a number too big even for u128.
    match scaled.parse::<u128>().ok().map(i64::try_from) {
        Some(Ok(minor)) => ExpectedAmount::Minor(minor),
        _ => ExpectedAmount::Overflow,
    }
}

/// `Money::parse_major` agrees with [`expected_major`]; what it accepts is non-negative, prints
/// as `<amount> <code>` and parses back from that print to the same value, and survives JSON.
pub fn check_parse_major(text: &str, currency: Currency) -> Result<Money, MoneyError> {
    let result = Money::parse_major(text, currency);
    match (&result, expected_major(text, currency.exponent())) {
        (Ok(money), ExpectedAmount::Minor(minor)) => assert_eq!(money.minor(), minor, "{text:?}"),
        (Err(MoneyError::Overflow), ExpectedAmount::Overflow) => {}
        (Err(MoneyError::BadAmount { input, .. }), ExpectedAmount::Bad) => {
            // The error quotes a bounded prefix, never the whole input.
            assert!(input.chars().count() <= 40, "{input:?}");
        }
        (got, expected) => {
            panic!("parse_major({text:?}, {currency}) = {got:?}, expected {expected:?}")
        }
    }
    if let Ok(money) = &result {
        check_money_value(money);
        assert_eq!(money.currency(), currency);
    }
    result
}

/// A `Money` that exists is non-negative and round-trips through `Display` and JSON.
pub fn check_money_value(money: &Money) {
    assert!(money.minor() >= 0, "{money:?}");
    let shown = money.to_string();
    let suffix = format!(" {}", money.currency());
    let amount = shown
        .strip_suffix(&suffix)
        .unwrap_or_else(|| panic!("{shown:?} does not end in {suffix:?}"));
    assert_eq!(
        Money::parse_major(amount, money.currency()),
        Ok(*money),
        "{shown:?} does not parse back"
    );
    let json = serde_json::to_vec(money).expect("Money serializes");
    let back: Money = serde_json::from_slice(&json).expect("serialized Money deserializes");
    assert_eq!(&back, money);
}

/// `Money` from JSON: accepted only with a whole, non-negative `minor` that fits i64 and a known
/// currency, and then equal to what a plain JSON reading of the same bytes says.
pub fn check_money_json(data: &[u8]) -> Option<Money> {
    let money: Money = serde_json::from_slice(data).ok()?;
    check_money_value(&money);
    // serde skips the value of an unknown field without checking it: invalid UTF-8 or a number
    // out of range there still decodes as Money (both found by this target) while a strict JSON
    // reader refuses the bytes. Invalid UTF-8 is replaced (Money's own fields are valid UTF-8);
    // for the rare rest, there is nothing to compare with.
    let Ok(value) = serde_json::from_str::<Value>(&String::from_utf8_lossy(data)) else {
        return Some(money);
    };
    // serde accepts a struct as an object or as a sequence of its fields.
    let (minor, currency) = match &value {
        Value::Array(_) => (&value[0], &value[1]),
        object => (&object["minor"], &object["currency"]),
    };
    assert_eq!(minor.as_i64(), Some(money.minor()), "{value}");
    assert_eq!(currency.as_str(), Some(money.currency().code()), "{value}");
    Some(money)
}

/// `Currency::parse` accepts exactly the upper-case codes of its table and remembers them.
pub fn check_currency(code: &str) -> Option<Currency> {
    let currency = Currency::parse(code).ok()?;
    assert_eq!(currency.code(), code);
    assert!(
        code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()),
        "{code:?}"
    );
    assert!(
        matches!(currency.exponent(), 0 | 2),
        "{code}: {}",
        currency.exponent()
    );
    let json = serde_json::to_string(&currency).expect("Currency serializes");
    assert_eq!(json, format!("\"{code}\""));
    Some(currency)
}

/// Checked arithmetic never wraps: it is the exact sum / product, or an error.
pub fn check_money_arithmetic(a: Money, b: Money, quantity: Quantity) {
    let sum = a.checked_add(b);
    if a.currency() != b.currency() {
        assert!(
            matches!(sum, Err(MoneyError::CurrencyMismatch(..))),
            "{sum:?}"
        );
    } else {
        let exact = i128::from(a.minor()) + i128::from(b.minor());
        match sum {
            Ok(sum) => assert_eq!(i128::from(sum.minor()), exact),
            Err(e) => {
                assert_eq!(e, MoneyError::Overflow);
                assert!(exact > i128::from(i64::MAX));
            }
        }
    }
    let exact = i128::from(a.minor()) * i128::from(quantity.get());
    match a.checked_mul(quantity) {
        Ok(product) => assert_eq!(i128::from(product.minor()), exact),
        Err(e) => {
            assert_eq!(e, MoneyError::Overflow);
            assert!(exact > i128::from(i64::MAX));
        }
    }
}

/// The `money_parse` target: byte 0 picks a currency, the rest is the amount text (when it is
/// UTF-8); the whole input is also tried as JSON `Money` and as a currency code; bytes 1..17 as
/// two raw amounts for the arithmetic.
pub fn check_money(data: &[u8]) {
    check_money_json(data);
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let code = CURRENCY_CHOICES[usize::from(choice) % CURRENCY_CHOICES.len()];
    if let Ok(text) = std::str::from_utf8(rest) {
        check_currency(text);
        match check_currency(code) {
            Some(currency) => {
                check_parse_major(text, currency).ok();
            }
            None => assert!(Currency::parse(code).is_err()),
        }
    }
    if rest.len() >= 16 {
        let raw = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&rest[at..at + 8]);
            i64::from_le_bytes(bytes)
        };
        let usd = Currency::parse("USD").expect("USD is known");
        let other = Currency::parse(if choice & 1 == 0 { "USD" } else { "EUR" }).expect("known");
        let quantity = Quantity::new(i64::from(choice) * 3 + 1).expect("1..=766 is in range");
        match (Money::new(raw(0), usd), Money::new(raw(8), other)) {
            (Ok(a), Ok(b)) => check_money_arithmetic(a, b, quantity),
            (a, b) => {
                assert_eq!(a.is_err(), raw(0) < 0);
                assert_eq!(b.is_err(), raw(8) < 0);
            }
        }
    }
}

/// `Quantity::new` accepts exactly 1..=MAX_LINE_QUANTITY and keeps the value.
pub fn check_quantity_value(value: i64) -> Option<Quantity> {
    let result = Quantity::new(value);
    let in_range = (1..=i64::from(MAX_LINE_QUANTITY)).contains(&value);
    assert_eq!(
        result.is_ok(),
        in_range,
        "Quantity::new({value}) = {result:?}"
    );
    let quantity = result.ok()?;
    assert_eq!(i64::from(quantity.get()), value);
    assert_eq!(i64::from(quantity), value);
    Some(quantity)
}

/// `Quantity` from JSON: only a JSON integer in range, and then exactly that integer.
pub fn check_quantity_json(data: &[u8]) -> Option<Quantity> {
    let result = serde_json::from_slice::<Quantity>(data);
    let as_integer = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.as_i64());
    match (&result, as_integer) {
        (Ok(quantity), Some(n)) => {
            assert_eq!(i64::from(quantity.get()), n);
            check_quantity_value(n);
        }
        (Ok(quantity), None) => panic!("{quantity:?} decoded from a non-integer"),
        (Err(_), Some(n)) => assert!(
            check_quantity_value(n).is_none(),
            "the in-range integer {n} was refused"
        ),
        (Err(_), None) => {}
    }
    let quantity = result.ok()?;
    let json = serde_json::to_vec(&quantity).expect("Quantity serializes");
    assert_eq!(
        serde_json::from_slice::<Quantity>(&json).ok(),
        Some(quantity)
    );
    Some(quantity)
}

/// The `quantity_parse` target: the bytes as JSON `Quantity` and as a workflow `OrderInput`, and
/// (with 8 of them) as a raw i64.
pub fn check_quantity(data: &[u8]) {
    if let Some(first) = data.get(..8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(first);
        check_quantity_value(i64::from_le_bytes(bytes));
    }
    check_quantity_json(data);
    check_order_input_json(data);
}

/// What `OrderInput::validate` must decide, from the spec: every id valid, 1..=MAX_LINES lines,
/// valid distinct SKUs, quantities in range, timeout (if any) in range.
pub fn expected_valid(input: &OrderInput) -> bool {
    let mut skus: Vec<&str> = input.lines.iter().map(|l| l.sku.as_str()).collect();
    skus.sort_unstable();
    let distinct = skus.windows(2).all(|w| w[0] != w[1]);
    OrderId::parse(input.order_id.as_str()).is_ok()
        && CustomerId::parse(input.customer_id.as_str()).is_ok()
        && ProviderName::parse(input.provider.as_str()).is_ok()
        && (1..=MAX_LINES).contains(&input.lines.len())
        && input.lines.iter().all(|l| {
            Sku::parse(l.sku.as_str()).is_ok()
                && (1..=i64::from(MAX_LINE_QUANTITY)).contains(&l.quantity)
        })
        && distinct
        && input
            .payment_timeout_secs
            .is_none_or(|s| (MIN_PAYMENT_TIMEOUT_SECS..=MAX_PAYMENT_TIMEOUT_SECS).contains(&s))
}

/// `validate` agrees with [`expected_valid`], and a valid order is exactly the input's lines,
/// sorted by SKU, with quantities in 1..=MAX_LINE_QUANTITY: never zero, never negative.
pub fn check_validation(input: &OrderInput) -> Option<ValidOrder> {
    let result = input.validate();
    assert_eq!(
        result.is_ok(),
        expected_valid(input),
        "validate() = {result:?} for {input:?}"
    );
    let valid = result.ok()?;
    assert_eq!(valid.order_id.as_str(), input.order_id);
    assert_eq!(valid.customer_id.as_str(), input.customer_id);
    assert_eq!(valid.provider.as_str(), input.provider);
    assert_eq!(valid.payment_timeout_secs, input.payment_timeout_secs);
    assert_eq!(valid.lines.len(), input.lines.len());
    assert!(
        valid.lines.windows(2).all(|w| w[0].sku < w[1].sku),
        "lines not sorted and distinct"
    );
    for line in &valid.lines {
        let q = line.quantity.get();
        assert!((1..=MAX_LINE_QUANTITY).contains(&q), "quantity {q}");
        let raw = input
            .lines
            .iter()
            .find(|l| l.sku == line.sku.as_str())
            .expect("every valid line comes from an input line");
        assert_eq!(raw.quantity, i64::from(q));
    }
    Some(valid)
}

/// A workflow input decoded from arbitrary JSON validates exactly when it should.
pub fn check_order_input_json(data: &[u8]) -> Option<ValidOrder> {
    let input: OrderInput = serde_json::from_slice(data).ok()?;
    check_validation(&input)
}

fn check_id<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    text: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    parse: impl Fn(&str) -> Result<T, IdError>,
    as_str: impl Fn(&T) -> &str,
) -> Option<T> {
    let len = text.chars().count();
    let result = parse(text);
    match &result {
        Ok(id) => {
            assert!(
                len >= 1 && len <= max && text.chars().all(&allowed),
                "{text:?} accepted"
            );
            assert_eq!(as_str(id), text);
            let json = serde_json::to_string(id).expect("ids serialize");
            assert_eq!(serde_json::from_str::<T>(&json).ok().as_ref(), Some(id));
        }
        Err(IdError::Empty { .. }) => assert_eq!(len, 0),
        Err(IdError::TooLong {
            len: got, max: m, ..
        }) => {
            assert_eq!((*got, *m), (len, max));
            assert!(len > max);
        }
        Err(IdError::BadChar { bad, value, .. }) => {
            assert!(len >= 1 && len <= max, "{len} chars reported as a bad char");
            assert!(!allowed(*bad) && text.contains(*bad));
            assert_eq!(value, text);
        }
    }
    result.ok()
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The `ids_parse` target: the text as every kind of id, against the documented alphabets and
/// lengths; JSON strings go through the same constructor; a payment number derived from a valid
/// order id is itself valid.
pub fn check_ids(data: &[u8]) {
    // JSON: bytes that decode to an id are a JSON string holding a valid id.
    if let Ok(id) = serde_json::from_slice::<OrderId>(data) {
        assert_eq!(OrderId::parse(id.as_str()).as_ref(), Ok(&id));
    }
    if let Ok(sku) = serde_json::from_slice::<Sku>(data) {
        assert_eq!(Sku::parse(sku.as_str()).as_ref(), Ok(&sku));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(order) = check_id(
        text,
        OrderId::MAX_LEN,
        id_char,
        |s| OrderId::parse(s),
        OrderId::as_str,
    ) {
        assert_eq!(OrderId::MAX_LEN, 64);
        let payment = PaymentNo::for_order(&order);
        assert_eq!(PaymentNo::parse(payment.as_str()).as_ref(), Ok(&payment));
        assert_eq!(payment.as_str().len(), 32);
        assert_eq!(workflow_id_for(&order), format!("order-{text}"));
    }
    check_id(
        text,
        CustomerId::MAX_LEN,
        |c| id_char(c) || matches!(c, '.' | '@' | '+'),
        |s| CustomerId::parse(s),
        CustomerId::as_str,
    );
    check_id(
        text,
        Sku::MAX_LEN,
        |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_',
        |s| Sku::parse(s),
        Sku::as_str,
    );
    check_id(
        text,
        ProviderName::MAX_LEN,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        |s| ProviderName::parse(s),
        ProviderName::as_str,
    );
    check_id(
        text,
        PaymentNo::MAX_LEN,
        id_char,
        |s| PaymentNo::parse(s),
        PaymentNo::as_str,
    );
}
