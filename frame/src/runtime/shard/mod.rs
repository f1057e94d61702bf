//! A shard ready to serve: [`LoadedShard`], its pre-instantiated component and the services it
//! was granted, and the two ways into it, [`LoadedShard::handle`] (HTTP) and
//! [`LoadedShard::deliver_event`]. The pieces of a call live beside it: `http` (what goes in and
//! comes out over HTTP, response limits included), `call` (running a call to completion, and its
//! deadline), `reuse` (instances kept between requests) and `error` (what a failure means).

mod call;
mod error;
mod http;
mod reuse;

pub use call::set_deadline;
pub use error::CallError;
pub use http::ShardBody;

use self::call::{Call, set_deadline_at};
use self::error::{call_error, count, failure};
use self::http::{HttpExport, Invocation};
use self::reuse::WarmPool;
use super::Runtime;
use super::limiter::ShardLimiter;
use super::policy::ShardPolicy;
use super::slots::{self, ShardSlots, SlotError, SlotPermit};
use super::store::ShardState;
use crate::bindings::{event_handler, v0_1};
use crate::metrics::ShardMetrics;
use crate::runtime::limits::ShardLimits;
use crate::services::database::{DatabaseCtx, ShardDatabase};
use crate::services::events::{
    Delivery, EventBus, EventTarget, EventsConfig, EventsCtx, EventsShard, Pending, StoredEvent,
};
use crate::services::logging::ShardLog;
use crate::services::rate::TokenBucket;
use crate::services::storage::{ShardStore, StorageCtx};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Store, Trap};

/// The services a shard declares, opened once when it is loaded. Whether a call may use one is
/// decided per call by the shard's current [`ShardPolicy`].
#[derive(Clone)]
pub struct ShardServices {
    /// Its database, if declared.
    pub database: Option<ShardDatabase>,
    /// Its storage namespace, if declared.
    pub storage: Option<ShardStore>,
    /// Event limits.
    pub events_config: Arc<EventsConfig>,
    /// The bus its publications go to.
    pub log: EventBus,
    /// Its publication quota in that log, shared by its instances.
    pub events: EventsShard,
    /// Its budget in the frame's log, shared by its instances.
    pub logging: ShardLog,
    /// Its series in the frame's metrics, resolved once.
    pub metrics: ShardMetrics,
}

/// A shard's `event-handler` export, at the package version it was built against.
enum EventHandler {
    Current(event_handler::GuestIndices),
    V0_1(v0_1::event_handler::GuestIndices),
}

impl EventHandler {
    fn new(pre: &InstancePre<ShardState>) -> wasmtime::Result<Self> {
        match event_handler::GuestIndices::new(pre) {
            Ok(indices) => Ok(Self::Current(indices)),
            Err(current) => match v0_1::event_handler::GuestIndices::new(pre) {
                Ok(indices) => Ok(Self::V0_1(indices)),
                Err(_) => Err(current),
            },
        }
    }

    /// Calls the handler of `instance` with `event`.
    async fn call(
        &self,
        store: &mut Store<ShardState>,
        instance: &wasmtime::component::Instance,
        event: event_handler::Event,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::Current(indices) => {
                let guest = indices.load(&mut *store, instance)?;
                guest.call_handle(&mut *store, &event).await
            }
            Self::V0_1(indices) => {
                let guest = indices.load(&mut *store, instance)?;
                guest.call_handle(&mut *store, &event.into()).await
            }
        }
    }
}

/// A loaded shard: one `InstancePre`, a fresh instance per request or event (or, when the shard
/// opted in, an instance reused for a bounded number of requests).
pub struct LoadedShard {
    name: Arc<str>,
    digest: String,
    runtime: Runtime,
    pre: InstancePre<ShardState>,
    http: HttpExport,
    handler: Option<EventHandler>,
    services: ShardServices,
    policy: RwLock<Arc<ShardPolicy>>,
    limits: ShardLimits,
    slots: ShardSlots,
    /// Idle instances kept for reuse, and the policy generation.
    warm: WarmPool,
    /// The request rate limit; `None` when it is off.
    requests: Option<Mutex<TokenBucket>>,
}

impl LoadedShard {
    /// Links `component` and prepares it to serve as the shard `name`, with `services` opened
    /// for it and allowed what `policy` says. It has an event handler when `policy` declares
    /// subscriptions; those stay for its life (a new manifest is a new shard version).
    pub fn new(
        runtime: &Runtime,
        name: &str,
        digest: String,
        component: &Component,
        services: ShardServices,
        policy: ShardPolicy,
    ) -> anyhow::Result<Self> {
        let pre = runtime.linker().instantiate_pre(component)?;
        let http = HttpExport::new(&pre)?;
        let handler = if policy.receive.declared().is_empty() {
            None
        } else {
            Some(EventHandler::new(&pre)?)
        };
        let limits = runtime.limits().for_shard(name);
        // A component that imports core modules has no static count: assume the most allowed.
        let config = runtime.limits();
        let (memories, tables) = component.resources_required().map_or(
            (
                config.max_memories_per_component,
                config.max_tables_per_component,
            ),
            |r| (r.num_memories, r.num_tables),
        );
        let slots = runtime.slots().register(
            slots::weight(memories, tables),
            limits.instances,
            limits.instances_reserved,
        );
        let requests = (limits.requests_per_second > 0).then(|| {
            Mutex::new(TokenBucket::new(
                limits.requests_per_second,
                limits.request_burst,
                std::time::Instant::now(),
            ))
        });
        Ok(Self {
            requests,
            name: name.into(),
            digest,
            runtime: runtime.clone(),
            pre,
            http,
            handler,
            services,
            policy: RwLock::new(Arc::new(policy)),
            limits,
            slots,
            warm: WarmPool::default(),
        })
    }

    /// What the shard may do now.
    pub fn policy(&self) -> Arc<ShardPolicy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the shard's policy (its grant changed); calls starting after this see the new
    /// one, and no instance created under the old one serves another request.
    pub fn set_policy(&self, policy: ShardPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        self.warm.retire();
    }

    /// What the shard wrote to the frame's log lately.
    pub fn log(&self) -> &ShardLog {
        &self.services.logging
    }

    /// The limits the shard runs under.
    pub fn limits(&self) -> &ShardLimits {
        &self.limits
    }

    /// Admits one request under the shard's request rate; `Err` with how long until one would
    /// pass when it is over.
    pub fn admit_request(&self) -> Result<(), Duration> {
        let Some(bucket) = &self.requests else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        if bucket.try_take(1, now) {
            return Ok(());
        }
        Err(bucket.time_until(1, now).unwrap_or(Duration::from_secs(1)))
    }

    /// The shard's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its series in the frame's metrics.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.services.metrics
    }

    /// Instance slots the shard holds now (running calls and kept instances).
    pub fn slots_in_use(&self) -> usize {
        self.slots.in_use()
    }

    /// Its storage namespace, if it declares the service.
    pub fn storage(&self) -> Option<&ShardStore> {
        self.services.storage.as_ref()
    }

    /// Appends `events` the shard published to the log, counting them once durable.
    async fn append_events(&self, events: &[Pending]) -> Result<(), String> {
        let appended = self.services.log.append(&self.name, events).await;
        if appended.is_ok() {
            self.services.metrics.events_published(events.len());
        }
        appended.map_err(|e| e.to_string())
    }

    /// The export the frame serves the shard's HTTP API through.
    pub fn http_interface(&self) -> &'static str {
        self.http.interface()
    }

    /// The content digest of its component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    fn new_store(&self) -> Store<ShardState> {
        let config = self.runtime.limits();
        let limiter = ShardLimiter::new(
            self.limits.memory_bytes,
            u64::from(self.limits.table_elements),
            config.max_core_instances_per_component,
            config.max_memories_per_component,
            config.max_tables_per_component,
        );
        let policy = self.policy();
        let s = &self.services;
        let database = match (&s.database, policy.database) {
            (Some(db), true) => DatabaseCtx::granted(db.clone()).counted(s.metrics.clone()),
            _ => DatabaseCtx::denied(),
        };
        let storage = match (&s.storage, policy.storage) {
            (Some(store), true) => StorageCtx::granted(store.clone()),
            _ => StorageCtx::denied(),
        };
        let events = if policy.events {
            EventsCtx::granted(policy.publish.clone(), s.events.clone())
        } else {
            EventsCtx::denied(s.events_config.clone())
        };
        let log = s.logging.clone();
        ShardState::new(self.name.clone(), limiter, database, events, storage, log)
            .into_store(self.runtime.engine())
    }

    /// What a failed call means (see [`error::failure`]), counted in the shard's metrics; a
    /// trap is logged with a reference for the client.
    fn classify(&self, error: wasmtime::Error, timeout: Duration) -> CallError {
        let failure = failure(&error);
        count(&self.services.metrics, failure);
        call_error(
            &self.name,
            &error,
            failure,
            timeout,
            self.limits.memory_bytes,
        )
    }

    fn admit(&self) -> Result<SlotPermit, CallError> {
        self.slots.try_acquire().map_err(|e| match e {
            SlotError::ShardFull => CallError::Busy(self.name.to_string()),
            SlotError::FrameFull => CallError::FrameBusy,
        })
    }

    /// Serves one HTTP request in a fresh instance (or a reused one, when the shard opted in),
    /// through the shard's `http-handler` if it exports one, else its
    /// `wasi:http/incoming-handler`. The path must already be relative to the shard's prefix.
    /// Events the shard publishes are made durable before its response is released. The response
    /// is within the shard's `max_response_bytes`: refused when its length is known to be over it
    /// ([`CallError::ResponseTooLarge`]), otherwise its body fails where it passes it.
    pub async fn handle(
        self: &Arc<Self>,
        request: ::http::Request<Bytes>,
    ) -> Result<::http::Response<ShardBody>, CallError> {
        let generation = self.warm.generation();
        let (mut store, warm, permit) = match self.warm.take(&self.limits) {
            Some(warm) => (warm.store, Some((warm.entry, warm.served)), warm.permit),
            None => (self.new_store(), None, self.admit()?),
        };
        let deadline = Instant::now() + self.limits.request_timeout;
        set_deadline_at(&mut store, deadline);
        let call = Call {
            warm,
            generation,
            permit,
            deadline,
        };
        let max_response = self.limits.max_response_bytes;
        match &self.http {
            HttpExport::Buffered(_) | HttpExport::BufferedV0_1(_) => {
                let is_head = request.method() == ::http::Method::HEAD;
                let invocation = Invocation::Buffered(http::buffered_request(request));
                let (sender, receiver) = tokio::sync::oneshot::channel();
                let answer = self
                    .run(store, call, receiver, Some(sender), invocation)
                    .await??;
                http::buffered_response(&self.name, answer, is_head, max_response)
            }
            HttpExport::Wasi(_) => {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                let invocation = http::wasi_invocation(&mut store, request, sender)
                    .map_err(|e| self.classify(e, self.limits.request_timeout))?;
                let answer = self.run(store, call, receiver, None, invocation).await?;
                match answer {
                    Ok(response) => http::streamed_response(&self.name, response, max_response),
                    Err(code) => Err(CallError::Guest {
                        shard: self.name.to_string(),
                        code,
                    }),
                }
            }
        }
    }

    /// Delivers one event to the shard's `event-handler` in a fresh instance. Waiting for a
    /// slot, instantiating and the handler's run, host waits included, all end at the shard's
    /// event deadline.
    pub async fn deliver_event(&self, event: StoredEvent) -> Result<(), String> {
        let Some(handler) = &self.handler else {
            return Err(format!("shard `{}` exports no event-handler", self.name));
        };
        let timeout = self.limits.event_timeout;
        let deadline = Instant::now() + timeout;
        let _permit = self.slots.acquire_until(deadline).await.map_err(|e| {
            format!(
                "no instance of shard `{}` became free within its event deadline: {e}",
                self.name
            )
        })?;
        let mut store = self.new_store();
        store
            .data_mut()
            .events
            .set_hops(event.hops.saturating_add(1));
        set_deadline_at(&mut store, deadline);
        let event = event_handler::Event {
            id: event.id,
            name: event.name,
            source: event.source,
            payload: event.payload,
            published_at: event.published_at,
        };
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            handler.call(&mut store, &instance, event).await
        };
        let result = tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or_else(|_| Err(Trap::Interrupt.into()));
        store.data_mut().flush_output();
        match result {
            Ok(Ok(())) => {
                let pending = store.data_mut().events.take_pending();
                self.append_events(&pending)
                    .await
                    .map_err(|e| format!("events published by the handler were not logged: {e}"))
            }
            Ok(Err(message)) => Err(format!("the handler returned an error: {message}")),
            Err(e) => Err(match self.classify(e, timeout) {
                CallError::Trap { detail, .. } => {
                    format!("shard `{}` trapped: {detail}", self.name)
                }
                other => other.to_string(),
            }),
        }
    }
}

impl EventTarget for LoadedShard {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, event_name: &str) -> bool {
        self.policy().receive.may_receive(event_name)
    }

    fn patterns(&self) -> Vec<String> {
        self.policy().receive.declared().to_vec()
    }

    fn deliver(&self, event: StoredEvent) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.deliver_event(event))
    }

    fn settled(&self, delivery: Delivery) {
        let metrics = &self.services.metrics;
        match delivery {
            Delivery::Delivered => metrics.event_delivered(),
            Delivery::Retried => metrics.event_retried(),
            Delivery::DeadLettered => metrics.event_dead_lettered(),
        }
    }
}

impl LoadedShard {
    /// Waits until no call into the shard is running (used at shutdown). Idle kept instances
    /// are released first, since they hold slots too.
    pub async fn drain(&self) {
        self.warm.clear();
        self.slots.idle().await;
    }
}
