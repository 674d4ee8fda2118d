//! `BenchNoopWorkflow`: completes at once. `orderflow-load --workflow noop` drives it to measure
//! the most workflows per second the Temporal server can start and finish on this machine — the
//! ceiling the order benchmarks are compared against (`bench/run.sh`).

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

/// Workflow type name of [`NoopWorkflow`].
pub const NOOP_WORKFLOW_TYPE: &str = "BenchNoopWorkflow";

#[workflow]
#[derive(Default)]
pub struct NoopWorkflow;

#[workflow_methods]
impl NoopWorkflow {
    #[run(name = "BenchNoopWorkflow")]
    pub async fn run(_ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        Ok(input)
    }
}
