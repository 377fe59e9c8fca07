//! The frame loop's [`TileExecutor`] for a cluster job: each batch of tiles
//! goes into the scheduler's queue, and the call blocks until workers have
//! returned every tile (the job runs on its own thread).

use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;

use super::hub::Hub;
use super::job_handle::JobHandle;
use crate::tile_executor::{TileError, TileExecutor};

/// Tiles of one job computed by the worker pool.
pub struct RemoteExecutor {
    hub: Arc<Hub>,
    job: Arc<JobHandle>,
}

impl RemoteExecutor {
    /// Executes `job`'s tiles through `hub`.
    pub fn new(hub: Arc<Hub>, job: Arc<JobHandle>) -> Self {
        Self { hub, job }
    }
}

impl TileExecutor for RemoteExecutor {
    fn run(&mut self, work: Vec<TileWork>) -> Result<Vec<Planar>, TileError> {
        let Some(first) = work.first() else {
            return Ok(Vec::new());
        };
        let (frame, octave, n) = (first.frame, first.octave, work.len());
        let fail = |tile: u32, reason: String| TileError {
            frame,
            octave,
            tile,
            reason,
        };
        let rx = self
            .hub
            .update(|s| s.submit(&self.job.id, work))
            .ok_or_else(|| fail(0, "the job was cancelled".into()))?;
        self.job.batch_started(n);
        let mut changes: Vec<Option<Planar>> = vec![None; n];
        let mut left = n;
        while left > 0 {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok((slot, Ok(change))) => {
                    if changes[slot].replace(change).is_none() {
                        left -= 1;
                    }
                    self.hub.metrics.tiles.add(1, Instant::now());
                    self.job.tile_done();
                }
                Ok((slot, Err(reason))) => return Err(fail(slot as u32, reason)),
                Err(RecvTimeoutError::Timeout) => {
                    let (workers, blocked) = self
                        .hub
                        .read(|s| (s.snapshot().workers, s.all_blocked(&self.job.id)));
                    self.job.waiting(match (workers, blocked) {
                        (0, _) => "waiting for workers: none is connected",
                        (_, true) => "waiting for workers: every connected one is blocked from this job after failing its tiles",
                        _ => "",
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(fail(0, "the job was cancelled".into()));
                }
            }
        }
        Ok(changes.into_iter().flatten().collect())
    }
}
