//! Frames by regions on real workers: one job on real `dreamfarm worker`s
//! (real models, on this machine's CPU) by tiles, and by regions with the
//! workers serving their changes (`--change-listen`), and by regions with
//! TLS everywhere (the coordinator's gRPC and the workers' change service),
//! side by side in alternating rounds. For the frames after the first
//! (which goes by tiles either way) it reports the seconds per frame, the
//! coordinator's and the workers' CPU seconds per frame and the megabytes
//! per frame on the coordinator's wire; every way must write the same
//! frames.
//!
//!     cargo bench -p dreamfarm-tests --bench real_worker_regions
//!
//! Environment: BENCH_SIZES (default "1920x1080"), BENCH_WORKERS (default
//! 2), BENCH_FRAMES (frames a job, default 3), BENCH_ROUNDS (default 2),
//! BENCH_JOB_ARGS (extra job flags, default "--iterations 1": the
//! coordinator's work a frame does not depend on the steps), BENCH_HOW
//! ("tiles,regions", or some of "tiles", "regions" and "regions-tls":
//! "tiles" with DREAMFARM_BIN measures an older build, whose frames'
//! digest the table shows too).

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant};

use dreamfarm_tests::cluster::{Coordinator, Worker};
use dreamfarm_tests::pki::Pki;
use dreamfarm_tests::{env_or, frame_bytes, frames, median, wait_for};

/// What one job measured over its frames after the first.
struct Measured {
    frame_seconds: f64,
    cpu_per_frame: f64,
    workers_cpu_per_frame: f64,
    mb_per_frame: f64,
    frames: Vec<Vec<u8>>,
}

/// The counters at one moment: the time, the coordinator's CPU seconds,
/// the workers' CPU seconds and the bytes on the coordinator's wire.
fn sample(c: &Coordinator, pool: &[Worker]) -> (Instant, f64, f64, f64) {
    let bytes = c.metric("dreamfarm_bytes_received_total") + c.metric("dreamfarm_bytes_sent_total");
    let workers = pool.iter().map(Worker::cpu_seconds).sum();
    (Instant::now(), c.cpu_seconds(), workers, bytes)
}

/// Runs the job on `workers` fresh workers: by tiles, by regions, or by
/// regions with TLS everywhere (`how`).
fn measure(job: &[&str], frames_wanted: usize, workers: usize, how: &str) -> Measured {
    let pki = Pki::new(&["localhost"]);
    pki.issue("worker", &["dreamfarm-worker"]);
    let (c, flags) = match how {
        "regions-tls" => (
            Coordinator::start_measured_tls(
                &pki.path("server.pem"),
                &pki.path("server-key.pem"),
                &pki.path("ca.pem"),
            ),
            pki.change_tls("worker").to_vec(),
        ),
        _ => (Coordinator::start_measured(), Vec::new()),
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let regions = how != "tiles";
    let pool: Vec<_> = (0..workers)
        .map(|i| {
            let name = format!("w{i}");
            if regions {
                c.worker_serving_changes(&name, &flags)
            } else {
                c.worker(&name)
            }
        })
        .collect();
    let id = c.submit(job);
    let dir = c.frames_dir(&id);
    let written = |dir: &Path| frames(dir).len();
    let limit = Duration::from_secs(3600);
    wait_for("frame 0", limit, || written(&dir) >= 1);
    let (t0, cpu0, workers0, bytes0) = sample(&c, &pool);
    wait_for("the last frame", limit, || written(&dir) >= frames_wanted);
    let (t1, cpu1, workers1, bytes1) = sample(&c, &pool);
    c.wait_done(&id, limit);
    let timed = (frames_wanted - 1) as f64;
    // (An older build has no such metric, and takes no regions.)
    if regions {
        let done = c.metric("dreamfarm_regions_completed_total");
        assert!(done > 0.0, "no region answered");
    }
    Measured {
        frame_seconds: (t1 - t0).as_secs_f64() / timed,
        cpu_per_frame: (cpu1 - cpu0) / timed,
        workers_cpu_per_frame: (workers1 - workers0) / timed,
        mb_per_frame: (bytes1 - bytes0) / timed / 1e6,
        frames: frame_bytes(&dir),
    }
}

fn main() {
    let sizes: String = env_or("BENCH_SIZES", "1920x1080".into());
    let workers = env_or("BENCH_WORKERS", 2usize);
    let frames_wanted = env_or("BENCH_FRAMES", 3usize).max(2);
    let rounds = env_or("BENCH_ROUNDS", 2usize);
    let extra: String = env_or("BENCH_JOB_ARGS", "--iterations 1".into());
    println!(
        "{workers} real CPU workers, frames 1 to {} timed",
        frames_wanted - 1
    );
    println!(
        "size       | round | how         | s/frame | coordinator CPU-s/frame | workers' CPU-s/frame | MB/frame on its wire | frames' digest"
    );
    for size in sizes.split(',') {
        let count = frames_wanted.to_string();
        let mut job = vec![
            "--input",
            "assets/astronaut.png",
            "--size",
            size,
            "--frames",
            &count,
            "--name",
            "regions-bench",
        ];
        job.extend(extra.split_whitespace());
        let hows: String = env_or("BENCH_HOW", "tiles,regions".into());
        let mut cpu: Vec<(&str, Vec<f64>)> = Vec::new();
        for round in 1..=rounds {
            let mut frames_of = Vec::new();
            for how in hows.split(',') {
                let m = measure(&job, frames_wanted, workers, how);
                // The same hash in any build of this bench.
                let mut digest = std::hash::DefaultHasher::new();
                m.frames.hash(&mut digest);
                println!(
                    "{size:10} | {round:5} | {how:11} | {:7.2} | {:23.3} | {:20.1} | {:20.1} | {:016x}",
                    m.frame_seconds,
                    m.cpu_per_frame,
                    m.workers_cpu_per_frame,
                    m.mb_per_frame,
                    digest.finish()
                );
                match cpu.iter_mut().find(|(h, _)| *h == how) {
                    Some((_, v)) => v.push(m.cpu_per_frame),
                    None => cpu.push((how, vec![m.cpu_per_frame])),
                }
                frames_of.push(m.frames);
            }
            assert!(
                frames_of.windows(2).all(|w| w[0] == w[1]),
                "{size}: the frames differ between {hows}"
            );
        }
        for (how, v) in cpu {
            println!(
                "{size}: coordinator CPU-s per frame by {how}, median of {}: {:.3}",
                v.len(),
                median(v)
            );
        }
    }
}
