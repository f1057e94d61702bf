//! A failing shard fails alone: traps, timeouts and refused calls, with packets serving throughout.

use crate::backends::Backends;
use crate::harness::{Frame, install};
use serde_json::json;
use test_shards::{PACKETS, TRAPPER};

async fn packets_still_serves(frame: &Frame) {
    let (status, body) = frame
        .call("POST", "/api/packets/", Some(json!({"name": "still here"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    let (status, _) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(status, 200);
}

async fn traps_and_timeouts_fail_only_that_request(backends: Backends) {
    let Some(data) = backends.data_dir(
        "traps_and_timeouts_fail_only_that_request",
        "[limits]\nrequest_timeout_ms = 1000\n",
    ) else {
        return;
    };
    install(data.path(), &[&PACKETS, &TRAPPER]);
    let frame = Frame::start(data.path());

    let (status, body) = frame.call("GET", "/api/trapper/ok", None).await;
    assert_eq!(status, 200, "{body}");

    for path in ["/api/trapper/trap", "/api/trapper/panic"] {
        let (status, body) = frame.call("GET", path, None).await;
        assert_eq!(status, 500, "{path}: {body}");
        assert_eq!(body["error"]["code"], "shard_failed", "{body}");
        packets_still_serves(&frame).await;
    }

    // An endless loop is stopped at the deadline while other shards keep answering.
    let looping = {
        let client = frame.client.clone();
        let url = format!("{}/api/trapper/loop", frame.base);
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    };
    packets_still_serves(&frame).await;
    let response = looping.await.unwrap();
    assert_eq!(response.status().as_u16(), 504);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "shard_timeout", "{body}");

    // The trapping shard itself recovers: every request is a fresh instance.
    let (status, _) = frame.call("GET", "/api/trapper/ok", None).await;
    assert_eq!(status, 200);
    frame.stop();
}

async fn storage_round_trip_and_key_rules(backends: Backends) {
    let Some(data) = backends.data_dir("storage_round_trip_and_key_rules", "") else {
        return;
    };
    install(data.path(), &[&TRAPPER]);
    let frame = Frame::start(data.path());
    let url = format!("{}/api/trapper/blob/reports/2026/a.txt", frame.base);
    let response = frame
        .client
        .put(&url)
        .header("content-type", "text/plain")
        .body("hello storage")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap()
    );
    let response = frame.client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.unwrap(), "hello storage");
    if backends == Backends::Embedded {
        assert!(
            data.path()
                .join("shards/trapper/storage/objects/reports/2026/a.txt")
                .is_file()
        );
    }

    let (status, list) = frame
        .call("GET", "/api/trapper/blobs?prefix=reports/", None)
        .await;
    assert_eq!(status, 200);
    assert!(list.to_string().contains("reports/2026/a.txt"), "{list}");

    for bad in [
        "..%2F..%2Fescape",
        "a%2F..%2F..%2Fb",
        "%2Fetc%2Fpasswd",
        "nul%00byte",
        ".hidden",
    ] {
        let url = format!("{}/api/trapper/blob/{bad}", frame.base);
        let response = frame.client.put(&url).body("x").send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("invalid_key"), "{bad}: {body}");
    }
    assert!(!data.path().join("shards/trapper/escape").exists());

    // Objects outlive the frame: same content and type after a restart.
    frame.stop();
    let frame = Frame::start(data.path());
    let url = format!("{}/api/trapper/blob/reports/2026/a.txt", frame.base);
    let response = frame.client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.unwrap(), "hello storage");

    let response = frame.client.delete(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = frame.client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let (_, list) = frame
        .call("GET", "/api/trapper/blobs?prefix=reports/", None)
        .await;
    assert!(!list.to_string().contains("a.txt"), "{list}");
    frame.stop();
}

async fn a_shard_cannot_publish_as_another(backends: Backends) {
    let Some(data) = backends.data_dir("a_shard_cannot_publish_as_another", "") else {
        return;
    };
    install(data.path(), &[&TRAPPER]);
    let frame = Frame::start(data.path());
    let (status, body) = frame
        .call(
            "POST",
            "/api/trapper/publish",
            Some(json!({"name": "packets.packet.created", "payload": "{}"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = frame
        .call(
            "POST",
            "/api/trapper/publish",
            Some(json!({"name": "trapper.thing.happened", "payload": "{}"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    frame.stop();
}

crate::on_both_backends!(
    traps_and_timeouts_fail_only_that_request,
    storage_round_trip_and_key_rules,
    a_shard_cannot_publish_as_another
);
