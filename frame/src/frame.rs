//! The running frame: services, engine, and the loaded shards, built from a data dir.
//!
//! The frame follows its data dir while it runs: when `installed.json` or `grants.json` change
//! (an `arkham shard add/remove/grants` from another process, or the admin API), it loads, swaps
//! or unloads shards and applies grants. New calls go to the new version; calls in flight finish
//! on the old one, which they hold.
//!
//! At start only the shards that subscribe to events are loaded before the frame listens (their
//! deliveries need them); the others are [`ShardStatus::Pending`] and loaded on their first call
//! or by [`Frame::load_pending`] in the background, one at a time, so that cold start does not
//! grow with the number of installed shards.

use crate::config::FrameConfig;
use crate::datadir::DataDir;
use crate::metrics::Metrics;
use crate::runtime::slots::InstanceSlots;
use crate::runtime::{LoadedShard, Runtime, ShardServices};
use crate::services::database::DatabaseService;
use crate::services::events::{
    Dispatcher, EventBus, EventLog, EventsBackend, EventsShard, JetStreamBus,
};
use crate::services::logging::ShardLog;
use crate::services::storage::{StorageBackend, StorageService};
use crate::shards::catalog::{Catalog, DataDirLock, InstalledShard};
use crate::shards::grants::{Grant, Grants};
use crate::shards::manifest::{Manifest, Service};
use crate::shards::{fetch, install, package};
use anyhow::Context as _;
use arkham_registry::digest::Digest;
use arkham_registry::lockfile::Lockfile;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the frame looks for changes to its catalog and grants.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// How often a member reads the deployment's state though it heard of no change: a safety net
/// under the watch.
const RESYNC_EVERY: Duration = Duration::from_secs(5);

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A shard in the catalog and what became of loading it.
#[derive(Clone)]
pub enum ShardStatus {
    /// Serving.
    Running(Arc<Running>),
    /// Installed and not loaded yet (only at start): loaded on its first call, or in the
    /// background soon after the frame listens. Its manifest was read from its component.
    Pending(Arc<Manifest>),
    /// Installed but not loadable; the message says why.
    Failed {
        /// Why it did not load.
        error: String,
    },
}

/// A loaded shard with the manifest and grant its policy is computed from: the runtime knows
/// only the policy, the frame keeps what it came from to compare, show and recompute it.
pub struct Running {
    shard: Arc<LoadedShard>,
    manifest: Arc<Manifest>,
    grant: RwLock<Arc<Grant>>,
}

impl Running {
    /// The loaded shard.
    pub fn shard(&self) -> &Arc<LoadedShard> {
        &self.shard
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Its effective grant.
    pub fn grant(&self) -> Arc<Grant> {
        self.grant.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces its grant and gives the shard the policy of the new one (applied on its next
    /// call; instances made under the old one are not reused).
    fn set_grant(&self, grant: Grant) {
        let policy = grant.policy(&self.manifest);
        *self.grant.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(grant);
        self.shard.set_policy(policy);
    }
}

type ShardMap = BTreeMap<String, (InstalledShard, ShardStatus)>;

/// The frame: everything `arkham serve` runs.
pub struct Frame {
    data: DataDir,
    config: FrameConfig,
    runtime: Runtime,
    database: DatabaseService,
    storage: StorageService,
    log: EventBus,
    dispatcher: Dispatcher,
    shards: RwLock<ShardMap>,
    /// Serialises reconciliations (watcher and admin API) and the loads of pending shards,
    /// which use the grants the last reconciliation read.
    reconcile: tokio::sync::Mutex<Reconciled>,
    /// Per shard, the version (digest) last refused in a swap: not tried again.
    refusals: std::sync::Mutex<BTreeMap<String, Digest>>,
    admin_token: String,
    metrics: Metrics,
    /// The deployment this frame is a member of (`[cluster] enabled`).
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// When it started, RFC 3339.
    up_since: String,
}

/// Modification stamps of the files the frame follows.
#[derive(Default, Clone, PartialEq)]
struct Stamps {
    catalog: Option<(SystemTime, u64)>,
    grants: Option<(SystemTime, u64)>,
}

/// What the last reconciliation saw.
#[derive(Default)]
struct Reconciled {
    stamps: Stamps,
    /// The grants it applied: a pending shard is loaded under them.
    grants: Grants,
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Frame {
    /// Opens the frame on `data`: reads its config, opens the services and loads every installed
    /// shard. A shard that fails to load is reported, and the others still serve.
    pub async fn open(data: DataDir) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(data.root())
            .with_context(|| format!("creating the data dir {}", data.root().display()))?;
        let config = FrameConfig::load(&data.config_file())?;
        let admin_token = admin_token(&data)?;
        let runtime = Runtime::new(config.limits.clone(), data.compiled_cache())
            .context("starting the WebAssembly engine")?;
        let database = DatabaseService::connect(data.shards(), config.database.clone())
            .await
            .context("opening the database service")?;
        // One connection for both services, only when one of them is on NATS.
        let nats = match config.nats_user() {
            Some(_) => Some(crate::services::nats::connect(&config.nats).await?),
            None => None,
        };
        let storage = match (&nats, config.storage.backend) {
            (Some(client), StorageBackend::Nats) => StorageService::on_nats(
                config.storage.clone(),
                client.clone(),
                &config.nats.subject_prefix(),
            ),
            _ => StorageService::new(data.shards(), config.storage.clone()),
        };
        let log: EventBus = match (&nats, config.events.backend) {
            (Some(client), EventsBackend::Nats) => {
                // Short: a handler's progress messages extend it while it runs, and an event in
                // flight on a frame that died waits this long to be redelivered.
                let ack_wait = crate::services::events::ACK_WAIT;
                JetStreamBus::open(client.clone(), &config.nats, &config.events, ack_wait)
                    .await
                    .context("opening the event stream on NATS JetStream")?
                    .into()
            }
            _ => EventLog::open(&data.event_log())
                .await
                .context("opening the event log")?
                .into(),
        };
        let dispatcher = Dispatcher::new(log.clone(), Arc::new(config.events.clone()));
        // A member takes the deployment's state before it loads anything.
        let (cluster, admin_token) = match (&nats, config.cluster.enabled) {
            (Some(client), true) => {
                let cluster = crate::cluster::Cluster::join(client.clone(), &config.nats.prefix)
                    .await
                    .context("joining the deployment")?;
                let shared = cluster
                    .admin_token(&admin_token)
                    .await
                    .context("sharing the admin token")?;
                if shared != admin_token {
                    write_admin_token(&data, &shared)?;
                }
                for done in cluster
                    .sync(&data)
                    .await
                    .context("taking the deployment's state")?
                {
                    tracing::info!("cluster: {done}");
                }
                (Some(Arc::new(cluster)), shared)
            }
            _ => (None, admin_token),
        };
        let frame = Arc::new(Self {
            data,
            config,
            runtime,
            database,
            storage,
            log,
            dispatcher,
            shards: RwLock::default(),
            reconcile: tokio::sync::Mutex::default(),
            refusals: std::sync::Mutex::default(),
            admin_token,
            metrics: Metrics::new(crate::shards::compat::FRAME_VERSION),
            cluster,
            up_since: install::now_rfc3339(),
        });
        frame.reconcile_with(Start::Lazy).await?;
        Ok(frame)
    }

    /// Loads the pending shards one at a time, yielding between them, until none is left or the
    /// frame is dropped; meant to run once the frame listens. A call to a pending shard does not
    /// wait behind this: it loads its shard itself, after at most the one load in progress.
    pub fn load_pending(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let names: Vec<String> = self
            .read()
            .iter()
            .filter(|(_, (_, status))| matches!(status, ShardStatus::Pending(_)))
            .map(|(name, _)| name.clone())
            .collect();
        tokio::spawn(async move {
            let count = names.len();
            for name in names {
                let Some(frame) = weak.upgrade() else { return };
                let loaded = {
                    let state = frame.reconcile.lock().await;
                    frame.load_if_pending(&name, &state.grants).await
                };
                drop(frame);
                if let Some(running) = loaded {
                    check_health_at_start(&running).await;
                }
                tokio::task::yield_now().await;
            }
            tracing::info!(shards = count, "pending shards loaded");
        })
    }

    /// The shard serving under `name`, loaded first if it is pending (concurrent first calls
    /// share that one load); `None` if it is not installed or did not load.
    pub async fn loaded(&self, name: &str) -> Option<Arc<Running>> {
        match self.read().get(name) {
            Some((_, ShardStatus::Running(running))) => return Some(running.clone()),
            Some((_, ShardStatus::Pending(_))) => {}
            _ => return None,
        }
        // Boxed: the load's future (opening services, compiling) is large, and inline it would
        // make every request's future that large, copied on every move (+11k instructions per
        // request, BENCHMARKS.md (1b)); only a first call pays for the box.
        Box::pin(self.load_first_use(name)).await
    }

    /// The slow path of [`Frame::loaded`]: loads the pending shard `name` under the reconcile
    /// lock.
    async fn load_first_use(&self, name: &str) -> Option<Arc<Running>> {
        let loaded = {
            let state = self.reconcile.lock().await;
            self.load_if_pending(name, &state.grants).await
        };
        if let Some(running) = loaded {
            // Beside this call, not before it.
            tokio::spawn(async move { check_health_at_start(&running).await });
        }
        self.running(name)
    }

    /// Loads `name` if it is still pending; the shard if it loaded now. The caller holds the
    /// reconcile lock, so the entry does not change meanwhile and a second caller finds it
    /// loaded; the health check is the caller's, after the lock (a slow one must not hold up
    /// the loads of other shards).
    async fn load_if_pending(&self, name: &str, grants: &Grants) -> Option<Arc<Running>> {
        let Some((installed, ShardStatus::Pending(_))) = self.read().get(name).cloned() else {
            return None;
        };
        let status = self.start(&installed, grants).await;
        let loaded = match &status {
            ShardStatus::Running(running) => Some(running.clone()),
            _ => None,
        };
        self.write().insert(name.to_string(), (installed, status));
        loaded
    }

    /// Follows the data dir until the frame is dropped: reconciles whenever the catalog or the
    /// grants change on disk.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        // A member is woken by the deployment's changes as they happen; the watch ends with
        // this loop.
        let changed = Arc::new(tokio::sync::Notify::new());
        let watching = self
            .cluster
            .as_ref()
            .map(|cluster| AbortOnDrop(cluster.watch(changed.clone())));
        tokio::spawn(async move {
            let _watching = watching;
            // Logged once per outage, not every round.
            let mut failing = false;
            // Whether a sync is owed: at start, after a failed one, and every RESYNC_EVERY in
            // case a change went unheard.
            let mut owed = true;
            let mut last_sync = tokio::time::Instant::now();
            loop {
                let heard = tokio::select! {
                    () = tokio::time::sleep(WATCH_INTERVAL) => false,
                    () = changed.notified() => true,
                };
                let Some(frame) = weak.upgrade() else { return };
                if let Some(cluster) = &frame.cluster
                    && (owed
                        || heard
                        || last_sync.elapsed() >= RESYNC_EVERY
                        || cluster.changed_here(&frame.data).await)
                {
                    last_sync = tokio::time::Instant::now();
                    owed = true;
                    match cluster.sync(&frame.data).await {
                        Ok(done) => {
                            owed = false;
                            if std::mem::take(&mut failing) {
                                tracing::info!("sharing state with the deployment works again");
                            }
                            for done in done {
                                tracing::info!("cluster: {done}");
                            }
                        }
                        Err(crate::cluster::ClusterError::Busy) => {}
                        Err(e) => {
                            if !std::mem::replace(&mut failing, true) {
                                tracing::error!(error = %e, "sharing state with the deployment failed; retrying");
                            }
                        }
                    }
                }
                if let Err(e) = frame.reconcile().await {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "applying changes of the data dir failed"
                    );
                }
            }
        })
    }

    /// Brings the running shards in line with the catalog and grants on disk.
    pub async fn reconcile(&self) -> anyhow::Result<()> {
        self.reconcile_with(Start::Eager).await
    }

    async fn reconcile_with(&self, start: Start) -> anyhow::Result<()> {
        let mut state = self.reconcile.lock().await;
        let now = Stamps {
            catalog: stamp(&self.data.catalog()),
            grants: stamp(&self.data.grants()),
        };
        if state.stamps == now && !self.read().is_empty() {
            return Ok(());
        }
        let catalog = Catalog::load(&self.data.catalog())?;
        let grants = Grants::load(&self.data.grants())?;
        let seen = &state.stamps;
        // Unload what was removed.
        let removed: Vec<String> = self
            .read()
            .keys()
            .filter(|name| catalog.get(name).is_none())
            .cloned()
            .collect();
        for name in removed {
            self.dispatcher.stop(&name).await;
            // A removed shard's cursor would hold back retention forever.
            if let Err(e) = self.log.remove_subscriber(&name).await {
                tracing::error!(shard = %name, error = %e, "its event cursor was not removed");
            }
            self.write().remove(&name);
            // Bounded cardinality: only installed shards have series.
            self.metrics.remove_shard(&name);
            tracing::info!(shard = %name, "unloaded");
        }
        for installed in &catalog.shards {
            let mut current = self.read().get(&installed.name).cloned();
            if let Some((was, ShardStatus::Pending(_))) = &current
                && was.digest != installed.digest
            {
                // A new version of a shard not loaded yet: the one it replaces is loaded first,
                // so that the new one passes the same health gate as for a serving shard.
                if let Some(running) = self.load_if_pending(&installed.name, &grants).await {
                    check_health_at_start(&running).await;
                }
                current = self.read().get(&installed.name).cloned();
            }
            match current {
                Some((was, ShardStatus::Running(running))) if was.digest == installed.digest => {
                    // The catalog names the serving version again: a refused one may be tried
                    // anew when it is installed again.
                    self.refusals().remove(&installed.name);
                    if was != *installed {
                        // The same component; its record changed (a refusal noted, history).
                        if let Some(entry) = self.write().get_mut(&installed.name) {
                            entry.0 = installed.clone();
                        }
                    }
                    let grant = grants.effective(running.manifest());
                    let held = running.grant();
                    if *held != grant {
                        let receives_changed = held.subscribes != grant.subscribes;
                        running.set_grant(grant);
                        tracing::info!(shard = %installed.name, "grants changed");
                        if receives_changed && !running.manifest().events.subscribes.is_empty() {
                            self.dispatcher.start(running.shard().clone()).await;
                        }
                    }
                }
                Some((was, ShardStatus::Failed { .. }))
                    if was.digest == installed.digest && *seen != Stamps::default() => {}
                Some((was, ShardStatus::Pending(_))) if was.digest == installed.digest => {
                    // Loaded later under the grants in force then.
                    if was != *installed
                        && let Some(entry) = self.write().get_mut(&installed.name)
                    {
                        entry.0 = installed.clone();
                    }
                }
                Some((_, ShardStatus::Running(_)))
                    if self.refusals().get(&installed.name) == Some(&installed.digest) => {}
                Some((was, ShardStatus::Running(serving))) => {
                    // A new version of a serving shard: loaded beside it and sent calls only once
                    // it answers its health check; else the old one keeps serving.
                    let checked = match self.load(installed, &grants).await {
                        Ok(new) => match health_check(&new).await {
                            Ok(()) => Ok(new),
                            Err(why) => Err(why),
                        },
                        Err(e) => Err(format!("{e:#}")),
                    };
                    match checked {
                        Ok(new) => {
                            self.activate(&new).await?;
                            tracing::info!(shard = %installed.name, version = %installed.version, replaced = %was.version, "swapped in");
                            self.write().insert(
                                installed.name.clone(),
                                (installed.clone(), ShardStatus::Running(new)),
                            );
                        }
                        Err(why) => {
                            tracing::error!(shard = %installed.name, version = %installed.version, serving = %was.version, error = %why, "new version refused; the old one keeps serving");
                            // Remembered, so that it is not tried again until the catalog names
                            // another version, even if the refusal cannot be written.
                            self.refusals()
                                .insert(installed.name.clone(), installed.digest.clone());
                            let noted = was.with_refusal(installed, &why, install::now_rfc3339());
                            if let Err(e) = install::record_refusal(
                                &self.data,
                                &noted,
                                &serving.grant(),
                                installed,
                            ) {
                                tracing::error!(shard = %installed.name, error = %e, "the refusal was not recorded in the catalog");
                            }
                            if let Some(entry) = self.write().get_mut(&installed.name) {
                                entry.0 = noted;
                            }
                        }
                    }
                }
                _ => {
                    let status = match start {
                        Start::Lazy => self.pending(installed, &grants).await,
                        Start::Eager => self.start(installed, &grants).await,
                    };
                    if let ShardStatus::Running(running) = &status {
                        check_health_at_start(running).await;
                    }
                    self.write()
                        .insert(installed.name.clone(), (installed.clone(), status));
                }
            }
        }
        state.stamps = now;
        state.grants = grants;
        Ok(())
    }

    /// What a shard is at a lazy start: loaded now if it subscribes to events (its deliveries
    /// need it), else pending; failed if its manifest cannot be read. The component is not
    /// verified against its digest here (that hash was most of this cost); its load does it.
    async fn pending(&self, installed: &InstalledShard, grants: &Grants) -> ShardStatus {
        let manifest = self
            .data
            .store()
            .peek(&installed.digest)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(package::extract_manifest(&bytes)?));
        match manifest {
            Ok(manifest) if manifest.events.subscribes.is_empty() => {
                ShardStatus::Pending(Arc::new(manifest))
            }
            Ok(_) => self.start(installed, grants).await,
            Err(e) => failed(installed, &e),
        }
    }

    /// Loads a shard that nothing serves yet and points event delivery at it.
    async fn start(&self, installed: &InstalledShard, grants: &Grants) -> ShardStatus {
        let loaded = match self.load(installed, grants).await {
            Ok(shard) => self.activate(&shard).await.map(|()| shard),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(shard) => {
                tracing::info!(shard = %installed.name, version = %installed.version, "loaded");
                ShardStatus::Running(shard)
            }
            Err(e) => failed(installed, &e),
        }
    }

    async fn load(
        &self,
        installed: &InstalledShard,
        grants: &Grants,
    ) -> anyhow::Result<Arc<Running>> {
        // One pass over the stored file: its content verified, its manifest read, and only what
        // is compiled of it (no custom sections) held.
        let store = self.data.store();
        let (path, origin) = (store.path(&installed.digest), installed.source.clone());
        let (inspection, code) =
            tokio::task::spawn_blocking(move || install::inspect_file(&path, &origin, true))
                .await??;
        if inspection.digest != installed.digest {
            // Changed on disk since it was stored.
            return Err(store.corrupt(&installed.digest, inspection.digest).into());
        }
        if !inspection.incompatibilities.is_empty() {
            // Installed through a member of another frame version (a rolling upgrade): this
            // member says why it does not serve the shard, the members it fits serve it.
            let list: String = inspection
                .incompatibilities
                .iter()
                .map(|p| format!("\n  - {p}"))
                .collect();
            anyhow::bail!(
                "{} {} cannot run on this frame ({}):{list}",
                installed.name,
                installed.version,
                crate::shards::compat::FRAME_VERSION
            );
        }
        let manifest = Arc::new(inspection.manifest);
        let digest = installed.digest.to_string();
        let component = self
            .runtime
            .compile(&inspection.compile_key, &code.unwrap_or_default())
            .map_err(anyhow::Error::from)
            .context("compiling")?;
        let declared = manifest.services.declared();
        let overrides = self
            .config
            .limits
            .shards
            .get(&manifest.name)
            .cloned()
            .unwrap_or_default();
        let database = if declared.contains(&Service::Database) {
            let mut config = self.config.database.clone();
            if let Some(v) = overrides.database_max_size_bytes {
                config.max_size_bytes = v;
            }
            if let Some(v) = overrides.statement_timeout_ms {
                config.statement_timeout_ms = v;
            }
            Some(self.database.open_with(&manifest.name, &config).await?)
        } else {
            None
        };
        let storage = declared.contains(&Service::Storage).then(|| {
            let mut config = self.config.storage.clone();
            if let Some(v) = overrides.storage_max_total_bytes {
                config.max_total_bytes = v;
            }
            if let Some(v) = overrides.storage_max_object_bytes {
                config.max_object_bytes = v;
            }
            self.storage.namespace_with(&manifest.name, &config)
        });
        let events_config = Arc::new({
            let mut config = self.config.events.clone();
            if let Some(v) = overrides.events_max_per_call {
                config.max_per_call = v;
            }
            config
        });
        let services = ShardServices {
            database,
            storage,
            events: EventsShard::on_bus(&manifest.name, events_config.clone(), &self.log),
            events_config,
            log: self.log.clone(),
            logging: ShardLog::new(&manifest.name, &self.config.logging),
            metrics: self.metrics.shard(&manifest.name),
        };
        let grant = grants.effective(&manifest);
        let shard = Arc::new(LoadedShard::new(
            &self.runtime,
            &manifest.name,
            digest,
            &component,
            services,
            grant.policy(&manifest),
        )?);
        Ok(Arc::new(Running {
            shard,
            manifest,
            grant: RwLock::new(Arc::new(grant)),
        }))
    }

    /// Points event delivery at a loaded shard (the one about to serve): its subscriptions, or
    /// none.
    async fn activate(&self, running: &Running) -> anyhow::Result<()> {
        let manifest = running.manifest();
        if manifest.events.subscribes.is_empty() {
            self.dispatcher.stop(&manifest.name).await;
            // No longer a subscriber: its old cursor must not hold back retention.
            self.log
                .remove_subscriber(&manifest.name)
                .await
                .context("removing the event cursor of a shard that no longer subscribes")?;
        } else {
            self.dispatcher.start(running.shard().clone()).await;
        }
        Ok(())
    }

    fn refusals(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Digest>> {
        self.refusals.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ShardMap> {
        self.shards.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ShardMap> {
        self.shards.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The running shard named `name`.
    pub fn shard(&self, name: &str) -> Option<Arc<LoadedShard>> {
        self.running(name).map(|running| running.shard().clone())
    }

    /// The shard serving under `name`, loaded first if it is pending (see [`Frame::loaded`]).
    pub async fn loaded_shard(&self, name: &str) -> Option<Arc<LoadedShard>> {
        self.loaded(name)
            .await
            .map(|running| running.shard().clone())
    }

    /// The running shard named `name`, with its manifest and grant.
    pub fn running(&self, name: &str) -> Option<Arc<Running>> {
        match self.read().get(name) {
            Some((_, ShardStatus::Running(running))) => Some(running.clone()),
            _ => None,
        }
    }

    /// Every installed shard with its status, sorted by name.
    pub fn shards(&self) -> Vec<(InstalledShard, ShardStatus)> {
        self.read().values().cloned().collect()
    }

    /// The deployment this frame is a member of, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.as_ref()
    }

    /// What this frame announces of itself as the member at `address`.
    pub fn member(&self, address: &str) -> crate::cluster::Member {
        let mut loaded = Vec::new();
        let mut failed = Vec::new();
        for (installed, status) in self.shards() {
            match status {
                ShardStatus::Running(_) => {
                    loaded.push(format!("{}@{}", installed.name, installed.version));
                }
                // Announced once loaded (the announcement follows what it serves).
                ShardStatus::Pending(_) => {}
                ShardStatus::Failed { error } => failed.push(crate::cluster::FailedShard {
                    name: installed.name,
                    version: installed.version.to_string(),
                    error,
                }),
            }
        }
        crate::cluster::Member {
            address: address.to_string(),
            version: crate::shards::compat::FRAME_VERSION.to_string(),
            up_since: self.up_since.clone(),
            seen_at: install::now_rfc3339(),
            loaded,
            failed,
        }
    }

    /// Announces this member as `address` every [`crate::cluster::ANNOUNCE_EVERY`] until the
    /// frame is dropped; nothing without a deployment.
    pub fn announce(self: &Arc<Self>, address: String) -> Option<tokio::task::JoinHandle<()>> {
        self.cluster.as_ref()?;
        let weak = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            // Renewed on a period, and at once when what it serves changes.
            let mut last: Option<(Vec<String>, usize, std::time::Instant)> = None;
            loop {
                let Some(frame) = weak.upgrade() else { return };
                let member = frame.member(&address);
                let due = last.as_ref().is_none_or(|(loaded, failed, at)| {
                    *loaded != member.loaded
                        || *failed != member.failed.len()
                        || at.elapsed() >= crate::cluster::ANNOUNCE_EVERY
                });
                if due && let Some(cluster) = &frame.cluster {
                    match cluster.announce(&member).await {
                        Ok(()) => {
                            last = Some((
                                member.loaded,
                                member.failed.len(),
                                std::time::Instant::now(),
                            ));
                        }
                        Err(e) => tracing::warn!(error = %e, "announcing this member failed"),
                    }
                }
                drop(frame);
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        }))
    }

    /// The frame's config.
    pub fn config(&self) -> &FrameConfig {
        &self.config
    }

    /// The data dir.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// The event bus.
    pub fn event_bus(&self) -> &EventBus {
        &self.log
    }

    /// The frame's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The engine's instance slots, shared by every shard.
    pub fn instance_slots(&self) -> &InstanceSlots {
        self.runtime.slots()
    }

    /// Whether `token` is the admin token (compared in constant time).
    pub fn is_admin_token(&self, token: &str) -> bool {
        let (a, b) = (self.admin_token.as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Installs a packaged shard (the admin API's install): checks, stores, records and loads it.
    /// The caller's authority is the consent; the shard is granted what it requests.
    pub async fn install(
        &self,
        bytes: Vec<u8>,
        source: String,
    ) -> anyhow::Result<install::Installed> {
        let data = self.data.clone();
        let runtime = self.runtime.clone();
        let installed =
            tokio::task::spawn_blocking(move || install::install(&data, &runtime, &bytes, &source))
                .await??;
        self.reconcile().await?;
        self.verdict(&installed.shard)?;
        Ok(installed)
    }

    /// Installs a shard fetched by [`fetch::fetch_checked`] (the admin API's install from a
    /// registry), checked once by the fetch, and pins it in the lockfile as `arkham shard add`
    /// does, under `requirement` (see [`fetch::requirement_text`]).
    pub async fn install_fetched(
        &self,
        fetched: fetch::Fetched,
        requirement: String,
    ) -> anyhow::Result<install::Installed> {
        let data = self.data.clone();
        let runtime = self.runtime.clone();
        let entry = fetched.lock_entry(requirement);
        let fetch::Fetched {
            code,
            inspection,
            reference,
            ..
        } = fetched;
        let installed = tokio::task::spawn_blocking(move || {
            install::install_stored(&data, &runtime, &code, inspection, &reference)
        })
        .await??;
        self.reconcile().await?;
        self.verdict(&installed.shard)?;
        let path = self.data.lockfile();
        let mut lock = Lockfile::load(&path)?;
        lock.upsert(entry);
        lock.save(&path)?;
        Ok(installed)
    }

    /// Rolls `name` back to the version installed before the current one (the admin API's
    /// rollback; its authority is the consent to what that version requests), through the same
    /// health gate as an upgrade.
    pub async fn rollback(&self, name: &str) -> anyhow::Result<InstalledShard> {
        let data = self.data.clone();
        let name = name.to_string();
        let next = tokio::task::spawn_blocking(move || {
            let (current, earlier, manifest) = install::rollback_target(&data, &name)?;
            install::rollback(&data, &current, &earlier, &manifest)
        })
        .await??;
        self.reconcile().await?;
        self.verdict(&next)?;
        Ok(next)
    }

    /// Whether `shard`, just recorded in the catalog, is what serves now; else why not.
    fn verdict(&self, shard: &InstalledShard) -> anyhow::Result<()> {
        match self.read().get(&shard.name) {
            Some((serving, ShardStatus::Running(_) | ShardStatus::Pending(_)))
                if serving.digest == shard.digest =>
            {
                Ok(())
            }
            Some((_, ShardStatus::Failed { error })) => {
                anyhow::bail!(
                    "{} {} is installed but does not load: {error}",
                    shard.name,
                    shard.version
                )
            }
            Some((serving, ShardStatus::Running(_) | ShardStatus::Pending(_))) => {
                let why = serving
                    .refused
                    .as_ref()
                    .filter(|r| r.digest == shard.digest)
                    .map_or("it was not loaded", |r| r.error.as_str());
                anyhow::bail!(
                    "{} {} was refused ({why}); {} keeps serving",
                    shard.name,
                    shard.version,
                    serving.version
                )
            }
            None => anyhow::bail!("{} is not in the catalog any more", shard.name),
        }
    }

    /// Removes a shard (the admin API's remove); its data is kept.
    pub async fn remove(&self, name: &str) -> anyhow::Result<InstalledShard> {
        let removed = install::remove(&self.data, name, false)?;
        self.reconcile().await?;
        Ok(removed)
    }

    /// Replaces a shard's grant (limited to what its manifest requests) and applies it at once.
    pub async fn set_grant(&self, name: &str, grant: Grant) -> anyhow::Result<Grant> {
        let running = self
            .loaded(name)
            .await
            .with_context(|| format!("no shard named `{name}` is running"))?;
        let effective = grant.intersection(&Grant::requested_by(running.manifest()));
        {
            let _lock = DataDirLock::acquire(&self.data.lock())?;
            install::save_grant(&self.data, name, Some(effective.clone()))?;
        }
        self.reconcile().await?;
        Ok(effective)
    }

    /// Stops event delivery, waits (up to `grace` in all) for calls still running in shards,
    /// and closes the databases. Undelivered events stay in the log for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.dispatcher.shutdown().await;
        let running: Vec<_> = self
            .read()
            .values()
            .filter_map(|(_, s)| match s {
                ShardStatus::Running(running) => Some(running.shard().clone()),
                ShardStatus::Pending(_) | ShardStatus::Failed { .. } => None,
            })
            .collect();
        let drains = running.iter().map(|shard| async move {
            if tokio::time::timeout_at(deadline, shard.drain()).await.is_err() {
                tracing::warn!(shard = %shard.name(), "calls still running at shutdown were abandoned");
            }
        });
        futures::future::join_all(drains).await;
        self.database.close_all().await;
        self.log.close().await;
    }
}

/// How a reconciliation treats a shard that nothing serves yet.
#[derive(Clone, Copy)]
enum Start {
    /// At start: loaded if it subscribes, else left pending.
    Lazy,
    /// On a running frame: loaded now.
    Eager,
}

/// The status of a shard that did not load, logged.
fn failed(installed: &InstalledShard, e: &anyhow::Error) -> ShardStatus {
    tracing::error!(shard = %installed.name, error = format!("{e:#}"), "not loaded");
    ShardStatus::Failed {
        error: format!("{e:#}"),
    }
}

/// The health check of a shard that nothing served before it: a failing one is only logged,
/// as there is nothing better to serve (and a dependency may just be slow to come up).
async fn check_health_at_start(running: &Running) {
    if let Err(why) = health_check(running).await {
        tracing::warn!(shard = %running.manifest().name, error = %why, "loaded, but not healthy yet");
    }
}

/// How long a shard's health check may take before the swap is refused.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a loaded shard's health check (its manifest's `health` path must answer 2xx within
/// [`HEALTH_TIMEOUT`]); passes for a shard without one.
async fn health_check(running: &Running) -> Result<(), String> {
    let Some(path) = running.manifest().health.as_deref() else {
        return Ok(());
    };
    let request = http::Request::builder()
        .method(http::Method::GET)
        .uri(format!("http://localhost{path}"))
        .header(http::header::HOST, "localhost")
        .body(bytes::Bytes::new())
        .map_err(|e| format!("its health check path `{path}` is not a request target: {e}"))?;
    // The reconcile lock is held meanwhile, so other catalog changes wait on it: bounded more
    // tightly than a request.
    let within = HEALTH_TIMEOUT.min(running.shard().limits().request_timeout);
    let answer = tokio::time::timeout(within, running.shard().handle(request))
        .await
        .map_err(|_| {
            format!(
                "its health check GET {path} did not answer within {} ms",
                within.as_millis()
            )
        })?;
    match answer {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!(
            "its health check GET {path} answered {}",
            response.status()
        )),
        Err(e) => Err(format!("its health check GET {path} failed: {e}")),
    }
}

/// Replaces the admin token file (mode 0600) with the deployment's.
fn write_admin_token(data: &DataDir, token: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data.admin_token();
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Reads the admin token, creating it (mode 0600) at the first start.
fn admin_token(data: &DataDir) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data.admin_token();
    match std::fs::read_to_string(&path) {
        Ok(token) => return Ok(token.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let token = crate::runtime::cache::hex(&rand::random::<[u8; 32]>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}
