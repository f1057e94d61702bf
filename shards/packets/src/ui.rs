//! The shard's own page for the dashboard (`navigation.ui = "/ui/"`): three static files, built
//! into the component. The frame shows the page in a sandboxed iframe that cannot fetch; the page
//! reaches the JSON API only through the frame's bridge (`/static/arkham-ui.js`).

use arkham_shard_sdk::{Params, Request, Response};

use crate::api::Answer;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// Whether `path` is one of the page's: those answer without the database.
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

fn asset(content_type: &str, text: &str) -> Answer {
    Ok(Response::bytes(200, content_type, text.as_bytes().to_vec())
        // Small, and replaced with every shard version: revalidated rather than cached stale.
        .with_header("cache-control", "no-cache"))
}

/// `GET /ui` and `GET /ui/`.
pub fn index(_: &Request, _: &Params) -> Answer {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`.
pub fn script(_: &Request, _: &Params) -> Answer {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/app.css`.
pub fn stylesheet(_: &Request, _: &Params) -> Answer {
    asset("text/css; charset=utf-8", APP_CSS)
}
