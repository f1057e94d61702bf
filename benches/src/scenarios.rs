//! The scenarios, each measured into [`Results`]; a scenario that cannot run records why and
//! the others go on.

use crate::Options;
use crate::add::{self, Add};
use crate::engines::{self, Engines};
use crate::events::{self, Events};
use crate::frame::{self, Env, Served};
use crate::instantiate::{self, Instantiation};
use crate::languages::{self, Languages};
use crate::native;
use crate::wrk::{self, Load, WrkResult};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Everything one run of the suite measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// (1) + (2): the minimal shard through the frame, native axum, `wasmtime serve`.
    pub minimal: Vec<HttpRow>,
    /// (1b): instructions per request under callgrind.
    pub instructions: Option<crate::instructions::Instructions>,
    /// (3): packets create+get through the frame and native axum+sqlx.
    pub packets: Vec<HttpRow>,
    /// (4): pooling as the frame has it, on-demand, pooling tuned.
    pub instantiation: Option<[Instantiation; 3]>,
    /// (5): cold start.
    pub cold_start: Vec<ColdStart>,
    /// (5): `arkham shard add` from a loopback registry and its baselines.
    pub add: Option<Add>,
    /// (5b): peak RSS of `shard push` / `shard add` for a 1 MiB and a 50 MiB component.
    pub transfer: Option<crate::transfer::Transfer>,
    /// (6): events, publish to delivery.
    pub events: Option<Events>,
    /// (7): memory.
    pub memory: Option<Memory>,
    /// (8): the frame on PostgreSQL and NATS JetStream against native servers on them.
    pub engines: Option<Engines>,
    /// (9): the `hello` template in Rust, Python and JavaScript.
    pub languages: Option<Languages>,
    /// (10): how cost grows with installed shards, subscribers and body size.
    pub scale: Option<crate::scale::Scale>,
    /// (11) Several frames behind a balancer.
    pub cluster: Option<crate::cluster::Cluster>,
    /// `perf` profile of the frame serving the minimal shard.
    pub profile: Option<Profile>,
    /// What could not be measured, and why.
    pub errors: Vec<String>,
    /// The wrk load of the HTTP rows.
    pub load: String,
}

impl Results {
    /// Scenarios that could not be measured.
    pub fn unmeasured(&self) -> Vec<String> {
        let mut missing = self.errors.clone();
        let languages = self
            .languages
            .iter()
            .flat_map(|l| l.route.iter().chain(&l.handler));
        for row in self.minimal.iter().chain(&self.packets).chain(languages) {
            if row.median.is_none() {
                missing.push(format!(
                    "{}: {}",
                    row.target,
                    row.note.as_deref().unwrap_or("no result")
                ));
            }
        }
        let unmeasured_events = |what: &str, events: &Events, missing: &mut Vec<String>| {
            for row in &events.publish {
                if row.median.is_none() {
                    missing.push(format!(
                        "{what}, {}: {}",
                        row.target,
                        row.note.as_deref().unwrap_or("no result")
                    ));
                }
            }
            for row in &events.delivery {
                if row.median.is_none() {
                    missing.push(format!(
                        "{what}, {} with {} subscriber(s), {:?}: {}",
                        row.pipeline,
                        row.subscribers,
                        row.mode,
                        row.note.as_deref().unwrap_or("no result")
                    ));
                }
            }
        };
        if let Some(events) = &self.events {
            unmeasured_events("events", events, &mut missing);
        }
        for row in self.instructions.iter().flat_map(|i| &i.rows) {
            if row.per_request.is_none() {
                missing.push(format!(
                    "instructions, {}: {}",
                    row.target,
                    row.note.as_deref().unwrap_or("no result")
                ));
            }
        }
        if let Some(engines) = &self.engines {
            let storage = engines.storage.iter().flat_map(|s| {
                s.rows.iter().map(move |r| {
                    (
                        format!("engines, storage {}", engines::size_label(s.bytes)),
                        r,
                    )
                })
            });
            let packets = engines
                .packets
                .iter()
                .map(|r| ("engines, packets".to_string(), r));
            for (what, row) in packets.chain(storage) {
                if row.median.is_none() {
                    missing.push(format!(
                        "{what}, {}: {}",
                        row.target,
                        row.note.as_deref().unwrap_or("no result")
                    ));
                }
            }
            if let Some(events) = &engines.events {
                unmeasured_events("engines, events on JetStream", events, &mut missing);
            }
        }
        if let Some(scale) = &self.scale {
            let shards = scale.shards.iter().flat_map(|p| {
                [&p.one, &p.spread]
                    .map(|row| (format!("scale, {} shards, {}", p.shards, row.target), row))
            });
            let bodies = scale.bodies.iter().flat_map(|p| {
                p.rows.iter().map(|row| {
                    let size = crate::scale::size_label(p.bytes);
                    (format!("scale, {size} bodies, {}", row.target), row)
                })
            });
            for (what, row) in shards.chain(bodies) {
                if row.median.is_none() {
                    missing.push(format!(
                        "{what}: {}",
                        row.note.as_deref().unwrap_or("no result")
                    ));
                }
            }
            for p in &scale.subscribers {
                for row in [&p.burst, &p.paced] {
                    if row.median.is_none() {
                        missing.push(format!(
                            "scale, {} subscribers, {:?}: {}",
                            p.subscribers,
                            row.mode,
                            row.note.as_deref().unwrap_or("no result")
                        ));
                    }
                }
            }
        }
        if let Some(add) = &self.add {
            for row in &add.rows {
                if row.median_ms.is_none() {
                    missing.push(format!(
                        "shard add, {}: {}",
                        row.name,
                        row.note.as_deref().unwrap_or("no result")
                    ));
                }
            }
        }
        missing
    }
}

/// The machine the figures come from.
#[derive(Debug, Default, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average when the suite started (other work on the machine).
    pub load_average: String,
}

/// One HTTP target under one load.
#[derive(Debug, Serialize)]
pub struct HttpRow {
    /// "frame", "native axum", "wasmtime serve".
    pub target: String,
    /// The command that reproduces the row (against a server started as described).
    pub command: String,
    /// Every run.
    pub runs: Vec<WrkResult>,
    /// Per-field medians of the runs.
    pub median: Option<WrkResult>,
    /// CPU time the server process spent per request (user + system), µs, median.
    pub cpu_us_per_request: Option<f64>,
    /// Context switches of the server's threads per request, median: voluntary (a thread
    /// waited: parking, a lock, a hand-off to another thread) and involuntary (preempted).
    pub switches_per_request: Option<Switches>,
    /// Why it is missing, or a remark.
    pub note: Option<String>,
}

/// Context switches per request, by kind (see [`HttpRow::switches_per_request`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Switches {
    /// The thread gave up its CPU: it waited for something.
    pub voluntary: f64,
    /// The thread was preempted (here: mostly by the load generator, which shares the cores).
    pub involuntary: f64,
}

/// Context switches of every thread of `pid` so far: (voluntary, involuntary), from
/// `/proc/PID/task/*/status` (no perf counters needed; threads that ended are not counted).
pub(crate) fn switches(pid: u32) -> Option<(u64, u64)> {
    let mut total = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            let count = |prefix: &str| line.strip_prefix(prefix)?.trim().parse::<u64>().ok();
            if let Some(n) = count("voluntary_ctxt_switches:") {
                total.0 += n;
            } else if let Some(n) = count("nonvoluntary_ctxt_switches:") {
                total.1 += n;
            }
        }
    }
    Some(total)
}

/// Process start to the first 200.
#[derive(Debug, Serialize)]
pub struct ColdStart {
    /// Installed shards.
    pub shards: usize,
    /// Whether `ARKHAM_CACHE_DIR` held the compiled components.
    pub cached: bool,
    /// Spawn to "listening on", ms, median.
    pub listening_ms: f64,
    /// Spawn to the first 200 from a shard, ms, median.
    pub first_200_ms: f64,
    /// Every run's first-200 time, ms.
    pub runs_ms: Vec<f64>,
    /// VmRSS one second after the first 200 (cached runs only), MiB, median.
    pub idle_rss_mib: Option<f64>,
}

/// Memory under concurrency.
#[derive(Debug, Serialize)]
pub struct Memory {
    /// Connections, each with one request in flight.
    pub in_flight: u32,
    /// VmRSS before the load, MiB.
    pub idle_rss_mib: f64,
    /// Peak VmRSS during the load, MiB.
    pub peak_rss_mib: f64,
    /// (peak - idle) / in_flight, KiB.
    pub added_kib_per_request: f64,
    /// How the load was made.
    pub command: String,
}

/// Where the frame's CPU goes while serving the minimal shard.
#[derive(Debug, Serialize)]
pub struct Profile {
    /// `perf report --sort dso`.
    pub by_dso: String,
    /// `perf report --sort symbol`.
    pub by_symbol: String,
    /// `perf report --children --sort symbol`, the frames that explain the time (pool reset,
    /// page faults, TCP, the guest's handler), inclusive.
    pub inclusive: String,
    /// How it was recorded.
    pub command: String,
}

/// Runs every scenario.
pub fn all(options: &Options) -> Result<Results> {
    let scratch = options.out.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let load = Load {
        threads: 2,
        connections: 32,
        seconds: options.seconds,
    };
    let mut results = Results {
        machine: machine(),
        load: load.command("URL", None),
        ..Results::default()
    };
    eprintln!("[bench] (1)+(2) minimal shard: frame vs native axum vs wasmtime serve");
    if options.runs("minimal")
        && let Err(e) = minimal(options, &scratch, load, &mut results)
    {
        results.errors.push(format!("minimal shard: {e:#}"));
    }
    eprintln!("[bench] (1b) instructions per request (callgrind)");
    if options.runs("instructions") {
        match crate::instructions::run(options, &scratch) {
            Ok(counted) => results.instructions = Some(counted),
            Err(e) => results.errors.push(format!("instructions: {e:#}")),
        }
    }
    eprintln!("[bench] (3) packets create+get: frame vs native axum+sqlx");
    if options.runs("packets")
        && let Err(e) = packets(options, &scratch, load, &mut results)
    {
        results.errors.push(format!("packets: {e:#}"));
    }
    eprintln!("[bench] (4) instantiation: pooling vs on-demand");
    if options.runs("instantiation") {
        let read = |shard: &test_shards::GuestShard| {
            std::fs::read(shard.component).with_context(|| format!("reading {}", shard.component))
        };
        match read(&test_shards::MINIMAL)
            .and_then(|sdk| Ok((sdk, read(&test_shards::MINIMAL_RAW)?)))
            .and_then(|(sdk, raw)| instantiate::run(&sdk, &raw, options.iterations))
        {
            Ok(all) => results.instantiation = Some(all),
            Err(e) => results.errors.push(format!("instantiation: {e:#}")),
        }
    }
    eprintln!("[bench] (5) cold start: 1 and 10 shards, with and without the compiled cache");
    if options.runs("cold")
        && let Err(e) = cold_start(options, &scratch, &mut results)
    {
        results.errors.push(format!("cold start: {e:#}"));
    }
    eprintln!("[bench] (5) arkham shard add: loopback registry vs OCI layout vs file");
    if options.runs("add") {
        match add::run(options, &scratch) {
            Ok(add) => results.add = Some(add),
            Err(e) => results.errors.push(format!("shard add: {e:#}")),
        }
    }
    eprintln!("[bench] (5b) peak RSS of shard push / shard add, 1 MiB and 50 MiB components");
    if options.runs("transfer") {
        match crate::transfer::run(options, &scratch) {
            Ok(transfer) => results.transfer = Some(transfer),
            Err(e) => results.errors.push(format!("transfer: {e:#}")),
        }
    }
    eprintln!("[bench] (6) events: publish to delivery, 1 and 3 subscribers");
    if options.runs("events") {
        match events::run(options, &scratch, load) {
            Ok(events) => results.events = Some(events),
            Err(e) => results.errors.push(format!("events: {e:#}")),
        }
    }
    eprintln!("[bench] (7) memory: RSS per in-flight request at 256 concurrency");
    if options.runs("memory") {
        match memory(options, &scratch) {
            Ok(memory) => results.memory = Some(memory),
            Err(e) => results.errors.push(format!("memory: {e:#}")),
        }
    }
    eprintln!("[bench] (8) engines: PostgreSQL + NATS JetStream, frame vs native");
    if options.runs("engines") {
        results.engines = Some(engines::run(options, &scratch, load, &mut results.errors));
    }
    eprintln!("[bench] (9) languages: the hello template in Rust, Python, JavaScript");
    if options.runs("languages") {
        match languages::run(options, &scratch, load) {
            Ok(languages) => results.languages = Some(languages),
            Err(e) => results.errors.push(format!("languages: {e:#}")),
        }
    }
    eprintln!("[bench] (10) scale: installed shards, subscribers, body size");
    if options.runs("scale") {
        results.scale = Some(crate::scale::run(options, &scratch, &mut results.errors));
    }
    eprintln!("[bench] (11) several frames behind HAProxy");
    if options.runs("cluster") {
        results.cluster = Some(crate::cluster::run(options, &scratch, &mut results.errors));
    }
    Ok(results)
}

fn machine() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory_mib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib / 1024)
        .unwrap_or(0);
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        memory_mib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        load_average: read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A frame on a fresh data dir with `shards` installed (each packaged under its own name).
pub(crate) fn frame_env(
    options: &Options,
    scratch: &Path,
    label: &str,
    shards: &[(&test_shards::GuestShard, String)],
) -> Result<Env> {
    let root = scratch.join(label);
    let env = Env {
        bin: options.arkham.clone(),
        data: root.join("data"),
        cache: root.join("cache"),
    };
    std::fs::create_dir_all(&env.data)?;
    std::fs::create_dir_all(&env.cache)?;
    let files = shards
        .iter()
        .map(|(guest, name)| frame::package(guest, name, &root))
        .collect::<Result<Vec<_>>>()?;
    env.install_all(&files)?;
    Ok(env)
}

/// A server under test: where to send the load and whose CPU time to read.
pub(crate) struct Target {
    /// The row's name.
    pub name: &'static str,
    /// Where `wrk` sends the load.
    pub url: String,
    /// The process whose CPU time is read.
    pub pid: u32,
}

pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn median_of(runs: &[WrkResult]) -> Option<WrkResult> {
    if runs.is_empty() {
        return None;
    }
    let of = |f: fn(&WrkResult) -> f64| median(runs.iter().map(f).collect());
    Some(WrkResult {
        rps: of(|r| r.rps),
        p50_us: of(|r| r.p50_us),
        p99_us: of(|r| r.p99_us),
        errors: runs.iter().map(|r| r.errors).sum(),
        requests: runs.iter().map(|r| r.requests).sum(),
    })
}

/// Warms every target up, then runs the load `runs` times, targets interleaved so drift on a
/// shared machine hits them alike.
pub(crate) fn measure(
    targets: &[Target],
    load: Load,
    script: Option<&Path>,
    runs: usize,
    script_name: Option<&str>,
) -> Vec<HttpRow> {
    let tick = clock_ticks_per_second();
    let warm = Load { seconds: 3, ..load };
    let mut rows: Vec<HttpRow> = targets
        .iter()
        .map(|t| HttpRow {
            target: t.name.to_string(),
            command: load.command(&t.url, script_name),
            runs: Vec::new(),
            median: None,
            cpu_us_per_request: None,
            switches_per_request: None,
            note: None,
        })
        .collect();
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut switched: Vec<Vec<(f64, f64)>> = vec![Vec::new(); targets.len()];
    for (target, row) in targets.iter().zip(rows.iter_mut()) {
        if let Err(e) = wrk::run(warm, &target.url, script) {
            row.note = Some(format!("warm-up failed: {e:#}"));
        }
    }
    for run in 0..runs {
        for (i, target) in targets.iter().enumerate() {
            if rows[i].note.is_some() {
                continue;
            }
            eprintln!("[bench]   run {}/{runs}: {}", run + 1, target.name);
            let before = cpu_ticks(target.pid);
            let switches_before = switches(target.pid);
            match wrk::run(load, &target.url, script) {
                Ok(result) => {
                    if let (Some(b), Some(a)) = (before, cpu_ticks(target.pid))
                        && result.requests > 0
                    {
                        cpu[i].push((a - b) as f64 / tick * 1e6 / result.requests as f64);
                    }
                    if let (Some(b), Some(a)) = (switches_before, switches(target.pid))
                        && result.requests > 0
                    {
                        let per =
                            |a: u64, b: u64| a.saturating_sub(b) as f64 / result.requests as f64;
                        switched[i].push((per(a.0, b.0), per(a.1, b.1)));
                    }
                    rows[i].runs.push(result);
                }
                Err(e) => rows[i].note = Some(format!("{e:#}")),
            }
        }
    }
    for ((row, cpu), switched) in rows.iter_mut().zip(cpu).zip(switched) {
        row.median = median_of(&row.runs);
        if !cpu.is_empty() {
            row.cpu_us_per_request = Some(median(cpu));
        }
        if !switched.is_empty() {
            row.switches_per_request = Some(Switches {
                voluntary: median(switched.iter().map(|s| s.0).collect()),
                involuntary: median(switched.iter().map(|s| s.1).collect()),
            });
        }
    }
    rows
}

/// `wasmtime serve -Scli` on the raw minimal component; the peer row.
struct Peer {
    child: Child,
    url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Requests per instance in the instance-reuse rows, for the frame and the peer alike.
const REUSE_COUNT: u32 = 10_000;

/// `wasmtime serve` arguments, `{addr}` standing for the address.
fn peer_args(reuse: u32) -> Vec<String> {
    let mut args: Vec<String> = ["serve", "-Scli", "--addr", "{addr}"]
        .map(String::from)
        .into();
    if reuse > 1 {
        args.push("--max-instance-reuse-count".into());
        args.push(reuse.to_string());
    }
    args.push(test_shards::MINIMAL_RAW.component.into());
    args
}

fn start_peer(wasmtime: &Path, scratch: &Path, reuse: u32) -> Result<Peer> {
    if !wasmtime.is_file() {
        bail!(
            "no wasmtime CLI at {} (scripts/bench builds wasmtime-cli 48.0.8 into target/bench-tools; \
             the build takes ~13 min)",
            wasmtime.display()
        );
    }
    let port = free_port()?;
    let log_path = scratch.join(format!("wasmtime-serve-{reuse}.log"));
    let log = std::fs::File::create(&log_path)?;
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(wasmtime)
        .args(peer_args(reuse).iter().map(|a| a.replace("{addr}", &addr)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting wasmtime serve")?;
    let mut peer = Peer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if frame::get_status(&peer.url, "/").ok() == Some(200) {
            peer.url.push('/');
            return Ok(peer);
        }
        if let Ok(Some(status)) = peer.child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("wasmtime serve exited with {status}: {log}");
        }
        if Instant::now() > deadline {
            bail!("wasmtime serve did not answer 200 within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn minimal(options: &Options, scratch: &Path, load: Load, results: &mut Results) -> Result<()> {
    let env = frame_env(
        options,
        scratch,
        "minimal",
        &[
            (&test_shards::MINIMAL, "minimal".into()),
            (&test_shards::MINIMAL, "reuse".into()),
            (&test_shards::MINIMAL_RAW, "raw".into()),
            (&test_shards::MINIMAL_RAW, "raw-reuse".into()),
        ],
    )?;
    // The same components under second names that opt into instance reuse (README). `minimal`
    // (SDK) exports `arkham:shard/http-handler`, which the frame prefers; `raw` is the peer's
    // component, plain `wasi:http`.
    std::fs::write(
        env.data.join("arkham.toml"),
        format!(
            "[limits.shards.reuse]\ninstance_reuse = {REUSE_COUNT}\n\
             [limits.shards.raw-reuse]\ninstance_reuse = {REUSE_COUNT}\n"
        ),
    )?;
    let served = env.serve()?;
    served.until_ok("/api/minimal/", Duration::from_secs(60))?;
    let native = native::minimal()?;
    let self_pid = std::process::id();
    // The frame serves the minimal shard and the peer's component, each fresh and reused.
    let shard = |name, shard: &str| Target {
        name,
        url: format!("{}/api/{shard}/", served.base),
        pid: served.pid(),
    };
    let mut targets = vec![
        shard("frame", "minimal"),
        Target {
            name: "native axum",
            url: format!("{}/", native.base),
            pid: self_pid,
        },
        shard("frame, instance reuse", "reuse"),
        shard("frame, the peer's component (wasi:http)", "raw"),
        shard(
            "frame, the peer's component (wasi:http), instance reuse",
            "raw-reuse",
        ),
    ];
    let wasm = std::fs::read(test_shards::MINIMAL_RAW.component)?;
    let in_process = instantiate::http_server(&wasm, false)?;
    let in_process_tuned = instantiate::http_server(&wasm, true)?;
    for (name, server) in [
        ("runtime only, pool as in the frame", &in_process),
        ("runtime only, pool tuned", &in_process_tuned),
    ] {
        targets.push(Target {
            name,
            url: format!("{}/", server.base),
            pid: self_pid,
        });
    }
    let wasmtime = options
        .wasmtime
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench-tools/bin/wasmtime"));
    let mut peers = Vec::new();
    for (name, reuse) in [
        ("wasmtime serve", 1),
        ("wasmtime serve, instance reuse", REUSE_COUNT),
    ] {
        match start_peer(&wasmtime, scratch, reuse) {
            Ok(peer) => {
                targets.push(Target {
                    name,
                    url: peer.url.clone(),
                    pid: peer.child.id(),
                });
                peers.push(peer);
            }
            Err(e) => {
                results.minimal.push(HttpRow {
                    target: name.into(),
                    command: format!(
                        "{} {}; {}",
                        wasmtime.display(),
                        peer_args(reuse)
                            .join(" ")
                            .replace("{addr}", "127.0.0.1:PORT"),
                        load.command("http://127.0.0.1:PORT/", None)
                    ),
                    runs: Vec::new(),
                    median: None,
                    cpu_us_per_request: None,
                    switches_per_request: None,
                    note: Some(format!("not measured: {e:#}")),
                });
            }
        }
    }
    let mut rows = measure(&targets, load, None, options.runs, None);
    rows.append(&mut results.minimal);
    results.minimal = rows;
    drop(peers);
    native.stop();
    in_process.stop();
    in_process_tuned.stop();
    if options.perf {
        match profile(&served, load, scratch) {
            Ok(profile) => results.profile = Some(profile),
            Err(e) => results.errors.push(format!("perf profile: {e:#}")),
        }
    }
    Ok(())
}

pub(crate) const PACKETS_LUA: &str = r#"-- POST a packet, then GET the last created one, alternating per thread.
local last_id = nil
local n = 0
request = function()
  n = n + 1
  if last_id == nil or n % 2 == 1 then
    return wrk.format("POST", "/api/packets/", {["Content-Type"] = "application/json"}, '{"name":"bench"}')
  end
  return wrk.format("GET", "/api/packets/" .. last_id)
end
response = function(status, headers, body)
  local id = string.match(body, '"id":"([^"]+)"')
  if id then last_id = id end
end
"#;

fn packets(options: &Options, scratch: &Path, load: Load, results: &mut Results) -> Result<()> {
    let env = frame_env(
        options,
        scratch,
        "packets",
        &[(&test_shards::PACKETS, "packets".into())],
    )?;
    let served = env.serve()?;
    served.until_ok("/api/packets/health", Duration::from_secs(60))?;
    let native = native::packets(&scratch.join("native-packets.db"), None)?;
    let native_events = native::packets(
        &scratch.join("native-packets-ev.db"),
        Some(&scratch.join("native-events.db")),
    )?;
    let script = options.out.join("packets.lua");
    std::fs::write(&script, PACKETS_LUA)?;
    let targets = [
        Target {
            name: "frame",
            url: format!("{}/api/packets/", served.base),
            pid: served.pid(),
        },
        Target {
            name: "native axum+sqlx",
            url: format!("{}/api/packets/", native.base),
            pid: std::process::id(),
        },
        Target {
            name: "native axum+sqlx + event log",
            url: format!("{}/api/packets/", native_events.base),
            pid: std::process::id(),
        },
    ];
    results.packets = measure(
        &targets,
        load,
        Some(&script),
        options.runs,
        Some("target/bench/packets.lua"),
    );
    native.stop();
    native_events.stop();
    Ok(())
}

fn cold_start(options: &Options, scratch: &Path, results: &mut Results) -> Result<()> {
    const RUNS: usize = 5;
    for shards in [1usize, 10] {
        let list: Vec<(&test_shards::GuestShard, String)> = (0..shards)
            .map(|i| (&test_shards::MINIMAL, format!("minimal{i}")))
            .collect();
        let env = frame_env(options, scratch, &format!("cold{shards}"), &list)?;
        for cached in [true, false] {
            let mut first = Vec::new();
            let mut listening = Vec::new();
            let mut rss = Vec::new();
            for run in 0..RUNS {
                let mut env = env.clone();
                if !cached {
                    env.cache = scratch.join(format!("cold{shards}/empty-cache-{run}"));
                    std::fs::create_dir_all(&env.cache)?;
                }
                let served: Served = env.serve()?;
                let t = served.until_ok("/api/minimal0/", Duration::from_secs(120))?;
                first.push(t.as_secs_f64() * 1e3);
                listening.push(served.listening.as_secs_f64() * 1e3);
                if cached {
                    std::thread::sleep(Duration::from_secs(1));
                    rss.push(frame::rss_kib(served.pid())? as f64 / 1024.0);
                }
            }
            results.cold_start.push(ColdStart {
                shards,
                cached,
                listening_ms: median(listening),
                first_200_ms: median(first.clone()),
                runs_ms: first,
                idle_rss_mib: (!rss.is_empty()).then(|| median(rss)),
            });
        }
    }
    Ok(())
}

fn memory(options: &Options, scratch: &Path) -> Result<Memory> {
    const IN_FLIGHT: u32 = 256;
    let env = frame_env(
        options,
        scratch,
        "memory",
        &[(&test_shards::TRAPPER, "trapper".into())],
    )?;
    // Requests to /loop spin until their deadline: every connection holds one live instance.
    std::fs::write(
        env.data.join("arkham.toml"),
        "[limits]\nrequest_timeout_ms = 8000\n",
    )?;
    let served = env.serve()?;
    served.until_ok("/api/trapper/ok", Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(1));
    let idle = frame::rss_kib(served.pid())?;
    let url = format!("{}/api/trapper/loop", served.base);
    let args = [
        "-t2".to_string(),
        format!("-c{IN_FLIGHT}"),
        "-d5s".into(),
        "--timeout".into(),
        "20s".into(),
        url.clone(),
    ];
    let mut wrk = Command::new("wrk")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running wrk")?;
    let mut peak = idle;
    loop {
        peak = peak.max(frame::rss_kib(served.pid())?);
        if wrk.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Memory {
        in_flight: IN_FLIGHT,
        idle_rss_mib: idle as f64 / 1024.0,
        peak_rss_mib: peak as f64 / 1024.0,
        added_kib_per_request: peak.saturating_sub(idle) as f64 / f64::from(IN_FLIGHT),
        command: format!(
            "arkham.toml [limits] request_timeout_ms = 8000; wrk {}",
            args.join(" ")
        ),
    })
}

fn profile(served: &Served, load: Load, scratch: &Path) -> Result<Profile> {
    let data = scratch.join("perf.data");
    let url = format!("{}/api/minimal/", served.base);
    let long = Load {
        seconds: load.seconds.max(8),
        ..load
    };
    let wrk_url = url.clone();
    let wrk = std::thread::spawn(move || wrk::run(long, &wrk_url, None));
    std::thread::sleep(Duration::from_secs(1));
    let record_seconds = long.seconds.saturating_sub(3).max(3);
    let status = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "1999", "-g", "-o"])
        .arg(&data)
        .arg("-p")
        .arg(served.pid().to_string())
        .args(["--", "sleep", &record_seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running perf record (is perf installed?)")?;
    let _ = wrk.join();
    if !status.success() {
        bail!("perf record failed ({status})");
    }
    let report_with = |children: &str, sort: &str, limit: &str| -> Result<String> {
        let out = Command::new("perf")
            .args(["report", "-i"])
            .arg(&data)
            .args([
                "--stdio",
                children,
                "-g",
                "none",
                "--sort",
                sort,
                "--percent-limit",
                limit,
            ])
            .output()
            .context("running perf report")?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::trim_end)
            .take(45)
            .collect::<Vec<_>>()
            .join("\n"))
    };
    let report = |sort: &str, limit: &str| report_with("--no-children", sort, limit);
    const KEY_FRAMES: &[&str] = &[
        "decommit_pages",
        "flush_tlb_mm_range",
        "asm_exc_page_fault",
        "do_wp_page",
        "tcp_sendmsg",
        "incoming-handler",
        "instantiate",
        "LoadedShard::handle",
        "proxy::forward",
    ];
    let inclusive = report_with("--children", "symbol", "0.5")?
        .lines()
        .filter(|l| KEY_FRAMES.iter().any(|k| l.contains(k)))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Profile {
        by_dso: report("dso", "0.5")?,
        by_symbol: report("symbol", "0.7")?,
        inclusive,
        command: format!(
            "perf record -e cpu-clock -F 1999 -g -p $FRAME_PID -- sleep {record_seconds} \
             (during {}); perf report --no-children --sort dso|symbol",
            long.command(&url, None)
        ),
    })
}
