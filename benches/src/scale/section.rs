//! `## (10) Scale`: the three curves' tables, goals and plot links.

use super::{
    BODY_CONNECTIONS, BODY_TARGETS, Scale, SubscribersPoint, body_lua, mb_per_s, size_label,
    spread_lua,
};
use crate::events::DeliveryRow;
use crate::scenarios::HttpRow;
use arkham_frame::runtime::limits::LimitsConfig;
use std::fmt::Write as _;

/// Where `scripts/bench` copies the plots, relative to BENCHMARKS.md.
pub const PLOTS_DIR: &str = "benches/plots";

/// Cold start with 1,000 shards, ms.
const COLD_START_GOAL_MS: f64 = 300.0;
/// Idle RSS per idle shard, MiB.
const RSS_GOAL_MIB: f64 = 1.0;
/// "Flat": requests/s at N at least this fraction of N = 1's.
const FLAT_RATIO: f64 = 0.9;

fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "—".into())
}

fn rps(row: &HttpRow) -> Option<f64> {
    row.median.map(|m| m.rps)
}

/// `rps | p99 | CPU` cells of an HTTP row, or why it is missing.
fn http_cells(row: &HttpRow) -> String {
    match row.median {
        Some(m) => format!(
            "{:.0} | {} | {}",
            m.rps,
            latency(m.p99_us),
            or_dash(row.cpu_us_per_request.map(|c| format!("{c:.1} µs")))
        ),
        None => format!("{} | | ", row.note.as_deref().unwrap_or("failed")),
    }
}

fn times(a: Option<f64>, b: Option<f64>) -> String {
    or_dash(
        a.zip(b)
            .filter(|(_, b)| *b > 0.0)
            .map(|(a, b)| format!("{:.3}×", a / b)),
    )
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn plot(md: &mut String, scale: &Scale, file: &str, alt: &str) {
    if scale.plots.iter().any(|p| p == file) {
        let _ = writeln!(md, "\n![{alt}]({PLOTS_DIR}/{file})\n");
    }
}

/// Appends the section for `scale` to `md`.
pub fn scale(md: &mut String, scale: Option<&Scale>) {
    let _ = writeln!(
        md,
        "\n## (10) Scale: how cost grows (issue 19)\n\nPlots are SVG files the bench writes into \
         `--out`; `scripts/bench` copies them to `{PLOTS_DIR}/`."
    );
    let Some(scale) = scale else {
        let _ = writeln!(md, "\nnot measured (see \"Not measured\" below)");
        return;
    };
    shards(md, scale);
    subscribers(md, scale);
    bodies(md, scale);
    for e in &scale.plot_errors {
        let _ = writeln!(md, "\nPlot not written: {e}");
    }
}

fn shards(md: &mut String, scale: &Scale) {
    let _ = writeln!(
        md,
        "\n### Installed shards N\n\nThe minimal component (SDK, `http-handler`) packaged under N \
         names `minimal0`…, installed by one `arkham shard add FILE… --yes` (compiled once: the \
         compiled cache is keyed by the code without its embedded manifest). Shards that \
         subscribe to no events load on their first request or in the background after the \
         frame listens, so the first 200 waits for one shard's load. Cold start \
         with the compiled cache warm: spawn of `arkham serve` to its \"listening\" line and to \
         the first 200 from `/api/minimal0/`, median of the runs; idle RSS 1 s after the first \
         200; RSS per idle shard = (RSS(N) − RSS(1)) / (N − 1). Load: `{}` to `/api/minimal0/` \
         (\"one shard\") and with `-s scale-spread-N.lua`, round-robin over all N (\"spread\"); \
         ratios against N = 1's one-shard row.\n",
        scale.load
    );
    if scale.max_shards < 1000 {
        let _ = writeln!(
            md,
            "Run with `--scale-max {}`: larger N not measured.\n",
            scale.max_shards
        );
    }
    let _ = writeln!(
        md,
        "| N | install | spawn → listening | spawn → first 200 | runs (ms) | idle RSS | RSS per idle shard | one shard req/s | p99 | CPU/req | vs N=1 | spread req/s | p99 | CPU/req | vs N=1 |\n\
         |---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let base = scale.shards.iter().find(|p| p.shards == 1);
    let base_rps = base.and_then(|p| rps(&p.one));
    let per_idle = |n: usize, rss: f64| {
        base.filter(|_| n > 1)
            .map(|b| (rss - b.idle_rss_mib) / (n - 1) as f64)
    };
    for p in &scale.shards {
        let runs: Vec<String> = p.runs_ms.iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(
            md,
            "| {} | {:.1} s | {:.1} ms | {:.1} ms | {} | {:.1} MiB | {} | {} | {} | {} | {} |",
            p.shards,
            p.install_ms / 1e3,
            p.listening_ms,
            p.first_200_ms,
            runs.join(", "),
            p.idle_rss_mib,
            or_dash(per_idle(p.shards, p.idle_rss_mib).map(|k| format!("{:.0} KiB", k * 1024.0))),
            http_cells(&p.one),
            times(rps(&p.one), base_rps),
            http_cells(&p.spread),
            times(rps(&p.spread), base_rps),
        );
    }
    let largest = scale.shards.iter().max_by_key(|p| p.shards);
    let thousand = scale.shards.iter().find(|p| p.shards == 1000);
    let rss = largest.and_then(|p| per_idle(p.shards, p.idle_rss_mib).map(|r| (p.shards, r)));
    let flat = |row: fn(&super::ShardsPoint) -> &HttpRow| {
        largest
            .filter(|p| p.shards > 1)
            .and_then(|p| Some((p.shards, rps(row(p))? / base_rps?)))
    };
    let one = flat(|p| &p.one);
    let spread = flat(|p| &p.spread);
    let _ = writeln!(
        md,
        "\n| goal | measured | verdict |\n|---|---|---|\n\
         | cold start with 1,000 shards < {COLD_START_GOAL_MS:.0} ms | {} | {} |\n\
         | idle RSS < {RSS_GOAL_MIB:.0} MiB per idle shard | {} | {} |\n\
         | per-request cost flat in N (one shard, ≥ {FLAT_RATIO}× N=1) | {} | {} |\n\
         | routing flat in N (spread, ≥ {FLAT_RATIO}× N=1's one shard) | {} | {} |",
        or_dash(thousand.map(|p| format!("{:.1} ms", p.first_200_ms))),
        verdict(thousand.map(|p| p.first_200_ms < COLD_START_GOAL_MS)),
        or_dash(rss.map(|(n, r)| format!("{:.0} KiB at N = {n}", r * 1024.0))),
        verdict(rss.map(|(_, r)| r < RSS_GOAL_MIB)),
        or_dash(one.map(|(n, r)| format!("{r:.3}× at N = {n}"))),
        verdict(one.map(|(_, r)| r >= FLAT_RATIO)),
        or_dash(spread.map(|(n, r)| format!("{r:.3}× at N = {n}"))),
        verdict(spread.map(|(_, r)| r >= FLAT_RATIO)),
    );
    plot(
        md,
        scale,
        "scale-shards-rps.svg",
        "requests/s by installed shards",
    );
    plot(
        md,
        scale,
        "scale-shards-start.svg",
        "cold start and idle RSS by installed shards",
    );
    if let Some(p) = largest {
        let _ = writeln!(
            md,
            "Spread script (`scale-spread-{}.lua`):\n\n```lua\n{}```",
            p.shards,
            spread_lua(p.shards)
        );
    }
}

/// `p50 | p99 | max` of a paced row, or why it is missing.
fn paced_cells(row: &DeliveryRow) -> String {
    match row.median {
        Some(m) => format!(
            "{} | {} | {}",
            latency(m.p50_us),
            latency(m.p99_us),
            latency(m.max_us)
        ),
        None => format!("{} | | ", row.note.as_deref().unwrap_or("failed")),
    }
}

fn subscribers(md: &mut String, scale: &Scale) {
    let _ = writeln!(
        md,
        "\n### Subscribers S of one event stream\n\nThe events scenario's pipeline on the embedded \
         log: the `publisher` shard and S copies of `subscriber` (`subscriber0`…) in one frame. \
         Burst: a fixed number of events in requests of {} (sized from a warm-up to about \
         `--seconds` of delivery), deliveries/s from the first send to the last delivery; frame \
         CPU (user + system) over the burst per delivery — it includes the bench polling every \
         subscriber's `GET /stats` each 100 ms (at S = 100, 1,000 requests/s). Paced: `wrk -t1 \
         -c1` with `delay()` at the same rate for every S (half the per-subscriber capacity at \
         the largest S), so the latency is the pipeline's, not a queue's; publish → delivery \
         over every delivery (the subscribers record it, `GET /stats`, `/latencies`).\n",
        crate::events::BURST_PER_REQUEST
    );
    let _ = writeln!(
        md,
        "| S | burst events | deliveries/s per subscriber | all subscribers | all vs S=1 | frame CPU per delivery | burst p99 | paced p50 | paced p99 | paced max |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let total = |p: &SubscribersPoint| p.burst.median.map(|m| m.delivered_per_s);
    let base = scale
        .subscribers
        .iter()
        .find(|p| p.subscribers == 1)
        .and_then(total);
    for p in &scale.subscribers {
        let paced = paced_cells(&p.paced);
        let burst = match p.burst.median {
            Some(m) => format!(
                "{:.0} | {:.0} | {} | {} | {}",
                m.delivered_per_s / p.subscribers as f64,
                m.delivered_per_s,
                times(total(p), base),
                or_dash(p.cpu_us_per_delivery.map(|c| format!("{c:.1} µs"))),
                latency(m.p99_us),
            ),
            None => format!("{} | | | |", p.burst.note.as_deref().unwrap_or("failed")),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {burst} | {paced} |",
            p.subscribers, p.burst.events
        );
    }
    let _ = writeln!(
        md,
        "\nLinear in S means: all subscribers' deliveries/s constant (per subscriber falling as \
         1/S) and CPU per delivery flat; the log is read by one dispatcher for every subscriber."
    );
    plot(
        md,
        scale,
        "scale-subscribers.svg",
        "deliveries/s by subscribers",
    );
    if let Some(p) = scale.subscribers.first() {
        let _ = writeln!(
            md,
            "Commands: burst `{}`; paced `{}` (`scale-paced.lua`: `wrk.method = \"POST\"` and \
             `function delay() return {} end`).",
            p.burst.command, p.paced.command, scale.paced_delay_ms
        );
    }
}

fn bodies(md: &mut String, scale: &Scale) {
    let limits = LimitsConfig::default();
    let _ = writeln!(
        md,
        "\n### Request body size\n\nA `POST` of the body, answered with the same body: through \
         `http-handler` (the `echo` fixture's `/mirror`: the frame reads the whole body and passes \
         it in one call, the guest moves it into its response), through `wasi:http` (the \
         `streamer` fixture's `/mirror`: the guest reads the incoming body stream in 64 KiB \
         pieces and writes each as the output stream permits) and a native axum route returning the body (`native::mirror`). MB/s = \
         request bytes per second (10^6 B), from requests/s. Load: `wrk -t2 -c{BODY_CONNECTIONS} \
         -d<seconds>s --latency -s scale-body-<bytes>.lua` for every size (few connections, so \
         10 MiB bodies in flight stay small next to memory). The frame's defaults \
         `max_request_bytes` = {} MiB and `max_response_bytes` = {} MiB are above 10 MiB: the \
         env's `arkham.toml` changes no limit.\n",
        limits.max_request_bytes >> 20,
        limits.max_response_bytes >> 20,
    );
    let _ = writeln!(
        md,
        "| body | path | req/s | p99 | CPU/req | MB/s | vs native |\n|---:|---|---:|---:|---:|---:|---:|"
    );
    for p in &scale.bodies {
        let native = p
            .rows
            .iter()
            .find(|r| r.target == BODY_TARGETS[2])
            .and_then(|r| mb_per_s(r, p.bytes));
        for row in &p.rows {
            let mb = mb_per_s(row, p.bytes);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                size_label(p.bytes),
                row.target,
                http_cells(row),
                or_dash(mb.map(|m| format!("{m:.1}"))),
                if row.target == BODY_TARGETS[2] {
                    String::new()
                } else {
                    times(mb, native)
                },
            );
        }
    }
    plot(md, scale, "scale-body.svg", "MB/s by body size");
    let _ = writeln!(
        md,
        "Body script (`scale-body-1024.lua`; the others differ in the size):\n\n```lua\n{}```",
        body_lua(1024)
    );
}

#[cfg(test)]
mod tests {
    use super::super::{BodyPoint, ShardsPoint};
    use super::*;
    use crate::wrk::WrkResult;

    fn row(target: &str, rps: Option<f64>) -> HttpRow {
        HttpRow {
            target: target.into(),
            command: String::new(),
            runs: Vec::new(),
            median: rps.map(|rps| WrkResult {
                rps,
                p50_us: 500.0,
                p99_us: 2000.0,
                errors: 0,
                requests: 1000,
            }),
            cpu_us_per_request: Some(40.0),
            switches_per_request: None,
            note: rps.is_none().then(|| "wrk failed: refused".into()),
        }
    }

    fn shards(n: usize, first_200_ms: f64, rss: f64, one: f64, spread: f64) -> ShardsPoint {
        ShardsPoint {
            shards: n,
            install_ms: 1000.0,
            listening_ms: first_200_ms - 1.0,
            first_200_ms,
            runs_ms: vec![first_200_ms],
            idle_rss_mib: rss,
            one: row("one shard", Some(one)),
            spread: row("spread over all", Some(spread)),
        }
    }

    #[test]
    fn goals_ratios_and_plot_links_follow_the_figures() {
        let scale = Scale {
            shards: vec![
                shards(1, 20.0, 36.0, 10_000.0, 9_000.0),
                shards(1000, 250.0, 36.0 + 999.0 * 0.5, 9_500.0, 8_000.0),
            ],
            bodies: vec![BodyPoint {
                bytes: 1 << 20,
                rows: vec![
                    row(BODY_TARGETS[0], Some(100.0)),
                    row(BODY_TARGETS[1], None),
                    row(BODY_TARGETS[2], Some(1000.0)),
                ],
            }],
            plots: vec!["scale-body.svg".into()],
            max_shards: 1000,
            ..Scale::default()
        };
        let mut md = String::new();
        super::scale(&mut md, Some(&scale));
        for line in [
            "| cold start with 1,000 shards < 300 ms | 250.0 ms | met |",
            "| idle RSS < 1 MiB per idle shard | 512 KiB at N = 1000 | met |",
            "| per-request cost flat in N (one shard, ≥ 0.9× N=1) | 0.950× at N = 1000 | met |",
            "| routing flat in N (spread, ≥ 0.9× N=1's one shard) | 0.800× at N = 1000 | **missed** |",
            "| 1 MiB | frame, http-handler (echo /mirror) | 100 | 2.00 ms | 40.0 µs | 104.9 | 0.100× |",
            "| 1 MiB | frame, wasi:http (streamer /mirror) | wrk failed: refused | | ",
        ] {
            assert!(md.contains(line), "{line:?} not in:\n{md}");
        }
        assert!(md.contains("(benches/plots/scale-body.svg)"));
        assert!(
            !md.contains("scale-shards-rps.svg"),
            "a plot not written is not linked"
        );
        assert!(!md.contains("--scale-max"));

        let mut md = String::new();
        let small = Scale {
            shards: vec![shards(1, 20.0, 36.0, 10_000.0, 9_000.0)],
            max_shards: 10,
            ..Scale::default()
        };
        super::scale(&mut md, Some(&small));
        assert!(md.contains("Run with `--scale-max 10`"));
        assert!(md.contains("| cold start with 1,000 shards < 300 ms | — | not measured |"));
    }
}
