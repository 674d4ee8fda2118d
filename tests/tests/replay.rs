//! The replay gate: every history under `tests/histories/` must replay against today's workflow
//! code, and a workflow whose command sequence changed must be caught as non-deterministic.
//! CONTRIBUTING.md explains how to record a new history when the workflow changes on purpose.

use orderflow_activities::PaymentActivities;
use orderflow_activities::payments::PaymentRef;
use orderflow_domain::{OrderId, OrderInput, OrderOutcome, OrderStatus, PaymentNo};
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
    // Every path of Orderflow 1.0; a lost file fails the gate.
    for path in [
        "paid.v1.json",
        "timed_out.v1.json",
        "cancelled.v1.json",
        "workflow_cancelled.v1.json",
        "out_of_stock.v1.json",
        "rejected_invalid.v1.json",
        "duplicate_payments.v1.json",
        "lost_callback.v1.json",
        "mismatch_accept.v1.json",
        "mismatch_refund.v1.json",
        "late_payment_refund.v1.json",
        "second_payment_refunded.v2.json",
        "after_sale_refund.v2.json",
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

/// The same workflow type with its steps out of order: it asks the provider before opening the order.
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
        let order_id = OrderId::parse(order.order_id.as_str()).unwrap();
        let _ = ctx
            .execute_activity(
                PaymentActivities::query_payment,
                PaymentRef {
                    payment_no: PaymentNo::for_order(&order_id),
                    provider: order.provider.clone(),
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
        .find(|(n, _)| n == "paid.v1.json")
        .expect("paid.v1.json is committed");
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
    use orderflow_tests::{Engine, TestApp, eventually};
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
    eventually(Duration::from_secs(60), || async {
        let status = app
            .orders
            .handle(&id)
            .describe(WorkflowDescribeOptions::default())
            .await
            .unwrap()
            .status();
        (status == WorkflowExecutionStatus::Failed)
            .then_some(())
            .ok_or(status)
    })
    .await
    .unwrap_or_else(|status| panic!("workflow is still {status:?}"));
}

// ---------------------------------------------------------------------------------------------
// `patched()` end to end: a deployed workflow (v1) runs live and its history is recorded; then
// the same two activity calls in the other order (v2) are checked against that history, once
// without and once behind `patched()`. CONTRIBUTING.md describes the same procedure for the
// order workflow, whose committed histories of every generation replay above.

/// Echo activities: the demonstration is about the order of commands, not what they do.
struct DemoActivities;

#[temporalio_macros::activities]
impl DemoActivities {
    #[activity(name = "demo_first")]
    async fn first(
        self: std::sync::Arc<Self>,
        _ctx: temporalio_sdk::activities::ActivityContext,
        input: String,
    ) -> Result<String, temporalio_sdk::activities::ActivityError> {
        Ok(format!("first({input})"))
    }

    #[activity(name = "demo_second")]
    async fn second(
        self: std::sync::Arc<Self>,
        _ctx: temporalio_sdk::activities::ActivityContext,
        input: String,
    ) -> Result<String, temporalio_sdk::activities::ActivityError> {
        Ok(format!("second({input})"))
    }
}

const DEMO_TYPE: &str = "PatchDemoWorkflow";
const DEMO_PATCH: &str = "second-before-first";

fn demo_options() -> ActivityOptions {
    ActivityOptions::start_to_close_timeout(Duration::from_secs(10))
}

/// What is deployed today: first, then second.
#[workflow]
#[derive(Default)]
struct DemoV1;

#[workflow_methods]
impl DemoV1 {
    #[run(name = "PatchDemoWorkflow")]
    async fn run(ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        let a = ctx
            .execute_activity(DemoActivities::first, input.clone(), demo_options())
            .await?;
        let b = ctx
            .execute_activity(DemoActivities::second, input, demo_options())
            .await?;
        Ok(format!("{a} {b}"))
    }
}

/// The change, made carelessly: the two calls swapped.
#[workflow]
#[derive(Default)]
struct DemoV2Unpatched;

#[workflow_methods]
impl DemoV2Unpatched {
    #[run(name = "PatchDemoWorkflow")]
    async fn run(ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        let b = ctx
            .execute_activity(DemoActivities::second, input.clone(), demo_options())
            .await?;
        let a = ctx
            .execute_activity(DemoActivities::first, input, demo_options())
            .await?;
        Ok(format!("{a} {b}"))
    }
}

/// The same change behind `patched()`: old executions keep the old order.
#[workflow]
#[derive(Default)]
struct DemoV2Patched;

#[workflow_methods]
impl DemoV2Patched {
    #[run(name = "PatchDemoWorkflow")]
    async fn run(ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        let (a, b) = if ctx.patched(DEMO_PATCH) {
            let b = ctx
                .execute_activity(DemoActivities::second, input.clone(), demo_options())
                .await?;
            let a = ctx
                .execute_activity(DemoActivities::first, input, demo_options())
                .await?;
            (a, b)
        } else {
            let a = ctx
                .execute_activity(DemoActivities::first, input.clone(), demo_options())
                .await?;
            let b = ctx
                .execute_activity(DemoActivities::second, input, demo_options())
                .await?;
            (a, b)
        };
        Ok(format!("{a} {b}"))
    }
}

/// A replayer with one workflow registered (a macro: the SDK's registration bounds are long).
macro_rules! replayer_of {
    ($workflow:ty) => {{
        let mut options = WorkflowReplayerOptions::new().build();
        options
            .register_workflow_with_factory::<$workflow, _>(<$workflow>::default)
            .unwrap();
        WorkflowReplayer::new(options).unwrap()
    }};
}

fn is_nondeterminism(result: &Result<(), WorkflowReplayError>) -> bool {
    matches!(
        result,
        Err(WorkflowReplayError::Replay(
            WorkflowReplayFailure::Nondeterminism { .. }
        ))
    )
}

/// Runs one demo execution live on a worker registered by `register`, returns its history.
async fn record_demo_run(
    app: &mut orderflow_tests::TestApp,
    workflow_id: &str,
    register: fn(&mut temporalio_sdk::WorkerOptions) -> anyhow::Result<()>,
) -> Vec<u8> {
    use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
    app.restart_worker_with(Box::new(move |settings, _db| {
        let mut options = orderflow_worker::empty_worker_options(settings);
        register(&mut options)?;
        options.register_activities(DemoActivities);
        Ok(options)
    }));
    let client = &app.orders.client;
    client
        .start_workflow(
            DemoV1::run,
            "x".to_owned(),
            WorkflowStartOptions::new(
                app.settings.connection.task_queue.clone(),
                workflow_id.to_owned(),
            )
            .build(),
        )
        .await
        .unwrap();
    let result: String = client
        .get_workflow_handle::<DemoV1>(workflow_id.to_owned())
        .get_result(WorkflowGetResultOptions::default())
        .await
        .unwrap();
    assert_eq!(result, "first(x) second(x)");
    app.orders
        .export_workflow_history(workflow_id, workflow_id)
        .await
        .unwrap()
}

fn history(json: &[u8]) -> WorkflowHistory {
    WorkflowHistory::from_json(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorder_fails_the_gate_unless_it_is_behind_patched() {
    use orderflow_tests::{Engine, TestApp};
    let mut app = TestApp::spawn(Engine::Sqlite).await.unwrap();
    assert_eq!(DEMO_TYPE, "PatchDemoWorkflow");

    // v1 is deployed and an execution completes: the "old history".
    // The task queue is unique per test run, so the workflow ids are too.
    let old_id = format!("patch-demo-v1-{}", app.settings.connection.task_queue);
    let old = record_demo_run(&mut app, &old_id, |o| {
        o.register_workflow::<DemoV1>()?;
        Ok(())
    })
    .await;
    // Without patched(), the swap cannot replay the old history: the gate fails.
    let unpatched = replayer_of!(DemoV2Unpatched)
        .replay_workflow(history(&old))
        .await;
    assert!(is_nondeterminism(&unpatched), "{unpatched:?}");
    // Behind patched(), the old history takes the old branch and replays.
    let patched = replayer_of!(DemoV2Patched);
    patched.replay_workflow(history(&old)).await.unwrap();

    // v2 (patched) is deployed; a new execution takes the new branch ("the new history")...
    let new_id = format!("patch-demo-v2-{}", app.settings.connection.task_queue);
    let new = record_demo_run(&mut app, &new_id, |o| {
        o.register_workflow::<DemoV2Patched>()?;
        Ok(())
    })
    .await;
    // ...which the patched code replays, alongside the old one.
    patched.replay_workflow(history(&new)).await.unwrap();
    patched.replay_workflow(history(&old)).await.unwrap();
    // And the new history really is different: v1 cannot replay it (no silent rollback).
    let rollback = replayer_of!(DemoV1).replay_workflow(history(&new)).await;
    assert!(is_nondeterminism(&rollback), "{rollback:?}");
}
