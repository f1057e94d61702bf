//! Fixture shard `hostile-storage`: tries to store more than its storage quota allows.
//!
//! HTTP (under `/api/hostile-storage`); every attack stops at the first refusal and reports it:
//! - `POST /content-types?n=N&len=L&from=F` -> stores up to N empty objects `ct/{F+i}`, each
//!   with a content type of L bytes (`x/` and `a`s): metadata as a store of data.
//! - `POST /entries?n=N&depth=D` -> stores up to N empty objects, each under D folders of its
//!   own (`e/{i}/d/d/.../o`): objects and folders as a drain of inodes.
//! - `POST /segments` -> tries keys whose last segment is 240, 241, 249 and 255 bytes long.
//! - `POST /content-type-bytes` -> tries a content type with CR LF in it.
//! - `POST /clear` -> deletes every object.
//!
//! Attacks answer 200 `{"stored": K, "error": null | {"code", "message"}}`; `/segments` answers
//! 200 `{"240": "ok" | code, ...}` with the messages under `"messages"`.

use arkham_shard_sdk::{ApiError, Params, Request, Response, Router, Shard, storage};
use serde_json::{Value, json};

struct HostileStorage;

impl Shard for HostileStorage {
    fn handle(request: Request) -> Response {
        Router::new()
            .post("/content-types", content_types)
            .post("/entries", entries)
            .post("/segments", segments)
            .post("/content-type-bytes", content_type_bytes)
            .post("/clear", clear)
            .handle(&request)
    }
}

fn number(request: &Request, name: &str, default: usize) -> Result<usize, ApiError> {
    match request.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::new(400, "bad_request", format!("`{name}` is not a number"))),
    }
}

fn error_json(error: &storage::Error) -> Value {
    json!({ "code": error.code(), "message": error.message() })
}

/// Stores empty objects under `keys`, all with `content_type`, until one is refused.
fn flood(keys: impl Iterator<Item = String>, content_type: &str) -> Response {
    let mut stored = 0usize;
    for key in keys {
        if let Err(e) = storage::put(&key, &[], content_type) {
            return Response::json(200, &json!({ "stored": stored, "error": error_json(&e) }));
        }
        stored += 1;
    }
    Response::json(200, &json!({ "stored": stored, "error": null }))
}

fn content_types(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let n = number(request, "n", 10)?;
    let len = number(request, "len", 1024)?.max(2);
    let from = number(request, "from", 0)?;
    // Built once, in place: a 60 MB content type must fit the instance's memory once only.
    let mut content_type = String::with_capacity(len);
    content_type.push_str("x/");
    content_type.extend(std::iter::repeat_n('a', len - 2));
    Ok(flood(
        (from..from.saturating_add(n)).map(|i| format!("ct/{i}")),
        &content_type,
    ))
}

fn entries(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let n = number(request, "n", 10)?;
    let depth = number(request, "depth", 0)?;
    let folders = "d/".repeat(depth);
    Ok(flood((0..n).map(|i| format!("e/{i}/{folders}o")), ""))
}

fn segments(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let mut results = serde_json::Map::new();
    let mut messages = serde_json::Map::new();
    for len in [240usize, 241, 249, 255] {
        let key = format!("seg/{}", "s".repeat(len));
        let outcome = storage::put(&key, b"long", "text/plain")
            .and_then(|_| storage::get(&key))
            .and_then(|got| match got {
                Some(object) if object.data == b"long" => storage::delete(&key),
                _ => Err(storage::Error::Io(
                    "stored, but read back wrong".to_string(),
                )),
            });
        let (code, message) = match outcome {
            Ok(true) => ("ok".to_string(), String::new()),
            Ok(false) => ("io".to_string(), "not deleted".to_string()),
            Err(e) => (e.code().to_string(), e.message().to_string()),
        };
        results.insert(len.to_string(), json!(code));
        messages.insert(len.to_string(), json!(message));
    }
    results.insert("messages".to_string(), Value::Object(messages));
    Ok(Response::json(200, &Value::Object(results)))
}

fn content_type_bytes(_: &Request, _: &Params) -> Result<Response, ApiError> {
    Ok(flood(
        std::iter::once("crlf".to_string()),
        "text/plain\r\nX-Injected: yes",
    ))
}

fn clear(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let mut deleted = 0usize;
    // `list` is bounded; repeat until nothing is left.
    loop {
        let objects = storage::list("").map_err(|e| ApiError::new(500, e.code(), e.message()))?;
        if objects.is_empty() {
            break;
        }
        for object in objects {
            storage::delete(&object.key).map_err(|e| ApiError::new(500, e.code(), e.message()))?;
            deleted += 1;
        }
    }
    Ok(Response::json(200, &json!({ "deleted": deleted })))
}

arkham_shard_sdk::export_shard!(HostileStorage);
