//! `dreamfarm coordinator`: serves workers and clients until SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use dreamfarm_common::parallel;
use dreamfarm_coordinator::cluster::memory_budget::{
    SMALLEST_JOB_BYTES, default_budget, human, parse_size,
};
use dreamfarm_coordinator::cluster::scheduler::Timeouts;
use dreamfarm_coordinator::cluster::server::{Coordinator, ServerConfig, TlsFiles};
use dreamfarm_coordinator::video::VideoEncoding;
use dreamfarm_proto::listen;

/// Arguments of `dreamfarm coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address for workers and clients (gRPC, with the health service).
    #[arg(long, env = "DREAMFARM_LISTEN", default_value = "0.0.0.0:7070")]
    listen: SocketAddr,
    /// Address of the plain-HTTP endpoint: the web interface (/, behind
    /// the token), Prometheus metrics (GET /metrics) and the probes
    /// /healthz and /readyz.
    #[arg(long, env = "DREAMFARM_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// Folder of the jobs' inputs, frames and videos.
    #[arg(long, env = "DREAMFARM_DATA", default_value = "dreamfarm-data")]
    data: PathBuf,
    /// Shared token that workers, clients and the web interface's users
    /// must send.
    #[arg(long, env = "DREAMFARM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Accept calls without a token (only on a trusted network).
    #[arg(long, conflicts_with = "token")]
    insecure_no_auth: bool,
    /// TLS certificate chain (PEM); with --tls-key, serves TLS.
    #[arg(long, env = "DREAMFARM_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "DREAMFARM_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds a worker has to finish a lease before it goes to another.
    #[arg(long, env = "DREAMFARM_LEASE_TIMEOUT", default_value_t = 600)]
    lease_timeout: u64,
    /// Seconds of silence after which a worker is dropped with its leases.
    #[arg(long, env = "DREAMFARM_HEARTBEAT_TIMEOUT", default_value_t = 10)]
    heartbeat_timeout: u64,
    /// Memory the running jobs' frames may take, e.g. 8GiB; jobs that do
    /// not fit wait in the queue [default: 3/4 of the container's memory
    /// limit, or of the machine's memory].
    #[arg(long, env = "DREAMFARM_MAX_MEMORY", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// When each job's video is encoded: while it renders, each frame fed
    /// to ffmpeg as it is written, so that the video is ready with the last
    /// frame; or after its last frame, from the frames on disk, so that no
    /// encoder shares the coordinator's cores with the frame loops. The
    /// memory budget charges the encoder either way.
    #[arg(
        long,
        env = "DREAMFARM_VIDEO_ENCODING",
        value_enum,
        default_value_t = VideoWhen::WhileRendering
    )]
    video_encoding: VideoWhen,
    /// CPU threads the frame loops' host work (resizes, camera moves,
    /// stitching) is split into; in Kubernetes, the CPUs the pod requests
    /// [default: the CPUs this process may use: its affinity and its
    /// container's CPU limit].
    #[arg(long, env = "DREAMFARM_THREADS", value_parser = parallel::parse_threads)]
    threads: Option<NonZeroUsize>,
}

/// The values of `--video-encoding`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum VideoWhen {
    /// While the job renders.
    WhileRendering,
    /// From the frames on disk after the job's last frame.
    AfterLastFrame,
}

/// Runs `dreamfarm coordinator`.
pub fn coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    if args.token.is_none() && !args.insecure_no_auth {
        bail!(
            "pass --token TOKEN (or set DREAMFARM_TOKEN) so that only your workers and clients get in; --insecure-no-auth turns this off"
        );
    }
    if args.lease_timeout == 0 || args.heartbeat_timeout == 0 {
        bail!("--lease-timeout and --heartbeat-timeout must be at least 1 second");
    }
    let max_memory = args.max_memory.unwrap_or_else(default_budget);
    if max_memory < SMALLEST_JOB_BYTES {
        bail!(
            "--max-memory (DREAMFARM_MAX_MEMORY) {} holds no job: every job needs more than {}. Fix: give the size with its unit, e.g. 6GiB (a number alone is bytes)",
            human(max_memory),
            human(SMALLEST_JOB_BYTES)
        );
    }
    dreamfarm_proto::heap::keep_freed_memory();
    dreamfarm_proto::open_files::raise_limit();
    if let Some(n) = args.threads {
        parallel::set_threads(n);
    }
    tracing::info!(host_work = parallel::threads(), "CPU threads");
    let config = ServerConfig {
        data: args.data,
        token: args.token,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        timeouts: Timeouts {
            lease: Duration::from_secs(args.lease_timeout),
            heartbeat: Duration::from_secs(args.heartbeat_timeout),
        },
        max_memory,
        video: match args.video_encoding {
            VideoWhen::WhileRendering => VideoEncoding::WhileRendering,
            VideoWhen::AfterLastFrame => VideoEncoding::AfterLastFrame,
        },
    };
    tracing::info!(max_memory = %human(config.max_memory), "memory budget for running jobs");
    // The ports before the store: a coordinator that cannot serve makes
    // no data folder and resumes no job.
    let (listener, bound) = listen::bind_std(args.listen, "gRPC", "--listen")?;
    let (metrics, metrics_bound) = listen::bind_std(
        args.metrics_listen,
        "the metrics and web page",
        "--metrics-listen",
    )?;
    let coordinator = Coordinator::open(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let metrics = tokio::net::TcpListener::from_std(metrics)?;
        // Tests and scripts read the bound addresses (port 0 picks one).
        println!(
            "dreamfarm coordinator listening on {bound} (metrics on http://{metrics_bound}/metrics)"
        );
        coordinator
            .serve(
                listener,
                Some(metrics),
                dreamfarm_proto::signal::shutdown_signal(),
            )
            .await?;
        anyhow::Ok(())
    })
}
