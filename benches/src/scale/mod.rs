//! Scale: how cost grows (issue 19). Three curves, each a row per point and an SVG plot:
//!
//! - installed shards N: the minimal component under N names; cold start with the compiled cache
//!   warm, idle RSS, and `wrk` to one shard and spread over all N;
//! - subscribers S to one event stream: the events scenario's pipeline (publisher + S
//!   subscribers on the embedded log), a burst for deliveries/s and a paced load for the latency;
//! - request body size: `POST` bodies through `http-handler` (echo's `/mirror`), `wasi:http`
//!   (streamer's `/mirror`) and a native axum route, in MB/s.

mod plot;
pub mod section;

use crate::Options;
use crate::events::{BURST_PER_REQUEST, DeliveryRow, Mode, Pipeline, median_run, paced_load};
use crate::frame::{self, Served};
use crate::native;
use crate::scenarios::{
    HttpRow, Target, clock_ticks_per_second, cpu_ticks, frame_env, measure, median,
};
use crate::wrk::Load;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Installed-shard counts.
pub const SHARDS: [usize; 4] = [1, 10, 100, 1000];
/// Subscriber counts.
pub const SUBSCRIBERS: [usize; 3] = [1, 10, 100];
/// Request body sizes, bytes.
pub const BODIES: [usize; 4] = [1 << 10, 64 << 10, 1 << 20, 10 << 20];

/// Connections of the body-size rows: few, so 10 MiB bodies in flight stay within memory and
/// the copy, not the queue, is measured.
pub const BODY_CONNECTIONS: u32 = 4;

/// What the scale scenario measured.
#[derive(Debug, Default, Serialize)]
pub struct Scale {
    /// One point per installed-shard count.
    pub shards: Vec<ShardsPoint>,
    /// One point per subscriber count.
    pub subscribers: Vec<SubscribersPoint>,
    /// One point per body size.
    pub bodies: Vec<BodyPoint>,
    /// The plots written into `--out`, by file name.
    pub plots: Vec<String>,
    /// Why a plot is missing.
    pub plot_errors: Vec<String>,
    /// The `wrk` load of the shard rows.
    pub load: String,
    /// The largest N measured (`--scale-max`).
    pub max_shards: usize,
    /// The paced subscriber rows' `delay()` between requests, ms.
    pub paced_delay_ms: u64,
}

/// N installed shards.
#[derive(Debug, Serialize)]
pub struct ShardsPoint {
    /// N.
    pub shards: usize,
    /// One `arkham shard add FILE… --yes` of all N (compiles each: the names differ, so do the
    /// packaged bytes and their cache keys), ms.
    pub install_ms: f64,
    /// Spawn to "listening on", ms, median.
    pub listening_ms: f64,
    /// Spawn to the first 200 from `minimal0`, ms, median.
    pub first_200_ms: f64,
    /// Every run's first-200 time, ms.
    pub runs_ms: Vec<f64>,
    /// VmRSS 1 s after the first 200, MiB, median.
    pub idle_rss_mib: f64,
    /// `wrk` to `/api/minimal0/`.
    pub one: HttpRow,
    /// `wrk` round-robin over every shard (`scale-spread-N.lua`).
    pub spread: HttpRow,
}

/// S subscribers of one stream.
#[derive(Debug, Serialize)]
pub struct SubscribersPoint {
    /// S.
    pub subscribers: usize,
    /// A burst: deliveries/s.
    pub burst: DeliveryRow,
    /// A paced load at the same rate for every S: the latency.
    pub paced: DeliveryRow,
    /// Frame CPU (user + system) over the burst runs per delivery, µs, median.
    pub cpu_us_per_delivery: Option<f64>,
}

/// One body size, three paths.
#[derive(Debug, Serialize)]
pub struct BodyPoint {
    /// Request (and response) body, bytes.
    pub bytes: usize,
    /// `http-handler`, `wasi:http`, native (see [`BODY_TARGETS`]).
    pub rows: Vec<HttpRow>,
}

/// The rows of a [`BodyPoint`], in order.
pub const BODY_TARGETS: [&str; 3] = [
    "frame, http-handler (echo /mirror)",
    "frame, wasi:http (streamer /mirror)",
    "native axum",
];

/// Runs the scenario: each curve that fails records why in `errors`, the others go on.
pub fn run(options: &Options, scratch: &Path, errors: &mut Vec<String>) -> Scale {
    let scratch = scratch.join("scale");
    let load = Load {
        threads: 2,
        connections: 32,
        seconds: options.seconds,
    };
    let mut scale = Scale {
        load: load.command("URL", None),
        max_shards: options.scale_max,
        ..Scale::default()
    };
    for n in SHARDS.into_iter().filter(|&n| n <= options.scale_max) {
        eprintln!("[bench]   scale: {n} installed shard(s)");
        let point = shards_point(options, &scratch, load, n);
        // Its frame has stopped: 1,000 packaged copies and their compiled artifacts take ~300 MB.
        let _ = std::fs::remove_dir_all(scratch.join(format!("shards{n}")));
        match point {
            Ok(point) => scale.shards.push(point),
            Err(e) => {
                errors.push(format!("scale, {n} shards: {e:#}"));
                break;
            }
        }
    }
    if let Err(e) = subscribers(options, &scratch, &mut scale) {
        errors.push(format!("scale, subscribers: {e:#}"));
    }
    match bodies(options, &scratch) {
        Ok(points) => scale.bodies = points,
        Err(e) => errors.push(format!("scale, body sizes: {e:#}")),
    }
    for (file, result) in plot_all(&scale, &options.out) {
        match result {
            Ok(()) => scale.plots.push(file),
            Err(e) => scale.plot_errors.push(format!("{file}: {e:#}")),
        }
    }
    scale
}

/// Lua for `wrk`: each request to the next of `shards` shards `minimal0…`, round-robin.
pub fn spread_lua(shards: usize) -> String {
    format!(
        "-- Round-robin over minimal0..minimal{last}, one shard per request.\n\
         local n = 0\n\
         request = function()\n  \
           n = n + 1\n  \
           return wrk.format(\"GET\", \"/api/minimal\" .. (n % {shards}) .. \"/\")\n\
         end\n",
        last = shards - 1
    )
}

/// Lua for `wrk`: every request a `POST` of `bytes` bytes.
pub fn body_lua(bytes: usize) -> String {
    format!(
        "wrk.method = \"POST\"\n\
         wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n\
         wrk.body = string.rep(\"a\", {bytes})\n"
    )
}

fn shards_point(options: &Options, scratch: &Path, load: Load, n: usize) -> Result<ShardsPoint> {
    let list: Vec<(&test_shards::GuestShard, String)> = (0..n)
        .map(|i| (&test_shards::MINIMAL, format!("minimal{i}")))
        .collect();
    let started = Instant::now();
    // Installing compiles into the cache: every serve below starts with it warm.
    let env = frame_env(options, scratch, &format!("shards{n}"), &list)?;
    let install_ms = started.elapsed().as_secs_f64() * 1e3;
    let runs = options.runs.clamp(3, 5);
    let (mut first, mut listening, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let mut last: Option<Served> = None;
    for _ in 0..runs {
        // The previous frame goes first: one frame at a time on the data dir.
        drop(last.take());
        let served = env.serve()?;
        let t = served.until_ok("/api/minimal0/", Duration::from_secs(600))?;
        first.push(t.as_secs_f64() * 1e3);
        listening.push(served.listening.as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_secs(1));
        rss.push(frame::rss_kib(served.pid())? as f64 / 1024.0);
        last = Some(served);
    }
    let served = last.context("no run")?;
    let script_name = format!("scale-spread-{n}.lua");
    let script = options.out.join(&script_name);
    std::fs::write(&script, spread_lua(n))?;
    let target = |name| Target {
        name,
        url: format!("{}/api/minimal0/", served.base),
        pid: served.pid(),
    };
    let one = measure(&[target("one shard")], load, None, options.runs, None);
    let spread = measure(
        &[target("spread over all")],
        load,
        Some(&script),
        options.runs,
        Some(&format!("target/bench/{script_name}")),
    );
    let only = |rows: Vec<HttpRow>| rows.into_iter().next().context("no row");
    Ok(ShardsPoint {
        shards: n,
        install_ms,
        listening_ms: median(listening),
        first_200_ms: median(first.clone()),
        runs_ms: first,
        idle_rss_mib: median(rss),
        one: only(one)?,
        spread: only(spread)?,
    })
}

/// Events per burst with `subscribers`: about `--seconds` of delivery at the rate the warm-up
/// saw, within bounds that keep S = 100 (100 deliveries per event) finite.
fn burst_size(per_subscriber_per_s: f64, seconds: u32) -> u64 {
    let wanted = (per_subscriber_per_s * f64::from(seconds)) as u64;
    (wanted.clamp(2 * BURST_PER_REQUEST, 5_000) / BURST_PER_REQUEST) * BURST_PER_REQUEST
}

fn subscribers(options: &Options, scratch: &Path, scale: &mut Scale) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a runtime for reading frame.db")?;
    let tick = clock_ticks_per_second();
    let backend = crate::events::Backend::Embedded;
    let mut pipelines = Vec::new();
    for s in SUBSCRIBERS {
        eprintln!("[bench]   scale: {s} subscriber(s), burst");
        let p = Pipeline::frame(options, scratch, s, &rt, backend);
        let warm = p.burst(&rt, 2 * BURST_PER_REQUEST);
        let mut burst = DeliveryRow {
            pipeline: "frame".into(),
            subscribers: s,
            mode: Mode::Burst,
            events: 0,
            command: String::new(),
            runs: Vec::new(),
            median: None,
            note: None,
        };
        let mut cpu = Vec::new();
        match warm {
            Err(e) => burst.note = Some(format!("warm-up failed: {e:#}")),
            Ok(warm) => {
                burst.events = burst_size(warm.delivered_per_s / s as f64, options.seconds);
                burst.command = format!(
                    "for i in $(seq {}); do curl -s -X POST '{}'; done; then GET \
                     /api/subscriberN/stats until every subscriber holds them",
                    burst.events / BURST_PER_REQUEST,
                    p.publish_url(BURST_PER_REQUEST),
                );
                for _ in 0..options.runs {
                    let before = cpu_ticks(p.pid());
                    match p.burst(&rt, burst.events) {
                        Ok(run) => {
                            if let (Some(b), Some(a)) = (before, cpu_ticks(p.pid()))
                                && run.delivered > 0
                            {
                                cpu.push((a - b) as f64 / tick * 1e6 / run.delivered as f64);
                            }
                            burst.runs.push(run);
                        }
                        Err(e) => {
                            burst.note = Some(format!("{e:#}"));
                            break;
                        }
                    }
                }
            }
        }
        burst.median = median_run(&burst.runs);
        scale.subscribers.push(SubscribersPoint {
            subscribers: s,
            paced: DeliveryRow {
                pipeline: "frame".into(),
                subscribers: s,
                mode: Mode::Paced,
                events: 0,
                command: String::new(),
                runs: Vec::new(),
                median: None,
                note: None,
            },
            burst,
            cpu_us_per_delivery: (!cpu.is_empty()).then(|| median(cpu)),
        });
        // Kept running for the paced pass, which needs the rate from the largest S first.
        pipelines.push(p);
    }
    // One rate for every S, half the per-subscriber capacity at the largest S, so no queue
    // builds up anywhere and the latencies compare.
    let capacity = scale.subscribers.iter().rev().find_map(|p| {
        p.burst
            .median
            .map(|m| m.delivered_per_s / p.subscribers as f64)
    });
    let rate = (capacity.unwrap_or(10.0) * 0.5).clamp(5.0, 500.0);
    let delay_ms = (1000.0 / rate).round().max(1.0) as u64;
    scale.paced_delay_ms = delay_ms;
    let script = options.out.join("scale-paced.lua");
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nfunction delay() return {delay_ms} end\n"),
    )?;
    for (p, point) in pipelines.iter().zip(scale.subscribers.iter_mut()) {
        eprintln!(
            "[bench]   scale: {} subscriber(s), paced every {delay_ms} ms",
            point.subscribers
        );
        let row = &mut point.paced;
        row.command = paced_load(options.seconds)
            .command(&p.publish_url(1), Some("target/bench/scale-paced.lua"));
        if capacity.is_none() {
            row.note = Some("not measured: no burst capacity to pace from".into());
            continue;
        }
        for _ in 0..options.runs {
            match p.paced(&rt, options.seconds, &script) {
                Ok(run) => row.runs.push(run),
                Err(e) => {
                    row.note = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        row.median = median_run(&row.runs);
        row.events = row.median.map_or(0, |m| m.published);
    }
    for p in pipelines {
        p.stop();
    }
    Ok(())
}

fn bodies(options: &Options, scratch: &Path) -> Result<Vec<BodyPoint>> {
    let env = frame_env(
        options,
        scratch,
        "bodies",
        &[
            (&test_shards::ECHO, "echo".into()),
            (&test_shards::STREAMER, "streamer".into()),
        ],
    )?;
    let served = env.serve()?;
    served.until_ok("/api/streamer/", Duration::from_secs(60))?;
    let native = native::mirror()?;
    let targets = [
        Target {
            name: BODY_TARGETS[0],
            url: format!("{}/api/echo/mirror", served.base),
            pid: served.pid(),
        },
        Target {
            name: BODY_TARGETS[1],
            url: format!("{}/api/streamer/mirror", served.base),
            pid: served.pid(),
        },
        Target {
            name: BODY_TARGETS[2],
            url: format!("{}/mirror", native.base),
            pid: std::process::id(),
        },
    ];
    let load = Load {
        threads: 2,
        connections: BODY_CONNECTIONS,
        seconds: options.seconds,
    };
    let mut points = Vec::new();
    for bytes in BODIES {
        eprintln!("[bench]   scale: {} request bodies", size_label(bytes));
        let name = format!("scale-body-{bytes}.lua");
        let script: PathBuf = options.out.join(&name);
        std::fs::write(&script, body_lua(bytes))?;
        let rows = measure(
            &targets,
            load,
            Some(&script),
            options.runs,
            Some(&format!("target/bench/{name}")),
        );
        points.push(BodyPoint { bytes, rows });
    }
    native.stop();
    Ok(points)
}

/// `1 KiB`, `64 KiB`, `1 MiB`, `10 MiB`.
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Request bytes per second of `row`, MB/s (10^6), from its median requests/s.
pub fn mb_per_s(row: &HttpRow, bytes: usize) -> Option<f64> {
    row.median.map(|m| m.rps * bytes as f64 / 1e6)
}

/// Every plot: its file name in `out` and whether it was written.
fn plot_all(scale: &Scale, out: &Path) -> Vec<(String, Result<()>)> {
    use plot::{Chart, Series};
    let series = |label: &str, points: Vec<(f64, f64)>| Series {
        label: label.into(),
        points,
    };
    let rps = |row: &HttpRow| row.median.map_or(f64::NAN, |m| m.rps);
    let shards = |f: &dyn Fn(&ShardsPoint) -> f64| -> Vec<(f64, f64)> {
        scale
            .shards
            .iter()
            .map(|p| (p.shards as f64, f(p)))
            .collect()
    };
    let mut plots = Vec::new();
    if !scale.shards.is_empty() {
        plots.push((
            "scale-shards-rps.svg",
            Chart {
                title: "Requests/s by installed shards",
                x: "installed shards N",
                y: "requests/s",
            },
            vec![
                series("to one shard", shards(&|p| rps(&p.one))),
                series("spread over all N", shards(&|p| rps(&p.spread))),
            ],
        ));
        plots.push((
            "scale-shards-start.svg",
            Chart {
                title: "Cold start (compiled cache warm) and idle RSS by installed shards",
                x: "installed shards N",
                y: "ms / MiB",
            },
            vec![
                series("spawn → first 200, ms", shards(&|p| p.first_200_ms)),
                series("idle RSS, MiB", shards(&|p| p.idle_rss_mib)),
            ],
        ));
    }
    if !scale.subscribers.is_empty() {
        let per = |total: bool| -> Vec<(f64, f64)> {
            scale
                .subscribers
                .iter()
                .map(|p| {
                    let d = p.burst.median.map_or(f64::NAN, |m| m.delivered_per_s);
                    let s = p.subscribers as f64;
                    (s, if total { d } else { d / s })
                })
                .collect()
        };
        plots.push((
            "scale-subscribers.svg",
            Chart {
                title: "Deliveries/s by subscribers of one stream (burst)",
                x: "subscribers S",
                y: "deliveries/s",
            },
            vec![
                series("per subscriber", per(false)),
                series("all subscribers", per(true)),
            ],
        ));
    }
    if !scale.bodies.is_empty() {
        let path = |i: usize| -> Vec<(f64, f64)> {
            scale
                .bodies
                .iter()
                .map(|p| {
                    let mb = p.rows.get(i).and_then(|r| mb_per_s(r, p.bytes));
                    (p.bytes as f64 / 1024.0, mb.unwrap_or(f64::NAN))
                })
                .collect()
        };
        plots.push((
            "scale-body.svg",
            Chart {
                title: "POST body mirrored: request MB/s by body size",
                x: "body, KiB",
                y: "MB/s",
            },
            BODY_TARGETS
                .iter()
                .enumerate()
                .map(|(i, name)| series(name, path(i)))
                .collect(),
        ));
    }
    plots
        .into_iter()
        .map(|(file, chart, series)| {
            let result = plot::write(&out.join(file), &chart, &series);
            (file.to_string(), result)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arkham_frame::config::FrameConfig;
    use arkham_frame::datadir::DataDir;
    use arkham_frame::runtime::Runtime;
    use arkham_frame::shards::install;
    use native::NativeServer;
    use std::io::{Read, Write};

    /// `POST path` with `body` over HTTP/1.0 (the response ends with the connection); the
    /// status and the body.
    fn post(base: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let authority = base.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(authority).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, response[split + 4..].to_vec())
    }

    /// The three body paths of the scenario return what they were sent, byte for byte, at the
    /// largest size it posts: through an in-process frame (echo's and streamer's `/mirror`) and
    /// the native route.
    #[test]
    fn every_body_path_mirrors_the_largest_body() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        std::fs::create_dir_all(data.root()).unwrap();
        let installer = Runtime::new(FrameConfig::default().limits, data.compiled_cache()).unwrap();
        for (guest, name) in [
            (&test_shards::ECHO, "echo"),
            (&test_shards::STREAMER, "streamer"),
        ] {
            let file = frame::package(guest, name, dir.path()).unwrap();
            let bytes = std::fs::read(&file).unwrap();
            install::install(&data, &installer, &bytes, name).unwrap();
        }
        let server = NativeServer::start_async(move || async move {
            Ok(arkham_frame::http::app(
                arkham_frame::frame::Frame::open(data).await?,
            ))
        })
        .unwrap();
        let native = native::mirror().unwrap();
        let body: Vec<u8> = (0..BODIES[3]).map(|i| (i % 251) as u8).collect();
        for (base, path) in [
            (&server.base, "/api/echo/mirror"),
            (&server.base, "/api/streamer/mirror"),
            (&native.base, "/mirror"),
        ] {
            let (status, got) = post(base, path, &body);
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&got));
            assert_eq!(got.len(), body.len(), "{path}");
            assert!(got == body, "{path}: the body came back changed");
            let (status, got) = post(base, path, b"");
            assert_eq!((status, got.len()), (200, 0), "{path}, empty body");
        }
        server.stop();
        native.stop();
    }

    #[test]
    fn the_scripts_spread_requests_and_post_the_size() {
        let lua = spread_lua(1000);
        assert!(lua.contains("(n % 1000)") && lua.contains("minimal999"));
        let lua = body_lua(64 << 10);
        assert!(lua.contains("wrk.method = \"POST\"") && lua.contains("string.rep(\"a\", 65536)"));
        assert_eq!(size_label(BODIES[0]), "1 KiB");
        assert_eq!(size_label(BODIES[3]), "10 MiB");
    }

    #[test]
    fn bursts_are_sized_from_the_rate_within_bounds() {
        assert_eq!(burst_size(0.0, 10), 2 * BURST_PER_REQUEST);
        assert_eq!(burst_size(123.0, 10), 1200);
        assert_eq!(burst_size(1e6, 10), 5_000);
    }
}
