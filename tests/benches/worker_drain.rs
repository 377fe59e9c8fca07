//! How long a worker takes to leave after SIGTERM when it has just started
//! a lease of the default tile size on the CPU, the slowest device we
//! support: the floor for DREAMFARM_DRAIN_TIMEOUT and for the Kubernetes
//! grace period above it (deploy/k8s, checked by tests/manifests.rs).
//!
//!     cargo bench -p dreamfarm-tests --bench worker_drain
//!
//! A 3072×3072 input at one octave with the default dream settings gives
//! leases of 1024-pixel tiles with their full 64-pixel margins (a
//! 1152×1152 input each, 10 gradient steps). A CPU `dreamfarm-worker`
//! joins; the moment the coordinator's metrics show a lease in flight it
//! gets SIGTERM, and the time until it exits is the drain. `BENCH_RUNS`
//! (default 3) workers in turn; reported: median and worst, and the
//! workers' peak RSS (what a CPU worker pod must be given).

use std::time::{Duration, Instant};

use dreamfarm_tests::cluster::{Coordinator, TOKEN, Worker};
use dreamfarm_tests::{env_or, median, repo, wait_for, worker_binary};

fn main() {
    let runs: usize = env_or("BENCH_RUNS", 3);
    let c = Coordinator::start();
    let input = tempfile::Builder::new()
        .suffix(".png")
        .tempfile()
        .expect("temp file");
    image::RgbImage::from_fn(3072, 3072, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8])
    })
    .save(input.path())
    .expect("input written");
    let input = input.path().to_str().expect("UTF-8 path");
    let job = c.submit(&["--input", input, "--frames", "1", "--octaves", "1"]);
    let (mut drains, mut peaks) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let log = c.dir.path().join(format!("drain-{run}.log"));
        let weights_cache = c.dir.path().join(format!("drain-{run}-weights"));
        let child = std::process::Command::new(worker_binary())
            .args(["--coordinator", &c.url, "--token", TOKEN, "--device", "cpu"])
            .args(["--name", &format!("drain-{run}"), "--drain-timeout", "3600"])
            .env("DREAMFARM_WEIGHTS_CACHE", &weights_cache)
            .current_dir(repo())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("worker starts");
        let mut worker = Worker {
            child,
            log,
            weights_cache,
        };
        wait_for("a lease in flight", Duration::from_secs(600), || {
            c.metric("dreamfarm_leases_in_flight") >= 1.0
        });
        let signalled = Instant::now();
        worker.signal(libc::SIGTERM);
        // Its peak RSS, read until it exits (the lease's peak is the
        // worker's: the memory request of a CPU worker pod).
        let mut peak_kib = 0u64;
        let status = loop {
            if let Some(status) = worker.child.try_wait().expect("wait") {
                break status;
            }
            peak_kib = peak_kib.max(vm_hwm_kib(worker.child.id()));
            std::thread::sleep(Duration::from_millis(100));
        };
        let drain = signalled.elapsed().as_secs_f64();
        peaks.push(peak_kib as f64 / (1024.0 * 1024.0));
        assert!(status.success(), "worker failed: {}", worker.log());
        println!("run {run}: drained in {drain:.1} s");
        drains.push(drain);
        wait_for(
            "the lease back in the queue",
            Duration::from_secs(60),
            || c.metric("dreamfarm_leases_in_flight") == 0.0,
        );
    }
    println!("job {job}: 1024-px tiles on the CPU");
    println!(
        "drain after SIGTERM: median {:.1} s, worst {:.1} s over {runs} runs",
        median(drains.clone()),
        drains.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "worker peak RSS: {:.2} GiB",
        peaks.iter().cloned().fold(0.0, f64::max)
    );
}

/// The process's peak resident set (VmHWM) in KiB; 0 once it is gone.
fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
