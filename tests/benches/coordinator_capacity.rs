//! Coordinator capacity: how many tiles per second, and bytes per second,
//! one `dreamfarm coordinator` process sustains, and so how many GPUs of a
//! given per-tile time it can keep busy at 1080p and 4K.
//!
//!     cargo bench -p dreamfarm-tests --bench coordinator_capacity
//!
//! The coordinator is the real binary, running real jobs (the default
//! recipe: every octave split into tiles, stitched, frames written as
//! PNG). The workers are synthetic, and exist only in this bench: they
//! speak the real wire protocol over loopback, take each lease's pixels,
//! wait a fixed delay in place of a GPU, and return a correctly-shaped
//! (zero) change. Two runs per frame size, each measured over a steady
//! window after warm-up:
//!
//! - saturation: delay 0, so the coordinator is the bottleneck; gives its
//!   tiles/s, MB/s and CPU seconds per tile;
//! - stated: `BENCH_WORKERS` workers each taking `BENCH_TILE_SECONDS` per
//!   tile; gives the share of their time they are kept busy.
//!
//! GPUs of per-tile time t a coordinator can keep busy = saturated tiles/s
//! × t. Environment: BENCH_SIZES (default "1920x1080,3840x2160"),
//! BENCH_JOBS (concurrent jobs, default 8), BENCH_WORKERS (default 32),
//! BENCH_TILE_SECONDS (default 1.5), BENCH_WINDOW (seconds, default 20),
//! BENCH_WIRE (the jobs' wire precision, f32 or f16; default f32),
//! BENCH_REGIONS (1: the workers serve changes and take region leases, so
//! each job's frames after the first are dreamed by regions; default 0).

use std::time::{Duration, Instant};

use dreamfarm_tests::cluster::Coordinator;
use dreamfarm_tests::synthetic_worker::{SyntheticPool, endless_job};
use dreamfarm_tests::{env_or, run};

/// The coordinator's counters at one moment.
struct Sample {
    at: Instant,
    tiles: f64,
    bytes: f64,
    cpu: f64,
}

fn sample(c: &Coordinator) -> Sample {
    Sample {
        at: Instant::now(),
        tiles: c.metric("dreamfarm_tiles_completed_total"),
        bytes: c.metric("dreamfarm_bytes_received_total") + c.metric("dreamfarm_bytes_sent_total"),
        cpu: c.cpu_seconds(),
    }
}

/// What one run measured over its window.
struct Measured {
    tiles_per_second: f64,
    mb_per_second: f64,
    cpu_per_tile: f64,
    busy: f64,
    peak_rss_gib: f64,
}

/// Runs `jobs` jobs of `size` with pixels in `wire` precision on `workers`
/// synthetic workers of per-tile time `delay` and measures the coordinator
/// over `window`.
fn measure(
    runtime: &tokio::runtime::Runtime,
    size: &str,
    wire: &str,
    jobs: usize,
    workers: usize,
    delay: Duration,
    window: Duration,
) -> Measured {
    let coordinator = Coordinator::start_measured();
    let regions = env_or("BENCH_REGIONS", 0) == 1;
    let pool = SyntheticPool::start_with(runtime, &coordinator.url, workers, delay, regions);
    let names: Vec<String> = (0..jobs).map(|j| format!("capacity{j}")).collect();
    let ids: Vec<String> = names
        .iter()
        .map(|name| coordinator.submit(&endless_job(size, name, &["--wire-precision", wire])))
        .collect();
    // Warm up: every job under way.
    let warm = Instant::now();
    while coordinator.metric("dreamfarm_tiles_completed_total") < 2.0 * jobs as f64 {
        pool.assert_working();
        assert!(
            warm.elapsed() < Duration::from_secs(300),
            "no progress: {}",
            coordinator.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        coordinator.metric("dreamfarm_workers"),
        workers as f64,
        "every synthetic worker is connected"
    );
    let (first, done_before) = (sample(&coordinator), pool.tiles_done());
    std::thread::sleep(window);
    let (last, done_after) = (sample(&coordinator), pool.tiles_done());
    // A worker that stopped in the window would leave it short of workers.
    pool.assert_working();
    let peak_rss_gib = coordinator.peak_rss_gib();
    for id in &ids {
        let _ = run(coordinator.client("cancel", &[id]));
    }
    drop(pool);
    let seconds = last.at.duration_since(first.at).as_secs_f64();
    let tiles = last.tiles - first.tiles;
    Measured {
        tiles_per_second: tiles / seconds,
        mb_per_second: (last.bytes - first.bytes) / seconds / 1e6,
        cpu_per_tile: (last.cpu - first.cpu) / tiles.max(1.0),
        busy: (done_after - done_before) as f64 * delay.as_secs_f64() / (workers as f64 * seconds),
        peak_rss_gib,
    }
}

fn main() {
    let sizes: String = env_or("BENCH_SIZES", "1920x1080,3840x2160".into());
    let jobs: usize = env_or("BENCH_JOBS", 8);
    let workers: usize = env_or("BENCH_WORKERS", 32);
    let tile_seconds: f64 = env_or("BENCH_TILE_SECONDS", 1.5);
    let window = Duration::from_secs_f64(env_or("BENCH_WINDOW", 20.0));
    let wire: String = env_or("BENCH_WIRE", "f32".into());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    println!(
        "{jobs} concurrent jobs, default recipe, {wire} pixels on the wire; saturation: {workers} workers with no delay; stated: {workers} workers of {tile_seconds} s per tile"
    );
    println!(
        "size       | saturated tiles/s | MB/s  | coordinator CPU s/tile | GPUs of {tile_seconds} s/tile it can feed | stated run: tiles/s, workers busy | peak RSS GiB"
    );
    for size in sizes.split(',') {
        let saturated = measure(&runtime, size, &wire, jobs, workers, Duration::ZERO, window);
        let stated = measure(
            &runtime,
            size,
            &wire,
            jobs,
            workers,
            Duration::from_secs_f64(tile_seconds),
            window,
        );
        println!(
            "{size:10} | {:17.1} | {:5.0} | {:22.4} | {:28.1} | {:.1}, {:.0}% | {:.2}",
            saturated.tiles_per_second,
            saturated.mb_per_second,
            saturated.cpu_per_tile,
            saturated.tiles_per_second * tile_seconds,
            stated.tiles_per_second,
            100.0 * stated.busy,
            saturated.peak_rss_gib.max(stated.peak_rss_gib)
        );
    }
}
