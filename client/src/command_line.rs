//! What every Orderflow command-line tool shares (`orderflow`, `orderflow-load`): the global
//! flags — where the stack is and how to print — and the one line printed for an error.

use crate::orders::OrderOpError;
use clap::Args;
use orderflow_activities::db::DEFAULT_DATABASE_URL;
use orderflow_worker::{DEFAULT_PUBLIC_URL, GrpcCompressionSetting};
use orderflow_workflows::DEFAULT_TASK_QUEUE;

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Orders database (sqlite://... or postgres://...).
    #[arg(long, global = true, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Task queue the workers poll.
    #[arg(long, global = true, env = "ORDERFLOW_TASK_QUEUE", default_value = DEFAULT_TASK_QUEUE)]
    pub task_queue: String,

    /// Public base URL of the HTTP shim (sandbox checkout links).
    #[arg(long, global = true, env = "ORDERFLOW_PUBLIC_URL", default_value = DEFAULT_PUBLIC_URL)]
    pub public_url: String,

    /// Temporal frontend address; by default TEMPORAL_ADDRESS / temporal.toml / localhost:7233.
    #[arg(long, global = true)]
    pub temporal_address: Option<String>,

    /// gRPC compression to the Temporal server: gzip for a far server, none for a near one.
    #[arg(long, global = true, env = "ORDERFLOW_GRPC_COMPRESSION", value_enum, default_value_t = GrpcCompressionSetting::Gzip)]
    pub grpc_compression: GrpcCompressionSetting,

    /// Temporal UI base URL, for links to workflows.
    #[arg(
        long,
        global = true,
        env = "TEMPORAL_UI_URL",
        default_value = "http://localhost:8233"
    )]
    pub ui_url: String,
}

/// Turns an error into the one line the CLI prints, naming the likely fix where there is one.
pub fn explain(err: &anyhow::Error) -> String {
    if let Some(op) = err.downcast_ref::<OrderOpError>() {
        return op.to_string();
    }
    // The outermost context says what we were doing, the root cause why it failed; the layers
    // in between repeat one another.
    let root = err.root_cause().to_string();
    let top = err.to_string();
    if top == root || top.contains(&root) {
        top
    } else {
        format!("{top}: {root}")
    }
}
