//! The coordinator's jobs and pool as the web interface sees them. The
//! controls call the same functions of [`Jobs`] as the gRPC `JobService`.

use std::sync::Arc;
use std::time::Instant;

use super::error::WebError;
use super::source::{Action, EventRow, JobFiles, JobList, JobRow, JobSource, Pool, WorkerRow};
use crate::cluster::job_handle::JobHandle;
use crate::cluster::jobs::Jobs;

/// The coordinator's jobs (see the module docs).
pub struct ClusterSource {
    jobs: Arc<Jobs>,
}

impl ClusterSource {
    /// Shows `jobs` and their hub's pool.
    pub fn new(jobs: Arc<Jobs>) -> Self {
        Self { jobs }
    }
}

/// A job's row now.
fn row(job: &JobHandle) -> JobRow {
    let v = job.view();
    JobRow {
        id: v.id,
        name: v.name,
        state: v.state.to_string(),
        priority: v.priority,
        frames_done: v.frames_done,
        frames_total: v.frames_total,
        frames_per_minute: job.frames_per_minute(),
        eta_seconds: job.seconds_left(),
        message: v.message,
    }
}

impl JobSource for ClusterSource {
    fn jobs(&self, finished: usize) -> JobList {
        let mut list = JobList::default();
        let mut room = finished;
        for job in self.jobs.all() {
            if job.state().is_final() {
                if room == 0 {
                    list.older_finished += 1;
                    continue;
                }
                room -= 1;
            }
            list.jobs.push(row(&job));
        }
        // Always shown: nothing else tells that they are there.
        list.jobs
            .extend(self.jobs.unreadable().iter().map(|u| JobRow {
                id: u.id.clone(),
                name: u.name.clone(),
                state: "unreadable".into(),
                message: u.explained(),
                ..JobRow::default()
            }));
        list
    }

    fn job(&self, id: &str) -> Result<JobRow, WebError> {
        let job = self.jobs.get(id)?;
        Ok(row(&job))
    }

    fn files(&self, id: &str) -> Result<JobFiles, WebError> {
        let job = self.jobs.get(id)?;
        let settings = toml::to_string(&job.record().spec)
            .map_err(|e| WebError::Internal(format!("cannot show the job's settings: {e}")))?;
        Ok(JobFiles {
            frames_dir: job.frames_dir(),
            video: job.video(),
            settings,
        })
    }

    fn latest_events(&self, id: &str, limit: usize) -> Result<(Vec<EventRow>, u64), WebError> {
        let (events, total) = self.jobs.latest_events(id, limit)?;
        let rows = events
            .into_iter()
            .map(|e| EventRow {
                at_ms: e.at_ms,
                kind: e.kind.to_string(),
                detail: e.detail,
            })
            .collect();
        Ok((rows, total))
    }

    fn pool(&self) -> Option<Pool> {
        let hub = self.jobs.hub();
        let now = Instant::now();
        let (mut workers, snapshot, regions_paused_s, unreachable) = hub.read(|s| {
            let workers: Vec<WorkerRow> = s
                .workers()
                .map(|(_, w)| WorkerRow {
                    name: w.name.clone(),
                    device: w.device.clone(),
                    concurrency: w.concurrency,
                    leases: w.leases_held(),
                    tiles_per_second: w.tiles_per_second(now),
                    last_heartbeat_s: now.duration_since(w.last_seen()).as_secs_f64(),
                    changes_at: w.change_address().to_string(),
                })
                .collect();
            let paused = s.regions_paused_for(now).map(|d| d.as_secs_f64());
            (workers, s.snapshot(), paused, s.unreachable_services())
        });
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        Some(Pool {
            workers,
            queued_tiles: snapshot.queued,
            leases_in_flight: snapshot.in_flight,
            tiles_per_second: hub.metrics.tiles.per_second(now),
            regions_paused_s,
            unreachable,
        })
    }

    fn controls(&self) -> bool {
        true
    }

    fn control(&self, id: &str, action: Action) -> Result<(), WebError> {
        let jobs = &self.jobs;
        match action {
            Action::Pause => jobs.pause(id),
            Action::Resume => jobs.resume(id),
            Action::Cancel => jobs.cancel(id),
            Action::Retry => jobs.retry(id),
            Action::Priority(p) => jobs.set_priority(id, p),
        }?;
        Ok(())
    }
}
