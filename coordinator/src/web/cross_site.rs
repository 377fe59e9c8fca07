//! Actions come from this site's own pages: a POST whose browser says it
//! comes from another site (`Sec-Fetch-Site: cross-site` or `same-site`,
//! or an `Origin` that is not this host) is refused with 403, on top of
//! the session cookie being SameSite=Strict. Scripts, which send no such
//! headers, are not affected.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::pages;

/// Why a request looks cross-site, or `None` when it does not.
pub fn cross_site(method: &Method, headers: &HeaderMap) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Some(format!("the browser says it comes from a {site} page"));
    }
    let origin = text(header::ORIGIN)?;
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = text(header::HOST);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => None,
        _ => Some(format!("it comes from {origin}, not from this server")),
    }
}

/// Middleware: refuses cross-site actions (see the module docs).
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    match cross_site(request.method(), request.headers()) {
        None => next.run(request).await,
        Some(why) => {
            tracing::warn!(path = %request.uri().path(), "refused a cross-site request: {why}");
            let message =
                format!("refused: {why}. Actions must come from this interface's own pages.");
            (
                StatusCode::FORBIDDEN,
                pages::error(StatusCode::FORBIDDEN, &message),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// Whether a POST with these headers is refused, and why.
    fn post(pairs: &[(&'static str, &str)]) -> Option<String> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        cross_site(&Method::POST, &h)
    }

    #[test]
    fn only_other_sites_are_refused() {
        assert_eq!(post(&[]), None, "a script");
        assert_eq!(
            post(&[
                ("host", "farm:9090"),
                ("origin", "http://farm:9090"),
                ("sec-fetch-site", "same-origin")
            ]),
            None
        );
        assert!(post(&[("host", "farm:9090"), ("origin", "https://evil.example")]).is_some());
        assert!(post(&[("host", "farm:9090"), ("origin", "null")]).is_some());
        assert!(post(&[("sec-fetch-site", "cross-site")]).is_some());
        assert!(post(&[("sec-fetch-site", "same-site")]).is_some());
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert_eq!(cross_site(&Method::GET, &h), None, "pages may be linked");
    }
}
