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
pub const PAYMENT_REJECTED: &str = "PAYMENT_REJECTED";
pub const PAYMENT_NOT_FOUND: &str = "PAYMENT_NOT_FOUND";
pub const PROVIDER_UNAVAILABLE: &str = "PROVIDER_UNAVAILABLE";
pub const DATABASE: &str = "DATABASE";
pub const INVARIANT_VIOLATION: &str = "INVARIANT_VIOLATION";

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

/// Database errors are retryable (connection loss, `SQLITE_BUSY`, serialization failures) unless
/// a CHECK constraint fired: that means our own code tried to break a stock or money invariant,
/// and retrying the same statement cannot fix it.
pub fn db_is_retryable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => !matches!(db.kind(), sqlx::error::ErrorKind::CheckViolation),
        _ => true,
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
