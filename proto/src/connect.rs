//! Opening a channel to the coordinator, plain or over TLS.

use std::path::Path;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::tls::{TlsMismatch, diagnose, innermost};
use crate::{
    CONNECTION_WINDOW_BYTES, FRAME_BYTES, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT,
    STREAM_WINDOW_BYTES,
};

/// Why the coordinator could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse.
    #[error(
        "bad coordinator URL {url:?} ({reason}); write it like http://host:7070 or https://host:7070"
    )]
    Url {
        /// The URL given.
        url: String,
        /// Why it is bad.
        reason: String,
    },
    /// The CA file cannot be read.
    #[error("cannot read the TLS CA certificate {path}: {source}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The coordinator answered, but TLS does not match between it and
    /// this side.
    #[error("{mismatch}")]
    Tls {
        /// What does not match, as advice.
        mismatch: crate::tls::TlsMismatch,
        /// The failure it was read from.
        cause: tonic::transport::Error,
    },
    /// No connection. The message names the innermost cause (say
    /// "Connection refused") once: tonic's own chain repeats "transport
    /// error" and "tcp connect error" around it.
    #[error(
        "cannot reach the coordinator at {url}: {}; is `dreamfarm coordinator` running there?",
        innermost(.cause)
    )]
    Transport {
        /// The URL.
        url: String,
        /// The failure, kept for logs and matching, not for the message.
        cause: tonic::transport::Error,
    },
}

/// Connects to `url`; `https://` URLs use TLS, trusting `ca` (a PEM file)
/// or, without one, the public web roots. The channel pings a quiet
/// coordinator, so that a link gone silent ends the calls on it with an
/// error instead of leaving them waiting. A failure that TLS explains
/// (see [`diagnose`]) is [`ConnectError::Tls`].
pub async fn connect(url: &str, ca: Option<&Path>) -> Result<Channel, ConnectError> {
    let bad = |reason: String| ConnectError::Url {
        url: url.to_string(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| bad(e.to_string()))?;
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|source| ConnectError::Ca {
                path: ca.display().to_string(),
                source,
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    } else if !url.starts_with("http://") {
        return Err(bad("the scheme must be http or https".into()));
    }
    let connected = endpoint
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(FRAME_BYTES)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .connect()
        .await;
    match connected {
        Ok(channel) => Ok(channel),
        Err(cause) => Err(match diagnose(url, &cause).await {
            Some(mismatch) => ConnectError::Tls { mismatch, cause },
            None => ConnectError::Transport {
                url: url.to_string(),
                cause,
            },
        }),
    }
}

/// The address dialled answered HTTP, but not as a gRPC server: most
/// often the coordinator's web and metrics port given for its gRPC port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{url} answered HTTP (status {http}) but not gRPC, so it is not the coordinator's gRPC port. Fix: dial the port of the coordinator's --listen (7070 unless set); its web page and metrics (--metrics-listen, 9090 unless set) are for browsers and Prometheus"
)]
pub struct NotGrpc {
    /// The URL dialled.
    pub url: String,
    /// The HTTP status it answered with.
    pub http: String,
}

/// Whether the call to `url` that failed with `status` met an HTTP server
/// that is not a gRPC one, read from how tonic words it: a body without
/// gRPC's framing (a web page), or an HTTP status without gRPC's.
fn not_grpc(url: &str, status: &tonic::Status) -> Option<NotGrpc> {
    const BODY: &str = " while receiving response with status: ";
    const NO_STATUS: &str = "grpc-status header missing, mapped from HTTP status code ";
    let message = status.message();
    let (_, http) = message
        .split_once(BODY)
        .or_else(|| message.split_once(NO_STATUS))?;
    Some(NotGrpc {
        url: url.to_string(),
        http: http.to_string(),
    })
}

/// A call that reached something other than the coordinator it meant to:
/// advice in place of the coordinator's own words.
#[derive(Debug, thiserror::Error)]
pub enum Misdialled {
    /// An HTTP server that is not the coordinator's gRPC port.
    #[error(transparent)]
    NotGrpc(#[from] NotGrpc),
    /// TLS on one side and not the other, or a certificate refused.
    #[error(transparent)]
    Tls(#[from] TlsMismatch),
}

/// Whether the call to `url` that failed with `status` dialled the wrong
/// port (see `not_grpc`) or mismatched TLS (see `diagnose`).
pub async fn misdialled(url: &str, status: &tonic::Status) -> Option<Misdialled> {
    if let Some(wrong_port) = not_grpc(url, status) {
        return Some(wrong_port.into());
    }
    diagnose(url, status).await.map(Misdialled::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_server_that_is_not_grpc_is_told_from_a_coordinators_answer() {
        let url = "http://host:9090";
        // As tonic 0.14 words them (the cluster test meets the first from
        // a real coordinator's web port).
        let page = tonic::Status::internal(
            "protocol error: received message with invalid compression flag: 60 (valid flags are 0 and 1) while receiving response with status: 404 Not Found",
        );
        let bare = tonic::Status::unimplemented(
            "grpc-status header missing, mapped from HTTP status code 404",
        );
        for (status, http) in [(page, "404 Not Found"), (bare, "404")] {
            let found = not_grpc(url, &status).expect("not gRPC");
            assert_eq!(found.http, http);
            assert!(
                found
                    .to_string()
                    .contains("Fix: dial the port of the coordinator's --listen")
            );
        }
        for answer in [
            tonic::Status::not_found("no job \"x\""),
            tonic::Status::internal("the store failed"),
        ] {
            assert_eq!(not_grpc(url, &answer), None);
        }
    }

    #[tokio::test]
    async fn an_unreachable_coordinator_is_named_with_the_cause_once() {
        // A port nobody listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = connect(&url, None).await.expect_err("nobody listens");
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "cannot reach the coordinator at {url}: Connection refused (os error 111); \
                 is `dreamfarm coordinator` running there?"
            )
        );
        // The message is the whole story: no source chain repeats it.
        assert!(std::error::Error::source(&err).is_none());
    }
}
