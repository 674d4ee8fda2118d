//! Money: integer minor units plus an ISO 4217 currency. Never floating point.
//!
//! Amounts are `i64` minor units (cents, fen, yen). Prices and order totals are never negative;
//! every arithmetic step is checked so an absurd quantity times an absurd price is an error, not a
//! wrapped number.

use crate::quantity::Quantity;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}; expected an ISO 4217 code such as USD, EUR, CNY or JPY")]
    UnknownCurrency(String),
    #[error("amount must not be negative (got {0} minor units)")]
    Negative(i64),
    #[error("amount overflows 64-bit minor units")]
    Overflow,
    #[error("cannot combine {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("{input:?} is not an amount in {currency}: {why}")]
    BadAmount {
        input: String,
        currency: Currency,
        why: &'static str,
    },
}

/// ISO 4217 code with the number of digits after the decimal point.
/// The list is deliberately short: a currency we have never priced in is a typo, not a feature.
const CURRENCIES: &[(&str, u8)] = &[
    ("AUD", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("INR", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("MXN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("PLN", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("USD", 2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, exponent)| {
                let b = c.as_bytes();
                Currency {
                    code: [b[0], b[1], b[2]],
                    exponent: *exponent,
                }
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    /// Every code [`Currency::parse`] accepts.
    pub fn codes() -> impl Iterator<Item = &'static str> {
        CURRENCIES.iter().map(|(code, _)| *code)
    }

    pub fn code(&self) -> &str {
        // Only ever built from the ASCII table above.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, MoneyError> {
        Currency::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> String {
        value.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A non-negative amount of one currency, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawMoney")]
pub struct Money {
    minor: i64,
    currency: Currency,
}

#[derive(Deserialize)]
struct RawMoney {
    minor: i64,
    currency: Currency,
}

impl TryFrom<RawMoney> for Money {
    type Error = MoneyError;
    fn try_from(raw: RawMoney) -> Result<Self, MoneyError> {
        Money::new(raw.minor, raw.currency)
    }
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative(minor));
        }
        Ok(Money { minor, currency })
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Money::new(minor, self.currency)
    }

    pub fn checked_mul(self, quantity: Quantity) -> Result<Money, MoneyError> {
        let minor = self
            .minor
            .checked_mul(i64::from(quantity.get()))
            .ok_or(MoneyError::Overflow)?;
        Money::new(minor, self.currency)
    }

    /// Parses a decimal amount in major units ("19.99", "1200", "0.5") without floating point.
    /// At most the currency's number of decimals; no sign, exponent, spaces or separators.
    pub fn parse_major(input: &str, currency: Currency) -> Result<Money, MoneyError> {
        let bad = |why| MoneyError::BadAmount {
            input: input.chars().take(40).collect(),
            currency,
            why,
        };
        let (whole, frac) = match input.split_once('.') {
            Some((w, f)) => (w, f),
            None => (input, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected digits before the decimal point"));
        }
        if input.contains('.') && frac.is_empty() {
            return Err(bad("expected digits after the decimal point"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected only digits after the decimal point"));
        }
        let exponent = usize::from(currency.exponent());
        if frac.len() > exponent {
            return Err(bad("too many decimal places for this currency"));
        }
        let mut minor: i64 = 0;
        let padded = format!("{whole}{frac:0<exponent$}");
        for digit in padded.bytes() {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(digit - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        Money::new(minor, currency)
    }
}

impl fmt::Display for Money {
    /// `19.99 USD`, `1200 JPY`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = u32::from(self.currency.exponent());
        if exponent == 0 {
            return write!(f, "{} {}", self.minor, self.currency);
        }
        let scale = 10_i64.pow(exponent);
        write!(
            f,
            "{}.{:0width$} {}",
            self.minor / scale,
            self.minor % scale,
            self.currency,
            width = exponent as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn currencies_are_checked() {
        assert_eq!(usd().code(), "USD");
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        for bad in ["usd", "US", "USDD", "XXX", "", "€"] {
            assert!(Currency::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(serde_json::from_str::<Currency>("\"ZZZ\"").is_err());
    }

    #[test]
    fn negative_amounts_are_rejected() {
        assert_eq!(Money::new(-1, usd()), Err(MoneyError::Negative(-1)));
        assert!(Money::new(0, usd()).is_ok());
        assert!(Money::new(i64::MAX, usd()).is_ok());
        let err = serde_json::from_str::<Money>(r#"{"minor":-5,"currency":"USD"}"#);
        assert!(err.is_err());
    }

    #[test]
    fn arithmetic_overflow_is_an_error() {
        let huge = Money::new(i64::MAX, usd()).unwrap();
        assert_eq!(
            huge.checked_add(Money::new(1, usd()).unwrap()),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            huge.checked_mul(Quantity::new(2).unwrap()),
            Err(MoneyError::Overflow)
        );
        let price = Money::new(1999, usd()).unwrap();
        assert_eq!(
            price
                .checked_mul(Quantity::new(3).unwrap())
                .unwrap()
                .minor(),
            5997
        );
    }

    #[test]
    fn currencies_do_not_mix() {
        let eur = Money::new(1, Currency::parse("EUR").unwrap()).unwrap();
        assert!(matches!(
            Money::new(1, usd()).unwrap().checked_add(eur),
            Err(MoneyError::CurrencyMismatch(..))
        ));
    }

    #[test]
    fn parse_major_without_floats() {
        assert_eq!(Money::parse_major("19.99", usd()).unwrap().minor(), 1999);
        assert_eq!(Money::parse_major("19.9", usd()).unwrap().minor(), 1990);
        assert_eq!(Money::parse_major("7", usd()).unwrap().minor(), 700);
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(Money::parse_major("1200", jpy).unwrap().minor(), 1200);
        assert!(Money::parse_major("12.5", jpy).is_err());
        for bad in [
            "", "-1", "+1", "1e3", "1e400", "1.999", "1.", ".5", "1,000", " 1", "NaN", "0x10",
        ] {
            assert!(Money::parse_major(bad, usd()).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Money::parse_major("92233720368547758.08", usd()),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::parse_major("92233720368547758.07", usd())
                .unwrap()
                .minor(),
            i64::MAX
        );
    }

    #[test]
    fn display_uses_the_currency_exponent() {
        assert_eq!(Money::new(1999, usd()).unwrap().to_string(), "19.99 USD");
        assert_eq!(Money::new(5, usd()).unwrap().to_string(), "0.05 USD");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(Money::new(1200, jpy).unwrap().to_string(), "1200 JPY");
    }
}
