//! `arkham:shard/events`: publish/subscribe through the frame's durable event log.
//!
//! Publications made during a call are held in the store's [`EventsCtx`] and appended to the
//! [`EventLog`] only when the call returns successfully; the [`Dispatcher`] then delivers each
//! event, at least once and in order, to every subscriber whose patterns match.

mod dispatch;
mod log;

use crate::bindings::events::{self, Error};
use crate::shards::grants::Grant;
use crate::shards::manifest::{Manifest, validate_event_name};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use wasmtime::component::HasData;

pub use dispatch::{Dispatcher, EventTarget};
pub use log::{EventLog, EventLogError, StoredEvent};

/// The `[events]` section of the frame config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Most events one request or event handler may publish.
    pub max_per_call: usize,
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Delivery attempts before an event is set aside as a dead letter for that subscriber.
    pub max_attempts: u32,
    /// First retry delay, in milliseconds; it doubles with every failed attempt.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            max_per_call: 100,
            max_payload_bytes: 1 << 20,
            max_attempts: 10,
            retry_base_ms: 100,
            retry_max_ms: 30_000,
        }
    }
}

/// An event a call published, waiting for the call to return.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The event name.
    pub name: String,
    /// The payload.
    pub payload: String,
}

/// The events a call has published and not yet handed to the log. Shared between the store and
/// the frame's side of the call, which makes them durable before a `wasi:http` guest's response
/// is released while the guest may still run.
#[derive(Clone, Default)]
pub struct PendingEvents(Arc<std::sync::Mutex<Vec<Pending>>>);

impl PendingEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the events published so far.
    pub fn take(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.lock())
    }
}

/// A store's events context: what its shard may publish, and what it published so far.
pub struct EventsCtx {
    manifest: Option<(Arc<Manifest>, Arc<Grant>)>,
    config: Arc<EventsConfig>,
    pending: PendingEvents,
    /// Events published by this call so far, handed to the log or not.
    published: usize,
}

impl EventsCtx {
    /// A context for a shard granted the events service; it may publish what both its manifest
    /// declares and its grant allows.
    pub fn granted(manifest: Arc<Manifest>, grant: Arc<Grant>, config: Arc<EventsConfig>) -> Self {
        Self {
            manifest: Some((manifest, grant)),
            config,
            pending: PendingEvents::default(),
            published: 0,
        }
    }

    /// A context for a shard without the events service.
    pub fn denied(config: Arc<EventsConfig>) -> Self {
        Self {
            manifest: None,
            config,
            pending: PendingEvents::default(),
            published: 0,
        }
    }

    /// Takes the events published so far.
    pub fn take_pending(&mut self) -> Vec<Pending> {
        self.pending.take()
    }

    /// The call's pending events, shared.
    pub fn pending(&self) -> PendingEvents {
        self.pending.clone()
    }

    fn publish(&mut self, name: String, payload: String) -> Result<(), Error> {
        let Some((manifest, grant)) = &self.manifest else {
            return Err(Error::Denied(
                "the events service is not granted to this shard; declare `events` in its manifest's services"
                    .to_string(),
            ));
        };
        validate_event_name(&name).map_err(Error::InvalidName)?;
        if !manifest.may_publish(&name) || !grant.may_publish(&name) {
            return Err(Error::Denied(format!(
                "shard `{}` may not publish `{name}`: it publishes only names starting with `{}.` that its manifest lists in events.publishes",
                manifest.name, manifest.name
            )));
        }
        if payload.len() > self.config.max_payload_bytes {
            return Err(Error::LimitExceeded(format!(
                "the payload is {} bytes; payloads may be at most {}",
                payload.len(),
                self.config.max_payload_bytes
            )));
        }
        // Counted over the call, not what is still pending: events made durable early (before
        // a `wasi:http` response) count too.
        if self.published >= self.config.max_per_call {
            return Err(Error::LimitExceeded(format!(
                "a call may publish at most {} events",
                self.config.max_per_call
            )));
        }
        self.published += 1;
        self.pending.lock().push(Pending { name, payload });
        Ok(())
    }
}

/// The view the `Host` trait is implemented on.
pub struct EventsView<'a> {
    /// The store's events context.
    pub ctx: &'a mut EventsCtx,
}

/// [`HasData`] marker for adding the interface to a linker.
pub struct Events;

impl HasData for Events {
    type Data<'a> = EventsView<'a>;
}

/// Adds `arkham:shard/events` to `linker`, with `view` projecting the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> EventsView<'_>,
) -> wasmtime::Result<()> {
    events::add_to_linker::<T, Events>(linker, view)
}

impl events::Host for EventsView<'_> {
    async fn publish(
        &mut self,
        name: String,
        payload: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.ctx.publish(name, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EventsCtx {
        let manifest = Manifest::parse(
            "name = \"packets\"\nversion = \"0.1.0\"\n[services]\nrequired = [\"events\"]\n[events]\npublishes = [\"packets.packet.*\"]\n",
            "test",
        )
        .unwrap();
        let config = EventsConfig {
            max_per_call: 2,
            max_payload_bytes: 10,
            ..Default::default()
        };
        let grant = Arc::new(Grant::requested_by(&manifest));
        EventsCtx::granted(Arc::new(manifest), grant, Arc::new(config))
    }

    #[test]
    fn publish_rules() {
        let mut ctx = ctx();
        assert!(
            ctx.publish("packets.packet.created".into(), "{}".into())
                .is_ok()
        );
        assert!(matches!(
            ctx.publish("documents.document.created".into(), "{}".into()),
            Err(Error::Denied(_))
        ));
        assert!(matches!(
            ctx.publish("packets.content.added".into(), "{}".into()),
            Err(Error::Denied(_))
        ));
        assert!(matches!(
            ctx.publish("packets".into(), "{}".into()),
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(
            ctx.publish("packets.packet.updated".into(), "x".repeat(11)),
            Err(Error::LimitExceeded(_))
        ));
        assert!(
            ctx.publish("packets.packet.updated".into(), "{}".into())
                .is_ok()
        );
        assert!(matches!(
            ctx.publish("packets.packet.updated".into(), "{}".into()),
            Err(Error::LimitExceeded(_))
        ));
        assert_eq!(ctx.take_pending().len(), 2);
        let mut denied = EventsCtx::denied(Arc::new(EventsConfig::default()));
        assert!(matches!(
            denied.publish("a.b.c".into(), "{}".into()),
            Err(Error::Denied(_))
        ));
    }
}
