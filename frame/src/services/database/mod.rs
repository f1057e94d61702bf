//! `arkham:shard/database`: SQL on each shard's own database.
//!
//! [`DatabaseService`] owns one connection pool per shard (opened when the shard is loaded) on
//! the engine its config names: SQLite files (`backend = "embedded"`, the default) or
//! PostgreSQL (`backend = "postgres"`, one role and schema per shard). [`ShardDatabase`] is the
//! seam between them; [`DatabaseCtx`] is a store's handle on its shard's database. The `Host`
//! traits are implemented on [`DatabaseView`], a borrow of the context and the store's resource
//! table.

mod authorizer;
mod backend;
mod limits;
mod pg_cluster;
mod pg_sql;
mod pg_values;
mod postgres;
mod sqlite;

use crate::bindings::database::{self, Error, Rows, Value};
use crate::metrics::ShardMetrics;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasData, Resource, ResourceTable};

pub use backend::ShardDatabase;
pub use postgres::PgDatabase;
pub use sqlite::{SqliteDatabase, connect_options};

/// Which engine holds the shards' databases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseBackend {
    /// One SQLite file per shard under the data dir.
    #[default]
    Embedded,
    /// One role and schema per shard on the PostgreSQL database at `url`.
    Postgres,
}

/// The `[database]` section of the frame config.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// The engine: `"embedded"` (SQLite files, the default) or `"postgres"`.
    pub backend: DatabaseBackend,
    /// With `backend = "postgres"`: `postgres://user:password@host:port/database`, the frame's
    /// own connection. Its role needs CREATEROLE and must own the database (no superuser:
    /// with one, the large-object functions are also revoked from PUBLIC). Shown (the admin
    /// API's config, logs) without its user and password.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: Option<String>,
    /// Longest a single statement (or transaction start) may take, in milliseconds.
    pub statement_timeout_ms: u64,
    /// Largest a shard's database file may grow, in bytes.
    pub max_size_bytes: u64,
    /// Connections per shard database.
    pub max_connections: u32,
    /// How many frames open each shard's database at once: 1, or in a deployment of several
    /// frames `[cluster] members`. A shard's PostgreSQL role may hold `max_connections` per
    /// frame (its `CONNECTION LIMIT`); set from the cluster's config, not here.
    #[serde(skip)]
    pub frames: u32,
    /// Most rows one `query` may return.
    pub max_rows: usize,
    /// Largest single value (TEXT or BLOB) or stored row, in bytes: SQLite's `LENGTH` limit.
    /// A statement returning `n` columns may build values of at most `max_result_bytes / n`.
    pub max_value_bytes: u64,
    /// Largest result of one `query`, in bytes of decoded values (each value also counts its
    /// fixed size), checked while rows are read, before the host holds more.
    pub max_result_bytes: u64,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: the URL shows as its host and database only.
        let url = self.url.as_deref().map(redacted);
        f.debug_struct("DatabaseConfig")
            .field("backend", &self.backend)
            .field("url", &url)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("max_size_bytes", &self.max_size_bytes)
            .field("max_connections", &self.max_connections)
            .field("frames", &self.frames)
            .field("max_rows", &self.max_rows)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_result_bytes", &self.max_result_bytes)
            .finish()
    }
}

fn serialize_redacted<S: serde::Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    url.as_deref().map(redacted).serialize(serializer)
}

/// `url` without its user info, for messages.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            // The query may carry `password=` too: drop it with the user info.
            let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => "(not a URL)".to_string(),
    }
}

impl DatabaseConfig {
    /// Checks the settings that depend on each other, for the config loader.
    pub fn validate(&self) -> Result<(), DatabaseServiceError> {
        match (self.backend, &self.url) {
            (DatabaseBackend::Postgres, None) => Err(DatabaseServiceError::MissingUrl),
            (DatabaseBackend::Embedded, Some(_)) => Err(DatabaseServiceError::UnusedUrl),
            _ => Ok(()),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            backend: DatabaseBackend::Embedded,
            url: None,
            statement_timeout_ms: 5_000,
            max_size_bytes: 1 << 30,
            max_connections: 8,
            frames: 1,
            max_rows: 100_000,
            max_value_bytes: 8 << 20,
            max_result_bytes: 32 << 20,
        }
    }
}

/// Errors opening a shard's database; what a shard sees is [`database::Error`].
#[derive(Debug, thiserror::Error)]
pub enum DatabaseServiceError {
    /// The database file or its folder could not be created or opened.
    #[error("cannot open the database of shard `{shard}` at {path}: {source}")]
    Open {
        /// The shard.
        shard: String,
        /// The database file.
        path: String,
        /// What went wrong.
        source: sqlx::Error,
    },
    /// `backend = "postgres"` without a `url`.
    #[error(
        "`[database] backend = \"postgres\"` needs `url = \"postgres://user:password@host:port/database\"` \
         in the same section"
    )]
    MissingUrl,
    /// A `url` with the embedded backend, which would silently be ignored.
    #[error(
        "`[database] url` is set but `backend` is \"embedded\": add `backend = \"postgres\"` to use it, \
         or remove `url`"
    )]
    UnusedUrl,
    /// `[database] url` is not a PostgreSQL URL.
    #[error("`[database] url` is not a valid PostgreSQL URL: {reason}")]
    Url {
        /// Why (never the URL itself: it holds the password).
        reason: String,
    },
    /// The frame could not connect to PostgreSQL.
    #[error("cannot connect to PostgreSQL at {target} (`[database] url`): {source}")]
    Connect {
        /// `host:port/database`.
        target: String,
        /// What went wrong.
        source: sqlx::Error,
    },
    /// The frame schema could not be set up (the frame's role lacks rights?).
    #[error(
        "cannot set up the frame schema `arkham_frame` on {target}: {source} (the frame's role \
         needs CREATEROLE and must own the database)"
    )]
    Bootstrap {
        /// `host:port/database`.
        target: String,
        /// What went wrong.
        source: sqlx::Error,
    },
    /// The role or schema of a shard could not be created.
    #[error("cannot prepare the role and schema of shard `{shard}` on {target}: {source}")]
    Prepare {
        /// The shard.
        shard: String,
        /// `host:port/database`.
        target: String,
        /// What went wrong.
        source: sqlx::Error,
    },
    /// The folder for the database could not be created.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The folder.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Process-wide database service: one pool per shard, opened on first use.
#[derive(Clone)]
pub struct DatabaseService {
    root: PathBuf,
    config: Arc<DatabaseConfig>,
    engine: Engine,
    pools: Arc<Mutex<HashMap<String, ShardDatabase>>>,
}

/// Where the shards' databases live.
#[derive(Clone)]
enum Engine {
    Embedded,
    Postgres(Arc<pg_cluster::PgCluster>),
}

impl DatabaseService {
    /// An embedded service keeping shard databases under `root/{shard}/database.sqlite`,
    /// whatever `config.backend` says (benches and tests; the frame uses [`Self::connect`]).
    pub fn new(root: PathBuf, config: DatabaseConfig) -> Self {
        Self {
            root,
            config: Arc::new(config),
            engine: Engine::Embedded,
            pools: Arc::default(),
        }
    }

    /// The service `config` describes: embedded under `root`, or connected to PostgreSQL (with
    /// the frame schema bootstrapped).
    pub async fn connect(
        root: PathBuf,
        config: DatabaseConfig,
    ) -> Result<Self, DatabaseServiceError> {
        config.validate()?;
        let engine = match (&config.backend, &config.url) {
            (DatabaseBackend::Postgres, Some(url)) => {
                Engine::Postgres(Arc::new(pg_cluster::PgCluster::connect(url).await?))
            }
            _ => Engine::Embedded,
        };
        Ok(Self {
            root,
            config: Arc::new(config),
            engine,
            pools: Arc::default(),
        })
    }

    /// The database of `shard`, opened (and created) if needed.
    pub async fn open(&self, shard: &str) -> Result<ShardDatabase, DatabaseServiceError> {
        self.open_with(shard, &self.config).await
    }

    /// The database of `shard` with its own settings (per-shard limit overrides), opened if
    /// needed; a pool already open keeps the settings it was opened with.
    pub async fn open_with(
        &self,
        shard: &str,
        config: &DatabaseConfig,
    ) -> Result<ShardDatabase, DatabaseServiceError> {
        if let Some(db) = self.lock().get(shard) {
            return Ok(db.clone());
        }
        let db: ShardDatabase = match &self.engine {
            Engine::Embedded => {
                let dir = self.root.join(shard);
                std::fs::create_dir_all(&dir).map_err(|source| {
                    DatabaseServiceError::CreateDir {
                        path: dir.display().to_string(),
                        source,
                    }
                })?;
                SqliteDatabase::open(shard, &dir.join("database.sqlite"), config)
                    .await?
                    .into()
            }
            Engine::Postgres(cluster) => cluster.open(shard, config).await?.into(),
        };
        // Another task may have opened it meanwhile; keep the first so all share one pool.
        Ok(self.lock().entry(shard.to_string()).or_insert(db).clone())
    }

    /// Deletes what the engine keeps for `shard` (`arkham shard remove --purge`): on
    /// PostgreSQL its schema with everything in it, its role and the frame's record of them.
    /// The embedded database is a file in the shard's folder, which the purge removes.
    pub async fn purge(&self, shard: &str) -> Result<(), DatabaseServiceError> {
        self.close(shard).await;
        match &self.engine {
            Engine::Embedded => Ok(()),
            Engine::Postgres(cluster) => cluster.purge(shard).await,
        }
    }

    /// Closes the pool of `shard`, e.g. before its data is purged.
    pub async fn close(&self, shard: &str) {
        let db = self.lock().remove(shard);
        if let Some(db) = db {
            db.close().await;
        }
    }

    /// Closes every pool (checkpointing the WAL files) and the frame's own connections.
    pub async fn close_all(&self) {
        let all: Vec<_> = self.lock().drain().map(|(_, db)| db).collect();
        for db in all {
            db.close().await;
        }
        if let Engine::Postgres(cluster) = &self.engine {
            cluster.close().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ShardDatabase>> {
        // A panic while holding this lock cannot leave the map inconsistent: recover it.
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A store's database handle: its shard's database, or none when the service is not granted.
#[derive(Clone, Default)]
pub struct DatabaseCtx {
    db: Option<ShardDatabase>,
    /// Where its statements are counted, if anywhere.
    metrics: Option<ShardMetrics>,
}

impl DatabaseCtx {
    /// A context for a shard granted `db`.
    pub fn granted(db: impl Into<ShardDatabase>) -> Self {
        Self {
            db: Some(db.into()),
            metrics: None,
        }
    }

    /// A context for a shard without the database service: every call answers `denied`.
    pub fn denied() -> Self {
        Self {
            db: None,
            metrics: None,
        }
    }

    /// The same context, counting its statements (and their errors) in `metrics`.
    pub fn counted(mut self, metrics: ShardMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts one statement that answered `result`; passes the result on.
    fn count<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Some(metrics) = &self.metrics {
            metrics.statement(result.is_ok());
        }
        result
    }
}

/// A transaction resource held in a store's table.
pub struct Transaction {
    tx: Option<backend::Tx>,
    db: ShardDatabase,
}

/// The view the `Host` traits are implemented on.
pub struct DatabaseView<'a> {
    /// The store's database context.
    pub ctx: &'a DatabaseCtx,
    /// The store's resource table.
    pub table: &'a mut ResourceTable,
}

/// [`HasData`] marker for adding the interface to a linker.
pub struct Database;

impl HasData for Database {
    type Data<'a> = DatabaseView<'a>;
}

/// Adds `arkham:shard/database` to `linker`, with `view` projecting the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> DatabaseView<'_>,
) -> wasmtime::Result<()> {
    database::add_to_linker::<T, Database>(linker, view)
}

fn not_granted() -> Error {
    Error::Denied(
        "the database service is not granted to this shard; declare `database` in its manifest's services"
            .to_string(),
    )
}

impl DatabaseView<'_> {
    fn db(&self) -> Result<&ShardDatabase, Error> {
        self.ctx.db.as_ref().ok_or_else(not_granted)
    }

    fn tx(&mut self, tx: &Resource<Transaction>) -> wasmtime::Result<&mut Transaction> {
        Ok(self.table.get_mut(tx)?)
    }
}

impl database::Host for DatabaseView<'_> {
    async fn execute(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let result = match self.db() {
            Ok(db) => db.execute(sql, params).await,
            Err(e) => Err(e),
        };
        Ok(self.ctx.count(result))
    }

    async fn query(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Error>> {
        let result = match self.db() {
            Ok(db) => db.query(sql, params).await,
            Err(e) => Err(e),
        };
        Ok(self.ctx.count(result))
    }

    async fn execute_batch(&mut self, sql: String) -> wasmtime::Result<Result<(), Error>> {
        let result = match self.db() {
            Ok(db) => db.execute_batch(sql).await,
            Err(e) => Err(e),
        };
        Ok(self.ctx.count(result))
    }

    async fn ensure_schema(
        &mut self,
        version: i64,
        script: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(match self.db() {
            Ok(db) => db.ensure_schema(version, script).await,
            Err(e) => Err(e),
        })
    }

    async fn begin(&mut self) -> wasmtime::Result<Result<Resource<Transaction>, Error>> {
        let db = match self.db() {
            Ok(db) => db.clone(),
            Err(e) => return Ok(Err(e)),
        };
        match db.begin().await {
            Ok(tx) => Ok(Ok(self.table.push(Transaction { tx: Some(tx), db })?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl database::HostTransaction for DatabaseView<'_> {
    async fn execute(
        &mut self,
        tx: Resource<Transaction>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let t = self.tx(&tx)?;
        let result = match t.tx.as_mut() {
            Some(inner) => t.db.execute_in(inner, sql, params).await,
            None => Err(Error::TransactionClosed),
        };
        Ok(self.ctx.count(result))
    }

    async fn query(
        &mut self,
        tx: Resource<Transaction>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Error>> {
        let t = self.tx(&tx)?;
        let result = match t.tx.as_mut() {
            Some(inner) => t.db.query_in(inner, sql, params).await,
            None => Err(Error::TransactionClosed),
        };
        Ok(self.ctx.count(result))
    }

    async fn commit(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<Result<(), Error>> {
        let t = self.table.delete(tx)?;
        Ok(match t.tx {
            Some(inner) => t.db.commit(inner).await,
            None => Err(Error::TransactionClosed),
        })
    }

    async fn rollback(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<Result<(), Error>> {
        let t = self.table.delete(tx)?;
        Ok(match t.tx {
            Some(inner) => t.db.rollback(inner).await,
            None => Err(Error::TransactionClosed),
        })
    }

    async fn drop(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<()> {
        // Dropping an open sqlx transaction queues its rollback on the connection, which runs
        // before the connection's next use.
        self.table.delete(tx)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
