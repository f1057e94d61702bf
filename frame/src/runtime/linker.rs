//! The linker shared by every shard: exactly the interfaces the frame provides.
//!
//! `wasi:sockets` is linked inert: language runtimes (CPython's libc, for one) import it whether
//! or not the shard uses the network, and every call is refused before the host opens a socket
//! or resolves a name (see `ShardState::new`). Not linked at all, on purpose:
//! `wasi:http/outgoing-handler` (no outgoing requests); a component importing it cannot be
//! instantiated, and the install-time check names the import before that.

use super::store::ShardState;
use crate::services;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
use wasmtime_wasi_http::WasiHttpView;

/// The versions of the `arkham:shard` package the frame links and calls, newest first: the
/// current `wit/`, and the older ones shards may still be built against
/// (`crate::bindings::v0_1`).
pub const ARKHAM_VERSIONS: &[&str] = &["0.2.0", "0.1.0"];

/// The WASI version of the vendored WIT in `wit/deps`.
pub const WASI_VERSION: &str = "0.2.12";

const WASI: &[&str] = &[WASI_VERSION];

/// Every import the frame can satisfy, by name without version, with the versions it provides.
pub const PROVIDED: &[(&str, &[&str])] = &[
    ("arkham:shard/database", ARKHAM_VERSIONS),
    ("arkham:shard/events", ARKHAM_VERSIONS),
    ("arkham:shard/storage", ARKHAM_VERSIONS),
    ("arkham:shard/logging", ARKHAM_VERSIONS),
    ("wasi:io/error", WASI),
    ("wasi:io/poll", WASI),
    ("wasi:io/streams", WASI),
    ("wasi:clocks/monotonic-clock", WASI),
    ("wasi:clocks/wall-clock", WASI),
    ("wasi:random/random", WASI),
    ("wasi:random/insecure", WASI),
    ("wasi:random/insecure-seed", WASI),
    ("wasi:cli/environment", WASI),
    ("wasi:cli/exit", WASI),
    ("wasi:cli/stdin", WASI),
    ("wasi:cli/stdout", WASI),
    ("wasi:cli/stderr", WASI),
    ("wasi:cli/terminal-input", WASI),
    ("wasi:cli/terminal-output", WASI),
    ("wasi:cli/terminal-stdin", WASI),
    ("wasi:cli/terminal-stdout", WASI),
    ("wasi:cli/terminal-stderr", WASI),
    ("wasi:filesystem/types", WASI),
    ("wasi:filesystem/preopens", WASI),
    ("wasi:http/types", WASI),
    ("wasi:sockets/network", WASI),
    ("wasi:sockets/instance-network", WASI),
    ("wasi:sockets/ip-name-lookup", WASI),
    ("wasi:sockets/tcp", WASI),
    ("wasi:sockets/tcp-create-socket", WASI),
    ("wasi:sockets/udp", WASI),
    ("wasi:sockets/udp-create-socket", WASI),
];

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
    let net = ShardState::sockets;
    sockets::network::add_to_linker::<ShardState, WasiSockets>(l, &Default::default(), net)?;
    sockets::instance_network::add_to_linker::<ShardState, WasiSockets>(l, net)?;
    sockets::ip_name_lookup::add_to_linker::<ShardState, WasiSockets>(l, net)?;
    sockets::tcp::add_to_linker::<ShardState, WasiSockets>(l, net)?;
    sockets::tcp_create_socket::add_to_linker::<ShardState, WasiSockets>(l, net)?;
    sockets::udp::add_to_linker::<ShardState, WasiSockets>(l, net)?;
    sockets::udp_create_socket::add_to_linker::<ShardState, WasiSockets>(l, net)?;
    wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<
        ShardState,
        wasmtime_wasi_http::WasiHttp,
    >(l, &Default::default(), ShardState::http)?;
    services::database::add_to_linker(l, ShardState::database)?;
    services::events::add_to_linker(l, ShardState::events)?;
    services::storage::add_to_linker(l, ShardState::storage)?;
    services::logging::add_to_linker(l, ShardState::logging)?;
    crate::bindings::v0_1::add_to_linker(
        l,
        ShardState::database,
        ShardState::events,
        ShardState::storage,
        ShardState::logging,
    )?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versions_are_those_of_the_wit_files() {
        let current = include_str!("../../../wit/world.wit");
        assert!(current.contains(&format!("package arkham:shard@{};", ARKHAM_VERSIONS[0])));
        assert!(current.contains(&format!("import wasi:cli/environment@{WASI_VERSION};")));
        let frozen = include_str!("../../wit/arkham-shard-0.1.0/world.wit");
        assert!(frozen.contains(&format!("package arkham:shard@{};", ARKHAM_VERSIONS[1])));
    }
}
