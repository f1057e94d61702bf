//! The SQLite backend: one WAL-mode database file per shard with durable commits.

use super::limits::{self, ValueLimits};
use super::{DatabaseConfig, DatabaseServiceError};
use crate::bindings::database::{Error, Rows, Value};
use futures::TryStreamExt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{
    AssertSqlSafe, Column, Connection, Executor, Row, SqlSafeStr, Sqlite, Statement, TypeInfo,
    ValueRef,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An open transaction on a shard database.
pub(super) struct Tx {
    inner: sqlx::Transaction<'static, Sqlite>,
    /// Whether a statement in it changed the schema: other connections learn it at commit.
    changes_schema: bool,
}

/// SQLite's page size for new databases; `max_page_count` is derived from it.
const PAGE_SIZE: u64 = 4096;

/// Where `ensure-schema` records the schema version; the guest SDK used the same table before
/// the host took the check over, so existing databases keep their version.
const SCHEMA_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS arkham_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)";

/// The connection settings of a shard database at `path`; the benchmarks' native baseline opens
/// its database with them too, so both sides run on identical SQLite settings.
pub fn connect_options(path: &Path, config: &DatabaseConfig) -> SqliteConnectOptions {
    let max_pages = (config.max_size_bytes / PAGE_SIZE).max(16);
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL syncs the WAL on every commit: a commit the shard saw survives power loss.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_millis(config.statement_timeout_ms))
        .pragma("page_size", PAGE_SIZE.to_string())
        .pragma("max_page_count", max_pages.to_string())
        // Rows the connection's worker thread may build ahead of the host reading them: each is
        // host memory not yet counted against `max_result_bytes` (sqlx's default is 50).
        .row_buffer_size(1)
}

/// A shard's database: a pool of connections to its file.
#[derive(Clone)]
pub struct SqliteDatabase {
    pool: SqlitePool,
    timeout: Duration,
    max_rows: usize,
    limits: ValueLimits,
    shard: Arc<str>,
    /// The highest schema version known to be in place (`i64::MIN` until one is seen). Versions
    /// only go up, so a request asking for this one or a lower one needs no SQL.
    schema: Arc<AtomicI64>,
    watch: SchemaWatch,
}

/// Schema changes made through a database, so that no connection decodes rows with a stale
/// statement. sqlx caches each prepared statement with its column list; SQLite re-prepares a
/// statement whose tables another connection altered, but the cached list stays, and sqlx then
/// panics or returns no rows (`SELECT *` after `ALTER TABLE ... ADD COLUMN`). Every statement a
/// shard runs goes through the frame, so counting the ones that may change the schema and
/// clearing a connection's cache when it last saw an older count closes that gap for every query
/// that starts after the change has returned (one racing it can still see the old columns).
#[derive(Clone, Default)]
struct SchemaWatch {
    changes: Arc<AtomicU64>,
    /// The count each connection's cache was last valid for, by its `sqlite3` handle.
    seen: Arc<Mutex<HashMap<usize, u64>>>,
}

/// Connections tracked before the map is reset (each then clears its cache once).
const MAX_TRACKED_CONNECTIONS: usize = 256;

impl SchemaWatch {
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the connection with `handle` must clear its statement cache before a query.
    fn stale(&self, handle: usize) -> bool {
        let now = self.changes.load(Ordering::Acquire);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_TRACKED_CONNECTIONS {
            seen.clear();
        }
        // A connection not seen yet may hold statements from before any count: clear it too.
        seen.insert(handle, now) != Some(now)
    }

    /// Clears `conn`'s statement cache if a schema change happened since it was last valid.
    async fn refresh(&self, conn: &mut SqliteConnection, handle: usize) -> Result<(), Error> {
        if self.stale(handle) {
            // A connection reloads a changed schema only when a statement reads it, and a
            // statement prepared before that is compiled against the old one: read it first.
            conn.execute(sqlx::raw_sql("SELECT count(*) FROM sqlite_master"))
                .await
                .map_err(map_error)?;
            sqlx::Connection::clear_cached_statements(conn)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }
}

/// Whether `sql` may change the schema: it has a CREATE, ALTER or DROP keyword. A false positive
/// (the word in a string) only costs connections their statement caches once.
pub(super) fn changes_schema(sql: &str) -> bool {
    sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| {
            ["create", "alter", "drop"]
                .iter()
                .any(|k| word.eq_ignore_ascii_case(k))
        })
}

impl SqliteDatabase {
    /// Opens (creating if missing) the database file at `path` for `shard`.
    pub async fn open(
        shard: &str,
        path: &Path,
        config: &DatabaseConfig,
    ) -> Result<Self, DatabaseServiceError> {
        let options = connect_options(path, config);
        let limits = ValueLimits::new(config.max_value_bytes, config.max_result_bytes);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(0)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    super::authorizer::install(handle.as_raw_handle());
                    limits::harden(handle.as_raw_handle(), limits)
                        .map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
                    Ok(())
                })
            })
            // A connection must come back as it went out: a shard's raw `BEGIN` (or a commit
            // that failed on a full disk and left sqlx's transaction depth behind) would
            // otherwise hand the next caller an open transaction holding the write lock.
            // Closing it rolls the transaction back.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if conn.is_in_transaction() {
                        return Ok(false);
                    }
                    let mut handle = conn.lock_handle().await?;
                    Ok(!limits::in_transaction(handle.as_raw_handle()))
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
            limits,
            shard: shard.into(),
            schema: Arc::new(AtomicI64::new(i64::MIN)),
            watch: SchemaWatch::default(),
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
        let ddl = changes_schema(&sql);
        let done = self
            .timed("the statement", async {
                let mut conn = self.pool.acquire().await.map_err(map_error)?;
                execute_on(&mut conn, sql, params, self.call()).await
            })
            .await;
        if ddl {
            self.watch.changed();
        }
        done
    }

    pub(super) async fn query(&self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        self.timed("the query", async {
            let mut conn = self.pool.acquire().await.map_err(map_error)?;
            query_on(&mut conn, &self.watch, sql, params, self.call()).await
        })
        .await
    }

    pub(super) async fn execute_batch(&self, sql: String) -> Result<(), Error> {
        let ddl = changes_schema(&sql);
        let done = self
            .timed("the batch", async {
                let mut tx = self
                    .pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(map_error)?;
                check_denied(&sql)?;
                let handle = self.call().arm(&mut tx).await?;
                tx.execute(sqlx::raw_sql(AssertSqlSafe(sql)))
                    .await
                    .map_err(|e| explain(e, handle))?;
                tx.commit().await.map_err(map_error)
            })
            .await;
        if ddl {
            self.watch.changed();
        }
        done
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
            let handle = self.call().arm(&mut tx).await?;
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
                        .map_err(|e| explain(e, handle))?;
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
            if in_place == version {
                self.watch.changed();
            }
            self.schema.fetch_max(in_place, Ordering::AcqRel);
            Ok(())
        })
        .await
    }

    pub(super) async fn begin(&self) -> Result<Tx, Error> {
        // IMMEDIATE takes the write lock now, so the transaction cannot fail later on a lock
        // upgrade that another writer won.
        self.timed("starting the transaction", async {
            let inner = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(map_error)?;
            Ok(Tx {
                inner,
                changes_schema: false,
            })
        })
        .await
    }

    pub(super) async fn execute_in(
        &self,
        tx: &mut Tx,
        sql: String,
        params: Vec<Value>,
    ) -> Result<u64, Error> {
        tx.changes_schema |= changes_schema(&sql);
        self.timed(
            "the statement",
            execute_on(&mut tx.inner, sql, params, self.call()),
        )
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
            query_on(&mut tx.inner, &self.watch, sql, params, self.call()),
        )
        .await
    }

    pub(super) async fn commit(&self, tx: Tx) -> Result<(), Error> {
        let ddl = tx.changes_schema;
        let done = self
            .timed("the commit", async {
                tx.inner.commit().await.map_err(map_error)
            })
            .await;
        if ddl {
            self.watch.changed();
        }
        done
    }

    pub(super) async fn rollback(&self, tx: Tx) -> Result<(), Error> {
        self.timed("the rollback", async {
            tx.inner.rollback().await.map_err(map_error)
        })
        .await
    }

    /// The shard this database belongs to.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    fn call(&self) -> Call {
        Call {
            timeout: self.timeout,
            limits: self.limits,
            max_rows: self.max_rows,
        }
    }
}

/// The bounds of one host call on a connection.
#[derive(Clone, Copy)]
struct Call {
    timeout: Duration,
    limits: ValueLimits,
    max_rows: usize,
}

impl Call {
    /// Makes SQLite itself abandon the call's statements once the timeout has passed, so a
    /// runaway query (an endless recursive CTE, say) stops instead of holding a worker thread,
    /// and restores the value limit that statements lower (see `limits.rs`). Returns the
    /// connection's `sqlite3` handle address, which identifies it for [`SchemaWatch`] and for
    /// the authorizer's denial reasons.
    async fn arm(&self, conn: &mut SqliteConnection) -> Result<usize, Error> {
        let deadline = Instant::now() + self.timeout;
        let mut handle = conn.lock_handle().await.map_err(map_error)?;
        // Checked every 10k virtual-machine steps: microseconds of work.
        handle.set_progress_handler(10_000, move || Instant::now() < deadline);
        let raw = handle.as_raw_handle();
        limits::reset_value_limit(raw, self.limits);
        Ok(raw.as_ptr() as usize)
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

async fn execute_on(
    conn: &mut SqliteConnection,
    sql: String,
    params: Vec<Value>,
    call: Call,
) -> Result<u64, Error> {
    check_denied(&sql)?;
    let handle = call.arm(conn).await?;
    let query = bind_all(sqlx::query(AssertSqlSafe(sql)), params);
    let done = conn.execute(query).await.map_err(|e| explain(e, handle))?;
    Ok(done.rows_affected())
}

/// Host memory one decoded value takes beyond its payload, so that many small values count too.
const VALUE_OVERHEAD: usize = std::mem::size_of::<Value>();

async fn query_on(
    conn: &mut SqliteConnection,
    watch: &SchemaWatch,
    sql: String,
    params: Vec<Value>,
    call: Call,
) -> Result<Rows, Error> {
    check_denied(&sql)?;
    let handle = call.arm(conn).await?;
    watch.refresh(conn, handle).await?;
    // Preparing first gives the column names even when no row comes back; the statement is
    // cached on the connection, so this costs a lookup after the first time.
    let statement = conn
        .prepare(AssertSqlSafe(sql).into_sql_str())
        .await
        .map_err(|e| explain(e, handle))?;
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let query = bind_all(statement.query(), params);
    // Rows are read one at a time and counted before they are decoded: a limit fails the query
    // before the host holds more than the budget (dropping the stream stops the statement).
    let budget = usize::try_from(call.limits.max_result_bytes).unwrap_or(usize::MAX);
    let mut used = 0usize;
    let mut rows = Vec::new();
    let mut stream = conn.fetch(query);
    while let Some(row) = stream.try_next().await.map_err(|e| explain(e, handle))? {
        if rows.len() >= call.max_rows {
            return Err(Error::LimitExceeded(format!(
                "the query returned more than {} rows; at most that many may be fetched at once \
                 (use LIMIT/OFFSET)",
                call.max_rows
            )));
        }
        used = used.saturating_add(row_bytes(&row).map_err(map_error)?);
        if used > budget {
            return Err(Error::LimitExceeded(format!(
                "the query's result passed {budget} bytes after {} rows; at most that much may be \
                 fetched at once (select fewer columns or use LIMIT/OFFSET)",
                rows.len()
            )));
        }
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            values.push(read_value(&row, i).map_err(map_error)?);
        }
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

/// The host memory `row` takes once decoded: its TEXT and BLOB payloads plus a fixed size per
/// value, measured on the values SQLite holds, before any is copied.
fn row_bytes(row: &sqlx::sqlite::SqliteRow) -> Result<usize, sqlx::Error> {
    let mut total = std::mem::size_of::<Vec<Value>>();
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        let payload = if raw.is_null() {
            0
        } else {
            match raw.type_info().name() {
                "TEXT" | "BLOB" => row.try_get_unchecked::<&[u8], _>(i)?.len(),
                _ => 0,
            }
        };
        total = total.saturating_add(VALUE_OVERHEAD + payload);
    }
    Ok(total)
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

/// Maps a sqlx error from a call on the connection `handle`, with the authorizer's reason when
/// it denied something.
fn explain(error: sqlx::Error, handle: usize) -> Error {
    // SQLite reports most denials as SQLITE_AUTH, a denied function as a plain SQLITE_ERROR
    // "not authorized to use function".
    let authorizer = match &error {
        sqlx::Error::Database(db) => {
            db.code()
                .is_some_and(|c| c.parse::<i32>().is_ok_and(|c| c & 0xff == 23))
                || db.message().starts_with("not authorized")
        }
        _ => false,
    };
    match (authorizer, map_error(error)) {
        (true, mapped) => match super::authorizer::take_denial(handle) {
            Some(reason) => Error::Denied(reason),
            None => match mapped {
                Error::InvalidSql(message) => Error::Denied(message),
                other => other,
            },
        },
        (false, mapped) => mapped,
    }
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
                    "{message}: the shard's database reached its size limit (`database.max_size_bytes`), or the \
                     disk that holds it is full (SQLite reports both alike)"
                )),
                (_, Some(18)) => Error::LimitExceeded(format!(
                    "{message}: a value, row or SQL text passed the shard's database limits \
                     (values of at most `max_value_bytes`, shared among a result's columns \
                     within `max_result_bytes`; SQL text of at most 1 MiB)"
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

    #[test]
    fn schema_changes_are_recognised_by_keyword() {
        assert!(changes_schema("ALTER TABLE t ADD COLUMN y"));
        assert!(changes_schema("  create index i on t(x);"));
        assert!(changes_schema("INSERT INTO t VALUES (1); DROP TABLE u"));
        assert!(!changes_schema("SELECT created_at, dropped FROM t"));
        assert!(!changes_schema("UPDATE t SET x = 1"));
    }

    async fn select(db: &SqliteDatabase, conn: &mut SqliteConnection) -> Result<Rows, Error> {
        query_on(conn, &db.watch, "SELECT * FROM t".into(), vec![], db.call()).await
    }

    /// sqlx caches statements with their columns; a `SELECT *` cached on one connection must
    /// see columns another connection added, through a plain statement and a transaction.
    #[tokio::test]
    async fn a_cached_statement_sees_a_schema_changed_by_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDatabase::open(
            "demo",
            &dir.path().join("db.sqlite"),
            &DatabaseConfig::default(),
        )
        .await
        .unwrap();
        db.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);".into())
            .await
            .unwrap();
        // Held for the whole test, so the other statements run on other connections.
        let mut a = db.pool().acquire().await.unwrap();
        let before = select(&db, &mut a).await.unwrap();
        assert_eq!((before.columns.len(), before.rows.len()), (1, 1));

        db.execute("ALTER TABLE t ADD COLUMN y TEXT DEFAULT 'z'".into(), vec![])
            .await
            .unwrap();
        let after = select(&db, &mut a).await.unwrap();
        assert_eq!(after.columns, ["x", "y"]);
        // The bindings' `Value` has no PartialEq: compare its debug form.
        assert_eq!(
            format!("{:?}", after.rows),
            r#"[[Value::Integer(1), Value::Text("z")]]"#
        );

        let mut tx = db.begin().await.unwrap();
        db.execute_in(&mut tx, "ALTER TABLE t ADD COLUMN w INTEGER".into(), vec![])
            .await
            .unwrap();
        db.commit(tx).await.unwrap();
        let last = select(&db, &mut a).await.unwrap();
        assert_eq!(last.columns, ["x", "y", "w"]);
        assert_eq!(last.rows.len(), 1);
    }
}
