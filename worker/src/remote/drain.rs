//! Leaving gracefully (SIGTERM): leases still arriving are handed back, the
//! compute threads finish what they started and hand back what they had
//! not, and the session stays open, heartbeating, until every lease in hand
//! is answered or the drain timeout passes (Kubernetes kills the pod at the
//! end of its grace period anyway; leaving first lets the coordinator
//! re-lease the unfinished tiles at once and says so in the log).

use dreamfarm_proto::pb::worker_message::Body as Up;
use dreamfarm_proto::pb::{CoordinatorMessage, HandBack, Heartbeat, WorkerMessage};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Interval;
use tonic::Streaming;

use super::bookkeeping::Shared;
use super::lease::Arriving;
use super::up;

/// Drains the session: returns once nothing is in hand, the coordinator
/// has gone, or `limit` has passed.
pub(super) async fn drain(
    arriving: Arriving,
    shared: &Shared,
    up_tx: &mpsc::Sender<WorkerMessage>,
    down: &mut Streaming<CoordinatorMessage>,
    ticker: &mut Interval,
    limit: Duration,
) {
    tracing::info!("shutting down: finishing or handing back leases");
    shared.start_draining();
    let unfinished = arriving.into_ids();
    if !unfinished.is_empty() {
        shared.answered(unfinished.len() as u64);
        let _ = up_tx
            .send(up(Up::HandBack(HandBack {
                lease_ids: unfinished,
            })))
            .await;
    }
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    while shared.in_hand() > 0 {
        tokio::select! {
            _ = ticker.tick() => { let _ = up_tx.send(up(Up::Heartbeat(Heartbeat {}))).await; }
            msg = down.message() => if !matches!(msg, Ok(Some(_))) { break },
            _ = &mut deadline => {
                tracing::warn!(
                    leases = shared.in_hand(),
                    "drain timeout ({}s) passed: leaving; the coordinator re-leases the unfinished tiles",
                    limit.as_secs()
                );
                break;
            }
        }
    }
}
