//! The changes of the tiles a worker dreams for its regions of a frame,
//! kept and served to the workers of the neighbouring regions, and
//! fetched from them (`ChangeService`; docs/frame-loop-on-workers.md).
//!
//! A neighbour asks for the part of one tile's change it cross-fades, as
//! soon as it needs it: the call waits until the batch is dreamed. Only
//! that part crosses the network, as f32 pieces.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamfarm_common::area::Area;
use dreamfarm_common::resample::Planar;
use tokio::sync::Notify;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::auth::AttachToken;
use crate::exposition::SecondsTotal;
use crate::pb::change_service_client::ChangeServiceClient;
use crate::pb::change_service_server::ChangeService;
use crate::pb::{ChangePiece, ChangeRequest, PixelFormat, ReachReply, ReachRequest, Rect};
use crate::{MAX_MESSAGE_BYTES, WireError, open_files, pixels};

/// Which batch's change: a job's frame, octave, pass and the batch's
/// first tile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// The job.
    pub job: String,
    /// The frame.
    pub frame: u64,
    /// The octave, 0 the smallest.
    pub octave: u32,
    /// The pass of tiles, 0 first.
    pub pass: u32,
    /// The batch's first tile.
    pub batch: u32,
}

/// One batch's change as its lease returned it: its tiles' changes
/// stacked top to bottom.
#[derive(Debug, Clone)]
pub struct BatchChange {
    /// Tiles in the batch.
    pub tiles: usize,
    /// The stacked changes.
    pub change: Arc<Planar>,
}

/// What crossed between a worker and its neighbours' change services,
/// for its `/metrics`: the parts served and fetched with their bytes, and
/// how long its regions waited for their neighbours' changes, summed over
/// regions that wait at the same time (a device idles only when none of
/// its regions has a tile to dream).
#[derive(Debug, Default)]
pub struct ChangeTraffic {
    served_parts: AtomicU64,
    served_bytes: AtomicU64,
    fetched_parts: AtomicU64,
    fetched_bytes: AtomicU64,
    local_parts: AtomicU64,
    local_bytes: AtomicU64,
    waited: SecondsTotal,
}

/// A reading of [`ChangeTraffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrafficCounts {
    /// Parts of changes sent to neighbours.
    pub served_parts: u64,
    /// Their pixel bytes.
    pub served_bytes: u64,
    /// Parts of changes fetched from neighbours, whole.
    pub fetched_parts: u64,
    /// The pixel bytes received, whole parts or not.
    pub fetched_bytes: u64,
    /// Parts of changes a region took from its own worker's, without the
    /// network (a neighbouring region held by the same worker).
    pub local_parts: u64,
    /// Their pixel bytes.
    pub local_bytes: u64,
    /// Seconds the regions spent waiting for their neighbours' changes
    /// once their own were dreamed.
    pub waited_seconds: f64,
}

impl ChangeTraffic {
    /// A region waited `wait` for its neighbours' changes.
    pub fn waited(&self, wait: Duration) {
        self.waited.add(wait);
    }

    /// The counts so far.
    pub fn read(&self) -> TrafficCounts {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TrafficCounts {
            served_parts: load(&self.served_parts),
            served_bytes: load(&self.served_bytes),
            fetched_parts: load(&self.fetched_parts),
            fetched_bytes: load(&self.fetched_bytes),
            local_parts: load(&self.local_parts),
            local_bytes: load(&self.local_bytes),
            waited_seconds: self.waited.seconds(),
        }
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The changes of the batches this worker dreamed, by batch, each with
/// when it was added, and the traffic of the change service and fetches
/// that move them.
#[derive(Debug)]
pub struct Changes {
    /// The number the service answers `Reach` with, drawn at its start:
    /// a neighbour that dials this worker's announced address checks that
    /// it reaches this service, not another worker's.
    id: u64,
    held: Mutex<HashMap<BatchKey, (BatchChange, Instant)>>,
    /// Woken whenever a change is added.
    added: Notify,
    /// What was served and fetched.
    traffic: Arc<ChangeTraffic>,
}

impl Default for Changes {
    /// No changes yet, under a number drawn for this service.
    fn default() -> Self {
        use std::hash::BuildHasher;
        let id = std::hash::RandomState::new().hash_one((Instant::now(), std::process::id()));
        Self {
            id,
            held: Mutex::default(),
            added: Notify::new(),
            traffic: Arc::default(),
        }
    }
}

impl Changes {
    /// The number the service answers `Reach` with (announced in the
    /// worker's `Hello`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Keeps the change of batch `key` for the neighbours that ask for it.
    pub fn add(&self, key: BatchKey, change: BatchChange) {
        self.lock().insert(key, (change, Instant::now()));
        self.added.notify_waiters();
    }

    /// The change of batch `key`, once it is added.
    pub async fn wait_for(&self, key: &BatchKey) -> BatchChange {
        loop {
            let added = self.added.notified();
            if let Some((change, _)) = self.lock().get(key) {
                return change.clone();
            }
            added.await;
        }
    }

    /// The part `area` of tile `index`'s change in batch `key`, once the
    /// batch is added, as an image of its own: what the service sends a
    /// neighbour that asks for it, and what a region of this worker takes
    /// without the network.
    pub async fn part(&self, key: &BatchKey, index: usize, area: &Area) -> Result<Planar, NoPart> {
        let batch = self.wait_for(key).await;
        part_of(&batch.change, batch.tiles, index, area).ok_or_else(|| NoPart {
            index,
            batch: key.batch,
            area: area.clone(),
        })
    }

    /// [`Self::part`] for a region of this worker, counted as taken
    /// locally.
    pub async fn take_local(
        &self,
        key: &BatchKey,
        index: usize,
        area: &Area,
    ) -> Result<Planar, FetchError> {
        let part = self.part(key, index, area).await?;
        ChangeTraffic::add(&self.traffic.local_parts, 1);
        ChangeTraffic::add(
            &self.traffic.local_bytes,
            std::mem::size_of_val(part.data.as_slice()),
        );
        Ok(part)
    }

    /// Drops the changes of job `job`'s frames other than `frame`, and
    /// other jobs' changes added more than `idle` ago. A region of frame
    /// n is leased only once frame n - 1 is whole, so nobody asks for
    /// another frame's changes again; a job that ended (or went to other
    /// workers) says so by silence alone.
    pub fn forget_all_but(&self, job: &str, frame: u64, idle: Duration) {
        self.lock().retain(|k, (_, added)| {
            if k.job == job {
                k.frame == frame
            } else {
                added.elapsed() < idle
            }
        });
    }

    /// Drops the changes of job `job`'s frames up to `frame`: that frame
    /// is whole, so no region asks for them again (the coordinator's
    /// `FrameWhole`).
    pub fn forget_through(&self, job: &str, frame: u64) {
        self.lock().retain(|k, _| k.job != job || k.frame > frame);
    }

    /// Batches held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of the changes held.
    pub fn held_bytes(&self) -> usize {
        self.lock()
            .values()
            .map(|(batch, _)| std::mem::size_of_val(batch.change.data.as_slice()))
            .sum()
    }

    /// The traffic of the service serving these changes and of the
    /// fetches of the neighbours' (see [`Holders`](crate::region_worker::Holders)).
    pub fn traffic(&self) -> &Arc<ChangeTraffic> {
        &self.traffic
    }

    /// The map, whatever a panicking holder left in it (each entry is
    /// whole: inserts and removals do not half-happen).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BatchKey, (BatchChange, Instant)>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A part asked for that its tile does not have.
#[derive(Debug, Clone, thiserror::Error)]
#[error("tile {index} of batch {batch} has no part {area:?}")]
pub struct NoPart {
    /// The tile within the batch.
    pub index: usize,
    /// The batch's first tile.
    pub batch: u32,
    /// The part asked for.
    pub area: Area,
}

/// The part `area` of tile `index`'s change in the stacked `batch` of
/// `tiles` tiles, as an image of its own; none if the area is outside it.
fn part_of(batch: &Planar, tiles: usize, index: usize, area: &Area) -> Option<Planar> {
    let tile_rows = batch.height / tiles.max(1);
    if index >= tiles
        || area.columns.end > batch.width
        || area.rows.end > tile_rows
        || area.is_empty()
    {
        return None;
    }
    // Tile `index`'s rows are the stack's from `index * tile_rows`.
    let first = index * tile_rows;
    let rows = first + area.rows.start..first + area.rows.end;
    Some(batch.crop(area.columns.clone(), rows))
}

/// Serves a worker's [`Changes`] to its neighbours.
#[derive(Debug, Clone)]
pub struct ChangeServer(pub Arc<Changes>);

/// A stream of change pieces, for the generated service.
type Pieces = Pin<Box<dyn Stream<Item = Result<ChangePiece, Status>> + Send>>;

#[tonic::async_trait]
impl ChangeService for ChangeServer {
    type ChangeStream = Pieces;

    async fn change(
        &self,
        request: Request<ChangeRequest>,
    ) -> Result<Response<Self::ChangeStream>, Status> {
        let r = request.into_inner();
        let key = BatchKey {
            job: r.job_id,
            frame: r.frame,
            octave: r.octave,
            pass: r.pass,
            batch: r.batch,
        };
        let rect = r
            .area
            .ok_or_else(|| Status::invalid_argument("a change request names no area"))?;
        let area = Area {
            columns: rect.x as usize..rect.x as usize + rect.width as usize,
            rows: rect.y as usize..rect.y as usize + rect.height as usize,
        };
        let part = self
            .0
            .part(&key, r.index as usize, &area)
            .await
            .map_err(|e| Status::out_of_range(e.to_string()))?;
        let traffic = self.0.traffic.clone();
        ChangeTraffic::add(&traffic.served_parts, 1);
        let pieces = pixels::encode(part, PixelFormat::F32)
            .map_err(|e| Status::internal(e.to_string()))?
            .map(move |data| {
                ChangeTraffic::add(&traffic.served_bytes, data.len());
                Ok(ChangePiece { data })
            });
        Ok(Response::new(Box::pin(tokio_stream::iter(pieces))))
    }

    async fn reach(&self, _: Request<ReachRequest>) -> Result<Response<ReachReply>, Status> {
        Ok(Response::new(ReachReply {
            change_service_id: self.0.id,
        }))
    }
}

/// Why a change could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The call failed.
    #[error("the neighbour's change service failed: {}", described(.0))]
    Call(#[from] Status),
    /// The pieces were not the part asked for.
    #[error("the neighbour sent a change that is not the part asked for: {0}")]
    Wire(#[from] WireError),
    /// The coordinator gave the frame up (its job moved on or ended)
    /// before a holder was named.
    #[error("the frame was given up")]
    GivenUp,
    /// This worker's own change lacks the part (a plan that does not hold
    /// together).
    #[error("this worker's own change has no such part: {0}")]
    NoPart(#[from] NoPart),
}

/// What went wrong in `status`, for people: its message and, when it
/// wraps one (a refused or dropped connection), the innermost cause,
/// instead of the status's debugging form.
fn described(status: &Status) -> String {
    use std::error::Error;
    match status.source() {
        Some(cause) => {
            let said = format!("{}: {}", status.message(), crate::tls::innermost(cause));
            match open_files::advice("the worker dialling", crate::tls::chain(cause)) {
                Some(advice) => format!("{said}; {advice}"),
                None => said,
            }
        }
        None => format!("{} ({:?})", status.message(), status.code()),
    }
}

/// Fetches the part `area` of tile `index`'s change in batch `key` from
/// the worker behind `channel`, with the cluster's `token`, as an image of
/// the area's size; counted in `traffic`.
pub async fn fetch(
    channel: Channel,
    token: AttachToken,
    traffic: &ChangeTraffic,
    key: &BatchKey,
    index: usize,
    area: &Area,
) -> Result<Planar, FetchError> {
    let mut client = ChangeServiceClient::with_interceptor(channel, token)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let rect = Rect {
        x: area.columns.start as u32,
        y: area.rows.start as u32,
        width: area.columns.len() as u32,
        height: area.rows.len() as u32,
    };
    let request = ChangeRequest {
        job_id: key.job.clone(),
        frame: key.frame,
        octave: key.octave,
        pass: key.pass,
        batch: key.batch,
        index: index as u32,
        area: Some(rect),
    };
    let mut pieces = client.change(request).await?.into_inner();
    let mut decoder = pixels::Decoder::new(rect.width, rect.height, PixelFormat::F32)?;
    while let Some(piece) = pieces.message().await? {
        ChangeTraffic::add(&traffic.fetched_bytes, piece.data.len());
        decoder.push(&piece.data)?;
    }
    let part = decoder.finish()?;
    ChangeTraffic::add(&traffic.fetched_parts, 1);
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(job: &str, frame: u64) -> BatchKey {
        BatchKey {
            job: job.into(),
            frame,
            octave: 0,
            pass: 0,
            batch: 0,
        }
    }

    fn change() -> BatchChange {
        BatchChange {
            tiles: 1,
            change: Arc::new(Planar::zeros(2, 2)),
        }
    }

    #[test]
    fn a_new_frame_of_a_job_drops_its_others_and_idle_jobs_go_too() {
        let changes = Changes::default();
        for (job, frame) in [("a", 4), ("a", 5), ("b", 9)] {
            changes.add(key(job, frame), change());
        }
        changes.forget_all_but("a", 5, Duration::from_secs(60));
        assert_eq!(changes.len(), 2, "a's frame 4 is gone, b's kept");
        assert!(changes.lock().contains_key(&key("b", 9)));
        changes.forget_all_but("a", 5, Duration::ZERO);
        assert!(
            changes.lock().contains_key(&key("a", 5)),
            "the frame asked for stays"
        );
        assert_eq!(changes.len(), 1, "b went idle");
    }

    #[test]
    fn a_whole_frame_drops_its_changes_and_earlier_ones_of_its_job_only() {
        let changes = Changes::default();
        for (job, frame) in [("a", 4), ("a", 5), ("a", 6), ("b", 5)] {
            changes.add(key(job, frame), change());
        }
        changes.forget_through("a", 5);
        let mut left: Vec<(String, u64)> = changes
            .lock()
            .keys()
            .map(|k| (k.job.clone(), k.frame))
            .collect();
        left.sort();
        assert_eq!(left, [("a".to_string(), 6), ("b".to_string(), 5)]);
    }

    #[test]
    fn a_part_outside_the_tile_is_refused() {
        let batch = Planar::zeros(4, 6);
        let area = |columns, rows| Area { columns, rows };
        assert!(part_of(&batch, 2, 1, &area(0..4, 0..3)).is_some());
        assert!(
            part_of(&batch, 2, 2, &area(0..4, 0..3)).is_none(),
            "no third tile"
        );
        assert!(
            part_of(&batch, 2, 0, &area(0..5, 0..3)).is_none(),
            "too wide"
        );
        assert!(
            part_of(&batch, 2, 0, &area(0..4, 0..4)).is_none(),
            "into the next tile"
        );
    }
}
