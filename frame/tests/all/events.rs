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

/// Gives up after two attempts, quickly.
const DEAD_CONFIG: &str = "[events]\nretry_base_ms = 20\nretry_max_ms = 50\nmax_attempts = 2\n";

/// `arkham events …` against the running frame of `data`: (success, stdout, stderr).
fn events_cli(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    crate::harness::arkham(data, &all)
}

async fn dead_letters_can_be_listed_replayed_and_purged(backends: Backends) {
    let Some(data) = backends.data_dir("dead_letters_cli", DEAD_CONFIG) else {
        return;
    };
    install(data.path(), &[&PACKETS, &RECORDER]);
    let frame = Frame::start(data.path());
    let fail = |on: bool| {
        let frame = &frame;
        async move {
            let (status, _) = frame
                .call("PUT", "/api/recorder/fail", Some(json!({"fail": on})))
                .await;
            assert_eq!(status, 200);
        }
    };
    fail(true).await;
    let (status, _) = frame
        .call("POST", "/api/packets/", Some(json!({"name": "doomed"})))
        .await;
    assert_eq!(status, 201);
    let dead = || async {
        let (ok, out, err) = events_cli(data.path(), &["dead", "--shard", "recorder", "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
    };
    eventually("the event is dead-lettered", || async {
        !dead().await.is_empty()
    })
    .await;
    let letters = dead().await;
    assert_eq!(letters[0]["name"], "packets.packet.created", "{letters:?}");
    assert_eq!(letters[0]["subscriber"], "recorder");
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("recorder is set to fail"),
        "{letters:?}"
    );
    let id = letters[0]["id"].as_u64().unwrap().to_string();
    let (ok, out, _) = events_cli(data.path(), &["dead"]);
    assert!(ok && out.contains("packets.packet.created"), "{out}");

    // Still failing: the replay says so, exits non-zero, and the letter stays.
    let (ok, out, err) = events_cli(data.path(), &["replay", &id, "--shard", "recorder"]);
    assert!(
        !ok && out.contains("failed again") && err.contains("stay dead letters"),
        "{out}{err}"
    );
    assert_eq!(dead().await.len(), 1);
    // Mended: delivered through the normal path, and gone from the list.
    fail(false).await;
    let (ok, out, err) = events_cli(data.path(), &["replay", &id, "--shard", "recorder"]);
    assert!(ok && out.contains("delivered to recorder"), "{out}{err}");
    assert!(dead().await.is_empty());
    assert!(
        recorded(&frame)
            .await
            .iter()
            .any(|e| e["name"] == "packets.packet.created")
    );
    let (ok, _, err) = events_cli(data.path(), &["replay", &id, "--shard", "recorder"]);
    assert!(!ok && err.contains("no dead letter"), "{err}");

    // Purged: forgotten.
    fail(true).await;
    frame
        .call(
            "POST",
            "/api/packets/",
            Some(json!({"name": "doomed again"})),
        )
        .await;
    eventually("the second event is dead-lettered", || async {
        !dead().await.is_empty()
    })
    .await;
    let (ok, out, err) = events_cli(data.path(), &["purge", "--shard", "recorder"]);
    assert!(ok && out.contains("purged 1"), "{out}{err}");
    assert!(dead().await.is_empty());
    frame.stop();
}

crate::on_both_backends!(dead_letters_can_be_listed_replayed_and_purged);

async fn events_status_shows_a_subscriber_falling_behind(backends: Backends) {
    let Some(data) = backends.data_dir("events_status", CONFIG) else {
        return;
    };
    install(data.path(), &[&PACKETS, &RECORDER]);
    let frame = Frame::start(data.path());
    let status = || async {
        let (ok, out, err) = events_cli(data.path(), &["status", "--json"]);
        assert!(ok, "{err}");
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        let recorder = status["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subscriber"] == "recorder")
            .cloned()
            .unwrap();
        (status, recorder)
    };
    let (whole, recorder) = status().await;
    assert_eq!(recorder["behind"], 0, "{whole}");
    let (code, _) = frame
        .call("PUT", "/api/recorder/fail", Some(json!({"fail": true})))
        .await;
    assert_eq!(code, 200);
    frame
        .call("POST", "/api/packets/", Some(json!({"name": "stuck"})))
        .await;
    // Retried without end (max_attempts 1000): the subscriber is one event behind.
    eventually("the failing subscriber shows as behind", || async {
        status().await.1["behind"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let (whole, _) = status().await;
    assert!(whole["log"]["events"].as_u64().unwrap() >= 1, "{whole}");
    let (ok, out, _) = events_cli(data.path(), &["status"]);
    assert!(
        ok && out.contains("recorder") && out.contains("retention"),
        "{out}"
    );
    frame
        .call("PUT", "/api/recorder/fail", Some(json!({"fail": false})))
        .await;
    eventually("it catches up", || async {
        status().await.1["behind"] == 0
    })
    .await;
    // Both logs delete what every subscriber has (the embedded log each second, JetStream
    // once every consumer acked) and count it.
    eventually("retention trims what was delivered", || async {
        status().await.0["log"]["trimmed"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let (_, out, _) = events_cli(data.path(), &["status"]);
    assert!(out.contains("trimmed by retention"), "{out}");
    frame.stop();
}

crate::on_both_backends!(events_status_shows_a_subscriber_falling_behind);
