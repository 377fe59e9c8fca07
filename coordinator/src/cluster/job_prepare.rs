//! Preparing a submitted job: its name, spec and input checked, its folder
//! made and its input saved. Everything that can fail for the client's
//! reasons fails here, before the job is in the store.

use std::path::Path;

use dreamfarm_common::job_name::check_job_name;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_common::params::JobSpec;
use dreamfarm_common::seed;

use super::jobs::JobError;
use super::memory_budget::{human, job_bytes};
use crate::render::{check_min_side, load_input};
use crate::store::{JobRecord, JobState, now_ms};

/// A job as a client sends it.
#[derive(Debug)]
pub struct Submission<'a> {
    /// The job's name.
    pub name: &'a str,
    /// The job file; its `input` is replaced by the uploaded image.
    pub spec: JobSpec,
    /// The input image's bytes (PNG or JPEG).
    pub input: &'a [u8],
    /// Its priority.
    pub priority: i32,
}

/// Checks `job` against the models and the memory `budget`, gives it an id
/// and a folder under `data` with its input, and returns its record
/// (queued, not yet stored).
pub fn prepare(data: &Path, job: Submission<'_>, budget: u64) -> Result<JobRecord, JobError> {
    let invalid = |e: &dyn std::fmt::Display| JobError::Invalid(e.to_string());
    check_job_name(job.name).map_err(|e| invalid(&e))?;
    let mut spec = job.spec;
    spec.validate().map_err(|e| invalid(&e))?;
    let model = spec.dream.model_spec().map_err(|e| invalid(&e))?;
    if matches!(model, ModelSpec::TorchScript(_)) {
        return Err(JobError::Invalid(
            "cluster jobs dream with built-in models (see `dreamfarm models`); render TorchScript models with `dreamfarm render`".into(),
        ));
    }
    // The extension tells the image decoder the format.
    let extension = image::guess_format(job.input)
        .ok()
        .and_then(|f| f.extensions_str().first())
        .ok_or_else(|| JobError::Invalid("the input is not a PNG or JPEG image".into()))?;
    let (id, dir) = new_folder(data, job.name)?;
    let keep = || -> Result<JobRecord, JobError> {
        let storage = |e: std::io::Error| JobError::Storage(format!("{}: {e}", dir.display()));
        let input = format!("input.{extension}");
        spec.input = dir.join(&input);
        std::fs::write(&spec.input, job.input).map_err(storage)?;
        let image = load_input(&spec).map_err(|e| invalid(&e))?;
        check_min_side(&spec, &image, model.min_side()).map_err(|e| invalid(&e))?;
        let needs = job_bytes(image.width as u32, image.height as u32);
        if needs > budget {
            return Err(JobError::Invalid(format!(
                "a {}x{} job needs about {} of coordinator memory while it runs, more than its whole budget of {}. Fix: render at a smaller --size, or give the coordinator more memory (--max-memory, or its container's limit)",
                image.width,
                image.height,
                human(needs),
                human(budget)
            )));
        }
        // Stored relative to the job's folder, so the data folder can move.
        spec.input = input.into();
        let now = now_ms();
        Ok(JobRecord {
            id: id.clone(),
            name: job.name.to_string(),
            spec,
            state: JobState::Queued,
            priority: job.priority,
            submitted_ms: now,
            updated_ms: now,
            frames_done: 0,
            reason: String::new(),
        })
    };
    keep().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&dir);
    })
}

/// A fresh id `NAME-XXXXXXXX` and its new folder.
fn new_folder(data: &Path, name: &str) -> Result<(String, std::path::PathBuf), JobError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    for attempt in 0..100 {
        let id = format!("{name}-{:08x}", seed::derive(nanos, &[attempt]) as u32);
        let dir = data.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(JobError::Storage(format!("{}: {e}", dir.display()))),
        }
    }
    Err(JobError::Storage(format!(
        "no free job id for {name:?} in {}",
        data.display()
    )))
}
