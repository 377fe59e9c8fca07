//! Coordinator start-up with a large job store: how long a restarted
//! coordinator takes from exec to listening when its store holds many jobs
//! (target: under 2 s with 1,000).
//!
//!     cargo bench -p dreamfarm-tests --bench coordinator_start
//!
//! The store is filled through the real path: `BENCH_JOBS` (default 1000)
//! jobs submitted over gRPC to a real coordinator whose memory budget lets
//! only one of them run, so the rest stay queued, each with its record and
//! events. No worker is connected. Then the coordinator is killed with
//! SIGKILL and restarted `BENCH_RUNS` times (default 5); every restart
//! re-reads every job, checks the store's integrity, queues the active
//! ones again and logs a `restarted` event for each. Reported: the median
//! and worst time to the "listening" line, and the store's size.

use std::time::Instant;

use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::pb::job_service_client::JobServiceClient;
use dreamfarm_proto::pb::submit_request::Body;
use dreamfarm_proto::pb::{ListRequest, SubmitRequest, SubmitStart};
use dreamfarm_tests::cluster::{Coordinator, TOKEN};
use dreamfarm_tests::{env_or, median};

/// A small PNG to upload as every job's input.
fn small_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(128, 96, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode");
    bytes.into_inner()
}

fn main() {
    let jobs: usize = env_or("BENCH_JOBS", 1000);
    let runs: usize = env_or("BENCH_RUNS", 5);
    let mut c = Coordinator::start_with(&["--max-memory", "200MiB"]);
    let input = small_png();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let filled = Instant::now();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(c.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let token = AttachToken::new(Some(TOKEN)).expect("token");
        let mut client = JobServiceClient::with_interceptor(channel, token);
        let job_toml = "input = \"input\"\nframes = 100\n[dream]\noctaves = 2\n".to_string();
        for i in 0..jobs {
            let messages = vec![
                SubmitRequest {
                    body: Some(Body::Start(SubmitStart {
                        job_toml: job_toml.clone(),
                        name: format!("job{i}"),
                        input_bytes: input.len() as u64,
                        priority: (i % 3) as i32,
                        ..SubmitStart::default()
                    })),
                },
                SubmitRequest {
                    body: Some(Body::InputChunk(input.clone())),
                },
            ];
            client
                .submit(tokio_stream::iter(messages))
                .await
                .expect("submit");
        }
        let mut replies = client
            .list(ListRequest::default())
            .await
            .expect("list")
            .into_inner();
        let mut listed = 0;
        while let Some(reply) = replies.message().await.expect("a list reply") {
            listed += reply.jobs.len();
        }
        assert_eq!(listed, jobs);
    });
    eprintln!(
        "store filled with {jobs} jobs in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let mut seconds = Vec::new();
    for _ in 0..runs {
        c.kill();
        let started = Instant::now();
        c.restart();
        seconds.push(started.elapsed().as_secs_f64());
    }
    let store = c.data().join("jobs.sqlite");
    let size = std::fs::metadata(&store).map_or(0, |m| m.len())
        + std::fs::metadata(store.with_extension("sqlite-wal")).map_or(0, |m| m.len());
    let worst = seconds.iter().copied().fold(0.0, f64::max);
    println!(
        "coordinator start with {jobs} jobs in the store: median {:.3} s, worst {worst:.3} s over {runs} restarts (store {:.1} MB)",
        median(seconds),
        size as f64 / 1e6
    );
}
