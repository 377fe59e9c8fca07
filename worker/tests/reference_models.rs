//! Every built-in architecture against an independent implementation:
//! activations at every exposed layer for a fixed input, compared with golden
//! values that TensorFlow/Keras (inception-v3) and torchvision (mobilenet-v2,
//! googlenet) produced; see `scripts/reference/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dreamfarm_common::model_catalog::BuiltinModel;
use dreamfarm_worker::models::Model;
use dreamfarm_worker::weights::{WeightStore, sha256_file};
use tch::{Device, Kind, Tensor};

const MAX_RELATIVE_L2: f64 = 1e-4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn golden(name: &str) -> HashMap<String, Tensor> {
    let path = repo().join("tests/golden").join(name);
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn relative_l2(ours: &Tensor, reference: &Tensor) -> f64 {
    let diff = (ours - reference).norm().double_value(&[]);
    diff / reference.norm().double_value(&[])
}

/// Compares every layer of `model`, the built-in `builtin`, with the golden
/// file and returns the worst relative error, failing on a shape mismatch
/// or a channel count other than the catalogue's (which jobs are checked
/// against before they render).
fn compare_all_layers(model: &Model, builtin: BuiltinModel, golden_file: &str) -> f64 {
    let g = golden(golden_file);
    let all: Vec<usize> = (0..model.layers().len()).collect();
    let acts =
        tch::no_grad(|| model.activations_of_input(&g["input"], &all)).expect("forward pass");
    let mut worst = 0.0f64;
    let catalog = builtin.info();
    assert_eq!(model.layers(), catalog.layers, "{golden_file}: layers");
    for ((name, act), &channels) in model.layers().iter().zip(&acts).zip(catalog.channels) {
        assert_eq!(
            act.size()[1],
            i64::from(channels),
            "{golden_file}: the catalogue's channels of {name}"
        );
        let reference = &g[name];
        assert_eq!(
            act.size(),
            reference.size(),
            "{golden_file}: shape of {name}"
        );
        let err = relative_l2(act, reference);
        eprintln!("{golden_file} {name:<12} relative L2 error {err:.2e}");
        assert!(
            err < MAX_RELATIVE_L2,
            "{golden_file}: {name} differs from the reference by {err:.2e}"
        );
        worst = worst.max(err);
    }
    worst
}

fn builtin(model: BuiltinModel) -> Model {
    let path = WeightStore::new(WeightStore::default_dir())
        .ensure(model)
        .expect("weights fetched (scripts/setup.sh does it)");
    Model::load_builtin(model, &path, Device::Cpu).expect("model loads")
}

#[test]
fn inception_v3_matches_tensorflow_keras_at_every_layer() {
    compare_all_layers(
        &builtin(BuiltinModel::InceptionV3),
        BuiltinModel::InceptionV3,
        "inception-v3.safetensors",
    );
}

#[test]
fn mobilenet_v2_matches_torchvision_at_every_layer() {
    compare_all_layers(
        &builtin(BuiltinModel::MobilenetV2),
        BuiltinModel::MobilenetV2,
        "mobilenet-v2.safetensors",
    );
}

#[test]
fn googlenet_matches_torchvision_with_torchvisions_random_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = dir.path().join("googlenet-random.safetensors");
    let status = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("scripts/reference/torchvision_models.py"))
        .arg("googlenet-weights")
        .arg(&weights)
        .status()
        .expect("run the project's Python (scripts/setup.sh makes .venv)");
    assert!(
        status.success(),
        "torchvision could not save GoogLeNet's random weights"
    );
    let golden_path = repo().join("tests/golden/googlenet.safetensors");
    let bytes = std::fs::read(&golden_path).expect("golden file");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("golden header");
    let expected = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("weights_sha256"))
        .cloned();
    assert_eq!(
        Some(sha256_file(&weights).expect("hash")),
        expected,
        "torchvision's seed-0 weights are not the ones the golden values were made with"
    );
    let model = Model::load_builtin(BuiltinModel::Googlenet, &weights, Device::Cpu).expect("loads");
    compare_all_layers(&model, BuiltinModel::Googlenet, "googlenet.safetensors");
}

#[test]
fn mobilenet_v2_classifies_the_photo_as_torchvision_does() {
    let model = builtin(BuiltinModel::MobilenetV2);
    let photo = image::open(repo().join("tests/golden/chelsea-224.png"))
        .expect("photo")
        .to_rgb8();
    let (w, h) = photo.dimensions();
    let image = Tensor::from_slice(photo.as_raw())
        .view([h as i64, w as i64, 3])
        .permute([2, 0, 1])
        .unsqueeze(0)
        .to_kind(Kind::Float)
        / 255.0;
    let last = model.layers().len() - 1;
    let features = tch::no_grad(|| model.activations(&image, &[last]))
        .expect("forward")
        .remove(0);
    let pooled = features.mean_dim(&[2i64, 3][..], false, Kind::Float);
    // torchvision's head: dropout (identity at inference) then Linear(1280, 1000).
    let store = WeightStore::new(WeightStore::default_dir());
    let head: HashMap<String, Tensor> =
        Tensor::read_safetensors(store.ensure(BuiltinModel::MobilenetV2).expect("weights"))
            .expect("weights file")
            .into_iter()
            .collect();
    let logits = pooled.linear(
        &head["classifier.1.weight"],
        Some(&head["classifier.1.bias"]),
    );
    let g = golden("mobilenet-v2-chelsea.safetensors");
    let ours = logits.argmax(1, false).int64_value(&[0]);
    let theirs = g["top5"].double_value(&[0]) as i64;
    assert_eq!(
        ours, theirs,
        "top-1 ImageNet class differs from torchvision's"
    );
    assert_eq!(
        theirs, 285,
        "torchvision calls Chelsea an Egyptian cat (285)"
    );
    let err = relative_l2(&logits.squeeze_dim(0), &g["logits"]);
    assert!(
        err < MAX_RELATIVE_L2,
        "logits differ from torchvision's by {err:.2e}"
    );
}
