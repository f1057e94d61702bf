//! The events seam: where publications go and where subscribers' positions live. It sits above
//! the cursor/retry loop of the embedded log, since JetStream has durable consumers of its own;
//! rate limits, hops, names and grants are checked above it (`quota.rs`, `mod.rs`) for both.

use super::Pending;
use super::jetstream::{JetStreamBus, JetStreamError};
use super::log::{EventLog, EventLogError, StoredEvent};
use super::quota::Retained;
use std::sync::Arc;

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
