//! The markdown report: tables, targets met or missed, commands, profile.

use crate::Options;
use crate::instantiate;
use crate::scenarios::{HttpRow, Results};
use crate::sections;
use crate::wrk::WrkResult;
use std::fmt::Write as _;

fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn find<'a>(rows: &'a [HttpRow], target: &str) -> Option<&'a HttpRow> {
    rows.iter().find(|r| r.target == target)
}

/// A headline metric: its label, how to read it from a row (if measured), how to print it.
struct Metric {
    name: &'static str,
    value: fn(Option<&HttpRow>) -> Option<f64>,
    show: fn(f64) -> String,
}

fn med(row: Option<&HttpRow>) -> Option<WrkResult> {
    row.and_then(|r| r.median)
}

fn cell(row: Option<&HttpRow>, f: impl Fn(&WrkResult) -> String) -> String {
    match row {
        Some(HttpRow {
            median: Some(m), ..
        }) => f(m),
        Some(HttpRow { note: Some(n), .. }) if n.starts_with("not measured") => {
            "not measured".into()
        }
        Some(_) => "failed".into(),
        None => "—".into(),
    }
}

/// A load row's requests/s, p50, p99 and CPU-per-request table cells, `|`-separated.
fn load_cells(row: Option<&HttpRow>) -> String {
    let or_dash = |cell: Option<String>| cell.unwrap_or_else(|| "—".into());
    format!(
        "{} | {} | {} | {}",
        cell(row, |m| format!("{:.0}", m.rps)),
        or_dash(med(row).map(|m| latency(m.p50_us))),
        or_dash(med(row).map(|m| latency(m.p99_us))),
        or_dash(
            row.and_then(|r| r.cpu_us_per_request)
                .map(|c| format!("{c:.1} µs"))
        ),
    )
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}×", a / b),
        _ => "—".into(),
    }
}

/// The report for `results`.
pub fn markdown(results: &Results, options: &Options) -> String {
    let mut md = String::new();
    let m = &results.machine;
    let _ = writeln!(
        md,
        "Machine: {} CPUs ({}), {} MiB RAM, Linux {}; load average at start {} (the machine is \
         shared, so absolute figures drift; compare ratios, which come from the same run with \
         targets interleaved).\n\nHTTP load: `{}` after a 3 s warm-up per target; {} runs each, \
         per-field medians.\n",
        m.cpus, m.cpu_model, m.memory_mib, m.kernel, m.load_average, results.load, options.runs
    );

    let _ = writeln!(md, "## Headline\n");
    let _ = writeln!(
        md,
        "| scenario | metric | ours (frame) | native axum | wasmtime serve | ours / native | ours / wasmtime serve |\n|---|---|---:|---:|---:|---:|---:|"
    );
    let frame = find(&results.minimal, "frame");
    let native = find(&results.minimal, "native axum");
    let peer = find(&results.minimal, "wasmtime serve");
    let rps = |r: Option<&HttpRow>| med(r).map(|m| m.rps);
    let p50 = |r: Option<&HttpRow>| med(r).map(|m| m.p50_us);
    let p99 = |r: Option<&HttpRow>| med(r).map(|m| m.p99_us);
    let cpu = |r: Option<&HttpRow>| r.and_then(|r| r.cpu_us_per_request);
    let rframe = find(&results.minimal, "frame, instance reuse");
    let rpeer = find(&results.minimal, "wasmtime serve, instance reuse");
    for (scenario, ours, peer) in [
        ("(1)(2) minimal shard, `GET` → 200 `ok`", frame, peer),
        (
            "(1)(2) the same, opt-in instance reuse (frame: `instance_reuse = 10000`; peer: `--max-instance-reuse-count 10000`)",
            rframe,
            rpeer,
        ),
    ] {
        let metrics = [
            Metric {
                name: "requests/s",
                value: rps,
                show: |v| format!("{v:.0}"),
            },
            Metric {
                name: "latency p50",
                value: p50,
                show: latency,
            },
            Metric {
                name: "latency p99",
                value: p99,
                show: latency,
            },
            Metric {
                name: "server CPU per request (user+sys)",
                value: cpu,
                show: |c| format!("{c:.1} µs"),
            },
            Metric {
                name: "server context switches per request, voluntary (waits, hand-offs)",
                value: |r| r.and_then(|r| r.switches_per_request).map(|s| s.voluntary),
                show: |v| format!("{v:.3}"),
            },
            Metric {
                name: "server context switches per request, involuntary (preempted)",
                value: |r| {
                    r.and_then(|r| r.switches_per_request)
                        .map(|s| s.involuntary)
                },
                show: |v| format!("{v:.3}"),
            },
        ];
        for (
            i,
            Metric {
                name: metric,
                value,
                show,
            },
        ) in metrics.into_iter().enumerate()
        {
            // The first row says why a server has no figures ("not measured", "failed").
            let shown = |row| match i {
                0 => cell(row, |m| show(m.rps)),
                _ => value(row).map_or("—".into(), show),
            };
            let lead = match i {
                0 => format!("| {scenario} |"),
                _ => "| |".to_string(),
            };
            let _ = writeln!(
                md,
                "{lead} {metric} | {} | {} | {} | {} | {} |",
                shown(ours),
                shown(native),
                shown(peer),
                ratio(value(ours), value(native)),
                ratio(value(ours), value(peer)),
            );
        }
    }
    let pframe = find(&results.packets, "frame");
    let pnative = find(&results.packets, "native axum+sqlx");
    let _ = writeln!(
        md,
        "| (3) packets, POST create / GET by id alternating | requests/s | {} | {} | n/a | {} | |",
        cell(pframe, |m| format!("{:.0}", m.rps)),
        cell(pnative, |m| format!("{:.0}", m.rps)),
        ratio(rps(pframe), rps(pnative)),
    );
    for (name, f) in [("p50", p50 as fn(_) -> _), ("p99", p99)] {
        let _ = writeln!(
            md,
            "| | latency {name} | {} | {} | n/a | {} | |",
            f(pframe).map_or("—".into(), latency),
            f(pnative).map_or("—".into(), latency),
            ratio(f(pframe), f(pnative)),
        );
    }
    let _ = writeln!(
        md,
        "| | server CPU per request (user+sys) | {} | {} | n/a | {} | |",
        cpu(pframe).map_or("—".into(), |c| format!("{c:.1} µs")),
        cpu(pnative).map_or("—".into(), |c| format!("{c:.1} µs")),
        ratio(cpu(pframe), cpu(pnative)),
    );
    let pev = find(&results.packets, "native axum+sqlx + event log");
    let _ = writeln!(
        md,
        "| | requests/s, native with the frame's second durable write (an event-log append per create in another SQLite file) | {} | {} | n/a | {} | |",
        cell(pframe, |m| format!("{:.0}", m.rps)),
        cell(pev, |m| format!("{:.0}", m.rps)),
        ratio(rps(pframe), rps(pev)),
    );
    let _ = writeln!(
        md,
        "\nEvery run (requests/s; non-2xx responses and socket errors summed over the runs):\n"
    );
    for row in results.minimal.iter().chain(&results.packets) {
        let runs: Vec<String> = row.runs.iter().map(|r| format!("{:.0}", r.rps)).collect();
        let _ = writeln!(
            md,
            "- {}: [{}]{}{}",
            row.target,
            runs.join(", "),
            row.median
                .map(|m| format!(", errors {}", m.errors))
                .unwrap_or_default(),
            row.note
                .as_ref()
                .map(|n| format!(" — {n}"))
                .unwrap_or_default()
        );
    }

    if let Some(counted) = &results.instructions {
        instructions(&mut md, counted);
    }

    let _ = writeln!(
        md,
        "\n### Entry point: `arkham:shard/http-handler` vs `wasi:http`, and the peer's own component\n\n\
         The minimal shard is built with the SDK, which exports `arkham:shard/http-handler` \
         (one call per request, whole request in, whole response out) instead of \
         `wasi:http/incoming-handler`. `wasmtime serve` cannot load that component (it imports \
         arkham's services), so the peer runs `minimal-raw`, the same handler on plain `wasi:http`. \
         The frame serves `minimal-raw` too, in the same process and run, which compares the two \
         runtimes on one component.\n"
    );
    let _ = writeln!(
        md,
        "| server | component, entry point | requests/s | p50 | p99 | CPU per request | vs native (req/s) |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for (name, what) in [
        ("frame", "minimal, http-handler"),
        (
            "frame, the peer's component (wasi:http)",
            "minimal-raw, wasi:http",
        ),
        ("wasmtime serve", "minimal-raw, wasi:http"),
        ("frame, instance reuse", "minimal, http-handler"),
        (
            "frame, the peer's component (wasi:http), instance reuse",
            "minimal-raw, wasi:http",
        ),
        ("wasmtime serve, instance reuse", "minimal-raw, wasi:http"),
        ("native axum", "—"),
    ] {
        let row = find(&results.minimal, name);
        let _ = writeln!(
            md,
            "| {name} | {what} | {} | {} |",
            load_cells(row),
            ratio(rps(row), rps(native)),
        );
    }

    let _ = writeln!(
        md,
        "\n### Where the frame loses: the runtime alone, pool as is vs tuned\n\n\
         Two more servers inside `arkham-bench`, same load, same run: axum routes that serve each \
         request of `minimal-raw` the way `LoadedShard::handle` does through `wasi:http` (fresh \
         store, instantiate, `wasi:http` handle, body read) without the frame's proxy and \
         per-shard semaphore; one on the frame's pool config, one on the tuned pool of section \
         (4). Compare them with the frame's row for the peer's component (`wasi:http`); the \
         frame's first row uses `http-handler`.\n"
    );
    let _ = writeln!(
        md,
        "| server | requests/s | p50 | p99 | CPU per request | vs frame (req/s) |\n|---|---:|---:|---:|---:|---:|"
    );
    for name in [
        "frame",
        "frame, the peer's component (wasi:http)",
        "runtime only, pool as in the frame",
        "runtime only, pool tuned",
        "native axum",
    ] {
        let row = find(&results.minimal, name);
        let _ = writeln!(
            md,
            "| {name} | {} | {} |",
            load_cells(row),
            ratio(rps(row), rps(frame)),
        );
    }
    let _ = writeln!(md, "\n## (4) Instantiation (in process)\n");
    if let Some([pool, demand, tuned]) = &results.instantiation {
        let _ = writeln!(
            md,
            "Two components: the minimal shard, built with the SDK (it exports `http-handler`, \
             which the frame calls), and `minimal-raw`, the same handler on plain `wasi:http` \
             without the SDK (the peer's component; the issue's reference figure for raw \
             wasmtime was measured on such a component). \
             {} timed iterations each after a warm-up, on one thread, {} repetitions with the \
             engines taking turns (each cell: the repetition with the median p50); a fresh \
             `Store<ShardState>` (like `LoadedShard::new_store`, its limiter installed) and `InstancePre::instantiate_async`, the store dropped inside the \
             timed region (so the slot's reset is counted). Engines: the frame's (`Runtime::new`), \
             the same config with `InstanceAllocationStrategy::OnDemand`, and the frame's pool \
             tuned (`linear_memory_keep_resident` {} KiB, `table_keep_resident` {} KiB, \
             `async_stack_keep_resident` {} KiB, `pagemap_scan(Auto)`).\n",
            pool.instantiate.iterations,
            instantiate::REPETITIONS,
            instantiate::TUNED_MEMORY_KEEP_RESIDENT >> 10,
            instantiate::TUNED_TABLE_KEEP_RESIDENT >> 10,
            instantiate::TUNED_STACK_KEEP_RESIDENT >> 10,
        );
        let _ = writeln!(
            md,
            "| | pooling (frame) p50 / p99 | on-demand p50 / p99 | pooling tuned p50 / p99 |\n|---|---:|---:|---:|"
        );
        for (name, a, b, c) in [
            (
                "store + instantiate, minimal shard (SDK)",
                pool.instantiate,
                demand.instantiate,
                tuned.instantiate,
            ),
            (
                "store + instantiate, `minimal-raw` (`wasi:http`, no SDK)",
                pool.instantiate_raw,
                demand.instantiate_raw,
                tuned.instantiate_raw,
            ),
            (
                "store + instantiate + one `GET /` through `http-handler` (what the frame does)",
                pool.buffered_request,
                demand.buffered_request,
                tuned.buffered_request,
            ),
            (
                "one `GET /` through `http-handler` on a reused instance (the reuse mode's call)",
                pool.buffered_reused,
                demand.buffered_reused,
                tuned.buffered_reused,
            ),
            (
                "store + instantiate + one `GET /` through `wasi:http` (`minimal-raw`, body read)",
                pool.request,
                demand.request,
                tuned.request,
            ),
            (
                "one `GET /` through `wasi:http` on a reused instance (`minimal-raw`)",
                pool.reused,
                demand.reused,
                tuned.reused,
            ),
        ] {
            let _ = writeln!(
                md,
                "| {name} | {:.1} / {:.1} µs | {:.1} / {:.1} µs | {:.1} / {:.1} µs |",
                a.p50_us, a.p99_us, b.p50_us, b.p99_us, c.p50_us, c.p99_us
            );
        }
    } else {
        let _ = writeln!(md, "not measured (see errors)");
    }

    let _ = writeln!(
        md,
        "\n## (5) Cold start: `arkham serve` spawn → first 200\n"
    );
    let _ = writeln!(
        md,
        "The minimal component installed under N names (`minimal0`…), so N distinct components \
         (the manifest is embedded, so the digests differ). 5 runs each; `GET /api/minimal0/` \
         polled every 0.5 ms. \"without cache\": `ARKHAM_CACHE_DIR` is a new empty directory \
         per run.\n"
    );
    let _ = writeln!(
        md,
        "| shards | compiled cache | spawn → \"listening\" | spawn → first 200 | runs (ms) | idle RSS 1 s later |\n|---:|---|---:|---:|---|---:|"
    );
    for c in &results.cold_start {
        let runs: Vec<String> = c.runs_ms.iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} ms | {:.1} ms | {} | {} |",
            c.shards,
            if c.cached { "warm" } else { "empty" },
            c.listening_ms,
            c.first_200_ms,
            runs.join(", "),
            c.idle_rss_mib.map_or("—".into(), |r| format!("{r:.1} MiB"))
        );
    }

    if options.runs("add") {
        sections::add(&mut md, results.add.as_ref());
    }
    if options.runs("transfer") {
        sections::transfer(&mut md, results.transfer.as_ref());
    }
    if options.runs("events") {
        sections::events(&mut md, results.events.as_ref());
    }

    let _ = writeln!(md, "\n## (7) Memory\n");
    if let Some(mem) = &results.memory {
        let _ = writeln!(
            md,
            "Idle RSS with 1 and 10 shards: the last column of the cold-start table.\n\n\
             In-flight requests: {} connections each holding one request to trapper's `/loop` \
             (a live instance spinning until its deadline). RSS idle {:.1} MiB, peak {:.1} MiB: \
             **{:.0} KiB added per in-flight request**.\n\nCommand: `{}`",
            mem.in_flight,
            mem.idle_rss_mib,
            mem.peak_rss_mib,
            mem.added_kib_per_request,
            mem.command
        );
    }

    if options.runs("engines") {
        sections::engines(&mut md, results.engines.as_ref());
    }
    if options.runs("languages") {
        sections::languages(&mut md, results.languages.as_ref());
    }
    if options.runs("scale") {
        crate::scale::section::scale(&mut md, results.scale.as_ref());
    }
    if options.runs("cluster") {
        crate::cluster::section(&mut md, results.cluster.as_ref());
    }

    let _ = writeln!(md, "\n## Targets of issue 5\n");
    let _ = writeln!(md, "| target | measured | verdict |\n|---|---|---|");
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    };
    let peer_ratio = rps(frame).zip(rps(peer)).map(|(a, b)| a / b);
    let p99_ok = p99(frame).zip(p99(peer)).map(|(a, b)| a <= b);
    let _ = writeln!(
        md,
        "| fresh instance per request ≥ 1.5× `wasmtime serve` req/s, p99 no worse | {} req/s ratio, p99 {} vs {} | {} |",
        peer_ratio.map_or("—".into(), |r| format!("{r:.2}×")),
        p99(frame).map_or("—".into(), latency),
        p99(peer).map_or("—".into(), latency),
        verdict(peer_ratio.zip(p99_ok).map(|(r, ok)| r >= 1.5 && ok)),
    );
    let reuse_ratio = rps(rframe).zip(rps(native)).map(|(a, b)| a / b);
    let _ = writeln!(
        md,
        "| opt-in instance reuse ≥ 0.5× native axum | {} req/s ratio ({} vs `wasmtime serve` reusing instances) | {} |",
        reuse_ratio.map_or("—".into(), |r| format!("{r:.2}×")),
        ratio(rps(rframe), rps(rpeer)),
        verdict(reuse_ratio.map(|r| r >= 0.5)),
    );
    let inst = results.instantiation.as_ref().map(|[p, _, _]| p);
    let _ = writeln!(
        md,
        "| per-request instantiation p50 ≤ 12 µs with pooling | {} | {} |",
        inst.map_or("—".into(), |p| format!(
            "{:.1} µs (`minimal-raw`, no SDK: {:.1} µs)",
            p.instantiate.p50_us, p.instantiate_raw.p50_us
        )),
        verdict(inst.map(|p| p.instantiate.p50_us <= 12.0)),
    );
    let cold = |shards: usize, cached: bool| {
        results
            .cold_start
            .iter()
            .find(|c| c.shards == shards && c.cached == cached)
    };
    let warm10 = cold(10, true).map(|c| c.first_200_ms);
    let empty10 = cold(10, false).map(|c| c.first_200_ms);
    let _ = writeln!(
        md,
        "| cold start, 10 shards, < 100 ms with the cache (and the cache makes it so) | {} with, {} without | {} |",
        warm10.map_or("—".into(), |v| format!("{v:.1} ms")),
        empty10.map_or("—".into(), |v| format!("{v:.1} ms")),
        verdict(warm10.zip(empty10).map(|(w, e)| w < 100.0 && e >= 100.0)),
    );
    let pratio = rps(pframe).zip(rps(pnative)).map(|(a, b)| a / b);
    let _ = writeln!(
        md,
        "| packets create+get ≥ 0.7× native axum+sqlx | {} | {} |",
        pratio.map_or("—".into(), |r| format!("{r:.2}×")),
        verdict(pratio.map(|r| r >= 0.7)),
    );
    let rss10 = cold(10, true).and_then(|c| c.idle_rss_mib);
    let _ = writeln!(
        md,
        "| idle RSS < 64 MiB with 10 shards | {} | {} |",
        rss10.map_or("—".into(), |v| format!("{v:.1} MiB")),
        verdict(rss10.map(|v| v < 64.0)),
    );

    let _ = writeln!(md, "\n## Commands (every row)\n");
    let _ = writeln!(
        md,
        "Servers: the frame is `target/release/arkham serve --listen 127.0.0.1:0` with \
         `ARKHAM_DATA_DIR`/`ARKHAM_CACHE_DIR` under `target/bench/scratch/<scenario>` and its \
         shards installed by one `arkham shard add FILE… --yes` (each component packaged with \
         its manifest by `embed_manifest`); the native servers run inside `arkham-bench` on a \
         2-worker Tokio runtime. The frame serving the minimal shard also serves it under the \
         name `reuse`, with `[limits.shards.reuse] instance_reuse = 10000` in its arkham.toml. \
         The peer is `target/bench-tools/bin/wasmtime serve -Scli --addr 127.0.0.1:PORT \
         {}` (with `--max-instance-reuse-count 10000` for its reuse row).\n",
        test_shards::MINIMAL_RAW.component
    );
    for row in results.minimal.iter().chain(&results.packets) {
        let _ = writeln!(md, "- {}: `{}`", row.target, row.command);
    }
    if let Some(profile) = &results.profile {
        let _ = writeln!(md, "\n## Profile of the frame serving the minimal shard\n");
        let _ = writeln!(md, "`{}`\n", profile.command);
        let _ = writeln!(
            md,
            "By shared object:\n\n```\n{}\n```\n\nBy symbol (self time, ≥ 0.7 %):\n\n```\n{}\n```\n\n\
             Key frames, inclusive (children, self):\n\n```\n{}\n```",
            profile.by_dso, profile.by_symbol, profile.inclusive
        );
    }
    if !results.errors.is_empty() {
        let _ = writeln!(md, "\n## Not measured\n");
        for e in &results.errors {
            let _ = writeln!(md, "- {e}");
        }
    }
    md
}

/// The (1b) table: instructions per request under callgrind, and what a fresh instance adds.
fn instructions(md: &mut String, counted: &crate::instructions::Instructions) {
    let native = counted.of("native axum");
    let _ = writeln!(
        md,
        "\n### (1b) Instructions per request (callgrind; noise does not move these)\n\n\
         User-space instructions of the server process per `GET` of the minimal shard (the kernel's \
         share, the TCP stack, is not counted; this VM has no hardware counters for `perf stat`). \
         `{}`. The frame's pool is shrunk to 4 slots so that valgrind can reserve it.\n\n\
         | server | instructions per request | vs native |\n|---|---:|---:|",
        counted.command
    );
    for row in &counted.rows {
        let shown = match (row.per_request, &row.note) {
            (Some(n), _) => format!("{n:.0}"),
            (None, Some(note)) => format!("not measured: {note}"),
            (None, None) => "—".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {shown} | {} |",
            row.target,
            ratio(row.per_request, native)
        );
    }
    if let (Some(fresh), Some(reused)) = (
        counted.of("frame, fresh instance (http-handler)"),
        counted.of("frame, instance reuse (http-handler)"),
    ) {
        let _ = writeln!(
            md,
            "\nA fresh instance per request costs {:.0} instructions more than a reused one: the \
             store's creation, `instantiate_async` and the store's drop (the slot's reset), i.e. \
             the instructions of one instantiation as the frame does it.",
            fresh - reused
        );
    }
}
