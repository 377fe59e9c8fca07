//! Command-line parsing and dispatch.

#[cfg(feature = "embedded-worker")]
mod dream;
#[cfg(feature = "embedded-worker")]
mod dream_flags;
mod models;
#[cfg(feature = "embedded-worker")]
mod render;

use clap::{Parser, Subcommand};

/// DeepDream infinite-zoom videos, rendered on one machine or a GPU farm.
#[derive(Debug, Parser)]
#[command(name = "dreamfarm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the built-in models, or fetch their weights.
    Models(models::ModelsArgs),
    /// List the layers of a model that can be dreamed on.
    Layers(models::LayersArgs),
    /// Render an infinite-zoom DeepDream video on this machine.
    #[cfg(feature = "embedded-worker")]
    Render(render::RenderArgs),
    /// Dream one still image over octaves, on this machine.
    #[cfg(feature = "embedded-worker")]
    Dream(dream::DreamArgs),
}

/// Parses the command line and runs it.
pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Models(args) => models::models(args),
        Command::Layers(args) => models::layers(args),
        #[cfg(feature = "embedded-worker")]
        Command::Render(args) => render::render(args),
        #[cfg(feature = "embedded-worker")]
        Command::Dream(args) => dream::dream(args),
    }
}
