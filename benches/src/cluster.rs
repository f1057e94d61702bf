//! (11) Several frames, one deployment (issue 16): `scripts/cluster` started as a user starts it
//! (PostgreSQL, nats-server, N members, HAProxy in front), measured through its balancer:
//! packets create+get with 1 and 3 members, the time from `shard add` on one member to the
//! first 200 from another, and the failover gap a client sees when a member is killed.

use crate::Options;
use crate::frame::{self, get_status, request_with};
use crate::scenarios::{PACKETS_LUA, median};
use crate::wrk::{self, Load, WrkResult};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use test_shards::cluster::{Script, Start};

/// Member counts compared.
pub const MEMBERS: [u32; 2] = [1, 3];

/// How long the failover client runs, and when in it the member is killed.
const FAILOVER_RUN: Duration = Duration::from_secs(8);
const FAILOVER_KILL_AT: Duration = Duration::from_secs(2);

/// What the scenario measured.
#[derive(Debug, Default, Serialize)]
pub struct Cluster {
    /// The wrk command of the packets rows.
    pub load: String,
    /// Its `-d`, seconds.
    pub load_seconds: u32,
    /// Packets create+get through the balancer, per member count.
    pub packets: Vec<ClusterRow>,
    /// `GET /api/minimal/` (the minimal shard) through the balancer, per member count.
    pub minimal: Vec<ClusterRow>,
    /// From starting `arkham shard add` on member 1 to member 2's first 200, each run, ms.
    pub propagation_ms: Vec<f64>,
    /// Kill -9 of one of three members under a client's reads.
    pub failover: Option<Failover>,
    /// A burst of events to one subscriber, by member count: deliveries/s (median).
    pub delivery: Vec<(u32, Option<f64>)>,
    /// `haproxy -v`, first line.
    pub haproxy: String,
}

/// One member count.
#[derive(Debug, Serialize)]
pub struct ClusterRow {
    /// Members behind the balancer.
    pub members: u32,
    /// Every run.
    pub runs: Vec<WrkResult>,
    /// Median requests/s.
    pub median_rps: Option<f64>,
}

/// What one client saw while a member was killed.
#[derive(Debug, Serialize)]
pub struct Failover {
    /// Reads answered 200.
    pub ok: u64,
    /// Reads answered otherwise, or failed.
    pub failed: u64,
    /// The longest time between two 200s, ms.
    pub longest_gap_ms: f64,
    /// The median time between two 200s, ms (the client's own pace).
    pub median_gap_ms: f64,
}

fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "haproxy (version unknown)".into())
}

/// Runs the scenario; what failed is pushed to `errors`.
pub fn run(options: &Options, scratch: &Path, errors: &mut Vec<String>) -> Cluster {
    let load = Load {
        threads: 2,
        connections: 32,
        seconds: options.seconds,
    };
    let mut cluster = Cluster {
        load: load.command(
            "http://127.0.0.1:PORT/api/packets/",
            Some("target/bench/packets.lua"),
        ),
        load_seconds: options.seconds,
        haproxy: haproxy_version(),
        ..Cluster::default()
    };
    let scratch = scratch.join("cluster");
    let script = options.out.join("packets.lua");
    if let Err(e) = std::fs::write(&script, PACKETS_LUA) {
        errors.push(format!("cluster: writing {}: {e}", script.display()));
        return cluster;
    }
    for members in MEMBERS {
        eprintln!("[bench]   cluster: {members} member(s)");
        match through_balancer(options, &scratch, members, load, &script, &mut cluster) {
            Ok(row) => cluster.packets.push(row),
            Err(e) => errors.push(format!("cluster, {members} member(s): {e:#}")),
        }
    }
    cluster
}

/// Packets through the balancer with `members`; with three, the propagation and failover too.
fn through_balancer(
    options: &Options,
    scratch: &Path,
    members: u32,
    load: Load,
    script: &Path,
    cluster: &mut Cluster,
) -> Result<ClusterRow> {
    let dir = scratch.join(format!("members{members}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // The suite's packets component, as the other scenarios serve it.
    let shard = frame::package(&test_shards::PACKETS, "packets", &dir)?;
    let running = Script::start(&Start {
        arkham: &options.arkham,
        dir: &dir,
        shard: &shard,
        members,
    })
    .map_err(anyhow::Error::msg)?;
    let url = format!("{}/api/packets/", running.base());
    let mut runs = Vec::new();
    for _ in 0..options.runs {
        runs.push(wrk::run(load, &url, Some(script))?);
    }
    let median_rps = (!runs.is_empty()).then(|| median(runs.iter().map(|r| r.rps).collect()));
    cluster
        .minimal
        .push(minimal(options, &running, &dir, members, load)?);
    cluster
        .delivery
        .push((members, delivery(options, &running, &dir, members)?));
    if members == 3 {
        cluster.propagation_ms = propagation(options, &running, &dir)?;
        cluster.failover = Some(failover(&running)?);
    }
    Ok(ClusterRow {
        members,
        runs,
        median_rps,
    })
}

/// The suite's minimal shard installed into the deployment and loaded by `wrk` (no script)
/// through the balancer, as the minimal scenario loads one frame.
fn minimal(
    options: &Options,
    running: &Script,
    dir: &Path,
    members: u32,
    load: Load,
) -> Result<ClusterRow> {
    let file = frame::package(&test_shards::MINIMAL, "minimal", dir)?;
    arkham(
        options,
        dir,
        &["shard", "add", &file.to_string_lossy(), "--yes"],
    )?;
    let asked = Instant::now();
    for n in (1..=members).filter_map(|n| u16::try_from(n).ok()) {
        while get_status(&running.member(n), "/api/minimal/").ok() != Some(200) {
            if asked.elapsed() > Duration::from_secs(60) {
                bail!("member {n} did not serve the minimal shard within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let url = format!("{}/api/minimal/", running.base());
    let mut runs = Vec::new();
    for _ in 0..options.runs {
        runs.push(wrk::run(load, &url, None)?);
    }
    let median_rps = (!runs.is_empty()).then(|| median(runs.iter().map(|r| r.rps).collect()));
    Ok(ClusterRow {
        members,
        runs,
        median_rps,
    })
}

/// Events published in each delivery burst.
const BURST: u64 = 2000;

/// The events scenario's publisher and one subscriber installed into the deployment, then
/// bursts published through the balancer while every member pulls the subscriber's deliveries;
/// the median deliveries/s.
fn delivery(options: &Options, running: &Script, dir: &Path, members: u32) -> Result<Option<f64>> {
    let publisher = frame::package(&test_shards::PUBLISHER, "publisher", dir)?;
    let subscriber = frame::package(&test_shards::SUBSCRIBER, "subscriber0", dir)?;
    arkham(
        options,
        dir,
        &[
            "shard",
            "add",
            &publisher.to_string_lossy(),
            &subscriber.to_string_lossy(),
            "--yes",
        ],
    )?;
    let base = running.base();
    let asked = Instant::now();
    for n in (1..=members).filter_map(|n| u16::try_from(n).ok()) {
        while get_status(&running.member(n), "/api/subscriber0/stats").ok() != Some(200) {
            if asked.elapsed() > Duration::from_secs(60) {
                bail!("member {n} did not serve the subscriber within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let nats = format!("nats://127.0.0.1:{}", running.port + 4);
    let pipeline = crate::events::Pipeline::attached(base, &nats, 1)?;
    let mut rates = Vec::new();
    for _ in 0..options.runs {
        rates.push(pipeline.burst(&rt, BURST)?.delivered_per_s);
    }
    Ok((!rates.is_empty()).then(|| median(rates)))
}

/// `arkham ARGS` against member 1's data dir in the script's folder `dir`.
fn arkham(options: &Options, dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(&options.arkham)
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("member-1"))
        .output()
        .with_context(|| format!("arkham {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "arkham {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `shard add` of the echo fixture through member 1 (which returns once member 1 serves it),
/// then polling member 2 until it serves it; removed again between runs.
fn propagation(options: &Options, running: &Script, dir: &Path) -> Result<Vec<f64>> {
    let file = frame::package(&test_shards::ECHO, "echo", dir)?;
    let file = file.to_string_lossy().into_owned();
    let other = running.member(2);
    let mut times = Vec::new();
    for _ in 0..options.runs {
        let added = Instant::now();
        arkham(options, dir, &["shard", "add", &file, "--yes"])?;
        while get_status(&other, "/api/echo/health").ok() != Some(200) {
            if added.elapsed() > Duration::from_secs(60) {
                bail!("member 2 did not serve echo within 60 s of its add on member 1");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        times.push(added.elapsed().as_secs_f64() * 1e3);
        arkham(options, dir, &["shard", "remove", "echo"])?;
        let removed = Instant::now();
        while get_status(&other, "/api/echo/health").ok() != Some(404) {
            if removed.elapsed() > Duration::from_secs(60) {
                bail!("member 2 still served echo 60 s after its removal");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(times)
}

/// One client reading one packet (`GET /api/packets/{id}`) through the balancer, as fast as it answers, while member 2 is
/// killed with SIGKILL (its supervisor in the script restarts it a second later).
fn failover(running: &Script) -> Result<Failover> {
    let base = running.base();
    let (status, body) = request_with(&base, "POST", "/api/packets/", r#"{"name":"failover"}"#)?;
    let id = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string));
    let Some(id) = id.filter(|_| status == 201) else {
        bail!("POST /api/packets/ through the balancer answered {status}: {body}");
    };
    let path = format!("/api/packets/{id}");
    let start = Instant::now();
    let mut killed = false;
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut last_ok: Option<Instant> = None;
    let mut gaps = Vec::new();
    while start.elapsed() < FAILOVER_RUN {
        if !killed && start.elapsed() >= FAILOVER_KILL_AT {
            running.kill_member(2).map_err(anyhow::Error::msg)?;
            killed = true;
        }
        match get_status(&base, &path) {
            Ok(200) => {
                let now = Instant::now();
                if let Some(last) = last_ok {
                    gaps.push(now.duration_since(last).as_secs_f64() * 1e3);
                }
                last_ok = Some(now);
                ok += 1;
            }
            _ => failed += 1,
        }
    }
    let longest_gap_ms = gaps.iter().copied().fold(0.0, f64::max);
    Ok(Failover {
        ok,
        failed,
        longest_gap_ms,
        median_gap_ms: median(gaps),
    })
}

/// A table's rows: each member count's median, its runs, and its ratio to one member.
fn rows(md: &mut String, rows: &[ClusterRow]) {
    use std::fmt::Write as _;
    let one = rows
        .iter()
        .find(|r| r.members == 1)
        .and_then(|r| r.median_rps);
    for row in rows {
        let runs: Vec<String> = row.runs.iter().map(|r| format!("{:.0}", r.rps)).collect();
        let ratio = row
            .median_rps
            .zip(one)
            .filter(|(_, one)| *one > 0.0)
            .map_or_else(|| "—".to_string(), |(n, one)| format!("{:.2}×", n / one));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {ratio} |",
            row.members,
            row.median_rps
                .map_or_else(|| "—".into(), |r| format!("{r:.0}")),
            runs.join(", ")
        );
    }
}

/// `## (11) Several frames`.
pub fn section(md: &mut String, cluster: Option<&Cluster>) {
    use std::fmt::Write as _;
    let _ = writeln!(
        md,
        "## (11) Several frames: one deployment behind HAProxy\n"
    );
    let Some(c) = cluster else {
        let _ = writeln!(md, "Not measured.\n");
        return;
    };
    let _ = writeln!(
        md,
        "`scripts/cluster --members N` as a user runs it (PostgreSQL, nats-server with JetStream, N \
         members with `[cluster] enabled`, {}), on this one machine. Packets create+get: `{}`, \
         through the balancer, {} runs each (median). On two cores, members share the same CPUs \
         as PostgreSQL, NATS and HAProxy, so three members cannot serve more than one: the rows \
         show what a member count costs here, not what it buys on three machines.\n",
        c.haproxy,
        c.load,
        c.packets.first().map_or(0, |r| r.runs.len())
    );
    let _ = writeln!(
        md,
        "| members | 2xx/s (median) | runs | vs 1 member |\n|---:|---:|---|---:|"
    );
    rows(md, &c.packets);
    if !c.minimal.is_empty() {
        let _ = writeln!(
            md,
            "\nThe minimal shard (`GET /api/minimal/`, `wrk -t2 -c32 -d{}s`), through the \
             balancer:\n\n| members | 2xx/s (median) | runs | vs 1 member |\n|---:|---:|---|---:|",
            c.load_seconds
        );
        rows(md, &c.minimal);
    }
    if !c.delivery.is_empty() {
        let cells: Vec<String> = c
            .delivery
            .iter()
            .map(|(members, rate)| {
                let rate = rate.map_or_else(|| "—".to_string(), |r| format!("{r:.0}"));
                format!("{members} member(s): {rate}")
            })
            .collect();
        let _ = writeln!(
            md,
            "\n**Event delivery**, a burst of {BURST} events published through the balancer to one \
             subscriber whose deliveries every member pulls (the events scenario's fixtures), \
             deliveries/s, median: {}. One subscriber's consumer has one delivery in flight at a \
             time (`max_ack_pending` 1, which keeps its order across members), so more members \
             share its deliveries rather than multiply them.",
            cells.join("; ")
        );
    }
    if !c.propagation_ms.is_empty() {
        let runs: Vec<String> = c.propagation_ms.iter().map(|t| format!("{t:.0}")).collect();
        let _ = writeln!(
            md,
            "\n**From `arkham shard add` on member 1 to member 2's first 200** (the echo fixture, \
             removed between runs; the clock starts with the command, which returns once member 1 \
             serves the shard, and member 2 is polled from then): median {:.0} ms (runs: {} ms). \
             The first run compiles echo on every member; later ones find it in the compiled \
             cache. The issue's bound: within 1 s.",
            median(c.propagation_ms.clone()),
            runs.join(", ")
        );
    }
    if let Some(f) = &c.failover {
        let _ = writeln!(
            md,
            "\n**Failover gap**: one client reading one packet (`GET /api/packets/ID`) through the \
             balancer as fast \
             as it answers ({} reads answered 200, {} not), `kill -9` of member 2 after {} s (the \
             script's supervisor restarts it a second later; HAProxy checks health every second, \
             two failures to take a member out, and retries a GET whose member refused the \
             connection on another): longest time between two 200s **{:.1} ms**, median {:.2} ms.",
            f.ok,
            f.failed,
            FAILOVER_KILL_AT.as_secs(),
            f.longest_gap_ms,
            f.median_gap_ms
        );
    }
    let _ = writeln!(md);
}
