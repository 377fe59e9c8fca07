//! The web interface on a port of its own, served from a background
//! thread while the calling thread works (`dreamfarm render --ui`).

use std::net::SocketAddr;
use std::sync::Arc;

use super::auth::Access;
use super::{Source, router};

/// Why the interface cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The address cannot be listened on.
    #[error("cannot serve the web interface on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No runtime for it.
    #[error("cannot start the web interface: {0}")]
    Runtime(std::io::Error),
}

/// A running interface; it stops when dropped.
pub struct Standalone {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl Standalone {
    /// Serves `source` on `addr` (port 0 picks one), behind `token` if
    /// given, else open.
    pub fn start(
        addr: SocketAddr,
        source: Source,
        token: Option<&str>,
    ) -> Result<Self, StandaloneError> {
        let listen = |source| StandaloneError::Listen { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(listen)?;
        listener.set_nonblocking(true).map_err(listen)?;
        let bound = listener.local_addr().map_err(listen)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dreamfarm-web")
            .enable_all()
            .build()
            .map_err(StandaloneError::Runtime)?;
        let app = router(source, Arc::new(Access::new(token)));
        runtime.spawn(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => axum::serve(listener, app).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                tracing::error!("the web interface stopped: {e}");
            }
        });
        Ok(Self {
            addr: bound,
            _runtime: runtime,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
