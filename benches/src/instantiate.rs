//! Per-request instance creation, in process: a fresh `Store<ShardState>` and
//! `InstancePre::instantiate_async` with the frame's engine settings, pooling allocator on vs
//! off; and the same plus one request, through `http-handler` (the SDK-built minimal shard) and
//! through `wasi:http` (`minimal-raw`, the peer's component).

use crate::native::NativeServer;
use anyhow::{Context, Result};
use arkham_frame::bindings::http_handler;
use arkham_frame::runtime::limiter::ShardLimiter;
use arkham_frame::runtime::limits::LimitsConfig;
use arkham_frame::runtime::store::ShardState;
use arkham_frame::runtime::{Runtime, set_deadline};
use arkham_frame::services::database::DatabaseCtx;
use arkham_frame::services::events::{EventsConfig, EventsCtx};
use arkham_frame::services::logging::{LoggingConfig, ShardLog};
use arkham_frame::services::storage::StorageCtx;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};

/// Percentiles of one micro benchmark, in µs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Micro {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Timed iterations.
    pub iterations: usize,
}

/// Results for one allocator.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Instantiation {
    /// Store + instantiate, the SDK-built minimal shard.
    pub instantiate: Micro,
    /// Store + instantiate, `minimal-raw` (no SDK, `wasi:http`).
    pub instantiate_raw: Micro,
    /// Store + instantiate + one `GET /` through `wasi:http/incoming-handler` (`minimal-raw`),
    /// body read.
    pub request: Micro,
    /// One `GET /` through `wasi:http` on an instance that already served requests (the reuse
    /// mode's cost).
    pub reused: Micro,
    /// Store + instantiate + one `GET /` through `arkham:shard/http-handler` (the minimal shard).
    pub buffered_request: Micro,
    /// One `GET /` through `arkham:shard/http-handler` on an instance that already served
    /// requests.
    pub buffered_reused: Micro,
}

/// An engine like the frame's ([`Runtime`]) but with the on-demand allocator: the frame's
/// `engine_config` minus the pool (`frame/src/runtime/mod.rs`).
fn on_demand_engine() -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
    Ok(Engine::new(&config)?)
}

/// The frame's `engine_config` (frame/src/runtime/mod.rs) with the default limits, copied line
/// for line; with `tuned`, plus the pool settings proposed in BENCHMARKS.md: keep the first pages
/// of each slot resident and reset them in place instead of `madvise`-ing them away (which costs
/// a TLB shootdown on every core per request, then page faults on the next instantiation).
pub fn frame_engine(tuned: bool) -> Result<Engine> {
    let limits = LimitsConfig::default();
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let instances = limits.instances_total.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances);
    pool.total_core_instances(instances.saturating_mul(4));
    pool.total_memories(instances.saturating_mul(2));
    pool.total_tables(instances.saturating_mul(4));
    pool.max_memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX));
    pool.table_elements(usize::try_from(limits.table_elements).unwrap_or(usize::MAX));
    if tuned {
        pool.linear_memory_keep_resident(TUNED_MEMORY_KEEP_RESIDENT);
        pool.table_keep_resident(TUNED_TABLE_KEEP_RESIDENT);
        pool.async_stack_keep_resident(TUNED_STACK_KEEP_RESIDENT);
        pool.pagemap_scan(Enabled::Auto);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// `linear_memory_keep_resident` of the tuned pool.
pub const TUNED_MEMORY_KEEP_RESIDENT: usize = 2 << 20;
/// `table_keep_resident` of the tuned pool.
pub const TUNED_TABLE_KEEP_RESIDENT: usize = 64 << 10;
/// `async_stack_keep_resident` of the tuned pool.
pub const TUNED_STACK_KEEP_RESIDENT: usize = 256 << 10;

/// An HTTP server in this process that serves every request like `LoadedShard::handle` does
/// for a `wasi:http` component (`wasm`; fresh store, instantiate, `wasi:http` handle, body read)
/// on [`frame_engine`]`(tuned)`, without the frame's proxy, semaphore and task spawn: the runtime
/// part of a request alone.
pub fn http_server(wasm: &[u8], tuned: bool) -> Result<NativeServer> {
    let engine = frame_engine(tuned)?;
    let linker = arkham_frame::runtime::linker::linker(&engine)?;
    let component = Prepared::new(&linker, &Component::new(&engine, wasm)?)?;
    let bench = Arc::new((Bench::new(engine), component));
    NativeServer::start(move || {
        Ok(axum::Router::new().fallback(move || {
            let bench = bench.clone();
            async move {
                let (bench, component) = &*bench;
                match bench.respond(component).await {
                    Ok(body) => (http::StatusCode::OK, body),
                    Err(e) => (
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        Bytes::from(format!("{e:#}")),
                    ),
                }
            }
        }))
    })
}

/// A component linked and ready to instantiate, with the HTTP export the frame would call.
struct Prepared {
    pre: InstancePre<ShardState>,
    export: Export,
}

/// The HTTP export of a component, as `LoadedShard::new` picks it: `http-handler` when exported.
enum Export {
    Buffered(http_handler::GuestIndices),
    Wasi(ProxyIndices),
}

impl Prepared {
    fn new(linker: &Linker<ShardState>, component: &Component) -> Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        let export = match http_handler::GuestIndices::new(&pre) {
            Ok(indices) => Export::Buffered(indices),
            Err(_) => Export::Wasi(ProxyIndices::new(&pre)?),
        };
        Ok(Self { pre, export })
    }
}

/// The components the micro benchmarks run, compiled for one engine.
struct Components {
    bench: Bench,
    /// The SDK-built minimal shard (`http-handler`).
    sdk: Prepared,
    /// `minimal-raw` (`wasi:http`).
    raw: Prepared,
}

impl Components {
    fn new(engine: Engine, linker: &Linker<ShardState>, sdk: &[u8], raw: &[u8]) -> Result<Self> {
        let sdk = Prepared::new(linker, &Component::new(&engine, sdk)?)?;
        let raw = Prepared::new(linker, &Component::new(&engine, raw)?)?;
        anyhow::ensure!(
            matches!(sdk.export, Export::Buffered(_)) && matches!(raw.export, Export::Wasi(_)),
            "the minimal shard must export http-handler and minimal-raw only wasi:http"
        );
        Ok(Self {
            bench: Bench::new(engine),
            sdk,
            raw,
        })
    }

    async fn measure(&self, iterations: usize) -> Result<Instantiation> {
        let b = &self.bench;
        Ok(Instantiation {
            instantiate: time(iterations, || b.instantiate(&self.sdk)).await?,
            instantiate_raw: time(iterations, || b.instantiate(&self.raw)).await?,
            request: time(iterations, || b.fresh(&self.raw)).await?,
            reused: b.reused(&self.raw, iterations).await?,
            buffered_request: time(iterations, || b.fresh(&self.sdk)).await?,
            buffered_reused: b.reused(&self.sdk, iterations).await?,
        })
    }
}

struct Bench {
    engine: Engine,
    events: Arc<EventsConfig>,
}

impl Bench {
    fn new(engine: Engine) -> Self {
        Self {
            engine,
            events: Arc::new(EventsConfig::default()),
        }
    }

    /// What `LoadedShard::new_store` does (frame/src/runtime/shard.rs), for a shard granted no
    /// services, with the default limits.
    fn store(&self) -> Store<ShardState> {
        let l = LimitsConfig::default();
        let limiter = ShardLimiter::new(
            l.memory_bytes,
            u64::from(l.table_elements),
            l.max_core_instances_per_component,
            l.max_memories_per_component,
            l.max_tables_per_component,
        );
        let state = ShardState::new(
            "minimal".into(),
            limiter,
            DatabaseCtx::denied(),
            EventsCtx::denied(self.events.clone()),
            StorageCtx::denied(),
            ShardLog::new("minimal", &LoggingConfig::default()),
        );
        let mut store = state.into_store(&self.engine);
        set_deadline(&mut store, Duration::from_secs(30));
        store
    }

    async fn instantiate(&self, component: &Prepared) -> Result<()> {
        let mut store = self.store();
        let _instance = component.pre.instantiate_async(&mut store).await?;
        Ok(())
    }

    /// A fresh instance of `component` with its HTTP export loaded.
    async fn load(&self, store: &mut Store<ShardState>, component: &Prepared) -> Result<Loaded> {
        let instance = component.pre.instantiate_async(&mut *store).await?;
        Ok(match &component.export {
            Export::Wasi(indices) => Loaded::Wasi(indices.load(&mut *store, &instance)?),
            Export::Buffered(indices) => Loaded::Buffered(indices.load(&mut *store, &instance)?),
        })
    }

    /// One `GET /` through `loaded`, checking the answer is `ok`.
    async fn get(store: &mut Store<ShardState>, loaded: &Loaded) -> Result<()> {
        let body = match loaded {
            Loaded::Wasi(proxy) => Self::call(store, proxy).await?.to_vec(),
            Loaded::Buffered(guest) => Self::call_buffered(store, guest).await?,
        };
        anyhow::ensure!(body == b"ok", "unexpected body {body:?}");
        Ok(())
    }

    /// Store + instantiate + one request: what the frame does per request by default.
    async fn fresh(&self, component: &Prepared) -> Result<()> {
        let mut store = self.store();
        let loaded = self.load(&mut store, component).await?;
        Self::get(&mut store, &loaded).await
    }

    /// One `GET /` on an instance of `component` that already served requests, as in the
    /// frame's reuse mode.
    async fn reused(&self, component: &Prepared, iterations: usize) -> Result<Micro> {
        let mut store = self.store();
        let loaded = self.load(&mut store, component).await?;
        let mut samples = Vec::with_capacity(iterations);
        for i in 0..iterations + iterations / 10 + 10 {
            let start = Instant::now();
            Self::get(&mut store, &loaded).await?;
            if i >= iterations / 10 + 10 {
                samples.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok(Micro::of(samples))
    }

    async fn call(store: &mut Store<ShardState>, proxy: &Proxy) -> Result<Bytes> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = http::Request::builder()
            .uri("http://localhost/")
            // As the frame forwards it (frame/src/http/proxy.rs).
            .header(http::header::CONTENT_LENGTH, 0)
            .body(Full::new(Bytes::new()))?
            .map(|body| BodyExt::map_err(body, |never| -> ErrorCode { match never {} }));
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, req, out)
            .await?;
        let response = receiver
            .await?
            .map_err(|code| anyhow::anyhow!("{code:?}"))?;
        Ok(response.into_body().collect().await?.to_bytes())
    }

    /// One `GET /` through `http-handler`, as the frame sends it (`LoadedShard::handle`).
    async fn call_buffered(
        store: &mut Store<ShardState>,
        guest: &http_handler::Guest,
    ) -> Result<Vec<u8>> {
        let request = http_handler::Request {
            method: "GET".into(),
            path_with_query: "/".into(),
            headers: vec![
                ("host".into(), b"localhost".to_vec()),
                ("content-length".into(), b"0".to_vec()),
            ],
            body: Vec::new(),
        };
        let response = guest.call_handle(&mut *store, &request).await?;
        anyhow::ensure!(response.status == 200, "status {}", response.status);
        Ok(response.body)
    }

    /// Store + instantiate + one request through `wasi:http`, returning the body.
    async fn respond(&self, component: &Prepared) -> Result<Bytes> {
        let mut store = self.store();
        let Loaded::Wasi(proxy) = self.load(&mut store, component).await? else {
            anyhow::bail!("the component does not serve HTTP through wasi:http");
        };
        Self::call(&mut store, &proxy).await
    }
}

/// An instance's HTTP export, loaded.
enum Loaded {
    Wasi(Proxy),
    Buffered(http_handler::Guest),
}

async fn time<F, Fut>(iterations: usize, mut f: F) -> Result<Micro>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    for _ in 0..iterations / 10 + 10 {
        f().await?;
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        f().await?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Micro::of(samples))
}

impl Micro {
    fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            samples
                .get(((samples.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Micro {
            p50_us: at(0.50),
            p99_us: at(0.99),
            mean_us: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
            iterations: samples.len(),
        }
    }
}

/// Measures the allocators on `sdk` (the SDK-built minimal shard) and `raw` (`minimal-raw`):
/// pooling as the frame has it, on-demand, pooling tuned.
pub fn run(sdk: &[u8], raw: &[u8], iterations: usize) -> Result<[Instantiation; 3]> {
    let cache = tempfile::tempdir().context("creating a cache dir")?;
    let runtime = Runtime::new(LimitsConfig::default(), cache.path().to_path_buf())?;
    let pooling = Components::new(runtime.engine().clone(), runtime.linker(), sdk, raw)?;

    let engine = on_demand_engine()?;
    let linker = arkham_frame::runtime::linker::linker(&engine)?;
    let on_demand = Components::new(engine, &linker, sdk, raw)?;

    let engine = frame_engine(true)?;
    let linker = arkham_frame::runtime::linker::linker(&engine)?;
    let tuned = Components::new(engine, &linker, sdk, raw)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // The engines take turns, REPETITIONS times; each figure is the repetition with the
        // median p50, so one burst of noise on this shared machine does not decide a verdict.
        let mut reps: [Vec<Instantiation>; 3] = Default::default();
        for _ in 0..REPETITIONS {
            for (components, out) in [&pooling, &on_demand, &tuned].into_iter().zip(&mut reps) {
                out.push(components.measure(iterations).await?);
            }
        }
        let [a, b, c] = reps.map(|runs| median_run(&runs));
        Ok([a?, b?, c?])
    })
}

/// Compiles `wasm` with the frame's engine (timed: what `shard add` precompiles) and measures
/// store + instantiate on it as [`run`] does: the languages scenario's in-process figures.
pub fn single(wasm: &[u8], iterations: usize) -> Result<(Duration, Micro)> {
    let cache = tempfile::tempdir().context("creating a cache dir")?;
    let runtime = Runtime::new(LimitsConfig::default(), cache.path().to_path_buf())?;
    let started = Instant::now();
    let component = Component::new(runtime.engine(), wasm)?;
    let compile = started.elapsed();
    let prepared = Prepared::new(runtime.linker(), &component)?;
    let bench = Bench::new(runtime.engine().clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let micro = rt.block_on(time(iterations, || bench.instantiate(&prepared)))?;
    Ok((compile, micro))
}

/// Repetitions of the micro benchmarks per engine.
pub const REPETITIONS: usize = 5;

/// Per field, the repetition whose p50 is the median.
fn median_run(runs: &[Instantiation]) -> Result<Instantiation> {
    let pick = |field: fn(&Instantiation) -> Micro| -> Result<Micro> {
        let mut all: Vec<Micro> = runs.iter().map(field).collect();
        all.sort_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
        all.get(all.len() / 2)
            .copied()
            .context("no repetition was measured")
    };
    Ok(Instantiation {
        instantiate: pick(|r| r.instantiate)?,
        instantiate_raw: pick(|r| r.instantiate_raw)?,
        request: pick(|r| r.request)?,
        reused: pick(|r| r.reused)?,
        buffered_request: pick(|r| r.buffered_request)?,
        buffered_reused: pick(|r| r.buffered_reused)?,
    })
}

#[cfg(test)]
mod tests {
    /// The micro benchmarks' calls go through both HTTP exports (the minimal shard's
    /// `http-handler`, minimal-raw's `wasi:http`), each checking the body is `ok`.
    #[test]
    fn the_micro_benchmarks_answer_through_both_exports() {
        let sdk = std::fs::read(test_shards::MINIMAL.component).unwrap();
        let raw = std::fs::read(test_shards::MINIMAL_RAW.component).unwrap();
        for engine in super::run(&sdk, &raw, 20).unwrap() {
            for micro in [
                engine.instantiate,
                engine.instantiate_raw,
                engine.request,
                engine.reused,
                engine.buffered_request,
                engine.buffered_reused,
            ] {
                assert_eq!(micro.iterations, 20);
                assert!(
                    micro.p50_us > 0.0 && micro.p99_us >= micro.p50_us,
                    "{micro:?}"
                );
            }
        }
    }
}
