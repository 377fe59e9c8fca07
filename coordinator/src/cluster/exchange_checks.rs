//! Whether the workers that serve changes reach each other's change
//! services, checked when one joins: it dials each worker already serving,
//! and each of them dials it, the way their fetches would. Until every
//! check is answered, and while two workers that cannot reach each other
//! are both in the pool, new frames go by tiles, so that no frame's
//! regions wait half a minute on a fetch that never comes (a network
//! policy that denies the change port between workers, a firewall, a
//! wrong `--change-address`). The worker that joined takes no region until
//! its checks are answered and reached; the workers already serving go on
//! with the regions of a frame under way, which may need them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::scheduler::WorkerId;

/// How long a worker has to answer a check: its dials give up within
/// [`dreamfarm_proto::neighbour_check::REACH_TIMEOUT`], so a worker that
/// says nothing for twice that cannot check at all.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A worker's change service, for another worker to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourService {
    /// The coordinator's number for the worker serving it.
    pub worker: WorkerId,
    /// Where it listens, as the worker announced.
    pub address: String,
    /// The number it answers with (`Hello.change_service_id`).
    pub service_id: u64,
}

/// Two workers, the first of which could not reach the second's change
/// service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    /// The worker that dialled.
    pub from: WorkerId,
    /// The worker whose service it dialled.
    pub to: WorkerId,
}

/// The checks asked, answered and failed (see the module docs).
#[derive(Debug, Default)]
pub struct ExchangeChecks {
    /// Services each worker is yet to be told to dial.
    to_send: HashMap<WorkerId, Vec<NeighbourService>>,
    /// Checks not answered yet, with when they were asked and which of
    /// the two joined.
    pending: HashMap<Pair, (Instant, WorkerId)>,
    /// Checks that failed, with why (for people) and which of the two
    /// joined.
    failed: HashMap<Pair, (String, WorkerId)>,
    /// The pending and failed checks made when each worker joined, by
    /// worker: those with any take no regions. (Counted, not searched:
    /// each lease asks, and a whole pool rejoining is a check per pair.)
    held_back: HashMap<WorkerId, usize>,
}

impl ExchangeChecks {
    /// `joined` now serves changes: it is to dial each of `others`, the
    /// workers already serving, and each of them to dial it.
    pub fn joined(
        &mut self,
        joined: NeighbourService,
        others: impl IntoIterator<Item = NeighbourService>,
        now: Instant,
    ) {
        for other in others {
            let (from, to) = (joined.worker, other.worker);
            for pair in [Pair { from, to }, Pair { from: to, to: from }] {
                if self.pending.insert(pair, (now, from)).is_none() {
                    *self.held_back.entry(from).or_default() += 1;
                }
            }
            self.to_send.entry(to).or_default().push(joined.clone());
            self.to_send.entry(from).or_default().push(other);
        }
    }

    /// The services `worker` is to dial, since it was last told.
    pub fn take(&mut self, worker: WorkerId) -> Vec<NeighbourService> {
        self.to_send.remove(&worker).unwrap_or_default()
    }

    /// `from` answered its check of `to`'s service: reached, or not and
    /// why. False when no such check was waiting (answered before, or one
    /// of the two has left).
    pub fn answered(&mut self, from: WorkerId, to: WorkerId, error: Option<String>) -> bool {
        let pair = Pair { from, to };
        let Some((_, joined)) = self.pending.remove(&pair) else {
            return false;
        };
        match error {
            Some(why) => {
                self.failed.insert(pair, (why, joined));
            }
            None => self.release(joined),
        }
        true
    }

    /// The checks asked more than [`ANSWER_TIMEOUT`] before `now` and not
    /// answered: failed, as the pairs returned.
    pub fn overdue(&mut self, now: Instant) -> Vec<Pair> {
        let mut late: Vec<Pair> = self
            .pending
            .iter()
            .filter(|&(_, &(asked, _))| now.duration_since(asked) > ANSWER_TIMEOUT)
            .map(|(&pair, _)| pair)
            .collect();
        late.sort();
        for pair in &late {
            if let Some((_, joined)) = self.pending.remove(pair) {
                let why = format!(
                    "it did not answer the coordinator's check within {} s",
                    ANSWER_TIMEOUT.as_secs()
                );
                self.failed.insert(*pair, (why, joined));
            }
        }
        late
    }

    /// One check made when `joined` joined is answered and reached, or
    /// gone.
    fn release(&mut self, joined: WorkerId) {
        if let Some(n) = self.held_back.get_mut(&joined) {
            *n -= 1;
            if *n == 0 {
                self.held_back.remove(&joined);
            }
        }
    }

    /// `worker` left the pool: its checks, asked or failed, go with it.
    pub fn left(&mut self, worker: WorkerId) {
        let other = |p: &Pair| p.from != worker && p.to != worker;
        let mut gone = Vec::new();
        self.pending.retain(|p, &mut (_, joined)| {
            other(p) || {
                gone.push(joined);
                false
            }
        });
        self.failed.retain(|p, (_, joined)| {
            other(p) || {
                gone.push(*joined);
                false
            }
        });
        for joined in gone {
            self.release(joined);
        }
        self.to_send.remove(&worker);
        for services in self.to_send.values_mut() {
            services.retain(|s| s.worker != worker);
        }
    }

    /// Whether every check is answered and every service was reached:
    /// frames may go by regions.
    pub fn settled(&self) -> bool {
        self.pending.is_empty() && self.failed.is_empty()
    }

    /// Whether `worker` may take regions: the checks made when it joined,
    /// both ways, are answered and reached. (A worker that was serving
    /// before may: a frame's regions under way need it.)
    pub fn clear_for(&self, worker: WorkerId) -> bool {
        !self.held_back.contains_key(&worker)
    }

    /// How many checks failed.
    pub fn failed_count(&self) -> usize {
        self.failed.len()
    }

    /// The failed checks, in the order of their workers' numbers (why
    /// each failed: [`Self::failure`]).
    pub fn failed_pairs(&self) -> Vec<Pair> {
        let mut failed: Vec<Pair> = self.failed.keys().copied().collect();
        failed.sort();
        failed
    }

    /// Why `pair`'s check failed, if it did.
    pub fn failure(&self, pair: Pair) -> Option<&str> {
        self.failed.get(&pair).map(|(why, _)| why.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(worker: WorkerId) -> NeighbourService {
        NeighbourService {
            worker,
            address: format!("10.0.0.{worker}:7072"),
            service_id: 100 + worker,
        }
    }

    fn workers(sent: &[NeighbourService]) -> Vec<WorkerId> {
        sent.iter().map(|s| s.worker).collect()
    }

    #[test]
    fn a_joining_worker_and_those_serving_dial_each_other_once() {
        let now = Instant::now();
        let mut checks = ExchangeChecks::default();
        checks.joined(service(1), [], now);
        assert!(checks.settled(), "a lone worker has nobody to reach");
        assert!(checks.take(1).is_empty());
        checks.joined(service(2), [service(1)], now);
        checks.joined(service(3), [service(1), service(2)], now);
        assert_eq!(workers(&checks.take(1)), [2, 3]);
        assert_eq!(workers(&checks.take(2)), [1, 3]);
        assert_eq!(checks.take(3), [service(1), service(2)]);
        assert!(checks.take(3).is_empty(), "told once");
        assert!(!checks.settled());
        assert!(checks.clear_for(1), "it was serving before the others");
        assert!(!checks.clear_for(2) && !checks.clear_for(3));
        for (from, to) in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3)] {
            assert!(checks.answered(from, to, None));
        }
        assert!(!checks.answered(1, 2, None), "answered twice");
        assert!(!checks.answered(1, 9, None), "never asked");
        assert!(checks.clear_for(2), "its checks with 1 are in");
        assert!(!checks.clear_for(3), "3 has not reached 2 yet");
        assert!(checks.answered(3, 2, None));
        assert!(checks.settled() && checks.clear_for(3));
        assert!(checks.held_back.is_empty(), "{:?}", checks.held_back);
    }

    #[test]
    fn a_failed_or_unanswered_check_holds_regions_back_until_a_worker_of_it_leaves() {
        let now = Instant::now();
        let mut checks = ExchangeChecks::default();
        checks.joined(service(2), [service(1)], now);
        checks.joined(service(3), [service(1), service(2)], now);
        assert!(checks.answered(2, 1, Some("refused".into())));
        for (from, to) in [(1, 2), (1, 3), (3, 1), (2, 3)] {
            assert!(checks.answered(from, to, None));
        }
        assert!(!checks.settled());
        assert!(!checks.clear_for(3), "its check of 2 is unanswered");
        assert!(!checks.clear_for(2), "it joined and could not reach 1");
        assert!(checks.clear_for(1), "it was serving before");
        assert!(
            checks.overdue(now + ANSWER_TIMEOUT).is_empty(),
            "not late yet"
        );
        let late = checks.overdue(now + ANSWER_TIMEOUT + Duration::from_secs(1));
        assert_eq!(late, [Pair { from: 3, to: 2 }]);
        assert!(
            checks
                .failure(late[0])
                .is_some_and(|why| why.contains("did not answer"))
        );
        assert_eq!(
            checks
                .failed_pairs()
                .iter()
                .map(|p| (p.from, p.to))
                .collect::<Vec<_>>(),
            [(2, 1), (3, 2)]
        );
        checks.left(2);
        assert!(checks.settled(), "both failed checks involved worker 2");
        assert_eq!(workers(&checks.take(1)), [3], "2 is gone");
        assert_eq!(workers(&checks.take(3)), [1]);
        checks.joined(service(4), [service(1), service(3)], now);
        checks.left(4);
        assert!(checks.settled() && checks.take(1).is_empty() && checks.take(3).is_empty());
        assert!(checks.held_back.is_empty(), "{:?}", checks.held_back);
    }
}
