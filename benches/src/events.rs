//! (6) Events: publish-to-delivery throughput and latency with 1 and 3 subscribers, through the
//! frame and through the native baseline of [`crate::native_events`].
//!
//! The `publisher` fixture stamps each event's payload with its send time (WASI wall clock, µs);
//! each `subscriber` fixture reads the wall clock first thing in its handler and records both.
//! Three measurements:
//!
//! - publish cost: `wrk` on `POST /publish?n=1` with no subscriber, against the same request
//!   publishing nothing and against the native publisher;
//! - burst: a fixed number of events published as fast as sequential requests allow, sized from a
//!   warm-up to take about `--seconds` to deliver; deliveries per second from the first send to
//!   the last delivery, all subscribers together (the delivery capacity);
//! - paced: `wrk -c1` with a `delay()` at half the frame's 3-subscriber capacity, so the latency
//!   is the pipeline's own and not a queue's.
//!
//! [`Backend`] picks the event bus: the frame's embedded log (native: its `EventLog` and
//! `Dispatcher`), or JetStream (the frame with `[events] backend = "nats"`; native: the
//! `async-nats` pipeline of [`crate::native_jetstream`]), each pipeline on a NATS server of its own.

use crate::Options;
use crate::frame::{self, Served};
use crate::native::NativeServer;
use crate::native_events;
use crate::native_jetstream;
use crate::scenarios::{HttpRow, Target, frame_env, measure, median};
use crate::wrk::{self, Load};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::path::Path;
use std::time::{Duration, Instant};
use test_shards::engines::Nats;

/// Events per request in a burst (the frame allows 100 per call by default). Fewer, larger
/// requests keep the burst's publishing short next to its delivery.
pub const BURST_PER_REQUEST: u64 = 50;

/// Events in the warm-up bursts: the first fills the pool's warm slots and SQLite's caches, the
/// second sizes the measured bursts.
const WARM_UP_EVENTS: [u64; 2] = [100, 300];

/// Bounds of a measured burst, in events.
const BURST_MIN: u64 = 500;
const BURST_MAX: u64 = 20_000;

/// A pipeline that makes no progress for this long is reported as stuck.
const STALL: Duration = Duration::from_secs(30);

/// The paced load runs at this fraction of the frame's per-subscriber capacity with 3
/// subscribers, so no queue builds up in any configuration.
const PACED_FRACTION: f64 = 0.5;

/// Lua for `wrk`: every request a POST.
pub const POST_LUA: &str = "wrk.method = \"POST\"\n";

/// The event bus under the pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The frame's own SQLite log (the default).
    #[default]
    Embedded,
    /// NATS JetStream.
    JetStream,
}

impl Backend {
    /// The prefix of scratch folders and Lua files (`events`, `events-nats`).
    pub fn label(self) -> &'static str {
        match self {
            Backend::Embedded => "events",
            Backend::JetStream => "events-nats",
        }
    }
}

/// What the events scenario measured.
#[derive(Debug, Default, Serialize)]
pub struct Events {
    /// The event bus.
    pub backend: Backend,
    /// Publish cost with no subscriber: frame n=1, frame n=0, native n=1.
    pub publish: Vec<HttpRow>,
    /// Burst and paced rows, for each pipeline and subscriber count.
    pub delivery: Vec<DeliveryRow>,
    /// The paced load's `delay()`, in ms.
    pub paced_delay_ms: u64,
    /// The paced load's target rate, events/s.
    pub paced_target_per_s: f64,
    /// The paced Lua script.
    pub paced_script: String,
    /// `wrk` load of the publish-cost rows.
    pub publish_load: String,
}

impl Events {
    /// The row for `pipeline`, `subscribers` and `mode`.
    pub fn row(&self, pipeline: &str, subscribers: usize, mode: Mode) -> Option<&DeliveryRow> {
        self.delivery
            .iter()
            .find(|r| r.pipeline == pipeline && r.subscribers == subscribers && r.mode == mode)
    }
}

/// How the events of a delivery row are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A fixed number of events, as fast as possible.
    Burst,
    /// One event per request at a fixed rate below capacity.
    Paced,
}

/// One pipeline, subscriber count and mode.
#[derive(Debug, Serialize)]
pub struct DeliveryRow {
    /// `frame` or `native`.
    pub pipeline: String,
    /// Subscribers installed.
    pub subscribers: usize,
    /// Burst or paced.
    pub mode: Mode,
    /// Burst: events per run; paced: the median published per run.
    pub events: u64,
    /// What reproduces one run.
    pub command: String,
    /// Every run.
    pub runs: Vec<DeliveryRun>,
    /// Per-field medians.
    pub median: Option<DeliveryRun>,
    /// Why it is missing, or a remark.
    pub note: Option<String>,
}

/// One run of a delivery row.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DeliveryRun {
    /// Events the log received.
    pub published: u64,
    /// Deliveries recorded, all subscribers together (`published` × subscribers when complete).
    pub delivered: u64,
    /// Publishing time, ms: burst, the bench's requests, first sent to last answered; paced,
    /// `wrk -d`.
    pub publish_ms: f64,
    /// Events published per second over `publish_ms`.
    pub published_per_s: f64,
    /// First send (publisher's clock) to last delivery (a subscriber's clock), ms.
    pub span_ms: f64,
    /// `delivered` / `span_ms`: deliveries per second, all subscribers together.
    pub delivered_per_s: f64,
    /// Publish-to-delivery latency over every delivery of the run, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Largest, µs.
    pub max_us: f64,
}

pub(crate) fn median_run(runs: &[DeliveryRun]) -> Option<DeliveryRun> {
    if runs.is_empty() {
        return None;
    }
    let of = |f: fn(&DeliveryRun) -> f64| median(runs.iter().map(f).collect());
    Some(DeliveryRun {
        published: of(|r| r.published as f64) as u64,
        delivered: of(|r| r.delivered as f64) as u64,
        publish_ms: of(|r| r.publish_ms),
        published_per_s: of(|r| r.published_per_s),
        span_ms: of(|r| r.span_ms),
        delivered_per_s: of(|r| r.delivered_per_s),
        p50_us: of(|r| r.p50_us),
        p99_us: of(|r| r.p99_us),
        max_us: of(|r| r.max_us),
    })
}

/// A running pipeline: a frame with `publisher` and N `subscriber`s, or the native one.
pub(crate) struct Pipeline {
    pipeline: &'static str,
    subscribers: usize,
    base: String,
    /// Where the number of events published so far is read.
    head: Head,
    server: Server,
    /// The pipeline's own NATS server on the JetStream backend (stopped with the pipeline).
    _nats: Option<Nats>,
}

/// Where a pipeline's event count is read: appends run after the answers, so the bench waits
/// for the bus itself to settle.
enum Head {
    /// The frame's `frame.db`, read-only.
    FrameDb(SqlitePool),
    /// The native embedded pipeline's `GET /log/head`.
    Served,
    /// The last sequences of the NATS server's streams.
    JetStream(Box<StreamHeads>),
}

enum Server {
    Frame(Served),
    Native(NativeServer),
    /// Frames someone else runs (a deployment behind a balancer): nothing to stop.
    Attached,
    /// A pipeline that could not start: its rows carry why.
    Failed(String),
}

/// Reads the streams of one NATS server through the JetStream API (`$JS.API.STREAM.*`), on a
/// runtime of its own so the client's connection keeps up between reads.
struct StreamHeads {
    client: async_nats::Client,
    rt: tokio::runtime::Runtime,
}

impl StreamHeads {
    fn connect(url: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("building a runtime for reading JetStream")?;
        let client = rt
            .block_on(async_nats::connect(url))
            .with_context(|| format!("connecting to NATS at {url}"))?;
        Ok(Self { client, rt })
    }

    /// The sum of the last sequences of every stream but object stores and KV buckets: the
    /// messages ever stored, which retention does not lower. The bench does not know (or need)
    /// the frame's stream names; its NATS server serves that frame only.
    fn head(&self) -> Result<u64> {
        self.rt.block_on(async {
            let ask = |subject: String| async move {
                let reply = self.client.request(subject.clone(), "".into()).await?;
                let body: Value = serde_json::from_slice(&reply.payload)
                    .with_context(|| format!("{subject}: not JSON"))?;
                if let Some(error) = body.get("error") {
                    bail!("{subject}: {error}");
                }
                anyhow::Ok(body)
            };
            let names = ask("$JS.API.STREAM.NAMES".into()).await?;
            let mut head = 0;
            for name in names
                .get("streams")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|n| !n.starts_with("OBJ_") && !n.starts_with("KV_"))
            {
                let info = ask(format!("$JS.API.STREAM.INFO.{name}")).await?;
                head += info
                    .pointer("/state/last_seq")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
            }
            Ok(head)
        })
    }
}

impl Pipeline {
    /// A pipeline that failed to start; `note` says why.
    fn failed(pipeline: &'static str, subscribers: usize, note: String) -> Self {
        Self {
            pipeline,
            subscribers,
            base: "http://127.0.0.1:PORT".into(),
            head: Head::Served,
            server: Server::Failed(note),
            _nats: None,
        }
    }

    /// Why the pipeline is not running, if it is not.
    pub(crate) fn broken(&self) -> Option<&str> {
        match &self.server {
            Server::Failed(note) => Some(note),
            _ => None,
        }
    }

    /// The frame's pipeline on `backend`, or a failed one that says why.
    pub(crate) fn frame(
        options: &Options,
        scratch: &Path,
        subscribers: usize,
        rt: &tokio::runtime::Runtime,
        backend: Backend,
    ) -> Self {
        Self::start_frame(options, scratch, subscribers, rt, backend)
            .unwrap_or_else(|e| Self::failed("frame", subscribers, format!("{e:#}")))
    }

    fn start_frame(
        options: &Options,
        scratch: &Path,
        subscribers: usize,
        rt: &tokio::runtime::Runtime,
        backend: Backend,
    ) -> Result<Self> {
        let mut shards = vec![(&test_shards::PUBLISHER, "publisher".to_string())];
        for i in 0..subscribers {
            shards.push((&test_shards::SUBSCRIBER, format!("subscriber{i}")));
        }
        let label = format!("{}{subscribers}", backend.label());
        let env = frame_env(options, scratch, &label, &shards)?;
        let nats = match backend {
            Backend::Embedded => None,
            Backend::JetStream => {
                let nats = start_nats()?;
                std::fs::write(
                    env.data.join("arkham.toml"),
                    format!(
                        "[events]\nbackend = \"nats\"\n\n[nats]\nurl = \"{}\"\n",
                        nats.url()
                    ),
                )?;
                Some(nats)
            }
        };
        let served = env.serve()?;
        served.until_ok("/api/publisher/health", Duration::from_secs(60))?;
        for i in 0..subscribers {
            served.until_ok(
                &format!("/api/subscriber{i}/stats"),
                Duration::from_secs(60),
            )?;
        }
        let head = match &nats {
            Some(nats) => Head::JetStream(Box::new(StreamHeads::connect(&nats.url())?)),
            None => {
                // The frame opens the log at start; WAL lets this reader look while it writes.
                let options = SqliteConnectOptions::new()
                    .filename(env.data.join("frame.db"))
                    .read_only(true);
                // The pool spawns its upkeep on the runtime it is made in.
                let _context = rt.enter();
                Head::FrameDb(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(Self {
            pipeline: "frame",
            subscribers,
            base: served.base.clone(),
            head,
            server: Server::Frame(served),
            _nats: nats,
        })
    }

    /// The frames serving `base` (the publisher and `subscribers` subscriber fixtures installed
    /// there), their events on the JetStream server at `nats_url`.
    pub(crate) fn attached(base: String, nats_url: &str, subscribers: usize) -> Result<Self> {
        Ok(Self {
            pipeline: "deployment",
            subscribers,
            base,
            head: Head::JetStream(Box::new(StreamHeads::connect(nats_url)?)),
            server: Server::Attached,
            _nats: None,
        })
    }

    /// The native pipeline on `backend`, or a failed one that says why.
    fn native(scratch: &Path, subscribers: usize, backend: Backend) -> Self {
        Self::start_native(scratch, subscribers, backend)
            .unwrap_or_else(|e| Self::failed("native", subscribers, format!("{e:#}")))
    }

    fn start_native(scratch: &Path, subscribers: usize, backend: Backend) -> Result<Self> {
        let (server, head, nats) = match backend {
            Backend::Embedded => {
                let dir = scratch.join(format!("native-events{subscribers}"));
                (native_events::start(&dir, subscribers)?, Head::Served, None)
            }
            Backend::JetStream => {
                let nats = start_nats()?;
                let dir = scratch.join(format!("native-jetstream{subscribers}"));
                let server = native_jetstream::start(&dir, &nats.url(), subscribers)?;
                let head = Head::JetStream(Box::new(StreamHeads::connect(&nats.url())?));
                (server, head, Some(nats))
            }
        };
        Ok(Self {
            pipeline: "native",
            subscribers,
            base: server.base.clone(),
            head,
            server: Server::Native(server),
            _nats: nats,
        })
    }

    pub(crate) fn label(&self) -> String {
        format!("{} with {} subscriber(s)", self.pipeline, self.subscribers)
    }

    pub(crate) fn pid(&self) -> u32 {
        match &self.server {
            Server::Frame(served) => served.pid(),
            Server::Native(_) | Server::Attached | Server::Failed(_) => std::process::id(),
        }
    }

    pub(crate) fn publish_url(&self, n: u64) -> String {
        format!("{}/api/publisher/publish?n={n}", self.base)
    }

    pub(crate) fn stop(self) {
        if let Server::Native(server) = self.server {
            server.stop();
        }
    }

    /// The id of the newest event in the log.
    fn head(&self, rt: &tokio::runtime::Runtime) -> Result<u64> {
        match &self.head {
            Head::FrameDb(db) => {
                let head: i64 = rt
                    .block_on(
                        // The highest id ever given (AUTOINCREMENT): retention deletes delivered
                        // events, so MAX(id) can go down.
                        sqlx::query_scalar(
                            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                        )
                        .fetch_one(db),
                    )
                    .context("reading the frame's event log")?;
                Ok(head as u64)
            }
            Head::Served => Ok(json_u64(&self.get("/log/head")?, "head")),
            Head::JetStream(streams) => streams.head(),
        }
    }

    fn get(&self, path: &str) -> Result<Value> {
        let (status, body) = frame::request(&self.base, "GET", path)?;
        if status != 200 {
            bail!("GET {path}: {status} {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: {body}"))
    }

    fn subscriber_paths(&self) -> impl Iterator<Item = String> {
        (0..self.subscribers).map(|i| format!("/api/subscriber{i}"))
    }

    /// Forgets what the subscribers recorded.
    fn reset(&self) -> Result<()> {
        for sub in self.subscriber_paths() {
            let (status, body) =
                frame::request(&self.base, "DELETE", &format!("{sub}/deliveries"))?;
            if status != 200 {
                bail!("DELETE {sub}/deliveries: {status} {body}");
            }
        }
        Ok(())
    }

    /// Waits until every subscriber holds every event appended after `before`; then reads what
    /// they recorded. `publish_ms` is how long publishing took.
    fn collect(
        &self,
        rt: &tokio::runtime::Runtime,
        before: u64,
        publish_ms: f64,
    ) -> Result<DeliveryRun> {
        let mut seen = (u64::MAX, u64::MAX);
        let mut progress = Instant::now();
        let (published, stats) = loop {
            let published = self.head(rt)?.saturating_sub(before);
            let stats: Vec<Value> = self
                .subscriber_paths()
                .map(|sub| self.get(&format!("{sub}/stats")))
                .collect::<Result<_>>()?;
            let delivered: u64 = stats.iter().map(|s| json_u64(s, "count")).sum();
            let done = published > 0
                && stats.iter().all(|s| json_u64(s, "count") == published)
                // Appends run after the responses: the head must have settled too.
                && seen.0 == published;
            if done {
                break (published, stats);
            }
            if (published, delivered) != seen {
                seen = (published, delivered);
                progress = Instant::now();
            } else if progress.elapsed() > STALL {
                bail!(
                    "{}: {delivered} deliveries of {published} events × {} subscribers, and no \
                     progress for {} s",
                    self.label(),
                    self.subscribers,
                    STALL.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut latencies = Vec::new();
        for sub in self.subscriber_paths() {
            let body = self.get(&format!("{sub}/latencies"))?;
            let list = body
                .get("latencies_us")
                .and_then(Value::as_array)
                .with_context(|| format!("{sub}/latencies: no latencies_us"))?;
            latencies.extend(list.iter().filter_map(Value::as_i64));
        }
        latencies.sort_unstable();
        let first_sent = stats
            .iter()
            .map(|s| json_u64(s, "first_sent_us"))
            .min()
            .unwrap_or(0);
        let last_delivered = stats
            .iter()
            .map(|s| json_u64(s, "last_delivered_us"))
            .max()
            .unwrap_or(0);
        let delivered = latencies.len() as u64;
        let span_us = last_delivered.saturating_sub(first_sent).max(1) as f64;
        Ok(DeliveryRun {
            published,
            delivered,
            publish_ms,
            published_per_s: published as f64 / (publish_ms / 1e3).max(1e-6),
            span_ms: span_us / 1e3,
            delivered_per_s: delivered as f64 / (span_us / 1e6),
            p50_us: percentile(&latencies, 0.50),
            p99_us: percentile(&latencies, 0.99),
            max_us: latencies.last().copied().unwrap_or(0) as f64,
        })
    }

    /// Publishes `events` in requests of [`BURST_PER_REQUEST`], one after the other.
    pub(crate) fn burst(&self, rt: &tokio::runtime::Runtime, events: u64) -> Result<DeliveryRun> {
        if let Some(why) = self.broken() {
            bail!("{why}");
        }
        self.reset()?;
        let before = self.head(rt)?;
        let path = format!("/api/publisher/publish?n={BURST_PER_REQUEST}");
        let started = Instant::now();
        for _ in 0..events.div_ceil(BURST_PER_REQUEST) {
            let (status, body) = frame::request(&self.base, "POST", &path)?;
            if status != 200 {
                bail!("POST {path}: {status} {body}");
            }
        }
        let publish_ms = started.elapsed().as_secs_f64() * 1e3;
        self.collect(rt, before, publish_ms)
    }

    /// `wrk -t1 -c1` with the paced script for `seconds`.
    pub(crate) fn paced(
        &self,
        rt: &tokio::runtime::Runtime,
        seconds: u32,
        script: &Path,
    ) -> Result<DeliveryRun> {
        if let Some(why) = self.broken() {
            bail!("{why}");
        }
        self.reset()?;
        let before = self.head(rt)?;
        let result = wrk::run(paced_load(seconds), &self.publish_url(1), Some(script))?;
        if result.errors > 0 {
            bail!("{} of the paced requests failed", result.errors);
        }
        self.collect(rt, before, f64::from(seconds) * 1e3)
    }
}

/// A NATS server with JetStream for one pipeline, or why there is none.
fn start_nats() -> Result<Nats> {
    Nats::start().context(
        "nats-server is not installed (`scripts/setup --test` installs it); the JetStream rows \
         need it",
    )
}

pub(crate) fn paced_load(seconds: u32) -> Load {
    Load {
        threads: 1,
        connections: 1,
        seconds,
    }
}

fn json_u64(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// Runs the scenario on the embedded log; pipelines that fail leave a note on their rows.
pub fn run(options: &Options, scratch: &Path, load: Load) -> Result<Events> {
    run_on(options, scratch, load, Backend::Embedded)
}

/// Runs the scenario on `backend`; pipelines that fail leave a note on their rows.
pub fn run_on(options: &Options, scratch: &Path, load: Load, backend: Backend) -> Result<Events> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a runtime for reading frame.db")?;
    let label = backend.label();
    let post_lua = format!("target/bench/{label}-post.lua");
    let paced_lua = format!("target/bench/{label}-paced.lua");
    let mut events = Events {
        backend,
        publish_load: load.command("URL", Some(&post_lua)),
        ..Events::default()
    };

    eprintln!("[bench]   {label}: publish cost, no subscriber");
    let post = options.out.join(format!("{label}-post.lua"));
    std::fs::write(&post, POST_LUA)?;
    let alone = Pipeline::frame(options, scratch, 0, &rt, backend);
    let native_alone = Pipeline::native(scratch, 0, backend);
    let targets = [
        (
            &alone,
            Target {
                name: "frame, publish 1 event per request",
                url: alone.publish_url(1),
                pid: alone.pid(),
            },
        ),
        (
            &alone,
            Target {
                name: "frame, same request publishing nothing (n=0)",
                url: alone.publish_url(0),
                pid: alone.pid(),
            },
        ),
        (
            &native_alone,
            Target {
                name: "native, publish 1 event per request",
                url: native_alone.publish_url(1),
                pid: native_alone.pid(),
            },
        ),
    ];
    let (running, broken): (Vec<_>, Vec<_>) =
        targets.into_iter().partition(|(p, _)| p.broken().is_none());
    let running: Vec<Target> = running.into_iter().map(|(_, t)| t).collect();
    events.publish = measure(&running, load, Some(&post), options.runs, Some(&post_lua));
    for (p, target) in broken {
        events.publish.push(HttpRow {
            target: target.name.into(),
            command: load.command(&target.url, Some(&post_lua)),
            runs: Vec::new(),
            median: None,
            cpu_us_per_request: None,
            switches_per_request: None,
            note: p.broken().map(|why| format!("not measured: {why}")),
        });
    }
    alone.stop();
    native_alone.stop();

    let mut pipelines = Vec::new();
    for subscribers in [1, 3] {
        pipelines.push(Pipeline::frame(options, scratch, subscribers, &rt, backend));
        pipelines.push(Pipeline::native(scratch, subscribers, backend));
    }

    eprintln!("[bench]   {label}: bursts, 1 and 3 subscribers");
    let mut warm_ups = Vec::new();
    for p in &pipelines {
        let warm = p
            .burst(&rt, WARM_UP_EVENTS[0])
            .and_then(|_| p.burst(&rt, WARM_UP_EVENTS[1]));
        warm_ups.push(warm);
    }
    // One size per subscriber count, from the frame's warm-up, so the frame and the native
    // pipeline deliver the same events (and grow their WAL files alike). A frame that did not
    // start leaves the native pipeline to size its own.
    let warm_up_of = |pipeline: &str, subscribers: usize| {
        pipelines
            .iter()
            .zip(&warm_ups)
            .find(|(p, _)| p.pipeline == pipeline && p.subscribers == subscribers)
    };
    let size_for = |subscribers: usize| -> Result<u64, String> {
        let sizing = match warm_up_of("frame", subscribers) {
            Some((frame, _)) if frame.broken().is_some() => warm_up_of("native", subscribers),
            frame => frame,
        }
        .map(|(_, warm)| warm)
        .ok_or("no frame pipeline to size the burst from")?
        .as_ref()
        .map_err(|e| format!("the frame's warm-up failed: {e:#}"))?;
        let per_subscriber = sizing.delivered_per_s / subscribers as f64;
        let wanted = (per_subscriber * f64::from(options.seconds)) as u64;
        Ok((wanted.clamp(BURST_MIN, BURST_MAX) / BURST_PER_REQUEST).max(1) * BURST_PER_REQUEST)
    };
    let sizes: Vec<Result<u64, String>> = pipelines
        .iter()
        .zip(&warm_ups)
        .map(|(p, warm)| match warm {
            Err(e) => Err(format!("warm-up failed: {e:#}")),
            Ok(_) => size_for(p.subscribers),
        })
        .collect();
    let mut bursts: Vec<DeliveryRow> = pipelines
        .iter()
        .zip(&sizes)
        .map(|(p, size)| {
            let events = *size.as_ref().unwrap_or(&0);
            DeliveryRow {
                pipeline: p.pipeline.into(),
                subscribers: p.subscribers,
                mode: Mode::Burst,
                events,
                command: format!(
                    "for i in $(seq {}); do curl -s -X POST '{}'; done; then GET {}/api/subscriberN/stats \
                     until every subscriber holds them, and /api/subscriberN/latencies",
                    events / BURST_PER_REQUEST,
                    p.publish_url(BURST_PER_REQUEST),
                    p.base
                ),
                runs: Vec::new(),
                median: None,
                note: size.as_ref().err().cloned(),
            }
        })
        .collect();
    for run in 0..options.runs {
        for (p, row) in pipelines.iter().zip(bursts.iter_mut()) {
            if row.note.is_some() {
                continue;
            }
            eprintln!(
                "[bench]   run {}/{}: burst, {}",
                run + 1,
                options.runs,
                p.label()
            );
            match p.burst(&rt, row.events) {
                Ok(result) => row.runs.push(result),
                Err(e) => row.note = Some(format!("{e:#}")),
            }
        }
    }
    for row in &mut bursts {
        row.median = median_run(&row.runs);
    }

    // Half the frame's per-subscriber capacity with 3 subscribers, the slowest configuration
    // (the native pipeline's when the frame did not start).
    let frame_started = pipelines
        .iter()
        .any(|p| p.pipeline == "frame" && p.broken().is_none());
    let pace_from = if frame_started { "frame" } else { "native" };
    let capacity = bursts
        .iter()
        .find(|r| r.pipeline == pace_from && r.subscribers == 3)
        .and_then(|r| r.median)
        .map(|m| m.delivered_per_s / 3.0);
    let unpaced = capacity
        .is_none()
        .then_some("not measured: no burst capacity of the frame with 3 subscribers to pace from");
    let target = (capacity.unwrap_or(10.0) * PACED_FRACTION).clamp(5.0, 1000.0);
    events.paced_delay_ms = (1000.0 / target).round().max(1.0) as u64;
    events.paced_target_per_s = target;
    events.paced_script = format!(
        "wrk.method = \"POST\"\nfunction delay() return {} end\n",
        events.paced_delay_ms
    );
    let paced_script = options.out.join(format!("{label}-paced.lua"));
    std::fs::write(&paced_script, &events.paced_script)?;

    eprintln!(
        "[bench]   {label}: paced at {} ms between requests, 1 and 3 subscribers",
        events.paced_delay_ms
    );
    let mut paced: Vec<DeliveryRow> = pipelines
        .iter()
        .map(|p| DeliveryRow {
            pipeline: p.pipeline.into(),
            subscribers: p.subscribers,
            mode: Mode::Paced,
            events: 0,
            command: paced_load(options.seconds).command(&p.publish_url(1), Some(&paced_lua)),
            runs: Vec::new(),
            median: None,
            note: unpaced.map(str::to_string),
        })
        .collect();
    for run in 0..options.runs {
        for (p, row) in pipelines.iter().zip(paced.iter_mut()) {
            if row.note.is_some() {
                continue;
            }
            eprintln!(
                "[bench]   run {}/{}: paced, {}",
                run + 1,
                options.runs,
                p.label()
            );
            match p.paced(&rt, options.seconds, &paced_script) {
                Ok(result) => row.runs.push(result),
                Err(e) => row.note = Some(format!("{e:#}")),
            }
        }
    }
    for row in &mut paced {
        row.median = median_run(&row.runs);
        row.events = row.median.map_or(0, |m| m.published);
    }
    for p in pipelines {
        p.stop();
    }
    events.delivery = bursts.into_iter().chain(paced).collect();
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arkham_frame::config::FrameConfig;
    use arkham_frame::datadir::DataDir;
    use arkham_frame::runtime::Runtime;
    use arkham_frame::shards::install;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The fixtures' contract, through an in-process frame: what `publisher` publishes reaches
    /// every `subscriber`, which serves back one latency per delivery.
    #[test]
    fn a_burst_through_the_frame_is_delivered_and_timed() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        std::fs::create_dir_all(data.root()).unwrap();
        let installer = Runtime::new(FrameConfig::default().limits, data.compiled_cache()).unwrap();
        let shards = [
            (&test_shards::PUBLISHER, "publisher"),
            (&test_shards::SUBSCRIBER, "subscriber0"),
            (&test_shards::SUBSCRIBER, "subscriber1"),
        ];
        for (guest, name) in shards {
            let file = frame::package(guest, name, dir.path()).unwrap();
            let bytes = std::fs::read(&file).unwrap();
            install::install(&data, &installer, &bytes, name).unwrap();
        }
        let log = data.event_log();
        let server = NativeServer::start_async(move || async move {
            Ok(arkham_frame::http::app(
                arkham_frame::frame::Frame::open(data).await?,
            ))
        })
        .unwrap();
        let rt = runtime();
        let frame_db = {
            let _context = rt.enter();
            SqlitePoolOptions::new()
                .connect_lazy_with(SqliteConnectOptions::new().filename(log).read_only(true))
        };
        let pipeline = Pipeline {
            pipeline: "frame",
            subscribers: 2,
            base: server.base.clone(),
            head: Head::FrameDb(frame_db),
            server: Server::Native(server),
            _nats: None,
        };
        let (status, body) =
            frame::request(&pipeline.base, "POST", "/api/publisher/publish?n=101").unwrap();
        assert_eq!(status, 400, "{body}");
        let run = pipeline.burst(&rt, 2 * BURST_PER_REQUEST).unwrap();
        assert_eq!(run.published, 2 * BURST_PER_REQUEST);
        assert_eq!(run.delivered, 4 * BURST_PER_REQUEST);
        assert!(run.p50_us > 0.0 && run.p99_us >= run.p50_us && run.max_us >= run.p99_us);
        assert!(run.delivered_per_s > 0.0 && run.span_ms > 0.0);
        // A second run sees only its own deliveries.
        let again = pipeline.burst(&rt, BURST_PER_REQUEST).unwrap();
        assert_eq!(again.delivered, 2 * BURST_PER_REQUEST);
        pipeline.stop();
    }

    #[test]
    fn the_native_pipeline_delivers_a_burst_to_every_subscriber() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::native(dir.path(), 3, Backend::Embedded);
        let rt = runtime();
        let run = pipeline.burst(&rt, BURST_PER_REQUEST).unwrap();
        assert_eq!(run.published, BURST_PER_REQUEST);
        assert_eq!(run.delivered, 3 * BURST_PER_REQUEST);
        assert!(run.p50_us > 0.0);
        pipeline.stop();
    }

    #[test]
    fn the_native_jetstream_pipeline_delivers_a_burst_to_every_subscriber() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::native(dir.path(), 3, Backend::JetStream);
        if pipeline
            .broken()
            .is_some_and(|why| why.contains("not installed"))
        {
            return;
        }
        let rt = runtime();
        let run = pipeline.burst(&rt, BURST_PER_REQUEST).unwrap();
        assert_eq!(run.published, BURST_PER_REQUEST);
        assert_eq!(run.delivered, 3 * BURST_PER_REQUEST);
        assert!(run.p50_us > 0.0);
        // The second burst is counted from the stream's head, not from zero.
        let again = pipeline.burst(&rt, BURST_PER_REQUEST).unwrap();
        assert_eq!(again.published, BURST_PER_REQUEST);
        pipeline.stop();
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[7], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
