//! Frames by regions in the lease queue: a frame's regions as one batch,
//! the workers holding each (they serve its changes until the frame is
//! whole), regions leased again when a finished one's worker is lost, and
//! the notices that a frame is whole, after which its holders drop its
//! changes.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, mpsc};

use super::{
    Batch, LeaseError, LeaseId, RegionOutcome, RegionTask, Results, Scheduler, Unit, Work,
    WorkerId, exchange::EXCHANGE_PAUSE,
};

/// For a frame's regions: the frame and the workers holding its regions.
fn frame_holders(batch: &Batch) -> Option<(u64, HashSet<WorkerId>)> {
    let Results::Regions { frame, .. } = batch.results else {
        return None;
    };
    Some((frame, batch.holders.iter().flatten().copied().collect()))
}

/// [`frame_holders`] of a frame left before it was whole (a whole one's
/// holders were told when its last cell came in).
pub(super) fn frame_left(batch: &Batch) -> Option<(u64, HashSet<WorkerId>)> {
    frame_holders(batch).filter(|_| !batch.delivered.iter().all(|&d| d))
}

impl Batch {
    /// Where in `pending` (this frame's regions) the region `worker`
    /// takes next lies: the one that, held by it, keeps the most changes
    /// off the network, the pixels it exchanges with the regions `worker`
    /// holds less those it exchanges with regions other workers hold (a
    /// worker holding none starts away from the others); the first queued
    /// of equals. Each worker so grows a patch of neighbouring regions,
    /// whose changes it takes from its own memory. Which worker holds a
    /// region never changes its bits.
    pub(super) fn region_for(&self, worker: WorkerId, pending: &VecDeque<Unit>) -> usize {
        let gain = |unit: &Unit| -> i128 {
            let ties = self.ties.get(unit.slot).map_or(&[][..], Vec::as_slice);
            ties.iter()
                .map(
                    |&(n, pixels)| match self.holders.get(n).copied().flatten() {
                        Some(w) if w == worker => i128::from(pixels),
                        Some(_) => -i128::from(pixels),
                        None => 0,
                    },
                )
                .sum()
        };
        pending
            .iter()
            .enumerate()
            .filter(|(_, unit)| unit.batch == self.id)
            .max_by_key(|&(at, unit)| (gain(unit), std::cmp::Reverse(at)))
            .map_or(0, |(at, _)| at)
    }
}

impl Scheduler {
    /// Queues the regions of `job`'s frame `frame` (in region order) as
    /// its next batch; each region's outcome arrives on the returned
    /// channel with its index.
    pub fn submit_regions(
        &mut self,
        job: &str,
        frame: u64,
        regions: Vec<RegionTask>,
    ) -> Option<mpsc::Receiver<(usize, RegionOutcome)>> {
        let (tx, rx) = mpsc::channel();
        let count = regions.len();
        let mut ties = vec![BTreeMap::new(); count];
        for (r, task) in regions.iter().enumerate() {
            for &(n, pixels) in task.reads_from.iter().filter(|&&(n, _)| n < count) {
                *ties[r].entry(n).or_insert(0) += pixels;
                *ties[n].entry(r).or_insert(0) += pixels;
            }
        }
        let regions: Vec<Work> = regions
            .into_iter()
            .map(|task| Work::Region {
                lease: Arc::new(task.lease),
                cell: task.cell,
                tiles: task.tiles,
            })
            .collect();
        self.start_batch(job, |id| {
            let pending = regions
                .iter()
                .enumerate()
                .map(|(slot, work)| Unit {
                    batch: id,
                    slot,
                    attempt: 0,
                    failed_on: Vec::new(),
                    lost: 0,
                    work: work.clone(),
                })
                .collect();
            let batch = Batch {
                slots: count,
                holders: vec![None; count],
                delivered: vec![false; count],
                regions,
                ties: ties.into_iter().map(|t| t.into_iter().collect()).collect(),
                ..Batch::new(id, Results::Regions { results: tx, frame })
            };
            (batch, pending)
        })?;
        Some(rx)
    }

    /// Leases again the regions that `worker`, now gone, finished while
    /// their frame still waits on others: the neighbours still dreaming
    /// may need the changes it served. The region comes out the same
    /// bits; its cell is not delivered twice.
    pub(super) fn redo_regions_of(&mut self, worker: WorkerId) {
        let mut moved = Vec::new();
        for (job, queue) in &mut self.jobs {
            let Some(batch) = queue.batch.as_mut() else {
                continue;
            };
            if batch.delivered.iter().all(|&d| d) {
                continue;
            }
            for slot in 0..batch.holders.len() {
                if batch.holders[slot] == Some(worker) && batch.delivered[slot] {
                    batch.holders[slot] = None;
                    queue.pending.push_front(Unit {
                        batch: batch.id,
                        slot,
                        attempt: 0,
                        failed_on: Vec::new(),
                        lost: 0,
                        work: batch.regions[slot].clone(),
                    });
                    tracing::info!(%job, slot, "a finished region's worker left: leasing it again for its neighbours");
                    moved.push(job.clone());
                }
            }
        }
        for job in moved {
            self.holders_moved(&job);
        }
    }

    /// Marks the holders of `job`'s regions changed for every worker that
    /// holds one.
    pub(super) fn holders_moved(&mut self, job: &Arc<str>) {
        let Some(batch) = self.jobs.get(job).and_then(|q| q.batch.as_ref()) else {
            return;
        };
        let holding: HashSet<WorkerId> = batch.holders.iter().flatten().copied().collect();
        for id in holding {
            if let Some(w) = self.workers.get_mut(&id) {
                w.holders_changed.insert(job.clone());
            }
        }
    }

    /// For each job whose regions' holders changed since `worker` was
    /// last told, among those it holds a region of: the frame and each
    /// region's holder's change address, in region order (empty: none
    /// holds it now).
    pub fn take_holders(&mut self, worker: WorkerId) -> Vec<(Arc<str>, u64, Vec<String>)> {
        let Some(w) = self.workers.get_mut(&worker) else {
            return Vec::new();
        };
        let jobs = std::mem::take(&mut w.holders_changed);
        jobs.into_iter()
            .filter_map(|job| {
                let batch = self.jobs.get(&job)?.batch.as_ref()?;
                let Results::Regions { frame, .. } = batch.results else {
                    return None;
                };
                let addresses = batch
                    .holders
                    .iter()
                    .map(|h| {
                        h.and_then(|id| self.workers.get(&id))
                            .map_or(String::new(), |w| w.change_address.clone())
                    })
                    .collect();
                Some((job, frame, addresses))
            })
            .collect()
    }

    /// Tells the workers holding a region of `job`'s frame (`done`, from
    /// [`frame_holders`]) that no region will fetch the frame's changes
    /// again: its last cell came in, the job stopped, or the frame went by
    /// tiles.
    pub(super) fn frame_done(&mut self, job: &Arc<str>, done: Option<(u64, HashSet<WorkerId>)>) {
        let Some((frame, holding)) = done else {
            return;
        };
        for id in holding {
            if let Some(w) = self.workers.get_mut(&id) {
                w.frames_whole.push((job.clone(), frame));
            }
        }
    }

    /// The frames, by job, whose changes `worker` may drop (their last
    /// cell came in, their job stopped, or they went by tiles), less those of a job it holds a region lease
    /// of that frame or an earlier one for: a paused job resumed, say,
    /// whose frame went out again before the worker was told (the notice
    /// then goes before the region's own changes would be dropped). Told
    /// before its next leases, in order.
    pub fn take_frames_whole(&mut self, worker: WorkerId) -> Vec<(Arc<str>, u64)> {
        let Some(w) = self.workers.get_mut(&worker) else {
            return Vec::new();
        };
        let leases = &self.leases;
        let holds_region = |job: &Arc<str>, frame: u64| {
            w.leases.iter().any(|id| {
                leases.get(id).is_some_and(|l| {
                    l.job == *job
                        && matches!(&l.unit.work, Work::Region { lease, .. } if lease.frame <= frame)
                })
            })
        };
        let told = std::mem::take(&mut w.frames_whole);
        told.into_iter()
            .filter(|(job, frame)| !holds_region(job, *frame))
            .collect()
    }

    /// Checks that `worker` holds the region lease `lease` at `attempt`;
    /// returns the width and height of the region's cell, which its
    /// result covers.
    pub fn check_region_result(
        &self,
        worker: WorkerId,
        lease: LeaseId,
        attempt: u32,
    ) -> Result<(usize, usize), LeaseError> {
        match &self.held_at(worker, lease, attempt)?.unit.work {
            Work::Region { cell, .. } => Ok(*cell),
            Work::Tile(_) => Err(LeaseError::WrongKind(lease)),
        }
    }

    /// Delivers the 8-bit RGB of region lease `lease`'s cell to the frame
    /// waiting on it.
    pub fn complete_region(
        &mut self,
        worker: WorkerId,
        lease: LeaseId,
        attempt: u32,
        rgb: Vec<u8>,
    ) -> Result<(), LeaseError> {
        let (width, height) = self.check_region_result(worker, lease, attempt)?;
        if rgb.len() != 3 * width * height {
            let got = (rgb.len() / 3 / height.max(1), height);
            return Err(LeaseError::WrongSize {
                lease,
                want: (width, height),
                got,
            });
        }
        let tiles = match &self.leases[&lease].unit.work {
            Work::Region { tiles, .. } => *tiles,
            Work::Tile(_) => 0,
        };
        self.regions_completed += 1;
        let Some((l, Results::Regions { results, .. })) = self.finish(worker, lease, tiles) else {
            return Ok(());
        };
        let (results, slot) = (results.clone(), l.unit.slot);
        let (first, whole) = match self.jobs.get_mut(&l.job).and_then(|q| q.batch.as_mut()) {
            Some(b) => (
                b.delivered
                    .get_mut(slot)
                    .is_some_and(|d| !std::mem::replace(d, true)),
                b.delivered.iter().all(|&d| d),
            ),
            None => (false, false),
        };
        if first {
            let _ = results.send((slot, Ok(rgb)));
        }
        if whole {
            // The exchange works: a later failure pauses regions afresh.
            self.exchange_pause = EXCHANGE_PAUSE;
            // Regions leased again for their neighbours' sake (their first
            // holder lost) are needed no more: no cell of theirs is taken.
            let batch = l.unit.batch;
            let done = self.jobs.get_mut(&l.job).and_then(|q| {
                q.pending.retain(|u| u.batch != batch);
                q.batch.as_ref().and_then(frame_holders)
            });
            self.revoke_where(|x| x.job == l.job && x.unit.batch == batch);
            self.frame_done(&l.job, done);
        }
        Ok(())
    }
}
