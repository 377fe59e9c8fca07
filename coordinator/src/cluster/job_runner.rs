//! A running job's thread: it puts the job in the scheduler's pool and
//! renders it with the same loop as `dreamfarm render`, its tiles computed
//! by the workers through a [`RemoteExecutor`], continuing after the last
//! complete frame on disk. When it ends by itself it records the outcome;
//! when a control stopped it, the control does.

use std::sync::{Arc, OnceLock};

use dreamfarm_proto::WEIGHTS_MISFIT;

use super::job_handle::Stop;
use super::job_handle::{JobHandle, Runner};
use super::job_weights::JobWeights;
use super::jobs::Jobs;
use super::remote_executor::RemoteExecutor;
use super::scheduler::JobParams;
use crate::output::{OutputDir, OutputError};
use crate::render::{RenderError, load_input, render};
use crate::store::{EventKind, JobState, StoreError};
use crate::video::VideoOut;

/// Why a run ended early.
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// A control stopped it before it started.
    #[error("stopped before it started")]
    Stopped,
    /// The render failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A finished frame on the coordinator's disk cannot be read back (the
    /// render's own error tells a command-line user to run the command
    /// again; here the way to do that is `retry`).
    #[error(
        "cannot read frame {path}: {reason}. Fix: delete it and the frames after it from the coordinator's data folder, then `dreamfarm retry {job}`: they are made again"
    )]
    DamagedFrame {
        /// The frame file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
        /// The job.
        job: String,
    },
    /// A frame cannot be written on the coordinator's disk (full, say):
    /// the render's own advice is to run the command again; here the way
    /// to do that is `retry`.
    #[error(
        "cannot write frame {path}: {reason}. The frames before it are complete. Fix: make room on the coordinator's data volume (or fix what the error names), then `dreamfarm retry {job}`: it continues from this frame"
    )]
    FrameNotWritten {
        /// The frame file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
        /// The job.
        job: String,
    },
    /// A tile failed for good on the workers: what to do once they are
    /// mended is `retry`.
    #[error("{tile}. The frames before frame {frame} are complete. {}", retry_advice(tile, job), frame = .tile.frame)]
    TileFailed {
        /// The tile and why.
        tile: crate::tile_executor::TileError,
        /// The job.
        job: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job's uploaded weights file cannot be read.
    #[error("{0}")]
    Weights(String),
}

/// What to do about a tile that failed for good: mend the workers, then
/// `retry`. The workers' own advice, when their error carries it (memory
/// ran out, say), stands in for the general one; uploaded weights that do
/// not fit the model need a new job.
fn retry_advice(tile: &crate::tile_executor::TileError, job: &str) -> String {
    let frame = tile.frame;
    if tile.reason.contains(WEIGHTS_MISFIT) {
        "Fix: submit the job again (`dreamfarm delete` this one) with weights made for its model; `dreamfarm submit` with libtorch checks them before the upload".into()
    } else if tile.reason.contains("Fix: ") {
        format!("Once that is done, `dreamfarm retry {job}` continues from frame {frame}")
    } else {
        format!(
            "Fix: the workers' logs say why; mend them (a GPU out of memory: workers with a lower --concurrency; a broken machine: replace it), then `dreamfarm retry {job}`: it continues from frame {frame}"
        )
    }
}

/// Starts `job`'s thread (the job is claimed busy and Queued).
pub fn start(jobs: Arc<Jobs>, job: Arc<JobHandle>) -> std::io::Result<Runner> {
    let stop = Arc::new(OnceLock::new());
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("job {}", job.id))
        .spawn(move || {
            let _span = tracing::info_span!("job", id = %job.id).entered();
            let result = run(&jobs, &job, &flag);
            jobs.hub()
                .update(|s| s.remove_job(&job.id, "the job ended"));
            let outcome = match &result {
                Ok(()) => job.transition(&[JobState::Running], JobState::Done, ""),
                Err(e) if flag.get().is_none() => {
                    job.transition(&[JobState::Running], JobState::Failed, &e.to_string())
                }
                Err(_) => Ok(false),
            };
            match (outcome, result) {
                (Ok(true), Ok(())) => {
                    tracing::info!("job done");
                    job.log(EventKind::Done, "");
                }
                (Ok(true), Err(e)) => {
                    tracing::error!("job failed: {e}");
                    job.log(EventKind::Failed, e.to_string());
                }
                (Err(e), _) => tracing::error!("cannot record the job's end: {e}"),
                _ => tracing::info!(stop = ?flag.get(), "job stopped"),
            }
            job.release();
            jobs.admit();
        })?;
    Ok(Runner { thread, stop })
}

/// Renders the job until it is done, fails, or is stopped.
fn run(jobs: &Jobs, job: &Arc<JobHandle>, stop: &OnceLock<Stop>) -> Result<(), RunError> {
    // A control may have moved it since it was admitted.
    if !job.transition(&[JobState::Queued], JobState::Running, "")? {
        return Err(RunError::Stopped);
    }
    let record = job.record();
    let spec = job.spec();
    let weights = spec.dream.weights.as_deref().map(JobWeights::open);
    let params = JobParams {
        dream: Arc::new(spec.dream.clone()),
        seed: spec.seed,
        weights: weights.transpose().map_err(RunError::Weights)?,
    };
    jobs.hub()
        .update(|s| s.add_job(job.id.clone(), params, record.priority));
    // Stopped before it joined the pool: nothing removed it from there.
    if stop.get().is_some() {
        return Err(RunError::Stopped);
    }
    // The render's advice names its command; a cluster job's names retry.
    let with_advice = |e: RenderError| match e {
        RenderError::Output(OutputError::Unreadable { path, reason }) => RunError::DamagedFrame {
            path,
            reason,
            job: job.id.to_string(),
        },
        RenderError::Output(OutputError::Frame { path, reason }) => RunError::FrameNotWritten {
            path,
            reason,
            job: job.id.to_string(),
        },
        RenderError::Tile(tile) => RunError::TileFailed {
            tile,
            job: job.id.to_string(),
        },
        other => RunError::Render(other),
    };
    let out = OutputDir::open(&job.frames_dir(), &spec).map_err(RenderError::from)?;
    let done = out.frames_done();
    job.change(|r| r.frames_done = done)?;
    job.run_started(done);
    job.log(EventKind::Started, format!("from frame {done}"));
    let image = load_input(&spec)?;
    let min_side =
        spec.dream
            .model_spec()
            .map(|m| m.min_side())
            .map_err(|e| RenderError::Input {
                path: spec.input.clone(),
                reason: e.to_string(),
            })?;
    let mut executor = RemoteExecutor::new(jobs.hub().clone(), job.clone());
    render(
        &spec,
        &image,
        &out,
        VideoOut {
            path: &job.video(),
            encoding: jobs.video_encoding(),
        },
        min_side,
        &mut executor,
        &mut |n, seconds| job.frame_written(n, seconds),
    )
    .map_err(with_advice)?;
    Ok(())
}
