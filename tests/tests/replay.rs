//! The replay gate: every history under `tests/histories/` must replay against today's workflow
//! code, and a workflow whose command sequence changed must be caught as non-deterministic.
//! CONTRIBUTING.md explains how to record a new history when the workflow changes on purpose.

use orderflow_activities::InventoryActivities;
use orderflow_activities::inventory::ReserveStock;
use orderflow_domain::{OrderId, OrderInput, OrderOutcome, OrderStatus};
use orderflow_tests::workspace_root;
use orderflow_workflows::OrderWorkflowConfig;
use std::time::Duration;
use temporalio_client::WorkflowHistory;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflow_replayer::{
    WorkflowReplayError, WorkflowReplayFailure, WorkflowReplayer, WorkflowReplayerOptions,
};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

fn histories() -> Vec<(String, Vec<u8>)> {
    let dir = workspace_root().join("tests/histories");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_committed_history_replays() {
    let replayer = orderflow_worker::replayer(OrderWorkflowConfig::default()).unwrap();
    let histories = histories();
    let names: Vec<&str> = histories.iter().map(|(n, _)| n.as_str()).collect();
    for path in [
        "paid.v2.json",
        "timed_out.v2.json",
        "late_payment_refund.v2.json",
        "paid.json",
        "timed_out.json",
        "cancelled.json",
        "workflow_cancelled.json",
        "out_of_stock.json",
        "rejected_invalid.json",
        "duplicate_payments.json",
        "mismatch_accept.json",
        "mismatch_refund.json",
        "lost_callback.json",
        "late_payment_refund.json",
    ] {
        assert!(
            names.contains(&path),
            "missing recorded history {path}; have {names:?}"
        );
    }
    for (name, bytes) in &histories {
        let history = WorkflowHistory::from_json(bytes).unwrap();
        if let Err(e) = replayer.replay_workflow(history).await {
            panic!("{name} no longer replays: {e}");
        }
    }
}

/// The same workflow type with two steps swapped: it reserves stock before recording the order.
#[workflow]
struct ReorderedOrderWorkflow;

#[workflow_methods(factory_only)]
impl ReorderedOrderWorkflow {
    #[run(name = "OrderWorkflow")]
    async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: OrderInput,
    ) -> WorkflowResult<OrderOutcome> {
        let order = input.validate().expect("recorded input is valid");
        let _ = ctx
            .execute_activity(
                InventoryActivities::reserve_stock,
                ReserveStock {
                    order_id: OrderId::parse(order.order_id.as_str()).unwrap(),
                    lines: order.lines.clone(),
                },
                ActivityOptions::start_to_close_timeout(Duration::from_secs(5)),
            )
            .await;
        Ok(OrderOutcome {
            order_id: input.order_id,
            status: OrderStatus::Paid,
            reason: None,
        })
    }
}

#[tokio::test]
async fn a_changed_command_sequence_is_caught_as_nondeterminism() {
    let mut options = WorkflowReplayerOptions::new().build();
    options
        .register_workflow_with_factory::<ReorderedOrderWorkflow, _>(|| ReorderedOrderWorkflow)
        .unwrap();
    let replayer = WorkflowReplayer::new(options).unwrap();
    let (_, paid) = histories()
        .into_iter()
        .find(|(n, _)| n == "paid.json")
        .expect("paid.json is committed");
    let result = replayer
        .replay_workflow(WorkflowHistory::from_json(&paid).unwrap())
        .await;
    match result {
        Err(WorkflowReplayError::Replay(WorkflowReplayFailure::Nondeterminism { message })) => {
            assert!(!message.is_empty());
        }
        other => panic!("expected a non-determinism failure, got {other:?}"),
    }
}

/// A deployed change that breaks determinism fails the affected workflow visibly (the worker's
/// failure policy) instead of retrying its workflow task forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nondeterministic_deploy_fails_the_workflow() {
    use orderflow_tests::{Engine, TestApp};
    use std::time::Instant;
    use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus};

    let mut app = TestApp::spawn(Engine::Sqlite).await.unwrap();
    let id = app.order("nina", &[("MUG-LOGO", 1)], None).await;
    app.restart_worker_with(Box::new(|settings, _db| {
        let mut options = orderflow_worker::empty_worker_options(settings);
        options.register_workflow_with_factory::<ReorderedOrderWorkflow, _>(|| {
            ReorderedOrderWorkflow
        })?;
        Ok(options)
    }));
    // A new workflow task (the cancel request) makes the new code replay the history.
    let _ = app.orders.handle(&id).cancel(Default::default()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = app
            .orders
            .handle(&id)
            .describe(WorkflowDescribeOptions::default())
            .await
            .unwrap()
            .status();
        if status == WorkflowExecutionStatus::Failed {
            break;
        }
        assert!(Instant::now() < deadline, "workflow is still {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
