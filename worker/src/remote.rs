//! A cluster worker: dials the coordinator, holds one session stream, and
//! computes the tiles it is leased on its own threads (one per unit of
//! announced concurrency, each with its own copy of the model), sending
//! results back up the stream.
//!
//! Nothing from the wire is trusted: every lease's sizes, rectangles and
//! settings are checked before any pixel is touched. On shutdown (SIGTERM)
//! the worker finishes the tiles it is computing, hands back those it has
//! not started, and leaves; if the coordinator goes away it reconnects.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use dreamfarm_common::device::DeviceSpec;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_common::params::DreamSettings;
use dreamfarm_common::resample::Planar;
use dreamfarm_common::tiling::Rect;
use dreamfarm_common::work::TileWork;
use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::chunks::Assembler;
use dreamfarm_proto::connect::connect;
use dreamfarm_proto::pb::coordinator_message::Body as Down;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::worker_service_client::WorkerServiceClient;
use dreamfarm_proto::pb::{
    Chunk, HandBack, Heartbeat, Hello, LeaseFailed, LeaseStart, PixelFormat, ResultStart,
    WorkerMessage,
};
use dreamfarm_proto::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION, WireError, pixels};
use tch::Device;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::dream::Dreamer;
use crate::models::torch_device;

/// Dreamers kept per compute thread (one per job's settings).
const DREAMERS_KEPT: usize = 4;

/// How a worker connects and what it offers.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The coordinator's URL (`http://host:7070` or `https://…`).
    pub coordinator: String,
    /// The cluster's shared token.
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for `https://`.
    pub tls_ca: Option<PathBuf>,
    /// Tiles computed at once.
    pub concurrency: u32,
    /// Torch device.
    pub device: DeviceSpec,
    /// Name shown in the coordinator's logs.
    pub name: String,
}

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The device cannot be used.
    #[error(transparent)]
    Device(#[from] crate::models::ModelError),
    /// The token is not usable.
    #[error("bad token: {0}")]
    Token(String),
    /// A thread or the async runtime could not be started.
    #[error("cannot start the worker: {0}")]
    Start(String),
    /// The coordinator refused the worker for good (wrong token, protocol).
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
    /// The URL or TLS settings are wrong.
    #[error(transparent)]
    Connect(dreamfarm_proto::connect::ConnectError),
}

/// A decoded lease ready to compute.
struct Lease {
    id: u64,
    attempt: u32,
    /// The lease's pixel format, which its result uses too.
    format: PixelFormat,
    settings: String,
    seed: u64,
    work: TileWork,
    session: u64,
    up: mpsc::Sender<WorkerMessage>,
}

/// State shared by the session and the compute threads.
struct Shared {
    /// The current session; leases of older ones are dropped.
    session: AtomicU64,
    /// Leases the coordinator took back.
    revoked: Mutex<HashSet<u64>>,
    /// Leases received and not yet answered.
    in_hand: AtomicU64,
    /// Shutting down: hand back what has not started.
    draining: AtomicBool,
    /// Tiles computed.
    done: AtomicU64,
}

fn up(body: Up) -> WorkerMessage {
    WorkerMessage { body: Some(body) }
}

/// Runs the worker until `shutdown` resolves; returns the tiles computed.
pub async fn run(
    config: RemoteConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, RemoteError> {
    let device = torch_device(config.device)?;
    let token = AttachToken::new(config.token.as_deref())
        .map_err(|e| RemoteError::Token(e.message().into()))?;
    let shared = Arc::new(Shared {
        session: AtomicU64::new(0),
        revoked: Mutex::new(HashSet::new()),
        in_hand: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        done: AtomicU64::new(0),
    });
    let (queue_tx, queue_rx) = std_mpsc::channel::<Lease>();
    let queue_rx = Arc::new(Mutex::new(queue_rx));
    for i in 0..config.concurrency.max(1) {
        let (shared, queue_rx) = (shared.clone(), queue_rx.clone());
        std::thread::Builder::new()
            .name(format!("compute {i}"))
            .spawn(move || compute_loop(device, &shared, &queue_rx))
            .map_err(|e| RemoteError::Start(format!("a compute thread: {e}")))?;
    }
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(250);
    loop {
        let session = shared.session.fetch_add(1, Ordering::SeqCst) + 1;
        shared.in_hand.store(0, Ordering::SeqCst);
        match one_session(&config, &token, &shared, &queue_tx, session, &mut shutdown).await {
            Ok(SessionEnd::Shutdown) => break,
            Ok(SessionEnd::Lost(why)) => {
                tracing::warn!("lost the coordinator ({why}); reconnecting");
                backoff = Duration::from_millis(250);
            }
            Err(SessionError::Fatal(e)) => return Err(e),
            Err(SessionError::Retry(why)) => {
                tracing::warn!("{why}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let done = shared.done.load(Ordering::SeqCst);
    tracing::info!(tiles = done, "worker stopped");
    Ok(done)
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

enum SessionError {
    Fatal(RemoteError),
    Retry(String),
}

/// One connection: hello, leases in, results out, until the stream breaks
/// or `shutdown` resolves (then drains).
async fn one_session(
    config: &RemoteConfig,
    token: &AttachToken,
    shared: &Arc<Shared>,
    queue: &std_mpsc::Sender<Lease>,
    session: u64,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<SessionEnd, SessionError> {
    let channel = connect(&config.coordinator, config.tls_ca.as_deref())
        .await
        .map_err(|e| match e {
            dreamfarm_proto::connect::ConnectError::Transport { .. } => {
                SessionError::Retry(e.to_string())
            }
            other => SessionError::Fatal(RemoteError::Connect(other)),
        })?;
    let mut client = WorkerServiceClient::with_interceptor(channel, token.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (up_tx, up_rx) = mpsc::channel(16);
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        name: config.name.clone(),
        concurrency: config.concurrency.max(1),
        device: format!("{:?}", config.device),
    };
    let _ = up_tx.send(up(Up::Hello(hello))).await;
    let mut down = match client.session(ReceiverStream::new(up_rx)).await {
        Ok(r) => r.into_inner(),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::Unauthenticated
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::InvalidArgument
            ) =>
        {
            return Err(SessionError::Fatal(RemoteError::Refused(
                s.message().into(),
            )));
        }
        Err(s) => {
            return Err(SessionError::Retry(format!(
                "session refused: {}",
                s.message()
            )));
        }
    };
    let heartbeat = match down.message().await {
        Ok(Some(m)) => match m.body {
            Some(Down::Welcome(w)) => {
                Duration::from_millis(u64::from(w.heartbeat_ms).clamp(100, 60_000))
            }
            _ => {
                return Err(SessionError::Retry(
                    "the coordinator did not welcome us".into(),
                ));
            }
        },
        Ok(None) => {
            return Err(SessionError::Retry(
                "the coordinator closed the session".into(),
            ));
        }
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            return Err(SessionError::Fatal(RemoteError::Refused(
                s.message().into(),
            )));
        }
        Err(s) => return Err(SessionError::Retry(s.message().into())),
    };
    tracing::info!(coordinator = %config.coordinator, "connected");
    let mut ticker = tokio::time::interval(heartbeat);
    let mut incoming: HashMap<u64, (LeaseStart, Assembler)> = HashMap::new();
    loop {
        tokio::select! {
            msg = down.message() => match msg {
                Ok(Some(m)) => {
                    if let Err(e) = on_message(m, &mut incoming, shared, queue, session, &up_tx).await {
                        tracing::warn!("bad message from the coordinator: {e}");
                        return Ok(SessionEnd::Lost(e.to_string()));
                    }
                }
                Ok(None) => return Ok(SessionEnd::Lost("the stream ended".into())),
                Err(s) => return Ok(SessionEnd::Lost(s.message().to_string())),
            },
            _ = ticker.tick() => {
                if up_tx.send(up(Up::Heartbeat(Heartbeat {}))).await.is_err() {
                    return Ok(SessionEnd::Lost("the stream closed".into()));
                }
            }
            _ = shutdown.as_mut() => break,
        }
    }
    // Shutting down: leases still arriving are handed back; the compute
    // threads finish what they started and hand back the rest.
    tracing::info!("shutting down: finishing or handing back leases");
    shared.draining.store(true, Ordering::SeqCst);
    let unfinished: Vec<u64> = incoming.into_keys().collect();
    if !unfinished.is_empty() {
        shared
            .in_hand
            .fetch_sub(unfinished.len() as u64, Ordering::SeqCst);
        let _ = up_tx
            .send(up(Up::HandBack(HandBack {
                lease_ids: unfinished,
            })))
            .await;
    }
    while shared.in_hand.load(Ordering::SeqCst) > 0 {
        tokio::select! {
            _ = ticker.tick() => { let _ = up_tx.send(up(Up::Heartbeat(Heartbeat {}))).await; }
            msg = down.message() => if !matches!(msg, Ok(Some(_))) { break },
        }
    }
    Ok(SessionEnd::Shutdown)
}

/// Handles one message from the coordinator.
async fn on_message(
    msg: dreamfarm_proto::pb::CoordinatorMessage,
    incoming: &mut HashMap<u64, (LeaseStart, Assembler)>,
    shared: &Arc<Shared>,
    queue: &std_mpsc::Sender<Lease>,
    session: u64,
    up_tx: &mpsc::Sender<WorkerMessage>,
) -> Result<(), WireError> {
    match msg.body {
        Some(Down::LeaseStart(start)) => {
            let format = pixels::format_of(start.format)?;
            let want = pixels::payload_bytes("lease", start.width, start.height, format)?;
            if start.pixels_bytes != want {
                return Err(WireError::Length {
                    expected: want,
                    got: start.pixels_bytes,
                });
            }
            shared.in_hand.fetch_add(1, Ordering::SeqCst);
            incoming.insert(start.lease_id, (start, Assembler::new(want)));
        }
        Some(Down::LeaseChunk(Chunk { lease_id, data })) => {
            let (_, bytes) = incoming.get_mut(&lease_id).ok_or_else(|| {
                WireError::Protocol(format!("pixels for unknown lease {lease_id}"))
            })?;
            bytes.push(&data)?;
            if bytes.is_complete()
                && let Some((start, bytes)) = incoming.remove(&lease_id)
            {
                match lease_from_wire(start, bytes, session, up_tx.clone()) {
                    Ok(lease) => {
                        let _ = queue.send(lease);
                    }
                    Err((id, e)) => {
                        shared.in_hand.fetch_sub(1, Ordering::SeqCst);
                        let failed = LeaseFailed {
                            lease_id: id,
                            reason: e.to_string(),
                        };
                        let _ = up_tx.send(up(Up::Failed(failed))).await;
                    }
                }
            }
        }
        Some(Down::Revoke(r)) => {
            if incoming.remove(&r.lease_id).is_some() {
                shared.in_hand.fetch_sub(1, Ordering::SeqCst);
            } else {
                shared
                    .revoked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(r.lease_id);
            }
        }
        Some(Down::Welcome(_)) | None => {
            return Err(WireError::Protocol("unexpected message".into()));
        }
    }
    Ok(())
}

/// Builds the tile work of a fully received lease, checking its geometry.
fn lease_from_wire(
    start: LeaseStart,
    bytes: Assembler,
    session: u64,
    up: mpsc::Sender<WorkerMessage>,
) -> Result<Lease, (u64, WireError)> {
    let id = start.lease_id;
    let fail = |e: WireError| (id, e);
    let format = pixels::format_of(start.format).map_err(fail)?;
    let data = bytes.finish().map_err(fail)?;
    let image = pixels::decode(&data, start.width, start.height, format).map_err(fail)?;
    let o = start.output.ok_or_else(|| {
        fail(WireError::Protocol(
            "lease without an output rectangle".into(),
        ))
    })?;
    if !(1..=10_000).contains(&start.iterations) {
        return Err(fail(WireError::Protocol(format!(
            "{} iterations is out of range (1 to 10000)",
            start.iterations
        ))));
    }
    let work = TileWork {
        frame: start.frame,
        octave: start.octave,
        tile: start.tile,
        first_iteration: start.first_iteration,
        iterations: start.iterations,
        jitter: start.jitter,
        pixels: image,
        output: Rect {
            x: i64::from(o.x),
            y: i64::from(o.y),
            width: o.width as usize,
            height: o.height as usize,
        },
    };
    work.check().map_err(|e| fail(WireError::Protocol(e)))?;
    Ok(Lease {
        id,
        attempt: start.attempt,
        format,
        settings: start.dream_settings,
        seed: start.seed,
        work,
        session,
        up,
    })
}

/// A compute thread: takes leases off the queue and computes them.
fn compute_loop(device: Device, shared: &Shared, queue: &Mutex<std_mpsc::Receiver<Lease>>) {
    let mut dreamers: VecDeque<((String, u64), Dreamer)> = VecDeque::new();
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(lease) = next else { return };
        // Leases of a lost session no longer count as in hand.
        let settle = || {
            if lease.session == shared.session.load(Ordering::SeqCst) {
                shared.in_hand.fetch_sub(1, Ordering::SeqCst);
            }
        };
        let answer = |body: Up| {
            settle();
            let _ = lease.up.blocking_send(up(body));
        };
        let revoked = shared
            .revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&lease.id);
        if revoked || lease.session != shared.session.load(Ordering::SeqCst) {
            settle();
            continue;
        }
        if shared.draining.load(Ordering::SeqCst) {
            answer(Up::HandBack(HandBack {
                lease_ids: vec![lease.id],
            }));
            continue;
        }
        let key = (lease.settings.clone(), lease.seed);
        let dreamer = match dreamers.iter().position(|(k, _)| *k == key) {
            Some(i) => Ok(i),
            None => load_dreamer(&lease.settings, lease.seed, device).map(|d| {
                if dreamers.len() == DREAMERS_KEPT {
                    dreamers.pop_front();
                }
                dreamers.push_back((key, d));
                dreamers.len() - 1
            }),
        };
        let span = tracing::info_span!(
            "tile",
            frame = lease.work.frame,
            octave = lease.work.octave,
            tile = lease.work.tile
        );
        let _span = span.enter();
        let result = dreamer.and_then(|i| {
            dreamers[i]
                .1
                .dream_tile(&lease.work)
                .map_err(|e| e.to_string())
        });
        if shared
            .revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&lease.id)
        {
            tracing::info!(
                lease = lease.id,
                "lease revoked while computing; result dropped"
            );
            settle();
            continue;
        }
        match result.and_then(|change| send_result(&lease, &change)) {
            Ok(()) => {
                shared.done.fetch_add(1, Ordering::SeqCst);
                settle();
                tracing::debug!(lease = lease.id, "tile done");
            }
            Err(reason) => {
                tracing::warn!(lease = lease.id, "tile failed: {reason}");
                answer(Up::Failed(LeaseFailed {
                    lease_id: lease.id,
                    reason,
                }));
            }
        }
    }
}

/// Sends a lease's change: its head, then its pixels piece by piece as
/// they are encoded.
fn send_result(lease: &Lease, change: &Planar) -> Result<(), String> {
    let pieces = pixels::encode(change, lease.format).map_err(|e| e.to_string())?;
    let head = ResultStart {
        lease_id: lease.id,
        attempt: lease.attempt,
        format: lease.format as i32,
        pixels_bytes: pieces.total_bytes(),
    };
    // A closed stream means the session ended: the coordinator requeues
    // the lease, so there is nothing to report here.
    let _ = lease.up.blocking_send(up(Up::ResultStart(head)));
    for data in pieces {
        let _ = lease.up.blocking_send(up(Up::ResultChunk(Chunk {
            lease_id: lease.id,
            data,
        })));
    }
    Ok(())
}

/// Loads the dreamer for a job's settings (TOML from the wire, checked).
fn load_dreamer(settings: &str, seed: u64, device: Device) -> Result<Dreamer, String> {
    let settings: DreamSettings = toml::from_str(settings)
        .map_err(|e| format!("bad dream settings from the coordinator: {e}"))?;
    settings.validate().map_err(|e| e.to_string())?;
    if let Ok(ModelSpec::TorchScript(_)) = settings.model_spec() {
        return Err("cluster workers dream with built-in models only".into());
    }
    Dreamer::load(&settings, seed, device).map_err(|e| e.to_string())
}
