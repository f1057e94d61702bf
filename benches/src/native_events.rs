//! The native baseline of the events scenario: the frame's own [`EventLog`] and [`Dispatcher`]
//! (same code, same SQLite settings), fed by an axum route that publishes like the `publisher`
//! fixture and draining into native subscribers that record like the `subscriber` fixture, each
//! into a SQLite file with the settings the frame gives shard databases. What differs from the
//! frame is only the part a shard adds: a fresh Wasm instance per request and per delivery, and
//! the database calls crossing the sandbox.
//!
//! Routes mirror the fixtures' so the bench drives both alike: `POST /api/publisher/publish?n=K`,
//! `GET /api/{subscriber}/stats`, `GET /api/{subscriber}/latencies`,
//! `DELETE /api/{subscriber}/deliveries`, plus `GET /log/head` (the frame's is read from its
//! `frame.db`).

use crate::native::{NativeServer, open_pool};
use arkham_frame::services::events::{
    Dispatcher, EventLog, EventTarget, EventsConfig, Pending, StoredEvent,
};
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use sqlx::sqlite::SqlitePool;
use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Requests waiting for their append at once; past it, a request gets 503. It counts appends, not
/// instances, so it stays at the frame's old per-shard cap (1000): with the frame's default of
/// 100 the native pipeline would refuse the burst scenario's requests, which the frame admits.
const PENDING_APPENDS: usize = 1000;

/// The `subscriber` fixture's table and statement.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS deliveries (event_id INTEGER PRIMARY KEY, \
                      sent_us INTEGER NOT NULL, delivered_us INTEGER NOT NULL)";
const RECORD: &str = "INSERT INTO deliveries (event_id, sent_us, delivered_us) VALUES (?, ?, ?) \
                      ON CONFLICT (event_id) DO NOTHING";

/// Microseconds since the Unix epoch: `CLOCK_REALTIME`, the clock WASI's wall clock reads too.
pub fn now_unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

struct NativeSubscriber {
    name: String,
    db: SqlitePool,
}

impl EventTarget for NativeSubscriber {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, event_name: &str) -> bool {
        event_name.starts_with("publisher.")
    }

    fn deliver(
        &self,
        event: StoredEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let delivered_us = now_unix_micros();
            let sent_us = serde_json::from_str::<Value>(&event.payload)
                .ok()
                .and_then(|payload| payload.get("sent_us")?.as_i64());
            // Acknowledged like the fixture does: a retry would stall every later event.
            let Some(sent_us) = sent_us else {
                return Ok(());
            };
            sqlx::query(RECORD)
                .bind(event.id as i64)
                .bind(sent_us)
                .bind(delivered_us)
                .execute(&self.db)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

#[derive(Clone)]
struct Pipeline {
    log: EventLog,
    /// Kept here so the delivery tasks live as long as the server.
    _dispatcher: Arc<Dispatcher>,
    subscribers: Arc<HashMap<String, SqlitePool>>,
    pending: Arc<Semaphore>,
}

/// Starts the pipeline with `subscribers` subscribers (`subscriber0`, ...), its files in `dir`.
pub fn start(dir: &Path, subscribers: usize) -> anyhow::Result<NativeServer> {
    let dir = dir.to_path_buf();
    std::fs::create_dir_all(&dir)?;
    NativeServer::start_async(move || async move {
        let log = EventLog::open(&dir.join("frame.db")).await?;
        let dispatcher = Arc::new(Dispatcher::new(
            log.clone(),
            Arc::new(EventsConfig::default()),
        ));
        let mut pools = HashMap::new();
        for i in 0..subscribers {
            let name = format!("subscriber{i}");
            let db = open_pool(&dir.join(format!("{name}.db")));
            sqlx::query(SCHEMA).execute(&db).await?;
            dispatcher
                .start(Arc::new(NativeSubscriber {
                    name: name.clone(),
                    db: db.clone(),
                }))
                .await;
            pools.insert(name, db);
        }
        let pipeline = Pipeline {
            log,
            _dispatcher: dispatcher,
            subscribers: Arc::new(pools),
            pending: Arc::new(Semaphore::new(PENDING_APPENDS)),
        };
        Ok(Router::new()
            .route("/api/publisher/publish", post(publish))
            .route("/api/{subscriber}/stats", get(stats))
            .route("/api/{subscriber}/latencies", get(latencies))
            .route("/api/{subscriber}/deliveries", delete(forget))
            .route("/log/head", get(head))
            .with_state(pipeline))
    })
}

#[derive(serde::Deserialize)]
struct PublishQuery {
    n: Option<u32>,
}

async fn publish(State(p): State<Pipeline>, Query(query): Query<PublishQuery>) -> Response {
    let count = query.n.unwrap_or(1);
    if count > 100 {
        return (StatusCode::BAD_REQUEST, "n must be 0 to 100").into_response();
    }
    let events: Vec<Pending> = (0..count)
        .map(|seq| Pending {
            hops: 0,
            name: "publisher.tick.sent".into(),
            payload: format!("{{\"sent_us\":{},\"seq\":{seq}}}", now_unix_micros()),
        })
        .collect();
    // The frame's order: the response goes out, then the append runs, holding a slot until it
    // is done.
    let Ok(permit) = p.pending.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    };
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = p.log.append("publisher", &events).await {
            eprintln!("[bench] native event log append failed: {e}");
        }
    });
    axum::Json(json!({ "published": count })).into_response()
}

fn no_such_subscriber() -> Response {
    (StatusCode::NOT_FOUND, "no such subscriber").into_response()
}

fn internal(e: sqlx::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

async fn stats(State(p): State<Pipeline>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(db) = p.subscribers.get(&name) else {
        return no_such_subscriber();
    };
    let row: Result<(i64, i64, i64), _> = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(MIN(sent_us), 0), COALESCE(MAX(delivered_us), 0) FROM deliveries",
    )
    .fetch_one(db)
    .await;
    match row {
        Ok((count, first, last)) => axum::Json(json!({
            "count": count, "first_sent_us": first, "last_delivered_us": last
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn latencies(State(p): State<Pipeline>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(db) = p.subscribers.get(&name) else {
        return no_such_subscriber();
    };
    let rows: Result<Vec<i64>, _> =
        sqlx::query_scalar("SELECT delivered_us - sent_us FROM deliveries ORDER BY event_id")
            .fetch_all(db)
            .await;
    match rows {
        Ok(rows) => axum::Json(json!({ "latencies_us": rows })).into_response(),
        Err(e) => internal(e),
    }
}

async fn forget(State(p): State<Pipeline>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(db) = p.subscribers.get(&name) else {
        return no_such_subscriber();
    };
    match sqlx::query("DELETE FROM deliveries").execute(db).await {
        Ok(done) => axum::Json(json!({ "deleted": done.rows_affected() })).into_response(),
        Err(e) => internal(e),
    }
}

async fn head(State(p): State<Pipeline>) -> Response {
    axum::Json(json!({ "head": p.log.head() })).into_response()
}
