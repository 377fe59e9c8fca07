//! The coordinator's jobs: every job of the store, which of them run, and
//! the controls clients have over them. Queued jobs start in priority order
//! while their memory fits the budget; each running job has a thread that
//! renders it with the same loop as `dreamfarm render` (see
//! [`job_runner`]). A job's frames are files on disk,
//! so a job stopped in any way (pause, restart of the coordinator, a
//! failure) continues after its last complete frame.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::hub::Hub;
use super::job_handle::{JobHandle, Stop};
use super::job_prepare::{Submission, prepare};
use super::job_runner;
use super::job_weights::sweep_weights;
use super::memory_budget::human;
use crate::output::OutputDir;
use crate::store::{Event, EventKind, JobState, JobStore, StoreError, UnreadableJob};
use crate::video::VideoEncoding;

/// Largest input image a client may upload.
pub const MAX_INPUT_BYTES: u64 = 512 << 20;

/// Largest frame count a job may be extended to.
const MAX_FRAMES: u32 = 1_000_000;

/// Why a job call was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job file or input is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No job has this id.
    #[error("no job {0:?}: `dreamfarm status` lists the jobs")]
    NotFound(String),
    /// The job is not in a state that allows the call.
    #[error("{0}")]
    Conflict(String),
    /// The data directory failed.
    #[error("coordinator storage: {0}")]
    Storage(String),
    /// The data directory's volume is full: the job was not kept.
    #[error(
        "the coordinator's data volume is full ({0}); the job was not kept. Fix: make room on it (`dreamfarm delete` jobs whose frames you have fetched, or grow the volume), then submit again"
    )]
    Full(String),
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<JobError> for tonic::Status {
    fn from(e: JobError) -> Self {
        match &e {
            JobError::Invalid(m) => tonic::Status::invalid_argument(m),
            JobError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            JobError::Conflict(m) => tonic::Status::failed_precondition(m),
            JobError::Full(_) => tonic::Status::resource_exhausted(e.to_string()),
            JobError::Storage(_) | JobError::Store(_) => tonic::Status::internal(e.to_string()),
        }
    }
}

/// Every job of this coordinator (see the module docs).
pub struct Jobs {
    data: PathBuf,
    hub: Arc<Hub>,
    budget: u64,
    video: VideoEncoding,
    jobs: Mutex<BTreeMap<String, Arc<JobHandle>>>,
    /// Jobs of the store this build cannot read, left as they are.
    unreadable: Vec<UnreadableJob>,
    /// One admission pass at a time.
    admitting: Mutex<()>,
    me: Weak<Jobs>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Jobs {
    /// The jobs of `hub`'s store, whose folders are under `data`: active
    /// ones are queued again (they continue after their last complete
    /// frame) and start as `budget` bytes of memory allow; their videos are
    /// encoded as `video` says.
    pub fn open(
        data: PathBuf,
        hub: Arc<Hub>,
        budget: u64,
        video: VideoEncoding,
    ) -> Result<Arc<Self>, StoreError> {
        let store: Arc<dyn JobStore> = hub.store().clone();
        let (mut records, mut unreadable) = (Vec::new(), Vec::new());
        for row in store.jobs()? {
            match row {
                Ok(record) => records.push(record),
                Err(job) => {
                    tracing::error!(job = %job.id, "{}", job.explained());
                    unreadable.push(job);
                }
            }
        }
        let jobs = Arc::new_cyclic(|me| Self {
            data,
            hub,
            budget,
            video,
            jobs: Mutex::new(BTreeMap::new()),
            unreadable,
            admitting: Mutex::new(()),
            me: me.clone(),
        });
        sweep_weights(&jobs.data, true);
        let mut resumed = 0;
        for record in records {
            let dir = jobs.data.join(&record.id);
            let job = Arc::new(JobHandle::new(record, dir, store.clone()));
            if job.state().is_active() {
                let on_disk = frames_on_disk(&job.frames_dir());
                job.change(|r| {
                    r.state = JobState::Queued;
                    r.frames_done = on_disk;
                })?;
                job.log(
                    EventKind::Restarted,
                    format!("the coordinator restarted; {on_disk} frames are on disk"),
                );
                resumed += 1;
            }
            lock(&jobs.jobs).insert(job.id.to_string(), job);
        }
        tracing::info!(jobs = lock(&jobs.jobs).len(), resumed, unreadable = jobs.unreadable.len(), budget = %human(budget), "job store open");
        jobs.admit();
        Ok(jobs)
    }

    fn handles(&self) -> Vec<Arc<JobHandle>> {
        lock(&self.jobs).values().cloned().collect()
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Result<Arc<JobHandle>, JobError> {
        lock(&self.jobs).get(id).cloned().ok_or_else(|| {
            match self.unreadable.iter().find(|u| u.id == id) {
                Some(u) => JobError::Conflict(u.explained()),
                None => JobError::NotFound(id.to_string()),
            }
        })
    }

    /// The jobs of the store this build cannot read (see [`UnreadableJob`]).
    pub fn unreadable(&self) -> &[UnreadableJob] {
        &self.unreadable
    }

    /// Every job, newest first.
    pub fn all(&self) -> Vec<Arc<JobHandle>> {
        let mut all = self.handles();
        all.sort_by_key(|j| std::cmp::Reverse((j.view().submitted_ms, j.id.clone())));
        all
    }

    /// The hub the jobs run on.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// When the jobs' videos are encoded.
    pub fn video_encoding(&self) -> VideoEncoding {
        self.video
    }

    /// Checks, stores and queues a job; blocking (writes files, decodes the
    /// image).
    pub fn submit(&self, submission: Submission<'_>) -> Result<Arc<JobHandle>, JobError> {
        let record = prepare(&self.data, submission, self.budget)?;
        let dir = self.data.join(&record.id);
        if let Err(e) = self.hub.store().insert(&record) {
            let _ = std::fs::remove_dir_all(&dir);
            sweep_weights(&self.data, false);
            return Err(e.into());
        }
        let job = Arc::new(JobHandle::new(record, dir, self.hub.store().clone()));
        job.log(
            EventKind::Submitted,
            format!(
                "{} frames, priority {}",
                job.view().frames_total,
                job.view().priority
            ),
        );
        lock(&self.jobs).insert(job.id.to_string(), job.clone());
        tracing::info!(job = %job.id, "job submitted");
        self.admit();
        Ok(job)
    }

    /// Starts queued jobs, highest priority (then oldest) first, while their
    /// memory fits the budget; tells the others what they wait for.
    pub fn admit(&self) {
        let _one_pass = lock(&self.admitting);
        let Some(me) = self.me.upgrade() else { return };
        let all = self.handles();
        let mut used: u64 = all.iter().filter(|j| j.is_busy()).map(|j| j.memory()).sum();
        let mut queued: Vec<&Arc<JobHandle>> = all
            .iter()
            .filter(|j| j.state() == JobState::Queued && !j.is_busy())
            .collect();
        queued.sort_by_key(|j| {
            let v = j.view();
            (std::cmp::Reverse(v.priority), v.submitted_ms)
        });
        for job in queued {
            let need = job.memory();
            if used + need > self.budget {
                // A stable text, so a long queue is not rewritten on every
                // pass, and one event when the job starts waiting.
                let reason = format!(
                    "waiting for memory: needs {} of the {} budget, which running jobs fill",
                    human(need),
                    human(self.budget)
                );
                let message = job.view().message;
                if message != reason && job.change(|r| r.reason = reason.clone()).is_ok() {
                    job.log(EventKind::Waiting, reason);
                }
                continue;
            }
            let mut slot = job.runner();
            // Re-checked under the slot's lock: a control may have moved it.
            if job.state() != JobState::Queued || !job.claim() {
                continue;
            }
            match job_runner::start(me.clone(), job.clone()) {
                Ok(runner) => {
                    used += need;
                    // A thread left from an earlier run has released the
                    // job and is at most finishing its own call to admit
                    // (waiting for this one): dropping it detaches it;
                    // joining it here would wait on ourselves.
                    *slot = Some(runner);
                }
                Err(e) => {
                    job.release();
                    tracing::error!(job = %job.id, "cannot start the job's thread: {e}");
                }
            }
        }
    }

    /// Stops `job`'s render thread, if it has one, for `why` and waits for
    /// it to end (frames being written are finished or discarded whole).
    fn stop(&self, job: &JobHandle, why: Stop) {
        let runner = job.runner().take();
        if let Some(runner) = runner {
            let _ = runner.stop.set(why);
            self.hub
                .update(|s| s.remove_job(&job.id, "the job was stopped"));
            if runner.thread.join().is_err() {
                tracing::error!(job = %job.id, "the job's thread panicked");
                job.release();
            }
        }
    }

    /// Applies a control: moves `id` from one of `from` to `to` (or fails
    /// with `refusal` naming the state it is in), stopping its thread with
    /// `stop` if given, then logs `event` and admits what can run.
    fn control(
        &self,
        id: &str,
        from: &[JobState],
        to: JobState,
        stop: Option<Stop>,
        event: Event,
        refusal: &str,
    ) -> Result<Arc<JobHandle>, JobError> {
        let job = self.get(id)?;
        {
            let _slot = job.runner();
            if !job.transition(from, to, "")? {
                return Err(JobError::Conflict(format!(
                    "job {id} is {}: {refusal}",
                    job.state()
                )));
            }
        }
        if let Some(why) = stop {
            self.stop(&job, why);
        }
        job.log(event.kind, event.detail);
        self.admit();
        Ok(job)
    }

    /// Pauses `id`: its leases are revoked and its frame buffers freed;
    /// `resume` continues it after its last complete frame.
    pub fn pause(&self, id: &str) -> Result<Arc<JobHandle>, JobError> {
        self.control(
            id,
            &[JobState::Queued, JobState::Running],
            JobState::Paused,
            Some(Stop::Pause),
            Event::now(EventKind::Paused, "by a client"),
            "only queued or running jobs can be paused",
        )
    }

    /// Resumes a paused job.
    pub fn resume(&self, id: &str) -> Result<Arc<JobHandle>, JobError> {
        self.control(
            id,
            &[JobState::Paused],
            JobState::Queued,
            None,
            Event::now(EventKind::Resumed, "by a client"),
            "only paused jobs can be resumed (`retry` continues a failed one)",
        )
    }

    /// Continues a failed job from its last complete frame.
    pub fn retry(&self, id: &str) -> Result<Arc<JobHandle>, JobError> {
        self.control(
            id,
            &[JobState::Failed],
            JobState::Queued,
            None,
            Event::now(EventKind::Resumed, "retried by a client"),
            "only failed jobs can be retried (`resume` continues a paused one)",
        )
    }

    /// Cancels `id` for good; its frames stay.
    pub fn cancel(&self, id: &str) -> Result<Arc<JobHandle>, JobError> {
        let job = self.get(id)?;
        if job.state().is_final() {
            return Ok(job);
        }
        self.control(
            id,
            &[JobState::Queued, JobState::Running, JobState::Paused],
            JobState::Cancelled,
            Some(Stop::Cancel),
            Event::now(EventKind::Cancelled, "by a client"),
            "it has ended already",
        )
    }

    /// Sets `id`'s priority (higher is served first).
    pub fn set_priority(&self, id: &str, priority: i32) -> Result<Arc<JobHandle>, JobError> {
        let job = self.get(id)?;
        let old = job.view().priority;
        job.change(|r| r.priority = priority)?;
        self.hub.update(|s| s.set_priority(id, priority));
        job.log(EventKind::Priority, format!("{old} -> {priority}"));
        self.admit();
        Ok(job)
    }

    /// Gives `id` `frames` frames in all: a finished job continues, as if
    /// it had been submitted that long; a running one restarts from its
    /// last frame with the new length.
    pub fn extend(&self, id: &str, frames: u32) -> Result<Arc<JobHandle>, JobError> {
        let job = self.get(id)?;
        let old = job.record().spec.frames;
        if frames <= old || frames > MAX_FRAMES {
            return Err(JobError::Invalid(format!(
                "--frames {frames}: job {id} has {old} frames; give a larger number, at most {MAX_FRAMES}"
            )));
        }
        let mut longer = job.record().spec;
        longer.frames = frames;
        // Every frame's values, the new ones too, must be in range.
        longer
            .validate()
            .map_err(|e| JobError::Invalid(format!("--frames {frames}: {e}")))?;
        if let Some((name, _)) = longer.schedules().into_iter().find(|(_, s)| s.uses_max_f()) {
            return Err(JobError::Invalid(format!(
                "--frames {frames}: the {name} schedule uses max_f, so more frames would change the frames already rendered; submit the job again with the new length"
            )));
        }
        let state = job.state();
        if state == JobState::Cancelled {
            return Err(JobError::Conflict(format!(
                "job {id} was cancelled; submit it again to render more"
            )));
        }
        let active = state.is_active();
        {
            let _slot = job.runner();
            job.change(|r| {
                r.spec.frames = frames;
                if matches!(
                    r.state,
                    JobState::Done | JobState::Failed | JobState::Running
                ) {
                    r.state = JobState::Queued;
                    r.reason.clear();
                }
            })?;
        }
        if active {
            self.stop(&job, Stop::Restart);
        }
        job.log(EventKind::Extended, format!("{old} -> {frames} frames"));
        self.admit();
        Ok(job)
    }

    /// Deletes `id`, its event log and its files. A queued or running job
    /// is refused unless `force`.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), JobError> {
        let job = self.get(id)?;
        if job.state().is_active() && !force {
            return Err(JobError::Conflict(format!(
                "job {id} is {}; pause or cancel it first, or pass --force",
                job.state()
            )));
        }
        {
            let _slot = job.runner();
            job.transition(
                &[JobState::Queued, JobState::Running, JobState::Paused],
                JobState::Cancelled,
                "deleted",
            )?;
        }
        self.stop(&job, Stop::Delete);
        self.hub.store().delete(id)?;
        lock(&self.jobs).remove(id);
        std::fs::remove_dir_all(job.dir())
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| JobError::Storage(format!("{}: {e}", job.dir().display())))?;
        sweep_weights(&self.data, false);
        tracing::info!(job = %id, "job deleted");
        self.admit();
        Ok(())
    }

    /// `id`'s event log.
    pub fn events(&self, id: &str) -> Result<Vec<Event>, JobError> {
        self.get(id)?;
        Ok(self.hub.store().events(id)?)
    }

    /// The last `limit` events of `id`'s log, and how many it holds.
    pub fn latest_events(&self, id: &str, limit: usize) -> Result<(Vec<Event>, u64), JobError> {
        self.get(id)?;
        Ok(self.hub.store().latest_events(id, limit)?)
    }
}

/// Complete frames in a job's frames folder.
fn frames_on_disk(dir: &Path) -> u64 {
    OutputDir::existing(dir).frames_done()
}
