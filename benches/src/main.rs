//! `arkham-bench`: the frame measured against native axum, `wasmtime serve` and itself.
//!
//! Run it through `scripts/bench`, which installs `wrk`, builds everything in release and writes
//! `BENCHMARKS.md`. Directly:
//!
//! ```sh
//! cargo build --release -p arkham-frame -p arkham-bench
//! target/release/arkham-bench --runs 3 --seconds 10 --out target/bench
//! ```
//!
//! It prints a markdown report on stdout and writes `results.json` and `report.md` to `--out`.
//! It exits non-zero only when a scenario could not be measured, never because a target was
//! missed.

mod add;
mod cluster;
mod engines;
mod events;
mod frame;
mod instantiate;
mod instructions;
mod languages;
mod native;
mod native_events;
mod native_jetstream;
mod native_objects;
mod report;
mod scale;
mod scenarios;
mod sections;
mod transfer;
mod wrk;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs per HTTP row (the median is reported).
    pub runs: usize,
    /// `wrk -d` seconds.
    pub seconds: u32,
    /// Output directory (results.json, report.md, scratch data).
    pub out: PathBuf,
    /// The `arkham` binary (default: next to this one).
    pub arkham: PathBuf,
    /// The `wasmtime` CLI for the peer row, if any.
    pub wasmtime: Option<PathBuf>,
    /// Iterations of the instantiation micro benchmark.
    pub iterations: usize,
    /// Record a `perf` profile of the frame under load.
    pub perf: bool,
    /// Scenarios to run (minimal, instructions, packets, instantiation, cold, add, transfer, events, memory,
    /// engines, languages, scale, cluster);
    /// empty = all.
    pub only: Vec<String>,
    /// The largest installed-shard count of the scale scenario (1, 10, 100, 1000 up to it).
    pub scale_max: usize,
}

impl Options {
    /// Whether the scenario `name` is to run.
    pub fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

fn options() -> Result<Options> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut options = Options {
        runs: 3,
        seconds: 10,
        out: PathBuf::from("target/bench"),
        arkham: exe.with_file_name("arkham"),
        wasmtime: None,
        iterations: 3000,
        perf: false,
        only: Vec::new(),
        scale_max: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => options.runs = value()?.parse().context("--runs")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--out" => options.out = value()?.into(),
            "--arkham" => options.arkham = value()?.into(),
            "--wasmtime" => options.wasmtime = Some(value()?.into()),
            "--iterations" => options.iterations = value()?.parse().context("--iterations")?,
            "--perf" => options.perf = true,
            "--only" => options.only = value()?.split(',').map(str::to_string).collect(),
            "--scale-max" => options.scale_max = value()?.parse().context("--scale-max")?,
            "-h" | "--help" => {
                println!(
                    "usage: arkham-bench [--runs N] [--seconds S] [--out DIR] [--arkham BIN] \
                     [--wasmtime BIN] [--iterations N] [--perf] [--scale-max N] \
                     [--only minimal,instructions,packets,instantiation,cold,add,transfer,events,memory,engines,\
                     languages,scale,cluster]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    const SCENARIOS: &[&str] = &[
        "minimal",
        "instructions",
        "packets",
        "instantiation",
        "cold",
        "add",
        "transfer",
        "events",
        "memory",
        "engines",
        "languages",
        "scale",
        "cluster",
    ];
    if let Some(unknown) = options
        .only
        .iter()
        .find(|o| !SCENARIOS.contains(&o.as_str()))
    {
        bail!(
            "--only: unknown scenario {unknown:?}; known: {}",
            SCENARIOS.join(",")
        );
    }
    if options.runs == 0
        || options.seconds == 0
        || options.iterations == 0
        || options.scale_max == 0
    {
        bail!("--runs, --seconds, --iterations and --scale-max must be positive");
    }
    if !options.arkham.is_file() {
        bail!(
            "no arkham binary at {}; build it with `cargo build --release -p arkham-frame` or pass --arkham",
            options.arkham.display()
        );
    }
    Ok(options)
}

fn main() -> ExitCode {
    // Not for users: the native server of the instruction counts, in a process of its own.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--serve-native-minimal") {
        let served = args
            .next()
            .context("--serve-native-minimal needs a port")
            .and_then(|p| p.parse::<u16>().context("--serve-native-minimal: port"))
            .and_then(native::serve_minimal_on);
        if let Err(e) = served {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(true) when every scenario was measured.
fn run() -> Result<bool> {
    let options = options()?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let results = scenarios::all(&options)?;
    let markdown = report::markdown(&results, &options);
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(options.out.join("report.md"), &markdown)?;
    std::fs::write(options.out.join("results.json"), &json)?;
    println!("{markdown}");
    println!("```json\n{json}\n```");
    let missing = results.unmeasured();
    for what in &missing {
        eprintln!("not measured: {what}");
    }
    Ok(missing.is_empty())
}
