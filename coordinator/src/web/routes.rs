//! The pages, the live data `app.js` polls, and the job controls.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use maud::Markup;
use serde::Serialize;

use super::auth::Admitted;
use super::error::WebError;
use super::pages::{self, JobPage, Nav, segment};
use super::source::{Action, JobList};
use super::{Source, blocking};

/// The header's links for a request `admitted` to an interface that
/// `has_pool` (a cluster) or not (a single-machine render).
fn nav(has_pool: bool, admitted: Admitted) -> Nav {
    Nav {
        workers: has_pool,
        log_out: admitted.behind_token,
    }
}

/// Finished jobs the index shows, the newest: a farm's history runs to
/// thousands, and a page of them all to megabytes, polled every 2 s.
const PAGE_FINISHED_JOBS: usize = 100;

/// `GET /`: the unfinished jobs and the newest finished ones.
pub async fn index(
    State(source): State<Source>,
    Extension(admitted): Extension<Admitted>,
) -> Result<Markup, WebError> {
    blocking(move || {
        let pool = source.pool();
        let nav = nav(pool.is_some(), admitted);
        Ok(pages::index(
            &source.jobs(PAGE_FINISHED_JOBS),
            pool.as_ref(),
            nav,
        ))
    })
    .await
}

/// What `GET /jobs.json` answers: the index's jobs, and the tiles
/// waiting.
#[derive(Debug, Serialize)]
pub struct Live {
    /// The jobs the index shows, newest first, and how many it leaves out.
    #[serde(flatten)]
    jobs: JobList,
    /// Tiles waiting for a worker (absent on a single-machine render).
    queued_tiles: Option<usize>,
}

/// `GET /jobs.json`: what the pages refresh themselves with.
pub async fn live(State(source): State<Source>) -> Result<Json<Live>, WebError> {
    blocking(move || {
        Ok(Json(Live {
            jobs: source.jobs(PAGE_FINISHED_JOBS),
            queued_tiles: source.pool().map(|p| p.queued_tiles),
        }))
    })
    .await
}

/// Events a job's page shows, the latest: a long render logs one a frame,
/// and a page of every one of them would run to megabytes.
const PAGE_EVENTS: usize = 500;

/// `GET /jobs/JOB`: one job.
pub async fn job(
    State(source): State<Source>,
    Extension(admitted): Extension<Admitted>,
    Path(id): Path<String>,
) -> Result<Markup, WebError> {
    blocking(move || {
        let job = source.job(&id)?;
        let files = source.files(&id)?;
        let (events, events_total) = source.latest_events(&id, PAGE_EVENTS)?;
        let cluster = source.pool().is_some();
        let page = JobPage {
            job: &job,
            settings: &files.settings,
            events: &events,
            events_total,
            cluster,
            controls: source.controls(),
            has_video: files.video.is_file(),
        };
        Ok(pages::job(&page, nav(cluster, admitted)))
    })
    .await
}

/// `GET /workers`: the pool.
pub async fn workers(
    State(source): State<Source>,
    Extension(admitted): Extension<Admitted>,
) -> Result<Markup, WebError> {
    let pool = source.pool().ok_or_else(|| {
        WebError::NotFound("this render runs on one machine: it has no workers".into())
    })?;
    Ok(pages::workers(&pool, nav(true, admitted)))
}

/// The action `name` of `POST /jobs/JOB/NAME`, with its form `body`.
pub fn parse_action(name: &str, body: &[u8]) -> Result<Action, WebError> {
    Ok(match name {
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "cancel" => Action::Cancel,
        "retry" => Action::Retry,
        "priority" => {
            let given = form_urlencoded::parse(body)
                .find_map(|(k, v)| (k == "priority").then_some(v))
                .unwrap_or_default();
            let priority = given.trim().parse().map_err(|_| {
                WebError::BadRequest(format!(
                    "priority {given:?} is not a whole number: send priority=N, e.g. 5 or -2 (higher runs first)"
                ))
            })?;
            Action::Priority(priority)
        }
        other => {
            return Err(WebError::NotFound(format!(
                "no action {other:?}: the actions are pause, resume, cancel, retry and priority"
            )));
        }
    })
}

/// `POST /jobs/JOB/ACTION`: applies it (as `dreamfarm ACTION` would) and
/// goes back to the job's page.
pub async fn control(
    State(source): State<Source>,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, WebError> {
    let action = parse_action(&name, &body)?;
    if !source.controls() {
        return Err(WebError::NotAvailable(
            "this is a single-machine render: its page is read-only (stop it with Ctrl-C)".into(),
        ));
    }
    let back = format!("/jobs/{}", segment(&id));
    blocking(move || source.control(&id, action)).await?;
    Ok(Redirect::to(&back).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_priorities_parse_or_say_why_not() {
        assert_eq!(parse_action("pause", b""), Ok(Action::Pause));
        assert_eq!(
            parse_action("priority", b"priority=-2"),
            Ok(Action::Priority(-2))
        );
        assert_eq!(
            parse_action("priority", b"x=1&priority=%2B5"),
            Ok(Action::Priority(5))
        );
        for bad in [&b"priority=high"[..], b"", b"priority=99999999999"] {
            assert!(matches!(
                parse_action("priority", bad),
                Err(WebError::BadRequest(_))
            ));
        }
        assert!(matches!(
            parse_action("explode", b""),
            Err(WebError::NotFound(_))
        ));
    }
}
