//! Whether workers exchange changes: where each serves them, the checks
//! that they reach each other's services when they join, and the pause
//! of every frame's regions after one frame's could not fetch a
//! neighbour's changes.

use std::time::{Duration, Instant};

use super::{
    LeaseError, LeaseId, RegionFailure, Results, Scheduler, WorkerEntry, WorkerId,
    regions::frame_left,
};
use crate::cluster::exchange_checks::{NeighbourService, Pair};
use crate::store::EventKind;

/// How long frames go by tiles after a frame's regions could not exchange
/// their changes, the first time: long enough that a pool whose workers
/// cannot reach each other loses little to the minute each try costs,
/// short enough that a mended network policy is soon used.
pub const EXCHANGE_PAUSE: Duration = Duration::from_secs(5 * 60);

/// The longest such pause: it doubles each time the exchange fails again
/// before a frame has gone through by regions.
pub const EXCHANGE_PAUSE_MAX: Duration = Duration::from_secs(60 * 60);

/// What to open when workers cannot reach each other's change services,
/// whether a check at join or a frame's fetch found it.
const EXCHANGE_FIX: &str = "Fix: let the workers reach each other's change port: in Kubernetes \
     the NetworkPolicy rule between worker pods (port 7072, deploy/README.md); elsewhere each \
     worker's --change-address and the firewall between them";

/// The fix to give after a worker's `reason` for not reaching a
/// neighbour: [`EXCHANGE_FIX`], unless the reason gives its own (a worker
/// out of open files, which no NetworkPolicy mends).
fn exchange_fix(reason: &str) -> &'static str {
    if reason.contains("Fix: ") {
        ""
    } else {
        EXCHANGE_FIX
    }
}

impl Scheduler {
    /// How much longer, from `now`, frames go by tiles because a frame's
    /// regions could not exchange their changes ([`Self::exchange_failed`]);
    /// none when they are not held back.
    pub fn regions_paused_for(&self, now: Instant) -> Option<Duration> {
        self.regions_paused_until
            .filter(|&until| until > now)
            .map(|until| until - now)
    }

    /// Whether frames go by regions at `now`: a connected worker serves
    /// changes (takes region leases), those serving have reached each
    /// other's change services ([`ExchangeChecks`](crate::cluster::exchange_checks::ExchangeChecks)), and no frame's regions
    /// failed to exchange them lately ([`Self::exchange_failed`]).
    pub fn serves_changes(&self, now: Instant) -> bool {
        self.regions_paused_for(now).is_none()
            && self.checks.settled()
            && self.workers.values().any(|w| !w.change_address.is_empty())
    }

    /// Notes where `worker`'s change service listens, and the number it
    /// answers with: it takes region leases once it and the workers
    /// already serving have reached each other's services.
    pub fn serve_changes(
        &mut self,
        worker: WorkerId,
        address: String,
        service_id: u64,
        now: Instant,
    ) {
        let service = |id: WorkerId, w: &WorkerEntry| NeighbourService {
            worker: id,
            address: w.change_address.clone(),
            service_id: w.change_service_id,
        };
        let others: Vec<NeighbourService> = self
            .workers
            .iter()
            .filter(|&(&id, w)| id != worker && !w.change_address.is_empty())
            .map(|(&id, w)| service(id, w))
            .collect();
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        w.change_address = address;
        w.change_service_id = service_id;
        let joined = service(worker, w);
        self.checks.joined(joined, others, now);
    }

    /// The change services `worker` is to dial, to check that it reaches
    /// them, since it was last told.
    pub fn take_checks(&mut self, worker: WorkerId) -> Vec<NeighbourService> {
        self.checks.take(worker)
    }

    /// `worker` dialled the change services of the workers `answers`
    /// name: reached, or why not. A service not reached holds frames by
    /// tiles while both workers are in the pool, and every job is told.
    pub fn neighbours_checked(
        &mut self,
        worker: WorkerId,
        answers: Vec<(WorkerId, Option<String>)>,
    ) {
        let mut asked = false;
        for (to, error) in answers {
            let failed = error.is_some();
            let answered = self.checks.answered(worker, to, error);
            asked |= answered;
            if answered && failed {
                self.unreachable(Pair { from: worker, to });
            }
        }
        if asked && self.checks.settled() {
            let serving = self
                .workers
                .values()
                .filter(|w| !w.change_address.is_empty())
                .count();
            tracing::info!(
                "the {serving} workers serving changes reach each other's change services"
            );
        }
    }

    /// Says, in the log and to every job, that `pair`'s check failed.
    pub(super) fn unreachable(&mut self, pair: Pair) {
        let why = self.unreachable_why(pair);
        tracing::warn!("{why}");
        self.event_for_all(EventKind::ExchangeUnreachable, &why);
    }

    /// What a failed check of `pair` means and what to do, for people.
    fn unreachable_why(&self, pair: Pair) -> String {
        let address = self
            .workers
            .get(&pair.to)
            .map_or("", |w| w.change_address.as_str());
        let reason = self.checks.failure(pair).unwrap_or("no reason given");
        format!(
            "worker {} cannot reach worker {}'s change service at {address}: {reason}. Frames \
             go by tiles through the coordinator while both are in the pool (the same frames, \
             at more of the coordinator's CPU). {}",
            self.worker_name(pair.from),
            self.worker_name(pair.to),
            exchange_fix(reason),
        )
    }

    /// Every failed check of workers still in the pool, said as
    /// [`Self::neighbours_checked`] says it: frames go by tiles while any
    /// stands.
    pub fn unreachable_services(&self) -> Vec<String> {
        self.checks
            .failed_pairs()
            .into_iter()
            .map(|pair| self.unreachable_why(pair))
            .collect()
    }

    /// Region lease `lease` of `worker` could not fetch a neighbour's
    /// changes for `reason`: the workers cannot reach each other (a network
    /// policy, a firewall, a wrong change address), which no retry of the
    /// region mends and which is not this worker's fault. The frame is
    /// given up by regions ([`RegionFailure::Exchange`]: the frame loop
    /// dreams it by tiles, to the same bits), its other regions revoked,
    /// and no frame goes by regions for [`EXCHANGE_PAUSE`] from `now`,
    /// twice that if it happens again before a frame has gone through by
    /// regions, and so on up to [`EXCHANGE_PAUSE_MAX`].
    pub fn exchange_failed(
        &mut self,
        worker: WorkerId,
        lease: LeaseId,
        reason: &str,
        now: Instant,
    ) -> Result<(), LeaseError> {
        self.owned(worker, lease)?;
        let Some(failed) = self.take_back(lease) else {
            return Ok(());
        };
        let (job, batch, slot, place) = (
            failed.job,
            failed.unit.batch,
            failed.unit.slot,
            failed.unit.work.place(),
        );
        // Its neighbours wait on changes that may never come.
        self.revoke_where(|l| l.job == job && l.unit.batch == batch);
        let Some(queue) = self.jobs.get_mut(&job) else {
            return Ok(());
        };
        let Some(given_up) = queue.batch.take_if(|b| b.id == batch) else {
            return Ok(());
        };
        queue.pending.clear();
        self.frame_done(&job, frame_left(&given_up));
        let name = self.worker_name(worker);
        let pause = self.exchange_pause;
        self.regions_paused_until = Some(now + pause);
        self.exchange_pause = (pause * 2).min(EXCHANGE_PAUSE_MAX);
        self.exchange_failures += 1;
        let why = format!(
            "{place}: worker {name} could not fetch a neighbour's changes: {reason}. \
             The frame goes by tiles instead, and so does every frame of the pool for \
             the next {} minutes (the same frames, at more of the coordinator's CPU). {}",
            pause.as_secs() / 60,
            exchange_fix(reason),
        );
        tracing::warn!(%job, "{why}");
        if let Results::Regions { results, .. } = &given_up.results {
            let _ = results.send((slot, Err(RegionFailure::Exchange(why.clone()))));
        }
        self.event(&job, EventKind::ExchangeFailed, why);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_out_of_open_files_is_not_told_to_mend_the_network() {
        assert_eq!(
            exchange_fix("tcp connect error: Connection refused"),
            EXCHANGE_FIX
        );
        // EMFILE, as a worker's dial meets it at its limit.
        let emfile = std::io::Error::from_raw_os_error(24);
        let reason = dreamfarm_proto::open_files::advice(
            "the worker dialling",
            [&emfile as &(dyn std::error::Error + 'static)],
        )
        .expect("advice for EMFILE");
        assert_eq!(exchange_fix(&reason), "", "{reason}");
    }
}
