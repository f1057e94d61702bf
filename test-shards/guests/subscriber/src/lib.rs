//! Fixture shard `subscriber`: receives `publisher.*` events and records, per event, when it was
//! sent (`sent_us` from the payload, see the `publisher` fixture) and when its handler started,
//! both from the WASI wall clock in microseconds. The events benchmark (`benches/`) installs it
//! under several names (`subscriber0`, ...) and reads the latencies back after a run.
//!
//! HTTP (under `/api/{name}`):
//! - `GET /stats` -> 200 `{"count":N,"first_sent_us":T0,"last_delivered_us":T1}`: the deliveries
//!   recorded, the earliest send and the latest delivery time (0 when none). Cheap enough to poll.
//! - `GET /latencies` -> 200 `{"latencies_us":[...]}`: every delivery's latency (delivered - sent,
//!   µs) in event-id order.
//! - `DELETE /deliveries` -> 200 `{"deleted":N}`: forgets them, between benchmark runs.
//!
//! The handler acknowledges an event without `sent_us` (after a warning) rather than failing:
//! a retried delivery would stall every later one.

use arkham_shard_sdk::bindings::wasi::clocks::wall_clock;
use arkham_shard_sdk::{
    ApiError, Event, Params, Request, Response, Router, Shard, db, log, params,
};
use serde::Deserialize;
use serde_json::json;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    event_id BIGINT PRIMARY KEY,
    sent_us BIGINT NOT NULL,
    delivered_us BIGINT NOT NULL
);
";

const RECORD: &str = "INSERT INTO deliveries (event_id, sent_us, delivered_us) VALUES (?, ?, ?) \
                      ON CONFLICT (event_id) DO NOTHING";

struct Subscriber;

impl Shard for Subscriber {
    fn handle(request: Request) -> Response {
        if let Err(error) = db::ensure_schema(1, SCHEMA) {
            return ApiError::from(error).into_response();
        }
        Router::new()
            .get("/stats", stats)
            .get("/latencies", latencies)
            .delete("/deliveries", forget)
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        // First, so the latency covers everything up to the handler and nothing of it.
        let delivered_us = now_unix_micros();
        let Ok(tick) = event.json::<Tick>() else {
            log::warn(&format!("event {} has no sent_us; ignored", event.id));
            return Ok(());
        };
        let describe = |error: db::Error| format!("{}: {}", error.code(), error.message());
        let too_large = |what: &str| format!("{what} of event {} does not fit in i64", event.id);
        let row = params![
            i64::try_from(event.id).map_err(|_| too_large("the id"))?,
            i64::try_from(tick.sent_us).map_err(|_| too_large("sent_us"))?,
            i64::try_from(delivered_us).map_err(|_| too_large("the delivery time"))?,
        ];
        // One statement per event, the schema set up only when it is missing: recording must
        // cost little next to the delivery it measures.
        match db::execute(RECORD, row) {
            Err(db::Error::InvalidSql(_)) => {
                db::ensure_schema(1, SCHEMA).map_err(describe)?;
                db::execute(RECORD, row).map_err(describe)?;
            }
            other => {
                other.map_err(describe)?;
            }
        }
        Ok(())
    }
}

/// The part of publisher's payload the subscriber reads.
#[derive(Deserialize)]
struct Tick {
    sent_us: u64,
}

/// Microseconds since the Unix epoch (the SDK's `time` module stops at milliseconds).
fn now_unix_micros() -> u64 {
    let now = wall_clock::now();
    now.seconds * 1_000_000 + u64::from(now.nanoseconds / 1_000)
}

fn stats(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let summary = db::query_opt(
        "SELECT COUNT(*) AS count, COALESCE(MIN(sent_us), 0) AS first_sent_us, \
         COALESCE(MAX(delivered_us), 0) AS last_delivered_us FROM deliveries",
        params![],
    )?
    .ok_or_else(|| ApiError::internal("an aggregate query returned no row"))?;
    Ok(Response::json(
        200,
        &json!({
            "count": summary.get::<i64>("count")?,
            "first_sent_us": summary.get::<i64>("first_sent_us")?,
            "last_delivered_us": summary.get::<i64>("last_delivered_us")?,
        }),
    ))
}

fn latencies(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let latencies = db::query(
        "SELECT delivered_us - sent_us AS latency_us FROM deliveries ORDER BY event_id",
        params![],
    )?
    .map(|row| row.get::<i64>("latency_us"))?;
    Ok(Response::json(200, &json!({ "latencies_us": latencies })))
}

fn forget(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let deleted = db::execute("DELETE FROM deliveries", params![])?;
    Ok(Response::json(200, &json!({ "deleted": deleted })))
}

arkham_shard_sdk::export_shard!(Subscriber);
