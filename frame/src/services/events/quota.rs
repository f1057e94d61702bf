//! What one publishing shard may add to the log: token buckets on events and bytes per second,
//! and a cap on the bytes of its events the log still retains (not yet trimmed by retention).
//!
//! Checked at `publish`, so the guest learns at once (`limit-exceeded`) and a flood fills only
//! its own quota. Shared by every instance of the shard.

use super::EventsConfig;
use crate::services::rate::{CountAndBytes, Refused};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Bytes an event counts for: its name and payload (the row's fixed overhead is bounded by the
/// event rate instead).
pub(crate) fn event_bytes(name: &str, payload: &str) -> u64 {
    (name.len() + payload.len()) as u64
}

/// Bytes of retained events per publishing shard, kept in memory beside the log: read from the
/// table when the log opens, raised by every commit, lowered by every trim.
#[derive(Debug, Default)]
pub(crate) struct Retained(Mutex<HashMap<String, u64>>);

impl Retained {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, source: &str) -> u64 {
        self.map().get(source).copied().unwrap_or(0)
    }

    pub(crate) fn add(&self, source: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut map = self.map();
        let entry = map.entry(source.to_string()).or_default();
        *entry = entry.saturating_add(bytes);
    }

    /// Replaces every count (a backend that recounts from its engine).
    pub(crate) fn replace(&self, counts: HashMap<String, u64>) {
        *self.map() = counts;
    }

    pub(crate) fn sub(&self, source: &str, bytes: u64) {
        let mut map = self.map();
        if let Some(entry) = map.get_mut(source) {
            *entry = entry.saturating_sub(bytes);
            if *entry == 0 {
                map.remove(source);
            }
        }
    }
}

/// The publication limits of one shard: `[events]` with its `[events.shards.<name>]` applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishLimits {
    /// Events per second, sustained.
    pub rate: u64,
    /// Events at once.
    pub burst: u64,
    /// Bytes per second, sustained.
    pub bytes_rate: u64,
    /// Bytes at once.
    pub bytes_burst: u64,
    /// Bytes of its events the log may retain.
    pub max_retained_bytes: u64,
}

impl EventsConfig {
    /// The limits `shard` publishes under.
    pub fn limits_for(&self, shard: &str) -> PublishLimits {
        let o = self.shards.get(shard).cloned().unwrap_or_default();
        PublishLimits {
            rate: o.publish_rate.unwrap_or(self.publish_rate),
            burst: o.publish_burst.unwrap_or(self.publish_burst),
            bytes_rate: o.publish_bytes_rate.unwrap_or(self.publish_bytes_rate),
            bytes_burst: o.publish_bytes_burst.unwrap_or(self.publish_bytes_burst),
            max_retained_bytes: o
                .max_retained_bytes
                .unwrap_or(self.max_retained_bytes_per_shard),
        }
    }
}

struct Inner {
    name: String,
    config: Arc<EventsConfig>,
    limits: PublishLimits,
    buckets: Mutex<CountAndBytes>,
    retained: Arc<Retained>,
}

/// One publishing shard's share of the event log; cheap to clone, shared by its instances.
#[derive(Clone)]
pub struct EventsShard(Arc<Inner>);

impl EventsShard {
    /// The quota of `name` under `config`, accounting retained bytes in `log`.
    pub fn new(name: &str, config: Arc<EventsConfig>, log: &super::EventLog) -> Self {
        Self::with_retained(name, config, log.retained())
    }

    /// The quota of `name` under `config`, accounting retained bytes in `bus`.
    pub fn on_bus(name: &str, config: Arc<EventsConfig>, bus: &super::EventBus) -> Self {
        Self::with_retained(name, config, bus.retained())
    }

    pub(crate) fn with_retained(
        name: &str,
        config: Arc<EventsConfig>,
        retained: Arc<Retained>,
    ) -> Self {
        let limits = config.limits_for(name);
        let buckets = CountAndBytes::new(
            limits.rate,
            limits.burst,
            limits.bytes_rate,
            limits.bytes_burst,
            Instant::now(),
        );
        Self(Arc::new(Inner {
            name: name.to_string(),
            config,
            limits,
            buckets: Mutex::new(buckets),
            retained,
        }))
    }

    /// The events config the shard runs under.
    pub fn config(&self) -> &Arc<EventsConfig> {
        &self.0.config
    }

    /// The shard's limits.
    pub fn limits(&self) -> &PublishLimits {
        &self.0.limits
    }

    /// Admits one event of `bytes`, with `held` bytes already published by the same call and
    /// not yet appended; charges the rate buckets only when it is admitted.
    pub(crate) fn admit(&self, bytes: u64, held: u64) -> Result<(), String> {
        let limits = &self.0.limits;
        let retained = self.0.retained.get(&self.0.name);
        if retained.saturating_add(held).saturating_add(bytes) > limits.max_retained_bytes {
            return Err(format!(
                "the event log already holds {retained} bytes of events from shard `{}` (limit \
                 events.max_retained_bytes_per_shard = {}); they are trimmed once every \
                 subscriber has received them, so publish again later",
                self.0.name, limits.max_retained_bytes
            ));
        }
        let mut buckets = self.0.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.try_take(bytes, Instant::now()) {
            Ok(()) => Ok(()),
            Err(Refused::Count) => Err(format!(
                "shard `{}` publishes more than its rate of {} events per second (burst {}; \
                 limits events.publish_rate and events.publish_burst)",
                self.0.name, limits.rate, limits.burst
            )),
            Err(Refused::Bytes) => Err(format!(
                "shard `{}` publishes more than its rate of {} bytes per second (burst {}; \
                 limits events.publish_bytes_rate and events.publish_bytes_burst)",
                self.0.name, limits.bytes_rate, limits.bytes_burst
            )),
        }
    }
}
