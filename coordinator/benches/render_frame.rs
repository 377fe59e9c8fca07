//! Seconds per frame of a single-machine render with the default recipe, at
//! 512×512 and 1920×1080 on this machine's default device, and how much of
//! that is the network: engine efficiency = the frame's bare forward+backward
//! passes (every octave's tile windows × iterations, timed alone) / the
//! frame's time. Beside it, in the same run, a plain Python PyTorch
//! implementation of the same recipe (bench/dream_recipe.py, same weights):
//! the best plain PyTorch (BatchNorm folded, channels-last), which the ratio
//! compares against, and the same without those two (`--naive`).
//!
//!     cargo bench -p dreamfarm-coordinator --bench render_frame
//!
//! Environment: BENCH_SIZES (default "512x512,1920x1080"), BENCH_FRAMES
//! (frames per size, default 3; the first is dropped as warm-up when there
//! are more than two), BENCH_PYTHON=0 to skip the Python side, BENCH_MODEL
//! (default `inception-v3`) for another built-in model with its default
//! layers, and BENCH_WEIGHTS for its weights file (needed for `googlenet`:
//! `.venv/bin/python scripts/reference/torchvision_models.py
//! googlenet-weights FILE.safetensors` writes random ones).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use dreamfarm_common::device::DeviceSpec;
use dreamfarm_common::objective::FrameObjective;
use dreamfarm_common::params::JobSpec;
use dreamfarm_common::tiling::TileGrid;
use dreamfarm_coordinator::frame_loop::FramePlan;
use dreamfarm_coordinator::local_worker::LocalWorker;
use dreamfarm_coordinator::output::OutputDir;
use dreamfarm_coordinator::render::{load_input, render};
use dreamfarm_coordinator::video::{VideoEncoding, VideoOut};
use dreamfarm_worker::models::torch_device;
use dreamfarm_worker::weights::WeightStore;
use tch::{Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Window shapes (height, width) of every tile of every octave of a frame,
/// with how many steps each runs.
fn window_shapes(
    spec: &JobSpec,
    plan: &FramePlan,
    width: usize,
    height: usize,
    min_side: usize,
) -> BTreeMap<(i64, i64), u32> {
    let mut shapes = BTreeMap::new();
    let jitter = 2 * plan.jitter as usize;
    for (w, h) in spec.dream.octave_sizes(width, height, min_side) {
        for tile in TileGrid::new(w, h, spec.dream.tile_geometry(plan.jitter, w, h)).tiles() {
            let shape = (
                (tile.input.height - jitter) as i64,
                (tile.input.width - jitter) as i64,
            );
            *shapes.entry(shape).or_insert(0) += plan.objective.iterations;
        }
    }
    shapes
}

/// Seconds of the bare passes a frame needs: each window shape's forward
/// and backward timed alone (median of three after a warm-up).
fn bare_passes(
    worker: &mut LocalWorker,
    objective: &FrameObjective,
    shapes: &BTreeMap<(i64, i64), u32>,
) -> anyhow::Result<f64> {
    let dreamer = worker.dreamer();
    let device = dreamer.model().device();
    let mut total = 0.0;
    for (&(h, w), &count) in shapes {
        let x = Tensor::rand([1, 3, h, w], (Kind::Float, device));
        let _warm_up = dreamer.gradient(&x, objective)?;
        let times = (0..3)
            .map(|_| {
                let t = Instant::now();
                let g = dreamer.gradient(&x, objective)?;
                // Wait for the device (a no-op on CPU).
                let _ = g.sum(Kind::Float).double_value(&[]);
                Ok(t.elapsed().as_secs_f64())
            })
            .collect::<anyhow::Result<Vec<f64>>>()?;
        total += median(times) * f64::from(count);
    }
    Ok(total)
}

/// The Python reference's median seconds per frame, the naive way or the
/// best way.
fn python_frame(
    repo: &Path,
    spec: &JobSpec,
    size: &str,
    frames: u32,
    naive: bool,
) -> anyhow::Result<f64> {
    let weights = WeightStore::new(WeightStore::default_dir())
        .resolve(&spec.dream.model_spec()?, spec.dream.weights.as_deref())?;
    let out = tempfile::tempdir()?;
    let output = Command::new(repo.join(".venv/bin/python"))
        .arg(repo.join("bench/dream_recipe.py"))
        .args(["--weights".as_ref(), weights.as_os_str()])
        .args(["--input".as_ref(), spec.input.as_os_str()])
        .args(["--model", &spec.dream.model])
        .args(["--size", size, "--frames", &frames.to_string()])
        .args(["--iterations", &spec.dream.iterations.to_string()])
        .args(["--octaves", &spec.dream.octaves.to_string()])
        .args(["--out".as_ref(), out.path().as_os_str()])
        .args(naive.then_some("--naive"))
        .output()
        .context("running bench/dream_recipe.py")?;
    anyhow::ensure!(
        output.status.success(),
        "Python bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let times: Vec<f64> = v["frame_s"]
        .as_array()
        .context("frame_s")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    Ok(median(steady(times)))
}

/// Drops the first frame as warm-up when enough frames remain.
fn steady(mut times: Vec<f64>) -> Vec<f64> {
    if times.len() > 2 {
        times.remove(0);
    }
    times
}

fn main() -> anyhow::Result<()> {
    // As `dreamfarm render` does.
    dreamfarm_proto::heap::keep_freed_memory();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sizes = std::env::var("BENCH_SIZES").unwrap_or_else(|_| "512x512,1920x1080".into());
    let frames: u32 = std::env::var("BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let with_python = std::env::var("BENCH_PYTHON").map_or(true, |v| v != "0");
    let model = std::env::var("BENCH_MODEL").ok();
    println!(
        "model: {}",
        model.as_deref().unwrap_or("inception-v3 (the default)")
    );
    println!(
        "size       | dreamfarm s/frame | bare fwd+bwd s/frame | efficiency | python s/frame | dreamfarm/python | naive python s/frame"
    );
    for size in sizes.split(',') {
        let (w, h) = size.split_once('x').context("BENCH_SIZES like 512x512")?;
        let (w, h): (u32, u32) = (w.parse()?, h.parse()?);
        let mut spec = JobSpec::new(repo.join("assets/astronaut.png"), frames);
        spec.size = Some([w, h]);
        if let Some(model) = &model {
            spec.dream.model.clone_from(model);
        }
        spec.dream.weights = std::env::var_os("BENCH_WEIGHTS")
            .filter(|w| !w.is_empty())
            .map(Into::into);
        spec.validate()?;
        let mut worker =
            LocalWorker::load(&spec.dream, spec.seed, torch_device(DeviceSpec::Auto)?)?;
        let min_side = worker.min_side();
        let input = load_input(&spec)?;
        let dir = tempfile::tempdir()?;
        let out = OutputDir::open(dir.path(), &spec)?;
        let report = render(
            &spec,
            &input,
            &out,
            VideoOut {
                path: &dir.path().join("bench.mp4"),
                encoding: VideoEncoding::WhileRendering,
            },
            min_side,
            &mut worker,
            &mut |_, _| {},
        )?;
        let frame = median(steady(report.frame_seconds));
        let plan = FramePlan::new(&spec, 0, &None)?;
        let bare = bare_passes(
            &mut worker,
            &plan.objective,
            &window_shapes(&spec, &plan, w as usize, h as usize, min_side),
        )?;
        let (python, ratio, naive) = if with_python {
            let p = python_frame(&repo, &spec, size, frames, false)?;
            let n = python_frame(&repo, &spec, size, frames, true)?;
            (
                format!("{p:14.2}"),
                format!("{:16.3}", frame / p),
                format!("{n:.2}"),
            )
        } else {
            (
                "             -".into(),
                "               -".into(),
                "-".into(),
            )
        };
        println!(
            "{size:10} | {frame:17.2} | {bare:20.2} | {:10.3} | {python} | {ratio} | {naive}",
            bare / frame
        );
    }
    println!(
        "threads: {}, device: {:?}",
        tch::get_num_threads(),
        tch::Device::cuda_if_available()
    );
    Ok(())
}
