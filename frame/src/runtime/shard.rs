//! A shard ready to serve: its pre-instantiated component and the services it was granted.

use super::Runtime;
use super::store::ShardState;
use crate::bindings::event_handler;
use crate::runtime::limits::ShardLimits;
use crate::services::database::{DatabaseCtx, SqliteDatabase};
use crate::services::events::{EventLog, EventTarget, EventsConfig, EventsCtx, StoredEvent};
use crate::services::storage::{FsStore, StorageCtx};
use crate::shards::grants::Grant;
use crate::shards::manifest::{Manifest, Service};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyIndices;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The services a shard declares, opened once when it is loaded. Whether a call may use one is
/// decided per call by the shard's current [`Grant`].
#[derive(Clone)]
pub struct ShardServices {
    /// Its database, if declared.
    pub database: Option<SqliteDatabase>,
    /// Its storage namespace, if declared.
    pub storage: Option<FsStore>,
    /// Event limits.
    pub events_config: Arc<EventsConfig>,
    /// The log its publications go to.
    pub log: EventLog,
}

/// Why a call into a shard failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The shard has as many instances running as it may.
    #[error("shard `{0}` is at its limit of concurrent instances; retry shortly")]
    Busy(String),
    /// The call ran past its deadline and was stopped.
    #[error("shard `{shard}` did not finish within {limit_ms} ms and was stopped")]
    Timeout {
        /// The shard.
        shard: String,
        /// The deadline.
        limit_ms: u128,
    },
    /// The shard trapped (panic, unreachable, out of memory, ...).
    #[error("shard `{shard}` failed: {message}")]
    Trap {
        /// The shard.
        shard: String,
        /// What the trap said.
        message: String,
    },
    /// The instance needed more memory than its limit.
    #[error("shard `{shard}` ran out of its {limit_bytes}-byte memory limit and was stopped")]
    MemoryExceeded {
        /// The shard.
        shard: String,
        /// The limit.
        limit_bytes: u64,
    },
    /// Every instance slot of the frame is in use.
    #[error("the frame is at its limit of concurrent instances; retry shortly")]
    FrameBusy,
    /// The shard returned without setting a response.
    #[error("shard `{0}` returned without sending a response")]
    NoResponse(String),
    /// The shard answered with a `wasi:http` error code instead of a response.
    #[error("shard `{shard}` answered with an error: {code:?}")]
    Guest {
        /// The shard.
        shard: String,
        /// The error code it set.
        code: ErrorCode,
    },
}

/// A loaded shard: one `InstancePre`, a fresh instance per request or event.
pub struct LoadedShard {
    manifest: Arc<Manifest>,
    name: Arc<str>,
    digest: String,
    runtime: Runtime,
    pre: InstancePre<ShardState>,
    http: ProxyIndices,
    handler: Option<event_handler::GuestIndices>,
    services: ShardServices,
    grant: RwLock<Arc<Grant>>,
    limits: ShardLimits,
    slots: Arc<Semaphore>,
}

impl LoadedShard {
    /// Links `component` and prepares it to serve as the shard `manifest` describes.
    pub fn new(
        runtime: &Runtime,
        manifest: Arc<Manifest>,
        digest: String,
        component: &Component,
        services: ShardServices,
        grant: Grant,
    ) -> anyhow::Result<Self> {
        let pre = runtime.linker().instantiate_pre(component)?;
        let http = ProxyIndices::new(&pre)?;
        let handler = if manifest.events.subscribes.is_empty() {
            None
        } else {
            Some(event_handler::GuestIndices::new(&pre)?)
        };
        let limits = runtime.limits().for_shard(&manifest.name);
        let slots = Arc::new(Semaphore::new(limits.instances as usize));
        Ok(Self {
            name: manifest.name.as_str().into(),
            manifest,
            digest,
            runtime: runtime.clone(),
            pre,
            http,
            handler,
            services,
            grant: RwLock::new(Arc::new(grant)),
            limits,
            slots,
        })
    }

    /// The shard's current grant.
    pub fn grant(&self) -> Arc<Grant> {
        self.grant.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the shard's grant; calls starting after this see the new one.
    pub fn set_grant(&self, grant: Grant) {
        *self.grant.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(grant);
    }

    /// The limits the shard runs under.
    pub fn limits(&self) -> &ShardLimits {
        &self.limits
    }

    /// The shard's manifest.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// The content digest of its component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    fn new_store(&self, timeout: Duration) -> Store<ShardState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.limits.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(usize::try_from(self.limits.table_elements).unwrap_or(usize::MAX))
            .instances(64)
            .trap_on_grow_failure(true)
            .build();
        let grant = self.grant();
        let s = &self.services;
        let database = match (&s.database, grant.has(Service::Database)) {
            (Some(db), true) => DatabaseCtx::granted(db.clone()),
            _ => DatabaseCtx::denied(),
        };
        let storage = match (&s.storage, grant.has(Service::Storage)) {
            (Some(store), true) => StorageCtx::granted(store.clone()),
            _ => StorageCtx::denied(),
        };
        let events = if grant.has(Service::Events) {
            EventsCtx::granted(
                self.manifest.clone(),
                grant.clone(),
                s.events_config.clone(),
            )
        } else {
            EventsCtx::denied(s.events_config.clone())
        };
        let state = ShardState::new(self.name.clone(), limits, database, events, storage);
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        let deadline = Instant::now() + timeout;
        // Checked every epoch tick: past the deadline the guest traps; before it, the guest yields
        // so one busy shard cannot hold an executor thread.
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    fn classify(&self, error: wasmtime::Error, timeout: Duration) -> CallError {
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return CallError::Timeout {
                shard: self.name.to_string(),
                limit_ms: timeout.as_millis(),
            };
        }
        let message = format!("{error:#}");
        // wasmtime reports these as plain errors: a refused `memory.grow` (StoreLimits with
        // trap_on_grow_failure) and an exhausted pooling allocator.
        if message.contains("forcing trap when growing memory") {
            return CallError::MemoryExceeded {
                shard: self.name.to_string(),
                limit_bytes: self.limits.memory_bytes,
            };
        }
        if message.contains("maximum concurrent") {
            return CallError::FrameBusy;
        }
        CallError::Trap {
            shard: self.name.to_string(),
            message,
        }
    }

    /// Serves one HTTP request in a fresh instance. The path must already be relative to the
    /// shard's prefix. Events the shard publishes are logged when the handler returns.
    pub async fn handle(
        self: &Arc<Self>,
        request: http::Request<http_body_util::Full<Bytes>>,
    ) -> Result<http::Response<HyperOutgoingBody>, CallError> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| CallError::Busy(self.name.to_string()))?;
        let timeout = self.limits.request_timeout;
        let mut store = self.new_store(timeout);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let setup = (|| {
            let http = store.data_mut();
            let req = http.http().new_incoming_request(
                Scheme::Http,
                request.map(|body| {
                    http_body_util::BodyExt::map_err(body, |never| -> ErrorCode { match never {} })
                }),
            )?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            wasmtime::Result::Ok((req, out))
        })();
        let (req, out) = setup.map_err(|e| self.classify(e, timeout))?;

        let this = self.clone();
        // The guest keeps running after it sets the response, to stream the body: run it on its
        // own task, which also owns the instance until it is done.
        let task = tokio::spawn(async move {
            let _permit = permit;
            let result = async {
                let instance = this.pre.instantiate_async(&mut store).await?;
                let proxy = this.http.load(&mut store, &instance)?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .await;
            store.data().flush_output();
            if result.is_ok() {
                let pending = store.data_mut().events.take_pending();
                if let Err(e) = this.services.log.append(&this.name, &pending).await {
                    tracing::error!(shard = &*this.name, error = %e, "events published by the request were not logged");
                }
            }
            result
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(CallError::Guest {
                shard: self.name.to_string(),
                code,
            }),
            Err(_) => match task.await {
                Ok(Ok(())) => Err(CallError::NoResponse(self.name.to_string())),
                Ok(Err(e)) => Err(self.classify(e, timeout)),
                Err(join) => Err(CallError::Trap {
                    shard: self.name.to_string(),
                    message: format!("the call's task failed: {join}"),
                }),
            },
        }
    }

    /// Delivers one event to the shard's `event-handler` in a fresh instance.
    pub async fn deliver_event(&self, event: StoredEvent) -> Result<(), String> {
        let Some(handler) = &self.handler else {
            return Err(format!("shard `{}` exports no event-handler", self.name));
        };
        let _permit = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let timeout = self.limits.event_timeout;
        let mut store = self.new_store(timeout);
        let event = event_handler::Event {
            id: event.id,
            name: event.name,
            source: event.source,
            payload: event.payload,
            published_at: event.published_at,
        };
        let result = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let guest = handler.load(&mut store, &instance)?;
            guest.call_handle(&mut store, &event).await
        }
        .await;
        store.data().flush_output();
        match result {
            Ok(Ok(())) => {
                let pending = store.data_mut().events.take_pending();
                self.services
                    .log
                    .append(&self.name, &pending)
                    .await
                    .map_err(|e| format!("events published by the handler were not logged: {e}"))
            }
            Ok(Err(message)) => Err(format!("the handler returned an error: {message}")),
            Err(e) => Err(self.classify(e, timeout).to_string()),
        }
    }
}

impl EventTarget for LoadedShard {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, event_name: &str) -> bool {
        self.manifest.subscribes_to(event_name) && self.grant().may_receive(event_name)
    }

    fn deliver(&self, event: StoredEvent) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.deliver_event(event))
    }
}

impl LoadedShard {
    /// Waits until no call into the shard is running (used at shutdown).
    pub async fn drain(&self) {
        let all = self.limits.instances;
        // Holding every slot means no call runs; the permits are released right away.
        let _ = self.slots.acquire_many(all).await;
    }
}
