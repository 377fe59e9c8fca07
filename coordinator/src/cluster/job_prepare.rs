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
use crate::render::check_images;
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
    /// The guide image's bytes, when the job has one.
    pub guide: Option<&'a [u8]>,
    /// The colour reference's bytes, when the job has one.
    pub color_reference: Option<&'a [u8]>,
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
    let uploads = [
        ("input image", "input", Some(job.input), true),
        (
            "guide image",
            "guide",
            job.guide,
            spec.dream.guide.is_some(),
        ),
        (
            "colour reference",
            "color-reference",
            job.color_reference,
            spec.color.reference.is_some(),
        ),
    ];
    for (what, _, bytes, named) in uploads {
        if bytes.is_some() != named {
            return Err(JobError::Invalid(format!(
                "the {what} was {} but the job file {} one",
                if named { "not uploaded" } else { "uploaded" },
                if named { "names" } else { "does not name" },
            )));
        }
    }
    let (id, dir) = new_folder(data, job.name)?;
    let keep = || -> Result<JobRecord, JobError> {
        let [input, guide, reference] = uploads.map(|(what, stem, bytes, _)| {
            bytes.map(|b| save_upload(&dir, stem, what, b)).transpose()
        });
        // The input is always there (checked above).
        let (input, guide, reference) = (input?.unwrap_or_default(), guide?, reference?);
        spec.input = dir.join(&input);
        spec.dream.guide = guide.as_ref().map(|g| dir.join(g));
        spec.color.reference = reference.as_ref().map(|r| dir.join(r));
        let image = check_images(&spec, model.min_side()).map_err(|e| invalid(&e))?;
        let needs = job_bytes(image.width as u32, image.height as u32, spec.dream.cadence);
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
        spec.dream.guide = guide.map(Into::into);
        spec.color.reference = reference.map(Into::into);
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

/// Saves an uploaded image in the job's folder `dir` as `STEM.EXT`, the
/// extension from its format (which tells the decoder); returns the name.
fn save_upload(dir: &Path, stem: &str, what: &str, bytes: &[u8]) -> Result<String, JobError> {
    let extension = image::guess_format(bytes)
        .ok()
        .and_then(|f| f.extensions_str().first())
        .ok_or_else(|| JobError::Invalid(format!("the {what} is not a PNG or JPEG image")))?;
    let name = format!("{stem}.{extension}");
    std::fs::write(dir.join(&name), bytes).map_err(|e| storage_error(dir, &e))?;
    Ok(name)
}

/// What a failure to write `path` in the data folder means: a full volume
/// is the user's to fix, and said so.
fn storage_error(path: &Path, e: &std::io::Error) -> JobError {
    let what = format!("{}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::StorageFull => JobError::Full(what),
        _ => JobError::Storage(what),
    }
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
            Err(e) => return Err(storage_error(&dir, &e)),
        }
    }
    Err(JobError::Storage(format!(
        "no free job id for {name:?} in {}",
        data.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `width`×`height` grey PNG.
    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(width, height, image::Rgb([128, 128, 128]))
            .write_to(&mut bytes, image::ImageFormat::Png)
            .expect("encode");
        bytes.into_inner()
    }

    /// `prepare` of a job whose input is `input`, in `data`.
    fn submit(data: &Path, input: &[u8]) -> Result<JobRecord, JobError> {
        let job = Submission {
            name: "job",
            spec: JobSpec::new("photo.jpg".into(), 3),
            input,
            guide: None,
            color_reference: None,
            priority: 0,
        };
        prepare(data, job, u64::MAX)
    }

    /// The coordinator checks uploads itself (a client other than
    /// `dreamfarm submit` may send anything), and a refused job leaves no
    /// folder behind.
    #[test]
    fn bad_uploads_are_refused_and_leave_nothing() {
        let data = tempfile::tempdir().expect("temp dir");
        let refused = |input: &[u8]| match submit(data.path(), input) {
            Err(JobError::Invalid(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(
            refused(b"not an image"),
            "the input image is not a PNG or JPEG image"
        );
        let why = refused(&png(64, 64));
        assert!(
            why.contains("it is 64x64, smaller than the 75 pixels per side"),
            "{why}"
        );
        assert_eq!(std::fs::read_dir(data.path()).expect("data").count(), 0);

        let job = submit(data.path(), &png(96, 96)).expect("a good job");
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.spec.input, Path::new("input.png"));
        assert!(data.path().join(&job.id).join("input.png").is_file());
    }
}
