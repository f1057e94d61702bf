//! `arkham serve`.

use super::DataDirArg;
use crate::frame::Frame;
use crate::http::server;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long shutdown waits for requests and calls still running.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// What the shards get for their own shutdown however long the connections took.
const MIN_SHARD_GRACE: Duration = Duration::from_secs(1);
/// Connections the metrics address serves at once: a scraper or two.
const METRICS_CONNECTIONS: usize = 16;

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
    // First, so that the databases and files the frame opens count against the raised limit.
    let fd_limit = match server::raise_fd_limit() {
        Ok(soft) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "reading the descriptor limit failed; assuming 1024");
            1024
        }
    };
    let data = args.data_dir.get();
    let frame = Frame::open(data.clone()).await?;
    let connections = server::connection_limit(frame.config().server.max_connections, fd_limit);
    let _watcher = frame.watch();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {}; is another frame running there? pass --listen",
                args.listen
            )
        })?;
    let metrics =
        match frame.config().metrics.listen {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.with_context(
                || {
                    format!(
                        "listening for metrics on {address} (`[metrics] listen` in {}); is \
                         another process there?",
                        data.config_file().display()
                    )
                },
            )?),
            None => None,
        };
    // Before the frame says it listens: a SIGTERM right after that must stop it cleanly, not
    // find the default action (a signal's handler is installed when it is registered). One
    // signal stops every listener.
    let signal = shutdown_signal();
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stopping_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let local = listener.local_addr()?;
    let metrics_local = match &metrics {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    tracing::info!(address = %local, data_dir = %data.root().display(), shards = frame.shards().len(), max_connections = connections, fd_limit, "arkham frame serving");
    let serving = data.serving();
    let mut said =
        serde_json::json!({ "address": format!("http://{local}"), "pid": std::process::id() });
    if let Some(address) = metrics_local {
        said["metrics"] = serde_json::json!(format!("http://{address}/metrics"));
    }
    if let Err(e) =
        arkham_registry::fsutil::write_atomically(&serving, said.to_string().as_bytes(), 0o600)
    {
        tracing::warn!(error = %e, path = %serving.display(), "commands like `arkham logs` will not find this frame");
    }
    // Tests and scripts read this line to learn the port when listening on port 0; serving.json
    // is written first, so that whoever reads it can ask the frame at once.
    println!("listening on http://{local}");
    // After listening: a call to a shard not loaded yet loads it, this loads the rest.
    let loading = frame
        .config()
        .server
        .preload_shards
        .then(|| frame.load_pending());
    let member = frame
        .config()
        .cluster
        .advertise
        .clone()
        .unwrap_or_else(|| local.to_string());
    let announcing = frame.announce(member.clone());
    eprintln!(
        "dashboard: http://{local}/ (operator sign-in with the token in {})",
        data.admin_token().display()
    );
    let metrics_task = match (metrics, metrics_local) {
        (Some(listener), Some(address)) => {
            eprintln!("metrics: http://{address}/metrics (no token: keep it private)");
            let app = crate::metrics::app(frame.clone());
            let config = frame.config().server.clone();
            let stop = stopped(stopping_rx.clone());
            Some(tokio::spawn(async move {
                server::serve_app(
                    listener,
                    app,
                    &config,
                    METRICS_CONNECTIONS,
                    stop,
                    MIN_SHARD_GRACE,
                )
                .await
            }))
        }
        _ => None,
    };
    let stopping = server::serve(
        listener,
        frame.clone(),
        connections,
        stopped(stopping_rx),
        SHUTDOWN_GRACE,
    )
    .await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    if let Some(task) = announcing {
        task.abort();
        if let Some(cluster) = frame.cluster() {
            cluster.leave(&member).await;
        }
    }
    // No more loads once the shards are being shut down (a shard left pending stays so).
    if let Some(task) = loading {
        task.abort();
    }
    tracing::info!("shutting down: finishing calls in progress");
    // One grace for the whole shutdown: what the connections used is not given again.
    let left = (stopping + SHUTDOWN_GRACE).saturating_duration_since(Instant::now());
    frame.shutdown(left.max(MIN_SHARD_GRACE)).await;
    let _ = std::fs::remove_file(&serving);
    tracing::info!("stopped");
    Ok(())
}

/// Resolves at SIGINT or SIGTERM; both are registered when this is called, not when it is first
/// polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
