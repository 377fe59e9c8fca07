//! The coordinator's jobs: each submitted job gets a folder under the data
//! directory (`ID/input`, `ID/frames/`), a thread that runs the same
//! render loop as `dreamfarm render` with a [`RemoteExecutor`], and a status
//! that clients read and watch.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dreamfarm_common::params::JobSpec;
use dreamfarm_common::seed;
use dreamfarm_proto::pb::{JobState, JobStatus};
use dreamfarm_proto::pixels;
use tokio::sync::watch;

use super::hub::Hub;
use super::remote_executor::RemoteExecutor;
use super::scheduler::JobParams;
use crate::output::OutputDir;
use crate::render::{check_min_side, load_input, render};

/// Largest input image a client may upload.
pub const MAX_INPUT_BYTES: u64 = 512 << 20;

/// Why a job could not be submitted or found.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job file or input is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No job has this id.
    #[error("no job {0:?}: `dreamfarm status` lists the jobs")]
    NotFound(String),
    /// The data directory failed.
    #[error("coordinator storage: {0}")]
    Storage(String),
}

impl From<JobError> for tonic::Status {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Invalid(m) => tonic::Status::invalid_argument(m),
            JobError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            JobError::Storage(m) => tonic::Status::internal(m),
        }
    }
}

/// One job: identity, where its files are, and its status.
pub struct JobHandle {
    /// The job id (`NAME-XXXXXXXX`).
    pub id: Arc<str>,
    /// Its folder of frames and video.
    pub frames_dir: PathBuf,
    status: watch::Sender<JobStatus>,
    started: Instant,
    hub: Arc<Hub>,
}

impl JobHandle {
    /// The status now.
    pub fn status(&self) -> JobStatus {
        let mut s = self.status.borrow().clone();
        let now = Instant::now();
        s.tiles_per_second = self.hub.metrics.tiles.per_second(now);
        s.workers = self.hub.read(|sc| sc.snapshot().workers) as u32;
        s
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<JobStatus> {
        self.status.subscribe()
    }

    fn set(&self, f: impl FnOnce(&mut JobStatus)) {
        self.status.send_modify(f);
    }

    /// A batch of `tiles` tiles of `frame` was queued.
    pub fn batch_started(&self, frame: u64, tiles: usize) {
        self.set(|s| {
            s.state = JobState::Running as i32;
            s.frames_done = s.frames_done.max(frame);
            s.tiles_done = 0;
            s.tiles_total = tiles as u64;
            s.message.clear();
        });
    }

    /// A tile of the current batch came back.
    pub fn tile_done(&self) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.set(|s| {
            s.tiles_done += 1;
            let frames = s.frames_done as f64 + s.tiles_done as f64 / s.tiles_total.max(1) as f64;
            if frames > 0.0 {
                s.eta_seconds = elapsed / frames * (s.frames_total as f64 - frames).max(0.0);
            }
        });
    }

    /// The batch is waiting; say why when no worker is connected.
    /// Watchers hear of it only when the message changes.
    pub fn waiting(&self, workers: usize) {
        let message = if workers == 0 {
            "waiting for workers: none is connected"
        } else {
            ""
        };
        self.status.send_if_modified(|s| {
            let changed = s.message != message;
            if changed {
                s.message = message.to_string();
            }
            changed
        });
    }

    fn finish(&self, state: JobState, message: String) {
        self.set(|s| {
            s.state = state as i32;
            if state == JobState::Done {
                s.frames_done = s.frames_total;
                s.eta_seconds = 0.0;
            }
            s.message = message;
        });
    }

    /// Whether the job has ended.
    pub fn is_finished(&self) -> bool {
        let state = self.status.borrow().state;
        [JobState::Done, JobState::Failed, JobState::Cancelled]
            .iter()
            .any(|&s| s as i32 == state)
    }
}

/// Every job of this coordinator.
pub struct Jobs {
    data: PathBuf,
    hub: Arc<Hub>,
    jobs: Mutex<Vec<Arc<JobHandle>>>,
}

/// A job name must be a plain name: it becomes part of paths.
fn check_name(name: &str) -> Result<(), JobError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(JobError::Invalid(format!(
            "job name {name:?} must be 1 to 64 letters, digits, - or _"
        )))
    }
}

impl Jobs {
    /// Jobs stored under `data`.
    pub fn new(data: PathBuf, hub: Arc<Hub>) -> Self {
        Self {
            data,
            hub,
            jobs: Mutex::new(Vec::new()),
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Arc<JobHandle>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Result<Arc<JobHandle>, JobError> {
        self.list()
            .iter()
            .find(|j| &*j.id == id)
            .cloned()
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// Every job, newest first.
    pub fn all(&self) -> Vec<Arc<JobHandle>> {
        self.list().iter().rev().cloned().collect()
    }

    /// Checks and starts a job from its TOML and input image; blocking
    /// (reads and writes files, decodes the image).
    pub fn submit(
        &self,
        name: &str,
        job_toml: &str,
        input: &[u8],
    ) -> Result<Arc<JobHandle>, JobError> {
        check_name(name)?;
        let invalid = |e: &dyn std::fmt::Display| JobError::Invalid(e.to_string());
        let mut spec: JobSpec = toml::from_str(job_toml)
            .map_err(|e| JobError::Invalid(format!("the job file is not valid: {e}")))?;
        spec.validate().map_err(|e| invalid(&e))?;
        let model = spec.dream.model_spec().map_err(|e| invalid(&e))?;
        if matches!(
            model,
            dreamfarm_common::model_catalog::ModelSpec::TorchScript(_)
        ) {
            return Err(JobError::Invalid(
                "cluster jobs dream with built-in models (see `dreamfarm models`); render TorchScript models with `dreamfarm render`".into(),
            ));
        }
        let id: Arc<str> = format!(
            "{name}-{:08x}",
            seed::derive(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                &[self.list().len() as u64]
            ) as u32
        )
        .into();
        let dir = self.data.join(&*id);
        let storage = |e: std::io::Error| JobError::Storage(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(storage)?;
        // The extension tells the image decoder the format.
        let extension = image::guess_format(input)
            .ok()
            .and_then(|f| f.extensions_str().first())
            .ok_or_else(|| JobError::Invalid("the input is not a PNG or JPEG image".into()))?;
        spec.input = dir.join(format!("input.{extension}"));
        std::fs::write(&spec.input, input).map_err(storage)?;
        let image = load_input(&spec).map_err(|e| invalid(&e))?;
        check_min_side(&spec, &image, model.min_side()).map_err(|e| invalid(&e))?;
        let frames_dir = dir.join("frames");
        let out =
            OutputDir::open(&frames_dir, &spec).map_err(|e| JobError::Storage(e.to_string()))?;
        let settings = toml::to_string(&spec.dream)
            .map_err(|e| JobError::Invalid(format!("cannot encode the settings: {e}")))?;
        let (status, _) = watch::channel(JobStatus {
            job_id: id.to_string(),
            name: name.to_string(),
            state: JobState::Queued as i32,
            frames_total: u64::from(spec.frames),
            message: "starting".into(),
            ..Default::default()
        });
        let job = Arc::new(JobHandle {
            id: id.clone(),
            frames_dir,
            status,
            started: Instant::now(),
            hub: self.hub.clone(),
        });
        self.hub.update(|s| {
            s.add_job(
                id.clone(),
                JobParams {
                    dream_settings: settings.into(),
                    seed: spec.seed,
                    wire: pixels::format_for(spec.dream.wire_precision),
                },
            )
        });
        self.list().push(job.clone());
        let (hub, handle, min_side) = (self.hub.clone(), job.clone(), model.min_side());
        let video = job.frames_dir.join(format!("{name}.mp4"));
        let frames = spec.frames;
        std::thread::Builder::new()
            .name(format!("job {id}"))
            .spawn(move || {
                let mut executor = RemoteExecutor::new(hub.clone(), handle.clone());
                let _span = tracing::info_span!("job", id = %handle.id).entered();
                let result = render(&spec, &image, &out, &video, min_side, &mut executor);
                let cancelled = handle.status.borrow().state == JobState::Cancelled as i32;
                hub.update(|s| s.remove_job(&handle.id, "the job ended"));
                match result {
                    _ if cancelled => tracing::info!("job cancelled"),
                    Ok(_) => {
                        tracing::info!("job done");
                        handle.finish(JobState::Done, String::new());
                    }
                    Err(e) => {
                        tracing::error!("job failed: {e}");
                        handle.finish(JobState::Failed, e.to_string());
                    }
                }
            })
            .map_err(|e| JobError::Storage(format!("cannot start the job thread: {e}")))?;
        tracing::info!(job = %id, frames, "job submitted");
        Ok(job)
    }

    /// Cancels job `id`: its queued tiles are dropped and its leases revoked;
    /// frames already written stay.
    pub fn cancel(&self, id: &str) -> Result<Arc<JobHandle>, JobError> {
        let job = self.get(id)?;
        if !job.is_finished() {
            job.finish(JobState::Cancelled, "cancelled by a client".into());
            self.hub
                .update(|s| s.remove_job(id, "the job was cancelled"));
        }
        Ok(job)
    }
}

/// Files of a job's folder a client may fetch: frames and the video, not
/// the manifest's temp files or frames being written.
pub fn fetchable_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}
