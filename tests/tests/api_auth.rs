//! Who may call the orders API, and what a caller who may not gets: every route against every
//! way of being refused (no key, a malformed header, an unknown key, a revoked key, a key
//! without the route's scope, another client's order), each answered 401 / 403 / 404 with the
//! standard error body and nothing changed. Then clients' own idempotency keys, operators who
//! are who their key says, and revocation taking effect on the next request.

use orderflow_http::api_keys::{self, Scope};
use orderflow_tests::{Shim, TestApp, answer, bearer_client, on_every_engine, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_engine!(
    every_route_refuses_every_caller_it_must,
    operators_manage_stock_and_catalog_over_http,
    two_clients_with_the_same_idempotency_key_get_two_orders,
    operators_resolve_over_http_as_their_key_says
);

fn order_body(customer: &str) -> Value {
    json!({"customer_id": customer, "lines": [{"sku": "MUG-LOGO", "quantity": 1}], "provider": "sandbox"})
}

/// One request as a caller sends it: `auth` is the raw `Authorization` header, if any.
async fn send(
    shim: &Shim,
    method: Method,
    path: &str,
    auth: Option<&str>,
    idempotency_key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", shim.base));
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

/// Everything a refused request could have changed: orders, ownership rows, stock, the open
/// order's status and its history (a signal or an update would add events).
async fn footprint(app: &TestApp, order_id: &str) -> (i64, i64, i64, String, usize, String) {
    let stock = app.stock("MUG-LOGO").await;
    let catalog = orderflow_activities::orders::catalog(&app.db)
        .await
        .unwrap();
    (
        app.count("orders").await,
        app.count("client_orders").await,
        stock.available * 1_000_000 + stock.reserved * 1_000 + stock.sold,
        format!("{:?}", app.view(order_id).await.status),
        app.history_event_types(order_id).await.len(),
        format!("{catalog:?}"),
    )
}

async fn every_route_refuses_every_caller_it_must(app: TestApp) {
    let shim = app.serve_http().await;
    let tq = &app.settings.connection.task_queue;
    // Client A's open order, the target of every refused request.
    let created = shim
        .http
        .post(format!("{}/v1/orders", shim.base))
        .header("Idempotency-Key", format!("matrix-{tq}"))
        .json(&order_body("matrix-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let order: Value = created.json().await.unwrap();
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let before = footprint(&app, &order_id).await;

    let revoked = app.api_key("matrix-revoked", &Scope::ALL).await;
    assert!(api_keys::revoke(&app.db, &revoked).await.unwrap());
    let unknown = format!("ofk_0123456789ab_{}", "x".repeat(43));
    let other_client = app.api_key("matrix-b", &Scope::CLIENT).await;

    struct Route {
        method: Method,
        path: String,
        body: Option<Value>,
        /// A key that lacks this route's scope (and only that).
        without_scope: String,
        /// Another client's order is indistinguishable from no order: 404.
        owned: bool,
    }
    let routes = [
        Route {
            method: Method::POST,
            path: "/v1/orders".into(),
            body: Some(order_body("matrix-x")),
            without_scope: app
                .api_key("matrix-a", &[Scope::OrdersRead, Scope::OrdersCancel])
                .await,
            owned: false,
        },
        Route {
            method: Method::GET,
            path: format!("/v1/orders/{order_id}"),
            body: None,
            without_scope: app
                .api_key("matrix-a", &[Scope::OrdersCreate, Scope::OrdersCancel])
                .await,
            owned: true,
        },
        Route {
            method: Method::POST,
            path: format!("/v1/orders/{order_id}/cancel"),
            body: Some(json!({"reason": "not yours"})),
            without_scope: app
                .api_key("matrix-a", &[Scope::OrdersCreate, Scope::OrdersRead])
                .await,
            owned: true,
        },
        Route {
            method: Method::POST,
            path: format!("/v1/orders/{order_id}/resolve"),
            body: Some(json!({"action": "REFUND", "note": "not yours"})),
            without_scope: app.api_key("matrix-a", &Scope::CLIENT).await,
            owned: false,
        },
        Route {
            method: Method::GET,
            path: "/v1/stock".into(),
            body: None,
            without_scope: app.api_key("matrix-a", &Scope::CLIENT).await,
            owned: false,
        },
        Route {
            method: Method::PUT,
            path: "/v1/stock/MUG-LOGO".into(),
            body: Some(json!({"total": 1})),
            without_scope: app.api_key("matrix-a", &Scope::CLIENT).await,
            owned: false,
        },
        Route {
            method: Method::PUT,
            path: "/v1/catalog/MUG-LOGO".into(),
            body: Some(json!({"name": "Free mug", "price_minor": 0, "currency": "USD"})),
            without_scope: app.api_key("matrix-a", &Scope::CLIENT).await,
            owned: false,
        },
    ];
    let mut checked = 0;
    for route in &routes {
        let mut cases: Vec<(&str, Option<String>, u16, &str)> = vec![
            ("no key", None, 401, "UNAUTHENTICATED"),
            (
                "basic auth",
                Some("Basic YTpi".into()),
                401,
                "INVALID_API_KEY",
            ),
            (
                "bearer, no key",
                Some("Bearer".into()),
                401,
                "INVALID_API_KEY",
            ),
            (
                "bearer, garbage",
                Some("Bearer ofk_zz".into()),
                401,
                "INVALID_API_KEY",
            ),
            (
                "unknown key",
                Some(format!("Bearer {unknown}")),
                401,
                "INVALID_API_KEY",
            ),
            (
                "revoked key",
                Some(format!("Bearer {revoked}")),
                401,
                "API_KEY_REVOKED",
            ),
            (
                "key without the scope",
                Some(format!("Bearer {}", route.without_scope)),
                403,
                "MISSING_SCOPE",
            ),
        ];
        if route.owned {
            cases.push((
                "another client's order",
                Some(format!("Bearer {other_client}")),
                404,
                "ORDER_NOT_FOUND",
            ));
        }
        for (case, auth, status, code) in cases {
            let what = format!("{} {} with {case}", route.method, route.path);
            let (got, body, challenge) = send(
                &shim,
                route.method.clone(),
                &route.path,
                auth.as_deref(),
                Some(&unique("matrix-key-")),
                route.body.clone(),
            )
            .await;
            assert_eq!(
                (got, body["error"]["code"].as_str()),
                (status, Some(code)),
                "{what}: {body}"
            );
            assert!(body["error"]["message"].is_string(), "{what}: {body}");
            if status == 401 {
                assert_eq!(
                    challenge.as_deref(),
                    Some("Bearer realm=\"orderflow\""),
                    "{what}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 51);
    // Another client's order answers exactly as an order that does not exist.
    let (_, theirs, _) = send(
        &shim,
        Method::GET,
        &format!("/v1/orders/{order_id}"),
        Some(&format!("Bearer {other_client}")),
        None,
        None,
    )
    .await;
    let (_, missing, _) = send(
        &shim,
        Method::GET,
        "/v1/orders/ord_000000000000000000000000",
        Some(&format!("Bearer {other_client}")),
        None,
        None,
    )
    .await;
    assert_eq!(
        theirs["error"]["message"]
            .as_str()
            .map(|m| m.replace(&order_id, "ID")),
        missing["error"]["message"]
            .as_str()
            .map(|m| m.replace("ord_000000000000000000000000", "ID"))
    );

    assert_eq!(
        footprint(&app, &order_id).await,
        before,
        "a refused request changed something"
    );
    // And the owner still can.
    let mine = shim
        .http
        .get(format!("{}/v1/orders/{order_id}", shim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
}

async fn two_clients_with_the_same_idempotency_key_get_two_orders(app: TestApp) {
    let shim = app.serve_http().await;
    let key = format!("cart-42-{}", app.settings.connection.task_queue);
    let shop_a = bearer_client(&app.api_key("shop-a", &Scope::CLIENT).await);
    let shop_b = bearer_client(&app.api_key("shop-b", &Scope::CLIENT).await);
    let create = |http: &reqwest::Client, customer: &str| {
        http.post(format!("{}/v1/orders", shim.base))
            .header("Idempotency-Key", key.clone())
            .json(&order_body(customer))
            .send()
    };
    let a: Value = create(&shop_a, "alice")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = create(&shop_b, "bob").await.unwrap().json().await.unwrap();
    let (order_a, order_b) = (
        a["order_id"].as_str().unwrap(),
        b["order_id"].as_str().unwrap(),
    );
    assert_ne!(order_a, order_b, "{a} {b}");
    assert_eq!(
        (a["customer_id"].as_str(), b["customer_id"].as_str()),
        (Some("alice"), Some("bob"))
    );
    // Each client's repeat is its own order again (200), not the other's.
    let again = create(&shop_a, "alice").await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["order_id"], order_a);

    let get = |http: &reqwest::Client, order: &str| {
        http.get(format!("{}/v1/orders/{order}", shim.base)).send()
    };
    assert_eq!(get(&shop_a, order_a).await.unwrap().status(), 200);
    assert_eq!(get(&shop_b, order_b).await.unwrap().status(), 200);
    assert_eq!(get(&shop_a, order_b).await.unwrap().status(), 404);
    assert_eq!(get(&shop_b, order_a).await.unwrap().status(), 404);
    let cancel = shop_b
        .post(format!("{}/v1/orders/{order_a}/cancel", shim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 404);
    assert_eq!(
        app.view(order_a).await.status,
        Some(orderflow_domain::OrderStatus::AwaitingPayment)
    );
    // An operator sees both.
    let operator = bearer_client(&app.api_key("ops", &[Scope::Operator]).await);
    assert_eq!(get(&operator, order_a).await.unwrap().status(), 200);
    assert_eq!(get(&operator, order_b).await.unwrap().status(), 200);
}

async fn operators_resolve_over_http_as_their_key_says(app: TestApp) {
    use orderflow_activities::providers::sandbox::SandboxProvider;
    use orderflow_domain::{OrderStatus, PaymentNo};
    let shim = app.serve_http().await;
    let created: Value = shim
        .http
        .post(format!("{}/v1/orders", shim.base))
        .header(
            "Idempotency-Key",
            format!("resolve-{}", app.settings.connection.task_queue),
        )
        .json(&order_body("resolve-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_id = created["order_id"].as_str().unwrap();
    let payment_no = created["payment_no"].as_str().unwrap();
    // The customer pays the wrong amount: the order waits for an operator.
    let gateway = SandboxProvider::new(app.db.clone(), &app.settings.connection.public_url);
    let paid = gateway
        .pay(&PaymentNo::parse(payment_no).unwrap(), Some(100))
        .await
        .unwrap();
    app.orders
        .signal_payment(
            order_id,
            orderflow_domain::PaymentSignal {
                event_id: paid.event_id,
                provider: "sandbox".into(),
                payment_no: payment_no.into(),
                outcome: orderflow_domain::PaymentOutcome::Paid,
                amount_minor: paid.paid_amount_minor,
                currency: paid.currency,
                provider_txn_id: paid.txn_id,
            },
        )
        .await
        .unwrap();
    app.wait_status(order_id, OrderStatus::NeedsReview).await;

    let operator_key = app.api_key("ops-alice", &[Scope::Operator]).await;
    let operator = bearer_client(&operator_key);
    let resolve = |body: Value| {
        operator
            .post(format!("{}/v1/orders/{order_id}/resolve", shim.base))
            .json(&body)
            .send()
    };
    // The operator is the key's, never the body's.
    let spoofed = resolve(json!({"action": "REFUND", "operator": "mallory"}))
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 400);
    let spoofed: Value = spoofed.json().await.unwrap();
    assert_eq!(spoofed["error"]["code"], "INVALID_JSON", "{spoofed}");
    let done = resolve(json!({"action": "REFUND", "note": "wrong amount"}))
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let view = app.final_view(order_id).await;
    assert_eq!(view.status, Some(OrderStatus::Refunded));
    let reason = view.reason.unwrap_or_default();
    let key_id = &operator_key["ofk_".len().."ofk_".len() + 12];
    assert!(
        reason.contains(&format!(
            "resolved by ops-alice (key {key_id}): wrong amount"
        )),
        "{reason}"
    );
    // Resolving twice is a conflict, not a second refund.
    let again = resolve(json!({"action": "REFUND"})).await.unwrap();
    assert_eq!(again.status(), 409);
}

/// Revoking a key stops it on its very next request; other keys of the client keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_takes_effect_at_once() {
    let app = TestApp::spawn(orderflow_tests::Engine::Sqlite)
        .await
        .unwrap();
    let shim = app.serve_http().await;
    let key = app.api_key("shop-r", &Scope::CLIENT).await;
    let other = app.api_key("shop-r", &Scope::CLIENT).await;
    let get = |key: &str| {
        bearer_client(key)
            .get(format!("{}/v1/orders/ord_unknown", shim.base))
            .send()
    };
    assert_eq!(get(&key).await.unwrap().status(), 404);
    let listed = api_keys::list(&app.db).await.unwrap();
    let key_id = &key["ofk_".len().."ofk_".len() + 12];
    assert!(
        listed
            .iter()
            .any(|k| k.key_id == key_id && k.revoked_at_ms.is_none())
    );
    assert!(
        listed
            .iter()
            .all(|k| !format!("{k:?}").contains(&key["ofk_".len() + 13..])),
        "list shows no secret"
    );
    assert!(api_keys::revoke(&app.db, key_id).await.unwrap());
    let refused = get(&key).await.unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "API_KEY_REVOKED");
    assert_eq!(get(&other).await.unwrap().status(), 404);
    assert!(!api_keys::revoke(&app.db, "000000000000").await.unwrap());
}

/// `orderflow api-keys`: a key is printed once, listed without its secret, and refused over HTTP
/// from the moment it is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_keys() {
    let app = TestApp::spawn(orderflow_tests::Engine::Sqlite)
        .await
        .unwrap();
    let shim = app.serve_http().await;
    let database_url = app.settings.connection.database_url.clone();
    let cli = move |args: &[&str]| {
        let out = std::process::Command::new(orderflow_tests::debug_binaries().join("orderflow"))
            .args(["--json", "--database-url", database_url.expose_secret()])
            .args(args)
            .output()
            .expect("orderflow runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let (ok, created, stderr) = cli(&[
        "api-keys",
        "create",
        "--client",
        "shop-cli",
        "--scopes",
        "orders:read",
    ]);
    assert!(ok, "{stderr}");
    let created: Value = serde_json::from_str(&created).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(created["scopes"], json!(["orders:read"]));

    let (ok, listed, _) = cli(&["api-keys", "list"]);
    assert!(ok);
    assert!(listed.contains(&key_id), "{listed}");
    assert!(
        !listed.contains(&key[key.len() - 20..]),
        "the list shows a secret: {listed}"
    );

    let get = || {
        bearer_client(&key)
            .get(format!("{}/v1/orders/ord_nothing", shim.base))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 404, "the key works");
    let create = bearer_client(&key)
        .post(format!("{}/v1/orders", shim.base))
        .header("Idempotency-Key", "cli-key")
        .json(&order_body("cli"))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 403, "orders:read only");

    let (ok, _, stderr) = cli(&["api-keys", "revoke", &key_id]);
    assert!(ok, "{stderr}");
    assert_eq!(get().await.unwrap().status(), 401, "revoked at once");
    let (ok, _, stderr) = cli(&["api-keys", "revoke", "000000000000"]);
    assert!(!ok);
    assert!(stderr.contains("no API key 000000000000"), "{stderr}");
    let (ok, _, stderr) = cli(&[
        "api-keys",
        "create",
        "--client",
        "bad client",
        "--scopes",
        "orders:read",
    ]);
    assert!(!ok && stderr.contains("client id"), "{stderr}");
    let (ok, _, stderr) = cli(&[
        "api-keys",
        "create",
        "--client",
        "x",
        "--scopes",
        "orders:delete",
    ]);
    assert!(!ok && stderr.contains("unknown scope"), "{stderr}");
}

async fn operators_manage_stock_and_catalog_over_http(app: TestApp) {
    let shim = app.serve_http().await;
    let operator = bearer_client(&app.api_key("ops-stock", &[Scope::Operator]).await);
    let url = |path: &str| format!("{}{path}", shim.base);
    let put = |path: &str, body: Value| answer(operator.put(url(path)).json(&body));
    let socks = |price: Value, currency: &str| json!({"name": "Blue socks", "price_minor": price, "currency": currency});

    // A new SKU: priced, then stocked.
    let (status, item) = put("/v1/catalog/SOCKS-BLUE", socks(json!(450), "USD")).await;
    assert_eq!(
        (status, item["price"].as_str()),
        (200, Some("4.50 USD")),
        "{item}"
    );
    let (status, stocked) = put("/v1/stock/SOCKS-BLUE", json!({"total": 5})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (stocked["total"].as_i64(), stocked["available"].as_i64()),
        (Some(5), Some(5))
    );
    let (_, listed) = answer(operator.get(url("/v1/stock"))).await;
    let listed = listed.as_array().cloned().unwrap_or_default();
    assert!(
        listed
            .iter()
            .any(|l| l["sku"] == "SOCKS-BLUE" && l["total"] == 5),
        "{listed:?}"
    );

    // A client orders two at the new price; a recount below what is held is refused.
    let key = format!("socks-{}", app.settings.connection.task_queue);
    let body = json!({"customer_id": "feet", "lines": [{"sku": "SOCKS-BLUE", "quantity": 2}]});
    let (_, order) = answer(
        shim.http
            .post(url("/v1/orders"))
            .header("Idempotency-Key", key)
            .json(&body),
    )
    .await;
    assert_eq!(order["amount"], "9.00 USD", "{order}");
    let (status, refused) = put("/v1/stock/SOCKS-BLUE", json!({"total": 1})).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("STOCK_BELOW_COMMITTED"))
    );
    assert_eq!(app.stock("SOCKS-BLUE").await.reserved, 2);

    // Unknown SKUs and bad prices are clear refusals; money is whole minor units, never a float.
    assert_eq!(
        put("/v1/stock/NO-SUCH-SKU", json!({"total": 3})).await.0,
        404
    );
    assert_eq!(
        put("/v1/catalog/SOCKS-BLUE", socks(json!(450), "XXX"))
            .await
            .0,
        400
    );
    assert_eq!(
        put("/v1/catalog/SOCKS-BLUE", socks(json!(4.5), "USD"))
            .await
            .0,
        400
    );
    app.assert_stock_invariants().await;
}
