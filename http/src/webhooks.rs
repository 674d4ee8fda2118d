//! `POST /v1/webhooks/{provider}`: one pipeline for every provider.
//!
//! 1. Verify the signature on the raw bytes with the provider's adapter (stale timestamps too).
//! 2. Record the request in `webhook_callbacks` before acting; a verified event is stored once
//!    per (provider, event id) and a repeat of a finished one is acknowledged and does nothing.
//! 3. Check the payment exists, belongs to this provider and this merchant; compare amount and
//!    currency (a mismatch is still handed to the workflow, which parks the order for review).
//! 4. Signal the order's workflow with the provider's event id (the workflow de-duplicates), or,
//!    when the order is already over, start the one `LatePaymentWorkflow` that refunds it.
//! 5. Answer in the provider's format. A failure we can recover from (Temporal or the database
//!    down) answers 5xx so the provider retries; the event stays `RECEIVED` and is redone.
//!
//! A forged signature, stale timestamp, malformed body, unknown provider or unknown payment
//! changes no order and sends no signal; it is still recorded with its verdict. So is a body over
//! 64 KiB: reading stops just past the limit, its first 64 KiB are recorded with verdict
//! `PAYLOAD_TOO_LARGE` and how much arrived, and it is answered `413`.

use super::error::{ApiError, ErrorBody};
use super::{AppState, MAX_BODY_BYTES};
use crate::callbacks::{self, Arrival, Callback, verdict};
use crate::webhook_adapters::{
    VerifiedWebhook, WebhookAdapter, WebhookEventKind, WebhookRejection, WebhookReply,
    WebhookRequest,
};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use orderflow_activities::payments;
use orderflow_client::orders::OrderOpError;
use orderflow_domain::{OrderStatus, PaymentOutcome, PaymentSignal};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Receive a provider's payment callback.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{provider}",
    params(("provider" = String, Path, description = "`sandbox`, `stripe`, ...")),
    request_body(content = String, description = "the provider's raw payload, signed"),
    responses(
        (status = 200, description = "accepted (or a repeat of an accepted event)"),
        (status = 400, description = "malformed request or signature header", body = ErrorBody),
        (status = 401, description = "signature does not match, or stale timestamp", body = ErrorBody),
        (status = 404, description = "unknown provider or payment", body = ErrorBody),
        (status = 413, description = "body over 64 KiB (recorded truncated)", body = ErrorBody),
        (status = 503, description = "try again later", body = ErrorBody)
    )
)]
pub async fn receive_webhook(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    req: Request,
) -> Response {
    tracing::Span::current().record("provider", provider.as_str());
    let (response, verdict) = receive(&app, &provider, req).await;
    app.metrics.webhook(&provider, &verdict);
    response
}

/// The pipeline; returns the answer and the verdict (for the metrics).
async fn receive(app: &AppState, provider: &str, req: Request) -> (Response, String) {
    let provider = provider.to_owned();
    let headers = lowercase_headers(req.headers());
    let body = match read_capped(req).await {
        Ok(ReadBody::Whole(body)) => body,
        Ok(ReadBody::TooLarge { first, detail }) => {
            return too_large(app, &provider, &headers, &first, &detail).await;
        }
        Err(e) => {
            let code = e.code.to_owned();
            return (e.into_response(), code);
        }
    };
    let callback = Callback {
        provider: &provider,
        headers: &headers,
        body: &body,
    };
    let Some(adapter) = app.adapters.get(provider.as_str()).cloned() else {
        let _ = callbacks::record_refused(
            &app.orders.db,
            &callback,
            verdict::UNKNOWN_PROVIDER,
            "no adapter for this provider",
        )
        .await;
        let response = ApiError::not_found(
            "UNKNOWN_PROVIDER",
            format!("no payment provider named {provider:?}"),
        )
        .into_response();
        return (response, verdict::UNKNOWN_PROVIDER.to_owned());
    };
    let kept = recorded_headers(adapter.as_ref(), &headers);
    let recorded = Callback {
        provider: &provider,
        headers: &kept,
        body: &body,
    };
    let request = WebhookRequest {
        headers: &headers,
        body: &body,
    };
    let verified = match adapter
        .verify(&request, now_unix())
        .and_then(fits_the_callback_log)
    {
        Ok(v) => v,
        Err(rejection) => {
            tracing::warn!(
                provider,
                verdict = rejection.code(),
                "webhook refused: {rejection}"
            );
            if let Err(e) = callbacks::record_refused(
                &app.orders.db,
                &recorded,
                rejection.code(),
                &rejection.to_string(),
            )
            .await
            {
                return unavailable(adapter.as_ref(), &e);
            }
            let status = match rejection {
                WebhookRejection::SignatureMismatch | WebhookRejection::StaleTimestamp { .. } => {
                    401
                }
                _ => 400,
            };
            let response = reply(adapter.nack(status, rejection.code(), &rejection.to_string()));
            return (response, rejection.code().to_owned());
        }
    };

    match callbacks::record_verified(
        &app.orders.db,
        &recorded,
        &verified.event_id,
        verified.payment_no.as_deref(),
    )
    .await
    {
        Ok(Arrival::Duplicate { verdict }) => {
            tracing::info!(provider, event_id = %verified.event_id, verdict, "repeat of a handled event");
            return (reply(adapter.ack()), "DUPLICATE".to_owned());
        }
        Ok(Arrival::New | Arrival::Unfinished) => {}
        Err(e) => return unavailable(adapter.as_ref(), &e),
    }

    match handle(app, adapter.as_ref(), &verified).await {
        Ok(Handled {
            verdict,
            detail,
            answer,
        }) => {
            let detail = match (detail, &verified.note) {
                (Some(detail), Some(note)) => Some(format!("{detail}; {note}")),
                (detail, note) => detail.or_else(|| note.clone()),
            };
            if let Err(e) = callbacks::set_verdict(
                &app.orders.db,
                &provider,
                &verified.event_id,
                verdict,
                detail.as_deref(),
            )
            .await
            {
                return unavailable(adapter.as_ref(), &e);
            }
            tracing::info!(provider, event_id = %verified.event_id, verdict, "webhook handled");
            let response = match answer {
                Answer::Ack => reply(adapter.ack()),
                Answer::Refuse(status, code) => {
                    reply(adapter.nack(status, code, detail.as_deref().unwrap_or(code)))
                }
            };
            (response, verdict.to_owned())
        }
        Err(Retry(message)) => {
            tracing::warn!(provider, event_id = %verified.event_id, "webhook deferred: {message}");
            (
                reply(adapter.nack(503, "TRY_AGAIN", &message)),
                "TRY_AGAIN".to_owned(),
            )
        }
    }
}

struct Handled {
    verdict: &'static str,
    detail: Option<String>,
    answer: Answer,
}

enum Answer {
    Ack,
    Refuse(u16, &'static str),
}

/// A failure the provider's retry will fix.
struct Retry(String);

impl From<sqlx::Error> for Retry {
    fn from(e: sqlx::Error) -> Self {
        Retry(format!("database: {e}"))
    }
}

async fn handle(
    app: &AppState,
    adapter: &dyn WebhookAdapter,
    event: &VerifiedWebhook,
) -> Result<Handled, Retry> {
    let ignored = |kind: &str| Handled {
        verdict: verdict::IGNORED,
        detail: Some(format!("event type {kind} is not acted on")),
        answer: Answer::Ack,
    };
    if let WebhookEventKind::Ignored(kind) = &event.kind {
        return Ok(ignored(kind));
    }
    let unknown = |detail: String| Handled {
        verdict: verdict::UNKNOWN_PAYMENT,
        detail: Some(detail),
        answer: Answer::Refuse(404, "UNKNOWN_PAYMENT"),
    };
    let Some(payment_no) = event.payment_no.as_deref() else {
        return Ok(unknown("the event names no payment number".to_owned()));
    };
    let Some(payment) = payments::load(&app.orders.db, payment_no).await? else {
        return Ok(unknown(format!("no payment {payment_no}")));
    };
    if payment.provider != adapter.provider() {
        return Ok(unknown(format!(
            "payment {payment_no} belongs to {}, not {}",
            payment.provider,
            adapter.provider()
        )));
    }
    if let (Some(expected), Some(got)) = (adapter.merchant_id(), event.merchant_id.as_deref())
        && expected != got
    {
        return Ok(Handled {
            verdict: verdict::MERCHANT_MISMATCH,
            detail: Some(format!(
                "event for merchant {got:?}, this deployment is {expected:?}"
            )),
            answer: Answer::Refuse(400, "MERCHANT_MISMATCH"),
        });
    }
    let outcome = match &event.kind {
        WebhookEventKind::PaymentSucceeded => PaymentOutcome::Paid,
        WebhookEventKind::PaymentFailed => PaymentOutcome::Failed,
        WebhookEventKind::RefundUpdate { refund_no, status } => {
            let detail = format!(
                "refund {refund_no} is {status} ({} {})",
                event.amount_minor, event.currency
            );
            payments::record_provider_event(
                &app.orders.db,
                &payment.payment_no,
                // The log's event names are at most 32 characters.
                &format!("REFUND_{status}")
                    .chars()
                    .take(32)
                    .collect::<String>(),
                &detail,
            )
            .await?;
            return Ok(Handled {
                verdict: verdict::REFUND_RECORDED,
                detail: Some(detail),
                answer: Answer::Ack,
            });
        }
        WebhookEventKind::Ignored(kind) => return Ok(ignored(kind)),
    };
    let matches = event.amount_minor == payment.amount_minor && event.currency == payment.currency;
    let signal = PaymentSignal {
        event_id: event.event_id.clone(),
        provider: adapter.provider().to_owned(),
        payment_no: payment_no.to_owned(),
        outcome,
        amount_minor: event.amount_minor,
        currency: event.currency.clone(),
        provider_txn_id: event.provider_txn_id.clone(),
    };
    match app.orders.signal_payment(&payment.order_id, signal).await {
        Ok(())
            if outcome == PaymentOutcome::Paid
                && !still_settles(app, &payment.order_id).await? =>
        {
            // The workflow is past its wait: it will not read this signal.
            settle_after_close(app, adapter, event, &payment, outcome).await
        }
        Ok(()) => Ok(Handled {
            verdict: match (outcome, matches) {
                (PaymentOutcome::Failed, _) => verdict::FAILED_ATTEMPT_SIGNALLED,
                (PaymentOutcome::Paid, true) => verdict::SIGNALLED,
                (PaymentOutcome::Paid, false) => verdict::MISMATCH_SIGNALLED,
            },
            detail: (!matches).then(|| {
                format!(
                    "paid {} {}, payment is {} {}",
                    event.amount_minor, event.currency, payment.amount_minor, payment.currency
                )
            }),
            answer: Answer::Ack,
        }),
        // The order's workflow is over.
        Err(OrderOpError::UnknownOrder(_) | OrderOpError::Refused { .. }) => {
            settle_after_close(app, adapter, event, &payment, outcome).await
        }
        Err(e) => Err(Retry(e.to_string())),
    }
}

/// Whether the order's workflow will still act on a payment signal: it is waiting for one, or its
/// close path is still running (and will find the money when it asks the provider). Once the
/// order is final, a payment it did not keep is late.
async fn still_settles(app: &AppState, order_id: &str) -> Result<bool, Retry> {
    let decided = |v: &orderflow_domain::OrderView| {
        v.accepting_payments
            || v.status
                .is_some_and(|s| s.is_final() || s == OrderStatus::NeedsReview)
    };
    // Short: providers want an answer within seconds; a 503 makes them retry later.
    let view = app
        .orders
        .wait_until(
            order_id,
            "a decision on the payment",
            Duration::from_secs(4),
            decided,
        )
        .await
        .map_err(|e| Retry(e.to_string()))?;
    Ok(view.accepting_payments
        || matches!(
            view.status,
            Some(OrderStatus::Paid | OrderStatus::NeedsReview)
        ))
}

/// A callback for an order whose workflow has finished: a repeat of what it already knew, or money
/// that arrived too late and must go back.
///
/// "Already kept" is decided by what our books say the order kept for this payment number, not
/// by the transaction id: a `PAID` order's payment is acknowledged as settled whatever the event
/// says (a differing transaction id is noted and logged), and never starts a refund of the kept
/// money. `LatePaymentWorkflow` checks the same again before it refunds anything.
async fn settle_after_close(
    app: &AppState,
    adapter: &dyn WebhookAdapter,
    event: &VerifiedWebhook,
    payment: &payments::StoredPayment,
    outcome: PaymentOutcome,
) -> Result<Handled, Retry> {
    let holding = payments::kept_by_order(&app.orders.db, &payment.payment_no).await?;
    let order_status = holding.order_status.as_deref().unwrap_or("over");
    if let payments::Kept::Kept {
        provider_txn_id, ..
    } = &holding.kept
    {
        let mut detail = format!("order {} is already {order_status}", payment.order_id);
        if outcome == PaymentOutcome::Paid
            && provider_txn_id.as_deref() != Some(event.provider_txn_id.as_str())
        {
            tracing::warn!(
                order_id = %payment.order_id,
                payment_no = %payment.payment_no,
                event_id = %event.event_id,
                kept_txn_id = provider_txn_id.as_deref().unwrap_or(""),
                event_txn_id = %event.provider_txn_id,
                "a payment event for a kept payment names another transaction; nothing refunded"
            );
            detail.push_str(&format!(
                "; it kept transaction {}, this event names {}: nothing refunded",
                provider_txn_id.as_deref().unwrap_or("(none)"),
                event.provider_txn_id
            ));
        }
        return Ok(Handled {
            verdict: verdict::ALREADY_SETTLED,
            detail: Some(detail),
            answer: Answer::Ack,
        });
    }
    if outcome == PaymentOutcome::Failed {
        return Ok(Handled {
            verdict: verdict::ALREADY_SETTLED,
            detail: Some(format!(
                "order {} is already {order_status}",
                payment.order_id
            )),
            answer: Answer::Ack,
        });
    }
    app.orders
        .start_late_payment_refund(
            &payment.order_id,
            &payment.payment_no,
            adapter.provider(),
            &event.event_id,
        )
        .await
        .map_err(|e| Retry(e.to_string()))?;
    Ok(Handled {
        verdict: verdict::LATE_PAYMENT_REFUND,
        detail: Some(format!(
            "order {} was {order_status} when the payment arrived; refunding what it did not keep",
            payment.order_id,
        )),
        answer: Answer::Ack,
    })
}

/// A webhook body as read: whole, or over the limit with what was kept of it.
enum ReadBody {
    Whole(Bytes),
    /// Over [`MAX_BODY_BYTES`]: its first `MAX_BODY_BYTES` bytes, and how much arrived in words.
    TooLarge {
        first: Bytes,
        detail: String,
    },
}

/// Reads the body frame by frame and stops as soon as it is over the limit: an oversized body is
/// never buffered whole (at most the limit plus one frame is read), yet its beginning is kept
/// for the callback log.
async fn read_capped(req: Request) -> Result<ReadBody, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = req.into_body();
    let mut kept = BytesMut::new();
    let mut read: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request("UNREADABLE_BODY", e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        read = read.saturating_add(data.len());
        let room = MAX_BODY_BYTES - kept.len();
        kept.extend_from_slice(&data[..data.len().min(room)]);
        if read > MAX_BODY_BYTES {
            let declared = declared
                .map(|n| format!(", Content-Length {n}"))
                .unwrap_or_default();
            let detail = format!(
                "body over the {MAX_BODY_BYTES}-byte limit: more than {MAX_BODY_BYTES} bytes \
                 arrived ({read} read before reading stopped{declared}); recorded truncated to \
                 its first {MAX_BODY_BYTES} bytes"
            );
            return Ok(ReadBody::TooLarge {
                first: kept.freeze(),
                detail,
            });
        }
    }
    Ok(ReadBody::Whole(kept.freeze()))
}

/// Records an oversized request (truncated, verdict `PAYLOAD_TOO_LARGE`) and answers `413`, in
/// the provider's format when there is an adapter for it.
async fn too_large(
    app: &AppState,
    provider: &str,
    headers: &BTreeMap<String, String>,
    first: &[u8],
    detail: &str,
) -> (Response, String) {
    let adapter = app.adapters.get(provider).cloned();
    let recorded = match &adapter {
        Some(adapter) => recorded_headers(adapter.as_ref(), headers),
        None => headers.clone(),
    };
    let callback = Callback {
        provider,
        headers: &recorded,
        body: first,
    };
    tracing::warn!(
        provider,
        verdict = verdict::PAYLOAD_TOO_LARGE,
        "webhook refused: {detail}"
    );
    let message = format!("request bodies are limited to {MAX_BODY_BYTES} bytes");
    let recorded = callbacks::record_refused(
        &app.orders.db,
        &callback,
        verdict::PAYLOAD_TOO_LARGE,
        detail,
    )
    .await;
    let response = match (adapter, recorded) {
        (Some(adapter), Err(e)) => return unavailable(adapter.as_ref(), &e),
        (Some(adapter), Ok(())) => reply(adapter.nack(413, verdict::PAYLOAD_TOO_LARGE, &message)),
        (None, recorded) => {
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "callback log unavailable");
            }
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                verdict::PAYLOAD_TOO_LARGE,
                message,
            )
            .into_response()
        }
    };
    (response, verdict::PAYLOAD_TOO_LARGE.to_owned())
}

/// Only the headers that matter to the provider are kept in the log.
fn recorded_headers(
    adapter: &dyn WebhookAdapter,
    headers: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| adapter.recorded_headers().contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn unavailable(adapter: &dyn WebhookAdapter, err: &sqlx::Error) -> (Response, String) {
    tracing::warn!(error = %err, "callback log unavailable");
    (
        reply(adapter.nack(
            503,
            "DATABASE_UNAVAILABLE",
            "the orders database is unavailable",
        )),
        "DATABASE_UNAVAILABLE".to_owned(),
    )
}

fn reply(r: WebhookReply) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, r.content_type)
        .body(Body::from(r.body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn lowercase_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A verified event whose id or payment number is longer than the callback log keeps is refused
/// as malformed, on every engine alike (no provider sends such ids; the log must hold them whole).
fn fits_the_callback_log(event: VerifiedWebhook) -> Result<VerifiedWebhook, WebhookRejection> {
    let too_long = |what: &str, value: &str, max: usize| {
        let chars = value.chars().count();
        (chars > max).then(|| {
            WebhookRejection::MalformedBody(format!("{what} is {chars} characters; at most {max}"))
        })
    };
    if let Some(rejection) = too_long("event id", &event.event_id, callbacks::MAX_EVENT_ID_CHARS)
        .or_else(|| {
            event
                .payment_no
                .as_deref()
                .and_then(|p| too_long("payment number", p, callbacks::MAX_PAYMENT_NO_CHARS))
        })
    {
        return Err(rejection);
    }
    Ok(event)
}
