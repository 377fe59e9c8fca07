//! One job as the coordinator holds it while it serves: its record (kept
//! in the store on every change), the live view that clients watch, and
//! the thread rendering it, if any.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use dreamfarm_common::params::JobSpec;
use tokio::sync::watch;

use super::memory_budget::job_bytes;
use crate::pace::Pace;
use crate::store::{Event, EventKind, JobRecord, JobState, JobStore, StoreError, now_ms};

/// What clients see of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// The job id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where it is in its life.
    pub state: JobState,
    /// Its priority.
    pub priority: i32,
    /// Frames complete on disk.
    pub frames_done: u64,
    /// Frames it will have.
    pub frames_total: u64,
    /// Tiles of the current pass done.
    pub tiles_done: u64,
    /// Tiles of the current pass.
    pub tiles_total: u64,
    /// Why it failed, or what it waits for.
    pub message: String,
    /// When it was submitted (Unix ms).
    pub submitted_ms: i64,
}

impl JobView {
    fn of(record: &JobRecord) -> Self {
        Self {
            id: record.id.clone(),
            name: record.name.clone(),
            state: record.state,
            priority: record.priority,
            frames_done: record.frames_done,
            frames_total: u64::from(record.spec.frames),
            tiles_done: 0,
            tiles_total: 0,
            message: record.reason.clone(),
            submitted_ms: record.submitted_ms,
        }
    }
}

/// Why a job's render thread is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Paused by a client.
    Pause,
    /// Cancelled by a client.
    Cancel,
    /// Deleted by a client.
    Delete,
    /// Its spec changed (extended): it starts again from its last frame.
    Restart,
}

/// A job's render thread and the flag that tells it why it was stopped.
pub struct Runner {
    /// The thread.
    pub thread: JoinHandle<()>,
    /// Set before the job leaves the scheduler, so the thread knows its
    /// batch failed because it was stopped.
    pub stop: Arc<OnceLock<Stop>>,
}

/// One job (see the module docs).
pub struct JobHandle {
    /// The job id.
    pub id: Arc<str>,
    /// Its folder under the data folder.
    dir: PathBuf,
    record: Mutex<JobRecord>,
    view: watch::Sender<JobView>,
    store: Arc<dyn JobStore>,
    /// How fast this run writes frames (none before its first run).
    pace: Mutex<Option<Pace>>,
    /// The render thread; its lock orders starts and stops of the job.
    runner: Mutex<Option<Runner>>,
    /// A render thread holds the job's memory (set when it starts, cleared
    /// as its last act).
    busy: AtomicBool,
    memory: OnceLock<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data whole before it can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl JobHandle {
    /// The job of `record`, whose folder is `dir`.
    pub fn new(record: JobRecord, dir: PathBuf, store: Arc<dyn JobStore>) -> Self {
        let (view, _) = watch::channel(JobView::of(&record));
        Self {
            id: record.id.as_str().into(),
            dir,
            record: Mutex::new(record),
            view,
            store,
            pace: Mutex::new(None),
            runner: Mutex::new(None),
            busy: AtomicBool::new(false),
            memory: OnceLock::new(),
        }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of its frames and video.
    pub fn frames_dir(&self) -> PathBuf {
        self.dir.join(super::fetch::FRAMES)
    }

    /// Its video file.
    pub fn video(&self) -> PathBuf {
        self.frames_dir()
            .join(format!("{}.mp4", lock(&self.record).name))
    }

    /// Its record now.
    pub fn record(&self) -> JobRecord {
        lock(&self.record).clone()
    }

    /// Its state now.
    pub fn state(&self) -> JobState {
        lock(&self.record).state
    }

    /// Its spec with the paths of its uploaded files resolved: they are
    /// stored relative to its folder, as a job file's are to the file's.
    pub fn spec(&self) -> JobSpec {
        let mut spec = lock(&self.record).spec.clone();
        spec.relative_to(&self.dir);
        spec
    }

    /// The view now.
    pub fn view(&self) -> JobView {
        self.view.borrow().clone()
    }

    /// A receiver that sees every change of the view.
    pub fn subscribe(&self) -> watch::Receiver<JobView> {
        self.view.subscribe()
    }

    /// Changes the record, stores it and shows it.
    pub fn change(&self, f: impl FnOnce(&mut JobRecord)) -> Result<(), StoreError> {
        self.change_if(|r| {
            f(r);
            true
        })
        .map(drop)
    }

    /// Moves the job from one of `from` to `to` with `reason`; false (and
    /// nothing changed) when it is in another state. Checked and changed
    /// under one lock, so a job thread ending and a control racing it
    /// cannot both win.
    pub fn transition(
        &self,
        from: &[JobState],
        to: JobState,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.change_if(|r| {
            let allowed = from.contains(&r.state);
            if allowed {
                r.state = to;
                r.reason = reason.to_string();
            }
            allowed
        })
    }

    /// Lets `f` change the record under its lock; when `f` says it did,
    /// stores and shows the change. Returns what `f` said.
    fn change_if(&self, f: impl FnOnce(&mut JobRecord) -> bool) -> Result<bool, StoreError> {
        let mut record = lock(&self.record);
        let before = record.clone();
        if !f(&mut record) {
            return Ok(false);
        }
        record.updated_ms = now_ms();
        if let Err(e) = self.store.update(&record) {
            *record = before;
            return Err(e);
        }
        let shown = record.clone();
        drop(record);
        self.view.send_modify(|v| {
            let live = (v.tiles_done, v.tiles_total);
            *v = JobView::of(&shown);
            (v.tiles_done, v.tiles_total) = live;
        });
        Ok(true)
    }

    /// Appends to its event log (a failure is logged, not fatal: the job
    /// matters more than its history).
    pub fn log(&self, kind: EventKind, detail: impl Into<String>) {
        let event = Event::now(kind, detail);
        if let Err(e) = self.store.append_event(&self.id, &event) {
            tracing::warn!(job = %self.id, "cannot log an event: {e}");
        }
    }

    /// The memory a running render of it is charged.
    pub fn memory(&self) -> u64 {
        *self.memory.get_or_init(|| {
            let spec = self.spec();
            let [w, h] = spec
                .size
                .or_else(|| {
                    image::image_dimensions(&spec.input)
                        .ok()
                        .map(|(w, h)| [w, h])
                })
                .unwrap_or([0, 0]);
            job_bytes(w, h, &spec)
        })
    }

    /// Whether a render thread holds its memory.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// Marks it busy; false if it already was.
    pub fn claim(&self) -> bool {
        self.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Its render thread is gone (its last act).
    pub fn release(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    /// The render thread's slot; holding it orders starts and stops.
    pub fn runner(&self) -> MutexGuard<'_, Option<Runner>> {
        lock(&self.runner)
    }

    /// A render run starts with `frames_done` frames on disk.
    pub fn run_started(&self, frames_done: u64) {
        *lock(&self.pace) = Some(Pace::start(frames_done));
    }

    /// Frame `n` was written in `seconds`.
    pub fn frame_written(&self, n: u64, seconds: f64) {
        if let Err(e) = self.change(|r| r.frames_done = r.frames_done.max(n + 1)) {
            tracing::warn!(job = %self.id, "cannot record frame {n}: {e}");
        }
        if let Some(pace) = lock(&self.pace).as_mut() {
            pace.frame_written(n);
        }
        self.log(EventKind::Frame, format!("frame {n} in {seconds:.1} s"));
    }

    /// A batch of `tiles` tiles was queued.
    pub fn batch_started(&self, tiles: usize) {
        self.view.send_modify(|v| {
            v.tiles_done = 0;
            v.tiles_total = tiles as u64;
        });
    }

    /// `tiles` more tiles joined the current batch.
    pub fn tiles_added(&self, tiles: usize) {
        self.view.send_modify(|v| v.tiles_total += tiles as u64);
    }

    /// A tile of the current batch came back.
    pub fn tile_done(&self) {
        self.view.send_modify(|v| v.tiles_done += 1);
    }

    /// This run's pace, while the job runs.
    fn running_pace(&self) -> Option<Pace> {
        let pace = *lock(&self.pace);
        pace.filter(|_| self.state() == JobState::Running)
    }

    /// Frames per minute this run has written (0 before its first frame,
    /// or when it is not running).
    pub fn frames_per_minute(&self) -> f64 {
        self.running_pace()
            .map_or(0.0, |p| p.frames_per_minute(Instant::now()))
    }

    /// Seconds to its end at this run's pace, counting down while a frame
    /// dreams (0 when unknown or when it is not running: only a running
    /// job is getting nearer its end).
    pub fn seconds_left(&self) -> f64 {
        let total = self.view.borrow().frames_total;
        self.running_pace()
            .map_or(0.0, |p| p.seconds_left(total, Instant::now()))
    }

    /// Shows what the job waits for ("" when nothing); watchers hear of it
    /// only when it changes.
    pub fn waiting(&self, message: &str) {
        self.view.send_if_modified(|v| {
            let changed = v.message != message;
            if changed {
                v.message = message.to_string();
            }
            changed
        });
    }
}
