//! Publishing events to other shards (manifest service `events`) and reading delivered ones.
//!
//! Names are `{shard}.{entity}.{action}`; a shard may publish only names that start with its own
//! name and match its manifest's `publishes`. Published events are held by the frame and appended
//! to the log only when the current request (or event) returns, and dropped if it traps.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::arkham::shard::events as raw;

pub use crate::bindings::exports::arkham::shard::event_handler::Event;
pub use raw::Error;

/// Publishes `payload`, serialised as JSON, under `name`.
pub fn publish<T: Serialize + ?Sized>(name: &str, payload: &T) -> Result<(), Error> {
    let payload = serde_json::to_string(payload)
        .map_err(|err| Error::Other(format!("could not serialise the payload: {err}")))?;
    raw::publish(name, &payload)
}

/// Publishes `payload` as given (by convention a JSON document).
pub fn publish_raw(name: &str, payload: &str) -> Result<(), Error> {
    raw::publish(name, payload)
}

impl Event {
    /// Parses the payload as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}

impl Error {
    /// The variant's name in snake_case, e.g. `"denied"`, for error codes.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidName(_) => "invalid_name",
            Error::Denied(_) => "denied",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Other(_) => "other",
        }
    }

    /// The frame's message.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidName(message)
            | Error::Denied(message)
            | Error::LimitExceeded(message)
            | Error::Other(message) => message,
        }
    }
}
