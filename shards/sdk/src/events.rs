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
///
/// ```no_run
/// use arkham_shard_sdk::events;
///
/// events::publish("notes.note.created", &serde_json::json!({ "id": "n1" }))?;
/// # Ok::<(), arkham_shard_sdk::events::Error>(())
/// ```
pub fn publish<T: Serialize + ?Sized>(name: &str, payload: &T) -> Result<(), Error> {
    let payload = serde_json::to_string(payload)
        .map_err(|err| Error::Other(format!("could not serialise the payload: {err}")))?;
    raw::publish(name, &payload)
}

/// Publishes `payload` as given (by convention a JSON document).
///
/// ```no_run
/// use arkham_shard_sdk::events;
///
/// events::publish_raw("notes.note.deleted", r#"{"id":"n1"}"#)?;
/// # Ok::<(), arkham_shard_sdk::events::Error>(())
/// ```
pub fn publish_raw(name: &str, payload: &str) -> Result<(), Error> {
    raw::publish(name, payload)
}

impl Event {
    /// Parses the payload as JSON into `T`.
    ///
    /// ```
    /// use arkham_shard_sdk::Event;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Created { packet_id: String }
    ///
    /// let event = Event {
    ///     id: 7,
    ///     name: "packets.packet.created".into(),
    ///     source: "packets".into(),
    ///     payload: r#"{"packet_id": "p1"}"#.into(),
    ///     published_at: 0,
    /// };
    /// assert_eq!(event.json::<Created>()?.packet_id, "p1");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}

impl Error {
    /// The variant's name in snake_case, e.g. `"denied"`, for error codes.
    ///
    /// ```
    /// use arkham_shard_sdk::events::Error;
    ///
    /// assert_eq!(Error::Denied("not declared".into()).code(), "denied");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidName(_) => "invalid_name",
            Error::Denied(_) => "denied",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Other(_) => "other",
        }
    }

    /// The frame's message.
    ///
    /// ```
    /// use arkham_shard_sdk::events::Error;
    ///
    /// assert_eq!(Error::Denied("not declared".into()).message(), "not declared");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidName(message)
            | Error::Denied(message)
            | Error::LimitExceeded(message)
            | Error::Other(message) => message,
        }
    }
}
