//! `arkham serve`.

use super::DataDirArg;
use crate::frame::Frame;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::time::Duration;

/// How long shutdown waits for calls still running in shards.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Arguments of `arkham serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    data_dir: DataDirArg,
    /// Address to listen on.
    #[arg(long, env = "ARKHAM_LISTEN", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data = args.data_dir.get();
    let frame = Frame::open(data.clone()).await?;
    let _watcher = frame.watch();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {}; is another frame running there? pass --listen",
                args.listen
            )
        })?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, data_dir = %data.root().display(), shards = frame.shards().len(), "arkham frame serving");
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on http://{local}");
    axum::serve(listener, crate::http::app(frame.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("shutting down: finishing calls in progress");
    frame.shutdown(SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
