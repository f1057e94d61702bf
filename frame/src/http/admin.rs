//! The frame's admin API under `/api/frame/admin/`: install, remove, grants, logs, dead
//! letters, config. Every call
//! needs `Authorization: Bearer <token>`, the token the frame wrote to `admin-token` in its data dir
//! (mode 0600) at its first start. The shards' own APIs need no token.

use super::error;
use crate::frame::Frame;
use crate::shards::grants::Grant;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::sync::Arc;

/// Largest component the admin API accepts.
const MAX_COMPONENT_BYTES: usize = 256 << 20;

/// The admin routes, behind the token check.
pub fn routes(frame: Arc<Frame>) -> Router<Arc<Frame>> {
    Router::new()
        .route("/api/frame/admin/config", get(config))
        .route(
            "/api/frame/admin/shards",
            post(install).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/api/frame/admin/shards/{name}",
            axum::routing::delete(remove),
        )
        .route(
            "/api/frame/admin/shards/{name}/grants",
            get(grants).put(set_grants),
        )
        .route("/api/frame/admin/shards/{name}/logs", get(logs))
        .route("/api/frame/admin/events/status", get(events_status))
        .route("/api/frame/admin/events/dead", get(dead_letters))
        .route(
            "/api/frame/admin/events/dead/{name}",
            axum::routing::delete(purge_dead_letters),
        )
        .route(
            "/api/frame/admin/events/dead/{name}/replay",
            post(replay_dead_letters),
        )
        .layer(middleware::from_fn_with_state(frame, require_token))
}

async fn require_token(State(frame): State<Arc<Frame>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if frame.is_admin_token(token) => next.run(request).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            // Not the path: where the data dir is is not for whoever can reach the port.
            "the admin API needs `Authorization: Bearer <token>`; the token is in the file \
             `admin-token` in the frame's data dir",
        ),
    }
}

async fn config(State(frame): State<Arc<Frame>>) -> Response {
    Json(json!(frame.config())).into_response()
}

async fn install(State(frame): State<Arc<Frame>>, body: Bytes) -> Response {
    match frame.install(body.to_vec(), "admin API".to_string()).await {
        Ok(installed) => (StatusCode::CREATED, Json(json!(installed))).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "install_failed",
            format!("{e:#}"),
        ),
    }
}

/// `?after=N&limit=M` of the logs route.
#[derive(serde::Deserialize)]
struct LogsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

/// The lines a running shard wrote lately (its `logging` calls, stdout and stderr), numbered:
/// `after` asks for those after a number, `newest` is what to ask after next.
async fn logs(
    State(frame): State<Arc<Frame>>,
    Path(name): Path<String>,
    axum::extract::Query(query): axum::extract::Query<LogsQuery>,
) -> Response {
    let Some(shard) = frame.shard(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "shard_not_found",
            format!("no shard named `{name}` is running"),
        );
    };
    let limit = query
        .limit
        .unwrap_or(crate::services::logging::KEPT_LINES)
        .min(crate::services::logging::KEPT_LINES);
    let (lines, newest) = shard.log().since(query.after, limit);
    Json(json!({ "shard": name, "lines": lines, "newest": newest })).into_response()
}

/// Dead letters listed at most, per subscriber.
const DEAD_LIMIT: usize = 1000;

#[derive(serde::Deserialize)]
struct DeadQuery {
    /// Only this subscriber's.
    shard: Option<String>,
    /// Only this event (replay).
    id: Option<u64>,
    /// Purge those up to and including this event [default: all].
    up_to: Option<u64>,
}

/// The subscribers to look at: `shard`, or every running shard that subscribes.
fn subscribers(frame: &Frame, shard: Option<&str>) -> Vec<String> {
    match shard {
        Some(name) => vec![name.to_string()],
        None => frame
            .shards()
            .into_iter()
            .map(|(installed, _)| installed.name)
            .collect(),
    }
}

fn bus_failed(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "events_unavailable",
        format!("the event log cannot be read: {e}"),
    )
}

/// `GET events/status`: the log's size and the retention in force, and how far each running
/// subscriber is behind (events and the age of the oldest undelivered one).
async fn events_status(State(frame): State<Arc<Frame>>) -> Response {
    let bus = frame.event_bus();
    let (events, bytes) = match bus.size().await {
        Ok(size) => size,
        Err(e) => return bus_failed(e),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut subscribers = Vec::new();
    for (installed, _) in frame.shards() {
        let Some(shard) = frame.shard(&installed.name) else {
            continue;
        };
        let policy = shard.policy();
        if policy.receive.declared().is_empty() {
            continue;
        }
        let wants = |name: &str| policy.receive.may_receive(name);
        let lag = match bus.lag(&installed.name, &wants).await {
            Ok(lag) => lag,
            Err(e) => return bus_failed(e),
        };
        let dead = match bus.dead_letters(&installed.name, DEAD_LIMIT).await {
            Ok(dead) => dead.len(),
            Err(e) => return bus_failed(e),
        };
        subscribers.push(json!({
            "subscriber": installed.name,
            "behind": lag.behind,
            "oldest_undelivered_age_ms": lag.oldest_published_at.map(|at| now.saturating_sub(at)),
            "dead_letters": dead,
        }));
    }
    let config = &frame.config().events;
    Json(json!({
        "log": {
            "backend": config.backend,
            "events": events,
            "bytes": bytes,
            "retention": {
                "max_retained_bytes_per_shard": config.max_retained_bytes_per_shard,
                "stream_max_age_s": config.stream_max_age_s,
                "stream_max_bytes": config.stream_max_bytes,
            },
        },
        "subscribers": subscribers,
    }))
    .into_response()
}

/// `GET events/dead[?shard=NAME]`: the events each subscriber gave up on, with why.
async fn dead_letters(
    State(frame): State<Arc<Frame>>,
    axum::extract::Query(query): axum::extract::Query<DeadQuery>,
) -> Response {
    let mut dead = Vec::new();
    for subscriber in subscribers(&frame, query.shard.as_deref()) {
        let letters = match frame
            .event_bus()
            .dead_letter_events(&subscriber, DEAD_LIMIT)
            .await
        {
            Ok(letters) => letters,
            Err(e) => return bus_failed(e),
        };
        for (event, why) in letters {
            dead.push(json!({
                "subscriber": subscriber,
                "id": event.id,
                "name": event.name,
                "source": event.source,
                "payload": event.payload,
                "published_at": event.published_at,
                "error": why,
            }));
        }
    }
    Json(json!({ "dead": dead })).into_response()
}

/// `POST events/dead/{name}/replay[?id=N]`: delivers the shard's dead letters (or one) again
/// through the normal delivery (a fresh instance, the event deadline, its publications logged);
/// each one delivered is removed, each one that fails again stays, with the new error reported.
async fn replay_dead_letters(
    State(frame): State<Arc<Frame>>,
    Path(name): Path<String>,
    axum::extract::Query(query): axum::extract::Query<DeadQuery>,
) -> Response {
    let Some(shard) = frame.shard(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "shard_not_found",
            format!("no shard named `{name}` is running; replay needs it running"),
        );
    };
    let letters = match frame
        .event_bus()
        .dead_letter_events(&name, DEAD_LIMIT)
        .await
    {
        Ok(letters) => letters,
        Err(e) => return bus_failed(e),
    };
    let chosen: Vec<_> = letters
        .into_iter()
        .filter(|(event, _)| query.id.is_none_or(|id| event.id == id))
        .collect();
    if let (Some(id), true) = (query.id, chosen.is_empty()) {
        return error(
            StatusCode::NOT_FOUND,
            "no_dead_letter",
            format!(
                "shard `{name}` has no dead letter of event {id}; `arkham events dead --shard {name}` lists them"
            ),
        );
    }
    let mut results = Vec::new();
    let total = chosen.len();
    for (event, _) in chosen {
        let id = event.id;
        // Replaying all: once one fails again, the handler is not mended yet; the rest would
        // each wait out the event deadline for the same answer.
        if results
            .iter()
            .any(|r: &serde_json::Value| r["replayed"] == false)
        {
            break;
        }
        // The grant in force now decides, as for any delivery: a revoked subscription is not
        // replayed around.
        if !shard.policy().receive.may_receive(&event.name) {
            results.push(json!({
                "id": id,
                "replayed": false,
                "error": format!("`{name}` is not granted to receive `{}` now", event.name),
            }));
            continue;
        }
        let outcome = match shard.deliver_event(event).await {
            Ok(()) => match frame.event_bus().remove_dead_letter(&name, id).await {
                Ok(_) => json!({ "id": id, "replayed": true }),
                Err(e) => {
                    json!({ "id": id, "replayed": true, "error": format!("delivered, but its dead letter stays: {e}") })
                }
            },
            Err(why) => json!({ "id": id, "replayed": false, "error": why }),
        };
        results.push(outcome);
    }
    let skipped = total - results.len();
    Json(json!({ "shard": name, "results": results, "not_attempted": skipped })).into_response()
}

/// `DELETE events/dead/{name}[?up_to=N]`: forgets the shard's dead letters (those up to event N).
async fn purge_dead_letters(
    State(frame): State<Arc<Frame>>,
    Path(name): Path<String>,
    axum::extract::Query(query): axum::extract::Query<DeadQuery>,
) -> Response {
    match frame
        .event_bus()
        .purge_dead_letters(&name, query.up_to.unwrap_or(u64::MAX))
        .await
    {
        Ok(purged) => Json(json!({ "shard": name, "purged": purged })).into_response(),
        Err(e) => bus_failed(e),
    }
}

async fn remove(State(frame): State<Arc<Frame>>, Path(name): Path<String>) -> Response {
    match frame.remove(&name).await {
        Ok(removed) => Json(json!({ "removed": removed })).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "not_installed", format!("{e:#}")),
    }
}

async fn grants(State(frame): State<Arc<Frame>>, Path(name): Path<String>) -> Response {
    match frame.running(&name) {
        Some(running) => Json(json!({
            "granted": &*running.grant(),
            "requested": Grant::requested_by(running.manifest()),
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "shard_not_found",
            format!("no shard named `{name}` is running"),
        ),
    }
}

async fn set_grants(
    State(frame): State<Arc<Frame>>,
    Path(name): Path<String>,
    Json(grant): Json<Grant>,
) -> Response {
    match frame.set_grant(&name, grant).await {
        Ok(effective) => Json(json!({ "granted": effective })).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "shard_not_found", format!("{e:#}")),
    }
}
