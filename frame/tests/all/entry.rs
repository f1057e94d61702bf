//! The two HTTP entry points a shard may export: `arkham:shard/http-handler` (one call, whole
//! request and response; what the SDK builds) and `wasi:http/incoming-handler` (streamed). A
//! component that exports both is called through `http-handler`.

use crate::harness::{Frame, data_dir, install};
use test_shards::{DUAL, ECHO, STREAMER};

async fn get(frame: &Frame, path: &str) -> reqwest::Response {
    frame
        .client
        .get(format!("{}{path}", frame.base))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_shard_is_served_through_the_entry_point_it_exports() {
    let data = data_dir("[limits]\nmax_response_bytes = 1048576\n");
    install(data.path(), &[&ECHO, &STREAMER, &DUAL]);
    let frame = Frame::start(data.path());

    let (status, listing) = frame.call("GET", "/api/frame/shards", None).await;
    assert_eq!(status, 200, "{listing}");
    let interface = |name: &str| {
        listing["shards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|shard| shard["name"] == name)
            .map(|shard| shard["http_interface"].clone())
    };
    assert_eq!(
        interface("echo").unwrap(),
        "arkham:shard/http-handler@0.2.0",
        "{listing}"
    );
    assert_eq!(
        interface("streamer").unwrap(),
        "wasi:http/incoming-handler@0.2.12",
        "{listing}"
    );
    assert_eq!(
        interface("dual").unwrap(),
        "arkham:shard/http-handler@0.2.0",
        "{listing}"
    );
    // Exporting both, `dual` answers with the name of the entry point it was called through.
    let response = get(&frame, "/api/dual/").await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "http-handler");

    // wasi:http: a body written in chunks with no stated length streams through whole ...
    let response = get(&frame, "/api/streamer/bytes/1000000").await;
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), 1_000_000);
    assert!(
        bytes
            .iter()
            .enumerate()
            .all(|(i, b)| *b as usize == i % 251)
    );
    // ... and one past the response limit is cut off: the status went out before the limit was
    // reached, so the client sees the body fail rather than a 502.
    let response = get(&frame, "/api/streamer/bytes/2000000").await;
    assert_eq!(response.status().as_u16(), 200);
    if let Ok(bytes) = response.bytes().await {
        assert!(bytes.len() < 2_000_000, "{} bytes arrived", bytes.len());
    }
    // A guest that returns without answering, or answers with an error code.
    let (status, body) = frame.call("GET", "/api/streamer/none", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &"shard_no_response".into())
    );
    let (status, body) = frame.call("GET", "/api/streamer/error", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (502, &"shard_error".into())
    );
    assert_eq!(
        get(&frame, "/api/streamer/").await.text().await.unwrap(),
        "ok"
    );

    // http-handler: the frame states the body's length itself, ignoring the shard's framing
    // headers, and passes the others on.
    let response = get(&frame, "/api/echo/header?name=content-length&value=999").await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-length"], "2");
    assert_eq!(response.text().await.unwrap(), "ok");
    let response = get(
        &frame,
        "/api/echo/header?name=transfer-encoding&value=chunked",
    )
    .await;
    assert!(response.headers().get("transfer-encoding").is_none());
    assert_eq!(response.text().await.unwrap(), "ok");
    let response = get(&frame, "/api/echo/header?name=x-kept&value=yes").await;
    assert_eq!(response.headers()["x-kept"], "yes");
    // A header that cannot be sent is the shard's error, named as such.
    for bad in ["name=bad%20name&value=x", "name=x-bad&value=a%0Ab"] {
        let (status, body) = frame
            .call("GET", &format!("/api/echo/header?{bad}"), None)
            .await;
        assert_eq!(status, 502, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "shard_invalid_response", "{body}");
    }
    // No body for HEAD, nor for 204 and 304.
    let response = frame
        .client
        .head(format!("{}/api/echo/health", frame.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.bytes().await.unwrap().is_empty());
    for code in [204, 304] {
        let response = get(&frame, &format!("/api/echo/status/{code}")).await;
        assert_eq!(response.status().as_u16(), code);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    // The response limit holds here too, before anything is sent.
    let (status, body) = frame.call("GET", "/api/echo/bytes/2000000", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (502, &"response_too_large".into())
    );
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_are_reused_through_wasi_http_too() {
    let data = data_dir("[limits.shards.streamer]\ninstance_reuse = 3\n");
    install(data.path(), &[&STREAMER]);
    let frame = Frame::start(data.path());
    let mut counts = Vec::new();
    for _ in 0..5 {
        counts.push(
            get(&frame, "/api/streamer/served")
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    assert_eq!(counts, ["1", "2", "3", "1", "2"]);
    frame.stop();
}
