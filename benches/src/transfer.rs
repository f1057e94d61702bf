//! (5b) Memory of moving a component: peak RSS of `arkham shard push` and `arkham shard add` for a
//! 1 MiB and a 50 MiB component (the minimal shard padded with a custom section), through a
//! loopback `docker-registry`. Layers and the component checks are streamed (issue 18), and
//! wasmtime gets only what is compiled (no custom sections), so memory grows with a component's
//! code and data, not with its padding.

use crate::Options;
use crate::add::{registry_version, start_registry};
use crate::frame::{self, Env};
use crate::scenarios::median;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs per row (the median is reported).
pub const RUNS: usize = 3;

/// Component sizes measured, MiB.
pub const SIZES_MIB: [u64; 2] = [1, 50];

/// What the scenario measured.
#[derive(Debug, Default, Serialize)]
pub struct Transfer {
    /// One row per command and size.
    pub rows: Vec<TransferRow>,
    /// Peak RSS of `arkham shard list` (the process floor), KiB.
    pub floor_kib: Option<u64>,
    /// `docker-registry --version`.
    pub registry: String,
}

/// One command on one component size.
#[derive(Debug, Serialize)]
pub struct TransferRow {
    /// `push` or `add`.
    pub command: String,
    /// The component's size, bytes.
    pub component_bytes: u64,
    /// Peak RSS of every run, KiB.
    pub runs_kib: Vec<u64>,
    /// Median, KiB.
    pub median_kib: u64,
}

/// Appends a custom section of `name` to `component` so that it is `size` bytes long (the
/// section's own header is counted).
fn pad(mut component: Vec<u8>, size: usize) -> Result<Vec<u8>> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn leb_len(n: usize) -> usize {
        let mut out = Vec::new();
        leb(n, &mut out);
        out.len()
    }
    let name = b"arkham-bench-padding";
    let Some(section) = size.checked_sub(component.len() + 1) else {
        bail!("the component is already {} bytes", component.len());
    };
    // The payload length's own LEB128 length depends on it: try each (at most 5 bytes).
    let Some(payload_len) = (1..=5)
        .filter_map(|l| section.checked_sub(l))
        .find(|&p| leb_len(p) + p == section)
    else {
        bail!("no payload length makes a {size}-byte component");
    };
    let Some(data) = payload_len.checked_sub(leb_len(name.len()) + name.len()) else {
        bail!("the component is already {} bytes", component.len());
    };
    let mut payload = Vec::with_capacity(payload_len);
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.resize(payload.len() + data, 0xa5);
    component.push(0);
    leb(payload.len(), &mut component);
    component.extend_from_slice(&payload);
    Ok(component)
}

/// Peak RSS (KiB) of `arkham ARGS…` in `env`, from GNU time's `%M` (the child's `ru_maxrss`).
fn peak_rss(env: &Env, args: &[&str], registry: &str, out: &Path) -> Result<u64> {
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(out)
        .arg(&env.bin)
        .args(args)
        .env("ARKHAM_DATA_DIR", &env.data)
        .env("ARKHAM_CACHE_DIR", &env.cache)
        .env("ARKHAM_REGISTRY", registry)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("running /usr/bin/time (GNU time; Debian package `time`)")?;
    if !output.status.success() {
        bail!(
            "arkham {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text =
        std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("GNU time wrote {text:?}, not a size in KiB"))
}

/// Runs the scenario.
pub fn run(options: &Options, scratch: &Path) -> Result<Transfer> {
    let root = scratch.join("transfer");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    let root =
        std::fs::canonicalize(&root).with_context(|| format!("resolving {}", root.display()))?;
    let mut transfer = Transfer {
        registry: registry_version()?,
        ..Transfer::default()
    };
    let dir = root.join("registry");
    std::fs::create_dir_all(&dir)?;
    let registry = start_registry(&dir)?;
    let env = |name: &str| -> Result<Env> {
        let env = Env {
            bin: options.arkham.clone(),
            data: root.join(name).join("data"),
            cache: root.join(name).join("cache"),
        };
        std::fs::create_dir_all(&env.data)?;
        std::fs::create_dir_all(&env.cache)?;
        Ok(env)
    };
    let time_file = root.join("time.txt");
    let mut floor = Vec::new();
    for size in SIZES_MIB {
        let name = format!("pad{size}");
        let file = frame::package(&test_shards::MINIMAL, &name, &root)?;
        let padded = pad(std::fs::read(&file)?, usize::try_from(size << 20)?)?;
        std::fs::write(&file, &padded)?;
        let file_arg = file.display().to_string();
        let mut push = Vec::new();
        let mut add = Vec::new();
        for run in 0..RUNS {
            eprintln!(
                "[bench]   {size} MiB, run {}/{RUNS}: shard push, shard add",
                run + 1
            );
            // A repository per run: the registry would otherwise already hold the layer.
            let repository = format!("run{run}/{name}");
            let publisher = env(&format!("push-{size}-{run}"))?;
            push.push(peak_rss(
                &publisher,
                &["shard", "push", &file_arg, &repository],
                &registry.host,
                &time_file,
            )?);
            let adder = env(&format!("add-{size}-{run}"))?;
            add.push(peak_rss(
                &adder,
                &["shard", "add", &format!("{repository}@0.1"), "--yes"],
                &registry.host,
                &time_file,
            )?);
            floor.push(peak_rss(
                &adder,
                &["shard", "list"],
                &registry.host,
                &time_file,
            )?);
            // The runs' data dirs hold the component twice over; 50 MiB each adds up.
            std::fs::remove_dir_all(root.join(format!("push-{size}-{run}")))?;
            std::fs::remove_dir_all(root.join(format!("add-{size}-{run}")))?;
        }
        for (command, runs) in [("push", push), ("add", add)] {
            transfer.rows.push(TransferRow {
                command: command.to_string(),
                component_bytes: padded.len() as u64,
                median_kib: median(runs.iter().map(|&k| k as f64).collect()) as u64,
                runs_kib: runs,
            });
        }
    }
    transfer.floor_kib = Some(median(floor.iter().map(|&k| k as f64).collect()) as u64);
    drop(registry);
    let _ = std::fs::remove_dir_all(&root);
    Ok(transfer)
}

#[cfg(test)]
mod tests {
    #[test]
    fn padding_makes_a_component_of_the_size_asked_that_still_parses() {
        let component = std::fs::read(test_shards::MINIMAL.component).unwrap();
        let padded = super::pad(component.clone(), 1 << 20).unwrap();
        assert_eq!(padded.len(), 1 << 20);
        assert_eq!(&padded[..component.len()], &component[..]);
        let mut customs = 0;
        for payload in wasmparser::Parser::new(0).parse_all(&padded) {
            if let wasmparser::Payload::CustomSection(c) = payload.unwrap()
                && c.name() == "arkham-bench-padding"
            {
                customs += 1;
            }
        }
        assert_eq!(customs, 1);
    }
}
