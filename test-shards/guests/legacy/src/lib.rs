//! Fixture shard `legacy`: built against the frozen `arkham:shard@0.1.0` WIT
//! (`frame/wit/arkham-shard-0.1.0`) with wit-bindgen directly, as a shard built before 0.2.0 was.
//! It uses every 0.1.0 interface, so a test can see that such a shard still runs unchanged.
//!
//! HTTP (under `/api/legacy`):
//! - `PUT /notes/{key}`: stores the body in storage (`text/plain`), counts it in the database,
//!   publishes `legacy.note.stored` with the key as payload; 201 `stored {key} {size}`. A storage
//!   error answers 409 `{case}: {message}`, `case` being the 0.1.0 variant's name.
//! - `GET /notes/{key}`: the stored body (with its content type), or 404.
//! - `GET /received`: the events the handler received, one `{name} {source} {payload}` a line.
//! - anything else: 404.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../frame/wit/arkham-shard-0.1.0",
        world: "arkham:shard/buffered-shard",
        generate_all,
    });
}

use bindings::arkham::shard::{database, events, logging, storage};
use bindings::exports::arkham::shard::{event_handler, http_handler};

struct Legacy;

const SCHEMA: &str = "CREATE TABLE notes (key TEXT PRIMARY KEY, size BIGINT NOT NULL);
CREATE TABLE received (id BIGINT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL, payload TEXT NOT NULL);";

fn text(status: u16, body: impl Into<String>) -> http_handler::Response {
    http_handler::Response {
        status,
        headers: vec![("content-type".into(), b"text/plain".to_vec())],
        body: body.into().into_bytes(),
    }
}

fn schema() -> Result<(), String> {
    database::ensure_schema(1, SCHEMA).map_err(|e| format!("{e:?}"))
}

fn storage_case(error: &storage::Error) -> (&'static str, &str) {
    match error {
        storage::Error::InvalidKey(m) => ("invalid-key", m),
        storage::Error::LimitExceeded(m) => ("limit-exceeded", m),
        storage::Error::Io(m) => ("io", m),
    }
}

fn put(key: &str, body: Vec<u8>) -> http_handler::Response {
    let size = body.len();
    if let Err(e) = storage::put(key, &body, "text/plain") {
        let (case, message) = storage_case(&e);
        return text(409, format!("{case}: {message}"));
    }
    let counted = database::execute(
        "INSERT INTO notes (key, size) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET size = excluded.size",
        &[
            database::Value::Text(key.into()),
            database::Value::Integer(i64::try_from(size).unwrap_or(i64::MAX)),
        ],
    );
    if let Err(e) = counted {
        return text(500, format!("{e:?}"));
    }
    if let Err(e) = events::publish("legacy.note.stored", key) {
        return text(500, format!("{e:?}"));
    }
    text(201, format!("stored {key} {size}"))
}

fn get(key: &str) -> http_handler::Response {
    match storage::get(key) {
        Ok(Some(object)) => http_handler::Response {
            status: 200,
            headers: vec![("content-type".into(), object.info.content_type.into_bytes())],
            body: object.data,
        },
        Ok(None) => text(404, "no such note"),
        Err(e) => {
            let (case, message) = storage_case(&e);
            text(409, format!("{case}: {message}"))
        }
    }
}

fn received() -> http_handler::Response {
    match database::query(
        "SELECT name, source, payload FROM received ORDER BY id",
        &[],
    ) {
        Ok(rows) => {
            let lines: Vec<String> = rows
                .rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|v| match v {
                            database::Value::Text(t) => t.clone(),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            text(200, lines.join("\n"))
        }
        Err(e) => text(500, format!("{e:?}")),
    }
}

impl http_handler::Guest for Legacy {
    fn handle(request: http_handler::Request) -> http_handler::Response {
        logging::log(
            logging::Level::Info,
            &format!("{} {}", request.method, request.path_with_query),
        );
        if let Err(e) = schema() {
            return text(500, e);
        }
        let path = request.path_with_query.split('?').next().unwrap_or("");
        match (request.method.as_str(), path.strip_prefix("/notes/")) {
            ("PUT", Some(key)) => put(key, request.body),
            ("GET", Some(key)) => get(key),
            ("GET", None) if path == "/received" => received(),
            _ => text(404, "not found"),
        }
    }
}

impl event_handler::Guest for Legacy {
    fn handle(event: event_handler::Event) -> Result<(), String> {
        schema()?;
        database::execute(
            "INSERT INTO received (id, name, source, payload) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            &[
                database::Value::Integer(i64::try_from(event.id).unwrap_or(i64::MAX)),
                database::Value::Text(event.name),
                database::Value::Text(event.source),
                database::Value::Text(event.payload),
            ],
        )
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
    }
}

bindings::export!(Legacy with_types_in bindings);
