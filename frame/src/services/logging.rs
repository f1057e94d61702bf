//! `arkham:shard/logging`: a shard's messages in the frame's log, tagged with the shard's name.

use crate::bindings::logging::{self, Level};
use wasmtime::component::HasData;

/// Longest message kept, in bytes; longer ones are cut (at a character boundary).
const MAX_MESSAGE: usize = 16 * 1024;

/// The view the `Host` trait is implemented on: the name of the calling shard.
pub struct LoggingView<'a> {
    /// The calling shard.
    pub shard: &'a str,
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
        let shard = self.shard;
        let message = truncate(&message);
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
    #[test]
    fn truncates_at_char_boundaries() {
        let long = "é".repeat(super::MAX_MESSAGE);
        let cut = super::truncate(&long);
        assert!(cut.len() <= super::MAX_MESSAGE);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(super::truncate("short"), "short");
    }
}
