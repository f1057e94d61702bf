//! What a shard receives through the proxy, and what comes back: prefix stripping, query, headers,
//! bodies in both directions, the frame's request-size limit and each shard's request rate.

use crate::harness::{Frame, data_dir, install};
use test_shards::{ECHO, MINIMAL};

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

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_over_its_request_rate_gets_429_and_others_do_not() {
    // One request a second after a burst of three, for echo only.
    let data = data_dir("[limits.shards.echo]\nrequests_per_second = 1\nrequest_burst = 3\n");
    install(data.path(), &[&ECHO, &MINIMAL]);
    let frame = Frame::start(data.path());
    let echo = format!("{}/api/echo/echo/x", frame.base);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(frame.client.get(&echo).send().await.unwrap());
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    // The refill during the loop may let the fourth through on a slow machine, never a fifth.
    assert_eq!(&codes[..3], [200, 200, 200], "{codes:?}");
    let refused = match statuses.pop() {
        Some(r) if r.status().as_u16() == 429 => r,
        _ => frame.client.get(&echo).send().await.unwrap(),
    };
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1 per second") && message.contains("[limits.shards.echo]"),
        "{message}"
    );
    // Another shard is not charged for echo's traffic (its default is far above this).
    for _ in 0..20 {
        let response = frame
            .client
            .get(format!("{}/api/minimal/", frame.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    // The bucket refills at its rate: after the advertised wait a request passes again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        frame
            .client
            .get(&echo)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    frame.stop();
}
