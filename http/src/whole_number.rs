//! Whole numbers in request bodies, as JSON Schema defines them: a number with no fractional
//! part, however it is written (`2`, `2.0`, `20e-1`), since the OpenAPI document says `integer`
//! and a client may send any of those. Read from the number's text with integer arithmetic:
//! never through a float, so `2.0000000000000000001` is refused, not rounded to 2.

use serde::de::{Deserialize, Deserializer, Error};
use serde_json::value::RawValue;

/// The exact integer a JSON number's text denotes, if it is one and fits an `i64`.
pub fn exact_integer(text: &str) -> Option<i64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() || !digits_ok(int_part) || !digits_ok(frac_part) {
        return None;
    }
    if mantissa.contains('.') && frac_part.is_empty() {
        return None;
    }
    // value = digits × 10^(exponent − fraction digits); significant digits only.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let scale = i64::from(exponent) - frac_part.len() as i64;
    let digits = if scale < 0 {
        // The dropped digits must all be zero.
        let keep = digits.len() as i64 + scale;
        if keep < 0 {
            return digits.bytes().all(|b| b == b'0').then_some(0);
        }
        let (kept, dropped) = digits.split_at(keep as usize);
        if !dropped.bytes().all(|b| b == b'0') {
            return None;
        }
        kept.to_owned()
    } else if digits.is_empty() {
        String::new()
    } else {
        // At most 19 digits fit an i64: refuse early instead of building a huge string.
        if digits.len() as i64 + scale > 19 {
            return None;
        }
        format!("{digits}{}", "0".repeat(scale as usize))
    };
    if digits.is_empty() {
        return Some(0);
    }
    let magnitude: i128 = digits.parse().ok()?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

fn from_raw<E: Error>(raw: &RawValue) -> Result<i64, E> {
    exact_integer(raw.get().trim()).ok_or_else(|| {
        E::custom(format!(
            "expected a whole number in i64, found {}",
            raw.get().chars().take(40).collect::<String>()
        ))
    })
}

/// `#[serde(deserialize_with = "...")]` for an `i64`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let raw = <&RawValue>::deserialize(d)?;
    from_raw(raw)
}

/// `#[serde(deserialize_with = "...")]` for an optional `u64` (`null` or absent is `None`).
pub fn deserialize_optional_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let raw = <Option<&RawValue>>::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(raw) if raw.get().trim() == "null" => Ok(None),
        Some(raw) => {
            let value = from_raw(raw)?;
            u64::try_from(value).map(Some).map_err(|_| {
                D::Error::custom(format!("expected a whole number ≥ 0, found {value}"))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exact_integer;

    #[test]
    fn integers_however_written() {
        for (text, value) in [
            ("0", 0),
            ("-0", 0),
            ("2", 2),
            ("2.0", 2),
            ("2.000", 2),
            ("20e-1", 2),
            ("0.2e1", 2),
            ("1e2", 100),
            ("1E+2", 100),
            ("-7", -7),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("0.0e5", 0),
        ] {
            assert_eq!(exact_integer(text), Some(value), "{text}");
        }
    }

    #[test]
    fn fractions_big_numbers_and_junk_are_not() {
        for text in [
            "2.5",
            "2.0000000000000000001",
            "1e-1",
            "9223372036854775808",
            "-9223372036854775809",
            "1e19",
            "1e400",
            "1e-400",
            "2.",
            ".5",
            "",
            "-",
            "\"2\"",
            "null",
            "[2]",
            "1e99999999999",
            "0x10",
        ] {
            assert_eq!(exact_integer(text), None, "{text}");
        }
    }
}
