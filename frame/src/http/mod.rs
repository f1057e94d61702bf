//! The frame's HTTP surface: its own API under `/api/frame/`, each shard's API under
//! `/api/{shard}/`, the dashboard at `/`, and `GET /metrics` (with the admin token).

mod admin;
mod dashboard;
mod proxy;
pub mod server;

use crate::frame::{Frame, ShardStatus};
use crate::shards::catalog::InstalledShard;
use crate::shards::compat::FRAME_VERSION;
use axum::Json;
use axum::Router;
use axum::extract::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;
use std::sync::Arc;

/// The frame's router; reachable from tests without a socket. Its requests share one budget of
/// buffered body bytes (`server.max_buffered_body_bytes`).
pub fn app(frame: Arc<Frame>) -> Router {
    let budget = server::BodyBudget::new(frame.config().server.max_buffered_body_bytes);
    Router::new()
        .merge(admin::routes(frame.clone()))
        .merge(dashboard::routes())
        .route("/metrics", get(metrics))
        .route("/api/frame/health", get(health))
        .route("/api/frame/shards", get(shards))
        .route("/api/frame/cluster", get(cluster))
        .route("/api/frame/{*rest}", any(frame_not_found))
        .route("/api/{shard}", any(proxy::forward))
        .route("/api/{shard}/", any(proxy::forward))
        .route("/api/{shard}/{*rest}", any(proxy::forward))
        .fallback(not_found)
        .with_state(frame)
        .layer(Extension(budget))
        .layer(Extension(dashboard::Sessions::default()))
}

/// A JSON error response: `{"error": {"code": ..., "message": ...}}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// `GET /metrics`: the admin token (or a session) first; `[metrics] listen` serves it without.
async fn metrics(
    State(frame): State<Arc<Frame>>,
    Extension(sessions): Extension<dashboard::Sessions>,
    request: axum::extract::Request,
) -> Response {
    match sessions.authorize(&frame, request.method(), request.headers()) {
        Ok(()) => crate::metrics::scrape(&frame).await,
        Err(refused) => refused.into_response(),
    }
}

async fn health(State(frame): State<Arc<Frame>>) -> Json<serde_json::Value> {
    let shards = frame.shards();
    let failed = shards
        .iter()
        .filter(|(_, s)| matches!(s, ShardStatus::Failed { .. }))
        .count();
    Json(json!({
        "status": if failed == 0 { "ok" } else { "degraded" },
        "version": FRAME_VERSION,
        "shards": { "installed": shards.len(), "failed": failed },
    }))
}

/// `GET /api/frame/cluster`: the members of this frame's deployment (read-only, public like
/// the shard list); a frame that is no member lists itself alone.
async fn cluster(State(frame): State<Arc<Frame>>, request: axum::extract::Request) -> Response {
    let Some(cluster) = frame.cluster() else {
        let host = request
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let member = frame.member(&host);
        return Json(json!({ "deployment": null, "members": [member] })).into_response();
    };
    match cluster.members().await {
        Ok(members) => Json(json!({
            "deployment": frame.config().nats.prefix,
            "members": members,
        }))
        .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unavailable",
            e.to_string(),
        ),
    }
}

/// What both shard lists (public and admin) say of an installed shard: the catalog's record
/// and its status, with the reason it failed.
fn installed_json(installed: &InstalledShard, status: &ShardStatus) -> serde_json::Value {
    let (state, error) = match status {
        ShardStatus::Running(_) => ("running", None),
        ShardStatus::Pending(_) => ("pending", None),
        ShardStatus::Failed { error } => ("failed", Some(error.clone())),
    };
    json!({
        "name": installed.name,
        "version": installed.version.to_string(),
        "digest": installed.digest.to_string(),
        "source": installed.source,
        "installed_at": installed.installed_at,
        "status": state,
        "error": error,
        "refused": installed.refused,
    })
}

/// `base` with `more`'s fields added.
fn extend(mut base: serde_json::Value, more: serde_json::Value) -> serde_json::Value {
    if let (Some(base), serde_json::Value::Object(more)) = (base.as_object_mut(), more) {
        base.extend(more);
    }
    base
}

async fn shards(State(frame): State<Arc<Frame>>) -> Json<serde_json::Value> {
    let list: Vec<_> = frame
        .shards()
        .into_iter()
        .map(|(installed, status)| {
            let (manifest, http_interface) = match &status {
                ShardStatus::Running(running) => (
                    serde_json::to_value(&**running.manifest()).ok(),
                    Some(running.shard().http_interface()),
                ),
                // Known from its manifest; the interface once its component is loaded.
                ShardStatus::Pending(manifest) => (serde_json::to_value(&**manifest).ok(), None),
                ShardStatus::Failed { .. } => (None, None),
            };
            extend(
                installed_json(&installed, &status),
                json!({
                    "earlier_versions": installed.history.iter().map(|e| e.version.to_string()).collect::<Vec<_>>(),
                    "api_prefix": format!("/api/{}", installed.name),
                    "http_interface": http_interface,
                    "manifest": manifest,
                }),
            )
        })
        .collect();
    Json(json!({ "shards": list }))
}

async fn frame_not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such frame endpoint; the frame serves /api/frame/health, /api/frame/shards and /api/frame/cluster",
    )
}

/// A dashboard page for a browser's `GET`, else the JSON 404.
async fn not_found(State(frame): State<Arc<Frame>>, request: axum::extract::Request) -> Response {
    if let Some(page) = dashboard::page(&frame, &request) {
        return page;
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "nothing here; shard APIs are under /api/{shard}/, see /api/frame/shards",
    )
}
