//! The web interface on a port of its own, served from a background
//! thread while the calling thread works (`dreamfarm render --ui`).

use std::net::SocketAddr;
use std::sync::Arc;

use dreamfarm_proto::listen::{self, ListenError};
use dreamfarm_proto::open_files::HttpListener;

use super::auth::Access;
use super::{Source, router};

/// Why the interface cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The address cannot be listened on.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// No runtime for it.
    #[error("cannot start the web interface: {0}")]
    Runtime(std::io::Error),
}

/// A running interface; it stops when dropped.
pub struct Standalone {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// The interface's port, taken before there is anything to serve, so that
/// a render whose address is taken stops before it makes its folder.
pub struct Listener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Listens on `addr` (port 0 picks one).
    pub fn bind(addr: SocketAddr) -> Result<Self, StandaloneError> {
        let (listener, addr) = listen::bind_std(addr, "the web interface", "--ui")?;
        Ok(Self { listener, addr })
    }
}

impl Standalone {
    /// Serves `source` on `listener`, behind `token` if given, else open.
    pub fn start(
        listener: Listener,
        source: Source,
        token: Option<&str>,
    ) -> Result<Self, StandaloneError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dreamfarm-web")
            .enable_all()
            .build()
            .map_err(StandaloneError::Runtime)?;
        let app = router(source, Arc::new(Access::new(token)));
        let Listener { listener, addr } = listener;
        runtime.spawn(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    let listener = HttpListener::new(listener, "the web interface's port");
                    axum::serve(listener, app).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                tracing::error!("the web interface stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            _runtime: runtime,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
