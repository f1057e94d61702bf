//! The PostgreSQL backend: each shard is a role of its own that owns one schema and has no right
//! on anything else, so PostgreSQL itself keeps shards apart.
//!
//! `pg_cluster.rs` creates the roles and schemas (role names hash the database and shard names,
//! see [`pg_sql::role_name`]: roles are cluster-wide). A shard's calls run on connections that log
//! in as its role, with `search_path` and `statement_timeout` pinned by `ALTER ROLE … SET`; every
//! connection is reset (`RESET ALL`, …) before it serves the next call. Each call is also bounded
//! by the host: past the deadline the frame cancels the statement server-side from its own
//! connection, since a shard may `SET statement_timeout = 0`.

use super::DatabaseConfig;
use super::pg_sql::{self, ident};
use super::pg_values::{CANCELED, bind_all, map_error, param_types, prepare_sql, read_value};
use crate::bindings::database::{Error, Rows, Value};
use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgTypeInfo};
use sqlx::{AssertSqlSafe, Column, Connection, Executor, Row, SqlSafeStr, Statement};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a cancelled statement may take to report back before its connection is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// How long a connection may sit idle before it is pinged when lent again (short in tests, so
/// that they see it).
const IDLE_CHECK: Duration = if cfg!(test) {
    Duration::from_millis(200)
} else {
    Duration::from_secs(10)
};

/// How long an idle connection is kept.
const IDLE_MAX: Duration = Duration::from_secs(60);

/// How long the cached size of a shard's schema is trusted, and after how many writes it is
/// measured again regardless.
const SIZE_TTL: Duration = Duration::from_secs(1);
const SIZE_WRITES: u64 = 64;

/// Past this fraction of its quota, a shard's schema is measured before every write.
const MEASURE_ALWAYS: f64 = 0.75;

/// What each returned connection runs before the next call gets it: closes cursors, restores
/// every setting to the role's defaults (a `SET search_path` or `SET statement_timeout` of the
/// last call must not leak), drops listens and session advisory locks, and reports whether a
/// transaction block is still open (`now()` is when it began, earlier than this message) and
/// whether the shard `PREPARE`d statements (`from_sql`), which [`DEALLOCATE`] then drops. Not
/// `DISCARD ALL`: it would drop the statements sqlx prepared and caches. One plain message:
/// the check costs a catalog scan, where running the PL/pgSQL loop every time cost a compile
/// (about 165 µs of server time per reset, three times the statement it followed).
const RESET: &str = "CLOSE ALL; RESET ALL; UNLISTEN *; \
                     SELECT pg_catalog.pg_advisory_unlock_all(), \
                     pg_catalog.now() OPERATOR(pg_catalog.<>) pg_catalog.statement_timestamp(), \
                     EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql)";

/// [`RESET`] after ending the transaction a call left open (a raw `BEGIN`, or one of the
/// frame's). Only then: a `ROLLBACK` outside a transaction makes the server log a warning.
const ROLLBACK_RESET: &str = "ROLLBACK; CLOSE ALL; RESET ALL; UNLISTEN *; \
                              SELECT pg_catalog.pg_advisory_unlock_all(), \
                              pg_catalog.now() OPERATOR(pg_catalog.<>) \
                              pg_catalog.statement_timestamp(), \
                              EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql)";

/// Drops the statements the shard `PREPARE`d, when [`RESET`] found some.
const DEALLOCATE: &str = "DO $arkham$ DECLARE s record; BEGIN \
                          FOR s IN SELECT name FROM pg_catalog.pg_prepared_statements \
                          WHERE from_sql LOOP EXECUTE 'DEALLOCATE ' || pg_catalog.quote_ident(s.name); \
                          END LOOP; END $arkham$";

/// What a reset found left over.
struct Leftovers {
    in_block: bool,
    prepared: bool,
}

/// Runs `reset` ([`RESET`] or [`ROLLBACK_RESET`]) on `conn`.
async fn run_reset(conn: &mut PgConnection, reset: &'static str) -> Result<Leftovers, sqlx::Error> {
    let rows = conn.fetch_all(sqlx::raw_sql(reset)).await?;
    let row = rows
        .last()
        .ok_or_else(|| sqlx::Error::Protocol("the reset returned no row".to_string()))?;
    Ok(Leftovers {
        in_block: row.try_get(1)?,
        prepared: row.try_get(2)?,
    })
}

/// Resets `conn` for the next call; `false` when it could not be made clean (then it is
/// closed, not lent again).
async fn reset(conn: &mut Conn) -> bool {
    let first = if conn.in_tx {
        run_reset(&mut conn.conn, ROLLBACK_RESET).await
    } else {
        run_reset(&mut conn.conn, RESET).await
    };
    let left = match first {
        Ok(left) if !left.in_block => left,
        // A transaction the shard opened is still running (what ran inside it is undone with
        // it), or is aborted, where every statement fails: again, after a `ROLLBACK`.
        Ok(_) | Err(sqlx::Error::Database(_)) if !conn.in_tx => {
            match run_reset(&mut conn.conn, ROLLBACK_RESET).await {
                Ok(left) if !left.in_block => left,
                _ => return false,
            }
        }
        _ => return false,
    };
    conn.in_tx = false;
    !left.prepared || conn.conn.execute(sqlx::raw_sql(DEALLOCATE)).await.is_ok()
}

/// A connection of a shard's role and its server process id (to cancel its statement).
struct Conn {
    conn: PgConnection,
    pid: i32,
    /// The schema-change count its statement cache is valid for.
    seen: u64,
    /// When it was last returned: a connection idle for long is checked before it is lent.
    idle_since: Instant,
    /// Whether a call's statement may be running on it: the call's future was dropped (a
    /// trapped or timed-out request) before the statement answered.
    busy: bool,
    /// Whether a transaction the frame began on it may still be open: its reset then starts
    /// with `ROLLBACK` (one a shard began is found by the reset itself).
    in_tx: bool,
}

/// A small pool of a shard's connections. sqlx's pool hides which server process a connection
/// is, and the host needs it to cancel a runaway statement; this one keeps it with each.
struct ConnPool {
    options: PgConnectOptions,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

/// A connection lent to one call; dropping it resets the connection (in a task) and returns it.
struct Lease {
    conn: Option<Conn>,
    inner: Arc<Inner>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    fn conn(&mut self) -> Result<&mut Conn, Error> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Other("the connection was lost".to_string()))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (Some(mut conn), Some(permit)) = (self.conn.take(), self.permit.take()) else {
            return;
        };
        let inner = self.inner.clone();
        // Without a runtime (process exit) the connection just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // A statement left running by a dropped call is stopped now, not when it ends.
                if conn.busy {
                    inner.signal(CANCEL, conn.pid).await;
                }
                let reset = tokio::time::timeout(inner.timeout + CANCEL_GRACE, reset(&mut conn));
                if matches!(reset.await, Ok(true)) {
                    conn.idle_since = Instant::now();
                    conn.busy = false;
                    inner.pool.lock().push(conn);
                } else {
                    inner.signal(TERMINATE, conn.pid).await;
                }
                drop(permit);
            });
        }
    }
}

impl ConnPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        // The vector stays consistent whatever panicked while holding it.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection returned last (the warmest), after closing those idle for longer than
    /// [`IDLE_MAX`]: server processes are a cluster-wide budget shared by every shard.
    fn take(&self) -> Option<Conn> {
        let mut idle = self.lock();
        // Returned in order, so the stale ones are at the front.
        let stale = idle
            .iter()
            .take_while(|c| c.idle_since.elapsed() > IDLE_MAX)
            .count();
        idle.drain(..stale);
        idle.pop()
    }
}

/// An open transaction: its connection, in a `BEGIN` block.
pub(super) struct Tx {
    lease: Lease,
    /// Whether a statement in it failed: PostgreSQL then ends it, and `COMMIT` would roll back.
    failed: bool,
    changes_schema: bool,
    /// Bytes of SQL and parameters sent in it, for the quota check at commit.
    sent: u64,
    /// The schema's last measured size when it began: what its commit is compared with, since
    /// a measurement taken at commit already includes the transaction's own (uncommitted)
    /// writes.
    size_at_begin: u64,
}

impl Inner {
    /// Runs `sql` (a [`CANCEL`] or [`TERMINATE`]) for the server process `pid` from the
    /// frame's connection; best effort, bounded by the grace period.
    async fn signal(&self, sql: &'static str, pid: i32) {
        let _ = tokio::time::timeout(
            CANCEL_GRACE,
            sqlx::query(sql).bind(pid).execute(&self.admin),
        )
        .await;
    }
}

/// Stops the statement a server process runs.
const CANCEL: &str = "SELECT pg_cancel_backend($1)";
/// Ends a server process (and its session).
const TERMINATE: &str = "SELECT pg_terminate_backend($1)";

struct Inner {
    pool: ConnPool,
    admin: PgPool,
    shard: Arc<str>,
    schema: String,
    lock_key: i64,
    timeout: Duration,
    max_rows: usize,
    max_value_bytes: u64,
    max_result_bytes: u64,
    max_size_bytes: u64,
    /// The highest schema version known to be in place, as in the SQLite backend.
    version: AtomicI64,
    /// DDL through this frame: connections clear their statement caches when behind.
    schema_changes: AtomicU64,
    /// The schema's size in bytes and when it was measured.
    size: Mutex<Option<(u64, Instant)>>,
    writes: AtomicU64,
    /// Bytes of SQL and parameters sent since the size was last measured: what the schema may
    /// have grown by, at least, that the cached size does not show.
    unmeasured: AtomicU64,
}

/// A shard's database on PostgreSQL: its role's connections and its limits.
#[derive(Clone)]
pub struct PgDatabase {
    inner: Arc<Inner>,
}

/// Which kind of call, for messages.
#[derive(Clone, Copy)]
enum What {
    Statement,
    Query,
    Batch,
    Migration,
    Begin,
    Commit,
    Rollback,
}

impl What {
    fn name(self) -> &'static str {
        match self {
            What::Statement => "the statement",
            What::Query => "the query",
            What::Batch => "the batch",
            What::Migration => "the schema migration",
            What::Begin => "starting the transaction",
            What::Commit => "the commit",
            What::Rollback => "the rollback",
        }
    }
}

impl PgDatabase {
    /// The database of `shard`, whose role logs in with `options`; `admin` is the frame's own
    /// connection (to cancel statements).
    pub(super) fn new(
        shard: &str,
        schema: String,
        options: PgConnectOptions,
        admin: PgPool,
        config: &DatabaseConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool: ConnPool {
                    options,
                    idle: Mutex::default(),
                    permits: Arc::new(Semaphore::new(config.max_connections.max(1) as usize)),
                },
                admin,
                shard: shard.into(),
                lock_key: pg_sql::lock_key(&schema),
                schema,
                timeout: Duration::from_millis(config.statement_timeout_ms.max(1)),
                max_rows: config.max_rows,
                max_value_bytes: config.max_value_bytes.max(1),
                max_result_bytes: config.max_result_bytes.max(1),
                max_size_bytes: config.max_size_bytes,
                version: AtomicI64::new(i64::MIN),
                schema_changes: AtomicU64::new(0),
                size: Mutex::new(None),
                writes: AtomicU64::new(0),
                unmeasured: AtomicU64::new(0),
            }),
        }
    }

    /// The shard this database belongs to.
    pub fn shard(&self) -> &str {
        &self.inner.shard
    }

    /// The shard's schema (where its tables are).
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Drops the idle connections; leased ones close when their call ends.
    pub async fn close(&self) {
        let idle: Vec<Conn> = std::mem::take(&mut *self.inner.pool.lock());
        for conn in idle {
            let _ = conn.conn.close().await;
        }
    }

    fn timeout_error(&self, what: What) -> Error {
        Error::LimitExceeded(format!(
            "{} took longer than the statement time limit of {} ms",
            what.name(),
            self.inner.timeout.as_millis()
        ))
    }

    /// A connection within `deadline`: an idle one, or a new one.
    async fn acquire(&self, deadline: Instant, what: What) -> Result<Lease, Error> {
        let permit = tokio::time::timeout_at(
            deadline.into(),
            self.inner.pool.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| Error::Busy("no database connection became free in time".to_string()))?
        .map_err(|_| Error::Other("the database is closed".to_string()))?;
        let mut idle = self.inner.pool.take();
        // A server restart or an idle timeout closes connections silently: check one that sat
        // idle for a while, so the shard's call does not fail on it.
        if let Some(conn) = idle.as_mut()
            && conn.idle_since.elapsed() > IDLE_CHECK
            && !matches!(
                tokio::time::timeout_at(deadline.into(), conn.conn.ping()).await,
                Ok(Ok(()))
            )
        {
            idle = None;
        }
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let connect = async {
                    let mut conn = PgConnection::connect_with(&self.inner.pool.options)
                        .await
                        .map_err(map_error)?;
                    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                        .fetch_one(&mut conn)
                        .await
                        .map_err(map_error)?;
                    Ok::<_, Error>(Conn {
                        conn,
                        pid,
                        seen: 0,
                        idle_since: Instant::now(),
                        busy: false,
                        in_tx: false,
                    })
                };
                tokio::time::timeout_at(deadline.into(), connect)
                    .await
                    .map_err(|_| self.timeout_error(what))??
            }
        };
        Ok(Lease {
            conn: Some(conn),
            inner: self.inner.clone(),
            permit: Some(permit),
        })
    }

    /// Runs `op` on `lease` until `deadline`; past it, cancels the statement on the server
    /// (the shard may have lifted its own `statement_timeout`), waits briefly for it to stop,
    /// and answers the time-limit error. A connection that does not come back is dropped.
    async fn bounded<T>(
        &self,
        lease: &mut Lease,
        deadline: Instant,
        what: What,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let conn = lease.conn()?;
        let pid = conn.pid;
        conn.busy = true;
        // `Some(result)`: the call ended (by itself, or after its cancel within the grace);
        // `None`: it did not stop, and its connection cannot be lent again.
        let mut cancelled = false;
        let result = {
            let fut = op(conn);
            tokio::pin!(fut);
            tokio::select! {
                result = &mut fut => Some(result),
                () = tokio::time::sleep_until(deadline.into()) => {
                    cancelled = true;
                    self.inner.signal(CANCEL, pid).await;
                    tokio::time::timeout(CANCEL_GRACE, &mut fut).await.ok()
                }
            }
        };
        if result.is_some()
            && let Some(conn) = lease.conn.as_mut()
        {
            conn.busy = false;
        }
        match result {
            Some(_) if cancelled => Err(self.timeout_error(what)),
            Some(Err(Error::LimitExceeded(m))) if m.starts_with(CANCELED) => {
                Err(self.timeout_error(what))
            }
            Some(result) => result,
            None => {
                if let Some(conn) = lease.conn.take() {
                    // Terminated rather than trusted: its statement may still be running.
                    self.inner.signal(TERMINATE, conn.pid).await;
                    drop(conn);
                }
                Err(self.timeout_error(what))
            }
        }
    }

    /// The schema's size when it is over `max_size_bytes` (`None` under it): measured at most
    /// every [`SIZE_TTL`] or [`SIZE_WRITES`] writes, so a write costs no extra round trip most
    /// of the time. Over it, writes run on probation (see [`Self::probation`]).
    async fn over_quota(&self, conn: &mut Conn, sent: u64) -> Result<Option<u64>, Error> {
        let writes = self.inner.writes.fetch_add(1, Ordering::AcqRel);
        self.over_quota_after(conn, !writes.is_multiple_of(SIZE_WRITES), sent)
            .await
    }

    /// [`Self::over_quota`] for a `query`, which does not count as a write: measured only when
    /// the last measurement is older than [`SIZE_TTL`].
    async fn over_quota_reading(&self, conn: &mut Conn, sent: u64) -> Result<Option<u64>, Error> {
        self.over_quota_after(conn, true, sent).await
    }

    /// How long a measured `size` is trusted: [`SIZE_TTL`] for an empty schema, less the
    /// closer it is to the quota, and not at all past [`MEASURE_ALWAYS`] of it — so a shard
    /// writing fast cannot run far past its quota between two measurements.
    fn trust_for(&self, size: u64) -> Duration {
        let max = self.inner.max_size_bytes.max(1) as f64;
        let used = size as f64 / max;
        if used >= MEASURE_ALWAYS {
            return Duration::ZERO;
        }
        SIZE_TTL.mul_f64(1.0 - used / MEASURE_ALWAYS)
    }

    /// Measures on the call's own connection, inside its deadline: the frame's shared
    /// connections are not spent on it, so a shard whose schema is slow to measure (thousands
    /// of tables, a starved server) delays only its own calls.
    async fn over_quota_after(
        &self,
        conn: &mut Conn,
        cache_ok: bool,
        sent: u64,
    ) -> Result<Option<u64>, Error> {
        let unmeasured = self.inner.unmeasured.fetch_add(sent, Ordering::AcqRel) + sent;
        let cached = *self.inner.size.lock().unwrap_or_else(|e| e.into_inner());
        let size = match cached {
            Some((size, at))
                if cache_ok && at.elapsed() < self.trust_for(size.saturating_add(unmeasured)) =>
            {
                size
            }
            _ => {
                self.inner.unmeasured.store(0, Ordering::Release);
                let size = measure(conn, &self.inner.schema).await?;
                *self.inner.size.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((size, Instant::now()));
                size
            }
        };
        Ok((size > self.inner.max_size_bytes).then_some(size))
    }

    /// The quota check of a call on its own connection, bounded by `deadline` (the one its
    /// connection was acquired under), then the deadline of the statement itself: the
    /// measurement is not taken out of the statement's time, which a slow server (or a loaded
    /// machine) would otherwise spend on it.
    async fn measured(
        &self,
        lease: &mut Lease,
        deadline: Instant,
        sent: u64,
        writes: bool,
    ) -> Result<(Option<u64>, Instant), Error> {
        let over = self
            .bounded(lease, deadline, What::Statement, async |c| {
                if writes {
                    self.over_quota(c, sent).await
                } else {
                    self.over_quota_reading(c, sent).await
                }
            })
            .await?;
        Ok((over, Instant::now() + self.inner.timeout))
    }

    fn full(&self, size: u64) -> Error {
        Error::LimitExceeded(format!(
            "the shard's database holds {size} bytes, past its size limit of {} \
             (`database.max_size_bytes`); delete rows (or drop tables) to write again",
            self.inner.max_size_bytes
        ))
    }

    /// Over the quota, a write is kept only if it did not grow the schema (a DELETE, a
    /// TRUNCATE, a DROP): measured on the write's own connection before its transaction
    /// commits, so uncommitted growth counts. Names are schema-qualified: the shard controls
    /// the session's search path.
    async fn probation(&self, conn: &mut Conn, before: u64) -> Result<(), Error> {
        let size = measure(conn, &self.inner.schema).await?;
        if size > self.inner.max_size_bytes && size > before {
            return Err(self.full(size));
        }
        *self.inner.size.lock().unwrap_or_else(|e| e.into_inner()) = Some((size, Instant::now()));
        Ok(())
    }

    /// Runs `op` in a transaction of its own that commits only if the schema did not grow.
    async fn on_probation<T>(
        &self,
        conn: &mut Conn,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        conn.in_tx = true;
        conn.conn
            .execute(sqlx::raw_sql("BEGIN"))
            .await
            .map_err(map_error)?;
        let before = measure(conn, &self.inner.schema).await?;
        // On any error the lease's reset rolls the transaction back.
        let value = op(conn).await?;
        self.probation(conn, before).await?;
        conn.conn
            .execute(sqlx::raw_sql("COMMIT"))
            .await
            .map_err(map_error)?;
        conn.in_tx = false;
        Ok(value)
    }
}

/// Bytes of SQL text and TEXT/BLOB parameters a call sends: a lower bound of what it can add.
fn sent_bytes(sql: &str, params: &[Value]) -> u64 {
    let values: usize = params
        .iter()
        .map(|p| match p {
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
            _ => 8,
        })
        .sum();
    (sql.len() + values) as u64
}

/// The size of `schema`'s relations seen from `conn` (its uncommitted growth included).
async fn measure(conn: &mut Conn, schema: &str) -> Result<u64, Error> {
    let size: i64 = sqlx::query_scalar(
        "SELECT COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid)), 0)\
             ::pg_catalog.int8 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
             ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
             WHERE n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.name \
             AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,m,S}'::pg_catalog.\"char\"[])",
    )
    .bind(schema)
    .fetch_one(&mut conn.conn)
    .await
    .map_err(map_error)?;
    Ok(u64::try_from(size).unwrap_or(0))
}

impl PgDatabase {
    fn wrote_schema(&self, sql: &str) {
        if super::sqlite::changes_schema(sql) {
            self.inner.schema_changes.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn call(&self) -> Call {
        Call {
            max_rows: self.inner.max_rows,
            max_value_bytes: self.inner.max_value_bytes,
            max_result_bytes: self.inner.max_result_bytes,
            changes: self.inner.schema_changes.load(Ordering::Acquire),
        }
    }

    pub(super) async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        let deadline = Instant::now() + self.inner.timeout;
        let sent = sent_bytes(&sql, &params);
        let mut lease = self.acquire(deadline, What::Statement).await?;
        let (over, deadline) = self.measured(&mut lease, deadline, sent, true).await?;
        let call = self.call();
        let done = self
            .bounded(
                &mut lease,
                deadline,
                What::Statement,
                async |c| match over {
                    None => execute_on(c, &sql, params, call).await,
                    Some(_) => {
                        self.on_probation(c, async |c| execute_on(c, &sql, params, call).await)
                            .await
                    }
                },
            )
            .await;
        self.wrote_schema(&sql);
        done
    }

    pub(super) async fn query(&self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        let deadline = Instant::now() + self.inner.timeout;
        // A query may write too (`INSERT … RETURNING`, a data-modifying CTE): over the quota it
        // runs on probation like `execute`. Reads do not count towards re-measuring.
        let sent = sent_bytes(&sql, &params);
        let mut lease = self.acquire(deadline, What::Query).await?;
        let (over, deadline) = self.measured(&mut lease, deadline, sent, false).await?;
        let call = self.call();
        self.bounded(&mut lease, deadline, What::Query, async |c| match over {
            None => query_on(c, &sql, params, call).await,
            Some(_) => {
                self.on_probation(c, async |c| query_on(c, &sql, params, call).await)
                    .await
            }
        })
        .await
    }

    pub(super) async fn execute_batch(&self, sql: String) -> Result<(), Error> {
        let deadline = Instant::now() + self.inner.timeout;
        let sent = sent_bytes(&sql, &[]);
        let mut lease = self.acquire(deadline, What::Batch).await?;
        let (over, deadline) = self.measured(&mut lease, deadline, sent, true).await?;
        // The simple-query protocol runs the statements of one message as one implicit
        // transaction: all or nothing.
        let script = async |c: &mut Conn| {
            c.conn
                .execute(sqlx::raw_sql(AssertSqlSafe(sql.clone())))
                .await
                .map_err(map_error)?;
            Ok(())
        };
        let done = self
            .bounded(&mut lease, deadline, What::Batch, async |c| match over {
                None => script(c).await,
                Some(_) => self.on_probation(c, script).await,
            })
            .await;
        self.wrote_schema(&sql);
        done
    }

    pub(super) async fn ensure_schema(&self, version: i64, script: String) -> Result<(), Error> {
        if self.inner.version.load(Ordering::Acquire) >= version {
            return Ok(());
        }
        let deadline = Instant::now() + self.inner.timeout;
        let mut lease = self.acquire(deadline, What::Migration).await?;
        let table = format!("{}.arkham_schema", ident(&self.inner.schema));
        let key = self.inner.lock_key;
        let in_place = self
            .bounded(&mut lease, deadline, What::Migration, async |c| {
                let mut tx = c.conn.begin().await.map_err(map_error)?;
                // Frames sharing the database wait here; the next one reads the new version.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
                tx.execute(sqlx::raw_sql(AssertSqlSafe(format!(
                    "CREATE TABLE IF NOT EXISTS {table} \
                     (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)"
                ))))
                .await
                .map_err(map_error)?;
                let recorded: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT version::int8 FROM {table} WHERE id = 1"
                )))
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_error)?;
                let in_place = match recorded {
                    Some(recorded) if recorded >= version => recorded,
                    _ => {
                        tx.execute(sqlx::raw_sql(AssertSqlSafe(script.clone())))
                            .await
                            .map_err(map_error)?;
                        sqlx::query(AssertSqlSafe(format!(
                            "INSERT INTO {table} (id, version) VALUES (1, $1) \
                             ON CONFLICT (id) DO UPDATE SET version = excluded.version"
                        )))
                        .bind(version)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_error)?;
                        version
                    }
                };
                tx.commit().await.map_err(map_error)?;
                Ok(in_place)
            })
            .await?;
        if in_place == version {
            self.inner.schema_changes.fetch_add(1, Ordering::AcqRel);
        }
        self.inner.version.fetch_max(in_place, Ordering::AcqRel);
        Ok(())
    }

    pub(super) async fn begin(&self) -> Result<Tx, Error> {
        let deadline = Instant::now() + self.inner.timeout;
        let mut lease = self.acquire(deadline, What::Begin).await?;
        let cached = self
            .inner
            .size
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(size, _)| size);
        // The commit measures inside the transaction, its own growth included, and compares
        // with this: so it must be known. Measured once per shard, if never before.
        let size_at_begin = self
            .bounded(&mut lease, deadline, What::Begin, async |c| {
                let size = match cached {
                    Some(size) => size,
                    None => {
                        let size = measure(c, &self.inner.schema).await?;
                        *self.inner.size.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((size, Instant::now()));
                        size
                    }
                };
                c.in_tx = true;
                c.conn
                    .execute(sqlx::raw_sql("BEGIN"))
                    .await
                    .map_err(map_error)?;
                Ok(size)
            })
            .await?;
        Ok(Tx {
            lease,
            failed: false,
            changes_schema: false,
            sent: 0,
            size_at_begin,
        })
    }

    pub(super) async fn execute_in(
        &self,
        tx: &mut Tx,
        sql: String,
        params: Vec<Value>,
    ) -> Result<u64, Error> {
        let deadline = Instant::now() + self.inner.timeout;
        tx.changes_schema |= super::sqlite::changes_schema(&sql);
        tx.sent = tx.sent.saturating_add(sent_bytes(&sql, &params));
        let call = self.call();
        let done = self
            .bounded(&mut tx.lease, deadline, What::Statement, async |c| {
                execute_on(c, &sql, params, call).await
            })
            .await;
        tx.failed |= done.is_err();
        done
    }

    pub(super) async fn query_in(
        &self,
        tx: &mut Tx,
        sql: String,
        params: Vec<Value>,
    ) -> Result<Rows, Error> {
        let deadline = Instant::now() + self.inner.timeout;
        tx.sent = tx.sent.saturating_add(sent_bytes(&sql, &params));
        let call = self.call();
        let done = self
            .bounded(&mut tx.lease, deadline, What::Query, async |c| {
                query_on(c, &sql, params, call).await
            })
            .await;
        tx.failed |= done.is_err();
        done
    }

    pub(super) async fn commit(&self, mut tx: Tx) -> Result<(), Error> {
        if tx.failed {
            // PostgreSQL aborted the transaction at the failed statement; `COMMIT` would
            // silently roll back. Dropping the lease rolls back.
            return Err(Error::Other(
                "the transaction was rolled back: a statement in it failed, and PostgreSQL \
                 ends a transaction at its first error"
                    .to_string(),
            ));
        }
        // Over the quota, a transaction that grew the schema is refused at commit; dropping
        // `tx` rolls it back. Measured inside the transaction, so its own growth counts, and
        // compared with the size when it began.
        let deadline = Instant::now() + self.inner.timeout;
        let (sent, size_at_begin) = (tx.sent, tx.size_at_begin);
        let done = self
            .bounded(&mut tx.lease, deadline, What::Commit, async |c| {
                let over = self
                    .over_quota(c, sent)
                    .await?
                    .map(|now| size_at_begin.min(now));
                if let Some(before) = over {
                    self.probation(c, before).await?;
                }
                c.conn
                    .execute(sqlx::raw_sql("COMMIT"))
                    .await
                    .map_err(map_error)?;
                c.in_tx = false;
                Ok(())
            })
            .await;
        if tx.changes_schema {
            self.inner.schema_changes.fetch_add(1, Ordering::AcqRel);
        }
        done
    }

    pub(super) async fn rollback(&self, mut tx: Tx) -> Result<(), Error> {
        let deadline = Instant::now() + self.inner.timeout;
        self.bounded(&mut tx.lease, deadline, What::Rollback, async |c| {
            c.conn
                .execute(sqlx::raw_sql("ROLLBACK"))
                .await
                .map_err(map_error)?;
            c.in_tx = false;
            Ok(())
        })
        .await
    }
}

/// The bounds of one call.
#[derive(Clone, Copy)]
struct Call {
    max_rows: usize,
    max_value_bytes: u64,
    max_result_bytes: u64,
    /// The schema-change count when the call started.
    changes: u64,
}

impl Call {
    fn check_params(&self, params: &[Value]) -> Result<(), Error> {
        for (i, param) in params.iter().enumerate() {
            let len = match param {
                Value::Text(s) => s.len(),
                Value::Blob(b) => b.len(),
                _ => 0,
            };
            if len as u64 > self.max_value_bytes {
                return Err(Error::LimitExceeded(format!(
                    "parameter {} is {len} bytes, past the value limit of {} bytes \
                     (`database.max_value_bytes`)",
                    i + 1,
                    self.max_value_bytes
                )));
            }
        }
        Ok(())
    }
}

/// Clears `conn`'s statement cache when DDL ran since it was last valid.
async fn refresh(conn: &mut Conn, call: Call) -> Result<(), Error> {
    if conn.seen != call.changes {
        conn.conn
            .clear_cached_statements()
            .await
            .map_err(map_error)?;
        conn.seen = call.changes;
    }
    Ok(())
}

async fn execute_on(
    conn: &mut Conn,
    sql: &str,
    params: Vec<Value>,
    call: Call,
) -> Result<u64, Error> {
    call.check_params(&params)?;
    let text = prepare_sql(sql, &params)?;
    refresh(conn, call).await?;
    let query = bind_all(sqlx::query(AssertSqlSafe(text)), params);
    let done = conn.conn.execute(query).await.map_err(map_error);
    stale_plan(conn, &done).await;
    Ok(done?.rows_affected())
}

/// A table altered by another frame leaves this connection's cached plans stale: PostgreSQL
/// refuses them, so drop them and let the shard's retry succeed.
async fn stale_plan<T>(conn: &mut Conn, result: &Result<T, Error>) {
    if let Err(Error::InvalidSql(m)) = result
        && m.contains("cached plan must not change result type")
    {
        let _ = conn.conn.clear_cached_statements().await;
    }
}

/// Host memory one decoded value takes beyond its payload.
const VALUE_OVERHEAD: usize = std::mem::size_of::<Value>();

async fn query_on(
    conn: &mut Conn,
    sql: &str,
    params: Vec<Value>,
    call: Call,
) -> Result<Rows, Error> {
    call.check_params(&params)?;
    let text = prepare_sql(sql, &params)?;
    refresh(conn, call).await?;
    let types = param_types(&params);
    let result = read_rows(&mut conn.conn, text, &types, params, call).await;
    stale_plan(conn, &result).await;
    result
}

async fn read_rows(
    conn: &mut PgConnection,
    text: String,
    types: &[PgTypeInfo],
    params: Vec<Value>,
    call: Call,
) -> Result<Rows, Error> {
    // Preparing first gives the column names even without rows; it is cached.
    let statement = conn
        .prepare_with(AssertSqlSafe(text).into_sql_str(), types)
        .await
        .map_err(map_error)?;
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let budget = usize::try_from(call.max_result_bytes).unwrap_or(usize::MAX);
    let value_limit = usize::try_from(call.max_value_bytes).unwrap_or(usize::MAX);
    let mut used = 0usize;
    let mut rows = Vec::new();
    let query = bind_all(statement.query(), params);
    let mut stream = conn.fetch(query);
    while let Some(row) = stream.try_next().await.map_err(map_error)? {
        if rows.len() >= call.max_rows {
            return Err(Error::LimitExceeded(format!(
                "the query returned more than {} rows; at most that many may be fetched at once \
                 (use LIMIT/OFFSET)",
                call.max_rows
            )));
        }
        let mut values = Vec::with_capacity(row.len());
        used = used.saturating_add(std::mem::size_of::<Vec<Value>>());
        for i in 0..row.len() {
            let value = read_value(&row, i, value_limit)?;
            let payload = match &value {
                Value::Text(s) => s.len(),
                Value::Blob(b) => b.len(),
                _ => 0,
            };
            used = used.saturating_add(VALUE_OVERHEAD + payload);
            if used > budget {
                return Err(Error::LimitExceeded(format!(
                    "the query's result passed {budget} bytes after {} rows; at most that much \
                     may be fetched at once (select fewer columns or use LIMIT/OFFSET)",
                    rows.len()
                )));
            }
            values.push(value);
        }
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}
