//! What a loaded shard may do now: which services its stores get and which events it may publish
//! and receive. Computed by whoever holds its manifest and grant (`Grant::policy`) when it loads
//! and whenever its grant changes, so the runtime decides per call without knowing either.

use crate::services::events::{PublishPolicy, ReceivePolicy};
use std::sync::Arc;

/// A shard's precomputed permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardPolicy {
    /// Its stores get its database (when it declared one).
    pub database: bool,
    /// Its stores get the events service.
    pub events: bool,
    /// Its stores get its storage namespace (when it declared one).
    pub storage: bool,
    /// The event names it may publish (consulted only with `events`).
    pub publish: Arc<PublishPolicy>,
    /// The events delivered to it; its declared patterns also decide whether it has an event
    /// handler.
    pub receive: Arc<ReceivePolicy>,
}
