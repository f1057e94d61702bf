//! Fixture shard `hostile`: everything a malicious or broken shard might try, one endpoint each,
//! so the frame's tests can assert that it fails alone.
//!
//! HTTP (under `/api/hostile`):
//! - `GET /alloc?mb=N` -> allocates and touches N MiB (a memory bomb past the limit)
//! - `GET /recurse` -> unbounded recursion (stack overflow)
//! - `GET /big?mb=N` -> an N MiB response
//! - `GET /flood` -> calls the host (clock, logging) in an endless loop
//! - `GET /escape?path=P` -> tries every way out of its own database: ATTACH of `P`, loading an
//!   extension, raising its size limit, reading the database list; 200
//!   `{"attempts":[{"sql","outcome"}...]}` where outcome is `ok` or the error code
//! - `GET /slowquery` -> a query that never ends (recursive CTE); 200 `{"outcome": code}`
//! - `GET /fill?mb=N` -> inserts N MiB of blobs, 1 MiB per row; 200 `{"outcome": code, "rows": n}`
//! - `POST /publish` `{"name","payload"}` -> publishes; 200 or 403 with the error code
//! - `GET /events` -> 200 `{"events":[names...]}`: every event it was ever delivered
//! - `GET /sleep?ms=N` -> sleeps N ms in a host call (a `wasi:io` pollable), where epoch
//!   deadlines do not reach it; 200 if it ever wakes
//! - `GET /sleep-in-tx?ms=N` -> opens a transaction (the database's write lock), then sleeps
//! - `GET /write` -> a write needing the write lock; 200 `{"outcome": code}`
//! - `GET /headers?n=N` -> a response with N headers (`x-h-0` ... ); 200
//! - `GET /leak?n=N` -> asks the host for N `wasi:cli/stdout` streams and never drops them
//!   (each one an entry in the host's resource table); 200 `{"leaked": N}` if the host lets it
//!
//! Events: it subscribes to `hostile.*` only. Its handler records each event; one named
//! `hostile.loop.forever` makes it spin until the frame's deadline stops it, and one named
//! `hostile.loop.sleep` is recorded, then makes it sleep in a host call for 10 minutes.

use arkham_shard_sdk::{
    ApiError, Event, Params, Request, Response, Router, Shard, db, events, log, params,
};
use serde::Deserialize;
use serde_json::json;

struct Hostile;

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS received (id INTEGER PRIMARY KEY, name TEXT NOT NULL);";

impl Shard for Hostile {
    fn handle(request: Request) -> Response {
        Router::new()
            .get("/alloc", alloc)
            .get("/recurse", recurse)
            .get("/big", big)
            .get("/flood", flood)
            .get("/escape", escape)
            .get("/slowquery", slow_query)
            .get("/fill", fill)
            .post("/publish", publish)
            .get("/events", received)
            .get("/sleep", sleep)
            .get("/sleep-in-tx", sleep_in_tx)
            .get("/write", write)
            .get("/headers", headers)
            .get("/leak", leak)
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        if event.name == "hostile.loop.forever" {
            spin();
        }
        db::ensure_schema(1, SCHEMA).map_err(|e| e.message().to_string())?;
        db::execute(
            "INSERT INTO received (id, name) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
            params![event.id as i64, event.name.as_str()],
        )
        .map_err(|e| e.message().to_string())?;
        if event.name == "hostile.loop.sleep" {
            // Recorded first, so a test sees that the handler is asleep.
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        Ok(())
    }
}

fn megabytes(request: &Request) -> usize {
    request
        .query_param("mb")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn alloc(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..megabytes(request) {
        // Touch every page so the memory is really used, not just reserved.
        blocks.push(vec![0xA5; 1 << 20]);
    }
    let total: usize = std::hint::black_box(&blocks).iter().map(Vec::len).sum();
    Ok(Response::json(200, &json!({ "allocated": total })))
}

#[inline(never)]
#[expect(
    unconditional_recursion,
    reason = "the fixture exists to overflow the stack"
)]
fn descend(depth: u64) -> u64 {
    // black_box keeps each frame alive so the recursion is not turned into a loop.
    std::hint::black_box(descend(std::hint::black_box(depth + 1))) + 1
}

fn recurse(_: &Request, _: &Params) -> Result<Response, ApiError> {
    Ok(Response::json(200, &json!({ "depth": descend(0) })))
}

fn big(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let body = vec![b'x'; megabytes(request) << 20];
    Ok(Response::bytes(200, "application/octet-stream", body))
}

fn flood(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let mut calls: u64 = 0;
    loop {
        calls = std::hint::black_box(calls.wrapping_add(1));
        let _ = arkham_shard_sdk::time::now_unix_millis();
        if calls.is_multiple_of(1024) {
            log::trace("still flooding");
        }
    }
}

fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
        std::hint::spin_loop();
    }
}

fn escape(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let path = request
        .query_param("path")
        .unwrap_or("/tmp/other.sqlite")
        .to_string();
    let attach = format!("ATTACH DATABASE '{}' AS other", path.replace('\'', "''"));
    let attempts: Vec<(String, bool)> = vec![
        (attach, false),
        ("SELECT load_extension('/tmp/evil.so')".to_string(), true),
        ("PRAGMA max_page_count = 2147483647".to_string(), false),
        ("PRAGMA database_list".to_string(), true),
        ("PRAGMA journal_mode = OFF".to_string(), true),
        (format!("VACUUM INTO '{}'", path.replace('\'', "''")), false),
    ];
    let mut out = Vec::new();
    for (sql, is_query) in attempts {
        let outcome = if is_query {
            db::query(&sql, params![]).map(|_| ())
        } else {
            db::execute(&sql, params![]).map(|_| ())
        };
        let outcome = match outcome {
            Ok(()) => "ok".to_string(),
            Err(e) => e.code().to_string(),
        };
        out.push(json!({ "sql": sql, "outcome": outcome }));
    }
    Ok(Response::json(200, &json!({ "attempts": out })))
}

fn slow_query(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let outcome = db::query(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        params![],
    );
    let outcome = match outcome {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    Ok(Response::json(200, &json!({ "outcome": outcome })))
}

fn fill(request: &Request, _: &Params) -> Result<Response, ApiError> {
    // `bytea` is PostgreSQL's BLOB; SQLite keeps blobs whatever the declared type.
    db::execute_batch("CREATE TABLE IF NOT EXISTS filler (data bytea NOT NULL);")?;
    let mut rows = 0;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..megabytes(request) {
        // Pseudo-random bytes (xorshift): no engine can compress them below the quota.
        let chunk: Vec<u8> = (0..(1 << 20) / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        if let Err(e) = db::execute(
            "INSERT INTO filler (data) VALUES (?)",
            params![chunk.as_slice()],
        ) {
            return Ok(Response::json(
                200,
                &json!({ "outcome": e.code(), "rows": rows }),
            ));
        }
        rows += 1;
    }
    Ok(Response::json(
        200,
        &json!({ "outcome": "ok", "rows": rows }),
    ))
}

fn millis(request: &Request) -> u64 {
    request
        .query_param("ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(120_000)
}

fn sleep(request: &Request, _: &Params) -> Result<Response, ApiError> {
    std::thread::sleep(std::time::Duration::from_millis(millis(request)));
    Ok(Response::json(200, &json!({ "slept": true })))
}

fn sleep_in_tx(request: &Request, _: &Params) -> Result<Response, ApiError> {
    db::execute_batch("CREATE TABLE IF NOT EXISTS locked (x INTEGER);")?;
    let tx = db::begin()?;
    tx.execute("INSERT INTO locked (x) VALUES (1)", params![])?;
    std::thread::sleep(std::time::Duration::from_millis(millis(request)));
    tx.commit()?;
    Ok(Response::json(200, &json!({ "slept": true })))
}

fn write(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let outcome = db::execute_batch("CREATE TABLE IF NOT EXISTS locked (x INTEGER);")
        .and_then(|()| db::execute("INSERT INTO locked (x) VALUES (2)", params![]));
    let outcome = match outcome {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    Ok(Response::json(200, &json!({ "outcome": outcome })))
}

fn headers(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let n: usize = request
        .query_param("n")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let mut response = Response::text(200, "many headers");
    for i in 0..n {
        response = response.with_header(format!("x-h-{i}"), "v");
    }
    Ok(response)
}

fn leak(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let n: u64 = request
        .query_param("n")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    for _ in 0..n {
        std::mem::forget(arkham_shard_sdk::bindings::wasi::cli::stdout::get_stdout());
    }
    Ok(Response::json(200, &json!({ "leaked": n })))
}

#[derive(Deserialize)]
struct Publish {
    name: String,
    payload: serde_json::Value,
}

fn publish(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let body: Publish = request.json()?;
    match events::publish(&body.name, &body.payload) {
        Ok(()) => Ok(Response::json(200, &json!({ "published": body.name }))),
        Err(e) => Ok(Response::error(403, e.code(), e.message())),
    }
}

fn received(_: &Request, _: &Params) -> Result<Response, ApiError> {
    db::ensure_schema(1, SCHEMA)?;
    let names = db::query("SELECT name FROM received ORDER BY id", params![])?
        .map(|row| row.get::<String>("name"))?;
    Ok(Response::json(200, &json!({ "events": names })))
}

arkham_shard_sdk::export_shard!(Hostile);
