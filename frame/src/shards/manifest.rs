//! The shard manifest (`shard.toml`): what a shard is, what it needs and what it offers.
//!
//! The same document travels inside a built component as a custom section (see
//! [`super::package`]), so a `.wasm` file is self-describing.

pub use crate::services::events::names::{pattern_matches, validate_event_name, validate_pattern};
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

/// Names a shard may not take: they are routes of the frame itself.
const RESERVED_NAMES: &[&str] = &["frame", "api", "admin", "static", "metrics"];

/// Dashboard categories, in the order the dashboard shows them.
pub const CATEGORIES: &[&str] = &[
    "System",
    "Data",
    "Search",
    "Analysis",
    "Visualize",
    "Export",
];

/// A parsed and validated shard manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The shard's name; also its API prefix (`/api/{name}`) and its event namespace.
    pub name: String,
    /// The shard's version.
    pub version: Version,
    /// One line on what the shard does.
    #[serde(default)]
    pub description: String,
    /// The frame versions this shard works with.
    #[serde(default = "any_version")]
    pub requires_frame: VersionReq,
    /// Free-form capability names, shown on the dashboard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// A path of the shard's API (e.g. `/health`) that answers 2xx when the shard works. A new
    /// version of a running shard is sent calls only once this answers 2xx; without it, once
    /// it loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Where the shard appears on the dashboard; absent for shards without a page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub navigation: Option<Navigation>,
    /// The frame services the shard uses.
    #[serde(default)]
    pub services: Services,
    /// The events the shard publishes and subscribes to.
    #[serde(default)]
    pub events: Events,
    /// How to build the shard from its folder; not embedded in built components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
}

/// Longest dashboard route or UI path a manifest may name.
const MAX_PATH_LEN: usize = 256;

/// The frame's own pages and APIs: no shard route may claim them.
const RESERVED_ROUTES: &[&str] = &["api", "static", "admin", "shards", "metrics"];

/// A path the browser will not rewrite: absolute, plain segments (no `.`/`..`, no empty
/// segment, nothing percent-encoded), no fragment; a query only where `query` allows it.
fn plain_path(path: &str, query: bool) -> Result<(), String> {
    let (path, q) = match path.split_once('?') {
        Some((p, q)) if query => (p, Some(q)),
        Some(_) => return Err(format!("is `{path}`; it may not have a query (`?`)")),
        None => (path, None),
    };
    if path.len() + q.map_or(0, str::len) > MAX_PATH_LEN {
        return Err(format!("is longer than {MAX_PATH_LEN} characters"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("is `{path}`; it must start with `/`"));
    };
    let segments: Vec<&str> = rest.strip_suffix('/').unwrap_or(rest).split('/').collect();
    for segment in segments.iter().filter(|_| !rest.is_empty()) {
        let plain = segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
        if segment.is_empty() || *segment == "." || *segment == ".." || !plain {
            return Err(format!(
                "is `{path}`; use `/`-separated segments of letters, digits, `-`, `_`, `.` and `~`, \
                 without `.` or `..` segments"
            ));
        }
    }
    let query_plain = q.is_none_or(|q| {
        q.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '=' | '&'))
    });
    if !query_plain {
        return Err(format!(
            "has the query `{}`; use only letters, digits, `-_.~=&`",
            q.unwrap_or_default()
        ));
    }
    Ok(())
}

/// A dashboard route: a plain path at or below `/{name}`, so that no two shards claim one
/// route (as no two share an API prefix), and not the frame's own (`/`, `/api`, `/shards`, …).
fn check_route(route: &str, name: &str) -> Result<(), String> {
    plain_path(route, false)?;
    let first = route
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if first.is_empty() || RESERVED_ROUTES.contains(&first) {
        return Err(format!(
            "is `{route}`; `/`, {} belong to the frame: pick a route such as `/{{name}}`",
            RESERVED_ROUTES
                .iter()
                .map(|r| format!("`/{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let own = format!("/{name}");
    let path = route.trim_end_matches('/');
    let below = path == own || path.strip_prefix(&own).is_some_and(|r| r.starts_with('/'));
    if !below {
        return Err(format!(
            "is `{route}`; a shard's dashboard routes are `{own}` and the paths below it"
        ));
    }
    Ok(())
}

fn any_version() -> VersionReq {
    VersionReq::STAR
}

/// Dashboard placement of a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Navigation {
    /// One of [`CATEGORIES`].
    pub category: String,
    /// Position within the category, 0 to 999.
    #[serde(default)]
    pub order: u16,
    /// Icon name (Lucide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Menu label.
    pub label: String,
    /// The dashboard route of the shard's page, e.g. `/packets`.
    pub route: String,
    /// An API path answering `{"count": N}`, shown as a badge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge_endpoint: Option<String>,
    /// Entries below the shard's menu item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_routes: Vec<SubRoute>,
    /// A path under the shard's API (e.g. `/ui/`, served at `/api/{name}/ui/`) answering the
    /// shard's own HTML page, which the dashboard shows, sandboxed, for `route` and every
    /// route below it. Without it the dashboard shows a generic page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<String>,
}

/// A menu entry below a shard's item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubRoute {
    /// Identifier, unique within the shard.
    pub id: String,
    /// Menu label.
    pub label: String,
    /// Dashboard route.
    pub route: String,
    /// Icon name (Lucide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// An API path answering `{"count": N}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge_endpoint: Option<String>,
}

/// A frame service a shard can use; each is one WIT interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// `arkham:shard/database`.
    Database,
    /// `arkham:shard/events`.
    Events,
    /// `arkham:shard/storage`.
    Storage,
}

impl Service {
    /// Every service, in a stable order.
    pub const ALL: [Service; 3] = [Service::Database, Service::Events, Service::Storage];

    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Database => "database",
            Service::Events => "events",
            Service::Storage => "storage",
        }
    }

    /// The WIT interface that provides the service, without version.
    pub fn interface(self) -> &'static str {
        match self {
            Service::Database => "arkham:shard/database",
            Service::Events => "arkham:shard/events",
            Service::Storage => "arkham:shard/storage",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The services a shard needs (`required`) and can do without (`optional`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Services without which the shard cannot work.
    #[serde(default)]
    pub required: Vec<Service>,
    /// Services the shard uses when granted and copes without.
    #[serde(default)]
    pub optional: Vec<Service>,
}

impl Services {
    /// Every service the shard declares, required or optional.
    pub fn declared(&self) -> BTreeSet<Service> {
        self.required
            .iter()
            .chain(&self.optional)
            .copied()
            .collect()
    }
}

/// Event names a shard publishes and patterns it subscribes to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// Names or patterns of events the shard may publish; each starts with `{name}.`.
    #[serde(default)]
    pub publishes: Vec<String>,
    /// Patterns of events delivered to the shard's `event-handler`.
    #[serde(default)]
    pub subscribes: Vec<String>,
}

/// How `arkham shard build` builds a shard folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// A shell-free command line, split on whitespace, run in the shard folder.
    pub command: String,
    /// The component the command produces, relative to the shard folder.
    pub component: String,
}

/// A manifest that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The manifest's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has unknown fields or values of the wrong type.
    #[error("{origin} is not a valid shard manifest: {message}")]
    Parse {
        /// Where the manifest came from (a path, or a component).
        origin: String,
        /// The parser's message, which names the field and the line.
        message: String,
    },
    /// A field has a value the frame does not accept.
    #[error("{origin}: field `{field}` {problem}")]
    Invalid {
        /// Where the manifest came from.
        origin: String,
        /// The offending field, dotted (`events.publishes`).
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl Manifest {
    /// Reads and validates `shard.toml` at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates manifest text; `origin` names where it came from in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    /// The manifest as TOML, without the `[build]` section (which only means something in the
    /// shard's source folder).
    pub fn to_embedded_toml(&self) -> String {
        let mut copy = self.clone();
        copy.build = None;
        // Serialising plain data with no maps of non-string keys cannot fail.
        toml::to_string(&copy).unwrap_or_default()
    }

    /// The API prefix the frame serves the shard under.
    pub fn api_prefix(&self) -> String {
        format!("/api/{}", self.name)
    }

    /// Whether the shard may publish `name` according to its manifest.
    pub fn may_publish(&self, name: &str) -> bool {
        name.strip_prefix(&self.name)
            .is_some_and(|rest| rest.starts_with('.'))
            && self
                .events
                .publishes
                .iter()
                .any(|p| pattern_matches(p, name))
    }

    /// Whether an event named `name` is delivered to this shard.
    pub fn subscribes_to(&self, name: &str) -> bool {
        self.events
            .subscribes
            .iter()
            .any(|p| pattern_matches(p, name))
    }

    fn validate(&self, origin: &str) -> Result<(), ManifestError> {
        let invalid = |field: &str, problem: String| ManifestError::Invalid {
            origin: origin.to_string(),
            field: field.to_string(),
            problem,
        };
        validate_name(&self.name).map_err(|p| invalid("name", p))?;
        if let Some(health) = &self.health {
            plain_path(health, true).map_err(|p| invalid("health", p))?;
        }
        if let Some(nav) = &self.navigation {
            if !CATEGORIES.contains(&nav.category.as_str()) {
                return Err(invalid(
                    "navigation.category",
                    format!(
                        "is `{}`; use one of {}",
                        nav.category,
                        CATEGORIES.join(", ")
                    ),
                ));
            }
            if nav.order > 999 {
                return Err(invalid(
                    "navigation.order",
                    format!("is {}; use a number from 0 to 999", nav.order),
                ));
            }
            check_route(&nav.route, &self.name).map_err(|p| invalid("navigation.route", p))?;
            for sub in &nav.sub_routes {
                check_route(&sub.route, &self.name)
                    .map_err(|p| invalid("navigation.sub_routes.route", p))?;
            }
            if let Some(ui) = &nav.ui {
                plain_path(ui, false).map_err(|p| invalid("navigation.ui", p))?;
            }
            let prefix = self.api_prefix();
            let badges = nav
                .badge_endpoint
                .iter()
                .map(|b| ("navigation.badge_endpoint", b))
                .chain(
                    nav.sub_routes
                        .iter()
                        .filter_map(|s| s.badge_endpoint.as_ref())
                        .map(|b| ("navigation.sub_routes.badge_endpoint", b)),
                );
            for (field, badge) in badges {
                plain_path(badge, true).map_err(|p| invalid(field, p))?;
                if !badge.starts_with(&format!("{prefix}/")) && badge != &prefix {
                    return Err(invalid(
                        field,
                        format!(
                            "is `{badge}`; it must be a path under the shard's API, `{prefix}/`"
                        ),
                    ));
                }
            }
            let mut ids = BTreeSet::new();
            for sub in &nav.sub_routes {
                if !ids.insert(sub.id.as_str()) {
                    return Err(invalid(
                        "navigation.sub_routes",
                        format!("has the id `{}` twice; ids must be unique", sub.id),
                    ));
                }
            }
        }
        let required: BTreeSet<_> = self.services.required.iter().collect();
        if let Some(both) = self.services.optional.iter().find(|s| required.contains(s)) {
            return Err(invalid(
                "services.optional",
                format!("lists `{both}`, which is also required; list it in one place"),
            ));
        }
        let declares_events = self.services.declared().contains(&Service::Events);
        for pattern in &self.events.publishes {
            validate_pattern(pattern).map_err(|p| invalid("events.publishes", p))?;
            if !pattern.starts_with(&format!("{}.", self.name)) {
                return Err(invalid(
                    "events.publishes",
                    format!(
                        "has `{pattern}`; a shard publishes only under its own name: `{}.…`",
                        self.name
                    ),
                ));
            }
        }
        for pattern in &self.events.subscribes {
            validate_pattern(pattern).map_err(|p| invalid("events.subscribes", p))?;
        }
        if !self.events.publishes.is_empty() && !declares_events {
            return Err(invalid(
                "events.publishes",
                "is not empty but `events` is not among the services; add it to services.required or services.optional".to_string(),
            ));
        }
        if let Some(build) = &self.build {
            if build.command.split_whitespace().next().is_none() {
                return Err(invalid("build.command", "is empty; give the command that builds the component, e.g. `cargo build --release --target wasm32-wasip2`".to_string()));
            }
            if build.component.trim().is_empty() {
                return Err(invalid(
                    "build.component",
                    "is empty; give the path of the component the build command produces"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// Checks a shard name: `[a-z][a-z0-9_-]*`, at most 64 bytes, not reserved.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || name.len() > 64
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(format!(
            "is `{name}`; a shard name starts with a lowercase letter and has at most 64 lowercase letters, digits, `_` or `-`"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "is `{name}`, which the frame reserves; choose another name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKETS: &str = r#"
name = "packets"
version = "0.1.0"
description = "Packets"
requires_frame = ">=0.1.0"

[navigation]
category = "Export"
order = 62
label = "Packets"
route = "/packets"
badge_endpoint = "/api/packets/count"

[services]
required = ["database", "events"]
optional = ["storage"]

[events]
publishes = ["packets.packet.created", "packets.content.*"]
subscribes = ["documents.*"]
"#;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::parse(PACKETS, "shard.toml").unwrap();
        assert_eq!(m.name, "packets");
        assert_eq!(m.version, Version::new(0, 1, 0));
        assert!(m.may_publish("packets.packet.created"));
        assert!(m.may_publish("packets.content.added"));
        assert!(!m.may_publish("packets.packet.deleted"));
        assert!(m.subscribes_to("documents.document.added"));
        assert!(!m.subscribes_to("packets.packet.created"));
        let again = Manifest::parse(&m.to_embedded_toml(), "embedded").unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn a_ui_path_and_badge_queries_are_accepted() {
        let text = PACKETS
            .replace(
                "route = \"/packets\"\n",
                "route = \"/packets\"\nui = \"/ui/\"\n",
            )
            .replace("/api/packets/count", "/api/packets/count?status=draft");
        let m = Manifest::parse(&text, "shard.toml").unwrap();
        let nav = m.navigation.unwrap();
        assert_eq!(nav.ui.as_deref(), Some("/ui/"));
        assert_eq!(
            nav.badge_endpoint.as_deref(),
            Some("/api/packets/count?status=draft")
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let text = format!("{PACKETS}\nentry_point = \"x\"\n");
        let err = Manifest::parse(&text, "shard.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry_point"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field_and_the_fix() {
        let cases = [
            (
                PACKETS.replace("name = \"packets\"", "name = \"Packets\""),
                "`name`",
            ),
            (
                PACKETS.replace("name = \"packets\"", "name = \"frame\""),
                "reserves",
            ),
            (
                PACKETS.replace("version = \"0.1.0\"", "version = \"one\""),
                "version",
            ),
            (
                PACKETS.replace("\"Export\"", "\"Exports\""),
                "navigation.category",
            ),
            (
                PACKETS.replace(
                    "\"packets.packet.created\"",
                    "\"documents.document.created\"",
                ),
                "own name",
            ),
            (
                PACKETS.replace("\"documents.*\"", "\"documents..x\""),
                "events.subscribes",
            ),
            (
                PACKETS.replace("optional = [\"storage\"]", "optional = [\"events\"]"),
                "also required",
            ),
            (
                PACKETS.replace("\"/api/packets/count\"", "\"/api/other/count\""),
                "badge_endpoint",
            ),
            // The browser would resolve `..` to the frame's admin API.
            (
                PACKETS.replace(
                    "\"/api/packets/count\"",
                    "\"/api/packets/../frame/admin/config\"",
                ),
                "without `.` or `..` segments",
            ),
            (
                PACKETS.replace("\"/api/packets/count\"", "\"/api/packets/%2e%2e/x\""),
                "navigation.badge_endpoint",
            ),
            (
                PACKETS.replace("\"/api/packets/count\"", "\"//evil.example/count\""),
                "navigation.badge_endpoint",
            ),
            (
                PACKETS.replace("route = \"/packets\"\n", "route = \"/admin\"\n"),
                "belong to the frame",
            ),
            (
                PACKETS.replace("route = \"/packets\"\n", "route = \"/\"\n"),
                "belong to the frame",
            ),
            // `/metrics` is the frame's metrics endpoint, so no shard may be named after it.
            (
                PACKETS.replace("name = \"packets\"", "name = \"metrics\""),
                "reserves",
            ),
            // Another shard's route: every route is under the shard's own name.
            (
                PACKETS.replace("route = \"/packets\"\n", "route = \"/notes\"\n"),
                "`/packets` and the paths below it",
            ),
            (
                PACKETS.replace("route = \"/packets\"\n", "route = \"/packetsx\"\n"),
                "`/packets` and the paths below it",
            ),
            (
                PACKETS.replace(
                    "route = \"/packets\"\n",
                    "route = \"/packets\"\nsub_routes = [{ id = \"d\", label = \"D\", route = \"/api/packets\" }]\n",
                ),
                "navigation.sub_routes.route",
            ),
            (
                PACKETS.replace("route = \"/packets\"\n", "route = \"/packets\"\nui = \"ui/\"\n"),
                "navigation.ui",
            ),
            (
                PACKETS.replace(
                    "route = \"/packets\"\n",
                    "route = \"/packets\"\nui = \"/ui/../../frame/\"\n",
                ),
                "navigation.ui",
            ),
        ];
        for (text, needle) in cases {
            let err = Manifest::parse(&text, "shard.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
        }
    }
}
