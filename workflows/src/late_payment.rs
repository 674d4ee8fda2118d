//! `LatePaymentWorkflow`: gives back money that arrived after its order was over.
//!
//! A provider callback can arrive after the order's workflow has closed the order (the customer
//! paid in the instant before the close reached the gateway, and the callback came late). The
//! webhook handler starts this workflow with id `late-payment-<payment_no>`, with
//! `UseExisting` + `RejectDuplicate`, so however many times the callback is delivered — in
//! sequence or in parallel — there is one workflow and therefore one refund. The refund is an
//! activity with retries, so it survives crashes and outages and is visible in history.
//!
//! It refunds only money no order kept: `query_payment` reports what the provider holds and what
//! our order kept of it (our `payments` / `orders` rows), and only the difference goes back. A
//! `PAID` order's payment is never refunded here, however its callbacks arrive (a second validly
//! signed event with another transaction id included). While the order is still open the inquiry
//! waits (a retried activity): the order's own workflow decides first.

use orderflow_activities::PaymentActivities;
use orderflow_activities::payments::{PaymentInquiry, PaymentRef, RefundPayment};
use orderflow_domain::{Currency, Money, PaymentNo, PaymentStatus, ProviderName};
use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ApplicationFailure, WorkflowContext, WorkflowResult};

/// Workflow input, plain JSON like every Orderflow contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatePayment {
    pub order_id: String,
    pub payment_no: String,
    pub provider: String,
    /// The callback that revealed it (for the record).
    pub event_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatePaymentOutcome {
    pub payment_no: String,
    /// [`REFUNDED`], [`NOTHING_TO_REFUND`] or [`KEPT_BY_ORDER`].
    pub result: String,
    pub refund_id: Option<String>,
}

/// The money no order kept was refunded (all the provider held, or the excess over what the order
/// kept).
pub const REFUNDED: &str = "REFUNDED";
/// The provider holds no paid money for the payment number.
pub const NOTHING_TO_REFUND: &str = "NOTHING_TO_REFUND";
/// The provider holds money, and our order kept all of it (it is `PAID`): nothing is refunded.
pub const KEPT_BY_ORDER: &str = "KEPT_BY_ORDER";

/// The workflow id for a payment's late-payment refund: one per payment number.
pub fn late_payment_workflow_id(payment_no: &str) -> String {
    format!("late-payment-{payment_no}")
}

#[workflow]
#[derive(Default)]
pub struct LatePaymentWorkflow;

#[workflow_methods]
impl LatePaymentWorkflow {
    #[run(name = "LatePaymentWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: LatePayment,
    ) -> WorkflowResult<LatePaymentOutcome> {
        let invalid = |what: &str| ApplicationFailure::non_retryable(format!("invalid {what}"));
        let payment = PaymentRef {
            payment_no: PaymentNo::parse(input.payment_no.as_str())
                .map_err(|_| invalid("payment number"))?,
            provider: ProviderName::parse(input.provider.as_str())
                .map_err(|_| invalid("provider"))?,
        };
        // Ask the provider what it really holds, and our books what the order kept of it; the
        // callback only started the inquiry. The activity waits while the order is still open.
        let inquiry: PaymentInquiry = ctx
            .execute_activity(
                PaymentActivities::query_payment,
                payment.clone(),
                crate::order::activity_options(),
            )
            .await
            .map_err(crate::order::fail)?;
        let state = &inquiry.charge;
        let paid = state
            .paid_amount_minor
            .filter(|_| state.status == PaymentStatus::Paid);
        let Some(paid_minor) = paid else {
            return Ok(outcome(input.payment_no, NOTHING_TO_REFUND, None));
        };
        // Only money no order kept goes back. Histories recorded before `kept_by_order_minor`
        // existed read it as 0 and replay their full refund unchanged (see `PaymentInquiry`).
        let kept = inquiry.kept_by_order_minor.max(0);
        let refundable = paid_minor.saturating_sub(kept);
        if kept > 0 && refundable <= 0 {
            return Ok(outcome(input.payment_no, KEPT_BY_ORDER, None));
        }
        let amount = Currency::parse(&state.currency)
            .and_then(|c| Money::new(refundable, c))
            .map_err(|e| ApplicationFailure::non_retryable(format!("provider amount: {e}")))?;
        let refund = ctx
            .execute_activity(
                PaymentActivities::refund_payment,
                RefundPayment {
                    payment_no: payment.payment_no.clone(),
                    provider: payment.provider.clone(),
                    amount,
                    reason: if kept == 0 {
                        format!(
                            "late payment for order {} (event {}) after the order was closed",
                            input.order_id, input.event_id
                        )
                    } else {
                        format!(
                            "late payment for order {} (event {}): the excess over the {kept} \
                             the order kept",
                            input.order_id, input.event_id
                        )
                    },
                },
                crate::order::activity_options(),
            )
            .await
            .map_err(crate::order::fail)?;
        Ok(outcome(input.payment_no, REFUNDED, Some(refund.refund_id)))
    }
}

fn outcome(payment_no: String, result: &str, refund_id: Option<String>) -> LatePaymentOutcome {
    LatePaymentOutcome {
        payment_no,
        result: result.to_owned(),
        refund_id,
    }
}
