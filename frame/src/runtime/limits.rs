//! Resource limits for shard instances: the `[limits]` section of the frame config.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Limits applied to every shard instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Memory one instance may use, in bytes: all its linear memories together.
    pub memory_bytes: u64,
    /// Table elements one instance may have, all its tables together.
    pub table_elements: u32,
    /// Instances alive at once across all shards (the pooling allocator's slots).
    pub instances_total: u32,
    /// Instances alive at once for one shard; requests past it get 503. Kept well below
    /// `instances_total` so that no shard can hold every slot.
    pub instances_per_shard: u32,
    /// Instances reserved for each shard: it gets them even while other shards hold every other
    /// slot. Reservations take at most half of `instances_total`.
    pub instances_reserved_per_shard: u32,
    /// Linear memories one component may define (over all its core instances); a component
    /// with more is refused at install.
    pub max_memories_per_component: u32,
    /// Tables one component may define; a component with more is refused at install.
    pub max_tables_per_component: u32,
    /// Core module instances one component may create; a component with more is refused at
    /// install.
    pub max_core_instances_per_component: u32,
    /// Wall-clock time one request may take, in milliseconds, whether the guest runs or waits
    /// in a host call; past it the request gets 504 and the instance is stopped.
    pub request_timeout_ms: u64,
    /// Wall-clock time one event delivery may take, in milliseconds.
    pub event_timeout_ms: u64,
    /// Largest request body, in bytes; larger ones get 413.
    pub max_request_bytes: usize,
    /// Largest response body, in bytes; a larger declared length gets 502, and a body that grows
    /// past it while streaming is cut off.
    pub max_response_bytes: u64,
    /// Requests one shard may receive per second, on average (a token bucket refilled at this
    /// rate); past it a request gets 429 with `retry-after`. `0` turns the limit off. The
    /// default is far above what one frame serves: operators lower it per shard.
    pub requests_per_second: u64,
    /// Requests one shard may receive at once above its rate (the bucket's size); at least 1.
    pub request_burst: u64,
    /// Per-shard overrides, by shard name: `[limits.shards.packets]`.
    pub shards: BTreeMap<String, LimitsOverride>,
}

/// Limits of one shard that differ from the defaults. Memory can only be lowered below
/// `limits.memory_bytes`, which sizes the engine's instance slots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsOverride {
    /// See [`LimitsConfig::memory_bytes`].
    pub memory_bytes: Option<u64>,
    /// See [`LimitsConfig::instances_per_shard`].
    pub instances: Option<u32>,
    /// See [`LimitsConfig::request_timeout_ms`].
    pub request_timeout_ms: Option<u64>,
    /// See [`LimitsConfig::event_timeout_ms`].
    pub event_timeout_ms: Option<u64>,
    /// See [`LimitsConfig::max_request_bytes`].
    pub max_request_bytes: Option<usize>,
    /// See [`LimitsConfig::max_response_bytes`].
    pub max_response_bytes: Option<u64>,
    /// The shard's `database.max_size_bytes`.
    pub database_max_size_bytes: Option<u64>,
    /// The shard's `database.statement_timeout_ms`.
    pub statement_timeout_ms: Option<u64>,
    /// The shard's `storage.max_total_bytes`.
    pub storage_max_total_bytes: Option<u64>,
    /// The shard's `storage.max_object_bytes`.
    pub storage_max_object_bytes: Option<u64>,
    /// The shard's `events.max_per_call`.
    pub events_max_per_call: Option<usize>,
    /// See [`LimitsConfig::requests_per_second`].
    pub requests_per_second: Option<u64>,
    /// See [`LimitsConfig::request_burst`].
    pub request_burst: Option<u64>,
    /// Requests one instance may serve in a row (README, "Instance reuse"). Absent or 1: a
    /// fresh instance per request, the default and the strongest isolation.
    pub instance_reuse: Option<u32>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            table_elements: 20_000,
            instances_total: 1000,
            instances_per_shard: 100,
            instances_reserved_per_shard: 8,
            max_memories_per_component: 4,
            max_tables_per_component: 16,
            max_core_instances_per_component: 64,
            request_timeout_ms: 30_000,
            event_timeout_ms: 30_000,
            max_request_bytes: 16 << 20,
            max_response_bytes: 64 << 20,
            requests_per_second: 100_000,
            request_burst: 100_000,
            shards: BTreeMap::new(),
        }
    }
}

/// The limits one shard runs under: the defaults with its override applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLimits {
    /// Linear memory per instance.
    pub memory_bytes: u64,
    /// Table elements per instance.
    pub table_elements: u32,
    /// Concurrent instances.
    pub instances: u32,
    /// Instances reserved for the shard.
    pub instances_reserved: u32,
    /// Request deadline.
    pub request_timeout: Duration,
    /// Event deadline.
    pub event_timeout: Duration,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Largest response body.
    pub max_response_bytes: u64,
    /// Requests one instance serves before it is discarded; 1 means a fresh instance each.
    pub instance_reuse: u32,
    /// Requests per second on average; 0 for no limit.
    pub requests_per_second: u64,
    /// Requests at once above that rate; at least 1.
    pub request_burst: u64,
}

impl LimitsConfig {
    /// The limits of the shard `name`.
    pub fn for_shard(&self, name: &str) -> ShardLimits {
        let o = self.shards.get(name).cloned().unwrap_or_default();
        let instances = o.instances.unwrap_or(self.instances_per_shard).max(1);
        ShardLimits {
            memory_bytes: o
                .memory_bytes
                .unwrap_or(self.memory_bytes)
                .min(self.memory_bytes),
            table_elements: self.table_elements,
            instances,
            instances_reserved: self.instances_reserved_per_shard.min(instances),
            request_timeout: Duration::from_millis(
                o.request_timeout_ms.unwrap_or(self.request_timeout_ms),
            ),
            event_timeout: Duration::from_millis(
                o.event_timeout_ms.unwrap_or(self.event_timeout_ms),
            ),
            max_request_bytes: o.max_request_bytes.unwrap_or(self.max_request_bytes),
            max_response_bytes: o.max_response_bytes.unwrap_or(self.max_response_bytes),
            instance_reuse: o.instance_reuse.unwrap_or(1).max(1),
            requests_per_second: o.requests_per_second.unwrap_or(self.requests_per_second),
            request_burst: o.request_burst.unwrap_or(self.request_burst).max(1),
        }
    }

    /// The request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The event-delivery deadline.
    pub fn event_timeout(&self) -> Duration {
        Duration::from_millis(self.event_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_per_shard_and_memory_only_lowers() {
        let mut limits = LimitsConfig::default();
        limits.shards.insert(
            "slow".into(),
            LimitsOverride {
                request_timeout_ms: Some(90_000),
                memory_bytes: Some(u64::MAX),
                ..Default::default()
            },
        );
        let slow = limits.for_shard("slow");
        assert_eq!(slow.request_timeout, Duration::from_secs(90));
        assert_eq!(slow.memory_bytes, limits.memory_bytes);
        assert_eq!(
            limits.for_shard("other").request_timeout,
            Duration::from_secs(30)
        );
    }
}
