//! Distributed overhead: the same render through one `dreamfarm worker`
//! over loopback gRPC (coordinator and worker as separate processes) and
//! through the in-process path of `dreamfarm render`, side by side in one
//! run. Both use the default recipe on this machine's CPU with the same
//! thread settings, and must write byte-identical frames; the ratio of their
//! median frame times is the price of the cluster (target ≤ 1.05).
//!
//!     cargo bench -p dreamfarm-tests --bench cluster_overhead
//!
//! Environment: BENCH_SIZES (default "512x512,1920x1080"), BENCH_FRAMES
//! (frames per render, default 4; the first frame, which loads the model,
//! is not timed).

use std::time::Duration;

use dreamfarm_tests::cluster::Coordinator;
use dreamfarm_tests::{dreamfarm, env_or, frame_bytes, frame_seconds, median, run_ok};

fn main() {
    let sizes: String = env_or("BENCH_SIZES", "512x512,1920x1080".into());
    let frames = env_or("BENCH_FRAMES", 4u32).to_string();
    println!("size       | in-process s/frame | 1 worker over gRPC s/frame | ratio");
    for size in sizes.split(',') {
        let job = [
            "--input",
            "assets/astronaut.png",
            "--size",
            size,
            "--frames",
            &frames,
        ];

        let local = tempfile::tempdir().expect("temp dir");
        let out = local.path().to_str().expect("UTF-8 temp path");
        let mut args = vec!["render", "--device", "cpu", "--output", out];
        args.extend_from_slice(&job);
        run_ok(dreamfarm(&args));
        let in_process = median(frame_seconds(local.path()));

        let coordinator = Coordinator::start();
        let _worker = coordinator.worker("bench");
        let mut args = job.to_vec();
        args.extend(["--name", "overhead"]);
        let id = coordinator.submit(&args);
        coordinator.wait_done(&id, Duration::from_secs(3600));
        let remote_dir = coordinator.frames_dir(&id);
        let remote = median(frame_seconds(&remote_dir));
        assert!(
            frame_bytes(&remote_dir) == frame_bytes(local.path()),
            "the cluster's frames differ from the in-process render's"
        );
        println!(
            "{size:10} | {in_process:18.3} | {remote:26.3} | {:.3}",
            remote / in_process
        );
    }
}
