//! Fixture shard `hostile-sql`: attacks the frame with nothing but the `database` grant, one
//! endpoint per attack. Each answers 200 with JSON naming the outcome (`ok` or the error code,
//! e.g. `denied`, `limit_exceeded`), so the frame's tests assert what the frame did.
//!
//! HTTP (under `/api/hostile-sql`):
//! - `GET /fts3` -> the fts3_tokenizer sequence: leak a tokenizer's address with
//!   `fts3_tokenizer(?)` bound to `simple`, register an 8-byte pointer blob with
//!   `fts3_tokenizer(?, ?)`, create an fts3 table that would use it;
//!   `{"steps":[{"step","outcome"}...]}`
//! - `GET /function` -> a function not on the frame's list; `{"outcome"}`
//! - `GET /zeroblobs?n=N&bytes=B` -> one query of N rows of `zeroblob(B)` (default 40 x 50 MB);
//!   `{"outcome","rows"}`
//! - `GET /value` -> binds and builds a 9 MiB value; `{"bound","built"}`
//! - `GET /temp?mb=N` -> a TEMP table, then N MiB into it, 1 MiB per row (default 800), stopping
//!   at the first error; `{"create","outcome","rows"}`
//! - `GET /begin` -> a raw `BEGIN IMMEDIATE` through `execute`; `{"outcome"}`
//! - `GET /write` -> one small insert; `{"outcome"}`
//! - `POST /sql` with `{"sql", "kind": "query" | "execute" | "batch"}` -> runs that SQL as the
//!   shard (escape attempts particular to one engine); `{"outcome", "message", "rows"}` with the
//!   error's message (or null) and, for a query, its rows as arrays of JSON values

use arkham_shard_sdk::{ApiError, Params, Request, Response, Router, Shard, db, params};
use serde_json::json;

struct HostileSql;

impl Shard for HostileSql {
    fn handle(request: Request) -> Response {
        Router::new()
            .get("/fts3", fts3)
            .get("/function", function)
            .get("/zeroblobs", zeroblobs)
            .get("/value", value)
            .get("/temp", temp)
            .get("/begin", begin)
            .get("/write", write)
            .post("/sql", sql)
            .handle(&request)
    }
}

fn outcome<T>(result: Result<T, db::Error>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code().to_string(),
    }
}

fn number(request: &Request, name: &str, default: u64) -> u64 {
    request
        .query_param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fts3(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let mut steps = Vec::new();
    // The leaked address, if the frame handed one out; otherwise any 8 bytes.
    let leaked = db::query("SELECT fts3_tokenizer(?) AS p", params!["simple"]);
    let leak_outcome = match &leaked {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code().to_string(),
    };
    let pointer: Vec<u8> = leaked
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .and_then(|row| row.get::<Vec<u8>>("p").ok())
        .unwrap_or_else(|| vec![0x41; 8]);
    steps.push(json!({ "step": "leak", "outcome": leak_outcome }));
    let registered = db::query(
        "SELECT fts3_tokenizer(?, ?)",
        params!["evil", pointer.as_slice()],
    );
    steps.push(json!({ "step": "register", "outcome": outcome(registered) }));
    let created = db::execute(
        "CREATE VIRTUAL TABLE crash USING fts3(body, tokenize=evil)",
        params![],
    );
    steps.push(json!({ "step": "create", "outcome": outcome(created) }));
    let used = db::execute("INSERT INTO crash (body) VALUES ('boom')", params![]);
    steps.push(json!({ "step": "use", "outcome": outcome(used) }));
    Ok(Response::json(200, &json!({ "steps": steps })))
}

fn function(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let result = db::query("SELECT sqlite_compileoption_get(0)", params![]);
    Ok(Response::json(200, &json!({ "outcome": outcome(result) })))
}

fn zeroblobs(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let n = number(request, "n", 40);
    let bytes = number(request, "bytes", 50_000_000);
    let result = db::query(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) \
         SELECT zeroblob(?) FROM c",
        params![n as i64, bytes as i64],
    );
    let rows = result.as_ref().map(|r| r.len()).unwrap_or(0);
    Ok(Response::json(
        200,
        &json!({ "outcome": outcome(result), "rows": rows }),
    ))
}

fn value(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let big = vec![0x33u8; 9 << 20];
    db::execute_batch("CREATE TABLE IF NOT EXISTS big (data BLOB);")?;
    let bound = db::execute("INSERT INTO big (data) VALUES (?)", params![big.as_slice()]);
    let built = db::query("SELECT length(randomblob(9437184))", params![]);
    Ok(Response::json(
        200,
        &json!({ "bound": outcome(bound), "built": outcome(built) }),
    ))
}

fn temp(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let mb = number(request, "mb", 800);
    let create = db::execute("CREATE TEMP TABLE spill (data BLOB)", params![]);
    let created = create.is_ok();
    let mut rows = 0u64;
    let mut last = "ok".to_string();
    if created {
        let chunk = vec![0x5Au8; 1 << 20];
        for _ in 0..mb {
            match db::execute(
                "INSERT INTO temp.spill VALUES (?)",
                params![chunk.as_slice()],
            ) {
                Ok(_) => rows += 1,
                Err(e) => {
                    last = e.code().to_string();
                    break;
                }
            }
        }
    }
    Ok(Response::json(
        200,
        &json!({ "create": outcome(create), "outcome": last, "rows": rows }),
    ))
}

fn begin(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let result = db::execute("BEGIN IMMEDIATE", params![]);
    Ok(Response::json(200, &json!({ "outcome": outcome(result) })))
}

fn write(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let result = db::execute_batch("CREATE TABLE IF NOT EXISTS w (v INTEGER);")
        .and_then(|()| db::execute("INSERT INTO w (v) VALUES (1)", params![]));
    Ok(Response::json(200, &json!({ "outcome": outcome(result) })))
}

arkham_shard_sdk::export_shard!(HostileSql);

fn sql(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let body: serde_json::Value = request.json()?;
    let sql = body["sql"].as_str().unwrap_or_default();
    let (result, rows) = match body["kind"].as_str().unwrap_or("query") {
        "execute" => (db::execute(sql, params![]).map(|_| ()), Vec::new()),
        "batch" => (db::execute_batch(sql), Vec::new()),
        _ => match db::query(sql, params![]) {
            Ok(rows) => {
                let rows: Vec<serde_json::Value> = rows
                    .into_iter()
                    .map(|row| {
                        serde_json::Value::Array(row.values().iter().map(value_json).collect())
                    })
                    .collect();
                (Ok(()), rows)
            }
            Err(e) => (Err(e), Vec::new()),
        },
    };
    let message = result.as_ref().err().map(|e| e.message().to_string());
    Ok(Response::json(
        200,
        &json!({ "outcome": outcome(result), "message": message, "rows": rows }),
    ))
}

fn value_json(value: &db::Value) -> serde_json::Value {
    match value {
        db::Value::Null => serde_json::Value::Null,
        db::Value::Integer(i) => json!(i),
        db::Value::Real(r) => json!(r),
        db::Value::Text(t) => json!(t),
        db::Value::Blob(b) => json!(b.len()),
    }
}
