//! Levelled logging into the frame's log, tagged with the shard's name. Messages longer than
//! 16 KiB are truncated by the frame.

use crate::bindings::arkham::shard::logging as raw;

pub use raw::Level;

/// Writes `message` at `level`.
///
/// ```no_run
/// use arkham_shard_sdk::log::{self, Level};
///
/// let level = if cfg!(debug_assertions) { Level::Debug } else { Level::Info };
/// log::log(level, "schema ready");
/// ```
pub fn log(level: Level, message: &str) {
    raw::log(level, message);
}

/// Very verbose diagnostics.
///
/// ```no_run
/// arkham_shard_sdk::log::trace("row 3 of 10");
/// ```
pub fn trace(message: &str) {
    raw::log(Level::Trace, message);
}

/// Diagnostics for developers.
///
/// ```no_run
/// arkham_shard_sdk::log::debug("cache miss for n1");
/// ```
pub fn debug(message: &str) {
    raw::log(Level::Debug, message);
}

/// Normal operation.
///
/// ```no_run
/// arkham_shard_sdk::log::info("imported 12 notes");
/// ```
pub fn info(message: &str) {
    raw::log(Level::Info, message);
}

/// Something unexpected that the shard recovered from.
///
/// ```no_run
/// arkham_shard_sdk::log::warn("blob notes/n1.txt is missing; answering without it");
/// ```
pub fn warn(message: &str) {
    raw::log(Level::Warn, message);
}

/// A failure.
///
/// ```no_run
/// arkham_shard_sdk::log::error("could not publish notes.note.created");
/// ```
pub fn error(message: &str) {
    raw::log(Level::Error, message);
}
