//! The job store: every job the coordinator was ever given, its state and
//! its event log, kept across restarts. The scheduler and the job registry
//! speak these types; how they are kept is the store's business
//! ([`SqliteStore`] keeps them in an embedded SQLite database). Frames stay
//! files beside it.

mod records;
mod sqlite;

pub use records::{Event, EventKind, JobRecord, JobState, UnreadableJob, now_ms, utc_time};
pub use sqlite::SqliteStore;

use std::path::PathBuf;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file is damaged: the coordinator refuses to start
    /// rather than lose jobs.
    #[error(
        "the job store {path} is damaged ({reason}). The coordinator will not start on it, so that no job is silently lost. Fix: stop the coordinator, move {path} (with its -wal and -shm files) aside and restore it from a backup; the jobs' frames under the data folder are untouched"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What SQLite found.
        reason: String,
    },
    /// The database was written by a newer dreamfarm.
    #[error(
        "the job store {path} has schema version {found}, newer than the {known} this dreamfarm knows. Fix: run the dreamfarm release that wrote it (or a newer one); an older release must not rewrite it"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A row that cannot be read back (written by hand or by a bug).
    #[error("job store: job {job}: {reason}")]
    BadRow {
        /// The job.
        job: String,
        /// What is wrong with it.
        reason: String,
    },
    /// SQLite failed (disk full, permissions).
    #[error("job store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// Where jobs and their events are kept (see the module docs). Calls are
/// short and synchronous; implementations serialise them.
pub trait JobStore: Send + Sync {
    /// Every job, oldest first; a row this build cannot read comes back as
    /// why, so that it does not keep the other jobs from running.
    fn jobs(&self) -> Result<Vec<Result<JobRecord, UnreadableJob>>, StoreError>;
    /// Adds a new job.
    fn insert(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// Writes a job's state, priority, spec, frames and reason.
    fn update(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// Removes a job and its events.
    fn delete(&self, id: &str) -> Result<(), StoreError>;
    /// Appends to a job's event log.
    fn append_event(&self, job: &str, event: &Event) -> Result<(), StoreError>;
    /// A job's event log, oldest first.
    fn events(&self, job: &str) -> Result<Vec<Event>, StoreError>;
    /// The last `limit` events of a job's log, oldest first, and how many
    /// it holds in all (a long render logs a frame a frame).
    fn latest_events(&self, job: &str, limit: usize) -> Result<(Vec<Event>, u64), StoreError>;
    /// Counts this start of the coordinator and returns its number (1 for
    /// the first): lease numbers start from it, so that no lease granted
    /// before a restart can be mistaken for one granted after it.
    fn next_boot(&self) -> Result<u64, StoreError>;
}
