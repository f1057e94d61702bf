//! The frame's admin API under `/api/frame/admin/`: install, remove, grants, logs, dead
//! letters, config. Every call needs `Authorization: Bearer <token>`, the token the frame wrote
//! to `admin-token` in its data dir (mode 0600) at its first start, or a dashboard session made
//! from it (see [`super::dashboard::session`]). The shards' own APIs need no token.

use super::dashboard::Sessions;
use super::error;
use crate::frame::{Frame, ShardStatus};
use crate::shards::fetch::{self, FetchError};
use crate::shards::grants::Grant;
use crate::shards::trust::TrustError;
use arkham_registry::repo::ConnectOptions;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Request, State};
use axum::http::StatusCode;
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
            get(overview)
                .post(install)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route("/api/frame/admin/events/recent", get(recent_events))
        // `/metrics` under the admin prefix, where the dashboard's session cookie reaches.
        .route(
            "/api/frame/admin/metrics",
            get(|State(frame): State<Arc<Frame>>| async move {
                crate::metrics::scrape(&frame).await
            }),
        )
        .route(
            "/api/frame/admin/shards/{name}",
            axum::routing::delete(remove),
        )
        .route("/api/frame/admin/shards/{name}/rollback", post(rollback))
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

async fn require_token(
    State(frame): State<Arc<Frame>>,
    Extension(sessions): Extension<Sessions>,
    request: Request,
    next: Next,
) -> Response {
    match sessions.authorize(&frame, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

async fn config(State(frame): State<Arc<Frame>>) -> Response {
    Json(json!(frame.config())).into_response()
}

/// `GET shards`: every installed shard with its status (and why it failed), what it
/// requested and was granted, and the limits in force (the defaults with its override).
async fn overview(State(frame): State<Arc<Frame>>) -> Response {
    let limits_config = &frame.config().limits;
    let shards: Vec<_> = frame
        .shards()
        .into_iter()
        .map(|(installed, status)| {
            let (grant, requested) = match &status {
                ShardStatus::Running(running) => (
                    Some(json!(&*running.grant())),
                    Some(json!(Grant::requested_by(running.manifest()))),
                ),
                // Granted is known once it is loaded, under the grants in force then.
                ShardStatus::Pending(manifest) => {
                    (None, Some(json!(Grant::requested_by(manifest))))
                }
                ShardStatus::Failed { .. } => (None, None),
            };
            let limits = limits_config.for_shard(&installed.name);
            super::extend(
                super::installed_json(&installed, &status),
                json!({
                    "granted": grant,
                    "requested": requested,
                    "limits": {
                        "memory_bytes": limits.memory_bytes,
                        "instances": limits.instances,
                        "instances_reserved": limits.instances_reserved,
                        "request_timeout_ms": limits.request_timeout.as_millis() as u64,
                        "event_timeout_ms": limits.event_timeout.as_millis() as u64,
                        "max_request_bytes": limits.max_request_bytes,
                        "max_response_bytes": limits.max_response_bytes,
                        "instance_reuse": limits.instance_reuse,
                        "requests_per_second": limits.requests_per_second,
                        "request_burst": limits.request_burst,
                    },
                    "limits_override": limits_config.shards.get(&installed.name),
                    "history": installed.history,
                }),
            )
        })
        .collect();
    Json(json!({ "shards": shards })).into_response()
}

/// `?limit=N&shard=NAME` of the recent-events route.
#[derive(serde::Deserialize)]
struct RecentQuery {
    limit: Option<u32>,
    /// Only events this shard published.
    shard: Option<String>,
}

/// Recent events listed at most, and read at most to find a shard's.
const RECENT_LIMIT: u32 = 200;
const RECENT_SCAN: u32 = 1000;
/// Payload bytes shown per event; the rest is cut (the size is given).
const RECENT_PAYLOAD_BYTES: usize = 4096;

/// `GET events/recent[?limit=N][&shard=NAME]`: the newest events, newest first.
async fn recent_events(
    State(frame): State<Arc<Frame>>,
    axum::extract::Query(query): axum::extract::Query<RecentQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(50).clamp(1, RECENT_LIMIT);
    let scan = if query.shard.is_some() {
        RECENT_SCAN
    } else {
        limit
    };
    let events = match frame.event_bus().recent(scan).await {
        Ok(events) => events,
        Err(e) => return bus_failed(e),
    };
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| query.shard.as_deref().is_none_or(|s| e.source == s))
        .take(limit as usize)
        .map(|e| {
            let size = e.payload.len();
            let mut cut = RECENT_PAYLOAD_BYTES.min(size);
            while !e.payload.is_char_boundary(cut) {
                cut -= 1;
            }
            json!({
                "id": e.id,
                "name": e.name,
                "source": e.source,
                "published_at": e.published_at,
                "payload_bytes": size,
                "payload": &e.payload[..cut],
                "payload_cut": cut < size,
            })
        })
        .collect();
    Json(json!({ "events": events })).into_response()
}

/// `POST shards`: a packaged component as the body, or `{"reference": "packets@0.1"}` (with
/// `Content-Type: application/json`) to fetch one through the same pipeline as `arkham shard
/// add`: this data dir's default registry, trust policy and offline cache; the install is pinned
/// in the lockfile.
async fn install(
    State(frame): State<Arc<Frame>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return install_reference(&frame, &body).await;
    }
    match frame.install(body.to_vec(), "admin API".to_string()).await {
        Ok(installed) => (StatusCode::CREATED, Json(json!(installed))).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "install_failed",
            format!("{e:#}"),
        ),
    }
}

/// The body of an install from a registry.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallReference {
    /// `packets@0.1`, `ghcr.io/org/thing@sha256:…`.
    reference: String,
    /// Plain HTTP for a registry that is not on loopback.
    #[serde(default)]
    plain_http: bool,
}

async fn install_reference(frame: &Frame, body: &[u8]) -> Response {
    let request: InstallReference = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "the body must be {{\"reference\": \"NAME@VERSION\"}} (or a component, without the JSON content type): {e}"
                ),
            );
        }
    };
    let data = frame.data();
    let shard_ref = match fetch::parse_ref(data, &request.reference) {
        Ok(shard_ref) => shard_ref,
        Err(e) => return fetch_error(&e),
    };
    let options = ConnectOptions {
        plain_http: request.plain_http,
        offline: false,
    };
    let fetched = match fetch::fetch_checked(
        data,
        fetch::Request::new(&shard_ref, options),
        &|_, _| {},
    )
    .await
    {
        Ok(fetched) => fetched,
        Err(e) => return fetch_error(&e),
    };
    let (signers, warnings) = (fetched.signers.clone(), fetched.warnings.clone());
    let requirement = fetch::requirement_text(&shard_ref.selector);
    match frame.install_fetched(fetched, requirement).await {
        Ok(installed) => (
            StatusCode::CREATED,
            Json(json!({
                "installed": installed,
                "signers": signers,
                "warnings": warnings,
            })),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "install_failed",
            format!("{e:#}"),
        ),
    }
}

/// A refused fetch, by what the caller can do about it.
fn fetch_error(e: &FetchError) -> Response {
    use arkham_registry::RegistryError;
    let (status, code) = match e {
        FetchError::Reference(_) => (StatusCode::BAD_REQUEST, "invalid_reference"),
        FetchError::Requirement(_) | FetchError::LockedSource { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "fetch_failed")
        }
        FetchError::Trust(TrustError::Refused { .. }) => (StatusCode::FORBIDDEN, "untrusted"),
        FetchError::Registry(
            RegistryError::NotFound { .. }
            | RegistryError::NoMatch(_)
            | RegistryError::NotCached { .. },
        ) => (StatusCode::NOT_FOUND, "not_found"),
        FetchError::Registry(RegistryError::Unauthorized { .. }) => {
            (StatusCode::FORBIDDEN, "registry_denied")
        }
        FetchError::Registry(RegistryError::Auth(_) | RegistryError::Store(_)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "fetch_failed")
        }
        FetchError::Unreachable(_) | FetchError::Registry(_) => {
            (StatusCode::BAD_GATEWAY, "registry_failed")
        }
        FetchError::Manifest(_)
        | FetchError::Incompatible { .. }
        | FetchError::NotPinned { .. }
        | FetchError::Component(_) => (StatusCode::UNPROCESSABLE_ENTITY, "install_failed"),
        FetchError::Config(_)
        | FetchError::Trust(_)
        | FetchError::Store(_)
        | FetchError::Read { .. }
        | FetchError::Task(_) => (StatusCode::INTERNAL_SERVER_ERROR, "fetch_failed"),
    };
    error(status, code, e.to_string())
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
    let Some(shard) = frame.loaded_shard(&name).await else {
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
    let trimmed = match bus.trimmed().await {
        Ok(trimmed) => trimmed,
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
            "trimmed": trimmed,
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
    let Some(shard) = frame.loaded_shard(&name).await else {
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

/// `POST shards/{name}/rollback`: back to the version installed before, through the health
/// gate; 422 with the reason when it is refused (the current version keeps serving).
async fn rollback(State(frame): State<Arc<Frame>>, Path(name): Path<String>) -> Response {
    match frame.rollback(&name).await {
        Ok(serving) => Json(json!({ "serving": serving })).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rollback_failed",
            format!("{e:#}"),
        ),
    }
}

async fn remove(State(frame): State<Arc<Frame>>, Path(name): Path<String>) -> Response {
    match frame.remove(&name).await {
        Ok(removed) => Json(json!({ "removed": removed })).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "not_installed", format!("{e:#}")),
    }
}

async fn grants(State(frame): State<Arc<Frame>>, Path(name): Path<String>) -> Response {
    match frame.loaded(&name).await {
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
