//! # orderflow-workflows
//!
//! Deterministic orchestration only: no clock, randomness, environment, I/O or `HashMap`
//! iteration. Every side effect is an activity from `orderflow-activities`.
//!
//! * [`order`]: `OrderWorkflow`, one per order (`order-<order_id>`), with its `payment` signal,
//!   `cancel` and `resolve` updates and `status` query.
//! * [`late_payment`]: `LatePaymentWorkflow`, one per payment number, refunds money that arrived
//!   after its order was closed.
//! * [`after_sale_refund`]: `AfterSaleRefundWorkflow`, one per after-sale refund
//!   (`refund-<refund_no>`), makes an operator's refund of a paid order and follows it to the end.
//! * [`search_attributes`]: the attributes the workflow keeps current, listed once.
//! * [`bench`]: `BenchNoopWorkflow`, a workflow that does nothing, for the server-ceiling benchmark.
//!
//! `orderflow_worker::worker_options` and `orderflow_worker::replayer` register both; the tests
//! use the same functions, so they never disagree about which workflows exist.

pub mod after_sale_refund;
pub mod bench;
pub mod late_payment;
pub mod order;
pub mod search_attributes;

pub use after_sale_refund::{AfterSaleRefundWorkflow, refund_workflow_id};
pub use bench::NoopWorkflow;
pub use late_payment::{LatePaymentWorkflow, late_payment_workflow_id};
pub use order::{OrderWorkflow, OrderWorkflowConfig};

/// The Temporal workflow type name of [`OrderWorkflow`], for clients of other SDKs.
pub const ORDER_WORKFLOW_TYPE: &str = "OrderWorkflow";

/// The default task queue.
pub const DEFAULT_TASK_QUEUE: &str = "orderflow";
