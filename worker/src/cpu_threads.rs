//! The CPU threads a process computes with.
//!
//! libtorch sizes its thread pool by the machine's cores (or
//! `OMP_NUM_THREADS`), blind to a container's CPU limit (`docker --cpus`,
//! a Kubernetes `limits.cpu`, any cgroup quota) and to the CPUs a pod
//! asked for. In a limit it runs more threads than it has CPU time for,
//! and they wait for each other at every barrier while the kernel
//! throttles them: a frame took 1.65× as long in a 1-CPU quota on two
//! cores (README, "CPU threads"). So a process decides its count once, at
//! start, and every thread that runs libtorch takes it: OpenMP keeps the
//! count per thread, and a new thread whose first operation is a oneDNN
//! convolution would otherwise run it with the process's default.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Args;
use dreamfarm_common::parallel;

/// libtorch's threads for the network, once decided; 0 before.
static TORCH_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The `--threads` flag of `render`, `dream` and `worker`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ThreadsFlag {
    /// CPU threads for the network on a CPU (each tile computed at once
    /// gets this many) and for the host image work; in Kubernetes, the
    /// CPUs the pod requests [default: the CPUs this process may use, its
    /// affinity and its container's CPU limit, at most libtorch's count of
    /// the machine's cores; OMP_NUM_THREADS, when set, for the network].
    #[arg(long, env = "DREAMFARM_THREADS", value_parser = parallel::parse_threads)]
    pub threads: Option<NonZeroUsize>,
}

/// Why the network's thread count is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadsFrom {
    /// `--threads` (or `DREAMFARM_THREADS`).
    Flag,
    /// `OMP_NUM_THREADS`, which libtorch reads itself.
    OmpNumThreads,
    /// The CPUs the process may use, fewer than the machine's cores.
    CpuLimit,
    /// libtorch's count of the machine's cores, none fewer being allowed.
    Machine,
}

/// What a process computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuThreads {
    /// libtorch's threads for each tile computed on a CPU, as it reports
    /// them.
    pub torch: usize,
    /// Threads the host image work is split into.
    pub host: usize,
    /// Why `torch` is what it is.
    pub from: ThreadsFrom,
}

impl ThreadsFlag {
    /// Decides the process's thread counts and gives libtorch (this thread,
    /// and every thread that calls [`enter_compute_thread`]) and the host
    /// work theirs; logs them. Call it before any tile is computed.
    pub fn apply(self) -> CpuThreads {
        let flag = self.threads;
        let library = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let omp_set = std::env::var_os("OMP_NUM_THREADS").is_some();
        let (torch, from) = decide(flag, omp_set, library, cpus);
        TORCH_THREADS.store(torch, Ordering::Relaxed);
        enter_compute_thread();
        if let Some(n) = flag {
            parallel::set_threads(n);
        }
        let threads = CpuThreads {
            // What libtorch says it now runs with, not only what it was told.
            torch: usize::try_from(tch::get_num_threads()).unwrap_or(torch),
            host: parallel::threads(),
            from,
        };
        tracing::info!(
            network = threads.torch,
            host_work = threads.host,
            from = ?threads.from,
            "CPU threads"
        );
        threads
    }
}

/// The network's thread count: the flag's, else libtorch's own (which
/// read `OMP_NUM_THREADS` when set, and otherwise counted the machine's
/// cores) lowered to the CPUs the process may use.
fn decide(
    flag: Option<NonZeroUsize>,
    omp_set: bool,
    library: usize,
    cpus: usize,
) -> (usize, ThreadsFrom) {
    match flag {
        Some(n) => (n.get(), ThreadsFrom::Flag),
        None if omp_set => (library, ThreadsFrom::OmpNumThreads),
        None if cpus < library => (cpus.max(1), ThreadsFrom::CpuLimit),
        None => (library, ThreadsFrom::Machine),
    }
}

/// Gives the calling thread the process's libtorch thread count; call it
/// first in every thread that runs libtorch. Does nothing before
/// [`ThreadsFlag::apply`].
pub fn enter_compute_thread() {
    let n = TORCH_THREADS.load(Ordering::Relaxed);
    if let Ok(n @ 1..) = i32::try_from(n) {
        tch::set_num_threads(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_omp_then_the_fewer_of_the_cpus_and_the_cores() {
        let n = NonZeroUsize::new;
        use ThreadsFrom::*;
        assert_eq!(decide(n(3), true, 8, 2), (3, Flag));
        assert_eq!(decide(None, true, 8, 2), (8, OmpNumThreads));
        // A 2-CPU limit on a 16-core machine.
        assert_eq!(decide(None, false, 16, 2), (2, CpuLimit));
        // Hyper-threads: libtorch counts physical cores, fewer than the
        // CPUs, and keeps its count.
        assert_eq!(decide(None, false, 8, 16), (8, Machine));
        assert_eq!(decide(None, false, 2, 2), (2, Machine));
    }
}
