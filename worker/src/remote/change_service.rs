//! The change service a worker serves its neighbours (the changes of the
//! tiles it dreamed, behind the cluster token, over TLS when it has a
//! certificate), and the channels it fetches theirs through, which check
//! a TLS neighbour as it is checked itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use dreamfarm_proto::auth::CheckToken;
use dreamfarm_proto::change_channels::Channels;
use dreamfarm_proto::change_exchange::{ChangeServer, Changes};
use dreamfarm_proto::connect::ConnectError;
use dreamfarm_proto::listen;
use dreamfarm_proto::open_files::Accepting;
use dreamfarm_proto::pb::change_service_server::ChangeServiceServer;
use dreamfarm_proto::tls::{check_server_certificate, innermost};
use dreamfarm_proto::{
    CONNECTION_WINDOW_BYTES, FRAME_BYTES, MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, ServerTlsConfig};

use super::{ChangeTls, RemoteConfig, RemoteError};

/// A worker's change service, serving.
pub(super) struct ChangeService {
    /// The address it is reached at, as announced (`https://` over TLS).
    pub(super) address: String,
    /// The changes it serves.
    pub(super) changes: Arc<Changes>,
    /// Channels to the neighbours' services.
    pub(super) channels: Channels,
}

impl ChangeService {
    /// Serves the change service on `listen`, behind the cluster's token,
    /// over TLS if `config` gives it a certificate (checked at once with a
    /// handshake as a neighbour makes it); neighbours reach it at
    /// `config`'s change address (none: the address it listens on, which
    /// must then name a host).
    pub(super) async fn serve(
        listen: SocketAddr,
        config: &RemoteConfig,
    ) -> Result<Self, RemoteError> {
        let (listener, bound) = listen::bind(listen, "changes", "--change-listen")?;
        let mut address = match &config.change_address {
            Some(a) => a.dial(bound.port()),
            None if bound.ip().is_unspecified() => {
                return Err(RemoteError::NoChangeAddress(bound));
            }
            None => bound.to_string(),
        };
        let channels = Channels::new(cluster_ca(config)?, &config.change_tls_name);
        let changes = Arc::new(Changes::default());
        let service = InterceptedService::new(
            ChangeServiceServer::new(ChangeServer(changes.clone()))
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            CheckToken::new(config.token.as_deref()),
        );
        let mut server = tonic::transport::Server::builder()
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .max_frame_size(FRAME_BYTES);
        if let Some(tls) = &config.change_tls {
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity(tls)?))
                .map_err(|e| RemoteError::ChangeTlsFile {
                    flag: "--change-tls-key",
                    path: tls.key.clone(),
                    why: format!(
                        "is not the private key of --change-tls-cert in PEM ({}). Fix: pass the key the certificate was made with",
                        innermost(&e)
                    ),
                })?;
            address = format!("https://{address}");
        }
        let server = server
            .add_service(service)
            .serve_with_incoming(Accepting::tcp(listener, "the change service's port"));
        let serving = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!("the change service stopped: {e}");
            }
        });
        if let Some(tls) = &config.change_tls
            && let Err(why) = channels
                .handshake(&format!("https://{}", here(bound)))
                .await
        {
            serving.abort();
            return Err(RemoteError::ChangeTlsFile {
                flag: "--change-tls-cert",
                path: tls.cert.clone(),
                why: why.to_string(),
            });
        }
        tracing::info!(%bound, %address, "serving changes to neighbouring workers");
        if config.change_address.is_none() && bound.ip().is_loopback() {
            tracing::warn!(
                %address,
                "only workers on this machine can reach a loopback address: give the others --change-address"
            );
        }
        Ok(Self {
            address,
            changes,
            channels,
        })
    }
}

/// The change service's TLS identity from `tls`'s files, its certificate
/// checked to be one TLS clients accept as a server's.
fn identity(tls: &ChangeTls) -> Result<Identity, RemoteError> {
    let read = |flag, path: &PathBuf| {
        std::fs::read(path).map_err(|e| RemoteError::ChangeTlsFile {
            flag,
            path: path.clone(),
            why: format!("cannot be read: {e}"),
        })
    };
    let cert = read("--change-tls-cert", &tls.cert)?;
    check_server_certificate(&cert).map_err(|why| RemoteError::ChangeTlsFile {
        flag: "--change-tls-cert",
        path: tls.cert.clone(),
        why: why.to_string(),
    })?;
    Ok(Identity::from_pem(
        cert,
        read("--change-tls-key", &tls.key)?,
    ))
}

/// The CA of `--tls-ca`, which TLS neighbours are checked against (none:
/// the public web roots).
fn cluster_ca(config: &RemoteConfig) -> Result<Option<Vec<u8>>, RemoteError> {
    let Some(path) = &config.tls_ca else {
        return Ok(None);
    };
    std::fs::read(path).map(Some).map_err(|source| {
        RemoteError::Connect(ConnectError::Ca {
            path: path.display().to_string(),
            source,
        })
    })
}

/// Where this machine reaches a service `bound` to an address: itself,
/// or loopback for an address of every interface.
fn here(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, bound.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, bound.port()).into(),
        _ => bound,
    }
}
