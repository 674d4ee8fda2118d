//! Order and payment statuses. The wire names (`AWAITING_PAYMENT`, ...) are the values stored in
//! the database, shown by the CLI and written to the `OrderStatus` search attribute.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of {expected}")]
pub struct StatusParseError {
    kind: &'static str,
    value: String,
    expected: String,
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl FromStr for $name {
            type Err = StatusParseError;
            fn from_str(s: &str) -> Result<Self, StatusParseError> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(StatusParseError {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: [$($wire),+].join(", "),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Where an order is in its life. See ARCHITECTURE.md for the state diagram.
    OrderStatus, "order status" {
        Pending => "PENDING",
        AwaitingPayment => "AWAITING_PAYMENT",
        Paid => "PAID",
        Closed => "CLOSED",
        Cancelled => "CANCELLED",
        Rejected => "REJECTED",
        NeedsReview => "NEEDS_REVIEW",
        Refunded => "REFUNDED",
        PartiallyRefunded => "PARTIALLY_REFUNDED",
    }
);

impl OrderStatus {
    /// The order's workflow has ended: what the order kept is decided. Only an operator's
    /// after-sale refund moves it on (`PAID` → `PARTIALLY_REFUNDED` → `REFUNDED`).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::Closed
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Refunded
                | OrderStatus::PartiallyRefunded
        )
    }

    /// An operator may refund the order after the sale (whole or what is left of it).
    pub fn is_refundable(&self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::PartiallyRefunded)
    }
}

wire_enum!(
    /// The state of an order's payment, in our `payments` table and at the provider.
    PaymentStatus, "payment status" {
        Pending => "PENDING",
        Paid => "PAID",
        Mismatched => "MISMATCHED",
        Closed => "CLOSED",
        Refunded => "REFUNDED",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>().unwrap(), *s);
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        for s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>().unwrap(), *s);
        }
        let err = "paid".parse::<OrderStatus>().unwrap_err().to_string();
        assert!(err.contains("AWAITING_PAYMENT"), "{err}");
    }

    #[test]
    fn final_statuses() {
        assert!(!OrderStatus::AwaitingPayment.is_final());
        assert!(!OrderStatus::NeedsReview.is_final());
        assert!(!OrderStatus::Pending.is_final());
        assert!(OrderStatus::Paid.is_final());
        assert!(OrderStatus::Refunded.is_final());
    }
}
