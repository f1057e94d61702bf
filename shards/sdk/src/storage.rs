//! Blob storage in the shard's own namespace (manifest service `storage`).
//!
//! Keys are `/`-separated segments (`exports/2026/report.pdf`); see the WIT for the exact rules.
//! A shard that lists storage only as optional must cope with every call failing: without the
//! grant the frame answers [`Error::Io`].

use serde::Serialize;

use crate::bindings::arkham::shard::storage as raw;

pub use raw::{Error, Object, ObjectInfo};

/// Stores `data` under `key`, replacing any previous object.
///
/// ```no_run
/// use arkham_shard_sdk::storage;
///
/// let info = storage::put("notes/n1.txt", b"hello", "text/plain")?;
/// assert_eq!(info.size, 5);
/// # Ok::<(), arkham_shard_sdk::storage::Error>(())
/// ```
pub fn put(key: &str, data: &[u8], content_type: &str) -> Result<ObjectInfo, Error> {
    raw::put(key, data, content_type)
}

/// Stores `value` as an `application/json` object.
///
/// ```no_run
/// use arkham_shard_sdk::storage;
///
/// storage::put_json("exports/n1.json", &serde_json::json!({ "id": "n1" }))?;
/// # Ok::<(), arkham_shard_sdk::storage::Error>(())
/// ```
pub fn put_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<ObjectInfo, Error> {
    let data = serde_json::to_vec(value)
        .map_err(|err| Error::Io(format!("could not serialise the object: {err}")))?;
    raw::put(key, &data, "application/json")
}

/// The object under `key` with its content, or `None`.
///
/// ```no_run
/// use arkham_shard_sdk::storage;
///
/// if let Some(object) = storage::get("notes/n1.txt")? {
///     let text = String::from_utf8_lossy(&object.data);
///     println!("{} ({})", text, object.info.content_type);
/// }
/// # Ok::<(), arkham_shard_sdk::storage::Error>(())
/// ```
pub fn get(key: &str) -> Result<Option<Object>, Error> {
    raw::get(key)
}

/// The metadata of the object under `key`, or `None`.
///
/// ```no_run
/// use arkham_shard_sdk::storage;
///
/// let size = storage::stat("notes/n1.txt")?.map_or(0, |info| info.size);
/// # Ok::<(), arkham_shard_sdk::storage::Error>(())
/// ```
pub fn stat(key: &str) -> Result<Option<ObjectInfo>, Error> {
    raw::stat(key)
}

/// Whether an object exists under `key`.
///
/// ```no_run
/// use arkham_shard_sdk::storage;
///
/// if !storage::exists("notes/n1.txt")? {
///     storage::put("notes/n1.txt", b"", "text/plain")?;
/// }
/// # Ok::<(), arkham_shard_sdk::storage::Error>(())
/// ```
pub fn exists(key: &str) -> Result<bool, Error> {
    raw::exists(key)
}

/// Deletes the object under `key`; returns whether there was one.
///
/// ```no_run
/// use arkham_shard_sdk::storage;
///
/// let was_there = storage::delete("notes/n1.txt")?;
/// # Ok::<(), arkham_shard_sdk::storage::Error>(())
/// ```
pub fn delete(key: &str) -> Result<bool, Error> {
    raw::delete(key)
}

/// The objects whose keys start with `prefix` (all for `""`), sorted by key.
///
/// ```no_run
/// use arkham_shard_sdk::storage;
///
/// let bytes: u64 = storage::list("notes/")?.iter().map(|info| info.size).sum();
/// # Ok::<(), arkham_shard_sdk::storage::Error>(())
/// ```
pub fn list(prefix: &str) -> Result<Vec<ObjectInfo>, Error> {
    raw::list(prefix)
}

impl Error {
    /// The variant's name in snake_case, e.g. `"invalid_key"`, for error codes.
    ///
    /// ```
    /// use arkham_shard_sdk::storage::Error;
    ///
    /// assert_eq!(Error::InvalidKey("../x".into()).code(), "invalid_key");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidKey(_) => "invalid_key",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Denied(_) => "denied",
            Error::Io(_) => "io",
        }
    }

    /// The frame's message.
    ///
    /// ```
    /// use arkham_shard_sdk::storage::Error;
    ///
    /// assert_eq!(Error::InvalidKey("../x".into()).message(), "../x");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidKey(message)
            | Error::LimitExceeded(message)
            | Error::Denied(message)
            | Error::Io(message) => message,
        }
    }
}
