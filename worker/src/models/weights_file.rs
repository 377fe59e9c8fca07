//! A `.safetensors` file read into named tensors, taken out one by one so
//! that a missing or unexpected parameter is an error, never a silent zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dreamfarm_common::weights_format::{is_pytorch_checkpoint, pytorch_checkpoint_advice};
use tch::{Device, Kind, Tensor};

use super::ModelError;

/// The tensors of one weight file, keyed by parameter name.
pub struct WeightsFile {
    path: PathBuf,
    tensors: BTreeMap<String, Tensor>,
    device: Device,
}

impl WeightsFile {
    /// Reads every tensor of `path`; they move to `device` as they are taken.
    pub fn read(path: &Path, device: Device) -> Result<Self, ModelError> {
        let tensors = Tensor::read_safetensors(path).map_err(|e| ModelError::BadWeights {
            path: path.to_path_buf(),
            reason: unreadable(path, &e.to_string()),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors: tensors.into_iter().collect(),
            device,
        })
    }

    /// Removes `name` and checks its shape; f32 on the target device.
    pub fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ModelError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| self.bad(format!("parameter {name} is missing")))?;
        if t.size() != shape {
            return Err(self.bad(format!(
                "parameter {name} has shape {:?}, expected {shape:?}",
                t.size()
            )));
        }
        Ok(t.to_kind(Kind::Float).to_device(self.device))
    }

    /// Like [`take`](Self::take) for a parameter that may be absent.
    pub fn take_optional(
        &mut self,
        name: &str,
        shape: &[i64],
    ) -> Result<Option<Tensor>, ModelError> {
        if self.tensors.contains_key(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails if anything is left that the network did not use, ignoring
    /// names that start with one of `unused_prefixes` (classifier heads,
    /// BatchNorm counters) and are known to be irrelevant to dreaming.
    pub fn finish(self, unused_prefixes: &[&str]) -> Result<(), ModelError> {
        let left: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| {
                !k.ends_with("num_batches_tracked")
                    && !unused_prefixes.iter().any(|p| k.starts_with(p))
            })
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(self.bad(format!(
                "unexpected parameters (is this file for another architecture?): {left:?}"
            )))
        }
    }

    fn bad(&self, reason: String) -> ModelError {
        ModelError::BadWeights {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Why `path` is no `.safetensors` file (`error` as the reader said it),
/// with the conversion when it is a PyTorch checkpoint.
fn unreadable(path: &Path, error: &str) -> String {
    let mut head = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head));
    if matches!(read, Ok(4)) && is_pytorch_checkpoint(&head) {
        format!(
            "it is {}",
            pytorch_checkpoint_advice(&path.display().to_string())
        )
    } else {
        format!(
            "not a readable .safetensors file ({error}). Fix: pass the model's weights as .safetensors"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pytorch_checkpoint_is_told_from_other_files_with_its_conversion() {
        let dir = tempfile::tempdir().expect("temp dir");
        let said = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("file");
            match WeightsFile::read(&path, Device::Cpu) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{name} was read as weights"),
            }
        };
        for (name, bytes) in [
            ("zip.pth", &b"PK\x03\x04 and the rest of an archive"[..]),
            ("legacy.pth", &b"\x80\x02\x8a\x0alegacy pickle"[..]),
        ] {
            let message = said(name, bytes);
            assert!(
                message.contains("it is a PyTorch checkpoint (.pth), and dreamfarm reads .safetensors. Fix: convert it once"),
                "{message}"
            );
            assert!(
                message.contains(&format!("{name} WEIGHTS.safetensors")),
                "{message}"
            );
        }
        for (name, bytes) in [("text.safetensors", &b"hello"[..]), ("empty", &b""[..])] {
            let message = said(name, bytes);
            assert!(
                message.contains("not a readable .safetensors file ("),
                "{message}"
            );
            assert!(
                message.contains("Fix: pass the model's weights as .safetensors"),
                "{message}"
            );
        }
    }
}
