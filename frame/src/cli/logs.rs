//! `arkham logs NAME [--follow]`: a running shard's own lines, from the frame's admin API.

use super::DataDirArg;
use anyhow::Context as _;
use http_body_util::BodyExt as _;
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
    let data = args.data_dir.get();
    let serving = std::fs::read(data.serving()).with_context(|| {
        format!(
            "no frame is running on {} (it writes {} while it serves); start one with `arkham serve`",
            data.root().display(),
            data.serving().display()
        )
    })?;
    let serving: serde_json::Value =
        serde_json::from_slice(&serving).context("reading the running frame's address")?;
    let address = serving["address"]
        .as_str()
        .and_then(|a| a.strip_prefix("http://"))
        .context("the running frame's address file names no address")?
        .to_string();
    let token = std::fs::read_to_string(data.admin_token())
        .context("reading the frame's admin token")?
        .trim()
        .to_string();
    let mut after = 0;
    loop {
        let page = fetch(&address, &token, &args.name, after).await?;
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

async fn fetch(address: &str, token: &str, name: &str, after: u64) -> anyhow::Result<Page> {
    let unreachable = || format!("asking the frame at http://{address} (is it still running?)");
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(unreachable)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .with_context(unreachable)?;
    tokio::spawn(connection);
    let request = http::Request::get(format!("/api/frame/admin/shards/{name}/logs?after={after}"))
        .header(http::header::HOST, address)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .context("building the request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(unreachable)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(unreachable)?
        .to_bytes();
    if !status.is_success() {
        let said: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        anyhow::bail!(
            "the frame answered {status}: {}",
            said["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    serde_json::from_slice(&body).context("reading the frame's answer")
}
