//! The frame loop's [`TileExecutor`] for a cluster job: tiles go into the
//! scheduler's queue as the frame loop hands them in, and `next` blocks
//! until a worker returns one (the job runs on its own thread).

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;

use super::hub::Hub;
use super::job_handle::JobHandle;
use super::scheduler::{RegionFailure, TileOutcome};
use crate::region_frames::{RegionExecutor, RegionTask};
use crate::tile_executor::{TileError, TileExecutor, TileKey};

/// Tiles of one job computed by the worker pool.
pub struct RemoteExecutor {
    hub: Arc<Hub>,
    job: Arc<JobHandle>,
    /// The batch in flight: where its outcomes arrive, with its frame.
    batch: Option<(mpsc::Receiver<(usize, TileOutcome)>, u64)>,
    /// The key of each tile of the batch, by its index in it, and whether
    /// it has come back (a retried tile may report twice).
    tiles: Vec<(TileKey, bool)>,
    /// Tiles of the batch not yet returned.
    outstanding: usize,
}

impl RemoteExecutor {
    /// Executes `job`'s tiles through `hub`.
    pub fn new(hub: Arc<Hub>, job: Arc<JobHandle>) -> Self {
        Self {
            hub,
            job,
            batch: None,
            tiles: Vec::new(),
            outstanding: 0,
        }
    }

    /// Tells the job's status why it waits, if it waits for workers.
    fn note_waiting(&self) {
        let (workers, blocked) = self
            .hub
            .read(|s| (s.snapshot().workers, s.all_blocked(&self.job.id)));
        self.job.waiting(match (workers, blocked) {
            (0, _) => "waiting for workers: none is connected",
            (_, true) => "waiting for workers: every connected one is blocked from this job after failing its tiles",
            _ => "",
        });
    }

    /// The error for tile `slot` of the batch (or the batch as a whole).
    fn fail(&self, slot: usize, reason: String) -> TileError {
        let key = self.tiles.get(slot).map(|t| t.0);
        TileError {
            frame: self.batch.as_ref().map_or(0, |b| b.1),
            octave: key.map_or(0, |k| k.octave),
            tile: key.map_or(0, |k| k.tile),
            reason,
        }
    }
}

impl TileExecutor for RemoteExecutor {
    fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
        let Some(first) = work.first() else {
            return Ok(());
        };
        let (frame, n) = (first.frame, work.len());
        let keys = work.iter().map(|w| (TileKey::of(w), false));
        if self.outstanding == 0 {
            // Nothing in flight: a new batch, which drops whatever is left
            // of one the job no longer waits for.
            self.tiles = keys.collect();
            let rx = self.hub.update(|s| s.submit(&self.job.id, work));
            self.batch = Some((rx.ok_or_else(|| self.fail(0, CANCELLED.into()))?, frame));
            self.job.batch_started(n);
        } else {
            self.tiles.extend(keys);
            if !self.hub.update(|s| s.append(&self.job.id, work)) {
                return Err(self.fail(0, CANCELLED.into()));
            }
            self.job.tiles_added(n);
        }
        self.outstanding += n;
        Ok(())
    }

    /// The wire's decoder refuses non-finite pieces.
    fn changes_are_finite(&self) -> bool {
        true
    }

    /// Frames go by regions whenever a worker that serves changes is
    /// connected: the frames are the same bits either way.
    fn regions(&mut self) -> Option<&mut dyn RegionExecutor> {
        let serving = self.hub.read(|s| s.serves_changes(Instant::now()));
        serving.then_some(self as &mut dyn RegionExecutor)
    }

    fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
        loop {
            let Some((rx, _)) = self.batch.as_ref().filter(|_| self.outstanding > 0) else {
                return Err(self.fail(0, "no tile was outstanding (a frame loop bug)".into()));
            };
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok((slot, Ok(change))) => {
                    self.hub.metrics.tiles.add(1, Instant::now());
                    let Some((key, returned)) = self.tiles.get_mut(slot) else {
                        continue;
                    };
                    if std::mem::replace(returned, true) {
                        continue;
                    }
                    let key = *key;
                    self.outstanding -= 1;
                    self.job.tile_done();
                    return Ok((key, change));
                }
                Ok((slot, Err(reason))) => return Err(self.fail(slot, reason)),
                Err(RecvTimeoutError::Timeout) => self.note_waiting(),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.fail(0, CANCELLED.into()));
                }
            }
        }
    }
}

/// Why a cancelled job's frame stops.
const CANCELLED: &str = "the job was cancelled";

impl RegionExecutor for RemoteExecutor {
    fn dream_regions(
        &mut self,
        frame: u64,
        regions: Vec<RegionTask>,
    ) -> Result<Option<Vec<Vec<u8>>>, TileError> {
        let n = regions.len();
        let tiles: Vec<u64> = regions.iter().map(|r| r.tiles).collect();
        let failed = |region: usize, reason: String| TileError {
            frame,
            octave: 0,
            tile: region as u32,
            reason: format!("region {region}: {reason}"),
        };
        let rx = self
            .hub
            .update(|s| s.submit_regions(&self.job.id, frame, regions))
            .ok_or_else(|| failed(0, CANCELLED.into()))?;
        self.job.batch_started(n);
        let mut cells: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut left = n;
        while left > 0 {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok((slot, Ok(rgb))) => {
                    if let Some(cell @ None) = cells.get_mut(slot) {
                        *cell = Some(rgb);
                        left -= 1;
                        self.job.tile_done();
                        self.hub.metrics.tiles.add(tiles[slot], Instant::now());
                    }
                }
                Ok((slot, Err(RegionFailure::Failed(reason)))) => return Err(failed(slot, reason)),
                Ok((_, Err(RegionFailure::Exchange(_)))) => return Ok(None),
                Err(RecvTimeoutError::Timeout) => self.note_waiting(),
                Err(RecvTimeoutError::Disconnected) => return Err(failed(0, CANCELLED.into())),
            }
        }
        Ok(Some(cells.into_iter().flatten().collect()))
    }
}
