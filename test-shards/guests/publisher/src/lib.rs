//! Fixture shard `publisher`: publishes events stamped with their send time, for the events
//! benchmark (`benches/`), which installs `subscriber` next to it and reads the delivery latency
//! back from there.
//!
//! HTTP (under `/api/publisher`):
//! - `POST /publish?n=K` (K from 0 to 100, default 1) -> 200 `{"published":K}` after publishing K
//!   events `publisher.tick.sent` with the payload `{"sent_us":T,"seq":I}`: T is the WASI wall
//!   clock in microseconds since the Unix epoch, read just before each publish, and I counts from
//!   0 within the request. K out of range -> 400; a refused publish -> 500 with the refusal.
//! - `GET /health` -> 200 `ok`.

use arkham_shard_sdk::bindings::wasi::clocks::wall_clock;
use arkham_shard_sdk::{ApiError, Params, Request, Response, Router, Shard, events};

/// The frame's default `events.max_per_call`.
const MAX_PER_REQUEST: u32 = 100;

struct Publisher;

impl Shard for Publisher {
    fn handle(request: Request) -> Response {
        Router::new()
            .get("/health", |_, _| Ok(Response::text(200, "ok")))
            .post("/publish", publish)
            .handle(&request)
    }
}

/// Microseconds since the Unix epoch. The SDK's `time` module stops at milliseconds, too coarse
/// for delivery latencies of a few hundred microseconds.
fn now_unix_micros() -> u64 {
    let now = wall_clock::now();
    now.seconds * 1_000_000 + u64::from(now.nanoseconds / 1_000)
}

fn publish(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let count = match request.query_param("n") {
        None => 1,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_PER_REQUEST)
            .ok_or_else(|| {
                ApiError::bad_request(format!("n must be 0 to {MAX_PER_REQUEST}, not {text:?}"))
            })?,
    };
    for seq in 0..count {
        // Formatted by hand: the payload is on the measured path and serde adds nothing here.
        let payload = format!("{{\"sent_us\":{},\"seq\":{seq}}}", now_unix_micros());
        events::publish_raw("publisher.tick.sent", &payload)
            .map_err(|error| ApiError::new(500, error.code(), error.message()))?;
    }
    Ok(Response::bytes(
        200,
        "application/json",
        format!("{{\"published\":{count}}}").into_bytes(),
    ))
}

arkham_shard_sdk::export_shard!(Publisher);
