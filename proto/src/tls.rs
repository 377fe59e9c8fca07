//! TLS set up wrong, told in words that say what to fix: a coordinator
//! certificate that clients will refuse (checked when the coordinator
//! starts), and the failures a client or worker meets when its TLS and the
//! coordinator's do not match (a refused certificate, or one end speaking
//! TLS and the other not). The command-line clients and the worker both
//! explain their failures through [`diagnose`].

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codegen::http::Uri;

/// Where the documentation tells how to make a CA and a server certificate.
pub const TLS_GUIDE: &str = "deploy/TLS.md";

/// How long [`diagnose`] waits for a coordinator to answer its probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP/2 connection preface and an empty SETTINGS frame: what a
/// plaintext gRPC client sends first.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Why a certificate cannot serve as the coordinator's own.
#[derive(Debug, thiserror::Error)]
pub enum ServerCertError {
    /// The file holds no PEM certificate.
    #[error("holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----): {0}")]
    Pem(String),
    /// The certificate does not parse.
    #[error("is not an X.509 certificate ({0:?})")]
    Der(webpki::Error),
    /// A CA certificate: clients refuse it as a server's own.
    #[error(
        "is a CA certificate (basicConstraints CA:TRUE); TLS clients refuse a CA certificate as a server's own (rustls: CaUsedAsEndEntity). Make a CA, then a server certificate signed by it: see {TLS_GUIDE}"
    )]
    Ca,
}

/// Checks that the first certificate of `pem` (the coordinator's own; a
/// chain may follow it) is one that TLS clients accept as a server's:
/// that it parses and is not a CA certificate. Its dates and names are
/// left to the clients, whose clocks and URLs decide them.
pub fn check_server_certificate(pem: &[u8]) -> Result<(), ServerCertError> {
    let der =
        CertificateDer::from_pem_slice(pem).map_err(|e| ServerCertError::Pem(e.to_string()))?;
    let cert = webpki::EndEntityCert::try_from(&der).map_err(ServerCertError::Der)?;
    // Verified against no trust anchor, a certificate fails with
    // UnknownIssuer once its own properties pass; they are checked at a
    // time within its validity, so that its dates hide nothing.
    let mut at = UnixTime::now();
    loop {
        let verified = cert.verify_for_usage(
            &[],
            &[],
            &[],
            at,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        );
        match verified {
            Err(webpki::Error::CaUsedAsEndEntity) => return Err(ServerCertError::Ca),
            Err(webpki::Error::CertExpired { not_after, .. }) if at != not_after => at = not_after,
            Err(webpki::Error::CertNotValidYet { not_before, .. }) if at != not_before => {
                at = not_before;
            }
            _ => return Ok(()),
        }
    }
}

/// TLS that does not match between this side and the coordinator at
/// `url`, as advice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsMismatch {
    /// The coordinator presents a CA certificate as its own.
    #[error(
        "the coordinator at {url} presents a CA certificate as its own, which TLS clients refuse (rustls: CaUsedAsEndEntity). Make a CA, then a server certificate signed by it, and start the coordinator with that one as --tls-cert: see {TLS_GUIDE}"
    )]
    CaAsServer {
        /// The coordinator's URL.
        url: String,
    },
    /// The coordinator's certificate is signed by a CA this side does not
    /// trust.
    #[error(
        "the coordinator at {url} presents a certificate signed by a CA this side does not trust (rustls: UnknownIssuer): pass the CA that signed the coordinator's --tls-cert with --tls-ca FILE (or DREAMFARM_TLS_CA)"
    )]
    UnknownIssuer {
        /// The coordinator's URL.
        url: String,
    },
    /// The coordinator's certificate does not name the host dialled.
    #[error(
        "the coordinator at {url} presents a certificate that is not for {host} ({detail}): dial it by a name its certificate lists, or make its certificate with {host} in subjectAltName: see {TLS_GUIDE}"
    )]
    WrongName {
        /// The coordinator's URL.
        url: String,
        /// The host in the URL.
        host: String,
        /// What rustls said, with the names the certificate has.
        detail: String,
    },
    /// Another certificate refusal (expired, bad signature, …).
    #[error(
        "the coordinator at {url} presents a certificate this side refuses ({detail}): check the coordinator's --tls-cert and this side's --tls-ca: see {TLS_GUIDE}"
    )]
    Certificate {
        /// The coordinator's URL.
        url: String,
        /// What rustls said.
        detail: String,
    },
    /// A plaintext (`http://`) client, a coordinator that serves TLS.
    #[error(
        "the coordinator at {url} answered with TLS: use {https} (and --tls-ca FILE for a private CA)"
    )]
    ServesTls {
        /// The URL dialled.
        url: String,
        /// The same with `https://`.
        https: String,
    },
    /// A TLS (`https://`) client, a plaintext coordinator.
    #[error(
        "the coordinator at {url} is not serving TLS: use {http} (or start it with --tls-cert and --tls-key)"
    )]
    NoTls {
        /// The URL dialled.
        url: String,
        /// The same with `http://`.
        http: String,
    },
}

/// What a call to the coordinator at `url` that failed with `error` (a
/// connect error, or a call's `tonic::Status`) says about TLS: a
/// certificate this side refused, or, for bytes on the wire that made no
/// sense, whether the coordinator speaks TLS where this side does not, or
/// the reverse (found by probing its port). `None` when TLS is not the
/// trouble (or the coordinator cannot be reached to tell).
pub async fn diagnose(url: &str, error: &(dyn StdError + 'static)) -> Option<TlsMismatch> {
    let links = chain(error);
    if let Some(refused) = links
        .iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
        .and_then(|e| certificate_refusal(url, e))
    {
        return Some(refused);
    }
    // Only a failure where the other end spoke another protocol is worth
    // a probe: not a status the coordinator sent, a refused connection or
    // a timeout.
    if !links.iter().any(|e| garbled(*e)) {
        return None;
    }
    let uri: Uri = url.parse().ok()?;
    let authority = uri.authority()?;
    let tls = uri.scheme_str() == Some("https");
    let address = match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{authority}:{}", if tls { 443 } else { 80 }),
    };
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    if tls {
        let first = probe(&address, HTTP2_PREFACE).await?;
        // A frame header: 3 bytes of length, then the type; a server's
        // first frame is its SETTINGS (type 4).
        (first.len() >= 4 && first[3] == 4).then(|| TlsMismatch::NoTls {
            url: url.to_string(),
            http: format!("http://{rest}"),
        })
    } else {
        let first = probe(&address, &client_hello(authority.host())?).await?;
        // A TLS record: handshake (22) or alert (21), version 3.x.
        (first.len() >= 2 && matches!(first[0], 21 | 22) && first[1] == 3).then(|| {
            TlsMismatch::ServesTls {
                url: url.to_string(),
                https: format!("https://{rest}"),
            }
        })
    }
}

/// The description of the last error in `error`'s chain of sources (see
/// `chain`): the cause itself, without the layers that wrap it.
pub fn innermost(error: &(dyn StdError + 'static)) -> String {
    chain(error).last().unwrap_or(&error).to_string()
}

/// `error` and its sources, including the error an `std::io::Error`
/// wraps (which its `source()` skips).
pub(crate) fn chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut links = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        links.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    links
}

/// Whether `e` is how a failure looks when the two ends speak different
/// protocols: HTTP/2 that met TLS bytes, a TLS handshake that met HTTP/2
/// bytes, or a peer that hung up on what it was sent.
fn garbled(e: &(dyn StdError + 'static)) -> bool {
    use std::io::ErrorKind as K;
    e.is::<h2::Error>()
        || matches!(
            e.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidMessage(_))
        )
        || e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                K::UnexpectedEof | K::ConnectionReset | K::BrokenPipe
            )
        })
}

/// The advice for a TLS handshake that refused the coordinator's
/// certificate, if that is what `e` is.
fn certificate_refusal(url: &str, e: &rustls::Error) -> Option<TlsMismatch> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(cert) = e else {
        return None;
    };
    let url = url.to_string();
    Some(match cert {
        C::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            TlsMismatch::CaAsServer { url }
        }
        C::UnknownIssuer => TlsMismatch::UnknownIssuer { url },
        C::NotValidForName | C::NotValidForNameContext { .. } => TlsMismatch::WrongName {
            host: url
                .parse::<Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_string))
                .unwrap_or_default(),
            url,
            detail: e.to_string(),
        },
        _ => TlsMismatch::Certificate {
            url,
            detail: e.to_string(),
        },
    })
}

/// A TLS ClientHello for `host`, as a TLS client sends first.
fn client_hello(host: &str) -> Option<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string()).ok()?;
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).ok()?;
    Some(hello)
}

/// Connects to `address`, sends `first` and returns the first bytes that
/// come back (`None` if none come within [`PROBE_TIMEOUT`]).
async fn probe(address: &str, first: &[u8]) -> Option<Vec<u8>> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(first).await.ok()?;
        let mut reply = vec![0; 16];
        let n = stream.read(&mut reply).await.ok()?;
        reply.truncate(n);
        (n > 0).then_some(reply)
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    use super::*;

    /// A CA's settings, valid from `from` to `to` (Unix seconds).
    fn ca(from: i64, to: i64) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(from as u64);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(to as u64);
        params
    }

    #[test]
    fn a_server_certificate_signed_by_a_ca_passes() {
        let ca_key = KeyPair::generate().unwrap();
        let issuer = Issuer::new(ca(0, 4_000_000_000), &ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        check_server_certificate(cert.pem().as_bytes()).unwrap();
    }

    #[test]
    fn a_ca_certificate_is_refused_whatever_its_dates() {
        let now = UnixTime::now().as_secs() as i64;
        for (from, to) in [(0, 4_000_000_000), (0, now - 10), (now + 1000, now + 2000)] {
            let key = KeyPair::generate().unwrap();
            let cert = ca(from, to).self_signed(&key).unwrap();
            assert!(
                matches!(
                    check_server_certificate(cert.pem().as_bytes()),
                    Err(ServerCertError::Ca)
                ),
                "valid {from}..{to}"
            );
        }
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let key = KeyPair::generate().unwrap();
        assert!(matches!(
            check_server_certificate(key.serialize_pem().as_bytes()),
            Err(ServerCertError::Pem(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_certificate_is_found_inside_an_io_error() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        let url = "https://localhost:1";
        assert_eq!(
            diagnose(url, &io).await,
            Some(TlsMismatch::UnknownIssuer { url: url.into() })
        );
        // A status the coordinator sent is no TLS trouble, and not probed.
        let status = tonic::Status::not_found("no job");
        assert_eq!(diagnose(url, &status).await, None);
    }
}
