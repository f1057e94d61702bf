//! `arkham logs NAME [--follow]`: a running shard's own lines, from the frame's admin API.

use super::DataDirArg;
use super::client::FrameClient;
use anyhow::Context as _;
use std::time::Duration;

/// How often `--follow` asks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Arguments of `arkham logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The shard.
    name: String,
    #[command(flatten)]
    data_dir: DataDirArg,
    /// Keep printing new lines as the shard writes them (until interrupted).
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Deserialize)]
struct Page {
    lines: Vec<serde_json::Value>,
    newest: u64,
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let frame = FrameClient::of(&args.data_dir.get())?;
    let mut after = 0;
    loop {
        let path = format!("/api/frame/admin/shards/{}/logs?after={after}", args.name);
        let page: Page = serde_json::from_value(frame.call(http::Method::GET, &path).await?)
            .context("reading the frame's answer")?;
        for line in &page.lines {
            if args.json {
                println!("{line}");
            } else {
                println!("{}", human(line));
            }
        }
        after = page.newest;
        if !args.follow {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// `2026-12-02T06:40:01.123Z info  message` (`stdout`/`stderr` lines name their stream).
fn human(line: &serde_json::Value) -> String {
    let at = line["at_ms"].as_u64().unwrap_or(0);
    let level = line["level"].as_str().unwrap_or("?");
    let stream = line["stream"].as_str().unwrap_or("log");
    let message = line["message"].as_str().unwrap_or("");
    let time = crate::shards::install::rfc3339_millis(at);
    if stream == "log" {
        format!("{time} {level:<5} {message}")
    } else {
        format!("{time} {stream} {message}")
    }
}
