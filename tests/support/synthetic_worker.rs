//! Synthetic workers for the benches: they speak the real wire protocol,
//! take each lease's pixels, wait a fixed delay in place of a GPU, and
//! return a correctly-shaped (zero) change. They exist only to measure the
//! coordinator without GPUs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::TileWork;
use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::change_channels::Channels;
use dreamfarm_proto::change_exchange::{ChangeServer, Changes};
use dreamfarm_proto::open_files::Accepting;
use dreamfarm_proto::pb::change_service_server::ChangeServiceServer;
use dreamfarm_proto::pb::coordinator_message::Body as Down;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::worker_service_client::WorkerServiceClient;
use dreamfarm_proto::pb::{
    Chunk, Heartbeat, Hello, PixelFormat, RegionLeaseStart, ResultStart, WorkerMessage,
};
use dreamfarm_proto::region_lease;
use dreamfarm_proto::region_parts::RegionArrivals;
use dreamfarm_proto::region_side::{RegionSide, send_cell};
use dreamfarm_proto::region_worker::{RegionWork, run_region};
use dreamfarm_proto::{
    Bytes, CHUNK_BYTES, CONNECTION_WINDOW_BYTES, FRAME_BYTES, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
    STREAM_WINDOW_BYTES, WireError, pixels, up,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::cluster::TOKEN;

/// One synthetic worker's session: leases in, a zero change out after
/// `delay` per tile (a batch of tiles takes its tiles' time: the synthetic
/// device gains nothing from batching, so a bench shows only what fewer
/// leases save). Counts the tiles it returned in `done`. With `regions`
/// it serves changes on a loopback port and computes the region leases
/// it is given as a real worker does, its tiles dreamed as zero changes
/// one at a time after the same delay.
async fn synthetic_worker(
    url: String,
    delay: Duration,
    done: Arc<AtomicU64>,
    regions: Option<Arc<AtomicU64>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let region_worker = match regions {
        Some(count) => Some(Arc::new(
            SyntheticRegions::start(delay, done.clone(), count).await?,
        )),
        None => None,
    };
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(FRAME_BYTES)
        .connect()
        .await?;
    let mut client = WorkerServiceClient::with_interceptor(channel, AttachToken::new(Some(TOKEN))?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(64);
    tx.send(up(Up::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: "synthetic".into(),
        concurrency: 1,
        device: "synthetic".into(),
        change_address: region_worker
            .as_ref()
            .map_or(String::new(), |r| r.side.address().to_string()),
        change_service_id: region_worker.as_ref().map_or(0, |r| r.side.changes().id()),
    })))
    .await?;
    let mut down = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let heartbeat = tx.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if heartbeat
                .send(up(Up::Heartbeat(Heartbeat {})))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let zeros = dreamfarm_proto::Bytes::from(vec![0u8; CHUNK_BYTES]);
    let mut arriving: HashMap<u64, Arriving> = HashMap::new();
    let mut regions_arriving = RegionArrivals::default();
    while let Some(msg) = down.message().await? {
        let body = match (&region_worker, msg.body) {
            (Some(side), Some(body)) => side.on_message(body, &mut regions_arriving, &tx)?,
            (_, body) => body,
        };
        let (id, lease) = match body {
            Some(Down::LeaseStart(s)) => {
                let o = s.output.unwrap_or_default();
                let format = pixels::format_of(s.format)?;
                let tiles = s.tiles.max(1);
                let lease = Arriving {
                    attempt: s.attempt,
                    format,
                    tiles,
                    out_bytes: pixels::payload_bytes("result", o.width, o.height * tiles, format)?,
                    to_come: s.pixels_bytes,
                };
                arriving.insert(s.lease_id, lease);
                continue;
            }
            Some(Down::LeaseChunk(c)) => {
                let Some(lease) = arriving.get_mut(&c.lease_id) else {
                    continue;
                };
                lease.to_come -= c.data.len() as u64;
                if lease.to_come > 0 {
                    continue;
                }
                let lease = *lease;
                arriving.remove(&c.lease_id);
                (c.lease_id, lease)
            }
            _ => continue,
        };
        let Arriving {
            attempt,
            format,
            tiles,
            out_bytes,
            ..
        } = lease;
        tokio::time::sleep(delay * tiles).await;
        // A result goes up whole, never interleaved with a region's.
        let _sending = match &region_worker {
            Some(side) => Some(side.sending.lock().await),
            None => None,
        };
        tx.send(up(Up::ResultStart(ResultStart {
            lease_id: id,
            attempt,
            format: format as i32,
            pixels_bytes: out_bytes,
        })))
        .await?;
        let mut left = out_bytes as usize;
        while left > 0 {
            let n = left.min(CHUNK_BYTES);
            tx.send(up(Up::ResultChunk(Chunk {
                lease_id: id,
                data: zeros.slice(..n),
            })))
            .await?;
            left -= n;
        }
        done.fetch_add(u64::from(tiles), Ordering::Relaxed);
    }
    Ok(())
}

/// A synthetic worker's side for region leases: what a real worker keeps
/// and answers for them, and its one device.
struct SyntheticRegions {
    /// Its change service's changes and address, the holders it is told.
    side: RegionSide,
    /// One tile dreamed at a time.
    device: Semaphore,
    delay: Duration,
    done: Arc<AtomicU64>,
    /// Regions it returned.
    regions: Arc<AtomicU64>,
    /// Held while a result goes up the session: its head and pieces
    /// must not interleave with another's.
    sending: tokio::sync::Mutex<()>,
}

impl SyntheticRegions {
    /// Starts the change service on a loopback port.
    async fn start(
        delay: Duration,
        done: Arc<AtomicU64>,
        regions: Arc<AtomicU64>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let changes = Arc::new(Changes::default());
        let service = ChangeServiceServer::new(ChangeServer(changes.clone()))
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tokio::spawn(
            tonic::transport::Server::builder()
                .initial_stream_window_size(STREAM_WINDOW_BYTES)
                .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
                .max_frame_size(FRAME_BYTES)
                .add_service(service)
                // As a real worker's: all of a bench's synthetic workers
                // share one process, and at its open files limit tonic's
                // own accept loop would spin a core for each.
                .serve_with_incoming(Accepting::tcp(listener, "a synthetic worker's change port")),
        );
        let token = AttachToken::new(None)?;
        Ok(Self {
            side: RegionSide::new(address, changes, Channels::default(), token),
            device: Semaphore::new(1),
            delay,
            done,
            regions,
            sending: tokio::sync::Mutex::new(()),
        })
    }

    /// Takes a region message from the coordinator (a lease arriving, the
    /// holders of a frame, a frame whole, neighbours to check); gives back
    /// any other.
    fn on_message(
        self: &Arc<Self>,
        body: Down,
        arriving: &mut RegionArrivals,
        tx: &mpsc::Sender<WorkerMessage>,
    ) -> Result<Option<Down>, WireError> {
        let arrived = match body {
            Down::RegionStart(s) => arriving.start(s)?,
            Down::LeaseChunk(c) if arriving.has(c.lease_id) => arriving.chunk(c)?,
            Down::Holders(h) => {
                self.side.tell(h);
                None
            }
            Down::FrameWhole(w) => {
                arriving.forget(&w.job_id, w.frame);
                self.side.forget(w);
                None
            }
            Down::CheckNeighbours(asked) => {
                self.side.check(asked, tx.clone());
                None
            }
            body => return Ok(Some(body)),
        };
        if let Some((start, rgb)) = arrived {
            self.clone().compute(start, rgb, tx.clone());
        }
        Ok(None)
    }

    /// Computes a region lease and sends its cell up `tx`.
    fn compute(
        self: Arc<Self>,
        start: RegionLeaseStart,
        rgb: Vec<u8>,
        tx: mpsc::Sender<WorkerMessage>,
    ) {
        tokio::spawn(async move {
            let (id, attempt, job) = (start.lease_id, start.attempt, start.job_id.clone());
            let Ok(lease) = region_lease::from_wire(start, rgb) else {
                return;
            };
            let plan = lease.plan();
            let Some(input) = lease.input(&plan) else {
                return;
            };
            let holders = self.side.holders(&job, lease.frame);
            let work = RegionWork {
                plan: &plan,
                region: lease.region as usize,
                job,
                frame: lease.frame,
                objective: lease.objective.clone(),
                input,
            };
            let side = self.clone();
            let dream = move |tile: TileWork| {
                let side = side.clone();
                async move {
                    let _device = side.device.acquire().await.map_err(|e| e.to_string())?;
                    tokio::time::sleep(side.delay * tile.tiles).await;
                    side.done
                        .fetch_add(u64::from(tile.tiles), Ordering::Relaxed);
                    let (w, h) = tile.change_size();
                    Ok(Planar::zeros(w, h))
                }
            };
            let Ok(cell) = run_region(work, self.side.changes(), &holders, dream).await else {
                return;
            };
            let rgb = Bytes::from(cell.to_rgb8());
            let _sending = self.sending.lock().await;
            if send_cell(&tx, id, attempt, rgb).await {
                self.regions.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// A lease whose pixels are arriving at a synthetic worker.
#[derive(Clone, Copy)]
struct Arriving {
    attempt: u32,
    format: PixelFormat,
    /// Tiles in the lease's batch.
    tiles: u32,
    /// Bytes of the change to send back.
    out_bytes: u64,
    /// Pixel bytes still to come.
    to_come: u64,
}

/// A pool of synthetic workers on a tokio runtime; they leave when it is
/// dropped.
pub struct SyntheticPool {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    done: Arc<AtomicU64>,
    /// Regions returned, by workers that take them.
    regions: Arc<AtomicU64>,
    /// The first error a worker stopped with, so that a bench whose workers
    /// were refused (a coordinator of another protocol version, a wrong
    /// token) says so instead of waiting for frames that never come.
    failure: Arc<OnceLock<String>>,
}

impl SyntheticPool {
    /// Starts `workers` synthetic workers of per-tile time `delay` joining
    /// the coordinator at `url`.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        url: &str,
        workers: usize,
        delay: Duration,
    ) -> Self {
        Self::start_with(runtime, url, workers, delay, false)
    }

    /// [`start`](Self::start), the workers taking region leases too when
    /// `regions` says so.
    pub fn start_with(
        runtime: &tokio::runtime::Runtime,
        url: &str,
        workers: usize,
        delay: Duration,
        regions: bool,
    ) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let regions_done = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(OnceLock::new());
        let tasks = (0..workers)
            .map(|_| {
                let (url, done, failure) = (url.to_string(), done.clone(), failure.clone());
                let count = regions.then(|| regions_done.clone());
                runtime.spawn(async move {
                    if let Err(e) = synthetic_worker(url, delay, done, count).await {
                        // A later worker's error is dropped: the first says why.
                        let _ = failure.set(e.to_string());
                    }
                })
            })
            .collect();
        Self {
            tasks,
            done,
            regions: regions_done,
            failure,
        }
    }

    /// Regions the pool has returned so far.
    pub fn regions_done(&self) -> u64 {
        self.regions.load(Ordering::Relaxed)
    }

    /// Tiles the pool has returned so far.
    pub fn tiles_done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Panics with the first error a worker stopped with, if one has.
    pub fn assert_working(&self) {
        if let Some(e) = self.failure.get() {
            panic!(
                "a synthetic worker stopped: {e} (to measure another commit's coordinator, run \
                 the bench from that commit's tree)"
            );
        }
    }
}

impl Drop for SyntheticPool {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `submit` flags of an endless job of the default recipe on the test
/// image at `size`, named `name`, with `extra` flags.
pub fn endless_job<'a>(size: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--input",
        "assets/astronaut.png",
        "--size",
        size,
        "--frames",
        "10000",
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    args
}
