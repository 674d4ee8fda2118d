//! `orderflow`: start and operate orders. See `orderflow --help` and README.md.

use clap::Parser;
use orderflow_client::command_line::explain;
use orderflow_starter::cli::{Cli, run};

#[tokio::main]
async fn main() {
    orderflow_worker::telemetry::init();
    let cli = Cli::parse();
    let result = run(cli).await;
    orderflow_worker::telemetry::shutdown();
    if let Err(err) = result {
        eprintln!("error: {}", explain(&err));
        std::process::exit(1);
    }
}
