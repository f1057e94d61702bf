//! The `arkham` command line: parse, set up logging, dispatch to a subcommand.

mod client;
mod cluster;
mod events;
mod grants;
mod logs;
mod new;
mod registry;
mod serve;
mod shard;
mod sign;
mod wit;

use crate::datadir::DataDir;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// arkham: a WebAssembly component shard runtime.
#[derive(Debug, Parser)]
#[command(name = "arkham", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the frame: serve every installed shard's API, the dashboard and the frame API.
    Serve(serve::ServeArgs),
    /// Build, inspect, install, list and remove shards.
    #[command(subcommand)]
    Shard(shard::ShardCommand),
    /// Make signing keys for `arkham shard sign`.
    #[command(subcommand)]
    Key(sign::KeyCommand),
    /// Log in to OCI registries that shards are pushed to and added from.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Show what a shard running in the frame wrote lately: its `logging` calls, stdout and
    /// stderr (the frame keeps the last 1000 lines, 256 KiB, per shard).
    Logs(logs::LogsArgs),
    /// The events subscribers gave up on: list, replay, purge (asks the running frame).
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// The deployment of several frames this one is a member of (`[cluster]`).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Print the WIT package `arkham:shard` this frame speaks, or write it (with its WASI
    /// dependencies) into a folder to build a shard against; push or pull it as an OCI artifact
    /// in wkg's layout.
    Wit(wit::WitArgs),
}

/// The `--data-dir` option shared by every command that touches installed shards.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArg {
    /// The frame's data directory [default: $XDG_DATA_HOME/arkham or ~/.local/share/arkham].
    #[arg(long, env = "ARKHAM_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

impl DataDirArg {
    fn get(&self) -> DataDir {
        DataDir::new(self.data_dir.clone().unwrap_or_else(DataDir::default_root))
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // PostgreSQL notices are what a shard's SQL raises (`RAISE WARNING` in a loop): they must
    // not reach the frame's log past the shard's own log budget. The NATS client's connection
    // events belong in a frame's log, not in a one-off command's output.
    let filter = match cli.command {
        Command::Serve(_) => "info,sqlx::postgres::notice=off",
        _ => "info,sqlx::postgres::notice=off,async_nats=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Shard(command) => shard::run(command).await,
            Command::Registry(command) => registry::run(command).await,
            Command::Logs(args) => logs::run(args).await,
            Command::Wit(args) => wit::run(args).await,
            Command::Key(command) => sign::run_key(command),
            Command::Events(command) => events::run(command).await,
            Command::Cluster(command) => cluster::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes, joined by `: ` as anyhow's `{:#}` does, without the causes a message
/// already quotes (typed errors often say `cannot read {path}: {source}` and also expose
/// `source`, which would print it twice).
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x: {source}")]
    struct Read {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_the_message_quotes_is_printed_once() {
        let e = anyhow::Error::from(Read {
            source: std::io::Error::other("gone"),
        })
        .context("cannot build the shard");
        assert_eq!(
            super::report(&e),
            "cannot build the shard: cannot read x: gone"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::report(&plain), "outer: inner");
    }
}
