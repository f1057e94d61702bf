//! The packets shard: bundles of documents, entities and claims that can be finalised,
//! versioned and shared. A port of the original Python design to an arkham component.
//!
//! Workflow: `draft --finalize--> finalized --share--> shared`, and any of them `--archive-->`
//! `archived`. Only drafts can be edited or have their contents changed. Versions are made at
//! finalisation and on request; packets export to JSON or zip bundles and import from them;
//! shares open a read-only link until they expire or are revoked. Every response is JSON but
//! the dashboard page's files under `/ui/` (module `ui`); errors use the house shape
//! `{"error":{"code":"...","message":"..."}}` with 404 for unknown ids, 405 for a wrong method,
//! 409 (`invalid_state`) for an illegal transition and 422 (`validation_failed`, with `fields`)
//! for a bad body.

mod api;
mod bundle;
mod exchange;
mod files;
mod model;
mod notify;
mod sharing;
mod snapshot;
mod store;
mod ui;
mod validate;
mod versions;
mod zip;

use arkham_shard_sdk::{ApiError, Request, Response, Router, Shard, log};

struct Packets;

impl Shard for Packets {
    fn handle(request: Request) -> Response {
        // Every request runs in a fresh instance; once the frame has seen the schema current,
        // the check runs no SQL. The health check and the page's files answer without the
        // database.
        if request.path.trim_end_matches('/') != "/health"
            && !ui::is_ui_path(&request.path)
            && let Err(error) = store::ensure_schema()
        {
            let error = ApiError::from(error);
            log::error(&format!("preparing the packets schema failed: {error}"));
            return error.into_response();
        }
        router().handle(&request)
    }
}

/// Paths are relative to the shard's prefix, `/api/packets`.
fn router() -> Router {
    Router::new()
        .get("/health", api::health)
        // Literal segments beat `/{id}` whatever the order, so `ui` is never read as a packet id.
        .get("/ui", ui::index)
        .get("/ui/app.js", ui::script)
        .get("/ui/app.css", ui::stylesheet)
        .get("/count", api::count)
        .get("/", api::list)
        .post("/", api::create)
        .get("/stats/overview", api::stats)
        .get("/status/{status}", api::list_by_status)
        .get("/{id}", api::get)
        .put("/{id}", api::update)
        .patch("/{id}", api::update)
        .delete("/{id}", api::archive)
        .post("/{id}/archive", api::archive)
        .post("/{id}/finalize", api::finalize)
        .post("/{id}/share", sharing::share)
        .get("/{id}/shares", sharing::list)
        .delete("/{id}/shares/{sid}", sharing::revoke)
        .get("/shared/{token}", sharing::view)
        .get("/shared/{token}/comments", sharing::link_comments)
        .post("/shared/{token}/comments", sharing::add_comment)
        .get("/{id}/comments", sharing::comments)
        .post("/shared/{token}", sharing::write)
        .put("/shared/{token}", sharing::write)
        .patch("/shared/{token}", sharing::write)
        .delete("/shared/{token}", sharing::write)
        .get("/{id}/contents", api::list_contents)
        .post("/{id}/contents", api::add_content)
        .delete("/{id}/contents/{cid}", api::remove_content)
        .get("/{id}/versions", api::list_versions)
        .post("/{id}/versions", versions::create)
        .get("/{id}/versions/{n}", versions::snapshot)
        .post("/{id}/export", exchange::export)
        .get("/{id}/exports", exchange::list)
        .get("/{id}/exports/{file}", exchange::download)
        .delete("/{id}/exports/{file}", exchange::delete)
        .post("/import", exchange::import)
}

arkham_shard_sdk::export_shard!(Packets);
