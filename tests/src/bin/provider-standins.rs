//! The WeChat Pay and Alipay stand-ins of the test suite, as one process for the demo
//! (`scripts/up.sh`): each speaks its provider's protocol on a port of its own, with the test
//! keys of `tests/fixtures/providers/`, and sends its signed notifies to the `notify_url` the
//! worker gave it. A small control server plays the customer's phone:
//!
//! * `POST /wechatpay/pay/{out_trade_no}`: the customer pays the WeChat Pay order;
//! * `POST /alipay/pay/{out_trade_no}`: the customer scans the Alipay QR code and pays.
//!
//! Prints one JSON line with the three addresses, then serves until killed. A development tool:
//! nothing in it is a real provider, and its keys protect nothing.
//!
//!   provider-standins [--control-port N]

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use orderflow_tests::alipay_standin::AlipayStandIn;
use orderflow_tests::wechatpay_standin::WechatPayStandIn;

#[derive(Clone)]
struct Phones {
    wechatpay: WechatPayStandIn,
    alipay: AlipayStandIn,
}

async fn pay_wechatpay(
    State(phones): State<Phones>,
    Path(out_trade_no): Path<String>,
) -> (StatusCode, String) {
    if phones.wechatpay.trade_state(&out_trade_no).as_deref() != Some("NOTPAY") {
        return (
            StatusCode::CONFLICT,
            format!("no unpaid WeChat Pay order {out_trade_no}\n"),
        );
    }
    let event = phones.wechatpay.pay(&out_trade_no, None);
    (
        StatusCode::OK,
        format!("paid {out_trade_no}; notify {event} sent\n"),
    )
}

async fn pay_alipay(
    State(phones): State<Phones>,
    Path(out_trade_no): Path<String>,
) -> (StatusCode, String) {
    let payable = phones
        .alipay
        .trade(&out_trade_no)
        .is_some_and(|t| t.status == "WAIT_BUYER_PAY");
    if !payable {
        return (
            StatusCode::CONFLICT,
            format!("no unpaid Alipay QR {out_trade_no}\n"),
        );
    }
    phones.alipay.scan(&out_trade_no);
    let notify = phones.alipay.pay(&out_trade_no, None);
    let form = phones.alipay.signed_form(&notify);
    let alipay = phones.alipay.clone();
    let trade = out_trade_no.clone();
    // Delivered in the background, on Alipay's retry schedule, as the real one does.
    tokio::spawn(async move { alipay.deliver(&trade, &form).await });
    (
        StatusCode::OK,
        format!("paid {out_trade_no}; notify sent\n"),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut control_port: u16 = 0;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--control-port", Some(port)) => control_port = port.parse()?,
            _ => anyhow::bail!("usage: provider-standins [--control-port N]"),
        }
    }
    let phones = Phones {
        wechatpay: WechatPayStandIn::spawn().await,
        alipay: AlipayStandIn::spawn().await,
    };
    let control = tokio::net::TcpListener::bind(("127.0.0.1", control_port)).await?;
    let line = serde_json::json!({
        "wechatpay_api_base": phones.wechatpay.base,
        "alipay_gateway": phones.alipay.gateway,
        "control": format!("http://{}", control.local_addr()?),
    });
    println!("{line}");
    let app = Router::new()
        .route("/wechatpay/pay/{out_trade_no}", post(pay_wechatpay))
        .route("/alipay/pay/{out_trade_no}", post(pay_alipay))
        .with_state(phones);
    axum::serve(control, app).await?;
    Ok(())
}
