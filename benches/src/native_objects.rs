//! The native baseline of the storage rows: axum serving the `trapper` fixture's
//! `PUT /api/trapper/blob/{key}` (store the body with its content type, answer the object's
//! info) and `GET` (the content with its content type, or 404) on a JetStream object-store bucket
//! of its own, as the frame keeps one bucket per shard.

use crate::native::NativeServer;
use anyhow::{Context, Result};
use async_nats::jetstream::object_store::{self, GetErrorKind, ObjectMetadata, ObjectStore};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use serde_json::json;
use tokio::io::AsyncReadExt;

const CONTENT_TYPE: &str = "Content-Type";

/// Serves the blob routes on a bucket `trapper` of the NATS server at `nats_url`.
pub fn start(nats_url: &str) -> Result<NativeServer> {
    let nats_url = nats_url.to_string();
    NativeServer::start_async(move || async move {
        let client = async_nats::connect(&nats_url)
            .await
            .with_context(|| format!("connecting to NATS at {nats_url}"))?;
        let jetstream = async_nats::jetstream::new(client);
        let bucket = jetstream
            .create_object_store(object_store::Config {
                bucket: "trapper".into(),
                ..Default::default()
            })
            .await
            .context("creating the native object-store bucket")?;
        Ok(Router::new()
            .route("/api/trapper/blob/{*key}", put(put_blob).get(get_blob))
            .with_state(bucket))
    })
}

fn failed(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"code": "io", "message": e.to_string()}})),
    )
        .into_response()
}

async fn put_blob(
    State(bucket): State<ObjectStore>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    let mut object_headers = async_nats::HeaderMap::new();
    object_headers.insert(CONTENT_TYPE, content_type);
    let meta = ObjectMetadata {
        name: key.clone(),
        headers: Some(object_headers),
        ..Default::default()
    };
    match bucket.put(meta, &mut body.as_ref()).await {
        Ok(info) => axum::Json(json!({
            "key": key,
            "size": info.size,
            "content_type": content_type,
            "modified_at": info.modified.map(|m| m.unix_timestamp()),
        }))
        .into_response(),
        Err(e) => failed(e),
    }
}

async fn get_blob(State(bucket): State<ObjectStore>, UrlPath(key): UrlPath<String>) -> Response {
    let mut object = match bucket.get(&key).await {
        Ok(object) => object,
        Err(e) if e.kind() == GetErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, format!("no object under `{key}`")).into_response();
        }
        Err(e) => return failed(e),
    };
    let content_type = object
        .info
        .headers
        .as_ref()
        .and_then(|h| h.get(CONTENT_TYPE))
        .map_or("application/octet-stream".to_string(), |v| {
            v.as_str().to_string()
        });
    let mut data = Vec::with_capacity(object.info.size);
    if let Err(e) = object.read_to_end(&mut data).await {
        return failed(e);
    }
    ([(header::CONTENT_TYPE, content_type)], data).into_response()
}
