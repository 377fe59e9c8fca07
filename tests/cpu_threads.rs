//! The CPU threads a process computes with: a worker given `--threads 1`
//! spends one core's time while it dreams, however many cores the machine
//! has (and a coordinator splits its host work as told), and a process in a CPU limit (a container's) computes on as many
//! threads as the limit allows rather than on every core of the machine.

use std::time::Duration;

use dreamfarm_tests::cgroup_limit::CgroupLimit;
use dreamfarm_tests::cluster::Coordinator;
use dreamfarm_tests::{dreamfarm, one_step_still, run, wait_for};

/// Longest a step of these tests may take.
const LIMIT: Duration = Duration::from_secs(240);

/// CPU seconds a worker may spend beyond its busy seconds × threads: its
/// session, the tiles' pixels on the wire and its log, over the job.
const OUTSIDE_TILES_CPU_SECONDS: f64 = 1.0;

#[test]
fn a_worker_given_one_thread_dreams_on_one_core() {
    let c = Coordinator::start_with(&["--threads", "1"]);
    // The coordinator splits its host work as told.
    assert_eq!(c.metric("dreamfarm_host_threads"), 1.0);
    let w = c.worker_with("w", &["--threads", "1", "--health-listen", "127.0.0.1:0"]);
    wait_for("the worker to connect", LIMIT, || {
        c.metric("dreamfarm_workers") == 1.0
    });
    assert_eq!(w.metric("dreamfarm_worker_cpu_threads"), 1.0);
    let (cpu, busy) = (
        w.cpu_seconds(),
        w.metric("dreamfarm_worker_busy_seconds_total"),
    );
    // One tile a frame, big enough for libtorch to split every operation
    // across threads when it may.
    let id = c.submit(&[
        "--input",
        "assets/astronaut.png",
        "--size",
        "448x448",
        "--frames",
        "3",
        "--octaves",
        "1",
        "--iterations",
        "10",
        "--tile-size",
        "512",
        "--name",
        "one-thread",
    ]);
    c.wait_done(&id, LIMIT);
    let cpu = w.cpu_seconds() - cpu;
    let busy = w.metric("dreamfarm_worker_busy_seconds_total") - busy;
    assert!(busy > 2.0, "the job kept the worker busy {busy:.2} s");
    // With two threads on two cores a step spends about 1.8 CPU-seconds a
    // second.
    assert!(
        cpu <= 1.1 * busy + OUTSIDE_TILES_CPU_SECONDS,
        "the worker spent {cpu:.2} CPU-s over {busy:.2} s of dreaming on one thread"
    );
}

#[test]
fn a_process_in_a_one_cpu_limit_computes_on_one_thread() {
    let limit = match CgroupLimit::cpus(1) {
        Ok(limit) => limit,
        Err(why) => {
            eprintln!("SKIPPED: no cgroup for a CPU limit on this machine ({why})");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("still.png");
    let dream = |extra: &[&str]| {
        let mut command = dreamfarm(&one_step_still(
            "assets/astronaut.png",
            out.to_str().expect("UTF-8"),
        ));
        command.args(extra).env("RUST_LOG", "info");
        limit.confine(&mut command);
        let (done, _, log) = run(command);
        assert!(done.status.success(), "dream failed: {log}");
        log.lines()
            .find(|l| l.contains("CPU threads"))
            .unwrap_or_else(|| panic!("no CPU threads line: {log}"))
            .to_string()
    };
    // libtorch alone would take a thread for each of the machine's cores.
    let threads = dream(&[]);
    assert!(
        threads.contains("network=1 host_work=1 from=CpuLimit"),
        "{threads}"
    );
    // A flag is a flag, limit or not.
    let threads = dream(&["--threads", "2"]);
    assert!(
        threads.contains("network=2 host_work=2 from=Flag"),
        "{threads}"
    );
}
