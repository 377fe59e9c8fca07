//! Channels from a worker to its neighbours' change services, and the TLS
//! they are served with.
//!
//! A neighbour announces `host:port` (plaintext) or `https://host:port`
//! (TLS). Pod IPs come and go, so a TLS change service is not checked
//! against the address dialled but against one name every worker's
//! change certificate carries ([`CHANGE_TLS_NAME`] unless set), signed by
//! the cluster's CA: a certificate for that name is what a neighbour must
//! show, whatever its address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::change_exchange::FetchError;
use crate::tls::{TLS_GUIDE, chain, innermost};
use crate::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};

/// The name a worker's change certificate carries unless the cluster
/// picks another (`--change-tls-name`).
pub const CHANGE_TLS_NAME: &str = "dreamfarm-worker";

/// How long a worker's check of its own change service may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long dialling a neighbour may take: one whose packets are dropped
/// (a network policy that denies the port) would otherwise show no error
/// for the two minutes of the kernel's connection retries. A fetch that
/// has connected waits for as long as its neighbour takes to dream the
/// change, the HTTP/2 pings telling a live neighbour from a lost link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Quiet time on a connection to a neighbour, while a fetch waits on it,
/// after which it is pinged: shorter than the coordinator's link
/// ([`crate::KEEPALIVE_INTERVAL`]), since a frame's regions all wait on a
/// fetch that hangs, and a live neighbour answers pings while it dreams.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a neighbour's ping may go unanswered before its connection is
/// dropped and the fetch fails.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Channels to the change services met, by address: shared by a worker's
/// regions, so that a neighbour is one connection however many regions
/// fetch from it.
#[derive(Clone)]
pub struct Channels {
    /// The channel to each address met.
    open: Arc<Mutex<HashMap<String, Channel>>>,
    /// How a neighbour announcing `https://` is checked.
    tls: ClientTlsConfig,
    /// The name its certificate must carry.
    name: String,
}

impl Default for Channels {
    /// Channels that trust the public web roots for TLS neighbours
    /// named [`CHANGE_TLS_NAME`].
    fn default() -> Self {
        Self::new(None, CHANGE_TLS_NAME)
    }
}

impl Channels {
    /// Channels that check TLS neighbours against `ca` (PEM), or the
    /// public web roots without one, expecting certificates for `name`
    /// whatever address they are dialled at.
    pub fn new(ca: Option<Vec<u8>>, name: &str) -> Self {
        let tls = ClientTlsConfig::new().domain_name(name);
        let tls = match ca {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_webpki_roots(),
        };
        Self {
            open: Arc::default(),
            tls,
            name: name.to_string(),
        }
    }

    /// A channel to the change service at `address`: the one already
    /// made, or a new one (connected on first use).
    pub fn to(&self, address: &str) -> Result<Channel, FetchError> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(channel) = open.get(address) {
            return Ok(channel.clone());
        }
        let channel = self
            .endpoint(address)
            .map_err(|e| FetchError::Call(tonic::Status::invalid_argument(e)))?
            .connect_lazy();
        open.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// The endpoint of the change service at `address`, over TLS if it
    /// says `https://`.
    fn endpoint(&self, address: &str) -> Result<Endpoint, String> {
        let endpoint = if address.starts_with("https://") {
            Endpoint::from_shared(address.to_string()).and_then(|e| e.tls_config(self.tls.clone()))
        } else {
            Endpoint::from_shared(format!("http://{address}"))
        }
        .map_err(|e| format!("bad change service address {address:?}: {e}"))?;
        Ok(endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .http2_adaptive_window(false))
    }

    /// Makes the TLS handshake a neighbour makes with the change service
    /// at `address` (`https://`): a worker checks its own at start, so
    /// that a certificate signed by another CA, or for another name, stops
    /// it there instead of failing every fetch of its changes.
    pub async fn handshake(&self, address: &str) -> Result<(), ChangeCertError> {
        let endpoint = self.endpoint(address).map_err(ChangeCertError::Other)?;
        let connected = tokio::time::timeout(CHECK_TIMEOUT, endpoint.connect())
            .await
            .map_err(|_| {
                ChangeCertError::Other(format!("no TLS handshake at {address} within 10 s"))
            })?;
        let Err(e) = connected else {
            return Ok(());
        };
        let refused = chain(&e)
            .into_iter()
            .find_map(|e| e.downcast_ref::<rustls::Error>().cloned());
        Err(match refused {
            Some(rustls::Error::InvalidCertificate(cert)) => {
                use rustls::CertificateError as C;
                match cert {
                    C::UnknownIssuer => ChangeCertError::NotSigned("UnknownIssuer"),
                    // Signed by another key under the CA's name: a CA made
                    // again, say.
                    C::BadSignature => ChangeCertError::NotSigned("BadSignature"),
                    C::NotValidForName | C::NotValidForNameContext { .. } => {
                        ChangeCertError::WrongName {
                            name: self.name.clone(),
                            detail: format!("{cert:?}"),
                        }
                    }
                    other => ChangeCertError::Other(format!("{other:?}")),
                }
            }
            Some(other) => ChangeCertError::Other(other.to_string()),
            None => ChangeCertError::Other(innermost(&e)),
        })
    }
}

/// Why neighbours would refuse a worker's change certificate.
#[derive(Debug, thiserror::Error)]
pub enum ChangeCertError {
    /// Not signed by the CA the workers trust.
    #[error(
        "is not signed by the CA the workers trust (--tls-ca; rustls: {0}). Fix: sign it with the cluster's CA, the one that signed the coordinator's certificate: see {TLS_GUIDE}"
    )]
    NotSigned(&'static str),
    /// Not for the name neighbours check.
    #[error(
        "is not for {name}, the name the workers check (--change-tls-name; rustls: {detail}). Fix: make it with DNS:{name} in subjectAltName: see {TLS_GUIDE}"
    )]
    WrongName {
        /// The name checked.
        name: String,
        /// What rustls said, with the names the certificate has.
        detail: String,
    },
    /// Anything else: it expired, it is not for serving, ….
    #[error(
        "is refused: {0}. Fix: check --change-tls-cert, --change-tls-key and --tls-ca: see {TLS_GUIDE}"
    )]
    Other(String),
}
