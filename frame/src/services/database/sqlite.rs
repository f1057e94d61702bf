//! The SQLite backend: one WAL-mode database file per shard with durable commits.

use super::{DatabaseConfig, DatabaseServiceError};
use crate::bindings::database::{Error, Rows, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{
    AssertSqlSafe, Column, Executor, Row, SqlSafeStr, Sqlite, Statement, TypeInfo, ValueRef,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// An open transaction on a shard database.
pub(super) type Tx = sqlx::Transaction<'static, Sqlite>;

/// SQLite's page size for new databases; `max_page_count` is derived from it.
const PAGE_SIZE: u64 = 4096;

/// Where `ensure-schema` records the schema version; the guest SDK used the same table before
/// the host took the check over, so existing databases keep their version.
const SCHEMA_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS arkham_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)";

/// A shard's database: a pool of connections to its file.
#[derive(Clone)]
pub struct SqliteDatabase {
    pool: SqlitePool,
    timeout: Duration,
    max_rows: usize,
    shard: Arc<str>,
    /// The highest schema version known to be in place (`i64::MIN` until one is seen). Versions
    /// only go up, so a request asking for this one or a lower one needs no SQL.
    schema: Arc<AtomicI64>,
}

impl SqliteDatabase {
    /// Opens (creating if missing) the database file at `path` for `shard`.
    pub async fn open(
        shard: &str,
        path: &Path,
        config: &DatabaseConfig,
    ) -> Result<Self, DatabaseServiceError> {
        let max_pages = (config.max_size_bytes / PAGE_SIZE).max(16);
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL on every commit: a commit the shard saw survives power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(config.statement_timeout_ms))
            .pragma("page_size", PAGE_SIZE.to_string())
            .pragma("max_page_count", max_pages.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(0)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    super::authorizer::install(handle.as_raw_handle());
                    Ok(())
                })
            })
            .acquire_timeout(Duration::from_millis(config.statement_timeout_ms))
            .connect_with(options)
            .await
            .map_err(|source| DatabaseServiceError::Open {
                shard: shard.to_string(),
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            pool,
            timeout: Duration::from_millis(config.statement_timeout_ms),
            max_rows: config.max_rows,
            shard: shard.into(),
            schema: Arc::new(AtomicI64::new(i64::MIN)),
        })
    }

    /// Closes the pool; open connections finish their work first.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The underlying pool, for host-side use (tests, admin).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(Error::LimitExceeded(format!(
                "{what} took longer than the statement time limit of {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    pub(super) async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        self.timed("the statement", async {
            let mut conn = self.pool.acquire().await.map_err(map_error)?;
            execute_on(&mut conn, sql, params, self.timeout).await
        })
        .await
    }

    pub(super) async fn query(&self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        self.timed("the query", async {
            let mut conn = self.pool.acquire().await.map_err(map_error)?;
            query_on(&mut conn, sql, params, self.max_rows, self.timeout).await
        })
        .await
    }

    pub(super) async fn execute_batch(&self, sql: String) -> Result<(), Error> {
        self.timed("the batch", async {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(map_error)?;
            check_denied(&sql)?;
            tx.execute(sqlx::raw_sql(AssertSqlSafe(sql)))
                .await
                .map_err(map_error)?;
            tx.commit().await.map_err(map_error)
        })
        .await
    }

    pub(super) async fn ensure_schema(&self, version: i64, script: String) -> Result<(), Error> {
        // Every request runs in a fresh instance and asks: answer from memory once we know.
        if self.schema.load(Ordering::Acquire) >= version {
            return Ok(());
        }
        self.timed("the schema migration", async {
            check_denied(&script)?;
            // The write lock first: concurrent first requests wait here, and the one after the
            // migration reads its version instead of running the script again.
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(map_error)?;
            tx.execute(SCHEMA_TABLE).await.map_err(map_error)?;
            let recorded: Option<i64> =
                sqlx::query_scalar("SELECT version FROM arkham_schema WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_error)?;
            let in_place = match recorded {
                Some(recorded) if recorded >= version => recorded,
                _ => {
                    tx.execute(sqlx::raw_sql(AssertSqlSafe(script)))
                        .await
                        .map_err(map_error)?;
                    sqlx::query(
                        "INSERT INTO arkham_schema (id, version) VALUES (1, ?) \
                         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    )
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
                    version
                }
            };
            tx.commit().await.map_err(map_error)?;
            self.schema.fetch_max(in_place, Ordering::AcqRel);
            Ok(())
        })
        .await
    }

    pub(super) async fn begin(&self) -> Result<Tx, Error> {
        // IMMEDIATE takes the write lock now, so the transaction cannot fail later on a lock
        // upgrade that another writer won.
        self.timed("starting the transaction", async {
            self.pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(map_error)
        })
        .await
    }

    pub(super) async fn execute_in(
        &self,
        tx: &mut Tx,
        sql: String,
        params: Vec<Value>,
    ) -> Result<u64, Error> {
        self.timed("the statement", execute_on(tx, sql, params, self.timeout))
            .await
    }

    pub(super) async fn query_in(
        &self,
        tx: &mut Tx,
        sql: String,
        params: Vec<Value>,
    ) -> Result<Rows, Error> {
        self.timed(
            "the query",
            query_on(tx, sql, params, self.max_rows, self.timeout),
        )
        .await
    }

    pub(super) async fn commit(&self, tx: Tx) -> Result<(), Error> {
        self.timed("the commit", async { tx.commit().await.map_err(map_error) })
            .await
    }

    pub(super) async fn rollback(&self, tx: Tx) -> Result<(), Error> {
        self.timed("the rollback", async {
            tx.rollback().await.map_err(map_error)
        })
        .await
    }

    /// The shard this database belongs to.
    pub fn shard(&self) -> &str {
        &self.shard
    }
}

/// Refuses statements that would reach outside the shard's own database file.
///
/// This is a first line; the authoritative check runs inside SQLite (see the sandbox notes).
fn check_denied(sql: &str) -> Result<(), Error> {
    let lower = sql.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, word) in words.iter().enumerate() {
        let denied = match *word {
            "attach" | "detach" => Some("ATTACH and DETACH reach other database files"),
            "load_extension" => Some("loading SQLite extensions runs native code"),
            "vacuum" if words.get(i + 1) == Some(&"into") => {
                Some("VACUUM INTO writes another database file")
            }
            _ => None,
        };
        if let Some(why) = denied {
            return Err(Error::Denied(format!(
                "`{word}` is not allowed for shards: {why}"
            )));
        }
    }
    Ok(())
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    params: Vec<Value>,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
    for param in params {
        query = match param {
            Value::Null => query.bind(None::<i64>),
            Value::Integer(v) => query.bind(v),
            Value::Real(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
        };
    }
    query
}

/// Makes SQLite itself abandon the statement about to run once `timeout` has passed, so a
/// runaway query (an endless recursive CTE, say) stops instead of holding a worker thread.
async fn arm_deadline(conn: &mut SqliteConnection, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let mut handle = conn.lock_handle().await.map_err(map_error)?;
    // Checked every 10k virtual-machine steps: microseconds of work.
    handle.set_progress_handler(10_000, move || Instant::now() < deadline);
    Ok(())
}

async fn execute_on(
    conn: &mut SqliteConnection,
    sql: String,
    params: Vec<Value>,
    timeout: Duration,
) -> Result<u64, Error> {
    check_denied(&sql)?;
    arm_deadline(conn, timeout).await?;
    let query = bind_all(sqlx::query(AssertSqlSafe(sql)), params);
    let done = conn.execute(query).await.map_err(map_error)?;
    Ok(done.rows_affected())
}

async fn query_on(
    conn: &mut SqliteConnection,
    sql: String,
    params: Vec<Value>,
    max_rows: usize,
    timeout: Duration,
) -> Result<Rows, Error> {
    check_denied(&sql)?;
    arm_deadline(conn, timeout).await?;
    // Preparing first gives the column names even when no row comes back; the statement is
    // cached on the connection, so this costs a lookup after the first time.
    let statement = conn
        .prepare(AssertSqlSafe(sql).into_sql_str())
        .await
        .map_err(map_error)?;
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let query = bind_all(statement.query(), params);
    let fetched = conn.fetch_all(query).await.map_err(map_error)?;
    if fetched.len() > max_rows {
        return Err(Error::LimitExceeded(format!(
            "the query returned {} rows; at most {max_rows} may be fetched at once (use LIMIT/OFFSET)",
            fetched.len()
        )));
    }
    let mut rows = Vec::with_capacity(fetched.len());
    for row in &fetched {
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            values.push(read_value(row, i).map_err(map_error)?);
        }
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

fn read_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // The storage class of this value (SQLite is dynamically typed), not the column's declared type.
    let class = raw.type_info().name().to_string();
    Ok(match class.as_str() {
        "INTEGER" => Value::Integer(row.try_get_unchecked::<i64, _>(i)?),
        "REAL" => Value::Real(row.try_get_unchecked::<f64, _>(i)?),
        "BLOB" => Value::Blob(row.try_get_unchecked::<Vec<u8>, _>(i)?),
        _ => Value::Text(row.try_get_unchecked::<String, _>(i)?),
    })
}

/// Maps a sqlx error to what the shard sees.
fn map_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) => {
            let message = db.message().to_string();
            let primary = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            match (db.kind(), primary) {
                (sqlx::error::ErrorKind::Other, Some(19))
                | (sqlx::error::ErrorKind::UniqueViolation, _)
                | (sqlx::error::ErrorKind::ForeignKeyViolation, _)
                | (sqlx::error::ErrorKind::NotNullViolation, _)
                | (sqlx::error::ErrorKind::CheckViolation, _) => Error::Constraint(message),
                (_, Some(5 | 6)) => Error::Busy(message),
                (_, Some(13)) => Error::LimitExceeded(format!(
                    "{message}: the shard's database reached its size limit"
                )),
                (_, Some(23)) => Error::Denied(format!(
                    "{message}: shards may use only their own database (no ATTACH, extensions or PRAGMAs that change settings)"
                )),
                (_, Some(9)) => Error::LimitExceeded(
                    "the statement ran past the statement time limit and was interrupted"
                        .to_string(),
                ),
                (_, Some(1)) => Error::InvalidSql(message),
                _ => Error::Other(message),
            }
        }
        sqlx::Error::PoolTimedOut => {
            Error::Busy("no database connection became free in time".to_string())
        }
        _ => Error::Other(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_statements_that_reach_outside() {
        assert!(check_denied("ATTACH DATABASE '/x' AS other").is_err());
        assert!(check_denied("select load_extension('x')").is_err());
        assert!(check_denied("VACUUM INTO '/tmp/x'").is_err());
        assert!(check_denied("VACUUM").is_ok());
        assert!(check_denied("SELECT attached_at FROM t").is_ok());
    }
}
