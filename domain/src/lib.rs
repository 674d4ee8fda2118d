//! # orderflow-domain
//!
//! The vocabulary every other Orderflow crate speaks, with no I/O at all:
//!
//! * [`ids`]: `OrderId`, `CustomerId`, `Sku`, `PaymentNo`, `ProviderName` — newtypes whose only
//!   constructor validates, so a value that exists is a value that is valid ("parse, don't
//!   validate").
//! * [`money`]: `Money` is integer minor units plus an ISO 4217 `Currency`. There is no floating
//!   point anywhere: decimal strings are parsed digit by digit and every sum or product is checked
//!   for overflow.
//! * [`quantity`]: `Quantity`, 1..=[`quantity::MAX_LINE_QUANTITY`].
//! * [`status`]: `OrderStatus` and `PaymentStatus`, with their wire names.
//! * [`messages`]: the JSON contract of `OrderWorkflow` — its input, the `payment` signal, the
//!   `cancel` and `resolve` updates, the `status` query and the result. These carry plain strings
//!   and integers so that a malformed request reaches the workflow and is *rejected* there
//!   (ending `REJECTED`) instead of failing to decode; [`messages::OrderInput::validate`] turns
//!   them into the typed values above.
//!
//! The workflow crate calls into this crate from deterministic code, so nothing here may read the
//! clock, the environment, randomness or do I/O.

pub mod events;
pub mod ids;
pub mod messages;
pub mod money;
pub mod quantity;
pub mod status;

pub use ids::{
    ClientId, CustomerId, IdError, OrderId, PaymentNo, ProviderName, Sku, after_sale_refund_no,
    second_payment_refund_no, workflow_id_for,
};
pub use messages::{
    CancelRequest, InputError, OrderInput, OrderLineInput, OrderOutcome, OrderView, PaymentOutcome,
    PaymentSignal, ResolveAction, ResolveRequest, ValidOrder, ValidOrderLine, is_coupon_code,
};
pub use money::{Currency, Money, MoneyError};
pub use quantity::{MAX_LINE_QUANTITY, Quantity, QuantityError};
pub use status::{OrderStatus, PaymentStatus, StatusParseError};
