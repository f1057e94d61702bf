//! Fetching a shard from a registry: the one pipeline `shard add`, `add --locked`, `update`,
//! `inspect` and the admin API share.
//!
//! resolve → manifest and config → precheck → trust policy → download → store, then the
//! component itself is inspected once. Before the policy accepts a shard nothing but its
//! manifest, its config and its signatures is downloaded; a refusal at any step leaves the store
//! without its component and changes nothing installed.

use super::compat::{self, Incompatibility};
use super::install::{self, Inspection, InstallError};
use super::manifest::{Manifest, ManifestError};
use super::package::Interfaces;
use super::trust::{self, Policy, SignatureMode, TrustError};
use crate::config::{ConfigError, FrameConfig};
use crate::datadir::DataDir;
use arkham_registry::RegistryError;
use arkham_registry::cache::TagIndex;
use arkham_registry::digest::Digest;
use arkham_registry::lockfile::LockedShard;
use arkham_registry::pull::{self, Artifact};
use arkham_registry::reference::{Location, ReferenceError, Selector, ShardRef};
use arkham_registry::repo::{ConnectOptions, Repo};
use arkham_registry::signature::Signatures;
use arkham_registry::store::StoreError;

/// Why a shard was not fetched. Nothing was installed or changed; at most the store gained
/// manifests, configs and signatures (content-addressed, for working offline).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry refused, failed, or holds no such shard.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry could not be reached.
    #[error(
        "{0}; versions added before install without the registry: `arkham shard add --offline`"
    )]
    Unreachable(#[source] RegistryError),
    /// The frame config (its registry or trust policy) could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The trust policy refused the shard, or could not be applied.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The manifest annotation is not a valid shard manifest.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// What the manifest and config claim cannot run on this frame: refused before download.
    #[error(
        "shard `{name}` {version} ({reference}) cannot be installed (nothing was downloaded or changed):{}",
        list(.problems)
    )]
    Incompatible {
        /// The artifact.
        reference: String,
        /// The shard.
        name: String,
        /// Its version.
        version: String,
        /// Every reason.
        problems: Vec<Incompatibility>,
    },
    /// The artifact's component is not the one the lockfile pins.
    #[error(
        "{reference} holds component {found}, but the lockfile pins {pinned}; nothing was installed"
    )]
    NotPinned {
        /// The artifact.
        reference: String,
        /// Its component's digest.
        found: String,
        /// The lockfile's.
        pinned: String,
    },
    /// The downloaded component is not a shard, or cannot run here.
    #[error(transparent)]
    Component(#[from] InstallError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored component could not be read back.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A lockfile requirement does not parse.
    #[error(transparent)]
    Requirement(#[from] RequirementError),
    /// A lockfile source does not parse.
    #[error("the source of `{name}` in the lockfile: {source}")]
    LockedSource {
        /// The shard.
        name: String,
        /// Why.
        source: ReferenceError,
    },
    /// A blocking task died.
    #[error("reading the component was cut short: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn list(problems: &[Incompatibility]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// The registry short references (`packets@0.1`) live under: `$ARKHAM_REGISTRY`, else `registry`
/// in the frame config, else the local OCI layout `oci:{data dir}/registry`, which the quickstart
/// publishes to, so a plain `arkham shard add packets@0.1` works with no configuration.
pub fn default_registry(data: &DataDir) -> Result<String, ConfigError> {
    if let Some(registry) = ShardRef::default_registry() {
        return Ok(registry);
    }
    let config = FrameConfig::load(&data.config_file())?;
    Ok(match config.registry {
        Some(registry) => registry,
        None => format!("oci:{}", data.local_registry().display()),
    })
}

/// Parses `text` (`packets@0.1`, `ghcr.io/org/thing@sha256:…`) against `data`'s default registry.
pub fn parse_ref(data: &DataDir, text: &str) -> Result<ShardRef, FetchError> {
    Ok(ShardRef::parse(text, Some(&default_registry(data)?))?)
}

/// The trust policy of `data`'s config.
pub fn policy(data: &DataDir) -> Result<Policy, FetchError> {
    let config = FrameConfig::load(&data.config_file())?;
    Ok(Policy::load(&config.trust, data.root())?)
}

/// What to fetch, and what a lockfile pins of it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The shard.
    pub shard_ref: &'a ShardRef,
    /// How to reach its registry.
    pub options: ConnectOptions,
    /// The signers a lockfile recorded: one of them must have signed it again.
    pub signers: &'a [String],
    /// The component digest a lockfile pins: the artifact must hold exactly that.
    pub component: Option<&'a Digest>,
}

impl<'a> Request<'a> {
    /// Fetches `shard_ref` with nothing pinned.
    pub fn new(shard_ref: &'a ShardRef, options: ConnectOptions) -> Self {
        Self {
            shard_ref,
            options,
            signers: &[],
            component: None,
        }
    }
}

/// A resolved artifact the precheck and the trust policy accepted; its component is not
/// downloaded yet.
pub struct Checked {
    repo: Repo,
    /// Its manifest and config.
    pub artifact: Artifact,
    /// The repository.
    pub location: Location,
    /// Who signed it, as the policy names them (fingerprints of trusted keys).
    pub signers: Vec<String>,
    /// What the user should be told (an unsigned install, a cache not updated).
    pub warnings: Vec<String>,
}

/// A fetched shard: checked, its component in the store and inspected, not installed.
pub struct Fetched {
    /// What is compiled of the component (it without its top-level custom sections: see
    /// [`package::Scan::code`]); the component itself is in the store, never held whole.
    pub code: Vec<u8>,
    /// What it carries; its compatibility was checked once, here.
    pub inspection: Inspection,
    /// `location:tag` or `location@digest`: what it is installed as.
    pub reference: String,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The repository.
    pub location: Location,
    /// Who signed it.
    pub signers: Vec<String>,
    /// What the user should be told.
    pub warnings: Vec<String>,
}

impl Fetched {
    /// The lockfile entry pinning what was fetched, under `requirement` (see [`requirement_text`]).
    pub fn lock_entry(&self, requirement: String) -> LockedShard {
        LockedShard {
            name: self.inspection.manifest.name.clone(),
            source: self.location.repository_ref(),
            requirement,
            version: self.inspection.manifest.version.to_string(),
            digest: self.inspection.digest.clone(),
            manifest_digest: self.manifest_digest.clone(),
            signers: self.signers.clone(),
        }
    }
}

/// Progress of a download: bytes received, bytes in all.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// The whole pipeline: [`check`], then [`Checked::download`].
pub async fn fetch_checked(
    data: &DataDir,
    request: Request<'_>,
    progress: Progress<'_>,
) -> Result<Fetched, FetchError> {
    if let Some(fetched) = from_store(data, &request).await? {
        return Ok(fetched);
    }
    check(data, request).await?.download(data, progress).await
}

/// A pinned component already in the store installs without the registry when the policy
/// looks at no signatures for it: its bytes are verified by their digest.
async fn from_store(data: &DataDir, request: &Request<'_>) -> Result<Option<Fetched>, FetchError> {
    let (Some(pinned), Selector::Digest(manifest_digest)) =
        (request.component, &request.shard_ref.selector)
    else {
        return Ok(None);
    };
    let location = &request.shard_ref.location;
    if policy(data)?.for_location(location).mode != SignatureMode::Ignore {
        return Ok(None);
    }
    if !data.store().contains(pinned) {
        return Ok(None);
    }
    let reference = request.shard_ref.to_string();
    let (inspection, code) = scanned(data, pinned, &reference, None).await?;
    Ok(Some(Fetched {
        code,
        inspection,
        reference,
        manifest_digest: manifest_digest.clone(),
        location: location.clone(),
        signers: Vec::new(),
        warnings: Vec::new(),
    }))
}

/// Resolves the request to one artifact and checks it without downloading its component: its
/// shape, what its manifest and config claim (frame, imports, exports), what a lockfile pins,
/// and the trust policy's verdict on its signatures.
///
/// Offline (`options.offline`), the repository is what `data`'s cache holds of it; a digest
/// reference is looked up there first in any case (content is content), and online results are
/// recorded in it.
pub async fn check(data: &DataDir, request: Request<'_>) -> Result<Checked, FetchError> {
    let mut warnings = Vec::new();
    let (repo, artifact) = resolve(data, request.shard_ref, request.options, &mut warnings).await?;
    precheck(&artifact)?;
    if let Some(pinned) = request.component {
        let found = artifact.component_digest()?;
        if found != *pinned {
            return Err(FetchError::NotPinned {
                reference: artifact.reference.clone(),
                found: found.to_string(),
                pinned: pinned.to_string(),
            });
        }
    }
    let location = request.shard_ref.location.clone();
    let signers = verify(
        data,
        &repo,
        &artifact,
        &location,
        request.options,
        request.signers,
        &mut warnings,
    )
    .await?;
    Ok(Checked {
        repo,
        artifact,
        location,
        signers,
        warnings,
    })
}

impl Checked {
    /// Downloads the component into `data`'s store (streamed to disk, its digest computed on the
    /// way) unless it is there, and inspects it from there as a stream: the one compatibility
    /// check of the real component. Memory holds what is compiled of it, not its custom sections.
    pub async fn download(
        self,
        data: &DataDir,
        progress: Progress<'_>,
    ) -> Result<Fetched, FetchError> {
        let artifact = &self.artifact;
        let digest = artifact.component_digest()?;
        let store = data.store();
        if !store.contains(&digest) {
            pull::fetch_component_to_store(&self.repo, artifact, &store, progress).await?;
        }
        let (inspection, code) = scanned(
            data,
            &digest,
            &artifact.reference,
            Some(artifact.layer.size),
        )
        .await?;
        Ok(Fetched {
            code,
            inspection,
            reference: self.artifact.reference,
            manifest_digest: self.artifact.manifest_digest,
            location: self.location,
            signers: self.signers,
            warnings: self.warnings,
        })
    }

    /// The repository the artifact was resolved in (the offline cache, a layout or a registry).
    pub fn repo(&self) -> &Repo {
        &self.repo
    }
}

/// Inspects the stored component `digest` as a stream, refusing one that cannot run here or whose
/// size is not the `size` its descriptor says (the store verified its content by its digest).
async fn scanned(
    data: &DataDir,
    digest: &Digest,
    reference: &str,
    size: Option<u64>,
) -> Result<(Inspection, Vec<u8>), FetchError> {
    let (path, origin) = (data.store().path(digest), reference.to_string());
    let (inspection, code) =
        tokio::task::spawn_blocking(move || install::inspect_file(&path, &origin, true)).await??;
    if let Some(expected) = size
        && inspection.size != expected
    {
        return Err(RegistryError::SizeMismatch {
            what: "the component".to_string(),
            location: reference.to_string(),
            expected,
            actual: inspection.size,
        }
        .into());
    }
    if inspection.digest != *digest {
        // Changed on disk since it was stored: the next fetch downloads it again.
        return Err(data.store().corrupt(digest, inspection.digest).into());
    }
    inspection.refuse_incompatible()?;
    Ok((inspection, code.unwrap_or_default()))
}

/// Resolves `shard_ref` to an artifact: its manifest and config, read.
pub async fn resolve(
    data: &DataDir,
    shard_ref: &ShardRef,
    options: ConnectOptions,
    warnings: &mut Vec<String>,
) -> Result<(Repo, Artifact), FetchError> {
    let remote = matches!(shard_ref.location, Location::Remote { .. });
    if remote && (options.offline || matches!(shard_ref.selector, Selector::Digest(_))) {
        let index = TagIndex::load(&data.tag_index())?;
        let repo = Repo::cached(&shard_ref.location, data.store(), &index);
        match resolve_in(&repo, shard_ref).await {
            Ok((artifact, _)) => return Ok((repo, artifact)),
            Err(e) if options.offline => return Err(e.into()),
            // Not here: the registry has it, or says why not.
            Err(_) => {}
        }
    }
    let (repo, artifact, target) = resolve_live(shard_ref, options).await?;
    if remote && let Err(e) = remember(data, &shard_ref.location, &target, &artifact) {
        // Only the cache is lost: the install goes on, and will work online next time.
        warnings.push(format!("the offline cache was not updated: {e}"));
    }
    Ok((repo, artifact))
}

/// Resolves `shard_ref` in its registry or layout itself, never the offline cache; answers what
/// it resolved to (a tag or a digest) too.
pub async fn resolve_live(
    shard_ref: &ShardRef,
    options: ConnectOptions,
) -> Result<(Repo, Artifact, String), FetchError> {
    let repo = Repo::open(&shard_ref.location, options)?;
    let (artifact, target) = resolve_in(&repo, shard_ref).await.map_err(|e| match e {
        e @ RegistryError::Unreachable { .. } => FetchError::Unreachable(e),
        e => FetchError::Registry(e),
    })?;
    Ok((repo, artifact, target))
}

async fn resolve_in(
    repo: &Repo,
    shard_ref: &ShardRef,
) -> Result<(Artifact, String), RegistryError> {
    let resolved = pull::resolve(repo, shard_ref).await?;
    let artifact = pull::fetch_artifact(repo, &resolved.target).await?;
    Ok((artifact, resolved.target))
}

/// Applies the trust policy to `artifact`'s manifest digest: before anything but the manifest and
/// config was downloaded. Signatures are read from the registry (from the local cache when
/// offline, or for a local layout from the layout), and kept in the cache for working offline.
async fn verify(
    data: &DataDir,
    repo: &Repo,
    artifact: &Artifact,
    location: &Location,
    options: ConnectOptions,
    pinned: &[String],
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, FetchError> {
    let policy = policy(data)?;
    let effective = policy.for_location(location);
    if effective.mode == SignatureMode::Ignore {
        return Ok(Vec::new());
    }
    // A digest found in the store answered from the cache; its signatures may be newer.
    let live;
    let signatures_from = match repo {
        Repo::Cached { .. } if !options.offline => {
            live = Repo::open(location, options)?;
            &live
        }
        _ => repo,
    };
    let verdict = trust::check(
        &effective,
        signatures_from,
        &artifact.reference,
        &artifact.manifest_digest,
        pinned,
    )
    .await?;
    warnings.extend(verdict.warning);
    if matches!(location, Location::Remote { .. })
        && let Some(signatures) = &verdict.signatures
        && let Err(e) = remember_signatures(data, location, signatures)
    {
        warnings.push(format!("the offline cache was not updated: {e}"));
    }
    Ok(verdict.signers)
}

/// Keeps a signature manifest and its payloads in the store, and its tag in the index.
fn remember_signatures(
    data: &DataDir,
    location: &Location,
    signatures: &Signatures,
) -> Result<(), FetchError> {
    let store = data.store();
    store.put(&signatures.manifest_bytes)?;
    for layer in &signatures.layers {
        store.put(&layer.payload)?;
    }
    let path = data.tag_index();
    let mut index = TagIndex::load(&path)?;
    index.record(
        &location.to_string(),
        &signatures.tag,
        &signatures.manifest_digest,
    );
    index.save(&path)?;
    Ok(())
}

/// Keeps `artifact`'s manifest and config in the store, and what `target` named (a tag), for
/// working offline later.
fn remember(
    data: &DataDir,
    location: &Location,
    target: &str,
    artifact: &Artifact,
) -> Result<(), FetchError> {
    let store = data.store();
    store.put(&artifact.manifest_bytes)?;
    store.put(&artifact.config_bytes)?;
    if !target.starts_with("sha256:") {
        let path = data.tag_index();
        let mut index = TagIndex::load(&path)?;
        index.record(&location.to_string(), target, &artifact.manifest_digest);
        index.save(&path)?;
    }
    Ok(())
}

/// Refuses, from the manifest annotation and the Wasm config alone, a shard this frame cannot
/// run. Artifacts pushed by other tools may lack them; the component is then checked after
/// download.
pub fn precheck(artifact: &Artifact) -> Result<(), FetchError> {
    let Some(text) = artifact.shard_manifest() else {
        return Ok(());
    };
    let manifest = Manifest::parse(
        text,
        &format!("the manifest annotation of {}", artifact.reference),
    )?;
    let Some(component) = artifact.config.as_ref().and_then(|c| c.component.as_ref()) else {
        return Ok(());
    };
    let interfaces = Interfaces {
        imports: component.imports.clone(),
        exports: component.exports.clone(),
    };
    let problems = compat::check(&manifest, &interfaces);
    if !problems.is_empty() {
        return Err(FetchError::Incompatible {
            reference: artifact.reference.clone(),
            name: manifest.name,
            version: manifest.version.to_string(),
            problems,
        });
    }
    Ok(())
}

/// The requirement text recorded in the lockfile for `selector`.
pub fn requirement_text(selector: &Selector) -> String {
    match selector {
        Selector::Latest => "*".to_string(),
        Selector::Requirement(req) => req.to_string(),
        Selector::Tag(tag) => format!(":{tag}"),
        Selector::Digest(d) => format!("@{d}"),
    }
}

/// Why a lockfile requirement does not parse.
#[derive(Debug, thiserror::Error)]
#[error("requirement `{text}` in the lockfile: {reason}")]
pub struct RequirementError {
    text: String,
    reason: String,
}

/// Parses a lockfile requirement back into a selector.
pub fn selector_from_text(text: &str) -> Result<Selector, RequirementError> {
    let invalid = |reason: String| RequirementError {
        text: text.to_string(),
        reason,
    };
    Ok(if let Some(tag) = text.strip_prefix(':') {
        Selector::Tag(tag.to_string())
    } else if let Some(d) = text.strip_prefix('@') {
        Selector::Digest(
            d.parse()
                .map_err(|e: arkham_registry::digest::InvalidDigest| invalid(e.to_string()))?,
        )
    } else if text == "*" {
        Selector::Latest
    } else {
        Selector::Requirement(semver::VersionReq::parse(text).map_err(|e| invalid(e.to_string()))?)
    })
}

/// What a lockfile entry could move to.
#[derive(Debug)]
pub struct Newest {
    /// The newest version its requirement allows (`None` when it is pinned to a tag or a digest:
    /// nothing moves it).
    pub wanted: Option<semver::Version>,
    /// The newest release there is, looked up for a pinned shard only when asked.
    pub latest: Option<semver::Version>,
    /// Its source under its requirement.
    pub shard_ref: ShardRef,
}

/// The versions `entry` could move to (see [`Newest`]): the newest release is looked up for a
/// pinned shard only when `with_latest` (`update` needs no registry for those).
pub async fn newest(
    data: &DataDir,
    entry: &LockedShard,
    options: ConnectOptions,
    with_latest: bool,
) -> Result<Newest, FetchError> {
    let selector = selector_from_text(&entry.requirement)?;
    let shard_ref =
        ShardRef::parse(&entry.source, None).map_err(|source| FetchError::LockedSource {
            name: entry.name.clone(),
            source,
        })?;
    let shard_ref = ShardRef {
        selector: selector.clone(),
        ..shard_ref
    };
    let pinned = is_pinned(&selector);
    if pinned && !with_latest {
        return Ok(Newest {
            wanted: None,
            latest: None,
            shard_ref,
        });
    }
    let repo = if options.offline && matches!(shard_ref.location, Location::Remote { .. }) {
        let index = TagIndex::load(&data.tag_index())?;
        Repo::cached(&shard_ref.location, data.store(), &index)
    } else {
        Repo::open(&shard_ref.location, options)?
    };
    let tags = repo.tags().await?;
    let versions = arkham_registry::resolve::versions(&tags);
    let wanted = if pinned {
        None
    } else {
        arkham_registry::resolve::pick(&repo.location(), &tags, &selector).and_then(Result::ok)
    };
    let latest = versions.iter().rev().find(|v| v.pre.is_empty()).cloned();
    Ok(Newest {
        wanted,
        latest,
        shard_ref,
    })
}

/// Whether a selector names one artifact (a tag or a digest) rather than a range of versions.
pub fn is_pinned(selector: &Selector) -> bool {
    matches!(selector, Selector::Tag(_) | Selector::Digest(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_round_trip_through_the_lockfile_text() {
        for text in [
            "*",
            "^0.1",
            ":0.1.0",
            "@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let selector = selector_from_text(text).unwrap();
            assert_eq!(requirement_text(&selector), text);
        }
        let e = selector_from_text("not a version").unwrap_err();
        assert!(e.to_string().contains("`not a version`"), "{e}");
    }
}
