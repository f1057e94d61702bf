//! Consent and grants on the command line: what `add` asks before installing, and
//! `arkham shard grants NAME` to show, revoke and restore what a shard may use.

use super::DataDirArg;
use crate::config::FrameConfig;
use crate::datadir::DataDir;
use crate::shards::catalog::{Catalog, DataDirLock};
use crate::shards::grants::{Grant, Grants};
use crate::shards::install;
use crate::shards::manifest::{Manifest, Service};
use crate::shards::package;
use anyhow::{Context as _, bail};
use std::io::IsTerminal as _;

impl GrantsArgs {
    /// The data dir it changes.
    pub fn data_dir(&self) -> crate::datadir::DataDir {
        self.data_dir.get()
    }
}

/// Arguments of `arkham shard grants`.
#[derive(Debug, clap::Args)]
pub struct GrantsArgs {
    /// The shard's name.
    name: String,
    #[command(flatten)]
    data_dir: DataDirArg,
    /// Take back a grant: a service (`storage`), `publish:PATTERN` or `subscribe:PATTERN`.
    #[arg(long, value_name = "ITEM")]
    revoke: Vec<String>,
    /// Give back something the shard requests, in the same forms as --revoke.
    #[arg(long, value_name = "ITEM")]
    grant: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_item(item: &str) -> anyhow::Result<Grant> {
    let mut grant = Grant::default();
    if let Some(pattern) = item.strip_prefix("publish:") {
        grant.publishes.insert(pattern.to_string());
    } else if let Some(pattern) = item.strip_prefix("subscribe:") {
        grant.subscribes.insert(pattern.to_string());
    } else if let Some(service) = Service::ALL.iter().find(|s| s.as_str() == item) {
        grant.services.insert(*service);
    } else {
        bail!(
            "`{item}` is not a grant; use database, events, storage, publish:PATTERN or subscribe:PATTERN"
        );
    }
    Ok(grant)
}

/// The manifest of the installed shard `name`.
fn installed_manifest(data: &DataDir, name: &str) -> anyhow::Result<Manifest> {
    let catalog = Catalog::load(&data.catalog())?;
    let installed = catalog.get(name).with_context(|| {
        format!(
            "no shard named `{name}` is installed; `arkham shard list` shows the installed shards"
        )
    })?;
    let bytes = data.store().get(&installed.digest)?;
    Ok(package::extract_manifest(&bytes)?)
}

/// `arkham shard grants`.
pub fn run(args: GrantsArgs) -> anyhow::Result<()> {
    let data = args.data_dir.get();
    let manifest = installed_manifest(&data, &args.name)?;
    let requested = Grant::requested_by(&manifest);
    let granted = if args.revoke.is_empty() && args.grant.is_empty() {
        Grants::load(&data.grants())?.effective(&manifest)
    } else {
        let _lock = DataDirLock::acquire(&data.lock())?;
        let mut grant = Grants::load(&data.grants())?.effective(&manifest);
        for item in &args.revoke {
            grant = grant.minus(&parse_item(item)?);
        }
        for item in &args.grant {
            let item = parse_item(item)?;
            if !item.minus(&requested).is_empty() {
                bail!(
                    "shard `{}` does not request `{}`; a shard is granted only what its manifest requests",
                    args.name,
                    item.lines().join(", ")
                );
            }
            grant = grant.union(&item);
        }
        install::save_grant(&data, &args.name, Some(grant.clone()))?;
        grant
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "name": args.name, "granted": granted, "requested": requested })
        );
        return Ok(());
    }
    println!("{} {} holds:", manifest.name, manifest.version);
    for line in granted.lines() {
        println!("  {line}");
    }
    let withheld = requested.minus(&granted);
    if !withheld.is_empty() {
        println!("requested but not granted:");
        for line in withheld.lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Asks for consent to install `manifest`, unless nothing new is requested (an update within its
/// grant, or a request pre-approved in the frame config) or `yes` was given.
pub fn consent(data: &DataDir, manifest: &Manifest, yes: bool) -> anyhow::Result<()> {
    let config = FrameConfig::load(&data.config_file())?;
    let extra = install::consent_needed(data, config.grants.get(&manifest.name), manifest)?;
    if extra.is_empty() || yes {
        return Ok(());
    }
    let updating = Grants::load(&data.grants())?
        .shards
        .contains_key(&manifest.name);
    let heading = if updating {
        format!(
            "{} {} requests more than it was granted:",
            manifest.name, manifest.version
        )
    } else {
        format!("{} {} requests:", manifest.name, manifest.version)
    };
    let lines: Vec<String> = extra.lines().iter().map(|l| format!("  + {l}")).collect();
    if !std::io::stdin().is_terminal() {
        bail!(
            "{heading}\n{}\nrefusing to grant this without confirmation (stdin is not a terminal): pass --yes, or pre-approve it under [grants.{}] in {}",
            lines.join("\n"),
            manifest.name,
            data.config_file().display()
        );
    }
    eprintln!("{heading}");
    for line in &lines {
        eprintln!("{line}");
    }
    eprint!("Grant this and install? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not installed");
    }
    Ok(())
}
