//! `wechatpay`: WeChat Pay API v3, Native payments (a `code_url` shown as a QR code).
//!
//! Every request is signed with the merchant API key (`orderflow_protocols::wechatpay`), and every
//! answer — 200, 204 and error bodies alike — is verified against the configured platform
//! certificates / WeChat Pay public key before it is believed: an answer that does not verify is
//! `Unavailable` (logged) and never acted on, so a man in the middle cannot close or "pay" an order.
//!
//! Idempotency: `out_trade_no` is our payment number and `out_refund_no` the given refund number.
//! Creating again with the same number returns the same `code_url`; a refund is looked up by its
//! number before one is requested, so a retry never makes a second.
//!
//! Traps: close answers 204 with an empty body whatever happened (even for a number WeChat Pay
//! does not know), so close is always followed by a query and only `trade_state` is trusted. A
//! refund that is accepted is not done (`PROCESSING`): the refund activity calls again, and this
//! answers the refund's current state.

use super::{
    ChargeRequest, ChargeState, CloseResult, PayParams, PaymentProvider, ProviderError,
    ProviderRefund, RefundRequest, RefundState,
};
use async_trait::async_trait;
use orderflow_domain::{PaymentNo, PaymentStatus};
use orderflow_protocols::wechatpay::{
    self as protocol, CURRENCY, CloseOrder, ErrorBody, HEADER_NONCE, HEADER_REQUEST_ID,
    HEADER_SERIAL, HEADER_SIGNATURE, HEADER_TIMESTAMP, MerchantConfig, NativeOrder,
    NativeOrderCreated, PROVIDER, Refund, RefundAmount, RefundOrder, SignedHeaders, Transaction,
};
use reqwest::{Method, StatusCode};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// WeChat Pay answers within a second or two; past this the activity is better off retrying.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Error codes that say "try again later" (the v3 error code list: system busy, rate limited,
/// the merchant's balance too low for a refund for now, the bank failing).
const RETRYABLE_CODES: &[&str] = &[
    "SYSTEM_ERROR",
    "FREQUENCY_LIMITED",
    "NOTENOUGH",
    "BANKERROR",
];

/// Unix seconds; a field so the tests can move the clock the answers are checked against.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct WechatPayProvider {
    config: Arc<MerchantConfig>,
    http: reqwest::Client,
    api_base: String,
    notify_url: String,
    clock: Clock,
}

impl fmt::Debug for WechatPayProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatPayProvider")
            .field("mchid", &self.config.mchid)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl WechatPayProvider {
    pub fn new(
        config: Arc<MerchantConfig>,
        api_base: impl Into<String>,
        notify_url: impl Into<String>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("orderflow/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WechatPayProvider {
            config,
            http,
            api_base: api_base.into().trim_end_matches('/').to_owned(),
            notify_url: notify_url.into(),
            clock: Arc::new(unix_now),
        })
    }

    /// Checks answers' timestamps against `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sends a signed request and returns the answer once its signature is verified.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let timestamp = (self.clock)();
        let nonce = nonce();
        let body_text = body.as_deref().unwrap_or("");
        let authorization = protocol::authorization(
            &self.config,
            method.as_str(),
            path_and_query,
            timestamp,
            &nonce,
            body_text,
        );
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.api_base))
            .header("Authorization", authorization)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(format!("{method} {path_and_query}: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("{method} {path_and_query}: reading: {e}")))?
            .to_vec();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let request_id = header(HEADER_REQUEST_ID).unwrap_or("-").to_owned();
        let signed = match (
            header(HEADER_TIMESTAMP),
            header(HEADER_NONCE),
            header(HEADER_SIGNATURE),
            header(HEADER_SERIAL),
        ) {
            (Some(timestamp), Some(nonce), Some(signature), Some(serial)) => SignedHeaders {
                timestamp,
                nonce,
                signature,
                serial,
            },
            _ => {
                tracing::warn!(%status, request_id, path = path_and_query, "WeChat Pay answer without signature headers: ignored");
                return Err(unavailable(format!(
                    "{method} {path_and_query}: {status} answer is not signed (request {request_id})"
                )));
            }
        };
        if let Err(e) = protocol::verify(&self.config.verifier_keys, &signed, &body, (self.clock)())
        {
            tracing::warn!(%status, request_id, path = path_and_query, error = %e, "WeChat Pay answer failed verification: ignored");
            return Err(unavailable(format!(
                "{method} {path_and_query}: {status} answer failed verification: {e} (request {request_id})"
            )));
        }
        if status == StatusCode::ACCEPTED {
            // "Accepted, not yet processed: repeat the request with the same parameters."
            return Err(unavailable(format!(
                "{method} {path_and_query}: 202 Accepted, not processed yet (request {request_id})"
            )));
        }
        Ok((status, body))
    }

    async fn query_transaction(
        &self,
        payment_no: &PaymentNo,
    ) -> Result<Transaction, ProviderError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            path_segment(payment_no.as_str())?,
            path_segment(&self.config.mchid)?
        );
        let (status, body) = self.call(Method::GET, &path, None).await?;
        if !status.is_success() {
            return Err(api_error(status, &body, payment_no.as_str()));
        }
        let transaction: Transaction = parse(&body, "transaction")?;
        if transaction.out_trade_no != payment_no.as_str()
            || transaction
                .mchid
                .as_deref()
                .is_some_and(|m| m != self.config.mchid)
        {
            return Err(unavailable(format!(
                "asked for {payment_no}, WeChat Pay answered with {} of merchant {:?}",
                transaction.out_trade_no, transaction.mchid
            )));
        }
        Ok(transaction)
    }

    async fn find_refund(&self, refund_no: &str) -> Result<Option<Refund>, ProviderError> {
        let path = format!("/v3/refund/domestic/refunds/{}", path_segment(refund_no)?);
        let (status, body) = self.call(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(api_error(status, &body, refund_no));
        }
        checked_refund(&body, refund_no).map(Some)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A request nonce: unique per request (time and a counter), not a secret and not an
/// idempotency key — those are the payment and refund numbers.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016X}{:016X}",
        nanos as u64,
        n ^ u64::from(std::process::id()) << 32
    )
}

fn unavailable(message: String) -> ProviderError {
    ProviderError::Unavailable(format!("wechatpay: {message}"))
}

/// Our numbers are `[0-9A-Za-z_-]`; anything else would change the path that is signed.
fn path_segment(text: &str) -> Result<&str, ProviderError> {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(text)
    } else {
        Err(ProviderError::Rejected(format!(
            "wechatpay: {text:?} is not a valid WeChat Pay number"
        )))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| unavailable(format!("unreadable {what} answer: {e}")))
}

/// Classifies a verified error answer.
fn api_error(status: StatusCode, body: &[u8], number: &str) -> ProviderError {
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let text = format!(
        "wechatpay: {status} {} {} ({number})",
        error.code,
        error.message.chars().take(200).collect::<String>()
    );
    if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || RETRYABLE_CODES.contains(&error.code.as_str())
    {
        ProviderError::Unavailable(text)
    } else if status == StatusCode::NOT_FOUND
        || error.code == "ORDER_NOT_EXIST"
        || error.code == "RESOURCE_NOT_EXISTS"
    {
        ProviderError::NotFound(text)
    } else {
        // SIGN_ERROR, PARAM_ERROR, INVALID_REQUEST, NO_AUTH, …: the same request gets the same
        // answer.
        ProviderError::Rejected(text)
    }
}

fn charge_state(transaction: &Transaction) -> Result<ChargeState, ProviderError> {
    let status = match transaction.trade_state.as_str() {
        "SUCCESS" => PaymentStatus::Paid,
        "REFUND" => PaymentStatus::Refunded,
        "NOTPAY" | "USERPAYING" => PaymentStatus::Pending,
        "CLOSED" | "REVOKED" | "PAYERROR" => PaymentStatus::Closed,
        other => {
            return Err(unavailable(format!(
                "unknown trade_state {:?} for {}",
                other.chars().take(40).collect::<String>(),
                transaction.out_trade_no
            )));
        }
    };
    let amount = transaction.amount.as_ref();
    let paid = status == PaymentStatus::Paid || status == PaymentStatus::Refunded;
    let paid_amount_minor = if paid {
        let total = amount.and_then(|a| a.total).ok_or_else(|| {
            unavailable(format!(
                "{} is {} without amount.total",
                transaction.out_trade_no, transaction.trade_state
            ))
        })?;
        if let Some(a) = amount {
            // What the payer paid after coupons, in their currency: kept in the worker's log.
            tracing::info!(
                out_trade_no = transaction.out_trade_no,
                total,
                payer_total = ?a.payer_total,
                payer_currency = ?a.payer_currency,
                "WeChat Pay transaction paid"
            );
        }
        Some(total)
    } else {
        None
    };
    Ok(ChargeState {
        status,
        paid_amount_minor,
        currency: amount
            .and_then(|a| a.currency.clone())
            .unwrap_or_else(|| CURRENCY.to_owned()),
        provider_txn_id: transaction.transaction_id.clone().filter(|t| !t.is_empty()),
    })
}

fn checked_refund(body: &[u8], refund_no: &str) -> Result<Refund, ProviderError> {
    let refund: Refund = parse(body, "refund")?;
    if refund.out_refund_no != refund_no {
        return Err(unavailable(format!(
            "asked for refund {refund_no}, WeChat Pay answered with {}",
            refund.out_refund_no
        )));
    }
    Ok(refund)
}

fn provider_refund(refund: Refund) -> ProviderRefund {
    let state = match refund.status.as_str() {
        "SUCCESS" => RefundState::Succeeded,
        "PROCESSING" => RefundState::Processing,
        "ABNORMAL" => RefundState::Stuck(
            "WeChat Pay refund ABNORMAL: the payer's account or card cannot take it; \
             finish it on the merchant platform"
                .to_owned(),
        ),
        "CLOSED" => RefundState::Stuck("WeChat Pay closed the refund (CLOSED)".to_owned()),
        other => RefundState::Stuck(format!(
            "WeChat Pay refund status {:?}",
            other.chars().take(40).collect::<String>()
        )),
    };
    ProviderRefund {
        refund_id: refund.refund_id,
        state,
    }
}

#[async_trait]
impl PaymentProvider for WechatPayProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn create(&self, req: &ChargeRequest) -> Result<PayParams, ProviderError> {
        let currency = req.amount.currency().code().to_owned();
        if currency != CURRENCY {
            return Err(ProviderError::Rejected(format!(
                "wechatpay: Native payments are in CNY only; {} is in {currency}",
                req.payment_no
            )));
        }
        let order = NativeOrder {
            appid: &self.config.appid,
            mchid: &self.config.mchid,
            description: protocol::description(&req.description),
            out_trade_no: path_segment(req.payment_no.as_str())?,
            time_expire: protocol::time_expire(req.deadline_ms),
            notify_url: &self.notify_url,
            amount: protocol::Amount {
                total: req.amount.minor(),
                currency: CURRENCY.to_owned(),
            },
        };
        let body = serde_json::to_string(&order)
            .map_err(|e| ProviderError::Rejected(format!("wechatpay: {e}")))?;
        let (status, answer) = self
            .call(Method::POST, "/v3/pay/transactions/native", Some(body))
            .await?;
        if status.is_success() {
            let created: NativeOrderCreated = parse(&answer, "native order")?;
            return Ok(PayParams {
                checkout_url: String::new(),
                qr_payload: created.code_url,
                client_secret: None,
            });
        }
        let error: ErrorBody = serde_json::from_slice(&answer).unwrap_or_default();
        if error.code == "ORDERPAID" {
            // Paid already (a retried create after the customer scanned): nothing to show; the
            // payment arrives by notify or by the deadline's query.
            return Ok(PayParams {
                checkout_url: String::new(),
                qr_payload: String::new(),
                client_secret: None,
            });
        }
        Err(api_error(status, &answer, req.payment_no.as_str()))
    }

    async fn query(&self, payment_no: &PaymentNo) -> Result<ChargeState, ProviderError> {
        charge_state(&self.query_transaction(payment_no).await?)
    }

    async fn close(&self, payment_no: &PaymentNo) -> Result<CloseResult, ProviderError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            path_segment(payment_no.as_str())?
        );
        let body = serde_json::to_string(&CloseOrder {
            mchid: &self.config.mchid,
        })
        .map_err(|e| ProviderError::Rejected(format!("wechatpay: {e}")))?;
        let (status, answer) = self.call(Method::POST, &path, Some(body)).await?;
        if !status.is_success() {
            let error = api_error(status, &answer, payment_no.as_str());
            if matches!(error, ProviderError::Unavailable(_)) {
                return Err(error);
            }
            // ORDERPAID, ORDER_CLOSED, ORDER_NOT_EXIST…: the query below says what is true.
            tracing::info!(%payment_no, error = %error, "WeChat Pay close refused; querying");
        }
        // A 204 says nothing (it is answered even for unknown numbers): only trade_state counts.
        let state = self.query(payment_no).await?;
        match state.status {
            PaymentStatus::Closed => Ok(CloseResult::Closed),
            PaymentStatus::Paid | PaymentStatus::Refunded => Ok(CloseResult::AlreadyPaid(state)),
            _ => Err(unavailable(format!(
                "{payment_no} is still payable after close; asking again"
            ))),
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<ProviderRefund, ProviderError> {
        let currency = req.amount.currency().code().to_owned();
        if currency != CURRENCY {
            return Err(ProviderError::Rejected(format!(
                "wechatpay: refunds are in CNY; {} asks for {currency}",
                req.refund_no
            )));
        }
        if let Some(refund) = self.find_refund(&req.refund_no).await? {
            return Ok(provider_refund(refund));
        }
        let transaction = self.query_transaction(&req.payment_no).await?;
        let total = transaction
            .amount
            .as_ref()
            .and_then(|a| a.total)
            .ok_or_else(|| {
                unavailable(format!(
                    "{} ({}) has no amount.total to refund from",
                    req.payment_no, transaction.trade_state
                ))
            })?;
        let order = RefundOrder {
            out_trade_no: req.payment_no.as_str(),
            out_refund_no: path_segment(&req.refund_no)?,
            reason: protocol::refund_reason(&req.reason),
            notify_url: &self.notify_url,
            amount: RefundAmount {
                refund: req.amount.minor(),
                total,
                currency: CURRENCY.to_owned(),
            },
        };
        let body = serde_json::to_string(&order)
            .map_err(|e| ProviderError::Rejected(format!("wechatpay: {e}")))?;
        let (status, answer) = self
            .call(Method::POST, "/v3/refund/domestic/refunds", Some(body))
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &answer, &req.refund_no));
        }
        checked_refund(&answer, &req.refund_no).map(provider_refund)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, code: &str) -> ProviderError {
        let body = format!(r#"{{"code":"{code}","message":"m"}}"#);
        api_error(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            "pay_1",
        )
    }

    #[test]
    fn errors_are_classified_by_whether_a_retry_can_help() {
        for (status, code) in [
            (429, "RATELIMIT_EXCEEDED"),
            (500, "SYSTEM_ERROR"),
            (503, "SERVICE_UNAVAILABLE"),
            (403, "FREQUENCY_LIMITED"),
            (403, "NOTENOUGH"),
            (502, ""),
        ] {
            assert!(
                matches!(error(status, code), ProviderError::Unavailable(_)),
                "{status} {code}"
            );
        }
        for (status, code) in [
            (401, "SIGN_ERROR"),
            (400, "PARAM_ERROR"),
            (400, "INVALID_REQUEST"),
            (403, "NO_AUTH"),
        ] {
            assert!(
                matches!(error(status, code), ProviderError::Rejected(_)),
                "{status} {code}"
            );
        }
        assert!(matches!(
            error(404, "ORDER_NOT_EXIST"),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            api_error(StatusCode::BAD_GATEWAY, b"<html>", "pay_1"),
            ProviderError::Unavailable(_)
        ));
    }

    fn transaction(json: &str) -> Transaction {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn trade_states_map_to_payment_states() {
        let paid = charge_state(&transaction(
            r#"{"mchid":"m","out_trade_no":"pay_1","transaction_id":"42","trade_state":"SUCCESS","amount":{"total":16800,"payer_total":16000,"currency":"CNY","payer_currency":"CNY"}}"#,
        ))
        .unwrap();
        assert_eq!(paid.status, PaymentStatus::Paid);
        assert_eq!(paid.paid_amount_minor, Some(16800));
        assert_eq!(paid.provider_txn_id.as_deref(), Some("42"));
        for (state, status) in [
            ("REFUND", PaymentStatus::Refunded),
            ("NOTPAY", PaymentStatus::Pending),
            ("USERPAYING", PaymentStatus::Pending),
            ("CLOSED", PaymentStatus::Closed),
            ("REVOKED", PaymentStatus::Closed),
            ("PAYERROR", PaymentStatus::Closed),
        ] {
            let t = transaction(&format!(
                r#"{{"out_trade_no":"pay_1","transaction_id":"42","trade_state":"{state}","amount":{{"total":1,"currency":"CNY"}}}}"#
            ));
            assert_eq!(charge_state(&t).unwrap().status, status, "{state}");
        }
        // Paid without an amount, or a state nobody documented: not believed.
        assert!(
            charge_state(&transaction(
                r#"{"out_trade_no":"p","trade_state":"SUCCESS"}"#
            ))
            .is_err()
        );
        assert!(
            charge_state(&transaction(
                r#"{"out_trade_no":"p","trade_state":"WHATEVER"}"#
            ))
            .is_err()
        );
    }
}
