//! The errors of registry operations. None of them ever holds a secret.

use crate::reference::ReferenceError;
use crate::resolve::NoMatch;
use std::path::PathBuf;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// No version matches.
    #[error(transparent)]
    NoMatch(#[from] NoMatch),
    /// A repository lists more tags than the client reads.
    #[error(
        "{location} lists more than {limit} tags; the registry may be paging without end. Pin a version by digest (`NAME@sha256:…`) to install without listing"
    )]
    TooManyTags {
        /// The repository.
        location: String,
        /// How many tags were read.
        limit: usize,
    },
    /// The registry could not be reached.
    #[error(
        "cannot reach the registry {registry}: {message}; check the address and that it is running (a registry that speaks plain HTTP needs --plain-http unless it is on loopback)"
    )]
    Unreachable {
        /// The registry host.
        registry: String,
        /// What failed.
        message: String,
    },
    /// The registry refused the credentials, or asked for some.
    #[error(
        "the registry {registry} refused access to `{repository}` (401/403); log in with `arkham registry login {registry}` or set ARKHAM_REGISTRY_USERNAME and ARKHAM_REGISTRY_PASSWORD"
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
    },
    /// Credentials were given, and the registry would not let them push.
    #[error(
        "the registry {registry} does not let `{username}` push to `{repository}` (it may only pull); ask the repository's owner for write access (on GHCR: a token with write:packages and a write role on the package), or `arkham registry login {registry}` as an account that has it"
    )]
    PushDenied {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// Who tried.
        username: String,
    },
    /// No such repository, tag or blob.
    #[error(
        "{what} not found in {location}; `arkham shard inspect` with another version, or push it first"
    )]
    NotFound {
        /// What was looked for.
        what: String,
        /// Where.
        location: String,
    },
    /// `registry login`: the registry refused the credentials.
    #[error(
        "the registry {registry} refused these credentials, and nothing was stored; check the username and the password or token (GHCR wants a personal access token with read:packages, and write:packages to push)"
    )]
    LoginRefused {
        /// The registry host.
        registry: String,
    },
    /// Offline, and the local cache does not hold what was asked for.
    #[error(
        "{what} of {location} is not in the local cache: offline, only versions added before are known; run without --offline when the registry is reachable"
    )]
    NotCached {
        /// What was looked for.
        what: String,
        /// The repository.
        location: String,
    },
    /// A blob's content does not match its digest.
    #[error(
        "{what} from {location} is corrupt: expected {expected}, got {actual}; it was discarded and nothing was installed"
    )]
    DigestMismatch {
        /// Which blob.
        what: String,
        /// Where.
        location: String,
        /// The digest the manifest names.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A blob's size does not match its descriptor.
    #[error(
        "{what} from {location} has {actual} bytes but its descriptor says {expected}; it was discarded and nothing was installed"
    )]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// Where.
        location: String,
        /// The size the manifest names.
        expected: u64,
        /// The size that arrived.
        actual: u64,
    },
    /// The artifact is not a single-component Wasm artifact.
    #[error("{reference} is not a Wasm shard artifact: {reason}")]
    NotAShard {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// Pushing would overwrite a version.
    #[error(
        "{reference} already exists; versions are immutable, bump the version in shard.toml (or pass --force to overwrite)"
    )]
    TagExists {
        /// The reference.
        reference: String,
    },
    /// A transfer broke off (the connection dropped, or the body ended early).
    #[error(
        "downloading {what} from {location} broke off ({message}); nothing was installed or kept, run the command again"
    )]
    Interrupted {
        /// What was being downloaded.
        what: String,
        /// Registry and repository.
        location: String,
        /// The transport's message.
        message: String,
    },
    /// The registry answered something unexpected.
    #[error("registry {registry}: {message}")]
    Protocol {
        /// The registry host.
        registry: String,
        /// What it said.
        message: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A local OCI layout is malformed.
    #[error("OCI layout {path} is malformed: {reason}")]
    Layout {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Credentials could not be read or stored.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

/// Maps an `oci-client` error to ours, naming the registry and repository.
pub(crate) fn from_oci(
    e: oci_client::errors::OciDistributionError,
    registry: &str,
    repository: &str,
    what: &str,
) -> RegistryError {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
    let unauthorized = || RegistryError::Unauthorized {
        registry: registry.to_string(),
        repository: repository.to_string(),
    };
    let not_found = || RegistryError::NotFound {
        what: what.to_string(),
        location: format!("{registry}/{repository}"),
    };
    match e {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => unauthorized(),
        E::ServerError {
            code: 401 | 403, ..
        } => unauthorized(),
        E::ServerError { code: 404, .. } | E::ImageManifestNotFoundError(_) => not_found(),
        E::RegistryError { ref envelope, .. } => {
            let code = envelope.errors.first().map(|e| &e.code);
            match code {
                Some(C::Unauthorized | C::Denied) => unauthorized(),
                Some(C::ManifestUnknown | C::NameUnknown | C::BlobUnknown | C::NotFound) => {
                    not_found()
                }
                _ => RegistryError::Protocol {
                    registry: registry.to_string(),
                    message: e.to_string(),
                },
            }
        }
        E::RequestError(ref r) if r.is_connect() || r.is_timeout() || r.is_request() => {
            RegistryError::Unreachable {
                registry: registry.to_string(),
                message: error_chain(r),
            }
        }
        E::RequestError(ref r) if r.is_body() || r.is_decode() => RegistryError::Interrupted {
            what: what.to_string(),
            location: format!("{registry}/{repository}"),
            message: error_chain(r),
        },
        E::DigestError(d) => RegistryError::DigestMismatch {
            what: what.to_string(),
            location: format!("{registry}/{repository}"),
            expected: "the digest in the manifest".to_string(),
            actual: d.to_string(),
        },
        other => RegistryError::Protocol {
            registry: registry.to_string(),
            message: other.to_string(),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
