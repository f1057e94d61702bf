//! Shard references: what a user types after `arkham shard add`.
//!
//! ```text
//! packets                          newest stable version under the default registry
//! packets@0.1                      Cargo requirement ^0.1 under the default registry
//! packets@=0.1.2 | packets@>=0.2,<0.4
//! ghcr.io/org/packets@0.1          full reference with a requirement
//! host:port/ns/packets:0.1.3       exact tag
//! …/packets@sha256:<hex>           exact content
//! oci:PATH/packets@0.1             a local OCI Image Layout folder PATH/packets
//! ```
//!
//! The default registry (`ARKHAM_REGISTRY`) is a prefix such as `ghcr.io/my-org`,
//! `127.0.0.1:5000` or `oci:/srv/shards`.

use crate::digest::Digest;
use std::fmt;
use std::path::PathBuf;

/// The environment variable naming the default registry namespace.
pub const REGISTRY_ENV: &str = "ARKHAM_REGISTRY";

/// A reference that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The text is not a reference.
    #[error("`{text}` is not a shard reference: {reason}")]
    Invalid {
        /// What was given.
        text: String,
        /// Why it is not one.
        reason: String,
    },
    /// A short reference without a default registry.
    #[error(
        "`{0}` names no registry and no default registry is set; set {REGISTRY_ENV} (e.g. `ghcr.io/my-org`, `127.0.0.1:5000` or `oci:/path/to/dir`) or give a full reference like `ghcr.io/my-org/{0}`"
    )]
    NoDefaultRegistry(String),
}

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A registry speaking the OCI distribution protocol.
    Remote {
        /// `host` or `host:port`.
        registry: String,
        /// The repository path, e.g. `org/packets`.
        repository: String,
    },
    /// A local OCI Image Layout folder: the repository `name` is the folder `dir/name`.
    Layout {
        /// The folder holding one layout folder per repository.
        dir: PathBuf,
        /// The repository's name.
        repository: String,
    },
}

impl Location {
    /// The repository's last path segment, which is the shard's name.
    pub fn name(&self) -> &str {
        let repo = match self {
            Location::Remote { repository, .. } | Location::Layout { repository, .. } => repository,
        };
        repo.rsplit('/').next().unwrap_or(repo)
    }

    /// The repository as text, without tag or version: `host/repo` or `oci:DIR/repo`.
    pub fn repository_ref(&self) -> String {
        match self {
            Location::Remote {
                registry,
                repository,
            } => format!("{registry}/{repository}"),
            Location::Layout { dir, repository } => {
                format!("oci:{}/{repository}", dir.display())
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository_ref())
    }
}

/// Which version of a repository is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The newest stable version.
    Latest,
    /// The newest version matching a Cargo requirement.
    Requirement(semver::VersionReq),
    /// An exact tag.
    Tag(String),
    /// Exact content: a manifest digest.
    Digest(Digest),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Latest => f.write_str("*"),
            Selector::Requirement(req) => write!(f, "{req}"),
            Selector::Tag(tag) => write!(f, ":{tag}"),
            Selector::Digest(d) => write!(f, "@{d}"),
        }
    }
}

/// A parsed shard reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRef {
    /// The repository.
    pub location: Location,
    /// The version wanted.
    pub selector: Selector,
}

impl ShardRef {
    /// Parses `text`, placing short references under `default_registry`.
    pub fn parse(text: &str, default_registry: Option<&str>) -> Result<Self, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        // Split off `@digest` or `@requirement` first: requirements may hold `:`-free text only,
        // and a digest holds a `:`, so the `@` split must come before looking for a tag.
        let (path, selector) = match text.rsplit_once('@') {
            Some((path, rest)) if rest.starts_with("sha256:") => {
                let digest = rest
                    .parse::<Digest>()
                    .map_err(|e| invalid(&e.to_string()))?;
                (path, Selector::Digest(digest))
            }
            Some((path, rest)) => {
                let req = semver::VersionReq::parse(rest).map_err(|e| {
                    invalid(&format!(
                        "`{rest}` is not a version requirement ({e}); write e.g. `0.1`, `=0.1.2` or `>=0.2, <0.4`"
                    ))
                })?;
                (path, Selector::Requirement(req))
            }
            None => (text, Selector::Latest),
        };
        let (path, selector) = split_tag(path, selector).map_err(|r| invalid(&r))?;
        let location = if let Some(rest) = path.strip_prefix("oci:") {
            layout_location(rest).map_err(|r| invalid(&r))?
        } else if has_host(path) {
            let (registry, repository) = path
                .split_once('/')
                .ok_or_else(|| invalid("a registry host needs a repository after it"))?;
            Location::Remote {
                registry: registry.to_string(),
                repository: repository.to_string(),
            }
        } else {
            let default = default_registry
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| ReferenceError::NoDefaultRegistry(path.to_string()))?;
            let joined = format!("{}/{path}", default.trim_end_matches('/'));
            if let Some(rest) = joined.strip_prefix("oci:") {
                layout_location(rest).map_err(|r| invalid(&r))?
            } else if has_host(&joined) {
                let (registry, repository) = joined
                    .split_once('/')
                    .ok_or_else(|| invalid("the default registry is malformed"))?;
                Location::Remote {
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                }
            } else {
                return Err(invalid(&format!(
                    "the default registry `{default}` does not start with a host (like `ghcr.io/org` or `127.0.0.1:5000`) or `oci:`"
                )));
            }
        };
        validate_repository(&location).map_err(|r| invalid(&r))?;
        Ok(Self { location, selector })
    }

    /// The default registry from the environment (`ARKHAM_REGISTRY`), if set.
    pub fn default_registry() -> Option<String> {
        std::env::var(REGISTRY_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
    }
}

impl fmt::Display for ShardRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            Selector::Latest => write!(f, "{}", self.location),
            Selector::Requirement(req) => write!(f, "{}@{req}", self.location),
            Selector::Tag(tag) => write!(f, "{}:{tag}", self.location),
            Selector::Digest(d) => write!(f, "{}@{d}", self.location),
        }
    }
}

/// `name:tag` in the last segment is an exact tag (only when no `@` selector was given).
fn split_tag(path: &str, selector: Selector) -> Result<(&str, Selector), String> {
    let last_start = path.rfind('/').map_or(0, |i| i + 1);
    let last = &path[last_start..];
    match last.split_once(':') {
        // `oci:name` without a folder: the colon is the scheme's.
        Some(_) if path.starts_with("oci:") && last_start == 0 => Ok((path, selector)),
        Some((name, tag)) => {
            if selector != Selector::Latest {
                return Err("give either a `:tag` or an `@requirement`, not both".to_string());
            }
            if tag.is_empty() || name.is_empty() {
                return Err("an empty name or tag".to_string());
            }
            Ok((
                &path[..last_start + name.len()],
                Selector::Tag(tag.to_string()),
            ))
        }
        None => Ok((path, selector)),
    }
}

fn layout_location(rest: &str) -> Result<Location, String> {
    let (dir, repository) = rest
        .rsplit_once('/')
        .ok_or_else(|| "write a layout reference as `oci:FOLDER/name`".to_string())?;
    let dir = if dir.is_empty() { "/" } else { dir };
    Ok(Location::Layout {
        dir: PathBuf::from(dir),
        repository: repository.to_string(),
    })
}

/// Docker's rule: the first segment is a host when it has a `.` or `:` or is `localhost`.
fn has_host(path: &str) -> bool {
    match path.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

fn validate_repository(location: &Location) -> Result<(), String> {
    let repository = match location {
        Location::Remote { repository, .. } | Location::Layout { repository, .. } => repository,
    };
    for segment in repository.split('/') {
        let ok = !segment.is_empty()
            && segment.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
            && segment.as_bytes()[0].is_ascii_alphanumeric();
        if !ok {
            return Err(format!(
                "repository segment `{segment}` must be lowercase letters, digits, `-`, `_` or `.`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(registry: &str, repository: &str) -> Location {
        Location::Remote {
            registry: registry.into(),
            repository: repository.into(),
        }
    }

    fn req(r: &str) -> Selector {
        Selector::Requirement(semver::VersionReq::parse(r).unwrap())
    }

    #[test]
    fn parses_every_form() {
        let d = Some("ghcr.io/my-org");
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases = [
            (
                "packets",
                remote("ghcr.io", "my-org/packets"),
                Selector::Latest,
            ),
            (
                "packets@0.1",
                remote("ghcr.io", "my-org/packets"),
                req("0.1"),
            ),
            (
                "packets@=0.1.2",
                remote("ghcr.io", "my-org/packets"),
                req("=0.1.2"),
            ),
            (
                "packets@>=0.2,<0.4",
                remote("ghcr.io", "my-org/packets"),
                req(">=0.2, <0.4"),
            ),
            (
                "ghcr.io/org/packets@0.1",
                remote("ghcr.io", "org/packets"),
                req("0.1"),
            ),
            (
                "localhost:5000/ns/packets:0.1.3",
                remote("localhost:5000", "ns/packets"),
                Selector::Tag("0.1.3".into()),
            ),
            (
                &format!("127.0.0.1:5000/packets@{digest}"),
                remote("127.0.0.1:5000", "packets"),
                Selector::Digest(digest.parse().unwrap()),
            ),
            (
                "oci:/srv/shards/packets@0.1",
                Location::Layout {
                    dir: "/srv/shards".into(),
                    repository: "packets".into(),
                },
                req("0.1"),
            ),
            (
                "oci:rel/dir/packets:0.1.0",
                Location::Layout {
                    dir: "rel/dir".into(),
                    repository: "packets".into(),
                },
                Selector::Tag("0.1.0".into()),
            ),
        ];
        for (text, location, selector) in cases {
            let parsed = ShardRef::parse(text, d).unwrap();
            assert_eq!(parsed.location, location, "{text}");
            assert_eq!(parsed.selector, selector, "{text}");
            assert_eq!(parsed.location.name(), "packets");
        }
    }

    #[test]
    fn default_registry_may_be_a_layout_or_a_host_port() {
        let r = ShardRef::parse("packets@0.1", Some("oci:/tmp/shards")).unwrap();
        assert_eq!(
            r.location,
            Location::Layout {
                dir: "/tmp/shards".into(),
                repository: "packets".into()
            }
        );
        let r = ShardRef::parse("packets", Some("127.0.0.1:5055")).unwrap();
        assert_eq!(r.location, remote("127.0.0.1:5055", "packets"));
    }

    #[test]
    fn refuses_bad_references() {
        assert!(matches!(
            ShardRef::parse("packets@0.1", None),
            Err(ReferenceError::NoDefaultRegistry(_))
        ));
        for bad in [
            "",
            "packets@banana",
            "packets@sha256:abc",
            "ghcr.io/org/Packets",
            "ghcr.io/org/packets:0.1@0.1",
            "ghcr.io/",
        ] {
            assert!(ShardRef::parse(bad, Some("ghcr.io/o")).is_err(), "{bad}");
        }
        assert!(ShardRef::parse("packets", Some("noregistry")).is_err());
    }
}
