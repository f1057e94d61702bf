//! The `arkham` command line: parse, set up logging, dispatch to a subcommand.

mod grants;
mod new;
mod registry;
mod serve;
mod shard;

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
    /// Log in to OCI registries that shards are pushed to and added from.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // PostgreSQL notices are what a shard's SQL raises (`RAISE WARNING` in a loop):
                // they must not reach the frame's log past the shard's own log budget.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=off")
                }),
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
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
