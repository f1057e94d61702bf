//! What one shard may publish and receive, precomputed from its declarations and its grant, so
//! the service (and the runtime) decide without the `shards` module's manifest and grant types.

use super::names::pattern_matches;

/// The event names a shard may publish now: those under its own name that both its declared
/// patterns and its granted ones match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishPolicy {
    shard: String,
    declared: Vec<String>,
    granted: Vec<String>,
}

impl PublishPolicy {
    /// The policy of shard `shard` that declares the patterns `declared` (its manifest's
    /// `events.publishes`) and holds `granted` (empty when the events service is not granted).
    pub fn new(shard: impl Into<String>, declared: Vec<String>, granted: Vec<String>) -> Self {
        Self {
            shard: shard.into(),
            declared,
            granted,
        }
    }

    /// The shard's name.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// Whether the shard may publish an event named `name`.
    pub fn may_publish(&self, name: &str) -> bool {
        // Only under its own name: a shard cannot speak for another.
        name.strip_prefix(self.shard.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
            && self.declared.iter().any(|p| pattern_matches(p, name))
            && self.granted.iter().any(|p| pattern_matches(p, name))
    }
}

/// The events a shard receives now: those both its declared subscriptions and its granted ones
/// match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivePolicy {
    declared: Vec<String>,
    granted: Vec<String>,
}

impl ReceivePolicy {
    /// The policy of a shard that declares the subscriptions `declared` (its manifest's
    /// `events.subscribes`) and holds `granted`.
    pub fn new(declared: Vec<String>, granted: Vec<String>) -> Self {
        Self { declared, granted }
    }

    /// The patterns it declares: what an engine may narrow its deliveries to (`may_receive`
    /// still decides each event). Empty: it subscribes to nothing.
    pub fn declared(&self) -> &[String] {
        &self.declared
    }

    /// Whether an event named `name` is delivered to the shard.
    pub fn may_receive(&self, name: &str) -> bool {
        self.declared.iter().any(|p| pattern_matches(p, name))
            && self.granted.iter().any(|p| pattern_matches(p, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn publishing_needs_the_own_name_a_declaration_and_a_grant() {
        let policy = PublishPolicy::new(
            "packets",
            strings(&["packets.packet.*", "packets.content.added"]),
            strings(&["packets.packet.*"]),
        );
        assert_eq!(policy.shard(), "packets");
        assert!(policy.may_publish("packets.packet.created"));
        // Declared, not granted.
        assert!(!policy.may_publish("packets.content.added"));
        // Granted beyond the declaration is never enough.
        let wide = PublishPolicy::new("packets", strings(&["packets.packet.*"]), strings(&["*"]));
        assert!(!wide.may_publish("packets.content.added"));
        // Another shard's name, even when the patterns would match.
        let foreign = PublishPolicy::new("packets", strings(&["*"]), strings(&["*"]));
        assert!(!foreign.may_publish("documents.document.created"));
        assert!(!foreign.may_publish("packetsx.packet.created"));
        assert!(foreign.may_publish("packets.any.thing"));
        assert!(!PublishPolicy::default().may_publish("a.b.c"));
    }

    #[test]
    fn receiving_needs_a_declaration_and_a_grant() {
        let policy = ReceivePolicy::new(
            strings(&["documents.*", "tasks.task.done"]),
            strings(&["documents.document.*", "*"]),
        );
        assert_eq!(policy.declared(), ["documents.*", "tasks.task.done"]);
        assert!(policy.may_receive("documents.document.added"));
        assert!(policy.may_receive("tasks.task.done"));
        assert!(!policy.may_receive("tasks.task.started"));
        let revoked = ReceivePolicy::new(strings(&["documents.*"]), Vec::new());
        assert!(!revoked.may_receive("documents.document.added"));
    }
}
