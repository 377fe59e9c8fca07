//! The coordinator's shared state: the scheduler behind one lock, a signal
//! that wakes worker sessions when there may be work for them, and the
//! metrics.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::metrics::Metrics;
use super::scheduler::{Scheduler, Timeouts};

/// Shared by the gRPC services, the job threads and the metrics endpoint.
pub struct Hub {
    scheduler: Mutex<Scheduler>,
    changed: Notify,
    /// Counters and rates.
    pub metrics: Metrics,
}

impl Hub {
    /// A hub with an empty scheduler.
    pub fn new(timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            scheduler: Mutex::new(Scheduler::new(timeouts)),
            changed: Notify::new(),
            metrics: Metrics::default(),
        })
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
        f(&mut self.lock())
    }

    /// Changes the scheduler and wakes every session to look at it.
    pub fn update<T>(&self, f: impl FnOnce(&mut Scheduler) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.notify_waiters();
        out
    }

    /// Resolves at the next [`update`](Self::update) after it is created
    /// (create it before looking at the scheduler, so no wake-up is lost).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}
