//! `dreamfarm-worker`: a cluster worker (the same as `dreamfarm worker`).

use clap::Parser;
use dreamfarm_proto::logging::{FORMAT_ENV, LogFormat};
use dreamfarm_worker::worker_args::{WorkerArgs, run_until_signal};

/// A dreamfarm GPU/CPU worker: computes the tiles a coordinator leases it.
#[derive(Debug, Parser)]
#[command(name = "dreamfarm-worker", version, about)]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Log lines as text or json (one object a line).
    #[arg(long, env = FORMAT_ENV, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    dreamfarm_proto::logging::init(cli.log_format);
    match run_until_signal(cli.worker.config()) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
