//! The events seam: where publications go and where subscribers' positions live. It sits above
//! the cursor/retry loop of the embedded log, since JetStream has durable consumers of its own;
//! rate limits, hops, names and grants are checked above it (`quota.rs`, `mod.rs`) for both.

use super::Pending;
use super::jetstream::{JetStreamBus, JetStreamError};
use super::log::{EventLog, EventLogError, StoredEvent};
use super::quota::Retained;
use std::sync::Arc;

/// Undelivered events counted at most by [`EventBus::lag`] on the embedded log.
pub const LAG_SCAN: u32 = 10_000;

/// How far a subscriber is behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lag {
    /// Events it subscribes to that it has not had delivered.
    pub behind: u64,
    /// When the oldest of them was published (ms since the Unix epoch), when known.
    pub oldest_published_at: Option<u64>,
}

/// Which engine holds the events: `[events] backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsBackend {
    /// The frame's own log in `frame.db` (the default).
    #[default]
    Embedded,
    /// NATS JetStream, with the `[nats]` section.
    Nats,
}

/// An error of the event bus, whichever its engine.
#[derive(Debug, thiserror::Error)]
pub enum EventBusError {
    /// The embedded log failed.
    #[error(transparent)]
    Log(#[from] EventLogError),
    /// JetStream failed.
    #[error(transparent)]
    Nats(#[from] JetStreamError),
}

/// The event bus: the embedded log or JetStream. Cheap to clone.
#[derive(Clone)]
pub enum EventBus {
    /// The frame's own SQLite log.
    Embedded(EventLog),
    /// NATS JetStream.
    Nats(JetStreamBus),
}

impl From<EventLog> for EventBus {
    fn from(log: EventLog) -> Self {
        Self::Embedded(log)
    }
}

impl From<JetStreamBus> for EventBus {
    fn from(bus: JetStreamBus) -> Self {
        Self::Nats(bus)
    }
}

impl EventBus {
    /// Makes a successful call's publications durable; they are when this returns `Ok`.
    pub async fn append(&self, source: &str, events: &[Pending]) -> Result<(), EventBusError> {
        match self {
            Self::Embedded(log) => Ok(log.append(source, events).await?),
            Self::Nats(bus) => Ok(bus.append(source, events).await?),
        }
    }

    /// Forgets a subscriber (removed, or no longer subscribing) so it holds nothing back.
    pub async fn remove_subscriber(&self, subscriber: &str) -> Result<(), EventBusError> {
        match self {
            Self::Embedded(log) => Ok(log.remove_cursor(subscriber).await?),
            Self::Nats(bus) => Ok(bus.remove_subscriber(subscriber).await?),
        }
    }

    /// Events `subscriber` gave up on, as (event id, error), oldest first, at most `limit`.
    pub async fn dead_letters(
        &self,
        subscriber: &str,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, EventBusError> {
        match self {
            Self::Embedded(log) => {
                let mut all = log.dead_letters(subscriber).await?;
                all.truncate(limit);
                Ok(all)
            }
            Self::Nats(bus) => Ok(bus.dead_letters(subscriber, limit).await?),
        }
    }

    /// How far `subscriber` is behind, and since when: events it `wants` not yet delivered (at
    /// most [`LAG_SCAN`] counted) and the publication time of the oldest of them (known on the
    /// embedded log). The embedded log counts from the cursor as last saved (once per batch of
    /// deliveries), so it may count a batch already delivered.
    pub async fn lag(
        &self,
        subscriber: &str,
        wants: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Lag, EventBusError> {
        match self {
            Self::Embedded(log) => {
                let Some(cursor) = log.cursor(subscriber).await? else {
                    return Ok(Lag::default());
                };
                let behind: Vec<StoredEvent> = log
                    .read_after(cursor, LAG_SCAN)
                    .await?
                    .into_iter()
                    .filter(|e| wants(&e.name))
                    .collect();
                Ok(Lag {
                    behind: behind.len() as u64,
                    oldest_published_at: behind.first().map(|e| e.published_at),
                })
            }
            Self::Nats(bus) => Ok(Lag {
                behind: bus.lag(subscriber).await?.unwrap_or(0),
                oldest_published_at: None,
            }),
        }
    }

    /// The events the log holds now, and their bytes (payloads and names on the embedded log;
    /// the stream's bytes on JetStream).
    pub async fn size(&self) -> Result<(u64, u64), EventBusError> {
        match self {
            Self::Embedded(log) => Ok(log.size().await?),
            Self::Nats(bus) => Ok(bus.size().await?),
        }
    }

    /// The events `subscriber` gave up on, with why each failed, oldest first, at most `limit`.
    pub async fn dead_letter_events(
        &self,
        subscriber: &str,
        limit: usize,
    ) -> Result<Vec<(StoredEvent, String)>, EventBusError> {
        match self {
            Self::Embedded(log) => Ok(log.dead_letter_events(subscriber, limit).await?),
            Self::Nats(bus) => Ok(bus.dead_letter_events(subscriber, limit).await?),
        }
    }

    /// Events retention removed: since the log was opened (embedded), since the stream began
    /// (JetStream).
    pub async fn trimmed(&self) -> Result<u64, EventBusError> {
        match self {
            Self::Embedded(log) => Ok(log.trimmed()),
            Self::Nats(bus) => Ok(bus.trimmed().await?),
        }
    }

    /// The newest events the log holds (up to `limit`), newest first.
    pub async fn recent(&self, limit: u32) -> Result<Vec<StoredEvent>, EventBusError> {
        match self {
            Self::Embedded(log) => Ok(log.recent(limit).await?),
            Self::Nats(bus) => Ok(bus.recent(limit as usize).await?),
        }
    }

    /// Deletes `subscriber`'s dead letter of event `id`; whether there was one.
    pub async fn remove_dead_letter(
        &self,
        subscriber: &str,
        id: u64,
    ) -> Result<bool, EventBusError> {
        match self {
            Self::Embedded(log) => Ok(log.remove_dead_letter(subscriber, id).await?),
            Self::Nats(bus) => Ok(bus.remove_dead_letter(subscriber, id).await?),
        }
    }

    /// Deletes `subscriber`'s dead letters of events up to and including `up_to`.
    pub async fn purge_dead_letters(
        &self,
        subscriber: &str,
        up_to: u64,
    ) -> Result<u64, EventBusError> {
        match self {
            Self::Embedded(log) => Ok(log.purge_dead_letters(subscriber, up_to).await?),
            Self::Nats(bus) => Ok(bus.purge_dead_letters(subscriber, up_to).await?),
        }
    }

    /// Makes what is queued durable and refuses later appends.
    pub async fn close(&self) {
        match self {
            Self::Embedded(log) => log.close().await,
            Self::Nats(bus) => bus.close().await,
        }
    }

    /// The embedded log, if that is the engine.
    pub fn as_embedded(&self) -> Option<&EventLog> {
        match self {
            Self::Embedded(log) => Some(log),
            Self::Nats(_) => None,
        }
    }

    pub(crate) fn retained(&self) -> Arc<Retained> {
        match self {
            Self::Embedded(log) => log.retained(),
            Self::Nats(bus) => bus.retained(),
        }
    }
}
