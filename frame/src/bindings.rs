//! The `bindgen!` for the `arkham:shard/buffered-shard` world: arkham's imports and its two
//! exports (`http-handler`, `event-handler`), at the package's current version; [`v0_1`] has
//! the frozen 0.1.0 package the frame still runs. `wasi:http/incoming-handler`, the `shard` world's
//! export, is loaded through `wasmtime-wasi-http`'s `ProxyIndices`.
//!
//! WASI interfaces come from `wasmtime-wasi` (through `with:`), so only arkham's own interfaces
//! are generated here. Resources map to the host types that back them.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "arkham:shard/buffered-shard",
    imports: { default: async | trappable },
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "arkham:shard/database.transaction": crate::services::database::Transaction,
    },
});

pub use arkham::shard::{database, events, logging, storage};
pub use exports::arkham::shard::{event_handler, http_handler};

pub mod v0_1;
