//! A stand-in for the Alipay open platform gateway: one POST endpoint (`/gateway.do`) that
//! dispatches on `method` (`alipay.trade.precreate`, `.query`, `.close`, `.refund`,
//! `.fastpay.refund.query`), and the asynchronous notifies Alipay sends.
//!
//! It is written from Alipay's documentation, not from `orderflow_protocols::alipay` (only the
//! RSA primitives are shared), so a bug in our message construction cannot hide behind the same
//! bug here. Each request is checked as the gateway would: form encoding, the common parameters
//! (`app_id`, `format=JSON`, `charset=utf-8`, `sign_type=RSA2`, a `timestamp` in Beijing time
//! within minutes of now, `version=1.0`), the RSA2 signature with the application's public key
//! over the sorted unencoded parameters (`sign_type` included), and each method's required
//! fields, formats and lengths. What breaks the documented shape is recorded as a violation and
//! refused with Alipay's `40002 isv.invalid-signature` / `40004 ACQ.INVALID_PARAMETER`.
//!
//! Answers are `{"<method>_response": {…}, "sign": "…"}`, signed with the stand-in's Alipay
//! private key over the `…_response` text exactly as sent, which is pretty-printed on purpose: a
//! client that re-serialises before verifying fails here.
//!
//! Test controls: the customer scans (the trade comes to exist, WAIT_BUYER_PAY) and pays (the full
//! amount or another; also after a close that found no trade), notifies are built and signed,
//! forged, tampered, sent once or on Alipay's retry schedule (compressed) until the answer is
//! exactly `success`; outages; a refund whose answer is lost, so the repeat gets `fund_change=N`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use orderflow_protocols::rsa_keys::{PrivateKey, PublicKey};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const APP_ID: &str = "2021000117600001";
pub const SELLER_ID: &str = "2088621000000001";

/// Alipay's notify retry schedule (4m, 10m, 10m, 1h, 2h, 6h, 15h), in minutes.
pub const RETRY_MINUTES: [u64; 7] = [4, 10, 10, 60, 120, 360, 900];

pub fn fixture(name: &str) -> std::path::PathBuf {
    crate::workspace_root()
        .join("tests/fixtures/providers/alipay")
        .join(name)
}

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("alipay fixture")
}

/// One trade as the gateway keeps it. A precreated QR nobody scanned is no trade yet
/// (`scanned == false`): query and close answer `ACQ.TRADE_NOT_EXIST`, yet it can still be paid.
#[derive(Debug, Clone)]
pub struct Trade {
    pub out_trade_no: String,
    pub total_amount: String,
    pub subject: String,
    pub time_expire: String,
    pub notify_url: String,
    pub qr_code: String,
    pub trade_no: String,
    pub scanned: bool,
    /// WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_CLOSED.
    pub status: String,
    pub paid_amount: Option<String>,
    pub paid_fen: i64,
    pub refunded_fen: i64,
    /// `out_request_no` → refund amount in fen.
    pub refunds: BTreeMap<String, i64>,
}

#[derive(Default)]
struct Books {
    trades: BTreeMap<String, Trade>,
    violations: Vec<String>,
    /// Requests answered with HTTP 503 before anything else happens.
    outage: usize,
    /// Requests answered with `code=20000` (service unavailable), signed.
    unavailable: usize,
    /// Answers whose `…_response` is changed after signing (the next ones), or sent unsigned.
    tamper: usize,
    unsigned: usize,
    /// Refunds processed whose answer is then lost (HTTP 502).
    lose_refund_answers: usize,
    calls: Vec<(String, String)>,
    /// Trades whose customer pays just as our close arrives (between our query and close).
    pay_on_close: std::collections::BTreeSet<String>,
    money_moves: Vec<(String, String, i64)>,
    next: u64,
}

#[derive(Clone)]
pub struct AlipayStandIn {
    books: Arc<Mutex<Books>>,
    pub gateway: String,
    app_public: Arc<PublicKey>,
    alipay_private: Arc<PrivateKey>,
    http: reqwest::Client,
    /// Real minutes of Alipay's retry schedule become this much here.
    pub minute: Duration,
}

type Reply = (StatusCode, String);

impl AlipayStandIn {
    pub async fn spawn() -> AlipayStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let standin = AlipayStandIn {
            books: Arc::default(),
            gateway: format!("http://{}/gateway.do", listener.local_addr().unwrap()),
            app_public: Arc::new(
                PublicKey::from_text(&read_fixture("app_public_key.pem")).unwrap(),
            ),
            alipay_private: Arc::new(
                PrivateKey::from_text(&read_fixture("alipay_private_key.pem")).unwrap(),
            ),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            minute: Duration::from_millis(10),
        };
        let app = Router::new()
            .route("/gateway.do", post(gateway))
            .with_state(standin.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        standin
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap()
    }

    // -- test controls --------------------------------------------------------------------------

    /// The next `n` requests get HTTP 503, the `m` after them `code=20000`.
    pub fn go_down(&self, n: usize, m: usize) {
        let mut b = self.books();
        b.outage = n;
        b.unavailable = m;
    }

    /// The next `n` answers are changed after they were signed; the `m` after them carry no sign.
    pub fn corrupt_answers(&self, n: usize, m: usize) {
        let mut b = self.books();
        b.tamper = n;
        b.unsigned = m;
    }

    /// The next refund is made, but its answer never reaches the client.
    pub fn lose_next_refund_answer(&self) {
        self.books().lose_refund_answers += 1;
    }

    /// The customer of this (scanned) trade pays in the instant before our close arrives.
    pub fn pay_when_closed(&self, out_trade_no: &str) {
        self.books().pay_on_close.insert(out_trade_no.to_owned());
    }

    pub fn trade(&self, out_trade_no: &str) -> Option<Trade> {
        self.books().trades.get(out_trade_no).cloned()
    }

    /// How many calls of `method` named `out_trade_no`.
    pub fn calls(&self, method: &str, out_trade_no: &str) -> usize {
        self.books()
            .calls
            .iter()
            .filter(|(m, o)| m == method && o == out_trade_no)
            .count()
    }

    /// Refunds that moved money for this trade: (out_request_no, fen).
    pub fn money_moves(&self, out_trade_no: &str) -> Vec<(String, i64)> {
        self.books()
            .money_moves
            .iter()
            .filter(|(o, _, _)| o == out_trade_no)
            .map(|(_, r, f)| (r.clone(), *f))
            .collect()
    }

    pub fn assert_no_violations(&self) {
        let b = self.books();
        assert!(
            b.violations.is_empty(),
            "requests that break Alipay's documented shape: {:#?}",
            b.violations
        );
    }

    /// The customer scans the QR: the trade comes to exist, waiting for payment.
    pub fn scan(&self, out_trade_no: &str) {
        let mut b = self.books();
        b.next += 1;
        let trade_no = format!("2026120722001{:015}", b.next);
        let t = b.trades.get_mut(out_trade_no).expect("a precreated trade");
        assert_eq!(t.status, "WAIT_BUYER_PAY", "only an open QR can be scanned");
        t.scanned = true;
        t.trade_no = trade_no;
    }

    /// The customer pays (`yuan` = what they paid; the order's amount when `None`) and the
    /// notify Alipay would send is returned, not sent. Works on a QR whose close found no trade:
    /// Alipay's QR stays payable until it expires.
    pub fn pay(&self, out_trade_no: &str, yuan: Option<&str>) -> BTreeMap<String, String> {
        {
            let mut b = self.books();
            let t = b.trades.get_mut(out_trade_no).expect("a precreated trade");
            assert!(t.scanned, "scan before paying");
            assert_eq!(t.status, "WAIT_BUYER_PAY", "only an open trade can be paid");
            let paid = yuan.unwrap_or(&t.total_amount).to_owned();
            t.paid_fen = fen(&paid).expect("a yuan amount");
            t.paid_amount = Some(paid);
            t.status = "TRADE_SUCCESS".into();
        }
        self.notify(out_trade_no)
    }

    /// The notify for the trade's current state (a fresh `notify_id`, reused by every retry).
    pub fn notify(&self, out_trade_no: &str) -> BTreeMap<String, String> {
        let mut b = self.books();
        b.next += 1;
        let id = b.next;
        let t = b.trades.get(out_trade_no).expect("a trade");
        let paid = t
            .paid_amount
            .clone()
            .unwrap_or_else(|| t.total_amount.clone());
        let mut p = BTreeMap::new();
        for (k, v) in [
            ("notify_time", beijing_now()),
            ("notify_type", "trade_status_sync".into()),
            ("notify_id", format!("2026120700222{id:020}")),
            ("charset", "utf-8".into()),
            ("version", "1.0".into()),
            ("sign_type", "RSA2".into()),
            ("auth_app_id", APP_ID.into()),
            ("app_id", APP_ID.into()),
            ("seller_id", SELLER_ID.into()),
            ("buyer_id", "2088102177846880".into()),
            ("trade_no", t.trade_no.clone()),
            ("out_trade_no", t.out_trade_no.clone()),
            ("trade_status", t.status.clone()),
            ("total_amount", paid.clone()),
            ("receipt_amount", paid.clone()),
            ("buyer_pay_amount", paid),
            ("subject", t.subject.clone()),
            ("gmt_create", beijing_now()),
            ("gmt_payment", beijing_now()),
            (
                "fund_bill_list",
                r#"[{"amount":"1.00","fundChannel":"ALIPAYACCOUNT"}]"#.into(),
            ),
        ] {
            p.insert(k.to_owned(), v);
        }
        p
    }

    /// The notify Alipay sends after a refund: refund fields on the trade's status (TRADE_SUCCESS
    /// after a partial refund, TRADE_CLOSED after a full one).
    pub fn refund_notify(
        &self,
        out_trade_no: &str,
        out_request_no: &str,
        refund_yuan: &str,
        status: &str,
    ) -> BTreeMap<String, String> {
        let mut p = self.notify(out_trade_no);
        p.insert("trade_status".into(), status.into());
        p.insert("refund_fee".into(), refund_yuan.into());
        p.insert("out_biz_no".into(), out_request_no.into());
        p.insert("gmt_refund".into(), format!("{}.123", beijing_now()));
        p
    }

    /// The form body Alipay posts: every parameter but `sign`/`sign_type`, sorted, `k=v` joined,
    /// signed with the Alipay private key (or `key`, to forge).
    pub fn signed_form(&self, params: &BTreeMap<String, String>) -> String {
        self.form_signed_by(params, &self.alipay_private)
    }

    pub fn form_signed_by(&self, params: &BTreeMap<String, String>, key: &PrivateKey) -> String {
        let content = params
            .iter()
            .filter(|(k, v)| *k != "sign" && *k != "sign_type" && !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            ser.append_pair(k, v);
        }
        ser.append_pair("sign", &key.sign_base64(content.as_bytes()));
        ser.finish()
    }

    /// One post of a notify form to the trade's `notify_url`: (status, body).
    pub async fn post_notify(&self, out_trade_no: &str, form: &str) -> (u16, String) {
        let url = self
            .trade(out_trade_no)
            .expect("a trade")
            .notify_url
            .clone();
        let response = self
            .http
            .post(url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(form.to_owned())
            .send()
            .await
            .expect("the shim answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Alipay's delivery: sends, and again on the (compressed) retry schedule, until the body is
    /// exactly `success`. Returns how many sends it took, `None` if none succeeded.
    pub async fn deliver(&self, out_trade_no: &str, form: &str) -> Option<usize> {
        self.deliver_every(self.minute, out_trade_no, form).await
    }

    /// [`AlipayStandIn::deliver`] with Alipay's minute compressed to `minute`.
    pub async fn deliver_every(
        &self,
        minute: Duration,
        out_trade_no: &str,
        form: &str,
    ) -> Option<usize> {
        for attempt in 0..=RETRY_MINUTES.len() {
            if attempt > 0 {
                tokio::time::sleep(minute * RETRY_MINUTES[attempt - 1] as u32).await;
            }
            let (_, body) = self.post_notify(out_trade_no, form).await;
            if body == "success" {
                return Some(attempt + 1);
            }
        }
        None
    }

    // -- the gateway ----------------------------------------------------------------------------

    fn sign_answer(&self, method: &str, inner: &Value) -> String {
        // Pretty-printed: whitespace a re-serialising client would not reproduce.
        let text = serde_json::to_string_pretty(inner).unwrap();
        let sign = self.alipay_private.sign_base64(text.as_bytes());
        format!(
            "{{\"{}_response\":{text},\"sign\":\"{sign}\"}}",
            method.replace('.', "_")
        )
    }

    fn handle(&self, headers: &HeaderMap, body: &Bytes) -> Reply {
        let mut b = self.books();
        if b.outage > 0 {
            b.outage -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "busy".into());
        }
        let ok = |inner: Value, method: &str| (StatusCode::OK, self.sign_answer(method, &inner));
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            b.violations.push(format!("content type {content_type:?}"));
        }
        let mut params = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if params.insert(k.to_string(), v.to_string()).is_some() {
                b.violations.push(format!("parameter {k} sent twice"));
            }
        }
        let method = params.get("method").cloned().unwrap_or_default();
        let invalid = |b: &mut Books, why: String, sub: &str| {
            b.violations.push(format!("{method}: {why}"));
            // Gateway-level refusals come unsigned.
            (
                StatusCode::OK,
                json!({format!("{}_response", method.replace('.', "_")): {
                    "code": "40002", "msg": "Invalid Arguments", "sub_code": sub, "sub_msg": why}})
                .to_string(),
            )
        };
        // The common parameters.
        for (k, want) in [
            ("app_id", Some(APP_ID)),
            ("format", Some("JSON")),
            ("charset", Some("utf-8")),
            ("sign_type", Some("RSA2")),
            ("version", Some("1.0")),
            ("timestamp", None),
            ("sign", None),
            ("biz_content", None),
        ] {
            match (params.get(k), want) {
                (None, _) => return invalid(&mut b, format!("no {k}"), "isv.missing-parameter"),
                (Some(v), Some(w)) if v != w => {
                    return invalid(&mut b, format!("{k} is {v:?}"), "isv.invalid-parameter");
                }
                _ => {}
            }
        }
        let timestamp = &params["timestamp"];
        if !is_datetime(timestamp) || !within_minutes_of_beijing_now(timestamp, 10) {
            return invalid(
                &mut b,
                format!("timestamp {timestamp:?} is not Beijing time now"),
                "isv.invalid-timestamp",
            );
        }
        let content = params
            .iter()
            .filter(|(k, v)| *k != "sign" && !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        if !self
            .app_public
            .verifies(content.as_bytes(), &params["sign"])
        {
            return invalid(&mut b, "bad signature".into(), "isv.invalid-signature");
        }
        let Ok(Value::Object(biz)) = serde_json::from_str::<Value>(&params["biz_content"]) else {
            return invalid(
                &mut b,
                "biz_content is not a JSON object".into(),
                "isv.invalid-parameter",
            );
        };
        let text = |k: &str| {
            biz.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let out_trade_no = text("out_trade_no");
        b.calls.push((method.clone(), out_trade_no.clone()));
        if out_trade_no.is_empty() || out_trade_no.len() > 64 {
            return invalid(
                &mut b,
                format!("out_trade_no {out_trade_no:?}"),
                "isv.invalid-parameter",
            );
        }
        if b.unavailable > 0 {
            b.unavailable -= 1;
            return ok(
                json!({"code": "20000", "msg": "Service Currently Unavailable",
                       "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"}),
                &method,
            );
        }
        let fail = |sub: &str, msg: &str| json!({"code": "40004", "msg": "Business Failed", "sub_code": sub, "sub_msg": msg});
        match method.as_str() {
            "alipay.trade.precreate" => {
                let amount = text("total_amount");
                let subject = text("subject");
                let expire = text("time_expire");
                let notify_url = params.get("notify_url").cloned().unwrap_or_default();
                if fen(&amount).is_none() {
                    return invalid(
                        &mut b,
                        format!("total_amount {amount:?}"),
                        "isv.invalid-parameter",
                    );
                }
                if subject.is_empty() || subject.chars().count() > 256 {
                    return invalid(
                        &mut b,
                        format!("subject {subject:?}"),
                        "isv.invalid-parameter",
                    );
                }
                if !is_datetime(&expire) {
                    return invalid(
                        &mut b,
                        format!("time_expire {expire:?}"),
                        "isv.invalid-parameter",
                    );
                }
                if !notify_url.starts_with("http") {
                    return invalid(
                        &mut b,
                        format!("notify_url {notify_url:?}"),
                        "isv.invalid-parameter",
                    );
                }
                if let Some(t) = b.trades.get(&out_trade_no) {
                    // A repeat: the same content gets the same QR code.
                    let inner = if t.status == "TRADE_SUCCESS" {
                        fail("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
                    } else if t.total_amount != amount || t.subject != subject {
                        fail("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
                    } else {
                        json!({"code": "10000", "msg": "Success", "out_trade_no": out_trade_no,
                               "qr_code": t.qr_code})
                    };
                    return ok(inner, &method);
                }
                b.next += 1;
                let qr_code = format!("https://qr.alipay.com/bax0{:04}standin", b.next);
                b.trades.insert(
                    out_trade_no.clone(),
                    Trade {
                        out_trade_no: out_trade_no.clone(),
                        total_amount: amount,
                        subject,
                        time_expire: expire,
                        notify_url,
                        qr_code: qr_code.clone(),
                        trade_no: String::new(),
                        scanned: false,
                        status: "WAIT_BUYER_PAY".into(),
                        paid_amount: None,
                        paid_fen: 0,
                        refunded_fen: 0,
                        refunds: BTreeMap::new(),
                    },
                );
                ok(
                    json!({"code": "10000", "msg": "Success", "out_trade_no": out_trade_no,
                           "qr_code": qr_code}),
                    &method,
                )
            }
            "alipay.trade.query" => match b.trades.get(&out_trade_no).filter(|t| t.scanned) {
                None => ok(fail("ACQ.TRADE_NOT_EXIST", "交易不存在"), &method),
                Some(t) => {
                    let mut inner = json!({"code": "10000", "msg": "Success",
                        "trade_no": t.trade_no, "out_trade_no": t.out_trade_no,
                        "buyer_logon_id": "159****5620", "trade_status": t.status,
                        "total_amount": t.paid_amount.clone().unwrap_or(t.total_amount.clone())});
                    if t.paid_amount.is_some() {
                        inner["send_pay_date"] = json!("2026-12-07 23:00:00");
                    }
                    ok(inner, &method)
                }
            },
            "alipay.trade.close" => {
                if b.pay_on_close.remove(&out_trade_no)
                    && let Some(t) = b.trades.get_mut(&out_trade_no).filter(|t| t.scanned)
                {
                    t.paid_fen = fen(&t.total_amount).unwrap_or(0);
                    t.paid_amount = Some(t.total_amount.clone());
                    t.status = "TRADE_SUCCESS".into();
                }
                let inner = match b.trades.get_mut(&out_trade_no).filter(|t| t.scanned) {
                    None => fail("ACQ.TRADE_NOT_EXIST", "交易不存在"),
                    Some(t) if t.status == "WAIT_BUYER_PAY" => {
                        t.status = "TRADE_CLOSED".into();
                        json!({"code": "10000", "msg": "Success", "trade_no": t.trade_no,
                               "out_trade_no": t.out_trade_no})
                    }
                    Some(_) => fail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
                };
                ok(inner, &method)
            }
            "alipay.trade.refund" => {
                let request_no = text("out_request_no");
                let amount = text("refund_amount");
                let reason = text("refund_reason");
                let Some(refund_fen) = fen(&amount) else {
                    return invalid(
                        &mut b,
                        format!("refund_amount {amount:?}"),
                        "isv.invalid-parameter",
                    );
                };
                if request_no.is_empty() || request_no.len() > 64 || reason.chars().count() > 256 {
                    return invalid(
                        &mut b,
                        format!("out_request_no {request_no:?} / refund_reason"),
                        "isv.invalid-parameter",
                    );
                }
                let lose = b.lose_refund_answers > 0;
                let Some(t) = b.trades.get_mut(&out_trade_no).filter(|t| t.scanned) else {
                    return ok(fail("ACQ.TRADE_NOT_EXIST", "交易不存在"), &method);
                };
                let answer = |t: &Trade, change: &str| {
                    json!({"code": "10000", "msg": "Success", "trade_no": t.trade_no,
                        "out_trade_no": t.out_trade_no, "buyer_logon_id": "159****5620",
                        "fund_change": change, "refund_fee": yuan(t.refunded_fen),
                        "gmt_refund_pay": "2026-12-07 23:10:00"})
                };
                if let Some(&done) = t.refunds.get(&request_no) {
                    if done != refund_fen {
                        return ok(
                            fail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额不一致"),
                            &method,
                        );
                    }
                    // The repeat of a refund already made: accepted, no money moves.
                    let inner = answer(t, "N");
                    return ok(inner, &method);
                }
                if t.paid_fen == 0 {
                    return ok(fail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"), &method);
                }
                if t.refunded_fen + refund_fen > t.paid_fen {
                    return ok(
                        fail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限"),
                        &method,
                    );
                }
                t.refunds.insert(request_no.clone(), refund_fen);
                t.refunded_fen += refund_fen;
                if t.refunded_fen == t.paid_fen {
                    t.status = "TRADE_CLOSED".into();
                }
                let inner = answer(t, "Y");
                b.money_moves.push((out_trade_no, request_no, refund_fen));
                if lose {
                    b.lose_refund_answers -= 1;
                    return (StatusCode::BAD_GATEWAY, "upstream reset".into());
                }
                ok(inner, &method)
            }
            "alipay.trade.fastpay.refund.query" => {
                let request_no = text("out_request_no");
                if request_no.is_empty() {
                    return invalid(&mut b, "no out_request_no".into(), "isv.missing-parameter");
                }
                let inner = match b
                    .trades
                    .get(&out_trade_no)
                    .and_then(|t| t.refunds.get(&request_no).map(|f| (t, *f)))
                {
                    Some((t, f)) => json!({"code": "10000", "msg": "Success",
                        "trade_no": t.trade_no, "out_trade_no": t.out_trade_no,
                        "out_request_no": request_no, "total_amount": t.paid_amount,
                        "refund_amount": yuan(f), "refund_status": "REFUND_SUCCESS"}),
                    // Unknown refund: a success without refund_status, as documented.
                    None => json!({"code": "10000", "msg": "Success",
                        "out_trade_no": out_trade_no, "out_request_no": request_no}),
                };
                ok(inner, &method)
            }
            other => invalid(
                &mut b,
                format!("unknown method {other:?}"),
                "isv.invalid-method",
            ),
        }
    }
}

async fn gateway(State(s): State<AlipayStandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let (status, mut text) = s.handle(&headers, &body);
    {
        let mut b = s.books();
        if b.tamper > 0 {
            b.tamper -= 1;
            // A man in the middle: the signed text changed, the sign kept.
            text = text
                .replacen("\"msg\"", "\"msg\" ", 1)
                .replacen("Success", "Succes5", 1);
        } else if b.unsigned > 0 {
            b.unsigned -= 1;
            if let Some(at) = text.rfind(",\"sign\":") {
                text = format!("{}}}", &text[..at]);
            }
        }
    }
    (status, [("content-type", "text/html;charset=utf-8")], text).into_response()
}

/// `"88.80"` → 8880, by Alipay's rule: digits, at most two decimals, 0.01 to 100000000.
pub fn fen(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || whole.len() > 9
        || frac.len() > 2
        || (text.contains('.') && frac.is_empty())
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let value = whole.parse::<i64>().ok()? * 100 + format!("{frac:0<2}").parse::<i64>().ok()?;
    (1..=10_000_000_000).contains(&value).then_some(value)
}

pub fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

fn is_datetime(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Now in Beijing, `yyyy-MM-dd HH:mm:ss`, counted out day by day from 1970 (a different way
/// from the client's, on purpose).
pub fn beijing_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 8 * 3600;
    beijing(secs)
}

fn beijing(local_secs: u64) -> String {
    let mut days = local_secs / 86_400;
    let rest = local_secs % 86_400;
    let mut year = 1970;
    loop {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let len = if leap { 366 } else { 365 };
        if days < len {
            let months = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let mut month = 0;
            while days >= months[month] {
                days -= months[month];
                month += 1;
            }
            return format!(
                "{year:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                month + 1,
                days + 1,
                rest / 3600,
                rest % 3600 / 60,
                rest % 60
            );
        }
        days -= len;
        year += 1;
    }
}

fn within_minutes_of_beijing_now(timestamp: &str, minutes: u64) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 8 * 3600;
    let window = minutes * 60;
    // Lexicographic order is time order for this format.
    let earliest = beijing(now - window);
    let latest = beijing(now + window);
    earliest.as_str() <= timestamp && timestamp <= latest.as_str()
}
