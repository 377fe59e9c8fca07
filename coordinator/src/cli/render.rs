//! `dreamfarm render`: an infinite-zoom video on this machine, with the
//! frame loop and tiling the cluster uses and an embedded worker.

use clap::Args;
use dreamfarm_common::device::DeviceSpec;
use dreamfarm_coordinator::local_worker::LocalWorker;
use dreamfarm_coordinator::output::OutputDir;
use dreamfarm_coordinator::render::{load_input, render as render_job};

use super::job_args::JobArgs;

/// Arguments of `dreamfarm render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Device of the embedded worker: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
}

/// Runs `dreamfarm render`.
pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    let (spec, dir, name) = args.job.spec()?;
    let device = args.device;
    let input = load_input(&spec)?;
    let out = OutputDir::open(&dir, &spec)?;
    let mut worker = LocalWorker::load(&spec.dream, spec.seed, device)?;
    let min_side = worker.min_side();
    let video = dir.join(format!("{name}.mp4"));
    render_job(
        &spec,
        &input,
        &out,
        &video,
        min_side,
        &mut worker,
        &mut |_, _| {},
    )?;
    println!("{}", video.display());
    Ok(())
}
