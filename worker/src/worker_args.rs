//! The worker's command line, shared by `dreamfarm-worker` and
//! `dreamfarm worker`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use dreamfarm_common::device::Devices;
use dreamfarm_common::model_catalog::ModelSpec;

use crate::remote::{RemoteConfig, RemoteError, run};
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
        }
    }
}

/// Runs a worker until SIGTERM or Ctrl-C (then drains) on a new runtime;
/// returns the tiles it computed. It is the process's work, so it keeps
/// freed memory for reuse (see [`dreamfarm_proto::heap`]) before the
/// runtime's threads start.
pub fn run_until_signal(config: RemoteConfig) -> Result<u64, RemoteError> {
    // A CPU step's activations and gradients are freed and made again every
    // step: mmapped afresh each time, they cost 5% of a 1024×1024 step.
    dreamfarm_proto::heap::keep_freed_memory();
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
