//! Each of the seed's nine events, published once its change commits, with its payload, as the
//! `recorder` fixture receives them.

use super::{add_content, export, new_packet, post_bytes};
use crate::backends::Backends;
use crate::harness::{Frame, eventually, install};
use serde_json::{Value, json};
use test_shards::{PACKETS, RECORDER};

async fn recorded(frame: &Frame) -> Vec<(String, Value)> {
    let (status, body) = frame.call("GET", "/api/recorder/events", None).await;
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let payload = serde_json::from_str(e["payload"].as_str().unwrap_or("null"))
                .unwrap_or(Value::Null);
            (e["name"].as_str().unwrap_or_default().to_string(), payload)
        })
        .collect()
}

/// Each of the seed's nine events, published once the change commits, with its payload.
async fn the_nine_events(backends: Backends) {
    const CONFIG: &str = "[events]\nretry_base_ms = 20\nretry_max_ms = 200\n";
    let Some(data) = backends.data_dir("the_nine_events", CONFIG) else {
        return;
    };
    install(data.path(), &[&PACKETS, &RECORDER]);
    let frame = Frame::start(data.path());
    let id = new_packet(&frame, "evented").await;
    let (status, _) = frame
        .call(
            "PUT",
            &format!("/api/packets/{id}"),
            Some(json!({"description": "d"})),
        )
        .await;
    assert_eq!(status, 200);
    let content = add_content(&frame, &id, "timeline", "t-1").await;
    let (status, _) = frame
        .call(
            "DELETE",
            &format!(
                "/api/packets/{id}/contents/{}",
                content["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    add_content(&frame, &id, "matrix", "m-1").await;
    let (status, _) = frame
        .call("POST", &format!("/api/packets/{id}/finalize"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/share"),
            Some(json!({"shared_with": "carol", "permissions": "comment"})),
        )
        .await;
    assert_eq!(status, 201);
    let (exported, bytes) = export(&frame, &id, "zip").await;
    let (status, imported) =
        post_bytes(&frame, "/api/packets/import?source=archive-7", bytes).await;
    assert_eq!(status, 201, "{imported}");
    let new_id = imported["packet"]["id"].as_str().unwrap().to_string();

    let expected: Vec<(&str, Value)> = vec![
        (
            "packets.packet.created",
            json!({"packet_id": id, "name": "evented", "created_by": "system"}),
        ),
        ("packets.packet.updated", json!({"packet_id": id})),
        (
            "packets.content.added",
            json!({"packet_id": id, "content_id": "t-1", "content_type": "timeline"}),
        ),
        (
            "packets.content.removed",
            json!({"packet_id": id, "content_entry_id": content["id"]}),
        ),
        (
            "packets.content.added",
            json!({"packet_id": id, "content_id": "m-1", "content_type": "matrix"}),
        ),
        (
            "packets.packet.finalized",
            json!({"packet_id": id, "version": 2}),
        ),
        (
            "packets.version.created",
            json!({"packet_id": id, "version_number": 2}),
        ),
        (
            "packets.packet.shared",
            json!({"packet_id": id, "shared_with": "carol", "permissions": "comment"}),
        ),
        (
            "packets.packet.exported",
            json!({"packet_id": id, "format": "zip", "file_path": exported["file_path"]}),
        ),
        (
            "packets.packet.imported",
            json!({"packet_id": new_id, "import_source": "archive-7"}),
        ),
    ];
    eventually("the ten events recorded", || async {
        recorded(&frame).await.len() >= expected.len()
    })
    .await;
    let events = recorded(&frame).await;
    let got: Vec<(&str, &Value)> = events.iter().map(|(n, p)| (n.as_str(), p)).collect();
    let want: Vec<(&str, &Value)> = expected.iter().map(|(n, p)| (*n, p)).collect();
    assert_eq!(got, want);
    frame.stop();
}

crate::on_both_backends!(the_nine_events);
