//! One job across a pool: how the frame time of ONE job falls as workers
//! are added, at 1080p and 4K, for a per-tile time of 0.1 s and 1 s.
//!
//!     cargo bench -p dreamfarm-tests --bench one_job_scaling
//!     BENCH_JOB_ARGS="--parallelism 32" cargo bench -p dreamfarm-tests --bench one_job_scaling
//!
//! The coordinator is the real binary running one real job (the default
//! recipe, or the flags in BENCH_JOB_ARGS); the workers are the synthetic
//! ones of `coordinator_capacity` (real wire protocol, a fixed delay in
//! place of a GPU, a zero change back). For each worker count the bench
//! waits for frame 0, then times the next BENCH_FRAMES frames and reports:
//! seconds per frame; parallel efficiency = time on 1 worker / (N × time on
//! N), against the smallest count run; the share of the workers' time they
//! were busy; the coordinator's CPU seconds per frame and as a share of one
//! core over the frame (the job's frame loop is one thread: near 100% it is
//! the limit); the megabytes per frame on the wire; and the leases per
//! frame (fewer than tiles with `--tile-batch`).
//!
//! Environment: BENCH_SIZES (default "1920x1080,3840x2160"),
//! BENCH_TILE_SECONDS (default "0.1,1"), BENCH_WORKERS (default
//! "1,2,4,8,16,32,64"), BENCH_FRAMES (frames timed, default 1),
//! BENCH_JOB_ARGS (extra job flags), DREAMFARM_BIN (the coordinator to run),
//! BENCH_REGIONS (1: the workers serve changes and take region leases, so
//! the frames after the first are dreamed by regions; default 0).

use std::path::Path;
use std::time::{Duration, Instant};

use dreamfarm_tests::cluster::Coordinator;
use dreamfarm_tests::env_or;
use dreamfarm_tests::synthetic_worker::{SyntheticPool, endless_job};

/// Complete frames in a job's frames folder.
fn frames_written(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_suffix(".png")
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count()
    })
}

/// The job's counters at one moment.
struct Sample {
    at: Instant,
    cpu: f64,
    bytes: f64,
    tiles: u64,
    leases: f64,
}

/// What one worker count measured.
struct Point {
    workers: usize,
    frame_seconds: f64,
    busy: f64,
    cpu_per_frame: f64,
    mb_per_frame: f64,
    leases_per_frame: f64,
}

/// Waits until `dir` holds `frames` frames.
fn wait_frames(
    coordinator: &Coordinator,
    pool: &SyntheticPool,
    dir: &Path,
    frames: usize,
    limit: Duration,
) {
    let start = Instant::now();
    while frames_written(dir) < frames {
        pool.assert_working();
        assert!(
            start.elapsed() < limit,
            "frame {frames} did not come within {limit:?}: {}",
            coordinator.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one job of `size` on `workers` synthetic workers of per-tile time
/// `delay` and times `frames` frames after the first.
fn measure(
    runtime: &tokio::runtime::Runtime,
    size: &str,
    job_args: &[&str],
    workers: usize,
    delay: Duration,
    frames: usize,
) -> Point {
    let coordinator = Coordinator::start_measured();
    let regions = env_or("BENCH_REGIONS", 0) == 1;
    let pool = SyntheticPool::start_with(runtime, &coordinator.url, workers, delay, regions);
    let id = coordinator.submit(&endless_job(size, "scaling", job_args));
    let dir = coordinator.frames_dir(&id);
    let limit = Duration::from_secs(1800);
    wait_frames(&coordinator, &pool, &dir, 1, limit);
    let sample = || Sample {
        at: Instant::now(),
        cpu: coordinator.cpu_seconds(),
        bytes: coordinator.metric("dreamfarm_bytes_received_total")
            + coordinator.metric("dreamfarm_bytes_sent_total"),
        tiles: pool.tiles_done(),
        leases: coordinator.metric("dreamfarm_leases_completed_total"),
    };
    let first = sample();
    wait_frames(&coordinator, &pool, &dir, 1 + frames, limit);
    let last = sample();
    drop(pool);
    let seconds = last.at.duration_since(first.at).as_secs_f64();
    let n = frames as f64;
    Point {
        workers,
        frame_seconds: seconds / n,
        busy: (last.tiles - first.tiles) as f64 * delay.as_secs_f64() / (workers as f64 * seconds),
        cpu_per_frame: (last.cpu - first.cpu) / n,
        mb_per_frame: (last.bytes - first.bytes) / n / 1e6,
        leases_per_frame: (last.leases - first.leases) / n,
    }
}

fn main() {
    let sizes: String = env_or("BENCH_SIZES", "1920x1080,3840x2160".into());
    let delays: String = env_or("BENCH_TILE_SECONDS", "0.1,1".into());
    let counts: String = env_or("BENCH_WORKERS", "1,2,4,8,16,32,64".into());
    let frames: usize = env_or("BENCH_FRAMES", 1);
    let job_args: String = env_or("BENCH_JOB_ARGS", String::new());
    let job_args: Vec<&str> = job_args.split_whitespace().collect();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    println!(
        "one job, job flags [{}], {frames} frame(s) timed after frame 0",
        job_args.join(" ")
    );
    for size in sizes.split(',') {
        for delay in delays.split(',') {
            let delay: f64 = delay.parse().expect("BENCH_TILE_SECONDS: seconds");
            println!("\n{size}, {delay} s per tile");
            println!(
                "workers | s/frame | parallel efficiency | workers busy | coordinator CPU s/frame (of one core) | MB/frame on the wire | leases/frame"
            );
            let mut serial: Option<f64> = None;
            for workers in counts.split(',') {
                let workers: usize = workers.parse().expect("BENCH_WORKERS: counts");
                let p = measure(
                    &runtime,
                    size,
                    &job_args,
                    workers,
                    Duration::from_secs_f64(delay),
                    frames,
                );
                // Time on one worker, or the smallest count run scaled up.
                let one = *serial.get_or_insert(p.frame_seconds * p.workers as f64);
                println!(
                    "{:7} | {:7.2} | {:19.0}% | {:11.0}% | {:14.3} ({:3.0}%) | {:20.0} | {:.0}",
                    p.workers,
                    p.frame_seconds,
                    100.0 * one / (p.workers as f64 * p.frame_seconds),
                    100.0 * p.busy,
                    p.cpu_per_frame,
                    100.0 * p.cpu_per_frame / p.frame_seconds,
                    p.mb_per_frame,
                    p.leases_per_frame
                );
            }
        }
    }
}
