//! Workers serving changes checking each other as they join: a whole pool
//! joining at once, as it does after a coordinator restart, makes one
//! check per ordered pair of workers (64 workers: 4,032 `Reach` calls),
//! and frames go by tiles until they are all in.
//!
//!     cargo bench -p dreamfarm-tests --bench exchange_checks
//!
//! The coordinator is the real binary; the workers are the synthetic ones
//! of `coordinator_capacity` serving changes on loopback (real protocol,
//! real change services and checks). For each worker count the pool
//! starts at once; reported are the seconds from the first session to the
//! coordinator's "the N workers serving changes reach each other's change
//! services", and the coordinator's CPU seconds over that time.
//!
//! Environment: BENCH_WORKERS (default "8,32,64").

use std::time::{Duration, Instant};

use dreamfarm_tests::cluster::Coordinator;
use dreamfarm_tests::env_or;
use dreamfarm_tests::synthetic_worker::SyntheticPool;

fn main() {
    let counts: String = env_or("BENCH_WORKERS", "8,32,64".into());
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    println!("| workers | checks | seconds to settled | coordinator CPU s |");
    println!("|---|---|---|---|");
    for workers in counts.split(',') {
        let workers: usize = workers.trim().parse().expect("BENCH_WORKERS: counts");
        let coordinator = Coordinator::start_measured();
        let cpu = coordinator.cpu_seconds();
        let started = Instant::now();
        let pool =
            SyntheticPool::start_with(&runtime, &coordinator.url, workers, Duration::ZERO, true);
        let settled =
            format!("the {workers} workers serving changes reach each other's change services");
        while !coordinator.log().contains(&settled) {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{workers} workers never reached each other: {}",
                coordinator.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = coordinator.cpu_seconds() - cpu;
        println!(
            "| {workers} | {} | {seconds:.2} | {cpu:.2} |",
            workers * (workers - 1)
        );
        drop(pool);
    }
}
