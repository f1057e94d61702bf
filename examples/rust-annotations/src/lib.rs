//! annotations: notes on packets, an example arkham shard in Rust.
//!
//! Build, add and call it (from the repository root; see README.md for the routes):
//!
//! ```sh
//! arkham shard build examples/rust-annotations
//! arkham shard add examples/rust-annotations --yes
//! curl -X POST localhost:8470/api/annotations/PACKET_ID -d '{"text": "check the dates"}'
//! ```
//!
//! It uses the three services together: an annotation's text is a blob in **storage** and its row
//! is in the **database**, written in one transaction; creating one publishes
//! `annotations.annotation.created` on **events**; and every `packets.*` event the shard hears is
//! recorded in the database, once per event id. Every request and every event runs in a fresh
//! instance, so nothing is kept in memory between them.

use arkham_shard_sdk::{
    ApiError, Event, Params, Request, Response, Router, Shard, db, events, log, params, random,
    storage, time,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `ensure_schema` runs this once per version; append migrations and bump the version. The SQL
/// keeps to what SQLite and PostgreSQL share (`?`, `BIGINT`, `ON CONFLICT ... DO NOTHING`).
const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS annotations (
    id TEXT PRIMARY KEY,
    packet_id TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_by_packet ON annotations (packet_id, created_at);
CREATE TABLE IF NOT EXISTS heard (
    event_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    packet_id TEXT,
    payload TEXT NOT NULL,
    published_at BIGINT NOT NULL
);
";

/// The longest annotation text kept, in bytes of UTF-8.
const MAX_TEXT_BYTES: usize = 4096;

/// The longest packet id accepted; packets' own ids are UUIDs.
const MAX_PACKET_ID_BYTES: usize = 64;

struct Annotations;

impl Shard for Annotations {
    fn handle(request: Request) -> Response {
        // Once the frame has seen the schema current, this runs no SQL.
        if let Err(error) = db::ensure_schema(SCHEMA_VERSION, SCHEMA) {
            log::error(&format!("preparing the schema failed: {}", error.message()));
            return ApiError::from(error).into_response();
        }
        // Paths are relative to the shard's prefix, `/api/annotations`. The literal `/events`
        // beats `/{packet_id}` whatever the order.
        Router::new()
            .get("/events", list_events)
            .get("/{packet_id}", list_annotations)
            .post("/{packet_id}", create_annotation)
            .delete("/{packet_id}/{id}", delete_annotation)
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        // An `Err` makes the frame deliver the event again later, with back-off.
        record_event(&event)
            .map_err(|error| format!("recording event {}: {}", event.id, error.message()))
    }
}

/// An annotation as the API shows it.
#[derive(Debug, Serialize)]
struct Annotation {
    id: String,
    packet_id: String,
    /// `None` if the blob is missing (removed behind the shard's back).
    text: Option<String>,
    created_at: String,
}

/// The body of `POST /{packet_id}`.
#[derive(Debug, Deserialize)]
struct NewAnnotation {
    text: Option<String>,
}

/// A packets event as recorded by [`record_event`].
#[derive(Debug, Serialize)]
struct Heard {
    event_id: i64,
    name: String,
    source: String,
    packet_id: Option<String>,
    payload: serde_json::Value,
    published_at: i64,
}

/// `POST /{packet_id}` `{"text": "..."}`: 201 with the annotation.
fn create_annotation(request: &Request, params: &Params) -> Result<Response, ApiError> {
    let packet_id = check_packet_id(params.require("packet_id")?)?;
    let text = parse_text(&request.body)?;
    let id = random::uuid_v4();
    let key = blob_key(packet_id, &id);
    let created_at = time::now_rfc3339();

    // Dropping the transaction rolls it back, so if the blob cannot be stored (`?` below), the
    // row is not kept either.
    let tx = db::begin()?;
    tx.execute(
        "INSERT INTO annotations (id, packet_id, blob_key, created_at) VALUES (?, ?, ?, ?)",
        params![&id, packet_id, &key, &created_at],
    )?;
    storage::put(&key, text.as_bytes(), "text/plain; charset=utf-8")?;
    if let Err(error) = tx.commit() {
        // Without its row the blob is unreachable: remove it, on a best-effort basis.
        if let Err(cleanup) = storage::delete(&key) {
            log::warn(&format!("could not remove {key}: {}", cleanup.message()));
        }
        return Err(error.into());
    }

    // The frame appends the event only once this request returns. The annotation is committed
    // by now, so a refused publication is logged rather than failing the request.
    let payload = json!({ "id": id, "packet_id": packet_id });
    if let Err(error) = events::publish("annotations.annotation.created", &payload) {
        log::error(&format!(
            "could not publish annotations.annotation.created: {}",
            error.message()
        ));
    }
    let annotation = Annotation {
        id,
        packet_id: packet_id.to_owned(),
        text: Some(text),
        created_at,
    };
    Ok(Response::json(201, &annotation))
}

/// `GET /{packet_id}`: the packet's annotations, oldest first, with their text from storage.
fn list_annotations(_request: &Request, params: &Params) -> Result<Response, ApiError> {
    let packet_id = check_packet_id(params.require("packet_id")?)?;
    let annotations = db::query(
        "SELECT id, blob_key, created_at FROM annotations WHERE packet_id = ? \
         ORDER BY created_at, id",
        params![packet_id],
    )?
    .map(|row| {
        let key: String = row.get("blob_key")?;
        let text =
            storage::get(&key)?.map(|object| String::from_utf8_lossy(&object.data).into_owned());
        Ok::<_, ApiError>(Annotation {
            id: row.get("id")?,
            packet_id: packet_id.to_owned(),
            text,
            created_at: row.get("created_at")?,
        })
    })?;
    Ok(Response::json(
        200,
        &json!({ "packet_id": packet_id, "annotations": annotations }),
    ))
}

/// `DELETE /{packet_id}/{id}`: 204, or 404 if the packet has no such annotation.
fn delete_annotation(_request: &Request, params: &Params) -> Result<Response, ApiError> {
    let packet_id = check_packet_id(params.require("packet_id")?)?;
    let id = params.require("id")?;
    let tx = db::begin()?;
    let key: String = tx
        .query_opt(
            "SELECT blob_key FROM annotations WHERE id = ? AND packet_id = ?",
            params![id, packet_id],
        )?
        .ok_or_else(|| {
            ApiError::not_found(format!("packet `{packet_id}` has no annotation `{id}`"))
        })?
        .get("blob_key")?;
    tx.execute("DELETE FROM annotations WHERE id = ?", params![id])?;
    tx.commit()?;
    // The blob goes after the commit: a blob left without its row is only garbage, while a row
    // left without its blob would lose the text.
    if let Err(error) = storage::delete(&key) {
        log::warn(&format!("could not remove {key}: {}", error.message()));
    }
    Ok(Response::empty(204))
}

/// `GET /events`: the packets events heard, in log order.
fn list_events(_request: &Request, _params: &Params) -> Result<Response, ApiError> {
    let events = db::query(
        "SELECT event_id, name, source, packet_id, payload, published_at FROM heard \
         ORDER BY event_id",
        params![],
    )?
    .map(|row| {
        let payload: String = row.get("payload")?;
        Ok::<_, db::Error>(Heard {
            event_id: row.get("event_id")?,
            name: row.get("name")?,
            source: row.get("source")?,
            packet_id: row.get("packet_id")?,
            // Shown as JSON when it is JSON (as packets' payloads are), else as the text it is.
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
            published_at: row.get("published_at")?,
        })
    })?;
    Ok(Response::json(200, &json!({ "events": events })))
}

/// Records one delivered event. Delivery is at least once, so the event id is the primary key
/// and a second delivery of the same event changes nothing.
fn record_event(event: &Event) -> Result<(), db::Error> {
    db::ensure_schema(SCHEMA_VERSION, SCHEMA)?;
    let packet_id = event
        .json::<serde_json::Value>()
        .ok()
        .and_then(|payload| payload.get("packet_id")?.as_str().map(str::to_owned));
    db::execute(
        "INSERT INTO heard (event_id, name, source, packet_id, payload, published_at) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
        params![
            to_i64(event.id)?,
            event.name.as_str(),
            event.source.as_str(),
            packet_id,
            event.payload.as_str(),
            to_i64(event.published_at)?,
        ],
    )?;
    Ok(())
}

/// SQL integers are signed 64-bit; the frame's ids and timestamps fit long before they overflow.
fn to_i64(n: u64) -> Result<i64, db::Error> {
    i64::try_from(n).map_err(|_| db::Error::Other(format!("{n} does not fit in BIGINT")))
}

/// Where an annotation's text is stored.
fn blob_key(packet_id: &str, id: &str) -> String {
    format!("annotations/{packet_id}/{id}.txt")
}

/// A packet id is 1 to 64 ASCII letters, digits, `-` or `_`: it becomes a storage key segment.
fn check_packet_id(id: &str) -> Result<&str, ApiError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_PACKET_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(id)
    } else {
        Err(ApiError::new(
            400,
            "invalid_packet_id",
            format!("a packet id is 1 to {MAX_PACKET_ID_BYTES} ASCII letters, digits, `-` or `_`"),
        ))
    }
}

/// The text of a `{"text": "..."}` body, or the 400 error that says what is wrong with it.
fn parse_text(body: &[u8]) -> Result<String, ApiError> {
    let new: NewAnnotation = serde_json::from_slice(body).map_err(|err| {
        if err.is_data() {
            ApiError::new(
                400,
                "invalid_annotation",
                format!(r#"send {{"text": "..."}}: {err}"#),
            )
        } else {
            ApiError::new(400, "invalid_json", format!("the body is not JSON: {err}"))
        }
    })?;
    let text = new
        .text
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| {
            ApiError::new(
                400,
                "missing_text",
                r#"send {"text": "..."} with a text that is not blank"#,
            )
        })?;
    if text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::new(
            400,
            "text_too_long",
            format!(
                "the text is {} bytes; at most {MAX_TEXT_BYTES} are kept",
                text.len()
            ),
        ));
    }
    Ok(text)
}

arkham_shard_sdk::export_shard!(Annotations);

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        result.unwrap_err().code
    }

    #[test]
    fn texts_are_checked() {
        assert_eq!(parse_text(br#"{"text": "hi"}"#).unwrap(), "hi");
        assert_eq!(code(parse_text(b"")), "invalid_json");
        assert_eq!(code(parse_text(b"{not json")), "invalid_json");
        assert_eq!(code(parse_text(br#"{"text": 5}"#)), "invalid_annotation");
        assert_eq!(code(parse_text(b"{}")), "missing_text");
        assert_eq!(code(parse_text(br#"{"text": "  "}"#)), "missing_text");
        let long = serde_json::to_vec(&json!({ "text": "x".repeat(MAX_TEXT_BYTES + 1) })).unwrap();
        assert_eq!(code(parse_text(&long)), "text_too_long");
        let longest = serde_json::to_vec(&json!({ "text": "x".repeat(MAX_TEXT_BYTES) })).unwrap();
        assert_eq!(parse_text(&longest).unwrap().len(), MAX_TEXT_BYTES);
    }

    #[test]
    fn packet_ids_are_key_segments() {
        assert!(check_packet_id("3f2b8c1e-9a4d-4c6b-8e2f-1a2b3c4d5e6f").is_ok());
        assert!(check_packet_id("a_b").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a b",
            "é",
            &"x".repeat(MAX_PACKET_ID_BYTES + 1),
        ] {
            assert_eq!(code(check_packet_id(bad)), "invalid_packet_id", "{bad:?}");
        }
    }
}
