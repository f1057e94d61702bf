//! {{name}}: an arkham shard in Rust.
//!
//! Every request runs in a fresh instance: keep state in the database (or storage), not in
//! statics. The frame serves this under `/api/{{name}}/` and hands the handler paths relative to
//! that.

use arkham_shard_sdk::{ApiError, Params, Request, Response, Router, Shard, db, params};

/// `ensure_schema` runs this once per version; append migrations and bump the version.
const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS visits (id BIGINT PRIMARY KEY, count BIGINT NOT NULL);";

struct App;

impl Shard for App {
    fn handle(request: Request) -> Response {
        Router::new().get("/", hello).handle(&request)
    }
}

fn hello(_request: &Request, _params: &Params) -> Result<Response, ApiError> {
    db::ensure_schema(SCHEMA_VERSION, SCHEMA)?;
    // `?` placeholders and this upsert work on SQLite and PostgreSQL alike.
    db::execute(
        "INSERT INTO visits (id, count) VALUES (1, 1) \
         ON CONFLICT (id) DO UPDATE SET count = visits.count + 1",
        params![],
    )?;
    let visits = db::query_opt("SELECT count FROM visits WHERE id = ?", params![1i64])?
        .map(|row| row.get::<i64>("count"))
        .transpose()?
        .unwrap_or_default();
    Ok(Response::json(
        200,
        &serde_json::json!({"hello": "{{name}}", "visits": visits}),
    ))
}

arkham_shard_sdk::export_shard!(App);
