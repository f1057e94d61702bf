//! The durable event log: an append-only table of events and one cursor per subscriber, in the
//! frame's own SQLite database.
//!
//! Appends are group-committed: one writer task owns the inserts into `events`. It takes every
//! append queued while its previous commit ran and writes them in one transaction, so concurrent
//! publishers share one fsync instead of paying one each. Cursors and dead letters are written
//! through the pool directly; SQLite serialises those writes with the writer's.
//!
//! Each batch runs on a connection of its own; a connection whose transaction failed (a full
//! disk, an I/O error) is closed instead of returned to the pool, so the next batch starts clean.
//!
//! Retention: a task deletes, every [`RETENTION_INTERVAL`], the events every cursor has passed,
//! except those a dead letter refers to (kept until the dead letter is purged).

use super::Pending;
use super::quota::Retained;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// Most appends written in one transaction; the rest wait for the next one.
const MAX_BATCH: usize = 256;

/// Appends that may wait for the writer before `append` itself waits for room.
const QUEUE: usize = 1024;

/// Events per INSERT: 5 parameters each stays far below SQLite's limit of 32766.
const ROWS_PER_STATEMENT: usize = 1000;

/// How often retention trims the log.
const RETENTION_INTERVAL: Duration = Duration::from_secs(1);

/// Events deleted per statement, so a trim holds the write lock only briefly at a time.
const TRIM_CHUNK: i64 = 5000;

/// Longest dead-letter error stored or logged, in bytes (the error comes from the guest).
pub(crate) const MAX_ERROR_BYTES: usize = 1024;

/// Cuts `error` to at most [`MAX_ERROR_BYTES`] without splitting a character.
pub(crate) fn truncate_error(error: &str) -> &str {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

/// An error of the event log.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// A statement on the log's database failed.
    #[error("event log {what}: {source}")]
    Sql {
        /// What the log was doing.
        what: &'static str,
        /// SQLite's error.
        source: sqlx::Error,
    },
    /// The log was closed by [`EventLog::close`] (the frame is shutting down).
    #[error("event log is closed (the frame is shutting down); the events were not logged")]
    Closed,
    /// The writer task ended without answering, which only happens when its runtime shuts down.
    #[error(
        "event log writer stopped before confirming the append; the events may not have been logged"
    )]
    Interrupted,
}

fn err(what: &'static str) -> impl FnOnce(sqlx::Error) -> EventLogError {
    move |source| EventLogError::Sql { what, source }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredEvent {
    /// Position in the log.
    pub id: u64,
    /// Event name.
    pub name: String,
    /// Publishing shard.
    pub source: String,
    /// Payload.
    pub payload: String,
    /// Publication time, ms since the Unix epoch.
    pub published_at: u64,
    /// Handlers between the request that started its chain and this event.
    pub hops: u32,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    hops INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cursors (
    subscriber TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    subscriber TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at INTEGER NOT NULL,
    PRIMARY KEY (subscriber, event_id)
);
CREATE INDEX IF NOT EXISTS dead_letters_event ON dead_letters (event_id);
";

/// Schema changes since the first release, applied at open to a `frame.db` that predates them.
/// `ADD COLUMN` with a constant default rewrites nothing: existing rows read the default.
/// An `events` row selected as `id, name, source, payload, published_at, hops`.
fn stored_event(row: sqlx::sqlite::SqliteRow) -> StoredEvent {
    StoredEvent {
        id: row.get::<i64, _>(0) as u64,
        name: row.get(1),
        source: row.get(2),
        payload: row.get(3),
        published_at: row.get::<i64, _>(4) as u64,
        hops: u32::try_from(row.get::<i64, _>(5)).unwrap_or(u32::MAX),
    }
}

async fn migrate(pool: &SqlitePool) -> Result<(), EventLogError> {
    let has_hops: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = 'hops'")
            .fetch_one(pool)
            .await
            .map_err(err("schema cannot be read"))?;
    if has_hops == 0 {
        sqlx::raw_sql("ALTER TABLE events ADD COLUMN hops INTEGER NOT NULL DEFAULT 0")
            .execute(pool)
            .await
            .map_err(err("schema cannot be migrated (adding events.hops)"))?;
    }
    Ok(())
}

/// The newest id ever given, even if retention deleted it since: AUTOINCREMENT's sequence.
const HEAD: &str = "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
                    COALESCE((SELECT MAX(id) FROM events), 0))";

/// The frame's event log.
///
/// Cheap to clone; the writer task ends once every clone is dropped or [`close`](Self::close)
/// is called, after writing every append queued before that.
#[derive(Clone)]
pub struct EventLog {
    pool: SqlitePool,
    /// The id of the newest event; dispatchers wait on it.
    head: watch::Sender<u64>,
    writer: mpsc::Sender<Command>,
    /// Closed (its sender dropped) when the writer task has ended.
    writer_done: watch::Receiver<()>,
    /// Bytes of retained events per source.
    retained: Arc<Retained>,
    /// Events retention deleted since the log was opened.
    trimmed: Arc<AtomicU64>,
}

/// What the writer task is asked to do.
enum Command {
    Append(Append),
    /// Write what is queued, refuse what comes after, and end.
    Close,
}

/// One `append` call: atomic on its own, whatever it is batched with.
struct Append {
    source: String,
    events: Vec<Pending>,
    /// `published_at` of every event: when `append` was called.
    at: i64,
    /// The ids given to `events`, ascending.
    reply: oneshot::Sender<Result<Vec<u64>, EventLogError>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl EventLog {
    /// Opens (creating) the log in the SQLite file at `path` and starts its writer and retention
    /// tasks.
    pub async fn open(path: &Path) -> Result<Self, EventLogError> {
        Self::open_with(path, Some(RETENTION_INTERVAL)).await
    }

    /// [`open`](Self::open), trimming every `retention` (never when `None`: tests call
    /// [`trim`](Self::trim) themselves).
    pub(crate) async fn open_with(
        path: &Path,
        retention: Option<Duration>,
    ) -> Result<Self, EventLogError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(err("cannot be opened"))?;
        // The migration first: the schema's index creation must not race it on an old file.
        let exists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        )
        .fetch_one(&pool)
        .await
        .map_err(err("cannot be read"))?;
        if exists > 0 {
            migrate(&pool).await?;
        }
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(err("schema cannot be created"))?;
        let head: i64 = sqlx::query_scalar(HEAD)
            .fetch_one(&pool)
            .await
            .map_err(err("cannot be read"))?;
        let retained = Arc::new(Retained::default());
        let sizes = sqlx::query(
            "SELECT source, SUM(length(CAST(name AS BLOB)) + length(CAST(payload AS BLOB)))
             FROM events GROUP BY source",
        )
        .fetch_all(&pool)
        .await
        .map_err(err("cannot be read"))?;
        for row in sizes {
            let bytes: i64 = row.get(1);
            retained.add(row.get::<&str, _>(0), bytes.max(0) as u64);
        }
        let (head, _) = watch::channel(head as u64);
        let (writer, commands) = mpsc::channel(QUEUE);
        let (done, writer_done) = watch::channel(());
        tokio::spawn(write_loop(
            pool.clone(),
            head.clone(),
            retained.clone(),
            commands,
            done,
        ));
        let log = Self {
            pool,
            head,
            writer,
            writer_done,
            retained,
            trimmed: Arc::default(),
        };
        if let Some(every) = retention {
            let head = log.subscribe_head();
            tokio::spawn(retain_loop(
                log.pool.clone(),
                log.retained.clone(),
                log.trimmed.clone(),
                head,
                every,
            ));
        }
        Ok(log)
    }

    pub(crate) fn retained(&self) -> Arc<Retained> {
        self.retained.clone()
    }

    /// Bytes (names and payloads) of `source`'s events the log holds.
    pub fn retained_bytes(&self, source: &str) -> u64 {
        self.retained.get(source)
    }

    /// Deletes the events every cursor has passed and no dead letter refers to (all of them when
    /// there is no cursor: a new subscriber starts at the head); returns how many. Run every
    /// [`RETENTION_INTERVAL`] by the log's own task.
    pub async fn trim(&self) -> Result<u64, EventLogError> {
        let deleted = trim(&self.pool, &self.retained).await?;
        self.trimmed.fetch_add(deleted, Ordering::Relaxed);
        Ok(deleted)
    }

    /// Events retention deleted since the log was opened.
    pub fn trimmed(&self) -> u64 {
        self.trimmed.load(Ordering::Relaxed)
    }

    /// Appends events published by `source`, atomically, and wakes the dispatchers.
    ///
    /// Returns once the events are durable, with ids after every event appended before; `head`
    /// has reached them by then. Concurrent calls share one commit. After [`close`](Self::close)
    /// it fails with [`EventLogError::Closed`]; an empty `events` always succeeds at once.
    pub async fn append(&self, source: &str, events: &[Pending]) -> Result<(), EventLogError> {
        self.append_ids(source, events).await.map(drop)
    }

    /// [`append`](Self::append), returning the ids the events were given.
    async fn append_ids(
        &self,
        source: &str,
        events: &[Pending],
    ) -> Result<Vec<u64>, EventLogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let append = Append {
            source: source.to_string(),
            events: events.to_vec(),
            at: now_ms() as i64,
            reply,
        };
        self.writer
            .send(Command::Append(append))
            .await
            .map_err(|_| EventLogError::Closed)?;
        answer.await.map_err(|_| EventLogError::Interrupted)?
    }

    /// A receiver that changes whenever events are appended.
    pub fn subscribe_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// The id of the newest event (0 when the log is empty).
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Creates `subscriber`'s cursor at the current head unless it has one: a new subscriber
    /// receives what is published from now on.
    pub async fn ensure_cursor(&self, subscriber: &str) -> Result<u64, EventLogError> {
        sqlx::query(
            "INSERT INTO cursors (subscriber, position)
             SELECT ?, (SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                                 COALESCE((SELECT MAX(id) FROM events), 0)))
             WHERE true ON CONFLICT (subscriber) DO NOTHING",
        )
        .bind(subscriber)
        .execute(&self.pool)
        .await
        .map_err(err("cursor cannot be created"))?;
        self.cursor(subscriber).await.map(|c| c.unwrap_or(0))
    }

    /// The position of `subscriber`'s cursor: the id of the last event it has acknowledged.
    pub async fn cursor(&self, subscriber: &str) -> Result<Option<u64>, EventLogError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM cursors WHERE subscriber = ?")
                .bind(subscriber)
                .fetch_optional(&self.pool)
                .await
                .map_err(err("cursor cannot be read"))?;
        Ok(position.map(|p| p as u64))
    }

    /// Moves `subscriber`'s cursor to `position`, durably.
    pub async fn advance(&self, subscriber: &str, position: u64) -> Result<(), EventLogError> {
        sqlx::query("UPDATE cursors SET position = MAX(position, ?) WHERE subscriber = ?")
            .bind(position as i64)
            .bind(subscriber)
            .execute(&self.pool)
            .await
            .map_err(err("cursor cannot be advanced"))?;
        Ok(())
    }

    /// Deletes `subscriber`'s cursor (the shard was removed, or no longer subscribes), so it no
    /// longer holds back retention.
    pub async fn remove_cursor(&self, subscriber: &str) -> Result<(), EventLogError> {
        sqlx::query("DELETE FROM cursors WHERE subscriber = ?")
            .bind(subscriber)
            .execute(&self.pool)
            .await
            .map_err(err("cursor cannot be removed"))?;
        Ok(())
    }

    /// Up to `limit` events after `position`, oldest first.
    pub async fn read_after(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        let rows = sqlx::query(
            "SELECT id, name, source, payload, published_at, hops FROM events WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(position as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err("cannot be read"))?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// The newest events (up to `limit`), newest first.
    pub async fn recent(&self, limit: u32) -> Result<Vec<StoredEvent>, EventLogError> {
        let rows = sqlx::query(
            "SELECT id, name, source, payload, published_at, hops FROM events ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err("cannot be read"))?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// Records that `subscriber` gave up on `event_id` after `attempts` attempts; `error` is cut
    /// to [`MAX_ERROR_BYTES`]. The event is kept (retention skips it) until the dead letter is
    /// purged.
    pub async fn dead_letter(
        &self,
        subscriber: &str,
        event_id: u64,
        attempts: u32,
        error: &str,
    ) -> Result<(), EventLogError> {
        sqlx::query(
            "INSERT OR REPLACE INTO dead_letters (subscriber, event_id, attempts, error, failed_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(subscriber)
        .bind(event_id as i64)
        .bind(i64::from(attempts))
        .bind(truncate_error(error))
        .bind(now_ms() as i64)
        .execute(&self.pool)
        .await
        .map_err(err("dead letter cannot be recorded"))?;
        Ok(())
    }

    /// Events `subscriber` gave up on, as (event id, error).
    pub async fn dead_letters(
        &self,
        subscriber: &str,
    ) -> Result<Vec<(u64, String)>, EventLogError> {
        let rows = sqlx::query(
            "SELECT event_id, error FROM dead_letters WHERE subscriber = ? ORDER BY event_id",
        )
        .bind(subscriber)
        .fetch_all(&self.pool)
        .await
        .map_err(err("cannot be read"))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get::<i64, _>(0) as u64, r.get(1)))
            .collect())
    }

    /// The events in the log now, and their payload bytes.
    pub async fn size(&self) -> Result<(u64, u64), EventLogError> {
        let (count, bytes): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(name)), 0) FROM events",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(err("cannot be read"))?;
        Ok((count.max(0) as u64, bytes.max(0) as u64))
    }

    /// The events `subscriber` gave up on with why, oldest first, at most `limit`.
    pub async fn dead_letter_events(
        &self,
        subscriber: &str,
        limit: usize,
    ) -> Result<Vec<(StoredEvent, String)>, EventLogError> {
        let rows = sqlx::query(
            "SELECT e.id, e.name, e.source, e.payload, e.published_at, e.hops, d.error
             FROM dead_letters d JOIN events e ON e.id = d.event_id
             WHERE d.subscriber = ? ORDER BY d.event_id LIMIT ?",
        )
        .bind(subscriber)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(err("cannot be read"))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let event = StoredEvent {
                    id: row.get::<i64, _>(0) as u64,
                    name: row.get(1),
                    source: row.get(2),
                    payload: row.get(3),
                    published_at: row.get::<i64, _>(4) as u64,
                    hops: u32::try_from(row.get::<i64, _>(5)).unwrap_or(u32::MAX),
                };
                (event, row.get(6))
            })
            .collect())
    }

    /// Deletes `subscriber`'s dead letter of event `id`; whether there was one.
    pub async fn remove_dead_letter(
        &self,
        subscriber: &str,
        id: u64,
    ) -> Result<bool, EventLogError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM dead_letters WHERE subscriber = ? AND event_id = ?")
            .bind(subscriber)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err("dead letters cannot be purged"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes `subscriber`'s dead letters up to and including `up_to`, letting retention trim
    /// their events; returns how many.
    pub async fn purge_dead_letters(
        &self,
        subscriber: &str,
        up_to: u64,
    ) -> Result<u64, EventLogError> {
        let done = sqlx::query("DELETE FROM dead_letters WHERE subscriber = ? AND event_id <= ?")
            .bind(subscriber)
            // Past i64 is every event (u64::MAX means all).
            .bind(i64::try_from(up_to).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(err("dead letters cannot be purged"))?;
        Ok(done.rows_affected())
    }

    /// Writes the appends already queued, refuses later ones, and closes the log's connections.
    pub async fn close(&self) {
        // Fails only if the writer already stopped taking commands; it may still be draining.
        let _ = self.writer.send(Command::Close).await;
        let mut done = self.writer_done.clone();
        // The writer never sends on this channel: this returns when it drops its end, i.e. ends.
        while done.changed().await.is_ok() {}
        self.pool.close().await;
    }
}

/// The writer task: takes whatever is queued (up to [`MAX_BATCH`] appends) and writes it in one
/// transaction, until every [`EventLog`] is dropped or one asks it to close.
async fn write_loop(
    pool: SqlitePool,
    head: watch::Sender<u64>,
    retained: Arc<Retained>,
    mut commands: mpsc::Receiver<Command>,
    _done: watch::Sender<()>,
) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    while commands.recv_many(&mut received, MAX_BATCH).await > 0 {
        let mut batch = Vec::with_capacity(received.len());
        for command in received.drain(..) {
            match command {
                Command::Append(append) => batch.push(append),
                // Appends already in the queue are still received, and written, before
                // `recv_many` reports the end.
                Command::Close => commands.close(),
            }
        }
        write(&pool, &head, &retained, batch).await;
    }
}

/// The retention task: trims `every` so often until the log is closed or every [`EventLog`] and
/// the writer are gone (`head` then has no sender).
async fn retain_loop(
    pool: SqlitePool,
    retained: Arc<Retained>,
    trimmed: Arc<AtomicU64>,
    head: watch::Receiver<u64>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        if pool.is_closed() || head.has_changed().is_err() {
            return;
        }
        match trim(&pool, &retained).await {
            Ok(deleted) => {
                trimmed.fetch_add(deleted, Ordering::Relaxed);
            }
            Err(_) if pool.is_closed() => return,
            Err(error) => {
                tracing::warn!(%error, "trimming the event log failed; retrying later");
            }
        }
    }
}

async fn trim(pool: &SqlitePool, retained: &Retained) -> Result<u64, EventLogError> {
    let mut total = 0;
    loop {
        // One statement, so the bound and the deletion see the same cursors; a cursor created
        // meanwhile starts at the head, past everything deleted here.
        let rows = sqlx::query(
            "DELETE FROM events WHERE id IN (
                 SELECT id FROM events
                 WHERE id <= COALESCE((SELECT MIN(position) FROM cursors), 9223372036854775807)
                   AND id NOT IN (SELECT event_id FROM dead_letters)
                 ORDER BY id LIMIT ?)
             RETURNING source, length(CAST(name AS BLOB)) + length(CAST(payload AS BLOB))",
        )
        .bind(TRIM_CHUNK)
        .fetch_all(pool)
        .await
        .map_err(err("cannot be trimmed"))?;
        let deleted = rows.len() as u64;
        let mut freed: std::collections::HashMap<String, u64> = Default::default();
        for row in rows {
            let bytes: i64 = row.get(1);
            *freed.entry(row.get(0)).or_default() += bytes.max(0) as u64;
        }
        for (source, bytes) in freed {
            retained.sub(&source, bytes);
        }
        total += deleted;
        if deleted < TRIM_CHUNK as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Writes `batch` in one transaction, advances `head`, then answers each caller. If the
/// transaction fails, each append is retried in a transaction of its own, so that only the one
/// at fault (if any) fails.
async fn write(
    pool: &SqlitePool,
    head: &watch::Sender<u64>,
    retained: &Retained,
    batch: Vec<Append>,
) {
    if batch.is_empty() {
        return;
    }
    let answers = match insert(pool, &batch).await {
        Ok(ids) => ids.into_iter().map(Ok).collect(),
        Err(error) if batch.len() == 1 => vec![Err(error)],
        Err(error) => {
            tracing::warn!(%error, appends = batch.len(), "a group commit of the event log failed; writing its appends one at a time");
            let mut answers = Vec::with_capacity(batch.len());
            for append in &batch {
                let alone = insert(pool, std::slice::from_ref(append)).await;
                answers.push(alone.map(|ids| ids.into_iter().flatten().collect()));
            }
            answers
        }
    };
    for (append, answer) in batch.iter().zip(&answers) {
        if answer.is_ok() {
            let bytes = append
                .events
                .iter()
                .map(|e| super::quota::event_bytes(&e.name, &e.payload))
                .sum();
            retained.add(&append.source, bytes);
        }
    }
    let last = answers
        .iter()
        .filter_map(|answer| answer.as_ref().ok()?.last())
        .max();
    // Before answering: a caller that sees its append succeed also sees `head` at its ids.
    if let Some(&last) = last {
        head.send_if_modified(|head| {
            let newer = last > *head;
            if newer {
                *head = last;
            }
            newer
        });
    }
    for (append, answer) in batch.into_iter().zip(answers) {
        // The caller may have gone away; its events are logged all the same.
        let _ = append.reply.send(answer);
    }
}

/// Inserts the events of `appends` in one transaction; the ids of each append, ascending.
///
/// The transaction is driven by hand on a connection of its own: when any step fails, the
/// connection is closed (rolling back whatever SQLite left open) rather than returned to the
/// pool. A pooled transaction whose commit failed on a full disk used to leave its connection
/// at a non-zero transaction depth, and every later append failed with it.
async fn insert(pool: &SqlitePool, appends: &[Append]) -> Result<Vec<Vec<u64>>, EventLogError> {
    let mut conn = pool.acquire().await.map_err(err("append failed"))?;
    let result = insert_on(&mut conn, appends).await;
    if result.is_err() {
        conn.close_on_drop();
    }
    result
}

async fn insert_on(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    appends: &[Append],
) -> Result<Vec<Vec<u64>>, EventLogError> {
    // IMMEDIATE takes the write lock up front, waiting (busy timeout) for cursor writes.
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut **conn)
        .await
        .map_err(err("append failed"))?;
    let mut all = Vec::with_capacity(appends.len());
    for append in appends {
        let mut ids = Vec::with_capacity(append.events.len());
        for chunk in append.events.chunks(ROWS_PER_STATEMENT) {
            let mut builder = QueryBuilder::new(
                "INSERT INTO events (name, source, payload, published_at, hops) ",
            );
            builder.push_values(chunk, |mut row, event| {
                row.push_bind(&event.name)
                    .push_bind(&append.source)
                    .push_bind(&event.payload)
                    .push_bind(append.at)
                    .push_bind(i64::from(event.hops));
            });
            builder.push(" RETURNING id");
            let chunk_ids: Vec<i64> = builder
                .build_query_scalar()
                .fetch_all(&mut **conn)
                .await
                .map_err(err("append failed"))?;
            ids.extend(chunk_ids.into_iter().map(|id| id as u64));
        }
        // SQLite does not promise RETURNING's order.
        ids.sort_unstable();
        all.push(ids);
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut **conn)
        .await
        .map_err(err("append not committed"))?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(name: &str) -> Pending {
        Pending {
            name: name.into(),
            payload: "{}".into(),
            hops: 0,
        }
    }

    #[tokio::test]
    async fn append_read_cursor_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.db");
        let log = EventLog::open_with(&path, None).await.unwrap();
        log.append("a", &[pending("a.x.one")]).await.unwrap();
        // A subscriber added now starts after the events that exist.
        assert_eq!(log.ensure_cursor("sub").await.unwrap(), 1);
        log.append("a", &[pending("a.x.two"), pending("a.x.three")])
            .await
            .unwrap();
        assert_eq!(log.head(), 3);
        let events = log.read_after(1, 10).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["a.x.two", "a.x.three"]
        );
        log.advance("sub", 2).await.unwrap();
        log.advance("sub", 1).await.unwrap();
        log.close().await;

        let log = EventLog::open_with(&path, None).await.unwrap();
        assert_eq!(log.head(), 3);
        assert_eq!(log.ensure_cursor("sub").await.unwrap(), 2);
        log.dead_letter("sub", 3, 10, "boom").await.unwrap();
        assert_eq!(
            log.dead_letters("sub").await.unwrap(),
            [(3, "boom".to_string())]
        );
    }

    async fn count(log: &EventLog) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&log.pool)
            .await
            .unwrap()
    }

    fn queued(
        source: &str,
        names: &[&str],
    ) -> (Command, oneshot::Receiver<Result<Vec<u64>, EventLogError>>) {
        let (reply, answer) = oneshot::channel();
        let append = Append {
            source: source.into(),
            events: names.iter().map(|n| pending(n)).collect(),
            at: 1,
            reply,
        };
        (Command::Append(append), answer)
    }

    /// Makes SQLite refuse any event named `poison`. No append the frame makes can fail on its
    /// own (the columns are NOT NULL, but Rust strings never are; statements stay under the
    /// variable limit); short of a payload over SQLite's 1 GB string limit, a trigger is the way
    /// to have one append of a batch fail inside the transaction.
    async fn poison(log: &EventLog) {
        sqlx::raw_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.name = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned event'); END",
        )
        .execute(&log.pool)
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_land_in_order_and_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_with(&dir.path().join("frame.db"), None)
            .await
            .unwrap();
        let mut head = log.subscribe_head();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let source = format!("s{i}");
                    let names: Vec<_> = (0..3)
                        .map(|k| pending(&format!("{source}.e.{k}")))
                        .collect();
                    let ids = log.append_ids(&source, &names).await.unwrap();
                    // Once `append` returns, `head` has reached the caller's events.
                    assert!(log.head() >= *ids.last().unwrap());
                    (source, ids)
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            let (source, ids) = task.await.unwrap();
            assert_eq!(ids.len(), 3);
            assert!(
                ids.windows(2).all(|w| w[1] == w[0] + 1),
                "{source}: {ids:?}"
            );
            all.push((source, ids));
        }
        let mut every: Vec<u64> = all.iter().flat_map(|(_, ids)| ids.clone()).collect();
        every.sort_unstable();
        every.dedup();
        assert_eq!(every, (1..=192).collect::<Vec<u64>>());
        assert_eq!(count(&log).await, 192);
        assert_eq!(log.head(), 192);
        assert_eq!(*head.borrow_and_update(), 192);

        // The table agrees with what each caller was told, names in publication order.
        let stored = log.read_after(0, 1000).await.unwrap();
        for (source, ids) in &all {
            let mine: Vec<_> = stored.iter().filter(|e| &e.source == source).collect();
            assert_eq!(mine.iter().map(|e| e.id).collect::<Vec<_>>(), *ids);
            let names: Vec<_> = mine.iter().map(|e| e.name.clone()).collect();
            assert_eq!(
                names,
                (0..3)
                    .map(|k| format!("{source}.e.{k}"))
                    .collect::<Vec<_>>()
            );
        }
    }

    #[tokio::test]
    async fn a_failing_append_does_not_fail_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_with(&dir.path().join("frame.db"), None)
            .await
            .unwrap();
        poison(&log).await;
        // One batch, as the writer would take it from its queue.
        let (mut batch, mut answers) = (Vec::new(), Vec::new());
        for names in [&["a.x.1", "a.x.2"][..], &["a.x.3", "poison"], &["a.x.4"]] {
            let (Command::Append(append), answer) = queued("a", names) else {
                unreachable!()
            };
            batch.push(append);
            answers.push(answer);
        }
        write(&log.pool, &log.head, &log.retained, batch).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap());
        }
        assert_eq!(results[0].as_ref().unwrap(), &[1, 2]);
        assert!(
            matches!(&results[1], Err(EventLogError::Sql { source, .. }) if source.to_string().contains("poisoned event")),
            "{:?}",
            results[1]
        );
        // The failed append is all or nothing: its good event was not kept either.
        let ok = results[2].as_ref().unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(count(&log).await, 3);
        assert_eq!(log.head(), ok[0]);
        let names: Vec<_> = log
            .read_after(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a.x.1", "a.x.2", "a.x.4"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_append_among_concurrent_ones_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_with(&dir.path().join("frame.db"), None)
            .await
            .unwrap();
        poison(&log).await;
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let name = if i == 7 { "poison" } else { "a.x.y" };
                    log.append("a", &[pending(name)]).await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            assert_eq!(result.is_err(), i == 7, "append {i}: {result:?}");
        }
        assert_eq!(count(&log).await, 31);
        assert_eq!(log.head(), 31);
    }

    #[tokio::test]
    async fn close_writes_what_is_queued_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.db");
        let log = EventLog::open_with(&path, None).await.unwrap();
        // Queued behind a close: whatever the queue accepted must be written.
        let mut answers = Vec::new();
        for i in 0..5 {
            let (command, answer) = queued("a", &[&format!("a.before.{i}")]);
            log.writer.send(command).await.unwrap();
            answers.push(answer);
        }
        log.writer.send(Command::Close).await.unwrap();
        let mut accepted = 5;
        for i in 0..5 {
            let (command, answer) = queued("a", &[&format!("a.after.{i}")]);
            if log.writer.try_send(command).is_ok() {
                answers.push(answer);
                accepted += 1;
            }
        }
        for answer in answers {
            assert!(answer.await.unwrap().is_ok());
        }
        log.close().await;
        assert!(matches!(
            log.append("a", &[pending("a.x.late")]).await,
            Err(EventLogError::Closed)
        ));
        // An empty append never reaches the writer.
        assert!(log.append("a", &[]).await.is_ok());

        let log = EventLog::open_with(&path, None).await.unwrap();
        assert_eq!(count(&log).await, accepted);
        assert_eq!(log.head(), accepted as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_racing_close_are_durable_exactly_when_ok() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.db");
        let log = EventLog::open_with(&path, None).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(&format!("s{i}"), &[pending("x.y.z")]).await })
            })
            .collect();
        log.close().await;
        let mut ok = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(()) => ok.push(format!("s{i}")),
                Err(EventLogError::Closed) => {}
                Err(e) => panic!("append {i}: {e}"),
            }
        }
        let log = EventLog::open_with(&path, None).await.unwrap();
        let mut stored: Vec<_> = log
            .read_after(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.source)
            .collect();
        stored.sort();
        ok.sort();
        assert_eq!(stored, ok);
    }

    fn sized(name: &str, payload_bytes: usize) -> Pending {
        Pending {
            name: name.into(),
            payload: "p".repeat(payload_bytes),
            hops: 0,
        }
    }

    async fn ids(log: &EventLog) -> Vec<u64> {
        log.read_after(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect()
    }

    #[tokio::test]
    async fn retention_trims_what_every_cursor_passed_and_keeps_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.db");
        let log = EventLog::open_with(&path, None).await.unwrap();
        assert_eq!(log.ensure_cursor("s1").await.unwrap(), 0);
        assert_eq!(log.ensure_cursor("s2").await.unwrap(), 0);
        // Ids 1..=5 from `a` (5 + 10 bytes each), 6 and 7 from `b` (5 + 100 bytes each).
        let a: Vec<_> = (0..5).map(|_| sized("a.x.y", 10)).collect();
        log.append("a", &a).await.unwrap();
        log.append("b", &[sized("b.x.y", 100), sized("b.x.y", 100)])
            .await
            .unwrap();
        assert_eq!(log.retained_bytes("a"), 75);
        assert_eq!(log.retained_bytes("b"), 210);
        // Nothing is passed by every cursor yet.
        assert_eq!(log.trim().await.unwrap(), 0);

        log.advance("s1", 5).await.unwrap();
        log.advance("s2", 3).await.unwrap();
        log.dead_letter("s2", 2, 3, "boom").await.unwrap();
        // Up to 3 is passed by both; 2 is a dead letter and stays.
        assert_eq!(log.trim().await.unwrap(), 2);
        assert_eq!(ids(&log).await, [2, 4, 5, 6, 7]);
        assert_eq!(log.retained_bytes("a"), 45);

        log.advance("s2", 7).await.unwrap();
        assert_eq!(log.trim().await.unwrap(), 2);
        assert_eq!(ids(&log).await, [2, 6, 7]);
        // Purged, the dead letter no longer holds its event.
        assert_eq!(log.purge_dead_letters("s2", 2).await.unwrap(), 1);
        assert_eq!(log.trim().await.unwrap(), 1);
        assert_eq!(log.retained_bytes("a"), 0);
        // A removed subscriber no longer holds anything back.
        log.remove_cursor("s1").await.unwrap();
        assert_eq!(log.trim().await.unwrap(), 2);
        assert!(ids(&log).await.is_empty());
        assert_eq!(log.retained_bytes("b"), 0);

        // Ids are never reused after a trim, across a reopen too, and a new cursor starts at
        // the head even with the table empty.
        log.append("b", &[sized("b.x.y", 1)]).await.unwrap();
        log.close().await;
        let log = EventLog::open_with(&path, None).await.unwrap();
        assert_eq!(log.head(), 8);
        assert_eq!(
            log.retained_bytes("b"),
            6,
            "retained bytes are read back at open"
        );
        assert_eq!(log.ensure_cursor("s3").await.unwrap(), 8);
        log.advance("s2", 8).await.unwrap();
        assert_eq!(log.trim().await.unwrap(), 1);
        log.close().await;
        let log = EventLog::open_with(&path, None).await.unwrap();
        assert_eq!(log.head(), 8);
        assert_eq!(log.ensure_cursor("s4").await.unwrap(), 8);
        assert_eq!(log.append_ids("b", &[pending("b.x.z")]).await.unwrap(), [9]);
    }

    #[tokio::test]
    async fn the_retention_task_trims_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.db");
        let log = EventLog::open_with(&path, Some(Duration::from_millis(10)))
            .await
            .unwrap();
        log.ensure_cursor("sub").await.unwrap();
        log.append("a", &[pending("a.x.1"), pending("a.x.2")])
            .await
            .unwrap();
        log.advance("sub", 1).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while ids(&log).await != [2] {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(log.retained_bytes("a"), 7);
    }

    #[tokio::test]
    async fn dead_letter_errors_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_with(&dir.path().join("frame.db"), None)
            .await
            .unwrap();
        let huge = "é".repeat(1 << 19);
        log.dead_letter("s", 1, 3, &huge).await.unwrap();
        let (_, stored) = log.dead_letters("s").await.unwrap().remove(0);
        assert!(stored.len() <= MAX_ERROR_BYTES && stored.len() > MAX_ERROR_BYTES - 4);
        assert!(stored.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn an_old_frame_db_is_migrated_without_losing_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.db");
        {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            // The schema before hops existed.
            sqlx::raw_sql(
                "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
                     source TEXT NOT NULL, payload TEXT NOT NULL, published_at INTEGER NOT NULL);
                 CREATE TABLE cursors (subscriber TEXT PRIMARY KEY, position INTEGER NOT NULL);
                 CREATE TABLE dead_letters (subscriber TEXT NOT NULL, event_id INTEGER NOT NULL,
                     attempts INTEGER NOT NULL, error TEXT NOT NULL, failed_at INTEGER NOT NULL,
                     PRIMARY KEY (subscriber, event_id));
                 INSERT INTO events (name, source, payload, published_at)
                     VALUES ('old.x.y', 'old', '{\"kept\":true}', 42);
                 INSERT INTO cursors VALUES ('sub', 0);",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let log = EventLog::open_with(&path, None).await.unwrap();
        let old = log.read_after(0, 10).await.unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(
            (old[0].name.as_str(), old[0].payload.as_str(), old[0].hops),
            ("old.x.y", "{\"kept\":true}", 0)
        );
        assert_eq!(log.retained_bytes("old"), 7 + 13);
        let mut next = pending("new.x.y");
        next.hops = 3;
        log.append("new", &[next]).await.unwrap();
        assert_eq!(log.read_after(1, 10).await.unwrap()[0].hops, 3);
        log.close().await;
        // Opening again is a no-op migration.
        let log = EventLog::open_with(&path, None).await.unwrap();
        assert_eq!(log.read_after(0, 10).await.unwrap().len(), 2);
        assert_eq!(log.cursor("sub").await.unwrap(), Some(0));
    }

    #[tokio::test]
    async fn the_writer_recovers_after_sqlite_rolled_back_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_with(&dir.path().join("frame.db"), None)
            .await
            .unwrap();
        log.append("a", &[pending("a.x.before")]).await.unwrap();
        // A full disk or an I/O error can make SQLite roll the whole transaction back by itself;
        // RAISE(ROLLBACK) does the same on demand. The connection is then outside any
        // transaction while sqlx's pooled `Transaction` still counts one open: every later
        // `begin` on it failed with "begin_with at non-zero transaction depth".
        sqlx::raw_sql(
            "CREATE TRIGGER full BEFORE INSERT ON events WHEN NEW.name = 'a.x.full'
             BEGIN SELECT RAISE(ROLLBACK, 'database or disk is full'); END",
        )
        .execute(&log.pool)
        .await
        .unwrap();
        for round in 0..3 {
            let failed = log.append("a", &[pending("a.x.full")]).await;
            assert!(
                matches!(&failed, Err(EventLogError::Sql { source, .. }) if source.to_string().contains("full")),
                "round {round}: {failed:?}"
            );
            // The caller was told the truth, and the next appends succeed, whichever pooled
            // connection they get.
            for i in 0..8 {
                log.append("a", &[pending(&format!("a.x.after{round}{i}"))])
                    .await
                    .unwrap_or_else(|e| panic!("append {i} after failure {round}: {e}"));
            }
        }
        let names: Vec<_> = log
            .read_after(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names.len(), 25, "{names:?}");
        assert!(!names.contains(&"a.x.full".to_string()));
    }

    #[tokio::test]
    async fn the_writer_ends_with_the_last_clone() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open_with(&dir.path().join("frame.db"), None)
            .await
            .unwrap();
        let mut head = log.subscribe_head();
        let clone = log.clone();
        drop(log);
        clone.append("a", &[pending("a.x.y")]).await.unwrap();
        drop(clone);
        // `head` closes when its last sender, the writer's, is dropped: the writer has ended.
        tokio::time::timeout(Duration::from_secs(5), async {
            while head.changed().await.is_ok() {}
        })
        .await
        .unwrap();
        assert_eq!(*head.borrow(), 1);
    }
}
