//! `GET /metrics`: the frame's counters in the Prometheus text format (version 0.0.4), encoded by
//! the Prometheus project's own client (`prometheus-client`).
//!
//! [`Metrics`] is process-wide: one registry and its families. [`ShardMetrics`] holds one loaded
//! shard's series, resolved once when the shard is loaded, so the hot path (a request, an event,
//! a statement) only bumps atomics it already holds: no label hashing, no registry lock. Gauges
//! that describe state (instances in use, storage bytes, shards loaded) are read when scraped
//! ([`scrape`]), not maintained on every change.
//!
//! Cardinality is bounded: the only label values are the names of installed shards, the five
//! status classes and the fixed kinds below; a removed shard's series are removed with it.
//!
//! On the frame's address the endpoint needs the admin token; `[metrics] listen` serves it
//! without one on a separate address for a scraper ([`app`]).

mod scrape;
mod shard;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub use scrape::{app, scrape};
pub use shard::ShardMetrics;

/// The `[metrics]` section of the frame config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Also serve `GET /metrics`, without the admin token, on this address (for a scraper;
    /// keep it on a private interface). Unset: only on the frame's address, with the token.
    pub listen: Option<SocketAddr>,
}

/// Upper bounds of the request latency buckets, in seconds: 1 ms to 30 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The status classes requests are counted by, indexed by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    shard: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type ByShard<M> = Family<ShardLabel, M>;

/// Every family, by what it counts.
struct Families {
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<ShardLabel, Histogram, fn() -> Histogram>,
    rate_limited: ByShard<Counter>,
    instances_in_use: ByShard<Gauge>,
    traps: ByShard<Counter>,
    timeouts: ByShard<Counter>,
    memory_limit_hits: ByShard<Counter>,
    events_published: ByShard<Counter>,
    events_delivered: ByShard<Counter>,
    events_retried: ByShard<Counter>,
    events_dead_lettered: ByShard<Counter>,
    database_statements: ByShard<Counter>,
    database_errors: ByShard<Counter>,
    storage_bytes: ByShard<Gauge>,
    events_behind: ByShard<Gauge>,
    shards_loaded: Gauge,
    shards_failed: Gauge,
    slots_in_use: Gauge,
    slots_total: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The frame's registry and families; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    families: Families,
}

impl Metrics {
    /// A registry with every family of the frame, and `arkham_build_info{version}` set to 1.
    pub fn new(version: &'static str) -> Self {
        let families = Families {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            rate_limited: Family::default(),
            instances_in_use: Family::default(),
            traps: Family::default(),
            timeouts: Family::default(),
            memory_limit_hits: Family::default(),
            events_published: Family::default(),
            events_delivered: Family::default(),
            events_retried: Family::default(),
            events_dead_lettered: Family::default(),
            database_statements: Family::default(),
            database_errors: Family::default(),
            storage_bytes: Family::default(),
            events_behind: Family::default(),
            shards_loaded: Gauge::default(),
            shards_failed: Gauge::default(),
            slots_in_use: Gauge::default(),
            slots_total: Gauge::default(),
        };
        let f = &families;
        let mut registry = Registry::with_prefix("arkham");
        registry.register(
            "build",
            "The frame's version",
            Info::new(VersionLabel { version }),
        );
        registry.register(
            "shards_loaded",
            "Installed shards that are serving",
            f.shards_loaded.clone(),
        );
        registry.register(
            "shards_failed",
            "Installed shards that failed to load",
            f.shards_failed.clone(),
        );
        registry.register(
            "instance_slots_in_use",
            "Slots of the engine's instance pool held by running (or kept) instances",
            f.slots_in_use.clone(),
        );
        registry.register(
            "instance_slots",
            "Slots in the engine's instance pool (limits.instances_total)",
            f.slots_total.clone(),
        );
        registry.register(
            "shard_requests",
            "Requests to a shard's API, by the status class of the answer (the frame's own \
             answers on its behalf included)",
            f.requests.clone(),
        );
        registry.register(
            "shard_request_duration_seconds",
            "Time from a request's arrival to its answer's head, per shard",
            f.request_duration.clone(),
        );
        registry.register(
            "shard_requests_rate_limited",
            "Requests answered 429 because the shard was over its requests_per_second",
            f.rate_limited.clone(),
        );
        registry.register(
            "shard_instances_in_use",
            "Instance slots the shard holds now (running calls and kept instances)",
            f.instances_in_use.clone(),
        );
        registry.register(
            "shard_traps",
            "Calls (requests and event deliveries) that trapped",
            f.traps.clone(),
        );
        registry.register(
            "shard_timeouts",
            "Calls stopped at their deadline",
            f.timeouts.clone(),
        );
        registry.register(
            "shard_memory_limit_hits",
            "Calls stopped because the instance needed more than its memory limit",
            f.memory_limit_hits.clone(),
        );
        registry.register(
            "shard_events_published",
            "Events the shard published that were made durable",
            f.events_published.clone(),
        );
        registry.register(
            "shard_events_delivered",
            "Events delivered to the shard's handler successfully",
            f.events_delivered.clone(),
        );
        registry.register(
            "shard_events_retried",
            "Failed deliveries to the shard that will be retried",
            f.events_retried.clone(),
        );
        registry.register(
            "shard_events_dead_lettered",
            "Events set aside as dead letters for the shard after its last attempt",
            f.events_dead_lettered.clone(),
        );
        registry.register(
            "shard_database_statements",
            "Statements the shard ran (execute, query, execute-batch, in transactions or not)",
            f.database_statements.clone(),
        );
        registry.register(
            "shard_database_errors",
            "Statements that answered the shard with an error",
            f.database_errors.clone(),
        );
        registry.register(
            "shard_storage_bytes",
            "Bytes the shard keeps in storage, as its quota counts them",
            f.storage_bytes.clone(),
        );
        registry.register(
            "shard_events_behind",
            "Events a subscriber has not been delivered yet (counted up to a bound), at the scrape",
            f.events_behind.clone(),
        );
        Self {
            inner: Arc::new(Inner { registry, families }),
        }
    }

    /// The series of the shard `name`, created (at zero) if new. A shard's new version gets the
    /// same series, so its counters go on.
    pub fn shard(&self, name: &str) -> ShardMetrics {
        ShardMetrics::resolve(&self.inner.families, name)
    }

    /// Removes every series of the shard `name` (it was removed); handles still held by its
    /// calls in flight count on, unexported.
    pub fn remove_shard(&self, name: &str) {
        let f = &self.inner.families;
        let label = ShardLabel {
            shard: name.to_string(),
        };
        for class in CLASSES {
            f.requests.remove(&RequestLabels {
                shard: name.to_string(),
                class,
            });
        }
        f.request_duration.remove(&label);
        f.instances_in_use.remove(&label);
        f.storage_bytes.remove(&label);
        f.events_behind.remove(&label);
        for family in [
            &f.rate_limited,
            &f.traps,
            &f.timeouts,
            &f.memory_limit_hits,
            &f.events_published,
            &f.events_delivered,
            &f.events_retried,
            &f.events_dead_lettered,
            &f.database_statements,
            &f.database_errors,
        ] {
            family.remove(&label);
        }
    }

    /// Sets the frame-wide gauges.
    pub fn set_frame(&self, state: FrameState) {
        let f = &self.inner.families;
        f.shards_loaded.set(to_i64(state.shards_loaded));
        f.shards_failed.set(to_i64(state.shards_failed));
        f.slots_in_use.set(to_i64(state.slots_in_use));
        f.slots_total.set(to_i64(state.slots_total));
    }

    /// Everything, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }
}

/// The frame-wide gauges, read when scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameState {
    /// Installed shards serving.
    pub shards_loaded: usize,
    /// Installed shards that did not load.
    pub shards_failed: usize,
    /// Pool slots held.
    pub slots_in_use: usize,
    /// Pool slots in all.
    pub slots_total: usize,
}

fn to_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shard_series_are_labelled_counted_and_removed() {
        let metrics = Metrics::new("1.2.3");
        let packets = metrics.shard("packets");
        packets.request(200, Duration::from_millis(3));
        packets.request(404, Duration::from_millis(2));
        packets.request(429, Duration::ZERO);
        packets.rate_limited();
        packets.statement(false);
        packets.statement(true);
        metrics.set_frame(FrameState {
            shards_loaded: 1,
            shards_failed: 2,
            slots_in_use: 3,
            slots_total: 100,
        });
        let text = metrics.encode().unwrap();
        for line in [
            "arkham_build_info{version=\"1.2.3\"} 1",
            "arkham_shards_loaded 1",
            "arkham_shards_failed 2",
            "arkham_instance_slots_in_use 3",
            "arkham_instance_slots 100",
            "arkham_shard_requests_total{shard=\"packets\",class=\"2xx\"} 1",
            "arkham_shard_requests_total{shard=\"packets\",class=\"4xx\"} 2",
            "arkham_shard_requests_total{shard=\"packets\",class=\"5xx\"} 0",
            "arkham_shard_requests_rate_limited_total{shard=\"packets\"} 1",
            "arkham_shard_request_duration_seconds_count{shard=\"packets\"} 3",
            "arkham_shard_request_duration_seconds_bucket{shard=\"packets\",le=\"0.001\"} 1",
            "arkham_shard_request_duration_seconds_bucket{shard=\"packets\",le=\"0.0025\"} 2",
            "arkham_shard_database_statements_total{shard=\"packets\"} 2",
            "arkham_shard_database_errors_total{shard=\"packets\"} 1",
            "# TYPE arkham_shard_request_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        // The same shard again (a new version) continues its series.
        metrics.shard("packets").request(201, Duration::ZERO);
        let text = metrics.encode().unwrap();
        assert!(text.contains("arkham_shard_requests_total{shard=\"packets\",class=\"2xx\"} 2"));
        metrics.remove_shard("packets");
        let text = metrics.encode().unwrap();
        assert!(!text.contains("shard=\"packets\""), "{text}");
        // A handle kept by a call in flight still works, unexported.
        packets.request(200, Duration::ZERO);
        assert!(!metrics.encode().unwrap().contains("packets"));
    }

    #[test]
    fn odd_statuses_are_not_a_class_of_their_own() {
        let metrics = Metrics::new("0");
        let shard = metrics.shard("s");
        shard.request(99, Duration::ZERO);
        shard.request(600, Duration::ZERO);
        let text = metrics.encode().unwrap();
        let classes = text
            .lines()
            .filter(|l| l.starts_with("arkham_shard_requests_total{"))
            .count();
        assert_eq!(classes, CLASSES.len(), "{text}");
        assert!(text.contains("{shard=\"s\",class=\"1xx\"} 1"), "{text}");
        assert!(text.contains("{shard=\"s\",class=\"5xx\"} 1"), "{text}");
    }

    #[test]
    fn the_config_section_parses() {
        let config: MetricsConfig = toml::from_str("listen = \"127.0.0.1:9464\"").unwrap();
        assert_eq!(config.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(toml::from_str::<MetricsConfig>("listen = \"nowhere\"").is_err());
        assert_eq!(MetricsConfig::default().listen, None);
    }
}
