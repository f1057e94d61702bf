//! `arkham events dead|replay|purge`: the events subscribers gave up on, asked of the running
//! frame (replay delivers through it).

use super::DataDirArg;
use super::client::FrameClient;

/// `arkham events` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// The log's size and retention, and how far each subscriber is behind.
    Status {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the dead letters: events a subscriber gave up on after its retries, with why.
    Dead {
        /// Only this subscriber's.
        #[arg(long)]
        shard: Option<String>,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deliver dead letters again through the normal path (a fresh instance, the event
    /// deadline); those delivered are removed, those that fail again stay. Exits non-zero if
    /// any failed.
    Replay {
        /// The event id [default: every dead letter of the shard].
        id: Option<u64>,
        /// The subscriber.
        #[arg(long)]
        shard: String,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a subscriber's dead letters (their events can then be trimmed).
    Purge {
        /// The subscriber.
        #[arg(long)]
        shard: String,
        /// Only those of events up to and including this id [default: all].
        #[arg(long)]
        up_to: Option<u64>,
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Status { data_dir, json } => {
            let frame = FrameClient::of(&data_dir.get())?;
            let status = frame
                .call(http::Method::GET, "/api/frame/admin/events/status")
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            let log = &status["log"];
            println!(
                "log ({}): {} events, {} bytes, {} trimmed by retention; retention: {} bytes undelivered per shard, stream max age {} s, max {} bytes",
                log["backend"].as_str().unwrap_or("?"),
                log["events"],
                log["bytes"],
                log["trimmed"],
                log["retention"]["max_retained_bytes_per_shard"],
                log["retention"]["stream_max_age_s"],
                log["retention"]["stream_max_bytes"],
            );
            println!(
                "{:<20} {:>8} {:>14} {:>6}",
                "subscriber", "behind", "oldest (ms)", "dead"
            );
            for s in status["subscribers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let age = s["oldest_undelivered_age_ms"]
                    .as_u64()
                    .map_or_else(|| "-".to_string(), |a| a.to_string());
                println!(
                    "{:<20} {:>8} {:>14} {:>6}",
                    s["subscriber"].as_str().unwrap_or(""),
                    s["behind"],
                    age,
                    s["dead_letters"]
                );
            }
            Ok(())
        }
        EventsCommand::Dead {
            shard,
            data_dir,
            json,
        } => {
            let frame = FrameClient::of(&data_dir.get())?;
            let path = match &shard {
                Some(name) => format!("/api/frame/admin/events/dead?shard={name}"),
                None => "/api/frame/admin/events/dead".to_string(),
            };
            let answer = frame.call(http::Method::GET, &path).await?;
            let dead = answer["dead"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&dead)?);
            } else if dead.is_empty() {
                println!("no dead letters");
            } else {
                println!("{:<16} {:>8} {:<32} error", "subscriber", "id", "event");
                for letter in &dead {
                    let s = |k: &str| letter[k].as_str().unwrap_or("").to_string();
                    println!(
                        "{:<16} {:>8} {:<32} {}",
                        s("subscriber"),
                        letter["id"],
                        s("name"),
                        s("error")
                    );
                }
            }
            Ok(())
        }
        EventsCommand::Replay {
            id,
            shard,
            data_dir,
            json,
        } => {
            let frame = FrameClient::of(&data_dir.get())?;
            let mut path = format!("/api/frame/admin/events/dead/{shard}/replay");
            if let Some(id) = id {
                path.push_str(&format!("?id={id}"));
            }
            let answer = frame.call(http::Method::POST, &path).await?;
            let results = answer["results"].as_array().cloned().unwrap_or_default();
            let failed = results.iter().filter(|r| r["replayed"] != true).count();
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for r in &results {
                    match r["replayed"] == true {
                        true => println!("event {}: delivered to {shard}", r["id"]),
                        false => println!(
                            "event {}: failed again: {}",
                            r["id"],
                            r["error"].as_str().unwrap_or("")
                        ),
                    }
                }
                if results.is_empty() {
                    println!("{shard} has no dead letters");
                }
            }
            let skipped = answer["not_attempted"].as_u64().unwrap_or(0);
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} events failed again, and {skipped} more were not attempted; \
                     they stay dead letters: mend the handler, then replay",
                    results.len()
                );
            }
            Ok(())
        }
        EventsCommand::Purge {
            shard,
            up_to,
            data_dir,
            json,
        } => {
            let frame = FrameClient::of(&data_dir.get())?;
            let mut path = format!("/api/frame/admin/events/dead/{shard}");
            if let Some(up_to) = up_to {
                path.push_str(&format!("?up_to={up_to}"));
            }
            let answer = frame.call(http::Method::DELETE, &path).await?;
            if json {
                println!("{answer}");
            } else {
                println!("purged {} dead letters of {shard}", answer["purged"]);
            }
            Ok(())
        }
    }
}
