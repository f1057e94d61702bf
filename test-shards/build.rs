//! Builds every guest shard (the `shards/` workspace and the fixtures in `guests/`) for
//! `wasm32-wasip2` into one target directory, `<root>/target/guests`, and writes `fixtures.rs`
//! with the path constants `src/lib.rs` includes.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const TARGET: &str = "wasm32-wasip2";

/// One guest shard: where its crate lives (relative to the repository root) and what it builds.
struct Guest {
    /// Constant name in `fixtures.rs`.
    constant: &'static str,
    /// The shard's name in its manifest.
    name: &'static str,
    /// The crate directory, holding `shard.toml`.
    dir: &'static str,
    /// The crate's library name, i.e. the component's file stem.
    artifact: &'static str,
    /// The guest workspace it belongs to.
    workspace: &'static str,
    /// One line for the constant's docs.
    doc: &'static str,
}

const WORKSPACES: &[&str] = &["shards", "test-shards/guests"];

const GUESTS: &[Guest] = &[
    Guest {
        constant: "PACKETS",
        name: "packets",
        dir: "shards/packets",
        artifact: "arkham_shard_packets",
        workspace: "shards",
        doc: "The packets shard (`shards/packets`): the first real shard.",
    },
    Guest {
        constant: "RECORDER",
        name: "recorder",
        dir: "test-shards/guests/recorder",
        artifact: "fixture_recorder",
        workspace: "test-shards/guests",
        doc: "Records the `packets.*` events it receives; `PUT /fail` makes deliveries fail.",
    },
    Guest {
        constant: "TRAPPER",
        name: "trapper",
        dir: "test-shards/guests/trapper",
        artifact: "fixture_trapper",
        workspace: "test-shards/guests",
        doc: "Traps, panics and loops on demand; round-trips storage and events.",
    },
    Guest {
        constant: "HOSTILE",
        name: "hostile",
        dir: "test-shards/guests/hostile",
        artifact: "fixture_hostile",
        workspace: "test-shards/guests",
        doc: "Tries every way out of its sandbox: memory bomb, recursion, floods, ATTACH, ...",
    },
    Guest {
        constant: "HOSTILE_EVENTS",
        name: "hostile-events",
        dir: "test-shards/guests/hostile-events",
        artifact: "fixture_hostile_events",
        workspace: "test-shards/guests",
        doc: "Floods the event log, republishes its own events, floods the frame's log.",
    },
    Guest {
        constant: "HOSTILE_STORAGE",
        name: "hostile-storage",
        dir: "test-shards/guests/hostile-storage",
        artifact: "fixture_hostile_storage",
        workspace: "test-shards/guests",
        doc: "Tries to store past its storage quota: huge content types, long segments, entry floods.",
    },
    Guest {
        constant: "NETREACH",
        name: "netreach",
        dir: "test-shards/guests/netreach",
        artifact: "fixture_netreach",
        workspace: "test-shards/guests",
        doc: "Imports `wasi:sockets`, which the frame never links: installing it must fail.",
    },
    Guest {
        constant: "ECHO",
        name: "echo",
        dir: "test-shards/guests/echo",
        artifact: "fixture_echo",
        workspace: "test-shards/guests",
        doc: "Echoes requests and streams large bodies; calls no services.",
    },
    Guest {
        constant: "MINIMAL",
        name: "minimal",
        dir: "test-shards/guests/minimal",
        artifact: "fixture_minimal",
        workspace: "test-shards/guests",
        doc: "Answers 200 `ok` to every request and calls no services; for benchmarks.",
    },
    Guest {
        constant: "MINIMAL_RAW",
        name: "minimal-raw",
        dir: "test-shards/guests/minimal-raw",
        artifact: "fixture_minimal_raw",
        workspace: "test-shards/guests",
        doc: "MINIMAL's handler on plain `wasi:http/proxy` (no SDK): what `wasmtime serve` runs.",
    },
    Guest {
        constant: "STREAMER",
        name: "streamer",
        dir: "test-shards/guests/streamer",
        artifact: "fixture_streamer",
        workspace: "test-shards/guests",
        doc: "Raw `wasi:http` (no SDK): streams, counts its requests, misbehaves on request.",
    },
    Guest {
        constant: "DUAL",
        name: "dual",
        dir: "test-shards/guests/dual",
        artifact: "fixture_dual",
        workspace: "test-shards/guests",
        doc: "Exports both HTTP entry points (no SDK); each answers with its own name.",
    },
    Guest {
        constant: "LEGACY",
        name: "legacy",
        dir: "test-shards/guests/legacy",
        artifact: "fixture_legacy",
        workspace: "test-shards/guests",
        doc: "Built against the frozen `arkham:shard@0.1.0` (no SDK); uses every 0.1.0 interface.",
    },
    Guest {
        constant: "HOSTILE_SQL",
        name: "hostile-sql",
        dir: "test-shards/guests/hostile-sql",
        artifact: "fixture_hostile_sql",
        workspace: "test-shards/guests",
        doc: "Attacks through SQL alone: pointer functions, huge results, TEMP tables, a raw BEGIN.",
    },
    Guest {
        constant: "PUBLISHER",
        name: "publisher",
        dir: "test-shards/guests/publisher",
        artifact: "fixture_publisher",
        workspace: "test-shards/guests",
        doc: "`POST /publish?n=K` publishes K events stamped with their send time (µs); for benchmarks.",
    },
    Guest {
        constant: "SUBSCRIBER",
        name: "subscriber",
        dir: "test-shards/guests/subscriber",
        artifact: "fixture_subscriber",
        workspace: "test-shards/guests",
        doc: "Records the publish-to-delivery latency of publisher's events; `GET /stats`; for benchmarks.",
    },
];

/// Inherited variables that would point a nested cargo at the outer build's target, flags or
/// jobserver, or that only make sense inside this build script.
const REMOVED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_LINKER",
];

const REMOVED_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or("CARGO_MANIFEST_DIR is not set; run this through cargo")?;
    let root = manifest_dir
        .parent()
        .ok_or("test-shards has no parent directory")?
        .to_path_buf();
    let out_dir = env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .ok_or("OUT_DIR is not set; run this through cargo")?;
    let target_dir = root.join("target").join("guests");

    emit_rerun_lines(&root);
    for workspace in WORKSPACES {
        build_workspace(&root, workspace, &target_dir)?;
    }

    let artifacts = target_dir.join(TARGET).join("release");
    let mut fixtures = String::from("// Generated by test-shards/build.rs.\n\n");
    for guest in GUESTS {
        let component = artifacts.join(format!("{}.wasm", guest.artifact));
        if !component.is_file() {
            return Err(format!(
                "building {} produced no component at {}",
                guest.workspace,
                component.display()
            ));
        }
        let manifest = root.join(guest.dir).join("shard.toml");
        let _ = writeln!(
            fixtures,
            "/// {doc}\npub const {constant}: GuestShard = GuestShard {{\n    \
             name: {name:?},\n    manifest: {manifest:?},\n    component: {component:?},\n}};\n",
            doc = guest.doc,
            constant = guest.constant,
            name = guest.name,
            manifest = path_str(&manifest)?,
            component = path_str(&component)?,
        );
    }
    let all: Vec<&str> = GUESTS.iter().map(|guest| guest.constant).collect();
    let _ = writeln!(
        fixtures,
        "/// Every guest shard, packets first.\npub const ALL: &[GuestShard] = &[{}];",
        all.join(", ")
    );
    std::fs::write(out_dir.join("fixtures.rs"), fixtures).map_err(|err| {
        format!(
            "could not write fixtures.rs to {}: {err}",
            out_dir.display()
        )
    })
}

/// Sources only, never a target directory: cargo scans listed directories recursively.
fn emit_rerun_lines(root: &Path) {
    let mut paths: Vec<PathBuf> = vec![
        root.join("wit"),
        root.join("frame/wit"),
        root.join("shards/Cargo.toml"),
        root.join("shards/Cargo.lock"),
        root.join("shards/sdk/Cargo.toml"),
        root.join("shards/sdk/src"),
        root.join("test-shards/guests/Cargo.toml"),
        root.join("test-shards/guests/Cargo.lock"),
    ];
    for guest in GUESTS {
        let dir = root.join(guest.dir);
        paths.push(dir.join("Cargo.toml"));
        paths.push(dir.join("shard.toml"));
        paths.push(dir.join("src"));
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn build_workspace(root: &Path, workspace: &str, target_dir: &Path) -> Result<(), String> {
    let manifest = root.join(workspace).join("Cargo.toml");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root.join(workspace));
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if REMOVED_VARS.contains(&name)
            || REMOVED_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name);
        }
    }
    let output = command.output().map_err(|err| {
        format!(
            "could not run `{} build` for {workspace}: {err}",
            Path::new(&cargo).display()
        )
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "building the guest workspace {workspace} for {TARGET} failed ({status}).\n\
         \n--- cargo stdout ---\n{stdout}\n--- cargo stderr ---\n{stderr}\n\
         hint: if the target is missing, run `rustup target add {TARGET}`; to see the error \
         directly, run `cargo build --release --target {TARGET}` in {dir}",
        status = output.status,
        stdout = String::from_utf8_lossy(&output.stdout),
        stderr = String::from_utf8_lossy(&output.stderr),
        dir = root.join(workspace).display(),
    ))
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("path {} is not UTF-8", path.display()))
}
