//! The seam between the `database` interface and its engines: an enum rather than a `dyn`
//! trait, so a call is a match, not a boxed future.

use super::postgres::{self, PgDatabase};
use super::sqlite::{self, SqliteDatabase};
use crate::bindings::database::{Error, Rows, Value};

/// A shard's database on one of the engines.
#[derive(Clone)]
pub enum ShardDatabase {
    /// A SQLite file of its own (the embedded default).
    Sqlite(SqliteDatabase),
    /// A role and schema of its own on PostgreSQL.
    Postgres(PgDatabase),
}

/// An open transaction, on the engine of the database that began it.
pub(super) enum Tx {
    Sqlite(sqlite::Tx),
    Postgres(postgres::Tx),
}

/// A transaction handed to the other engine's database: a host bug, never a shard's doing.
fn mismatch() -> Error {
    Error::Other("internal error: a transaction of another database engine".to_string())
}

impl From<SqliteDatabase> for ShardDatabase {
    fn from(db: SqliteDatabase) -> Self {
        Self::Sqlite(db)
    }
}

impl From<PgDatabase> for ShardDatabase {
    fn from(db: PgDatabase) -> Self {
        Self::Postgres(db)
    }
}

impl ShardDatabase {
    /// The shard this database belongs to.
    pub fn shard(&self) -> &str {
        match self {
            Self::Sqlite(db) => db.shard(),
            Self::Postgres(db) => db.shard(),
        }
    }

    /// Closes the database's connections.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(db) => db.close().await,
            Self::Postgres(db) => db.close().await,
        }
    }

    pub(super) async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        match self {
            Self::Sqlite(db) => db.execute(sql, params).await,
            Self::Postgres(db) => db.execute(sql, params).await,
        }
    }

    pub(super) async fn query(&self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        match self {
            Self::Sqlite(db) => db.query(sql, params).await,
            Self::Postgres(db) => db.query(sql, params).await,
        }
    }

    pub(super) async fn execute_batch(&self, sql: String) -> Result<(), Error> {
        match self {
            Self::Sqlite(db) => db.execute_batch(sql).await,
            Self::Postgres(db) => db.execute_batch(sql).await,
        }
    }

    pub(super) async fn ensure_schema(&self, version: i64, script: String) -> Result<(), Error> {
        match self {
            Self::Sqlite(db) => db.ensure_schema(version, script).await,
            Self::Postgres(db) => db.ensure_schema(version, script).await,
        }
    }

    pub(super) async fn begin(&self) -> Result<Tx, Error> {
        match self {
            Self::Sqlite(db) => db.begin().await.map(Tx::Sqlite),
            Self::Postgres(db) => db.begin().await.map(Tx::Postgres),
        }
    }

    pub(super) async fn execute_in(
        &self,
        tx: &mut Tx,
        sql: String,
        params: Vec<Value>,
    ) -> Result<u64, Error> {
        match (self, tx) {
            (Self::Sqlite(db), Tx::Sqlite(tx)) => db.execute_in(tx, sql, params).await,
            (Self::Postgres(db), Tx::Postgres(tx)) => db.execute_in(tx, sql, params).await,
            _ => Err(mismatch()),
        }
    }

    pub(super) async fn query_in(
        &self,
        tx: &mut Tx,
        sql: String,
        params: Vec<Value>,
    ) -> Result<Rows, Error> {
        match (self, tx) {
            (Self::Sqlite(db), Tx::Sqlite(tx)) => db.query_in(tx, sql, params).await,
            (Self::Postgres(db), Tx::Postgres(tx)) => db.query_in(tx, sql, params).await,
            _ => Err(mismatch()),
        }
    }

    pub(super) async fn commit(&self, tx: Tx) -> Result<(), Error> {
        match (self, tx) {
            (Self::Sqlite(db), Tx::Sqlite(tx)) => db.commit(tx).await,
            (Self::Postgres(db), Tx::Postgres(tx)) => db.commit(tx).await,
            _ => Err(mismatch()),
        }
    }

    pub(super) async fn rollback(&self, tx: Tx) -> Result<(), Error> {
        match (self, tx) {
            (Self::Sqlite(db), Tx::Sqlite(tx)) => db.rollback(tx).await,
            (Self::Postgres(db), Tx::Postgres(tx)) => db.rollback(tx).await,
            _ => Err(mismatch()),
        }
    }
}
