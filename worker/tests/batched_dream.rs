//! A batch of tiles (a job's `tile_batch`) dreamed as one `[N, 3, H, W]`
//! pass through the real inception-v3 and mobilenet-v2 gives each tile a
//! change that owes nothing to the other tiles, bit for bit, and is the
//! change it gets alone up to the network's rounding (the convolutions'
//! arithmetic differs in the last bits with the batch size, which is why
//! batches are fixed by the job and never by what a worker holds), with
//! each change in its own place in the stack.

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

/// Three tiles of the photo at 176×144.
fn rects(corners: [(i64, i64); 3]) -> [Rect; 3] {
    corners.map(|(x, y)| Rect {
        x,
        y,
        width: 176,
        height: 144,
    })
}

/// The changes of the tiles at `inputs`, dreamed as one batch: each
/// tile's 140×110 samples, channel by channel.
fn batch_changes(
    dreamer: &mut Dreamer,
    photo: &Planar,
    inputs: &[Rect; 3],
    layers: [&str; 2],
    iterations: u32,
    smoothing: bool,
) -> Vec<Vec<f32>> {
    let stacked = work(
        extract_stacked(photo, inputs),
        3,
        layers,
        iterations,
        smoothing,
    );
    let together = dreamer.dream_tile(&stacked).expect("the batch dreams");
    assert_eq!((together.width, together.height), (140, 330));
    TileChange::split(together, 3)
        .expect("three changes")
        .iter()
        .map(|part| {
            (0..3)
                .flat_map(|ch| (0..110).flat_map(move |j| part.span(ch, j, 0..140).to_vec()))
                .collect()
        })
        .collect()
}

#[test]
fn a_tile_s_change_in_a_batch_owes_nothing_to_the_other_tiles() {
    // The same batch with its middle tile taken from elsewhere: the other
    // tiles' changes must be the same bits (same shapes, same arithmetic),
    // so no tile's pixels reach another's change.
    let photo = photo();
    let first = rects([(0, 0), (150, 60), (220, 250)]);
    let second = rects([(0, 0), (40, 230), (220, 250)]);
    for (model, layers) in MODELS {
        let mut dreamer = dreamer(model);
        let a = batch_changes(&mut dreamer, &photo, &first, layers, 3, true);
        let b = batch_changes(&mut dreamer, &photo, &second, layers, 3, true);
        assert!(a[1] != b[1], "{model:?}: the middle tiles differ");
        for i in [0, 2] {
            assert!(
                a[i] == b[i],
                "{model:?}: tile {i}'s change moved with its neighbour's pixels"
            );
        }
    }
}

#[test]
fn a_batch_of_tiles_changes_each_as_it_would_alone_up_to_rounding() {
    let photo = photo();
    let inputs = rects([(0, 0), (150, 60), (220, 250)]);
    // One step: after more, DeepDream grows any rounding into different
    // texture (the test above is the one that tiles do not mix).
    let iterations = 1;
    for ((model, layers), smoothing) in MODELS.into_iter().flat_map(|m| [(m, false), (m, true)]) {
        let mut dreamer = dreamer(model);
        let parts = batch_changes(&mut dreamer, &photo, &inputs, layers, iterations, smoothing);
        for (rect, together) in inputs.iter().zip(&parts) {
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
                .zip(together)
                .map(|(a, b)| a - b)
                .collect();
            let (moved, off) = (mean(&alone.data), mean(&diff));
            println!(
                "{model:?}, smoothing {smoothing} at {rect:?}: mean change {moved:.2e}, mean difference {off:.2e}"
            );
            assert!(moved > 0.005, "the dream changed the tile");
            // The rounding of one pass is a millionth of the change; where
            // it flips a ReLU whose input is within rounding of zero, a
            // thousandth. A tile computed differently (another's
            // normalisation, rows out of place) is off by far more.
            assert!(
                off < 1e-2 * moved,
                "{model:?}, smoothing {smoothing}: the batched change is not the tile's own (mean |difference| {off:e}, mean |change| {moved:e})"
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
