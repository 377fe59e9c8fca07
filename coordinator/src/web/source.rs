//! What the web interface shows and does, whoever renders: the
//! coordinator's jobs and pool ([`ClusterSource`](super::cluster_source)),
//! or the one job of a `dreamfarm render --ui`
//! ([`LocalJob`](super::local_job)). Pages and routes speak only these
//! types.

use std::path::PathBuf;

use serde::Serialize;

use super::error::WebError;

/// One job as the pages and `/jobs.json` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobRow {
    /// Its id (the path segment of its pages).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state: queued, running, paused, done, failed or cancelled.
    pub state: String,
    /// Its priority (higher runs first).
    pub priority: i32,
    /// Frames complete on disk (frames `0..frames_done` exist).
    pub frames_done: u64,
    /// Frames it will have.
    pub frames_total: u64,
    /// Frames per minute of this run (0 when not running).
    pub frames_per_minute: f64,
    /// Seconds to the end at this run's pace (0 when unknown).
    pub eta_seconds: f64,
    /// Why it failed, or what it waits for.
    pub message: String,
}

/// One entry of a job's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// When (Unix ms).
    pub at_ms: i64,
    /// What kind of event ("frame", "paused", ...).
    pub kind: String,
    /// Details for people.
    pub detail: String,
}

/// A job's files and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFiles {
    /// The folder of its frames (`NNNNNN.png`).
    pub frames_dir: PathBuf,
    /// Its video (there once the job is done).
    pub video: PathBuf,
    /// Its settings as a job file (TOML).
    pub settings: String,
}

/// One connected worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// The name it gave.
    pub name: String,
    /// Its device (cpu, cuda:0, ...).
    pub device: String,
    /// Leases it computes at once.
    pub concurrency: u32,
    /// Leases it holds now.
    pub leases: usize,
    /// Tiles per second since it joined.
    pub tiles_per_second: f64,
    /// Seconds since its last message or heartbeat.
    pub last_heartbeat_s: f64,
    /// Where its neighbours fetch its changes (empty: it takes tiles only).
    pub changes_at: String,
}

/// The pool of a coordinator.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pool {
    /// Connected workers, by name.
    pub workers: Vec<WorkerRow>,
    /// Tiles waiting for a worker.
    pub queued_tiles: usize,
    /// Leases held by workers.
    pub leases_in_flight: usize,
    /// Tiles per second of the whole pool, lately.
    pub tiles_per_second: f64,
    /// Seconds frames still go by tiles because a frame's workers could
    /// not fetch each other's changes (none: not held back).
    pub regions_paused_s: Option<f64>,
    /// Workers that could not reach another's change service when they
    /// checked, said with the fix: frames go by tiles while any stands.
    pub unreachable: Vec<String>,
}

/// A control a client may apply to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pause it (leases back, memory freed).
    Pause,
    /// Resume a paused job.
    Resume,
    /// Cancel it for good (frames stay).
    Cancel,
    /// Continue a failed job.
    Retry,
    /// Set its priority.
    Priority(i32),
}

/// The jobs the index shows (see [`JobSource::jobs`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobList {
    /// The jobs shown, newest first.
    pub jobs: Vec<JobRow>,
    /// Older finished jobs left out (`dreamfarm status` lists them).
    pub older_finished: usize,
}

/// Where the web interface gets its jobs from (see the module docs).
/// Methods that may block (the job store, stopping a job's thread) are
/// called off the async runtime.
pub trait JobSource: Send + Sync + 'static {
    /// Every unfinished job (queued, running, paused) and the newest
    /// `finished` finished ones, newest first: a farm's history runs to
    /// thousands of jobs, more than a page can show or poll.
    fn jobs(&self, finished: usize) -> JobList;
    /// The job `id`.
    fn job(&self, id: &str) -> Result<JobRow, WebError>;
    /// The job's files and settings.
    fn files(&self, id: &str) -> Result<JobFiles, WebError>;
    /// The last `limit` events of the job's log, oldest first, and how
    /// many it holds.
    fn latest_events(&self, id: &str, limit: usize) -> Result<(Vec<EventRow>, u64), WebError>;
    /// The pool of workers, where there is one.
    fn pool(&self) -> Option<Pool>;
    /// Whether jobs can be controlled here (the pages show the buttons).
    fn controls(&self) -> bool;
    /// Applies `action` to the job `id`.
    fn control(&self, id: &str, action: Action) -> Result<(), WebError>;
}
