//! Alipay open platform: the request signature over sorted parameters, response verification on
//! the raw `…_response` value, and notify verification.
//!
//! * **Requests** are form posts to one gateway. The common parameters (`app_id`, `method`,
//!   `format=JSON`, `charset=utf-8`, `sign_type=RSA2`, `timestamp` in Beijing time, `version=1.0`,
//!   `notify_url`) and `biz_content` (the method's JSON) are signed together: every parameter but
//!   `sign` and empty ones, sorted by key (byte order), `k=v` joined by `&`, **unencoded**, with
//!   `sign_type` included; SHA256withRSA with the application private key, base64.
//! * **Answers** are `{"<method with . → _>_response": {…}, "sign": "…"}`. The signature covers the
//!   raw bytes of the `…_response` value exactly as sent, so it is taken with [`RawValue`] and never
//!   re-serialised (key order and escapes would change). Gateway-level errors (bad app id, bad
//!   signature) may come unsigned and under `error_response`: they are believed only as errors.
//! * **Notifies** are form posts: every parameter but `sign` **and `sign_type`**, URL-decoded,
//!   sorted, joined the same way, verified with the Alipay public key. No timestamp rule exists;
//!   Alipay repeats a notify with the same `notify_id` until it reads exactly `success`.
//! * **Amounts** are yuan strings with two decimals in [0.01, 100000000], parsed exactly into fen.
//!
//! Nothing here reads the clock: the unix time is passed in.

use crate::rsa_keys::{PrivateKey, PublicKey};
use orderflow_domain::{Currency, Money};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The provider's name in Orderflow (`/v1/webhooks/alipay`, an order's `provider`).
pub const PROVIDER: &str = "alipay";
pub const DEFAULT_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";
/// The content type of a gateway request.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=utf-8";
/// `code` of a call that did what was asked.
pub const CODE_SUCCESS: &str = "10000";
/// Alipay's bounds on an amount, in fen: 0.01 to 100000000 yuan.
pub const MIN_AMOUNT_FEN: i64 = 1;
pub const MAX_AMOUNT_FEN: i64 = 100_000_000 * 100;
/// `subject` is at most 256 characters.
pub const SUBJECT_MAX_CHARS: usize = 256;

pub const METHOD_PRECREATE: &str = "alipay.trade.precreate";
pub const METHOD_PAGE_PAY: &str = "alipay.trade.page.pay";
pub const METHOD_QUERY: &str = "alipay.trade.query";
pub const METHOD_CLOSE: &str = "alipay.trade.close";
pub const METHOD_REFUND: &str = "alipay.trade.refund";
pub const METHOD_REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channel {
    /// `alipay.trade.precreate`: a QR code scanned with the Alipay app.
    #[default]
    Qr,
    /// `alipay.trade.page.pay`: the desktop cashier page on Alipay's site.
    Page,
}

/// One application's Alipay credentials. `Debug` shows ids, never a key.
#[derive(Debug, Clone)]
pub struct MerchantConfig {
    /// `app_id` of the application on the open platform.
    pub app_id: String,
    /// `seller_id`: the merchant's Alipay user id (PID, `2088…`) that receives the money.
    pub seller_id: String,
    /// The application private key: signs our requests.
    pub app_private_key: PrivateKey,
    /// The Alipay public key: verifies answers and notifies.
    pub alipay_public_key: PublicKey,
}

impl MerchantConfig {
    /// How a notify's merchant is written, so the shim can compare it with the configured one.
    pub fn merchant_id(&self) -> String {
        merchant_id(&self.app_id, &self.seller_id)
    }
}

/// `app_id=… seller_id=…`: both must be ours for a notify to count.
pub fn merchant_id(app_id: &str, seller_id: &str) -> String {
    format!("app_id={app_id} seller_id={seller_id}")
}

/// `yyyy-MM-dd HH:mm:ss` in Beijing time for a unix time in seconds.
pub fn beijing_time(unix_secs: i64) -> String {
    crate::china_time::wall_clock(unix_secs).replacen('T', " ", 1)
}

/// Why an amount string is not an Alipay amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an amount in yuan with at most two decimals in [0.01, 100000000]")]
pub struct AmountError(pub String);

/// `"88.80"` → 8880 fen, exactly (no float). Refuses signs, spaces, more than two decimals and
/// anything outside [0.01, 100000000].
pub fn parse_yuan(text: &str) -> Result<Money, AmountError> {
    let bad = || AmountError(text.chars().take(40).collect());
    let cny = Currency::parse("CNY").map_err(|_| bad())?;
    let money = Money::parse_major(text, cny).map_err(|_| bad())?;
    if !(MIN_AMOUNT_FEN..=MAX_AMOUNT_FEN).contains(&money.minor()) {
        return Err(bad());
    }
    Ok(money)
}

/// 8880 fen → `"88.80"`.
pub fn format_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The string that is signed: parameters sorted by key, `k=v` joined by `&`, unencoded; `sign`,
/// the keys in `skip`, and empty values left out.
pub fn sign_content<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    skip: &[&str],
) -> String {
    let sorted: BTreeMap<&str, &str> = params
        .into_iter()
        .filter(|(k, v)| *k != "sign" && !skip.contains(k) && !v.is_empty())
        .collect();
    let mut out = String::new();
    for (k, v) in sorted {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The parameters of one signed gateway request, `sign` included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub params: BTreeMap<String, String>,
}

impl SignedRequest {
    /// The request body: `application/x-www-form-urlencoded`, UTF-8.
    pub fn form_body(&self) -> String {
        encode_form(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The gateway URL carrying every parameter in its query: the redirect of
    /// `alipay.trade.page.pay` (GET on the gateway opens the cashier).
    pub fn gateway_url(&self, gateway: &str) -> String {
        let sep = if gateway.contains('?') { '&' } else { '?' };
        format!("{gateway}{sep}{}", self.form_body())
    }
}

/// `application/x-www-form-urlencoded` text of the pairs, in the order given.
pub fn encode_form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Builds and signs a request: the common parameters, `notify_url` (left out when empty),
/// `extra` (e.g. `return_url`) and `biz_content`. `unix_secs` is the time of the call.
pub fn sign_request(
    config: &MerchantConfig,
    method: &str,
    biz_content: &str,
    notify_url: &str,
    extra: &[(&str, &str)],
    unix_secs: i64,
) -> SignedRequest {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    let timestamp = beijing_time(unix_secs);
    for (k, v) in [
        ("app_id", config.app_id.as_str()),
        ("method", method),
        ("format", "JSON"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", timestamp.as_str()),
        ("version", "1.0"),
        ("notify_url", notify_url),
        ("biz_content", biz_content),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        if !v.is_empty() {
            params.insert(k.to_owned(), v.to_owned());
        }
    }
    let content = sign_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
    let sign = config.app_private_key.sign_base64(content.as_bytes());
    params.insert("sign".to_owned(), sign);
    SignedRequest { params }
}

/// `alipay.trade.query` → `alipay_trade_query_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// Why an answer from the gateway cannot be believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the answer is not the JSON object Alipay sends: {0}")]
    Malformed(String),
    #[error("the answer's sign does not verify with the Alipay public key")]
    BadSignature,
    #[error("the answer is a success without a sign")]
    UnsignedSuccess,
}

/// The fields every answer has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub sub_code: String,
    #[serde(default)]
    pub sub_msg: String,
}

impl Status {
    pub fn is_success(&self) -> bool {
        self.code == CODE_SUCCESS
    }
}

/// A verified answer: the `…_response` value's raw text, and whether a valid `sign` covered it
/// (only unsigned errors are let through as unsigned).
#[derive(Debug, Clone)]
pub struct Answer {
    pub raw: String,
    pub status: Status,
    pub signed: bool,
}

impl Answer {
    /// The method's own fields.
    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ResponseError> {
        serde_json::from_str(&self.raw).map_err(|e| ResponseError::Malformed(e.to_string()))
    }
}

/// Verifies an answer to `method` on its raw bytes. A signed answer must verify; an unsigned one
/// is accepted only as an error (`code` ≠ 10000), which is all Alipay sends unsigned.
pub fn verify_response(
    body: &[u8],
    method: &str,
    alipay_public_key: &PublicKey,
) -> Result<Answer, ResponseError> {
    let top: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|e| ResponseError::Malformed(e.to_string()))?;
    let raw = top
        .get(&response_key(method))
        .or_else(|| top.get("error_response"))
        .ok_or_else(|| ResponseError::Malformed(format!("no {}", response_key(method))))?;
    let sign = match top.get("sign") {
        None => None,
        Some(s) => Some(
            serde_json::from_str::<String>(s.get())
                .map_err(|_| ResponseError::Malformed("sign is not a string".into()))?,
        ),
    };
    let status: Status =
        serde_json::from_str(raw.get()).map_err(|e| ResponseError::Malformed(e.to_string()))?;
    let signed = match sign.as_deref() {
        Some(sign) if !sign.is_empty() => {
            if !alipay_public_key.verifies(raw.get().as_bytes(), sign) {
                return Err(ResponseError::BadSignature);
            }
            true
        }
        _ if status.is_success() => return Err(ResponseError::UnsignedSuccess),
        _ => false,
    };
    Ok(Answer {
        raw: raw.get().to_owned(),
        status,
        signed,
    })
}

/// `alipay.trade.precreate`'s answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrecreateResponse {
    #[serde(default)]
    pub out_trade_no: String,
    #[serde(default)]
    pub qr_code: String,
}

/// `alipay.trade.query`'s answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QueryResponse {
    #[serde(default)]
    pub trade_no: String,
    #[serde(default)]
    pub out_trade_no: String,
    /// WAIT_BUYER_PAY, TRADE_CLOSED, TRADE_SUCCESS, TRADE_FINISHED.
    #[serde(default)]
    pub trade_status: String,
    #[serde(default)]
    pub total_amount: String,
    /// When the money went to the seller: set for a trade that was paid, also after a full refund
    /// closed it.
    #[serde(default)]
    pub send_pay_date: String,
}

/// `alipay.trade.refund`'s answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RefundResponse {
    #[serde(default)]
    pub trade_no: String,
    #[serde(default)]
    pub out_trade_no: String,
    /// `Y`: money moved by this call. `N`: it did not (e.g. a repeat of a refund already made).
    #[serde(default)]
    pub fund_change: String,
    #[serde(default)]
    pub refund_fee: String,
}

/// `alipay.trade.fastpay.refund.query`'s answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RefundQueryResponse {
    #[serde(default)]
    pub out_request_no: String,
    /// `REFUND_SUCCESS`, or absent when no refund was received or it failed.
    #[serde(default)]
    pub refund_status: String,
    #[serde(default)]
    pub refund_amount: String,
}

/// Why a notify is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("the notify is not a UTF-8 form body")]
    NotAForm,
    #[error("parameter {0} appears more than once")]
    Duplicate(String),
    #[error("the notify has no sign")]
    MissingSign,
    #[error("sign_type is {0:?}, not RSA2")]
    WrongSignType(String),
    #[error("the sign does not verify with the Alipay public key")]
    BadSignature,
}

/// Verifies a notify's form body (raw bytes as received) and returns its decoded parameters,
/// `sign` and `sign_type` included.
pub fn verify_notify(
    body: &[u8],
    alipay_public_key: &PublicKey,
) -> Result<BTreeMap<String, String>, NotifyError> {
    let text = std::str::from_utf8(body).map_err(|_| NotifyError::NotAForm)?;
    let mut params = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        let key = k.into_owned();
        if params.contains_key(&key) {
            // Two values for one key make "what was signed" ambiguous.
            return Err(NotifyError::Duplicate(key.chars().take(40).collect()));
        }
        params.insert(key, v.into_owned());
    }
    let sign = params
        .get("sign")
        .filter(|s| !s.is_empty())
        .ok_or(NotifyError::MissingSign)?;
    let sign_type = params.get("sign_type").map(String::as_str).unwrap_or("");
    if sign_type != "RSA2" {
        return Err(NotifyError::WrongSignType(
            sign_type.chars().take(20).collect(),
        ));
    }
    let content = sign_content(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &["sign_type"],
    );
    if !alipay_public_key.verifies(content.as_bytes(), sign) {
        return Err(NotifyError::BadSignature);
    }
    Ok(params)
}

/// What a verified notify says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyKind {
    /// TRADE_SUCCESS / TRADE_FINISHED without refund fields: the customer paid.
    Paid,
    /// A refund was made (`refund_fee` / `out_biz_no` / `gmt_refund` present), whatever the
    /// trade_status says: a partial refund's notify still says TRADE_SUCCESS.
    Refund { out_biz_no: String },
    /// WAIT_BUYER_PAY, TRADE_CLOSED, or a status we do not know.
    Other(String),
}

/// A verified notify's fields, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub notify_id: String,
    pub app_id: String,
    pub seller_id: String,
    pub out_trade_no: String,
    pub trade_no: String,
    pub trade_status: String,
    pub total_amount: Option<Money>,
    pub refund_fee: Option<Money>,
    pub kind: NotifyKind,
}

/// Why a verified notify cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyParseError {
    #[error("the notify has no {0}")]
    Missing(&'static str),
    #[error("{field}: {error}")]
    Amount {
        field: &'static str,
        error: AmountError,
    },
}

/// Reads the fields of verified notify parameters.
pub fn parse_notify(params: &BTreeMap<String, String>) -> Result<Notify, NotifyParseError> {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let required = |k: &'static str| {
        Some(get(k))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or(NotifyParseError::Missing(k))
    };
    let amount = |field: &'static str| -> Result<Option<Money>, NotifyParseError> {
        match get(field) {
            "" => Ok(None),
            text => parse_yuan(text)
                .map(Some)
                .map_err(|error| NotifyParseError::Amount { field, error }),
        }
    };
    let trade_status = required("trade_status")?;
    let refund_fee = amount("refund_fee")?;
    let is_refund =
        refund_fee.is_some() || !get("out_biz_no").is_empty() || !get("gmt_refund").is_empty();
    let kind = if is_refund {
        NotifyKind::Refund {
            out_biz_no: required("out_biz_no")?,
        }
    } else if trade_status == "TRADE_SUCCESS" || trade_status == "TRADE_FINISHED" {
        NotifyKind::Paid
    } else {
        NotifyKind::Other(trade_status.clone())
    };
    let total_amount = amount("total_amount")?;
    if kind == NotifyKind::Paid && total_amount.is_none() {
        return Err(NotifyParseError::Missing("total_amount"));
    }
    Ok(Notify {
        notify_id: required("notify_id")?,
        app_id: required("app_id")?,
        seller_id: required("seller_id")?,
        out_trade_no: required("out_trade_no")?,
        trade_no: required("trade_no")?,
        trade_status,
        total_amount,
        refund_fee,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (PrivateKey, PublicKey) {
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/providers/alipay/"
        );
        let private = std::fs::read_to_string(format!("{root}alipay_private_key.pem")).unwrap();
        let public = std::fs::read_to_string(format!("{root}alipay_public_key.pem")).unwrap();
        (
            PrivateKey::from_text(&private).unwrap(),
            PublicKey::from_text(&public).unwrap(),
        )
    }

    #[test]
    fn beijing_time_is_utc_plus_eight() {
        assert_eq!(beijing_time(0), "1970-01-01 08:00:00");
        // 2014-07-24 03:07:50 Beijing, the timestamp of the docs' examples.
        assert_eq!(beijing_time(1_406_142_470), "2014-07-24 03:07:50");
        // 2024-02-29 16:00:00 UTC crosses midnight into March 1st in Beijing (leap year).
        assert_eq!(beijing_time(1_709_222_400), "2024-03-01 00:00:00");
        assert_eq!(beijing_time(1_735_660_799), "2024-12-31 23:59:59");
    }

    #[test]
    fn yuan_amounts_are_exact() {
        assert_eq!(parse_yuan("88.80").unwrap().minor(), 8880);
        assert_eq!(parse_yuan("0.01").unwrap().minor(), 1);
        assert_eq!(parse_yuan("168").unwrap().minor(), 16800);
        assert_eq!(parse_yuan("100000000.00").unwrap().minor(), MAX_AMOUNT_FEN);
        // Floats would give 0.29 * 100 = 28.999…
        assert_eq!(parse_yuan("0.29").unwrap().minor(), 29);
        for bad in [
            "",
            "0",
            "0.00",
            "0.001",
            "88.801",
            "-1.00",
            "+1.00",
            " 1.00",
            "1.00 ",
            "1,00",
            "1e2",
            "100000000.01",
            ".5",
            "5.",
            "NaN",
            "１.00",
        ] {
            assert!(parse_yuan(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_yuan(8880), "88.80");
        assert_eq!(format_yuan(1), "0.01");
        assert_eq!(format_yuan(16800), "168.00");
        for fen in [1, 9, 10, 99, 100, 8880, MAX_AMOUNT_FEN] {
            assert_eq!(parse_yuan(&format_yuan(fen)).unwrap().minor(), fen);
        }
    }

    #[test]
    fn sign_content_sorts_and_skips_empty_values_and_sign() {
        // The shape of the open platform's "自行实现签名" example.
        let params = [
            ("method", "alipay.trade.pay"),
            ("app_id", "2014072300007148"),
            ("sign", "ignored"),
            ("charset", "GBK"),
            ("empty", ""),
            ("biz_content", "{\"a\":\"1\"}"),
            ("sign_type", "RSA2"),
        ];
        assert_eq!(
            sign_content(params, &[]),
            "app_id=2014072300007148&biz_content={\"a\":\"1\"}&charset=GBK&method=alipay.trade.pay&sign_type=RSA2"
        );
        assert_eq!(
            sign_content(params, &["sign_type"]),
            "app_id=2014072300007148&biz_content={\"a\":\"1\"}&charset=GBK&method=alipay.trade.pay"
        );
    }

    /// The open platform's own example ("自行实现签名"): its request parameters and the string it
    /// says is signed (its key is not published, so only the string is checked).
    #[test]
    fn the_documented_example_signs_the_documented_string() {
        let biz = r#"{"button":[{"actionParam":"ZFB_HFCZ","actionType":"out","name":"话费充值"},{"name":"查询","subButton":[{"actionParam":"ZFB_YECX","actionType":"out","name":"余额查询"},{"actionParam":"ZFB_LLCX","actionType":"out","name":"流量查询"},{"actionParam":"ZFB_HFCX","actionType":"out","name":"话费查询"}]},{"actionParam":"http://m.alipay.com","actionType":"link","name":"最新优惠"}]}"#;
        let params = [
            ("app_id", "2014072300007148"),
            ("method", "alipay.mobile.public.menu.add"),
            ("charset", "GBK"),
            ("sign_type", "RSA2"),
            ("timestamp", "2014-07-24 03:07:50"),
            ("biz_content", biz),
            (
                "sign",
                "e9zEAe4TTQ4LPLQvETPoLGXTiURcxiAKfMVQ6Hrrsx2hmyIEGvSfAQzbLxHrhyZ48wOJXTsD4FPnt+YGdK57+fP1BCbf9rIVycfjhYCqlFhbTu9pFnZgT55W+xbAFb9y7vL0MyAxwXUXvZtQVqEwW7pURtKilbcBTEW7TAxzgro=",
            ),
            ("version", "1.0"),
        ];
        let expected = format!(
            "app_id=2014072300007148&biz_content={biz}&charset=GBK&method=alipay.mobile.public.menu.add&sign_type=RSA2&timestamp=2014-07-24 03:07:50&version=1.0"
        );
        assert_eq!(sign_content(params, &[]), expected);
    }

    #[test]
    fn requests_are_signed_over_the_sorted_unencoded_parameters() {
        let (private, public) = keys();
        let config = MerchantConfig {
            app_id: "2021000000000001".into(),
            seller_id: "2088000000000001".into(),
            app_private_key: private,
            alipay_public_key: public.clone(),
        };
        let req = sign_request(
            &config,
            METHOD_QUERY,
            r#"{"out_trade_no":"pay_1"}"#,
            "https://shop.example/n?a=b&c=d",
            &[],
            0,
        );
        let p = &req.params;
        assert_eq!(p["timestamp"], "1970-01-01 08:00:00");
        assert_eq!(p["sign_type"], "RSA2");
        let content = "app_id=2021000000000001&biz_content={\"out_trade_no\":\"pay_1\"}&charset=utf-8&format=JSON&method=alipay.trade.query&notify_url=https://shop.example/n?a=b&c=d&sign_type=RSA2&timestamp=1970-01-01 08:00:00&version=1.0";
        assert!(public.verifies(content.as_bytes(), &p["sign"]));
        // The form body round-trips to the same parameters.
        let back: BTreeMap<String, String> =
            url::form_urlencoded::parse(req.form_body().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(&back, p);
        assert!(
            req.gateway_url(DEFAULT_GATEWAY)
                .starts_with(DEFAULT_GATEWAY)
        );
    }

    #[test]
    fn answers_are_verified_on_the_raw_response_value() {
        let (private, public) = keys();
        // Spacing, key order and an escaped slash that re-serialising would all change.
        let inner = r#"{"code":"10000","msg":"Success", "trade_status":"TRADE_SUCCESS","total_amount":"88.80","out_trade_no":"pay_1","trade_no":"2014\/1"}"#;
        let sign = private.sign_base64(inner.as_bytes());
        let body = format!(r#"{{"alipay_trade_query_response":{inner},"sign":"{sign}"}}"#);
        let answer = verify_response(body.as_bytes(), METHOD_QUERY, &public).unwrap();
        assert!(answer.signed && answer.status.is_success());
        let q: QueryResponse = answer.parse().unwrap();
        assert_eq!(q.trade_no, "2014/1");
        assert_eq!(parse_yuan(&q.total_amount).unwrap().minor(), 8880);

        let tampered = body.replace("88.80", "88.81");
        assert_eq!(
            verify_response(tampered.as_bytes(), METHOD_QUERY, &public).unwrap_err(),
            ResponseError::BadSignature
        );
        // The sign of another method's answer does not carry over.
        assert!(verify_response(body.as_bytes(), METHOD_CLOSE, &public).is_err());
        let unsigned_success = format!(r#"{{"alipay_trade_query_response":{inner}}}"#);
        assert_eq!(
            verify_response(unsigned_success.as_bytes(), METHOD_QUERY, &public).unwrap_err(),
            ResponseError::UnsignedSuccess
        );
        let unsigned_error = r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}}"#;
        let answer = verify_response(unsigned_error.as_bytes(), METHOD_QUERY, &public).unwrap();
        assert!(!answer.signed);
        assert_eq!(answer.status.sub_code, "isv.invalid-signature");
        for junk in [&b""[..], b"[]", b"{", b"{\"sign\":1}", b"\xff"] {
            assert!(verify_response(junk, METHOD_QUERY, &public).is_err());
        }
    }

    fn notify_body(private: &PrivateKey, fields: &[(&str, &str)]) -> String {
        let content = sign_content(fields.iter().copied(), &["sign_type"]);
        let sign = private.sign_base64(content.as_bytes());
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter().copied())
            .append_pair("sign", &sign)
            .append_pair("sign_type", "RSA2")
            .finish()
    }

    const PAID: &[(&str, &str)] = &[
        ("notify_id", "ac05099524730693a8b330c5ecf72da9786"),
        ("notify_time", "2015-14-27 15:45:58"),
        ("notify_type", "trade_status_sync"),
        ("app_id", "2021000000000001"),
        ("seller_id", "2088000000000001"),
        ("out_trade_no", "pay_1"),
        ("trade_no", "2013112011001004330000121536"),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "88.80"),
        ("subject", "月饼 & tea = 1+1"),
    ];

    #[test]
    fn notifies_are_verified_decoded_and_read() {
        let (private, public) = keys();
        let body = notify_body(&private, PAID);
        let params = verify_notify(body.as_bytes(), &public).unwrap();
        assert_eq!(params["subject"], "月饼 & tea = 1+1");
        let notify = parse_notify(&params).unwrap();
        assert_eq!(notify.kind, NotifyKind::Paid);
        assert_eq!(notify.total_amount.unwrap().minor(), 8880);
        assert_eq!(notify.trade_no, "2013112011001004330000121536");

        let tampered = body.replace("88.80", "88.81");
        assert_eq!(
            verify_notify(tampered.as_bytes(), &public),
            Err(NotifyError::BadSignature)
        );
        let rsa1 = body.replace("sign_type=RSA2", "sign_type=RSA");
        assert!(matches!(
            verify_notify(rsa1.as_bytes(), &public),
            Err(NotifyError::WrongSignType(_))
        ));
        let twice = format!("{body}&total_amount=0.01");
        assert!(matches!(
            verify_notify(twice.as_bytes(), &public),
            Err(NotifyError::Duplicate(_))
        ));
        assert_eq!(
            verify_notify(b"a=b", &public),
            Err(NotifyError::MissingSign)
        );
    }

    #[test]
    fn a_partial_refund_notify_is_a_refund_not_a_payment() {
        let (private, public) = keys();
        let mut fields = PAID.to_vec();
        fields.extend([
            ("refund_fee", "10.00"),
            ("out_biz_no", "rf_1"),
            ("gmt_refund", "2024-01-01 10:00:00.123"),
        ]);
        let body = notify_body(&private, &fields);
        let notify = parse_notify(&verify_notify(body.as_bytes(), &public).unwrap()).unwrap();
        assert_eq!(
            notify.kind,
            NotifyKind::Refund {
                out_biz_no: "rf_1".into()
            }
        );
        assert_eq!(notify.refund_fee.unwrap().minor(), 1000);
    }
}
