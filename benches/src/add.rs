//! (5) `arkham shard add minimal@0.1 --yes` from a loopback OCI registry (Debian's
//! `docker-registry`), end to end: resolve, pull, verify, store, precompile, record. Baselines
//! from the same run: the same add from an OCI layout folder and from the packaged file, each
//! with an empty and a warm compiled cache (the difference is the precompile), plus
//! `arkham shard inspect` (resolve + pull alone) and `arkham shard list` (the process floor).

use crate::Options;
use crate::frame::{self, Env};
use crate::scenarios::{free_port, median};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs per row, interleaved.
pub const RUNS: usize = 5;

/// What the scenario measured.
#[derive(Debug, Default, Serialize)]
pub struct Add {
    /// One row per source and cache state.
    pub rows: Vec<AddRow>,
    /// `docker-registry --version`.
    pub registry: String,
    /// Size of the packaged minimal component, bytes.
    pub component_bytes: u64,
}

impl Add {
    /// The row named `name`.
    pub fn row(&self, name: &str) -> Option<&AddRow> {
        self.rows.iter().find(|r| r.name == name)
    }
}

/// One way of adding the shard.
#[derive(Debug, Serialize)]
pub struct AddRow {
    /// Short name: `registry`, `layout`, `file`, `+warm`, `inspect registry`, `floor`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The command, with the environment that matters.
    pub command: String,
    /// Every run, ms (process spawn to exit).
    pub runs_ms: Vec<f64>,
    /// Median, ms.
    pub median_ms: Option<f64>,
    /// Why it is missing.
    pub note: Option<String>,
}

/// `docker-registry serve` on a free loopback port; killed on drop.
pub(crate) struct Registry {
    child: Child,
    pub(crate) host: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn registry_version() -> Result<String> {
    let output = Command::new("docker-registry")
        .arg("--version")
        .output()
        .context("docker-registry is not installed (scripts/setup --test installs it)")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Started as the frame's registry tests do (frame/tests/all/harness.rs), without auth.
pub(crate) fn start_registry(dir: &Path) -> Result<Registry> {
    let host = format!("127.0.0.1:{}", free_port()?);
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{ level: error }}\nstorage: {{ filesystem: {{ rootdirectory: {} }}, \
             delete: {{ enabled: true }} }}\nhttp: {{ addr: {host} }}\n",
            dir.join("data").display()
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting docker-registry")?;
    let registry = Registry { child, host };
    let deadline = Instant::now() + Duration::from_secs(20);
    let base = format!("http://{}", registry.host);
    while frame::get_status(&base, "/v2/").ok() != Some(200) {
        if Instant::now() > deadline {
            bail!("docker-registry did not answer GET /v2/ within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(registry)
}

/// A way of running one timed `arkham` command in a fresh data dir.
struct Case {
    name: &'static str,
    description: &'static str,
    args: Vec<String>,
    /// `ARKHAM_REGISTRY`, if set.
    registry: Option<String>,
    /// The warm compiled cache, or `None` for a new empty one per run.
    warm_cache: Option<PathBuf>,
}

impl Case {
    fn command(&self) -> String {
        let registry = self
            .registry
            .as_ref()
            .map(|r| format!("ARKHAM_REGISTRY={r} "))
            .unwrap_or_default();
        let cache = match &self.warm_cache {
            Some(dir) => dir.display().to_string(),
            None => "<new empty dir>".into(),
        };
        format!(
            "ARKHAM_DATA_DIR=<new empty dir> ARKHAM_CACHE_DIR={cache} {registry}arkham {}",
            self.args.join(" ")
        )
    }

    fn time(&self, arkham: &Path, root: &Path) -> Result<f64> {
        std::fs::create_dir_all(root)?;
        let env = Env {
            bin: arkham.to_path_buf(),
            data: root.join("data"),
            cache: self
                .warm_cache
                .clone()
                .unwrap_or_else(|| root.join("cache")),
        };
        std::fs::create_dir_all(&env.data)?;
        std::fs::create_dir_all(&env.cache)?;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = self
            .registry
            .as_deref()
            .map(|r| ("ARKHAM_REGISTRY", r))
            .into_iter()
            .collect();
        let started = Instant::now();
        let stdout = env.run(&args, &envs)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if args.first() == Some(&"shard")
            && args.get(1) == Some(&"add")
            && !stdout.contains("installed minimal 0.1.0")
        {
            bail!("unexpected output of arkham {}: {stdout}", args.join(" "));
        }
        Ok(ms)
    }
}

/// Runs the scenario. Without `docker-registry` the registry rows say why and the others run.
pub fn run(options: &Options, scratch: &Path) -> Result<Add> {
    let root = scratch.join("add");
    std::fs::create_dir_all(&root)?;
    // Absolute, so the registry's storage and the printed commands work from any directory.
    let root =
        std::fs::canonicalize(&root).with_context(|| format!("resolving {}", root.display()))?;
    let file = frame::package(&test_shards::MINIMAL, "minimal", &root)?;
    let mut add = Add {
        component_bytes: std::fs::metadata(&file)?.len(),
        ..Add::default()
    };
    let publisher = Env {
        bin: options.arkham.clone(),
        data: root.join("publisher-data"),
        cache: root.join("publisher-cache"),
    };
    std::fs::create_dir_all(&publisher.data)?;
    let file_arg = file.display().to_string();

    // The registry, if it can be had; its rows are kept either way.
    let registry = registry_version().and_then(|version| {
        add.registry = version;
        let dir = root.join("registry");
        std::fs::create_dir_all(&dir)?;
        let registry = start_registry(&dir)?;
        publisher.run(
            &["shard", "push", &file_arg],
            &[("ARKHAM_REGISTRY", &registry.host)],
        )?;
        Ok(registry)
    });
    let layout = format!("oci:{}", root.join("layout").display());
    publisher.run(
        &["shard", "push", &file_arg],
        &[("ARKHAM_REGISTRY", &layout)],
    )?;

    // One add fills the warm cache: the same bytes from every source, so the same key.
    let warm = root.join("warm-cache");
    Env {
        bin: options.arkham.clone(),
        data: root.join("warm-data"),
        cache: warm.clone(),
    }
    .install(&file)?;

    let host = registry.as_ref().map(|r| r.host.clone()).ok();
    let add_ref = || {
        vec![
            "shard".into(),
            "add".into(),
            "minimal@0.1".into(),
            "--yes".into(),
        ]
    };
    let cases = [
        Case {
            name: "registry",
            description: "loopback registry",
            args: add_ref(),
            registry: host.clone(),
            warm_cache: None,
        },
        Case {
            name: "layout",
            description: "OCI layout folder",
            args: add_ref(),
            registry: Some(layout.clone()),
            warm_cache: None,
        },
        Case {
            name: "file",
            description: "packaged file",
            args: vec![
                "shard".into(),
                "add".into(),
                file_arg.clone(),
                "--yes".into(),
            ],
            registry: None,
            warm_cache: None,
        },
        Case {
            name: "registry warm",
            description: "loopback registry",
            args: add_ref(),
            registry: host.clone(),
            warm_cache: Some(warm.clone()),
        },
        Case {
            name: "layout warm",
            description: "OCI layout folder",
            args: add_ref(),
            registry: Some(layout.clone()),
            warm_cache: Some(warm.clone()),
        },
        Case {
            name: "file warm",
            description: "packaged file",
            args: vec!["shard".into(), "add".into(), file_arg, "--yes".into()],
            registry: None,
            warm_cache: Some(warm.clone()),
        },
        Case {
            name: "inspect registry",
            description: "`shard inspect` from the registry: resolve + pull + parse, nothing stored or compiled",
            args: vec!["shard".into(), "inspect".into(), "minimal@0.1".into()],
            registry: host.clone(),
            warm_cache: None,
        },
        Case {
            name: "inspect layout",
            description: "`shard inspect` from the OCI layout folder",
            args: vec!["shard".into(), "inspect".into(), "minimal@0.1".into()],
            registry: Some(layout.clone()),
            warm_cache: None,
        },
        Case {
            name: "floor",
            description: "`shard list`: process start, config and catalog read",
            args: vec!["shard".into(), "list".into()],
            registry: None,
            warm_cache: None,
        },
    ];
    let mut rows: Vec<AddRow> = cases
        .iter()
        .map(|case| AddRow {
            name: case.name.into(),
            description: case.description.into(),
            command: case.command(),
            runs_ms: Vec::new(),
            median_ms: None,
            note: match (&registry, &case.registry) {
                (Err(e), None) if case.name.contains("registry") => {
                    Some(format!("not measured: {e:#}"))
                }
                _ => None,
            },
        })
        .collect();
    for run in 0..RUNS {
        eprintln!("[bench]   run {}/{RUNS}: shard add", run + 1);
        for (i, (case, row)) in cases.iter().zip(rows.iter_mut()).enumerate() {
            if row.note.is_some() {
                continue;
            }
            match case.time(&options.arkham, &root.join(format!("runs/{i}-{run}"))) {
                Ok(ms) => row.runs_ms.push(ms),
                Err(e) => row.note = Some(format!("{e:#}")),
            }
        }
    }
    for row in &mut rows {
        if row.note.is_none() {
            row.median_ms = Some(median(row.runs_ms.clone()));
        }
    }
    add.rows = rows;
    drop(registry);
    Ok(add)
}
