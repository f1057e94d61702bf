//! The linker shared by every shard: exactly the interfaces the frame provides.
//!
//! Not linked, on purpose: `wasi:sockets` (no network), `wasi:http/outgoing-handler` (no
//! outgoing requests). A component importing them cannot be instantiated, and the install-time
//! check names such imports before that.

use super::store::ShardState;
use crate::services;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi_http::WasiHttpView;

/// Every import the frame can satisfy, by name without version, with the version it provides.
pub const PROVIDED: &[(&str, &str)] = &[
    ("arkham:shard/database", "0.1.0"),
    ("arkham:shard/events", "0.1.0"),
    ("arkham:shard/storage", "0.1.0"),
    ("arkham:shard/logging", "0.1.0"),
    ("wasi:io/error", WASI_VERSION),
    ("wasi:io/poll", WASI_VERSION),
    ("wasi:io/streams", WASI_VERSION),
    ("wasi:clocks/monotonic-clock", WASI_VERSION),
    ("wasi:clocks/wall-clock", WASI_VERSION),
    ("wasi:random/random", WASI_VERSION),
    ("wasi:random/insecure", WASI_VERSION),
    ("wasi:random/insecure-seed", WASI_VERSION),
    ("wasi:cli/environment", WASI_VERSION),
    ("wasi:cli/exit", WASI_VERSION),
    ("wasi:cli/stdin", WASI_VERSION),
    ("wasi:cli/stdout", WASI_VERSION),
    ("wasi:cli/stderr", WASI_VERSION),
    ("wasi:cli/terminal-input", WASI_VERSION),
    ("wasi:cli/terminal-output", WASI_VERSION),
    ("wasi:cli/terminal-stdin", WASI_VERSION),
    ("wasi:cli/terminal-stdout", WASI_VERSION),
    ("wasi:cli/terminal-stderr", WASI_VERSION),
    ("wasi:filesystem/types", WASI_VERSION),
    ("wasi:filesystem/preopens", WASI_VERSION),
    ("wasi:http/types", WASI_VERSION),
];

/// The WASI version of the vendored WIT in `wit/deps`.
pub const WASI_VERSION: &str = "0.2.12";

/// Builds the linker every shard instance is created from.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<ShardState>> {
    let mut linker = Linker::new(engine);
    let l = &mut linker;
    wasmtime_wasi_io::add_to_linker_async(l)?;
    clocks::wall_clock::add_to_linker::<ShardState, WasiClocks>(l, ShardState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<ShardState, WasiClocks>(l, ShardState::clocks)?;
    random::random::add_to_linker::<ShardState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<ShardState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<ShardState, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::environment::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::stdin::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::stdout::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::stderr::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::terminal_input::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::terminal_output::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::terminal_stdin::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::terminal_stdout::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    cli::terminal_stderr::add_to_linker::<ShardState, WasiCli>(l, ShardState::cli)?;
    filesystem::types::add_to_linker::<ShardState, WasiFilesystem>(l, ShardState::filesystem)?;
    filesystem::preopens::add_to_linker::<ShardState, WasiFilesystem>(l, ShardState::filesystem)?;
    wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<
        ShardState,
        wasmtime_wasi_http::WasiHttp,
    >(l, &Default::default(), ShardState::http)?;
    services::database::add_to_linker(l, ShardState::database)?;
    services::events::add_to_linker(l, ShardState::events)?;
    services::storage::add_to_linker(l, ShardState::storage)?;
    services::logging::add_to_linker(l, ShardState::logging)?;
    Ok(linker)
}
