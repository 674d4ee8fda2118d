//! `LatePaymentWorkflow`: gives back money that arrived after its order was over.
//!
//! A provider callback can arrive after the order's workflow has closed the order (the customer
//! paid in the instant before the close reached the gateway, and the callback came late). The
//! webhook handler starts this workflow with id `late-payment-<payment_no>`, with
//! `UseExisting` + `RejectDuplicate`, so however many times the callback is delivered — in
//! sequence or in parallel — there is one workflow and therefore one refund. The refund is an
//! activity with retries, so it survives crashes and outages and is visible in history.

use orderflow_activities::PaymentActivities;
use orderflow_activities::payments::{PaymentRef, RefundPayment};
use orderflow_activities::providers::ChargeState;
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
    /// `REFUNDED`, or `NOTHING_TO_REFUND` when the provider holds no money for it.
    pub result: String,
    pub refund_id: Option<String>,
}

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
        // Ask the provider what it really holds; the callback only started the inquiry.
        let state: ChargeState = ctx
            .execute_activity(
                PaymentActivities::query_payment,
                payment.clone(),
                crate::order::activity_options(),
            )
            .await
            .map_err(crate::order::fail)?;
        let paid = state
            .paid_amount_minor
            .filter(|_| state.status == PaymentStatus::Paid);
        let Some(paid_minor) = paid else {
            return Ok(LatePaymentOutcome {
                payment_no: input.payment_no,
                result: "NOTHING_TO_REFUND".to_owned(),
                refund_id: None,
            });
        };
        let amount = Currency::parse(&state.currency)
            .and_then(|c| Money::new(paid_minor, c))
            .map_err(|e| ApplicationFailure::non_retryable(format!("provider amount: {e}")))?;
        let refund = ctx
            .execute_activity(
                PaymentActivities::refund_payment,
                RefundPayment {
                    payment_no: payment.payment_no.clone(),
                    provider: payment.provider.clone(),
                    amount,
                    reason: format!(
                        "late payment for order {} (event {}) after the order was closed",
                        input.order_id, input.event_id
                    ),
                },
                crate::order::activity_options(),
            )
            .await
            .map_err(crate::order::fail)?;
        Ok(LatePaymentOutcome {
            payment_no: input.payment_no,
            result: "REFUNDED".to_owned(),
            refund_id: Some(refund.refund_id),
        })
    }
}
