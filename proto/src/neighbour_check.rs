//! A worker's check that it reaches its neighbours' change services the
//! way their fetches will (the same channels: TLS checked against the
//! cluster's CA and name, the cluster's token). The coordinator asks for
//! it when a worker serving changes joins, so that a pool whose workers
//! cannot reach each other is known, and its frames go by tiles, before a
//! frame's regions wait on a fetch that never comes.

use std::time::Duration;

use tokio::task::JoinSet;

use crate::auth::AttachToken;
use crate::change_channels::Channels;
use crate::change_exchange::FetchError;
use crate::pb::change_service_client::ChangeServiceClient;
use crate::pb::{CheckNeighbours, Neighbour, NeighbourReached, NeighboursChecked, ReachRequest};

/// How long reaching one neighbour may take: longer than dialling it
/// ([`Channels`] gives up on a connection after 10 s), so that a refused
/// or dropped connection says so; a link that connects and then carries
/// nothing ends here.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(15);

/// Dials every neighbour `asked` names, at once, through `channels` with
/// the cluster's `token`; one answer per neighbour, in no set order.
pub async fn check(
    channels: &Channels,
    token: &AttachToken,
    asked: CheckNeighbours,
) -> NeighboursChecked {
    let mut checks = JoinSet::new();
    for neighbour in asked.neighbours {
        let (channels, token) = (channels.clone(), token.clone());
        checks.spawn(async move {
            let error = reach(&channels, token, &neighbour).await.err();
            if let Some(why) = &error {
                let address = &neighbour.address;
                tracing::warn!("cannot reach a neighbour's change service at {address}: {why}");
            }
            NeighbourReached {
                worker_id: neighbour.worker_id,
                error: error.unwrap_or_default(),
            }
        });
    }
    let mut reached = Vec::new();
    while let Some(answer) = checks.join_next().await {
        // A check that panicked says nothing; the coordinator's wait for
        // the answer ends it.
        reached.extend(answer.ok());
    }
    NeighboursChecked { reached }
}

/// Calls `Reach` on `neighbour`'s change service; why it failed, for
/// people (the coordinator says whose service at which address).
async fn reach(
    channels: &Channels,
    token: AttachToken,
    neighbour: &Neighbour,
) -> Result<(), String> {
    let channel = channels.to(&neighbour.address).map_err(|e| e.to_string())?;
    let mut client = ChangeServiceClient::with_interceptor(channel, token);
    let reply = tokio::time::timeout(REACH_TIMEOUT, client.reach(ReachRequest {}))
        .await
        .map_err(|_| format!("no answer within {} s", REACH_TIMEOUT.as_secs()))?
        .map_err(|status| FetchError::Call(status).to_string())?;
    let id = reply.into_inner().change_service_id;
    if id != neighbour.change_service_id {
        return Err(
            "the address answers as another worker's change service: each worker \
                    must announce an address of its own (--change-address)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::service::interceptor::InterceptedService;
    use tonic::transport::Server;

    use super::*;
    use crate::auth::CheckToken;
    use crate::change_exchange::{ChangeServer, Changes};
    use crate::pb::change_service_server::ChangeServiceServer;

    const TOKEN: &str = "a-cluster-token-of-some-length";

    /// A change service on a loopback port behind `TOKEN`: its address
    /// and number.
    async fn serving() -> (String, u64) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("its address").to_string();
        let changes = Arc::new(Changes::default());
        let id = changes.id();
        let service = InterceptedService::new(
            ChangeServiceServer::new(ChangeServer(changes)),
            CheckToken::new(Some(TOKEN)),
        );
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (address, id)
    }

    fn neighbour(worker_id: u64, address: &str, change_service_id: u64) -> Neighbour {
        Neighbour {
            worker_id,
            address: address.into(),
            change_service_id,
        }
    }

    #[tokio::test]
    async fn a_neighbour_is_reached_only_at_its_own_service_with_the_token() {
        let (address, id) = serving().await;
        let (other, other_id) = serving().await;
        assert_ne!(id, other_id, "two services drew the same number");
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let asked = CheckNeighbours {
            neighbours: vec![
                neighbour(1, &address, id),
                neighbour(2, &other, other_id),
                neighbour(3, &other, id),
                neighbour(4, &closed, 7),
            ],
        };
        let token = AttachToken::new(Some(TOKEN)).expect("a token");
        let checked = check(&Channels::default(), &token, asked.clone()).await;
        let mut said: Vec<(u64, String)> = checked
            .reached
            .into_iter()
            .map(|r| (r.worker_id, r.error))
            .collect();
        said.sort();
        let ids: Vec<u64> = said.iter().map(|s| s.0).collect();
        assert_eq!(ids, [1, 2, 3, 4], "one answer per neighbour");
        assert_eq!(said[0].1, "", "its own service");
        assert_eq!(said[1].1, "");
        assert!(
            said[2]
                .1
                .contains("answers as another worker's change service")
                && said[2].1.contains("--change-address"),
            "{}",
            said[2].1
        );
        assert!(
            said[3].1.to_lowercase().contains("refused"),
            "{}",
            said[3].1
        );
        // Without the cluster's token the service refuses the call.
        let stranger = AttachToken::new(Some("another-token-of-some-length")).expect("a token");
        let refused = check(&Channels::default(), &stranger, asked).await;
        let first = refused.reached.iter().find(|r| r.worker_id == 1);
        assert!(
            first.is_some_and(|r| r.error.contains("token")),
            "{refused:?}"
        );
    }
}
