//! `inception-v3`: the ImageNet InceptionV3 trunk inside npm `nsfwjs@4.4.0`.
//!
//! The package ships a TensorFlow.js layers model (Keras 2.2.4 InceptionV3)
//! as minified JavaScript modules: `model.min.js` holds the topology and the
//! weights manifest as an object literal, and six shard modules each hold a
//! base64 string; concatenated in manifest order they form one buffer of
//! uint8-quantized tensors (`w = min + scale * q`).
//!
//! Only `conv2d_1` … `conv2d_50` and their BatchNorms (stem to `mixed5`) are
//! converted, and only after the topology confirms each is frozen
//! (`trainable: false`), i.e. untouched by nsfwjs' fine-tuning.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use safetensors::{Dtype, tensor::TensorView};
use serde_json::Value;

use super::download::{self, Registry};
use super::{Pinned, WeightStore, WeightsError};
use crate::models::{ConvShape, conv_units, inception_v3};

const TARBALL: Pinned = Pinned {
    file: "nsfwjs-4.4.0.tgz",
    sha256: "585cd178f3b994337c4d10a87b080d342fc52f8b9bf0085c4d1f345a3a1c5382",
    what: "npm nsfwjs@4.4.0",
};

const MODEL_DIR: &str = "package/dist/models/inception_v3/";

/// Downloads (once) the pinned tarball and writes the converted trunk to `out`.
pub fn convert_into(store: &WeightStore, out: &Path) -> Result<(), WeightsError> {
    let tarball = download::fetch(&store.downloads(), Registry::Npm("nsfwjs@4.4.0"), TARBALL)?;
    convert(&tarball, out)
}

/// Converts the InceptionV3 trunk of an nsfwjs tarball into `.safetensors`
/// with torchvision parameter names.
pub fn convert(tarball: &Path, out: &Path) -> Result<(), WeightsError> {
    let malformed = |reason: String| WeightsError::Malformed {
        path: tarball.to_path_buf(),
        reason,
    };
    let files = read_model_files(tarball).map_err(&malformed)?;
    let model_js = files
        .get("model.min.js")
        .ok_or_else(|| malformed(format!("lacks {MODEL_DIR}model.min.js")))?;
    let model = parse_module_object(model_js).map_err(&malformed)?;
    let weights = Weights::read(&model, &files).map_err(&malformed)?;
    let layers = keras_layers(&model).map_err(&malformed)?;

    let blocks = inception_v3::blocks();
    let mut tensors: Vec<(String, Vec<i64>, Vec<f32>)> = Vec::new();
    for (i, (weight, bn, shape)) in conv_units(&blocks).enumerate() {
        let (conv, norm) = (
            format!("conv2d_{}", i + 1),
            format!("batch_normalization_{}", i + 1),
        );
        check_conv(&layers, &conv, shape).map_err(&malformed)?;
        check_frozen_bn(&layers, &norm).map_err(&malformed)?;
        let [kh, kw] = shape.kernel;
        let hwio = weights
            .get(&format!("{conv}/kernel"), &[kh, kw, shape.cin, shape.cout])
            .map_err(&malformed)?;
        tensors.push((
            weight.to_string(),
            vec![shape.cout, shape.cin, kh, kw],
            hwio_to_oihw(&hwio, [kh, kw, shape.cin, shape.cout]),
        ));
        for (keras, torch) in [
            ("beta", "bias"),
            ("moving_mean", "running_mean"),
            ("moving_variance", "running_var"),
        ] {
            let v = weights
                .get(&format!("{norm}/{keras}"), &[shape.cout])
                .map_err(&malformed)?;
            tensors.push((format!("{bn}.{torch}"), vec![shape.cout], v));
        }
    }
    write_safetensors(out, &tensors)
}

/// The model's files from the tarball, keyed by file name.
fn read_model_files(tarball: &Path) -> Result<HashMap<String, String>, String> {
    let file = std::fs::File::open(tarball).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = HashMap::new();
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar.gz: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("truncated or corrupt archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        if let Some(name) = path.strip_prefix(MODEL_DIR) {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            files.insert(name.to_string(), text);
        }
    }
    Ok(files)
}

/// The object literal a minified module assigns to `exports`, as JSON.
///
/// The literal is JavaScript, not JSON: keys are bare, numbers may start with
/// a dot (JSON5 reads both), and booleans are minified to `!0` / `!1`, which
/// are rewritten here outside string literals.
fn parse_module_object(js: &str) -> Result<Value, String> {
    let start = js
        .find("exports={")
        .map(|i| i + "exports=".len())
        .ok_or("model.min.js assigns no object to exports")?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut literal = String::with_capacity(js.len() - start);
    let mut chars = js[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            literal.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            '!' if matches!(chars.peek(), Some('0' | '1')) => {
                literal.push_str(if chars.next() == Some('0') {
                    "true"
                } else {
                    "false"
                });
                continue;
            }
            _ => {}
        }
        literal.push(c);
        if depth == 0 {
            return json5::from_str(&literal)
                .map_err(|e| format!("model.min.js object literal: {e}"));
        }
    }
    Err("model.min.js ends inside its object literal (truncated?)".into())
}

/// The base64 payload a shard module assigns to `exports`, decoded.
fn shard_bytes(name: &str, js: &str) -> Result<Vec<u8>, String> {
    let start = js
        .find("exports=\"")
        .map(|i| i + "exports=\"".len())
        .ok_or_else(|| format!("{name} assigns no string to exports"))?;
    let len = js[start..]
        .find('"')
        .ok_or_else(|| format!("{name} ends inside its string (truncated?)"))?;
    base64::engine::general_purpose::STANDARD
        .decode(&js[start..start + len])
        .map_err(|e| format!("{name}: bad base64: {e}"))
}

/// Dequantized tensors of the weights manifest.
struct Weights {
    buffer: Vec<u8>,
    /// name → (byte offset, manifest entry)
    entries: HashMap<String, (usize, Value)>,
}

impl Weights {
    fn read(model: &Value, files: &HashMap<String, String>) -> Result<Self, String> {
        let groups = model["weightsManifest"]
            .as_array()
            .ok_or("no weightsManifest")?;
        let mut buffer = Vec::new();
        let mut entries = HashMap::new();
        for group in groups {
            let group_start = buffer.len();
            for path in group["paths"]
                .as_array()
                .ok_or("manifest group without paths")?
            {
                let name = format!("{}.min.js", path.as_str().ok_or("non-string shard path")?);
                let js = files
                    .get(&name)
                    .ok_or_else(|| format!("lacks shard {MODEL_DIR}{name}"))?;
                buffer.extend(shard_bytes(&name, js)?);
            }
            let mut offset = group_start;
            for w in group["weights"]
                .as_array()
                .ok_or("manifest group without weights")?
            {
                let name = w["name"].as_str().ok_or("weight without name")?.to_string();
                let size = byte_size(w)?;
                entries.insert(name, (offset, w.clone()));
                offset += size;
            }
            if offset != buffer.len() {
                return Err(format!(
                    "shards hold {} bytes but the manifest describes {} (truncated shard?)",
                    buffer.len() - group_start,
                    offset - group_start
                ));
            }
        }
        Ok(Self { buffer, entries })
    }

    /// The named tensor as f32, after checking its shape.
    fn get(&self, name: &str, shape: &[i64]) -> Result<Vec<f32>, String> {
        let (offset, w) = self
            .entries
            .get(name)
            .ok_or_else(|| format!("weights manifest lacks {name}"))?;
        let found = shape_of(w)?;
        if found != shape {
            return Err(format!("{name} has shape {found:?}, expected {shape:?}"));
        }
        let bytes = &self.buffer[*offset..*offset + byte_size(w)?];
        let q = &w["quantization"];
        if q.is_null() {
            return Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect());
        }
        let (min, scale) = (
            q["min"].as_f64().ok_or("quantization without min")?,
            q["scale"].as_f64().ok_or("quantization without scale")?,
        );
        let dequant = |v: u32| (min + scale * f64::from(v)) as f32;
        Ok(match q["dtype"].as_str() {
            Some("uint8") => bytes.iter().map(|&b| dequant(b.into())).collect(),
            Some("uint16") => bytes
                .chunks_exact(2)
                .map(|b| dequant(u16::from_le_bytes([b[0], b[1]]).into()))
                .collect(),
            other => return Err(format!("{name}: unsupported quantization {other:?}")),
        })
    }
}

fn shape_of(w: &Value) -> Result<Vec<i64>, String> {
    w["shape"]
        .as_array()
        .ok_or("weight without shape")?
        .iter()
        .map(|d| {
            d.as_i64()
                .ok_or_else(|| "non-integer dimension".to_string())
        })
        .collect()
}

fn byte_size(w: &Value) -> Result<usize, String> {
    let n = shape_of(w)?.iter().product::<i64>() as usize;
    let per = match (w["quantization"]["dtype"].as_str(), w["dtype"].as_str()) {
        (Some("uint8"), _) => 1,
        (Some("uint16"), _) => 2,
        (None, Some("float32" | "int32")) => 4,
        other => return Err(format!("unsupported weight encoding {other:?}")),
    };
    Ok(n * per)
}

/// Keras layer configs by name.
fn keras_layers(model: &Value) -> Result<HashMap<String, Value>, String> {
    let layers = model["modelTopology"]["model_config"]["config"]["layers"]
        .as_array()
        .ok_or("topology without layers")?;
    Ok(layers
        .iter()
        .filter_map(|l| Some((l["name"].as_str()?.to_string(), l.clone())))
        .collect())
}

fn layer<'a>(
    layers: &'a HashMap<String, Value>,
    name: &str,
    class: &str,
) -> Result<&'a Value, String> {
    let l = layers
        .get(name)
        .ok_or_else(|| format!("topology lacks {name}"))?;
    if l["class_name"] != class {
        return Err(format!("{name} is a {}, expected {class}", l["class_name"]));
    }
    if l["config"]["trainable"] != false {
        return Err(format!(
            "{name} is trainable, i.e. fine-tuned by nsfwjs: refusing to use it as ImageNet weights"
        ));
    }
    Ok(&l["config"])
}

fn check_conv(
    layers: &HashMap<String, Value>,
    name: &str,
    shape: &ConvShape,
) -> Result<(), String> {
    let c = layer(layers, name, "Conv2D")?;
    let pads: Vec<i64> = match c["padding"].as_str() {
        Some("same") => shape.kernel.iter().map(|k| k / 2).collect(),
        Some("valid") => vec![0, 0],
        other => return Err(format!("{name}: unexpected padding {other:?}")),
    };
    let expected = serde_json::json!({
        "kernel_size": shape.kernel, "strides": [shape.stride, shape.stride], "filters": shape.cout,
        "use_bias": false, "padding": shape.padding,
    });
    let found = serde_json::json!({
        "kernel_size": c["kernel_size"], "strides": c["strides"], "filters": c["filters"],
        "use_bias": c["use_bias"], "padding": pads,
    });
    if expected == found {
        Ok(())
    } else {
        Err(format!(
            "{name} is {found}, but the InceptionV3 description expects {expected}"
        ))
    }
}

fn check_frozen_bn(layers: &HashMap<String, Value>, name: &str) -> Result<(), String> {
    let c = layer(layers, name, "BatchNormalization")?;
    if c["scale"] == false
        && c["center"] == true
        && c["epsilon"].as_f64() == Some(inception_v3::BN_EPS)
    {
        Ok(())
    } else {
        Err(format!(
            "{name} is not a scale=False, center=True, epsilon=0.001 BatchNorm: {c}"
        ))
    }
}

/// Keras kernels are `[h, w, in, out]`; PyTorch's are `[out, in, h, w]`.
fn hwio_to_oihw(src: &[f32], [h, w, i, o]: [i64; 4]) -> Vec<f32> {
    let (h, w, i, o) = (h as usize, w as usize, i as usize, o as usize);
    let mut dst = vec![0.0; src.len()];
    for y in 0..h {
        for x in 0..w {
            for ci in 0..i {
                for co in 0..o {
                    dst[((co * i + ci) * h + y) * w + x] = src[((y * w + x) * i + ci) * o + co];
                }
            }
        }
    }
    dst
}

fn write_safetensors(
    out: &Path,
    tensors: &[(String, Vec<i64>, Vec<f32>)],
) -> Result<(), WeightsError> {
    let bytes: Vec<(&str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let shape = shape.iter().map(|&d| d as usize).collect();
            (
                name.as_str(),
                shape,
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, data)| {
        let view =
            TensorView::new(Dtype::F32, shape.clone(), data).expect("shape matches data length");
        (*name, view)
    });
    // One metadata entry only: a map's iteration order would make the
    // header, and so the pinned sha256, vary from run to run.
    let metadata = HashMap::from([(
        "source".to_string(),
        "npm nsfwjs@4.4.0 (MIT), package/dist/models/inception_v3: Keras 2.2.4 InceptionV3 ImageNet layers conv2d_1..conv2d_50, dequantized".to_string(),
    )]);
    safetensors::serialize_to_file(views, Some(metadata), out).map_err(|e| {
        WeightsError::Malformed {
            path: out.to_path_buf(),
            reason: format!("cannot write safetensors: {e}"),
        }
    })
}
