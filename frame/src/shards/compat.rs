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
    let exports_bare: Vec<_> = interfaces
        .exports
        .iter()
        .map(|e| split_versioned(e).0)
        .collect();
    if !exports_bare.contains(&"arkham:shard/http-handler")
        && !exports_bare.contains(&"wasi:http/incoming-handler")
    {
        problems.push(Incompatibility::NoHttpExport);
    }
    if !manifest.events.subscribes.is_empty()
        && !exports_bare.contains(&"arkham:shard/event-handler")
    {
        problems.push(Incompatibility::MissingExport(
            "arkham:shard/event-handler@0.1.0 (required because the manifest subscribes to events)"
                .to_string(),
        ));
    }
    problems
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
}
