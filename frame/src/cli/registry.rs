//! `arkham registry login`, and fetching shards from registries for `shard add|update|inspect`:
//! the manifest and config are read and checked before the component is downloaded.

use crate::config::FrameConfig;
use crate::datadir::DataDir;
use crate::shards::compat;
use crate::shards::manifest::Manifest;
use crate::shards::package::Interfaces;
use crate::shards::trust::{self, Policy, SignatureMode};
use anyhow::Context as _;
use arkham_registry::cache::TagIndex;
use arkham_registry::pull::{self, Artifact};
use arkham_registry::reference::{Location, Selector, ShardRef};
use arkham_registry::repo::{ConnectOptions, Repo};
use arkham_registry::store::BlobStore;
use std::io::IsTerminal as _;

/// `arkham registry` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Store credentials for a registry in the docker config (`~/.docker/config.json`, or
    /// `$DOCKER_CONFIG/config.json`), where docker, oras and helm find them too.
    Login {
        /// The registry host, e.g. `ghcr.io` or `127.0.0.1:5000`.
        host: String,
        /// The username.
        #[arg(long, short = 'u')]
        username: String,
        /// Read the password (or token) from stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Use plain HTTP for a registry that is not on loopback (loopback registries always
        /// use it).
        #[arg(long)]
        plain_http: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the credentials stored for a registry by `login`.
    Logout {
        /// The registry host.
        host: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Logout { host, json } => {
            let (path, removed) = arkham_registry::auth::remove_login(&host)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "registry": host, "removed": removed, "config": path })
                );
            } else if removed {
                println!("credentials for {host} removed from {}", path.display());
            } else {
                println!("no credentials for {host} in {}", path.display());
            }
            Ok(())
        }
        RegistryCommand::Login {
            host,
            username,
            password_stdin,
            plain_http,
            json,
        } => {
            if !password_stdin && !std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "no terminal to ask for the password; pipe it in with --password-stdin"
                );
            }
            let password = if password_stdin {
                let mut password = String::new();
                std::io::stdin()
                    .read_line(&mut password)
                    .context("reading the password")?;
                password
            } else {
                hidden::read_line(&format!("password for {username}@{host}: "))
                    .context("reading the password")?
            };
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                anyhow::bail!("the password is empty");
            }
            // Checked first, as `docker login` does: wrong credentials are never stored.
            let options = ConnectOptions {
                plain_http,
                offline: false,
            };
            let checked =
                arkham_registry::login::check(&host, &username, password, options).await?;
            let verified = checked == arkham_registry::login::LoginCheck::Verified;
            let path = arkham_registry::auth::store_login(&host, &username, password)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "registry": host,
                        "username": username,
                        "config": path,
                        "verified": verified,
                    })
                );
            } else if verified {
                println!(
                    "{host} accepted the credentials; stored in {}",
                    path.display()
                );
            } else {
                println!(
                    "{host} asks for no credentials, so they could not be checked; stored in {}",
                    path.display()
                );
            }
            Ok(())
        }
    }
}

#[expect(
    unsafe_code,
    reason = "turning the terminal's echo off has no safe wrapper in std or our dependencies"
)]
pub(super) mod hidden {
    use std::io::{self, BufRead as _};
    use std::os::fd::AsRawFd as _;

    /// Shows `prompt` and reads one line from the terminal on stdin with its echo off (the
    /// newline still shows), restoring the terminal's settings after, whatever the read did. The
    /// prompt comes once echo is off, so nothing typed after it is echoed.
    pub fn read_line(prompt: &str) -> io::Result<String> {
        let stdin = io::stdin();
        let fd = stdin.as_raw_fd();
        // SAFETY: `termios` is a plain C struct of integers and arrays, for which all-zero bytes
        // are a valid value; `tcgetattr` overwrites it before it is read, and its result is
        // checked.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is stdin's descriptor, open for the life of the process; `original` is a
        // valid `termios`, exclusively borrowed for the call.
        if unsafe { libc::tcgetattr(fd, &mut original) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = original;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above; `quiet` is a valid `termios` (a copy of the one read, with two flags
        // changed), only read by the call.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        eprint!("{prompt}");
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        // SAFETY: as above, with the settings read at the start.
        let restored = unsafe { libc::tcsetattr(fd, libc::TCSANOW, &original) };
        read?;
        if restored != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(line)
    }
}

/// A shard fetched from a registry and verified, not yet installed.
pub struct Fetched {
    /// The packaged component.
    pub bytes: Vec<u8>,
    /// Its manifest and config.
    pub artifact: Artifact,
    /// The repository.
    pub location: Location,
    /// Fingerprints of the trusted keys whose signatures cover its manifest.
    pub signers: Vec<String>,
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

/// Parses a lockfile requirement back into a selector.
pub fn selector_from_text(text: &str) -> anyhow::Result<Selector> {
    Ok(if let Some(tag) = text.strip_prefix(':') {
        Selector::Tag(tag.to_string())
    } else if let Some(d) = text.strip_prefix('@') {
        Selector::Digest(d.parse()?)
    } else if text == "*" {
        Selector::Latest
    } else {
        Selector::Requirement(
            semver::VersionReq::parse(text)
                .with_context(|| format!("requirement `{text}` in the lockfile"))?,
        )
    })
}

/// Resolves `shard_ref` to one artifact and checks it (shape, manifest, frame, imports, and the
/// trust policy's verdict on its signatures) without downloading the component; answers the
/// fingerprints of the trusted keys that signed it. `pinned` are the signers the lockfile
/// recorded (`add --locked`): one of them must have signed it.
///
/// Offline (`options.offline`), the repository is what `data`'s cache holds of it; a digest
/// reference is looked up there first in any case (content is content), and online results are
/// recorded in it.
pub async fn resolve_checked(
    shard_ref: &ShardRef,
    options: ConnectOptions,
    data: &DataDir,
    pinned: &[String],
) -> anyhow::Result<(Repo, Artifact, Vec<String>)> {
    let (repo, artifact) = resolve_unverified(shard_ref, options, data).await?;
    let signers =
        verify_trust(&repo, &artifact, &shard_ref.location, options, data, pinned).await?;
    Ok((repo, artifact, signers))
}

async fn resolve_unverified(
    shard_ref: &ShardRef,
    options: ConnectOptions,
    data: &DataDir,
) -> anyhow::Result<(Repo, Artifact)> {
    let remote = matches!(shard_ref.location, Location::Remote { .. });
    if remote && (options.offline || matches!(shard_ref.selector, Selector::Digest(_))) {
        let index = TagIndex::load(&data.tag_index())?;
        let repo = Repo::cached(&shard_ref.location, data.store(), &index);
        match resolve_in(&repo, shard_ref).await {
            Ok((artifact, _)) => return Ok((repo, artifact)),
            Err(e) if options.offline => return Err(e),
            // Not here: the registry has it, or says why not.
            Err(_) => {}
        }
    }
    let repo = Repo::open(&shard_ref.location, options)?;
    let (artifact, target) = resolve_in(&repo, shard_ref).await.map_err(|e| {
        match e.downcast_ref::<arkham_registry::RegistryError>() {
            Some(arkham_registry::RegistryError::Unreachable { .. }) => {
                e.context("versions added before install without the registry: add --offline")
            }
            _ => e,
        }
    })?;
    if remote && let Err(e) = remember(data, &shard_ref.location, &target, &artifact) {
        // Only the cache is lost: the install goes on, and will work online next time.
        eprintln!("warning: the offline cache was not updated: {e:#}");
    }
    Ok((repo, artifact))
}

/// The trust policy of `data`'s config.
pub fn policy(data: &DataDir) -> anyhow::Result<Policy> {
    let config = FrameConfig::load(&data.config_file())?;
    Ok(Policy::load(&config.trust, data.root())?)
}

/// Whether installing from `location` looks at signatures (a policy of `ignore` does not, even
/// for a shard whose lockfile entry records signers).
pub fn checks_signatures(data: &DataDir, location: &Location) -> anyhow::Result<bool> {
    Ok(policy(data)?.for_location(location).mode != SignatureMode::Ignore)
}

/// Applies the trust policy to `artifact`'s manifest digest: before anything but the manifest and
/// config was downloaded. Signatures are read from the registry (from the local cache when
/// offline, or for a local layout from the layout), and kept in the cache for working offline.
async fn verify_trust(
    repo: &Repo,
    artifact: &Artifact,
    location: &Location,
    options: ConnectOptions,
    data: &DataDir,
    pinned: &[String],
) -> anyhow::Result<Vec<String>> {
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
    if let Some(warning) = &verdict.warning {
        eprintln!("warning: {warning}");
    }
    if matches!(location, Location::Remote { .. })
        && let Some(signatures) = &verdict.signatures
        && let Err(e) = remember_signatures(data, location, signatures)
    {
        eprintln!("warning: the offline cache was not updated: {e:#}");
    }
    Ok(verdict.signers)
}

/// Keeps a signature manifest and its payloads in the store, and its tag in the index.
fn remember_signatures(
    data: &DataDir,
    location: &Location,
    signatures: &arkham_registry::signature::Signatures,
) -> anyhow::Result<()> {
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

async fn resolve_in(repo: &Repo, shard_ref: &ShardRef) -> anyhow::Result<(Artifact, String)> {
    let resolved = pull::resolve(repo, shard_ref).await?;
    let artifact = pull::fetch_artifact(repo, &resolved.target).await?;
    precheck(&artifact)?;
    Ok((artifact, resolved.target))
}

/// Keeps `artifact`'s manifest and config in the store, and what `target` named (a tag), for
/// working offline later.
fn remember(
    data: &DataDir,
    location: &Location,
    target: &str,
    artifact: &Artifact,
) -> anyhow::Result<()> {
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

/// Refuses, from the manifest annotations and the Wasm config alone, a shard this frame cannot
/// run. Artifacts pushed by other tools may lack them; the component is then checked after download.
pub fn precheck(artifact: &Artifact) -> anyhow::Result<()> {
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
        let list: String = problems.iter().map(|p| format!("\n  - {p}")).collect();
        anyhow::bail!(
            "shard `{}` {} ({}) cannot be installed (nothing was downloaded or changed):{list}",
            manifest.name,
            manifest.version,
            artifact.reference
        );
    }
    Ok(())
}

/// Downloads the component of a checked artifact into `store` (streamed to disk, its digest
/// computed on the way), or takes it from there when it is stored, and reads it once: the checks
/// parse it and wasmtime compiles it from bytes in memory.
pub async fn component(
    repo: &Repo,
    artifact: &Artifact,
    store: &BlobStore,
) -> anyhow::Result<Vec<u8>> {
    let digest = artifact.component_digest()?;
    if store.contains(&digest)
        && let Ok(bytes) = store.get(&digest)
    {
        // The content is verified by its digest; the descriptor must agree on the size too.
        if bytes.len() as u64 != artifact.layer.size {
            return Err(arkham_registry::RegistryError::SizeMismatch {
                what: "the component".to_string(),
                location: artifact.reference.clone(),
                expected: artifact.layer.size,
                actual: bytes.len() as u64,
            }
            .into());
        }
        return Ok(bytes);
    }
    // A progress bar on a terminal; nothing otherwise, so scripts and logs stay clean.
    let terminal = std::io::stderr().is_terminal();
    let name = artifact.reference.clone();
    let bar = move |received: u64, total: u64| {
        if terminal {
            eprint!("\r{}", progress_line(&name, received, total));
        }
    };
    let stored = pull::fetch_component_to_store(repo, artifact, store, &bar).await;
    if terminal {
        eprintln!("{}", if stored.is_ok() { "" } else { " failed" });
    }
    let path = store.path(&stored?);
    // Its digest and size were checked as it was written a moment ago: read it back unhashed.
    let bytes = tokio::task::spawn_blocking(move || {
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    })
    .await??;
    Ok(bytes)
}

/// `downloading REF [#########           ]  45%  180/400 KiB`
fn progress_line(name: &str, received: u64, total: u64) -> String {
    const WIDTH: u64 = 24;
    let total = total.max(1);
    let filled = (received.min(total) * WIDTH / total) as usize;
    format!(
        "downloading {name} [{}{}] {:>3}%  {}/{} KiB",
        "#".repeat(filled),
        " ".repeat(WIDTH as usize - filled),
        received.min(total) * 100 / total,
        received.div_ceil(1024),
        total.div_ceil(1024)
    )
}

/// Resolves, checks and downloads `shard_ref`.
pub async fn fetch(
    shard_ref: &ShardRef,
    options: ConnectOptions,
    data: &DataDir,
) -> anyhow::Result<Fetched> {
    let (repo, artifact, signers) = resolve_checked(shard_ref, options, data, &[]).await?;
    let bytes = component(&repo, &artifact, &data.store()).await?;
    Ok(Fetched {
        bytes,
        artifact,
        location: shard_ref.location.clone(),
        signers,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_line_fills_with_the_download() {
        assert_eq!(
            super::progress_line("r", 0, 2048),
            "downloading r [                        ]   0%  0/2 KiB"
        );
        assert_eq!(
            super::progress_line("r", 1024, 2048),
            "downloading r [############            ]  50%  1/2 KiB"
        );
        assert!(super::progress_line("r", 2048, 2048).contains("[########################] 100%"));
    }
}
