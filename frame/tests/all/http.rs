//! What a shard receives through the proxy, and what comes back: prefix stripping, query, headers,
//! bodies in both directions, the frame's request-size limit and each shard's request rate.

use crate::harness::{Frame, data_dir, install};
use test_shards::{ECHO, MINIMAL, STREAMER};

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

/// `POST path` over a fresh connection with `body` sent as `pieces` chunks of
/// `transfer-encoding: chunked` (no declared length); the status and the response body.
async fn post_chunked(base: &str, path: &str, body: &[u8], pieces: usize) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\
         content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.chunks(body.len().div_ceil(pieces)) {
        let size = format!("{:x}\r\n", piece.len());
        stream.write_all(size.as_bytes()).await.unwrap();
        stream.write_all(piece).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        stream.flush().await.unwrap();
        // Apart, so that the frame reads them as separate body frames.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut rest = &response[end + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (status, rest.to_vec());
    }
    let mut decoded = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        if size == 0 {
            return (status, decoded);
        }
        decoded.extend_from_slice(&rest[line + 2..line + 2 + size]);
        rest = &rest[line + 2 + size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_in_many_pieces_come_back_whole_through_both_entry_points() {
    let data = data_dir("[limits]\nmax_request_bytes = 4194304\n");
    install(data.path(), &[&ECHO, &STREAMER]);
    let frame = Frame::start(data.path());
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    for path in ["/api/echo/mirror", "/api/streamer/mirror"] {
        // A declared length, the body arriving over many reads.
        let response = frame
            .client
            .post(format!("{}{path}", frame.base))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let got = response.bytes().await.unwrap();
        assert!(
            got[..] == body[..],
            "{path}: {} bytes came back changed",
            got.len()
        );
        // No declared length: pieces of chunked encoding, the last one short.
        let (status, got) = post_chunked(&frame.base, path, &body, 7).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&got));
        assert!(
            got == body,
            "{path}: {} chunked bytes came back changed",
            got.len()
        );
    }
    frame.stop();
}
