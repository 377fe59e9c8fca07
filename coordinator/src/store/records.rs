//! What the store holds: job records and the events of their lives.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use dreamfarm_common::params::JobSpec;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix milliseconds as UTC `YYYY-MM-DD HH:MM:SS.mmm` (`dreamfarm events`,
/// the web interface).
pub fn utc_time(unix_ms: i64) -> String {
    let (days, ms) = (
        unix_ms.div_euclid(86_400_000),
        unix_ms.rem_euclid(86_400_000),
    );
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{milli:03}")
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting to run: for memory, for its turn, or after a restart.
    Queued,
    /// Its frames are being dreamed.
    Running,
    /// Stopped by a client; `resume` continues it.
    Paused,
    /// Every frame and the video are written.
    Done,
    /// Stopped by an error; `retry` continues it.
    Failed,
    /// Stopped by a client for good (its frames stay).
    Cancelled,
}

impl JobState {
    /// Every state, for parsing and for counting.
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Running,
        Self::Paused,
        Self::Done,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The state's name in the store and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job wants to run (and resumes after a restart).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }

    /// Whether the job has ended (a watch of it ends).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

/// One job as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// `NAME-XXXXXXXX`, also the name of its folder under the data folder.
    pub id: String,
    /// The name the client gave (its video is `NAME.mp4`).
    pub name: String,
    /// The whole job; its `input` is relative to the job's folder.
    pub spec: JobSpec,
    /// Where it is in its life.
    pub state: JobState,
    /// Higher runs first; equal priorities share the pool.
    pub priority: i32,
    /// When it was submitted (Unix ms).
    pub submitted_ms: i64,
    /// When its record last changed (Unix ms).
    pub updated_ms: i64,
    /// Frames complete on disk.
    pub frames_done: u64,
    /// Why it failed, or what it waits for.
    pub reason: String,
}

/// A job row this build cannot read (written by a newer dreamfarm, or
/// edited by hand). It is left in the store as it is, with its frames, so
/// that one such row neither stops the coordinator nor is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableJob {
    /// The job id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was submitted (Unix ms).
    pub submitted_ms: i64,
    /// Frames it had on disk when last written.
    pub frames_done: u64,
    /// What cannot be read.
    pub reason: String,
}

impl UnreadableJob {
    /// What is wrong, what is kept and what to do, for people.
    pub fn explained(&self) -> String {
        format!(
            "job {} is in the job store, but this coordinator cannot read it: {}. Its record and its {} frames are left as they are. Fix: run the dreamfarm release that wrote it (or a newer one) to go on with it",
            self.id, self.reason, self.frames_done
        )
    }
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A client submitted it.
    Submitted,
    /// Its render started (or resumed after a stop or restart).
    Started,
    /// A frame was written.
    Frame,
    /// A lease of it went back to the queue.
    LeaseRetried,
    /// A worker joined the pool while it ran.
    WorkerJoined,
    /// A worker left the pool while it ran.
    WorkerLeft,
    /// A worker was blocked from its tiles after repeated failures.
    WorkerBlocked,
    /// A frame's regions could not exchange their changes between workers:
    /// it and the pool's next frames go by tiles.
    ExchangeFailed,
    /// Two workers serving changes cannot reach each other's change
    /// services (found when one joined): frames go by tiles while both are
    /// in the pool.
    ExchangeUnreachable,
    /// It waits (memory, workers).
    Waiting,
    /// A client paused it.
    Paused,
    /// A client resumed it (or retried it after a failure).
    Resumed,
    /// A client changed its priority.
    Priority,
    /// A client extended it with more frames.
    Extended,
    /// A client cancelled it.
    Cancelled,
    /// It failed.
    Failed,
    /// It finished.
    Done,
    /// The coordinator restarted while it was active.
    Restarted,
    /// A kind this build does not know, written by a newer dreamfarm (the
    /// stored name leads its detail), so that a rolled-back coordinator
    /// still shows the rest of the log.
    Other,
}

impl EventKind {
    /// Every kind, for parsing.
    const ALL: [Self; 19] = [
        Self::Submitted,
        Self::Started,
        Self::Frame,
        Self::LeaseRetried,
        Self::WorkerJoined,
        Self::WorkerLeft,
        Self::WorkerBlocked,
        Self::ExchangeFailed,
        Self::ExchangeUnreachable,
        Self::Waiting,
        Self::Paused,
        Self::Resumed,
        Self::Priority,
        Self::Extended,
        Self::Cancelled,
        Self::Failed,
        Self::Done,
        Self::Restarted,
        Self::Other,
    ];

    /// The kind's name in the store and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Started => "started",
            Self::Frame => "frame",
            Self::LeaseRetried => "lease-retried",
            Self::WorkerJoined => "worker-joined",
            Self::WorkerLeft => "worker-left",
            Self::WorkerBlocked => "worker-blocked",
            Self::ExchangeFailed => "exchange-failed",
            Self::ExchangeUnreachable => "exchange-unreachable",
            Self::Waiting => "waiting",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
            Self::Priority => "priority",
            Self::Extended => "extended",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Done => "done",
            Self::Restarted => "restarted",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind {s:?}"))
    }
}

/// One entry of a job's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When (Unix ms).
    pub at_ms: i64,
    /// What.
    pub kind: EventKind,
    /// Details for people ("frame 12 in 3.1 s", a worker's name, a reason).
    pub detail: String,
}

impl Event {
    /// An event happening now.
    pub fn now(kind: EventKind, detail: impl Into<String>) -> Self {
        Self {
            at_ms: now_ms(),
            kind,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc_time(1_796_040_000_123), "2026-11-30 12:00:00.123");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00.000");
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
        }
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
        }
        assert!("sleeping".parse::<JobState>().is_err());
    }
}
