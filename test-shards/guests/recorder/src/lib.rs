//! Fixture shard `recorder`: subscribes to `packets.*` and records every event it receives in
//! its database, once per event id. Tests read them back over HTTP and can make the handler fail
//! to exercise the frame's retries.
//!
//! HTTP (under `/api/recorder`):
//! - `GET /health` -> 200 `{"status":"healthy","shard":"recorder"}`
//! - `GET /events` -> 200 `{"events":[{"id","name","source","payload","published_at"},...]}`,
//!   ordered by id; `payload` is the string as published.
//! - `PUT /fail` with `{"fail":true|false}` -> 200 `{"fail":...}`; while set, every delivery
//!   returns `Err("recorder is set to fail")` and nothing is recorded.
//!
//! For the frame's instance-reuse tests, every request counts itself in the instance's memory:
//! - `GET /served` -> 200 `{"served":N}`, N = requests this instance has served, this one included
//! - `GET /leak` -> 200, leaving a host resource (a clock pollable) open in the instance
//! - `GET /panic` -> the instance traps

use arkham_shard_sdk::bindings::wasi::clocks::monotonic_clock;
use arkham_shard_sdk::{ApiError, Event, Params, Request, Response, Router, Shard, db, params};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};

// BIGINT: 64-bit on both engines (PostgreSQL's INTEGER is 32-bit; milliseconds overflow it).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    published_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

struct Recorder;

/// Requests served by this instance; more than 1 only when the frame reuses instances.
static SERVED: AtomicU32 = AtomicU32::new(0);

impl Shard for Recorder {
    fn handle(request: Request) -> Response {
        SERVED.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = db::ensure_schema(1, SCHEMA) {
            return ApiError::from(error).into_response();
        }
        Router::new()
            .get("/health", health)
            .get("/events", list_events)
            .put("/fail", set_fail)
            .get("/served", |_, _| {
                let served = SERVED.load(Ordering::Relaxed);
                Ok(Response::json(200, &json!({ "served": served })))
            })
            .get("/leak", |_, _| {
                // Never dropped: the pollable stays in the frame's resource table.
                std::mem::forget(monotonic_clock::subscribe_duration(1_000_000_000));
                Ok(Response::json(200, &json!({ "leaked": true })))
            })
            .get("/panic", panic_now)
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        let describe = |error: db::Error| format!("{}: {}", error.code(), error.message());
        db::ensure_schema(1, SCHEMA).map_err(describe)?;
        if failing().map_err(describe)? {
            return Err(FAILING.to_owned());
        }
        record(&event).map_err(describe)
    }
}

#[expect(clippy::panic, reason = "the reuse tests need an instance that traps")]
fn panic_now(_: &Request, _: &Params) -> Result<Response, ApiError> {
    panic!("recorder was asked to panic")
}

/// What `on_event` answers while the `fail` setting is on.
const FAILING: &str = "recorder is set to fail";

/// Stores `event`; a redelivered id is ignored.
fn record(event: &Event) -> Result<(), db::Error> {
    let id = i64::try_from(event.id)
        .map_err(|_| db::Error::Other(format!("event id {} is too large", event.id)))?;
    let published_at = i64::try_from(event.published_at).unwrap_or(i64::MAX);
    // Portable spelling of INSERT OR IGNORE (SQLite 3.24+ and PostgreSQL).
    db::execute(
        "INSERT INTO events (id, name, source, payload, published_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO NOTHING",
        params![id, &event.name, &event.source, &event.payload, published_at],
    )?;
    Ok(())
}

fn failing() -> Result<bool, db::Error> {
    match db::query_opt("SELECT value FROM settings WHERE name = 'fail'", params![])? {
        Some(row) => row.get("value"),
        None => Ok(false),
    }
}

fn health(_: &Request, _: &Params) -> Result<Response, ApiError> {
    Ok(Response::json(
        200,
        &json!({ "status": "healthy", "shard": "recorder" }),
    ))
}

fn list_events(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let events = db::query(
        "SELECT id, name, source, payload, published_at FROM events ORDER BY id",
        params![],
    )?
    .map(|row| -> Result<serde_json::Value, db::Error> {
        Ok(json!({
            "id": row.get::<i64>("id")?,
            "name": row.get::<String>("name")?,
            "source": row.get::<String>("source")?,
            "payload": row.get::<String>("payload")?,
            "published_at": row.get::<i64>("published_at")?,
        }))
    })?;
    Ok(Response::json(200, &json!({ "events": events })))
}

#[derive(Deserialize)]
struct FailBody {
    fail: bool,
}

fn set_fail(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let body: FailBody = request.json()?;
    db::execute(
        "INSERT INTO settings (name, value) VALUES ('fail', ?) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![body.fail],
    )?;
    Ok(Response::json(200, &json!({ "fail": body.fail })))
}

arkham_shard_sdk::export_shard!(Recorder);
