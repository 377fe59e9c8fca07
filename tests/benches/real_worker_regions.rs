//! Frames by regions on real workers: one job on real `dreamfarm worker`s
//! (real models, on this machine's CPU) by tiles, and by regions with the
//! workers serving their changes (`--change-listen`), and by regions with
//! TLS everywhere (the coordinator's gRPC and the workers' change service),
//! side by side in alternating rounds. For the frames after the first
//! (which goes by tiles either way) it reports the seconds per frame, the
//! coordinator's and the workers' CPU seconds per frame, the megabytes
//! per frame on the coordinator's wire, from the workers' `/metrics` how
//! busy their compute threads were, how long a frame's regions waited
//! for their neighbours' changes and how many megabytes of them they
//! fetched from other workers and took from their own (a build before the workers' metrics,
//! through `DREAMFARM_BIN`, shows neither), and the largest peak resident
//! memory of a worker; every way must write the same frames.
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

use dreamfarm_proto::change_channels::CHANGE_TLS_NAME;
use dreamfarm_tests::cluster::{Coordinator, Worker, series};
use dreamfarm_tests::pki::Pki;
use dreamfarm_tests::{env_or, frame_bytes, frames, median, wait_for};

/// What one job measured over its frames after the first.
struct Measured {
    frame_seconds: f64,
    cpu_per_frame: f64,
    workers_cpu_per_frame: f64,
    mb_per_frame: f64,
    /// The workers' busy thread-seconds over their thread-seconds.
    busy: Option<f64>,
    /// Seconds the regions of a frame waited for neighbours' changes,
    /// all workers together.
    wait_per_frame: Option<f64>,
    /// Megabytes of changes a frame's regions fetched from other workers,
    /// and took from their own worker's (none in a build before that).
    changes_mb_per_frame: Option<(f64, Option<f64>)>,
    /// The largest peak resident memory of a worker, GiB.
    worker_peak_gib: f64,
    frames: Vec<Vec<u8>>,
}

/// The counters at one moment.
struct Sample {
    at: Instant,
    /// The coordinator's CPU seconds.
    cpu: f64,
    /// The workers' CPU seconds.
    workers_cpu: f64,
    /// Bytes on the coordinator's wire.
    bytes: f64,
    /// From the workers' `/metrics`, if they serve it.
    workers: Option<WorkerCounts>,
}

/// The workers' counters, summed.
#[derive(Clone, Copy)]
struct WorkerCounts {
    /// Compute threads.
    threads: f64,
    /// Busy thread-seconds.
    busy: f64,
    /// Seconds waited for changes.
    waited: f64,
    /// Bytes of changes fetched from other workers.
    fetched: f64,
    /// Bytes of changes taken from their own worker's, if counted.
    local: Option<f64>,
}

/// Reads the counters now.
fn sample(c: &Coordinator, pool: &[Worker], regions: bool) -> Sample {
    let bytes = c.metric("dreamfarm_bytes_received_total") + c.metric("dreamfarm_bytes_sent_total");
    // Each worker's page read once (a build before the workers' metrics
    // has none to read).
    let pages: Option<Vec<String>> = pool.iter().map(Worker::metrics_page).collect();
    let workers = pages.map(|pages| {
        let all = |name: &str| pages.iter().map(|p| series(p, name)).sum::<Option<f64>>();
        let sum = |name: &str| all(name).unwrap_or_else(|| panic!("no metric {name}"));
        let of_regions = |name: &str| if regions { sum(name) } else { 0.0 };
        WorkerCounts {
            threads: sum("dreamfarm_worker_compute_threads"),
            busy: sum("dreamfarm_worker_busy_seconds_total"),
            waited: of_regions("dreamfarm_worker_change_wait_seconds_total"),
            fetched: of_regions("dreamfarm_worker_change_bytes_total{way=\"fetched\"}"),
            local: all("dreamfarm_worker_change_bytes_total{way=\"local\"}"),
        }
    });
    Sample {
        at: Instant::now(),
        cpu: c.cpu_seconds(),
        workers_cpu: pool.iter().map(Worker::cpu_seconds).sum(),
        bytes,
        workers,
    }
}

/// Runs the job on `workers` fresh workers: by tiles, by regions, or by
/// regions with TLS everywhere (`how`).
fn measure(job: &[&str], frames_wanted: usize, workers: usize, how: &str) -> Measured {
    // Held until the workers are gone: their certificates live in it.
    let mut pki = None;
    let (c, flags) = match how {
        "regions-tls" => {
            let made = pki.insert(Pki::new(&["localhost"]));
            made.issue("worker", &[CHANGE_TLS_NAME]);
            (
                Coordinator::start_measured_tls(
                    &made.path("server.pem"),
                    &made.path("server-key.pem"),
                    &made.path("ca.pem"),
                ),
                made.change_tls("worker").to_vec(),
            )
        }
        _ => (Coordinator::start_measured(), Vec::new()),
    };
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.extend(["--health-listen", "127.0.0.1:0"]);
    let regions = how != "tiles";
    let pool: Vec<_> = (0..workers)
        .map(|i| {
            let name = format!("w{i}");
            if regions {
                c.worker_serving_changes(&name, &flags)
            } else {
                c.worker_with(&name, &flags)
            }
        })
        .collect();
    let id = c.submit(job);
    let dir = c.frames_dir(&id);
    let written = |dir: &Path| frames(dir).len();
    let limit = Duration::from_secs(3600);
    wait_for("frame 0", limit, || written(&dir) >= 1);
    let first = sample(&c, &pool, regions);
    wait_for("the last frame", limit, || written(&dir) >= frames_wanted);
    let last = sample(&c, &pool, regions);
    c.wait_done(&id, limit);
    let timed = (frames_wanted - 1) as f64;
    // (An older build has no such metric, and takes no regions.)
    if regions {
        let done = c.metric("dreamfarm_regions_completed_total");
        assert!(done > 0.0, "no region answered");
    }
    let seconds = (last.at - first.at).as_secs_f64();
    let workers = first.workers.zip(last.workers);
    Measured {
        frame_seconds: seconds / timed,
        cpu_per_frame: (last.cpu - first.cpu) / timed,
        workers_cpu_per_frame: (last.workers_cpu - first.workers_cpu) / timed,
        mb_per_frame: (last.bytes - first.bytes) / timed / 1e6,
        busy: workers.map(|(w0, w1)| (w1.busy - w0.busy) / (seconds * w0.threads)),
        wait_per_frame: workers
            .filter(|_| regions)
            .map(|(w0, w1)| (w1.waited - w0.waited) / timed),
        changes_mb_per_frame: workers.filter(|_| regions).map(|(w0, w1)| {
            let mb = |a: f64, b: f64| (b - a) / timed / 1e6;
            (
                mb(w0.fetched, w1.fetched),
                w0.local.zip(w1.local).map(|(a, b)| mb(a, b)),
            )
        }),
        worker_peak_gib: pool.iter().map(Worker::peak_rss_gib).fold(0.0, f64::max),
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
        "size       | round | how         | s/frame | coordinator CPU-s/frame | workers' CPU-s/frame | MB/frame on its wire | workers busy | changes waited s/frame | changes MB/frame fetched, local | worker peak GiB | frames' digest"
    );
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "–".into());
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
                    "{size:10} | {round:5} | {how:11} | {:7.2} | {:23.3} | {:20.1} | {:20.1} | {:>12} | {:>22} | {:>31} | {:15.2} | {:016x}",
                    m.frame_seconds,
                    m.cpu_per_frame,
                    m.workers_cpu_per_frame,
                    m.mb_per_frame,
                    or_dash(m.busy.map(|b| format!("{:.0}%", b * 100.0))),
                    or_dash(m.wait_per_frame.map(|w| format!("{w:.2}"))),
                    or_dash(m.changes_mb_per_frame.map(|(fetched, local)| format!(
                        "{fetched:.1}, {}",
                        or_dash(local.map(|l| format!("{l:.1}")))
                    ))),
                    m.worker_peak_gib,
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
