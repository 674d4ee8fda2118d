//! Identifiers. Each is a newtype over `String` with a fallible constructor; serde goes through
//! the same constructor, so an invalid id can never be deserialized into one of these.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} {value:?} contains {bad:?}; allowed: {allowed}")]
    BadChar {
        kind: &'static str,
        value: String,
        bad: char,
        allowed: &'static str,
    },
}

fn check(
    kind: &'static str,
    value: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = value.chars().count();
    if len > max {
        return Err(IdError::TooLong { kind, len, max });
    }
    if let Some(bad) = value.chars().find(|c| !ok(*c)) {
        return Err(IdError::BadChar {
            kind,
            value: value.to_owned(),
            bad,
            allowed,
        });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($kind, &value, $max, $allowed, $ok)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
    };
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

string_id!(
    /// An order's id. It is part of the workflow id (`order-<id>`) and the seed of the payment
    /// number, so it is restricted to characters every provider and URL accepts.
    OrderId,
    "order id",
    64,
    "ASCII letters, digits, '-' and '_'",
    id_char
);

string_id!(
    /// An API client: a shop or service holding API keys (`shop-a`). Orders it creates belong
    /// to it, and its idempotency keys are its own. No ':' so it can prefix a key unambiguously.
    ClientId,
    "client id",
    64,
    "ASCII letters, digits, '-', '_' and '.'",
    |c: char| id_char(c) || c == '.'
);

string_id!(
    /// The shop's id for a customer. Opaque to us; printable ASCII without spaces.
    CustomerId,
    "customer id",
    64,
    "ASCII letters, digits, '-', '_', '.', '@' and '+'",
    |c: char| id_char(c) || matches!(c, '.' | '@' | '+')
);

string_id!(
    /// A stock-keeping unit: upper-case letters, digits, '-' and '_' (`TEE-RED-M`).
    Sku,
    "SKU",
    40,
    "upper-case ASCII letters, digits, '-' and '_'",
    |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_'
);

string_id!(
    /// The name of a payment provider adapter (`sandbox`, `stripe`, ...).
    ProviderName,
    "provider",
    32,
    "lower-case ASCII letters, digits and '_'",
    |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
);

string_id!(
    /// The merchant-side number of an order's payment, sent to the provider as its idempotency
    /// key and order reference. Always [`PaymentNo::for_order`]: it is derived from the order id,
    /// never random, so a retried `open_order` can never open a second charge.
    PaymentNo,
    "payment number",
    32,
    "ASCII letters, digits, '-' and '_'",
    id_char
);

impl PaymentNo {
    /// `pay_` + the first 28 hex digits of SHA-256(order id): 32 characters, which fits the
    /// strictest provider limit we target (WeChat Pay's `out_trade_no` is 6..=32 characters).
    pub fn for_order(order: &OrderId) -> PaymentNo {
        let digest = Sha256::digest(order.as_str().as_bytes());
        let hex = hex::encode(digest);
        PaymentNo(format!("pay_{}", &hex[..28]))
    }
}

/// The refund number of an after-sale refund: `rf_`, the payment number's 28 hex digits, `_`, and
/// the first 10 hex digits of SHA-256(`orderflow-refund:<order_id>:<key>`), where `key` is the
/// request's idempotency key: 42 characters, within WeChat Pay's `out_refund_no` and Alipay's
/// `out_request_no` (64). Derived, never random: the same request finds the same refund.
pub fn after_sale_refund_no(order: &OrderId, key: &str) -> String {
    derived_refund_no(
        &PaymentNo::for_order(order),
        &format!("orderflow-refund:{order}:{key}"),
    )
}

/// The refund number of a second payment for one payment number (the customer paid twice while
/// the order waited for review): the payment's, and 10 hex digits of SHA-256 over the second
/// payment's transaction id. One refund per transaction, however often its callback arrives.
pub fn second_payment_refund_no(payment: &PaymentNo, provider_txn_id: &str) -> String {
    derived_refund_no(
        payment,
        &format!("orderflow-second-payment:{provider_txn_id}"),
    )
}

fn derived_refund_no(payment: &PaymentNo, salt: &str) -> String {
    let digits = payment.as_str().trim_start_matches("pay_");
    let request = hex::encode(Sha256::digest(salt.as_bytes()));
    format!("rf_{digits}_{}", &request[..10])
}

/// The Temporal workflow id of an order: one order id, one workflow.
pub fn workflow_id_for(order: &OrderId) -> String {
    format!("order-{order}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_id_accepts_safe_characters_only() {
        assert!(OrderId::parse("ord_123-abc").is_ok());
        assert_eq!(OrderId::parse(""), Err(IdError::Empty { kind: "order id" }));
        assert!(matches!(
            OrderId::parse("a b"),
            Err(IdError::BadChar { bad: ' ', .. })
        ));
        assert!(matches!(
            OrderId::parse("ordér"),
            Err(IdError::BadChar { bad: 'é', .. })
        ));
        assert!(OrderId::parse("x".repeat(64)).is_ok());
        assert!(matches!(
            OrderId::parse("x".repeat(65)),
            Err(IdError::TooLong { len: 65, .. })
        ));
    }

    #[test]
    fn sku_is_upper_case() {
        assert!(Sku::parse("TEE-RED_M1").is_ok());
        assert!(Sku::parse("tee-red").is_err());
        assert!(Sku::parse("TEE RED").is_err());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("A".repeat(41)).is_err());
    }

    #[test]
    fn customer_and_provider_ids() {
        assert!(CustomerId::parse("alice+shop@example.com").is_ok());
        assert!(CustomerId::parse("alice\n").is_err());
        assert!(ProviderName::parse("sandbox").is_ok());
        assert!(ProviderName::parse("Sandbox").is_err());
    }

    #[test]
    fn payment_number_is_derived_and_stable() {
        let order = OrderId::parse("ord-1").unwrap();
        let a = PaymentNo::for_order(&order);
        let b = PaymentNo::for_order(&order);
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().starts_with("pay_"));
        let other = PaymentNo::for_order(&OrderId::parse("ord-2").unwrap());
        assert_ne!(a, other);
        // A derived number is itself a valid payment number.
        assert_eq!(PaymentNo::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn serde_goes_through_the_constructor() {
        let ok: OrderId = serde_json::from_str("\"ord-9\"").unwrap();
        assert_eq!(ok.as_str(), "ord-9");
        assert!(serde_json::from_str::<OrderId>("\"bad id\"").is_err());
        assert!(serde_json::from_str::<Sku>("\"lower\"").is_err());
    }

    #[test]
    fn workflow_id_has_a_fixed_prefix() {
        let order = OrderId::parse("abc").unwrap();
        assert_eq!(workflow_id_for(&order), "order-abc");
    }
}
