//! `arkham:shard/database`: SQL on each shard's own database.
//!
//! [`DatabaseService`] owns one connection pool per shard (opened when the shard is loaded);
//! [`DatabaseCtx`] is a store's handle on its shard's pool. The `Host` traits are implemented on
//! [`DatabaseView`], a borrow of the context and the store's resource table.

mod authorizer;
mod limits;
mod sqlite;

use crate::bindings::database::{self, Error, Rows, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasData, Resource, ResourceTable};

pub use sqlite::{SqliteDatabase, connect_options};

/// The `[database]` section of the frame config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Longest a single statement (or transaction start) may take, in milliseconds.
    pub statement_timeout_ms: u64,
    /// Largest a shard's database file may grow, in bytes.
    pub max_size_bytes: u64,
    /// Connections per shard database.
    pub max_connections: u32,
    /// Most rows one `query` may return.
    pub max_rows: usize,
    /// Largest single value (TEXT or BLOB) or stored row, in bytes: SQLite's `LENGTH` limit.
    /// A statement returning `n` columns may build values of at most `max_result_bytes / n`.
    pub max_value_bytes: u64,
    /// Largest result of one `query`, in bytes of decoded values (each value also counts its
    /// fixed size), checked while rows are read, before the host holds more.
    pub max_result_bytes: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            statement_timeout_ms: 5_000,
            max_size_bytes: 1 << 30,
            max_connections: 8,
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
    pools: Arc<Mutex<HashMap<String, SqliteDatabase>>>,
}

impl DatabaseService {
    /// A service keeping shard databases under `root/{shard}/database.sqlite`.
    pub fn new(root: PathBuf, config: DatabaseConfig) -> Self {
        Self {
            root,
            config: Arc::new(config),
            pools: Arc::default(),
        }
    }

    /// The database of `shard`, opened (and created) if needed.
    pub async fn open(&self, shard: &str) -> Result<SqliteDatabase, DatabaseServiceError> {
        self.open_with(shard, &self.config).await
    }

    /// The database of `shard` with its own settings (per-shard limit overrides), opened if
    /// needed; a pool already open keeps the settings it was opened with.
    pub async fn open_with(
        &self,
        shard: &str,
        config: &DatabaseConfig,
    ) -> Result<SqliteDatabase, DatabaseServiceError> {
        if let Some(db) = self.lock().get(shard) {
            return Ok(db.clone());
        }
        let dir = self.root.join(shard);
        std::fs::create_dir_all(&dir).map_err(|source| DatabaseServiceError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let db = SqliteDatabase::open(shard, &dir.join("database.sqlite"), config).await?;
        // Another task may have opened it meanwhile; keep the first so all share one pool.
        Ok(self.lock().entry(shard.to_string()).or_insert(db).clone())
    }

    /// Closes the pool of `shard`, e.g. before its data is purged.
    pub async fn close(&self, shard: &str) {
        let db = self.lock().remove(shard);
        if let Some(db) = db {
            db.close().await;
        }
    }

    /// Closes every pool, checkpointing the WAL files.
    pub async fn close_all(&self) {
        let all: Vec<_> = self.lock().drain().map(|(_, db)| db).collect();
        for db in all {
            db.close().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SqliteDatabase>> {
        // A panic while holding this lock cannot leave the map inconsistent: recover it.
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A store's database handle: its shard's database, or none when the service is not granted.
#[derive(Clone, Default)]
pub struct DatabaseCtx {
    db: Option<SqliteDatabase>,
}

impl DatabaseCtx {
    /// A context for a shard granted `db`.
    pub fn granted(db: SqliteDatabase) -> Self {
        Self { db: Some(db) }
    }

    /// A context for a shard without the database service: every call answers `denied`.
    pub fn denied() -> Self {
        Self { db: None }
    }
}

/// A transaction resource held in a store's table.
pub struct Transaction {
    tx: Option<sqlite::Tx>,
    db: SqliteDatabase,
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
    fn db(&self) -> Result<&SqliteDatabase, Error> {
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
        Ok(match self.db() {
            Ok(db) => db.execute(sql, params).await,
            Err(e) => Err(e),
        })
    }

    async fn query(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Error>> {
        Ok(match self.db() {
            Ok(db) => db.query(sql, params).await,
            Err(e) => Err(e),
        })
    }

    async fn execute_batch(&mut self, sql: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(match self.db() {
            Ok(db) => db.execute_batch(sql).await,
            Err(e) => Err(e),
        })
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
        Ok(match t.tx.as_mut() {
            Some(inner) => t.db.execute_in(inner, sql, params).await,
            None => Err(Error::TransactionClosed),
        })
    }

    async fn query(
        &mut self,
        tx: Resource<Transaction>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Error>> {
        let t = self.tx(&tx)?;
        Ok(match t.tx.as_mut() {
            Some(inner) => t.db.query_in(inner, sql, params).await,
            None => Err(Error::TransactionClosed),
        })
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
