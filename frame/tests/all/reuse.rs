//! Instance reuse (README, "Instance reuse"): opt-in per shard, bounded, and an instance is
//! discarded whenever it could carry more than its own memory into the next request.

use crate::harness::{Frame, admin_token, data_dir, install};
use serde_json::json;
use test_shards::RECORDER;

/// Requests the instance that served this one has served (the recorder counts them in memory).
async fn served(frame: &Frame) -> u64 {
    let (status, body) = frame.call("GET", "/api/recorder/served", None).await;
    assert_eq!(status, 200, "{body}");
    body["served"].as_u64().unwrap()
}

async fn status_of(frame: &Frame, path: &str) -> u16 {
    frame.call("GET", path, None).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_every_request_gets_a_fresh_instance() {
    let data = data_dir("");
    install(data.path(), &[&RECORDER]);
    let frame = Frame::start(data.path());
    for _ in 0..4 {
        assert_eq!(served(&frame).await, 1);
    }
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn reused_instances_are_bounded_and_discarded_when_tainted() {
    let data = data_dir("[limits.shards.recorder]\ninstance_reuse = 4\n");
    install(data.path(), &[&RECORDER]);
    let frame = Frame::start(data.path());

    let mut counts = Vec::new();
    for _ in 0..6 {
        counts.push(served(&frame).await);
    }
    assert_eq!(
        counts,
        [1, 2, 3, 4, 1, 2],
        "one instance serves at most 4 requests"
    );

    // An error answered by the shard itself is an ordinary response: the instance stays.
    assert_eq!(status_of(&frame, "/api/recorder/no-such-route").await, 404);
    assert_eq!(served(&frame).await, 4);

    // A trap discards the instance.
    assert_eq!(served(&frame).await, 1);
    assert_eq!(status_of(&frame, "/api/recorder/panic").await, 500);
    assert_eq!(served(&frame).await, 1);

    // So does a host resource left open when the handler returned.
    assert_eq!(status_of(&frame, "/api/recorder/leak").await, 200);
    assert_eq!(served(&frame).await, 1);

    // And a grant change: nothing created under the old grant serves again.
    assert_eq!(served(&frame).await, 2);
    let response = frame
        .client
        .put(format!(
            "{}/api/frame/admin/shards/recorder/grants",
            frame.base
        ))
        .bearer_auth(admin_token(data.path()))
        .json(&json!({"services": ["database"], "subscribes": ["packets.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(served(&frame).await, 1);
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_holds_under_concurrent_requests() {
    let data = data_dir("[limits.shards.recorder]\ninstance_reuse = 1000\n");
    install(data.path(), &[&RECORDER]);
    let frame = Frame::start(data.path());
    let rounds = 8;
    let width = 16;
    let mut all = Vec::new();
    for _ in 0..rounds {
        let calls = (0..width).map(|_| served(&frame));
        all.extend(futures::future::join_all(calls).await);
    }
    // Each instance counts 1, 2, 3, ... so a count n appears at most as often as a count n - 1:
    // were an instance shared by two concurrent requests, a count would be skipped or repeated.
    let mut histogram = std::collections::BTreeMap::<u64, usize>::new();
    for n in &all {
        *histogram.entry(*n).or_default() += 1;
    }
    let counts: Vec<usize> = histogram.values().copied().collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "counts per request number: {histogram:?}"
    );
    assert!(
        all.iter().any(|n| *n > 1),
        "no instance was reused: {histogram:?}"
    );
    frame.stop();
}
