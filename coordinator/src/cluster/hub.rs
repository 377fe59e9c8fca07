//! The coordinator's shared state: the scheduler behind one lock, a signal
//! that wakes worker sessions when there may be work for them, one that
//! ends the calls that stay open when the coordinator shuts down, the
//! metrics, and the job store that the scheduler's events go to.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::scheduler::{Scheduler, Timeouts};
use crate::store::{Event, JobStore};

/// Shared by the gRPC services, the job threads and the metrics endpoint.
pub struct Hub {
    scheduler: Mutex<Scheduler>,
    changed: Notify,
    store: Arc<dyn JobStore>,
    /// Fired once when the coordinator is shutting down.
    stopping: CancellationToken,
    /// Counters and rates.
    pub metrics: Metrics,
}

impl Hub {
    /// A hub with an empty scheduler for the coordinator's `boot`-th start,
    /// logging job events to `store`.
    pub fn new(timeouts: Timeouts, boot: u64, store: Arc<dyn JobStore>) -> Arc<Self> {
        Arc::new(Self {
            scheduler: Mutex::new(Scheduler::new(timeouts, boot)),
            changed: Notify::new(),
            store,
            stopping: CancellationToken::new(),
            metrics: Metrics::default(),
        })
    }

    /// Tells the calls that would otherwise stay open (workers' sessions,
    /// watches, fetches) to end, so that a shutdown does not wait on them.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// Resolves once [`stop`](Self::stop) is called.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await;
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// The job store.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// Writes `f`'s events to the job store, outside the scheduler's lock.
    fn with_events<T>(&self, f: impl FnOnce(&mut Scheduler) -> T) -> T {
        let (out, events) = {
            let mut s = self.lock();
            let out = f(&mut s);
            (out, s.take_events())
        };
        for e in events {
            let event = Event::now(e.kind, e.detail);
            if let Err(err) = self.store.append_event(&e.job, &event) {
                tracing::warn!(job = %e.job, "cannot log an event: {err}");
            }
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        // A panic while holding the lock leaves the queue consistent (every
        // method updates it before anything can fail), so keep going.
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the scheduler.
    pub fn read<T>(&self, f: impl FnOnce(&Scheduler) -> T) -> T {
        f(&self.lock())
    }

    /// Changes the scheduler without waking anyone (changes that only take
    /// work away, or note a heartbeat).
    pub fn update_quietly<T>(&self, f: impl FnOnce(&mut Scheduler) -> T) -> T {
        self.with_events(f)
    }

    /// Changes the scheduler and wakes every session to look at it.
    pub fn update<T>(&self, f: impl FnOnce(&mut Scheduler) -> T) -> T {
        let out = self.with_events(f);
        self.changed.notify_waiters();
        out
    }

    /// Resolves at the next [`update`](Self::update) after it is created
    /// (create it before looking at the scheduler, so no wake-up is lost).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}
