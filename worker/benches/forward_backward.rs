//! One forward+backward of a built-in model to its deepest default layer
//! (the default model: InceptionV3 trunk to `mixed5`) at 512×512 on the CPU,
//! against the same computation in plain Python PyTorch on the same machine,
//! measured side by side in one run:
//!
//!     cargo bench -p dreamfarm-worker --bench forward_backward
//!
//! `BENCH_SIZE` (default 512) and `BENCH_RUNS` (default 7) change the image
//! side and the number of timed runs; `BENCH_MODEL` (default `inception-v3`)
//! names the model, and `BENCH_WEIGHTS` its weights file (needed for
//! `googlenet`, which has none to download). Prints both medians and their
//! ratio.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_worker::models::Model;
use dreamfarm_worker::weights::WeightStore;
use tch::{Device, Kind, Tensor};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (size, runs) = (env_or("BENCH_SIZE", 512) as i64, env_or("BENCH_RUNS", 7));
    let name = std::env::var("BENCH_MODEL").unwrap_or_else(|_| "inception-v3".into());
    let ModelSpec::Builtin(builtin) = name.parse()? else {
        anyhow::bail!("BENCH_MODEL names a built-in model, not {name}");
    };
    let weights = std::env::var_os("BENCH_WEIGHTS")
        .filter(|w| !w.is_empty())
        .map(PathBuf::from);
    let weights = WeightStore::new(WeightStore::default_dir())
        .resolve(&ModelSpec::Builtin(builtin), weights.as_deref())
        .context(
            "BENCH_WEIGHTS=FILE.safetensors gives the model's weights (GoogLeNet's random ones: \
             .venv/bin/python scripts/reference/torchvision_models.py googlenet-weights FILE)",
        )?;
    let model = Model::load_builtin(builtin, &weights, Device::Cpu)?;
    let deepest = builtin
        .info()
        .default_layers
        .last()
        .copied()
        .unwrap_or_default();
    let layer = model.layer_index(deepest)?;
    tch::manual_seed(0);
    let input = Tensor::rand([1, 3, size, size], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    // One timed unit: forward to the layer and the gradient w.r.t. the input.
    let step = || -> anyhow::Result<()> {
        let x = input.copy().set_requires_grad(true);
        let act = model.activations_of_input(&x, &[layer])?.remove(0);
        let loss = act.square().mean(Kind::Float);
        Tensor::run_backward(&[loss], &[&x], false, false);
        Ok(())
    };
    for _ in 0..2 {
        step()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let ours = median(times.clone());

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = |naive: bool| -> anyhow::Result<serde_json::Value> {
        let out = Command::new(repo.join(".venv/bin/python"))
            .arg(repo.join("bench/forward_backward.py"))
            .arg(&weights)
            .arg(size.to_string())
            .arg(runs.to_string())
            .args(["--model", &name])
            .args(naive.then_some("--naive"))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "Python bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let (python, naive) = (python(false)?, python(true)?);
    let theirs = python["median_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "forward+backward of {name} to {deepest}, {size}x{size}, CPU, {runs} runs, torch threads {} (Python {})",
        tch::get_num_threads(),
        python["threads"]
    );
    println!("  dreamfarm (Rust, tch)   median {ours:.3} s   runs {times:.3?}");
    println!(
        "  Python PyTorch          median {theirs:.3} s   runs {}   (BatchNorm folded, channels_last)",
        python["runs"]
    );
    println!(
        "  naive Python PyTorch    median {:.3} s   (NCHW, BatchNorm unfolded)",
        naive["median_s"].as_f64().unwrap_or(f64::NAN)
    );
    println!("  ratio dreamfarm / Python = {:.3}", ours / theirs);
    Ok(())
}
