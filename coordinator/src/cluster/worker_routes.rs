//! The `WorkerService` as served: a `Session` call answered with a
//! [`SessionBody`], which hands each lease piece to HTTP/2 without the
//! copy tonic's generated server makes of every message, and every other
//! call (`Weights`, unknown methods) by the generated server itself.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use dreamfarm_proto::MAX_MESSAGE_BYTES;
use dreamfarm_proto::pb::worker_service_server::{
    SERVICE_NAME, WorkerService, WorkerServiceServer,
};
use dreamfarm_proto::pb::{CoordinatorMessage, WorkerMessage};
use dreamfarm_proto::session_frames::SessionBody;
use tonic::Status;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::{Body, Bytes, Service, StdError, http};
use tonic::metadata::GRPC_CONTENT_TYPE;
use tonic::server::NamedService;
use tonic_prost::ProstCodec;

use super::worker_sessions::WorkerSessions;

/// The path of the `Session` call.
const SESSION_PATH: &str = "/dreamfarm.v1.WorkerService/Session";

/// The worker service, for the server's router.
#[derive(Clone)]
pub struct WorkerRoutes {
    sessions: Arc<WorkerSessions>,
    generated: WorkerServiceServer<WorkerSessions>,
}

impl WorkerRoutes {
    /// Serves `sessions`.
    pub fn new(sessions: WorkerSessions) -> Self {
        let sessions = Arc::new(sessions);
        let generated = WorkerServiceServer::from_arc(sessions.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Self {
            sessions,
            generated,
        }
    }
}

impl NamedService for WorkerRoutes {
    const NAME: &'static str = SERVICE_NAME;
}

/// What a route answers with, later.
type Answer =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl<B> Service<http::Request<B>> for WorkerRoutes
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Answer {
        if request.uri().path() != SESSION_PATH {
            return self.generated.call(request);
        }
        let sessions = self.sessions.clone();
        Box::pin(async move { Ok(session(&sessions, request).await) })
    }
}

/// A `Session` call, as tonic's generated server would take it (messages
/// decoded by prost, at most [`MAX_MESSAGE_BYTES`], no compression), with
/// its reply sent as a [`SessionBody`].
async fn session<B>(
    sessions: &WorkerSessions,
    request: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    if let Some(encoding) = request.headers().get("grpc-encoding")
        && encoding != "identity"
    {
        return Status::unimplemented(format!(
            "messages compressed as {encoding:?}: this coordinator takes them uncompressed"
        ))
        .into_http();
    }
    let decoder = ProstCodec::<CoordinatorMessage, WorkerMessage>::default().decoder();
    let request = tonic::Request::from_http(
        request.map(|body| Streaming::new_request(decoder, body, None, Some(MAX_MESSAGE_BYTES))),
    );
    match sessions.session(request).await {
        Ok(reply) => {
            let (metadata, messages, extensions) = reply.into_parts();
            let mut reply = http::Response::new(tonic::body::Body::new(SessionBody::new(messages)));
            *reply.headers_mut() = metadata.into_headers();
            *reply.extensions_mut() = extensions;
            reply
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
            reply
        }
        Err(status) => status.into_http(),
    }
}
