//! Forwarding `/api/{shard}/…` into the shard's `wasi:http/incoming-handler`.

use super::error;
use super::server::{BodyBudget, BodyReservation};
use crate::frame::{Frame, ShardStatus};
use crate::runtime::limits::ShardLimits;
use crate::runtime::{CallError, LoadedShard};
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// Splits `/api/{shard}/rest?q` into the shard's name and the path the shard sees (`/rest?q`).
fn split_path(uri: &Uri) -> Option<(&str, String)> {
    let path = uri.path().strip_prefix("/api/")?;
    let (shard, rest) = match path.split_once('/') {
        Some((shard, rest)) => (shard, format!("/{rest}")),
        None => (path, "/".to_string()),
    };
    let with_query = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    Some((shard, with_query))
}

/// 429 for a request over its shard's rate, with `retry-after` in whole seconds (at least 1).
fn rate_limited(name: &str, limits: &ShardLimits, wait: Duration) -> Response {
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "shard `{name}` is over its request rate ({} per second, bursts of {}); retry after \
             {seconds} s, or raise `requests_per_second` in [limits.shards.{name}]",
            limits.requests_per_second, limits.request_burst
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
}

/// Serves one request through the named shard. Every answer, the shard's or the frame's on its
/// behalf, gets the shard policy (see [`super::dashboard::SHARD_POLICY`]).
pub async fn forward(
    State(frame): State<Arc<Frame>>,
    Extension(budget): Extension<BodyBudget>,
    request: Request,
) -> Response {
    let mut response = serve(frame, budget, request).await;
    super::dashboard::protect_shard_response(&mut response);
    response
}

async fn serve(frame: Arc<Frame>, budget: BodyBudget, request: Request) -> Response {
    let Some((name, path)) = split_path(request.uri()).map(|(n, p)| (n.to_string(), p)) else {
        return error(StatusCode::NOT_FOUND, "not_found", "not a shard path");
    };
    let Some(shard) = frame.loaded_shard(&name).await else {
        // Installed but not loaded on this frame (`GET /api/frame/shards` says why): 503, so a
        // load balancer in front of several members retries on one that serves it.
        if let Some((_, ShardStatus::Failed { .. })) =
            frame.shards().into_iter().find(|(i, _)| i.name == name)
        {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shard_not_loaded",
                format!(
                    "shard `{name}` is installed but this frame could not load it; GET \
                     /api/frame/shards says why"
                ),
            );
        }
        return error(
            StatusCode::NOT_FOUND,
            "shard_not_found",
            format!(
                "no shard named `{name}` is serving; GET /api/frame/shards lists the installed shards"
            ),
        );
    };
    let started = std::time::Instant::now();
    // Before the body is read: a shard over its rate costs the frame as little as possible.
    let response = match shard.admit_request() {
        Ok(()) => through(&frame, budget, &shard, path, request).await,
        Err(wait) => {
            shard.metrics().rate_limited();
            rate_limited(&name, shard.limits(), wait)
        }
    };
    shard
        .metrics()
        .request(response.status().as_u16(), started.elapsed());
    response
}

/// Serves a request admitted under the shard's rate: reads its body, calls the shard and maps
/// its answer or failure to the response.
async fn through(
    frame: &Frame,
    budget: BodyBudget,
    shard: &Arc<LoadedShard>,
    path: String,
    request: Request,
) -> Response {
    let limit = shard.limits().max_request_bytes;
    let (mut parts, body) = request.into_parts();
    super::dashboard::strip_session_cookie(&mut parts.headers);
    let timeout = frame.config().server.body_read_timeout();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Held until the request is done: its body stays in memory until then.
    let (body, _reservation) = match read_body(body, declared, limit, timeout, &budget).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    parts.uri = match Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        Ok(uri) => uri,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid request target: {e}"),
            );
        }
    };
    // The body is buffered: state its exact length, which shards may rely on (the SDK skips
    // reading an empty body).
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from(body.len()),
    );
    let request = http::Request::from_parts(parts, body);
    // The runtime shapes the answer, its size limit included; what is left here is its status.
    match shard.handle(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => call_error(e),
    }
}

/// Reads a request body whole: at most `limit` bytes (413), within `timeout` (408), each byte
/// reserved in the frame's `budget` as it arrives (503 `frame_busy` when it runs out). A
/// declared length over the limit is still read up to the limit, so that the client, still
/// sending, sees the 413 rather than a reset. Refusals close the connection, since the rest of
/// the body is left unread. `declared` (the request's `content-length`) sizes the buffer once.
async fn read_body(
    mut body: Body,
    declared: Option<usize>,
    limit: usize,
    timeout: Duration,
    budget: &BodyBudget,
) -> Result<(Bytes, BodyReservation), Response> {
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    let busy = || {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "frame_busy",
            format!(
                "the frame is buffering {} bytes of request bodies, its limit; retry shortly",
                budget.max()
            ),
        )
    };
    let mut reservation = budget.reservation();
    let mut gathered = Gathered::new(declared.map(|len| len.min(limit)));
    let mut total: usize = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request body did not arrive within {} ms (received {total} bytes)",
                        timeout.as_millis()
                    ),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("reading the request body failed: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not passed on
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(too_large());
        }
        if !reservation.cover(total as u64) {
            return Err(busy());
        }
        gathered.push(data);
    }
    Ok((gathered.finish(), reservation))
}

/// A body gathered as it arrives: its first chunk kept as it came (most bodies are one chunk),
/// later ones copied at once into one buffer. Copying on arrival, rather than holding every chunk
/// and joining them at the end, lets hyper reuse its read buffer and holds each byte once.
struct Gathered {
    first: Option<Bytes>,
    whole: Vec<u8>,
    /// Bytes the whole body is expected to have (its declared length, within the limit).
    expected: Option<usize>,
}

impl Gathered {
    fn new(expected: Option<usize>) -> Self {
        Self {
            first: None,
            whole: Vec::new(),
            expected,
        }
    }

    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if self.first.is_none() && self.whole.is_empty() {
            self.first = Some(data);
            return;
        }
        if let Some(first) = self.first.take() {
            let wanted = self
                .expected
                .unwrap_or(0)
                .max(first.len().saturating_add(data.len()));
            // Address space only: pages are touched, and charged to the budget, as bytes
            // arrive. A refused reservation just leaves the buffer to grow as it goes.
            let _ = self.whole.try_reserve_exact(wanted);
            self.whole.extend_from_slice(&first);
        }
        self.whole.extend_from_slice(&data);
    }

    /// The body; no copy when it came in one chunk or filled the expected length exactly.
    fn finish(self) -> Bytes {
        match self.first {
            Some(first) => first,
            None => Bytes::from(self.whole),
        }
    }
}

/// An error response after which the connection closes.
fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    let mut response = error(status, code, message);
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

fn call_error(e: CallError) -> Response {
    let (status, code) = match &e {
        CallError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "shard_busy"),
        CallError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "shard_timeout"),
        CallError::Trap { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "shard_failed"),
        CallError::NoResponse(_) => (StatusCode::INTERNAL_SERVER_ERROR, "shard_no_response"),
        CallError::Guest { .. } => (StatusCode::BAD_GATEWAY, "shard_error"),
        CallError::InvalidResponse { .. } => (StatusCode::BAD_GATEWAY, "shard_invalid_response"),
        CallError::ResponseTooLarge { .. } => (StatusCode::BAD_GATEWAY, "response_too_large"),
        CallError::MemoryExceeded { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "shard_memory_exceeded")
        }
        CallError::FrameBusy => (StatusCode::SERVICE_UNAVAILABLE, "frame_busy"),
        CallError::EventsNotLogged { .. } => (StatusCode::SERVICE_UNAVAILABLE, "events_not_logged"),
    };
    tracing::warn!(error = %e, "shard call failed");
    error(status, code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_the_prefix() {
        let cases = [
            ("/api/packets", ("packets", "/")),
            ("/api/packets/", ("packets", "/")),
            (
                "/api/packets/abc/contents?x=1",
                ("packets", "/abc/contents?x=1"),
            ),
        ];
        for (uri, (shard, path)) in cases {
            let uri: Uri = uri.parse().unwrap();
            let (s, p) = split_path(&uri).unwrap();
            assert_eq!((s, p.as_str()), (shard, path));
        }
    }

    #[test]
    fn a_body_is_gathered_whole_and_copied_at_most_once() {
        // One chunk: kept as it came, not copied.
        let chunk = Bytes::from_static(b"only");
        let mut one = Gathered::new(Some(4));
        one.push(chunk.clone());
        let body = one.finish();
        assert_eq!((body.as_ptr(), &body[..]), (chunk.as_ptr(), &b"only"[..]));

        // Several chunks, with and without a declared length (empty chunks skipped): joined in
        // order, into one buffer sized by the declared length.
        for expected in [Some(10), None, Some(3)] {
            let mut many = Gathered::new(expected);
            for piece in [&b"0123"[..], b"", b"45", b"6789"] {
                many.push(Bytes::copy_from_slice(piece));
            }
            if expected == Some(10) {
                assert_eq!(many.whole.capacity(), 10);
            }
            let buffer = many.whole.as_ptr();
            let body = many.finish();
            assert_eq!(&body[..], b"0123456789", "{expected:?}");
            // Into `Bytes` without another copy, and from there into the `Vec` the guest's
            // request record takes without one either.
            assert_eq!(body.as_ptr(), buffer, "{expected:?}");
            let record: Vec<u8> = body.into();
            assert_eq!(record.as_ptr(), buffer, "{expected:?}");
        }
        assert!(Gathered::new(None).finish().is_empty());
    }
}
