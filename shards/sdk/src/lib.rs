//! Rust guest SDK for arkham shards.
//!
//! A shard is a `wasm32-wasip2` component. This crate builds it for the
//! `arkham:shard/buffered-shard` WIT world: the frame calls its HTTP API through the one-call
//! `http-handler` export (whole request in, whole response out), serves it under
//! `/api/{shard-name}/`, and runs every request and every event in a fresh instance. This crate hides the generated bindings behind plain Rust:
//!
//! - [`Shard`]: the two entry points a shard implements, wired up by [`export_shard!`];
//! - [`Request`], [`Response`], [`ApiError`] and a small [`Router`] with `{param}` captures;
//! - [`db`], [`events`], [`storage`] and [`log`]: safe wrappers over the frame's services;
//! - [`time`] and [`random`]: timestamps and identifiers from the WASI clocks and random source.
//!
//! A component imports only the services its code calls, and the frame refuses to install a
//! component that imports a service its manifest does not declare.
//!
//! # A whole shard
//!
//! `Cargo.toml` (a `cdylib`; `cargo build --release --target wasm32-wasip2` builds it):
//!
//! ```toml
//! [package]
//! name = "notes"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! # Or, from a checkout of the arkham repository: { path = ".../shards/sdk" }
//! arkham-shard-sdk = "0.2"
//! serde_json = "1"
//! ```
//!
//! `shard.toml`, next to it (the frame's manifest; `arkham shard add .` builds and installs):
//!
//! ```toml
//! name = "notes"
//! version = "0.1.0"
//! description = "Notes, and the packets events heard"
//! requires_frame = ">=0.1.0"
//! capabilities = []
//!
//! [services]
//! required = ["database", "events"]
//! optional = []
//!
//! [events]
//! publishes = ["notes.note.created"]
//! subscribes = ["packets.*"]
//!
//! [build]
//! command = "cargo build --release --target wasm32-wasip2"
//! component = "target/wasm32-wasip2/release/notes.wasm"
//! ```
//!
//! `src/lib.rs`, served under `/api/notes/`:
//!
//! ```no_run
//! use arkham_shard_sdk::{ApiError, Event, Params, Request, Response, Router, Shard};
//! use arkham_shard_sdk::{db, events, params, random};
//!
//! const SCHEMA: &str = "
//!     CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, body TEXT NOT NULL);
//!     CREATE TABLE IF NOT EXISTS heard (event_id BIGINT PRIMARY KEY, name TEXT NOT NULL);";
//!
//! struct Notes;
//!
//! impl Shard for Notes {
//!     fn handle(request: Request) -> Response {
//!         // Runs the script once per version; later calls run no SQL.
//!         if let Err(error) = db::ensure_schema(1, SCHEMA) {
//!             return ApiError::from(error).into_response();
//!         }
//!         Router::new()
//!             .get("/health", |_, _| Ok(Response::text(200, "ok")))
//!             .post("/", create_note)
//!             .get("/{id}", get_note)
//!             .handle(&request)
//!     }
//!
//!     // Delivery is at least once: the event id as primary key makes a repeat a no-op.
//!     fn on_event(event: Event) -> Result<(), String> {
//!         db::ensure_schema(1, SCHEMA)
//!             .and_then(|()| {
//!                 db::execute(
//!                     "INSERT INTO heard (event_id, name) VALUES (?, ?) \
//!                      ON CONFLICT (event_id) DO NOTHING",
//!                     params![event.id as i64, event.name.as_str()],
//!                 )
//!             })
//!             .map(drop)
//!             .map_err(|error| error.message().to_owned())
//!     }
//! }
//!
//! fn create_note(request: &Request, _params: &Params) -> Result<Response, ApiError> {
//!     let body = request.text()?;
//!     let id = random::uuid_v4();
//!     db::execute("INSERT INTO notes (id, body) VALUES (?, ?)", params![&id, body])?;
//!     events::publish("notes.note.created", &serde_json::json!({ "id": id }))?;
//!     Ok(Response::json(201, &serde_json::json!({ "id": id })))
//! }
//!
//! fn get_note(_request: &Request, params: &Params) -> Result<Response, ApiError> {
//!     let id = params.require("id")?;
//!     let row = db::query_opt("SELECT body FROM notes WHERE id = ?", params![id])?
//!         .ok_or_else(|| ApiError::not_found(format!("no note {id}")))?;
//!     Ok(Response::text(200, row.get::<String>("body")?))
//! }
//!
//! arkham_shard_sdk::export_shard!(Notes);
//! ```
//!
//! `examples/rust-annotations` in the arkham repository is a complete shard that uses storage
//! and subscriptions too.
//!
//! # Versions
//!
//! The SDK's version follows the WIT package it binds to, `arkham:shard` (packaged with the crate
//! in `wit/`): SDK 0.2.x speaks `arkham:shard@0.2.0`.
//!
//! # Testing without the frame
//!
//! [`Router`], [`Request`], [`Response`] and [`ApiError`] are plain Rust, so routing and
//! validation can be unit-tested on the host (`cargo test`); calls into the frame's services
//! (`db`, `events`, `storage`, `log`, `time`, `random`) work only inside the frame.

pub mod db;
pub mod events;
mod http;
pub mod log;
pub mod random;
mod router;
mod serve;
pub mod storage;
pub mod time;
mod url;

pub use events::Event;
pub use http::{ApiError, Method, Request, Response};
pub use router::{Handler, Params, Router};

/// The raw bindings generated from the `arkham:shard/buffered-shard` world (and the WASI
/// interfaces it imports). Shards rarely need them directly; [`export_shard!`] refers to them.
///
/// ```no_run
/// use arkham_shard_sdk::bindings::arkham::shard::logging::{Level, log};
///
/// log(Level::Info, "straight through the generated import");
/// ```
#[expect(missing_docs, reason = "generated code; documented in the WIT files")]
pub mod bindings {
    wit_bindgen::generate!({
        world: "arkham:shard/buffered-shard",
        path: "wit",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "arkham_shard_sdk::bindings",
    });
}

/// The two entry points of a shard. Both are static: every call runs in a fresh instance, so there
/// is no state to carry between them except what the shard keeps in its database or storage.
///
/// ```
/// use arkham_shard_sdk::{Method, Request, Response, Shard};
///
/// struct Ping;
///
/// impl Shard for Ping {
///     fn handle(request: Request) -> Response {
///         Response::text(200, format!("pong {}", request.path))
///     }
/// }
///
/// // On the host, handlers are plain functions to test.
/// assert_eq!(Ping::handle(Request::new(Method::Get, "/x")).body, b"pong /x");
/// assert_eq!(Ping::on_event(arkham_shard_sdk::Event {
///     id: 1,
///     name: "packets.packet.created".into(),
///     source: "packets".into(),
///     payload: "{}".into(),
///     published_at: 0,
/// }), Ok(()));
/// ```
pub trait Shard {
    /// Handles one HTTP request. `request.path` is relative to the shard's prefix
    /// (`GET /api/packets/abc` arrives as `GET /abc`).
    fn handle(request: Request) -> Response;

    /// Handles one event the shard subscribed to. Returning `Err` makes the frame retry the
    /// delivery later with back-off. Delivery is at least once, so use `event.id` to skip
    /// duplicates. The default acknowledges every event (for shards that subscribe to none).
    ///
    /// ```no_run
    /// use arkham_shard_sdk::{Event, Request, Response, Shard, db, params};
    ///
    /// struct Counter;
    ///
    /// impl Shard for Counter {
    ///     fn handle(_request: Request) -> Response {
    ///         Response::empty(404)
    ///     }
    ///
    ///     fn on_event(event: Event) -> Result<(), String> {
    ///         // Retried with back-off while it fails; idempotent by the event id.
    ///         db::execute(
    ///             "INSERT INTO seen (id) VALUES (?) ON CONFLICT (id) DO NOTHING",
    ///             params![event.id as i64],
    ///         )
    ///         .map(drop)
    ///         .map_err(|error| format!("{}: {}", error.code(), error.message()))
    ///     }
    /// }
    /// ```
    fn on_event(event: Event) -> Result<(), String> {
        let _ = event;
        Ok(())
    }
}

/// Exports a [`Shard`] implementation as the component's `arkham:shard/http-handler` and
/// `arkham:shard/event-handler`. Invoke it once per shard crate, at the top level:
///
/// ```no_run
/// use arkham_shard_sdk::{Request, Response, Shard};
///
/// struct MyShard;
///
/// impl Shard for MyShard {
///     fn handle(_request: Request) -> Response {
///         Response::text(200, "hello")
///     }
/// }
///
/// arkham_shard_sdk::export_shard!(MyShard);
/// ```
#[macro_export]
macro_rules! export_shard {
    ($shard:ty) => {
        const _: () = {
            struct __ArkhamShardExport;

            impl $crate::bindings::exports::arkham::shard::http_handler::Guest
                for __ArkhamShardExport
            {
                fn handle(
                    request: $crate::bindings::exports::arkham::shard::http_handler::Request,
                ) -> $crate::bindings::exports::arkham::shard::http_handler::Response {
                    $crate::__private::serve_buffered::<$shard>(request)
                }
            }

            impl $crate::bindings::exports::arkham::shard::event_handler::Guest
                for __ArkhamShardExport
            {
                fn handle(
                    event: $crate::Event,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    $crate::__private::serve_event::<$shard>(event)
                }
            }

    $crate::bindings::export!(__ArkhamShardExport with_types_in $crate::bindings);
        };
    };
}

/// Builds a `&[db::Value]` from expressions that convert into [`db::Value`], for `?` placeholders:
/// `db::execute("UPDATE t SET a = ? WHERE id = ?", params![a, id])`.
///
/// ```
/// use arkham_shard_sdk::{db::Value, params};
///
/// let title: Option<&str> = None;
/// assert!(matches!(
///     params!["n1", 3i64, true, title],
///     [Value::Text(id), Value::Integer(3), Value::Integer(1), Value::Null] if id == "n1"
/// ));
/// assert!(params![].is_empty());
/// ```
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[$crate::db::Value]
    };
    ($($value:expr),+ $(,)?) => {
        &[$($crate::db::Value::from($value)),+] as &[$crate::db::Value]
    };
}

/// Support for [`export_shard!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::serve::{serve_buffered, serve_event};
    pub use std::string::String;
}

#[cfg(test)]
mod tests {
    /// SDK X.Y.* binds `arkham:shard@X.Y.Z` (for 0.x, X.Y is what semver calls compatible): a
    /// WIT version bump must bump the SDK's version with it.
    #[test]
    fn version_follows_the_wit_package() {
        let world = include_str!("../wit/world.wit");
        let wit = world
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix("package arkham:shard@")?
                    .strip_suffix(';')
            })
            .expect("wit/world.wit declares `package arkham:shard@X.Y.Z;`");
        fn major_minor(version: &str) -> Vec<&str> {
            version.split('.').take(2).collect()
        }
        assert_eq!(
            major_minor(env!("CARGO_PKG_VERSION")),
            major_minor(wit),
            "shards/sdk/Cargo.toml's version {} does not follow the WIT package arkham:shard@{wit}",
            env!("CARGO_PKG_VERSION")
        );
    }
}
