//! The durable event log: an append-only table of events and one cursor per subscriber, in the
//! frame's own SQLite database.

use super::Pending;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// An error of the event log.
#[derive(Debug, thiserror::Error)]
#[error("event log {what}: {source}")]
pub struct EventLogError {
    what: &'static str,
    source: sqlx::Error,
}

fn err(what: &'static str) -> impl FnOnce(sqlx::Error) -> EventLogError {
    move |source| EventLogError { what, source }
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
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    published_at INTEGER NOT NULL
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
";

/// The frame's event log.
#[derive(Clone)]
pub struct EventLog {
    pool: SqlitePool,
    /// The id of the newest event; dispatchers wait on it.
    head: watch::Sender<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl EventLog {
    /// Opens (creating) the log in the SQLite file at `path`.
    pub async fn open(path: &Path) -> Result<Self, EventLogError> {
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
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(err("schema cannot be created"))?;
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
            .fetch_one(&pool)
            .await
            .map_err(err("cannot be read"))?;
        let (head, _) = watch::channel(head as u64);
        Ok(Self { pool, head })
    }

    /// Appends events published by `source`, atomically, and wakes the dispatchers.
    pub async fn append(&self, source: &str, events: &[Pending]) -> Result<(), EventLogError> {
        if events.is_empty() {
            return Ok(());
        }
        let at = now_ms() as i64;
        let mut builder =
            QueryBuilder::new("INSERT INTO events (name, source, payload, published_at) ");
        builder.push_values(events, |mut row, event| {
            row.push_bind(&event.name)
                .push_bind(source)
                .push_bind(&event.payload)
                .push_bind(at);
        });
        builder.push(" RETURNING id");
        let ids: Vec<i64> = builder
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(err("append failed"))?;
        if let Some(last) = ids.iter().max() {
            self.head.send_if_modified(|head| {
                let newer = (*last as u64) > *head;
                if newer {
                    *head = *last as u64;
                }
                newer
            });
        }
        Ok(())
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
             SELECT ?, COALESCE(MAX(id), 0) FROM events
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

    /// Deletes `subscriber`'s cursor (the shard was removed).
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
            "SELECT id, name, source, payload, published_at FROM events WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(position as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err("cannot be read"))?;
        Ok(rows
            .into_iter()
            .map(|row| StoredEvent {
                id: row.get::<i64, _>(0) as u64,
                name: row.get(1),
                source: row.get(2),
                payload: row.get(3),
                published_at: row.get::<i64, _>(4) as u64,
            })
            .collect())
    }

    /// Records that `subscriber` gave up on `event_id` after `attempts` attempts.
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
        .bind(error)
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

    /// Closes the log's connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(name: &str) -> Pending {
        Pending {
            name: name.into(),
            payload: "{}".into(),
        }
    }

    #[tokio::test]
    async fn append_read_cursor_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.db");
        let log = EventLog::open(&path).await.unwrap();
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

        let log = EventLog::open(&path).await.unwrap();
        assert_eq!(log.head(), 3);
        assert_eq!(log.ensure_cursor("sub").await.unwrap(), 2);
        log.dead_letter("sub", 3, 10, "boom").await.unwrap();
        assert_eq!(
            log.dead_letters("sub").await.unwrap(),
            [(3, "boom".to_string())]
        );
    }
}
