//! What each installed shard may use: its grants.
//!
//! A shard's manifest *requests* services and event names; the user *grants* them when the shard
//! is installed (`arkham shard add` shows the request and asks, or takes `--yes`, or finds them
//! pre-seeded in the frame config). Grants are kept in `grants.json` in the data dir, can be
//! revoked with `arkham shard grants NAME --revoke …` or the admin API, and a running frame applies
//! a change on the next call. An update that requests more than was granted stops for approval.

use super::manifest::{Manifest, Service, pattern_matches};
use crate::runtime::ShardPolicy;
use crate::services::events::{PublishPolicy, ReceivePolicy};
use arkham_registry::fsutil::write_atomically;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// What one shard may use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Services it may call.
    #[serde(default)]
    pub services: BTreeSet<Service>,
    /// Event names or patterns it may publish (within what its manifest declares).
    #[serde(default)]
    pub publishes: BTreeSet<String>,
    /// Event patterns it may receive (within what its manifest declares).
    #[serde(default)]
    pub subscribes: BTreeSet<String>,
}

impl Grant {
    /// Everything `manifest` requests.
    pub fn requested_by(manifest: &Manifest) -> Self {
        Self {
            services: manifest.services.declared(),
            publishes: manifest.events.publishes.iter().cloned().collect(),
            subscribes: manifest.events.subscribes.iter().cloned().collect(),
        }
    }

    /// What `self` has that `other` lacks.
    pub fn minus(&self, other: &Grant) -> Grant {
        Grant {
            services: self.services.difference(&other.services).copied().collect(),
            publishes: self
                .publishes
                .difference(&other.publishes)
                .cloned()
                .collect(),
            subscribes: self
                .subscribes
                .difference(&other.subscribes)
                .cloned()
                .collect(),
        }
    }

    /// Everything in either.
    pub fn union(&self, other: &Grant) -> Grant {
        Grant {
            services: self.services.union(&other.services).copied().collect(),
            publishes: self.publishes.union(&other.publishes).cloned().collect(),
            subscribes: self.subscribes.union(&other.subscribes).cloned().collect(),
        }
    }

    /// What both have.
    pub fn intersection(&self, other: &Grant) -> Grant {
        Grant {
            services: self
                .services
                .intersection(&other.services)
                .copied()
                .collect(),
            publishes: self
                .publishes
                .intersection(&other.publishes)
                .cloned()
                .collect(),
            subscribes: self
                .subscribes
                .intersection(&other.subscribes)
                .cloned()
                .collect(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.publishes.is_empty() && self.subscribes.is_empty()
    }

    /// Whether the service is granted.
    pub fn has(&self, service: Service) -> bool {
        self.services.contains(&service)
    }

    /// Whether an event named `name` may be published under this grant.
    pub fn may_publish(&self, name: &str) -> bool {
        self.has(Service::Events) && self.publishes.iter().any(|p| pattern_matches(p, name))
    }

    /// Whether an event named `name` may be received under this grant.
    pub fn may_receive(&self, name: &str) -> bool {
        self.subscribes.iter().any(|p| pattern_matches(p, name))
    }

    /// What a shard with `manifest` may do under this grant, for the runtime: the services it
    /// holds, and the events both its manifest declares and this grant allows.
    pub fn policy(&self, manifest: &Manifest) -> ShardPolicy {
        let events = self.has(Service::Events);
        // Without the events service nothing may be published, whatever patterns remain.
        let publishes = if events {
            self.publishes.iter().cloned().collect()
        } else {
            Vec::new()
        };
        ShardPolicy {
            database: self.has(Service::Database),
            events,
            storage: self.has(Service::Storage),
            publish: Arc::new(PublishPolicy::new(
                manifest.name.clone(),
                manifest.events.publishes.clone(),
                publishes,
            )),
            receive: Arc::new(ReceivePolicy::new(
                manifest.events.subscribes.clone(),
                self.subscribes.iter().cloned().collect(),
            )),
        }
    }

    /// One line per item, for showing a request or a grant to a person.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .services
            .iter()
            .map(|s| format!("service {s}"))
            .collect();
        lines.extend(self.publishes.iter().map(|p| format!("publish {p}")));
        lines.extend(self.subscribes.iter().map(|p| format!("subscribe {p}")));
        lines
    }
}

/// The grants of every installed shard: `grants.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Grant per shard name.
    #[serde(default)]
    pub shards: BTreeMap<String, Grant>,
}

/// An unreadable or corrupt grants file.
#[derive(Debug, thiserror::Error)]
pub enum GrantsError {
    /// I/O on the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Not valid JSON of the expected shape.
    #[error(
        "{path} is corrupt ({message}); fix it, or remove it and re-add the shards to grant them again"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
}

impl Grants {
    /// Reads `path`; a missing file holds no grants.
    pub fn load(path: &Path) -> Result<Self, GrantsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(GrantsError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| GrantsError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Writes `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), GrantsError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| GrantsError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(path, &json, 0o644).map_err(|source| GrantsError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// The effective grant of a shard with `manifest`: what was granted, limited to what the
    /// manifest declares. A shard with no entry (installed before grants were recorded) holds what
    /// it requested, which is what its installation approved.
    pub fn effective(&self, manifest: &Manifest) -> Grant {
        let requested = Grant::requested_by(manifest);
        match self.shards.get(&manifest.name) {
            Some(granted) => granted.intersection(&requested),
            None => requested,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            "name = \"p\"\nversion = \"1.0.0\"\n[services]\nrequired = [\"database\", \"events\"]\noptional = [\"storage\"]\n[events]\npublishes = [\"p.x.*\"]\nsubscribes = [\"q.*\"]\n",
            "test",
        )
        .unwrap()
    }

    #[test]
    fn requested_minus_granted_and_effective() {
        let requested = Grant::requested_by(&manifest());
        assert_eq!(
            requested.lines(),
            [
                "service database",
                "service events",
                "service storage",
                "publish p.x.*",
                "subscribe q.*"
            ]
        );
        let mut granted = requested.clone();
        granted.services.remove(&Service::Storage);
        let extra = requested.minus(&granted);
        assert_eq!(extra.lines(), ["service storage"]);
        let mut grants = Grants::default();
        grants.shards.insert("p".into(), granted);
        let effective = grants.effective(&manifest());
        assert!(!effective.has(Service::Storage));
        assert!(effective.may_publish("p.x.created"));
        assert!(!effective.may_publish("p.y.created"));
        assert!(effective.may_receive("q.a.b"));
        // A grant beyond the manifest is never effective.
        grants
            .shards
            .get_mut("p")
            .unwrap()
            .subscribes
            .insert("*".into());
        assert!(!grants.effective(&manifest()).may_receive("r.a.b"));
    }

    #[test]
    fn the_policy_is_what_manifest_and_grant_both_allow() {
        let manifest = manifest();
        let full = Grant::requested_by(&manifest).policy(&manifest);
        assert!(full.database && full.events && full.storage);
        assert!(full.publish.may_publish("p.x.created"));
        assert!(!full.publish.may_publish("p.y.created"));
        assert!(full.receive.may_receive("q.a.b"));
        assert_eq!(full.receive.declared(), ["q.*"]);

        let mut grant = Grant::requested_by(&manifest);
        grant.services.remove(&Service::Storage);
        grant.subscribes.clear();
        let narrowed = grant.policy(&manifest);
        assert!(narrowed.database && narrowed.events && !narrowed.storage);
        assert!(!narrowed.receive.may_receive("q.a.b"));
        // Its declared subscriptions stay: it still has an event handler.
        assert_eq!(narrowed.receive.declared(), ["q.*"]);

        // Publishing follows the events service, as `Grant::may_publish` does.
        grant.services.remove(&Service::Events);
        let silent = grant.policy(&manifest);
        assert!(!silent.events);
        assert!(!silent.publish.may_publish("p.x.created"));
        // A grant beyond the manifest is never effective.
        let wide = Grant {
            publishes: ["*".to_string()].into(),
            subscribes: ["*".to_string()].into(),
            ..Grant::requested_by(&manifest)
        };
        let wide = wide.policy(&manifest);
        assert!(!wide.publish.may_publish("p.y.created"));
        assert!(!wide.receive.may_receive("r.a.b"));
    }

    #[test]
    fn save_load_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.json");
        let mut grants = Grants::default();
        grants
            .shards
            .insert("p".into(), Grant::requested_by(&manifest()));
        grants.save(&path).unwrap();
        assert_eq!(Grants::load(&path).unwrap(), grants);
        std::fs::write(&path, "[").unwrap();
        assert!(
            Grants::load(&path)
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );
    }
}
