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
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};
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

/// Idle instances kept per shard in reuse mode, at most. Past it, an instance that finishes a
/// request is discarded instead of kept, so a burst does not leave its peak of memory resident.
const MAX_IDLE_INSTANCES: usize = 32;

/// Bytes an instance may print (stdout + stderr, over its life) and still be reused; its output
/// pipes are bounded, so a chatty instance is replaced before they fill.
const MAX_REUSED_OUTPUT: usize = 64 << 10;

/// An instance kept between requests by a shard that opted into instance reuse.
struct Warm {
    store: Store<ShardState>,
    proxy: Proxy,
    /// Requests it has served.
    served: u32,
    /// The shard's grant generation when its store was created.
    generation: u64,
}

/// A loaded shard: one `InstancePre`, a fresh instance per request or event (or, when the shard
/// opted in, an instance reused for a bounded number of requests).
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
    /// Idle instances, most recently used last; empty unless `limits.instance_reuse > 1`.
    warm: Mutex<Vec<Warm>>,
    /// Bumped by every grant change; instances created under an older grant are not reused.
    generation: AtomicU64,
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
            warm: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// The shard's current grant.
    pub fn grant(&self) -> Arc<Grant> {
        self.grant.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the shard's grant; calls starting after this see the new one, and no instance
    /// created under the old one serves another request.
    pub fn set_grant(&self, grant: Grant) {
        *self.grant.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(grant);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let retired = std::mem::take(&mut *self.warm.lock().unwrap_or_else(|e| e.into_inner()));
        drop(retired);
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

    fn new_store(&self) -> Store<ShardState> {
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
        store
    }

    /// An idle instance created under the current grant, if the shard reuses instances.
    fn take_warm(&self) -> Option<Warm> {
        if self.limits.instance_reuse <= 1 {
            return None;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let mut idle = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(warm) = idle.pop() {
            if warm.generation == generation {
                return Some(warm);
            }
        }
        None
    }

    /// Keeps an instance that just served a request successfully for the next one, if the
    /// reuse rules allow it (README, "Instance reuse"); otherwise it is dropped here.
    fn keep_warm(&self, warm: Warm) {
        let state = warm.store.data();
        let reusable = warm.served < self.limits.instance_reuse
            && warm.generation == self.generation.load(Ordering::Acquire)
            && !state.holds_resources()
            && state.output_len() < MAX_REUSED_OUTPUT;
        if !reusable {
            return;
        }
        let mut idle = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_INSTANCES.min(self.limits.instances as usize) {
            idle.push(warm);
        }
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

    /// Serves one HTTP request in a fresh instance (or a reused one, when the shard opted in).
    /// The path must already be relative to the shard's prefix. Events the shard publishes are
    /// logged when the handler returns.
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
        let generation = self.generation.load(Ordering::Acquire);
        let (mut store, warm) = match self.take_warm() {
            Some(warm) => (warm.store, Some((warm.proxy, warm.served))),
            None => (self.new_store(), None),
        };
        set_deadline(&mut store, timeout);
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
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
        let call = async move {
            let _permit = permit;
            let result: wasmtime::Result<(Proxy, u32)> = async {
                let (proxy, served) = match warm {
                    Some(warm) => warm,
                    None => {
                        let instance = this.pre.instantiate_async(&mut store).await?;
                        (this.http.load(&mut store, &instance)?, 0)
                    }
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await?;
                Ok((proxy, served + 1))
            }
            .await;
            store.data_mut().flush_output();
            let (proxy, served) = result?;
            let pending = store.data_mut().events.take_pending();
            if let Err(e) = this.services.log.append(&this.name, &pending).await {
                tracing::error!(shard = &*this.name, error = %e, "events published by the request were not logged");
            }
            this.keep_warm(Warm {
                store,
                proxy,
                served,
                generation,
            });
            Ok(())
        };

        // The guest runs on this task until it either returns or sets its response and waits
        // (streaming a body, awaiting the database, ...); only then does it move to a task of its
        // own. A small response thus costs no task spawn and no cross-thread wake-up.
        let mut call = RunToCompletion::new(call, self.name.clone());
        let step = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = call.poll_call(cx) {
                return Poll::Ready(Step::Returned(result));
            }
            Pin::new(&mut receiver).poll(cx).map(Step::Answered)
        })
        .await;
        let answer = match step {
            Step::Returned(result) => match receiver.try_recv() {
                Ok(answer) => answer,
                Err(_) => {
                    return Err(match result {
                        Ok(()) => CallError::NoResponse(self.name.to_string()),
                        Err(e) => self.classify(e, timeout),
                    });
                }
            },
            Step::Answered(Ok(answer)) => answer,
            // The guest dropped its response outparam without setting it.
            Step::Answered(Err(_)) => {
                return Err(match call.finish().await {
                    Ok(()) => CallError::NoResponse(self.name.to_string()),
                    Err(e) => self.classify(e, timeout),
                });
            }
        };
        answer.map_err(|code| CallError::Guest {
            shard: self.name.to_string(),
            code,
        })
    }

    /// Delivers one event to the shard's `event-handler` in a fresh instance.
    pub async fn deliver_event(&self, event: StoredEvent) -> Result<(), String> {
        let Some(handler) = &self.handler else {
            return Err(format!("shard `{}` exports no event-handler", self.name));
        };
        let _permit = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let timeout = self.limits.event_timeout;
        let mut store = self.new_store();
        set_deadline(&mut store, timeout);
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
        store.data_mut().flush_output();
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

/// Arms the store's deadline for one call: checked every epoch tick, past `timeout` the guest
/// traps; before it, the guest yields, so one busy shard cannot hold an executor thread.
pub fn set_deadline(store: &mut Store<ShardState>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
}

/// What happened first in an HTTP call: the guest returned, or it answered (set or dropped its
/// response outparam) while still running.
enum Step {
    Returned(wasmtime::Result<()>),
    Answered(
        Result<
            Result<http::Response<HyperOutgoingBody>, ErrorCode>,
            tokio::sync::oneshot::error::RecvError,
        >,
    ),
}

type CallFuture = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

/// A call into a guest that always runs to completion: the shard's writes and the logging of
/// its events must not stop halfway because the response went out first or the client went
/// away. Polled in place while someone waits for it; dropped unfinished, it continues on a task
/// of its own.
struct RunToCompletion {
    call: Option<CallFuture>,
    shard: Arc<str>,
}

impl RunToCompletion {
    fn new(
        call: impl Future<Output = wasmtime::Result<()>> + Send + 'static,
        shard: Arc<str>,
    ) -> Self {
        Self {
            call: Some(Box::pin(call)),
            shard,
        }
    }

    fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<wasmtime::Result<()>> {
        let Some(call) = self.call.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = std::task::ready!(call.as_mut().poll(cx));
        self.call = None;
        Poll::Ready(result)
    }

    async fn finish(mut self) -> wasmtime::Result<()> {
        std::future::poll_fn(|cx| self.poll_call(cx)).await
    }
}

impl Drop for RunToCompletion {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        let shard = self.shard.clone();
        let rest = async move {
            if let Err(e) = call.await {
                tracing::warn!(shard = &*shard, error = %format!("{e:#}"), "the shard failed after sending its response");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(rest)),
            // Only outside a runtime (never while serving): the call cannot continue.
            Err(_) => tracing::error!(
                shard = &*self.shard,
                "a call into the shard was abandoned unfinished"
            ),
        }
    }
}
