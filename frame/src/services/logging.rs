//! `arkham:shard/logging`: a shard's messages in the frame's log, tagged with the shard's name.
//!
//! Everything a shard writes to the frame's log (`logging.log` and its stdout/stderr lines) goes
//! through its [`ShardLog`]: token buckets on lines and bytes per second, shared by every
//! instance of the shard. What does not fit is dropped and counted, and the count is itself
//! logged, at most once per [`NOTICE_INTERVAL`] per shard.

use crate::bindings::logging::{self, Level};
use crate::services::rate::CountAndBytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::HasData;

/// Longest message kept, in bytes; longer ones are cut (at a character boundary).
const MAX_MESSAGE: usize = 16 * 1024;

/// Least time between two "dropped N log lines" notices of one shard.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(1);

/// The `[logging]` section of the frame config: what one shard may write to the frame's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Lines per second, sustained (all instances of the shard together).
    pub rate_lines: u64,
    /// Lines at once, above the sustained rate.
    pub burst_lines: u64,
    /// Bytes per second, sustained.
    pub rate_bytes: u64,
    /// Bytes at once, above the sustained rate.
    pub burst_bytes: u64,
    /// Per-shard overrides, by shard name: `[logging.shards.packets]`.
    pub shards: BTreeMap<String, LoggingOverride>,
}

/// Log limits of one shard that differ from the `[logging]` defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingOverride {
    /// See [`LoggingConfig::rate_lines`].
    pub rate_lines: Option<u64>,
    /// See [`LoggingConfig::burst_lines`].
    pub burst_lines: Option<u64>,
    /// See [`LoggingConfig::rate_bytes`].
    pub rate_bytes: Option<u64>,
    /// See [`LoggingConfig::burst_bytes`].
    pub burst_bytes: Option<u64>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            rate_lines: 1_000,
            burst_lines: 10_000,
            rate_bytes: 1 << 20,
            burst_bytes: 8 << 20,
            shards: BTreeMap::new(),
        }
    }
}

impl LoggingConfig {
    /// (rate_lines, burst_lines, rate_bytes, burst_bytes) for `shard`.
    fn limits_for(&self, shard: &str) -> [u64; 4] {
        let o = self.shards.get(shard).cloned().unwrap_or_default();
        [
            o.rate_lines.unwrap_or(self.rate_lines),
            o.burst_lines.unwrap_or(self.burst_lines),
            o.rate_bytes.unwrap_or(self.rate_bytes),
            o.burst_bytes.unwrap_or(self.burst_bytes),
        ]
    }

    /// Checks the section; the message names the field to fix.
    pub fn validate(&self) -> Result<(), String> {
        let names = std::iter::once("").chain(self.shards.keys().map(String::as_str));
        for name in names {
            if self.limits_for(name).contains(&0) {
                return Err(
                    "logging.rate_lines, burst_lines, rate_bytes and burst_bytes must be at \
                     least 1 (for every shard override too)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

struct LogState {
    buckets: CountAndBytes,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// When the first line counted in `dropped_*` was dropped.
    since: Option<Instant>,
    last_notice: Option<Instant>,
}

struct LogInner {
    shard: Arc<str>,
    state: Mutex<LogState>,
    recent: Mutex<Recent>,
}

/// Lines of one shard kept for `arkham logs`, at most.
pub const KEPT_LINES: usize = 1000;
/// Bytes of messages of one shard kept for `arkham logs`, at most.
pub const KEPT_BYTES: usize = 256 * 1024;

/// The newest lines a shard wrote, within [`KEPT_LINES`] and [`KEPT_BYTES`].
#[derive(Default)]
struct Recent {
    lines: std::collections::VecDeque<LogLine>,
    bytes: usize,
    next_seq: u64,
}

/// One line a shard wrote to the frame's log, as `arkham logs` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Its number in the shard's log since the shard was loaded, from 1.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `trace`, `debug`, `info`, `warn` or `error` (stdout and stderr lines are `info`).
    pub level: &'static str,
    /// `log` (the `logging` interface), `stdout` or `stderr`.
    pub stream: &'static str,
    /// The message.
    pub message: String,
}

/// One shard's budget in the frame's log; cheap to clone, shared by its instances.
#[derive(Clone)]
pub struct ShardLog(Arc<LogInner>);

/// A notice that lines were dropped, to write once the budget's lock is released.
struct Notice {
    lines: u64,
    bytes: u64,
    over: Duration,
}

impl ShardLog {
    /// The budget of `shard` under `config`, full.
    pub fn new(shard: &str, config: &LoggingConfig) -> Self {
        let [rate, burst, rate_bytes, burst_bytes] = config.limits_for(shard);
        let now = Instant::now();
        Self(Arc::new(LogInner {
            shard: shard.into(),
            state: Mutex::new(LogState {
                buckets: CountAndBytes::new(rate, burst, rate_bytes, burst_bytes, now),
                dropped_lines: 0,
                dropped_bytes: 0,
                since: None,
                last_notice: None,
            }),
            recent: Mutex::default(),
        }))
    }

    /// Keeps a line the shard wrote (one the budget admitted), dropping the oldest past the
    /// bounds.
    pub fn keep(&self, level: &'static str, stream: &'static str, message: &str) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let message = truncate_to(message, KEPT_BYTES).to_string();
        let mut recent = self.0.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.next_seq += 1;
        recent.bytes += message.len();
        let seq = recent.next_seq;
        recent.lines.push_back(LogLine {
            seq,
            at_ms,
            level,
            stream,
            message,
        });
        while recent.lines.len() > KEPT_LINES || recent.bytes > KEPT_BYTES {
            match recent.lines.pop_front() {
                Some(old) => recent.bytes -= old.message.len(),
                None => break,
            }
        }
    }

    /// Up to `limit` kept lines numbered after `after`, oldest first, and the number of the
    /// newest line written (kept or not), to ask for what follows.
    pub fn since(&self, after: u64, limit: usize) -> (Vec<LogLine>, u64) {
        let recent = self.0.recent.lock().unwrap_or_else(|e| e.into_inner());
        let lines = recent
            .lines
            .iter()
            .filter(|line| line.seq > after)
            .take(limit)
            .cloned()
            .collect();
        (lines, recent.next_seq)
    }

    /// The shard's name.
    pub fn shard(&self) -> &str {
        &self.0.shard
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a line of `bytes` fits the budget (charging it); a line that does not is counted
    /// as dropped. Writes a due notice of dropped lines either way.
    pub fn admit(&self, bytes: usize) -> bool {
        let now = Instant::now();
        let (admitted, notice) = {
            let mut state = self.state();
            let admitted = state.buckets.try_take(bytes as u64, now).is_ok();
            if !admitted {
                state.dropped_lines += 1;
                state.dropped_bytes += bytes as u64;
                state.since.get_or_insert(now);
            }
            (admitted, due(&mut state, now))
        };
        self.notify(notice);
        admitted
    }

    /// Writes the notice of dropped lines if one is due (called when a call ends, so a flood
    /// that stops is still reported).
    pub fn settle(&self) {
        let notice = due(&mut self.state(), Instant::now());
        self.notify(notice);
    }

    fn notify(&self, notice: Option<Notice>) {
        let Some(Notice { lines, bytes, over }) = notice else {
            return;
        };
        let shard = &*self.0.shard;
        tracing::warn!(
            shard,
            dropped_lines = lines,
            dropped_bytes = bytes,
            "shard {shard}: dropped {lines} log lines ({bytes} bytes) in the last {:.1} s: it \
             writes more than its [logging] limits allow",
            over.as_secs_f64()
        );
    }
}

/// The notice to write now, if lines were dropped and the last notice is old enough.
fn due(state: &mut LogState, now: Instant) -> Option<Notice> {
    let since = state.since?;
    if state
        .last_notice
        .is_some_and(|last| now.saturating_duration_since(last) < NOTICE_INTERVAL)
    {
        return None;
    }
    let notice = Notice {
        lines: state.dropped_lines,
        bytes: state.dropped_bytes,
        over: now.saturating_duration_since(since),
    };
    state.dropped_lines = 0;
    state.dropped_bytes = 0;
    state.since = None;
    state.last_notice = Some(now);
    Some(notice)
}

/// The view the `Host` trait is implemented on: the calling shard's log budget.
pub struct LoggingView<'a> {
    /// The calling shard's budget (and name).
    pub log: &'a ShardLog,
}

/// [`HasData`] marker for adding the interface to a linker.
pub struct Logging;

impl HasData for Logging {
    type Data<'a> = LoggingView<'a>;
}

/// Adds `arkham:shard/logging` to `linker`, with `view` projecting the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> LoggingView<'_>,
) -> wasmtime::Result<()> {
    logging::add_to_linker::<T, Logging>(linker, view)
}

/// Cuts `message` to at most [`MAX_MESSAGE`] bytes without splitting a character.
pub fn truncate(message: &str) -> &str {
    truncate_to(message, MAX_MESSAGE)
}

/// Cuts `message` to at most `max` bytes without splitting a character.
pub fn truncate_to(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl logging::Host for LoggingView<'_> {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let shard = self.log.shard();
        let enabled = match level {
            Level::Trace => tracing::enabled!(target: "arkham::shard", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "arkham::shard", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "arkham::shard", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "arkham::shard", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "arkham::shard", tracing::Level::ERROR),
        };
        // A filtered-out line costs the budget nothing: it is never written.
        let message = truncate(&message);
        if !enabled || !self.log.admit(message.len()) {
            return Ok(());
        }
        let name = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log.keep(name, "log", message);
        match level {
            Level::Trace => tracing::trace!(target: "arkham::shard", shard, "{message}"),
            Level::Debug => tracing::debug!(target: "arkham::shard", shard, "{message}"),
            Level::Info => tracing::info!(target: "arkham::shard", shard, "{message}"),
            Level::Warn => tracing::warn!(target: "arkham::shard", shard, "{message}"),
            Level::Error => tracing::error!(target: "arkham::shard", shard, "{message}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_lines_are_bounded_and_read_after_a_number() {
        let log = ShardLog::new("s", &LoggingConfig::default());
        for i in 0..(KEPT_LINES + 5) {
            log.keep("info", "log", &format!("line {i}"));
        }
        let (lines, newest) = log.since(0, usize::MAX);
        assert_eq!(newest, (KEPT_LINES + 5) as u64);
        assert_eq!(lines.len(), KEPT_LINES);
        assert_eq!(lines[0].message, "line 5");
        let (tail, _) = log.since(newest - 2, 10);
        assert_eq!(
            tail.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["line 1003", "line 1004"]
        );
        // Bytes bound the kept lines too.
        let big = "x".repeat(KEPT_BYTES / 2);
        log.keep("warn", "stderr", &big);
        log.keep("warn", "stderr", &big);
        log.keep("warn", "stderr", &big);
        let (lines, _) = log.since(0, usize::MAX);
        assert!(lines.iter().map(|l| l.message.len()).sum::<usize>() <= KEPT_BYTES);
        assert_eq!(lines.last().unwrap().level, "warn");
    }

    #[test]
    fn drops_past_the_budget_and_counts_what_it_dropped() {
        let config = LoggingConfig {
            rate_lines: 1,
            burst_lines: 3,
            rate_bytes: 1,
            burst_bytes: 100,
            shards: BTreeMap::from([(
                "quiet".to_string(),
                LoggingOverride {
                    burst_lines: Some(1),
                    ..Default::default()
                },
            )]),
        };
        let log = ShardLog::new("chatty", &config);
        let shared = log.clone();
        assert!(log.admit(10));
        assert!(shared.admit(10));
        assert!(log.admit(10));
        // The line budget is spent, by every clone (instance) together.
        assert!(!shared.admit(1));
        // The first drop is reported at once; the next ones wait for the interval.
        {
            let state = log.state();
            assert_eq!(state.dropped_lines, 0);
            assert!(state.last_notice.is_some());
        }
        assert!(!log.admit(1));
        assert!(!log.admit(1));
        assert_eq!(log.state().dropped_lines, 2);
        log.settle();
        assert_eq!(log.state().dropped_lines, 2, "notices are rate limited");
        log.state().last_notice = Some(Instant::now() - NOTICE_INTERVAL);
        log.settle();
        assert_eq!(log.state().dropped_lines, 0);

        let quiet = ShardLog::new("quiet", &config);
        assert!(quiet.admit(1));
        assert!(!quiet.admit(1));
        // Bytes are limited too: a 200-byte line never fits a 100-byte burst.
        let fresh = ShardLog::new("other", &config);
        assert!(!fresh.admit(200));
        assert!(fresh.admit(100));

        assert!(config.validate().is_ok());
        let zero = LoggingConfig {
            rate_bytes: 0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn truncates_at_char_boundaries() {
        let long = "é".repeat(super::MAX_MESSAGE);
        let cut = super::truncate(&long);
        assert!(cut.len() <= super::MAX_MESSAGE);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(super::truncate("short"), "short");
    }
}
