//! Whether the frame can run a component: its `requires_frame`, its imports, and its exports.

use super::manifest::{Manifest, Service};
use super::package::{Interfaces, split_versioned, version_compatible};
use crate::runtime::linker::{PROVIDED, WASI_VERSION};

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
        /// The version the frame calls.
        expected: String,
    },
    /// Neither HTTP entry point is exported.
    #[error(
        "it exports no HTTP entry point: build it for the `arkham:shard/buffered-shard` world (export `arkham:shard/http-handler@0.1.0`, as the Rust SDK does) or the `arkham:shard/shard` world (export `wasi:http/incoming-handler@{WASI_VERSION}`)"
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
        let provided_version = semver::Version::parse(provided).ok();
        let compatible = match (&version, &provided_version) {
            (Some(wanted), Some(have)) => version_compatible(wanted, have),
            _ => false,
        };
        if !compatible {
            problems.push(Incompatibility::ImportVersion {
                import: import.clone(),
                provided: (*provided).to_string(),
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
                EVENT_HANDLER.0, EVENT_HANDLER.1
            ))),
        }
    }
    problems
}

/// The exports the frame calls, by name without version, with the version it calls.
const HTTP_HANDLER: (&str, &str) = ("arkham:shard/http-handler", "0.1.0");
const INCOMING_HANDLER: (&str, &str) = ("wasi:http/incoming-handler", WASI_VERSION);
const EVENT_HANDLER: (&str, &str) = ("arkham:shard/event-handler", "0.1.0");

/// Whether a component exports `called`, at a version the frame can call (the semver rule the
/// linker applies to imports, which wasmtime also applies when looking up exports).
enum Exported {
    Compatible,
    Incompatible(Incompatibility),
    Missing,
}

fn exported(interfaces: &Interfaces, (name, expected): (&str, &str)) -> Exported {
    let Some(export) = interfaces
        .exports
        .iter()
        .find(|e| split_versioned(e).0 == name)
    else {
        return Exported::Missing;
    };
    let compatible = match (split_versioned(export).1, semver::Version::parse(expected)) {
        (Some(have), Ok(want)) => version_compatible(&have, &want),
        _ => false,
    };
    if compatible {
        Exported::Compatible
    } else {
        Exported::Incompatible(Incompatibility::ExportVersion {
            export: export.clone(),
            expected: expected.to_string(),
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
        for export in [
            "wasi:http/incoming-handler@0.2.6",
            "arkham:shard/http-handler@0.1.0",
        ] {
            let i = interfaces(
                &["wasi:io/poll@0.2.6", "arkham:shard/database@0.1.0"],
                &[export],
            );
            assert_eq!(check(&m, &i), [], "exporting {export}");
        }
    }

    #[test]
    fn every_problem_is_named() {
        let m = manifest("requires_frame = \">=9\"\n[events]\nsubscribes = [\"a.*\"]\n");
        let i = interfaces(
            &[
                "wasi:sockets/tcp@0.2.0",
                "wasi:http/types@0.3.0",
                "arkham:shard/storage@0.1.0",
            ],
            &[],
        );
        let problems = check(&m, &i);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 6, "{text:#?}");
        assert!(text[0].contains(">=9"));
        assert!(text[1].contains("wasi:sockets/tcp@0.2.0"));
        assert!(text[2].contains("wasi:http/types@0.3.0"));
        assert!(text[3].contains("`storage` service"));
        assert!(text[4].contains("http-handler") && text[4].contains("incoming-handler"));
        assert!(text[5].contains("event-handler"));
    }

    #[test]
    fn an_export_is_counted_only_at_a_version_the_frame_calls() {
        let m = manifest("[events]\nsubscribes = [\"a.*\"]\n");
        // Only an http-handler of another minor version, and such an event-handler: refused,
        // naming each with the version the frame calls.
        let i = interfaces(
            &[],
            &[
                "arkham:shard/http-handler@0.2.0",
                "arkham:shard/event-handler@1.0.0",
            ],
        );
        let text: Vec<String> = check(&m, &i).iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(
            text[0].contains("arkham:shard/http-handler@0.2.0") && text[0].contains("0.1.0"),
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
                "arkham:shard/http-handler@0.2.0",
                "wasi:http/incoming-handler@0.2.6",
                "arkham:shard/event-handler@0.1.0",
            ],
        );
        assert_eq!(check(&m, &i), []);
    }
}
