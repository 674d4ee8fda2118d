//! `sandbox`: a simulated payment gateway that ships with Orderflow.
//!
//! It keeps its own books in the `sandbox_charges` table and behaves like a real gateway: a charge
//! is opened once per payment number, a customer can pay it once (a second "pay" is the same
//! charge, never a second one), closing a paid charge answers "already paid", and a refund is
//! issued once. The demo, the load generator and local development pay through it; the HTTP shim
//! adds its hosted checkout page and signed webhooks.

use super::{
    ChargeRequest, ChargeState, CloseResult, PayParams, PaymentProvider, ProviderError,
    ProviderRefund, RefundRequest, RefundState,
};
use crate::db::{Db, now_ms};
use crate::sql;
use async_trait::async_trait;
use orderflow_domain::{PaymentNo, PaymentStatus};
use sqlx::Row;

pub const NAME: &str = "sandbox";

#[derive(Clone, Debug)]
pub struct SandboxProvider {
    db: Db,
    /// Base URL of the shim serving `/sandbox/checkout/{payment_no}`.
    checkout_base_url: String,
}

/// What the sandbox reports after a customer paid: the fields of the callback it would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPayment {
    pub payment_no: PaymentNo,
    pub paid_amount_minor: i64,
    pub currency: String,
    pub txn_id: String,
    /// The provider's event id for this payment: the same on every delivery of its callback.
    pub event_id: String,
    /// False when the charge had already been paid: nothing new was charged.
    pub newly_paid: bool,
}

impl SandboxProvider {
    pub fn new(db: Db, checkout_base_url: impl Into<String>) -> Self {
        SandboxProvider {
            db,
            checkout_base_url: checkout_base_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// The customer pays `amount_minor` (the charge's own amount when `None`; a different amount
    /// simulates a gateway reporting a wrong sum). Paying a paid charge returns the original
    /// payment and charges nothing; paying a closed charge is refused.
    pub async fn pay(
        &self,
        payment_no: &PaymentNo,
        amount_minor: Option<i64>,
    ) -> Result<SandboxPayment, ProviderError> {
        self.take_payment(payment_no, amount_minor, ["PENDING", "PENDING"])
            .await
    }

    /// Simulates the race every real gateway has a window for: the customer's payment went
    /// through although our close for the charge had already been processed, and its callback
    /// arrives after the order is over. Orderflow must refund such a payment exactly once.
    pub async fn pay_after_close(
        &self,
        payment_no: &PaymentNo,
    ) -> Result<SandboxPayment, ProviderError> {
        self.take_payment(payment_no, None, ["PENDING", "CLOSED"])
            .await
    }

    /// Simulates a customer paying a second time for a charge already paid (wallets on two
    /// devices): the gateway holds both payments, and the second has its own transaction id and
    /// callback. Orderflow must give the second back once.
    pub async fn pay_again(
        &self,
        payment_no: &PaymentNo,
        amount_minor: i64,
    ) -> Result<SandboxPayment, ProviderError> {
        let updated = sql!(
            "UPDATE sandbox_charges SET paid_amount_minor = paid_amount_minor + $2, updated_at_ms = $3
              WHERE payment_no = $1 AND status = 'PAID' AND $2 > 0"
        )
        .on(&self.db)
        .bind(payment_no.as_str())
        .bind(amount_minor)
        .bind(now_ms())
        .execute(self.db.writes())
        .await?
        .rows_affected();
        let state = self.query(payment_no).await?;
        if updated == 0 {
            return Err(ProviderError::Rejected(format!(
                "charge {payment_no} is {}: only a paid charge can be paid again",
                state.status
            )));
        }
        // Numbered by what the gateway holds after it: distinct for every further payment.
        let held = state.paid_amount_minor.unwrap_or_default();
        let digits = payment_no.as_str().trim_start_matches("pay_");
        Ok(SandboxPayment {
            payment_no: payment_no.clone(),
            paid_amount_minor: amount_minor,
            currency: state.currency,
            txn_id: format!("sbx_txn_{digits}_{held}"),
            event_id: format!("sbx_evt_{payment_no}_paid_{held}"),
            newly_paid: true,
        })
    }

    async fn take_payment(
        &self,
        payment_no: &PaymentNo,
        amount_minor: Option<i64>,
        payable_statuses: [&'static str; 2],
    ) -> Result<SandboxPayment, ProviderError> {
        let txn_id = format!("sbx_txn_{}", payment_no.as_str().trim_start_matches("pay_"));
        let now = now_ms();
        let [payable, also_payable] = payable_statuses;
        let updated = sql!(
            "UPDATE sandbox_charges
                SET status = 'PAID', paid_amount_minor = COALESCE($2, amount_minor),
                    txn_id = $3, updated_at_ms = $4
              WHERE payment_no = $1 AND status IN ($5, $6)"
        )
        .on(&self.db)
        .bind(payment_no.as_str())
        .bind(amount_minor)
        .bind(&txn_id)
        .bind(now)
        .bind(payable)
        .bind(also_payable)
        .execute(self.db.writes())
        .await?
        .rows_affected();
        let state = self.query(payment_no).await?;
        match state.status {
            PaymentStatus::Paid | PaymentStatus::Refunded => Ok(SandboxPayment {
                payment_no: payment_no.clone(),
                paid_amount_minor: state.paid_amount_minor.unwrap_or_default(),
                currency: state.currency,
                txn_id: state.provider_txn_id.unwrap_or(txn_id),
                event_id: format!("sbx_evt_{}_paid", payment_no.as_str()),
                newly_paid: updated == 1,
            }),
            other => Err(ProviderError::Rejected(format!(
                "charge {payment_no} is {other} and can no longer be paid"
            ))),
        }
    }
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn create(&self, req: &ChargeRequest) -> Result<PayParams, ProviderError> {
        let now = now_ms();
        let inserted = sql!(
            "INSERT INTO sandbox_charges
                (payment_no, amount_minor, currency, status, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, 'PENDING', $4, $4)
             ON CONFLICT (payment_no) DO NOTHING",
        )
        .on(self.db.writes())
        .bind(req.payment_no.as_str())
        .bind(req.amount.minor())
        .bind(req.amount.currency().code())
        .bind(now)
        .execute(self.db.writes())
        .await?
        .rows_affected();
        if inserted == 0 {
            // A repeat. Same idempotency key, different request: a real gateway refuses, and so
            // do we.
            let row =
                sql!("SELECT amount_minor, currency FROM sandbox_charges WHERE payment_no = $1",)
                    .on(&self.db)
                    .bind(req.payment_no.as_str())
                    .fetch_one(self.db.pool())
                    .await?;
            let (amount, currency): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            if amount != req.amount.minor() || currency != req.amount.currency().code() {
                return Err(ProviderError::Rejected(format!(
                    "payment number {} was already used for {amount} {currency}",
                    req.payment_no
                )));
            }
        }
        Ok(PayParams {
            checkout_url: format!(
                "{}/sandbox/checkout/{}",
                self.checkout_base_url, req.payment_no
            ),
            qr_payload: format!("orderflow-sandbox://pay/{}", req.payment_no),
            client_secret: None,
        })
    }

    async fn query(&self, payment_no: &PaymentNo) -> Result<ChargeState, ProviderError> {
        let row = sql!(
            "SELECT status, paid_amount_minor, currency, txn_id
               FROM sandbox_charges WHERE payment_no = $1",
        )
        .on(&self.db)
        .bind(payment_no.as_str())
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| ProviderError::NotFound(payment_no.to_string()))?;
        let status: String = row.try_get(0)?;
        Ok(ChargeState {
            status: status
                .parse()
                .map_err(|e| ProviderError::Unavailable(format!("sandbox store: {e}")))?,
            paid_amount_minor: row.try_get(1)?,
            currency: row.try_get(2)?,
            provider_txn_id: row.try_get(3)?,
        })
    }

    async fn close(&self, payment_no: &PaymentNo) -> Result<CloseResult, ProviderError> {
        sql!(
            "UPDATE sandbox_charges SET status = 'CLOSED', updated_at_ms = $2
              WHERE payment_no = $1 AND status = 'PENDING'",
        )
        .on(self.db.writes())
        .bind(payment_no.as_str())
        .bind(now_ms())
        .execute(self.db.writes())
        .await?;
        // Whatever the update did, the stored state is the answer: closed (now or before), or
        // paid before we got there.
        let state = self.query(payment_no).await?;
        match state.status {
            PaymentStatus::Closed => Ok(CloseResult::Closed),
            PaymentStatus::Paid | PaymentStatus::Refunded => Ok(CloseResult::AlreadyPaid(state)),
            other => Err(ProviderError::Unavailable(format!(
                "charge {payment_no} is unexpectedly {other} after close"
            ))),
        }
    }

    /// One refund per refund number, partial or whole, never more in total than was paid (a
    /// guarded update of the charge's `refunded_minor`); asking again with a refund number returns
    /// the refund made for it. The charge reads `REFUNDED` once all of it went back.
    async fn refund(&self, req: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        let refund_id = format!("sbx_{}", req.refund_no);
        let mut tx = self.db.begin_write().await?;
        let made: Option<(String,)> =
            sql!("SELECT refund_id FROM sandbox_refunds WHERE refund_no = $1")
                .on(&*tx)
                .bind(req.refund_no.as_str())
                .fetch_optional_as(&mut *tx)
                .await?;
        if let Some((refund_id,)) = made {
            return Ok(ProviderRefund {
                refund_id,
                state: RefundState::Succeeded,
            });
        }
        let now = now_ms();
        // status first: MySQL assigns left to right and would see the new refunded_minor.
        let counted = sql!(
            "UPDATE sandbox_charges
                SET status = CASE WHEN refunded_minor + $2 >= paid_amount_minor THEN 'REFUNDED' ELSE status END,
                    refunded_minor = refunded_minor + $2, refund_id = $3, updated_at_ms = $4
              WHERE payment_no = $1 AND status = 'PAID' AND currency = $5
                AND paid_amount_minor IS NOT NULL AND refunded_minor + $2 <= paid_amount_minor",
        )
        .on(&*tx)
        .bind(req.payment_no.as_str())
        .bind(req.amount.minor())
        .bind(&refund_id)
        .bind(now)
        .bind(req.amount.currency().code())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if counted == 0 {
            drop(tx);
            let state = self.query(&req.payment_no).await?;
            return Err(ProviderError::Rejected(format!(
                "charge {} is {} ({} {} paid): a refund of {} cannot be made",
                req.payment_no,
                state.status,
                state.paid_amount_minor.unwrap_or(0),
                state.currency,
                req.amount
            )));
        }
        sql!(
            "INSERT INTO sandbox_refunds (refund_no, payment_no, amount_minor, refund_id, created_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .on(&*tx)
        .bind(req.refund_no.as_str())
        .bind(req.payment_no.as_str())
        .bind(req.amount.minor())
        .bind(&refund_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ProviderRefund {
            refund_id,
            state: RefundState::Succeeded,
        })
    }
}
