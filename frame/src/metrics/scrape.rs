//! Answering a scrape: the state gauges are read from the frame, then everything is encoded.

use super::{CONTENT_TYPE, FrameState};
use crate::frame::{Frame, ShardStatus};
use crate::http::error;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;

/// How long a scrape waits for a shard's storage usage (behind a write in progress, or counted
/// for the first time since the start); past it the gauge keeps its last value.
const USAGE_WAIT: Duration = Duration::from_millis(200);

/// The metrics page of `frame`, in the Prometheus text format. Whoever calls it has checked
/// that the caller may see it.
pub async fn scrape(frame: &Frame) -> Response {
    refresh(frame).await;
    match frame.metrics().encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the metrics could not be encoded: {e}"),
        ),
    }
}

/// Sets the gauges that describe the frame's state now.
async fn refresh(frame: &Frame) {
    let (mut loaded, mut failed) = (0, 0);
    let mut usages = Vec::new();
    for (_, status) in frame.shards() {
        let running = match status {
            ShardStatus::Running(running) => running,
            ShardStatus::Failed { .. } => {
                failed += 1;
                continue;
            }
            // Neither loaded nor failed yet: no instances, no cursor.
            ShardStatus::Pending(_) => continue,
        };
        loaded += 1;
        let shard = running.shard();
        let metrics = shard.metrics().clone();
        metrics.set_instances_in_use(shard.slots_in_use());
        let policy = shard.policy();
        if !policy.receive.declared().is_empty() {
            let wants = |name: &str| policy.receive.may_receive(name);
            // A log that cannot be read now leaves the last value.
            if let Ok(lag) = frame.event_bus().lag(shard.name(), &wants).await {
                metrics.set_events_behind(lag.behind);
            }
        }
        if let Some(store) = shard.storage().cloned() {
            // Its own task: a first count that outlasts the wait still finishes and is kept (the
            // store caches it, exact from then on), so later scrapes get it at once.
            let usage = tokio::spawn(async move { store.usage().await });
            usages.push(async move {
                if let Ok(Ok(Ok(usage))) = tokio::time::timeout(USAGE_WAIT, usage).await {
                    metrics.set_storage_bytes(usage.bytes);
                }
            });
        }
    }
    // All at once: a scrape waits at most one USAGE_WAIT however many shards there are.
    futures::future::join_all(usages).await;
    let slots = frame.instance_slots();
    frame.metrics().set_frame(FrameState {
        shards_loaded: loaded,
        shards_failed: failed,
        slots_in_use: slots.in_use(),
        slots_total: slots.capacity(),
    });
}

/// The app `[metrics] listen` serves: `GET /metrics` without a token, nothing else.
pub fn app(frame: Arc<Frame>) -> Router {
    Router::new()
        .route("/metrics", get(unauthenticated))
        .fallback(not_found)
        .with_state(frame)
}

async fn unauthenticated(State(frame): State<Arc<Frame>>) -> Response {
    scrape(&frame).await
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "this address serves only GET /metrics",
    )
}
