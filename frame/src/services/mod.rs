//! The frame services shards reach through WIT, one module per interface of `arkham:shard`.

pub mod database;
pub mod events;
pub mod logging;
pub mod nats;
pub mod rate;
pub mod storage;
