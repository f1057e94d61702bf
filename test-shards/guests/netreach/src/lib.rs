//! Fixture shard `netreach`: tries the network every way the standard library offers, so its
//! component imports `wasi:sockets`. The frame links those interfaces with every call refused:
//! it installs, and reaches nothing.
//!
//! HTTP (under `/api/netreach`): `GET /connect?n=N` -> N rounds of a TCP connect to
//! `127.0.0.1:9`, a UDP bind and send, and a name lookup of `localhost`; 200
//! `{"tcp": outcome, "udp": outcome, "dns": outcome}` of the last round, where an outcome is
//! `"reached"` or the error's text.

use arkham_shard_sdk::{ApiError, Params, Request, Response, Router, Shard};
use serde_json::json;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};

struct NetReach;

impl Shard for NetReach {
    fn handle(request: Request) -> Response {
        Router::new().get("/connect", connect).handle(&request)
    }
}

fn outcome<T>(result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => "reached".to_string(),
        Err(e) => e.to_string(),
    }
}

fn connect(request: &Request, _: &Params) -> Result<Response, ApiError> {
    let rounds: u32 = request
        .query_param("n")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut last = json!({});
    for _ in 0..rounds.max(1) {
        let tcp = outcome(TcpStream::connect("127.0.0.1:9"));
        let udp =
            outcome(UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", "127.0.0.1:9")));
        let dns = outcome("localhost:80".to_socket_addrs().map(|a| a.count()));
        last = json!({ "tcp": tcp, "udp": udp, "dns": dns });
    }
    Ok(Response::json(200, &last))
}

arkham_shard_sdk::export_shard!(NetReach);
