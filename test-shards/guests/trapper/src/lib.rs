//! Fixture shard `trapper`: misbehaves on request, and round-trips storage and events so tests
//! can check grants, key rules and limits.
//!
//! HTTP (under `/api/trapper`):
//! - `GET /ok` -> 200 `ok`
//! - `GET /trap` -> traps (`abort`, a wasm `unreachable`)
//! - `GET /panic` -> panics (which also traps)
//! - `GET /loop` -> spins forever, until the frame's deadline stops it
//! - `PUT /blob/{key...}` -> stores the body under the key with the request's `Content-Type`
//!   (default `application/octet-stream`); 200 with the object info
//! - `GET /blob/{key...}` -> 200 with the content and its content type, or 404
//! - `DELETE /blob/{key...}` -> 200 `{"deleted":true|false}`
//! - `GET /blobs?prefix=...` -> 200 `{"objects":[info,...]}`
//! - `POST /publish` with `{"name":"...","payload":<any JSON>}` -> publishes the payload's JSON
//!   text; 200 `{"published":name}` or 403 with the refusal.
//!
//! Object info is `{"key","size","content_type","modified_at"}`. Storage errors are 400
//! `{"error":{"code":"invalid_key"|"limit_exceeded"|"io","message":...}}`; publication errors
//! are 403 with `invalid_name`, `denied`, `limit_exceeded` or `other`.

use arkham_shard_sdk::{ApiError, Params, Request, Response, Router, Shard, events, storage};
use serde::Deserialize;
use serde_json::json;

struct Trapper;

impl Shard for Trapper {
    fn handle(request: Request) -> Response {
        Router::new()
            .get("/ok", |_, _| Ok(Response::text(200, "ok")))
            .get("/trap", trap)
            .get("/panic", panic_now)
            .get("/loop", spin)
            .put("/blob/{key...}", put_blob)
            .get("/blob/{key...}", get_blob)
            .delete("/blob/{key...}", delete_blob)
            .get("/blobs", list_blobs)
            .post("/publish", publish)
            .handle(&request)
    }
}

fn trap(_: &Request, _: &Params) -> Result<Response, ApiError> {
    std::process::abort()
}

#[expect(clippy::panic, reason = "the fixture exists to panic on request")]
fn panic_now(_: &Request, _: &Params) -> Result<Response, ApiError> {
    panic!("trapper was asked to panic")
}

fn spin(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let mut turns: u64 = 0;
    loop {
        // black_box keeps the loop observable, so it is neither removed nor turned into a trap.
        turns = std::hint::black_box(turns.wrapping_add(1));
        std::hint::spin_loop();
    }
}

fn storage_error(error: &storage::Error) -> ApiError {
    ApiError::new(400, error.code(), error.message())
}

fn info_json(info: &storage::ObjectInfo) -> serde_json::Value {
    json!({
        "key": info.key,
        "size": info.size,
        "content_type": info.content_type,
        "modified_at": info.modified_at,
    })
}

fn put_blob(request: &Request, params: &Params) -> Result<Response, ApiError> {
    let key = params.require("key")?;
    let content_type = request.content_type().unwrap_or("application/octet-stream");
    let info = storage::put(key, &request.body, content_type).map_err(|e| storage_error(&e))?;
    Ok(Response::json(200, &info_json(&info)))
}

fn get_blob(_: &Request, params: &Params) -> Result<Response, ApiError> {
    let key = params.require("key")?;
    match storage::get(key).map_err(|e| storage_error(&e))? {
        Some(object) => Ok(Response::bytes(200, &object.info.content_type, object.data)),
        None => Err(ApiError::not_found(format!("no object under `{key}`"))),
    }
}

fn delete_blob(_: &Request, params: &Params) -> Result<Response, ApiError> {
    let key = params.require("key")?;
    let deleted = storage::delete(key).map_err(|e| storage_error(&e))?;
    Ok(Response::json(200, &json!({ "deleted": deleted })))
}

fn list_blobs(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let prefix = request.query_param("prefix").unwrap_or("");
    let objects = storage::list(prefix).map_err(|e| storage_error(&e))?;
    let objects: Vec<serde_json::Value> = objects.iter().map(info_json).collect();
    Ok(Response::json(200, &json!({ "objects": objects })))
}

#[derive(Deserialize)]
struct PublishBody {
    name: String,
    #[serde(default)]
    payload: serde_json::Value,
}

fn publish(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let body: PublishBody = request.json()?;
    events::publish(&body.name, &body.payload)
        .map_err(|error| ApiError::new(403, error.code(), error.message()))?;
    Ok(Response::json(200, &json!({ "published": body.name })))
}

arkham_shard_sdk::export_shard!(Trapper);
