//! `alipay`: the Alipay open platform gateway (`alipay.trade.*`), QR codes or the desktop cashier.
//!
//! Every call is a signed form POST to one gateway URL ([`orderflow_protocols::alipay`] holds the
//! message formats). Every answer's `sign` is verified over the raw `…_response` value before it is
//! believed: a success that does not verify is `Unavailable` (logged, never acted on); only errors
//! may come unsigned, and those are believed only as far as "it failed".
//!
//! * **create**, channel `Qr`: `alipay.trade.precreate` → `qr_code`. The expiry is `time_expire`
//!   (absolute, Beijing time), not `timeout_express`: it is derived from the order's deadline, so
//!   a retried create sends the very same business content (Alipay answers a repeat with the same
//!   `out_trade_no` and content with the same QR code), and the QR stops being payable when the
//!   workflow stops waiting instead of some minutes after whichever attempt got through.
//!   Channel `Page`: `alipay.trade.page.pay` makes no call; the signed gateway URL is the redirect.
//!   A repeat builds an equivalent URL (same business content; only `timestamp` and `sign` differ).
//! * **query**: `alipay.trade.query`. A precreated QR nobody has scanned is no trade yet, so Alipay
//!   answers `ACQ.TRADE_NOT_EXIST`: that is PENDING (it can still be paid until `time_expire`).
//! * **close**: `alipay.trade.close`. `ACQ.TRADE_STATUS_ERROR` means the trade is not waiting for
//!   payment (paid): we query and return `AlreadyPaid`. `ACQ.TRADE_NOT_EXIST` (never scanned) is
//!   `Closed`, but the QR can still be paid until it expires; such a payment arrives by notify for
//!   a closed order and the webhook pipeline refunds it once (`LatePaymentWorkflow`).
//! * **refund**: `alipay.trade.refund` with `out_request_no` = our refund number (the idempotency
//!   key). `code=10000` only means accepted; money moved only with `fund_change=Y`. On `N` (which
//!   is also what a repeat of a refund already made answers) we ask
//!   `alipay.trade.fastpay.refund.query`: `REFUND_SUCCESS` is done, anything else is Processing and
//!   the activity asks again later with the same number, never a second refund.
//!
//! Errors: transport, HTTP 5xx/408/429, `code=20000`, `…SYSTEM_ERROR` and `isp.*` sub-codes are
//! `Unavailable`; other business failures (`40002` invalid parameters or signature, `40004` with an
//! `ACQ.*` sub-code, `40006` no permission) are `Rejected`.

use super::{
    ChargeRequest, ChargeState, CloseResult, PayParams, PaymentProvider, ProviderError,
    ProviderRefund, RefundRequest, RefundState,
};
use async_trait::async_trait;
use orderflow_domain::{PaymentNo, PaymentStatus};
use orderflow_protocols::alipay::{
    self as proto, Answer, Channel, FORM_CONTENT_TYPE, MerchantConfig, PROVIDER,
};
use serde_json::json;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The gateway answers in well under a second; past this the activity is better off retrying.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CNY: &str = "CNY";

/// The unix time in seconds; replaceable so tests can pin the `timestamp` parameter.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct AlipayProvider {
    config: Arc<MerchantConfig>,
    http: reqwest::Client,
    gateway: String,
    notify_url: String,
    channel: Channel,
    return_url: Option<String>,
    clock: Clock,
}

impl fmt::Debug for AlipayProvider {
    // The keys stay out of logs (MerchantConfig's Debug redacts them too).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayProvider")
            .field("app_id", &self.config.app_id)
            .field("gateway", &self.gateway)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl AlipayProvider {
    pub fn new(
        config: Arc<MerchantConfig>,
        gateway: impl Into<String>,
        notify_url: impl Into<String>,
        channel: Channel,
        return_url: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("orderflow/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(AlipayProvider {
            config,
            http,
            gateway: gateway.into(),
            notify_url: notify_url.into(),
            channel,
            return_url: return_url.filter(|u| !u.is_empty()),
            clock: Arc::new(system_clock),
        })
    }

    /// Replaces the clock that stamps requests (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn sign(
        &self,
        method: &str,
        biz: &serde_json::Value,
        extra: &[(&str, &str)],
    ) -> proto::SignedRequest {
        proto::sign_request(
            &self.config,
            method,
            &biz.to_string(),
            &self.notify_url,
            extra,
            (self.clock)(),
        )
    }

    /// One signed call, its answer verified. `Ok` carries successes and business errors alike.
    async fn call(&self, method: &str, biz: serde_json::Value) -> Result<Answer, ProviderError> {
        let request = self.sign(method, &biz, &[]);
        let response = self
            .http
            .post(&self.gateway)
            .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(request.form_body())
            .send()
            .await
            .map_err(|e| unavailable(method, format!("transport: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(method, format!("reading the answer: {e}")))?;
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            return Err(unavailable(method, format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(ProviderError::Rejected(format!("{method}: HTTP {status}")));
        }
        proto::verify_response(&body, method, &self.config.alipay_public_key).map_err(|e| {
            tracing::warn!(method, error = %e, "an Alipay answer was not believed");
            unavailable(method, e.to_string())
        })
    }

    /// The trade's state, from a verified `alipay.trade.query` answer.
    async fn query_state(&self, payment_no: &PaymentNo) -> Result<ChargeState, ProviderError> {
        let answer = self
            .call(
                proto::METHOD_QUERY,
                json!({"out_trade_no": payment_no.as_str()}),
            )
            .await?;
        let pending = ChargeState {
            status: PaymentStatus::Pending,
            paid_amount_minor: None,
            currency: CNY.to_owned(),
            provider_txn_id: None,
        };
        if !answer.status.is_success() {
            if answer.status.sub_code == "ACQ.TRADE_NOT_EXIST" {
                // A precreated QR nobody has scanned: payable until it expires. Believed only
                // signed: "no trade" decides that nothing is refunded after a late payment.
                if !answer.signed {
                    return Err(unavailable(
                        proto::METHOD_QUERY,
                        "unsigned ACQ.TRADE_NOT_EXIST is not acted on".into(),
                    ));
                }
                return Ok(pending);
            }
            return Err(business_error(proto::METHOD_QUERY, &answer));
        }
        let q: proto::QueryResponse = answer
            .parse()
            .map_err(|e| unavailable(proto::METHOD_QUERY, e.to_string()))?;
        if q.out_trade_no != payment_no.as_str() {
            return Err(unavailable(
                proto::METHOD_QUERY,
                format!("the answer is for trade {:?}", q.out_trade_no),
            ));
        }
        let txn = Some(q.trade_no.clone()).filter(|t| !t.is_empty());
        let state = match q.trade_status.as_str() {
            "WAIT_BUYER_PAY" => pending,
            "TRADE_SUCCESS" | "TRADE_FINISHED" => {
                let paid = proto::parse_yuan(&q.total_amount)
                    .map_err(|e| unavailable(proto::METHOD_QUERY, e.to_string()))?;
                ChargeState {
                    status: PaymentStatus::Paid,
                    paid_amount_minor: Some(paid.minor()),
                    currency: CNY.to_owned(),
                    provider_txn_id: txn,
                }
            }
            // Unpaid and expired or closed, or paid and then refunded in full: Alipay's query
            // does not tell them apart by status; a closed trade that was paid has a send_pay_date.
            "TRADE_CLOSED" => ChargeState {
                status: if q.send_pay_date.is_empty() {
                    PaymentStatus::Closed
                } else {
                    PaymentStatus::Refunded
                },
                paid_amount_minor: None,
                currency: CNY.to_owned(),
                provider_txn_id: txn,
            },
            other => {
                return Err(unavailable(
                    proto::METHOD_QUERY,
                    format!("unknown trade_status {other:?}"),
                ));
            }
        };
        Ok(state)
    }

    /// What `alipay.trade.fastpay.refund.query` says about our refund number.
    async fn refund_state(&self, req: &RefundRequest) -> Result<RefundState, ProviderError> {
        let answer = self
            .call(
                proto::METHOD_REFUND_QUERY,
                json!({
                    "out_trade_no": req.payment_no.as_str(),
                    "out_request_no": req.refund_no,
                }),
            )
            .await?;
        if !answer.status.is_success() {
            return Err(business_error(proto::METHOD_REFUND_QUERY, &answer));
        }
        let r: proto::RefundQueryResponse = answer
            .parse()
            .map_err(|e| unavailable(proto::METHOD_REFUND_QUERY, e.to_string()))?;
        Ok(if r.refund_status == "REFUND_SUCCESS" {
            RefundState::Succeeded
        } else {
            // Not received, or not finished: the activity asks again with the same number.
            RefundState::Processing
        })
    }
}

fn unavailable(method: &str, why: String) -> ProviderError {
    ProviderError::Unavailable(format!("alipay {method}: {why}"))
}

/// Whether a failed call may succeed when sent again.
fn retryable(status: &proto::Status) -> bool {
    status.code == "20000"
        || status.sub_code.ends_with("SYSTEM_ERROR")
        || status.sub_code.starts_with("isp.")
}

fn business_error(method: &str, answer: &Answer) -> ProviderError {
    let s = &answer.status;
    let why = format!("{} {} ({}: {})", s.code, s.msg, s.sub_code, s.sub_msg);
    if retryable(s) {
        unavailable(method, why)
    } else {
        ProviderError::Rejected(format!("alipay {method}: {why}"))
    }
}

#[async_trait]
impl PaymentProvider for AlipayProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn create(&self, req: &ChargeRequest) -> Result<PayParams, ProviderError> {
        if req.amount.currency().code() != CNY {
            return Err(ProviderError::Rejected(format!(
                "alipay takes CNY only, not {}",
                req.amount.currency()
            )));
        }
        let fen = req.amount.minor();
        if !(proto::MIN_AMOUNT_FEN..=proto::MAX_AMOUNT_FEN).contains(&fen) {
            return Err(ProviderError::Rejected(format!(
                "alipay takes 0.01 to 100000000.00 CNY, not {}",
                req.amount
            )));
        }
        let subject: String = if req.description.trim().is_empty() {
            format!("Order {}", req.order_id)
        } else {
            req.description.clone()
        }
        .chars()
        .take(proto::SUBJECT_MAX_CHARS)
        .collect();
        // Rounded down to the second, so the QR never outlives the order's deadline.
        let time_expire = proto::beijing_time(req.deadline_ms.div_euclid(1000));
        let mut biz = json!({
            "out_trade_no": req.payment_no.as_str(),
            "total_amount": proto::format_yuan(fen),
            "subject": subject,
            "time_expire": time_expire,
        });
        match self.channel {
            Channel::Page => {
                biz["product_code"] = json!("FAST_INSTANT_TRADE_PAY");
                let return_url = self.return_url.as_deref().unwrap_or("");
                let request =
                    self.sign(proto::METHOD_PAGE_PAY, &biz, &[("return_url", return_url)]);
                Ok(PayParams {
                    checkout_url: request.gateway_url(&self.gateway),
                    qr_payload: String::new(),
                    client_secret: None,
                })
            }
            Channel::Qr => {
                let answer = self.call(proto::METHOD_PRECREATE, biz).await?;
                if !answer.status.is_success() {
                    return Err(business_error(proto::METHOD_PRECREATE, &answer));
                }
                let p: proto::PrecreateResponse = answer
                    .parse()
                    .map_err(|e| unavailable(proto::METHOD_PRECREATE, e.to_string()))?;
                if p.qr_code.is_empty() || p.out_trade_no != req.payment_no.as_str() {
                    return Err(unavailable(
                        proto::METHOD_PRECREATE,
                        format!("no qr_code for {:?}", req.payment_no.as_str()),
                    ));
                }
                Ok(PayParams {
                    checkout_url: String::new(),
                    qr_payload: p.qr_code,
                    client_secret: None,
                })
            }
        }
    }

    async fn query(&self, payment_no: &PaymentNo) -> Result<ChargeState, ProviderError> {
        self.query_state(payment_no).await
    }

    async fn close(&self, payment_no: &PaymentNo) -> Result<CloseResult, ProviderError> {
        let answer = self
            .call(
                proto::METHOD_CLOSE,
                json!({"out_trade_no": payment_no.as_str()}),
            )
            .await?;
        if answer.status.is_success() {
            return Ok(CloseResult::Closed);
        }
        // Acting on these needs a signed answer: an unsigned one is only believed as a failure,
        // and retried.
        const ACTED_ON: [&str; 4] = [
            "ACQ.TRADE_STATUS_ERROR",
            "ACQ.REASON_ILLEGAL_STATUS",
            "ACQ.REASON_TRADE_STATUS_INVALID",
            "ACQ.TRADE_NOT_EXIST",
        ];
        let sub_code = answer.status.sub_code.as_str();
        if !ACTED_ON.contains(&sub_code) {
            return Err(business_error(proto::METHOD_CLOSE, &answer));
        }
        if !answer.signed {
            return Err(unavailable(
                proto::METHOD_CLOSE,
                format!("unsigned {sub_code} is not acted on"),
            ));
        }
        if sub_code == "ACQ.TRADE_NOT_EXIST" {
            // Never scanned. The QR stays payable until time_expire; a payment after this
            // arrives by notify for a closed order and is refunded by LatePaymentWorkflow.
            return Ok(CloseResult::Closed);
        }
        // Not waiting for payment: paid (or already closed). The query says which.
        let state = self.query_state(payment_no).await?;
        match state.status {
            PaymentStatus::Paid => Ok(CloseResult::AlreadyPaid(state)),
            PaymentStatus::Closed => Ok(CloseResult::Closed),
            other => Err(unavailable(
                proto::METHOD_CLOSE,
                format!("close refused while the trade is {other}"),
            )),
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        if req.amount.currency().code() != CNY {
            return Err(ProviderError::Rejected(format!(
                "alipay refunds CNY only, not {}",
                req.amount.currency()
            )));
        }
        let reason: String = req.reason.chars().take(256).collect();
        let answer = self
            .call(
                proto::METHOD_REFUND,
                json!({
                    "out_trade_no": req.payment_no.as_str(),
                    "refund_amount": proto::format_yuan(req.amount.minor()),
                    "out_request_no": req.refund_no,
                    "refund_reason": reason,
                }),
            )
            .await?;
        let refund_id = req.refund_no.clone();
        if !answer.status.is_success() {
            if answer.status.sub_code == "ACQ.SELLER_BALANCE_NOT_ENOUGH" {
                // Nothing moved; it will once the merchant tops the account up. Asked again later.
                return Ok(ProviderRefund {
                    refund_id,
                    state: RefundState::Stuck(format!(
                        "alipay: the merchant's balance is too low ({})",
                        answer.status.sub_msg
                    )),
                });
            }
            return Err(business_error(proto::METHOD_REFUND, &answer));
        }
        let r: proto::RefundResponse = answer
            .parse()
            .map_err(|e| unavailable(proto::METHOD_REFUND, e.to_string()))?;
        let state = if r.fund_change == "Y" {
            RefundState::Succeeded
        } else {
            // Accepted without moving money now: a repeat of a refund already made, or one still
            // under way. The refund query tells which.
            self.refund_state(req).await?
        };
        Ok(ProviderRefund { refund_id, state })
    }
}
