//! `orderflow-worker`: runs OrderWorkflow and its activities. See `--help` and ARCHITECTURE.md.

use clap::Parser;
use orderflow_worker::{WorkerSettings, run, telemetry};

#[derive(Parser)]
#[command(
    name = "orderflow-worker",
    version,
    about = "Runs Orderflow's OrderWorkflow and activities on a Temporal task queue."
)]
struct Cli {
    #[command(flatten)]
    settings: WorkerSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let result = run(cli.settings).await;
    telemetry::shutdown();
    result
}
