//! The OpenAPI document is the contract: schemathesis (PyPI, installed into `.venv` by
//! `scripts/test.sh`) reads the running shim's `/openapi.json` and runs its coverage, fuzzing and
//! stateful phases with every check, authenticated with a client key, against the real shim, a
//! real worker and a real Temporal server. Any schema-valid request refused, any status or
//! header the document does not list, any 5xx, fails this test. `tests/schemathesis.toml` holds
//! the few settings, each with its reason.

use orderflow_http::api_keys::Scope;
use orderflow_tests::{Engine, TestApp, workspace_root};
use std::process::Command;

/// Test cases per operation and phase: enough to reach every documented rule, small enough for
/// the suite's time budget (`ORDERFLOW_LONG=1` runs more).
fn max_examples() -> &'static str {
    if std::env::var_os("ORDERFLOW_LONG").is_some() {
        "200"
    } else {
        "25"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_api_keeps_its_openapi_contract() {
    let app = TestApp::spawn(Engine::Sqlite).await.unwrap();
    let shim = app.serve_http().await;
    // The key may do everything a client and an operator may, so that every operation is
    // reachable; the refusals of keys that may not are tests/tests/api_auth.rs.
    let key = app.api_key("contract", &Scope::ALL).await;
    // SKUs a generator reaches first (the shortest strings of the SKU pattern), in the catalog
    // and stocked, so generated orders can succeed and the stateful phase follows the links
    // from a created order to the operations on it.
    for sku in ["0", "A", "-", "_", "00", "AA"] {
        let sku = orderflow_domain::Sku::parse(sku).unwrap();
        orderflow_activities::orders::upsert_catalog_item(
            &app.db,
            &orderflow_activities::orders::CatalogItem {
                sku: sku.clone(),
                name: "contract".into(),
                price: orderflow_domain::Money::new(
                    100,
                    orderflow_domain::Currency::parse("USD").unwrap(),
                )
                .unwrap(),
            },
        )
        .await
        .unwrap();
        orderflow_client::catalog::set_stock(&app.db, &sku, 10_000_000)
            .await
            .unwrap();
    }
    let schemathesis = workspace_root().join(".venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: scripts/test.sh installs it",
        schemathesis.display()
    );
    let report = std::env::temp_dir().join(format!("schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&report).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            // Its crash cache goes where it runs: the report directory, not the source tree.
            .current_dir(&report)
            .arg("--config-file")
            .arg(workspace_root().join("tests/schemathesis.toml"))
            .args(["run", &format!("{}/openapi.json", shim.base)])
            .args(["--header", &format!("Authorization: Bearer {key}")])
            .args(["--checks", "all"])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--max-examples", max_examples()])
            .args(["--seed", "16"])
            // One worker: hypothesis parses lambdas with `ast`, which is not thread-safe on Python 3.11.
            .args(["--workers", "1"])
            .args(["--generation-database", "none"])
            .args(["--report-dir"])
            .arg(&report)
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "schemathesis found the API breaking its document (exit {:?})",
        output.status.code()
    );
    // It did test: every operation, in every phase.
    for phase in ["Coverage", "Fuzzing", "Stateful"] {
        assert!(stdout.contains(phase), "no {phase} phase in:\n{stdout}");
    }
    app.assert_stock_invariants().await;
}
