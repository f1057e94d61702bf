//! `arkham shard …`: build, inspect, push, add, update, list, remove.

use super::DataDirArg;
use super::registry::fetch_with_progress;
use crate::config::FrameConfig;
use crate::datadir::DataDir;
use crate::runtime::Runtime;
use crate::shards::builder;
use crate::shards::catalog::Catalog;
use crate::shards::fetch::{self, Fetched, requirement_text, selector_from_text};
use crate::shards::install::{self, Inspection, Installed};
use crate::shards::manifest::Manifest;
use crate::shards::package;
use anyhow::Context as _;
use arkham_registry::artifact::ComponentInfo;
use arkham_registry::lockfile::Lockfile;
use arkham_registry::push::ShardAnnotations;
use arkham_registry::reference::{Selector, ShardRef};
use arkham_registry::repo::{ConnectOptions, Repo};
use std::path::{Path, PathBuf};

/// Options for commands that talk to registries.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Use plain HTTP for a registry that is not on loopback (loopback registries always use it).
    #[arg(long, global = true)]
    plain_http: bool,
    /// Use no network: resolve against the versions added before, from the local store (a
    /// digest reference the store holds never needs the network anyway).
    #[arg(long, global = true)]
    offline: bool,
}

impl RegistryArgs {
    pub(super) fn options(&self) -> ConnectOptions {
        ConnectOptions {
            plain_http: self.plain_http,
            offline: self.offline,
        }
    }
}

/// `arkham shard` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ShardCommand {
    /// Create a shard project (Rust, Python or JavaScript) that builds and installs as it is.
    New(super::new::NewArgs),
    /// Build a shard folder with the command its shard.toml declares and package the component
    /// with its manifest embedded; prints the packaged file's path.
    Build {
        /// The shard folder (holding shard.toml).
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Print a shard's manifest, imports, exports, size and digest, from a packaged `.wasm`, a
    /// shard folder (built first if needed) or a registry reference, without installing it.
    Inspect {
        /// A `.wasm`, a shard folder, or a reference like `packets@0.1`.
        source: String,
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Push a shard to a registry as a Wasm OCI artifact tagged with its version.
    Push {
        /// A shard folder (built first if needed) or a packaged `.wasm`.
        source: PathBuf,
        /// Where to: a repository like `ghcr.io/org/packets` or `oci:DIR/packets`
        /// [default: {default registry}/{name}; see `arkham shard add`].
        reference: Option<String>,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Embed this shard.toml (replacing any embedded manifest).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Overwrite the version's tag if it exists.
        #[arg(long)]
        force: bool,
        /// Sign the pushed manifest with this private key (PKCS#8 PEM, or cosign's encrypted
        /// key with its password in COSIGN_PASSWORD or typed), as `shard sign` does.
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign the manifest digest a reference resolves to with a private key (cosign's key-based
    /// scheme: a `sha256-HEX.sig` tag in the same repository; other signers' signatures are kept).
    Sign {
        /// A reference like `ghcr.io/org/packets@0.1`, `packets:0.1.0` or `NAME@sha256:…`.
        reference: String,
        /// The private key: PKCS#8 PEM (e.g. from `arkham key generate`), or cosign's encrypted
        /// key (`cosign generate-key-pair`, `arkham key generate --encrypt`), whose password
        /// comes from COSIGN_PASSWORD or is asked on the terminal.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 only when a valid signature by the key covers the manifest digest the reference
    /// resolves to; prints the digest and the key's fingerprint.
    Verify {
        /// A reference like `ghcr.io/org/packets@0.1`.
        reference: String,
        /// The public key (SPKI PEM).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install shards from references (`packets@0.1`, `ghcr.io/org/packets`, `oci:DIR/packets`),
    /// folders (built first if needed) or packaged `.wasm` files.
    Add {
        /// References, folders or files; with --locked, optional names to restrict to.
        sources: Vec<String>,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Install without asking for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Install exactly the digests recorded in arkham.lock.
        #[arg(long)]
        locked: bool,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a shard holds; revoke or restore grants.
    Grants(super::grants::GrantsArgs),
    /// Update shards installed from registries to the newest version their requirement allows.
    Update {
        /// The shards to update [default: all in arkham.lock].
        names: Vec<String>,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Grant without asking what a new version requests beyond its current grant.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the installed shards.
    List {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Only shards whose registry has a newer version (allowed by the requirement, or not).
        #[arg(long)]
        outdated: bool,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Return a shard to the version installed before the current one, from the local blob
    /// store (no registry needed). A running frame switches only once that version answers its
    /// health check; else the current one keeps serving and this fails.
    Rollback {
        /// The shard's name.
        name: String,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Grant what that version requests beyond the current grant without asking.
        #[arg(long, short)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed shard; its data is kept unless --purge.
    Remove {
        /// The shard's name.
        name: String,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Also delete the shard's database and storage.
        #[arg(long)]
        purge: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn lock_path(data: &DataDir) -> PathBuf {
    data.lockfile()
}

pub(super) fn parse_ref(data: &DataDir, text: &str) -> anyhow::Result<ShardRef> {
    Ok(fetch::parse_ref(data, text)?)
}

fn runtime_for(data: &DataDir) -> anyhow::Result<Runtime> {
    let config = FrameConfig::load(&data.config_file())?;
    Runtime::new(config.limits, data.compiled_cache())
}

/// Runs `install` (checks, store, compile, catalog) off the async threads and waits for a
/// running frame to serve what it installed.
async fn installing(
    data: &DataDir,
    install: impl FnOnce() -> Result<Installed, install::InstallError> + Send + 'static,
) -> anyhow::Result<Installed> {
    let installed = tokio::task::spawn_blocking(install).await??;
    await_serving(data, &installed.shard).await?;
    Ok(installed)
}

/// Installs `bytes`, inspected as `inspection` (their one compatibility check).
async fn install_bytes(
    data: &DataDir,
    runtime: &Runtime,
    bytes: Vec<u8>,
    inspection: Inspection,
    source: String,
) -> anyhow::Result<Installed> {
    let (dir, runtime) = (data.clone(), runtime.clone());
    installing(data, move || {
        install::install_inspected(&dir, &runtime, &bytes, inspection, &source)
    })
    .await
}

/// Asks for consent to what a fetched shard requests, then installs it from the store.
async fn install_fetched(
    data: &DataDir,
    runtime: &Runtime,
    yes: bool,
    fetched: &mut Fetched,
) -> anyhow::Result<Installed> {
    ask(data, yes, &fetched.inspection)?;
    let (dir, runtime) = (data.clone(), runtime.clone());
    let code = std::mem::take(&mut fetched.code);
    let (inspection, source) = (fetched.inspection.clone(), fetched.reference.clone());
    installing(data, move || {
        install::install_stored(&dir, &runtime, &code, inspection, &source)
    })
    .await
}

/// How long a command waits for the running frame to take up what it installed.
const SWAP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// When a frame serves `data`, waits until it serves `shard`, or says why it does not: the new
/// version did not load or answer its health check, so the one before keeps serving (the frame
/// put the catalog back). Without a running frame there is nothing to wait for.
async fn await_serving(
    data: &DataDir,
    shard: &crate::shards::catalog::InstalledShard,
) -> anyhow::Result<()> {
    let Ok(client) = super::client::FrameClient::of(data) else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + SWAP_WAIT;
    let mut asked = false;
    loop {
        match client.call(http::Method::GET, "/api/frame/shards").await {
            // A frame that went away left its address behind: nobody to wait for.
            Err(_) if !asked => return Ok(()),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
            Err(_) => {}
            Ok(list) => {
                asked = true;
                let entry = list["shards"]
                    .as_array()
                    .and_then(|all| all.iter().find(|s| s["name"] == shard.name.as_str()));
                let digest = shard.digest.to_string();
                // Not there yet, or still the version before: the frame has not looked (it
                // follows the data dir every 200 ms).
                let entry = entry.cloned().unwrap_or_default();
                if entry["digest"] == digest.as_str() {
                    match entry["status"].as_str() {
                        Some("running") => return Ok(()),
                        // A frame just started loads it soon.
                        Some("pending") => {}
                        _ => anyhow::bail!(
                            "{} {} is installed, but the running frame cannot load it: {}",
                            shard.name,
                            shard.version,
                            entry["error"].as_str().unwrap_or("no reason given")
                        ),
                    }
                }
                if entry["refused"]["digest"] == digest.as_str() {
                    anyhow::bail!(
                        "the running frame refused {} {}: {}; {} {} keeps serving (`arkham logs` and the frame's log have more)",
                        shard.name,
                        shard.version,
                        entry["refused"]["error"]
                            .as_str()
                            .unwrap_or("no reason given"),
                        shard.name,
                        entry["version"].as_str().unwrap_or("the version before")
                    );
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the running frame has not taken up {} {} within {} s; `arkham shard list` and the frame's log say more",
                shard.name,
                shard.version,
                SWAP_WAIT.as_secs()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Who signed what was installed, when the trust policy checked it.
fn print_signers(signers: &[String]) {
    for signer in signers {
        println!("  signed {}", signer_text(signer));
    }
}

/// `by the trusted key sha256:…` or `keyless by the trusted identity SUBJECT (issuer ISSUER)`:
/// keys are recorded as `sha256:…`, keyless identities as `ISSUER SUBJECT`.
fn signer_text(signer: &str) -> String {
    match signer.split_once(' ') {
        Some((issuer, subject)) => {
            format!("keyless by the trusted identity {subject} (issuer {issuer})")
        }
        None => format!("by the trusted key {signer}"),
    }
}

fn print_installed(installed: &Installed) {
    match &installed.replaced {
        Some(old) => println!(
            "installed {} {} (replacing {}) {}",
            installed.shard.name, installed.shard.version, old.version, installed.shard.digest
        ),
        None => println!(
            "installed {} {} {}",
            installed.shard.name, installed.shard.version, installed.shard.digest
        ),
    }
}

/// Asks for consent to what the shard requests beyond its current grant (see `cli::grants`).
fn ask(data: &DataDir, yes: bool, inspection: &Inspection) -> anyhow::Result<()> {
    super::grants::consent(data, &inspection.manifest, yes)
}

pub async fn run(command: ShardCommand) -> anyhow::Result<()> {
    // What changes the catalog or grants is shared with the deployment, if the data dir's
    // config makes it a member of one.
    let shared = match &command {
        ShardCommand::Add { data_dir, .. }
        | ShardCommand::Update { data_dir, .. }
        | ShardCommand::Rollback { data_dir, .. }
        | ShardCommand::Remove { data_dir, .. } => Some(data_dir.get()),
        ShardCommand::Grants(args) => Some(args.data_dir()),
        _ => None,
    };
    let cluster = match &shared {
        Some(data) => super::cluster::before(data).await?,
        None => None,
    };
    let result = run_command(command).await;
    if let (Some(cluster), Some(data)) = (&cluster, &shared) {
        super::cluster::after(cluster, data).await?;
    }
    result
}

async fn run_command(command: ShardCommand) -> anyhow::Result<()> {
    match command {
        ShardCommand::New(args) => super::new::run(args),
        ShardCommand::Build { path } => {
            let built = tokio::task::spawn_blocking(move || builder::build(&path)).await??;
            println!("{}", built.output.display());
            Ok(())
        }
        ShardCommand::Inspect {
            source,
            data_dir,
            registry,
            json,
        } => inspect(&data_dir.get(), &source, registry.options(), json).await,
        ShardCommand::Push {
            source,
            reference,
            data_dir,
            manifest,
            force,
            sign,
            registry,
            json,
        } => {
            let data = data_dir.get();
            let what = PushWhat {
                source,
                reference,
                manifest,
                force,
                sign,
            };
            push(&data, what, registry.options(), json).await
        }
        ShardCommand::Sign {
            reference,
            key,
            data_dir,
            registry,
            json,
        } => super::sign::sign(&data_dir.get(), &reference, &key, registry.options(), json).await,
        ShardCommand::Verify {
            reference,
            key,
            data_dir,
            registry,
            json,
        } => super::sign::verify(&data_dir.get(), &reference, &key, registry.options(), json).await,
        ShardCommand::Add {
            sources,
            data_dir,
            yes,
            locked,
            registry,
            json,
        } => {
            let data = data_dir.get();
            if locked {
                add_locked(&data, &sources, yes, registry.options(), json).await
            } else {
                add(&data, &sources, yes, registry.options(), json).await
            }
        }
        ShardCommand::Grants(args) => super::grants::run(args),
        ShardCommand::Update {
            names,
            data_dir,
            yes,
            registry,
            json,
        } => update(&data_dir.get(), &names, yes, registry.options(), json).await,
        ShardCommand::List {
            data_dir,
            outdated,
            registry,
            json,
        } => {
            if outdated {
                return list_outdated(&data_dir.get(), registry.options(), json).await;
            }
            let data = data_dir.get();
            let catalog = Catalog::load(&data.catalog())?;
            // The verified signers the lockfile recorded for the installed digest; a lockfile
            // that does not read leaves them out (`add` names the problem).
            let lock = Lockfile::load(&lock_path(&data)).ok();
            let signers = |name: &str, digest: &arkham_registry::digest::Digest| {
                lock.as_ref()
                    .and_then(|l| l.get(name))
                    .filter(|e| &e.digest == digest)
                    .map(|e| e.signers.clone())
                    .unwrap_or_default()
            };
            if json {
                let mut rows = Vec::new();
                for s in &catalog.shards {
                    let mut row = serde_json::to_value(s)?;
                    if let Some(map) = row.as_object_mut() {
                        map.insert("signers".to_string(), signers(&s.name, &s.digest).into());
                    }
                    rows.push(row);
                }
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if catalog.shards.is_empty() {
                println!("no shards installed; add one with `arkham shard add REF|PATH`");
            } else {
                for s in &catalog.shards {
                    println!(
                        "{:<20} {:<10} {}  {}",
                        s.name, s.version, s.digest, s.source
                    );
                    for signer in signers(&s.name, &s.digest) {
                        println!("{:<20} signed {}", "", signer_text(&signer));
                    }
                    if let Some(refused) = &s.refused {
                        println!(
                            "{:<20} refused {} at {}: {}",
                            "", refused.version, refused.at, refused.error
                        );
                    }
                    if let Some(earlier) = s.history.first() {
                        println!(
                            "{:<20} before: {} (`arkham shard rollback {}`)",
                            "", earlier.version, s.name
                        );
                    }
                }
            }
            Ok(())
        }
        ShardCommand::Rollback {
            name,
            data_dir,
            yes,
            json,
        } => rollback(&data_dir.get(), &name, yes, json).await,
        ShardCommand::Remove {
            name,
            data_dir,
            purge,
            json,
        } => {
            let data = data_dir.get();
            // Read the lockfile and the config first: a corrupt one stops the removal before
            // anything changes.
            let mut lock = Lockfile::load(&lock_path(&data))?;
            let config = FrameConfig::load(&data.config_file())?;
            let removed = install::remove(&data, &name, purge)?;
            if purge {
                purge_engines(&data, &config, &name).await?;
            }
            if lock.remove(&name) {
                lock.save(&lock_path(&data))?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "removed": removed, "purged": purge })
                );
            } else if purge {
                println!(
                    "removed {} {} and deleted its data",
                    removed.name, removed.version
                );
            } else {
                println!(
                    "removed {} {}; its data is kept in {} (use --purge to delete it)",
                    removed.name,
                    removed.version,
                    data.shard(&name).display()
                );
            }
            Ok(())
        }
    }
}

/// Deletes what the engine backends keep for a removed shard: its PostgreSQL schema and role,
/// its object-store bucket and its event consumer. The embedded backends keep everything in
/// the shard's folder, which `install::remove` deleted.
async fn purge_engines(data: &DataDir, config: &FrameConfig, name: &str) -> anyhow::Result<()> {
    use crate::services::database::{DatabaseBackend, DatabaseService};
    use crate::services::events::{ACK_WAIT, EventsBackend, JetStreamBus};
    use crate::services::storage::{StorageBackend, StorageService};
    if config.database.backend == DatabaseBackend::Postgres {
        let database = DatabaseService::connect(data.shards(), config.database.clone()).await?;
        let purged = database.purge(name).await;
        database.close_all().await;
        purged.with_context(|| format!("deleting the PostgreSQL schema and role of `{name}`"))?;
    }
    if config.nats_user().is_none() {
        return Ok(());
    }
    let client = crate::services::nats::connect(&config.nats).await?;
    if config.storage.backend == StorageBackend::Nats {
        StorageService::on_nats(
            config.storage.clone(),
            client.clone(),
            &config.nats.subject_prefix(),
        )
        .purge(name)
        .await
        .with_context(|| format!("deleting the object-store bucket of `{name}`"))?;
    }
    if config.events.backend == EventsBackend::Nats {
        let bus = JetStreamBus::open(client, &config.nats, &config.events, ACK_WAIT).await?;
        bus.remove_subscriber(name)
            .await
            .with_context(|| format!("deleting the event consumer of `{name}`"))?;
    }
    Ok(())
}

async fn inspect(
    data: &DataDir,
    source: &str,
    options: ConnectOptions,
    json: bool,
) -> anyhow::Result<()> {
    let path = Path::new(source);
    if path.exists() {
        let path = path.to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || install::read_source(&path)).await??;
        let inspection = install::inspect(&bytes, source)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&inspection)?);
        } else {
            print_inspection(&inspection);
        }
        return Ok(());
    }
    let shard_ref = parse_ref(data, source)?;
    // What it is, whether it can run here or not: no precheck, and the policy's verdict shown.
    let (repo, artifact, _) = fetch::resolve_live(&shard_ref, options).await?;
    let signatures = super::sign::inspect_signatures(data, &repo, &shard_ref, &artifact).await?;
    let bytes = arkham_registry::pull::fetch_component(&repo, &artifact).await?;
    let inspection = install::inspect(&bytes, &artifact.reference)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "reference": artifact.reference,
                "manifest_digest": artifact.manifest_digest,
                "annotations": artifact.manifest.annotations,
                "signatures": signatures,
                "shard": inspection,
            }))?
        );
    } else {
        println!(
            "# {} (manifest {})",
            artifact.reference, artifact.manifest_digest
        );
        print_inspection(&inspection);
        signatures.print();
    }
    Ok(())
}

/// What `shard push` pushes, where, and how.
struct PushWhat {
    source: PathBuf,
    reference: Option<String>,
    manifest: Option<PathBuf>,
    force: bool,
    sign: Option<PathBuf>,
}

async fn push(
    data: &DataDir,
    what: PushWhat,
    options: ConnectOptions,
    json: bool,
) -> anyhow::Result<()> {
    let PushWhat {
        source,
        reference,
        manifest: manifest_file,
        force,
        sign,
    } = what;
    // The key is read first: a bad one stops the push before anything is uploaded.
    let key = sign.as_deref().map(super::sign::signing_key).transpose()?;
    let source_path = source.clone();
    let origin = source.display().to_string();
    let store = data.store();
    // A component file goes up as it is, read as a stream for its checks and its upload, so
    // memory does not grow with its size. A folder's build, or a manifest embedded here,
    // rewrites the component in memory first; what was checked is then staged in a file in the
    // store's folder (removed after) and streamed from there.
    let staged = if source.is_file() && manifest_file.is_none() {
        None
    } else {
        let (origin, store) = (origin.clone(), store.clone());
        let staged = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut bytes = install::read_source(&source)?;
            if let Some(file) = manifest_file {
                let manifest = Manifest::from_file(&file)?;
                bytes = package::embed_manifest(&bytes, &manifest)
                    .with_context(|| format!("embedding {} into {origin}", file.display()))?;
            }
            let mut staged = store.temp_file()?;
            staged
                .write_all(&bytes)
                .map_err(|source| arkham_registry::store::StoreError::Io {
                    path: staged.path().to_path_buf(),
                    source,
                })
                .context("staging the component for upload in the data dir's store")?;
            Ok(staged)
        })
        .await??;
        Some(staged)
    };
    let upload = staged
        .as_ref()
        .map_or_else(|| source_path.clone(), |staged| staged.path().to_path_buf());
    let inspection = {
        let (upload, origin) = (upload.clone(), origin.clone());
        tokio::task::spawn_blocking(move || install::inspect_file(&upload, &origin, false))
            .await??
            .0
    };
    if !inspection.problems.is_empty() {
        let list: String = inspection
            .problems
            .iter()
            .map(|p| format!("\n  - {p}"))
            .collect();
        anyhow::bail!("not pushed: {origin} cannot run on this frame:{list}");
    }
    let manifest = &inspection.manifest;
    let target = match reference {
        Some(text) => parse_ref(data, &text)?,
        None => parse_ref(data, &manifest.name)?,
    };
    match &target.selector {
        Selector::Latest => {}
        Selector::Tag(tag) if *tag == manifest.version.to_string() => {}
        other => anyhow::bail!(
            "the tag is the manifest's version {}; drop `{other}` from the reference",
            manifest.version
        ),
    }
    let repo = Repo::open(&target.location, options)?;
    let created = install::now_rfc3339();
    let pushed = arkham_registry::push::push(
        &repo,
        arkham_registry::push::PushRequest {
            component: arkham_registry::push::Component::File(&upload),
            name: &manifest.name,
            version: &manifest.version,
            interfaces: ComponentInfo {
                exports: inspection.interfaces.exports.clone(),
                imports: inspection.interfaces.imports.clone(),
                target: inspection.interfaces.target_world(),
            },
            shard: Some(ShardAnnotations {
                requires_frame: manifest.requires_frame.to_string(),
                services: manifest
                    .services
                    .declared()
                    .into_iter()
                    .map(|s| s.as_str().to_string())
                    .collect(),
                manifest: manifest.to_embedded_toml(),
            }),
            description: Some(manifest.description.clone()),
            licenses: None,
            source: std::env::var("ARKHAM_SOURCE_URL").ok(),
            created: &created,
            force,
        },
    )
    .await?;
    if pushed.component_digest != inspection.digest {
        anyhow::bail!(
            "{origin} changed while it was pushed: {} went up as {}, but what was checked is {}; push it again with --force",
            pushed.reference,
            pushed.component_digest,
            inspection.digest
        );
    }
    let signed = match &key {
        Some(key) => Some(
            arkham_registry::signature::sign(&repo, &pushed.manifest_digest, key)
                .await
                .with_context(|| format!("pushed {}, but signing it failed", pushed.reference))?,
        ),
        None => None,
    };
    if json {
        let mut value = serde_json::to_value(&pushed)?;
        if let (Some(signed), Some(map)) = (&signed, value.as_object_mut()) {
            map.insert("signature".to_string(), serde_json::to_value(signed)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("pushed {} {}", pushed.reference, pushed.manifest_digest);
        if let Some(signed) = &signed {
            super::sign::print_signed(&pushed.reference, signed);
        }
    }
    Ok(())
}

async fn add(
    data: &DataDir,
    sources: &[String],
    yes: bool,
    options: ConnectOptions,
    json: bool,
) -> anyhow::Result<()> {
    if sources.is_empty() {
        anyhow::bail!("nothing to add: pass references (`packets@0.1`), folders or .wasm files");
    }
    // A corrupt lockfile stops everything before anything is downloaded or installed.
    let lock_file = lock_path(data);
    let mut lock = Lockfile::load(&lock_file)?;
    let runtime = runtime_for(data)?;
    let mut results = Vec::new();
    for text in sources {
        let path = Path::new(text);
        if path.exists() {
            let source = std::fs::canonicalize(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            let bytes = {
                let source = source.clone();
                tokio::task::spawn_blocking(move || install::read_source(&source)).await??
            };
            let origin = source.display().to_string();
            let inspection = install::inspect(&bytes, &origin)?;
            // Refused before consent is asked for what cannot run anyway.
            inspection.refuse_incompatible()?;
            ask(data, yes, &inspection)?;
            let installed = install_bytes(data, &runtime, bytes, inspection, origin).await?;
            // A local install replaces any registry pin of the same name.
            if lock.remove(&installed.shard.name) {
                lock.save(&lock_file)?;
            }
            if !json {
                print_installed(&installed);
            }
            results.push(installed);
            continue;
        }
        let shard_ref = parse_ref(data, text).with_context(|| {
            format!("`{text}` is neither an existing path nor a shard reference")
        })?;
        let mut fetched =
            fetch_with_progress(data, fetch::Request::new(&shard_ref, options)).await?;
        let installed = install_fetched(data, &runtime, yes, &mut fetched).await?;
        lock.upsert(fetched.lock_entry(requirement_text(&shard_ref.selector)));
        lock.save(&lock_file)?;
        if !json {
            print_installed(&installed);
            print_signers(&fetched.signers);
        }
        results.push(installed);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}

async fn rollback(data: &DataDir, name: &str, yes: bool, json: bool) -> anyhow::Result<()> {
    let (current, earlier, manifest) = install::rollback_target(data, name)?;
    super::grants::consent(data, &manifest, yes)?;
    let serving = install::rollback(data, &current, &earlier, &manifest)?;
    await_serving(data, &serving).await?;
    // The registry pin names the version rolled back from: the shard is now as if added
    // from a file.
    let lock_file = lock_path(data);
    let mut lock = Lockfile::load(&lock_file)?;
    let unpinned = lock.remove(name);
    if unpinned {
        lock.save(&lock_file)?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "serving": serving,
                "rolled_back_from": current.version.to_string(),
                "unpinned": unpinned,
            }))?
        );
    } else {
        println!(
            "rolled back {name} {} -> {} {}",
            current.version, serving.version, serving.digest
        );
        if unpinned {
            println!(
                "note: {name} is no longer pinned in {}; `arkham shard add {name}@VERSION` pins it again",
                lock_file.display()
            );
        }
    }
    Ok(())
}

async fn add_locked(
    data: &DataDir,
    names: &[String],
    yes: bool,
    options: ConnectOptions,
    json: bool,
) -> anyhow::Result<()> {
    let lock_file = lock_path(data);
    let lock = Lockfile::load(&lock_file)?;
    if lock.shards.is_empty() {
        anyhow::bail!(
            "{} lists no shards; add some without --locked first",
            lock_file.display()
        );
    }
    for name in names {
        if lock.get(name).is_none() {
            anyhow::bail!("`{name}` is not in {}", lock_file.display());
        }
    }
    let runtime = runtime_for(data)?;
    let mut results = Vec::new();
    for entry in &lock.shards {
        if !names.is_empty() && !names.contains(&entry.name) {
            continue;
        }
        let reference = format!("{}@{}", entry.source, entry.manifest_digest);
        let shard_ref = ShardRef::parse(&reference, None)
            .with_context(|| format!("the source of `{}` in the lockfile", entry.name))?;
        let request = fetch::Request {
            signers: &entry.signers,
            component: Some(&entry.digest),
            ..fetch::Request::new(&shard_ref, options)
        };
        let mut fetched = fetch_with_progress(data, request).await?;
        let installed = install_fetched(data, &runtime, yes, &mut fetched).await?;
        if !json {
            print_installed(&installed);
        }
        results.push(installed);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}

async fn update(
    data: &DataDir,
    names: &[String],
    yes: bool,
    options: ConnectOptions,
    json: bool,
) -> anyhow::Result<()> {
    let lock_file = lock_path(data);
    let mut lock = Lockfile::load(&lock_file)?;
    for name in names {
        if lock.get(name).is_none() {
            anyhow::bail!(
                "`{name}` was not installed from a registry (it is not in {}); `arkham shard add REF` it first",
                lock_file.display()
            );
        }
    }
    let runtime = runtime_for(data)?;
    let mut report = Vec::new();
    for entry in lock.shards.clone() {
        if !names.is_empty() && !names.contains(&entry.name) {
            continue;
        }
        let fetch::Newest {
            wanted, shard_ref, ..
        } = fetch::newest(data, &entry, options, false).await?;
        let current = semver::Version::parse(&entry.version).ok();
        let Some(wanted) = wanted.filter(|w| current.as_ref().is_none_or(|c| w > c)) else {
            if !json {
                println!("{} {} is up to date", entry.name, entry.version);
            }
            report.push(
                serde_json::json!({"name": entry.name, "version": entry.version, "updated": false}),
            );
            continue;
        };
        let exact = ShardRef {
            selector: Selector::Tag(wanted.to_string()),
            ..shard_ref
        };
        let mut fetched = fetch_with_progress(data, fetch::Request::new(&exact, options)).await?;
        let installed = install_fetched(data, &runtime, yes, &mut fetched).await?;
        lock.upsert(fetched.lock_entry(entry.requirement.clone()));
        lock.save(&lock_file)?;
        if !json {
            println!(
                "updated {} {} -> {}",
                entry.name, entry.version, installed.shard.version
            );
        }
        report.push(serde_json::json!({"name": entry.name, "from": entry.version, "version": installed.shard.version, "digest": installed.shard.digest, "updated": true}));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

async fn list_outdated(data: &DataDir, options: ConnectOptions, json: bool) -> anyhow::Result<()> {
    let lock = Lockfile::load(&lock_path(data))?;
    let mut rows = Vec::new();
    for entry in &lock.shards {
        let fetch::Newest { wanted, latest, .. } =
            fetch::newest(data, entry, options, true).await?;
        let pinned = fetch::is_pinned(&selector_from_text(&entry.requirement)?);
        let current = semver::Version::parse(&entry.version).ok();
        let newer = |v: &Option<semver::Version>| match (v, &current) {
            (Some(v), Some(c)) => v > c,
            _ => false,
        };
        if newer(&wanted) || newer(&latest) {
            rows.push(serde_json::json!({
                "name": entry.name,
                "version": entry.version,
                "requirement": entry.requirement,
                "wanted": wanted.map(|v| v.to_string()),
                "latest": latest.map(|v| v.to_string()),
                "pinned": pinned,
                "source": entry.source,
            }));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("every shard installed from a registry is up to date");
    } else {
        println!(
            "{:<20} {:<10} {:<10} {:<10}",
            "name", "current", "wanted", "latest"
        );
        for r in &rows {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            let wanted = if r["pinned"] == true {
                "pinned".to_string()
            } else {
                s("wanted")
            };
            println!(
                "{:<20} {:<10} {:<10} {:<10}",
                s("name"),
                s("version"),
                wanted,
                s("latest")
            );
        }
        if rows.iter().any(|r| r["pinned"] == true) {
            println!(
                "pinned shards (an exact tag or digest) stay as they are: `arkham shard add NAME@VERSION` moves one"
            );
        }
    }
    Ok(())
}

fn print_inspection(i: &Inspection) {
    println!("{}", i.manifest.to_embedded_toml().trim_end());
    println!();
    println!("# digest {}  size {} bytes", i.digest, i.size);
    println!("# imports");
    for import in &i.interfaces.imports {
        println!("#   {import}");
    }
    println!("# exports");
    for export in &i.interfaces.exports {
        println!("#   {export}");
    }
    if i.problems.is_empty() {
        println!("# compatible with this frame");
    } else {
        println!("# NOT compatible with this frame:");
        for p in &i.problems {
            println!("#   - {p}");
        }
    }
}
