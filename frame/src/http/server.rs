//! The frame's accept loop: HTTP/1.1 connections served by hyper with the bounds `axum::serve`
//! lacks, so no client can hold the frame's descriptors or memory.
//!
//! - Header read: a connection must deliver each request head within `header_read_timeout_ms`,
//!   counted from when the connection opens or its previous response ends. hyper starts this timer
//!   whenever a connection waits for a head (hyper 1.x, `proto/h1/conn.rs`: `poll_read_head`, and
//!   `State::idle` re-arms it), so it also bounds an idle keep-alive connection.
//! - Body read: the proxy reads a body within `body_read_timeout_ms` (408), into the frame-wide
//!   [`BodyBudget`] of `max_buffered_body_bytes` (503 `frame_busy` past it).
//! - Write: a response the client stops reading fails the connection after `write_timeout_ms`
//!   without progress, so slow readers cannot keep connections (and their slots) forever.
//! - Connections: at most `max_connections`, and never more than the descriptor limit (raised to
//!   its hard limit at start) minus a reserve for databases and files. At the limit the loop stops
//!   accepting: waiting clients stay in the kernel's backlog, costing the frame no descriptor, and
//!   are served as soon as a connection ends (at the latest when a timeout above cuts one).

use crate::frame::Frame;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept free for the frame's own files (databases, the event log, storage, the
/// compiled cache) when sizing the connection limit; at most half the descriptor limit.
const FD_RESERVE: u64 = 512;

/// hyper's per-connection read buffer cap (its default is ~400 KiB): also the largest request
/// head. Bounds what an idle or slow connection can hold.
const MAX_CONNECTION_BUFFER: usize = 64 << 10;

/// Bytes of each request body not charged to the [`BodyBudget`]: small requests (JSON calls) go
/// through even while large uploads fill it. Their memory is bounded by the connection limit.
pub const UNCOUNTED_BODY_BYTES: u64 = 16 << 10;

/// How long the loop pauses when accepting fails for lack of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The `[server]` section of the frame config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Time a connection has to send a request's head, from when it opens or its previous
    /// response ends; also how long an idle keep-alive connection stays open.
    pub header_read_timeout_ms: u64,
    /// Time the frame waits for a whole request body; past it the request gets 408.
    pub body_read_timeout_ms: u64,
    /// Time a response write may make no progress (a client that stopped reading) before the
    /// connection is closed.
    pub write_timeout_ms: u64,
    /// Most connections open at once (lowered to fit the descriptor limit).
    pub max_connections: usize,
    /// Most request-body bytes buffered at once across all requests; a request that would pass
    /// it gets 503 `frame_busy`.
    pub max_buffered_body_bytes: u64,
    /// Whether the shards left pending at start (those that subscribe to no events) are loaded
    /// in the background once the frame listens, one at a time; `false` loads each on its first
    /// call only, so that a shard nobody calls costs no memory.
    pub preload_shards: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            write_timeout_ms: 60_000,
            max_connections: 4096,
            max_buffered_body_bytes: 256 << 20,
            preload_shards: true,
        }
    }
}

impl ServerConfig {
    /// Checks the section; `largest_request` is the largest `max_request_bytes` of any shard,
    /// which the body budget must hold at least once.
    pub fn validate(&self, largest_request: usize) -> Result<(), String> {
        if self.header_read_timeout_ms == 0
            || self.body_read_timeout_ms == 0
            || self.write_timeout_ms == 0
        {
            return Err(
                "server.header_read_timeout_ms, server.body_read_timeout_ms and server.write_timeout_ms must be at least 1"
                    .to_string(),
            );
        }
        if self.max_connections == 0 {
            return Err("server.max_connections must be at least 1".to_string());
        }
        if self.max_buffered_body_bytes < largest_request as u64 {
            return Err(format!(
                "server.max_buffered_body_bytes ({}) must be at least the largest limits.max_request_bytes ({largest_request}), or that body could never be read",
                self.max_buffered_body_bytes
            ));
        }
        Ok(())
    }

    /// See [`ServerConfig::body_read_timeout_ms`].
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

/// The frame-wide budget of buffered request-body bytes; cheap to clone.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    used: AtomicU64,
    max: u64,
}

impl BodyBudget {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                used: AtomicU64::new(0),
                max,
            }),
        }
    }

    /// An empty reservation that grows as a body is read and is returned when dropped.
    pub fn reservation(&self) -> BodyReservation {
        BodyReservation {
            budget: self.inner.clone(),
            held: 0,
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// The budget's size.
    pub fn max(&self) -> u64 {
        self.inner.max
    }
}

/// Bytes of the [`BodyBudget`] one request holds.
#[derive(Debug)]
pub struct BodyReservation {
    budget: Arc<BudgetInner>,
    held: u64,
}

impl BodyReservation {
    /// Makes the reservation cover `len` bytes of body in memory, growing or shrinking it; false
    /// (and the reservation unchanged) if the budget has not that much left. The first
    /// [`UNCOUNTED_BODY_BYTES`] are not charged, so small requests pass a full budget.
    pub fn cover(&mut self, len: u64) -> bool {
        let need = len.saturating_sub(UNCOUNTED_BODY_BYTES);
        if need <= self.held {
            let extra = self.held - need;
            self.held = need;
            self.budget.used.fetch_sub(extra, Ordering::AcqRel);
            return true;
        }
        let more = need - self.held;
        let reserved = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more)
                    .filter(|&total| total <= self.budget.max)
            });
        if reserved.is_ok() {
            self.held = need;
        }
        reserved.is_ok()
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force after.
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::raise_nofile()
}

/// How many connections to serve: the configured limit, lowered to what the descriptor limit
/// `soft` leaves after the frame's reserve.
pub fn connection_limit(configured: usize, soft: u64) -> usize {
    let reserve = FD_RESERVE.min(soft / 2);
    let available = usize::try_from(soft - reserve).unwrap_or(usize::MAX);
    configured.min(available).max(1)
}

/// Serves `frame`'s [`app`](crate::http::app) on `listener`, at most `connections` at once,
/// until `shutdown` completes; then lets in-flight requests finish for up to `grace` and closes
/// what remains. Returns when shutdown began.
pub async fn serve(
    listener: TcpListener,
    frame: Arc<Frame>,
    connections: usize,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Instant {
    let config = frame.config().server.clone();
    let app: Router = crate::http::app(frame);
    serve_app(listener, app, &config, connections, shutdown, grace).await
}

/// Serves `app` on `listener` as [`serve`] serves the frame's, under the same bounds (`config`):
/// for the other addresses the frame listens on (`[metrics] listen`).
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    connections: usize,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Instant {
    let permits = Arc::new(Semaphore::new(connections));
    let write_timeout = Duration::from_millis(config.write_timeout_ms);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // The permit comes first: at the limit, no accept (and no descriptor) happens.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Guarded::new(stream, write_timeout, permit));
        let connection =
            graceful.watch(builder.serve_connection(io, TowerToHyperService::new(app.clone())));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    let stopping = Instant::now();
    // Closing the listener refuses new connections while the open ones finish.
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "connections still open after the shutdown grace; closing them"
        );
    }
    stopping
}

async fn accept_failed(e: &io::Error) {
    match e.raw_os_error() {
        // Out of descriptors or memory: retrying at once would spin; connections will end.
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
        // A client that went away before it was accepted, and the like: only that one fails.
        _ => tracing::debug!(error = %e, "accepting a connection failed"),
    }
}

/// A connection's socket with its slot and a write-progress deadline.
struct Guarded {
    stream: TcpStream,
    write_timeout: Duration,
    /// Set while a write waits for the client; cleared on progress.
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Returned to the connection limit when the connection is dropped.
    _permit: OwnedSemaphorePermit,
}

impl Guarded {
    fn new(stream: TcpStream, write_timeout: Duration, permit: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            write_timeout,
            stalled_since: None,
            _permit: permit,
        }
    }

    /// Maps a pending write to a timeout error once it has stalled for `write_timeout`.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => {
                let deadline = Instant::now() + self.write_timeout;
                let sleep = self
                    .stalled_since
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read nothing of the response within the write timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled_since = None;
                ready
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[expect(
    unsafe_code,
    reason = "getrlimit/setrlimit have no safe wrapper in std or our dependencies"
)]
mod rlimit {
    use std::io;

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit after.
    pub fn raise_nofile() -> io::Result<u64> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, exclusively borrowed `rlimit` for the duration of the call,
        // which only writes that struct.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `raised` is a valid `rlimit` the call only reads.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        Ok(limit.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_size_and_returns_on_drop() {
        let free = UNCOUNTED_BODY_BYTES;
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        assert!(a.cover(free));
        assert_eq!(budget.used(), 0);
        assert!(a.cover(free + 60));
        let mut b = budget.reservation();
        assert!(!b.cover(free + 41));
        assert_eq!(budget.used(), 60);
        assert!(b.cover(free + 40));
        assert_eq!(budget.used(), 100);
        // A small request still passes a full budget.
        assert!(budget.reservation().cover(free));
        a.cover(free + 50);
        assert_eq!(budget.used(), 90);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn connections_fit_the_descriptor_limit() {
        assert_eq!(connection_limit(4096, 1 << 20), 4096);
        assert_eq!(connection_limit(4096, 4096), 4096 - FD_RESERVE as usize);
        assert_eq!(connection_limit(4096, 256), 128);
        assert_eq!(connection_limit(10, 1), 1);
    }

    #[test]
    fn validation_names_the_field() {
        let ok = ServerConfig::default();
        assert!(ok.validate(16 << 20).is_ok());
        let zero = ServerConfig {
            body_read_timeout_ms: 0,
            ..ServerConfig::default()
        };
        assert!(
            zero.validate(1)
                .unwrap_err()
                .contains("body_read_timeout_ms")
        );
        let small = ServerConfig {
            max_buffered_body_bytes: 1 << 20,
            ..ServerConfig::default()
        };
        assert!(
            small
                .validate(16 << 20)
                .unwrap_err()
                .contains("max_buffered_body_bytes")
        );
    }
}
