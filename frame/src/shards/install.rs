//! Installing and removing shards in a data dir: every check happens before anything changes,
//! and the catalog is replaced atomically, so a failed install leaves the previous state intact.

use super::builder::{self, BuildError};
use super::catalog::{Catalog, CatalogError, DataDirLock, InstalledShard};
use super::compat::{self, Incompatibility};
use super::grants::{Grant, Grants, GrantsError};
use super::manifest::Manifest;
use super::package::{self, Interfaces, PackageError};
use crate::datadir::DataDir;
use crate::runtime::Runtime;
use arkham_registry::digest::Digest;
use arkham_registry::store::StoreError;
use std::path::Path;

/// Why an install or removal failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The shard folder could not be built.
    #[error("cannot build the shard: {0}")]
    Build(#[from] BuildError),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not a shard component.
    #[error("{origin}: {source}")]
    Package {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        source: PackageError,
    },
    /// The component cannot run on this frame.
    #[error("shard `{name}` {version} cannot be installed:{}", list(.problems))]
    Incompatible {
        /// The shard.
        name: String,
        /// Its version.
        version: String,
        /// Every reason.
        problems: Vec<Incompatibility>,
    },
    /// Compiling or linking the component failed.
    #[error(
        "shard `{name}` does not compile or link on this frame: {message} (a limit of the pooling \
         allocator is the frame's `[limits]` max_core_instances_per_component, \
         max_memories_per_component or max_tables_per_component)"
    )]
    Compile {
        /// The shard.
        name: String,
        /// Wasmtime's message.
        message: String,
    },
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The component to install from the store is not there.
    #[error("component {0} is not in the data dir's store; fetch it again")]
    NotStored(Digest),
    /// The catalog could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// `remove` of a shard that is not installed.
    #[error("no shard named `{0}` is installed; `arkham shard list` shows the installed shards")]
    NotInstalled(String),
    /// Rollback of a shard with no earlier version recorded.
    #[error(
        "`{0}` has no earlier version to roll back to: the catalog records one when a new version replaces another"
    )]
    NoEarlierVersion(String),
    /// The catalog changed between preparing a rollback and making it.
    #[error("`{0}` changed while the rollback was being prepared; run it again")]
    Changed(String),
    /// The grants file could not be read or written.
    #[error(transparent)]
    Grants(#[from] GrantsError),
    /// Removing its data failed.
    #[error("cannot remove the data of `{name}` at {path}: {source}")]
    Purge {
        /// The shard.
        name: String,
        /// The folder.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

fn list(problems: &[Incompatibility]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// What a component file says about itself, without installing it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its imports and exports.
    #[serde(flatten)]
    pub interfaces: Interfaces,
    /// Its content digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Why it cannot run on this frame, if it cannot.
    pub problems: Vec<String>,
    /// The same, typed.
    #[serde(skip)]
    pub incompatibilities: Vec<Incompatibility>,
    /// The key of its compiled artifact.
    #[serde(skip)]
    pub compile_key: String,
}

impl Inspection {
    /// Refuses a component that cannot run on this frame, with every reason.
    pub fn refuse_incompatible(&self) -> Result<(), InstallError> {
        if self.incompatibilities.is_empty() {
            return Ok(());
        }
        Err(InstallError::Incompatible {
            name: self.manifest.name.clone(),
            version: self.manifest.version.to_string(),
            problems: self.incompatibilities.clone(),
        })
    }
}

/// Reads what a packaged component carries.
pub fn inspect(bytes: &[u8], origin: &str) -> Result<Inspection, InstallError> {
    Ok(inspect_stream(bytes, origin, false)?.0)
}

/// [`inspect`] of the component in the file `path`, read as a stream (never held whole); with
/// `keep_code`, answers what is compiled of it too (see [`package::Scan::code`]).
pub fn inspect_file(
    path: &Path,
    origin: &str,
    keep_code: bool,
) -> Result<(Inspection, Option<Vec<u8>>), InstallError> {
    let file = std::fs::File::open(path).map_err(|source| InstallError::Read {
        path: path.display().to_string(),
        source,
    })?;
    inspect_stream(
        std::io::BufReader::with_capacity(64 << 10, file),
        origin,
        keep_code,
    )
}

fn inspect_stream(
    input: impl std::io::Read,
    origin: &str,
    keep_code: bool,
) -> Result<(Inspection, Option<Vec<u8>>), InstallError> {
    let to_err = |source| InstallError::Package {
        origin: origin.to_string(),
        source,
    };
    let scan = package::scan(input, keep_code).map_err(to_err)?;
    let manifest = scan.manifest().map_err(to_err)?;
    let incompatibilities = compat::check(&manifest, &scan.interfaces);
    let inspection = Inspection {
        manifest,
        interfaces: scan.interfaces,
        digest: scan.digest,
        size: scan.size,
        problems: incompatibilities.iter().map(ToString::to_string).collect(),
        incompatibilities,
        compile_key: scan.compile_key,
    };
    Ok((inspection, scan.code))
}

/// The packaged bytes of a local source: a shard folder (built first when stale) or a `.wasm`.
pub fn read_source(path: &Path) -> Result<Vec<u8>, InstallError> {
    if path.is_dir() {
        return Ok(builder::build_if_stale(path)?.bytes);
    }
    std::fs::read(path).map_err(|source| InstallError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The outcome of an install.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    /// The installed shard.
    pub shard: InstalledShard,
    /// The shard it replaced, if any.
    pub replaced: Option<InstalledShard>,
    /// What the shard requests.
    pub manifest: Manifest,
}

/// Checks, stores, precompiles and records the shard in `bytes`.
pub fn install(
    data: &DataDir,
    runtime: &Runtime,
    bytes: &[u8],
    source: &str,
) -> Result<Installed, InstallError> {
    let inspection = inspect(bytes, source)?;
    install_inspected(data, runtime, bytes, inspection, source)
}

/// [`install`] of a component already inspected (by [`inspect`] of these same `bytes`): its
/// compatibility is not checked a second time.
pub fn install_inspected(
    data: &DataDir,
    runtime: &Runtime,
    bytes: &[u8],
    inspection: Inspection,
    source: &str,
) -> Result<Installed, InstallError> {
    inspection.refuse_incompatible()?;
    data.store().put(bytes)?;
    install_stored(data, runtime, bytes, inspection, source)
}

/// [`install_inspected`] of a component the store already holds (a download streamed there),
/// given only `code`, what is compiled of it: the whole component, or [`package::Scan::code`].
pub fn install_stored(
    data: &DataDir,
    runtime: &Runtime,
    code: &[u8],
    inspection: Inspection,
    source: &str,
) -> Result<Installed, InstallError> {
    inspection.refuse_incompatible()?;
    let digest = inspection.digest;
    if !data.store().contains(&digest) {
        return Err(InstallError::NotStored(digest));
    }
    let manifest = inspection.manifest;
    // Compile now: the frame then starts from the cache, and a component that does not link is
    // refused here rather than found broken at serve time.
    let compiled = runtime
        .compile(&inspection.compile_key, code)
        .and_then(|component| runtime.linker().instantiate_pre(&component).map(|_| ()));
    if let Err(e) = compiled {
        return Err(InstallError::Compile {
            name: manifest.name,
            message: format!("{e:#}"),
        });
    }
    let _lock = DataDirLock::acquire(&data.lock())?;
    let mut catalog = Catalog::load(&data.catalog())?;
    let shard = InstalledShard {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        digest,
        source: source.to_string(),
        installed_at: now_rfc3339(),
        history: Vec::new(),
        refused: None,
    };
    let shard = match catalog.get(&manifest.name) {
        Some(current) => current.succeeded_by(shard),
        None => shard,
    };
    let replaced = catalog.upsert(shard.clone());
    // The grant first: a catalog entry never exists without the grant its install approved.
    save_grant(data, &manifest.name, Some(Grant::requested_by(&manifest)))?;
    catalog.save(&data.catalog())?;
    Ok(Installed {
        shard,
        replaced,
        manifest,
    })
}

/// What rolling `name` back would install: the current entry, the version before it and that
/// version's manifest (read from the blob store: no registry is needed).
pub fn rollback_target(
    data: &DataDir,
    name: &str,
) -> Result<(InstalledShard, crate::shards::catalog::Earlier, Manifest), InstallError> {
    let catalog = Catalog::load(&data.catalog())?;
    let current = catalog
        .get(name)
        .cloned()
        .ok_or_else(|| InstallError::NotInstalled(name.to_string()))?;
    let earlier = current
        .history
        .first()
        .cloned()
        .ok_or_else(|| InstallError::NoEarlierVersion(name.to_string()))?;
    let bytes = data.store().get(&earlier.digest)?;
    let manifest = inspect(
        &bytes,
        &format!("{name} {} (from the store)", earlier.version),
    )?
    .manifest;
    Ok((current, earlier, manifest))
}

/// Makes the version before `current` the installed one again (granting what it requests),
/// if the catalog still has `current`; `current` goes first in its history, so a second
/// rollback returns to it.
pub fn rollback(
    data: &DataDir,
    current: &InstalledShard,
    earlier: &crate::shards::catalog::Earlier,
    manifest: &Manifest,
) -> Result<InstalledShard, InstallError> {
    let _lock = DataDirLock::acquire(&data.lock())?;
    let mut catalog = Catalog::load(&data.catalog())?;
    if catalog.get(&current.name).map(|s| &s.digest) != Some(&current.digest) {
        return Err(InstallError::Changed(current.name.clone()));
    }
    let next = current.succeeded_by(InstalledShard {
        name: current.name.clone(),
        version: earlier.version.clone(),
        digest: earlier.digest.clone(),
        source: earlier.source.clone(),
        installed_at: now_rfc3339(),
        history: Vec::new(),
        refused: None,
    });
    catalog.upsert(next.clone());
    save_grant(data, &current.name, Some(Grant::requested_by(manifest)))?;
    catalog.save(&data.catalog())?;
    Ok(next)
}

/// Records that the running frame refused to switch to `refused` and kept serving: the
/// catalog's entry becomes `serving` (the serving version with its history and the refusal,
/// see [`InstalledShard::with_refusal`]) and the grant goes back to the one it held. Does
/// nothing if the entry is no longer `refused` (a newer install came in meanwhile).
pub fn record_refusal(
    data: &DataDir,
    serving: &InstalledShard,
    serving_grant: &Grant,
    refused: &InstalledShard,
) -> Result<bool, InstallError> {
    let _lock = DataDirLock::acquire(&data.lock())?;
    let mut catalog = Catalog::load(&data.catalog())?;
    if catalog.get(&refused.name).map(|s| &s.digest) != Some(&refused.digest) {
        return Ok(false);
    }
    catalog.upsert(serving.clone());
    // The refused install replaced the grant with its own.
    save_grant(data, &serving.name, Some(serving_grant.clone()))?;
    catalog.save(&data.catalog())?;
    Ok(true)
}

/// Removes the shard `name`; with `purge`, deletes its database and storage too.
pub fn remove(data: &DataDir, name: &str, purge: bool) -> Result<InstalledShard, InstallError> {
    let _lock = DataDirLock::acquire(&data.lock())?;
    let mut catalog = Catalog::load(&data.catalog())?;
    let removed = catalog
        .remove(name)
        .ok_or_else(|| InstallError::NotInstalled(name.to_string()))?;
    catalog.save(&data.catalog())?;
    save_grant(data, name, None)?;
    if purge {
        let dir = data.shard(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(InstallError::Purge {
                    name: name.to_string(),
                    path: dir.display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(removed)
}

/// Sets (or, with `None`, deletes) the grant of `name` in the data dir's grants file.
pub fn save_grant(data: &DataDir, name: &str, grant: Option<Grant>) -> Result<(), InstallError> {
    let mut grants = Grants::load(&data.grants())?;
    match grant {
        Some(grant) => grants.shards.insert(name.to_string(), grant),
        None => grants.shards.remove(name),
    };
    Ok(grants.save(&data.grants())?)
}

/// What installing `manifest` would grant beyond what the shard already holds or the frame
/// config pre-approves: empty means no consent is needed.
pub fn consent_needed(
    data: &DataDir,
    preapproved: Option<&Grant>,
    manifest: &Manifest,
) -> Result<Grant, InstallError> {
    let grants = Grants::load(&data.grants())?;
    let mut held = grants
        .shards
        .get(&manifest.name)
        .cloned()
        .unwrap_or_default();
    if let Some(pre) = preapproved {
        held = held.union(pre);
    }
    Ok(Grant::requested_by(manifest).minus(&held))
}

/// The current UTC time as RFC 3339 (seconds precision), without a date-time dependency.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (date, time) = civil(secs);
    format!("{date}T{time}Z")
}

/// `millis` since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_millis(millis: u64) -> String {
    let (date, time) = civil(millis / 1000);
    format!("{date}T{time}.{:03}Z", millis % 1000)
}

/// `YYYY-MM-DD` and `hh:mm:ss` of `secs` since the Unix epoch, UTC.
fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_shape() {
        let now = super::now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
        assert!(now.as_str() > "2024-01-01");
        assert_eq!(
            super::rfc3339_millis(1_764_657_601_123),
            "2025-12-02T06:40:01.123Z"
        );
    }
}
