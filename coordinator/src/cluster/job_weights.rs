//! A cluster job's own weights file (`--weights`, which googlenet needs):
//! uploaded with the job like its images, checked, kept in the job's
//! folder (once in the data folder for all jobs with the same file),
//! named on its leases by SHA-256, and sent to each worker that
//! does not hold those bytes yet. Workers need no copy of the user's file
//! at the user's path (a Kubernetes pod's image is read-only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dreamfarm_common::digest::sha256_hex;
use dreamfarm_common::weights_format::{is_pytorch_checkpoint, pytorch_checkpoint_advice};
use dreamfarm_proto::pb::{FileChunk, WeightsRequest};
use safetensors::SafeTensors;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::fetch::{Held, Offer, Sent, send_files, wire_chunk};
use super::hub::Hub;
use crate::whole_file::{remove_leftovers, temp_file_in};

/// The uploaded weights' name in a job's folder.
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// Checks that `bytes` are a whole `.safetensors` file holding at least one
/// tensor, so that a wrong file is refused at submission, not by every
/// worker in turn; a PyTorch checkpoint gets the command that converts it,
/// naming it as `shown`. Whether its tensors fit the model takes libtorch:
/// `submit` loads the model when it has it; otherwise a misfit fails the
/// job's first tile with the model's own error.
pub fn check_weights(bytes: &[u8], shown: &str) -> Result<(), String> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| {
        if is_pytorch_checkpoint(bytes) {
            format!("the weights file is {}", pytorch_checkpoint_advice(shown))
        } else {
            format!("the weights file is not a .safetensors file ({e}). Fix: pass the safetensors file of the model's state dict to --weights")
        }
    })?;
    if tensors.is_empty() {
        return Err("the weights file holds no tensors".into());
    }
    Ok(())
}

/// The folder of the data folder that holds each uploaded weights file
/// once, named by its SHA-256; a job's `weights.safetensors` is a hard link
/// to its copy. (No job id starts with a dot.)
const KEPT_WEIGHTS: &str = ".weights";

/// Prefix and suffix of a kept weights file being written.
const PARTIAL: (&str, &str) = (".part-", ".safetensors");

/// Writes `bytes`, a job's checked weights, to `path` in its folder: as a
/// hard link to the data folder `data`'s one copy of those bytes (made when
/// new, or when the copy there is damaged), so that jobs with the same
/// weights (every googlenet job with the user's file) keep them once; as a
/// copy of its own where the file system cannot link.
pub fn keep_weights(data: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = data.join(KEPT_WEIGHTS);
    std::fs::create_dir_all(&folder)?;
    let sha256 = sha256_hex(bytes)?;
    let kept = folder.join(format!("{sha256}.safetensors"));
    let whole = std::fs::File::open(&kept).and_then(sha256_hex);
    if whole.ok().as_deref() != Some(sha256.as_str()) {
        let mut file = temp_file_in(&folder, PARTIAL.0, PARTIAL.1)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.as_file().sync_all()?;
        file.persist(&kept).map_err(|e| e.error)?;
    }
    // A sweep may take the copy between the two steps: then a copy of its own.
    std::fs::hard_link(&kept, path).or_else(|_| std::fs::write(path, bytes))
}

/// Removes the kept weights that no job's folder links to any more (once
/// a job is deleted or its submission failed), and at the coordinator's
/// start (`starting`) the part files a killed submission left.
pub fn sweep_weights(data: &Path, starting: bool) {
    use std::os::unix::fs::MetadataExt;
    let folder = data.join(KEPT_WEIGHTS);
    if starting {
        remove_leftovers(&folder, PARTIAL.0, PARTIAL.1);
    }
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let unlinked = entry.metadata().is_ok_and(|m| m.nlink() == 1);
        // Part files are a running submission's until the next start.
        if unlinked && !name.to_string_lossy().starts_with(PARTIAL.0) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A running job's weights file and its SHA-256, which its leases name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobWeights {
    /// Where the coordinator keeps it.
    pub path: PathBuf,
    /// Its SHA-256 in lower-case hex.
    pub sha256: String,
}

impl JobWeights {
    /// Hashes the weights file at `path`, when the job starts (a job's
    /// weights never change, so once per start).
    pub fn open(path: &Path) -> Result<Self, String> {
        let hashed = std::fs::File::open(path).and_then(sha256_hex);
        let sha256 = hashed.map_err(|e| {
            format!(
                "cannot read the job's weights file {}: {e}. Fix: submit the job again with --weights",
                path.display()
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            sha256,
        })
    }
}

/// The pieces of a job's weights file on the wire.
pub type WeightsStream =
    tokio_stream::adapters::Map<ReceiverStream<Sent>, fn(Sent) -> Result<FileChunk, Status>>;

/// What a worker fetching weights hears when the coordinator shuts down.
const WEIGHTS_STOPPED: &str =
    "the coordinator is shutting down; the lease goes to a worker after its restart";

/// Answers a worker's `Weights` call: the weights file of a job in the
/// pool whose digest is the one asked for, read from disk a piece at a
/// time on a thread of its own.
pub fn send_weights(hub: &Arc<Hub>, request: WeightsRequest) -> Result<WeightsStream, Status> {
    let WeightsRequest { job_id, sha256 } = request;
    let weights = hub
        .read(|s| s.job_params(&job_id).map(|p| p.weights.clone()))
        .ok_or_else(|| Status::not_found(format!("job {job_id:?} is not running")))?
        .ok_or_else(|| {
            Status::not_found(format!(
                "job {job_id:?} dreams with the workers' own weights"
            ))
        })?;
    if weights.sha256 != sha256 {
        return Err(Status::failed_precondition(format!(
            "job {job_id:?}'s weights have SHA-256 {}, not {sha256}",
            weights.sha256
        )));
    }
    let (tx, rx) = mpsc::channel(4);
    let hub = hub.clone();
    tokio::task::spawn_blocking(move || {
        send_files(
            vec![Offer::Disk(weights.path)],
            &Held::default(),
            tx,
            &hub.metrics,
            &|| hub.is_stopping(),
        )
    });
    Ok(ReceiverStream::new(rx).map(weights_chunk as fn(_) -> _))
}

/// A piece of a weights file on the wire.
fn weights_chunk(sent: Sent) -> Result<FileChunk, Status> {
    wire_chunk(sent, WEIGHTS_STOPPED)
}

/// A safetensors file of one f32 tensor of `n` zeros, for tests.
#[cfg(test)]
pub(super) fn weights(n: usize) -> Vec<u8> {
    let data = vec![0u8; 4 * n];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n], &data)
        .expect("view");
    safetensors::serialize([("w", view)], None).expect("serialized")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_safetensors_file_passes() {
        assert_eq!(check_weights(&weights(3), "w"), Ok(()));
        let truncated = weights(3);
        let e = check_weights(&truncated[..truncated.len() - 1], "w").expect_err("truncated");
        assert!(
            e.starts_with("the weights file is not a .safetensors file ("),
            "{e}"
        );
        let e =
            check_weights(b"PK\x03\x04 a zip, as torch.save writes", "g.pth").expect_err("not one");
        assert!(
            e.starts_with("the weights file is a PyTorch checkpoint (.pth), and dreamfarm reads .safetensors. Fix: convert it once"),
            "{e}"
        );
        assert!(e.contains(" g.pth WEIGHTS.safetensors"), "{e}");
        let e = check_weights(b"hello", "w").expect_err("not one");
        assert!(e.contains("Fix: pass the safetensors file"), "{e}");
        let empty = safetensors::serialize(
            std::iter::empty::<(&str, safetensors::tensor::TensorView<'_>)>(),
            None,
        )
        .expect("serialized");
        assert_eq!(
            check_weights(&empty, "w"),
            Err("the weights file holds no tensors".into())
        );
    }

    #[test]
    fn a_jobs_weights_are_named_by_their_digest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(WEIGHTS_FILE);
        std::fs::write(&path, weights(5)).expect("written");
        let w = JobWeights::open(&path).expect("opened");
        assert_eq!(w.path, path);
        assert_eq!(
            w.sha256,
            sha256_hex(&weights(5)[..]).expect("hashed"),
            "the digest of the bytes"
        );
        let e = JobWeights::open(&dir.path().join("gone")).expect_err("missing");
        assert!(e.contains("submit the job again with --weights"), "{e}");
    }
}
