//! Fixture shard `echo`: calls no services. It shows tests what a shard receives (prefix
//! stripping, query, headers, body) and sends large and odd responses.
//!
//! HTTP (under `/api/echo`):
//! - `GET /health` -> 200 `{"status":"healthy","shard":"echo"}`
//! - any method on `/echo` or `/echo/{rest...}` -> 200 `{"method","path","query":[[k,v],...],
//!   "headers":[[name,value],...],"body":"<UTF-8, lossy>","body_len":N}`
//! - `POST /mirror` -> 200 with the request body and its `Content-Type`, the body moved into the
//!   response rather than copied (as a native handler returns the bytes it was given)
//! - `GET /bytes/{n}` -> 200 with `n` bytes (byte `i` is `i % 251`), `n` up to 64 MiB
//! - `GET /status/{code}` -> that status (100..=599) with `{"status":code}` (no body for 1xx, 204,
//!   304)
//! - `GET /header?name=N&value=V` -> 200 `ok` with the header `N: V` added as given, unchecked (so
//!   tests can see what the frame does with invalid or framing headers)

use arkham_shard_sdk::{ApiError, Method, Params, Request, Response, Router, Shard};
use serde_json::json;

const MAX_BYTES: usize = 64 * 1024 * 1024;

struct Echo;

impl Shard for Echo {
    fn handle(request: Request) -> Response {
        // Before the router, whose handlers borrow the request and would have to copy its body.
        if request.method == Method::Post && request.path == "/mirror" {
            return mirror(request);
        }
        Router::new()
            .get("/health", |_, _| {
                Ok(Response::json(
                    200,
                    &json!({ "status": "healthy", "shard": "echo" }),
                ))
            })
            .any("/echo", echo)
            .any("/echo/{rest...}", echo)
            .get("/bytes/{n}", bytes)
            .get("/status/{code}", status)
            .get("/header", header)
            .handle(&request)
    }
}

fn echo(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let headers: Vec<(&str, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    Ok(Response::json(
        200,
        &json!({
            "method": request.method.as_str(),
            "path": request.path,
            "query": request.query,
            "headers": headers,
            "body": String::from_utf8_lossy(&request.body),
            "body_len": request.body.len(),
        }),
    ))
}

fn mirror(mut request: Request) -> Response {
    let content_type = request
        .content_type()
        .unwrap_or("application/octet-stream")
        .to_owned();
    let body = std::mem::take(&mut request.body);
    Response::bytes(200, &content_type, body)
}

fn bytes(_: &Request, params: &Params) -> Result<Response, ApiError> {
    let n = params
        .require("n")?
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= MAX_BYTES)
        .ok_or_else(|| {
            ApiError::validation("bad size").with_field("n", format!("must be 0..={MAX_BYTES}"))
        })?;
    let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    Ok(Response::bytes(200, "application/octet-stream", body))
}

fn status(_: &Request, params: &Params) -> Result<Response, ApiError> {
    let code = params
        .require("code")?
        .parse::<u16>()
        .ok()
        .filter(|code| (100..=599).contains(code))
        .ok_or_else(|| {
            ApiError::validation("bad status").with_field("code", "must be 100..=599")
        })?;
    Ok(Response::json(code, &json!({ "status": code })))
}

fn header(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let name = request.query_param("name").unwrap_or_default();
    let value = request.query_param("value").unwrap_or_default();
    Ok(Response::text(200, "ok").with_header(name, value))
}

arkham_shard_sdk::export_shard!(Echo);
