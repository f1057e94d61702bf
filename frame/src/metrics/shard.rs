//! One shard's series, resolved once: what its calls bump.

use super::{CLASSES, Families, RequestLabels, ShardLabel};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;
use std::time::Duration;

/// A loaded shard's handles on its series; cheap to clone (one `Arc`). Every method is a few
/// atomic operations (the latency histogram takes its own, per-shard lock).
#[derive(Clone)]
pub struct ShardMetrics {
    inner: Arc<Handles>,
}

struct Handles {
    requests: [Counter; CLASSES.len()],
    request_duration: Histogram,
    rate_limited: Counter,
    instances_in_use: Gauge,
    traps: Counter,
    timeouts: Counter,
    memory_limit_hits: Counter,
    events_published: Counter,
    events_delivered: Counter,
    events_retried: Counter,
    events_dead_lettered: Counter,
    database_statements: Counter,
    database_errors: Counter,
    storage_bytes: Gauge,
    events_behind: Gauge,
}

impl ShardMetrics {
    pub(super) fn resolve(f: &Families, name: &str) -> Self {
        let label = ShardLabel {
            shard: name.to_string(),
        };
        let requests = CLASSES.map(|class| {
            f.requests.get_or_create_owned(&RequestLabels {
                shard: name.to_string(),
                class,
            })
        });
        Self {
            inner: Arc::new(Handles {
                requests,
                request_duration: f.request_duration.get_or_create_owned(&label),
                rate_limited: f.rate_limited.get_or_create_owned(&label),
                instances_in_use: f.instances_in_use.get_or_create_owned(&label),
                traps: f.traps.get_or_create_owned(&label),
                timeouts: f.timeouts.get_or_create_owned(&label),
                memory_limit_hits: f.memory_limit_hits.get_or_create_owned(&label),
                events_published: f.events_published.get_or_create_owned(&label),
                events_delivered: f.events_delivered.get_or_create_owned(&label),
                events_retried: f.events_retried.get_or_create_owned(&label),
                events_dead_lettered: f.events_dead_lettered.get_or_create_owned(&label),
                database_statements: f.database_statements.get_or_create_owned(&label),
                database_errors: f.database_errors.get_or_create_owned(&label),
                storage_bytes: f.storage_bytes.get_or_create_owned(&label),
                events_behind: f.events_behind.get_or_create_owned(&label),
            }),
        }
    }

    /// A request to the shard's API was answered with `status` after `elapsed`.
    pub fn request(&self, status: u16, elapsed: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.inner.requests[class].inc();
        self.inner.request_duration.observe(elapsed.as_secs_f64());
    }

    /// A request was refused for the shard's request rate (it is counted by
    /// [`request`](Self::request) too).
    pub fn rate_limited(&self) {
        self.inner.rate_limited.inc();
    }

    /// A call trapped.
    pub fn trap(&self) {
        self.inner.traps.inc();
    }

    /// A call was stopped at its deadline.
    pub fn timeout(&self) {
        self.inner.timeouts.inc();
    }

    /// A call was stopped at its memory limit.
    pub fn memory_limit_hit(&self) {
        self.inner.memory_limit_hits.inc();
    }

    /// `count` events the shard published were made durable.
    pub fn events_published(&self, count: usize) {
        if count > 0 {
            self.inner
                .events_published
                .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
    }

    /// An event was delivered to the shard's handler.
    pub fn event_delivered(&self) {
        self.inner.events_delivered.inc();
    }

    /// A delivery to the shard failed and will be retried.
    pub fn event_retried(&self) {
        self.inner.events_retried.inc();
    }

    /// An event was set aside as a dead letter for the shard.
    pub fn event_dead_lettered(&self) {
        self.inner.events_dead_lettered.inc();
    }

    /// The shard ran a statement; `ok` tells whether it answered without an error.
    pub fn statement(&self, ok: bool) {
        self.inner.database_statements.inc();
        if !ok {
            self.inner.database_errors.inc();
        }
    }

    /// Sets the instance slots the shard holds now.
    pub fn set_instances_in_use(&self, slots: usize) {
        self.inner.instances_in_use.set(super::to_i64(slots));
    }

    /// Sets the bytes the shard keeps in storage.
    pub fn set_storage_bytes(&self, bytes: u64) {
        self.inner.storage_bytes.set(super::to_i64(bytes));
    }

    /// The subscriber is `behind` events (read at a scrape).
    pub fn set_events_behind(&self, behind: u64) {
        self.inner.events_behind.set(super::to_i64(behind));
    }
}
