//! Whether the frame can run a component: its `requires_frame`, its imports, and its exports.

use super::manifest::{Manifest, Service};
use super::package::{Interfaces, split_versioned, version_compatible};
use crate::runtime::linker::{ARKHAM_VERSIONS, PROVIDED, WASI_VERSION};

/// The frame's version, which `requires_frame` is checked against.
pub const FRAME_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One reason a component cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatibility {
    /// `requires_frame` excludes this frame.
    #[error(
        "it requires frame {required}, but this frame is {FRAME_VERSION}; install a shard version built for this frame, or upgrade arkham"
    )]
    FrameVersion {
        /// The requirement.
        required: String,
    },
    /// An import the frame does not provide at all.
    #[error("it imports `{0}`, which the frame does not provide to shards")]
    UnknownImport(String),
    /// An import of a version the frame cannot satisfy.
    #[error("it imports `{import}`, but the frame provides version {provided}")]
    ImportVersion {
        /// The import.
        import: String,
        /// What the frame provides.
        provided: String,
    },
    /// A service import the manifest does not declare.
    #[error(
        "it imports `{import}` but its manifest does not declare the `{service}` service; add it to services.required or services.optional"
    )]
    UndeclaredService {
        /// The import.
        import: String,
        /// The service.
        service: Service,
    },
    /// A missing export.
    #[error("it does not export `{0}`")]
    MissingExport(String),
    /// An export of a version the frame does not call.
    #[error(
        "it exports `{export}`, but the frame calls version {expected}; rebuild it against this frame's WIT (the `wit/` folder of arkham {FRAME_VERSION})"
    )]
    ExportVersion {
        /// The export.
        export: String,
        /// The versions the frame calls (`0.2.0 or 0.1.0`).
        expected: String,
    },
    /// Neither HTTP entry point is exported.
    #[error(
        "it exports no HTTP entry point: build it for the `arkham:shard/buffered-shard` world (export `arkham:shard/http-handler@{}`, as the Rust SDK does) or the `arkham:shard/shard` world (export `wasi:http/incoming-handler@{WASI_VERSION}`)",
        ARKHAM_VERSIONS[0]
    )]
    NoHttpExport,
}

/// Every reason the component described by `manifest` and `interfaces` cannot run on this frame.
pub fn check(manifest: &Manifest, interfaces: &Interfaces) -> Vec<Incompatibility> {
    let mut problems = Vec::new();
    let frame =
        semver::Version::parse(FRAME_VERSION).unwrap_or_else(|_| semver::Version::new(0, 0, 0));
    if !manifest.requires_frame.matches(&frame) {
        problems.push(Incompatibility::FrameVersion {
            required: manifest.requires_frame.to_string(),
        });
    }
    let declared = manifest.services.declared();
    for import in &interfaces.imports {
        let (bare, version) = split_versioned(import);
        let Some((_, provided)) = PROVIDED.iter().find(|(name, _)| *name == bare) else {
            problems.push(Incompatibility::UnknownImport(import.clone()));
            continue;
        };
        if !any_compatible(version.as_ref(), provided) {
            problems.push(Incompatibility::ImportVersion {
                import: import.clone(),
                provided: provided.join(" or "),
            });
            continue;
        }
        if let Some(service) = Service::ALL.iter().find(|s| s.interface() == bare)
            && !declared.contains(service)
        {
            problems.push(Incompatibility::UndeclaredService {
                import: import.clone(),
                service: *service,
            });
        }
    }
    let http = [HTTP_HANDLER, INCOMING_HANDLER].map(|called| exported(interfaces, called));
    if !http.iter().any(|e| matches!(e, Exported::Compatible)) {
        let mut refused = http.into_iter().filter_map(|e| match e {
            Exported::Incompatible(problem) => Some(problem),
            _ => None,
        });
        match refused.next() {
            // The frame would call neither: name the versions it would call instead.
            Some(first) => problems.extend(std::iter::once(first).chain(refused)),
            None => problems.push(Incompatibility::NoHttpExport),
        }
    }
    if !manifest.events.subscribes.is_empty() {
        match exported(interfaces, EVENT_HANDLER) {
            Exported::Compatible => {}
            Exported::Incompatible(problem) => problems.push(problem),
            Exported::Missing => problems.push(Incompatibility::MissingExport(format!(
                "{}@{} (required because the manifest subscribes to events)",
                EVENT_HANDLER.0, EVENT_HANDLER.1[0]
            ))),
        }
    }
    problems
}

/// The exports the frame calls, by name without version, with the versions it calls.
const HTTP_HANDLER: (&str, &[&str]) = ("arkham:shard/http-handler", ARKHAM_VERSIONS);
const INCOMING_HANDLER: (&str, &[&str]) = ("wasi:http/incoming-handler", &[WASI_VERSION]);
const EVENT_HANDLER: (&str, &[&str]) = ("arkham:shard/event-handler", ARKHAM_VERSIONS);

/// Whether `wanted` (an import's or export's version) matches one of `provided` under the semver
/// rule the linker applies.
fn any_compatible(wanted: Option<&semver::Version>, provided: &[&str]) -> bool {
    wanted.is_some_and(|wanted| {
        provided.iter().any(|have| {
            semver::Version::parse(have).is_ok_and(|have| version_compatible(wanted, &have))
        })
    })
}

/// Whether a component exports `called`, at a version the frame can call (the semver rule the
/// linker applies to imports, which wasmtime also applies when looking up exports).
enum Exported {
    Compatible,
    Incompatible(Incompatibility),
    Missing,
}

fn exported(interfaces: &Interfaces, (name, expected): (&str, &[&str])) -> Exported {
    let mut named = interfaces
        .exports
        .iter()
        .filter(|e| split_versioned(e).0 == name)
        .peekable();
    let Some(&export) = named.peek() else {
        return Exported::Missing;
    };
    if named.any(|e| any_compatible(split_versioned(e).1.as_ref(), expected)) {
        Exported::Compatible
    } else {
        Exported::Incompatible(Incompatibility::ExportVersion {
            export: export.clone(),
            expected: expected.join(" or "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        Manifest::parse(
            &format!("name = \"demo\"\nversion = \"0.1.0\"\n{extra}"),
            "test",
        )
        .unwrap()
    }

    fn interfaces(imports: &[&str], exports: &[&str]) -> Interfaces {
        Interfaces {
            imports: imports.iter().map(|s| s.to_string()).collect(),
            exports: exports.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn compatible_component_passes() {
        let m = manifest("[services]\nrequired = [\"database\"]\n");
        // Either package version the frame links: a shard built before 0.2.0 still installs.
        for version in ["0.2.0", "0.1.0"] {
            for export in [
                "wasi:http/incoming-handler@0.2.6".to_string(),
                format!("arkham:shard/http-handler@{version}"),
            ] {
                let i = interfaces(
                    &[
                        "wasi:io/poll@0.2.6",
                        &format!("arkham:shard/database@{version}"),
                    ],
                    &[&export],
                );
                assert_eq!(check(&m, &i), [], "exporting {export}");
            }
        }
    }

    #[test]
    fn every_problem_is_named() {
        let m = manifest("requires_frame = \">=9\"\n[events]\nsubscribes = [\"a.*\"]\n");
        let i = interfaces(
            &[
                "wasi:http/outgoing-handler@0.2.0",
                "wasi:http/types@0.3.0",
                "arkham:shard/storage@0.1.0",
            ],
            &[],
        );
        let problems = check(&m, &i);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 6, "{text:#?}");
        assert!(text[0].contains(">=9"));
        assert!(text[1].contains("wasi:http/outgoing-handler@0.2.0"));
        assert!(text[2].contains("wasi:http/types@0.3.0"));
        assert!(text[3].contains("`storage` service"));
        assert!(text[4].contains("http-handler") && text[4].contains("incoming-handler"));
        assert!(text[5].contains("event-handler"));
    }

    #[test]
    fn an_export_is_counted_only_at_a_version_the_frame_calls() {
        let m = manifest("[events]\nsubscribes = [\"a.*\"]\n");
        // Only an http-handler of another minor version, and such an event-handler: refused,
        // naming each with the versions the frame calls.
        let i = interfaces(
            &[],
            &[
                "arkham:shard/http-handler@0.3.0",
                "arkham:shard/event-handler@1.0.0",
            ],
        );
        let text: Vec<String> = check(&m, &i).iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(
            text[0].contains("arkham:shard/http-handler@0.3.0")
                && text[0].contains("0.2.0 or 0.1.0"),
            "{text:#?}"
        );
        assert!(
            text[1].contains("arkham:shard/event-handler@1.0.0"),
            "{text:#?}"
        );
        // The same with a wasi:http export the frame can call: served through that one.
        let i = interfaces(
            &[],
            &[
                "arkham:shard/http-handler@0.3.0",
                "wasi:http/incoming-handler@0.2.6",
                "arkham:shard/event-handler@0.1.0",
            ],
        );
        assert_eq!(check(&m, &i), []);
        // An export at a version the frame calls counts even after one it does not.
        let i = interfaces(
            &[],
            &[
                "arkham:shard/http-handler@0.3.0",
                "arkham:shard/http-handler@0.2.0",
                "arkham:shard/event-handler@0.2.0",
            ],
        );
        assert_eq!(check(&m, &i), []);
    }
}
