//! [`JobStore`] in an embedded SQLite database (WAL mode, so a `kill -9`
//! loses no committed change), with a schema version and migrations.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use dreamfarm_common::params::JobSpec;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::records::{Event, EventKind, JobRecord, UnreadableJob};
use super::{JobStore, StoreError};

/// The schema, one migration per version: `MIGRATIONS[v - 1]` takes a
/// database from version `v - 1` to `v`. Append; never edit a released one.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        submitted_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        frames_done INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_by_job ON events(job, seq);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Jobs in one SQLite file (see the module docs).
pub struct SqliteStore {
    path: PathBuf,
    db: Mutex<Connection>,
}

/// Errors that mean the file is not a sound database.
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

impl SqliteStore {
    /// Opens (creating) the store at `path`: checks its integrity and
    /// version, then migrates it to `SCHEMA_VERSION`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let sql = |source: rusqlite::Error| {
            if is_damage(&source) {
                StoreError::Damaged {
                    path: path.to_path_buf(),
                    reason: source.to_string(),
                }
            } else {
                StoreError::Sqlite {
                    path: path.to_path_buf(),
                    source,
                }
            }
        };
        let db = Connection::open(path).map_err(sql)?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        let check: Vec<String> = db
            .prepare("PRAGMA integrity_check")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sql)?;
        if check != ["ok"] {
            return Err(StoreError::Damaged {
                path: path.to_path_buf(),
                reason: check.join("; "),
            });
        }
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(sql)?;
        for (v, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let batch = format!(
                "BEGIN; {migration}; PRAGMA user_version = {}; COMMIT;",
                v + 1
            );
            db.execute_batch(&batch).map_err(sql)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            db: Mutex::new(db),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-call leaves SQLite consistent (it rolls back).
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The events that `sql` (at_ms, kind, detail) selects.
    fn read_events(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Event>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(sql).map_err(|e| self.err(e))?;
        let rows: Vec<(i64, String, String)> = stmt
            .query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(at_ms, kind, detail)| match kind.parse() {
                Ok(kind) => Event {
                    at_ms,
                    kind,
                    detail,
                },
                Err(_) => Event {
                    at_ms,
                    kind: EventKind::Other,
                    detail: format!("{kind}: {detail}"),
                },
            })
            .collect())
    }
}

/// A job row as stored, before its spec and state are parsed.
struct StoredJob {
    id: String,
    name: String,
    spec: String,
    state: String,
    priority: i32,
    submitted_ms: i64,
    updated_ms: i64,
    frames_done: i64,
    reason: String,
}

impl StoredJob {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            name: r.get(1)?,
            spec: r.get(2)?,
            state: r.get(3)?,
            priority: r.get(4)?,
            submitted_ms: r.get(5)?,
            updated_ms: r.get(6)?,
            frames_done: r.get(7)?,
            reason: r.get(8)?,
        })
    }

    fn parse(self) -> Result<JobRecord, UnreadableJob> {
        let unreadable = |reason: String| UnreadableJob {
            id: self.id.clone(),
            name: self.name.clone(),
            submitted_ms: self.submitted_ms,
            frames_done: self.frames_done.max(0).unsigned_abs(),
            reason,
        };
        let spec: JobSpec = toml::from_str(&self.spec).map_err(|e| {
            // TOML's own text quotes the line over several lines; a status
            // or a log reads better with one.
            let line = e.span().map_or(String::new(), |span| {
                let before = self.spec.get(..span.start).unwrap_or_default();
                format!(" (line {})", before.matches('\n').count() + 1)
            });
            unreadable(format!("its settings do not parse{line}: {}", e.message()))
        })?;
        let state = self.state.parse().map_err(unreadable)?;
        Ok(JobRecord {
            id: self.id,
            name: self.name,
            spec,
            state,
            priority: self.priority,
            submitted_ms: self.submitted_ms,
            updated_ms: self.updated_ms,
            frames_done: self.frames_done.max(0) as u64,
            reason: self.reason,
        })
    }
}

fn spec_text(job: &JobRecord) -> Result<String, StoreError> {
    toml::to_string(&job.spec).map_err(|e| StoreError::BadRow {
        job: job.id.clone(),
        reason: format!("cannot encode its spec: {e}"),
    })
}

impl JobStore for SqliteStore {
    fn jobs(&self) -> Result<Vec<Result<JobRecord, UnreadableJob>>, StoreError> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT id, name, spec, state, priority, submitted_ms, updated_ms, frames_done, reason
                 FROM jobs ORDER BY submitted_ms, id",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<StoredJob> = stmt
            .query_map([], StoredJob::from_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(StoredJob::parse).collect())
    }

    fn insert(&self, job: &JobRecord) -> Result<(), StoreError> {
        let spec = spec_text(job)?;
        self.db()
            .execute(
                "INSERT INTO jobs (id, name, spec, state, priority, submitted_ms, updated_ms, frames_done, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    job.id,
                    job.name,
                    spec,
                    job.state.as_str(),
                    job.priority,
                    job.submitted_ms,
                    job.updated_ms,
                    job.frames_done as i64,
                    job.reason
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn update(&self, job: &JobRecord) -> Result<(), StoreError> {
        let spec = spec_text(job)?;
        self.db()
            .execute(
                "UPDATE jobs SET spec = ?2, state = ?3, priority = ?4, updated_ms = ?5,
                 frames_done = ?6, reason = ?7 WHERE id = ?1",
                params![
                    job.id,
                    spec,
                    job.state.as_str(),
                    job.priority,
                    job.updated_ms,
                    job.frames_done as i64,
                    job.reason
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.db()
            .execute("DELETE FROM jobs WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn append_event(&self, job: &str, event: &Event) -> Result<(), StoreError> {
        self.db()
            .execute(
                "INSERT INTO events (job, at_ms, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                params![job, event.at_ms, event.kind.as_str(), event.detail],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn events(&self, job: &str) -> Result<Vec<Event>, StoreError> {
        self.read_events(
            "SELECT at_ms, kind, detail FROM events WHERE job = ?1 ORDER BY seq",
            params![job],
        )
    }

    fn latest_events(&self, job: &str, limit: usize) -> Result<(Vec<Event>, u64), StoreError> {
        let events = self.read_events(
            "SELECT at_ms, kind, detail FROM (
                 SELECT seq, at_ms, kind, detail FROM events WHERE job = ?1
                 ORDER BY seq DESC LIMIT ?2
             ) ORDER BY seq",
            params![job, i64::try_from(limit).unwrap_or(i64::MAX)],
        )?;
        let total: i64 = self
            .db()
            .query_row("SELECT COUNT(*) FROM events WHERE job = ?1", [job], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?;
        Ok((events, total.unsigned_abs()))
    }

    fn next_boot(&self) -> Result<u64, StoreError> {
        let db = self.db();
        let boot: i64 = db
            .query_row(
                "INSERT INTO meta (key, value) VALUES ('boots', 1)
                 ON CONFLICT(key) DO UPDATE SET value = value + 1
                 RETURNING value",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or(1);
        Ok(boot.max(1) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EventKind, JobState};
    use super::*;

    fn record(id: &str, state: JobState) -> JobRecord {
        JobRecord {
            id: id.into(),
            name: "n".into(),
            spec: JobSpec::new("input.png".into(), 7),
            state,
            priority: 3,
            submitted_ms: 10,
            updated_ms: 11,
            frames_done: 2,
            reason: String::new(),
        }
    }

    #[test]
    fn jobs_and_events_survive_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jobs.sqlite");
        {
            let s = SqliteStore::open(&path).expect("new store");
            s.insert(&record("a", JobState::Running)).expect("insert");
            let mut b = record("b", JobState::Queued);
            b.submitted_ms = 20;
            s.insert(&b).expect("insert");
            b.state = JobState::Failed;
            b.reason = "boom".into();
            b.spec.frames = 9;
            s.update(&b).expect("update");
            s.append_event("a", &Event::now(EventKind::Submitted, ""))
                .expect("event");
            s.append_event("a", &Event::now(EventKind::Frame, "frame 0"))
                .expect("event");
            assert_eq!(s.next_boot().expect("boot"), 1);
        }
        let s = SqliteStore::open(&path).expect("reopen");
        let jobs: Vec<JobRecord> = s.jobs().expect("jobs").into_iter().flatten().collect();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0], record("a", JobState::Running));
        assert_eq!((jobs[1].state, jobs[1].spec.frames), (JobState::Failed, 9));
        assert_eq!(jobs[1].reason, "boom");
        let kinds: Vec<EventKind> = s
            .events("a")
            .expect("events")
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EventKind::Submitted, EventKind::Frame]);
        let (latest, total) = s.latest_events("a", 1).expect("events");
        assert_eq!(
            (latest.len(), latest[0].kind, total),
            (1, EventKind::Frame, 2)
        );
        let (all, total) = s.latest_events("a", 10).expect("events");
        assert_eq!(
            (all.len(), all[0].kind, total),
            (2, EventKind::Submitted, 2)
        );
        assert_eq!(s.next_boot().expect("boot"), 2);
        s.delete("a").expect("delete");
        assert!(
            s.events("a").expect("events").is_empty(),
            "events go with their job"
        );
        assert_eq!(s.jobs().expect("jobs").len(), 1);
    }

    #[test]
    fn rows_a_newer_dreamfarm_wrote_are_named_and_kept_rather_than_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = SqliteStore::open(&dir.path().join("jobs.sqlite")).expect("new store");
        for id in ["newer", "kept"] {
            s.insert(&record(id, JobState::Running)).expect("insert");
        }
        s.append_event("kept", &Event::now(EventKind::Frame, "frame 0"))
            .expect("event");
        {
            let db = s.db();
            db.execute_batch(
                "UPDATE jobs SET spec = spec || 'shimmer = 0.5' WHERE id = 'newer';
                 INSERT INTO events (job, at_ms, kind, detail)
                     VALUES ('kept', 1, 'region-moved', 'to w2');",
            )
            .expect("a newer dreamfarm's rows");
        }
        let jobs = s.jobs().expect("the store still opens");
        // Oldest first, then by id.
        assert_eq!(jobs[0], Ok(record("kept", JobState::Running)));
        let unreadable = jobs[1].as_ref().expect_err("the newer row is named");
        assert_eq!(unreadable.id, "newer");
        assert!(
            unreadable.reason.contains("shimmer") && !unreadable.reason.contains('\n'),
            "{}",
            unreadable.reason
        );
        assert!(
            unreadable
                .explained()
                .contains("Fix: run the dreamfarm release")
        );
        let events = s.events("kept").expect("the log still reads");
        assert_eq!(
            (events[1].kind, events[1].detail.as_str()),
            (EventKind::Other, "region-moved: to w2")
        );
        assert_eq!(events[0].kind, EventKind::Frame);
        // Nothing was rewritten: a newer dreamfarm reads its rows back.
        let spec: String = s
            .db()
            .query_row("SELECT spec FROM jobs WHERE id = 'newer'", [], |r| r.get(0))
            .expect("spec");
        assert!(spec.ends_with("shimmer = 0.5"), "{spec}");
    }

    #[test]
    fn a_newer_schema_and_a_damaged_file_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let newer = dir.path().join("newer.sqlite");
        drop(SqliteStore::open(&newer).expect("new store"));
        Connection::open(&newer)
            .and_then(|c| c.execute_batch("PRAGMA user_version = 99"))
            .expect("bump version");
        assert!(matches!(
            SqliteStore::open(&newer),
            Err(StoreError::TooNew { found: 99, .. })
        ));

        let damaged = dir.path().join("damaged.sqlite");
        {
            let s = SqliteStore::open(&damaged).expect("new store");
            for i in 0..200 {
                s.insert(&record(&format!("job{i}"), JobState::Done))
                    .expect("insert");
            }
        }
        // Checkpointed into the main file, then cut in half.
        Connection::open(&damaged)
            .and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
            .expect("checkpoint");
        let len = std::fs::metadata(&damaged).expect("size").len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&damaged)
            .expect("open");
        f.set_len(len / 2).expect("truncate");
        let err = SqliteStore::open(&damaged).err().expect("refused");
        assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("damaged.sqlite"), "{err}");

        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(&garbage, vec![7u8; 8192]).expect("write");
        assert!(matches!(
            SqliteStore::open(&garbage),
            Err(StoreError::Damaged { .. })
        ));
    }
}
