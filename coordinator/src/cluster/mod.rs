//! The cluster: the coordinator's gRPC server, which leases the tiles of
//! every running job's frames to a pool of remote workers.
//!
//! - [`server`]: the services, health, metrics and expiry ticker.
//! - [`scheduler`]: the lease queue and the workers; [`exchange_checks`]:
//!   whether the workers serving changes reach each other.
//! - [`worker_sessions`]: the wire side of a worker's session;
//!   [`worker_routes`]: its service as served, lease pieces uncopied.
//! - [`job_service`]: the clients' API; [`jobs`]: every job, its controls
//!   and admission under the [`memory_budget`]; [`job_prepare`]: checking a
//!   submitted job; [`job_weights`]: a job's own uploaded weights file;
//!   [`job_handle`]: one job's record, view and thread;
//!   [`job_runner`]: that thread, rendering with the same loop as a
//!   single-machine render through a [`remote_executor`].
//! - [`fetch`]: a job's files for a fetching client.
//! - [`hub`]: the shared state; [`metrics`]: Prometheus counters.

pub mod exchange_checks;
pub mod fetch;
pub mod hub;
pub mod job_handle;
pub mod job_prepare;
pub mod job_runner;
pub mod job_service;
pub mod job_weights;
pub mod jobs;
pub mod memory_budget;
pub mod metrics;
pub mod remote_executor;
pub mod scheduler;
pub mod server;
pub mod worker_routes;
pub mod worker_sessions;
