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
//! ```no_run
//! use arkham_shard_sdk::{ApiError, Params, Request, Response, Router, Shard, db, params};
//!
//! struct Notes;
//!
//! impl Shard for Notes {
//!     fn handle(request: Request) -> Response {
//!         Router::new()
//!             .get("/health", |_, _| Ok(Response::text(200, "ok")))
//!             .get("/{id}", get_note)
//!             .handle(&request)
//!     }
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
#[expect(missing_docs, reason = "generated code; documented in the WIT files")]
pub mod bindings {
    wit_bindgen::generate!({
        world: "arkham:shard/buffered-shard",
        path: "../../wit",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "arkham_shard_sdk::bindings",
    });
}

/// The two entry points of a shard. Both are static: every call runs in a fresh instance, so there
/// is no state to carry between them except what the shard keeps in its database or storage.
pub trait Shard {
    /// Handles one HTTP request. `request.path` is relative to the shard's prefix
    /// (`GET /api/packets/abc` arrives as `GET /abc`).
    fn handle(request: Request) -> Response;

    /// Handles one event the shard subscribed to. Returning `Err` makes the frame retry the
    /// delivery later with back-off. Delivery is at least once, so use `event.id` to skip
    /// duplicates.
    fn on_event(event: Event) -> Result<(), String> {
        let _ = event;
        Ok(())
    }
}

/// Exports a [`Shard`] implementation as the component's `arkham:shard/http-handler` and
/// `arkham:shard/event-handler`. Invoke it once per shard crate, at the top level:
///
/// ```ignore
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
