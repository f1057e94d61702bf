//! Fixture shard `netreach`: opens a TCP connection, so its component imports `wasi:sockets`,
//! which the frame never links. Installing it must fail, naming the import.
//!
//! HTTP (under `/api/netreach`): `GET /connect` -> tries `127.0.0.1:9`; 200 with the outcome.

use arkham_shard_sdk::{ApiError, Params, Request, Response, Router, Shard};

struct NetReach;

impl Shard for NetReach {
    fn handle(request: Request) -> Response {
        Router::new().get("/connect", connect).handle(&request)
    }
}

fn connect(_: &Request, _: &Params) -> Result<Response, ApiError> {
    let outcome = match std::net::TcpStream::connect("127.0.0.1:9") {
        Ok(_) => "connected".to_string(),
        Err(e) => e.to_string(),
    };
    Ok(Response::text(200, outcome))
}

arkham_shard_sdk::export_shard!(NetReach);
