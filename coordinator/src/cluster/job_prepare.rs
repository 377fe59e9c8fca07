//! Preparing a submitted job: its name, spec and input checked, its folder
//! made and its input saved. Everything that can fail for the client's
//! reasons fails here, before the job is in the store.

use std::path::Path;

use dreamfarm_common::job_name::check_job_name;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_common::params::JobSpec;
use dreamfarm_common::seed;

use super::job_weights::{WEIGHTS_FILE, check_weights, keep_weights, sweep_weights};
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
    /// The model's weights file, when the job names one.
    pub weights: Option<&'a [u8]>,
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
    let image: Keeper = keep_image;
    let uploads = [
        ("input image", "input", Some(job.input), true, image),
        (
            "guide image",
            "guide",
            job.guide,
            spec.dream.guide.is_some(),
            image,
        ),
        (
            "colour reference",
            "color-reference",
            job.color_reference,
            spec.color.reference.is_some(),
            image,
        ),
        (
            "weights file",
            "weights",
            job.weights,
            spec.dream.weights.is_some(),
            keep_uploaded_weights,
        ),
    ];
    for (what, _, bytes, named, _) in uploads {
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
        let [input, guide, reference, weights] = uploads.map(|(what, stem, bytes, _, keep)| {
            bytes.map(|b| keep(data, &dir, stem, what, b)).transpose()
        });
        // The input is always there (checked above).
        let (input, guide, reference, weights) =
            (input?.unwrap_or_default(), guide?, reference?, weights?);
        spec.input = dir.join(&input);
        spec.dream.guide = guide.as_ref().map(|g| dir.join(g));
        spec.color.reference = reference.as_ref().map(|r| dir.join(r));
        let image = check_images(&spec, model.min_side()).map_err(|e| invalid(&e))?;
        let needs = job_bytes(image.width as u32, image.height as u32, &spec);
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
        spec.dream.weights = weights.map(Into::into);
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
        sweep_weights(data, false);
    })
}

/// Keeps an upload in the job's folder (the second path; the first is
/// the data folder) and returns its name there, from its stem, what it is
/// and its bytes, refusing bytes that are not what the job says they are.
type Keeper = fn(&Path, &Path, &str, &str, &[u8]) -> Result<String, JobError>;

/// Keeps an uploaded image as `STEM.EXT`, the extension from its format
/// (which tells the decoder).
fn keep_image(
    _: &Path,
    dir: &Path,
    stem: &str,
    what: &str,
    bytes: &[u8],
) -> Result<String, JobError> {
    let extension = image::guess_format(bytes)
        .ok()
        .and_then(|f| f.extensions_str().first())
        .ok_or_else(|| JobError::Invalid(format!("the {what} is not a PNG or JPEG image")))?;
    save_upload(dir, format!("{stem}.{extension}"), bytes)
}

/// Keeps the uploaded weights, once they are checked, linked to the data
/// folder's one copy of them.
fn keep_uploaded_weights(
    data: &Path,
    dir: &Path,
    _: &str,
    _: &str,
    bytes: &[u8],
) -> Result<String, JobError> {
    // The upload has no path here: the advice names a stand-in.
    check_weights(bytes, "FILE.pth").map_err(JobError::Invalid)?;
    keep_weights(data, &dir.join(WEIGHTS_FILE), bytes).map_err(|e| storage_error(dir, &e))?;
    Ok(WEIGHTS_FILE.into())
}

/// Saves an upload in the job's folder `dir` as `name`; returns the name.
fn save_upload(dir: &Path, name: String, bytes: &[u8]) -> Result<String, JobError> {
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
        submit_weights(data, input, false, None)
    }

    /// `prepare` of a job whose input is `input`, in `data`, whose job
    /// file names a weights file if `named`, and whose upload holds
    /// `weights`.
    fn submit_weights(
        data: &Path,
        input: &[u8],
        named: bool,
        weights: Option<&[u8]>,
    ) -> Result<JobRecord, JobError> {
        let mut spec = JobSpec::new("photo.jpg".into(), 3);
        spec.dream.weights = named.then(|| "weights".into());
        let job = Submission {
            name: "job",
            spec,
            input,
            guide: None,
            color_reference: None,
            weights,
            priority: 0,
        };
        prepare(data, job, u64::MAX)
    }

    #[test]
    fn uploaded_weights_are_checked_and_kept_beside_the_input() {
        let data = tempfile::tempdir().expect("temp dir");
        let input = png(96, 96);
        let good = super::super::job_weights::weights(4);
        let refused = |named, weights| match submit_weights(data.path(), &input, named, weights) {
            Err(JobError::Invalid(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
        let why = refused(true, Some(&b"not safetensors"[..]));
        assert!(
            why.starts_with("the weights file is not a .safetensors file"),
            "{why}"
        );
        assert_eq!(
            refused(false, Some(&good)),
            "the weights file was uploaded but the job file does not name one"
        );
        assert_eq!(
            refused(true, None),
            "the weights file was not uploaded but the job file names one"
        );
        assert_eq!(std::fs::read_dir(data.path()).expect("data").count(), 0);

        let job = submit_weights(data.path(), &input, true, Some(&good)).expect("a good job");
        assert_eq!(
            job.spec.dream.weights.as_deref(),
            Some(Path::new(WEIGHTS_FILE))
        );
        let kept = std::fs::read(data.path().join(&job.id).join(WEIGHTS_FILE)).expect("kept");
        assert!(kept == good, "the weights were not kept as uploaded");
    }

    #[test]
    fn jobs_with_the_same_weights_keep_them_once() {
        use std::os::unix::fs::MetadataExt;
        let data = tempfile::tempdir().expect("temp dir");
        let input = png(96, 96);
        let (a, b) = (
            super::super::job_weights::weights(4),
            super::super::job_weights::weights(5),
        );
        let jobs = [&a, &a, &b]
            .map(|w| submit_weights(data.path(), &input, true, Some(w)).expect("a job"));
        let weights_of = |job: &JobRecord| data.path().join(&job.id).join(WEIGHTS_FILE);
        let inode = |job| std::fs::metadata(weights_of(job)).expect("weights").ino();
        assert_eq!(inode(&jobs[0]), inode(&jobs[1]), "the same bytes twice");
        assert_ne!(inode(&jobs[0]), inode(&jobs[2]));
        let kept_folder = data.path().join(".weights");
        let kept = || std::fs::read_dir(&kept_folder).expect("kept").count();
        assert_eq!(kept(), 2);

        // A damaged copy is written again, not linked.
        std::fs::write(weights_of(&jobs[0]), b"damaged").expect("damage");
        let again = submit_weights(data.path(), &input, true, Some(&a)).expect("a job");
        assert!(std::fs::read(weights_of(&again)).expect("kept") == a);

        // A copy goes with the last job that links to it; a part file a
        // killed submission left goes at the next start.
        let part = kept_folder.join(".part-killed.safetensors");
        std::fs::write(&part, b"half").expect("a part");
        for (job, left) in jobs.iter().chain([&again]).zip([3, 3, 2, 1]) {
            std::fs::remove_dir_all(data.path().join(&job.id)).expect("deleted");
            sweep_weights(data.path(), false);
            assert_eq!(kept(), left, "after {}", job.id);
        }
        sweep_weights(data.path(), true);
        assert_eq!(kept(), 0);
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
