//! The one job of `dreamfarm render --ui`: its progress as the render
//! reports it, its frames folder and settings, and a short event log kept
//! in memory. Read-only: it has no controls (Ctrl-C stops a render).

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use dreamfarm_common::params::JobSpec;

use super::error::WebError;
use super::source::{Action, EventRow, JobFiles, JobList, JobRow, JobSource, Pool};
use crate::pace::Pace;
use crate::store::{JobState, now_ms};

/// Events kept; the oldest go first.
const MAX_EVENTS: usize = 10_000;

/// What changes while it renders.
struct Progress {
    state: JobState,
    message: String,
    /// Frames on disk, and how fast this run writes them.
    pace: Pace,
    events: Vec<EventRow>,
}

/// A render on this machine (see the module docs).
pub struct LocalJob {
    name: String,
    frames_total: u64,
    files: JobFiles,
    progress: Mutex<Progress>,
}

impl LocalJob {
    /// The render of `spec` named `name` into `frames_dir` and `video`,
    /// starting with `frames_done` frames on disk.
    pub fn new(
        name: &str,
        spec: &JobSpec,
        frames_dir: PathBuf,
        video: PathBuf,
        frames_done: u64,
    ) -> Self {
        let settings =
            toml::to_string(spec).unwrap_or_else(|e| format!("# cannot show the settings: {e}"));
        let job = Self {
            name: name.to_string(),
            frames_total: u64::from(spec.frames),
            files: JobFiles {
                frames_dir,
                video,
                settings,
            },
            progress: Mutex::new(Progress {
                state: JobState::Running,
                message: String::new(),
                pace: Pace::start(frames_done),
                events: Vec::new(),
            }),
        };
        job.log("started", format!("{frames_done} frames on disk"));
        job
    }

    /// Its progress (a poisoned lock still holds whole values).
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends to its event log.
    fn log(&self, kind: &str, detail: String) {
        let mut p = self.progress();
        if p.events.len() >= MAX_EVENTS {
            p.events.remove(0);
        }
        p.events.push(EventRow {
            at_ms: now_ms(),
            kind: kind.into(),
            detail,
        });
    }

    /// Frame `n` was written in `seconds`.
    pub fn frame_written(&self, n: u64, seconds: f64) {
        self.progress().pace.frame_written(n);
        self.log("frame", format!("frame {n} in {seconds:.1} s"));
    }

    /// The render ended: done, or failed with `error`.
    pub fn finished(&self, error: Option<String>) {
        let (state, detail) = match error {
            None => (JobState::Done, "the video is written".to_string()),
            Some(e) => (JobState::Failed, e),
        };
        {
            let mut p = self.progress();
            p.state = state;
            if state == JobState::Failed {
                p.message = detail.clone();
            }
        }
        self.log(state.as_str(), detail);
    }

    /// Its row now, with the pace of this run.
    fn row(&self) -> JobRow {
        let p = self.progress();
        let (now, running) = (Instant::now(), p.state == JobState::Running);
        JobRow {
            id: self.name.clone(),
            name: self.name.clone(),
            state: p.state.to_string(),
            priority: 0,
            frames_done: p.pace.frames_done(),
            frames_total: self.frames_total,
            frames_per_minute: if running {
                p.pace.frames_per_minute(now)
            } else {
                0.0
            },
            eta_seconds: if running {
                p.pace.seconds_left(self.frames_total, now)
            } else {
                0.0
            },
            message: p.message.clone(),
        }
    }

    /// Refuses any id but its own.
    fn check(&self, id: &str) -> Result<(), WebError> {
        match id == self.name {
            true => Ok(()),
            false => Err(WebError::NotFound(format!(
                "no job {id:?}: this render is {:?}",
                self.name
            ))),
        }
    }
}

impl JobSource for LocalJob {
    fn jobs(&self, _finished: usize) -> JobList {
        JobList {
            jobs: vec![self.row()],
            older_finished: 0,
        }
    }

    fn job(&self, id: &str) -> Result<JobRow, WebError> {
        self.check(id)?;
        Ok(self.row())
    }

    fn files(&self, id: &str) -> Result<JobFiles, WebError> {
        self.check(id)?;
        Ok(self.files.clone())
    }

    fn latest_events(&self, id: &str, limit: usize) -> Result<(Vec<EventRow>, u64), WebError> {
        self.check(id)?;
        let events = &self.progress().events;
        let latest = events[events.len().saturating_sub(limit)..].to_vec();
        Ok((latest, events.len() as u64))
    }

    fn pool(&self) -> Option<Pool> {
        None
    }

    fn controls(&self) -> bool {
        false
    }

    fn control(&self, _: &str, _: Action) -> Result<(), WebError> {
        Err(WebError::NotAvailable(
            "this is a single-machine render: its page is read-only".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_follows_the_render() {
        let spec: JobSpec = toml::from_str("input = \"in.png\"\nframes = 4").unwrap();
        let job = LocalJob::new("trip", &spec, "f".into(), "f/trip.mp4".into(), 1);
        // A frame that took some time, so that the pace has a length.
        std::thread::sleep(std::time::Duration::from_millis(20));
        job.frame_written(1, 2.0);
        let row = job.job("trip").unwrap();
        assert_eq!((row.frames_done, row.state.as_str()), (2, "running"));
        assert!(row.eta_seconds > 0.0);
        assert!(matches!(job.job("other"), Err(WebError::NotFound(_))));
        job.finished(Some("a tile failed".into()));
        let row = job.job("trip").unwrap();
        assert_eq!(
            (row.state.as_str(), row.message.as_str()),
            ("failed", "a tile failed")
        );
        let (events, total) = job.latest_events("trip", 10).unwrap();
        let kinds: Vec<String> = events.into_iter().map(|e| e.kind).collect();
        assert_eq!(
            (kinds, total),
            (vec!["started".into(), "frame".into(), "failed".into()], 3)
        );
        let (events, total) = job.latest_events("trip", 1).unwrap();
        assert_eq!((events[0].kind.as_str(), total), ("failed", 3));
        assert!(job.control("trip", Action::Pause).is_err());
    }
}
