//! The frame's admin API under `/api/frame/admin/`: install, remove, grants, logs, config. Every call
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
