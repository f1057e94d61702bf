//! Integration tests: real components built from `shards/` and `test-shards/guests/`, served by
//! real `arkham` processes over HTTP. One binary, one link; components compile once per run.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step aborts the test"
)]

mod backends;
mod browser;
mod harness;

mod cluster;
mod cluster_script;
mod dashboard;
mod disk_full;
mod engines;
mod entry;
mod events;
mod examples;
mod grants;
mod hostile;
mod http;
mod install;
mod logs;
mod metrics;
mod packets;
mod registry;
mod reuse;
mod sandbox;
mod sandbox_edge;
mod sandbox_events;
mod sandbox_runtime;
mod sandbox_sql;
mod sandbox_storage;
mod shard_new;
mod signing;
mod startup;
mod upgrades;
mod wit_package;
mod wit_versions;
