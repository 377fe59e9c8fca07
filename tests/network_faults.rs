//! Network faults between a worker and the coordinator cost retries, never
//! frames. A fault proxy on loopback sits between a real `dreamfarm worker`
//! and a real coordinator and slows, resets or partitions their link
//! mid-job; every job still ends with the frames of `dreamfarm render`, byte
//! for byte, and its video.

use std::time::Duration;

use dreamfarm_tests::cluster::Coordinator;
use dreamfarm_tests::fault_proxy::{Direction, FaultProxy};
use dreamfarm_tests::small_job::{LIMIT, job, reference};

/// Both directions of a link.
const BOTH_WAYS: [Direction; 2] = [Direction::ToTarget, Direction::FromTarget];

/// Polls `cond` until it holds, for at most the job's limit.
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    dreamfarm_tests::wait_for(what, LIMIT, cond);
}

/// A coordinator, and a proxy in front of its gRPC port.
fn coordinator_behind_proxy() -> (Coordinator, FaultProxy) {
    let c = Coordinator::start();
    let proxy = FaultProxy::start(c.addr());
    (c, proxy)
}

/// Waits for `id` to finish, then checks its frames against the
/// single-machine render (fetching checks the video too).
fn finishes_with_reference_frames(c: &Coordinator, id: &str, fault: &str) {
    c.wait_done(id, LIMIT);
    assert!(
        c.fetch_frames(id) == reference(),
        "frames differ from the single-machine render after {fault}"
    );
}

#[test]
fn latency_and_a_bandwidth_cap_change_no_frame() {
    let (c, proxy) = coordinator_behind_proxy();
    for direction in BOTH_WAYS {
        proxy.set_latency(direction, Duration::from_millis(40));
        proxy.set_bandwidth(direction, Some(512 * 1024));
    }
    let _worker = c.worker_via("slow-link", &proxy.url());
    let id = c.submit(&job("slow"));
    c.wait_done(&id, LIMIT);
    // Every lease and result crossed the slow link (counted before the
    // fetch, which the coordinator counts as sent too).
    assert!(
        proxy.forwarded(Direction::FromTarget) as f64 >= c.metric("dreamfarm_bytes_sent_total")
    );
    assert!(proxy.forwarded(Direction::ToTarget) > 0);
    assert_eq!(proxy.resets(), 0);
    finishes_with_reference_frames(&c, &id, "latency and a bandwidth cap");
}

#[test]
fn connections_reset_mid_lease_and_mid_result_cost_retries_not_frames() {
    let (c, proxy) = coordinator_behind_proxy();
    let worker = c.worker_via("reset", &proxy.url());
    let id = c.submit(&job("reset"));
    wait_for("the first tiles", || {
        c.metric("dreamfarm_tiles_completed_total") >= 2.0
    });
    // Only leases travel down once a worker is welcomed, and every lease's
    // pixels are tens of kilobytes: 10 kB in, the cut lands in a lease's
    // pixels.
    proxy.reset_after(Direction::FromTarget, 10_000);
    wait_for("the reset of a lease", || proxy.resets() == 1);
    wait_for("the worker to reconnect", || {
        proxy.connections() >= 2 && c.metric("dreamfarm_workers") == 1.0
    });
    let after_first = c.metric("dreamfarm_lease_retries_total");
    assert!(after_first >= 1.0, "the cut lease is retried");
    // Up the link go heartbeats of a few bytes and results of kilobytes:
    // 20 kB in, the cut lands in a result.
    proxy.reset_after(Direction::ToTarget, 20_000);
    wait_for("the reset of a result", || proxy.resets() == 2);
    finishes_with_reference_frames(&c, &id, "two connection resets");
    assert!(
        c.metric("dreamfarm_lease_retries_total") > after_first,
        "the lease whose result was cut is retried"
    );
    assert!(proxy.connections() >= 3, "the worker reconnected twice");
    let log = worker.log();
    assert_eq!(
        log.matches("lost the coordinator").count(),
        2,
        "the worker saw both resets: {log}"
    );
}

/// Runs the small job on one worker behind the proxy, cuts the worker off
/// with `cut` while it holds a lease, checks that the coordinator drops it
/// and requeues its leases while the job waits, lifts the fault with
/// `restore`, and checks that the worker rejoins and the job ends with the
/// reference frames. Returns the worker's log.
fn cut_off_mid_job(
    fault: &str,
    cut: impl FnOnce(&FaultProxy),
    restore: impl FnOnce(&FaultProxy),
) -> String {
    let (c, proxy) = coordinator_behind_proxy();
    let worker = c.worker_via(fault, &proxy.url());
    let id = c.submit(&job(fault));
    wait_for("a lease in flight after the first tiles", || {
        c.metric("dreamfarm_tiles_completed_total") >= 2.0
            && c.metric("dreamfarm_leases_in_flight") >= 1.0
    });
    cut(&proxy);
    // The test coordinator drops workers silent for 3 s.
    wait_for("the coordinator to drop the worker", || {
        c.metric("dreamfarm_workers") == 0.0
    });
    assert!(
        c.metric("dreamfarm_lease_retries_total") >= 1.0,
        "the cut-off worker's leases are requeued"
    );
    assert_eq!(c.metric("dreamfarm_leases_in_flight"), 0.0);
    let status = c.status(&id);
    assert!(status.contains("running"), "{status}");
    restore(&proxy);
    wait_for("the worker to rejoin", || {
        c.metric("dreamfarm_workers") == 1.0
    });
    finishes_with_reference_frames(&c, &id, fault);
    assert_eq!(proxy.resets(), 0);
    worker.log()
}

#[test]
fn a_worker_partitioned_past_the_heartbeat_timeout_is_dropped_and_rejoins() {
    let log = cut_off_mid_job("partition", FaultProxy::partition, FaultProxy::heal);
    assert!(
        log.contains("lost the coordinator") && log.matches("connected").count() >= 2,
        "the worker learnt it was dropped and reconnected: {log}"
    );
}

#[test]
fn a_worker_whose_connection_goes_silent_for_good_redials_and_finishes() {
    // The link dies without a reset or a close reaching either side (a
    // lost NAT entry, a vanished pod IP): nothing but a timeout can tell,
    // and the worker must notice by itself, on a new connection.
    let log = cut_off_mid_job("stranded", FaultProxy::strand, |_| {});
    assert!(
        log.contains("lost the coordinator") && log.matches("connected").count() >= 2,
        "the worker learnt its link was dead and redialled: {log}"
    );
}
