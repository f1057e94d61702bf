//! What a shard receives through the proxy, and what comes back: prefix stripping, query, headers,
//! bodies in both directions, and the frame's request-size limit.

use crate::harness::{Frame, data_dir, install};
use test_shards::ECHO;

#[tokio::test(flavor = "multi_thread")]
async fn requests_reach_the_shard_relative_to_its_prefix() {
    let data = data_dir("[limits]\nmax_request_bytes = 1048576\n");
    // echo calls no service and declares none: it installs and runs with nothing granted.
    install(data.path(), &[&ECHO]);
    let frame = Frame::start(data.path());

    let response = frame
        .client
        .post(format!(
            "{}/api/echo/echo/a/b?x=1&y=two%20words",
            frame.base
        ))
        .header("x-custom", "value")
        .body("hello body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let echoed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/echo/a/b");
    assert_eq!(
        echoed["query"],
        serde_json::json!([["x", "1"], ["y", "two words"]])
    );
    assert_eq!(echoed["body"], "hello body");
    assert!(
        echoed["headers"].to_string().contains("x-custom"),
        "{echoed}"
    );

    // The bare prefix arrives as `/`; the echo fixture has no route there.
    let (status, body) = frame.call("GET", "/api/echo", None).await;
    assert_eq!(status, 404, "{body}");

    // A 10 MiB response streams through whole.
    let response = frame
        .client
        .get(format!("{}/api/echo/bytes/10485760", frame.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), 10 << 20);
    assert!(
        bytes
            .iter()
            .enumerate()
            .take(100_000)
            .all(|(i, b)| *b as usize == i % 251)
    );

    // A body over the frame's limit is refused before the shard runs.
    let response = frame
        .client
        .post(format!("{}/api/echo/mirror", frame.base))
        .body(vec![b'x'; (1 << 20) + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    frame.stop();
}
