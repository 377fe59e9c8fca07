//! The trade-off behind the default lease size k (`iterations_per_lease`,
//! gradient steps a worker runs per lease; 0 = all of an octave's steps):
//! a smaller k stitches the tiles together more often, which can only help
//! seams, but every stitch is a barrier over the whole octave and another
//! round trip of every tile's pixels.
//!
//!     cargo bench -p dreamfarm-tests --bench lease_iterations
//!
//! For each k: the seam measures of the seam test (a 512×512 dream on
//! 128-pixel tiles, 8 steps), and one `dreamfarm worker` over loopback gRPC
//! rendering the default recipe at 512×512: median seconds per frame,
//! leases per frame and bytes on the wire per frame. Environment: BENCH_K
//! (default "1,2,4,0"), BENCH_FRAMES (default 3; the first is not timed).

use std::time::Duration;

use dreamfarm_tests::cluster::Coordinator;
use dreamfarm_tests::seams::{SEAM_TILE, SeamMeasures, inner_boundaries, tiled_change};
use dreamfarm_tests::{env_or, frame_seconds, median};

fn main() {
    let ks: String = env_or("BENCH_K", "1,2,4,0".into());
    let frames: u32 = env_or("BENCH_FRAMES", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let borders = inner_boundaries(512, SEAM_TILE);
    let coordinator = Coordinator::start();
    let _worker = coordinator.worker("bench");
    let wire = |c: &Coordinator| {
        (
            c.metric("dreamfarm_tiles_completed_total"),
            c.metric("dreamfarm_bytes_received_total") + c.metric("dreamfarm_bytes_sent_total"),
        )
    };
    println!(
        "k   | seam edge ratio | blend-band contrast ratio | s/frame (512x512, 1 worker) | leases/frame | MB/frame"
    );
    for k in ks.split(',') {
        let flags = ["--iterations-per-lease", k];
        let seams = SeamMeasures::of(&tiled_change(dir.path(), 48, 16, &flags), &borders, 16);
        let before = wire(&coordinator);
        let frames_arg = frames.to_string();
        let mut job = vec![
            "--input",
            "assets/astronaut.png",
            "--size",
            "512x512",
            "--frames",
            &frames_arg,
            "--name",
            "lease",
        ];
        job.extend_from_slice(&flags);
        let id = coordinator.submit(&job);
        coordinator.wait_done(&id, Duration::from_secs(3600));
        let after = wire(&coordinator);
        let leases = (after.0 - before.0) / f64::from(frames);
        let megabytes = (after.1 - before.1) / f64::from(frames) / 1e6;
        let label = if k == "0" { "all" } else { k };
        println!(
            "{label:3} | {:15.3} | {:25.3} | {:27.3} | {:12.0} | {:8.1}",
            seams.edge_ratio(),
            seams.contrast_ratio(),
            median(frame_seconds(&coordinator.frames_dir(&id))),
            leases,
            megabytes
        );
    }
}
