//! The one place that decides which activity failures are worth retrying.
//!
//! Every activity module has its own `thiserror` enum; each implements [`Classified`], and
//! [`to_activity_error`] turns it into a Temporal `ApplicationFailure` whose *type* is the stable
//! code below and whose `non_retryable` flag comes from [`Classified::retryable`]. The workflow
//! branches on the codes (`OUT_OF_STOCK` → the order is rejected), never on message text.
//!
//! Rule of thumb: the customer's or the caller's mistake (unknown SKU, not enough stock, a
//! declined card) is final; the infrastructure's hiccup (a dropped connection, a busy database, a
//! provider that times out) is retried with backoff, for as long as it takes.

use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

pub const INVALID_ORDER: &str = "INVALID_ORDER";
pub const UNKNOWN_SKU: &str = "UNKNOWN_SKU";
pub const UNKNOWN_PROVIDER: &str = "UNKNOWN_PROVIDER";
pub const OUT_OF_STOCK: &str = "OUT_OF_STOCK";
pub const PRICING: &str = "PRICING";
/// The order's coupon cannot be used (unknown, another customer's, not valid now, minimum spend
/// or currency not met, already used or held): final, the order is rejected.
pub const COUPON_UNAVAILABLE: &str = "COUPON_UNAVAILABLE";
pub const PAYMENT_REJECTED: &str = "PAYMENT_REJECTED";
pub const PAYMENT_NOT_FOUND: &str = "PAYMENT_NOT_FOUND";
pub const PROVIDER_UNAVAILABLE: &str = "PROVIDER_UNAVAILABLE";
pub const DATABASE: &str = "DATABASE";
pub const INVARIANT_VIOLATION: &str = "INVARIANT_VIOLATION";
/// A late payment's order is still open: retried until the order has decided (not an error).
pub const ORDER_UNDECIDED: &str = "ORDER_UNDECIDED";
/// The provider accepted a refund and has not finished it: asked again until it has.
pub const REFUND_PROCESSING: &str = "REFUND_PROCESSING";
/// The provider cannot return the money without a person (WeChat Pay `ABNORMAL`): asked again,
/// and visible as the step's last error until an operator completes it at the provider.
pub const REFUND_STUCK: &str = "REFUND_STUCK";

/// A typed activity error that knows its stable code and whether a retry could help.
pub trait Classified: std::error::Error + Send + Sync + 'static {
    fn code(&self) -> &'static str;
    fn retryable(&self) -> bool;
}

pub fn to_activity_error<E: Classified>(err: E) -> ActivityError {
    let failure = ApplicationFailure::builder(err.to_string())
        .type_name(err.code().to_owned())
        .non_retryable(!err.retryable())
        .build();
    ActivityError::application(failure)
}

/// The one rule for database errors, wherever they surface (activities, providers' own stores,
/// the HTTP server): retryable (connection loss, `SQLITE_BUSY`, serialization failures, code
/// `DATABASE`) unless a CHECK constraint fired — our own code tried to break a stock or money
/// invariant, and retrying the same statement cannot fix it (`INVARIANT_VIOLATION`).
impl Classified for sqlx::Error {
    fn code(&self) -> &'static str {
        if self.retryable() {
            DATABASE
        } else {
            INVARIANT_VIOLATION
        }
    }

    fn retryable(&self) -> bool {
        match self {
            sqlx::Error::Database(db) => {
                !matches!(db.kind(), sqlx::error::ErrorKind::CheckViolation)
            }
            _ => true,
        }
    }
}

/// Finds the application failure type (our code) inside an activity failure as the workflow sees
/// it: `ActivityFailure { cause: ApplicationFailure { type } }`.
pub fn code_of(failure: &Failure) -> Option<&str> {
    let mut current = Some(failure);
    while let Some(f) = current {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &f.failure_info {
            return Some(info.r#type.as_str());
        }
        current = f.cause.as_deref();
    }
    None
}

/// Whether any application failure in the chain says "do not retry" (the activity decided the
/// answer is final, see [`Classified::retryable`]).
pub fn is_non_retryable(failure: &Failure) -> bool {
    let mut current = Some(failure);
    while let Some(f) = current {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &f.failure_info
            && info.non_retryable
        {
            return true;
        }
        current = f.cause.as_deref();
    }
    false
}

/// The innermost human message of a failure chain (what the activity said), for reasons shown
/// to people.
pub fn message_of(failure: &Failure) -> &str {
    let mut current = failure;
    while let Some(cause) = current.cause.as_deref() {
        current = cause;
    }
    current.message.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderError;

    /// A CHECK constraint that fires is our own bug: final, wherever the error surfaces. Anything
    /// else the database says (here: a pool that timed out) is worth retrying.
    #[tokio::test]
    async fn database_errors_follow_one_rule_wherever_they_surface() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE stock (available INTEGER NOT NULL CHECK (available >= 0))")
            .execute(&pool)
            .await
            .unwrap();
        let check = sqlx::query("INSERT INTO stock VALUES (-1)")
            .execute(&pool)
            .await
            .expect_err("the CHECK fires");
        assert_eq!(
            (check.code(), check.retryable()),
            (INVARIANT_VIOLATION, false)
        );
        let in_a_provider_store = ProviderError::from(check);
        assert_eq!(
            (in_a_provider_store.code(), in_a_provider_store.retryable()),
            (INVARIANT_VIOLATION, false)
        );

        let busy = ProviderError::from(sqlx::Error::PoolTimedOut);
        assert_eq!((busy.code(), busy.retryable()), (DATABASE, true));
        assert_eq!(sqlx::Error::PoolTimedOut.code(), DATABASE);
    }
}
