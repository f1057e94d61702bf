//! The glue behind `export_shard!`: a request in (one `http-handler` record, or WASI HTTP
//! resources), `Shard` calls, the response out the same way.

use crate::bindings::exports::arkham::shard::http_handler;
use crate::bindings::wasi::http::types::{
    self as wasi_http, Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::{InputStream, StreamError};
use crate::http::{ApiError, Method, Request, Response};
use crate::{Event, Shard, url};

/// The largest request body a shard accepts; larger ones get 413 before the shard sees them.
const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;

/// How much to ask for per read of the request body.
const READ_CHUNK: u64 = 64 * 1024;

/// `blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;

/// Runs `S::handle` for one `wasi:http/incoming-handler.handle` call.
pub fn serve_http<S: Shard>(request: IncomingRequest, response_out: ResponseOutparam) {
    let (response, is_head) = match read_request(&request) {
        Ok(request) => {
            let is_head = request.method == Method::Head;
            (S::handle(request), is_head)
        }
        Err(error) => (error.into_response(), false),
    };
    // The request's child resources are gone by now; release it before answering.
    drop(request);
    write_response(response, is_head, response_out);
}

/// Runs `S::handle` for one `arkham:shard/http-handler.handle` call: the whole request in, the
/// whole response out, in one call.
pub fn serve_buffered<S: Shard>(request: http_handler::Request) -> http_handler::Response {
    let method = Method::from_name(&request.method);
    let is_head = method == Method::Head;
    let mut response = S::handle(new_request(
        method,
        request.path_with_query,
        request.headers,
        request.body,
    ));
    if is_head || is_bodiless(response.status) {
        response.body.clear();
    }
    http_handler::Response {
        status: response.status,
        headers: response.headers,
        body: response.body,
    }
}

/// Runs `S::on_event` for one `arkham:shard/event-handler.handle` call.
pub fn serve_event<S: Shard>(event: Event) -> Result<(), String> {
    S::on_event(event)
}

fn read_request(incoming: &IncomingRequest) -> Result<Request, ApiError> {
    let method = match incoming.method() {
        wasi_http::Method::Get => Method::Get,
        wasi_http::Method::Head => Method::Head,
        wasi_http::Method::Post => Method::Post,
        wasi_http::Method::Put => Method::Put,
        wasi_http::Method::Delete => Method::Delete,
        wasi_http::Method::Patch => Method::Patch,
        wasi_http::Method::Options => Method::Options,
        wasi_http::Method::Connect => Method::Connect,
        wasi_http::Method::Trace => Method::Trace,
        wasi_http::Method::Other(name) => Method::Other(name),
    };
    let path_with_query = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
    // `headers()` is a child of the request: take the entries and drop the handle at once.
    let headers = incoming.headers().entries();
    // The frame buffers every request body and always states its length, so a request that says
    // 0 has nothing to read: skipping the body's resources saves six host calls per GET.
    let empty = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-length") && value.as_slice() == b"0"
    });
    let body = if empty {
        Vec::new()
    } else {
        read_body(incoming)?
    };
    Ok(new_request(method, path_with_query, headers, body))
}

fn new_request(
    method: Method,
    path_with_query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
) -> Request {
    let (path, query) = match path_with_query.split_once('?') {
        Some((path, query)) => (path.to_owned(), url::parse_query(query)),
        None => (path_with_query, Vec::new()),
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    Request {
        method,
        path,
        query,
        headers,
        body,
    }
}

/// Statuses that never carry a body.
fn is_bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

fn read_body(incoming: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let body = incoming
        .consume()
        .map_err(|()| ApiError::bad_request("the request body was already consumed"))?;
    let stream = body
        .stream()
        .map_err(|()| ApiError::bad_request("the request body stream is unavailable"))?;
    let bytes = read_stream(&stream);
    // The stream is a child of the body: it must go first.
    drop(stream);
    drop(body);
    bytes
}

fn read_stream(stream: &InputStream) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > MAX_REQUEST_BODY {
                    return Err(ApiError::new(
                        413,
                        "payload_too_large",
                        format!("the request body is larger than {MAX_REQUEST_BODY} bytes"),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(ApiError::bad_request(format!(
                    "reading the request body failed: {}",
                    error.to_debug_string()
                )));
            }
        }
    }
}

fn write_response(mut response: Response, is_head: bool, response_out: ResponseOutparam) {
    if is_bodiless(response.status) || is_head {
        response.body.clear();
    } else if response.header("content-length").is_none() {
        response.headers.push((
            "content-length".to_owned(),
            response.body.len().to_string().into_bytes(),
        ));
    }

    let outgoing = match outgoing_response(response.status, &response.headers) {
        Ok(outgoing) => outgoing,
        Err(problem) => {
            crate::log::error(&format!("cannot send the shard's response: {problem}"));
            response =
                ApiError::internal(format!("the shard built an invalid response: {problem}"))
                    .into_response();
            let length = response.body.len().to_string().into_bytes();
            response.headers.push(("content-length".to_owned(), length));
            match outgoing_response(response.status, &response.headers) {
                Ok(outgoing) => outgoing,
                // Cannot happen with the headers above; answer with a bare 500 regardless.
                Err(_) => {
                    let outgoing = OutgoingResponse::new(Fields::new());
                    let _ = outgoing.set_status_code(500);
                    response.body.clear();
                    outgoing
                }
            }
        }
    };
    let Ok(body) = outgoing.body() else {
        ResponseOutparam::set(response_out, Ok(outgoing));
        return;
    };
    ResponseOutparam::set(response_out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        for chunk in response.body.chunks(WRITE_CHUNK) {
            if let Err(error) = stream.blocking_write_and_flush(chunk) {
                // The client went away or the frame gave up; nothing more can be sent.
                crate::log::warn(&format!("writing the response body failed: {error:?}"));
                break;
            }
        }
        // The stream is a child of the body: it must go before `finish`.
        drop(stream);
    }
    if let Err(error) = OutgoingBody::finish(body, None) {
        crate::log::warn(&format!("finishing the response body failed: {error:?}"));
    }
}

fn outgoing_response(
    status: u16,
    headers: &[(String, Vec<u8>)],
) -> Result<OutgoingResponse, String> {
    let fields = Fields::from_list(headers).map_err(|error| format!("bad header: {error:?}"))?;
    let outgoing = OutgoingResponse::new(fields);
    outgoing
        .set_status_code(status)
        .map_err(|()| format!("bad status code {status}"))?;
    Ok(outgoing)
}
