//! Synthetic workers for the benches: they speak the real wire protocol,
//! take each lease's pixels, wait a fixed delay in place of a GPU, and
//! return a correctly-shaped (zero) change. They exist only to measure the
//! coordinator without GPUs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::pb::coordinator_message::Body as Down;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::worker_service_client::WorkerServiceClient;
use dreamfarm_proto::pb::{Chunk, Heartbeat, Hello, PixelFormat, ResultStart, WorkerMessage};
use dreamfarm_proto::{
    CHUNK_BYTES, CONNECTION_WINDOW_BYTES, FRAME_BYTES, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
    STREAM_WINDOW_BYTES, pixels,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cluster::TOKEN;

fn up(body: Up) -> WorkerMessage {
    WorkerMessage { body: Some(body) }
}

/// One synthetic worker's session: leases in, a zero change out after
/// `delay` per tile (a batch of tiles takes its tiles' time: the synthetic
/// device gains nothing from batching, so a bench shows only what fewer
/// leases save). Counts the tiles it returned in `done`.
async fn synthetic_worker(
    url: String,
    delay: Duration,
    done: Arc<AtomicU64>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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
        ..Default::default()
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
    while let Some(msg) = down.message().await? {
        let (id, lease) = match msg.body {
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
        let done = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(OnceLock::new());
        let tasks = (0..workers)
            .map(|_| {
                let (url, done, failure) = (url.to_string(), done.clone(), failure.clone());
                runtime.spawn(async move {
                    if let Err(e) = synthetic_worker(url, delay, done).await {
                        // A later worker's error is dropped: the first says why.
                        let _ = failure.set(e.to_string());
                    }
                })
            })
            .collect();
        Self {
            tasks,
            done,
            failure,
        }
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
