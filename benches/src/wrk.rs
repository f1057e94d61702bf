//! Running Debian's `wrk` and reading its `--latency` report.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::Path;
use std::process::Command;

/// Load shape shared by every HTTP row, so ratios compare like with like.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// `-t`.
    pub threads: u32,
    /// `-c`.
    pub connections: u32,
    /// `-d`, in seconds.
    pub seconds: u32,
}

impl Load {
    /// The `wrk` arguments for this load (without the URL and script).
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.seconds),
            "--latency".into(),
            "--timeout".into(),
            "10s".into(),
        ]
    }

    /// The command line a reader can paste.
    pub fn command(&self, url: &str, script: Option<&str>) -> String {
        let script = script.map(|s| format!("-s {s} ")).unwrap_or_default();
        format!("wrk {} {script}{url}", self.args().join(" "))
    }
}

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WrkResult {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Responses that were not 2xx/3xx, plus socket errors.
    pub errors: u64,
    /// Requests completed.
    pub requests: u64,
}

/// Runs `wrk` with `load` against `url`, optionally with a Lua script.
pub fn run(load: Load, url: &str, script: Option<&Path>) -> Result<WrkResult> {
    let mut command = Command::new("wrk");
    command.args(load.args());
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    command.arg(url);
    let output = command
        .output()
        .context("running wrk (is it installed? scripts/bench installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk against {url} failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&stdout).with_context(|| format!("reading wrk's report for {url}:\n{stdout}"))
}

/// Parses wrk's report: `Requests/sec:`, the `Latency Distribution` block, error counts.
pub fn parse(report: &str) -> Result<WrkResult> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    let mut requests = 0u64;
    for line in report.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = Some(rest.trim().parse::<f64>().context("Requests/sec")?);
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = Some(duration_us(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = Some(duration_us(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().context("Non-2xx count")?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    errors += n.parse::<u64>().unwrap_or(0);
                }
            }
        } else if line.contains("requests in") {
            requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50_us), Some(p99_us)) => Ok(WrkResult {
            rps,
            p50_us,
            p99_us,
            errors,
            requests,
        }),
        _ => bail!("no Requests/sec or latency distribution in the report"),
    }
}

fn duration_us(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().with_context(|| format!("{text:?}"))?;
    let factor = match unit {
        "us" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        "m" => 60_000_000.0,
        other => bail!("unknown unit {other:?}"),
    };
    Ok(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_latency_report() {
        let report = "Running 10s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   231.05us  120.00us   5.00ms   90.00%\n  \
            Latency Distribution\n     50%  210.00us\n     75%  250.00us\n     90%  300.00us\n     99%    1.20ms\n  \
            1000 requests in 10.00s, 100.00KB read\n  Non-2xx or 3xx responses: 3\nRequests/sec:  100000.50\nTransfer/sec: 1.00MB\n";
        let result = parse(report).unwrap();
        assert_eq!(result.rps, 100000.5);
        assert_eq!(result.p50_us, 210.0);
        assert_eq!(result.p99_us, 1200.0);
        assert_eq!(result.errors, 3);
        assert_eq!(result.requests, 1000);
    }
}
