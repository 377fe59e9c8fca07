//! Prometheus metrics of the coordinator, served as text at `/metrics`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dreamfarm_proto::exposition::{Exposition, MetricKind};

use super::scheduler::Snapshot;
use crate::store::JobState;

/// Events per second over a sliding window.
#[derive(Debug)]
pub struct Rate {
    window: Duration,
    events: Mutex<VecDeque<(Instant, u64)>>,
}

impl Rate {
    /// A rate over the last `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            events: Mutex::new(VecDeque::new()),
        }
    }

    fn trim(&self, events: &mut VecDeque<(Instant, u64)>, now: Instant) {
        while events
            .front()
            .is_some_and(|&(t, _)| now.duration_since(t) > self.window)
        {
            events.pop_front();
        }
    }

    /// Records `amount` at `now`.
    pub fn add(&self, amount: u64, now: Instant) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        self.trim(&mut events, now);
        events.push_back((now, amount));
    }

    /// Amount per second over the window (or since the first event, when
    /// that is more recent).
    pub fn per_second(&self, now: Instant) -> f64 {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        self.trim(&mut events, now);
        let Some(&(first, _)) = events.front() else {
            return 0.0;
        };
        let span = now.duration_since(first).as_secs_f64().max(1.0);
        events.iter().map(|&(_, a)| a).sum::<u64>() as f64 / span
    }
}

/// Counters the services update.
#[derive(Debug)]
pub struct Metrics {
    /// Bytes of pixels received from workers and clients.
    pub bytes_in: AtomicU64,
    /// Bytes of pixels sent to workers and clients.
    pub bytes_out: AtomicU64,
    /// Calls or messages refused as malformed, unauthorised or stale.
    pub rejected: AtomicU64,
    /// Tiles completed per second.
    pub tiles: Rate,
    /// Pixel bytes moved (both ways) per second.
    pub bytes: Rate,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            tiles: Rate::new(Duration::from_secs(30)),
            bytes: Rate::new(Duration::from_secs(30)),
        }
    }
}

impl Metrics {
    /// Counts `n` bytes received.
    pub fn received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        self.bytes.add(n as u64, Instant::now());
    }

    /// Counts a refused call or message.
    pub fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` bytes sent.
    pub fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        self.bytes.add(n as u64, Instant::now());
    }

    /// The Prometheus text exposition of these metrics, the scheduler's
    /// counts and the number of jobs in each state.
    pub fn render(&self, s: &Snapshot, jobs: &[JobState]) -> String {
        use MetricKind::{Counter, Gauge};
        let now = Instant::now();
        let mut page = Exposition::default();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        for (name, kind, help, value) in [
            (
                "dreamfarm_queue_depth",
                Gauge,
                "Tiles waiting for a worker.",
                s.queued as f64,
            ),
            (
                "dreamfarm_leases_in_flight",
                Gauge,
                "Leases held by workers.",
                s.in_flight as f64,
            ),
            (
                "dreamfarm_workers",
                Gauge,
                "Connected workers.",
                s.workers as f64,
            ),
            (
                "dreamfarm_host_threads",
                Gauge,
                "Threads the frame loops' host work is split into (--threads, or the CPUs the coordinator may use).",
                dreamfarm_common::parallel::threads() as f64,
            ),
            (
                "dreamfarm_tiles_completed_total",
                Counter,
                "Tiles computed.",
                s.completed as f64,
            ),
            (
                "dreamfarm_leases_completed_total",
                Counter,
                "Leases answered with a result (a batch of tiles is one).",
                s.leases_completed as f64,
            ),
            (
                "dreamfarm_regions_completed_total",
                Counter,
                "Region leases answered, by workers that serve changes (each is one of the leases completed).",
                s.regions_completed as f64,
            ),
            (
                "dreamfarm_region_exchange_failures_total",
                Counter,
                "Frames given up by regions because their workers could not fetch each other's changes (each then went by tiles, as the pool's frames do for a while).",
                s.exchange_failures as f64,
            ),
            (
                "dreamfarm_exchange_unreachable",
                Gauge,
                "Checks, made as a worker serving changes joined, in which one worker could not reach another's change service, of workers still in the pool (frames go by tiles while any stands).",
                s.exchange_unreachable as f64,
            ),
            (
                "dreamfarm_tiles_per_second",
                Gauge,
                "Tiles computed per second over the last 30 s.",
                self.tiles.per_second(now),
            ),
            (
                "dreamfarm_lease_retries_total",
                Counter,
                "Leases that went back to the queue.",
                s.retries as f64,
            ),
            (
                "dreamfarm_bytes_received_total",
                Counter,
                "Pixel bytes received.",
                load(&self.bytes_in),
            ),
            (
                "dreamfarm_bytes_sent_total",
                Counter,
                "Pixel bytes sent.",
                load(&self.bytes_out),
            ),
            (
                "dreamfarm_bytes_per_second",
                Gauge,
                "Pixel bytes moved per second over the last 30 s.",
                self.bytes.per_second(now),
            ),
            (
                "dreamfarm_rejected_total",
                Counter,
                "Calls and messages refused.",
                load(&self.rejected),
            ),
        ] {
            page.metric(name, kind, help, value);
        }
        page.family(
            "dreamfarm_jobs",
            Gauge,
            "Jobs in each state.",
            JobState::ALL.map(|state| {
                let n = jobs.iter().filter(|&&j| j == state).count();
                (format!("state=\"{state}\""), n as f64)
            }),
        );
        dreamfarm_proto::open_files::expose(&mut page);
        page.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_the_window_only() {
        let r = Rate::new(Duration::from_secs(10));
        let t = Instant::now();
        r.add(5, t);
        r.add(5, t + Duration::from_secs(5));
        assert_eq!(r.per_second(t + Duration::from_secs(5)), 2.0);
        assert_eq!(r.per_second(t + Duration::from_secs(30)), 0.0);
    }

    #[test]
    fn exposition_names_every_metric() {
        let m = Metrics::default();
        m.received(10);
        let text = m.render(
            &Snapshot {
                queued: 3,
                ..Default::default()
            },
            &[JobState::Running, JobState::Queued, JobState::Running],
        );
        assert!(text.contains("dreamfarm_queue_depth 3\n"));
        assert!(text.contains("dreamfarm_jobs{state=\"running\"} 2\n"));
        assert!(text.contains("dreamfarm_jobs{state=\"paused\"} 0\n"));
        assert!(text.contains("dreamfarm_bytes_received_total 10\n"));
        assert!(text.contains("# TYPE process_open_fds gauge\n"));
        assert!(text.contains("# TYPE process_max_fds gauge\n"));
        for name in [
            "leases_in_flight",
            "leases_completed_total",
            "regions_completed_total",
            "region_exchange_failures_total",
            "exchange_unreachable",
            "workers",
            "tiles_per_second",
            "lease_retries_total",
            "bytes_per_second",
        ] {
            assert!(
                text.contains(&format!("# TYPE dreamfarm_{name} ")),
                "{name}"
            );
        }
    }
}
