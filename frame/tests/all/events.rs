//! Event delivery between shards through the durable log.

use crate::backends::Backends;
use crate::harness::{Frame, eventually, install};
use serde_json::json;
use test_shards::{PACKETS, RECORDER};

/// Fast retries, so tests do not wait on back-off.
const CONFIG: &str = "[events]\nretry_base_ms = 20\nretry_max_ms = 200\nmax_attempts = 1000\n";

async fn recorded(frame: &Frame) -> Vec<serde_json::Value> {
    let (status, body) = frame.call("GET", "/api/recorder/events", None).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

async fn packets_events_reach_the_subscriber(backends: Backends) {
    let Some(data) = backends.data_dir("packets_events_reach_the_subscriber", CONFIG) else {
        return;
    };
    install(data.path(), &[&PACKETS, &RECORDER]);
    let frame = Frame::start(data.path());
    let (status, created) = frame
        .call("POST", "/api/packets/", Some(json!({"name": "evented"})))
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_string();
    eventually("packets.packet.created recorded", || async {
        recorded(&frame)
            .await
            .iter()
            .any(|e| e["name"] == "packets.packet.created")
    })
    .await;
    let events = recorded(&frame).await;
    let created_event = events
        .iter()
        .find(|e| e["name"] == "packets.packet.created")
        .unwrap();
    assert_eq!(created_event["source"], "packets");
    let payload: serde_json::Value =
        serde_json::from_str(created_event["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["packet_id"].as_str(), Some(id.as_str()));

    // A request that fails publishes nothing: a 404 from packets produces no event.
    let before = recorded(&frame).await.len();
    let (status, _) = frame
        .call("PUT", "/api/packets/missing", Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, 404);
    frame
        .call("POST", "/api/packets/", Some(json!({"name": "second"})))
        .await;
    eventually("second event recorded", || async {
        recorded(&frame).await.len() > before
    })
    .await;
    let names: Vec<_> = recorded(&frame)
        .await
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert!(
        !names.contains(&json!("packets.packet.updated")),
        "{names:?}"
    );
    frame.stop();
}

async fn undelivered_events_survive_a_restart(backends: Backends) {
    let Some(data) = backends.data_dir("undelivered_events_survive_a_restart", CONFIG) else {
        return;
    };
    install(data.path(), &[&PACKETS, &RECORDER]);
    let frame = Frame::start(data.path());
    let (status, body) = frame
        .call("PUT", "/api/recorder/fail", Some(json!({"fail": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = frame
        .call("POST", "/api/packets/", Some(json!({"name": "pending"})))
        .await;
    assert_eq!(status, 201);
    // The recorder refuses deliveries: the frame retries, and nothing is recorded.
    eventually("a failed delivery attempt", || async {
        frame.log().contains("event delivery failed")
    })
    .await;
    assert!(recorded(&frame).await.is_empty());
    frame.stop();

    let frame = Frame::start(data.path());
    assert!(recorded(&frame).await.is_empty());
    let (status, _) = frame
        .call("PUT", "/api/recorder/fail", Some(json!({"fail": false})))
        .await;
    assert_eq!(status, 200);
    eventually("the event delivered after the restart", || async {
        recorded(&frame)
            .await
            .iter()
            .any(|e| e["name"] == "packets.packet.created")
    })
    .await;
    // Delivered once per event id, even though it was attempted many times.
    let events = recorded(&frame).await;
    let created = events
        .iter()
        .filter(|e| e["name"] == "packets.packet.created")
        .count();
    assert_eq!(created, 1, "{events:?}");
    frame.stop();
}

/// Events of requests answered 2xx before a `kill -9` of the frame are delivered after it.
async fn events_survive_kill_9(backends: Backends) {
    let Some(data) = backends.data_dir("events_survive_kill_9", CONFIG) else {
        return;
    };
    install(data.path(), &[&PACKETS, &RECORDER]);
    let mut frame = Frame::start(data.path());
    let (status, _) = frame
        .call("PUT", "/api/recorder/fail", Some(json!({"fail": true})))
        .await;
    assert_eq!(status, 200);
    for i in 0..5 {
        let (status, _) = frame
            .call(
                "POST",
                "/api/packets/",
                Some(json!({"name": format!("e{i}")})),
            )
            .await;
        assert_eq!(status, 201);
    }
    frame.kill();

    let frame = Frame::start(data.path());
    let (status, _) = frame
        .call("PUT", "/api/recorder/fail", Some(json!({"fail": false})))
        .await;
    assert_eq!(status, 200);
    eventually("the five events delivered after kill -9", || async {
        recorded(&frame)
            .await
            .iter()
            .filter(|e| e["name"] == "packets.packet.created")
            .count()
            >= 5
    })
    .await;
    frame.stop();
}

crate::on_both_backends!(
    packets_events_reach_the_subscriber,
    undelivered_events_survive_a_restart,
    events_survive_kill_9
);
