//! One connection to the coordinator: the Hello/Welcome handshake, then
//! leases in and heartbeats out until the stream breaks or the worker is
//! told to stop (then it drains).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Duration;

use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::connect::{ConnectError, connect, misdialled};
use dreamfarm_proto::pb::coordinator_message::Body as Down;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::worker_service_client::WorkerServiceClient;
use dreamfarm_proto::pb::{CoordinatorMessage, Heartbeat, Hello, LeaseFailed, WorkerMessage};
use dreamfarm_proto::region_worker::move_wait;
use dreamfarm_proto::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION, WireError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::bookkeeping::Shared;
use super::compute::Task;
use super::drain::drain;
use super::lease::{Arrived, Arriving, lease_from_wire};
use super::regions::{RegionContext, Regions};
use super::{Offer, RemoteConfig, RemoteError, up};

/// How a session that ran ended.
pub(super) enum SessionEnd {
    /// The worker was told to stop and has drained.
    Shutdown,
    /// The stream broke; reconnect at once.
    Lost(String),
}

/// Why a session did not start.
pub(super) enum SessionError {
    /// Never retry: the configuration is wrong or the coordinator said no.
    Fatal(RemoteError),
    /// Retry after a pause.
    Retry(String),
}

/// A session the coordinator has welcomed.
struct Welcomed {
    /// Messages up to the coordinator.
    up_tx: mpsc::Sender<WorkerMessage>,
    /// Messages from the coordinator.
    down: Streaming<CoordinatorMessage>,
    /// How often to send a heartbeat.
    heartbeat: Duration,
}

/// What a session works with: the worker's compute threads' queue, what
/// they share with it, and its side of region leases if it serves changes.
pub(super) struct Hands<'a> {
    /// What the session and the compute threads share.
    pub(super) shared: &'a Arc<Shared>,
    /// The compute threads' queue.
    pub(super) queue: &'a std_mpsc::Sender<Task>,
    /// Region leases, when the worker serves changes.
    pub(super) regions: Option<&'a Arc<Regions>>,
}

/// One connection: hello, leases in, results out, until the stream breaks
/// or `shutdown` resolves (then drains).
pub(super) async fn one_session(
    config: &RemoteConfig,
    offer: &Offer,
    token: &AttachToken,
    hands: &Hands<'_>,
    session: u64,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
) -> Result<SessionEnd, SessionError> {
    let shared = hands.shared;
    let service = hands
        .regions
        .map(|r| (r.side().address().to_string(), r.side().changes().id()));
    let Welcomed {
        up_tx,
        mut down,
        heartbeat,
    } = handshake(config, offer, token, service.unwrap_or_default()).await?;
    tracing::info!(coordinator = %config.coordinator, "connected");
    shared.set_connected(true);
    let mut ticker = tokio::time::interval(heartbeat);
    let mut arriving = Arriving::default();
    loop {
        tokio::select! {
            msg = down.message() => match msg {
                Ok(Some(m)) => {
                    let from = (session, heartbeat);
                    if let Err(e) = on_message(m, &mut arriving, hands, from, &up_tx).await {
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
    drain(
        arriving,
        shared,
        &up_tx,
        &mut down,
        &mut ticker,
        config.drain_timeout,
    )
    .await;
    Ok(SessionEnd::Shutdown)
}

/// Connects, says Hello (with the change service's address and number,
/// if it serves one) and waits for the Welcome, which sets the heartbeat
/// interval.
async fn handshake(
    config: &RemoteConfig,
    offer: &Offer,
    token: &AttachToken,
    (change_address, change_service_id): (String, u64),
) -> Result<Welcomed, SessionError> {
    let channel = connect(&config.coordinator, config.tls_ca.as_deref())
        .await
        .map_err(|e| match e {
            ConnectError::Transport { .. } | ConnectError::Tls { .. } => {
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
        concurrency: offer.concurrency,
        device: offer.devices.clone(),
        change_address,
        change_service_id,
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
        Err(s) => return Err(retry(config, "session refused", s).await),
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
        Err(s) => return Err(retry(config, "no welcome", s).await),
    };
    Ok(Welcomed {
        up_tx,
        down,
        heartbeat,
    })
}

/// A handshake call that failed with `s`, to be tried again: why, as
/// advice when the port is not the coordinator's gRPC one (a proxy may
/// answer so while the coordinator starts) or TLS does not match.
async fn retry(config: &RemoteConfig, what: &str, s: tonic::Status) -> SessionError {
    SessionError::Retry(match misdialled(&config.coordinator, &s).await {
        Some(advice) => advice.to_string(),
        None => format!("{what}: {}", s.message()),
    })
}

/// Handles one message from the coordinator, in session `session`, which
/// asked for a heartbeat every `heartbeat`.
async fn on_message(
    msg: CoordinatorMessage,
    arriving: &mut Arriving,
    hands: &Hands<'_>,
    (session, heartbeat): (u64, Duration),
    up_tx: &mpsc::Sender<WorkerMessage>,
) -> Result<(), WireError> {
    let shared = hands.shared;
    let refuse = |(id, e): (u64, WireError)| {
        shared.answered(1);
        let failed = LeaseFailed {
            lease_id: id,
            reason: e.to_string(),
            exchange_failed: false,
        };
        up(Up::Failed(failed))
    };
    let arrived = match (msg.body, hands.regions) {
        (Some(Down::LeaseStart(start)), _) => {
            arriving.start(start)?;
            shared.took();
            None
        }
        (Some(Down::RegionStart(start)), Some(_)) => {
            shared.took();
            arriving.start_region(start)?
        }
        (Some(Down::LeaseChunk(chunk)), _) => arriving.chunk(chunk)?,
        (Some(Down::Holders(h)), Some(regions)) => {
            regions.side().tell(h);
            None
        }
        (Some(Down::FrameWhole(w)), Some(regions)) => {
            arriving.forget_frame(&w.job_id, w.frame);
            regions.side().forget(w);
            None
        }
        (Some(Down::CheckNeighbours(c)), Some(regions)) => {
            regions.side().check(c, up_tx.clone());
            None
        }
        (Some(Down::Revoke(r)), regions) => {
            if arriving.cancel(r.lease_id) || regions.is_some_and(|g| g.revoke(r.lease_id)) {
                shared.answered(1);
            } else {
                shared.revoke(r.lease_id);
            }
            None
        }
        // Region messages for a worker that announced no change service.
        (
            Some(
                Down::Welcome(_)
                | Down::RegionStart(_)
                | Down::Holders(_)
                | Down::FrameWhole(_)
                | Down::CheckNeighbours(_),
            )
            | None,
            _,
        ) => {
            return Err(WireError::Protocol("unexpected message".into()));
        }
    };
    match (arrived, hands.regions) {
        (None, _) => {}
        (Some(Arrived::Tile(start, bytes)), _) => {
            match lease_from_wire(start, bytes, session, up_tx.clone()) {
                Ok(lease) => {
                    let _ = hands.queue.send(Task::Lease(lease));
                }
                Err(refusal) => {
                    let _ = up_tx.send(refuse(refusal)).await;
                }
            }
        }
        (Some(Arrived::Region(start, rgb)), Some(regions)) => {
            let received = start.part_bytes;
            shared.region_input(received, (rgb.len() as u64).saturating_sub(received));
            let cx = RegionContext {
                session,
                move_wait: move_wait(heartbeat),
                up: up_tx.clone(),
                queue: hands.queue.clone(),
                shared: shared.clone(),
            };
            if let Err(refusal) = regions.start(start, rgb, cx) {
                let _ = up_tx.send(refuse(refusal)).await;
            }
        }
        // Never: a region lease starts only with a change service.
        (Some(Arrived::Region(..)), None) => {
            return Err(WireError::Protocol(
                "a region lease without a change service".into(),
            ));
        }
    }
    Ok(())
}
