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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dreamfarm_common::params::{DreamSettings, WirePrecision};
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::{RegionLease, TileWork};

use super::exchange_checks::{ExchangeChecks, NeighbourService, Pair};

pub use crate::region_frames::RegionTask;

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

/// How long frames go by tiles after a frame's regions could not exchange
/// their changes, the first time: long enough that a pool whose workers
/// cannot reach each other loses little to the minute each try costs,
/// short enough that a mended network policy is soon used.
pub const EXCHANGE_PAUSE: Duration = Duration::from_secs(5 * 60);

/// The longest such pause: it doubles each time the exchange fails again
/// before a frame has gone through by regions.
pub const EXCHANGE_PAUSE_MAX: Duration = Duration::from_secs(60 * 60);

/// What to open when workers cannot reach each other's change services,
/// whether a check at join or a frame's fetch found it.
const EXCHANGE_FIX: &str = "Fix: let the workers reach each other's change port: in Kubernetes \
     the NetworkPolicy rule between worker pods (port 7072, deploy/README.md); elsewhere each \
     worker's --change-address and the firewall between them";

/// The fix to give after a worker's `reason` for not reaching a
/// neighbour: [`EXCHANGE_FIX`], unless the reason gives its own (a worker
/// out of open files, which no NetworkPolicy mends).
fn exchange_fix(reason: &str) -> &'static str {
    if reason.contains("Fix: ") {
        ""
    } else {
        EXCHANGE_FIX
    }
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
}

/// For a frame's regions: the frame and the workers holding its regions.
fn frame_holders(batch: &Batch) -> Option<(u64, HashSet<WorkerId>)> {
    let Results::Regions { frame, .. } = batch.results else {
        return None;
    };
    Some((frame, batch.holders.iter().flatten().copied().collect()))
}

/// [`frame_holders`] of a frame left before it was whole (a whole one's
/// holders were told when its last cell came in).
fn frame_left(batch: &Batch) -> Option<(u64, HashSet<WorkerId>)> {
    frame_holders(batch).filter(|_| !batch.delivered.iter().all(|&d| d))
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

    /// Tells the workers holding a region of `job`'s frame (`done`, from
    /// [`frame_holders`]) that no region will fetch the frame's changes
    /// again: its last cell came in, the job stopped, or the frame went by
    /// tiles.
    fn frame_done(&mut self, job: &Arc<str>, done: Option<(u64, HashSet<WorkerId>)>) {
        let Some((frame, holding)) = done else {
            return;
        };
        for id in holding {
            if let Some(w) = self.workers.get_mut(&id) {
                w.frames_whole.push((job.clone(), frame));
            }
        }
    }

    /// The frames, by job, whose changes `worker` may drop (see
    /// [`Self::frame_done`]), less those of a job it holds a region lease
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
        let id = self.fresh_id();
        let job = self.jobs.get_key_value(job)?.0.clone();
        let queue = self.jobs.get_mut(&job)?;
        let (tx, rx) = mpsc::channel();
        let replaced = queue.batch.replace(Batch {
            id,
            results: Results::Tiles(tx),
            slots: 0,
            holders: Vec::new(),
            regions: Vec::new(),
            delivered: Vec::new(),
        });
        queue.pending.clear();
        self.frame_done(&job, replaced.as_ref().and_then(frame_left));
        self.append(&job, work).then_some(rx)
    }

    /// Queues the regions of `job`'s frame `frame` (in region order) as
    /// its next batch; each region's outcome arrives on the returned
    /// channel with its index.
    pub fn submit_regions(
        &mut self,
        job: &str,
        frame: u64,
        regions: Vec<RegionTask>,
    ) -> Option<mpsc::Receiver<(usize, RegionOutcome)>> {
        let id = self.fresh_id();
        let job = self.jobs.get_key_value(job)?.0.clone();
        let queue = self.jobs.get_mut(&job)?;
        let (tx, rx) = mpsc::channel();
        let regions: Vec<Work> = regions
            .into_iter()
            .map(|task| Work::Region {
                lease: Arc::new(task.lease),
                cell: task.cell,
                tiles: task.tiles,
            })
            .collect();
        queue.pending = regions
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
        let replaced = queue.batch.replace(Batch {
            id,
            results: Results::Regions { results: tx, frame },
            slots: regions.len(),
            holders: vec![None; regions.len()],
            delivered: vec![false; regions.len()],
            regions,
        });
        self.frame_done(&job, replaced.as_ref().and_then(frame_left));
        Some(rx)
    }

    /// Leases again the regions that `worker`, now gone, finished while
    /// their frame still waits on others: the neighbours still dreaming
    /// may need the changes it served. The region comes out the same
    /// bits; its cell is not delivered twice.
    fn redo_regions_of(&mut self, worker: WorkerId) {
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
    fn holders_moved(&mut self, job: &Arc<str>) {
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

    /// How much longer, from `now`, frames go by tiles because a frame's
    /// regions could not exchange their changes ([`Self::exchange_failed`]);
    /// none when they are not held back.
    pub fn regions_paused_for(&self, now: Instant) -> Option<Duration> {
        self.regions_paused_until
            .filter(|&until| until > now)
            .map(|until| until - now)
    }

    /// Whether frames go by regions at `now`: a connected worker serves
    /// changes (takes region leases), those serving have reached each
    /// other's change services ([`ExchangeChecks`]), and no frame's regions
    /// failed to exchange them lately ([`Self::exchange_failed`]).
    pub fn serves_changes(&self, now: Instant) -> bool {
        self.regions_paused_for(now).is_none()
            && self.checks.settled()
            && self.workers.values().any(|w| !w.change_address.is_empty())
    }

    /// Notes where `worker`'s change service listens, and the number it
    /// answers with: it takes region leases once it and the workers
    /// already serving have reached each other's services.
    pub fn serve_changes(
        &mut self,
        worker: WorkerId,
        address: String,
        service_id: u64,
        now: Instant,
    ) {
        let service = |id: WorkerId, w: &WorkerEntry| NeighbourService {
            worker: id,
            address: w.change_address.clone(),
            service_id: w.change_service_id,
        };
        let others: Vec<NeighbourService> = self
            .workers
            .iter()
            .filter(|&(&id, w)| id != worker && !w.change_address.is_empty())
            .map(|(&id, w)| service(id, w))
            .collect();
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        w.change_address = address;
        w.change_service_id = service_id;
        let joined = service(worker, w);
        self.checks.joined(joined, others, now);
    }

    /// The change services `worker` is to dial, to check that it reaches
    /// them, since it was last told.
    pub fn take_checks(&mut self, worker: WorkerId) -> Vec<NeighbourService> {
        self.checks.take(worker)
    }

    /// `worker` dialled the change services of the workers `answers`
    /// name: reached, or why not. A service not reached holds frames by
    /// tiles while both workers are in the pool, and every job is told.
    pub fn neighbours_checked(
        &mut self,
        worker: WorkerId,
        answers: Vec<(WorkerId, Option<String>)>,
    ) {
        let mut asked = false;
        for (to, error) in answers {
            let failed = error.is_some();
            let answered = self.checks.answered(worker, to, error);
            asked |= answered;
            if answered && failed {
                self.unreachable(Pair { from: worker, to });
            }
        }
        if asked && self.checks.settled() {
            let serving = self
                .workers
                .values()
                .filter(|w| !w.change_address.is_empty())
                .count();
            tracing::info!(
                "the {serving} workers serving changes reach each other's change services"
            );
        }
    }

    /// Says, in the log and to every job, that `pair`'s check failed.
    fn unreachable(&mut self, pair: Pair) {
        let why = self.unreachable_why(pair);
        tracing::warn!("{why}");
        self.event_for_all(EventKind::ExchangeUnreachable, &why);
    }

    /// What a failed check of `pair` means and what to do, for people.
    fn unreachable_why(&self, pair: Pair) -> String {
        let address = self
            .workers
            .get(&pair.to)
            .map_or("", |w| w.change_address.as_str());
        let reason = self.checks.failure(pair).unwrap_or("no reason given");
        format!(
            "worker {} cannot reach worker {}'s change service at {address}: {reason}. Frames \
             go by tiles through the coordinator while both are in the pool (the same frames, \
             at more of the coordinator's CPU). {}",
            self.worker_name(pair.from),
            self.worker_name(pair.to),
            exchange_fix(reason),
        )
    }

    /// Every failed check of workers still in the pool, said as
    /// [`Self::neighbours_checked`] says it: frames go by tiles while any
    /// stands.
    pub fn unreachable_services(&self) -> Vec<String> {
        self.checks
            .failed_pairs()
            .into_iter()
            .map(|pair| self.unreachable_why(pair))
            .collect()
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
        let unit = queue.pending.pop_front()?;
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

    /// Region lease `lease` of `worker` could not fetch a neighbour's
    /// changes for `reason`: the workers cannot reach each other (a network
    /// policy, a firewall, a wrong change address), which no retry of the
    /// region mends and which is not this worker's fault. The frame is
    /// given up by regions ([`RegionFailure::Exchange`]: the frame loop
    /// dreams it by tiles, to the same bits), its other regions revoked,
    /// and no frame goes by regions for [`EXCHANGE_PAUSE`] from `now`,
    /// twice that if it happens again before a frame has gone through by
    /// regions, and so on up to [`EXCHANGE_PAUSE_MAX`].
    pub fn exchange_failed(
        &mut self,
        worker: WorkerId,
        lease: LeaseId,
        reason: &str,
        now: Instant,
    ) -> Result<(), LeaseError> {
        self.owned(worker, lease)?;
        let Some(failed) = self.take_back(lease) else {
            return Ok(());
        };
        let (job, batch, slot, place) = (
            failed.job,
            failed.unit.batch,
            failed.unit.slot,
            failed.unit.work.place(),
        );
        // Its neighbours wait on changes that may never come.
        self.revoke_where(|l| l.job == job && l.unit.batch == batch);
        let Some(queue) = self.jobs.get_mut(&job) else {
            return Ok(());
        };
        let Some(given_up) = queue.batch.take_if(|b| b.id == batch) else {
            return Ok(());
        };
        queue.pending.clear();
        self.frame_done(&job, frame_left(&given_up));
        let name = self.worker_name(worker);
        let pause = self.exchange_pause;
        self.regions_paused_until = Some(now + pause);
        self.exchange_pause = (pause * 2).min(EXCHANGE_PAUSE_MAX);
        self.exchange_failures += 1;
        let why = format!(
            "{place}: worker {name} could not fetch a neighbour's changes: {reason}. \
             The frame goes by tiles instead, and so does every frame of the pool for \
             the next {} minutes (the same frames, at more of the coordinator's CPU). {}",
            pause.as_secs() / 60,
            exchange_fix(reason),
        );
        tracing::warn!(%job, "{why}");
        if let Results::Regions { results, .. } = &given_up.results {
            let _ = results.send((slot, Err(RegionFailure::Exchange(why.clone()))));
        }
        self.event(&job, EventKind::ExchangeFailed, why);
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
mod tests {
    use super::*;
    use crate::cluster::exchange_checks::ANSWER_TIMEOUT;
    use dreamfarm_common::objective::FrameObjective;
    use dreamfarm_common::tiling::Rect;

    const T: Timeouts = Timeouts {
        lease: Duration::from_secs(10),
        heartbeat: Duration::from_secs(3),
    };

    fn work(tile: u32) -> TileWork {
        TileWork {
            frame: 0,
            octave: 0,
            tile,
            objective: Arc::new(
                FrameObjective::at(&DreamSettings::default(), 0, 1, 1, None).expect("objective"),
            ),
            first_iteration: 0,
            iterations: 1,
            jitter: 0,
            pixels: Planar::zeros(4, 4),
            output: Rect {
                x: 0,
                y: 0,
                width: 2,
                height: 2,
            },
            tiles: 1,
        }
    }

    /// The tile a grant leases.
    fn tile(grant: &Grant) -> u32 {
        match &grant.work {
            Work::Tile(w) => w.tile,
            Work::Region { .. } => panic!("a region lease, not a tile's"),
        }
    }

    /// Region `region` of frame 5, its part a 2x2 corner, its cell 2x2,
    /// three tiles its own.
    fn region(region: u32) -> RegionTask {
        let settings = DreamSettings::default();
        let objective = FrameObjective::at(&settings, 5, 10, 1, None).expect("objective");
        let lease = RegionLease {
            frame: 5,
            region,
            settings,
            size: (64, 64),
            min_side: 32,
            jitter: 0,
            objective: Arc::new(objective),
            camera: dreamfarm_common::resample::Warp {
                zoom: 1.0,
                rotate_deg: 0.0,
                pan: (0.0, 0.0),
                center: (32.0, 32.0),
            },
            color: None,
            origin: (0, 0),
            part: (2, 2),
            rgb: vec![0; 12],
        };
        RegionTask {
            lease,
            cell: (2, 2),
            tiles: 3,
        }
    }

    fn params() -> JobParams {
        JobParams {
            dream: Arc::new(DreamSettings::default()),
            seed: 1,
            weights: None,
        }
    }

    fn change() -> Planar {
        Planar::zeros(2, 2)
    }

    /// A scheduler with job "a" and two workers of concurrency 1 that
    /// serve changes.
    fn two_serving_changes(now: Instant) -> (Scheduler, [WorkerId; 2]) {
        let mut s = Scheduler::new(T, 0);
        s.add_job("a".into(), params(), 0);
        let w = [
            s.add_worker("w1".into(), "cpu".into(), 1, now),
            s.add_worker("w2".into(), "cpu".into(), 1, now),
        ];
        serve(&mut s, w[0], "h1:1", now);
        serve(&mut s, w[1], "h2:2", now);
        (s, w)
    }

    /// `worker` serves changes at `address`, and every check that asks for
    /// is answered: reached.
    fn serve(s: &mut Scheduler, worker: WorkerId, address: &str, now: Instant) {
        s.serve_changes(worker, address.into(), 100 + worker, now);
        let workers: Vec<WorkerId> = s.workers().map(|(&id, _)| id).collect();
        for id in workers {
            let reached = s.take_checks(id).into_iter().map(|n| (n.worker, None));
            s.neighbours_checked(id, reached.collect());
        }
    }

    fn setup(tiles: u32) -> (Scheduler, mpsc::Receiver<(usize, TileOutcome)>, Instant) {
        let mut s = Scheduler::new(T, 0);
        s.add_job("a".into(), params(), 0);
        let rx = s.submit("a", (0..tiles).map(work).collect()).unwrap();
        (s, rx, Instant::now())
    }

    #[test]
    fn tiles_appended_to_a_batch_take_the_next_slots() {
        let (mut s, rx, now) = setup(1);
        let w = s.add_worker("w".into(), "cpu".into(), 4, now);
        let a = s.next_lease(w, now).unwrap();
        assert!(s.next_lease(w, now).is_none(), "one tile so far");
        assert!(s.append("a", vec![work(7), work(8)]));
        let b = s.next_lease(w, now).unwrap();
        assert_eq!(tile(&b), 7);
        s.complete(w, b.lease, 0, change()).unwrap();
        s.complete(w, a.lease, 0, change()).unwrap();
        let slots: Vec<usize> = rx.try_iter().map(|(slot, _)| slot).collect();
        assert_eq!(slots, vec![1, 0]);
        assert!(!s.append("gone", vec![work(0)]), "no such job");
        // A new batch starts its slots again and drops what was queued.
        let rx = s.submit("a", vec![work(3)]).unwrap();
        let c = s.next_lease(w, now).unwrap();
        assert_eq!(tile(&c), 3, "tile 8 of the old batch is dropped");
        s.complete(w, c.lease, 0, change()).unwrap();
        assert_eq!(rx.try_recv().unwrap().0, 0);
    }

    #[test]
    fn leases_respect_concurrency_and_results_arrive_in_slots() {
        let (mut s, rx, now) = setup(3);
        let w = s.add_worker("w".into(), "cpu".into(), 2, now);
        let a = s.next_lease(w, now).unwrap();
        let b = s.next_lease(w, now).unwrap();
        assert!(s.next_lease(w, now).is_none(), "concurrency 2");
        s.complete(w, b.lease, 0, change()).unwrap();
        assert_eq!(rx.try_recv().unwrap().0, 1);
        let c = s.next_lease(w, now).unwrap();
        assert_eq!(tile(&c), 2);
        s.complete(w, a.lease, 0, change()).unwrap();
        s.complete(w, c.lease, 0, change()).unwrap();
        let slots: Vec<usize> = rx.try_iter().map(|(i, r)| r.map(|_| i).unwrap()).collect();
        assert_eq!(slots, [0, 2]);
        assert_eq!(s.snapshot().completed, 3);
    }

    #[test]
    fn a_lost_worker_leases_go_to_another_and_late_results_are_dropped() {
        let (mut s, rx, now) = setup(1);
        let w1 = s.add_worker("w1".into(), "cpu".into(), 1, now);
        let w2 = s.add_worker("w2".into(), "cpu".into(), 1, now);
        let first = s.next_lease(w1, now).unwrap();
        s.remove_worker(w1);
        let second = s.next_lease(w2, now).unwrap();
        assert_eq!((tile(&second), second.attempt), (0, 1));
        assert_eq!(
            s.complete(w1, first.lease, 0, change()),
            Err(LeaseError::NotHeld(first.lease))
        );
        s.complete(w2, second.lease, 1, change()).unwrap();
        assert_eq!(rx.try_iter().count(), 1);
        assert_eq!(s.snapshot().retries, 1);
    }

    #[test]
    fn deadlines_and_silence_requeue_and_revoke() {
        let (mut s, _rx, now) = setup(2);
        let w1 = s.add_worker("w1".into(), "cpu".into(), 1, now);
        let w2 = s.add_worker("w2".into(), "cpu".into(), 1, now);
        let a = s.next_lease(w1, now).unwrap();
        let _b = s.next_lease(w2, now).unwrap();
        s.touch(w1, now + Duration::from_secs(2));
        s.touch(w2, now + Duration::from_secs(9));
        s.expire(now + Duration::from_secs(6));
        assert!(!s.has_worker(w1), "w1 fell silent");
        assert!(s.has_worker(w2));
        assert_eq!(s.snapshot().queued, 1);
        s.touch(w2, now + Duration::from_secs(11));
        s.expire(now + Duration::from_secs(11));
        assert_eq!(s.snapshot().queued, 2, "w2's lease missed its deadline");
        let revoked = s.take_revoked(w2);
        assert_eq!(revoked.len(), 1);
        assert!(s.take_revoked(w2).is_empty());
        assert_eq!(
            s.complete(w2, revoked[0], 0, change()),
            Err(LeaseError::TakenBack(revoked[0]))
        );
        assert_eq!(
            s.complete(w1, a.lease, 0, change()),
            Err(LeaseError::NotHeld(a.lease))
        );
    }

    #[test]
    fn wrong_sizes_attempts_and_strangers_are_refused() {
        let (mut s, _rx, now) = setup(1);
        let w = s.add_worker("w".into(), "cpu".into(), 1, now);
        let other = s.add_worker("o".into(), "cpu".into(), 1, now);
        let g = s.next_lease(w, now).unwrap();
        assert!(matches!(
            s.complete(w, g.lease, 0, Planar::zeros(3, 2)),
            Err(LeaseError::WrongSize { .. })
        ));
        assert!(matches!(
            s.complete(w, g.lease, 7, change()),
            Err(LeaseError::WrongAttempt { .. })
        ));
        assert_eq!(
            s.complete(other, g.lease, 0, change()),
            Err(LeaseError::NotHeld(g.lease))
        );
        assert_eq!(s.fail(other, 999, "x"), Err(LeaseError::NotHeld(999)));
        s.complete(w, g.lease, 0, change()).unwrap();
    }

    #[test]
    fn hand_backs_are_free_and_a_tile_fails_only_on_distinct_workers() {
        let (mut s, rx, now) = setup(1);
        let w1 = s.add_worker("w1".into(), "cpu".into(), 1, now);
        // Twenty scale-downs in a row cost nothing.
        for _ in 0..20 {
            let g = s.next_lease(w1, now).unwrap();
            s.hand_back(w1, g.lease).unwrap();
        }
        let w2 = s.add_worker("w2".into(), "cpu".into(), 1, now);
        let w3 = s.add_worker("w3".into(), "cpu".into(), 1, now);
        // Two failures on w1 and two on w2: still only two distinct workers.
        for w in [w1, w2, w1, w2] {
            let g = s.next_lease(w, now).unwrap();
            s.fail(w, g.lease, "out of memory").unwrap();
        }
        assert!(rx.try_recv().is_err(), "not failed yet");
        let g = s.next_lease(w3, now).unwrap();
        s.fail(w3, g.lease, "out of memory").unwrap();
        let (_, outcome) = rx.try_recv().unwrap();
        let reason = outcome.unwrap_err();
        assert!(reason.contains("3 different workers"), "{reason}");
        assert!(reason.contains("out of memory"), "{reason}");
    }

    #[test]
    fn a_worker_that_keeps_failing_is_blocked_from_the_job_not_failing_it() {
        let (mut s, rx, now) = setup(3);
        let bad = s.add_worker("bad".into(), "cuda".into(), 1, now);
        let good = s.add_worker("good".into(), "cuda".into(), 1, now);
        for _ in 0..BLOCK_AFTER_FAILURES {
            let g = s.next_lease(bad, now).unwrap();
            s.fail(bad, g.lease, "driver error").unwrap();
        }
        assert!(s.next_lease(bad, now).is_none(), "blocked from this job");
        assert!(!s.all_blocked("a"));
        let events = s.take_events();
        assert!(
            events
                .iter()
                .any(|e| e.kind == EventKind::WorkerBlocked && e.detail.starts_with("bad")),
            "{events:?}"
        );
        for _ in 0..3 {
            let g = s.next_lease(good, now).unwrap();
            s.complete(good, g.lease, g.attempt, change()).unwrap();
        }
        assert!(rx.try_iter().all(|(_, r)| r.is_ok()));
    }

    #[test]
    fn a_lone_worker_that_keeps_failing_fails_the_job() {
        let (mut s, rx, now) = setup(1);
        let w = s.add_worker("w".into(), "cpu".into(), 1, now);
        for _ in 0..BLOCK_AFTER_FAILURES {
            let g = s.next_lease(w, now).unwrap();
            s.fail(w, g.lease, "out of memory").unwrap();
        }
        assert!(s.next_lease(w, now).is_none());
        let (_, outcome) = rx.try_recv().unwrap();
        assert_eq!(
            outcome.unwrap_err(),
            format!(
                "every connected worker failed this job's tiles {BLOCK_AFTER_FAILURES} times \
                 and is blocked from it; the last failure: the worker failed it: out of memory"
            ),
            "the tile is named once, by the frame loop's error"
        );
    }

    #[test]
    fn lost_leases_have_a_budget_of_their_own() {
        let (mut s, rx, now) = setup(1);
        for i in 0..MAX_LOST {
            let w = s.add_worker(format!("w{i}"), "cpu".into(), 1, now);
            s.next_lease(w, now).unwrap();
            assert!(rx.try_recv().is_err(), "lost {i} times");
            s.remove_worker(w);
        }
        assert!(
            rx.try_recv()
                .unwrap()
                .1
                .unwrap_err()
                .contains("lost its worker")
        );
    }

    #[test]
    fn higher_priority_goes_first_and_lease_numbers_differ_across_boots() {
        let mut s = Scheduler::new(T, 7);
        s.add_job("low".into(), params(), 0);
        s.add_job("high".into(), params(), 5);
        let _l = s.submit("low", (0..2).map(work).collect()).unwrap();
        let _h = s.submit("high", (0..2).map(work).collect()).unwrap();
        let now = Instant::now();
        let w = s.add_worker("w".into(), "cpu".into(), 8, now);
        let grants: Vec<Grant> = (0..4).map(|_| s.next_lease(w, now).unwrap()).collect();
        let jobs: Vec<&str> = grants.iter().map(|g| &*g.job).collect();
        assert_eq!(jobs, ["high", "high", "low", "low"]);
        assert!(grants.iter().all(|g| g.lease >> 40 == 7));
        s.set_priority("low", 9);
        let _l = s.submit("low", (0..1).map(work).collect()).unwrap();
        let _h = s.submit("high", (0..1).map(work).collect()).unwrap();
        let w2 = s.add_worker("w2".into(), "cpu".into(), 8, now);
        assert_eq!(&*s.next_lease(w2, now).unwrap().job, "low");
    }

    #[test]
    fn jobs_take_turns() {
        let (mut s, _rx, now) = setup(4);
        s.add_job("b".into(), params(), 0);
        let _rx_b = s.submit("b", (0..4).map(work).collect()).unwrap();
        let w = s.add_worker("w".into(), "cpu".into(), 8, now);
        let jobs: Vec<String> = (0..6)
            .map(|_| s.next_lease(w, now).unwrap().job.to_string())
            .collect();
        assert_eq!(jobs, ["a", "b", "a", "b", "a", "b"]);
    }

    #[test]
    fn removing_a_job_ends_its_batch_and_revokes_its_leases() {
        let (mut s, rx, now) = setup(2);
        let w = s.add_worker("w".into(), "cpu".into(), 1, now);
        let g = s.next_lease(w, now).unwrap();
        s.remove_job("a", "cancelled");
        assert_eq!(s.take_revoked(w), [g.lease]);
        let (_, outcome) = rx.try_recv().unwrap();
        assert_eq!(outcome.unwrap_err(), "cancelled");
        assert_eq!(
            s.snapshot(),
            Snapshot {
                workers: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn regions_go_evenly_to_the_workers_serving_changes_whatever_their_concurrency() {
        let now = Instant::now();
        let (mut s, serving) = two_serving_changes(now);
        let plain = s.add_worker("w3".into(), "cpu".into(), 1, now);
        let rx = s
            .submit_regions("a", 5, (0..5).map(region).collect())
            .expect("the job runs");
        // Each worker's session asks until it is refused, in turn.
        let mut held = vec![Vec::new(); 2];
        while let Some(k) = (0..2).find(|&k| {
            s.next_lease(serving[k], now)
                .map(|g| held[k].push(g))
                .is_some()
        }) {
            assert!(held[k].len() <= held[1 - k].len() + 1, "{held:?}");
        }
        assert_eq!(held[0].len() + held[1].len(), 5, "every region leased");
        assert!(held[0].len() > 1, "regions are not bound by concurrency");
        assert!(s.next_lease(plain, now).is_none(), "w3 serves no changes");
        // Both serving workers learn who holds each region.
        let address = |k: usize| ["h1:1", "h2:2"][k].to_string();
        let mut want = vec![String::new(); 5];
        for (k, grants) in held.iter().enumerate() {
            for g in grants {
                let Work::Region { lease, .. } = &g.work else {
                    panic!("a tile lease")
                };
                want[lease.region as usize] = address(k);
            }
        }
        for w in serving {
            assert_eq!(s.take_holders(w), vec![("a".into(), 5, want.clone())]);
            assert!(s.take_holders(w).is_empty(), "told once");
        }
        // A cell of the wrong size is refused; the right one delivered.
        let g = &held[0][0];
        assert!(matches!(
            s.complete_region(serving[0], g.lease, 0, vec![0; 11]),
            Err(LeaseError::WrongSize { .. })
        ));
        assert!(matches!(
            s.complete(serving[0], g.lease, 0, change()),
            Err(LeaseError::WrongKind(_))
        ));
        s.complete_region(serving[0], g.lease, 0, vec![7; 12])
            .expect("delivered");
        let Work::Region { lease, .. } = &g.work else {
            panic!("a tile lease")
        };
        assert_eq!(
            rx.recv().expect("an outcome"),
            (lease.region as usize, Ok(vec![7; 12]))
        );
        // A worker lost: its regions go back, and the other learns they
        // have no holder until they are leased again.
        s.remove_worker(serving[1]);
        let mut moved = want.clone();
        for slot in moved.iter_mut().filter(|a| **a == address(1)) {
            slot.clear();
        }
        assert_eq!(s.take_holders(serving[0]), vec![("a".into(), 5, moved)]);
        while s.next_lease(serving[0], now).is_some() {}
        // A finished region's worker still serves its changes: it stays
        // its holder.
        assert!(
            s.take_holders(serving[0])[0]
                .2
                .iter()
                .all(|a| *a == address(0)),
            "every region held again"
        );
    }

    #[test]
    fn a_lost_workers_finished_regions_are_leased_again_while_their_frame_needs_them() {
        let now = Instant::now();
        let (mut s, w) = two_serving_changes(now);
        let rx = s
            .submit_regions("a", 5, (0..4).map(region).collect())
            .expect("the job runs");
        let region_of = |g: &Grant| match &g.work {
            Work::Region { lease, .. } => lease.region as usize,
            Work::Tile(_) => panic!("a tile lease"),
        };
        // Regions go evenly: the two workers take turns.
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            first.extend(s.next_lease(w[0], now));
            second.extend(s.next_lease(w[1], now));
        }
        assert_eq!((first.len(), second.len()), (2, 2));
        // w2 finishes both of its regions, then is lost while w1 dreams.
        for g in &second {
            s.complete_region(w[1], g.lease, 0, vec![2; 12])
                .expect("delivered");
            assert_eq!(rx.recv().expect("a cell").0, region_of(g));
        }
        let _ = s.take_holders(w[0]);
        s.remove_worker(w[1]);
        let told = s.take_holders(w[0]);
        for g in &second {
            assert_eq!(told[0].2[region_of(g)], "", "no holder until leased again");
        }
        let again: Vec<Grant> = (0..2).filter_map(|_| s.next_lease(w[0], now)).collect();
        let mut redone: Vec<usize> = again.iter().map(region_of).collect();
        let mut lost: Vec<usize> = second.iter().map(region_of).collect();
        redone.sort_unstable();
        lost.sort_unstable();
        assert_eq!(redone, lost, "w2's finished regions are leased again");
        assert!(
            s.take_holders(w[0])[0].2.iter().all(|a| a == "h1:1"),
            "w1 holds every region now"
        );
        // Their cells are not delivered twice; w1's own are.
        for g in again.iter().chain(&first) {
            s.complete_region(w[0], g.lease, 0, vec![1; 12])
                .expect("taken");
        }
        let cells: Vec<usize> = rx.try_iter().map(|(slot, _)| slot).collect();
        assert_eq!(cells.len(), 2, "only w1's first two regions: {cells:?}");
        // A whole frame needs nobody's changes: nothing is leased again.
        let w3 = s.add_worker("w3".into(), "cpu".into(), 1, now);
        serve(&mut s, w3, "h3:3", now);
        s.remove_worker(w[0]);
        assert!(s.next_lease(w3, now).is_none(), "the frame is whole");
    }

    #[test]
    fn a_frames_holders_are_told_when_no_region_will_fetch_its_changes_again() {
        let now = Instant::now();
        let (mut s, w) = two_serving_changes(now);
        let whole = |s: &mut Scheduler, worker| {
            s.take_frames_whole(worker)
                .into_iter()
                .map(|(job, frame)| (job.to_string(), frame))
                .collect::<Vec<_>>()
        };
        // Frame 5's last cell comes in: both holders are told, once.
        let _rx = s.submit_regions("a", 5, (0..2).map(region).collect());
        let grants =
            [s.next_lease(w[0], now), s.next_lease(w[1], now)].map(|g| g.expect("a region"));
        s.complete_region(w[0], grants[0].lease, 0, vec![1; 12])
            .expect("delivered");
        assert!(
            whole(&mut s, w[0]).is_empty(),
            "w2's region still needs w1's changes"
        );
        s.complete_region(w[1], grants[1].lease, 0, vec![1; 12])
            .expect("delivered");
        for worker in w {
            assert_eq!(whole(&mut s, worker), [("a".to_string(), 5)]);
            assert!(whole(&mut s, worker).is_empty(), "told once");
        }
        // A frame given up to tiles, or whose job stops, is told too; a
        // worker that holds one of the frame's regions again by then (a
        // paused job resumed) is not: that region's changes stay.
        let in_frame = |frame, r| {
            let mut task = region(r);
            task.lease.frame = frame;
            task
        };
        let _rx = s.submit_regions("a", 6, (0..2).map(|r| in_frame(6, r)).collect());
        let g = [s.next_lease(w[0], now), s.next_lease(w[1], now)].map(|g| g.expect("a region"));
        s.exchange_failed(w[0], g[0].lease, "connection refused", now)
            .expect("its lease");
        for worker in w {
            assert_eq!(whole(&mut s, worker), [("a".to_string(), 6)]);
        }
        s.regions_paused_until = None;
        let _rx = s.submit_regions("a", 7, (0..2).map(|r| in_frame(7, r)).collect());
        let _ = [s.next_lease(w[0], now), s.next_lease(w[1], now)];
        s.remove_job("a", "paused");
        s.add_job("a".into(), params(), 0);
        let _rx = s.submit_regions("a", 7, vec![in_frame(7, 0)]);
        let again = s.next_lease(w[0], now).expect("frame 7 again");
        assert!(matches!(again.work, Work::Region { .. }));
        assert!(whole(&mut s, w[0]).is_empty(), "w1 dreams frame 7 again");
        assert_eq!(whole(&mut s, w[1]), [("a".to_string(), 7)]);
    }

    #[test]
    fn a_region_leased_again_for_its_neighbours_is_revoked_once_its_frame_is_whole() {
        let now = Instant::now();
        let (mut s, w) = two_serving_changes(now);
        let rx = s
            .submit_regions("a", 5, (0..3).map(region).collect())
            .expect("the job runs");
        let first = s.next_lease(w[0], now).expect("a region");
        let second = s.next_lease(w[1], now).expect("a region");
        // w2 finishes its region and is lost while w1 dreams: its region
        // is leased again (w3 takes it), and so would be the third.
        s.complete_region(w[1], second.lease, 0, vec![2; 12])
            .expect("delivered");
        let third = s.next_lease(w[1], now).expect("the third region");
        s.complete_region(w[1], third.lease, 0, vec![2; 12])
            .expect("delivered");
        s.remove_worker(w[1]);
        let w3 = s.add_worker("w3".into(), "cpu".into(), 1, now);
        serve(&mut s, w3, "h3:3", now);
        let redo = s.next_lease(w3, now).expect("a finished region again");
        // w1's cell makes the frame whole: the redo (and the one still
        // queued) is needed no more, and w3 is told to drop the frame.
        s.complete_region(w[0], first.lease, 0, vec![1; 12])
            .expect("delivered");
        assert_eq!(rx.try_iter().count(), 3, "each cell once");
        assert_eq!(s.take_revoked(w3), [redo.lease]);
        assert!(s.next_lease(w3, now).is_none(), "nothing left to lease");
        let told: Vec<u64> = s
            .take_frames_whole(w3)
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        assert_eq!(told, [5]);
        // A late cell of it delivers nothing and tells nobody again.
        let _ = s.complete_region(w3, redo.lease, 0, vec![3; 12]);
        assert_eq!(rx.try_iter().count(), 0);
        assert_eq!(s.take_frames_whole(w[0]).len(), 1);
        assert!(s.take_frames_whole(w3).is_empty());
    }

    #[test]
    fn regions_that_cannot_exchange_changes_give_their_frame_up_and_pause_regions() {
        let now = Instant::now();
        let (mut s, w) = two_serving_changes(now);
        assert!(s.serves_changes(now));
        let frame = |s: &mut Scheduler| {
            let rx = s
                .submit_regions("a", 5, (0..4).map(region).collect())
                .expect("the job runs");
            let g1 = s.next_lease(w[0], now).expect("a region for w1");
            let g2 = s.next_lease(w[1], now).expect("a region for w2");
            (rx, g1, g2)
        };
        let (rx, g1, g2) = frame(&mut s);
        s.exchange_failed(w[0], g1.lease, "connection refused", now)
            .expect("w1 held it");
        // The frame is given up whole, once, saying why; nothing of it is
        // leased again, and w2's region of it is revoked.
        match rx.recv().expect("an outcome") {
            (_, Err(RegionFailure::Exchange(why))) => {
                assert!(
                    why.contains("connection refused") && why.contains("port 7072"),
                    "{why}"
                );
            }
            other => panic!("not given up: {other:?}"),
        }
        assert!(rx.recv().is_err(), "the frame's batch is gone");
        assert_eq!(s.take_revoked(w[1]), vec![g2.lease]);
        assert!(s.take_revoked(w[0]).is_empty(), "w1 dropped its own");
        assert!(s.next_lease(w[0], now).is_none() && s.next_lease(w[1], now).is_none());
        // Nobody is blamed: the job's tiles still go to both workers.
        let tiles = s.submit("a", (0..2).map(work).collect()).expect("tiles");
        for worker in w {
            let g = s.next_lease(worker, now).expect("a tile for each worker");
            s.complete(worker, g.lease, 0, change()).expect("taken");
        }
        assert_eq!(tiles.try_iter().count(), 2);
        let events: Vec<EventKind> = s.take_events().iter().map(|e| e.kind).collect();
        assert!(events.contains(&EventKind::ExchangeFailed), "{events:?}");
        assert!(!events.contains(&EventKind::WorkerBlocked), "{events:?}");
        assert_eq!(s.snapshot().exchange_failures, 1);
        // Frames go by tiles for the pause, then by regions again; a second
        // failure before any frame went through pauses twice as long, and a
        // frame through by regions brings the pause back to its first length.
        assert!(!s.serves_changes(now + EXCHANGE_PAUSE - Duration::from_secs(1)));
        let later = now + EXCHANGE_PAUSE;
        assert!(s.serves_changes(later));
        let (_rx, g1, _) = frame(&mut s);
        s.exchange_failed(w[0], g1.lease, "timed out", later)
            .expect("w1 held it");
        assert!(!s.serves_changes(later + 2 * EXCHANGE_PAUSE - Duration::from_secs(1)));
        let latest = later + 2 * EXCHANGE_PAUSE;
        assert!(s.serves_changes(latest));
        let (rx, g1, g2) = frame(&mut s);
        let (g3, g4) = (s.next_lease(w[0], now), s.next_lease(w[1], now));
        for (worker, g) in [(w[0], Some(g1)), (w[1], Some(g2)), (w[0], g3), (w[1], g4)] {
            let g = g.expect("every region leased");
            s.complete_region(worker, g.lease, 0, vec![1; 12])
                .expect("taken");
        }
        assert_eq!(rx.try_iter().filter(|(_, r)| r.is_ok()).count(), 4);
        let (_rx, g1, _) = frame(&mut s);
        s.exchange_failed(w[0], g1.lease, "reset", latest)
            .expect("w1 held it");
        assert!(s.serves_changes(latest + EXCHANGE_PAUSE));
        // The longest pause is capped.
        let mut at = latest + EXCHANGE_PAUSE;
        for _ in 0..10 {
            let (_rx, g1, _) = frame(&mut s);
            s.exchange_failed(w[0], g1.lease, "reset", at)
                .expect("w1 held it");
            at += EXCHANGE_PAUSE_MAX;
            assert!(s.serves_changes(at));
        }
    }

    #[test]
    fn a_worker_out_of_open_files_is_not_told_to_mend_the_network() {
        assert_eq!(
            exchange_fix("tcp connect error: Connection refused"),
            EXCHANGE_FIX
        );
        // EMFILE, as a worker's dial meets it at its limit.
        let emfile = std::io::Error::from_raw_os_error(24);
        let reason = dreamfarm_proto::open_files::advice(
            "the worker dialling",
            [&emfile as &(dyn std::error::Error + 'static)],
        )
        .expect("advice for EMFILE");
        assert_eq!(exchange_fix(&reason), "", "{reason}");
    }

    #[test]
    fn workers_that_cannot_reach_each_other_hold_frames_by_tiles_while_both_are_in() {
        let now = Instant::now();
        let mut s = Scheduler::new(T, 0);
        s.add_job("a".into(), params(), 0);
        let w1 = s.add_worker("w1".into(), "cpu".into(), 1, now);
        s.serve_changes(w1, "h1:1".into(), 11, now);
        assert!(s.serves_changes(now), "a lone worker has nobody to reach");
        let w2 = s.add_worker("w2".into(), "cpu".into(), 1, now);
        s.serve_changes(w2, "h2:2".into(), 22, now);
        assert!(!s.serves_changes(now), "by tiles until the checks are in");
        let told = |s: &mut Scheduler, w| {
            s.take_checks(w)
                .into_iter()
                .map(|n| (n.worker, n.address, n.service_id))
                .collect::<Vec<_>>()
        };
        assert_eq!(told(&mut s, w1), [(w2, "h2:2".to_string(), 22)]);
        assert_eq!(told(&mut s, w2), [(w1, "h1:1".to_string(), 11)]);
        // A frame by regions already under way goes on without w2.
        let _rx = s
            .submit_regions("a", 5, (0..3).map(region).collect())
            .expect("the job runs");
        assert!(s.next_lease(w2, now).is_none(), "w2 is not checked yet");
        assert!(s.next_lease(w1, now).is_some(), "w1 was serving before");
        s.neighbours_checked(w1, vec![(w2, None)]);
        s.neighbours_checked(w2, vec![(w1, Some("h1:1: connection refused".into()))]);
        assert!(!s.serves_changes(now));
        assert!(
            s.next_lease(w2, now).is_none(),
            "w2 cannot fetch w1's changes"
        );
        assert!(
            s.next_lease(w1, now).is_some(),
            "the frame under way goes on"
        );
        let events: Vec<JobEvent> = s
            .take_events()
            .into_iter()
            .filter(|e| e.kind != EventKind::WorkerJoined)
            .collect();
        assert_eq!(events.len(), 1, "{events:?}");
        let said = &events[0].detail;
        assert_eq!(events[0].kind, EventKind::ExchangeUnreachable);
        assert!(
            said.starts_with("worker w2 cannot reach worker w1's change service at h1:1: h1:1: connection refused.")
                && said.contains("port 7072"),
            "{said}"
        );
        assert_eq!(s.unreachable_services(), std::slice::from_ref(said));
        assert_eq!(s.snapshot().exchange_unreachable, 1);
        // A job added later is told too; a repeated answer is not news.
        s.add_job("b".into(), params(), 0);
        s.neighbours_checked(w2, vec![(w1, Some("again".into()))]);
        let events = s.take_events();
        assert!(
            events.len() == 1 && &*events[0].job == "b" && &events[0].detail == said,
            "{events:?}"
        );
        // A third worker that never answers its checks is unreachable
        // after the answer timeout, and w2 leaving clears only w2's pairs.
        let w3 = s.add_worker("w3".into(), "cpu".into(), 1, now);
        s.serve_changes(w3, "h3:3".into(), 33, now);
        let _ = told(&mut s, w1);
        s.neighbours_checked(w1, vec![(w3, None)]);
        s.remove_worker(w2);
        let _ = s.take_events();
        assert!(!s.serves_changes(now), "w3 has not answered");
        let later = now + ANSWER_TIMEOUT + Duration::from_secs(1);
        s.touch(w1, later);
        s.touch(w3, later);
        s.expire(later);
        let late = s.unreachable_services();
        assert!(
            late.len() == 1
                && late[0].starts_with("worker w3 cannot reach worker w1's")
                && late[0].contains("did not answer"),
            "{late:?}"
        );
        assert!(!s.serves_changes(later));
        s.remove_worker(w3);
        assert!(s.serves_changes(later) && s.unreachable_services().is_empty());
    }
}
