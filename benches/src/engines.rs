//! The engines scenario (issue 12, section 5): the frame on PostgreSQL and NATS JetStream against
//! native `axum` + `sqlx` + `async-nats` servers on the same engines, in the same run.
//!
//! - packets create+get (the packets scenario's load and Lua) with `[database] backend =
//!   "postgres"`, `[events]` and `[storage] backend = "nats"`; the native server inserts, gets and
//!   publishes `packets.packet.created` with its PubAck awaited, as the frame does per create;
//! - events publish → delivery on JetStream, 1 and 3 subscribers: [`events::run_on`] with
//!   [`Backend::JetStream`];
//! - storage put/get of 4 KiB and 1 MiB objects through the `trapper` fixture on the object
//!   store, against [`crate::native_objects`].
//!
//! The engines are throw-away servers of `test_shards::engines`: one durable PostgreSQL cluster
//! (fsync on) and a NATS server per part (per pipeline for events). A part whose engine is missing
//! records why in the suite's errors; the others run.

use crate::Options;
use crate::events::{self, Backend, Events};
use crate::native;
use crate::native_objects;
use crate::scenarios::{HttpRow, PACKETS_LUA, Target, frame_env};
use crate::wrk::Load;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;
use test_shards::engines::{Nats, Postgres};

/// The ratio of frame to native throughput the issue asks for.
pub const TARGET_RATIO: f64 = 0.7;

/// Keys each `wrk` thread cycles through in the storage rows: more than the requests one thread
/// has in flight, so a GET never races the PUT of its own key, and few enough that the bytes
/// stored stay far below the quota.
pub const KEYS_PER_THREAD: usize = 64;

/// The object sizes of the storage rows.
pub const OBJECT_SIZES: [usize; 2] = [4 << 10, 1 << 20];

/// What the engines scenario measured.
#[derive(Debug, Default, Serialize)]
pub struct Engines {
    /// Packets create+get: the frame on PostgreSQL + JetStream, native axum+sqlx on the same
    /// PostgreSQL with a JetStream publish per create.
    pub packets: Vec<HttpRow>,
    /// Events publish → delivery on JetStream.
    pub events: Option<Events>,
    /// Storage put/get, one entry per object size.
    pub storage: Vec<ObjectRows>,
    /// The frame's arkham.toml of each part (URLs with their throw-away passwords elided).
    pub configs: Vec<String>,
}

/// `4 KiB`, `1 MiB`.
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// The storage rows of one object size.
#[derive(Debug, Serialize)]
pub struct ObjectRows {
    /// Object size, bytes.
    pub bytes: usize,
    /// The Lua script (alternating PUT and GET over [`KEYS_PER_THREAD`] keys per thread).
    pub script: String,
    /// The frame's row, then the native one.
    pub rows: Vec<HttpRow>,
}

/// The frame's row name in each part, and the native one.
pub const FRAME: &str = "frame";
/// See [`FRAME`].
pub const NATIVE_PACKETS: &str = "native axum+sqlx+async-nats";
/// See [`FRAME`].
pub const NATIVE_OBJECTS: &str = "native axum+async-nats object store";

/// Runs the three parts; each failure lands in `errors` and the next part runs.
pub fn run(options: &Options, scratch: &Path, load: Load, errors: &mut Vec<String>) -> Engines {
    let mut engines = Engines::default();
    eprintln!("[bench]   engines: packets on PostgreSQL + JetStream");
    if let Err(e) = packets(options, scratch, load, &mut engines) {
        errors.push(format!("engines, packets: {e:#}"));
    }
    eprintln!("[bench]   engines: events on JetStream");
    match events::run_on(options, scratch, load, Backend::JetStream) {
        Ok(events) => engines.events = Some(events),
        Err(e) => errors.push(format!("engines, events: {e:#}")),
    }
    eprintln!("[bench]   engines: storage on the NATS object store");
    if let Err(e) = storage(options, scratch, load, &mut engines) {
        errors.push(format!("engines, storage: {e:#}"));
    }
    engines
}

/// Runs `start`, which returns `None` when the engine is not installed and panics when it does
/// not start (test code); both become errors, so the suite goes on.
fn engine<T>(what: &str, start: impl FnOnce() -> Option<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(start))
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            anyhow::anyhow!("{what} did not start: {why}")
        })?
        .with_context(|| format!("{what} is not installed (`scripts/setup --test` installs it)"))
}

/// `postgres://user:password@host…` with the password elided, for the report.
fn elide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:…{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Writes the frame's arkham.toml into `data` and keeps a copy (password elided) for the report.
fn write_config(
    data: &Path,
    toml: &str,
    secret: Option<&str>,
    configs: &mut Vec<String>,
) -> Result<()> {
    std::fs::write(data.join("arkham.toml"), toml)
        .with_context(|| format!("writing {}", data.join("arkham.toml").display()))?;
    let shown = match secret {
        Some(url) => toml.replace(url, &elide_password(url)),
        None => toml.to_string(),
    };
    configs.push(shown);
    Ok(())
}

/// A row that was not measured, with the command it would have run.
fn unmeasured(name: &str, command: String, why: &anyhow::Error) -> HttpRow {
    HttpRow {
        target: name.into(),
        command,
        runs: Vec::new(),
        median: None,
        cpu_us_per_request: None,
        switches_per_request: None,
        note: Some(format!("not measured: {why:#}")),
    }
}

/// Measures `targets` (each a name, a server's URL or why it has none), frame first; `path` is
/// the URL's path, for the commands of rows that have no server.
fn measure_or_note(
    targets: Vec<(&'static str, Result<(String, u32)>)>,
    path: &str,
    load: Load,
    script: &Path,
    script_name: &str,
    runs: usize,
) -> Vec<HttpRow> {
    let mut ready = Vec::new();
    let mut missing = Vec::new();
    for (name, target) in targets {
        match target {
            Ok((url, pid)) => ready.push(Target { name, url, pid }),
            Err(e) => missing.push(unmeasured(
                name,
                load.command(&format!("http://127.0.0.1:PORT{path}"), Some(script_name)),
                &e,
            )),
        }
    }
    let mut rows = crate::scenarios::measure(&ready, load, Some(script), runs, Some(script_name));
    rows.append(&mut missing);
    // The frame first, whichever failed.
    rows.sort_by_key(|r| r.target != FRAME);
    rows
}

fn packets(options: &Options, scratch: &Path, load: Load, engines: &mut Engines) -> Result<()> {
    let postgres = engine("PostgreSQL", || Postgres::start_owned(true))?;
    let nats = engine("nats-server", Nats::start)?;
    let env = frame_env(
        options,
        scratch,
        "engines-packets",
        &[(&test_shards::PACKETS, "packets".into())],
    )?;
    let frame_db = engine("a PostgreSQL database", || {
        Some(postgres.database("frame_packets"))
    })?;
    let native_db = engine("a PostgreSQL database", || {
        Some(postgres.database("native_packets"))
    })?;
    let toml = format!(
        "[database]\nbackend = \"postgres\"\nurl = \"{frame_db}\"\n\n[events]\nbackend = \"nats\"\n\n\
         [storage]\nbackend = \"nats\"\n\n[nats]\nurl = \"{}\"\n",
        nats.url()
    );
    write_config(&env.data, &toml, Some(&frame_db), &mut engines.configs)?;
    let served = env.serve().and_then(|served| {
        served.until_ok("/api/packets/health", Duration::from_secs(60))?;
        Ok(served)
    });
    let native = native::packets_on_engines(&native_db, &nats.url());
    let script = options.out.join("packets.lua");
    std::fs::write(&script, PACKETS_LUA)?;
    let path = "/api/packets/";
    let url = |base: &str| format!("{base}{path}");
    let self_pid = std::process::id();
    engines.packets = measure_or_note(
        vec![
            (
                FRAME,
                served
                    .as_ref()
                    .map(|s| (url(&s.base), s.pid()))
                    .map_err(|e| anyhow::anyhow!("{e:#}")),
            ),
            (
                NATIVE_PACKETS,
                native
                    .as_ref()
                    .map(|n| (url(&n.base), self_pid))
                    .map_err(|e| anyhow::anyhow!("{e:#}")),
            ),
        ],
        path,
        load,
        &script,
        "target/bench/packets.lua",
        options.runs,
    );
    if let Ok(native) = native {
        native.stop();
    }
    Ok(())
}

/// The storage rows' Lua: per thread, PUT an object of `bytes` under one of its keys, then GET
/// it back, cycling through [`KEYS_PER_THREAD`] keys.
pub fn storage_lua(bytes: usize) -> String {
    format!(
        r#"-- PUT {bytes} bytes under one of this thread's {KEYS_PER_THREAD} keys, then GET it back.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local body = string.rep("x", {bytes})
local n = 0
request = function()
  n = n + 1
  local key = "bench/" .. (id or 0) .. "/" .. (math.floor((n - 1) / 2) % {KEYS_PER_THREAD})
  if n % 2 == 1 then
    return wrk.format("PUT", "/api/trapper/blob/" .. key, {{["Content-Type"] = "application/octet-stream"}}, body)
  end
  return wrk.format("GET", "/api/trapper/blob/" .. key)
end
"#
    )
}

fn storage(options: &Options, scratch: &Path, load: Load, engines: &mut Engines) -> Result<()> {
    let nats = engine("nats-server", Nats::start)?;
    let env = frame_env(
        options,
        scratch,
        "engines-storage",
        &[(&test_shards::TRAPPER, "trapper".into())],
    )?;
    // 2 threads × 64 keys × 1 MiB stay under 128 MiB; the quota is raised well past it so that
    // only the engine bounds the rows.
    let toml = format!(
        "[storage]\nbackend = \"nats\"\nmax_total_bytes = {}\n\n[nats]\nurl = \"{}\"\n",
        4u64 << 30,
        nats.url()
    );
    write_config(&env.data, &toml, None, &mut engines.configs)?;
    let served = env.serve().and_then(|served| {
        served.until_ok("/api/trapper/ok", Duration::from_secs(60))?;
        Ok(served)
    });
    let native = native_objects::start(&nats.url());
    for bytes in OBJECT_SIZES {
        let name = format!("storage-{}k.lua", bytes >> 10);
        let script = options.out.join(&name);
        let lua = storage_lua(bytes);
        std::fs::write(&script, &lua)?;
        let path = "/api/trapper/";
        let url = |base: &str| format!("{base}{path}");
        let rows = measure_or_note(
            vec![
                (
                    FRAME,
                    served
                        .as_ref()
                        .map(|s| (url(&s.base), s.pid()))
                        .map_err(|e| anyhow::anyhow!("{e:#}")),
                ),
                (
                    NATIVE_OBJECTS,
                    native
                        .as_ref()
                        .map(|n| (url(&n.base), std::process::id()))
                        .map_err(|e| anyhow::anyhow!("{e:#}")),
                ),
            ],
            path,
            load,
            &script,
            &format!("target/bench/{name}"),
            options.runs,
        );
        engines.storage.push(ObjectRows {
            bytes,
            script: lua,
            rows,
        });
    }
    if let Ok(native) = native {
        native.stop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_elided_from_the_report() {
        assert_eq!(
            elide_password("postgres://admin:s3cret@127.0.0.1:5432/db"),
            "postgres://admin:…@127.0.0.1:5432/db"
        );
        assert_eq!(
            elide_password("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }

    #[test]
    fn the_storage_script_alternates_put_and_get_over_bounded_keys() {
        let lua = storage_lua(4096);
        assert!(lua.contains("string.rep(\"x\", 4096)"));
        assert!(lua.contains("% 64"));
        assert!(lua.contains("\"PUT\"") && lua.contains("\"GET\""));
    }
}
