//! A worker's side of the frames dreamed by regions, as the coordinator's
//! messages drive it: the changes it serves and the address it serves them
//! at, the holders of each frame's regions as told, the checks of its
//! neighbours, and a region's cell sent up whole. The real worker and the
//! benches' synthetic workers both keep one, so they answer the
//! coordinator alike.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::auth::AttachToken;
use crate::change_channels::Channels;
use crate::change_exchange::Changes;
use crate::neighbour_check;
use crate::pb::worker_message::Body as Up;
use crate::pb::{
    CheckNeighbours, Chunk, FrameWhole, RegionHolders, RegionResultStart, WorkerMessage,
};
use crate::region_worker::{FrameHolders, Holders};
use crate::{Bytes, CHUNK_BYTES, up};

/// How long another job's changes are kept after the last was added: a
/// job that ended, or whose regions went to other workers, never says so.
const CHANGES_KEPT_IDLE: Duration = Duration::from_secs(3600);

/// What a worker keeps and answers for the regions it is leased.
pub struct RegionSide {
    /// Where its change service is reached, as announced.
    address: String,
    /// The changes of the tiles it dreamed, served to its neighbours.
    changes: Arc<Changes>,
    /// Each frame's holders, as last told.
    holders: FrameHolders,
    /// A channel to each neighbour met.
    channels: Channels,
    /// The cluster's token, which the neighbours' services ask for.
    token: AttachToken,
}

impl RegionSide {
    /// The side of a worker whose change service, reached at `address`,
    /// serves `changes`; its fetches go over `channels` with `token`.
    pub fn new(
        address: String,
        changes: Arc<Changes>,
        channels: Channels,
        token: AttachToken,
    ) -> Self {
        Self {
            address,
            changes,
            holders: FrameHolders::default(),
            channels,
            token,
        }
    }

    /// Where its change service is reached, as announced.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The changes it serves, and their traffic.
    pub fn changes(&self) -> &Arc<Changes> {
        &self.changes
    }

    /// Takes the coordinator's word on a frame's holders.
    pub fn tell(&self, h: RegionHolders) {
        self.holders.tell(h.job_id, h.frame, h.addresses);
    }

    /// Drops the changes of a frame the coordinator says is whole, and
    /// of its job's earlier frames: no region fetches them again.
    pub fn forget(&self, whole: FrameWhole) {
        self.changes.forget_through(&whole.job_id, whole.frame);
        self.holders.forget_through(&whole.job_id, whole.frame);
    }

    /// Dials the neighbours' change services `asked` names, as this
    /// worker's fetches will, and answers up `session` (on a task of its own:
    /// a neighbour that does not answer takes seconds).
    pub fn check(&self, asked: CheckNeighbours, session: mpsc::Sender<WorkerMessage>) {
        let (channels, token) = (self.channels.clone(), self.token.clone());
        tokio::spawn(async move {
            let checked = neighbour_check::check(&channels, &token, asked).await;
            let _ = session.send(up(Up::NeighboursChecked(checked))).await;
        });
    }

    /// The holders a region of job `job`'s frame `frame` fetches its
    /// neighbours' changes from (its own worker's from memory). The job's
    /// other frames are dropped first, and other jobs' changes idle an
    /// hour: a region of frame n is leased only once frame n - 1 is whole.
    pub fn holders(&self, job: &str, frame: u64) -> Holders {
        self.changes.forget_all_but(job, frame, CHANGES_KEPT_IDLE);
        self.holders.forget_all_but(job, frame);
        Holders::new(
            self.holders.of(job, frame),
            self.channels.clone(),
            self.token.clone(),
            self.changes.traffic().clone(),
        )
        .serving(self.address.clone(), self.changes.clone())
    }
}

/// Sends region lease `lease`'s cell (`rgb`, of attempt `attempt`) up
/// `session`: its head, then its pieces. Whether the stream took it all (a
/// closed one means the session ended: the coordinator leases the region
/// again). The caller keeps other results from interleaving meanwhile.
pub async fn send_cell(
    session: &mpsc::Sender<WorkerMessage>,
    lease: u64,
    attempt: u32,
    rgb: Bytes,
) -> bool {
    let head = RegionResultStart {
        lease_id: lease,
        attempt,
        rgb_bytes: rgb.len() as u64,
    };
    if session.send(up(Up::RegionResult(head))).await.is_err() {
        return false;
    }
    for at in (0..rgb.len()).step_by(CHUNK_BYTES) {
        let chunk = Chunk {
            lease_id: lease,
            data: rgb.slice(at..(at + CHUNK_BYTES).min(rgb.len())),
        };
        if session.send(up(Up::ResultChunk(chunk))).await.is_err() {
            return false;
        }
    }
    true
}
