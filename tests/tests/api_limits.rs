//! What the shim does when asked for too much: a key over its rate gets 429 and recovers after
//! Retry-After; webhooks keep their own limit and flow during an API flood; creations past the
//! in-flight cap are shed with 503; slow headers and too many connections from one address are
//! cut off; and every error, routed or not, has the documented body.

use orderflow_activities::providers::sandbox::SandboxProvider;
use orderflow_domain::{OrderStatus, PaymentNo};
use orderflow_http::webhook_adapters::sandbox::{SIGNATURE_HEADER, sign_event};
use orderflow_http::{AppState, DEV_SANDBOX_WEBHOOK_SECRET, ServeSettings};
use orderflow_tests::{Engine, Shim, TestApp, bearer_client, eventually, sandbox_paid_event};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn spawn() -> TestApp {
    TestApp::spawn(Engine::Sqlite)
        .await
        .expect("SQLite is always there")
}

async fn serve(app: &TestApp, configure: impl FnOnce(&mut ServeSettings)) -> Shim {
    let mut settings = app.shim_settings();
    configure(&mut settings);
    app.serve_http_with(AppState::new(app.orders.clone(), settings).expect("app state"))
        .await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_and_recovers_after_retry_after() {
    let app = spawn().await;
    let shim = serve(&app, |s| {
        s.limits.api_rate_per_sec = 2;
        s.limits.api_burst = 3;
    })
    .await;
    let url = format!("{}/v1/orders/ord_nothing_here", shim.base);
    let mut statuses = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..10 {
        let r = shim.http.get(&url).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            waits.push(retry_after(&r).expect("429 carries Retry-After"));
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
        }
    }
    // The burst (3) passes; the rest of a tight loop is over the rate.
    assert_eq!(&statuses[..3], &[404, 404, 404], "{statuses:?}");
    assert!(
        statuses[3..].iter().filter(|s| **s == 429).count() >= 5,
        "{statuses:?}"
    );
    assert!(waits.iter().all(|w| (1..=2).contains(w)), "{waits:?}");
    // Another key has its own bucket.
    let other = bearer_client(
        &app.api_key("shop-other", &orderflow_http::api_keys::Scope::CLIENT)
            .await,
    );
    assert_eq!(other.get(&url).send().await.unwrap().status(), 404);
    // After the wait it is served again.
    tokio::time::sleep(Duration::from_secs(*waits.iter().max().unwrap())).await;
    assert_eq!(shim.http.get(&url).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_flow_during_an_api_flood_and_have_their_own_limit() {
    let app = spawn().await;
    let shim = serve(&app, |s| {
        s.limits.api_rate_per_sec = 1;
        s.limits.api_burst = 1;
        s.limits.webhook_rate_per_sec = 5;
    })
    .await;
    let created = shim
        .http
        .post(format!("{}/v1/orders", shim.base))
        .header(
            "Idempotency-Key",
            format!("flood-{}", app.settings.connection.task_queue),
        )
        .json(&json!({"customer_id": "flood", "provider": "sandbox",
                      "lines": [{"sku": "MUG-LOGO", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let order: Value = created.json().await.unwrap();
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let payment_no = order["payment_no"].as_str().unwrap().to_owned();

    // The API flood: the key is far over its rate for the whole time.
    let flood = {
        let (http, url) = (
            shim.http.clone(),
            format!("{}/v1/orders/{order_id}", shim.base),
        );
        tokio::spawn(async move {
            let mut limited = 0;
            for _ in 0..200 {
                if http.get(&url).send().await.unwrap().status() == 429 {
                    limited += 1;
                }
            }
            limited
        })
    };
    let gateway = SandboxProvider::new(app.db.clone(), &app.settings.connection.public_url);
    let paid = gateway
        .pay(&PaymentNo::parse(&payment_no).unwrap(), None)
        .await
        .unwrap();
    let event = sandbox_paid_event(&payment_no, paid);
    let (signature, body) = sign_event(DEV_SANDBOX_WEBHOOK_SECRET.as_bytes(), &event, now());
    let webhook = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/sandbox", shim.base))
        .header(SIGNATURE_HEADER, signature.clone())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), 200, "{}", webhook.text().await.unwrap());
    assert_eq!(
        app.final_view(&order_id).await.status,
        Some(OrderStatus::Paid)
    );
    assert!(
        flood.await.unwrap() > 150,
        "the API flood was limited all along"
    );

    // Webhooks' own limit: a burst of forgeries past it is slowed with 429 + Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/webhooks/sandbox", shim.base))
            .header(SIGNATURE_HEADER, "t=1,v1=00")
            .body("{}")
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(retry_after(&r).is_some());
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [400, 401, 429].contains(s)),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_past_the_in_flight_cap_are_shed_with_503() {
    let mut app = spawn().await;
    // No worker: a creation waits for payment parameters that never come, so it stays in
    // flight until the request timeout.
    app.stop_worker();
    let shim = serve(&app, |s| {
        s.limits.max_inflight_creates = 1;
        s.create_wait_secs = 2;
        s.request_timeout_secs = 4;
    })
    .await;
    let create = |key: String| {
        shim.http
            .post(format!("{}/v1/orders", shim.base))
            .header("Idempotency-Key", key)
            .json(&json!({"customer_id": "cap", "provider": "sandbox",
                          "lines": [{"sku": "MUG-LOGO", "quantity": 1}]}))
            .send()
    };
    let tq = app.settings.connection.task_queue.clone();
    let first = tokio::spawn(create(format!("cap-1-{tq}")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = create(format!("cap-2-{tq}")).await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(retry_after(&second), Some(1));
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "OVERLOADED", "{body}");
    // The first was not shed: it waited, and answered 202 (accepted, not ready) or 408.
    let first = first.await.unwrap().unwrap().status().as_u16();
    assert!([202, 408].contains(&first), "{first}");
    // The shed request claimed nothing.
    assert_eq!(app.count("client_orders").await, 1);
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let app = spawn().await;
    let shim = serve(&app, |s| s.limits.header_read_timeout_secs = 1).await;
    let address = shim.base.trim_start_matches("http://").to_owned();
    // Headers begun and never finished.
    let mut partial = TcpStream::connect(&address).await.unwrap();
    partial
        .write_all(b"GET /v1/orders/x HTTP/1.1\r\nHost: shim\r\nX-Slow: ")
        .await
        .unwrap();
    // Nothing sent at all.
    let mut silent = TcpStream::connect(&address).await.unwrap();
    for (what, stream) in [("partial headers", &mut partial), ("nothing", &mut silent)] {
        let took = closed_within(stream, Duration::from_secs(5)).await;
        assert!(
            took.is_some(),
            "a connection that sent {what} was left open"
        );
    }
    // Nor does a kept-alive connection idle forever after its request.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: shim\r\n\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "an idle kept-alive connection was left open"
    );
    // A normal request is unaffected.
    let r = shim
        .http
        .get(format!("{}/openapi.json", shim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_may_hold_only_so_many_connections() {
    let app = spawn().await;
    let shim = serve(&app, |s| s.limits.max_connections_per_client = 3).await;
    let address = shim.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: shim\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(stream.read(&mut buf).await.unwrap() > 0, "served");
        held.push(stream); // kept alive
    }
    let mut fourth = TcpStream::connect(&address).await.unwrap();
    let _ = fourth
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: shim\r\n\r\n")
        .await;
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2))
            .await
            .is_some(),
        "a fourth connection from the same address was served"
    );
    drop(held);
    eventually(Duration::from_secs(10), || async {
        let r = reqwest::get(format!("{}/openapi.json", shim.base)).await;
        match r {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("served again once the connections closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_the_documented_body() {
    let app = spawn().await;
    let shim = serve(&app, |s| s.request_timeout_secs = 1).await;
    let http = reqwest::Client::new();
    let check = |response: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(response.status().as_u16(), status);
        let content_type = response.headers().get("content-type").cloned();
        let allow = response.headers().get("allow").cloned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(content_type.unwrap(), "application/json");
        allow
    };
    // Unrouted paths, at any depth.
    for path in ["/nope", "/v1", "/v1/orders/a/b/c", "/sandbox"] {
        let r = http
            .get(format!("{}{path}", shim.base))
            .send()
            .await
            .unwrap();
        check(r, 404, "NOT_FOUND").await;
    }
    // The wrong method on every route, with the methods that are allowed.
    for (method, path, allowed) in [
        (reqwest::Method::GET, "/v1/orders", "POST"),
        (reqwest::Method::DELETE, "/v1/orders/ord_x", "GET"),
        (reqwest::Method::GET, "/v1/orders/ord_x/cancel", "POST"),
        (reqwest::Method::PUT, "/v1/orders/ord_x/resolve", "POST"),
        (reqwest::Method::GET, "/v1/webhooks/sandbox", "POST"),
        (reqwest::Method::POST, "/openapi.json", "GET"),
    ] {
        let r = shim
            .http
            .request(method, format!("{}{path}", shim.base))
            .send()
            .await
            .unwrap();
        let allow = check(r, 405, "METHOD_NOT_ALLOWED").await;
        assert!(allow.unwrap().to_str().unwrap().contains(allowed), "{path}");
    }
    // The request timeout: a body that never finishes arriving.
    let address = shim.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: shim\r\nAuthorization: Bearer {}\r\n\
         Idempotency-Key: slow-body\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        shim.key
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(answer.contains(r#""code":"REQUEST_TIMEOUT""#), "{answer}");
    // A framework rejection (the checkout page's knobs) in the same shape.
    let r = http
        .post(format!(
            "{}/sandbox/checkout/pay_0000000000000000000000000000/pay?deliveries=many",
            shim.base
        ))
        .send()
        .await
        .unwrap();
    check(r, 400, "BAD_REQUEST").await;
}
