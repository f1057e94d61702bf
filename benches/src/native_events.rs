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
use axum::extract::{FromRef, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use sqlx::sqlite::SqlitePool;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Requests waiting for their append at once; past it, a request gets 503. It counts appends, not
/// instances, so it stays at the frame's old per-shard cap (1000): with the frame's default of
/// 100 the native pipeline would refuse the burst scenario's requests, which the frame admits.
const PENDING_APPENDS: usize = 1000;

/// The `subscriber` fixture's table and statement, for the native subscribers of every backend.
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
            record(&self.db, event.id, event.payload.as_bytes(), delivered_us)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// What the `subscriber` fixture does with a delivery: one INSERT of the event's id, the
/// payload's `sent_us` and `delivered_us`. A payload without `sent_us` is skipped (and then
/// acknowledged, like the fixture does: a retry would stall every later event).
pub async fn record(
    db: &SqlitePool,
    event_id: u64,
    payload: &[u8],
    delivered_us: i64,
) -> Result<(), sqlx::Error> {
    let sent_us = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|payload| payload.get("sent_us")?.as_i64());
    let Some(sent_us) = sent_us else {
        return Ok(());
    };
    sqlx::query(RECORD)
        .bind(event_id as i64)
        .bind(sent_us)
        .bind(delivered_us)
        .execute(db)
        .await
        .map(|_| ())
}

/// The native subscribers' databases, by name (`subscriber0`, ...), each a SQLite file with the
/// settings the frame gives shard databases.
#[derive(Clone)]
pub struct Recorders(Arc<Vec<(String, SqlitePool)>>);

impl Recorders {
    /// Opens (and creates the table of) `subscribers` databases in `dir`.
    pub async fn open(dir: &Path, subscribers: usize) -> anyhow::Result<Self> {
        let mut pools = Vec::new();
        for i in 0..subscribers {
            let name = format!("subscriber{i}");
            let db = open_pool(&dir.join(format!("{name}.db")));
            sqlx::query(SCHEMA).execute(&db).await?;
            pools.push((name, db));
        }
        Ok(Self(Arc::new(pools)))
    }

    /// Every subscriber's name and database.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &SqlitePool)> {
        self.0.iter().map(|(name, db)| (name, db))
    }

    fn get(&self, name: &str) -> Option<&SqlitePool> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, db)| db)
    }

    /// The routes of the `subscriber` fixture that read and reset what was recorded:
    /// `GET /api/{subscriber}/stats`, `GET /api/{subscriber}/latencies`,
    /// `DELETE /api/{subscriber}/deliveries`.
    pub fn routes<S>() -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
        Recorders: FromRef<S>,
    {
        Router::new()
            .route("/api/{subscriber}/stats", get(stats))
            .route("/api/{subscriber}/latencies", get(latencies))
            .route("/api/{subscriber}/deliveries", delete(forget))
    }
}

impl FromRef<Pipeline> for Recorders {
    fn from_ref(pipeline: &Pipeline) -> Self {
        pipeline.subscribers.clone()
    }
}

#[derive(Clone)]
struct Pipeline {
    log: EventLog,
    /// Kept here so the delivery tasks live as long as the server.
    _dispatcher: Arc<Dispatcher>,
    subscribers: Recorders,
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
        let recorders = Recorders::open(&dir, subscribers).await?;
        for (name, db) in recorders.iter() {
            dispatcher
                .start(Arc::new(NativeSubscriber {
                    name: name.clone(),
                    db: db.clone(),
                }))
                .await;
        }
        let pipeline = Pipeline {
            log,
            _dispatcher: dispatcher,
            subscribers: recorders,
            pending: Arc::new(Semaphore::new(PENDING_APPENDS)),
        };
        Ok(Recorders::routes()
            .route("/api/publisher/publish", post(publish))
            .route("/log/head", get(head))
            .with_state(pipeline))
    })
}

/// `?n=K` of `POST /api/publisher/publish`, as the `publisher` fixture takes it.
#[derive(serde::Deserialize)]
pub struct PublishQuery {
    n: Option<u32>,
}

impl PublishQuery {
    /// K (default 1), or `None` when it is past 100 (see [`too_many`]).
    pub fn count(&self) -> Option<u32> {
        Some(self.n.unwrap_or(1)).filter(|&count| count <= 100)
    }
}

/// The fixture's answer to K past 100.
pub fn too_many() -> Response {
    (StatusCode::BAD_REQUEST, "n must be 0 to 100").into_response()
}

/// The `publisher` fixture's payload for the `seq`-th event of a request, stamped now.
pub fn tick_payload(seq: u32) -> String {
    format!("{{\"sent_us\":{},\"seq\":{seq}}}", now_unix_micros())
}

async fn publish(State(p): State<Pipeline>, Query(query): Query<PublishQuery>) -> Response {
    let Some(count) = query.count() else {
        return too_many();
    };
    let events: Vec<Pending> = (0..count)
        .map(|seq| Pending {
            hops: 0,
            name: "publisher.tick.sent".into(),
            payload: tick_payload(seq),
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

async fn stats(State(recorders): State<Recorders>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(db) = recorders.get(&name) else {
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

async fn latencies(State(recorders): State<Recorders>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(db) = recorders.get(&name) else {
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

async fn forget(State(recorders): State<Recorders>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(db) = recorders.get(&name) else {
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
