//! The report's sections for (5) `arkham shard add`, (6) events and (8) the engines.

use crate::add::{self, Add};
use crate::engines::{self, Engines, FRAME, NATIVE_OBJECTS, NATIVE_PACKETS, TARGET_RATIO};
use crate::events::{BURST_PER_REQUEST, DeliveryRow, Events, Mode, POST_LUA};
use crate::languages::Languages;
use crate::scenarios::{HttpRow, median};
use crate::wrk::WrkResult;
use std::fmt::Write as _;

fn ms(value: f64) -> String {
    format!("{value:.1} ms")
}

fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}×", a / b),
        _ => "—".into(),
    }
}

/// Requests answered 2xx per second.
fn ok_rps(run: &WrkResult) -> f64 {
    if run.requests == 0 {
        return 0.0;
    }
    run.rps * run.requests.saturating_sub(run.errors) as f64 / run.requests as f64
}

/// `## (5) arkham shard add` …
pub fn transfer(md: &mut String, transfer: Option<&crate::transfer::Transfer>) {
    let _ = writeln!(
        md,
        "\n## (5b) Peak RSS of `arkham shard push` and `arkham shard add` by component size\n"
    );
    let Some(transfer) = transfer else {
        let _ = writeln!(md, "not measured (see \"Not measured\" below)");
        return;
    };
    let _ = writeln!(
        md,
        "The minimal shard padded with a custom section to 1 MiB and 50 MiB, pushed with `arkham \
         shard push FILE run<N>/pad<S>` to `docker-registry` ({}) on 127.0.0.1 (a repository per \
         run, so every push uploads the layer) and added with `arkham shard add run<N>/pad<S>@0.1 \
         --yes` into a new data dir with an empty compiled cache; {} runs each. Peak RSS is the \
         `arkham` process's `ru_maxrss` (GNU time `%M`). Floor: `arkham shard list`, {}.\n",
        transfer.registry,
        crate::transfer::RUNS,
        transfer
            .floor_kib
            .map_or("—".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
    );
    let _ = writeln!(
        md,
        "| command | component | peak RSS (median) | above the floor | runs (MiB) |\n|---|---:|---:|---:|---|"
    );
    for row in &transfer.rows {
        let mib = |k: u64| k as f64 / 1024.0;
        let runs: Vec<String> = row
            .runs_kib
            .iter()
            .map(|&k| format!("{:.1}", mib(k)))
            .collect();
        let _ = writeln!(
            md,
            "| `shard {}` | {:.0} MiB | {:.1} MiB | {} | {} |",
            row.command,
            row.component_bytes as f64 / 1048576.0,
            mib(row.median_kib),
            transfer.floor_kib.map_or("—".into(), |f| format!(
                "+{:.1} MiB",
                mib(row.median_kib.saturating_sub(f))
            )),
            runs.join(", "),
        );
    }
}

pub fn add(md: &mut String, add: Option<&Add>) {
    let _ = writeln!(
        md,
        "\n## (5) `arkham shard add minimal@0.1 --yes` from a loopback registry\n"
    );
    let Some(add) = add else {
        let _ = writeln!(md, "not measured (see \"Not measured\" below)");
        return;
    };
    let _ = writeln!(
        md,
        "The minimal component ({:.0} KiB packaged) pushed with `arkham shard push FILE` to Debian's \
         `docker-registry` ({}) on 127.0.0.1 and to an OCI layout folder, then added {} times per \
         row, rows interleaved. Every run gets a new empty data dir (so the blob store is empty \
         and everything is downloaded); \"empty\" cache = a new empty `ARKHAM_CACHE_DIR` (the add \
         precompiles with Cranelift), \"warm\" = a cache that already holds the compiled \
         component (the add loads it). Wall time from spawn to exit of the `arkham` process.\n",
        add.component_bytes as f64 / 1024.0,
        if add.registry.is_empty() {
            "not installed"
        } else {
            &add.registry
        },
        add::RUNS
    );
    let _ = writeln!(
        md,
        "| source | compiled cache | median | runs (ms) | vs packaged file, same cache |\n|---|---|---:|---|---:|"
    );
    let median_of = |name: &str| add.row(name).and_then(|r| r.median_ms);
    for row in &add.rows {
        let (cache, baseline) = match row.name.as_str() {
            "registry" | "layout" | "file" => ("empty", median_of("file")),
            "registry warm" | "layout warm" | "file warm" => ("warm", median_of("file warm")),
            _ => ("empty", None),
        };
        let runs: Vec<String> = row.runs_ms.iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(
            md,
            "| {} | {cache} | {} | {} | {} |",
            row.description,
            row.median_ms
                .map_or_else(|| row.note.clone().unwrap_or("—".into()), ms),
            runs.join(", "),
            ratio(row.median_ms, baseline),
        );
    }
    let diff = |a: &str, b: &str| median_of(a).zip(median_of(b)).map(|(a, b)| ms(a - b));
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    let _ = writeln!(
        md,
        "\nSplit (differences of medians): precompile {} (registry, empty − warm cache; {} from \
         the file); the registry's share {} with an empty cache and {} with a warm one \
         (registry − file: resolve the `0.1` requirement from the tag list, fetch manifest, config \
         and layer, verify digests and sizes, write `arkham.lock`); resolve + pull alone {} \
         (`shard inspect` − `shard list`), of which {} is the registry's over the layout \
         folder's (HTTP client set-up, which loads the system's TLS roots even for plain HTTP, \
         and the round trips).\n",
        or_dash(diff("registry", "registry warm")),
        or_dash(diff("file", "file warm")),
        or_dash(diff("registry", "file")),
        or_dash(diff("registry warm", "file warm")),
        or_dash(diff("inspect registry", "floor")),
        or_dash(diff("inspect registry", "inspect layout")),
    );
    let _ = writeln!(md, "Commands:\n");
    for row in &add.rows {
        let _ = writeln!(md, "- {}: `{}`", row.name, row.command);
    }
}

fn delivery_runs(row: &DeliveryRow) -> String {
    let runs: Vec<String> = row
        .runs
        .iter()
        .map(|r| format!("{:.0}/s p99 {}", r.delivered_per_s, latency(r.p99_us)))
        .collect();
    runs.join("; ")
}

/// `## (6) Events` …
pub fn events(md: &mut String, events: Option<&Events>) {
    let _ = writeln!(
        md,
        "\n## (6) Events: publish to delivery, 1 and 3 subscribers\n"
    );
    let Some(ev) = events else {
        let _ = writeln!(md, "not measured (see \"Not measured\" below)");
        return;
    };
    let _ = writeln!(
        md,
        "Fixtures (test-shards/guests): `publisher`, whose `POST /publish?n=K` publishes K \
         events `publisher.tick.sent` with `{{\"sent_us\":T}}` in the payload, and `subscriber`, \
         installed as `subscriber0`…`subscriber2`, which records per event its id, `sent_us` and \
         its own `delivered_us` with one INSERT into its database, and serves them back \
         (`/stats`, `/latencies`).\n\n\
         **Clock and latency.** T is the WASI wall clock (`wasi:clocks/wall-clock`, which \
         wasmtime-wasi reads from the host's `CLOCK_REALTIME`) in µs, read by the publisher just \
         before each `publish`; `delivered_us` is the same clock read first thing in the \
         subscriber's event handler. Both run in the same process on the same host clock, so \
         there is no skew between them. Latency = delivered − sent, over every delivery to every \
         subscriber: the rest of the publishing request, the append to the event log (one \
         durable SQLite commit, after the response has gone out), the dispatcher's wake-up and \
         read, and a fresh instance of the subscriber up to its handler's first line; not the \
         subscriber's own INSERT. Throughput = deliveries (all subscribers) ÷ (last delivery − \
         first send).\n\n\
         **Native baseline** (in `arkham-bench`, same run): the frame's own `EventLog` and \
         `Dispatcher` (same code, same `frame.db` settings) fed by an axum route that publishes \
         the same payloads in the frame's order (response first, then the append, at most 1000 \
         pending), and native subscribers that make the same INSERT into a SQLite file with the \
         settings the frame gives shard databases. So frame ÷ native is what the shard boundary \
         costs: an instance per request and per delivery, and database calls through the \
         sandbox. Both deliver to one subscriber at a time, in order, with one durable cursor \
         update per event.\n"
    );

    let _ = writeln!(md, "### Publish cost, no subscriber\n");
    let _ = writeln!(
        md,
        "`{}` (Lua: `{}`) after a 3 s warm-up, runs interleaved. The frame answers before it \
         appends the request's events, and the instance slot stays taken until the append is \
         durable: once appends fall behind, pending ones fill the shard's 1000 slots and further \
         requests get 503 (\"at its limit of concurrent instances\"). So what counts is the \
         rate of 2xx answers: every 2xx is an event appended. Latencies mix 2xx and 503s.\n",
        ev.publish_load,
        POST_LUA.trim()
    );
    event_tables(md, ev);
}

/// The tables of an events run, whatever its bus: publish cost, bursts, paced, every run and the
/// commands.
fn event_tables(md: &mut String, ev: &Events) {
    let _ = writeln!(
        md,
        "| request | 2xx/s (= events/s logged) | answered 503 | p50 | p99 | server CPU per request | 2xx/s vs frame n=0 | 2xx/s vs native |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let ok = |row: &HttpRow| -> Option<f64> {
        (!row.runs.is_empty()).then(|| median(row.runs.iter().map(ok_rps).collect()))
    };
    let nothing = ev
        .publish
        .iter()
        .find(|r| r.target.contains("n=0"))
        .and_then(ok);
    let native = ev
        .publish
        .iter()
        .find(|r| r.target.starts_with("native"))
        .and_then(ok);
    for row in &ev.publish {
        let Some(m) = row.median else {
            let _ = writeln!(
                md,
                "| {} | {} | | | | | | |",
                row.target,
                row.note.as_deref().unwrap_or("failed")
            );
            continue;
        };
        let shed = if m.requests == 0 {
            0.0
        } else {
            m.errors as f64 * 100.0 / m.requests as f64
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {shed:.1} % | {} | {} | {} | {} | {} |",
            row.target,
            ok(row).unwrap_or(0.0),
            latency(m.p50_us),
            latency(m.p99_us),
            row.cpu_us_per_request
                .map_or("—".into(), |c| format!("{c:.1} µs")),
            ratio(ok(row), nothing),
            ratio(ok(row), native),
        );
    }

    let _ = writeln!(md, "\n### Delivery capacity: a burst\n");
    let _ = writeln!(
        md,
        "A fixed number of events published by sequential requests of {BURST_PER_REQUEST}, then \
         delivered; the size comes from two warm-up bursts on the frame (100 and 300 events) so \
         that delivery takes about `--seconds`, and the native pipeline gets the same size. \
         Latencies here are mostly queueing (an event waits for those before it), so they grow \
         with the burst; the paced table below has the pipeline's own latency.\n"
    );
    let _ = writeln!(
        md,
        "| subscribers | pipeline | events published | published in | first send → last delivery | deliveries/s (all subscribers) | per subscriber | frame ÷ native | latency p50 / p99 |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let rate = |p: &str, s: usize, mode: Mode| {
        ev.row(p, s, mode)
            .and_then(|r| r.median)
            .map(|m| m.delivered_per_s)
    };
    for subscribers in [1, 3] {
        for pipeline in ["frame", "native"] {
            let Some(row) = ev.row(pipeline, subscribers, Mode::Burst) else {
                continue;
            };
            let Some(m) = row.median else {
                let _ = writeln!(
                    md,
                    "| {subscribers} | {pipeline} | {} | {} | | | | | |",
                    row.events,
                    row.note.as_deref().unwrap_or("failed")
                );
                continue;
            };
            let versus = if pipeline == "frame" {
                ratio(
                    rate("frame", subscribers, Mode::Burst),
                    rate("native", subscribers, Mode::Burst),
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {subscribers} | {pipeline} | {} | {} | {} | {:.0} | {:.0} | {versus} | {} / {} |",
                row.events,
                ms(m.publish_ms),
                ms(m.span_ms),
                m.delivered_per_s,
                m.delivered_per_s / subscribers as f64,
                latency(m.p50_us),
                latency(m.p99_us),
            );
        }
    }

    let _ = writeln!(md, "\n### Latency below capacity: paced publishing\n");
    let _ = writeln!(
        md,
        "One event per request, `wrk -t1 -c1` with `delay()` {} ms between requests: 1000 ÷ \
         {:.0} events/s, half the frame's per-subscriber capacity with 3 subscribers (burst \
         above), rounded; the request's own time makes the rate a little lower (column 3). The \
         same script for every row, so no queue should build up. Lua: `{}`.\n",
        ev.paced_delay_ms,
        ev.paced_target_per_s,
        ev.paced_script.trim().replace('\n', " ")
    );
    let _ = writeln!(
        md,
        "| subscribers | pipeline | events/s published | deliveries | latency p50 | p99 | max | frame ÷ native p50 / p99 |\n|---:|---|---:|---:|---:|---:|---:|---:|"
    );
    let paced = |p: &str, s: usize| ev.row(p, s, Mode::Paced).and_then(|r| r.median);
    for subscribers in [1, 3] {
        for pipeline in ["frame", "native"] {
            let Some(row) = ev.row(pipeline, subscribers, Mode::Paced) else {
                continue;
            };
            let Some(m) = row.median else {
                let _ = writeln!(
                    md,
                    "| {subscribers} | {pipeline} | {} | | | | | |",
                    row.note.as_deref().unwrap_or("failed")
                );
                continue;
            };
            let versus = if pipeline == "frame" {
                let f = paced("frame", subscribers);
                let n = paced("native", subscribers);
                format!(
                    "{} / {}",
                    ratio(f.map(|m| m.p50_us), n.map(|m| m.p50_us)),
                    ratio(f.map(|m| m.p99_us), n.map(|m| m.p99_us))
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {subscribers} | {pipeline} | {:.0} | {} | {} | {} | {} | {versus} |",
                m.published_per_s,
                m.delivered,
                latency(m.p50_us),
                latency(m.p99_us),
                latency(m.max_us),
            );
        }
    }

    let _ = writeln!(
        md,
        "\nEvery run (deliveries/s all subscribers, latency p99):\n"
    );
    for row in &ev.delivery {
        let _ = writeln!(
            md,
            "- {} with {} subscriber(s), {:?}: {}{}",
            row.pipeline,
            row.subscribers,
            row.mode,
            delivery_runs(row),
            row.note
                .as_ref()
                .map(|n| format!(" — {n}"))
                .unwrap_or_default()
        );
    }
    for row in &ev.publish {
        let runs: Vec<String> = row
            .runs
            .iter()
            .map(|r| format!("{:.0}", ok_rps(r)))
            .collect();
        let _ = writeln!(md, "- {}: 2xx/s [{}]", row.target, runs.join(", "));
    }

    let _ = writeln!(
        md,
        "\nCommands: frames as in \"Commands (every row)\" below, with `publisher` and \
         `subscriber0`…`subscriberN` installed (`target/bench/scratch/{}{{0,1,3}}`); the \
         native pipeline serves the same paths.\n",
        ev.backend.label()
    );
    for row in &ev.publish {
        let _ = writeln!(md, "- {}: `{}`", row.target, row.command);
    }
    for row in &ev.delivery {
        let _ = writeln!(
            md,
            "- {} with {} subscriber(s), {:?}: `{}`",
            row.pipeline, row.subscribers, row.mode, row.command
        );
    }
}

/// A row's 2xx/s (median over its runs).
fn ok_median(row: Option<&HttpRow>) -> Option<f64> {
    row.filter(|r| !r.runs.is_empty())
        .map(|r| median(r.runs.iter().map(ok_rps).collect()))
}

fn verdict(ratio: Option<f64>) -> &'static str {
    match ratio {
        Some(r) if r >= TARGET_RATIO => "met",
        Some(_) => "**missed**",
        None => "not measured",
    }
}

/// `| target | 2xx/s | non-2xx | p50 | p99 | CPU |` rows of `rows`, each with frame ÷ native
/// (2xx/s) on the frame's row and `extra(2xx/s)` in the last column.
fn http_table(md: &mut String, rows: &[HttpRow], native: &str, extra: &dyn Fn(f64) -> String) {
    let find = |name: &str| rows.iter().find(|r| r.target == name);
    let frame_ratio = ok_median(find(FRAME))
        .zip(ok_median(find(native)))
        .filter(|(_, n)| *n > 0.0)
        .map(|(f, n)| f / n);
    for row in rows {
        let Some(m) = row.median else {
            let _ = writeln!(
                md,
                "| {} | {} | | | | | | |",
                row.target,
                row.note.as_deref().unwrap_or("failed")
            );
            continue;
        };
        let ok = ok_median(Some(row)).unwrap_or(0.0);
        let versus = if row.target == FRAME {
            frame_ratio.map_or("—".into(), |r| format!("{r:.3}×"))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {ok:.0} | {} | {} | {} | {} | {versus} | {} |",
            row.target,
            m.errors,
            latency(m.p50_us),
            latency(m.p99_us),
            row.cpu_us_per_request
                .map_or("—".into(), |c| format!("{c:.1} µs")),
            extra(ok),
        );
    }
}

/// `## (8) Engines` …
pub fn engines(md: &mut String, engines: Option<&Engines>) {
    let _ = writeln!(
        md,
        "\n## (8) Engines: the frame on PostgreSQL and NATS JetStream vs native (issue 12)\n"
    );
    let Some(en) = engines else {
        let _ = writeln!(md, "not measured (see \"Not measured\" below)");
        return;
    };
    let _ = writeln!(
        md,
        "Throw-away engines of `test_shards::engines`, on loopback, started by the bench: one \
         PostgreSQL cluster with `fsync=on` (a database each for the frame and the native \
         server, as the superuser), and a `nats-server -js` per part (per pipeline for events) \
         with JetStream's file storage and its defaults otherwise. Native servers run inside \
         `arkham-bench` on a 2-worker Tokio runtime, on the same engines. Ratios are frame ÷ \
         native of the 2xx rate, same run, targets interleaved; the issue asks ≥ \
         {TARGET_RATIO}× for packets and events. The frames' `arkham.toml` (passwords elided):\n"
    );
    for config in &en.configs {
        let _ = writeln!(md, "```toml\n{}```\n", config);
    }

    let _ = writeln!(md, "### Packets create + get on PostgreSQL + JetStream\n");
    let _ = writeln!(
        md,
        "The packets scenario's load and Lua (POST a packet, GET the last one, alternating). \
         Native: axum + sqlx on PostgreSQL (the packets table, `$n` placeholders, a pool of the \
         frame's default 8 connections), and per create the `packets.packet.created` event \
         published to a JetStream stream with `Nats-Msg-Id` and its PubAck awaited before the \
         answer, as the frame does for every create.\n"
    );
    let header =
        "| target | 2xx/s | non-2xx | p50 | p99 | server CPU per request | frame ÷ native |";
    let _ = writeln!(md, "{header} |\n|---|---:|---:|---:|---:|---:|---:|---|");
    http_table(md, &en.packets, NATIVE_PACKETS, &|_| String::new());

    let _ = writeln!(md, "\n### Events on JetStream: publish to delivery\n");
    match &en.events {
        None => {
            let _ = writeln!(md, "not measured (see \"Not measured\" below)");
        }
        Some(ev) => {
            let _ = writeln!(
                md,
                "The events scenario of (6) with `[events] backend = \"nats\"` in the frame's \
                 `arkham.toml` (the same fixtures, bursts, paced load and clocks). Native: an \
                 axum route that publishes like `publisher` (every event with `Nats-Msg-Id`, all \
                 of a request's PubAcks awaited before the answer) and one durable pull consumer \
                 per subscriber (explicit ack, `max_ack_pending` 1), whose handler reads the \
                 clock, makes the `subscriber` fixture's INSERT into a SQLite file with the \
                 frame's shard settings, then acks. Events published are counted from the NATS \
                 server's streams (the sum of their last sequences, object stores and KV \
                 buckets aside). Publish cost: `{}` (Lua: `{}`), every 2xx an event stored.\n",
                ev.publish_load,
                POST_LUA.trim()
            );
            event_tables(md, ev);
        }
    }

    let _ = writeln!(md, "\n### Storage put + get on the NATS object store\n");
    let _ = writeln!(
        md,
        "The `trapper` fixture's `PUT /api/trapper/blob/{{key}}` (stores the body, answers the \
         object's info) and `GET` (answers the content), alternating per `wrk` thread over {} \
         keys of its own; the frame's `[storage]` quota is raised to 4 GiB so that only the \
         engine bounds the rows. Native: the same routes with `async-nats`' object store, one \
         bucket, content type kept in the object's headers.\n",
        engines::KEYS_PER_THREAD
    );
    for objects in &en.storage {
        let size = engines::size_label(objects.bytes);
        let _ = writeln!(md, "{size} objects:\n");
        let _ = writeln!(
            md,
            "{header} MiB/s moved |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        let bytes = objects.bytes as f64;
        http_table(md, &objects.rows, NATIVE_OBJECTS, &|ok| {
            format!("{:.1}", ok * bytes / f64::from(1 << 20))
        });
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "### Targets of issue 12\n");
    let _ = writeln!(md, "| target | frame ÷ native | verdict |\n|---|---:|---|");
    let http_ratio = |rows: &[HttpRow], native: &str| {
        let find = |name: &str| rows.iter().find(|r| r.target == name);
        ok_median(find(FRAME))
            .zip(ok_median(find(native)))
            .filter(|(_, n)| *n > 0.0)
            .map(|(f, n)| f / n)
    };
    let shown = |r: Option<f64>| r.map_or("—".into(), |r| format!("{r:.2}×"));
    let packets = http_ratio(&en.packets, NATIVE_PACKETS);
    let _ = writeln!(
        md,
        "| packets create+get on PostgreSQL + JetStream ≥ {TARGET_RATIO}× native | {} | {} |",
        shown(packets),
        verdict(packets)
    );
    for subscribers in [1, 3] {
        let rate = |p: &str| {
            en.events
                .as_ref()
                .and_then(|ev| ev.row(p, subscribers, Mode::Burst))
                .and_then(|r| r.median)
                .map(|m| m.delivered_per_s)
        };
        let events = rate("frame")
            .zip(rate("native"))
            .filter(|(_, n)| *n > 0.0)
            .map(|(f, n)| f / n);
        let _ = writeln!(
            md,
            "| events on JetStream, {subscribers} subscriber(s), deliveries/s ≥ {TARGET_RATIO}× native | {} | {} |",
            shown(events),
            verdict(events)
        );
    }
    for objects in &en.storage {
        let r = http_ratio(&objects.rows, NATIVE_OBJECTS);
        let _ = writeln!(
            md,
            "| storage put+get, {} objects (no target; reported) | {} | — |",
            engines::size_label(objects.bytes),
            shown(r)
        );
    }

    let _ = writeln!(md, "\nEvery run (2xx/s) and commands:\n");
    let storage = en.storage.iter().flat_map(|o| {
        o.rows
            .iter()
            .map(move |r| (format!("storage {}", engines::size_label(o.bytes)), r))
    });
    for (part, row) in en
        .packets
        .iter()
        .map(|r| ("packets".to_string(), r))
        .chain(storage)
    {
        let runs: Vec<String> = row
            .runs
            .iter()
            .map(|r| format!("{:.0}", ok_rps(r)))
            .collect();
        let _ = writeln!(
            md,
            "- {part}, {}: [{}] `{}`{}",
            row.target,
            runs.join(", "),
            row.command,
            row.note
                .as_ref()
                .map(|n| format!(" — {n}"))
                .unwrap_or_default()
        );
    }
    for objects in &en.storage {
        let _ = writeln!(
            md,
            "\n`target/bench/storage-{}k.lua`:\n\n```lua\n{}```",
            objects.bytes >> 10,
            objects.script
        );
    }
}

/// `## (9) Languages`: one column per language, each with its ratio to Rust.
pub fn languages(md: &mut String, languages: Option<&Languages>) {
    let _ = writeln!(
        md,
        "\n## (9) Languages: the `hello` template in Rust, Python and JavaScript (issue 14)\n"
    );
    let Some(l) = languages else {
        let _ = writeln!(md, "not measured (see \"Not measured\" below)");
        return;
    };
    let _ = writeln!(
        md,
        "Each project as `arkham shard new hello-LANG --lang LANG` writes it, built with \
         `arkham shard build` (toolchains from `.tools/`), installed in one frame. Compile and \
         instantiation in process with the frame's engine; the GETs through `arkham serve` under \
         the HTTP load above, languages interleaved. `GET /` is the template's route (three \
         database calls on SQLite: ensure-schema, an upsert, a select); `GET /missing` is the \
         template's own 404 (no host call: the language's handler and runtime alone; wrk counts \
         those answers as non-2xx). Ratios are against Rust in the same run.\n"
    );
    let _ = writeln!(
        md,
        "| metric | Rust | Python | Python / Rust | JavaScript | JavaScript / Rust |\n|---|---:|---:|---:|---:|---:|"
    );
    let row = |name: &str, values: [Option<f64>; 3], show: fn(f64) -> String| {
        let shown = values.map(|v| v.map_or("—".to_string(), show));
        let ratio = |v: Option<f64>| match (v, values[0]) {
            (Some(v), Some(r)) if r > 0.0 => format!("{:.2}×", v / r),
            _ => "—".to_string(),
        };
        format!(
            "| {name} | {} | {} | {} | {} | {} |",
            shown[0],
            shown[1],
            ratio(values[1]),
            shown[2],
            ratio(values[2])
        )
    };
    let per = |f: &dyn Fn(&crate::languages::LanguageRow) -> f64| -> [Option<f64>; 3] {
        std::array::from_fn(|i| l.rows.get(i).map(f))
    };
    let http = |rows: &[HttpRow], f: fn(&WrkResult) -> f64| -> [Option<f64>; 3] {
        std::array::from_fn(|i| rows.get(i).and_then(|r| r.median.as_ref()).map(f))
    };
    let cpu = |rows: &[HttpRow]| -> [Option<f64>; 3] {
        std::array::from_fn(|i| rows.get(i).and_then(|r| r.cpu_us_per_request))
    };
    let mib = |v: f64| format!("{:.2} MiB", v / (1024.0 * 1024.0));
    let lines = [
        row(
            "component (packaged)",
            per(&|r| r.component_bytes as f64),
            mib,
        ),
        row(
            "`arkham shard build`, fresh project",
            per(&|r| r.build_s),
            |v| format!("{v:.1} s"),
        ),
        row("compile (precompile)", per(&|r| r.compile_ms), |v| {
            format!("{v:.0} ms")
        }),
        row("instantiation p50", per(&|r| r.instantiate.p50_us), latency),
        row("instantiation p99", per(&|r| r.instantiate.p99_us), latency),
        row("`GET /` requests/s", http(&l.route, |m| m.rps), |v| {
            format!("{v:.0}")
        }),
        row("`GET /` p50", http(&l.route, |m| m.p50_us), latency),
        row("`GET /` p99", http(&l.route, |m| m.p99_us), latency),
        row("`GET /` frame CPU per request", cpu(&l.route), latency),
        row(
            "`GET /missing` (404) requests/s",
            http(&l.handler, |m| m.rps),
            |v| format!("{v:.0}"),
        ),
        row(
            "`GET /missing` p50",
            http(&l.handler, |m| m.p50_us),
            latency,
        ),
        row(
            "`GET /missing` p99",
            http(&l.handler, |m| m.p99_us),
            latency,
        ),
        row(
            "`GET /missing` frame CPU per request",
            cpu(&l.handler),
            latency,
        ),
    ];
    for line in lines {
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(
        md,
        "\nInstantiation: {} iterations per language after a warm-up. Commands: {}",
        l.rows.first().map_or(0, |r| r.instantiate.iterations),
        l.route
            .iter()
            .chain(&l.handler)
            .map(|r| format!("`{}`", r.command))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
