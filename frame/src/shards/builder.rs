//! `arkham shard build`: run a shard folder's build command and package the result.

use super::manifest::{Manifest, ManifestError};
use super::package::{PackageError, embed_manifest};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The manifest file name in a shard folder.
pub const MANIFEST_FILE: &str = "shard.toml";

/// A shard folder that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No readable or valid `shard.toml`.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest has no `[build]` section.
    #[error(
        "{0} has no [build] section; add `command` and `component` under [build], or pass a built .wasm"
    )]
    NoBuildSection(String),
    /// The build command could not start.
    #[error("cannot run `{command}` in {dir}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Where.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// The build command failed.
    #[error("`{command}` failed in {dir} ({status}); see its output above")]
    Failed {
        /// The command.
        command: String,
        /// Where.
        dir: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The component the manifest names was not produced.
    #[error("the build did not produce {0}; check `component` under [build] in shard.toml")]
    NoComponent(String),
    /// The produced file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The produced file is not a usable component.
    #[error("{path}: {source}")]
    Package {
        /// The file.
        path: String,
        /// What is wrong.
        source: PackageError,
    },
}

/// A built, self-describing shard.
#[derive(Debug)]
pub struct Built {
    /// The manifest from the folder.
    pub manifest: Manifest,
    /// The packaged component written by the build.
    pub output: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

fn component_path(folder: &Path, manifest: &Manifest) -> Result<PathBuf, BuildError> {
    let build = manifest.build.as_ref().ok_or_else(|| {
        BuildError::NoBuildSection(folder.join(MANIFEST_FILE).display().to_string())
    })?;
    Ok(folder.join(&build.component))
}

/// Runs the folder's build command, then packages its component.
pub fn build(folder: &Path) -> Result<Built, BuildError> {
    let manifest = Manifest::from_file(&folder.join(MANIFEST_FILE))?;
    let produced = run_build_command(folder, &manifest)?;
    package(folder, manifest, produced)
}

/// Builds the folder only if its component is missing or older than a file of the folder.
pub fn build_if_stale(folder: &Path) -> Result<Built, BuildError> {
    let manifest = Manifest::from_file(&folder.join(MANIFEST_FILE))?;
    let component = component_path(folder, &manifest)?;
    let built_at = std::fs::metadata(&component)
        .and_then(|m| m.modified())
        .ok();
    let stale = match built_at {
        None => true,
        Some(built_at) => newest_source(folder).is_some_and(|newest| newest > built_at),
    };
    let produced = if stale {
        run_build_command(folder, &manifest)?
    } else {
        None
    };
    package(folder, manifest, produced)
}

/// Runs the build command. For `cargo build`, returns where cargo says the component went:
/// `CARGO_TARGET_DIR`, a workspace's target or `build.target-dir` move it away from the path in
/// shard.toml, and a stale file may still sit there.
fn run_build_command(folder: &Path, manifest: &Manifest) -> Result<Option<PathBuf>, BuildError> {
    let build = manifest.build.as_ref().ok_or_else(|| {
        BuildError::NoBuildSection(folder.join(MANIFEST_FILE).display().to_string())
    })?;
    let words: Vec<&str> = build.command.split_whitespace().collect();
    let program = words.first().copied().unwrap_or_default();
    let is_cargo_build = Path::new(program).file_name().is_some_and(|n| n == "cargo")
        && words.get(1) == Some(&"build")
        && !words.iter().any(|w| w.starts_with("--message-format"));
    tracing::info!(shard = %manifest.name, command = %build.command, "building");
    let mut command = Command::new(program);
    command
        .args(&words[1.min(words.len())..])
        .current_dir(folder);
    let spawn = |source| BuildError::Spawn {
        command: build.command.clone(),
        dir: folder.display().to_string(),
        source,
    };
    let (status, produced) = if is_cargo_build {
        // Diagnostics still reach the terminal, rendered; stdout carries the JSON messages.
        let output = command
            .arg("--message-format=json-render-diagnostics")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(spawn)?;
        let wanted = Path::new(&build.component).file_name();
        (output.status, cargo_component(&output.stdout, wanted))
    } else {
        (command.status().map_err(spawn)?, None)
    };
    if !status.success() {
        return Err(BuildError::Failed {
            command: build.command.clone(),
            dir: folder.display().to_string(),
            status,
        });
    }
    Ok(produced)
}

/// The `.wasm` file cargo's JSON messages report: the one named like `wanted` (the file name
/// of shard.toml's `component`), else the only one.
fn cargo_component(stdout: &[u8], wanted: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Message {
        reason: String,
        #[serde(default)]
        filenames: Vec<PathBuf>,
    }
    let wasm: Vec<PathBuf> = stdout
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Message>(line).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .flat_map(|m| m.filenames)
        .filter(|f| f.extension().is_some_and(|e| e == "wasm"))
        .collect();
    match wasm.iter().find(|f| f.file_name() == wanted) {
        Some(named) => Some(named.clone()),
        None if wasm.len() == 1 => wasm.into_iter().next(),
        None => None,
    }
}

fn package(
    folder: &Path,
    manifest: Manifest,
    produced: Option<PathBuf>,
) -> Result<Built, BuildError> {
    let component = match produced {
        Some(path) => path,
        None => component_path(folder, &manifest)?,
    };
    let raw = std::fs::read(&component).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BuildError::NoComponent(component.display().to_string())
        } else {
            BuildError::Io {
                path: component.display().to_string(),
                source,
            }
        }
    })?;
    let bytes = embed_manifest(&raw, &manifest).map_err(|source| BuildError::Package {
        path: component.display().to_string(),
        source,
    })?;
    let output =
        component.with_file_name(format!("{}-{}.shard.wasm", manifest.name, manifest.version));
    arkham_registry::fsutil::write_atomically(&output, &bytes, 0o644).map_err(|source| {
        BuildError::Io {
            path: output.display().to_string(),
            source,
        }
    })?;
    Ok(Built {
        manifest,
        output,
        bytes,
    })
}

/// The newest modification time among the folder's files, skipping `target` and hidden folders.
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if let Ok(modified) = meta.modified() {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}
