//! `dreamfarm-worker`: a cluster worker (the same as `dreamfarm worker`).

use clap::Parser;
use dreamfarm_worker::worker_args::{WorkerArgs, run_until_signal};

/// A dreamfarm GPU/CPU worker: computes the tiles a coordinator leases it.
#[derive(Debug, Parser)]
#[command(name = "dreamfarm-worker", version, about)]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run_until_signal(Cli::parse().worker.config()) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
