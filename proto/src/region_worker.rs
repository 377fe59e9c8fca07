//! A worker's share of a frame: one of the frame's regions computed stage
//! by stage (`RegionFrame`), its own batches dreamed by whatever the worker
//! dreams with and kept for its neighbours, the neighbours' changes it
//! cross-fades fetched from their workers (docs/frame-loop-on-workers.md).
//!
//! Within a stage a region adds its own changes before it asks for its
//! neighbours', and a stage's changes depend only on the stages before
//! it, so regions that wait on each other never wait in a circle.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamfarm_common::area::Area;
use dreamfarm_common::objective::FrameObjective;
use dreamfarm_common::region_frame::RegionFrame;
use dreamfarm_common::region_plan::RegionPlan;
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::HEARTBEATS_PER_TIMEOUT;
use crate::auth::AttachToken;
use crate::change_channels::Channels;
use crate::change_exchange::{BatchChange, BatchKey, ChangeTraffic, Changes, FetchError, fetch};

/// Why a region could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// Dreaming one of its batches failed.
    #[error("dreaming tile {tile} of octave {octave} failed: {reason}")]
    Dream {
        /// The octave.
        octave: usize,
        /// The batch's first tile.
        tile: u32,
        /// What went wrong.
        reason: String,
    },
    /// A neighbour's change could not be fetched.
    #[error(
        "tile {tile} of octave {octave}: its change could not be fetched from {holder}: {source}"
    )]
    Fetch {
        /// The octave.
        octave: usize,
        /// The tile.
        tile: usize,
        /// Its holder's change address, as the coordinator told it.
        holder: String,
        /// What went wrong.
        source: FetchError,
    },
    /// The worker is stopping.
    #[error("the region was stopped: {0}")]
    Stopped(String),
    /// A stage lacked a change it blends after every one was taken: a
    /// plan that does not hold together.
    #[error("pass {pass} of octave {octave} still lacks a change after all were taken")]
    Incomplete {
        /// The octave.
        octave: usize,
        /// The pass.
        pass: usize,
    },
    /// A change did not fit the tile it was for.
    #[error("the change of tile {tile} of octave {octave} is not its tile's size")]
    Misfit {
        /// The octave.
        octave: usize,
        /// The tile.
        tile: usize,
    },
}

impl RegionError {
    /// Whether a neighbour's change could not be fetched from where the
    /// coordinator said it was: the workers cannot reach each other, which
    /// no retry of the region mends (the coordinator dreams the frame by
    /// tiles instead).
    pub fn is_exchange(&self) -> bool {
        matches!(
            self,
            Self::Fetch { source, .. }
                if !matches!(source, FetchError::GivenUp | FetchError::NoPart(_))
        )
    }
}

/// Where the workers holding a frame's regions serve their changes, as
/// the coordinator says (`RegionHolders`), with a channel to each.
#[derive(Clone)]
pub struct Holders {
    /// Each region's holder's address (empty: none now).
    addresses: watch::Receiver<Vec<String>>,
    /// A channel to each address met, shared: one connection a neighbour.
    channels: Channels,
    /// The cluster's token, which the change services ask for.
    token: AttachToken,
    /// Where the fetches are counted: the worker's [`Changes::traffic`].
    traffic: Arc<ChangeTraffic>,
    /// How long a fetch that failed waits for its holder to move.
    move_wait: Duration,
    /// This worker's own change service, if it serves one: its announced
    /// address and its changes, taken without the network.
    own: Option<(String, Arc<Changes>)>,
}

impl Holders {
    /// Holders as `addresses` says, now and whenever it changes, reached
    /// through `channels` with the cluster's `token`; the fetches are
    /// counted in `traffic`.
    pub fn new(
        addresses: watch::Receiver<Vec<String>>,
        channels: Channels,
        token: AttachToken,
        traffic: Arc<ChangeTraffic>,
    ) -> Self {
        Self {
            addresses,
            channels,
            token,
            traffic,
            move_wait: MOVE_WAIT,
            own: None,
        }
    }

    /// These holders, taking the changes of the regions held at
    /// `address`, this worker's own change service, from its `changes`
    /// instead of over the network: the same bits (the service sends
    /// them as f32), without the encoding, the copies and the
    /// connection to itself. A worker holding several neighbouring
    /// regions (a pool smaller than a frame's regions) fetches fewer
    /// parts.
    pub fn serving(self, address: String, changes: Arc<Changes>) -> Self {
        Self {
            own: Some((address, changes)),
            ..self
        }
    }

    /// These holders, waiting `wait` instead of [`MOVE_WAIT`] for a
    /// holder that could not be reached to move ([`move_wait`]).
    pub fn moved_within(self, wait: Duration) -> Self {
        Self {
            move_wait: wait,
            ..self
        }
    }

    /// Region `region`'s holder's address, once there is one.
    async fn address(&mut self, region: usize) -> Result<String, FetchError> {
        Ok(self
            .addresses
            .wait_for(|a| a.get(region).is_some_and(|a| !a.is_empty()))
            .await
            .map_err(|_| FetchError::GivenUp)?[region]
            .clone())
    }

    /// Resolves once region `region`'s holder is no longer at `address`.
    async fn moved_from(&self, region: usize, address: &str) {
        let mut addresses = self.addresses.clone();
        if addresses
            .wait_for(|a| a.get(region).is_none_or(|a| a != address))
            .await
            .is_err()
        {
            // The frame was given up: nothing moves again.
            std::future::pending::<()>().await;
        }
    }

    /// Fetches part `area` of tile `index`'s change in batch `key` from
    /// region `region`'s holder (see [`fetch`]). When the holder moves (its
    /// worker was lost and the coordinator leased the region again) the
    /// new one is asked; a call that fails is tried at the holder's next
    /// address if the coordinator names one within the move wait. An error
    /// names the holder's address it last tried.
    async fn fetch(
        &mut self,
        region: usize,
        key: &BatchKey,
        index: usize,
        area: &Area,
    ) -> Result<Planar, (String, FetchError)> {
        loop {
            let address = self
                .address(region)
                .await
                .map_err(|e| (format!("region {region}'s holder"), e))?;
            let call: Pin<Box<dyn Future<Output = _> + Send>> =
                match self.own.as_ref().filter(|(own, _)| *own == address) {
                    Some((_, changes)) => Box::pin(changes.take_local(key, index, area)),
                    None => {
                        let channel = self
                            .channels
                            .to(&address)
                            .map_err(|e| (address.clone(), e))?;
                        let token = self.token.clone();
                        Box::pin(fetch(channel, token, &self.traffic, key, index, area))
                    }
                };
            let failed = tokio::select! {
                fetched = call => match fetched {
                    Ok(change) => return Ok(change),
                    Err(e) => e,
                },
                () = self.moved_from(region, &address) => continue,
            };
            if tokio::time::timeout(self.move_wait, self.moved_from(region, &address))
                .await
                .is_err()
            {
                return Err((address, failed));
            }
        }
    }
}

/// How long a region whose fetch failed waits for the coordinator to say
/// the holder moved before it fails, when the coordinator's heartbeat
/// timeout is not known: a lost worker is noticed within that timeout.
pub const MOVE_WAIT: Duration = Duration::from_secs(60);

/// How long a region whose fetch failed waits for the coordinator to say
/// the holder moved, given the heartbeat interval the coordinator asked
/// for: it drops a worker silent for [`HEARTBEATS_PER_TIMEOUT`] intervals
/// and leases its regions again at once, so twice that and a margin for
/// the new holder to be told. A holder still in place after that is alive
/// but out of reach: the region fails as an exchange failure
/// ([`RegionError::is_exchange`]), and the coordinator dreams its frame by
/// tiles.
pub fn move_wait(heartbeat: Duration) -> Duration {
    2 * HEARTBEATS_PER_TIMEOUT * heartbeat + Duration::from_secs(5)
}

/// The holders of each frame's regions, by job and frame, as the
/// coordinator last told them (`RegionHolders`): what a worker's regions
/// wait on for their neighbours' addresses.
#[derive(Debug, Default)]
pub struct FrameHolders(Mutex<HashMap<(String, u64), HoldersTold>>);

/// Where a frame's holders are told, each region's address in order.
type HoldersTold = watch::Sender<Vec<String>>;

impl FrameHolders {
    /// Each region's holder of job `job`'s frame `frame`, now and as told
    /// later (none told yet: an empty list, filled in when told).
    pub fn of(&self, job: &str, frame: u64) -> watch::Receiver<Vec<String>> {
        self.lock()
            .entry((job.to_string(), frame))
            .or_insert_with(|| watch::channel(Vec::new()).0)
            .subscribe()
    }

    /// Takes the coordinator's word on a frame's holders.
    pub fn tell(&self, job: String, frame: u64, addresses: Vec<String>) {
        self.lock()
            .entry((job, frame))
            .or_insert_with(|| watch::channel(Vec::new()).0)
            .send_replace(addresses);
    }

    /// Drops job `job`'s frames other than `frame` (see
    /// [`Changes::forget_all_but`]).
    pub fn forget_all_but(&self, job: &str, frame: u64) {
        self.lock().retain(|(j, f), _| j != job || *f == frame);
    }

    /// Drops job `job`'s frames up to `frame` (see
    /// [`Changes::forget_through`]).
    pub fn forget_through(&self, job: &str, frame: u64) {
        self.lock().retain(|(j, f), _| j != job || *f > frame);
    }

    /// The map, whatever a panicking holder left in it (each entry whole).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), HoldersTold>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One region of one frame of a job, as a worker is given it.
pub struct RegionWork<'p> {
    /// The frame's plan.
    pub plan: &'p RegionPlan,
    /// Which region.
    pub region: usize,
    /// The job.
    pub job: String,
    /// The frame.
    pub frame: u64,
    /// What the frame's dream maximises.
    pub objective: Arc<FrameObjective>,
    /// The frame to dream over the region's input area.
    pub input: Planar,
}

/// Computes `work`: its own batches dreamed by `dream` and added to
/// `changes` (which the worker serves), its neighbours' changes fetched
/// from their `holders`. Returns the frame's pixels over the region's
/// cell.
pub async fn run_region<F, Fut>(
    work: RegionWork<'_>,
    changes: &Changes,
    holders: &Holders,
    mut dream: F,
) -> Result<Planar, RegionError>
where
    F: FnMut(TileWork) -> Fut,
    Fut: Future<Output = Result<Planar, String>>,
{
    let plan = work.plan;
    let key = |octave: usize, pass: usize, batch: usize| BatchKey {
        job: work.job.clone(),
        frame: work.frame,
        octave: octave as u32,
        pass: pass as u32,
        batch: batch as u32,
    };
    let mut region =
        host_work(|| RegionFrame::new(plan, work.region, work.frame, work.objective, work.input));
    while let Some((o, p)) = region.stage() {
        for tile in region.own_work() {
            let (first, tiles) = (tile.tile, tile.tiles as usize);
            let change = Arc::new(dream(tile).await.map_err(|reason| RegionError::Dream {
                octave: o,
                tile: first,
                reason,
            })?);
            let batch = BatchChange {
                tiles,
                change: change.clone(),
            };
            changes.add(key(o, p, first as usize), batch);
            if !region.take_change(first as usize, change) {
                return Err(RegionError::Misfit {
                    octave: o,
                    tile: first as usize,
                });
            }
        }
        let (mut fetches, waiting) = (JoinSet::new(), Instant::now());
        for (tile, area) in region.needs() {
            let first = plan.batch_of(o, tile);
            let (owner, mut holders) = (plan.owners[o][tile], holders.clone());
            let key = key(o, p, first);
            fetches.spawn(async move {
                let fetched = holders.fetch(owner, &key, tile - first, &area).await;
                (tile, area, fetched)
            });
        }
        while let Some(done) = fetches.join_next().await {
            // A fetch stops only with the runtime (the worker shutting
            // down).
            let (tile, area, fetched) = done.map_err(|e| RegionError::Stopped(e.to_string()))?;
            let part = fetched.map_err(|(holder, source)| RegionError::Fetch {
                octave: o,
                tile,
                holder,
                source,
            })?;
            if !region.take_tile_part(tile, &area, part) {
                return Err(RegionError::Misfit { octave: o, tile });
            }
        }
        changes.traffic().waited(waiting.elapsed());
        // Every change the stage blends was taken above; one missing would
        // leave the region on this stage for ever.
        if !host_work(|| region.advance()) {
            return Err(RegionError::Incomplete { octave: o, pass: p });
        }
    }
    Ok(region
        .finished()
        .expect("a region with no stage left is finished"))
}

/// Runs `work`, a stretch of a region's host work (warping, resizing,
/// cross-fading: tens of milliseconds at 4K), without holding up the other
/// tasks of a multi-threaded runtime: on a worker, its session and the
/// change service its neighbours wait on. Inline on a runtime of one
/// thread, which cannot hand its tasks over.
pub fn host_work<R>(work: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch_failed(source: FetchError) -> RegionError {
        RegionError::Fetch {
            octave: 1,
            tile: 4,
            holder: "10.0.0.7:7072".into(),
            source,
        }
    }

    #[test]
    fn only_an_unreachable_neighbour_is_an_exchange_failure() {
        let refused = fetch_failed(FetchError::Call(tonic::Status::unavailable(
            "tcp connect error",
        )));
        assert!(refused.is_exchange());
        let said = refused.to_string();
        assert!(
            said.contains("10.0.0.7:7072") && said.contains("tcp connect error"),
            "{said}"
        );
        assert!(!fetch_failed(FetchError::GivenUp).is_exchange());
        // This worker's own change lacking a part is no fault of the
        // network between workers.
        let own = crate::change_exchange::NoPart {
            index: 1,
            batch: 4,
            area: Area::default(),
        };
        assert!(!fetch_failed(FetchError::NoPart(own)).is_exchange());
        let dream = RegionError::Dream {
            octave: 0,
            tile: 2,
            reason: "CUDA out of memory".into(),
        };
        assert!(!dream.is_exchange());
    }

    #[test]
    fn a_holder_is_waited_for_twice_the_coordinators_heartbeat_timeout() {
        // The coordinator asks for a heartbeat a quarter of its timeout.
        let interval = Duration::from_millis(2500);
        assert_eq!(move_wait(interval), Duration::from_secs(25));
    }

    /// A neighbouring region held by this worker too is read from its own
    /// changes, once they are added, the same bits as its service would
    /// send; another worker's goes over the network.
    #[tokio::test]
    async fn a_region_held_by_this_worker_is_read_without_the_network() {
        let changes = Arc::new(Changes::default());
        // Where nothing listens: a fetch over the network fails there.
        let (own, other) = ("127.0.0.1:9".to_string(), "127.0.0.1:7".to_string());
        let (_tell, addresses) = watch::channel(vec![own.clone(), other]);
        let token = AttachToken::new(None).expect("no token");
        let holders = Holders::new(
            addresses,
            Channels::default(),
            token,
            changes.traffic().clone(),
        )
        .moved_within(Duration::from_millis(50))
        .serving(own, changes.clone());
        let key = BatchKey {
            job: "j".into(),
            frame: 3,
            octave: 1,
            pass: 0,
            batch: 4,
        };
        // Two 4x4 tiles stacked; the part is of the second.
        let batch = Planar {
            width: 4,
            height: 8,
            data: (0..96).map(|v| v as f32 * 0.25).collect(),
        };
        let area = Area {
            columns: 1..3,
            rows: 1..3,
        };
        let asked = {
            let (mut holders, key, area) = (holders.clone(), key.clone(), area.clone());
            tokio::spawn(async move { holders.fetch(0, &key, 1, &area).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!asked.is_finished(), "taken before it was dreamed");
        changes.add(
            key.clone(),
            BatchChange {
                tiles: 2,
                change: Arc::new(batch.clone()),
            },
        );
        let part = asked
            .await
            .expect("the fetch ran")
            .expect("taken from this worker's changes");
        assert_eq!(part, batch.crop(1..3, 5..7));
        let t = changes.traffic().read();
        assert_eq!(
            (t.local_parts, t.local_bytes, t.fetched_parts),
            (1, 2 * 2 * 3 * 4, 0)
        );
        let (holder, _) = holders
            .clone()
            .fetch(1, &key, 1, &area)
            .await
            .expect_err("nothing serves the other worker's address");
        assert_eq!(holder, "127.0.0.1:7");
    }
}
