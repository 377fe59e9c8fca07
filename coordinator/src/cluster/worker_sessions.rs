//! The coordinator's side of a worker's session: a `Hello`, then leases
//! pushed down the stream as the worker has room, and heartbeats, results,
//! failures and hand-backs coming up it. Anything malformed ends the
//! session with a clear status; its leases go back to the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dreamfarm_common::area::Area;
use dreamfarm_common::resample::Planar;
use dreamfarm_common::work::{RegionLease, TileWork};
use dreamfarm_proto::chunks::Assembler;
use dreamfarm_proto::pb::coordinator_message::Body as Down;
use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::worker_service_server::WorkerService;
use dreamfarm_proto::pb::{
    CheckNeighbours, Chunk, CoordinatorMessage, FrameWhole, Hello, LeaseStart, Neighbour, Rect,
    RegionHolders, RegionLeaseStart, RegionResultStart, ResultStart, Revoke, WeightsRequest,
    Welcome, WorkerMessage,
};
use dreamfarm_proto::region_parts::PartsSent;
use dreamfarm_proto::{
    Bytes, CHUNK_BYTES, COORDINATOR_STOPPING, HEARTBEATS_PER_TIMEOUT, MAX_CONCURRENCY,
    PROTOCOL_VERSION, WireError, objective, pixels, region_lease, region_parts,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::hub::Hub;
use super::job_weights::{WeightsStream, send_weights};
use super::scheduler::{Grant, LeaseError, LeaseId, Scheduler, Work, WorkerId};

/// How long a new session may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

type Outbound = mpsc::Sender<Result<CoordinatorMessage, Status>>;

/// The `WorkerService` implementation.
pub struct WorkerSessions {
    hub: Arc<Hub>,
}

impl WorkerSessions {
    /// Sessions that lease `hub`'s tiles.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

fn down(body: Down) -> Result<CoordinatorMessage, Status> {
    Ok(CoordinatorMessage { body: Some(body) })
}

fn check_hello(hello: &Hello) -> Result<(), Status> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "worker speaks protocol {}, this coordinator {PROTOCOL_VERSION}: run the same dreamfarm release on both",
            hello.protocol_version
        )));
    }
    if !(1..=MAX_CONCURRENCY).contains(&hello.concurrency) {
        return Err(Status::invalid_argument(format!(
            "concurrency {} is out of range (1 to {MAX_CONCURRENCY})",
            hello.concurrency
        )));
    }
    let address = &hello.change_address;
    // TLS change services announce themselves as https://host:port.
    let port = address
        .strip_prefix("https://")
        .unwrap_or(address)
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    if !address.is_empty() && !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
        return Err(Status::invalid_argument(format!(
            "change address {address:?} is not host:port or https://host:port"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl WorkerService for WorkerSessions {
    type SessionStream = ReceiverStream<Result<CoordinatorMessage, Status>>;
    type WeightsStream = WeightsStream;

    async fn weights(
        &self,
        request: Request<WeightsRequest>,
    ) -> Result<Response<Self::WeightsStream>, Status> {
        send_weights(&self.hub, request.into_inner()).map(Response::new)
    }

    async fn session(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))??;
        let Some(WorkerMessage {
            body: Some(Up::Hello(hello)),
        }) = first
        else {
            self.hub.metrics.reject();
            return Err(Status::invalid_argument(
                "the first message of a session must be Hello",
            ));
        };
        check_hello(&hello)?;
        let worker = self.hub.update(|s| {
            let now = Instant::now();
            let worker = s.add_worker(
                hello.name.clone(),
                hello.device.clone(),
                hello.concurrency,
                now,
            );
            if !hello.change_address.is_empty() {
                let (address, id) = (hello.change_address.clone(), hello.change_service_id);
                s.serve_changes(worker, address, id, now);
            }
            worker
        });
        let heartbeat = self.hub.read(|s| s.timeouts().heartbeat) / HEARTBEATS_PER_TIMEOUT;
        tracing::info!(worker, name = %hello.name, device = %hello.device, concurrency = hello.concurrency, ?peer, "worker joined");
        let (tx, rx) = mpsc::channel(16);
        let welcome = down(Down::Welcome(Welcome {
            worker_id: worker,
            heartbeat_ms: heartbeat.as_millis() as u32,
        }));
        tx.send(welcome)
            .await
            .map_err(|_| Status::cancelled("the worker left"))?;
        let pusher = tokio::spawn(push_leases(self.hub.clone(), worker, tx.clone()));
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let end = tokio::select! {
                end = read_messages(&hub, worker, &mut inbound) => end,
                () = hub.stopping() => Err(Status::unavailable(COORDINATOR_STOPPING)),
            };
            pusher.abort();
            hub.update(|s| s.remove_worker(worker));
            match end {
                Ok(()) => tracing::info!(worker, "worker left"),
                Err(status) => {
                    // Ending every session is part of a shutdown, not a fault.
                    if hub.is_stopping() {
                        tracing::info!(worker, "session ended: {}", status.message());
                    } else {
                        tracing::warn!(worker, "session ended: {}", status.message());
                    }
                    if status.code() == tonic::Code::InvalidArgument {
                        hub.metrics.reject();
                    }
                    let _ = tx.send(Err(status)).await;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends revocations and new leases whenever the scheduler changes, until
/// the worker is gone.
async fn push_leases(hub: Arc<Hub>, worker: WorkerId, tx: Outbound) {
    let mut sent = PartsSent::default();
    loop {
        let changed = hub.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if !hub.read(|s| s.has_worker(worker)) {
            let _ = tx
                .send(Err(Status::unavailable(
                    "dropped for missing heartbeats; reconnect",
                )))
                .await;
            return;
        }
        for lease in hub.update_quietly(|s| s.take_revoked(worker)) {
            if tx
                .send(down(Down::Revoke(Revoke { lease_id: lease })))
                .await
                .is_err()
            {
                return;
            }
        }
        // Before any new lease: a frame told whole after its region went
        // out again would drop that region's changes.
        for (job, frame) in hub.update_quietly(|s| s.take_frames_whole(worker)) {
            sent.forget(&job, frame);
            let whole = FrameWhole {
                job_id: job.to_string(),
                frame,
            };
            if tx.send(down(Down::FrameWhole(whole))).await.is_err() {
                return;
            }
        }
        let mut regions = false;
        while let Some(grant) = hub.update_quietly(|s| s.next_lease(worker, Instant::now())) {
            regions |= matches!(grant.work, Work::Region { .. });
            if send_lease(&hub, &tx, grant, &mut sent).await.is_err() {
                return;
            }
        }
        if regions {
            // The other workers of the frames learn who holds the regions.
            hub.update(|_| ());
        }
        let neighbours: Vec<Neighbour> = hub
            .update_quietly(|s| s.take_checks(worker))
            .into_iter()
            .map(|n| Neighbour {
                worker_id: n.worker,
                address: n.address,
                change_service_id: n.service_id,
            })
            .collect();
        if !neighbours.is_empty() {
            let check = CheckNeighbours { neighbours };
            if tx.send(down(Down::CheckNeighbours(check))).await.is_err() {
                return;
            }
        }
        for (job, frame, addresses) in hub.update_quietly(|s| s.take_holders(worker)) {
            let holders = RegionHolders {
                job_id: job.to_string(),
                frame,
                addresses,
            };
            if tx.send(down(Down::Holders(holders))).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tx.closed() => return,
        }
    }
}

/// A lease's pixels, shared with the scheduler's copy of its work: the
/// pieces on the wire are slices of their memory.
struct LeasePixels(Arc<TileWork>);

impl AsRef<Planar> for LeasePixels {
    fn as_ref(&self) -> &Planar {
        &self.0.pixels
    }
}

/// Sends one lease: its head, then its pixels in chunks (of a region
/// lease, those `sent` says the session has not carried).
async fn send_lease(
    hub: &Hub,
    tx: &Outbound,
    grant: Grant,
    sent: &mut PartsSent,
) -> Result<(), ()> {
    let (head, pieces) = match &grant.work {
        Work::Tile(w) => tile_lease(&grant, w.clone())?,
        Work::Region { lease, .. } => region_lease(&grant, lease.clone(), sent),
    };
    tx.send(down(head)).await.map_err(|_| ())?;
    for piece in pieces {
        hub.metrics.sent(piece.len());
        let chunk = Chunk {
            lease_id: grant.lease,
            data: piece,
        };
        tx.send(down(Down::LeaseChunk(chunk)))
            .await
            .map_err(|_| ())?;
    }
    Ok(())
}

/// A region lease's head and the bytes of the pieces of its part that
/// the session has not carried, recorded in `sent`.
fn region_lease(grant: &Grant, lease: Arc<RegionLease>, sent: &mut PartsSent) -> (Down, Pieces) {
    let dream = &grant.params.dream;
    tracing::debug!(job = %grant.job, frame = lease.frame, region = lease.region, lease = grant.lease, "region lease granted");
    let job = grant.job.to_string();
    let pieces = sent.to_send(&job, lease.frame, &lease.part);
    let start = RegionLeaseStart {
        lease_id: grant.lease,
        job_id: job,
        model: dream.model.clone(),
        seed: grant.params.seed,
        attempt: grant.attempt,
        deadline_ms: grant.deadline.as_millis().min(u128::from(u32::MAX)) as u32,
        precision: dream.precision.as_str().to_string(),
        weights_sha256: grant
            .params
            .weights
            .as_ref()
            .map_or(String::new(), |w| w.sha256.clone()),
        pieces: pieces.iter().map(region_parts::to_wire).collect(),
        part_bytes: 3 * pieces.iter().map(Area::pixels).sum::<usize>() as u64,
        ..region_lease::to_wire(&lease)
    };
    let bytes = Bytes::from(lease.pixels.cut(&pieces));
    let pieces = (0..bytes.len())
        .step_by(CHUNK_BYTES)
        .map(move |at| bytes.slice(at..(at + CHUNK_BYTES).min(bytes.len())));
    (Down::RegionStart(start), Box::new(pieces))
}

/// A lease's pieces, made as they are sent.
type Pieces = Box<dyn Iterator<Item = Bytes> + Send>;

/// A tile lease's head and its pixels' pieces.
fn tile_lease(grant: &Grant, work: Arc<TileWork>) -> Result<(Down, Pieces), ()> {
    let w = &work;
    let format = pixels::format_for(grant.params.wire());
    let pieces = pixels::encode(LeasePixels(work.clone()), format).map_err(|_| ())?;
    let dream = &grant.params.dream;
    tracing::debug!(job = %grant.job, frame = w.frame, octave = w.octave, tile = w.tile, lease = grant.lease, "lease granted");
    let start = LeaseStart {
        lease_id: grant.lease,
        job_id: grant.job.to_string(),
        model: dream.model.clone(),
        weights_sha256: grant
            .params
            .weights
            .as_ref()
            .map_or(String::new(), |w| w.sha256.clone()),
        objective: Some(objective::to_wire(&w.objective)),
        precision: dream.precision.as_str().to_string(),
        seed: grant.params.seed,
        frame: w.frame,
        octave: w.octave,
        tile: w.tile,
        attempt: grant.attempt,
        first_iteration: w.first_iteration,
        iterations: w.iterations,
        jitter: w.jitter,
        width: w.pixels.width as u32,
        height: w.pixels.height as u32,
        format: format as i32,
        pixels_bytes: pieces.total_bytes(),
        output: Some(Rect {
            x: w.output.x as u32,
            y: w.output.y as u32,
            width: w.output.width as u32,
            height: w.output.height as u32,
        }),
        deadline_ms: grant.deadline.as_millis().min(u128::from(u32::MAX)) as u32,
        tiles: w.tiles,
    };
    Ok((Down::LeaseStart(start), Box::new(pieces)))
}

/// A result being received.
struct Incoming {
    lease: LeaseId,
    attempt: u32,
    pixels: Receiving,
}

/// Where a result's pixels go as they arrive.
enum Receiving {
    /// Into the change, for a lease still held.
    Kept(pixels::Decoder),
    /// Into a region's 8-bit cell, for a lease still held.
    Cell(Assembler),
    /// Nowhere: the lease is no longer held, the bytes are only counted.
    Dropped(Assembler),
}

impl Receiving {
    /// Takes the next piece.
    fn push(&mut self, piece: &[u8]) -> Result<(), WireError> {
        match self {
            Self::Kept(d) => d.push(piece),
            Self::Cell(a) | Self::Dropped(a) => a.push(piece),
        }
    }

    /// Whether every announced byte has arrived.
    fn is_complete(&self) -> bool {
        match self {
            Self::Kept(d) => d.is_complete(),
            Self::Cell(a) | Self::Dropped(a) => a.is_complete(),
        }
    }
}

fn refused(e: LeaseError) -> Status {
    Status::failed_precondition(e.to_string())
}

/// Reads the worker's messages until its stream ends.
async fn read_messages(
    hub: &Hub,
    worker: WorkerId,
    inbound: &mut Streaming<WorkerMessage>,
) -> Result<(), Status> {
    let mut incoming: Option<Incoming> = None;
    while let Some(msg) = inbound.message().await? {
        if !hub.update_quietly(|s| {
            s.touch(worker, Instant::now());
            s.has_worker(worker)
        }) {
            return Err(Status::unavailable(
                "dropped for missing heartbeats; reconnect",
            ));
        }
        match msg.body {
            Some(Up::Heartbeat(_)) => {}
            Some(Up::ResultStart(_) | Up::RegionResult(_)) if incoming.is_some() => {
                return Err(WireError::Protocol(
                    "a result started before the previous one ended".into(),
                )
                .into());
            }
            Some(Up::ResultStart(r)) => incoming = Some(start_result(hub, worker, &r)?),
            Some(Up::RegionResult(r)) => incoming = Some(start_region_result(hub, worker, &r)?),
            Some(Up::ResultChunk(c)) => {
                let Some(inc) = incoming.as_mut().filter(|i| i.lease == c.lease_id) else {
                    return Err(WireError::Protocol(format!(
                        "a chunk for lease {} whose result was not started",
                        c.lease_id
                    ))
                    .into());
                };
                inc.pixels.push(&c.data)?;
                hub.metrics.received(c.data.len());
                if inc.pixels.is_complete()
                    && let Some(inc) = incoming.take()
                {
                    finish_result(hub, worker, inc)?;
                }
            }
            Some(Up::Failed(f)) => {
                tracing::warn!(
                    worker,
                    lease = f.lease_id,
                    "worker failed a lease: {}",
                    f.reason
                );
                let failed = |s: &mut Scheduler| {
                    if f.exchange_failed {
                        s.exchange_failed(worker, f.lease_id, &f.reason, Instant::now())
                    } else {
                        s.fail(worker, f.lease_id, &f.reason)
                    }
                };
                if let Err(e) = hub.update(failed) {
                    tracing::debug!(worker, "ignored: {e}");
                }
            }
            Some(Up::NeighboursChecked(checked)) => {
                let answers = checked
                    .reached
                    .into_iter()
                    .map(|r| (r.worker_id, Some(r.error).filter(|e| !e.is_empty())))
                    .collect();
                hub.update(|s| s.neighbours_checked(worker, answers));
            }
            Some(Up::HandBack(h)) => {
                tracing::info!(worker, leases = ?h.lease_ids, "worker handed leases back");
                for lease in h.lease_ids {
                    if let Err(e) = hub.update(|s| s.hand_back(worker, lease)) {
                        tracing::debug!(worker, "ignored: {e}");
                    }
                }
            }
            Some(Up::Hello(_)) | None => {
                return Err(WireError::Protocol("unexpected message in a session".into()).into());
            }
        }
    }
    if incoming.is_some() {
        tracing::warn!(worker, "stream ended in the middle of a result");
    }
    Ok(())
}

/// Checks a result's head against the lease it names.
fn start_result(hub: &Hub, worker: WorkerId, r: &ResultStart) -> Result<Incoming, Status> {
    let format = pixels::format_of(r.format)?;
    let pixels = match hub.read(|s| s.check_result(worker, r.lease_id, r.attempt)) {
        Ok(shape) => {
            let lease_format = pixels::format_for(shape.wire);
            if format != lease_format {
                return Err(WireError::Protocol(format!(
                    "lease {}: the result is in {}, the lease in {}; answer in the lease's format",
                    r.lease_id,
                    format.as_str_name(),
                    lease_format.as_str_name()
                ))
                .into());
            }
            let (w, h) = (shape.width as u32, shape.height as u32);
            let want = pixels::payload_bytes("result", w, h, format)?;
            if r.pixels_bytes != want {
                return Err(WireError::Length {
                    expected: want,
                    got: r.pixels_bytes,
                }
                .into());
            }
            Receiving::Kept(pixels::Decoder::new(w, h, format)?)
        }
        // A late result (the lease expired or went elsewhere): dropped.
        Err(e @ LeaseError::TakenBack(_)) => {
            tracing::info!(worker, "dropping a late result: {e}");
            if r.pixels_bytes > 3 * u64::from(dreamfarm_proto::MAX_TILE_SIDE).pow(2) * 4 {
                return Err(refused(e));
            }
            Receiving::Dropped(Assembler::new(r.pixels_bytes))
        }
        Err(e) => return Err(refused(e)),
    };
    Ok(Incoming {
        lease: r.lease_id,
        attempt: r.attempt,
        pixels,
    })
}

/// Checks a region result's head against the lease it names.
fn start_region_result(
    hub: &Hub,
    worker: WorkerId,
    r: &RegionResultStart,
) -> Result<Incoming, Status> {
    let pixels = match hub.read(|s| s.check_region_result(worker, r.lease_id, r.attempt)) {
        Ok((w, h)) => {
            let want = 3 * w as u64 * h as u64;
            if r.rgb_bytes != want {
                return Err(WireError::Length {
                    expected: want,
                    got: r.rgb_bytes,
                }
                .into());
            }
            Receiving::Cell(Assembler::new(want))
        }
        // A late result (the lease expired or went elsewhere): dropped.
        Err(e @ LeaseError::TakenBack(_)) => {
            tracing::info!(worker, "dropping a late region result: {e}");
            if r.rgb_bytes > 3 * u64::from(dreamfarm_common::params::MAX_SIDE).pow(2) {
                return Err(refused(e));
            }
            Receiving::Dropped(Assembler::new(r.rgb_bytes))
        }
        Err(e) => return Err(refused(e)),
    };
    Ok(Incoming {
        lease: r.lease_id,
        attempt: r.attempt,
        pixels,
    })
}

/// Decodes a complete result and hands it to the scheduler.
fn finish_result(hub: &Hub, worker: WorkerId, inc: Incoming) -> Result<(), Status> {
    let (lease, attempt) = (inc.lease, inc.attempt);
    let done = match inc.pixels {
        Receiving::Kept(decoder) => {
            let change = decoder.finish()?;
            hub.update(|s| s.complete(worker, lease, attempt, change))
        }
        Receiving::Cell(cell) => {
            let rgb = cell.finish()?;
            hub.update(|s| s.complete_region(worker, lease, attempt, rgb))
        }
        Receiving::Dropped(_) => return Ok(()),
    };
    match done {
        Ok(()) => Ok(()),
        // Revoked while its bytes were arriving.
        Err(e @ LeaseError::TakenBack(_)) => {
            tracing::info!(worker, "dropping a late result: {e}");
            Ok(())
        }
        Err(e) => Err(refused(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_address_is_host_and_port_in_clear_or_over_tls() {
        let hello = |address: &str| Hello {
            protocol_version: PROTOCOL_VERSION,
            name: "w".into(),
            concurrency: 1,
            device: "cpu".into(),
            change_address: address.into(),
            change_service_id: 1,
        };
        for good in [
            "",
            "10.0.0.7:7072",
            "[fd00::7]:7072",
            "https://10.0.0.7:7072",
        ] {
            assert!(check_hello(&hello(good)).is_ok(), "{good}");
        }
        for bad in ["10.0.0.7", "https://:7072", "w:0", "https://w", "w:port"] {
            let refused = check_hello(&hello(bad)).expect_err(bad);
            assert!(refused.message().contains("https://host:port"), "{bad}");
        }
    }
}
