//! A batch of tiles (a job's `tile_batch`) dreamed as one `[N, 3, H, W]`
//! pass through the real inception-v3 and mobilenet-v2 gives each tile the
//! change it gets alone, up to the network's rounding (the convolutions' arithmetic
//! differs in the last bits with the batch size, which is why batches are
//! fixed by the job and never by what a worker holds), with each change in
//! its own place in the stack.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dreamfarm_common::model_catalog::{BuiltinModel, ModelSpec};
use dreamfarm_common::objective::{FrameObjective, LayerWeight};
use dreamfarm_common::params::Reduction;
use dreamfarm_common::resample::{Planar, resize};
use dreamfarm_common::tiling::{Rect, TileChange, extract, extract_stacked};
use dreamfarm_common::work::TileWork;
use dreamfarm_worker::dream::Dreamer;
use dreamfarm_worker::models::Model;
use dreamfarm_worker::weights::WeightStore;
use tch::Device;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The astronaut at 400×400.
fn photo() -> Planar {
    let rgb = image::open(repo().join("assets/astronaut.png"))
        .expect("asset")
        .to_rgb8();
    let full = Planar::from_rgb8(rgb.width() as usize, rgb.height() as usize, rgb.as_raw());
    resize(&full, 400, 400)
}

/// The built-in models with weights, each with two of its layers to
/// dream on.
const MODELS: [(BuiltinModel, [&str; 2]); 2] = [
    (BuiltinModel::InceptionV3, ["mixed3", "mixed5"]),
    (BuiltinModel::MobilenetV2, ["features.7", "features.10"]),
];

fn dreamer(m: BuiltinModel) -> Dreamer {
    let path = WeightStore::new(WeightStore::default_dir())
        .resolve(&ModelSpec::Builtin(m), None)
        .expect("weights: run scripts/setup.sh");
    Dreamer::new(
        Model::load_builtin(m, &path, Device::Cpu).expect("model loads"),
        7,
    )
}

/// Work on `pixels` holding `tiles` stacked tiles of 176×144, whose
/// changes lie at (10, 8) and measure 140×110; `iterations` steps on
/// `layers`.
fn work(
    pixels: Planar,
    tiles: u32,
    layers: [&str; 2],
    iterations: u32,
    smoothing: bool,
) -> TileWork {
    TileWork {
        frame: 3,
        octave: 1,
        tile: 0,
        objective: Arc::new(FrameObjective {
            layers: layers
                .map(|name| LayerWeight {
                    name: name.into(),
                    weight: 1.0,
                    channels: Vec::new(),
                })
                .to_vec(),
            reduction: Reduction::MeanSquare,
            step_size: 0.02,
            smoothing,
            iterations: 10,
            guide_strength: 0.0,
            guide: None,
        }),
        first_iteration: 2,
        iterations,
        jitter: 6,
        pixels,
        output: Rect {
            x: 10,
            y: 8,
            width: 140,
            height: 110,
        },
        tiles,
    }
}

#[test]
fn a_batch_of_tiles_changes_each_as_it_would_alone_up_to_rounding() {
    let photo = photo();
    let inputs = [(0, 0), (150, 60), (220, 250)].map(|(x, y)| Rect {
        x,
        y,
        width: 176,
        height: 144,
    });
    for ((model, layers), (iterations, smoothing)) in MODELS
        .into_iter()
        .flat_map(|m| [(m, (1, false)), (m, (3, true))])
    {
        let mut dreamer = dreamer(model);
        let stacked = work(
            extract_stacked(&photo, &inputs),
            3,
            layers,
            iterations,
            smoothing,
        );
        let together = dreamer.dream_tile(&stacked).expect("the batch dreams");
        assert_eq!((together.width, together.height), (140, 330));
        let parts = TileChange::split(together, 3).expect("three changes");
        for (rect, together) in inputs.iter().zip(&parts) {
            let together: Vec<f32> = (0..3)
                .flat_map(|ch| (0..110).flat_map(move |j| together.row(ch, j).to_vec()))
                .collect();
            let alone = dreamer
                .dream_tile(&work(
                    extract(&photo, *rect),
                    1,
                    layers,
                    iterations,
                    smoothing,
                ))
                .expect("the tile dreams");
            let mean =
                |v: &[f32]| v.iter().map(|x| f64::from(x.abs())).sum::<f64>() / v.len() as f64;
            let diff: Vec<f32> = alone
                .data
                .iter()
                .zip(&together)
                .map(|(a, b)| a - b)
                .collect();
            let (moved, off) = (mean(&alone.data), mean(&diff));
            println!(
                "{model:?}, {iterations} steps at {rect:?}: mean change {moved:.2e}, mean difference {off:.2e}"
            );
            assert!(moved > 0.005, "the dream changed the tile");
            // One step: the rounding of one pass. More steps let a
            // rounding flip a ReLU or a max-pool now and then.
            let bound = if iterations == 1 { 1e-6 } else { 1e-2 * moved };
            assert!(
                off < bound,
                "{model:?}, {iterations} steps: the batched change is not the tile's own (mean |difference| {off:e}, mean |change| {moved:e})"
            );
        }
    }
}

#[test]
fn a_batch_whose_rows_do_not_split_into_its_tiles_is_refused() {
    let (model, layers) = MODELS[0];
    let mut dreamer = dreamer(model);
    let pixels = extract(
        &photo(),
        Rect {
            x: 0,
            y: 0,
            width: 176,
            height: 145,
        },
    );
    let e = dreamer
        .dream_tile(&work(pixels, 2, layers, 1, false))
        .expect_err("refused")
        .to_string();
    assert!(e.contains("2 tiles cannot be stacked in 145 rows"), "{e}");
}
