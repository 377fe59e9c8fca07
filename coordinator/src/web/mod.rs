//! The web interface: the jobs with live previews, one job's frames,
//! settings and event log, the workers, the job controls and downloads,
//! for browsers and scripts. The coordinator serves it on its HTTP port
//! beside `/metrics`; `dreamfarm render --ui ADDR` serves it for one
//! render on this machine.
//!
//! - [`source`]: what is shown, whoever renders: [`cluster_source`] (a
//!   coordinator's jobs and pool) or [`local_job`] (one render here).
//! - [`auth`]: the token, the login form and sessions; [`cross_site`]:
//!   actions only from this site's own pages.
//! - [`pages`]: the HTML; [`routes`]: pages, live data and controls;
//!   [`files`]: frames, video and zip; [`error`]: refusals as pages.
//! - [`standalone`]: the interface on a port of its own (`render --ui`).
//!
//! Server-rendered HTML with a little JavaScript (`assets/app.js` polls
//! `/jobs.json` every 2 s); assets are compiled into the binary.

pub mod auth;
pub mod cluster_source;
pub mod cross_site;
pub mod error;
pub mod files;
pub mod local_job;
pub mod pages;
pub mod routes;
pub mod source;
pub mod standalone;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, Uri, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use auth::Access;
use error::WebError;
use source::JobSource;

/// The jobs the handlers show.
pub type Source = Arc<dyn JobSource>;

/// Runs `f` (which may block on the job store or a job's thread) off the
/// async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WebError::Internal(format!("the request's task failed: {e}")))?
}

/// The script of every page.
const APP_JS: &str = include_str!("assets/app.js");
/// The style of every page.
const STYLE_CSS: &str = include_str!("assets/style.css");

/// An embedded asset, revalidated on each load so an upgrade shows at once.
fn asset(kind: &'static str, text: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
}

/// The interface over `source`, behind `access`: every page, image,
/// download and action needs the token or a session; the login form and
/// the assets do not.
pub fn router(source: Source, access: Arc<Access>) -> Router {
    let guarded = Router::new()
        .route("/", get(routes::index))
        .route("/jobs.json", get(routes::live))
        .route("/workers", get(routes::workers))
        .route("/jobs/{id}", get(routes::job))
        .route("/jobs/{id}/latest.png", get(files::latest))
        .route("/jobs/{id}/frames/{file}", get(files::frame))
        .route("/jobs/{id}/video.mp4", get(files::video))
        .route("/jobs/{id}/frames.zip", get(files::frames_zip))
        .route("/jobs/{id}/{action}", post(routes::control))
        .with_state(source)
        .route_layer(from_fn_with_state(access.clone(), auth::require_access));
    let login = Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .with_state(access);
    let assets = Router::new()
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        );
    // Addresses that match nothing get the error page a missing job gets,
    // not an empty reply (say a link typed by hand, or a bookmarked action).
    guarded
        .merge(login)
        .merge(assets)
        .fallback(|uri: Uri| async move {
            WebError::NotFound(format!("there is no page at {}", uri.path()))
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            let path = uri.path().to_string();
            WebError::NotAvailable(match method {
                Method::GET => format!("{path} is an action: use its button on the page"),
                _ => format!("{path} does not take {method}"),
            })
        })
        .layer(from_fn(cross_site::refuse_cross_site))
}
