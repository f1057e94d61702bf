//! `arkham shard …`: build, inspect, add, list, remove.

use super::DataDirArg;
use crate::config::FrameConfig;
use crate::runtime::Runtime;
use crate::shards::builder;
use crate::shards::catalog::Catalog;
use crate::shards::install::{self, Inspection};
use anyhow::Context as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;

/// `arkham shard` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ShardCommand {
    /// Build a shard folder with the command its shard.toml declares and package the component
    /// with its manifest embedded; prints the packaged file's path.
    Build {
        /// The shard folder (holding shard.toml).
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Print a packaged shard's manifest, imports and exports.
    Inspect {
        /// A packaged `.wasm`, or a shard folder (built first if needed).
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a shard from a folder (built first if needed) or a packaged `.wasm`.
    Add {
        /// The shard folder or `.wasm` file.
        path: PathBuf,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Install without asking for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the installed shards.
    List {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed shard; its data is kept unless --purge.
    Remove {
        /// The shard's name.
        name: String,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Also delete the shard's database and storage.
        #[arg(long)]
        purge: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: ShardCommand) -> anyhow::Result<()> {
    match command {
        ShardCommand::Build { path } => {
            let built = tokio::task::spawn_blocking(move || builder::build(&path)).await??;
            println!("{}", built.output.display());
            Ok(())
        }
        ShardCommand::Inspect { path, json } => {
            let origin = path.display().to_string();
            let bytes = tokio::task::spawn_blocking(move || install::read_source(&path)).await??;
            let inspection = install::inspect(&bytes, &origin)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspection)?);
            } else {
                print_inspection(&inspection);
            }
            Ok(())
        }
        ShardCommand::Add {
            path,
            data_dir,
            yes,
            json,
        } => {
            let data = data_dir.get();
            let source = std::fs::canonicalize(&path).with_context(|| {
                format!(
                    "{} does not exist; pass a shard folder or a .wasm file",
                    path.display()
                )
            })?;
            let bytes = {
                let source = source.clone();
                tokio::task::spawn_blocking(move || install::read_source(&source)).await??
            };
            let inspection = install::inspect(&bytes, &source.display().to_string())?;
            if !yes && !json {
                print_requests(&inspection);
                if !confirm(&format!(
                    "Install {} {}?",
                    inspection.manifest.name, inspection.manifest.version
                ))? {
                    anyhow::bail!("not installed");
                }
            }
            let config = FrameConfig::load(&data.config_file())?;
            let runtime = Runtime::new(config.limits, data.compiled_cache())?;
            let installed = tokio::task::spawn_blocking(move || {
                install::install(&data, &runtime, &bytes, &source.display().to_string())
            })
            .await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&installed)?);
            } else {
                match &installed.replaced {
                    Some(old) => println!(
                        "installed {} {} (replacing {}) {}",
                        installed.shard.name,
                        installed.shard.version,
                        old.version,
                        installed.shard.digest
                    ),
                    None => println!(
                        "installed {} {} {}",
                        installed.shard.name, installed.shard.version, installed.shard.digest
                    ),
                }
            }
            Ok(())
        }
        ShardCommand::List { data_dir, json } => {
            let catalog = Catalog::load(&data_dir.get().catalog())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&catalog.shards)?);
            } else if catalog.shards.is_empty() {
                println!("no shards installed; add one with `arkham shard add PATH`");
            } else {
                for s in &catalog.shards {
                    println!(
                        "{:<20} {:<10} {}  {}",
                        s.name, s.version, s.digest, s.source
                    );
                }
            }
            Ok(())
        }
        ShardCommand::Remove {
            name,
            data_dir,
            purge,
            json,
        } => {
            let data = data_dir.get();
            let removed = install::remove(&data, &name, purge)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "removed": removed, "purged": purge })
                );
            } else if purge {
                println!(
                    "removed {} {} and deleted its data",
                    removed.name, removed.version
                );
            } else {
                println!(
                    "removed {} {}; its data is kept in {} (use --purge to delete it)",
                    removed.name,
                    removed.version,
                    data.shard(&name).display()
                );
            }
            Ok(())
        }
    }
}

fn print_requests(inspection: &Inspection) {
    let m = &inspection.manifest;
    eprintln!("{} {} requests:", m.name, m.version);
    for s in &m.services.required {
        eprintln!("  service {s} (required)");
    }
    for s in &m.services.optional {
        eprintln!("  service {s} (optional)");
    }
    for p in &m.events.publishes {
        eprintln!("  publish {p}");
    }
    for p in &m.events.subscribes {
        eprintln!("  subscribe {p}");
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "refusing to install without confirmation: stdin is not a terminal; pass --yes to install anyway"
        );
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn print_inspection(i: &Inspection) {
    println!("{}", i.manifest.to_embedded_toml().trim_end());
    println!();
    println!("# digest {}  size {} bytes", i.digest, i.size);
    println!("# imports");
    for import in &i.interfaces.imports {
        println!("#   {import}");
    }
    println!("# exports");
    for export in &i.interfaces.exports {
        println!("#   {export}");
    }
    if i.problems.is_empty() {
        println!("# compatible with this frame");
    } else {
        println!("# NOT compatible with this frame:");
        for p in &i.problems {
            println!("#   - {p}");
        }
    }
}
