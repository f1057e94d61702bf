//! The data of one shard instance's `Store`: WASI contexts, the resource table, limits, and one
//! context per arkham service.

use super::limiter::ShardLimiter;
use crate::services::database::{DatabaseCtx, DatabaseView};
use crate::services::events::{EventsCtx, EventsView};
use crate::services::logging::{LoggingView, ShardLog};
use crate::services::storage::{StorageCtx, StorageView};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Most random bytes one `wasi:random` call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Bytes of stdout and of stderr kept per call; output past it fails the write.
const STDIO_CAPACITY: usize = 1 << 20;

/// Most resources (streams, pollables, transactions, …) one instance may hold at once, in the
/// guest's handle tables and in the host's resource table. Each costs host memory outside the
/// instance's memory limit (about 100 bytes), and wasmtime's defaults (100,000 handles, a
/// table of 1,000,000) let every instance of every shard hold megabytes of it. Language
/// runtimes hold a few dozen; past this the call traps and fails alone.
pub const MAX_RESOURCES: usize = 10_000;

/// Bytes one `wasi:http` `fields` may hold (wasmtime's default is 128 KiB). Servers commonly
/// take 8-32 KiB of headers.
pub const MAX_FIELDS_BYTES: usize = 32 << 10;

/// Header edits (`fields` constructor entries, `append`, `set`, `delete`) one instance may make
/// between requests. Each grows one `fields` by at most [`MAX_FIELDS_BYTES`] and copies at most
/// one (clones share their map until edited), so the host memory a shard can hold in headers is
/// at most `2 × MAX_HEADER_EDITS × MAX_FIELDS_BYTES` (64 MiB), however many `fields` it makes;
/// without it, 10,000 full `fields` would be 1.25 GiB per instance. Past it, edits fail with
/// `forbidden`. Incoming request headers count too (a few dozen).
pub const MAX_HEADER_EDITS: u32 = 1024;

/// Store data of a shard instance.
pub struct ShardState {
    pub(crate) shard: Arc<str>,
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) limiter: ShardLimiter,
    pub(crate) database: DatabaseCtx,
    pub(crate) events: EventsCtx,
    pub(crate) storage: StorageCtx,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// The shard's budget in the frame's log, shared by its instances.
    log: ShardLog,
    /// Bytes of stdout and stderr already written to the log (an instance that serves several
    /// requests keeps its pipes).
    flushed: [usize; 2],
    hooks: Hooks,
}

impl ShardState {
    /// A fresh state for one call into `shard`, its log output charged to `log` (the budget all
    /// its instances share).
    pub fn new(
        shard: Arc<str>,
        limiter: ShardLimiter,
        database: DatabaseCtx,
        events: EventsCtx,
        storage: StorageCtx,
        log: ShardLog,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        // No environment, arguments or preopened directories: the WASI basics are inert.
        // Random bytes are allocated by the host per call: 1 MiB instead of wasmtime's 64 MiB.
        // No network: TCP, UDP and name lookups are refused before a socket is opened (so a
        // shard cannot spend the frame's file descriptors either), and no address passes.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Self {
            shard,
            log,
            table: ResourceTable::new(),
            wasi,
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(MAX_FIELDS_BYTES);
                http
            },
            limiter,
            database,
            events,
            storage,
            stdout,
            stderr,
            flushed: [0; 2],
            hooks: Hooks::default(),
        }
    }

    /// A store over `state` on `engine`, with the state's limiter installed.
    pub fn into_store(self, engine: &wasmtime::Engine) -> wasmtime::Store<Self> {
        let mut store = wasmtime::Store::new(engine, self);
        store.limiter(|state| &mut state.limiter);
        store.set_max_component_handles(MAX_RESOURCES);
        store.data_mut().table.set_max_capacity(MAX_RESOURCES);
        store
    }

    /// Writes what the shard printed since the last flush to the frame's log, tagged with the
    /// shard, within its log budget.
    pub fn flush_output(&mut self) {
        let enabled = tracing::enabled!(target: "arkham::shard", tracing::Level::INFO);
        let pipes = [(&self.stdout, "stdout"), (&self.stderr, "stderr")];
        for ((pipe, stream), flushed) in pipes.into_iter().zip(&mut self.flushed) {
            let bytes = pipe.contents();
            let Some(new) = bytes.get(*flushed..).filter(|new| !new.is_empty()) else {
                continue;
            };
            *flushed = bytes.len();
            if !enabled {
                continue;
            }
            for line in String::from_utf8_lossy(new).lines() {
                if self.log.admit(line.len()) {
                    self.log.keep("info", stream, line);
                    tracing::info!(target: "arkham::shard", shard = &*self.shard, stream, "{line}");
                }
            }
        }
        self.log.settle();
    }

    /// Bytes the shard has printed to stdout and stderr in this store's life.
    pub fn output_len(&self) -> usize {
        self.flushed.iter().sum()
    }

    /// Whether the guest still holds host resources (open transactions, streams, bodies).
    pub fn holds_resources(&self) -> bool {
        !self.table.is_empty()
    }

    /// Starts a new header budget, for a reused instance between requests: it holds no
    /// resources then ([`Self::holds_resources`]), so no `fields` of the last request remain.
    pub fn renew_header_budget(&mut self) {
        self.hooks.header_edits = 0;
    }

    pub(crate) fn database(&mut self) -> DatabaseView<'_> {
        DatabaseView {
            ctx: &self.database,
            table: &mut self.table,
        }
    }

    pub(crate) fn events(&mut self) -> EventsView<'_> {
        EventsView {
            ctx: &mut self.events,
        }
    }

    pub(crate) fn storage(&mut self) -> StorageView<'_> {
        StorageView { ctx: &self.storage }
    }

    pub(crate) fn logging(&mut self) -> LoggingView<'_> {
        LoggingView { log: &self.log }
    }
}

impl WasiView for ShardState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_io::IoView for ShardState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiHttpView for ShardState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// `wasi:http` hooks: they refuse outgoing requests (the frame does not link
/// `wasi:http/outgoing-handler` at all; this is the second line) and count header edits
/// against [`MAX_HEADER_EDITS`].
#[derive(Default)]
struct Hooks {
    header_edits: u32,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for Hooks {
    /// Called once for every header a `fields` edit adds, sets or deletes (and for each header
    /// of an incoming request as the host builds it).
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        self.header_edits = self.header_edits.saturating_add(1);
        self.header_edits > MAX_HEADER_EDITS
            || wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
