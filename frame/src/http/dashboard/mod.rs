//! The dashboard: the frame's web UI, a page that builds its navigation from the installed
//! shards' manifests (`GET /api/frame/shards`), shows a shard's own page (its manifest's
//! `navigation.ui`) sandboxed inside its layout, and the operator pages behind a session.
//!
//! Everything is embedded ([`assets`]). Every route of the dashboard answers the same shell;
//! the script in it renders the route. The shell and its files are served under a strict
//! Content Security Policy (scripts and styles only from `/static/`), and the script renders
//! every manifest field and every shard's data as text.

mod assets;
pub mod session;

use crate::frame::{Frame, ShardStatus};
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use std::sync::Arc;

pub use session::Sessions;

/// The policy of the frame's own pages: nothing inline, nothing from elsewhere; shard pages
/// only in frames of this origin (themselves sandboxed by [`SHARD_POLICY`]).
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The policy on every answer of a shard's API. `sandbox` without `allow-same-origin` gives a
/// shard's page an opaque origin: it cannot read the frame's pages, cookies or storage, nor
/// make requests with the operator's session, even opened directly. `connect-src 'none'`: its
/// script reaches its API only through the frame's bridge (`/static/arkham-ui.js`), which
/// keeps it to its own prefix.
pub const SHARD_POLICY: &str = "sandbox allow-scripts allow-forms allow-downloads allow-popups; \
     default-src 'self' data: blob: 'unsafe-inline'; connect-src 'none'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'self'";

/// The dashboard's routes: `/`, `/static/…` and the session. Other dashboard routes (a shard's
/// `navigation.route`, `/admin/…`) reach [`page`] through the frame's fallback.
pub fn routes() -> Router<Arc<Frame>> {
    Router::new()
        .route("/", get(shell))
        .route("/static/icons/{name}", get(icon))
        .route("/static/{file}", get(file))
        .route(
            "/api/frame/session",
            get(session::state)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
}

fn with_policy(mut response: Response, policy: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn shell(request: Request) -> Response {
    page_response(&request, StatusCode::OK)
}

fn page_response(request: &Request, status: StatusCode) -> Response {
    let mut response = assets::respond(
        request.headers(),
        "text/html; charset=utf-8",
        assets::SHELL.to_string(),
    );
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    with_policy(response, PAGE_POLICY)
}

async fn file(Path(name): Path<String>, request: Request) -> Response {
    match assets::file(&name) {
        Some((content_type, body)) => with_policy(
            assets::respond(request.headers(), content_type, body.to_string()),
            PAGE_POLICY,
        ),
        None => super::error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the dashboard has no file `{name}`"),
        ),
    }
}

async fn icon(Path(name): Path<String>, request: Request) -> Response {
    let (svg, fallback) = assets::icon(&name);
    let mut response = assets::respond(request.headers(), "image/svg+xml", svg);
    if fallback {
        response
            .headers_mut()
            .insert("x-arkham-icon", HeaderValue::from_static("fallback"));
    }
    with_policy(response, PAGE_POLICY)
}

/// Whether `path` is a page of the dashboard: the frame's (`/admin…`, `/shards/{name}`) or at
/// or below a running shard's navigation route or sub-route.
fn is_page(frame: &Frame, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let below = |route: &str| {
        let route = route.trim_end_matches('/');
        path == route
            || path
                .strip_prefix(route)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if below("/admin")
        || path
            .strip_prefix("/shards/")
            .is_some_and(|n| !n.contains('/'))
    {
        return true;
    }
    frame.shards().into_iter().any(|(_, status)| {
        let manifest = match &status {
            ShardStatus::Running(running) => running.manifest(),
            ShardStatus::Pending(manifest) => manifest,
            ShardStatus::Failed { .. } => return false,
        };
        manifest
            .navigation
            .as_ref()
            .is_some_and(|nav| below(&nav.route) || nav.sub_routes.iter().any(|s| below(&s.route)))
    })
}

/// The frame's fallback for a `GET` outside the APIs: the shell (200 for a dashboard page; 404
/// for anything else a browser asks for, which the shell shows as not found); `None` for
/// other requests.
pub fn page(frame: &Frame, request: &Request) -> Option<Response> {
    let path = request.uri().path();
    let method = request.method();
    if (method != Method::GET && method != Method::HEAD)
        || path.starts_with("/api/")
        || path == "/api"
        || path.starts_with("/static/")
    {
        return None;
    }
    if is_page(frame, path) {
        return Some(page_response(request, StatusCode::OK));
    }
    // A browser gets the dashboard's own "not found"; an API client the JSON error.
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    wants_html.then(|| page_response(request, StatusCode::NOT_FOUND))
}

/// `clear-site-data`: a shard may not wipe the frame's site data.
const CLEAR_SITE_DATA: header::HeaderName = header::HeaderName::from_static("clear-site-data");

/// The headers every answer of a shard's API gets (see [`SHARD_POLICY`]). On every request's
/// path: the common answer, without cookies, costs two header inserts and two lookups.
pub fn protect_shard_response(response: &mut Response) {
    const POLICY: HeaderValue = HeaderValue::from_static(SHARD_POLICY);
    const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
    let headers = response.headers_mut();
    headers.append(header::CONTENT_SECURITY_POLICY, POLICY);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    headers.remove(&CLEAR_SITE_DATA);
    // A shard may not set or clear the operator's session.
    let allowed = |v: &HeaderValue| {
        let name = v
            .to_str()
            .ok()
            .and_then(|v| v.split('=').next())
            .map(str::trim);
        !name.is_some_and(|n| n.eq_ignore_ascii_case(session::COOKIE)) && v.to_str().is_ok()
    };
    if headers.get_all(header::SET_COOKIE).iter().all(allowed) {
        return;
    }
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| allowed(v))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
}

/// Removes the operator's session cookie from a request bound for a shard. The browser does not
/// send it there (its path is `/api/frame`); this holds even if a client does.
pub fn strip_session_cookie(headers: &mut axum::http::HeaderMap) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty() && pair.split('=').next().map(str::trim) != Some(session::COOKIE)
        })
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn the_session_cookie_never_reaches_a_shard() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; arkham_session=secret"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        strip_session_cookie(&mut headers);
        assert_eq!(headers.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut only = axum::http::HeaderMap::new();
        only.insert(header::COOKIE, HeaderValue::from_static("arkham_session=x"));
        strip_session_cookie(&mut only);
        assert!(only.get(header::COOKIE).is_none());
    }

    #[test]
    fn a_shard_cannot_set_the_session_cookie() {
        let mut response = StatusCode::OK.into_response();
        let headers = response.headers_mut();
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("arkham_session=planted; Path=/api/frame"),
        );
        headers.append(header::SET_COOKIE, HeaderValue::from_static("theirs=1"));
        headers.insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
        protect_shard_response(&mut response);
        let cookies: Vec<_> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .collect();
        assert_eq!(cookies, ["theirs=1"]);
        assert!(response.headers().get("clear-site-data").is_none());
        assert!(
            response.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("sandbox ")
        );
    }

    #[test]
    fn a_shards_own_cookies_pass_and_unreadable_ones_do_not() {
        let mut response = StatusCode::OK.into_response();
        let headers = response.headers_mut();
        headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        protect_shard_response(&mut response);
        let cookies: Vec<_> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );

        let mut response = StatusCode::OK.into_response();
        let headers = response.headers_mut();
        headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        let opaque = HeaderValue::from_bytes(b"arkham_session\xff=x").unwrap();
        headers.append(header::SET_COOKIE, opaque);
        protect_shard_response(&mut response);
        let cookies: Vec<_> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .collect();
        assert_eq!(cookies, ["a=1"]);
    }
}
