//! The glue behind `export_shard!`: one `http-handler` record in, `Shard` calls, one record out.

use crate::bindings::exports::arkham::shard::http_handler;
use crate::http::{Method, Request};
use crate::{Event, Shard, url};

/// Runs `S::handle` for one `arkham:shard/http-handler.handle` call: the whole request in, the
/// whole response out, in one call.
pub fn serve_buffered<S: Shard>(request: http_handler::Request) -> http_handler::Response {
    let request = from_record(request);
    let is_head = request.method == Method::Head;
    let mut response = S::handle(request);
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

/// The SDK's request for an `http-handler` record: the query split off the path and parsed.
fn from_record(record: http_handler::Request) -> Request {
    let (path, query) = match record.path_with_query.split_once('?') {
        Some((path, query)) => (path.to_owned(), url::parse_query(query)),
        None => (record.path_with_query, Vec::new()),
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    Request {
        method: Method::from_name(&record.method),
        path,
        query,
        headers: record.headers,
        body: record.body,
    }
}

/// Statuses that never carry a body.
fn is_bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}
