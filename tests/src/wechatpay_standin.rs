//! A stand-in for WeChat Pay API v3 (Native payments and domestic refunds), on 127.0.0.1 over
//! real HTTP.
//!
//! Written from the API docs, independently of `orderflow_protocols::wechatpay` (only the RSA and
//! AES-GCM primitives are shared), so a bug symmetric in signer and verifier cannot hide: it
//! checks each request's `Authorization` (scheme, mchid, serial_no, fresh timestamp, SHA256withRSA
//! over `METHOD\nURI\ntimestamp\nnonce\nbody\n` with the merchant public key fixture), the
//! documented fields, formats and lengths, and records every breach as a violation; it signs
//! every answer (204s and errors too) with the platform certificate key or the `PUB_KEY_ID_…` key,
//! and sends encrypted notifies to the `notify_url` it was given, retrying on WeChat Pay's
//! schedule compressed from seconds to milliseconds until it gets 200/204.
//!
//! Test controls: the customer pays (the full amount or another), notifies lost, repeated in
//! parallel, forged / tampered / stale / under an unknown serial / probes, a merchant other than
//! ours, refunds that stay PROCESSING for a few queries then succeed (with REFUND.SUCCESS), an
//! outage (503 SERVICE_UNAVAILABLE) for the next N requests, a customer who pays just as we close, and
//! close answering 204 for numbers it does not know (the trap).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orderflow_protocols::rsa_keys::{Certificate, PrivateKey, PublicKey, aead};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const MCHID: &str = "1900000001";
pub const APPID: &str = "wx8888888888888888";
pub const APIV3_KEY: &str = "0123456789abcdef0123456789abcdef";
pub const MERCHANT_SERIAL: &str = "3A7E1C2B4D5F6071829304A5B6C7D8E9F0A1B2C3";
pub const PLATFORM_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
pub const PUB_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";

/// The notify retry schedule (15s, 15s, 30s, 3m, 10m, 20m, 30m, 30m, 30m, 60m, 3h, 3h, 3h, 6h,
/// 6h), seconds read as milliseconds.
pub const NOTIFY_RETRY_MS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];

pub fn fixture_path(name: &str) -> std::path::PathBuf {
    crate::workspace_root()
        .join("tests/fixtures/providers/wechatpay")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).expect("wechatpay fixture")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn nonce32() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:032X}",
        (u128::from(n) << 64) | u128::from(unix_now() as u64)
    )
}

/// How a notify is delivered: genuinely, or one of the ways an attacker or WeChat Pay's own
/// probes would send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyForm {
    Genuine,
    /// Signed with a key that is not WeChat Pay's (the merchant's own).
    Forged,
    /// Signed, then one byte of the body changed.
    Tampered,
    /// Signed ten minutes ago.
    Stale,
    /// Signed by the platform key but named by a serial we were never given.
    WrongSerial,
    /// `Wechatpay-Signature: WECHATPAY/SIGNTEST/…`.
    Probe,
}

#[derive(Debug, Clone)]
struct Trade {
    appid: String,
    mchid: String,
    description: String,
    total: i64,
    notify_url: String,
    code_url: String,
    state: String,
    paid_total: Option<i64>,
    transaction_id: Option<String>,
    /// The customer pays at the moment we close.
    pays_when_closed: bool,
}

#[derive(Debug, Clone)]
struct RefundRec {
    refund_id: String,
    out_trade_no: String,
    refund: i64,
    total: i64,
    status: String,
    /// Queries still answered PROCESSING.
    processing_left: u32,
    notify_url: String,
}

#[derive(Default)]
struct Books {
    trades: BTreeMap<String, Trade>,
    refunds: BTreeMap<String, RefundRec>,
    refund_posts: usize,
    violations: Vec<String>,
    use_pubkey: bool,
    lose_notifies: bool,
    /// Deliveries still to be spoiled on the way (sent as probes, so the shim refuses them).
    spoil_deliveries: usize,
    fail_next: usize,
    refund_processing_queries: u32,
    requests: usize,
    seq: u64,
    /// (event id, HTTP status) of every notify sent.
    deliveries: Vec<(String, u16)>,
}

struct Inner {
    books: Mutex<Books>,
    merchant_public: PublicKey,
    platform_key: PrivateKey,
    pubkey_key: PrivateKey,
    merchant_key: PrivateKey,
    http: reqwest::Client,
}

#[derive(Clone)]
pub struct WechatPayStandIn {
    pub base: String,
    inner: Arc<Inner>,
}

impl WechatPayStandIn {
    pub async fn spawn() -> WechatPayStandIn {
        let merchant_cert = Certificate::from_pem(&fixture("merchant_cert.pem")).expect("cert");
        assert_eq!(merchant_cert.serial, MERCHANT_SERIAL);
        let inner = Arc::new(Inner {
            books: Mutex::new(Books::default()),
            merchant_public: PublicKey::from_text(&fixture("merchant_public_key.pem"))
                .expect("merchant public key"),
            platform_key: PrivateKey::from_text(&fixture("platform_private_key.pem"))
                .expect("platform key"),
            pubkey_key: PrivateKey::from_text(&fixture("pubkey_private_key.pem"))
                .expect("pubkey key"),
            merchant_key: PrivateKey::from_text(&fixture("merchant_private_key.pem"))
                .expect("merchant key"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        });
        let app = Router::new()
            .route("/v3/pay/transactions/native", post(create))
            .route("/v3/pay/transactions/out-trade-no/{no}", get(query))
            .route("/v3/pay/transactions/out-trade-no/{no}/close", post(close))
            .route("/v3/refund/domestic/refunds", post(refund))
            .route("/v3/refund/domestic/refunds/{no}", get(refund_query))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        WechatPayStandIn { base, inner }
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.inner.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sign answers and notifies with the WeChat Pay public key (`PUB_KEY_ID_…`) instead of the
    /// platform certificate.
    pub fn sign_with_pubkey(&self, yes: bool) {
        self.books().use_pubkey = yes;
    }

    pub fn lose_notifies(&self, yes: bool) {
        self.books().lose_notifies = yes;
    }

    /// The next `n` API requests answer 503 SERVICE_UNAVAILABLE.
    pub fn fail_next(&self, n: usize) {
        self.books().fail_next = n;
    }

    /// The next `n` notify deliveries reach the shim spoiled (it must refuse them), so WeChat
    /// Pay's retries are what gets the notify through.
    pub fn spoil_next_deliveries(&self, n: usize) {
        self.books().spoil_deliveries = n;
    }

    /// Outage answers still to give.
    pub fn failures_left(&self) -> usize {
        self.books().fail_next
    }

    /// Refunds made from now on answer PROCESSING to their first `n` queries.
    pub fn refunds_processing_for(&self, n: u32) {
        self.books().refund_processing_queries = n;
    }

    pub fn pay_when_closed(&self, out_trade_no: &str) {
        if let Some(t) = self.books().trades.get_mut(out_trade_no) {
            t.pays_when_closed = true;
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.books().violations.clone()
    }

    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "stand-in violations: {v:#?}");
    }

    pub fn trade_state(&self, out_trade_no: &str) -> Option<String> {
        self.books()
            .trades
            .get(out_trade_no)
            .map(|t| t.state.clone())
    }

    pub fn code_url(&self, out_trade_no: &str) -> Option<String> {
        self.books()
            .trades
            .get(out_trade_no)
            .map(|t| t.code_url.clone())
    }

    pub fn trade_count(&self) -> usize {
        self.books().trades.len()
    }

    /// Refunds made for the trade, and refund POSTs received in all.
    pub fn refunds_of(&self, out_trade_no: &str) -> Vec<(String, String)> {
        self.books()
            .refunds
            .iter()
            .filter(|(_, r)| r.out_trade_no == out_trade_no)
            .map(|(no, r)| (no.clone(), r.status.clone()))
            .collect()
    }

    pub fn refund_posts(&self) -> usize {
        self.books().refund_posts
    }

    pub fn deliveries(&self) -> Vec<(String, u16)> {
        self.books().deliveries.clone()
    }

    /// The customer pays `amount` (the order's total when `None`); the notify goes out on the
    /// retry schedule unless notifies are being lost. Returns the notify's event id.
    pub fn pay(&self, out_trade_no: &str, amount: Option<i64>) -> String {
        let (id, request) = {
            let mut b = self.books();
            let Some(trade) = b.trades.get_mut(out_trade_no) else {
                panic!("stand-in: no trade {out_trade_no}");
            };
            mark_paid(trade, amount);
            let trade = trade.clone();
            let lose = b.lose_notifies;
            let (id, request) = self.transaction_notify(&mut b, out_trade_no, &trade, None);
            if lose {
                return id;
            }
            (id, request)
        };
        self.deliver_with_retries(request);
        id
    }

    /// The notify for a paid trade, as `form`, sent once; the shim's HTTP status.
    /// `merchant` overrides the resource's (mchid, appid).
    pub async fn send_notify(
        &self,
        out_trade_no: &str,
        form: NotifyForm,
        merchant: Option<(&str, &str)>,
    ) -> (String, u16) {
        let (id, request) = {
            let mut b = self.books();
            let trade = b.trades.get(out_trade_no).cloned().expect("trade");
            let (id, mut request) = self.transaction_notify(&mut b, out_trade_no, &trade, merchant);
            request.reform(form, &self.inner);
            (id, request)
        };
        let status = request.send(&self.inner.http).await;
        (id, status)
    }

    /// The genuine notify for a paid trade, `n` times at once; the statuses.
    pub async fn send_notify_parallel(&self, out_trade_no: &str, n: usize) -> Vec<u16> {
        let request = {
            let mut b = self.books();
            let trade = b.trades.get(out_trade_no).cloned().expect("trade");
            self.transaction_notify(&mut b, out_trade_no, &trade, None)
                .1
        };
        let sends = (0..n).map(|_| request.send(&self.inner.http));
        futures::future::join_all(sends).await
    }

    fn transaction_notify(
        &self,
        b: &mut Books,
        out_trade_no: &str,
        trade: &Trade,
        merchant: Option<(&str, &str)>,
    ) -> (String, NotifyRequest) {
        let (mchid, appid) = merchant.unwrap_or((trade.mchid.as_str(), trade.appid.as_str()));
        let paid = trade.paid_total.unwrap_or(trade.total);
        let resource = json!({
            "mchid": mchid, "appid": appid, "out_trade_no": out_trade_no,
            "transaction_id": trade.transaction_id, "trade_type": "NATIVE",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
            "attach": "", "success_time": "2026-12-07T15:00:00+08:00",
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": paid, "payer_total": paid, "currency": "CNY", "payer_currency": "CNY"}
        });
        b.seq += 1;
        let id = format!("EV-{out_trade_no}-{}", b.seq);
        let request = notify_request(
            &self.inner,
            b.use_pubkey,
            &trade.notify_url,
            &id,
            "TRANSACTION.SUCCESS",
            "transaction",
            &resource,
        );
        (id, request)
    }

    fn deliver_with_retries(&self, request: NotifyRequest) {
        let me = self.clone();
        tokio::spawn(async move {
            for delay in std::iter::once(0).chain(NOTIFY_RETRY_MS) {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let spoil = {
                    let mut b = me.books();
                    let spoil = b.spoil_deliveries > 0;
                    b.spoil_deliveries = b.spoil_deliveries.saturating_sub(1);
                    spoil
                };
                let status = if spoil {
                    let mut spoiled = request.clone();
                    spoiled.reform(NotifyForm::Probe, &me.inner);
                    spoiled.send(&me.inner.http).await
                } else {
                    request.send(&me.inner.http).await
                };
                me.books().deliveries.push((request.id.clone(), status));
                if status == 200 || status == 204 {
                    return;
                }
            }
        });
    }
}

fn mark_paid(trade: &mut Trade, amount: Option<i64>) {
    trade.state = "SUCCESS".into();
    trade.paid_total = Some(amount.unwrap_or(trade.total));
    trade.transaction_id = Some(format!("42000000{:020}", unix_now()));
}

#[derive(Debug, Clone)]
struct NotifyRequest {
    id: String,
    url: String,
    timestamp: String,
    nonce: String,
    signature: String,
    serial: String,
    body: Vec<u8>,
}

fn sign_message(key: &PrivateKey, timestamp: &str, nonce: &str, body: &[u8]) -> String {
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    key.sign_base64(&message)
}

impl NotifyRequest {
    fn reform(&mut self, form: NotifyForm, inner: &Inner) {
        match form {
            NotifyForm::Genuine => {}
            NotifyForm::Forged => {
                self.signature = sign_message(
                    &inner.merchant_key,
                    &self.timestamp,
                    &self.nonce,
                    &self.body,
                )
            }
            NotifyForm::Tampered => {
                // `"id":"EV-…` → `"id":"FV-…`: another event id, the signature unchanged.
                if let Some(at) = self.body.windows(4).position(|w| w == b"\"EV-") {
                    self.body[at + 1] = b'F';
                }
            }
            NotifyForm::Stale => {
                self.timestamp = (unix_now() - 600).to_string();
                self.signature = sign_message(
                    &inner.platform_key,
                    &self.timestamp,
                    &self.nonce,
                    &self.body,
                );
                self.serial = PLATFORM_SERIAL.into();
            }
            NotifyForm::WrongSerial => {
                self.signature = sign_message(
                    &inner.platform_key,
                    &self.timestamp,
                    &self.nonce,
                    &self.body,
                );
                self.serial = "7132D72A03E93CDDF8C03BBD1F37EEDF204386D1".into();
            }
            NotifyForm::Probe => {
                self.signature = format!("WECHATPAY/SIGNTEST/{}", self.signature);
            }
        }
    }

    async fn send(&self, http: &reqwest::Client) -> u16 {
        let sent = http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Wechatpay-Timestamp", &self.timestamp)
            .header("Wechatpay-Nonce", &self.nonce)
            .header("Wechatpay-Signature", &self.signature)
            .header("Wechatpay-Serial", &self.serial)
            .header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
            .header("Request-ID", format!("req-{}", self.nonce))
            .body(self.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap_or_default();
                // The documented answers: an empty 200/204, or {"code":"FAIL","message"}.
                let shaped = if status == 200 || status == 204 {
                    body.is_empty()
                } else {
                    serde_json::from_slice::<Value>(&body)
                        .is_ok_and(|v| v["code"] == "FAIL" && v["message"].is_string())
                };
                if shaped { status } else { 999 }
            }
            Err(_) => 0,
        }
    }
}

fn notify_request(
    inner: &Inner,
    use_pubkey: bool,
    url: &str,
    id: &str,
    event_type: &str,
    original_type: &str,
    resource: &Value,
) -> NotifyRequest {
    let nonce12 = &nonce32()[20..];
    let ciphertext = aead::encrypt(
        APIV3_KEY.as_bytes(),
        nonce12,
        original_type,
        resource.to_string().as_bytes(),
    )
    .expect("encrypt");
    let body = json!({
        "id": id, "create_time": "2026-12-07T15:00:00+08:00",
        "resource_type": "encrypt-resource", "event_type": event_type, "summary": "通知",
        "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext, "associated_data": original_type, "nonce": nonce12}
    })
    .to_string()
    .into_bytes();
    let timestamp = unix_now().to_string();
    let nonce = nonce32();
    let (key, serial) = if use_pubkey {
        (&inner.pubkey_key, PUB_KEY_ID)
    } else {
        (&inner.platform_key, PLATFORM_SERIAL)
    };
    NotifyRequest {
        id: id.to_owned(),
        url: url.to_owned(),
        signature: sign_message(key, &timestamp, &nonce, &body),
        timestamp,
        nonce,
        serial: serial.to_owned(),
        body,
    }
}

// ---- the API ---------------------------------------------------------------------------------

/// A signed answer, as WeChat Pay signs every one.
fn answer(inner: &Inner, use_pubkey: bool, status: StatusCode, body: Option<Value>) -> Response {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let timestamp = unix_now().to_string();
    let nonce = nonce32();
    let (key, serial) = if use_pubkey {
        (&inner.pubkey_key, PUB_KEY_ID)
    } else {
        (&inner.platform_key, PLATFORM_SERIAL)
    };
    let signature = sign_message(key, &timestamp, &nonce, &bytes);
    let mut response = (status, bytes).into_response();
    let h = response.headers_mut();
    for (name, value) in [
        ("wechatpay-timestamp", timestamp),
        ("wechatpay-nonce", nonce.clone()),
        ("wechatpay-signature", signature),
        ("wechatpay-serial", serial.to_owned()),
        (
            "wechatpay-signature-type",
            "WECHATPAY2-SHA256-RSA2048".into(),
        ),
        ("request-id", format!("08D{nonce}")),
    ] {
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
    }
    if status != StatusCode::NO_CONTENT {
        h.insert(
            "content-type",
            axum::http::HeaderValue::from_static("application/json"),
        );
    }
    response
}

fn error(code: &str, message: &str) -> Option<Value> {
    Some(json!({"code": code, "message": message}))
}

/// Checks what every request must carry; `Err` is the answer to give instead.
// The error is the HTTP answer itself, made once per refused request: no point boxing it.
#[allow(clippy::result_large_err)]
fn admit(
    inner: &Inner,
    method: &Method,
    uri: &OriginalUri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<bool, Response> {
    let mut b = inner.books.lock().unwrap_or_else(|p| p.into_inner());
    b.requests += 1;
    let use_pubkey = b.use_pubkey;
    if b.fail_next > 0 {
        b.fail_next -= 1;
        return Err(answer(
            inner,
            use_pubkey,
            StatusCode::SERVICE_UNAVAILABLE,
            error("SERVICE_UNAVAILABLE", "服务不可用，过载保护"),
        ));
    }
    let path_and_query = uri
        .0
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let refuse = |b: &mut Books, why: String| {
        b.violations
            .push(format!("{method} {path_and_query}: {why}"));
        answer(
            inner,
            use_pubkey,
            StatusCode::UNAUTHORIZED,
            error("SIGN_ERROR", "签名错误"),
        )
    };
    if headers.get("accept").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return Err(refuse(&mut b, "Accept is not application/json".into()));
    }
    if *method == Method::POST
        && headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json")
    {
        return Err(refuse(
            &mut b,
            "Content-Type is not application/json".into(),
        ));
    }
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(refuse(&mut b, "no Authorization".into()));
    };
    let Some(params) = auth.strip_prefix("WECHATPAY2-SHA256-RSA2048 ") else {
        return Err(refuse(&mut b, format!("Authorization scheme: {auth}")));
    };
    let mut fields = BTreeMap::new();
    for item in params.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            return Err(refuse(&mut b, format!("Authorization item {item:?}")));
        };
        let Some(v) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            return Err(refuse(
                &mut b,
                format!("Authorization value not quoted: {item:?}"),
            ));
        };
        fields.insert(k.trim().to_owned(), v.to_owned());
    }
    let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
    if field("mchid") != MCHID {
        return Err(refuse(&mut b, format!("mchid {:?}", field("mchid"))));
    }
    if field("serial_no") != MERCHANT_SERIAL {
        return Err(refuse(
            &mut b,
            format!("serial_no {:?}", field("serial_no")),
        ));
    }
    let nonce = field("nonce_str");
    if nonce.is_empty() || nonce.len() > 32 {
        return Err(refuse(&mut b, format!("nonce_str {nonce:?}")));
    }
    let Ok(timestamp) = field("timestamp").parse::<i64>() else {
        return Err(refuse(&mut b, "timestamp".into()));
    };
    if (unix_now() - timestamp).abs() > 300 {
        return Err(refuse(&mut b, format!("timestamp {timestamp} not current")));
    }
    if *method == Method::GET && !body.is_empty() {
        return Err(refuse(&mut b, "a GET with a body".into()));
    }
    let mut message = format!(
        "{method}\n{path_and_query}\n{}\n{nonce}\n",
        field("timestamp")
    )
    .into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    if !inner
        .merchant_public
        .verifies(&message, &field("signature"))
    {
        return Err(refuse(&mut b, "signature does not verify".into()));
    }
    Ok(use_pubkey)
}

fn violation(inner: &Inner, use_pubkey: bool, what: String) -> Response {
    inner
        .books
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .violations
        .push(what.clone());
    answer(
        inner,
        use_pubkey,
        StatusCode::BAD_REQUEST,
        error("PARAM_ERROR", &what),
    )
}

/// [`admit`], then the body as JSON.
#[allow(clippy::result_large_err)]
fn admit_json(
    inner: &Inner,
    method: &Method,
    uri: &OriginalUri,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<(bool, Value), Response> {
    let use_pubkey = admit(inner, method, uri, headers, body)?;
    serde_json::from_slice::<Value>(body)
        .map(|req| (use_pubkey, req))
        .map_err(|_| violation(inner, use_pubkey, format!("{what}: body is not JSON")))
}

fn valid_out_trade_no(no: &str) -> bool {
    (6..=32).contains(&no.len())
        && no
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-|*".contains(&c))
}

/// `yyyy-MM-DDTHH:mm:ss+TIMEZONE`, e.g. `2018-06-08T10:34:56+08:00`.
fn valid_time_expire(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 25
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 | 22 => *c == b':',
            19 => *c == b'+' || *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn books(inner: &Inner) -> MutexGuard<'_, Books> {
    inner.books.lock().unwrap_or_else(|p| p.into_inner())
}

fn transaction_json(no: &str, t: &Trade) -> Value {
    let mut v = json!({
        "appid": t.appid, "mchid": t.mchid, "out_trade_no": no, "trade_state": t.state,
        "trade_state_desc": t.state, "trade_type": "NATIVE",
        "amount": {"currency": "CNY", "payer_currency": "CNY"}
    });
    if let (Some(paid), Some(txn)) = (t.paid_total, &t.transaction_id) {
        v["transaction_id"] = json!(txn);
        v["amount"] =
            json!({"total": paid, "payer_total": paid, "currency": "CNY", "payer_currency": "CNY"});
        v["success_time"] = json!("2026-12-07T15:00:00+08:00");
    }
    v
}

async fn create(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (use_pubkey, req) = match admit_json(&inner, &method, &uri, &headers, &body, "create") {
        Ok(admitted) => admitted,
        Err(r) => return r,
    };
    let s = |k: &str| req[k].as_str().unwrap_or_default().to_owned();
    let no = s("out_trade_no");
    let mut problems = Vec::new();
    if s("appid") != APPID {
        problems.push(format!("appid {:?}", s("appid")));
    }
    if s("mchid") != MCHID {
        problems.push(format!("mchid {:?}", s("mchid")));
    }
    let description = s("description");
    if description.is_empty() || description.len() > 127 {
        problems.push(format!("description of {} bytes", description.len()));
    }
    if !valid_out_trade_no(&no) {
        problems.push(format!("out_trade_no {no:?}"));
    }
    if !valid_time_expire(&s("time_expire")) {
        problems.push(format!("time_expire {:?}", s("time_expire")));
    }
    let notify_url = s("notify_url");
    if !notify_url.starts_with("http") || notify_url.contains('?') || notify_url.len() > 255 {
        problems.push(format!("notify_url {notify_url:?}"));
    }
    let total = req["amount"]["total"].as_i64().unwrap_or(0);
    if total < 1 || req["amount"]["currency"] != "CNY" {
        problems.push(format!("amount {}", req["amount"]));
    }
    if !problems.is_empty() {
        return violation(
            &inner,
            use_pubkey,
            format!("create: {}", problems.join(", ")),
        );
    }
    let mut b = books(&inner);
    if let Some(t) = b.trades.get(&no) {
        if t.state == "SUCCESS" || t.state == "REFUND" {
            drop(b);
            return answer(
                &inner,
                use_pubkey,
                StatusCode::FORBIDDEN,
                error("ORDERPAID", "该订单已支付"),
            );
        }
        if t.total != total || t.description != description {
            drop(b);
            return violation(
                &inner,
                use_pubkey,
                format!("create: {no} again with other parameters"),
            );
        }
        let code_url = t.code_url.clone();
        drop(b);
        return answer(
            &inner,
            use_pubkey,
            StatusCode::OK,
            Some(json!({"code_url": code_url})),
        );
    }
    b.seq += 1;
    let code_url = format!("weixin://wxpay/bizpayurl?pr=StandIn{:04}", b.seq);
    b.trades.insert(
        no,
        Trade {
            appid: s("appid"),
            mchid: s("mchid"),
            description,
            total,
            notify_url,
            code_url: code_url.clone(),
            state: "NOTPAY".into(),
            paid_total: None,
            transaction_id: None,
            pays_when_closed: false,
        },
    );
    drop(b);
    answer(
        &inner,
        use_pubkey,
        StatusCode::OK,
        Some(json!({"code_url": code_url})),
    )
}

async fn query(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(no): axum::extract::Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Response {
    let use_pubkey = match admit(&inner, &method, &uri, &headers, &[]) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if uri.0.query() != Some(&format!("mchid={MCHID}")) {
        return violation(
            &inner,
            use_pubkey,
            format!("query {no}: query string {:?}", uri.0.query()),
        );
    }
    let found = books(&inner).trades.get(&no).cloned();
    match found {
        Some(t) => answer(
            &inner,
            use_pubkey,
            StatusCode::OK,
            Some(transaction_json(&no, &t)),
        ),
        None => answer(
            &inner,
            use_pubkey,
            StatusCode::NOT_FOUND,
            error("ORDER_NOT_EXIST", "订单不存在"),
        ),
    }
}

async fn close(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(no): axum::extract::Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let use_pubkey = match admit(&inner, &method, &uri, &headers, &body) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let req: Value = serde_json::from_slice(&body).unwrap_or_default();
    if req["mchid"] != MCHID {
        return violation(&inner, use_pubkey, format!("close {no}: body {req}"));
    }
    let mut b = books(&inner);
    if let Some(t) = b.trades.get_mut(&no) {
        if t.pays_when_closed && t.state == "NOTPAY" {
            mark_paid(t, None);
        }
        if t.state == "NOTPAY" || t.state == "USERPAYING" {
            t.state = "CLOSED".into();
        }
    }
    drop(b);
    // The trap: 204 whatever happened, even for a number never created.
    answer(&inner, use_pubkey, StatusCode::NO_CONTENT, None)
}

fn refund_json(no: &str, r: &RefundRec) -> Value {
    json!({
        "refund_id": r.refund_id, "out_refund_no": no, "out_trade_no": r.out_trade_no,
        "transaction_id": "4200000000000000000000000000", "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱", "status": r.status,
        "create_time": "2026-12-07T15:00:00+08:00",
        "amount": {"refund": r.refund, "total": r.total, "currency": "CNY",
            "payer_refund": r.refund, "payer_total": r.total, "settlement_refund": r.refund,
            "settlement_total": r.total, "discount_refund": 0}
    })
}

async fn refund(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (use_pubkey, req) = match admit_json(&inner, &method, &uri, &headers, &body, "refund") {
        Ok(admitted) => admitted,
        Err(r) => return r,
    };
    let s = |k: &str| req[k].as_str().unwrap_or_default().to_owned();
    let (trade_no, refund_no) = (s("out_trade_no"), s("out_refund_no"));
    let mut b = books(&inner);
    b.refund_posts += 1;
    let Some(trade) = b.trades.get(&trade_no).cloned() else {
        drop(b);
        return answer(
            &inner,
            use_pubkey,
            StatusCode::NOT_FOUND,
            error("RESOURCE_NOT_EXISTS", "订单不存在"),
        );
    };
    let refund = req["amount"]["refund"].as_i64().unwrap_or(0);
    let total = req["amount"]["total"].as_i64().unwrap_or(0);
    let paid = trade.paid_total.unwrap_or(0);
    let mut problems = Vec::new();
    if !valid_out_trade_no(&refund_no) || refund_no.len() > 64 {
        problems.push(format!("out_refund_no {refund_no:?}"));
    }
    if total != paid || refund < 1 || refund > total || req["amount"]["currency"] != "CNY" {
        problems.push(format!("amount {} for a trade of {paid}", req["amount"]));
    }
    if s("reason").len() > 80 {
        problems.push(format!("reason of {} bytes", s("reason").len()));
    }
    if s("notify_url").contains('?') {
        problems.push(format!("notify_url {:?}", s("notify_url")));
    }
    if trade.state != "SUCCESS" && trade.state != "REFUND" {
        drop(b);
        return answer(
            &inner,
            use_pubkey,
            StatusCode::FORBIDDEN,
            error("INVALID_REQUEST", "订单未支付"),
        );
    }
    if !problems.is_empty() {
        drop(b);
        return violation(
            &inner,
            use_pubkey,
            format!("refund: {}", problems.join(", ")),
        );
    }
    if let Some(existing) = b.refunds.get(&refund_no) {
        // The same out_refund_no answers the refund already made.
        let v = refund_json(&refund_no, existing);
        drop(b);
        return answer(&inner, use_pubkey, StatusCode::OK, Some(v));
    }
    b.seq += 1;
    let processing_left = b.refund_processing_queries;
    let rec = RefundRec {
        refund_id: format!("50000000{:020}", b.seq),
        out_trade_no: trade_no.clone(),
        refund,
        total,
        status: if processing_left > 0 {
            "PROCESSING"
        } else {
            "SUCCESS"
        }
        .into(),
        processing_left,
        notify_url: s("notify_url"),
    };
    let v = refund_json(&refund_no, &rec);
    b.refunds.insert(refund_no, rec);
    if let Some(t) = b.trades.get_mut(&trade_no) {
        t.state = "REFUND".into();
    }
    drop(b);
    answer(&inner, use_pubkey, StatusCode::OK, Some(v))
}

async fn refund_query(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(no): axum::extract::Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Response {
    let use_pubkey = match admit(&inner, &method, &uri, &headers, &[]) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut b = books(&inner);
    let Some(r) = b.refunds.get_mut(&no) else {
        drop(b);
        return answer(
            &inner,
            use_pubkey,
            StatusCode::NOT_FOUND,
            error("RESOURCE_NOT_EXISTS", "退款单不存在"),
        );
    };
    let mut notify = None;
    if r.status == "PROCESSING" {
        r.processing_left = r.processing_left.saturating_sub(1);
        if r.processing_left == 0 {
            r.status = "SUCCESS".into();
            notify = Some(r.clone());
        }
    }
    let v = refund_json(&no, r);
    if let Some(done) = notify {
        b.seq += 1;
        let id = format!("EV-refund-{no}-{}", b.seq);
        let resource = json!({
            "mchid": MCHID, "out_trade_no": done.out_trade_no, "transaction_id": "4200000000000000000000000000",
            "out_refund_no": no, "refund_id": done.refund_id, "refund_status": "SUCCESS",
            "success_time": "2026-12-07T15:05:00+08:00", "user_received_account": "支付用户零钱",
            "amount": {"total": done.total, "refund": done.refund, "payer_total": done.total, "payer_refund": done.refund}
        });
        let request = notify_request(
            &inner,
            use_pubkey,
            &done.notify_url,
            &id,
            "REFUND.SUCCESS",
            "refund",
            &resource,
        );
        let lose = b.lose_notifies;
        drop(b);
        if !lose {
            let standin = WechatPayStandIn {
                base: String::new(),
                inner: inner.clone(),
            };
            standin.deliver_with_retries(request);
        }
    } else {
        drop(b);
    }
    answer(&inner, use_pubkey, StatusCode::OK, Some(v))
}

/// WeChat Pay settings (the worker's or the shim's) for this stand-in at `base`: its merchant,
/// the test keys, and which verifying keys to configure (the platform certificate, the public key).
pub fn configure(
    w: &mut orderflow_worker::settings::WechatPaySettings,
    base: &str,
    certificate: bool,
    public_key: bool,
) {
    w.wechatpay_mchid = Some(MCHID.into());
    w.wechatpay_appid = Some(APPID.into());
    w.wechatpay_merchant_serial = Some(MERCHANT_SERIAL.into());
    w.wechatpay_merchant_key_file = Some(fixture_path("merchant_private_key.pem"));
    w.wechatpay_apiv3_key = Some(orderflow_worker::settings::SecretString::from(
        APIV3_KEY.to_owned(),
    ));
    if certificate {
        w.wechatpay_platform_cert_files = vec![fixture_path("platform_cert.pem")];
    }
    if public_key {
        w.wechatpay_public_key_id = Some(PUB_KEY_ID.into());
        w.wechatpay_public_key_file = Some(fixture_path("pubkey_public_key.pem"));
    }
    w.wechatpay_api_base = base.to_owned();
}
