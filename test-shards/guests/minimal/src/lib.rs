//! Fixture shard `minimal`: the smallest useful handler, for benchmarks (`benches/`). It answers
//! every request, whatever the method and path, with 200 `ok` (`text/plain`) and calls no
//! services, so a request through it costs only the frame and the sandbox boundary.

use arkham_shard_sdk::{Request, Response, Shard};

struct Minimal;

impl Shard for Minimal {
    fn handle(_request: Request) -> Response {
        Response::text(200, "ok")
    }
}

arkham_shard_sdk::export_shard!(Minimal);
