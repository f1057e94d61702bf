//! A shard ready to serve: its pre-instantiated component and the services it was granted.

use super::Runtime;
use super::limiter::{LimitHit, ShardLimiter};
use super::policy::ShardPolicy;
use super::slots::{self, ShardSlots, SlotError, SlotPermit};
use super::store::ShardState;
use crate::bindings::{event_handler, http_handler, v0_1};
use crate::metrics::ShardMetrics;
use crate::runtime::limits::ShardLimits;
use crate::runtime::linker::ARKHAM_VERSIONS;
use crate::services::database::{DatabaseCtx, ShardDatabase};
use crate::services::events::{
    Delivery, EventBus, EventTarget, EventsConfig, EventsCtx, EventsShard, Pending, StoredEvent,
};
use crate::services::logging::ShardLog;
use crate::services::rate::TokenBucket;
use crate::services::storage::{ShardStore, StorageCtx};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

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
    /// The shard trapped (panic, unreachable, stack overflow, ...). Clients see the reference;
    /// the details (the trap and the guest's backtrace) are in the frame's log under it.
    #[error(
        "shard `{shard}` failed (reference {reference}); the frame's log has the details under \
         that reference"
    )]
    Trap {
        /// The shard.
        shard: String,
        /// A short random id, logged with the details.
        reference: String,
        /// What the trap said, with the guest's backtrace: for the log and dead letters only.
        detail: String,
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
    /// The shard's `http-handler` returned a response that cannot be sent.
    #[error(
        "shard `{shard}` returned an invalid response: {reason}; its `http-handler` must return a \
         status in 100..=599 and header names and values HTTP allows (fix the shard)"
    )]
    InvalidResponse {
        /// The shard.
        shard: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The call succeeded but the events it published could not be made durable, so it is not
    /// acknowledged.
    #[error(
        "shard `{shard}` handled the request, but the events it published could not be logged \
         ({reason}); the request is not acknowledged: retry it"
    )]
    EventsNotLogged {
        /// The shard.
        shard: String,
        /// The event log's error.
        reason: String,
    },
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

/// Response headers an `http-handler` response may carry, at most: `http::HeaderMap` panics
/// past 24,576 entries, and no client needs more than a few dozen.
const MAX_RESPONSE_HEADERS: usize = 500;

/// Bytes of response header names and values, at most (the same bound `wasi:http` fields have).
const MAX_RESPONSE_HEADER_BYTES: usize = 128 << 10;

/// Bytes of a trap's details kept for the log and dead letters.
const MAX_TRAP_DETAIL: usize = 8 << 10;

/// An instance kept between requests by a shard that opted into instance reuse. It keeps its
/// slot while idle, so idle instances count against the shard's cap like running ones.
struct Warm {
    store: Store<ShardState>,
    entry: Entry,
    /// Requests it has served.
    served: u32,
    /// The shard's policy generation when its store was created.
    generation: u64,
    permit: SlotPermit,
}

/// One HTTP call's arguments, for the export the shard serves HTTP through.
enum Invocation {
    Buffered(http_handler::Request),
    Wasi {
        request: wasmtime::component::Resource<HostIncomingRequest>,
        out: wasmtime::component::Resource<HostResponseOutparam>,
    },
}

/// What an `http-handler` call answers: its response once its events are durable.
type BufferedAnswer = Result<http_handler::Response, CallError>;

/// The export a shard serves HTTP through, found when it is loaded.
enum HttpExport {
    /// `arkham:shard/http-handler`, preferred when a component exports both.
    Buffered(http_handler::GuestIndices),
    /// `arkham:shard/http-handler@0.1.0`, of a component built before 0.2.0.
    BufferedV0_1(v0_1::http_handler::GuestIndices),
    /// `wasi:http/incoming-handler`.
    Wasi(ProxyIndices),
}

/// The HTTP export of an instance, loaded.
enum Entry {
    /// `arkham:shard/http-handler`.
    Buffered(http_handler::Guest),
    /// `arkham:shard/http-handler@0.1.0`.
    BufferedV0_1(v0_1::http_handler::Guest),
    /// `wasi:http/incoming-handler`.
    Wasi(Proxy),
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

/// Response headers the frame sets itself (from the body it sends) and ignores from a shard's
/// `http-handler`: the body's framing and the connection's, which are not the shard's to say.
const FRAME_SET_HEADERS: [http::HeaderName; 6] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// The body of a shard's response.
pub enum ShardBody {
    /// Whole, from `http-handler` (`None` once sent, or when empty).
    Whole(Option<Bytes>),
    /// Streamed from the guest as it writes it, from `wasi:http/incoming-handler`.
    Streamed(HyperOutgoingBody),
}

impl http_body::Body for ShardBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ShardBody::Whole(body) => {
                Poll::Ready(body.take().map(|b| Ok(http_body::Frame::data(b))))
            }
            ShardBody::Streamed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ShardBody::Whole(body) => body.is_none(),
            ShardBody::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            ShardBody::Whole(body) => {
                http_body::SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
            ShardBody::Streamed(body) => body.size_hint(),
        }
    }
}

/// The request record of `http-handler` for `request` (its target already relative to the
/// shard's prefix).
fn buffered_request(request: http::Request<Bytes>) -> http_handler::Request {
    let (parts, body) = request.into_parts();
    http_handler::Request {
        method: parts.method.as_str().to_owned(),
        path_with_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body: body.into(),
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
    /// Idle instances, most recently used last; empty unless `limits.instance_reuse > 1`.
    warm: Mutex<Vec<Warm>>,
    /// Bumped by every policy change; instances created under an older policy are not reused.
    generation: AtomicU64,
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
        let http = if let Ok(indices) = http_handler::GuestIndices::new(&pre) {
            HttpExport::Buffered(indices)
        } else if let Ok(indices) = v0_1::http_handler::GuestIndices::new(&pre) {
            HttpExport::BufferedV0_1(indices)
        } else {
            match ProxyIndices::new(&pre) {
                Ok(indices) => HttpExport::Wasi(indices),
                Err(wasi) => anyhow::bail!(
                    "the component exports no HTTP entry point: neither \
                     `arkham:shard/http-handler` (at a version the frame calls: {}) nor \
                     `wasi:http/incoming-handler` ({wasi:#})",
                    ARKHAM_VERSIONS.join(", ")
                ),
            }
        };
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
            warm: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
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
        self.generation.fetch_add(1, Ordering::AcqRel);
        let retired = std::mem::take(&mut *self.warm.lock().unwrap_or_else(|e| e.into_inner()));
        drop(retired);
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
        match self.http {
            HttpExport::Buffered(_) => "arkham:shard/http-handler@0.2.0",
            HttpExport::BufferedV0_1(_) => "arkham:shard/http-handler@0.1.0",
            HttpExport::Wasi(_) => "wasi:http/incoming-handler@0.2.12",
        }
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

    /// An idle instance created under the current policy, if the shard reuses instances.
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
    fn keep_warm(&self, mut warm: Warm) {
        let state = warm.store.data();
        let reusable = warm.served < self.limits.instance_reuse
            && warm.generation == self.generation.load(Ordering::Acquire)
            && !state.holds_resources()
            && state.output_len() < MAX_REUSED_OUTPUT;
        if !reusable {
            return;
        }
        warm.store.data_mut().renew_header_budget();
        let mut idle = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_INSTANCES.min(self.limits.instances as usize) {
            idle.push(warm);
        }
    }

    /// What a failed call means, from the error's type: a deadline, a limit of the instance or
    /// of the pool, or a trap of the guest's own (logged here with a reference for the client).
    fn classify(&self, error: wasmtime::Error, timeout: Duration) -> CallError {
        let shard = self.name.to_string();
        count_failure(&self.services.metrics, &error);
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return CallError::Timeout {
                shard,
                limit_ms: timeout.as_millis(),
            };
        }
        if error.downcast_ref::<LimitHit>().is_some() {
            return CallError::MemoryExceeded {
                shard,
                limit_bytes: self.limits.memory_bytes,
            };
        }
        if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return CallError::FrameBusy;
        }
        let reference = format!("{:08x}", rand::random::<u32>());
        let detail = crate::services::logging::truncate_to(&format!("{error:?}"), MAX_TRAP_DETAIL)
            .to_string();
        tracing::warn!(shard = &*self.name, reference, detail, "the shard trapped");
        CallError::Trap {
            shard,
            reference,
            detail,
        }
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
    /// Events the shard publishes are made durable before its response is released.
    pub async fn handle(
        self: &Arc<Self>,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<ShardBody>, CallError> {
        let generation = self.generation.load(Ordering::Acquire);
        let (mut store, warm, permit) = match self.take_warm() {
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
        match &self.http {
            HttpExport::Buffered(_) | HttpExport::BufferedV0_1(_) => {
                let is_head = request.method() == http::Method::HEAD;
                let invocation = Invocation::Buffered(buffered_request(request));
                let (sender, receiver) = tokio::sync::oneshot::channel();
                let answer = self
                    .run(store, call, receiver, Some(sender), invocation)
                    .await??;
                self.buffered_response(answer, is_head)
            }
            HttpExport::Wasi(_) => {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                let setup = (|| {
                    let request = request.map(|body| {
                        http_body_util::BodyExt::map_err(
                            http_body_util::Full::new(body),
                            |never| -> ErrorCode { match never {} },
                        )
                    });
                    let http = store.data_mut();
                    let req = http.http().new_incoming_request(Scheme::Http, request)?;
                    let out = store.data_mut().http().new_response_outparam(sender)?;
                    wasmtime::Result::Ok((req, out))
                })();
                let (req, out) =
                    setup.map_err(|e| self.classify(e, self.limits.request_timeout))?;
                let invocation = Invocation::Wasi { request: req, out };
                let answer = self.run(store, call, receiver, None, invocation).await?;
                match answer {
                    Ok(response) => Ok(response.map(ShardBody::Streamed)),
                    Err(code) => Err(CallError::Guest {
                        shard: self.name.to_string(),
                        code,
                    }),
                }
            }
        }
    }

    /// Runs `invocation` (one HTTP call into the instance in `store`) to completion and returns
    /// the answer sent on `receiver` as soon as it is sent, even if the guest is still running
    /// (streaming a body, say).
    ///
    /// Events: an `http-handler` call answers (on `buffered`) only after the events it published
    /// are durable. A `wasi:http` guest answers through its response outparam, possibly before it
    /// returns: the events it published until then are made durable before its response is
    /// released, and the rest when it returns successfully. The whole call, host waits included,
    /// ends at its deadline.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        mut store: Store<ShardState>,
        call: Call,
        mut receiver: tokio::sync::oneshot::Receiver<T>,
        buffered: Option<tokio::sync::oneshot::Sender<BufferedAnswer>>,
        invocation: Invocation,
    ) -> Result<T, CallError> {
        let timeout = self.limits.request_timeout;
        let this = self.clone();
        let pending = store.data().events.pending();
        let Call {
            warm,
            generation,
            permit,
            deadline,
        } = call;
        let (entry, served) = match warm {
            Some((entry, served)) => (Some(entry), served),
            None => (None, 0),
        };
        let events = pending.clone();
        let call = async move {
            let invoked =
                match tokio::time::timeout_at(deadline, this.invoke(&mut store, entry, invocation))
                    .await
                {
                    Ok(invoked) => invoked,
                    // The guest waits in a host call (a pollable, a lock) past its deadline, where
                    // epochs do not reach it: dropping the call cancels the wait and releases what
                    // the call held.
                    Err(_) => Err(Trap::Interrupt.into()),
                };
            store.data_mut().flush_output();
            let (entry, response) = invoked?;
            let logged = this.append_events(&events.take()).await;
            match (response, buffered) {
                (Some(response), Some(sender)) => {
                    let answer = logged.map(|()| response).map_err(|e| {
                        tracing::error!(shard = &*this.name, error = %e, "events published by the request were not logged; answering 503");
                        CallError::EventsNotLogged {
                            shard: this.name.to_string(),
                            reason: e,
                        }
                    });
                    let failed = answer.is_err();
                    let _ = sender.send(answer);
                    if failed {
                        return Ok(());
                    }
                }
                _ => {
                    if let Err(e) = logged {
                        tracing::error!(shard = &*this.name, error = %e, "events the shard published after its response were not logged");
                        return Ok(());
                    }
                }
            }
            this.keep_warm(Warm {
                store,
                entry,
                served: served + 1,
                generation,
                permit,
            });
            Ok(())
        };

        // The guest runs on this task until it either returns or answers and waits (streaming a
        // body, awaiting the database, ...); only then does it move to a task of its own. A
        // small response thus costs no task spawn and no cross-thread wake-up.
        let mut call = RunToCompletion::new(call, self.name.clone(), self.services.metrics.clone());
        let step = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = call.poll_call(cx) {
                return Poll::Ready(Step::Returned(result));
            }
            Pin::new(&mut receiver).poll(cx).map(Step::Answered)
        })
        .await;
        match step {
            Step::Returned(result) => receiver.try_recv().map_err(|_| match result {
                Ok(()) => CallError::NoResponse(self.name.to_string()),
                Err(e) => self.classify(e, timeout),
            }),
            Step::Answered(Ok(answer)) => {
                // Only a `wasi:http` guest answers before returning; the call is paused here
                // while what it published so far is made durable.
                let early = pending.take();
                if let Err(e) = self.append_events(&early).await {
                    tracing::error!(shard = &*self.name, error = %e, "events published by the request were not logged; answering 503");
                    return Err(CallError::EventsNotLogged {
                        shard: self.name.to_string(),
                        reason: e,
                    });
                }
                Ok(answer)
            }
            // The guest dropped its response outparam without setting it.
            Step::Answered(Err(_)) => Err(match call.finish().await {
                Ok(()) => CallError::NoResponse(self.name.to_string()),
                Err(e) => self.classify(e, timeout),
            }),
        }
    }

    /// Makes one HTTP call into the instance in `store`: `warm`'s, or a new one. Returns the
    /// instance's entry and, for `http-handler`, its response.
    async fn invoke(
        &self,
        store: &mut Store<ShardState>,
        warm: Option<Entry>,
        invocation: Invocation,
    ) -> wasmtime::Result<(Entry, Option<http_handler::Response>)> {
        let entry = match warm {
            Some(entry) => entry,
            None => {
                let instance = self.pre.instantiate_async(&mut *store).await?;
                match &self.http {
                    HttpExport::Buffered(indices) => {
                        Entry::Buffered(indices.load(&mut *store, &instance)?)
                    }
                    HttpExport::BufferedV0_1(indices) => {
                        Entry::BufferedV0_1(indices.load(&mut *store, &instance)?)
                    }
                    HttpExport::Wasi(indices) => Entry::Wasi(indices.load(&mut *store, &instance)?),
                }
            }
        };
        match (entry, invocation) {
            (Entry::Buffered(guest), Invocation::Buffered(request)) => {
                let response = guest.call_handle(&mut *store, &request).await?;
                Ok((Entry::Buffered(guest), Some(response)))
            }
            (Entry::BufferedV0_1(guest), Invocation::Buffered(request)) => {
                let response = guest.call_handle(&mut *store, &request.into()).await?;
                Ok((Entry::BufferedV0_1(guest), Some(response.into())))
            }
            (Entry::Wasi(proxy), Invocation::Wasi { request, out }) => {
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, request, out)
                    .await?;
                Ok((Entry::Wasi(proxy), None))
            }
            // A shard's exports do not change while it is loaded, so a kept instance always
            // serves through the export it was loaded for; this would be a frame bug.
            _ => Err(wasmtime::format_err!(
                "internal error: a kept instance was loaded for the other HTTP export"
            )),
        }
    }

    /// The HTTP response for what a shard's `http-handler` returned.
    fn buffered_response(
        &self,
        response: http_handler::Response,
        is_head: bool,
    ) -> Result<http::Response<ShardBody>, CallError> {
        let invalid = |reason: String| CallError::InvalidResponse {
            shard: self.name.to_string(),
            reason,
        };
        let status = http::StatusCode::from_u16(response.status)
            .ok()
            .filter(|status| (100..=599).contains(&status.as_u16()))
            .ok_or_else(|| invalid(format!("status {} is not in 100..=599", response.status)))?;
        // Bounded before anything is built from them: the list is the shard's to make.
        if response.headers.len() > MAX_RESPONSE_HEADERS {
            return Err(invalid(format!(
                "{} headers; a response may have at most {MAX_RESPONSE_HEADERS}",
                response.headers.len()
            )));
        }
        let header_bytes = response
            .headers
            .iter()
            .fold(0usize, |sum, (n, v)| sum.saturating_add(n.len() + v.len()));
        if header_bytes > MAX_RESPONSE_HEADER_BYTES {
            return Err(invalid(format!(
                "{header_bytes} bytes of headers; a response may have at most \
                 {MAX_RESPONSE_HEADER_BYTES}"
            )));
        }
        let mut headers = http::HeaderMap::with_capacity(response.headers.len() + 1);
        for (name, value) in response.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("`{name}` is not a valid header name")))?;
            if FRAME_SET_HEADERS.contains(&name) {
                continue;
            }
            let value = http::HeaderValue::from_bytes(&value)
                .map_err(|_| invalid(format!("the value of header `{name}` is not valid")))?;
            headers.append(name, value);
        }
        let bodiless = status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED;
        let body = if bodiless {
            Bytes::new()
        } else {
            if !is_head {
                headers.insert(
                    http::header::CONTENT_LENGTH,
                    http::HeaderValue::from(response.body.len()),
                );
            }
            Bytes::from(response.body)
        };
        let mut out = http::Response::new(ShardBody::Whole(Some(body).filter(|b| !b.is_empty())));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
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

/// What a call starts with besides its arguments.
struct Call {
    /// A kept instance and the requests it served, if reused.
    warm: Option<(Entry, u32)>,
    generation: u64,
    permit: SlotPermit,
    deadline: Instant,
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
        drop(std::mem::take(
            &mut *self.warm.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        self.slots.idle().await;
    }
}

/// Counts a failed call in the shard's metrics by its kind: a deadline, the memory limit, or a
/// trap of the guest's own (a full pool is none of these).
fn count_failure(metrics: &ShardMetrics, error: &wasmtime::Error) {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        metrics.timeout();
    } else if error.downcast_ref::<LimitHit>().is_some() {
        metrics.memory_limit_hit();
    } else if error.downcast_ref::<PoolConcurrencyLimitError>().is_none() {
        metrics.trap();
    }
}

/// Arms the store's deadline for one call: checked every epoch tick, past `timeout` the guest
/// traps; before it, the guest yields, so one busy shard cannot hold an executor thread.
pub fn set_deadline(store: &mut Store<ShardState>, timeout: Duration) {
    set_deadline_at(store, Instant::now() + timeout);
}

fn set_deadline_at(store: &mut Store<ShardState>, deadline: Instant) {
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
}

/// What happened first in an HTTP call: the guest returned, or it answered (sent or dropped its
/// response) while still running.
enum Step<T> {
    Returned(wasmtime::Result<()>),
    Answered(Result<T, tokio::sync::oneshot::error::RecvError>),
}

type CallFuture = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

/// A call into a guest that always runs to completion: the shard's writes and the logging of
/// its events must not stop halfway because the response went out first or the client went
/// away. Polled in place while someone waits for it; dropped unfinished, it continues on a task
/// of its own.
struct RunToCompletion {
    call: Option<CallFuture>,
    shard: Arc<str>,
    /// Where a failure after the response counts, as one before it does.
    metrics: ShardMetrics,
}

impl RunToCompletion {
    fn new(
        call: impl Future<Output = wasmtime::Result<()>> + Send + 'static,
        shard: Arc<str>,
        metrics: ShardMetrics,
    ) -> Self {
        Self {
            call: Some(Box::pin(call)),
            shard,
            metrics,
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
        let metrics = self.metrics.clone();
        let rest = async move {
            if let Err(e) = call.await {
                count_failure(&metrics, &e);
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
