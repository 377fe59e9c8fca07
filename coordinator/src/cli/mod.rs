//! Command-line parsing and dispatch.

mod cluster_client;
mod coordinator;
#[cfg(feature = "embedded-worker")]
mod dream;
mod dream_flags;
mod fetch;
mod job_args;
#[cfg(feature = "embedded-worker")]
mod memory_check;
mod models;
#[cfg(feature = "embedded-worker")]
mod render;

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};
use dreamfarm_proto::logging::{FORMAT_ENV, LogFormat};

/// DeepDream infinite-zoom videos, rendered on one machine or a GPU farm.
#[derive(Debug, Parser)]
#[command(name = "dreamfarm", version, about, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text or json (one object a line).
    #[arg(long, global = true, env = FORMAT_ENV, default_value = "text")]
    pub log_format: LogFormat,
}

/// A subcommand and its arguments. Parsed once per process, so the size
/// of the biggest (a render's settings) costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// List the built-in models, or fetch their weights.
    Models(models::ModelsArgs),
    /// List the layers of a model that can be dreamed on.
    Layers(models::LayersArgs),
    /// Render an infinite-zoom DeepDream video on this machine.
    #[cfg(feature = "embedded-worker")]
    Render(Box<render::RenderArgs>),
    /// Dream one still image over octaves, on this machine.
    #[cfg(feature = "embedded-worker")]
    Dream(dream::DreamArgs),
    /// Serve a cluster: lease the tiles of submitted jobs to workers.
    Coordinator(coordinator::CoordinatorArgs),
    /// Compute tiles for a coordinator (same as `dreamfarm-worker`).
    #[cfg(feature = "embedded-worker")]
    Worker(dreamfarm_worker::worker_args::WorkerArgs),
    /// Submit a job to a coordinator; prints its id.
    Submit(Box<cluster_client::SubmitArgs>),
    /// Show a coordinator's jobs.
    Status(cluster_client::StatusArgs),
    /// Follow a job until it ends: frames done, tiles/s, ETA (reconnects
    /// while the coordinator restarts).
    Watch(cluster_client::WatchArgs),
    /// Cancel a job for good (finished frames stay).
    Cancel(cluster_client::JobIdArgs),
    /// Pause a job: its leases go back and its memory is freed.
    Pause(cluster_client::JobIdArgs),
    /// Resume a paused job after its last complete frame.
    Resume(cluster_client::JobIdArgs),
    /// Continue a failed job after its last complete frame.
    Retry(cluster_client::JobIdArgs),
    /// Set a job's priority (higher runs first).
    Priority(cluster_client::PriorityArgs),
    /// Give a job more frames: it continues as if submitted that long.
    Extend(cluster_client::ExtendArgs),
    /// Delete a job, its history and its files.
    Delete(cluster_client::DeleteArgs),
    /// Show a job's event log.
    Events(cluster_client::JobIdArgs),
    /// Download a job's frames and video.
    Fetch(fetch::FetchArgs),
    /// Print a shell completion script, e.g. `dreamfarm completions bash >
    /// /etc/bash_completion.d/dreamfarm`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Parses the command line (exits with clap's message when it is wrong).
pub fn parse() -> Cli {
    Cli::parse()
}

/// Prints the completion script for `shell`. Written in one piece, so a
/// reader that stops early (`| head`) ends it quietly instead of in a
/// panic.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dreamfarm", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Models(args) => models::models(args),
        Command::Layers(args) => models::layers(args),
        #[cfg(feature = "embedded-worker")]
        Command::Render(args) => render::render(*args),
        #[cfg(feature = "embedded-worker")]
        Command::Dream(args) => dream::dream(args),
        Command::Coordinator(args) => coordinator::coordinator(args),
        #[cfg(feature = "embedded-worker")]
        Command::Worker(args) => {
            let tiles = dreamfarm_worker::worker_args::run_until_signal(args.config())?;
            tracing::info!(tiles, "worker done");
            Ok(())
        }
        Command::Submit(args) => cluster_client::submit(*args),
        Command::Status(args) => cluster_client::status(args),
        Command::Watch(args) => cluster_client::watch(args),
        Command::Cancel(args) => cluster_client::cancel(args),
        Command::Pause(args) => cluster_client::pause(args),
        Command::Resume(args) => cluster_client::resume(args),
        Command::Retry(args) => cluster_client::retry(args),
        Command::Priority(args) => cluster_client::priority(args),
        Command::Extend(args) => cluster_client::extend(args),
        Command::Delete(args) => cluster_client::delete(args),
        Command::Events(args) => cluster_client::events(args),
        Command::Fetch(args) => fetch::fetch(args),
        Command::Completions { shell } => completions(shell),
    }
}
