//! Resource limits for shard instances: the `[limits]` section of the frame config.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits applied to every shard instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Linear memory one instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Table elements one instance may have.
    pub table_elements: u32,
    /// Instances alive at once across all shards (the pooling allocator's slots).
    pub instances_total: u32,
    /// Instances alive at once for one shard; requests past it get 503.
    pub instances_per_shard: u32,
    /// CPU time one request may use, in milliseconds; past it the request gets 504.
    pub request_timeout_ms: u64,
    /// CPU time one event delivery may use, in milliseconds.
    pub event_timeout_ms: u64,
    /// Largest request body, in bytes; larger ones get 413.
    pub max_request_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            table_elements: 20_000,
            instances_total: 1000,
            instances_per_shard: 1000,
            request_timeout_ms: 30_000,
            event_timeout_ms: 30_000,
            max_request_bytes: 16 << 20,
        }
    }
}

impl LimitsConfig {
    /// The request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The event-delivery deadline.
    pub fn event_timeout(&self) -> Duration {
        Duration::from_millis(self.event_timeout_ms)
    }
}
