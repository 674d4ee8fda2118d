//! After a few orders, the worker's and the shim's Prometheus endpoints show counters that moved
//! by exactly the right amounts.

use orderflow_activities::providers::sandbox::SandboxProvider;
use orderflow_domain::{OrderStatus, PaymentNo};
use orderflow_http::DEV_SANDBOX_WEBHOOK_SECRET;
use orderflow_http::webhook_adapters::sandbox::{
    MERCHANT_ID, PAID, SIGNATURE_HEADER, SandboxEvent, SandboxEventData, sign_event,
};
use orderflow_tests::{Engine, TestApp, eventually, free_port};
use serde_json::{Value, json};
use std::time::Duration;

/// Sum of the samples of `name` whose labels include every `key="value"` in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_the_right_amounts() {
    let metrics_port = free_port();
    let app = TestApp::spawn_with(Engine::Sqlite, |s| {
        s.metrics_address = Some(format!("127.0.0.1:{metrics_port}").parse().unwrap());
    })
    .await
    .unwrap();
    let shim = app.serve_http().await;
    let (base, http) = (shim.base.clone(), shim.http.clone());
    let create = |key: String, sku: &str, qty: i64| {
        let req = http
            .post(format!("{base}/v1/orders"))
            .header("Idempotency-Key", key)
            .json(&json!({"customer_id": "m", "lines": [{"sku": sku, "quantity": qty}]}));
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let tq = app.settings.connection.task_queue.clone();
    let gateway = SandboxProvider::new(app.db.clone(), &app.settings.connection.public_url);
    let mut paid = Vec::new();
    for i in 0..2 {
        let (status, order) = create(format!("m-paid-{i}-{tq}"), "MUG-LOGO", 1).await;
        assert_eq!(status, 201);
        let payment_no = order["payment_no"].as_str().unwrap().to_owned();
        let charge = gateway
            .pay(&PaymentNo::parse(&payment_no).unwrap(), None)
            .await
            .unwrap();
        let event = SandboxEvent {
            id: charge.event_id,
            kind: PAID.into(),
            created: 0,
            data: SandboxEventData {
                payment_no,
                amount_minor: charge.paid_amount_minor,
                currency: charge.currency,
                txn_id: charge.txn_id,
                merchant_id: MERCHANT_ID.into(),
            },
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let (signature, body) = sign_event(DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(), &event, now);
        let r = http
            .post(format!("{base}/v1/webhooks/sandbox"))
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        paid.push(order["order_id"].as_str().unwrap().to_owned());
    }
    let (_, cancelled) = create(format!("m-cancel-{tq}"), "MUG-LOGO", 1).await;
    let cancelled = cancelled["order_id"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{base}/v1/orders/{cancelled}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, rejected) = create(format!("m-oos-{tq}"), "FLASH-DEAL", 500).await;
    assert_eq!(status, 201, "{rejected}");
    assert_eq!(rejected["status"], "REJECTED");
    for id in &paid {
        assert_eq!(app.final_view(id).await.status, Some(OrderStatus::Paid));
    }
    // A bad webhook, for the verdict counter.
    let r = http
        .post(format!("{base}/v1/webhooks/sandbox"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let worker = format!("http://127.0.0.1:{metrics_port}/metrics");
    let expect = [
        ("PAID", 2.0),
        ("CANCELLED", 1.0),
        ("REJECTED", 1.0),
        ("AWAITING_PAYMENT", 3.0),
    ];
    let text = eventually(Duration::from_secs(20), || async {
        let text = scrape(&worker).await;
        let ok = expect
            .iter()
            .all(|(s, n)| sample(&text, "orderflow_orders_total", &[("status", s)]) == *n);
        if ok { Ok(text) } else { Err(text) }
    })
    .await
    .unwrap_or_else(|text| panic!("worker metrics never matched:\n{text}"));
    assert_eq!(
        sample(
            &text,
            "orderflow_orders_total",
            &[("status", "REJECTED"), ("reason", "OUT_OF_STOCK")]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "orderflow_orders_total", &[("status", "CLOSED")]),
        0.0
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("orderflow_payment_latency") && l.contains("_count")),
        "payment latency histogram missing:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("temporal_")),
        "the SDK's own worker metrics are on the same endpoint"
    );

    let shim = scrape(&format!("{}/metrics", shim.admin)).await;
    let created = sample(
        &shim,
        "orderflow_http_requests_total",
        &[("route", "/v1/orders"), ("status", "201")],
    );
    assert_eq!(created, 4.0, "{shim}");
    assert_eq!(
        sample(
            &shim,
            "orderflow_http_requests_total",
            &[("route", "/v1/orders/{order_id}/cancel"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &shim,
            "orderflow_webhook_callbacks_total",
            &[("provider", "sandbox"), ("verdict", "SIGNALLED")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &shim,
            "orderflow_webhook_callbacks_total",
            &[("provider", "sandbox"), ("verdict", "MISSING_HEADER")]
        ),
        1.0
    );
    assert!(
        sample(
            &shim,
            "orderflow_http_request_duration_seconds_count",
            &[("route", "/v1/orders")]
        ) >= 4.0
    );
}
