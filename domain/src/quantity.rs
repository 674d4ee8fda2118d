//! Quantities of one SKU on one order line.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The most units of one SKU a single order line may ask for. A cap well below any real stock
/// level keeps a typo ("10000" for "10") from locking a warehouse's worth of stock.
pub const MAX_LINE_QUANTITY: u32 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity must be at least 1 (got {0})")]
    TooSmall(i64),
    #[error("quantity {0} is above the per-line limit of {MAX_LINE_QUANTITY}")]
    TooLarge(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u32);

impl Quantity {
    pub fn new(value: i64) -> Result<Self, QuantityError> {
        if value < 1 {
            return Err(QuantityError::TooSmall(value));
        }
        if value > i64::from(MAX_LINE_QUANTITY) {
            return Err(QuantityError::TooLarge(value));
        }
        // In range 1..=MAX_LINE_QUANTITY, so it fits.
        Ok(Quantity(value as u32))
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = QuantityError;
    fn try_from(value: i64) -> Result<Self, QuantityError> {
        Quantity::new(value)
    }
}

impl From<Quantity> for i64 {
    fn from(value: Quantity) -> i64 {
        i64::from(value.0)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(Quantity::new(0), Err(QuantityError::TooSmall(0)));
        assert_eq!(Quantity::new(-3), Err(QuantityError::TooSmall(-3)));
        assert_eq!(
            Quantity::new(i64::MIN),
            Err(QuantityError::TooSmall(i64::MIN))
        );
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(1_000).unwrap().get(), 1_000);
        assert_eq!(Quantity::new(1_001), Err(QuantityError::TooLarge(1_001)));
        assert_eq!(
            Quantity::new(i64::MAX),
            Err(QuantityError::TooLarge(i64::MAX))
        );
        // 2^32 + 1 would wrap to 1 with a careless cast.
        assert!(Quantity::new((1_i64 << 32) + 1).is_err());
    }

    #[test]
    fn serde_checks_bounds() {
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Quantity>("2.5").is_err());
        assert!(serde_json::from_str::<Quantity>("\"2\"").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("2").unwrap().get(), 2);
    }
}
