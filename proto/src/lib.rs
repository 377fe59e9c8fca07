//! The dreamfarm wire protocol, shared by the coordinator, the workers and
//! the command-line clients (no libtorch here).
//!
//! - [`pb`]: the messages and services generated from `dreamfarm.proto`.
//! - [`pixels`]: planar RGB on the wire (f32 or f16), with exact sizes.
//! - [`halves`]: the f16 conversions, one pass over memory each way.
//! - [`objective`]: a frame's objective on the wire, checked on arrival.
//! - [`chunks`]: big payloads cut into pieces and put back together.
//! - [`change_exchange`]: the tile changes workers serve each other.
//! - [`change_channels`]: channels to the neighbours' change services,
//!   plain or TLS.
//! - [`region_lease`]: a region lease on the wire, checked on arrival.
//! - [`region_worker`]: one region of a frame computed on a worker.
//! - [`region_side`]: what a worker keeps and answers for its regions.
//! - [`neighbour_check`]: a worker dialling its neighbours' change
//!   services, checked before frames go by regions.
//! - [`session_frames`]: the coordinator's messages to a worker as gRPC
//!   frames, lease pieces uncopied.
//! - [`auth`]: the shared-token check on every call.
//! - [`connect`]: a channel to the coordinator, plain or TLS.
//! - [`tls`]: TLS set up wrong, told as advice (the coordinator's
//!   certificate, and mismatches a client meets).
//! - [`signal`]: SIGTERM and Ctrl-C, for graceful shutdown.
//! - [`logging`]: every process's log lines, text or JSON.
//! - [`exposition`]: Prometheus' text format, for every process's
//!   `/metrics`.
//! - [`heap`]: how a render, coordinator or worker process keeps freed
//!   buffers for reuse.
//! - [`open_files`]: the open files limit raised at start, and listeners
//!   that pause at it instead of spinning.

pub mod auth;
pub mod change_channels;
pub mod change_exchange;
pub mod chunks;
pub mod color_adjust;
pub mod connect;
pub mod exposition;
pub mod halves;
pub mod heap;
pub mod listen;
pub mod logging;
pub mod neighbour_check;
pub mod objective;
pub mod open_files;
pub mod pixels;
pub mod region_lease;
pub mod region_parts;
pub mod region_side;
pub mod region_worker;
pub mod session_frames;
pub mod signal;
pub mod tls;

/// The type of a pixel piece's bytes (`Chunk::data`): shared slices, so a
/// piece received is not copied out of the transport's buffer.
pub use prost::bytes::Bytes;

/// Generated from `proto/dreamfarm.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("dreamfarm.v1");
}

/// A message up a worker's session, of `body`.
pub fn up(body: pb::worker_message::Body) -> pb::WorkerMessage {
    pb::WorkerMessage { body: Some(body) }
}

/// Bumped whenever the messages change meaning; a worker whose `Hello`
/// names another version is refused with a clear status.
/// Version 3 split the model (per job) from the objective (per frame);
/// version 4 sends a job's own weights file instead of its path; version 5
/// carries a frame's colour keeping with its region leases (a worker
/// before it would dream those regions without it); version 6 has workers
/// check that they reach each other's change services before frames go by
/// regions; version 7 tells a frame's holders when it is whole, so that
/// they drop its changes (a worker before it would not know the message);
/// version 8 sends a region lease only the pieces of its part that its
/// session has not carried yet (a worker before it would read them as the
/// whole part).
pub const PROTOCOL_VERSION: u32 = 8;

/// How a worker's failure starts when the weights a job uploaded do not
/// fit its model: the coordinator then advises submitting the job again,
/// not `retry` (the job keeps its weights, so a retry fails the same way).
pub const WEIGHTS_MISFIT: &str = "the weights file the job uploaded does not fit";

/// What a coordinator tells its workers as it shuts down: they reconnect
/// without alarm (a restart or upgrade is not a fault).
pub const COORDINATOR_STOPPING: &str =
    "the coordinator is shutting down; reconnect to its next start";

/// Most tiles one worker may offer to compute at once (its
/// `--concurrency` times its devices): a coordinator refuses more.
pub const MAX_CONCURRENCY: u32 = 256;

/// Largest piece of a payload in one message.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Largest message either side decodes or sends. Payloads are chunked, so
/// this is headroom over [`CHUNK_BYTES`], set explicitly on every client
/// and server so that no library default decides a failure.
pub const MAX_MESSAGE_BYTES: usize = 4 * CHUNK_BYTES;

/// HTTP/2 flow-control window of one call, both ends. A 4K octave moves
/// hundreds of megabytes over a few calls; the protocol's 64 KiB default
/// (or the library's 1-2 MiB) stops a sender every few pieces for a
/// window update, which costs a system call and a wake-up each time.
pub const STREAM_WINDOW_BYTES: u32 = 8 * CHUNK_BYTES as u32;

/// HTTP/2 flow-control window of one connection (all its calls).
pub const CONNECTION_WINDOW_BYTES: u32 = 4 * STREAM_WINDOW_BYTES;

/// Largest HTTP/2 frame either end accepts: a wire piece in one frame
/// instead of 64 frames of the protocol's default 16 KiB.
pub const FRAME_BYTES: u32 = CHUNK_BYTES as u32 + 1024;

/// Heartbeat intervals a worker may miss before the coordinator drops it:
/// the coordinator asks for heartbeats this many times per its timeout.
pub const HEARTBEATS_PER_TIMEOUT: u32 = 4;

/// Quiet time on a connection after which either end sends an HTTP/2 ping.
/// A link that dies without a reset or a close reaching this end (a lost
/// NAT entry, a peer that vanished) shows no error for many minutes of TCP
/// retransmissions; the ping finds it.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a ping may go unanswered before the connection is dropped (and
/// a worker redials).
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Largest side of a lease's pixels: the largest tile core (8192) plus its
/// largest margin (2 × 1024) and jitter room (2 × 512), as job settings
/// allow.
pub const MAX_TILE_SIDE: u32 = 8192 + 2 * 1024 + 2 * 512;

/// Something on the wire that does not add up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// A payload longer or shorter than its header announced.
    #[error("payload of {got} bytes where {expected} were announced")]
    Length {
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// Dimensions past the protocol's limits.
    #[error("{what} {width}x{height} is out of range (1 to {MAX_TILE_SIDE} per side)")]
    Size {
        /// What the dimensions are of.
        what: &'static str,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// An unknown or unset pixel format.
    #[error("unknown pixel format {0}")]
    Format(i32),
    /// A message that does not belong where it came.
    #[error("{0}")]
    Protocol(String),
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}
