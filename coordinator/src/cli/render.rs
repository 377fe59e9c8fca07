//! `dreamfarm render`: an infinite-zoom video on this machine, with the
//! frame loop and tiling the cluster uses and an embedded worker.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use dreamfarm_common::device::Devices;
use dreamfarm_coordinator::cluster::memory_budget::job_bytes;
use dreamfarm_coordinator::local_pool::embedded;
use dreamfarm_coordinator::output::{FileMatch, FolderLock, OutputDir};
use dreamfarm_coordinator::render::{
    check_min_side, load_color_reference, load_guide, load_input, render as render_job,
};
use dreamfarm_coordinator::source_files::Sources;
use dreamfarm_coordinator::tile_executor::{TileExecutor, Unchanged};
use dreamfarm_coordinator::video::{VideoEncoding, VideoOut};
use dreamfarm_coordinator::web::local_job::LocalJob;
use dreamfarm_coordinator::web::pages::segment;
use dreamfarm_coordinator::web::standalone::{Listener, Standalone};
use dreamfarm_proto::auth::check_token;
use dreamfarm_worker::cpu_threads::ThreadsFlag;
use dreamfarm_worker::models::torch_devices;

use super::job_args::JobArgs;
use super::memory_check::{MaxMemory, NETWORK_ON_CPU, network_bytes};

/// Arguments of `dreamfarm render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Device of the embedded worker: auto, cpu, cuda or cuda:N; several
    /// separated by commas (cuda:0,cuda:1), or all (every GPU), share each
    /// frame's tiles, a worker on each (the frames stay the same).
    #[arg(long, default_value = "auto")]
    device: Devices,
    /// Render only the camera path, no dream, into OUTPUT-preview: every
    /// frame the previous one moved (and colour-adjusted) as scheduled, in
    /// seconds, to check a schedule before the long run.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    max_memory: MaxMemory,
    #[command(flatten)]
    threads: ThreadsFlag,
    /// Serve the render's web page (latest frame, frames so far, settings,
    /// progress) on ADDR while it renders, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    ui: Option<SocketAddr>,
    /// Token the --ui page asks for (a login form, or Authorization:
    /// Bearer TOKEN) [default: none, the page is open to anyone who can
    /// reach ADDR].
    #[arg(long, env = "DREAMFARM_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Runs `dreamfarm render`.
pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    // Frame buffers and the network's activations are freed and allocated
    // again every tile and frame; a render is a dedicated process too.
    dreamfarm_proto::heap::keep_freed_memory();
    // The page's token, checked before anything is made, as the
    // coordinator checks its own.
    if args.ui.is_some()
        && let Some(token) = &args.token
    {
        check_token(token)?;
    }
    let (mut spec, mut dir, mut name) = args.job.spec()?;
    if args.dry_run {
        // Its own folder: preview frames must never pass for dreamed ones.
        name = format!("{name}-preview");
        dir.set_file_name(format!(
            "{}-preview",
            dir.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        spec.dream.octaves = 1;
    }
    let input = load_input(&spec)?;
    // A device that is not there fails before the output folder exists.
    let devices = if args.dry_run {
        Vec::new()
    } else {
        torch_devices(&args.device)?
    };
    // A preview holds a fraction of a dream's buffers: not checked.
    if !args.dry_run {
        let (width, height) = (input.width as u32, input.height as u32);
        args.max_memory.check(
            &format!("a {width}x{height} render"),
            &[
                ("its frames and video", job_bytes(width, height, &spec)),
                (
                    NETWORK_ON_CPU,
                    network_bytes(&spec.dream, width, height, &devices)?,
                ),
            ],
            "pass a smaller --size or --tile-size",
            "submit it to a cluster whose coordinator has the memory",
        )?;
    }
    // Bad guide or reference images too.
    load_guide(&spec)?;
    load_color_reference(&spec)?;
    args.threads.apply();
    // The page's port too: one in use stops the render before its folder.
    let listener = args.ui.map(Listener::bind).transpose()?;
    // A preview dreams nothing, so it needs no model. Loaded before the
    // folder is made: weights it cannot read, or an input smaller than
    // the model can see, refuse the render without leaving a folder.
    let (mut executor, min_side): (Box<dyn TileExecutor>, usize) = if args.dry_run {
        (Box::new(Unchanged::default()), 1)
    } else {
        let workers = embedded(&spec.dream, spec.seed, &devices)?;
        (workers.executor, workers.min_side)
    };
    check_min_side(&spec, &input, min_side)?;
    // Held to the end, the video included; taken before the folder is
    // opened, which clears half-written frames.
    let _claim = FolderLock::claim(&dir)?;
    // Checked before the folder's job file is written, so a refused
    // render leaves the folder as it was.
    OutputDir::check_job(&dir, &spec, FileMatch::SameFile)?;
    let sources = Sources::check(&dir, &spec)?;
    let out = OutputDir::open_checked(&dir, &spec)?;
    sources.record(&out)?;
    let video = dir.join(format!("{name}.mp4"));
    let page = listener.map(|listener| {
        let job = Arc::new(LocalJob::new(
            &name,
            &spec,
            dir.clone(),
            video.clone(),
            out.frames_done(),
        ));
        let server = Standalone::start(listener, job.clone(), args.token.as_deref())?;
        // Scripts and tests read the address (port 0 picks one).
        println!(
            "web interface on http://{}/jobs/{}",
            server.addr(),
            segment(&name)
        );
        anyhow::Ok((job, server))
    });
    let page = page.transpose()?;
    let job = page.as_ref().map(|(job, _)| job.clone());
    let rendered = render_job(
        &spec,
        &input,
        &out,
        VideoOut {
            path: &video,
            encoding: VideoEncoding::WhileRendering,
        },
        min_side,
        executor.as_mut(),
        &mut |n, seconds| {
            if let Some(job) = &job {
                job.frame_written(n, seconds);
            }
        },
    );
    if let Some(job) = &job {
        job.finished(rendered.as_ref().err().map(ToString::to_string));
    }
    rendered?;
    println!("{}", video.display());
    Ok(())
}
