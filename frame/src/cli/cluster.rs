//! `arkham cluster status`, and sharing what `arkham shard …` changes with the deployment the
//! data dir's config names (`[cluster] enabled`), from any machine with that config.

use super::DataDirArg;
use crate::cluster::{Cluster, LOST};
use crate::config::FrameConfig;
use crate::datadir::DataDir;
use anyhow::Context as _;

/// `arkham cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// The members of the deployment: address, version, up since, the shards each serves and
    /// those it failed to load.
    Status {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Print JSON (`{"deployment", "members": [...]}`, as `GET /api/frame/cluster`).
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `arkham cluster` command.
pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status { data_dir, json } => status(&data_dir.get(), json).await,
    }
}

/// The deployment `data`'s config makes it a member of, joined; `None` if it is none.
pub async fn joined(data: &DataDir) -> anyhow::Result<Option<(Cluster, FrameConfig)>> {
    let config = FrameConfig::load(&data.config_file())?;
    if !config.cluster.enabled {
        return Ok(None);
    }
    let client = crate::services::nats::connect(&config.nats).await?;
    let cluster = Cluster::join(client, &config.nats.prefix)
        .await
        .context("joining the deployment")?;
    Ok(Some((cluster, config)))
}

/// Before a command changes the catalog or grants: takes the deployment's state into the data
/// dir, so the change applies to what the deployment has.
pub async fn before(data: &DataDir) -> anyhow::Result<Option<Cluster>> {
    let Some((cluster, _)) = joined(data).await? else {
        return Ok(None);
    };
    cluster
        .sync(data)
        .await
        .context("taking the deployment's state")?;
    Ok(Some(cluster))
}

/// After it: shares the change (every member applies it within a second). Fails if another
/// operator's change reached the deployment first, which undid this one.
pub async fn after(cluster: &Cluster, data: &DataDir) -> anyhow::Result<()> {
    let done = cluster
        .sync(data)
        .await
        .context("sharing the change with the deployment")?;
    if let Some(lost) = done.iter().find(|d| d.starts_with(LOST)) {
        anyhow::bail!(
            "{lost}; `arkham shard list` shows what the deployment has now, run the command again \
             to apply it on top"
        );
    }
    for line in done {
        eprintln!("cluster: {line}");
    }
    Ok(())
}

async fn status(data: &DataDir, json: bool) -> anyhow::Result<()> {
    let Some((cluster, config)) = joined(data).await? else {
        anyhow::bail!(
            "{} does not make this frame a cluster member; set `[cluster] enabled = true` (with \
             the shared engines) to join a deployment",
            data.config_file().display()
        );
    };
    let members = cluster.members().await?;
    if json {
        let value = serde_json::json!({ "deployment": config.nats.prefix, "members": members });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "deployment `{}`: {} member(s)",
        config.nats.prefix,
        members.len()
    );
    for m in &members {
        println!(
            "{:<22} arkham {:<8} up since {}  serves {}",
            m.address,
            m.version,
            m.up_since,
            if m.loaded.is_empty() {
                "nothing".to_string()
            } else {
                m.loaded.join(", ")
            }
        );
        for f in &m.failed {
            println!("{:<22} FAILED {}@{}: {}", "", f.name, f.version, f.error);
        }
    }
    Ok(())
}
