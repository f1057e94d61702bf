//! Fixture shard `hostile-events`: abuses the event log and the frame's log, so the frame's tests
//! can assert that the bounds hold and that other shards keep working.
//!
//! HTTP (under `/api/hostile-events`):
//! - `POST /flood?n=N&bytes=M` -> publishes up to N events `hostile-events.flood.item` of M
//!   payload bytes, stopping at the first refusal; 200
//!   `{"published": k, "error": null | {"code", "message"}}`
//! - `POST /loop?fanout=F` -> publishes `hostile-events.loop.go` `{"fanout": F}`; 200 or 403 with
//!   the error code
//! - `POST /fail?kb=N` -> publishes `hostile-events.loop.fail` `{"kb": N}`, whose handler fails
//!   with an N KiB error every time
//! - `GET /log?lines=N&bytes=M` -> writes N messages of M bytes through `logging.log`, and N
//!   lines of M bytes to stdout and to stderr; 200 `{"lines": N}`
//! - `GET /stats` -> 200 `{"handled": n, "refused": n, "refusals": [{"code","message"}...]}`:
//!   loop events handled, and the publications its handler was refused (first 10)
//!
//! Only `/stats` and the event handler use the database.
//!
//! Events: it subscribes to its own `hostile-events.loop.*`. The handler of `loop.go` records
//! the event, then republishes it `fanout` times — a causation loop that only the frame can end.
//! A refused publication is recorded and acknowledged (not retried).

use arkham_shard_sdk::{
    ApiError, Event, Params, Request, Response, Router, Shard, db, events, log, params,
};
use serde::Deserialize;
use serde_json::json;
use std::io::Write as _;

struct HostileEvents;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS handled (id BIGINT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS refusals (n BIGINT PRIMARY KEY, code TEXT NOT NULL, message TEXT NOT NULL);
";

/// Most copies a handler republishes; the frame's per-call limit is 100 by default.
const MAX_FANOUT: u32 = 100;

impl Shard for HostileEvents {
    fn handle(request: Request) -> Response {
        // Only `/stats` touches the database, so `/flood` exercises the event log alone.
        Router::new()
            .post("/flood", flood)
            .post("/loop", start_loop)
            .post("/fail", start_failing)
            .get("/log", log_flood)
            .get("/stats", stats)
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        let describe = |error: db::Error| format!("{}: {}", error.code(), error.message());
        db::ensure_schema(1, SCHEMA).map_err(describe)?;
        match event.name.as_str() {
            "hostile-events.loop.go" => {
                let body: Fanout = event.json().map_err(|e| e.to_string())?;
                db::execute(
                    "INSERT INTO handled (id) VALUES (?) ON CONFLICT (id) DO NOTHING",
                    params![event.id as i64],
                )
                .map_err(describe)?;
                for _ in 0..body.fanout.min(MAX_FANOUT) {
                    if let Err(e) = events::publish_raw("hostile-events.loop.go", &event.payload) {
                        db::execute(
                            // Portable SQL (SQLite and PostgreSQL): no AUTOINCREMENT; deliveries
                            // to one subscriber run one at a time.
                            "INSERT INTO refusals (n, code, message) \
                             SELECT COALESCE(MAX(n), 0) + 1, ?, ? FROM refusals",
                            params![e.code(), e.message()],
                        )
                        .map_err(describe)?;
                        break;
                    }
                }
                Ok(())
            }
            "hostile-events.loop.fail" => {
                let body: Kb = event.json().map_err(|e| e.to_string())?;
                Err("e".repeat(body.kb.min(4096) << 10))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Deserialize)]
struct Fanout {
    fanout: u32,
}

#[derive(Deserialize)]
struct Kb {
    kb: usize,
}

fn number(request: &Request, name: &str, default: usize) -> usize {
    request
        .query_param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn flood(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let n = number(request, "n", 100);
    let payload = "x".repeat(number(request, "bytes", 1024));
    let mut published = 0;
    for _ in 0..n {
        if let Err(e) = events::publish_raw("hostile-events.flood.item", &payload) {
            return Ok(Response::json(
                200,
                &json!({
                    "published": published,
                    "error": { "code": e.code(), "message": e.message() },
                }),
            ));
        }
        published += 1;
    }
    Ok(Response::json(
        200,
        &json!({ "published": published, "error": null }),
    ))
}

fn start_loop(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let fanout = number(request, "fanout", 1);
    match events::publish("hostile-events.loop.go", &json!({ "fanout": fanout })) {
        Ok(()) => Ok(Response::json(200, &json!({ "started": fanout }))),
        Err(e) => Ok(Response::error(403, e.code(), e.message())),
    }
}

fn start_failing(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let kb = number(request, "kb", 1024);
    match events::publish("hostile-events.loop.fail", &json!({ "kb": kb })) {
        Ok(()) => Ok(Response::json(200, &json!({ "kb": kb }))),
        Err(e) => Ok(Response::error(403, e.code(), e.message())),
    }
}

fn log_flood(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let lines = number(request, "lines", 1000);
    let line = "l".repeat(number(request, "bytes", 1000));
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    for _ in 0..lines {
        log::info(&line);
        // The frame's pipes refuse writes past their capacity; keep logging regardless.
        let _ = writeln!(stdout, "{line}");
        let _ = writeln!(stderr, "{line}");
    }
    Ok(Response::json(200, &json!({ "lines": lines })))
}

fn stats(_: &Request, _: &Params) -> Result<Response, ApiError> {
    db::ensure_schema(1, SCHEMA)?;
    let handled: i64 = db::query_opt("SELECT COUNT(*) AS n FROM handled", params![])?
        .map(|row| row.get("n"))
        .transpose()?
        .unwrap_or(0);
    let refused: i64 = db::query_opt("SELECT COUNT(*) AS n FROM refusals", params![])?
        .map(|row| row.get("n"))
        .transpose()?
        .unwrap_or(0);
    let refusals = db::query(
        "SELECT code, message FROM refusals ORDER BY n LIMIT 10",
        params![],
    )?
    .map(|row| -> Result<serde_json::Value, db::Error> {
        Ok(json!({
            "code": row.get::<String>("code")?,
            "message": row.get::<String>("message")?,
        }))
    })?;
    Ok(Response::json(
        200,
        &json!({ "handled": handled, "refused": refused, "refusals": refusals }),
    ))
}

arkham_shard_sdk::export_shard!(HostileEvents);
