//! `orderflow-load`: drive many orders through a running stack (or one started with --spawn).
//! See the library's doc comment and `bench/run.sh`.

use clap::Parser;
use orderflow_client::command_line::explain;
use orderflow_load::{LoadArgs, command};
use orderflow_worker::settings::CliSettings;

#[derive(Parser, Debug)]
#[command(
    name = "orderflow-load",
    version,
    about = "Drive many orders through a running stack (or one started with --spawn) and report \
             throughput, latencies, close lateness, CPU per order and the stock invariant."
)]
struct Cli {
    #[command(flatten)]
    global: CliSettings,
    #[command(flatten)]
    args: LoadArgs,
}

#[tokio::main]
async fn main() {
    orderflow_worker::telemetry::init();
    let cli = Cli::parse();
    let result = command(&cli.global.connection, cli.global.json, cli.args).await;
    orderflow_worker::telemetry::shutdown();
    if let Err(err) = result {
        eprintln!("error: {}", explain(&err));
        std::process::exit(1);
    }
}
