//! Who may use the web interface: scripts send the cluster token as
//! `Authorization: Bearer TOKEN`; browsers log in once at `/login` with it
//! and get a random session id in an HttpOnly, SameSite=Strict cookie (the
//! token itself never goes into a cookie). Without a configured token the
//! interface is open, as the gRPC port is then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use dreamfarm_proto::auth::constant_time_eq;
use serde::Deserialize;

use super::pages;

/// The session cookie's name.
pub const COOKIE: &str = "dreamfarm_session";

/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Sessions kept at most; the oldest goes first (logins are rare, so this
/// only bounds memory against a script that logs in in a loop).
const MAX_SESSIONS: usize = 10_000;

/// The token and the browsers' sessions (see the module docs).
pub struct Access {
    token: Option<Arc<str>>,
    sessions: Mutex<HashMap<String, Instant>>,
}

/// What a request showed to get in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// Nothing (or nothing that matches).
    Missing,
    /// A bearer token that is not the cluster's.
    WrongToken,
    /// The token, or a live session.
    Valid,
}

impl Access {
    /// Checks for `token`; `None` lets everyone in.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(Into::into),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether no token is needed.
    pub fn is_open(&self) -> bool {
        self.token.is_none()
    }

    /// The live sessions (a poisoned lock still holds whole entries).
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `given` is the token (in constant time).
    fn is_token(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| constant_time_eq(given.as_bytes(), t.as_bytes()))
    }

    /// What the request's headers carry.
    pub fn credential(&self, headers: &HeaderMap) -> Credential {
        if self.is_open() {
            return Credential::Valid;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(token) = bearer {
            return match self.is_token(token) {
                true => Credential::Valid,
                false => Credential::WrongToken,
            };
        }
        let live = session_id(headers).is_some_and(|id| {
            self.sessions()
                .get(id)
                .is_some_and(|born| born.elapsed() < SESSION_LIFETIME)
        });
        match live {
            true => Credential::Valid,
            false => Credential::Missing,
        }
    }

    /// A new session for someone who gave `token`; `None` when it is not
    /// the token.
    pub fn login(&self, token: &str) -> Result<Option<String>, getrandom::Error> {
        if !self.is_token(token) {
            return Ok(None);
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut sessions = self.sessions();
        sessions.retain(|_, born| born.elapsed() < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, born)| **born)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), Instant::now());
        Ok(Some(id))
    }

    /// Ends the request's session, if it has one.
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            self.sessions().remove(id);
        }
    }
}

/// The session id in the request's cookies.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Where to go after logging in: a path on this server, never another
/// site (`//evil.example` or `https://...` become `/`).
pub fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/",
    }
}

/// What [`require_access`] hands the pages of a request it let in.
#[derive(Debug, Clone, Copy)]
pub struct Admitted {
    /// The interface has a token, so a browser has a session to end.
    pub behind_token: bool,
}

/// Middleware: lets a request through with the token or a session (and
/// [`Admitted`] in its extensions), else answers 401 (with the login form
/// for a browser that asked for a page).
pub async fn require_access(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: Next,
) -> Response {
    let why = match access.credential(request.headers()) {
        Credential::Valid => {
            request.extensions_mut().insert(Admitted {
                behind_token: !access.is_open(),
            });
            return next.run(request).await;
        }
        Credential::WrongToken => "wrong token: send the coordinator's --token (DREAMFARM_TOKEN)",
        Credential::Missing => {
            "no token: send Authorization: Bearer TOKEN (the coordinator's --token), or log in at /login"
        }
    };
    let wants_page = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let mut response = if wants_page {
        let here = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        pages::login(&here, None).into_response()
    } else {
        format!("{why}\n").into_response()
    };
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"dreamfarm\""),
    );
    response
}

/// The query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// Where to go after logging in.
    next: Option<String>,
}

/// `GET /login`: the form.
pub async fn login_form(
    State(access): State<Arc<Access>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = local_path(q.next.as_deref());
    if access.is_open() {
        return Redirect::to(next).into_response();
    }
    pages::login(next, None).into_response()
}

/// The form of `POST /login`.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The cluster token.
    token: String,
    /// Where to go after logging in.
    next: Option<String>,
}

/// `POST /login`: a session cookie for the right token, the form again
/// (401) for a wrong one.
pub async fn login(State(access): State<Arc<Access>>, Form(form): Form<LoginForm>) -> Response {
    let next = local_path(form.next.as_deref());
    if access.is_open() {
        return Redirect::to(next).into_response();
    }
    match access.login(&form.token) {
        Ok(Some(id)) => {
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                SESSION_LIFETIME.as_secs()
            );
            let mut response = Redirect::to(next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            pages::login(next, Some("That is not the cluster's token.")),
        )
            .into_response(),
        Err(e) => {
            tracing::error!("no randomness for a session id: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot make a session id: the system has no randomness to give",
                ),
            )
                .into_response()
        }
    }
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(State(access): State<Arc<Access>>, headers: HeaderMap) -> Response {
    access.logout(&headers);
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's headers.
    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_token_or_a_session_gets_in_nothing_else_does() {
        let access = Access::new(Some("s3cret"));
        let bearer = |t: &str| headers(&[(header::AUTHORIZATION, &format!("Bearer {t}"))]);
        assert_eq!(access.credential(&bearer("s3cret")), Credential::Valid);
        assert_eq!(access.credential(&bearer("s3cre")), Credential::WrongToken);
        assert_eq!(access.credential(&HeaderMap::new()), Credential::Missing);
        assert_eq!(access.login("nope").unwrap(), None);
        let id = access.login("s3cret").unwrap().unwrap();
        assert_eq!(id.len(), 64);
        assert!(!id.contains("s3cret"));
        let cookie = |v: &str| headers(&[(header::COOKIE, &format!("theme=dark; {COOKIE}={v}"))]);
        assert_eq!(access.credential(&cookie(&id)), Credential::Valid);
        assert_eq!(access.credential(&cookie("forged")), Credential::Missing);
        access.logout(&cookie(&id));
        assert_eq!(access.credential(&cookie(&id)), Credential::Missing);
    }

    #[test]
    fn without_a_token_everyone_gets_in() {
        let access = Access::new(None);
        assert_eq!(access.credential(&HeaderMap::new()), Credential::Valid);
    }

    #[test]
    fn login_sends_only_to_paths_here() {
        assert_eq!(local_path(Some("/jobs/a?x=1")), "/jobs/a?x=1");
        for away in ["//evil.example", "https://evil.example", "/\\evil", "jobs"] {
            assert_eq!(local_path(Some(away)), "/", "{away}");
        }
        assert_eq!(local_path(None), "/");
    }
}
