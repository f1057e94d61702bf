//! Operator sessions: the dashboard exchanges the admin token once for a session cookie, so the
//! token itself never sits in the browser's storage.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends
//! it) and `Path=/api/frame` (the browser never sends it to a shard's API, so no shard sees it).
//! A state change made with the cookie also needs the session's CSRF token in
//! [`CSRF_HEADER`], which only the frame's own pages can read (`GET /api/frame/session`):
//! shard pages run with an opaque origin and cannot read the frame's answers.

use super::super::error;
use crate::frame::Frame;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "arkham_session";
/// The header a cookie-authenticated state change must carry.
pub const CSRF_HEADER: &str = "x-arkham-csrf";
/// How long a session lasts after sign-in.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; signing in past it ends the oldest.
const MAX_SESSIONS: usize = 64;

struct Session {
    csrf: String,
    expires: Instant,
}

/// The frame's operator sessions, in memory: a restart signs everyone out.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<[u8; 32], Session>>>);

/// The map key of a session id: its hash, so that looking one up does not compare the secret
/// byte by byte.
fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_token() -> String {
    crate::runtime::cache::hex(&rand::random::<[u8; 32]>())
}

/// `a == b` in time that depends only on the lengths.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session id the request's cookies carry, if any.
fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding it cannot leave the map half-changed: every change is one
        // insert or remove.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a session; returns its id and CSRF token.
    fn start(&self) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            key(&id),
            Session {
                csrf: csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of the live session `id`.
    fn csrf(&self, id: &str) -> Option<String> {
        let sessions = self.lock();
        sessions
            .get(&key(id))
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    fn end(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    /// Whether the request may use the admin API: the admin token as a bearer token, or a live
    /// session cookie, with the session's CSRF token and a same-origin `Origin` for anything
    /// but a read.
    pub fn authorize(
        &self,
        frame: &Frame,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(), Refused> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(token) = bearer {
            return if frame.is_admin_token(token) {
                Ok(())
            } else {
                Err(Refused::Unauthorized)
            };
        }
        let Some(csrf) = presented(headers).and_then(|id| self.csrf(id)) else {
            return Err(Refused::Unauthorized);
        };
        if method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !sent.is_some_and(|sent| same(sent, &csrf)) {
            return Err(Refused::NoCsrfToken);
        }
        if !same_origin(headers) {
            return Err(Refused::OtherOrigin);
        }
        Ok(())
    }
}

/// Why [`Sessions::authorize`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No admin token and no live session.
    Unauthorized,
    /// A change with the cookie but without the session's CSRF token.
    NoCsrfToken,
    /// A change with the cookie from another origin.
    OtherOrigin,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Unauthorized => error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                // Not the path: where the data dir is is not for whoever can reach the port.
                "the admin API needs `Authorization: Bearer <token>` or a dashboard session (sign \
                 in at /admin); the token is in the file `admin-token` in the frame's data dir",
            ),
            Refused::NoCsrfToken => error(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                format!(
                    "a change made with the session cookie needs the session's `{CSRF_HEADER}` \
                     header (GET /api/frame/session gives it to the frame's own pages)"
                ),
            ),
            Refused::OtherOrigin => error(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "the request's Origin is not this frame",
            ),
        }
    }
}

/// Whether `Origin`, when sent, names the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// The session cookie; `Secure` when the request came through a TLS proxy (the frame itself
/// speaks plain HTTP, and browsers drop `Secure` cookies set over it).
fn cookie(value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let secure = if tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={value}; Path=/api/frame; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    // Hex ids and fixed attributes: always a valid header value.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[derive(serde::Deserialize)]
pub(super) struct SignIn {
    token: String,
}

/// `POST /api/frame/session` `{"token": "…"}`: a new session for the admin token.
pub(super) async fn sign_in(
    State(frame): State<Arc<Frame>>,
    Extension(sessions): Extension<Sessions>,
    headers: HeaderMap,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(SignIn { token })) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send {\"token\": \"<admin token>\"} as JSON",
        );
    };
    if !frame.is_admin_token(token.trim()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "that is not the admin token; it is in the file `admin-token` in the frame's data dir",
        );
    }
    // Always a new id: a session id planted before sign-in never becomes an operator's.
    let (id, csrf) = sessions.start();
    let mut response = Json(json!({ "signed_in": true, "csrf": csrf })).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&id, LIFETIME.as_secs(), &headers),
    );
    response
}

/// `GET /api/frame/session`: whether the cookie is a live session, and its CSRF token.
pub(super) async fn state(
    Extension(sessions): Extension<Sessions>,
    headers: HeaderMap,
) -> Response {
    match presented(&headers).and_then(|id| sessions.csrf(id)) {
        Some(csrf) => Json(json!({ "signed_in": true, "csrf": csrf })).into_response(),
        None => Json(json!({ "signed_in": false })).into_response(),
    }
}

/// `DELETE /api/frame/session`: signs out (needs the CSRF header, like any change).
pub(super) async fn sign_out(
    State(frame): State<Arc<Frame>>,
    Extension(sessions): Extension<Sessions>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = sessions.authorize(&frame, &Method::DELETE, &headers) {
        return refused.into_response();
    }
    if let Some(id) = presented(&headers) {
        sessions.end(id);
    }
    let mut response = Json(json!({ "signed_in": false })).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, &headers));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[(header::COOKIE, "a=1; arkham_session=abc; b=2")]);
        assert_eq!(presented(&h), Some("abc"));
        let h = headers(&[(header::COOKIE, "x_arkham_session=abc")]);
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn sessions_expire_and_end() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.start();
        assert_eq!(sessions.csrf(&id), Some(csrf));
        assert_eq!(sessions.csrf("not-a-session"), None);
        sessions.end(&id);
        assert_eq!(sessions.csrf(&id), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.start().0;
        for _ in 0..MAX_SESSIONS {
            sessions.start();
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        assert_eq!(sessions.csrf(&first), None, "the oldest session ended");
    }

    #[test]
    fn origin_must_be_this_host() {
        let ok = headers(&[
            (header::HOST, "127.0.0.1:8470"),
            (header::ORIGIN, "http://127.0.0.1:8470"),
        ]);
        assert!(same_origin(&ok));
        let other = headers(&[
            (header::HOST, "127.0.0.1:8470"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(!same_origin(&other));
        let opaque = headers(&[(header::HOST, "127.0.0.1:8470"), (header::ORIGIN, "null")]);
        assert!(!same_origin(&opaque));
        assert!(same_origin(&headers(&[(header::HOST, "h")])));
    }
}
