//! The frame config: `arkham.toml` in the data dir, one section per service. Every field has a
//! default, so the file is optional; unknown fields are errors so typos do not pass silently.

use crate::cluster::ClusterConfig;
use crate::http::server::ServerConfig;
use crate::metrics::MetricsConfig;
use crate::runtime::limits::LimitsConfig;
use crate::services::database::DatabaseConfig;
use crate::services::events::EventsConfig;
use crate::services::logging::LoggingConfig;
use crate::services::nats::NatsConfig;
use crate::services::storage::StorageConfig;
use crate::shards::grants::Grant;
use crate::shards::trust::TrustRule;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The frame's configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameConfig {
    /// The registry short references (`packets@0.1`) resolve under, e.g. `ghcr.io/my-org`,
    /// `localhost:5000/shards` or `oci:/srv/shards`; `$ARKHAM_REGISTRY` overrides it. Unset: the
    /// local OCI layout `registry/` in the data dir.
    pub registry: Option<String>,
    /// Limits on shard instances.
    pub limits: LimitsConfig,
    /// The database service.
    pub database: DatabaseConfig,
    /// The events service.
    pub events: EventsConfig,
    /// The storage service.
    pub storage: StorageConfig,
    /// What shards may write to the frame's log.
    pub logging: LoggingConfig,
    /// The NATS connection shared by the `nats` backends of events and storage.
    pub nats: NatsConfig,
    /// The HTTP server: timeouts, connection and body-buffer limits.
    pub server: ServerConfig,
    /// `GET /metrics`: where it is also served without the admin token.
    pub metrics: MetricsConfig,
    /// Grants pre-approved for headless installs, by shard name: `[grants.packets]`. A shard
    /// whose request is covered installs without asking.
    pub grants: BTreeMap<String, Grant>,
    /// The trust policy for signed shards: `[[trust]]` rules, the first matching one wins.
    pub trust: Vec<TrustRule>,
    /// Membership of a deployment of several frames sharing their state through NATS.
    pub cluster: ClusterConfig,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Not valid.
    #[error("{path} is not a valid frame config: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the field.
        message: String,
    },
}

impl FrameConfig {
    /// Reads `path`, or the defaults if it does not exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        config.database.frames = config.cluster.frames();
        Ok(config)
    }

    /// The first section whose backend is `nats`, if any: the frame connects to NATS when so.
    pub fn nats_user(&self) -> Option<&'static str> {
        use crate::services::events::EventsBackend;
        use crate::services::storage::StorageBackend;
        if self.events.backend == EventsBackend::Nats {
            Some("events")
        } else if self.storage.backend == StorageBackend::Nats {
            Some("storage")
        } else {
            None
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            path: path.display().to_string(),
            message: message.to_string(),
        };
        let l = &self.limits;
        if l.memory_bytes < (1 << 20) {
            return Err(invalid(
                "limits.memory_bytes must be at least 1 MiB (1048576)",
            ));
        }
        if l.instances_total == 0 || l.instances_per_shard == 0 {
            return Err(invalid(
                "limits.instances_total and limits.instances_per_shard must be at least 1",
            ));
        }
        if l.request_timeout_ms == 0 || l.event_timeout_ms == 0 {
            return Err(invalid(
                "limits.request_timeout_ms and limits.event_timeout_ms must be at least 1",
            ));
        }
        self.database
            .validate()
            .map_err(|e| invalid(&e.to_string()))?;
        self.events.validate().map_err(|m| invalid(&m))?;
        self.nats
            .validate(self.nats_user())
            .map_err(|e| invalid(&e.to_string()))?;
        self.logging.validate().map_err(|m| invalid(&m))?;
        for rule in &self.trust {
            rule.validate().map_err(|m| invalid(&m))?;
        }
        if self.cluster.enabled {
            use crate::services::database::DatabaseBackend;
            use crate::services::events::EventsBackend;
            use crate::services::storage::StorageBackend;
            let local: Vec<&str> = [
                (self.database.backend != DatabaseBackend::Postgres)
                    .then_some("[database] backend = \"postgres\""),
                (self.events.backend != EventsBackend::Nats)
                    .then_some("[events] backend = \"nats\""),
                (self.storage.backend != StorageBackend::Nats)
                    .then_some("[storage] backend = \"nats\""),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !local.is_empty() {
                return Err(invalid(&format!(
                    "cluster.enabled needs engines every member shares, so that a shard's data \
                     and events are the same through any member; set {}",
                    local.join(", ")
                )));
            }
        }
        let largest_request = l
            .shards
            .values()
            .filter_map(|o| o.max_request_bytes)
            .fold(l.max_request_bytes, usize::max);
        self.server
            .validate(largest_request)
            .map_err(|m| invalid(&m))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\nregistry").unwrap() + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arkham.toml");
        std::fs::write(&path, &readme[start..end]).unwrap();
        let config = FrameConfig::load(&path).unwrap();
        assert_eq!(config.registry.as_deref(), Some("ghcr.io/my-org"));
        assert!(config.grants.contains_key("packets"));
        assert_eq!(
            config.limits.shards["packets"].request_timeout_ms,
            Some(60000)
        );
    }

    #[test]
    fn a_nats_backend_needs_the_nats_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arkham.toml");
        std::fs::write(&path, "[storage]\nbackend = \"nats\"\n").unwrap();
        let err = FrameConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("[storage]") && err.contains("url"), "{err}");
        std::fs::write(
            &path,
            "[events]\nbackend = \"nats\"\nstream_max_age_s = 60\n[nats]\nurl = \"nats://127.0.0.1:4222\"\nprefix = \"prod-1\"\n",
        )
        .unwrap();
        let config = FrameConfig::load(&path).unwrap();
        assert_eq!(config.nats_user(), Some("events"));
        assert_eq!(config.nats.stream_prefix(), "PROD-1");
        std::fs::write(&path, "[events]\nbackend = \"kafka\"\n").unwrap();
        let err = FrameConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("embedded") && err.contains("nats"), "{err}");
        assert_eq!(FrameConfig::default().nats_user(), None);
    }

    #[test]
    fn defaults_overrides_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arkham.toml");
        assert_eq!(
            FrameConfig::load(&path).unwrap().limits.request_timeout_ms,
            30_000
        );
        std::fs::write(&path, "[limits]\nrequest_timeout_ms = 500\n").unwrap();
        let config = FrameConfig::load(&path).unwrap();
        assert_eq!(config.limits.request_timeout_ms, 500);
        assert_eq!(
            config.limits.memory_bytes,
            LimitsConfig::default().memory_bytes
        );
        std::fs::write(&path, "[limits]\nrequest_timeout = 500\n").unwrap();
        let err = FrameConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("request_timeout"), "{err}");
        std::fs::write(
            &path,
            "[[trust]]\nregistry = \"ghcr.io/acme/*\"\nsignatures = \"require\"\n",
        )
        .unwrap();
        let err = FrameConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("ghcr.io/acme/*") && err.contains("keys"),
            "{err}"
        );
        std::fs::write(
            &path,
            "[[trust]]\nregistry = \"x/*\"\nsignatures = \"maybe\"\n",
        )
        .unwrap();
        assert!(FrameConfig::load(&path).is_err());
        std::fs::write(&path, "[limits]\nmemory_bytes = 10\n").unwrap();
        assert!(
            FrameConfig::load(&path)
                .unwrap_err()
                .to_string()
                .contains("memory_bytes")
        );
    }
}
