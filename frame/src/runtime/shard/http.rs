//! HTTP between the frame and a shard: which export it serves through ([`HttpExport`]), a
//! request turned into that export's arguments, and every bound and rewrite of what the shard
//! answers — status and headers, the headers the frame sets itself, and the response size limit —
//! so that [`ShardBody`] leaves the runtime already shaped and limited.

use super::error::CallError;
use crate::bindings::{http_handler, v0_1};
use crate::runtime::linker::ARKHAM_VERSIONS;
use crate::runtime::store::ShardState;
use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime::Store;
use wasmtime::component::{InstancePre, Resource};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

/// Response headers an `http-handler` response may carry, at most: `http::HeaderMap` panics
/// past 24,576 entries, and no client needs more than a few dozen.
const MAX_RESPONSE_HEADERS: usize = 500;

/// Bytes of response header names and values, at most (the same bound `wasi:http` fields have).
const MAX_RESPONSE_HEADER_BYTES: usize = 128 << 10;

/// Response headers the frame sets itself (from the body it sends) and ignores from a shard's
/// `http-handler`: the body's framing and the connection's, which are not the shard's to say.
const FRAME_SET_HEADERS: [http::HeaderName; 6] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// What a `wasi:http` guest sets its response outparam to.
pub(super) type WasiAnswer = Result<http::Response<HyperOutgoingBody>, ErrorCode>;

/// The export a shard serves HTTP through, found when it is loaded.
pub(super) enum HttpExport {
    /// `arkham:shard/http-handler`, preferred when a component exports both.
    Buffered(http_handler::GuestIndices),
    /// `arkham:shard/http-handler@0.1.0`, of a component built before 0.2.0.
    BufferedV0_1(v0_1::http_handler::GuestIndices),
    /// `wasi:http/incoming-handler`.
    Wasi(ProxyIndices),
}

/// The HTTP export of an instance, loaded.
pub(super) enum Entry {
    /// `arkham:shard/http-handler`.
    Buffered(http_handler::Guest),
    /// `arkham:shard/http-handler@0.1.0`.
    BufferedV0_1(v0_1::http_handler::Guest),
    /// `wasi:http/incoming-handler`.
    Wasi(Proxy),
}

/// One HTTP call's arguments, for the export the shard serves HTTP through.
pub(super) enum Invocation {
    Buffered(http_handler::Request),
    Wasi {
        request: Resource<HostIncomingRequest>,
        out: Resource<HostResponseOutparam>,
    },
}

impl HttpExport {
    /// The export `pre` serves HTTP through: the newest `http-handler` it exports, else
    /// `wasi:http/incoming-handler`.
    pub(super) fn new(pre: &InstancePre<ShardState>) -> anyhow::Result<Self> {
        if let Ok(indices) = http_handler::GuestIndices::new(pre) {
            return Ok(Self::Buffered(indices));
        }
        if let Ok(indices) = v0_1::http_handler::GuestIndices::new(pre) {
            return Ok(Self::BufferedV0_1(indices));
        }
        match ProxyIndices::new(pre) {
            Ok(indices) => Ok(Self::Wasi(indices)),
            Err(wasi) => anyhow::bail!(
                "the component exports no HTTP entry point: neither \
                 `arkham:shard/http-handler` (at a version the frame calls: {}) nor \
                 `wasi:http/incoming-handler` ({wasi:#})",
                ARKHAM_VERSIONS.join(", ")
            ),
        }
    }

    /// The interface's name, with its version.
    pub(super) fn interface(&self) -> &'static str {
        match self {
            Self::Buffered(_) => "arkham:shard/http-handler@0.2.0",
            Self::BufferedV0_1(_) => "arkham:shard/http-handler@0.1.0",
            Self::Wasi(_) => "wasi:http/incoming-handler@0.2.12",
        }
    }

    /// Makes one HTTP call into the instance in `store`: `warm`'s, or a new one of `pre`.
    /// Returns the instance's entry and, for `http-handler`, its response.
    pub(super) async fn invoke(
        &self,
        pre: &InstancePre<ShardState>,
        store: &mut Store<ShardState>,
        warm: Option<Entry>,
        invocation: Invocation,
    ) -> wasmtime::Result<(Entry, Option<http_handler::Response>)> {
        let entry = match warm {
            Some(entry) => entry,
            None => {
                let instance = pre.instantiate_async(&mut *store).await?;
                match self {
                    Self::Buffered(indices) => {
                        Entry::Buffered(indices.load(&mut *store, &instance)?)
                    }
                    Self::BufferedV0_1(indices) => {
                        Entry::BufferedV0_1(indices.load(&mut *store, &instance)?)
                    }
                    Self::Wasi(indices) => Entry::Wasi(indices.load(&mut *store, &instance)?),
                }
            }
        };
        match (entry, invocation) {
            (Entry::Buffered(guest), Invocation::Buffered(request)) => {
                let response = guest.call_handle(&mut *store, &request).await?;
                Ok((Entry::Buffered(guest), Some(response)))
            }
            (Entry::BufferedV0_1(guest), Invocation::Buffered(request)) => {
                let response = guest.call_handle(&mut *store, &request.into()).await?;
                Ok((Entry::BufferedV0_1(guest), Some(response.into())))
            }
            (Entry::Wasi(proxy), Invocation::Wasi { request, out }) => {
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, request, out)
                    .await?;
                Ok((Entry::Wasi(proxy), None))
            }
            // A shard's exports do not change while it is loaded, so a kept instance always
            // serves through the export it was loaded for; this would be a frame bug.
            _ => Err(wasmtime::format_err!(
                "internal error: a kept instance was loaded for the other HTTP export"
            )),
        }
    }
}

/// The request record of `http-handler` for `request` (its target already relative to the
/// shard's prefix).
pub(super) fn buffered_request(request: http::Request<Bytes>) -> http_handler::Request {
    let (parts, body) = request.into_parts();
    http_handler::Request {
        method: parts.method.as_str().to_owned(),
        path_with_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body: body.into(),
    }
}

/// The `wasi:http/incoming-handler` arguments for `request`, as resources in `store`; the
/// guest's response (or error code) arrives on `answer`.
pub(super) fn wasi_invocation(
    store: &mut Store<ShardState>,
    request: http::Request<Bytes>,
    answer: tokio::sync::oneshot::Sender<WasiAnswer>,
) -> wasmtime::Result<Invocation> {
    let request = request.map(|body| {
        http_body_util::BodyExt::map_err(http_body_util::Full::new(body), |never| -> ErrorCode {
            match never {}
        })
    });
    let state = store.data_mut();
    let request = state.http().new_incoming_request(Scheme::Http, request)?;
    let out = state.http().new_response_outparam(answer)?;
    Ok(Invocation::Wasi { request, out })
}

/// The HTTP response for what a shard's `http-handler` returned: its status and headers checked,
/// the frame's own headers set, and its body within `limit` bytes.
pub(super) fn buffered_response(
    shard: &str,
    response: http_handler::Response,
    is_head: bool,
    limit: u64,
) -> Result<http::Response<ShardBody>, CallError> {
    let invalid = |reason: String| CallError::InvalidResponse {
        shard: shard.to_string(),
        reason,
    };
    let status = http::StatusCode::from_u16(response.status)
        .ok()
        .filter(|status| (100..=599).contains(&status.as_u16()))
        .ok_or_else(|| invalid(format!("status {} is not in 100..=599", response.status)))?;
    // Bounded before anything is built from them: the list is the shard's to make.
    if response.headers.len() > MAX_RESPONSE_HEADERS {
        return Err(invalid(format!(
            "{} headers; a response may have at most {MAX_RESPONSE_HEADERS}",
            response.headers.len()
        )));
    }
    let header_bytes = response
        .headers
        .iter()
        .fold(0usize, |sum, (n, v)| sum.saturating_add(n.len() + v.len()));
    if header_bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(invalid(format!(
            "{header_bytes} bytes of headers; a response may have at most \
             {MAX_RESPONSE_HEADER_BYTES}"
        )));
    }
    let mut headers = http::HeaderMap::with_capacity(response.headers.len() + 1);
    for (name, value) in response.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("`{name}` is not a valid header name")))?;
        if FRAME_SET_HEADERS.contains(&name) {
            continue;
        }
        let value = http::HeaderValue::from_bytes(&value)
            .map_err(|_| invalid(format!("the value of header `{name}` is not valid")))?;
        headers.append(name, value);
    }
    let bodiless = status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    let body = if bodiless {
        Bytes::new()
    } else {
        if !is_head {
            headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(response.body.len()),
            );
        }
        Bytes::from(response.body)
    };
    if body.len() as u64 > limit {
        return Err(CallError::ResponseTooLarge {
            shard: shard.to_string(),
            limit_bytes: limit,
        });
    }
    let mut out = http::Response::new(ShardBody(Inner::Whole(
        Some(body).filter(|b| !b.is_empty()),
    )));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// The HTTP response for what a `wasi:http` guest sent: refused when its declared length is
/// over `limit` bytes, and otherwise cut off where its body passes `limit`.
pub(super) fn streamed_response(
    shard: &str,
    response: http::Response<HyperOutgoingBody>,
    limit: u64,
) -> Result<http::Response<ShardBody>, CallError> {
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        // Dropping the response stops reading from the guest, which then fails its writes and
        // ends; its instance is discarded.
        return Err(CallError::ResponseTooLarge {
            shard: shard.to_string(),
            limit_bytes: limit,
        });
    }
    Ok(response.map(|body| {
        ShardBody(Inner::Streamed {
            body,
            remaining: limit,
            limit,
        })
    }))
}

/// The body of a shard's response, within the shard's response limit.
pub struct ShardBody(Inner);

enum Inner {
    /// Whole, from `http-handler` (`None` once sent, or when empty); checked against the limit
    /// before the response was made.
    Whole(Option<Bytes>),
    /// Streamed from the guest as it writes it, from `wasi:http/incoming-handler`; fails once
    /// more than `limit` bytes (`remaining` of them left) went through.
    Streamed {
        body: HyperOutgoingBody,
        remaining: u64,
        limit: u64,
    },
}

impl http_body::Body for ShardBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().0 {
            Inner::Whole(body) => Poll::Ready(body.take().map(|b| Ok(http_body::Frame::data(b)))),
            Inner::Streamed {
                body,
                remaining,
                limit,
            } => {
                let polled = std::task::ready!(Pin::new(body).poll_frame(cx));
                if let Some(Ok(frame)) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    let len = data.len() as u64;
                    if len > *remaining {
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpResponseBodySize(Some(*limit)),
                        )));
                    }
                    *remaining -= len;
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Whole(body) => body.is_none(),
            Inner::Streamed { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.0 {
            Inner::Whole(body) => {
                http_body::SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Streamed { body, .. } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn response(status: u16, body: &[u8]) -> http_handler::Response {
        http_handler::Response {
            status,
            headers: vec![
                ("content-length".into(), b"1".to_vec()),
                ("x-kept".into(), b"yes".to_vec()),
            ],
            body: body.to_vec(),
        }
    }

    fn streamed(
        chunks: &[&'static [u8]],
        declared: Option<u64>,
    ) -> http::Response<HyperOutgoingBody> {
        let frames: Vec<Result<http_body::Frame<Bytes>, wasmtime_wasi_http::Error>> = chunks
            .iter()
            .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c))))
            .collect();
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        let mut response = http::Response::new(HyperOutgoingBody::new(body));
        if let Some(len) = declared {
            response
                .headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        }
        response
    }

    #[tokio::test]
    async fn a_whole_body_at_the_limit_passes_and_one_past_it_is_refused() {
        let ok = buffered_response("s", response(200, b"0123456789"), false, 10).unwrap();
        assert_eq!(ok.headers()["content-length"], "10");
        assert_eq!(ok.headers()["x-kept"], "yes");
        let body = ok.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"0123456789");

        let refused = buffered_response("s", response(200, b"0123456789!"), false, 10);
        assert!(
            matches!(&refused, Err(CallError::ResponseTooLarge { shard, limit_bytes: 10 }) if shard == "s"),
            "{:?}",
            refused.err()
        );
        // A body the status does not carry is dropped, so it is not over any limit.
        let empty = buffered_response("s", response(204, b"0123456789!"), false, 10).unwrap();
        assert!(http_body::Body::is_end_stream(empty.body()));
    }

    #[tokio::test]
    async fn a_streamed_body_is_refused_by_its_declared_length_or_cut_off_past_the_limit() {
        let declared = streamed_response("s", streamed(&[b"x"], Some(11)), 10);
        assert!(
            matches!(
                declared,
                Err(CallError::ResponseTooLarge {
                    limit_bytes: 10,
                    ..
                })
            ),
            "a declared length over the limit passed"
        );

        let within = streamed_response("s", streamed(&[b"01234", b"56789"], None), 10).unwrap();
        let body = within.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"0123456789");

        let mut past = streamed_response("s", streamed(&[b"01234", b"567890"], None), 10)
            .unwrap()
            .into_body();
        let first = past.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"01234"[..]));
        let second = past.frame().await.unwrap();
        assert!(
            matches!(
                second,
                Err(wasmtime_wasi_http::Error::HttpResponseBodySize(Some(10)))
            ),
            "{second:?}"
        );
    }
}
