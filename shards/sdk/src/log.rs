//! Levelled logging into the frame's log, tagged with the shard's name. Messages longer than
//! 16 KiB are truncated by the frame.

use crate::bindings::arkham::shard::logging as raw;

pub use raw::Level;

/// Writes `message` at `level`.
pub fn log(level: Level, message: &str) {
    raw::log(level, message);
}

/// Very verbose diagnostics.
pub fn trace(message: &str) {
    raw::log(Level::Trace, message);
}

/// Diagnostics for developers.
pub fn debug(message: &str) {
    raw::log(Level::Debug, message);
}

/// Normal operation.
pub fn info(message: &str) {
    raw::log(Level::Info, message);
}

/// Something unexpected that the shard recovered from.
pub fn warn(message: &str) {
    raw::log(Level::Warn, message);
}

/// A failure.
pub fn error(message: &str) {
    raw::log(Level::Error, message);
}
