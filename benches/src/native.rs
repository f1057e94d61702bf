//! The native baselines, served from this process on a runtime of their own: the minimal
//! handler as a plain axum route, the scale scenario's body mirror, and the packets create/get
//! endpoints with axum + sqlx on the same SQLite settings the frame gives shards (WAL,
//! `synchronous=FULL`, 4 KiB pages, 8 connections, foreign keys, busy timeout 5 s) — or, for the
//! engines scenario, on PostgreSQL with each create's `packets.packet.created` published to
//! JetStream, as the frame does there.

use anyhow::{Context, Result};
use arkham_frame::runtime::limits::LimitsConfig;
use arkham_frame::services::database::{DatabaseConfig, connect_options};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A server running on its own Tokio runtime (two workers, like the frame's on this machine).
pub struct NativeServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    runtime: tokio::runtime::Runtime,
}

impl NativeServer {
    /// Serves the router `app` builds (inside the runtime) on a free loopback port.
    pub fn start(app: impl FnOnce() -> Result<Router> + Send + 'static) -> Result<Self> {
        Self::start_async(|| async move { app() })
    }

    /// Like [`NativeServer::start`], for a router that needs async set-up (opening databases,
    /// starting tasks) on the server's own runtime.
    pub fn start_async<F, Fut>(app: F) -> Result<Self>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Router>>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("building the native server's runtime")?;
        let addr: SocketAddr = runtime.block_on(async move {
            let router = app().await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            anyhow::Ok(addr)
        })?;
        Ok(Self {
            base: format!("http://{addr}"),
            runtime,
        })
    }

    /// Stops serving.
    pub fn stop(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// The minimal shard's handler as a plain axum route: 200 `ok` to anything.
pub fn minimal() -> Result<NativeServer> {
    NativeServer::start(|| Ok(minimal_router()))
}

/// The router of [`minimal`].
fn minimal_router() -> Router {
    Router::new().fallback(|| async { "ok" })
}

/// Serves [`minimal`]'s router on `127.0.0.1:port` on a runtime like [`NativeServer`]'s, until
/// the process is killed: the native row of the instruction counts, which run it under valgrind
/// in a process of its own (`arkham-bench --serve-native-minimal PORT`).
pub fn serve_minimal_on(port: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the native server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, minimal_router()).await?;
        anyhow::Ok(())
    })
}

/// The echo fixture's `POST /mirror` as a plain axum route: 200 with the request body. Bodies
/// up to the frame's default `max_request_bytes` are taken (axum's own default stops at 2 MiB).
pub fn mirror() -> Result<NativeServer> {
    let limit = LimitsConfig::default().max_request_bytes;
    NativeServer::start(move || {
        Ok(Router::new()
            .route("/mirror", post(|body: Bytes| async move { body }))
            .layer(DefaultBodyLimit::max(limit)))
    })
}

/// The packets table, as the packets shard creates it.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS arkham_packets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'draft',
    visibility TEXT NOT NULL DEFAULT 'private',
    created_by TEXT NOT NULL DEFAULT 'system',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    contents_count INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    checksum TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS idx_packets_status ON arkham_packets(status);
CREATE INDEX IF NOT EXISTS idx_packets_creator ON arkham_packets(created_by);";

/// Where the native packets server keeps its packets.
#[derive(Clone)]
enum Packets {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Where it sends `packets.packet.created`, as the frame does for every create.
#[derive(Clone)]
enum EventSink {
    /// One row appended to an event log in a second SQLite file (the frame's `frame.db`).
    Log(SqlitePool),
    /// Published to a JetStream stream, the PubAck awaited (the frame's `[events] backend =
    /// "nats"`).
    JetStream(Box<async_nats::jetstream::Context>),
}

/// The subject of the native JetStream publications, in the stream [`NATIVE_STREAM`].
const NATIVE_SUBJECT: &str = "native.packets.packet.created";

/// The native servers' JetStream stream (file storage, the server's defaults otherwise).
pub const NATIVE_STREAM: &str = "NATIVE_EVENTS";

/// Both stores of the native packets server.
#[derive(Clone)]
struct Db {
    packets: Packets,
    /// With `Some`, every create also records its event there.
    events: Option<EventSink>,
    /// Set once the packets table exists.
    schema: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

/// A pool with the settings the frame gives shard databases (its default `[database]`).
pub fn open_pool(path: &Path) -> SqlitePool {
    let config = DatabaseConfig::default();
    SqlitePoolOptions::new()
        .max_connections(config.max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(Duration::from_millis(config.statement_timeout_ms))
        .connect_lazy_with(connect_options(path, &config))
}

/// `POST /api/packets/` and `GET /api/packets/{id}` over a database file at `path`; with
/// `events`, each create also appends to an event log at that path.
pub fn packets(path: &Path, events: Option<&Path>) -> Result<NativeServer> {
    let path = path.to_path_buf();
    let events = events.map(Path::to_path_buf);
    NativeServer::start(move || {
        let db = Db {
            packets: Packets::Sqlite(open_pool(&path)),
            events: events.as_deref().map(open_pool).map(EventSink::Log),
            schema: Default::default(),
        };
        Ok(packets_router(db))
    })
}

/// The same endpoints on PostgreSQL at `postgres_url` (a pool sized like the frame's default
/// `[database]`), each create publishing its event to JetStream at `nats_url` with the PubAck
/// awaited before the answer.
pub fn packets_on_engines(postgres_url: &str, nats_url: &str) -> Result<NativeServer> {
    let config = DatabaseConfig::default();
    let options: sqlx::postgres::PgConnectOptions =
        postgres_url.parse().context("parsing the PostgreSQL URL")?;
    let nats_url = nats_url.to_string();
    NativeServer::start_async(move || async move {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_millis(config.statement_timeout_ms))
            .connect_lazy_with(options);
        let jetstream = native_stream(&nats_url).await?;
        Ok(packets_router(Db {
            packets: Packets::Postgres(pool),
            events: Some(EventSink::JetStream(Box::new(jetstream))),
            schema: Default::default(),
        }))
    })
}

/// A JetStream context on `url` with [`NATIVE_STREAM`] taking `native.>`.
pub async fn native_stream(url: &str) -> Result<async_nats::jetstream::Context> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let jetstream = async_nats::jetstream::new(client);
    jetstream
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: NATIVE_STREAM.into(),
            subjects: vec!["native.>".into()],
            ..Default::default()
        })
        .await
        .context("creating the native JetStream stream")?;
    Ok(jetstream)
}

/// Publishes `payload` on `subject` with `id` as `Nats-Msg-Id` (the frame dedups by event id
/// too) and waits for the stream's PubAck.
pub async fn publish_acked(
    jetstream: &async_nats::jetstream::Context,
    subject: &'static str,
    id: &str,
    payload: String,
) -> Result<()> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    jetstream
        .publish_with_headers(subject, headers, payload.into())
        .await?
        .await?;
    Ok(())
}

fn packets_router(db: Db) -> Router {
    Router::new()
        .route("/api/packets/", post(create))
        .route("/api/packets/{id}", get(read))
        .with_state(db)
}

async fn ensure_schema(packets: &Packets) -> Result<(), sqlx::Error> {
    match packets {
        Packets::Sqlite(pool) => sqlx::raw_sql(SCHEMA).execute(pool).await.map(|_| ()),
        // PostgreSQL's INTEGER has 4 bytes; SQLite's has 8, which the frame maps to int8.
        Packets::Postgres(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(SCHEMA.replace("INTEGER", "BIGINT")))
                .execute(pool)
                .await
                .map(|_| ())
        }
    }
}

/// The insert, bound alike on either pool.
macro_rules! insert_packet {
    ($sql:expr, $pool:expr, $id:expr, $name:expr, $now:expr) => {
        sqlx::query($sql)
            .bind($id)
            .bind($name)
            .bind("")
            .bind("draft")
            .bind("private")
            .bind("system")
            .bind($now)
            .bind($now)
            .bind(1i64)
            .bind(0i64)
            .bind(0i64)
            .bind(None::<String>)
            .bind("{}")
            .execute($pool)
            .await
            .map(|_| ())
    };
}

const INSERT: &str = "INSERT INTO arkham_packets (id, name, description, status, visibility, \
     created_by, created_at, updated_at, version, contents_count, size_bytes, checksum, metadata) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_PG: &str = "INSERT INTO arkham_packets (id, name, description, status, visibility, \
     created_by, created_at, updated_at, version, contents_count, size_bytes, checksum, metadata) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
const SELECT: &str = "SELECT id, name, description, status, visibility, created_by, created_at, \
     updated_at, version, contents_count, size_bytes, checksum, metadata FROM arkham_packets \
     WHERE id = ?";
const SELECT_PG: &str = "SELECT id, name, description, status, visibility, created_by, \
     created_at, updated_at, version, contents_count, size_bytes, checksum, metadata FROM \
     arkham_packets WHERE id = $1";

fn uuid_v4() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("@{secs}")
}

fn failure(e: impl std::fmt::Display) -> Response {
    // Shown once, so a broken baseline is not mistaken for a fast one.
    static SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SHOWN.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!("[bench] native packets server failed a request: {e}");
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"error": {"code": "internal", "message": e.to_string()}})),
    )
        .into_response()
}

async fn create(State(db): State<Db>, body: axum::body::Bytes) -> Response {
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "bad json").into_response();
    };
    let Some(name) = input.get("name").and_then(Value::as_str) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "name is required").into_response();
    };
    if let Err(e) = ensure_schema_once(&db).await {
        return failure(e);
    }
    let id = uuid_v4();
    let now = now_rfc3339();
    let inserted = match &db.packets {
        Packets::Sqlite(pool) => insert_packet!(INSERT, pool, &id, name, &now),
        Packets::Postgres(pool) => insert_packet!(INSERT_PG, pool, &id, name, &now),
    };
    if let Err(e) = inserted {
        return failure(e);
    }
    let payload = || json!({"id": id, "name": name, "created_by": "system"}).to_string();
    match &db.events {
        None => {}
        Some(EventSink::Log(events)) => {
            let appended = async {
                sqlx::raw_sql(EVENTS_SCHEMA).execute(events).await?;
                sqlx::query(
                    "INSERT INTO events (name, source, payload, published_at) VALUES (?, ?, ?, ?)",
                )
                .bind("packets.packet.created")
                .bind("packets")
                .bind(payload())
                .bind(0i64)
                .execute(events)
                .await
            }
            .await;
            if let Err(e) = appended {
                return failure(e);
            }
        }
        Some(EventSink::JetStream(jetstream)) => {
            if let Err(e) = publish_acked(jetstream, NATIVE_SUBJECT, &id, payload()).await {
                return failure(format!("{e:#}"));
            }
        }
    }
    let packet = json!({
        "id": id, "name": name, "description": "", "status": "draft", "visibility": "private",
        "created_by": "system", "created_at": now, "updated_at": now, "version": 1,
        "contents_count": 0, "size_bytes": 0, "checksum": null, "metadata": {}
    });
    (StatusCode::CREATED, axum::Json(packet)).into_response()
}

async fn read(State(db): State<Db>, UrlPath(id): UrlPath<String>) -> Response {
    if let Err(e) = ensure_schema_once(&db).await {
        return failure(e);
    }
    let row: Result<Option<PacketRow>, _> = match &db.packets {
        Packets::Sqlite(pool) => sqlx::query_as(SELECT).bind(&id).fetch_optional(pool).await,
        Packets::Postgres(pool) => {
            sqlx::query_as(SELECT_PG)
                .bind(&id)
                .fetch_optional(pool)
                .await
        }
    };
    match row {
        Ok(Some(p)) => {
            let metadata: Value = serde_json::from_str(&p.12).unwrap_or(Value::Null);
            axum::Json(json!({
                "id": p.0, "name": p.1, "description": p.2, "status": p.3, "visibility": p.4,
                "created_by": p.5, "created_at": p.6, "updated_at": p.7, "version": p.8,
                "contents_count": p.9, "size_bytes": p.10, "checksum": p.11, "metadata": metadata
            }))
            .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such packet").into_response(),
        Err(e) => failure(e),
    }
}

type PacketRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    String,
);

/// The frame's event log table, reduced to what an append writes.
const EVENTS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY \
     AUTOINCREMENT, name TEXT NOT NULL, source TEXT NOT NULL, payload BLOB NOT NULL, \
     published_at INTEGER NOT NULL)";

/// The schema is created by the first request, like the shard does (the shard then checks it
/// with one SELECT per request; here a flag per server is enough).
async fn ensure_schema_once(db: &Db) -> Result<(), sqlx::Error> {
    db.schema
        .get_or_try_init(|| ensure_schema(&db.packets))
        .await
        .map(|_| ())
}
