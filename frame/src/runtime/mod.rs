//! The wasmtime side of the frame: one [`Engine`] (component model, async, pooling allocator,
//! epoch interruption), the shared [`Linker`], the compiled-component cache, and [`LoadedShard`]:
//! a shard ready to serve, with one `InstancePre` and a fresh instance per call.

pub mod cache;
pub mod limiter;
pub mod limits;
pub mod linker;
pub mod policy;
mod shard;
pub mod slots;
pub mod store;

use self::cache::CompiledCache;
use self::limits::LimitsConfig;
use self::slots::{InstanceSlots, MEMORIES_PER_SLOT, TABLES_PER_SLOT};
use self::store::ShardState;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use policy::ShardPolicy;
pub use shard::{CallError, LoadedShard, ShardBody, ShardServices, set_deadline};

/// How often the epoch advances; deadlines are checked at this granularity, and a guest that
/// runs without calling the host yields to other tasks at least this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine and everything shared by all shards.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<ShardState>>,
    cache: CompiledCache,
    limits: Arc<LimitsConfig>,
    slots: InstanceSlots,
    _ticker: Arc<EpochTicker>,
}

impl Runtime {
    /// An engine configured with `limits`, caching compiled components in `cache_dir`.
    pub fn new(limits: LimitsConfig, cache_dir: PathBuf) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&limits))?;
        let linker = Arc::new(linker::linker(&engine)?);
        let cache = CompiledCache::new(&engine, cache_dir)?;
        let ticker = Arc::new(EpochTicker::start(engine.clone()));
        Ok(Self {
            engine,
            linker,
            cache,
            slots: InstanceSlots::new(limits.instances_total),
            limits: Arc::new(limits),
            _ticker: ticker,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker.
    pub fn linker(&self) -> &Linker<ShardState> {
        &self.linker
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> &Arc<LimitsConfig> {
        &self.limits
    }

    /// The engine's instance slots, which every call is admitted to first.
    pub fn slots(&self) -> &InstanceSlots {
        &self.slots
    }

    /// The compiled component of `wasm`, cached under `digest` (a key of its code: equal keys
    /// must mean equal code), from the cache when possible.
    pub fn compile(&self, digest: &str, wasm: &[u8]) -> wasmtime::Result<Component> {
        self.cache.load(&self.engine, digest, wasm)
    }

    /// The compiled-component cache.
    pub fn cache(&self) -> &CompiledCache {
        &self.cache
    }
}

fn engine_config(limits: &LimitsConfig) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let instances = limits.instances_total.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component instantiates a few core instances (the program plus the shims
    // wit-component adds), each with a table; one linear memory. A slot is one component
    // instance with its share of memories and tables; calls are admitted by weight in slots
    // (runtime/slots.rs), so admitted calls never exhaust any of these.
    pool.total_component_instances(instances);
    // One async stack per running call; the default (1000, mapped read-write) would not follow
    // `instances_total` and counts against a data limit the operator sizes from it.
    pool.total_stacks(instances);
    pool.total_memories(instances.saturating_mul(MEMORIES_PER_SLOT));
    pool.total_tables(instances.saturating_mul(TABLES_PER_SLOT));
    // Core instances cost no reserved memory, only a count: never the scarce kind.
    pool.total_core_instances(instances.saturating_mul(limits.max_core_instances_per_component));
    pool.max_core_instances_per_component(limits.max_core_instances_per_component);
    pool.max_memories_per_component(limits.max_memories_per_component);
    pool.max_tables_per_component(limits.max_tables_per_component);
    pool.max_memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX));
    pool.table_elements(usize::try_from(limits.table_elements).unwrap_or(usize::MAX));
    // Resetting a slot with madvise after every request (and faulting the pages back in on the
    // next one) was the largest cost per request; resetting the first pages in place instead
    // halved instantiation time (BENCHMARKS.md). Warm slots are capped so their resident pages
    // stay bounded.
    pool.linear_memory_keep_resident(2 << 20);
    pool.table_keep_resident(64 << 10);
    pool.async_stack_keep_resident(256 << 10);
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    pool.max_unused_warm_slots(64);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread, so deadlines hold even
/// when every async worker is busy running guests.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("arkham-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the epoch thread; shard deadlines will not be enforced");
        }
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
