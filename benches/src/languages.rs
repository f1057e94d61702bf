//! (9) Per language (issue 14): the `hello` project `arkham shard new` writes in Rust, Python
//! and JavaScript, built with `arkham shard build` as a user would, then measured alike: component
//! size, precompile time and instantiation p50 in process ([`instantiate::single`]), and two GETs
//! through a real frame under `wrk` ([`scenarios::measure`]).

use crate::Options;
use crate::frame::Env;
use crate::instantiate::{self, Micro};
use crate::scenarios::{self, HttpRow, Target};
use crate::wrk::Load;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The languages, Rust first: the ratios are against it.
pub const LANGS: [&str; 3] = ["rust", "python", "js"];

/// Everything the scenario measured.
#[derive(Debug, Serialize)]
pub struct Languages {
    /// One per language, in [`LANGS`] order.
    pub rows: Vec<LanguageRow>,
    /// `GET /api/hello-LANG/`: the template's route (three database calls).
    pub route: Vec<HttpRow>,
    /// `GET /api/hello-LANG/missing`: the template's own 404, no host call (the language's
    /// handler and runtime alone).
    pub handler: Vec<HttpRow>,
}

/// One language's build and in-process figures.
#[derive(Debug, Serialize)]
pub struct LanguageRow {
    /// `rust`, `python`, `js`.
    pub lang: String,
    /// The packaged component, bytes.
    pub component_bytes: u64,
    /// `arkham shard build` of the fresh project, wall time, s (a Rust build compiles the SDK's
    /// dependencies from scratch).
    pub build_s: f64,
    /// Cranelift compile of the component with the frame's engine (what `shard add` and a
    /// cold `serve` do), ms.
    pub compile_ms: f64,
    /// Store + instantiate with the frame's engine (pooling), as per request.
    pub instantiate: Micro,
}

/// The repository (for the toolchains `scripts/setup --test` puts in `.tools/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `arkham shard new hello-LANG --lang LANG` then `arkham shard build`; the packaged file and
/// the build's wall time.
fn build(env: &Env, root: &Path, lang: &str) -> Result<(PathBuf, Duration)> {
    let name = format!("hello-{lang}");
    let dir = root.join(&name);
    let dir_text = dir.to_str().context("a non-UTF-8 scratch path")?;
    env.run(
        &["shard", "new", &name, "--lang", lang, "--path", dir_text],
        &[],
    )?;
    let tools = repo_root().join(".tools");
    let path = format!(
        "{}:{}:{}",
        tools.join("python-venv/bin").display(),
        tools.join("js/node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for tool in [
        "python-venv/bin/componentize-py",
        "js/node_modules/.bin/componentize-js",
    ] {
        if !tools.join(tool).exists() {
            bail!("no {tool} in .tools/; run `scripts/setup --test`");
        }
    }
    let started = Instant::now();
    let out = env.run(&["shard", "build", dir_text], &[("PATH", path.as_str())])?;
    let took = started.elapsed();
    let packaged = out
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .with_context(|| format!("`arkham shard build` printed no path for {name}"))?;
    Ok((PathBuf::from(packaged), took))
}

/// Builds, measures and serves the three `hello` shards.
pub fn run(options: &Options, scratch: &Path, load: Load) -> Result<Languages> {
    let root = scratch.join("languages");
    let env = Env {
        bin: options.arkham.clone(),
        data: root.join("data"),
        cache: root.join("cache"),
    };
    std::fs::create_dir_all(&env.data)?;
    std::fs::create_dir_all(&env.cache)?;
    // Python's instances are the slow ones; a few hundred samples make a stable p50.
    let iterations = options.iterations.clamp(1, 500);
    let mut rows = Vec::new();
    for lang in LANGS {
        eprintln!("[bench]   {lang}: shard new + shard build");
        let (packaged, took) = build(&env, &root, lang)?;
        let bytes =
            std::fs::read(&packaged).with_context(|| format!("reading {}", packaged.display()))?;
        eprintln!("[bench]   {lang}: compile + instantiate ({iterations} iterations)");
        let (compile, instantiate) = instantiate::single(&bytes, iterations)?;
        env.install(&packaged)?;
        rows.push(LanguageRow {
            lang: lang.to_string(),
            component_bytes: bytes.len() as u64,
            build_s: took.as_secs_f64(),
            compile_ms: compile.as_secs_f64() * 1e3,
            instantiate,
        });
    }
    let served = env.serve()?;
    for lang in LANGS {
        served.until_ok(&format!("/api/hello-{lang}/"), Duration::from_secs(60))?;
    }
    let targets = |path: &str| -> Vec<Target> {
        LANGS
            .iter()
            .map(|lang| Target {
                name: lang,
                url: format!("{}/api/hello-{lang}/{path}", served.base),
                pid: served.pid(),
            })
            .collect()
    };
    eprintln!("[bench]   GET / (the template's route) per language");
    let route = scenarios::measure(&targets(""), load, None, options.runs, None);
    eprintln!("[bench]   GET /missing (the handler's 404) per language");
    let handler = scenarios::measure(&targets("missing"), load, None, options.runs, None);
    Ok(Languages {
        rows,
        route,
        handler,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrk::WrkResult;

    fn http(target: &str, rps: f64, cpu: f64) -> HttpRow {
        let result = WrkResult {
            rps,
            p50_us: 1000.0,
            p99_us: 2000.0,
            errors: 0,
            requests: 10,
        };
        HttpRow {
            target: target.into(),
            command: String::new(),
            runs: vec![result],
            median: Some(result),
            cpu_us_per_request: Some(cpu),
            switches_per_request: None,
            note: None,
        }
    }

    /// Each language's column is followed by its ratio to Rust's.
    #[test]
    fn the_section_shows_ratios_against_rust() {
        let micro = |p50_us| Micro {
            p50_us,
            p99_us: p50_us,
            mean_us: p50_us,
            iterations: 5,
        };
        let rows = [(1.0, 20.0), (4.0, 500.0), (2.0, 40.0)]
            .into_iter()
            .zip(LANGS)
            .map(|((mib, p50), lang)| LanguageRow {
                lang: lang.into(),
                component_bytes: (mib * 1024.0 * 1024.0) as u64,
                build_s: 1.0,
                compile_ms: 10.0,
                instantiate: micro(p50),
            })
            .collect();
        let languages = Languages {
            rows,
            route: LANGS.iter().map(|l| http(l, 100.0, 10.0)).collect(),
            handler: vec![
                http("rust", 1000.0, 10.0),
                http("python", 100.0, 100.0),
                http("js", 250.0, 40.0),
            ],
        };
        let mut md = String::new();
        crate::sections::languages(&mut md, Some(&languages));
        assert!(
            md.contains(
                "| component (packaged) | 1.00 MiB | 4.00 MiB | 4.00× | 2.00 MiB | 2.00× |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| instantiation p50 | 20 µs | 500 µs | 25.00× | 40 µs | 2.00× |"),
            "{md}"
        );
        assert!(
            md.contains("| `GET /missing` (404) requests/s | 1000 | 100 | 0.10× | 250 | 0.25× |"),
            "{md}"
        );
        let mut none = String::new();
        crate::sections::languages(&mut none, None);
        assert!(none.contains("not measured"));
    }
}
