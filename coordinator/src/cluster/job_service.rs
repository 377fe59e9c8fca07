//! The `JobService`: clients submit, list, watch, cancel and fetch jobs.

use std::sync::Arc;

use dreamfarm_proto::chunks::{Assembler, split};
use dreamfarm_proto::pb::job_service_server::JobService;
use dreamfarm_proto::pb::submit_request::Body;
use dreamfarm_proto::pb::{
    FileChunk, JobRequest, JobStatus, ListReply, ListRequest, SubmitReply, SubmitRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::hub::Hub;
use super::jobs::{Jobs, MAX_INPUT_BYTES, fetchable_files};

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
        if start.input_bytes > MAX_INPUT_BYTES {
            return Err(Status::invalid_argument(format!(
                "the input image is {} bytes, more than the {MAX_INPUT_BYTES} accepted",
                start.input_bytes
            )));
        }
        let mut input = Assembler::new(start.input_bytes);
        while let Some(msg) = stream.message().await? {
            match msg.body {
                Some(Body::InputChunk(c)) => {
                    input.push(&c)?;
                    self.hub.metrics.received(c.len());
                }
                _ => return Err(Status::invalid_argument("expected input image chunks")),
            }
        }
        let input = input.finish()?;
        let jobs = self.jobs.clone();
        let job =
            tokio::task::spawn_blocking(move || jobs.submit(&start.name, &start.job_toml, &input))
                .await
                .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(SubmitReply {
            job_id: job.id.to_string(),
        }))
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        let jobs = self.jobs.all().iter().map(|j| j.status()).collect();
        Ok(Response::new(ListReply { jobs }))
    }

    type WatchStream = ReceiverStream<Result<JobStatus, Status>>;

    async fn watch(
        &self,
        request: Request<JobRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let job = self.jobs.get(&request.into_inner().job_id)?;
        let mut changes = job.subscribe();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let finished = job.is_finished();
                if tx.send(Ok(job.status())).await.is_err() || finished {
                    return;
                }
                // At most one update per 200 ms, however fast tiles come.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                if changes.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel(&self, request: Request<JobRequest>) -> Result<Response<JobStatus>, Status> {
        let job = self.jobs.cancel(&request.into_inner().job_id)?;
        Ok(Response::new(job.status()))
    }

    type FetchStream = ReceiverStream<Result<FileChunk, Status>>;

    async fn fetch(
        &self,
        request: Request<JobRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let job = self.jobs.get(&request.into_inner().job_id)?;
        let files =
            fetchable_files(&job.frames_dir).map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = mpsc::channel(4);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            for path in files {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let data = match tokio::fs::read(&path).await {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(format!("{name}: {e}")))).await;
                        return;
                    }
                };
                hub.metrics.sent(data.len());
                // An empty file still announces itself with one empty chunk.
                let mut pieces: Vec<Vec<u8>> = split(&data).collect();
                if pieces.is_empty() {
                    pieces.push(Vec::new());
                }
                for data in pieces {
                    let chunk = FileChunk {
                        path: name.clone(),
                        data,
                    };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
