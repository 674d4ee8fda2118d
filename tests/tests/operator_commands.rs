//! The operator's command-line tools on every engine, as real processes: `orderflow db migrate`
//! (again, on a migrated database), `catalog seed`, `stock set` and `stock show`, then the load
//! generator `orderflow-load` running orders through the test's worker.

use orderflow_tests::{TestApp, debug_binaries, on_every_engine};
use serde_json::Value;
use std::process::Command;

on_every_engine!(
    the_operator_commands_and_the_load_tool_work,
    processes_starting_together_migrate_once,
    the_coupon_commands_work
);

/// Four processes' worth of migrators on one fresh database at once (the worker, the shim and
/// `orderflow db migrate` starting together): each ends with the schema, none fails.
async fn processes_starting_together_migrate_once(app: TestApp) {
    let url = orderflow_tests::fresh_database(app.engine)
        .await
        .unwrap()
        .expect("the engine is configured");
    let migrations = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let db = orderflow_activities::db::Db::connect(&url).await?;
            db.migrate().await?;
            anyhow::Ok(db)
        })
    });
    for migrated in futures::future::join_all(migrations).await {
        let db = migrated
            .unwrap()
            .unwrap_or_else(|e| panic!("{:?}: {e:#}", app.engine));
        assert_migrated_and_empty(db).await;
    }
}

/// The schema is there (the inventory table answers) and holds nothing yet.
async fn assert_migrated_and_empty(db: orderflow_activities::db::Db) {
    assert!(
        orderflow_activities::inventory::levels(&db)
            .await
            .unwrap()
            .is_empty()
    );
    db.close().await;
}

/// Runs one of the debug binaries against the app's database, Temporal and task queue.
fn run(app: &TestApp, binary: &str, args: &[&str]) -> (String, String) {
    let started = std::time::Instant::now();
    let out = Command::new(debug_binaries().join(binary))
        .env(
            "DATABASE_URL",
            app.settings.connection.database_url.expose_secret(),
        )
        .env("TEMPORAL_ADDRESS", &app.temporal_address)
        .env("ORDERFLOW_TASK_QUEUE", &app.settings.connection.task_queue)
        .env("ORDERFLOW_GRPC_COMPRESSION", "none")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{binary} runs: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "[{:?}] {binary} {args:?}: {:?}\n{stderr}",
        app.engine,
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "{binary} {args:?} failed on {:?}:\n{stderr}\n{stdout}",
        app.engine
    );
    (stdout, stderr)
}

async fn the_operator_commands_and_the_load_tool_work(app: TestApp) {
    run(&app, "orderflow", &["db", "migrate"]);
    if app.engine != orderflow_tests::Engine::Sqlite {
        // A database the server does not have yet is created, then migrated.
        let mut url =
            url::Url::parse(app.settings.connection.database_url.expose_secret()).unwrap();
        let fresh = format!("{}_new", url.path().trim_start_matches('/'));
        url.set_path(&fresh);
        let out = Command::new(debug_binaries().join("orderflow"))
            .args(["--json", "--database-url", url.as_str(), "db", "migrate"])
            .output()
            .unwrap();
        let said: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(
            said["created"],
            true,
            "{said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let db = orderflow_activities::db::Db::connect(url.as_str())
            .await
            .unwrap();
        assert_migrated_and_empty(db).await;
    }
    run(&app, "orderflow", &["catalog", "seed"]);
    run(&app, "orderflow", &["stock", "set", "MUG-LOGO", "37"]);
    let (shown, _) = run(&app, "orderflow", &["--json", "stock", "show", "MUG-LOGO"]);
    let shown: Value = serde_json::from_str(&shown).expect("stock show --json is JSON");
    let level = &shown["stock"][0];
    assert_eq!(
        shown["invariant_problems"],
        serde_json::json!([]),
        "{shown}"
    );
    assert_eq!(level["sku"], "MUG-LOGO", "{shown}");
    assert_eq!(level["total"], 37, "{shown}");
    assert_eq!(level["available"], 37, "{shown}");

    let (report, _) = run(
        &app,
        "orderflow-load",
        &[
            "--orders",
            "12",
            "--concurrency",
            "6",
            "--mix",
            "paid=50,timeout=50",
            "--payment-timeout-secs",
            "2",
            "--stock",
            "100",
            "--no-progress",
            "--json",
        ],
    );
    let report: Value = serde_json::from_str(&report).expect("orderflow-load --json is JSON");
    assert_eq!(report["engine"], app.engine.name(), "{report}");
    assert_eq!(report["finished"], 12, "{report}");
    assert_eq!(report["outcomes_match"], true, "{report}");
    assert_eq!(report["stock_invariant_holds"], true, "{report}");
    app.assert_stock_invariants().await;
}

/// `orderflow coupon define/issue/list/show` and `order create --coupon` as processes: repeats
/// change nothing, bad input exits non-zero with a one-line reason, an order shows its discount.
async fn the_coupon_commands_work(app: TestApp) {
    run(&app, "orderflow", &["catalog", "seed"]);
    let define = [
        "--json",
        "coupon",
        "define",
        "CLI-TEN",
        "--percent",
        "10",
        "--currency",
        "USD",
        "--min-spend",
        "1000",
        "--valid-from-ms",
        "0",
        "--valid-for",
        "36500d",
    ];
    let (first, _) = run(&app, "orderflow", &define);
    let (again, _) = run(&app, "orderflow", &define);
    assert_eq!(first, again);
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["kind"], "PERCENT", "{first}");
    let issue = [
        "--json", "coupon", "issue", "CLI-TEN", "--code", "CLI-A", "--code", "CLI-B",
    ];
    run(&app, "orderflow", &issue);
    let (issued, _) = run(&app, "orderflow", &issue);
    let issued: Value = serde_json::from_str(&issued).unwrap();
    assert_eq!(issued.as_array().map(Vec::len), Some(2), "{issued}");

    let refused = |args: &[&str]| {
        let out = Command::new(debug_binaries().join("orderflow"))
            .env(
                "DATABASE_URL",
                app.settings.connection.database_url.expose_secret(),
            )
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(refused(&["coupon", "define", "CLI-BAD", "--percent", "150"]).contains("1..=100"));
    assert!(
        refused(&[
            "coupon",
            "define",
            "CLI-TEN",
            "--percent",
            "20",
            "--valid-from-ms",
            "0"
        ])
        .contains("other terms")
    );
    assert!(refused(&["coupon", "issue", "NO-SUCH", "--code", "CLI-C"]).contains("NO-SUCH"));
    assert!(refused(&["coupon", "issue", "CLI-TEN", "--code", "bad code"]).contains("coupon code"));
    assert!(refused(&["coupon", "show", "NOTHING"]).contains("NOTHING"));

    let (order, _) = run(
        &app,
        "orderflow",
        &[
            "--json",
            "order",
            "create",
            "--customer",
            "cli",
            "--line",
            "TEE-RED-M:1",
            "--coupon",
            "CLI-A",
        ],
    );
    let order: Value = serde_json::from_str(&order).unwrap();
    let view = if order.get("view").is_some() {
        &order["view"]
    } else {
        &order
    };
    assert_eq!(
        (
            view["subtotal_minor"].as_i64(),
            view["discount_minor"].as_i64(),
            view["amount_minor"].as_i64()
        ),
        (Some(1999), Some(199), Some(1800)),
        "{order}"
    );
    let (shown, _) = run(&app, "orderflow", &["--json", "coupon", "show", "CLI-TEN"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["codes"][0]["state"], "LOCKED", "{shown}");
    let (listed, _) = run(&app, "orderflow", &["--json", "coupon", "list"]);
    assert!(listed.contains("CLI-TEN"));
    let order_id = view["order_id"].as_str().unwrap().to_owned();
    app.orders.cancel(&order_id, "cli test").await.unwrap();
    app.final_view(&order_id).await;
    app.assert_stock_invariants().await;
}
