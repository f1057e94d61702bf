//! `arkham:shard/events`: publish/subscribe through the frame's durable event log.
//!
//! Publications made during a call are held in the store's [`EventsCtx`] and appended to the
//! [`EventBus`] (the embedded [`EventLog`], or NATS JetStream: [`JetStreamBus`]) only when the
//! call returns successfully; the [`Dispatcher`] then delivers each event, at least once and in
//! order, to every subscriber whose patterns match.

//!
//! Bounds (SECURITY.md): per publishing shard, token buckets on events and bytes per second and a
//! cap on the bytes of its events still retained; a hop limit on chains of handlers publishing
//! while handling; retention trims what every subscriber has passed.

mod bus;
mod dispatch;
mod jetstream;
mod log;
pub mod names;
mod policy;
mod quota;

use crate::bindings::events::{self, Error};
use names::validate_event_name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::HasData;

pub use bus::{EventBus, EventBusError, EventsBackend};
pub use dispatch::{Delivery, Dispatcher, EventTarget};
pub use jetstream::{ACK_WAIT, JetStreamBus, JetStreamError};
pub use log::{EventLog, EventLogError, StoredEvent};
pub use policy::{PublishPolicy, ReceivePolicy};
pub use quota::{EventsShard, PublishLimits};

/// The `[events]` section of the frame config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Where events are kept: `"embedded"` (the frame's own log, the default) or `"nats"`
    /// (JetStream, configured in `[nats]`).
    pub backend: EventsBackend,
    /// With `backend = "nats"`: the longest an event stays in the stream, delivered or not, in
    /// seconds (0: no limit).
    pub stream_max_age_s: u64,
    /// With `backend = "nats"`: the most bytes the stream holds; past it publications fail
    /// (`discard = new`) until subscribers catch up.
    pub stream_max_bytes: u64,
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
    /// Events one shard may publish per second, sustained (all its instances together).
    pub publish_rate: u64,
    /// Events one shard may publish at once, above the sustained rate.
    pub publish_burst: u64,
    /// Bytes (name + payload) one shard may publish per second, sustained.
    pub publish_bytes_rate: u64,
    /// Bytes one shard may publish at once, above the sustained rate.
    pub publish_bytes_burst: u64,
    /// Bytes of one shard's events the log may hold before retention trims them; past it, its
    /// publications fail with `limit-exceeded`.
    pub max_retained_bytes_per_shard: u64,
    /// Longest chain of event handlers publishing while handling: an event published by a request
    /// is at hop 0, one published by a handler of an event at hop `n` is at `n + 1`; past
    /// `max_hops` publishing fails with `limit-exceeded`.
    pub max_hops: u32,
    /// Per-shard overrides of the publication limits, by shard name: `[events.shards.packets]`.
    pub shards: BTreeMap<String, EventsOverride>,
}

/// Publication limits of one shard that differ from the `[events]` defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsOverride {
    /// See [`EventsConfig::publish_rate`].
    pub publish_rate: Option<u64>,
    /// See [`EventsConfig::publish_burst`].
    pub publish_burst: Option<u64>,
    /// See [`EventsConfig::publish_bytes_rate`].
    pub publish_bytes_rate: Option<u64>,
    /// See [`EventsConfig::publish_bytes_burst`].
    pub publish_bytes_burst: Option<u64>,
    /// See [`EventsConfig::max_retained_bytes_per_shard`].
    pub max_retained_bytes: Option<u64>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            backend: EventsBackend::Embedded,
            stream_max_age_s: 7 * 24 * 3600,
            stream_max_bytes: 1 << 30,
            max_per_call: 100,
            max_payload_bytes: 1 << 20,
            max_attempts: 10,
            retry_base_ms: 100,
            retry_max_ms: 30_000,
            // About what the log appends per second on a small machine: one shard may use all of
            // it, no more; disk growth is bounded by the byte rate.
            publish_rate: 20_000,
            publish_burst: 100_000,
            publish_bytes_rate: 16 << 20,
            publish_bytes_burst: 64 << 20,
            max_retained_bytes_per_shard: 256 << 20,
            max_hops: 8,
            shards: BTreeMap::new(),
        }
    }
}

impl EventsConfig {
    /// Checks the section; the message names the field to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("events.max_attempts must be at least 1".into());
        }
        if self.backend == EventsBackend::Nats && self.stream_max_bytes == 0 {
            return Err("events.stream_max_bytes must be at least 1".into());
        }
        let mut all = vec![(String::new(), self.limits_for(""))];
        all.extend(
            self.shards
                .keys()
                .map(|name| (format!("shards.{name}."), self.limits_for(name))),
        );
        for (prefix, l) in all {
            if l.rate == 0 || l.burst == 0 || l.bytes_rate == 0 || l.bytes_burst == 0 {
                return Err(format!(
                    "events.{prefix}publish_rate, publish_burst, publish_bytes_rate and \
                     publish_bytes_burst must be at least 1"
                ));
            }
        }
        Ok(())
    }
}

/// An event a call published, waiting for the call to return.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The event name.
    pub name: String,
    /// The payload.
    pub payload: String,
    /// Handlers between the request that started the chain and this event (0: published by a
    /// request).
    pub hops: u32,
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
    /// What the shard may publish and its quota; `None` without the events service.
    granted: Option<(Arc<PublishPolicy>, EventsShard)>,
    config: Arc<EventsConfig>,
    pending: PendingEvents,
    /// Events published by this call so far, handed to the log or not.
    published: usize,
    /// Bytes this call published, counted against the shard's retained-bytes cap before they
    /// land (those made durable early stay counted: conservative).
    pending_bytes: u64,
    /// The hop of what this call publishes.
    hops: u32,
}

impl EventsCtx {
    /// A context for a shard granted the events service; it may publish what `policy` allows,
    /// within its quota `shard`.
    pub fn granted(policy: Arc<PublishPolicy>, shard: EventsShard) -> Self {
        Self {
            config: shard.config().clone(),
            granted: Some((policy, shard)),
            pending: PendingEvents::default(),
            published: 0,
            pending_bytes: 0,
            hops: 0,
        }
    }

    /// A context for a shard without the events service.
    pub fn denied(config: Arc<EventsConfig>) -> Self {
        Self {
            granted: None,
            config,
            pending: PendingEvents::default(),
            published: 0,
            pending_bytes: 0,
            hops: 0,
        }
    }

    /// Sets the hop of what this call publishes: the handled event's hop plus one (a request's
    /// publications are at hop 0, the default).
    pub fn set_hops(&mut self, hops: u32) {
        self.hops = hops;
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
        let Some((policy, quota)) = &self.granted else {
            return Err(Error::Denied(
                "the events service is not granted to this shard; declare `events` in its manifest's services"
                    .to_string(),
            ));
        };
        validate_event_name(&name).map_err(Error::InvalidName)?;
        if !policy.may_publish(&name) {
            let shard = policy.shard();
            return Err(Error::Denied(format!(
                "shard `{shard}` may not publish `{name}`: it publishes only names starting with `{shard}.` that its manifest lists in events.publishes",
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
        if self.hops > self.config.max_hops {
            return Err(Error::LimitExceeded(format!(
                "this event would be {} handlers away from the request that started its chain; \
                 events published while handling events may be at most events.max_hops = {} \
                 deep (is a handler republishing what it receives?)",
                self.hops, self.config.max_hops
            )));
        }
        let bytes = quota::event_bytes(&name, &payload);
        quota
            .admit(bytes, self.pending_bytes)
            .map_err(Error::LimitExceeded)?;
        self.pending_bytes += bytes;
        self.published += 1;
        let hops = self.hops;
        self.pending.lock().push(Pending {
            name,
            payload,
            hops,
        });
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
        let config = EventsConfig {
            max_per_call: 2,
            max_payload_bytes: 10,
            ..Default::default()
        };
        let shard = EventsShard::with_retained("packets", Arc::new(config), Arc::default());
        EventsCtx::granted(packets(), shard)
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

    /// What a shard `packets` declaring and granted `packets.packet.*` may publish.
    fn packets() -> Arc<PublishPolicy> {
        let patterns = vec!["packets.packet.*".to_string()];
        Arc::new(PublishPolicy::new("packets", patterns.clone(), patterns))
    }

    fn limited(config: EventsConfig, retained: Arc<quota::Retained>) -> EventsCtx {
        let shard = EventsShard::with_retained("packets", Arc::new(config), retained);
        EventsCtx::granted(packets(), shard)
    }

    fn refusal(result: Result<(), Error>) -> String {
        match result {
            Err(Error::LimitExceeded(message)) => message,
            other => panic!("expected limit-exceeded, got {other:?}"),
        }
    }

    const NAME: &str = "packets.packet.created";

    #[test]
    fn the_rate_quotas_are_per_shard_and_shared_by_its_instances() {
        let config = EventsConfig {
            publish_rate: 1,
            publish_burst: 3,
            publish_bytes_rate: 1,
            publish_bytes_burst: 1000,
            ..Default::default()
        };
        let retained = Arc::new(quota::Retained::default());
        let policy = packets();
        let shard = EventsShard::with_retained("packets", Arc::new(config), retained);
        // Two instances of one shard share its buckets.
        let mut one = EventsCtx::granted(policy.clone(), shard.clone());
        let mut two = EventsCtx::granted(policy, shard);
        assert!(one.publish(NAME.into(), "{}".into()).is_ok());
        assert!(two.publish(NAME.into(), "{}".into()).is_ok());
        assert!(one.publish(NAME.into(), "{}".into()).is_ok());
        let message = refusal(two.publish(NAME.into(), "{}".into()));
        assert!(message.contains("events.publish_rate"), "{message}");
        assert_eq!(one.take_pending().len() + two.take_pending().len(), 3);

        // Bytes: a 1000-byte burst admits one 900-byte event, not a second.
        let config = EventsConfig {
            publish_bytes_rate: 1,
            publish_bytes_burst: 1000,
            ..Default::default()
        };
        let mut ctx = limited(config, Arc::default());
        assert!(ctx.publish(NAME.into(), "x".repeat(900)).is_ok());
        let message = refusal(ctx.publish(NAME.into(), "x".repeat(900)));
        assert!(message.contains("events.publish_bytes_rate"), "{message}");
        // A small one still fits: a refusal charged nothing.
        assert!(ctx.publish(NAME.into(), "x".repeat(50)).is_ok());

        // A per-shard override applies to that shard only.
        let config = EventsConfig {
            shards: BTreeMap::from([(
                "packets".to_string(),
                EventsOverride {
                    publish_burst: Some(1),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        assert_eq!(config.limits_for("packets").burst, 1);
        assert_eq!(
            config.limits_for("other").burst,
            EventsConfig::default().publish_burst
        );
        let mut ctx = limited(config, Arc::default());
        assert!(ctx.publish(NAME.into(), "{}".into()).is_ok());
        refusal(ctx.publish(NAME.into(), "{}".into()));
    }

    #[test]
    fn the_retained_bytes_cap_counts_the_log_and_the_call() {
        let config = EventsConfig {
            max_retained_bytes_per_shard: 1000,
            ..Default::default()
        };
        let retained = Arc::new(quota::Retained::default());
        retained.add("packets", 800);
        // Another shard's events do not count against packets.
        retained.add("flooder", 1 << 30);
        let mut ctx = limited(config, retained.clone());
        // 22 + 100 bytes fit under 1000 with 800 retained; a second such event does not, as
        // the first is counted while it waits for the call to end.
        assert!(ctx.publish(NAME.into(), "x".repeat(100)).is_ok());
        let message = refusal(ctx.publish(NAME.into(), "x".repeat(100)));
        assert!(
            message.contains("events.max_retained_bytes_per_shard"),
            "{message}"
        );
        // Once retention trims, it may publish again.
        ctx.take_pending();
        retained.sub("packets", 800);
        assert!(ctx.publish(NAME.into(), "x".repeat(100)).is_ok());
    }

    #[test]
    fn publications_past_max_hops_are_refused() {
        let config = EventsConfig {
            max_hops: 2,
            ..Default::default()
        };
        let mut ctx = limited(config, Arc::default());
        assert!(ctx.publish(NAME.into(), "{}".into()).is_ok());
        ctx.set_hops(2);
        assert!(ctx.publish(NAME.into(), "{}".into()).is_ok());
        let hops: Vec<_> = ctx.take_pending().iter().map(|p| p.hops).collect();
        assert_eq!(hops, [0, 2]);
        ctx.set_hops(3);
        let message = refusal(ctx.publish(NAME.into(), "{}".into()));
        assert!(message.contains("events.max_hops = 2"), "{message}");
        assert!(ctx.take_pending().is_empty());
    }

    #[test]
    fn zero_rates_are_invalid() {
        assert!(EventsConfig::default().validate().is_ok());
        let config = EventsConfig {
            shards: BTreeMap::from([(
                "x".to_string(),
                EventsOverride {
                    publish_rate: Some(0),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.contains("events.shards.x.publish_rate"), "{error}");
    }
}
