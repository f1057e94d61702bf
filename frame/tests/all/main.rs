//! Integration tests: real components built from `shards/` and `test-shards/guests/`, served by
//! real `arkham` processes over HTTP. One binary, one link; components compile once per run.

mod harness;

mod events;
mod install;
mod packets;
mod sandbox;
