//! The worker's command line, shared by `dreamfarm-worker` and
//! `dreamfarm worker`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use dreamfarm_common::device::Devices;
use dreamfarm_common::model_catalog::ModelSpec;

use dreamfarm_proto::change_channels::CHANGE_TLS_NAME;

use crate::cpu_threads::ThreadsFlag;
use crate::remote::{ChangeAddress, ChangeTls, RemoteConfig, RemoteError, run};
use crate::weights::{WeightStore, cache_dir};

/// Arguments of a cluster worker.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator's URL, e.g. http://coordinator:7070 (https:// for TLS).
    #[arg(long, env = "DREAMFARM_COORDINATOR")]
    pub coordinator: String,
    /// The cluster's shared token.
    #[arg(long, env = "DREAMFARM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's TLS certificate.
    #[arg(long, env = "DREAMFARM_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Tiles computed at once on each device, each on its own thread with
    /// its own model copy (1 on a CPU; more to keep a big GPU busy).
    #[arg(long, env = "DREAMFARM_CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Torch device: auto, cpu, cuda or cuda:N; several separated by
    /// commas (cuda:0,cuda:1), or all (every GPU), share the worker's
    /// leases.
    #[arg(long, env = "DREAMFARM_DEVICE", default_value = "auto")]
    pub device: Devices,
    /// Name in the coordinator's logs [default: the host name].
    #[arg(long, env = "DREAMFARM_WORKER_NAME")]
    pub name: Option<String>,
    /// Folder of the model weights (fetched into it when missing)
    /// [default: ~/.cache/dreamfarm/models].
    #[arg(long, env = "DREAMFARM_MODELS", value_parser = models_folder)]
    pub models: Option<PathBuf>,
    /// Folder where the weights files jobs upload (`submit --weights`) are
    /// kept once fetched, the 8 most recently used
    /// [default: ~/.cache/dreamfarm/uploaded-weights].
    #[arg(long, env = "DREAMFARM_WEIGHTS_CACHE")]
    pub weights_cache: Option<PathBuf>,
    /// Seconds to wait on SIGTERM for the tiles in hand to finish before
    /// leaving them to other workers (keep a pod's grace period above it).
    #[arg(long, env = "DREAMFARM_DRAIN_TIMEOUT", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub drain_timeout: u64,
    /// Serve HTTP probes here: /healthz (alive) and /readyz (connected to
    /// the coordinator), e.g. 0.0.0.0:8080 [default: no probes].
    #[arg(long, env = "DREAMFARM_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Serve this worker's tile changes to the workers dreaming the
    /// neighbouring regions of a frame, e.g. 0.0.0.0:7072: the worker then
    /// takes whole regions of frames, which spares the coordinator most of
    /// its work (docs/frame-loop-on-workers.md) [default: tiles only].
    #[arg(long, env = "DREAMFARM_CHANGE_LISTEN")]
    pub change_listen: Option<SocketAddr>,
    /// Where the other workers reach --change-listen: a host (the pod's IP
    /// in Kubernetes), with a port if it is not the one listened on
    /// [default: the --change-listen address].
    #[arg(long, env = "DREAMFARM_CHANGE_ADDRESS", requires = "change_listen", value_parser = dial_address)]
    pub change_address: Option<ChangeAddress>,
    /// Serve --change-listen over TLS with this certificate (PEM), signed
    /// by the CA of --tls-ca and made for --change-tls-name; needed beside
    /// a TLS coordinator (deploy/TLS.md).
    #[arg(long, env = "DREAMFARM_CHANGE_TLS_CERT", requires_all = ["change_listen", "change_tls_key"])]
    pub change_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --change-tls-cert.
    #[arg(long, env = "DREAMFARM_CHANGE_TLS_KEY", requires = "change_tls_cert")]
    pub change_tls_key: Option<PathBuf>,
    /// The name every worker's change certificate carries, which a worker
    /// checks its neighbours' against whatever their address.
    #[arg(long, env = "DREAMFARM_CHANGE_TLS_NAME", default_value = CHANGE_TLS_NAME)]
    pub change_tls_name: String,
    /// The CPU threads it computes with.
    #[command(flatten)]
    pub threads: ThreadsFlag,
}

/// Reads `--models`, a folder. Model names there are a mistake that would
/// otherwise surface tiles later as a download into a folder named after
/// the model: a worker dreams whatever model each job names. A folder of
/// that name that exists is taken as meant.
fn models_folder(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    let is_model = |name: &str| matches!(name.trim().parse(), Ok(ModelSpec::Builtin(_)));
    if value.split(',').all(is_model) && !path.exists() {
        return Err(format!(
            "--models (or DREAMFARM_MODELS) is the folder the model weights are kept in (fetched into it when missing), not a list of models: a worker dreams whichever model each job names. Fix: drop --models (default ~/.cache/dreamfarm/models), or write ./{value} for a folder of that name"
        ));
    }
    Ok(path)
}

/// Reads `--change-address`: a host, with a port or without one (then the
/// port --change-listen listens on), that other workers dial; an IPv6
/// address may come without brackets, as Kubernetes gives a pod's.
fn dial_address(value: &str) -> Result<ChangeAddress, String> {
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        let host = match ip {
            std::net::IpAddr::V4(_) => value.to_string(),
            std::net::IpAddr::V6(_) => format!("[{value}]"),
        };
        return Ok(ChangeAddress { host, port: None });
    }
    let uri: Result<tonic::codegen::http::Uri, _> = format!("http://{value}").parse();
    match uri {
        Ok(uri) if !value.contains(['/', '@']) => {
            let (host, port) = (uri.host().unwrap_or_default(), uri.port_u16());
            // A port given must be a number.
            let port_given = uri.authority().is_some_and(|a| a.as_str() != host);
            if host.is_empty() || port_given && port.is_none() {
                return Err(bad_address(value));
            }
            Ok(ChangeAddress {
                host: host.to_string(),
                port,
            })
        }
        _ => Err(bad_address(value)),
    }
}

/// What a malformed `--change-address` is told.
fn bad_address(value: &str) -> String {
    format!(
        "--change-address (or DREAMFARM_CHANGE_ADDRESS) is a host other workers dial, with or without a port: 10.0.3.7, 10.0.3.7:7072, fd00::7, [fd00::7]:7072 or worker-3.pool, not {value:?}"
    )
}

impl WorkerArgs {
    /// The worker's configuration.
    pub fn config(self) -> RemoteConfig {
        let name = self.name.unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "worker".into())
        });
        RemoteConfig {
            coordinator: self.coordinator,
            token: self.token,
            tls_ca: self.tls_ca,
            concurrency: self.concurrency,
            device: self.device,
            name: format!("{name}/{}", std::process::id()),
            models: self.models.unwrap_or_else(WeightStore::default_dir),
            weights_cache: self
                .weights_cache
                .unwrap_or_else(|| cache_dir().join("uploaded-weights")),
            drain_timeout: Duration::from_secs(self.drain_timeout),
            health_listen: self.health_listen,
            change_listen: self.change_listen,
            change_address: self.change_address,
            change_tls: self
                .change_tls_cert
                .zip(self.change_tls_key)
                .map(|(cert, key)| ChangeTls { cert, key }),
            change_tls_name: self.change_tls_name,
            threads: self.threads,
        }
    }
}

/// Runs a worker until SIGTERM or Ctrl-C (then drains) on a new runtime;
/// returns the tiles it computed. It is the process's work, so it keeps
/// freed memory for reuse (see [`dreamfarm_proto::heap`]) before the
/// runtime's threads start, and takes all the open files its hard limit
/// allows ([`dreamfarm_proto::open_files`]).
pub fn run_until_signal(config: RemoteConfig) -> Result<u64, RemoteError> {
    // A CPU step's activations and gradients are freed and made again every
    // step: mmapped afresh each time, they cost 5% of a 1024×1024 step.
    dreamfarm_proto::heap::keep_freed_memory();
    // A connection to and from each neighbour serving changes.
    dreamfarm_proto::open_files::raise_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RemoteError::Start(format!("the runtime: {e}")))?;
    runtime.block_on(run(config, dreamfarm_proto::signal::shutdown_signal()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_address_is_a_host_with_or_without_a_port() {
        let dial = |v: &str| dial_address(v).map(|a| a.dial(7072));
        for (given, dialled) in [
            ("10.0.3.7:7000", "10.0.3.7:7000"),
            ("10.0.3.7", "10.0.3.7:7072"),
            ("fd00::7", "[fd00::7]:7072"),
            ("[fd00::7]:7000", "[fd00::7]:7000"),
            ("worker-3.pool", "worker-3.pool:7072"),
        ] {
            assert_eq!(dial(given).as_deref(), Ok(dialled), "{given}");
        }
        for bad in [
            "http://10.0.3.7:7072",
            "a b:1",
            "host:port",
            ":7072",
            "u@h:1",
            "",
        ] {
            let said = dial(bad).expect_err(bad);
            assert!(said.contains("is a host other workers dial"), "{said}");
        }
    }

    #[test]
    fn a_model_name_for_the_weights_folder_is_refused_with_the_fix() {
        for names in ["mobilenet-v2", "inception-v3,googlenet"] {
            let said = models_folder(names).expect_err("a model name");
            assert!(
                said.contains(&format!("write ./{names} for a folder")),
                "{said}"
            );
        }
        for folder in ["./mobilenet-v2", "/srv/weights", "weights"] {
            assert_eq!(models_folder(folder), Ok(PathBuf::from(folder)));
        }
    }
}
