//! The lease queue: tiles waiting to be computed, the leases that workers
//! hold on them, and the workers themselves.
//!
//! Each running job has one batch at a time (the tiles of a frame, added as
//! the frame loop learns their pixels) and waits for its results. Workers are handed leases from the
//! job of highest priority with tiles waiting; jobs of equal priority take
//! turns, so they share the pool fairly, up to the concurrency each worker
//! announced. A lease goes back to the front of its job's queue when its
//! worker fails it, hands it back, disconnects, falls silent or misses the
//! lease's deadline; the result of a lease that is no longer held is
//! dropped, so a late duplicate never counts.
//!
//! A pool churns: a lease handed back (a worker scaled down) costs nothing,
//! and a lost one (a worker that vanished) only counts against a generous
//! budget. A tile fails its job only after failures reported by
//! [`FAILING_WORKERS`] distinct workers, and a worker whose leases of a job
//! keep failing is blocked from that job instead of failing it. A frame
//! whose regions' workers cannot fetch each other's changes is given up by
//! regions whole, and goes by tiles, as every frame does for a while
//! ([`Scheduler::exchange_failed`]); workers that cannot reach each other
//! are found when they join, and frames go by tiles while they are in the
//! pool ([`ExchangeChecks`]). What happens to a job is told as
//! [`JobEvent`]s. Everything here is synchronous
//! and clock-driven (`now` is passed in), so it is tested without a network
//! or real time.
//!
//! This file holds the queue of tiles and the pool; `regions` the frames
//! that go by regions (their holders, regions redone, frames whole), and
//! `exchange` whether the workers exchange changes (their services, the
//! checks at join, the pause after a failed fetch).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dreamfarm_common::params::{DreamSettings, WirePrecision};
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::{RegionLease, TileWork};

use super::exchange_checks::ExchangeChecks;

pub use crate::region_frames::RegionTask;
pub use exchange::{EXCHANGE_PAUSE, EXCHANGE_PAUSE_MAX};
use regions::frame_left;

mod exchange;
mod regions;

use super::job_weights::JobWeights;
use crate::store::EventKind;

/// Distinct workers that must fail a tile before its job fails.
pub const FAILING_WORKERS: usize = 3;

/// Failed leases of one job after which a worker is blocked from it.
pub const BLOCK_AFTER_FAILURES: u32 = 3;

/// Leases of one tile lost with their worker (gone, silent, past the
/// deadline) before its job fails: such a tile probably kills workers.
pub const MAX_LOST: u32 = 10;

/// A worker's number for the life of its session.
pub type WorkerId = u64;
/// A lease's number; never reused, not even across restarts.
pub type LeaseId = u64;

/// How one tile of a batch ended.
pub type TileOutcome = Result<Planar, String>;

/// How one region of a frame ended: the frame's 8-bit RGB over its cell.
pub type RegionOutcome = Result<Vec<u8>, RegionFailure>;

/// Why a region of a frame came back without its cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionFailure {
    /// It failed for good, as a tile does: the job fails for this reason.
    Failed(String),
    /// Its worker could not fetch a neighbour's changes: the frame is
    /// given up by regions and dreamed by tiles, for this reason.
    Exchange(String),
}

/// What a lease computes.
#[derive(Debug, Clone)]
pub enum Work {
    /// Steps on a tile (or a batch of tiles): its change comes back.
    Tile(Arc<TileWork>),
    /// One region of a frame (docs/frame-loop-on-workers.md): the frame's
    /// pixels over the region's cell come back. It goes only to workers
    /// that serve changes, and takes none of a worker's concurrency: a
    /// region waits on its neighbours without holding a device, so a frame
    /// of more regions than workers cannot deadlock.
    Region {
        /// The lease.
        lease: Arc<RegionLease>,
        /// Width and height of the region's cell.
        cell: (usize, usize),
        /// Tiles the region dreams (its own, every pass).
        tiles: u64,
    },
}

impl Work {
    /// Where it lies, for people.
    fn place(&self) -> String {
        match self {
            Work::Tile(w) => format!("frame {} octave {} tile {}", w.frame, w.octave, w.tile),
            Work::Region { lease, .. } => format!("frame {} region {}", lease.frame, lease.region),
        }
    }
}

/// What a job needs a worker to know to compute its tiles.
#[derive(Debug, Clone)]
pub struct JobParams {
    /// The job's dream settings.
    pub dream: Arc<DreamSettings>,
    /// The job's seed.
    pub seed: u64,
    /// Its own weights file, which its leases name by digest.
    pub weights: Option<JobWeights>,
}

impl JobParams {
    /// The pixel precision of the job's leases and results.
    pub fn wire(&self) -> WirePrecision {
        self.dream.wire_precision
    }
}

/// Something that happened to a job in the pool, for its event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// The job.
    pub job: Arc<str>,
    /// What happened.
    pub kind: EventKind,
    /// For people.
    pub detail: String,
}

/// What the result of a lease must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultShape {
    /// Width of the tile's output region (a batch's are stacked).
    pub width: usize,
    /// Its height.
    pub height: usize,
    /// The job's pixel precision.
    pub wire: WirePrecision,
}

/// A lease handed to a worker.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The lease.
    pub lease: LeaseId,
    /// Which job it belongs to.
    pub job: Arc<str>,
    /// The job's parameters.
    pub params: JobParams,
    /// Which try this is.
    pub attempt: u32,
    /// What to compute.
    pub work: Work,
    /// Time the worker has.
    pub deadline: Duration,
}

/// Why a worker's message about a lease was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    /// The lease is not (or no longer) held by this worker: revoked,
    /// expired, reassigned, never granted, or granted before a restart.
    #[error(
        "lease {0} is not held by this worker (expired, revoked, never granted, or granted before the coordinator restarted)"
    )]
    NotHeld(LeaseId),
    /// The lease was taken from this worker (expired, revoked, or its job
    /// ended): a late result, dropped without fuss.
    #[error("lease {0} was taken back from this worker; its result is dropped")]
    TakenBack(LeaseId),
    /// The result names another try of the lease.
    #[error("lease {lease} is at attempt {current}, not {given}")]
    WrongAttempt {
        /// The lease.
        lease: LeaseId,
        /// Its attempt.
        current: u32,
        /// The attempt named.
        given: u32,
    },
    /// The result is not of the lease's kind (a change for a region, or
    /// a region's pixels for a tile).
    #[error("lease {0} is of another kind than its result")]
    WrongKind(LeaseId),
    /// The returned change does not have the tile's output size.
    #[error("lease {lease}: a {got:?} change for a {want:?} output region")]
    WrongSize {
        /// The lease.
        lease: LeaseId,
        /// (width, height) expected.
        want: (usize, usize),
        /// (width, height) given.
        got: (usize, usize),
    },
}

/// One tile waiting in a job's queue, with its history of tries.
#[derive(Debug, Clone)]
struct Unit {
    batch: u64,
    slot: usize,
    /// Leases granted for it so far (results name theirs).
    attempt: u32,
    /// Names of the workers that reported failing it.
    failed_on: Vec<String>,
    /// Leases of it lost with their worker.
    lost: u32,
    work: Work,
}

/// A lease in flight.
#[derive(Debug)]
struct Lease {
    job: Arc<str>,
    worker: WorkerId,
    unit: Unit,
    deadline: Instant,
}

/// Where a batch's outcomes go, by its kind.
#[derive(Clone)]
enum Results {
    Tiles(mpsc::Sender<(usize, TileOutcome)>),
    Regions {
        results: mpsc::Sender<(usize, RegionOutcome)>,
        /// The frame.
        frame: u64,
    },
}

impl Results {
    /// Tells the waiting job that slot `slot` failed for `reason`.
    fn fail(&self, slot: usize, reason: String) {
        let _ = match self {
            Results::Tiles(tx) => tx.send((slot, Err(reason))).is_ok(),
            Results::Regions { results, .. } => results
                .send((slot, Err(RegionFailure::Failed(reason))))
                .is_ok(),
        };
    }
}

/// The batch a job waits on.
struct Batch {
    id: u64,
    results: Results,
    /// Tiles queued in it so far.
    slots: usize,
    /// For a frame's regions: the worker that holds each, or held it to
    /// the end (it serves the region's changes until the frame is done).
    holders: Vec<Option<WorkerId>>,
    /// For a frame's regions: each region's work, leased again when the
    /// worker that finished it is lost while the frame still waits on
    /// other regions (they may need its changes).
    regions: Vec<Work>,
    /// For a frame's regions: whether each region's cell was delivered
    /// (a region leased again is not delivered twice).
    delivered: Vec<bool>,
    /// For a frame's regions: for each, the other regions it exchanges
    /// changes with and the pixels they exchange, both ways.
    ties: Vec<Vec<(usize, u64)>>,
}

impl Batch {
    /// Batch `id`, its outcomes going to `results`, with no units yet.
    fn new(id: u64, results: Results) -> Self {
        Self {
            id,
            results,
            slots: 0,
            holders: Vec::new(),
            regions: Vec::new(),
            delivered: Vec::new(),
            ties: Vec::new(),
        }
    }
}

struct JobQueue {
    params: JobParams,
    priority: i32,
    pending: VecDeque<Unit>,
    batch: Option<Batch>,
    /// When the job last got a lease (round robin: the oldest goes first).
    last_served: u64,
    /// Failed leases per worker name.
    failures: HashMap<String, u32>,
    /// Workers (by name) that may not take its tiles.
    blocked: HashSet<String>,
}

/// A connected worker.
#[derive(Debug)]
pub struct WorkerEntry {
    /// Name it gave.
    pub name: String,
    /// Device it runs on.
    pub device: String,
    /// Leases it computes at once.
    pub concurrency: u32,
    /// Leases it holds.
    leases: HashSet<LeaseId>,
    /// Leases it must drop.
    revoked: Vec<LeaseId>,
    /// Leases taken back from it, whose late results are expected.
    taken_back: HashSet<LeaseId>,
    last_seen: Instant,
    /// When it joined.
    joined: Instant,
    /// Tiles it completed.
    pub tiles_done: u64,
    /// Where its change service listens (empty: it takes no regions).
    change_address: String,
    /// The number its change service answers with.
    change_service_id: u64,
    /// Jobs whose regions' holders changed since it was last told, among
    /// those it holds a region of.
    holders_changed: HashSet<Arc<str>>,
    /// Frames, by job, that no region will fetch changes of again (each
    /// whole, or its job stopped) since it was last told, among those it
    /// held a region of: it drops their changes.
    frames_whole: Vec<(Arc<str>, u64)>,
}

impl WorkerEntry {
    /// Where its neighbours fetch its changes (empty: it takes tiles only).
    pub fn change_address(&self) -> &str {
        &self.change_address
    }

    /// Leases it holds now.
    pub fn leases_held(&self) -> usize {
        self.leases.len()
    }

    /// When it was last heard from (a message or a heartbeat).
    pub fn last_seen(&self) -> Instant {
        self.last_seen
    }

    /// Its tiles per second since it joined, at `now`.
    pub fn tiles_per_second(&self, now: Instant) -> f64 {
        let seconds = now.duration_since(self.joined).as_secs_f64().max(1.0);
        self.tiles_done as f64 / seconds
    }
}

/// Counts for metrics and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Tiles waiting for a worker.
    pub queued: usize,
    /// Leases held by workers.
    pub in_flight: usize,
    /// Connected workers.
    pub workers: usize,
    /// Leases given back to the queue so far.
    pub retries: u64,
    /// Tiles completed so far.
    pub completed: u64,
    /// Leases completed so far (a batch of tiles is one).
    pub leases_completed: u64,
    /// Region leases among them.
    pub regions_completed: u64,
    /// Frames given up by regions because their workers could not fetch
    /// each other's changes.
    pub exchange_failures: u64,
    /// Failed checks of workers still in the pool: one could not reach
    /// another's change service.
    pub exchange_unreachable: usize,
}

/// Timeouts of the lease protocol.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A lease not finished this long after it was granted is requeued.
    pub lease: Duration,
    /// A worker silent this long is dropped, with its leases.
    pub heartbeat: Duration,
}

/// Why a lease goes back to the queue; what it costs the tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requeue {
    /// Handed back by a worker shutting down: free.
    HandedBack,
    /// Lost with its worker or past its deadline: counts against
    /// [`MAX_LOST`].
    Lost,
    /// Its worker reported a failure: counts against the tile's distinct
    /// failing workers and the worker's standing with the job.
    Failed,
}

/// The queue and the pool (see the module docs).
pub struct Scheduler {
    timeouts: Timeouts,
    next_id: u64,
    tick: u64,
    jobs: BTreeMap<Arc<str>, JobQueue>,
    leases: HashMap<LeaseId, Lease>,
    workers: HashMap<WorkerId, WorkerEntry>,
    retries: u64,
    completed: u64,
    leases_completed: u64,
    regions_completed: u64,
    exchange_failures: u64,
    /// No frame goes by regions before this (after their workers could not
    /// exchange changes).
    regions_paused_until: Option<Instant>,
    /// The next such pause.
    exchange_pause: Duration,
    /// Whether the workers serving changes reach each other.
    checks: ExchangeChecks,
    events: Vec<JobEvent>,
}

impl Scheduler {
    /// An empty scheduler for the coordinator's `boot`-th start: its lease
    /// and worker numbers start at `boot << 40`, so none repeats one given
    /// before a restart.
    pub fn new(timeouts: Timeouts, boot: u64) -> Self {
        Self {
            timeouts,
            next_id: (boot << 40).max(1),
            tick: 0,
            jobs: BTreeMap::new(),
            leases: HashMap::new(),
            workers: HashMap::new(),
            retries: 0,
            completed: 0,
            leases_completed: 0,
            regions_completed: 0,
            exchange_failures: 0,
            regions_paused_until: None,
            exchange_pause: EXCHANGE_PAUSE,
            checks: ExchangeChecks::default(),
            events: Vec::new(),
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn event(&mut self, job: &Arc<str>, kind: EventKind, detail: String) {
        self.events.push(JobEvent {
            job: job.clone(),
            kind,
            detail,
        });
    }

    /// Tells every job in the pool.
    fn event_for_all(&mut self, kind: EventKind, detail: &str) {
        let jobs: Vec<Arc<str>> = self.jobs.keys().cloned().collect();
        for job in jobs {
            self.event(&job, kind, detail.to_string());
        }
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<JobEvent> {
        std::mem::take(&mut self.events)
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Adds a job that will submit batches; it is told of the workers
    /// that cannot reach each other, as the jobs running when that was
    /// found were.
    pub fn add_job(&mut self, job: Arc<str>, params: JobParams, priority: i32) {
        for why in self.unreachable_services() {
            self.event(&job, EventKind::ExchangeUnreachable, why);
        }
        self.jobs.insert(
            job,
            JobQueue {
                params,
                priority,
                pending: VecDeque::new(),
                batch: None,
                last_served: 0,
                failures: HashMap::new(),
                blocked: HashSet::new(),
            },
        );
    }

    /// The settings of a job in the pool.
    pub fn job_params(&self, job: &str) -> Option<&JobParams> {
        self.jobs.get(job).map(|q| &q.params)
    }

    /// Changes a job's priority (higher is served first).
    pub fn set_priority(&mut self, job: &str, priority: i32) {
        if let Some(q) = self.jobs.get_mut(job) {
            q.priority = priority;
        }
    }

    /// Removes a job (finished, paused or cancelled): its queued tiles are
    /// dropped, its leases revoked, and a batch it waits on ends with
    /// `reason`.
    pub fn remove_job(&mut self, job: &str, reason: &str) {
        let Some((job, mut queue)) = self.jobs.remove_entry(job) else {
            return;
        };
        if let Some(batch) = queue.batch.take() {
            for unit in queue.pending.drain(..) {
                batch.results.fail(unit.slot, reason.to_string());
            }
            self.frame_done(&job, frame_left(&batch));
        }
        self.revoke_where(|l| l.job == job);
    }

    /// Takes back every lease `which` picks and tells its worker to drop it.
    fn revoke_where(&mut self, which: impl Fn(&Lease) -> bool) {
        let held: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| which(l))
            .map(|(&id, _)| id)
            .collect();
        for id in held {
            if let Some(lease) = self.take_back(id)
                && let Some(w) = self.workers.get_mut(&lease.worker)
            {
                w.revoked.push(id);
            }
        }
    }

    /// Takes lease `id` from its worker, whose late result of it is then
    /// expected and dropped.
    fn take_back(&mut self, id: LeaseId) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.leases.remove(&id);
            w.taken_back.insert(id);
        }
        Some(lease)
    }

    /// Queues `work` as `job`'s next batch; each tile's outcome arrives on
    /// the returned channel with its index in the batch. Replaces a batch
    /// the job no longer waits for.
    pub fn submit(
        &mut self,
        job: &str,
        work: Vec<TileWork>,
    ) -> Option<mpsc::Receiver<(usize, TileOutcome)>> {
        let (tx, rx) = mpsc::channel();
        let job = self.start_batch(job, |id| {
            (Batch::new(id, Results::Tiles(tx)), VecDeque::new())
        })?;
        self.append(&job, work).then_some(rx)
    }

    /// Makes the batch `start` builds on a fresh id `job`'s current one,
    /// with the units it queues, in place of the batch the job no longer
    /// waits for (whose frame is then whole to the workers holding its
    /// regions). The job's key; `None` when the job is gone.
    fn start_batch(
        &mut self,
        job: &str,
        start: impl FnOnce(u64) -> (Batch, VecDeque<Unit>),
    ) -> Option<Arc<str>> {
        let id = self.fresh_id();
        let job = self.jobs.get_key_value(job)?.0.clone();
        let queue = self.jobs.get_mut(&job)?;
        let (batch, pending) = start(id);
        let replaced = queue.batch.replace(batch);
        queue.pending = pending;
        self.frame_done(&job, replaced.as_ref().and_then(frame_left));
        Some(job)
    }

    /// Adds `work` to the end of `job`'s current batch, its tiles numbered
    /// after those already in it: the frame loop hands in tiles as their
    /// pixels become known. False when the job or its batch is gone.
    pub fn append(&mut self, job: &str, work: Vec<TileWork>) -> bool {
        let Some(queue) = self.jobs.get_mut(job) else {
            return false;
        };
        let Some(batch) = queue.batch.as_mut() else {
            return false;
        };
        let (id, first) = (batch.id, batch.slots);
        batch.slots += work.len();
        queue
            .pending
            .extend(work.into_iter().enumerate().map(|(i, w)| Unit {
                batch: id,
                slot: first + i,
                attempt: 0,
                failed_on: Vec::new(),
                lost: 0,
                work: Work::Tile(Arc::new(w)),
            }));
        true
    }

    /// Registers a worker.
    pub fn add_worker(
        &mut self,
        name: String,
        device: String,
        concurrency: u32,
        now: Instant,
    ) -> WorkerId {
        let id = self.fresh_id();
        self.event_for_all(EventKind::WorkerJoined, &name);
        self.workers.insert(
            id,
            WorkerEntry {
                name,
                device,
                concurrency: concurrency.max(1),
                leases: HashSet::new(),
                revoked: Vec::new(),
                taken_back: HashSet::new(),
                last_seen: now,
                joined: now,
                tiles_done: 0,
                change_address: String::new(),
                change_service_id: 0,
                holders_changed: HashSet::new(),
                frames_whole: Vec::new(),
            },
        );
        id
    }

    /// Whether the worker is still registered (not dropped for silence).
    pub fn has_worker(&self, worker: WorkerId) -> bool {
        self.workers.contains_key(&worker)
    }

    /// The connected workers.
    pub fn workers(&self) -> impl Iterator<Item = (&WorkerId, &WorkerEntry)> {
        self.workers.iter()
    }

    /// Notes that the worker is alive.
    pub fn touch(&mut self, worker: WorkerId, now: Instant) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_seen = now;
        }
    }

    /// Drops a worker (its session ended): its leases go back to the queue.
    pub fn remove_worker(&mut self, worker: WorkerId) {
        if let Some(w) = self.workers.remove(&worker) {
            self.event_for_all(EventKind::WorkerLeft, &w.name);
            self.checks.left(worker);
            for id in w.leases {
                self.requeue(id, &w.name, Requeue::Lost, "its worker left");
            }
            self.redo_regions_of(worker);
        }
    }

    /// Puts lease `id` back at the front of its job's queue, charging the
    /// tile and the worker named `worker` as `how` says; fails the tile
    /// when it has run out of tries.
    fn requeue(&mut self, id: LeaseId, worker: &str, how: Requeue, why: &str) {
        let Some(mut lease) = self.take_back(id) else {
            return;
        };
        let Some(queue) = self.jobs.get_mut(&lease.job) else {
            return;
        };
        if queue
            .batch
            .as_ref()
            .is_none_or(|b| b.id != lease.unit.batch)
        {
            return;
        }
        self.retries += 1;
        let unit = &mut lease.unit;
        unit.attempt += 1;
        let mut blocked_now = false;
        match how {
            Requeue::HandedBack => {}
            Requeue::Lost => unit.lost += 1,
            Requeue::Failed => {
                if !unit.failed_on.iter().any(|n| n == worker) {
                    unit.failed_on.push(worker.to_string());
                }
                let failures = queue.failures.entry(worker.to_string()).or_insert(0);
                *failures += 1;
                if *failures >= BLOCK_AFTER_FAILURES && queue.blocked.insert(worker.to_string()) {
                    blocked_now = true;
                }
            }
        }
        let place = unit.work.place();
        let (lease_kind, slot) = (unit.work.clone(), unit.slot);
        tracing::warn!(job = %lease.job, %place, attempt = unit.attempt, "lease requeued: {why}");
        // No worker left that may take it: every connected one is blocked.
        let nobody_left = blocked_now
            && self
                .workers
                .values()
                .all(|w| queue.blocked.contains(&w.name));
        // The reason goes to the frame loop, whose error names the tile.
        let give_up = if unit.failed_on.len() >= FAILING_WORKERS {
            Some(format!(
                "it failed on {} different workers; the last: {why}",
                unit.failed_on.len()
            ))
        } else if unit.lost >= MAX_LOST {
            Some(format!(
                "it lost its worker {MAX_LOST} times; the last time {why}"
            ))
        } else if nobody_left {
            Some(format!(
                "every connected worker failed this job's tiles {BLOCK_AFTER_FAILURES} times and is blocked from it; the last failure: {why}"
            ))
        } else {
            None
        };
        let job = lease.job.clone();
        let batch = queue.batch.as_ref().map(|b| b.results.clone());
        match (give_up, batch) {
            (Some(reason), Some(results)) => results.fail(lease.unit.slot, reason),
            _ => queue.pending.push_front(lease.unit),
        }
        if matches!(lease_kind, Work::Region { .. }) {
            if let Some(holder) = self
                .jobs
                .get_mut(&job)
                .and_then(|q| q.batch.as_mut())
                .and_then(|b| b.holders.get_mut(slot))
            {
                *holder = None;
            }
            self.holders_moved(&job);
        }
        self.event(
            &job,
            EventKind::LeaseRetried,
            format!("{place} (worker {worker}): {why}"),
        );
        if blocked_now {
            self.event(
                &job,
                EventKind::WorkerBlocked,
                format!("{worker} failed {BLOCK_AFTER_FAILURES} of this job's leases"),
            );
        }
    }

    /// The next lease for `worker`, if it has room and any job it is not
    /// blocked from has a tile waiting: the highest priority first, equal
    /// priorities in turn.
    pub fn next_lease(&mut self, worker: WorkerId, now: Instant) -> Option<Grant> {
        let w = self.workers.get(&worker)?;
        let regions_of = |w: &WorkerEntry| {
            w.leases
                .iter()
                .filter(|id| {
                    self.leases
                        .get(id)
                        .is_some_and(|l| matches!(l.unit.work, Work::Region { .. }))
                })
                .count()
        };
        let regions = regions_of(w);
        // Tiles take the worker's concurrency; regions go, beyond it, to
        // the workers serving changes that hold the fewest.
        let has_room = w.leases.len() - regions < w.concurrency as usize;
        let serving = |(id, w): (&WorkerId, &WorkerEntry)| {
            !w.change_address.is_empty() && self.checks.clear_for(*id)
        };
        let fewest = self
            .workers
            .iter()
            .filter(|&e| serving(e))
            .map(|(_, w)| regions_of(w))
            .min();
        let takes_regions = serving((&worker, w)) && fewest.is_some_and(|f| regions <= f);
        let (job, queue) = self
            .jobs
            .iter_mut()
            .filter(|(_, q)| {
                let fits = match q.pending.front().map(|u| &u.work) {
                    Some(Work::Tile(_)) => has_room,
                    Some(Work::Region { .. }) => takes_regions,
                    None => false,
                };
                fits && !q.blocked.contains(&w.name)
            })
            .min_by_key(|(_, q)| (std::cmp::Reverse(q.priority), q.last_served))?;
        let job = job.clone();
        self.tick += 1;
        queue.last_served = self.tick;
        let next = match (&queue.batch, &queue.pending.front()?.work) {
            (Some(batch), Work::Region { .. }) => batch.region_for(worker, &queue.pending),
            _ => 0,
        };
        let unit = queue.pending.remove(next)?;
        let params = queue.params.clone();
        let lease = self.fresh_id();
        let grant = Grant {
            lease,
            job: job.clone(),
            params,
            attempt: unit.attempt,
            work: unit.work.clone(),
            deadline: self.timeouts.lease,
        };
        self.leases.insert(
            lease,
            Lease {
                job,
                worker,
                unit,
                deadline: now + self.timeouts.lease,
            },
        );
        if let Some(w) = self.workers.get_mut(&worker) {
            w.leases.insert(lease);
        }
        if let Work::Region { .. } = grant.work {
            let slot = self.leases[&lease].unit.slot;
            if let Some(holder) = self
                .jobs
                .get_mut(&grant.job)
                .and_then(|q| q.batch.as_mut())
                .and_then(|b| b.holders.get_mut(slot))
            {
                *holder = Some(worker);
            }
            self.holders_moved(&grant.job);
        }
        Some(grant)
    }

    /// Whether every connected worker is blocked from `job` (it waits for
    /// a new one).
    pub fn all_blocked(&self, job: &str) -> bool {
        self.jobs.get(job).is_some_and(|q| {
            !q.blocked.is_empty() && self.workers.values().all(|w| q.blocked.contains(&w.name))
        })
    }

    /// The lease `lease` that `worker` holds at `attempt`, of a job still
    /// running.
    fn held_at(
        &self,
        worker: WorkerId,
        lease: LeaseId,
        attempt: u32,
    ) -> Result<&Lease, LeaseError> {
        self.owned(worker, lease)?;
        let l = &self.leases[&lease];
        if l.unit.attempt != attempt {
            return Err(LeaseError::WrongAttempt {
                lease,
                current: l.unit.attempt,
                given: attempt,
            });
        }
        if !self.jobs.contains_key(&l.job) {
            return Err(LeaseError::TakenBack(lease));
        }
        Ok(l)
    }

    /// Checks that `worker` holds the tile lease `lease` at `attempt`;
    /// returns the size and pixel precision its result must have.
    pub fn check_result(
        &self,
        worker: WorkerId,
        lease: LeaseId,
        attempt: u32,
    ) -> Result<ResultShape, LeaseError> {
        let l = self.held_at(worker, lease, attempt)?;
        let Work::Tile(work) = &l.unit.work else {
            return Err(LeaseError::WrongKind(lease));
        };
        let (width, height) = work.change_size();
        let wire = self.jobs[&l.job].params.wire();
        Ok(ResultShape {
            width,
            height,
            wire,
        })
    }

    /// Ends `worker`'s lease `lease`, counting `tiles` tiles done, and
    /// returns it with the batch's outcomes if its job still waits on it.
    fn finish(
        &mut self,
        worker: WorkerId,
        lease: LeaseId,
        tiles: u64,
    ) -> Option<(Lease, &Results)> {
        let l = self.leases.remove(&lease)?;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.leases.remove(&lease);
            w.tiles_done += tiles;
        }
        self.completed += tiles;
        self.leases_completed += 1;
        let batch = self
            .jobs
            .get(&l.job)
            .and_then(|q| q.batch.as_ref())
            .filter(|b| b.id == l.unit.batch)?;
        Some((l, &batch.results))
    }

    /// Delivers the change of tile lease `lease` to the batch waiting on
    /// it.
    pub fn complete(
        &mut self,
        worker: WorkerId,
        lease: LeaseId,
        attempt: u32,
        change: Planar,
    ) -> Result<(), LeaseError> {
        let shape = self.check_result(worker, lease, attempt)?;
        let (want, got) = ((shape.width, shape.height), (change.width, change.height));
        if got != want {
            return Err(LeaseError::WrongSize { lease, want, got });
        }
        let tiles = match &self.leases[&lease].unit.work {
            Work::Tile(w) => u64::from(w.tiles),
            Work::Region { tiles, .. } => *tiles,
        };
        if let Some((l, Results::Tiles(tx))) = self.finish(worker, lease, tiles) {
            let _ = tx.send((l.unit.slot, Ok(change)));
        }
        Ok(())
    }

    fn worker_name(&self, worker: WorkerId) -> String {
        self.workers
            .get(&worker)
            .map_or_else(|| format!("#{worker}"), |w| w.name.clone())
    }

    /// The worker could not compute `lease`: try it again elsewhere.
    pub fn fail(
        &mut self,
        worker: WorkerId,
        lease: LeaseId,
        reason: &str,
    ) -> Result<(), LeaseError> {
        self.owned(worker, lease)?;
        let name = self.worker_name(worker);
        self.requeue(
            lease,
            &name,
            Requeue::Failed,
            &format!("the worker failed it: {reason}"),
        );
        Ok(())
    }

    /// The worker is shutting down and gives `lease` back unfinished; this
    /// costs the tile nothing.
    pub fn hand_back(&mut self, worker: WorkerId, lease: LeaseId) -> Result<(), LeaseError> {
        self.owned(worker, lease)?;
        let name = self.worker_name(worker);
        self.requeue(
            lease,
            &name,
            Requeue::HandedBack,
            "its worker handed it back",
        );
        Ok(())
    }

    fn owned(&self, worker: WorkerId, lease: LeaseId) -> Result<(), LeaseError> {
        match self.leases.get(&lease) {
            Some(l) if l.worker == worker => Ok(()),
            _ if self
                .workers
                .get(&worker)
                .is_some_and(|w| w.taken_back.contains(&lease)) =>
            {
                Err(LeaseError::TakenBack(lease))
            }
            _ => Err(LeaseError::NotHeld(lease)),
        }
    }

    /// Requeues leases past their deadline (telling their workers to drop
    /// them) and drops workers silent past the heartbeat timeout.
    pub fn expire(&mut self, now: Instant) {
        let late: Vec<(LeaseId, WorkerId)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(&id, l)| (id, l.worker))
            .collect();
        for (id, worker) in late {
            let name = self.worker_name(worker);
            self.requeue(id, &name, Requeue::Lost, "it missed its deadline");
            if let Some(w) = self.workers.get_mut(&worker) {
                w.revoked.push(id);
            }
        }
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| now.duration_since(w.last_seen) > self.timeouts.heartbeat)
            .map(|(&id, _)| id)
            .collect();
        for id in silent {
            tracing::warn!(worker = id, "worker missed its heartbeats; dropping it");
            self.remove_worker(id);
        }
        for pair in self.checks.overdue(now) {
            self.unreachable(pair);
        }
    }

    /// Leases the worker must drop (revoked since the last call).
    pub fn take_revoked(&mut self, worker: WorkerId) -> Vec<LeaseId> {
        self.workers
            .get_mut(&worker)
            .map(|w| std::mem::take(&mut w.revoked))
            .unwrap_or_default()
    }

    /// Counts for metrics.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            queued: self.jobs.values().map(|q| q.pending.len()).sum(),
            in_flight: self.leases.len(),
            workers: self.workers.len(),
            retries: self.retries,
            completed: self.completed,
            leases_completed: self.leases_completed,
            regions_completed: self.regions_completed,
            exchange_failures: self.exchange_failures,
            exchange_unreachable: self.checks.failed_count(),
        }
    }
}

#[cfg(test)]
mod tests;
