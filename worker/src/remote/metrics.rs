//! The worker's Prometheus metrics, served at `/metrics` beside the
//! probes: whether it is connected, what it computed and how busy its
//! compute threads were, and, when it serves changes, what crossed
//! between it and its neighbours and how long its regions waited for
//! them. The coordinator cannot see the traffic between workers; this is
//! where a farm's operator does.

use std::sync::Arc;

use dreamfarm_proto::change_exchange::Changes;
use dreamfarm_proto::exposition::{Exposition, MetricKind};

use super::bookkeeping::Shared;

/// What a worker's `/metrics` reads.
#[derive(Clone)]
pub(super) struct WorkerMetrics {
    /// What the session and the compute threads keep count of.
    pub(super) shared: Arc<Shared>,
    /// The compute threads, all devices together.
    pub(super) threads: usize,
    /// libtorch's threads for each tile on a CPU.
    pub(super) cpu_threads: usize,
    /// The changes it serves, if it serves changes.
    pub(super) changes: Option<Arc<Changes>>,
}

impl WorkerMetrics {
    /// The Prometheus text exposition of the metrics.
    pub(super) fn render(&self) -> String {
        use MetricKind::{Counter, Gauge};
        let s = &self.shared;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut page = Exposition::default();
        for (name, kind, help, value) in [
            (
                "dreamfarm_worker_connected",
                Gauge,
                "1 while a session with the coordinator is up.",
                flag(s.is_connected()),
            ),
            (
                "dreamfarm_worker_draining",
                Gauge,
                "1 once the worker is shutting down.",
                flag(s.is_draining()),
            ),
            (
                "dreamfarm_worker_leases_in_hand",
                Gauge,
                "Leases received and not yet answered.",
                s.in_hand() as f64,
            ),
            (
                "dreamfarm_worker_compute_threads",
                Gauge,
                "Compute threads, all devices together (the most busy seconds a second can add).",
                self.threads as f64,
            ),
            (
                "dreamfarm_worker_cpu_threads",
                Gauge,
                "CPU threads libtorch computes each tile on a CPU with (--threads, or the CPUs the worker may use).",
                self.cpu_threads as f64,
            ),
            (
                "dreamfarm_worker_busy_seconds_total",
                Counter,
                "Seconds the compute threads spent computing, together.",
                s.busy_seconds(),
            ),
            (
                "dreamfarm_worker_tiles_total",
                Counter,
                "Tiles computed.",
                s.tiles_computed() as f64,
            ),
        ] {
            page.metric(name, kind, help, value);
        }
        dreamfarm_proto::open_files::expose(&mut page);
        let Some(changes) = &self.changes else {
            return page.finish();
        };
        let ((done, failed), (received, held)) = (s.regions(), s.region_inputs());
        for (name, help, values) in [
            (
                "dreamfarm_worker_regions_total",
                "Region leases answered, by outcome.",
                [
                    ("outcome=\"done\"", done as f64),
                    ("outcome=\"failed\"", failed as f64),
                ],
            ),
            (
                "dreamfarm_worker_region_input_bytes_total",
                "Bytes of the last frame's parts that region leases read: received with the lease, and held from the parts this session carried for the same frame's other regions.",
                [
                    ("way=\"received\"", received as f64),
                    ("way=\"held\"", held as f64),
                ],
            ),
        ] {
            page.family(name, Counter, help, values);
        }
        let t = changes.traffic().read();
        for (name, what, served, fetched, local) in [
            (
                "parts",
                "Parts of tiles' changes",
                t.served_parts,
                t.fetched_parts,
                t.local_parts,
            ),
            (
                "bytes",
                "Pixel bytes of changes",
                t.served_bytes,
                t.fetched_bytes,
                t.local_bytes,
            ),
        ] {
            page.family(
                &format!("dreamfarm_worker_change_{name}_total"),
                Counter,
                &format!(
                    "{what} served to neighbours and fetched from them over the network, and taken from this worker's own (a neighbouring region it holds too)."
                ),
                [
                    ("way=\"served\"", served as f64),
                    ("way=\"fetched\"", fetched as f64),
                    ("way=\"local\"", local as f64),
                ],
            );
        }
        page.metric(
            "dreamfarm_worker_change_wait_seconds_total",
            Counter,
            "Seconds regions waited for their neighbours' changes after dreaming their own, summed over the regions held at once (how busy the devices were: busy seconds).",
            t.waited_seconds,
        );
        page.metric(
            "dreamfarm_worker_changes_held_bytes",
            Gauge,
            "Bytes of the changes kept for neighbours (the frame being dreamed).",
            changes.held_bytes() as f64,
        );
        page.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(changes: Option<Arc<Changes>>) -> String {
        let shared = Arc::new(Shared::default());
        shared.busy(std::time::Duration::from_millis(1500));
        shared.region_answered(true);
        shared.region_answered(true);
        shared.region_answered(false);
        shared.set_connected(true);
        shared.region_input(300, 1200);
        WorkerMetrics {
            shared,
            threads: 2,
            cpu_threads: 3,
            changes,
        }
        .render()
    }

    #[test]
    fn the_page_counts_what_the_worker_did_and_its_changes_where_it_serves_them() {
        let page = metrics(Some(Arc::default()));
        for line in [
            "dreamfarm_worker_connected 1\n",
            "dreamfarm_worker_draining 0\n",
            "dreamfarm_worker_compute_threads 2\n",
            "dreamfarm_worker_cpu_threads 3\n",
            "dreamfarm_worker_busy_seconds_total 1.5\n",
            "dreamfarm_worker_regions_total{outcome=\"done\"} 2\n",
            "dreamfarm_worker_regions_total{outcome=\"failed\"} 1\n",
            "dreamfarm_worker_change_bytes_total{way=\"fetched\"} 0\n",
            "dreamfarm_worker_region_input_bytes_total{way=\"received\"} 300\n",
            "dreamfarm_worker_region_input_bytes_total{way=\"held\"} 1200\n",
            "# TYPE dreamfarm_worker_change_wait_seconds_total counter\n",
            "dreamfarm_worker_changes_held_bytes 0\n",
            "# TYPE process_open_fds gauge\n",
            "# TYPE process_max_fds gauge\n",
        ] {
            assert!(page.contains(line), "{line:?} missing from\n{page}");
        }
        let plain = metrics(None);
        assert!(
            plain.contains("dreamfarm_worker_tiles_total 0\n") && !plain.contains("change"),
            "a worker that takes tiles only has no change metrics:\n{plain}"
        );
    }
}
