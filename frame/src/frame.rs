//! The running frame: services, engine, and the loaded shards, built from a data dir.

use crate::config::FrameConfig;
use crate::datadir::DataDir;
use crate::runtime::{LoadedShard, Runtime, ShardServices};
use crate::services::database::DatabaseService;
use crate::services::events::{Dispatcher, EventLog};
use crate::services::storage::StorageService;
use crate::shards::catalog::{Catalog, InstalledShard};
use crate::shards::manifest::Service;
use crate::shards::package;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A shard in the catalog and what became of loading it.
#[derive(Clone)]
pub enum ShardStatus {
    /// Serving.
    Running(Arc<LoadedShard>),
    /// Installed but not loadable; the message says why.
    Failed {
        /// The catalog entry.
        installed: InstalledShard,
        /// Why it did not load.
        error: String,
    },
}

/// The frame: everything `arkham serve` runs.
pub struct Frame {
    data: DataDir,
    config: FrameConfig,
    runtime: Runtime,
    database: DatabaseService,
    storage: StorageService,
    log: EventLog,
    dispatcher: Dispatcher,
    shards: RwLock<BTreeMap<String, (InstalledShard, ShardStatus)>>,
}

impl Frame {
    /// Opens the frame on `data`: reads its config, opens the services and loads every installed
    /// shard. A shard that fails to load is reported, and the others still serve.
    pub async fn open(data: DataDir) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(data.root())
            .with_context(|| format!("creating the data dir {}", data.root().display()))?;
        let config = FrameConfig::load(&data.config_file())?;
        let runtime = Runtime::new(config.limits.clone(), data.compiled_cache())
            .context("starting the WebAssembly engine")?;
        let database = DatabaseService::new(data.shards(), config.database.clone());
        let storage = StorageService::new(data.shards(), config.storage.clone());
        let log = EventLog::open(&data.event_log())
            .await
            .context("opening the event log")?;
        let dispatcher = Dispatcher::new(log.clone(), Arc::new(config.events.clone()));
        let frame = Arc::new(Self {
            data,
            config,
            runtime,
            database,
            storage,
            log,
            dispatcher,
            shards: RwLock::default(),
        });
        let catalog = Catalog::load(&frame.data.catalog())?;
        for installed in catalog.shards {
            let status = match frame.load(&installed).await {
                Ok(shard) => {
                    tracing::info!(shard = %installed.name, version = %installed.version, "loaded");
                    ShardStatus::Running(shard)
                }
                Err(e) => {
                    tracing::error!(shard = %installed.name, error = format!("{e:#}"), "not loaded");
                    ShardStatus::Failed {
                        installed: installed.clone(),
                        error: format!("{e:#}"),
                    }
                }
            };
            frame
                .write()
                .insert(installed.name.clone(), (installed, status));
        }
        Ok(frame)
    }

    async fn load(&self, installed: &InstalledShard) -> anyhow::Result<Arc<LoadedShard>> {
        let bytes = self.data.store().get(&installed.digest)?;
        let manifest = Arc::new(package::extract_manifest(&bytes)?);
        let digest = installed.digest.to_string();
        let component = self
            .runtime
            .compile(&digest, &bytes)
            .map_err(anyhow::Error::from)
            .context("compiling")?;
        let declared = manifest.services.declared();
        let database = if declared.contains(&Service::Database) {
            Some(self.database.open(&manifest.name).await?)
        } else {
            None
        };
        let storage = declared
            .contains(&Service::Storage)
            .then(|| self.storage.namespace(&manifest.name));
        let services = ShardServices {
            database,
            storage,
            events: declared.contains(&Service::Events),
            events_config: Arc::new(self.config.events.clone()),
            log: self.log.clone(),
        };
        let shard = Arc::new(LoadedShard::new(
            &self.runtime,
            manifest.clone(),
            digest,
            &component,
            services,
        )?);
        if !manifest.events.subscribes.is_empty() {
            self.dispatcher.start(shard.clone()).await;
        }
        Ok(shard)
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, (InstalledShard, ShardStatus)>> {
        self.shards.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, (InstalledShard, ShardStatus)>> {
        self.shards.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The running shard named `name`.
    pub fn shard(&self, name: &str) -> Option<Arc<LoadedShard>> {
        match self.read().get(name) {
            Some((_, ShardStatus::Running(shard))) => Some(shard.clone()),
            _ => None,
        }
    }

    /// Every installed shard with its status, sorted by name.
    pub fn shards(&self) -> Vec<(InstalledShard, ShardStatus)> {
        self.read().values().cloned().collect()
    }

    /// The frame's config.
    pub fn config(&self) -> &FrameConfig {
        &self.config
    }

    /// The event log.
    pub fn event_log(&self) -> &EventLog {
        &self.log
    }

    /// Stops event delivery, waits (up to `grace`) for calls still running in shards, and closes
    /// the databases. Undelivered events stay in the log for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.dispatcher.shutdown().await;
        let running: Vec<_> = self
            .read()
            .values()
            .filter_map(|(_, s)| match s {
                ShardStatus::Running(shard) => Some(shard.clone()),
                ShardStatus::Failed { .. } => None,
            })
            .collect();
        for shard in running {
            if tokio::time::timeout(grace, shard.drain()).await.is_err() {
                tracing::warn!(shard = %shard.manifest().name, "calls still running at shutdown were abandoned");
            }
        }
        self.database.close_all().await;
        self.log.close().await;
    }
}
