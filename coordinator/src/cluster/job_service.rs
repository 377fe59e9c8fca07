//! The `JobService`: clients submit, list, watch, control and fetch jobs.
//! The wire's types stop here: the job registry speaks the project's own.

use std::sync::Arc;
use std::time::Instant;

use dreamfarm_common::params::JobSpec;
use dreamfarm_proto::CHUNK_BYTES;
use dreamfarm_proto::chunks::Assembler;
use dreamfarm_proto::pb::job_service_server::JobService;
use dreamfarm_proto::pb::submit_request::Body;
use dreamfarm_proto::pb::{
    self, DeleteReply, DeleteRequest, EventsReply, ExtendRequest, FetchRequest, FileChunk,
    HeldFile, JobRequest, JobStatus, ListReply, ListRequest, PriorityRequest, SubmitReply,
    SubmitRequest,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::adapters::Map;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::fetch::{FileStamp, Held, Sent, job_files, send_files, wire_chunk};
use super::hub::Hub;
use super::job_handle::{JobHandle, JobView};
use super::job_prepare::Submission;
use super::jobs::{JobError, Jobs, MAX_INPUT_BYTES};
use crate::store::{JobState, UnreadableJob};

/// Bytes of items per reply of a listing (`List`, `Events`), well within
/// the protocol's message size (one longer item goes alone, and is refused
/// by no peer unless it is longer than the message size itself).
const REPLY_BYTES: usize = CHUNK_BYTES;

/// A listing's replies, made up front.
type ReplyStream<R> = tokio_stream::Iter<std::vec::IntoIter<Result<R, Status>>>;

/// `items` in replies of at most [`REPLY_BYTES`] each, made by `reply`
/// from a batch: a farm's history or a long render's log runs past any
/// one message. An empty listing is one empty reply.
fn in_replies<T: Message, R>(
    items: impl Iterator<Item = T>,
    reply: impl Fn(Vec<T>) -> R,
) -> ReplyStream<R> {
    let mut batches = vec![Vec::new()];
    let mut bytes = 0;
    for item in items {
        // Its length as a field of the reply, tag and length included.
        let len = prost::length_delimiter_len(item.encoded_len()) + 1 + item.encoded_len();
        if bytes + len > REPLY_BYTES && bytes > 0 {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += len;
        if let Some(batch) = batches.last_mut() {
            batch.push(item);
        }
    }
    let replies: Vec<_> = batches.into_iter().map(|b| Ok(reply(b))).collect();
    tokio_stream::iter(replies)
}

/// The longest a watcher waits for its next status while the job runs.
const WATCH_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// The `JobService` implementation.
pub struct JobApi {
    jobs: Arc<Jobs>,
    hub: Arc<Hub>,
}

impl JobApi {
    /// Serves `jobs`.
    pub fn new(jobs: Arc<Jobs>, hub: Arc<Hub>) -> Self {
        Self { jobs, hub }
    }

    /// A job's status on the wire, with the pool's live figures.
    fn status(&self, job: &JobHandle) -> JobStatus {
        let (tiles_per_second, workers) = (
            self.hub.metrics.tiles.per_second(Instant::now()),
            self.hub.read(|s| s.snapshot().workers) as u32,
        );
        let view = job.view();
        let running = view.state == JobState::Running;
        JobStatus {
            tiles_per_second: if running { tiles_per_second } else { 0.0 },
            workers,
            eta_seconds: job.seconds_left(),
            ..status_of(view)
        }
    }

    /// Runs a blocking control on the job registry and answers with the
    /// job's status.
    async fn control(
        &self,
        f: impl FnOnce(&Jobs) -> Result<Arc<JobHandle>, JobError> + Send + 'static,
    ) -> Result<Response<JobStatus>, Status> {
        let jobs = self.jobs.clone();
        let job = tokio::task::spawn_blocking(move || f(&jobs))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(self.status(&job)))
    }
}

/// The wire's name of a state.
fn state_on_the_wire(state: JobState) -> pb::JobState {
    match state {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Paused => pb::JobState::Paused,
        JobState::Done => pb::JobState::Done,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

/// A job's view on the wire (without the pool's live figures).
fn status_of(v: JobView) -> JobStatus {
    JobStatus {
        job_id: v.id,
        name: v.name,
        state: state_on_the_wire(v.state) as i32,
        frames_done: v.frames_done,
        frames_total: v.frames_total,
        tiles_done: v.tiles_done,
        tiles_total: v.tiles_total,
        tiles_per_second: 0.0,
        eta_seconds: 0.0,
        message: v.message,
        workers: 0,
        priority: v.priority,
        submitted_unix_ms: v.submitted_ms,
    }
}

/// A job of the store this build cannot read, on the wire: failed, with
/// why and what to do.
fn unreadable_status(u: &UnreadableJob) -> JobStatus {
    JobStatus {
        job_id: u.id.clone(),
        name: u.name.clone(),
        state: pb::JobState::Failed as i32,
        message: u.explained(),
        submitted_unix_ms: u.submitted_ms,
        ..JobStatus::default()
    }
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit(
        &self,
        request: Request<Streaming<SubmitRequest>>,
    ) -> Result<Response<SubmitReply>, Status> {
        let mut stream = request.into_inner();
        let Some(SubmitRequest {
            body: Some(Body::Start(start)),
        }) = stream.message().await?
        else {
            return Err(Status::invalid_argument(
                "a submission starts with SubmitStart",
            ));
        };
        let sizes = [
            ("input image", start.input_bytes),
            ("guide image", start.guide_bytes),
            ("colour reference", start.color_reference_bytes),
            ("weights file", start.weights_bytes),
        ];
        for (what, bytes) in sizes {
            if bytes > MAX_INPUT_BYTES {
                return Err(Status::invalid_argument(format!(
                    "the {what} is {bytes} bytes, more than the {MAX_INPUT_BYTES} accepted"
                )));
            }
        }
        let mut upload = Assembler::new(sizes.iter().map(|(_, b)| b).sum());
        while let Some(msg) = stream.message().await? {
            match msg.body {
                Some(Body::InputChunk(c)) => {
                    upload.push(&c)?;
                    self.hub.metrics.received(c.len());
                }
                _ => return Err(Status::invalid_argument("expected input image chunks")),
            }
        }
        let mut upload = upload.finish()?;
        let weights = upload.split_off(upload.len() - start.weights_bytes as usize);
        let color_reference = upload.split_off(upload.len() - start.color_reference_bytes as usize);
        let guide = upload.split_off(upload.len() - start.guide_bytes as usize);
        let input = upload;
        let spec: JobSpec = toml::from_str(&start.job_toml)
            .map_err(|e| Status::invalid_argument(format!("the job file is not valid: {e}")))?;
        let jobs = self.jobs.clone();
        let job = tokio::task::spawn_blocking(move || {
            jobs.submit(Submission {
                name: &start.name,
                spec,
                input: &input,
                guide: Some(&guide[..]).filter(|b| !b.is_empty()),
                color_reference: Some(&color_reference[..]).filter(|b| !b.is_empty()),
                weights: Some(&weights[..]).filter(|b| !b.is_empty()),
                priority: start.priority,
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(SubmitReply {
            job_id: job.id.to_string(),
        }))
    }

    type ListStream = ReplyStream<ListReply>;

    async fn list(
        &self,
        request: Request<ListRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let id = request.into_inner().job_id;
        let jobs = match id.as_str() {
            "" => self.jobs.all(),
            id => self.jobs.get(id).into_iter().collect(),
        };
        // Jobs this build cannot read show as failed, saying why.
        let unreadable = self.jobs.unreadable().iter();
        let unreadable = unreadable
            .filter(|u| id.is_empty() || u.id == id)
            .map(unreadable_status);
        let statuses = jobs.iter().map(|j| self.status(j)).chain(unreadable);
        Ok(Response::new(in_replies(statuses, |jobs| ListReply {
            jobs,
        })))
    }

    type WatchStream = ReceiverStream<Result<JobStatus, Status>>;

    async fn watch(
        &self,
        request: Request<JobRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let job = self.jobs.get(&request.into_inner().job_id)?;
        let mut changes = job.subscribe();
        let (tx, rx) = mpsc::channel(4);
        let api = Self::new(self.jobs.clone(), self.hub.clone());
        tokio::spawn(async move {
            loop {
                let status = api.status(&job);
                let finished = job.state().is_final();
                if tx.send(Ok(status)).await.is_err() || finished {
                    return;
                }
                // At most one update per 200 ms, however fast tiles come,
                // and one at least every few seconds while nothing does,
                // so that the time left counts down through a long frame.
                let next = async {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    tokio::time::timeout(WATCH_TICK, changes.changed()).await
                };
                tokio::select! {
                    changed = next => if let Ok(Err(_)) = changed {
                        return;
                    },
                    () = api.hub.stopping() => {
                        let why = "the coordinator is shutting down; watch again once it is back";
                        let _ = tx.send(Err(Status::unavailable(why))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel(&self, request: Request<JobRequest>) -> Result<Response<JobStatus>, Status> {
        let id = request.into_inner().job_id;
        self.control(move |jobs| jobs.cancel(&id)).await
    }

    async fn pause(&self, request: Request<JobRequest>) -> Result<Response<JobStatus>, Status> {
        let id = request.into_inner().job_id;
        self.control(move |jobs| jobs.pause(&id)).await
    }

    async fn resume(&self, request: Request<JobRequest>) -> Result<Response<JobStatus>, Status> {
        let id = request.into_inner().job_id;
        self.control(move |jobs| jobs.resume(&id)).await
    }

    async fn retry(&self, request: Request<JobRequest>) -> Result<Response<JobStatus>, Status> {
        let id = request.into_inner().job_id;
        self.control(move |jobs| jobs.retry(&id)).await
    }

    async fn set_priority(
        &self,
        request: Request<PriorityRequest>,
    ) -> Result<Response<JobStatus>, Status> {
        let r = request.into_inner();
        self.control(move |jobs| jobs.set_priority(&r.job_id, r.priority))
            .await
    }

    async fn extend(&self, request: Request<ExtendRequest>) -> Result<Response<JobStatus>, Status> {
        let r = request.into_inner();
        self.control(move |jobs| jobs.extend(&r.job_id, r.frames))
            .await
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        let r = request.into_inner();
        let jobs = self.jobs.clone();
        tokio::task::spawn_blocking(move || jobs.delete(&r.job_id, r.force))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(DeleteReply {}))
    }

    type EventsStream = ReplyStream<EventsReply>;

    async fn events(
        &self,
        request: Request<JobRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let id = request.into_inner().job_id;
        let jobs = self.jobs.clone();
        let events = tokio::task::spawn_blocking(move || jobs.events(&id))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let events = events.into_iter().map(|e| pb::JobEvent {
            unix_ms: e.at_ms,
            kind: e.kind.to_string(),
            detail: e.detail,
        });
        Ok(Response::new(in_replies(events, |events| EventsReply {
            events,
        })))
    }

    type FetchStream = Map<ReceiverStream<Sent>, fn(Sent) -> Result<FileChunk, Status>>;

    async fn fetch(
        &self,
        request: Request<Streaming<FetchRequest>>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let mut requests = request.into_inner();
        let first = requests
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("a fetch names its job first"))?;
        let job = self.jobs.get(&first.job_id)?;
        let files =
            job_files(job.dir(), &job.record()).map_err(|e| Status::internal(e.to_string()))?;
        // Only the job's own files are remembered, so what a client says it
        // holds costs no more memory than the job's listing.
        let mut held = Held::of(&files);
        held.add(held_files(first.held));
        // A client that never ends its requests holds only this call, and
        // not past a shutdown.
        loop {
            let more = tokio::select! {
                more = requests.message() => more?,
                () = self.hub.stopping() => return Err(Status::unavailable(FETCH_STOPPED)),
            };
            match more {
                Some(more) => held.add(held_files(more.held)),
                None => break,
            }
        }
        let (tx, rx) = mpsc::channel(4);
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || {
            send_files(files, &held, tx, &hub.metrics, &|| hub.is_stopping())
        });
        Ok(Response::new(
            ReceiverStream::new(rx).map(file_chunk as fn(_) -> _),
        ))
    }
}

/// The files a fetching client holds, from the wire.
fn held_files(held: Vec<HeldFile>) -> impl Iterator<Item = (String, FileStamp)> {
    held.into_iter().map(|h| {
        let stamp = FileStamp {
            size: h.size,
            modified_ms: h.modified_unix_ms,
        };
        (h.name, stamp)
    })
}

/// What a fetch hears when the coordinator shuts down.
const FETCH_STOPPED: &str = "the coordinator is shutting down; run the same fetch again once it is back (the files fetched so far stay)";

/// A piece of a fetched file on the wire.
fn file_chunk(sent: Sent) -> Result<FileChunk, Status> {
    wire_chunk(sent, FETCH_STOPPED)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replies of `items`, as a client reads them.
    fn replies(items: Vec<pb::JobEvent>) -> Vec<EventsReply> {
        let stream = in_replies(items.into_iter(), |events| EventsReply { events });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(stream.map(|r| r.expect("a reply")).collect())
    }

    #[test]
    fn listings_come_in_bounded_replies_in_order() {
        let event = |n: usize| pb::JobEvent {
            unix_ms: n as i64,
            kind: "frame".into(),
            detail: "x".repeat(n % 300),
        };
        let items: Vec<_> = (0..40_000).map(event).collect();
        let got = replies(items.clone());
        assert!(got.len() > 1);
        assert!(got.iter().all(|r| r.encoded_len() <= REPLY_BYTES));
        // Each reply is full: the next one's first item would not fit.
        for pair in got.windows(2) {
            let next = EventsReply {
                events: pair[1].events[..1].to_vec(),
            };
            assert!(pair[0].encoded_len() + next.encoded_len() > REPLY_BYTES);
        }
        let joined: Vec<_> = got.into_iter().flat_map(|r| r.events).collect();
        assert_eq!(joined, items);
        // An empty listing still answers, and an item longer than a reply
        // goes alone.
        assert_eq!(replies(Vec::new()), vec![EventsReply::default()]);
        let long = pb::JobEvent {
            detail: "x".repeat(REPLY_BYTES),
            ..event(1)
        };
        let got = replies(vec![event(2), long.clone(), event(3)]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].events, vec![long]);
    }
}
