//! What the session and the compute threads both keep count of: which
//! session is current and whether it is connected, the leases in hand,
//! those the coordinator revoked, whether the worker is draining, the
//! tiles and regions computed and the time spent on them, and the turn
//! to send a result.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dreamfarm_proto::exposition::SecondsTotal;

/// State shared by the session and the compute threads.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The current session; leases of older ones are dropped.
    session: AtomicU64,
    /// Leases the coordinator took back.
    revoked: Mutex<HashSet<u64>>,
    /// Leases received and not yet answered.
    in_hand: AtomicU64,
    /// Shutting down: hand back what has not started.
    draining: AtomicBool,
    /// Tiles computed.
    done: AtomicU64,
    /// Region leases answered with their cell.
    regions_done: AtomicU64,
    /// Region leases that failed.
    regions_failed: AtomicU64,
    /// Bytes of the last frame's parts region leases brought.
    input_received: AtomicU64,
    /// Bytes of them taken from what the session carried before.
    input_held: AtomicU64,
    /// Time the compute threads spent on tasks, together.
    busy: SecondsTotal,
    /// The coordinator has welcomed the current session (readiness).
    connected: AtomicBool,
    /// Held while a result goes up the session: its head and pieces must
    /// not interleave with another's, and the compute threads and the
    /// region tasks all send them.
    pub(super) sending: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Starts a new session (nothing in hand yet); returns its number.
    pub(super) fn begin_session(&self) -> u64 {
        let session = self.session.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_hand.store(0, Ordering::SeqCst);
        session
    }

    /// Whether `session` is still the current one.
    pub(super) fn is_current(&self, session: u64) -> bool {
        session == self.session.load(Ordering::SeqCst)
    }

    /// A lease arrived.
    pub(super) fn took(&self) {
        self.in_hand.fetch_add(1, Ordering::SeqCst);
    }

    /// `leases` of the current session were answered or dropped.
    pub(super) fn answered(&self, leases: u64) {
        self.in_hand.fetch_sub(leases, Ordering::SeqCst);
    }

    /// A lease of `session` was answered or dropped; leases of a lost
    /// session no longer count as in hand.
    pub(super) fn settle(&self, session: u64) {
        if self.is_current(session) {
            self.answered(1);
        }
    }

    /// Leases received and not yet answered.
    pub(super) fn in_hand(&self) -> u64 {
        self.in_hand.load(Ordering::SeqCst)
    }

    /// The coordinator took back `lease`, which a compute thread holds.
    pub(super) fn revoke(&self, lease: u64) {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(lease);
    }

    /// Whether `lease` was revoked (forgetting it: it is answered once).
    pub(super) fn take_revoked(&self, lease: u64) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&lease)
    }

    /// From now on, leases not started are handed back.
    pub(super) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the worker is shutting down.
    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `tiles` tiles were computed (and sent, or kept for a region).
    pub(super) fn tiles_done(&self, tiles: u64) {
        self.done.fetch_add(tiles, Ordering::SeqCst);
    }

    /// Tiles computed so far.
    pub(super) fn tiles_computed(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// A region lease was computed (`true`) or failed.
    pub(super) fn region_answered(&self, done: bool) {
        let count = if done {
            &self.regions_done
        } else {
            &self.regions_failed
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// Region leases computed and failed so far.
    pub(super) fn regions(&self) -> (u64, u64) {
        (
            self.regions_done.load(Ordering::Relaxed),
            self.regions_failed.load(Ordering::Relaxed),
        )
    }

    /// A region lease's part arrived: `received` bytes of it with the
    /// lease, `held` from what the session carried for the frame's
    /// earlier regions.
    pub(super) fn region_input(&self, received: u64, held: u64) {
        self.input_received.fetch_add(received, Ordering::Relaxed);
        self.input_held.fetch_add(held, Ordering::Relaxed);
    }

    /// Bytes of region leases' parts received and held.
    pub(super) fn region_inputs(&self) -> (u64, u64) {
        (
            self.input_received.load(Ordering::Relaxed),
            self.input_held.load(Ordering::Relaxed),
        )
    }

    /// A compute thread spent `time` on a task.
    pub(super) fn busy(&self, time: Duration) {
        self.busy.add(time);
    }

    /// Seconds the compute threads spent on tasks so far, together.
    pub(super) fn busy_seconds(&self) -> f64 {
        self.busy.seconds()
    }

    /// The coordinator welcomed the session (`true`) or it ended.
    pub(super) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
    }

    /// Whether a session is up.
    pub(super) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_of_a_lost_session_no_longer_count() {
        let shared = Shared::default();
        let old = shared.begin_session();
        shared.took();
        shared.took();
        let new = shared.begin_session();
        assert_eq!(shared.in_hand(), 0, "a new session starts empty");
        shared.took();
        shared.settle(old);
        assert_eq!(shared.in_hand(), 1, "the old session's answer is ignored");
        shared.settle(new);
        assert_eq!(shared.in_hand(), 0);
    }

    #[test]
    fn a_revocation_is_taken_once() {
        let shared = Shared::default();
        shared.revoke(7);
        assert!(!shared.take_revoked(8));
        assert!(shared.take_revoked(7));
        assert!(!shared.take_revoked(7));
    }
}
