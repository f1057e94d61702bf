//! The packets shard end to end, over HTTP through a real frame: CRUD, workflow, errors and
//! persistence here, with the helpers the other modules share; [`exchange`] holds export and
//! import, [`shares`] versions, shares and the share link, [`nine_events`] the events.

mod exchange;
mod nine_events;
mod shares;
mod ui;

use crate::backends::Backends;
use crate::harness::{Frame, install};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use test_shards::PACKETS;

async fn crud_workflow_and_errors(backends: Backends) {
    let Some(data) = backends.data_dir("crud_workflow_and_errors", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());

    let (status, health) = frame.call("GET", "/api/packets/health", None).await;
    assert_eq!(status, 200, "{health}");

    let (status, created) = frame
        .call(
            "POST",
            "/api/packets/",
            Some(json!({"name": "Case file", "description": "d"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "Case file");
    assert_eq!(created["status"], "draft");
    let id = created["id"].as_str().unwrap().to_string();

    let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!((status, got["id"].as_str()), (200, Some(id.as_str())));

    let (status, updated) = frame
        .call(
            "PUT",
            &format!("/api/packets/{id}"),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(
        (status, updated["name"].as_str()),
        (200, Some("Renamed")),
        "{updated}"
    );

    let (status, content) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/contents"),
            Some(
                json!({"content_type": "document", "content_id": "doc-1", "content_title": "Doc"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{content}");
    let (status, contents) = frame
        .call("GET", &format!("/api/packets/{id}/contents"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        contents.to_string().matches("doc-1").count(),
        1,
        "{contents}"
    );

    let (status, count) = frame.call("GET", "/api/packets/count", None).await;
    assert_eq!((status, count["count"].as_i64()), (200, Some(1)));

    let (status, drafts) = frame.call("GET", "/api/packets/status/draft", None).await;
    assert_eq!(
        (status, drafts["total"].as_i64()),
        (200, Some(1)),
        "{drafts}"
    );

    let (status, finalized) = frame
        .call("POST", &format!("/api/packets/{id}/finalize"), None)
        .await;
    assert_eq!(
        (status, finalized["status"].as_str()),
        (200, Some("finalized")),
        "{finalized}"
    );

    // Finalizing stored a snapshot through the storage service.
    let (status, versions) = frame
        .call("GET", &format!("/api/packets/{id}/versions"), None)
        .await;
    assert_eq!(status, 200, "{versions}");
    assert_eq!(
        versions
            .to_string()
            .matches(&format!("snapshots/{id}/v"))
            .count(),
        1,
        "a snapshot key in {versions}"
    );
    assert!(
        !frame.log().contains("no snapshot stored"),
        "{}",
        frame.log()
    );

    // A finalized packet cannot be edited, nor finalized again.
    let (status, err) = frame
        .call(
            "PUT",
            &format!("/api/packets/{id}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error"]["code"].is_string(), "{err}");
    let (status, _) = frame
        .call("POST", &format!("/api/packets/{id}/finalize"), None)
        .await;
    assert_eq!(status, 409);

    let (status, list) = frame
        .call("GET", "/api/packets/?status=finalized&limit=10", None)
        .await;
    assert_eq!((status, list["total"].as_i64()), (200, Some(1)), "{list}");

    let (status, archived) = frame
        .call("POST", &format!("/api/packets/{id}/archive"), None)
        .await;
    assert_eq!(
        (status, archived["status"].as_str()),
        (200, Some("archived")),
        "{archived}"
    );

    // Errors: unknown id, bad bodies, wrong method.
    let (status, err) = frame.call("GET", "/api/packets/does-not-exist", None).await;
    assert_eq!(status, 404, "{err}");
    let (status, err) = frame
        .call(
            "POST",
            "/api/packets/",
            Some(json!({"description": "no name"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(err.to_string().contains("name"), "{err}");
    let (status, _) = frame
        .client
        .post(format!("{}/api/packets/", frame.base))
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 422);

    // The frame's own API and error shape.
    let (status, shards) = frame.call("GET", "/api/frame/shards", None).await;
    assert_eq!(status, 200);
    assert_eq!(shards["shards"][0]["name"], "packets");
    assert_eq!(shards["shards"][0]["status"], "running");
    let (status, err) = frame.call("GET", "/api/nosuch/x", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("shard_not_found"))
    );
    frame.stop();
}

async fn packets_survive_a_restart(backends: Backends) {
    let Some(data) = backends.data_dir("packets_survive_a_restart", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let (status, created) = frame
        .call("POST", "/api/packets/", Some(json!({"name": "durable"})))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    frame.stop();

    let frame = Frame::start(data.path());
    let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(
        (status, got["name"].as_str()),
        (200, Some("durable")),
        "{got}"
    );
    frame.stop();
}

/// Packets written before a `kill -9` of the frame are there after it: a 2xx means durable.
async fn packets_survive_kill_9(backends: Backends) {
    let Some(data) = backends.data_dir("packets_survive_kill_9", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let mut frame = Frame::start(data.path());
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, created) = frame
            .call(
                "POST",
                "/api/packets/",
                Some(json!({"name": format!("k{i}")})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    frame.kill();

    let frame = Frame::start(data.path());
    for (i, id) in ids.iter().enumerate() {
        let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
        assert_eq!(
            (status, got["name"].as_str()),
            (200, Some(format!("k{i}").as_str()))
        );
    }
    let (_, count) = frame.call("GET", "/api/packets/count", None).await;
    assert_eq!(count["count"].as_i64(), Some(20), "{count}");
    frame.stop();
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates a draft named `name` and returns its id.
pub(crate) async fn new_packet(frame: &Frame, name: &str) -> String {
    let (status, created) = frame
        .call(
            "POST",
            "/api/packets/",
            Some(json!({"name": name, "metadata": {"secret": "owner-only"}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

pub(crate) async fn add_content(
    frame: &Frame,
    id: &str,
    content_type: &str,
    content_id: &str,
) -> Value {
    let (status, content) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/contents"),
            Some(
                json!({"content_type": content_type, "content_id": content_id,
                "content_title": format!("Title of {content_id}")}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{content}");
    content
}

/// A finalised packet with two items and a version asked for on top (versions 2 and 3).
pub(crate) async fn finalized_packet(frame: &Frame, name: &str) -> String {
    let id = new_packet(frame, name).await;
    add_content(frame, &id, "document", "doc-1").await;
    add_content(frame, &id, "claim", "claim-7").await;
    let (status, body) = frame
        .call("POST", &format!("/api/packets/{id}/finalize"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/versions"),
            Some(json!({"changes_summary": "reviewed"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    id
}

/// `POST path` with raw bytes as the body.
pub(crate) async fn post_bytes(frame: &Frame, path: &str, body: Vec<u8>) -> (u16, Value) {
    let response = frame
        .client
        .post(format!("{}{path}", frame.base))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Exports `id` as `format`, downloads the bundle and checks what the response says about it.
pub(crate) async fn export(frame: &Frame, id: &str, format: &str) -> (Value, Vec<u8>) {
    let (status, exported) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/export"),
            Some(json!({"format": format})),
        )
        .await;
    assert_eq!(status, 201, "{exported}");
    assert_eq!(exported["format"], format);
    assert_eq!(exported["packet_id"], id);
    let file_path = exported["file_path"].as_str().unwrap();
    assert!(
        file_path.starts_with(&format!("exports/{id}/")),
        "{exported}"
    );
    let response = frame
        .client
        .get(format!(
            "{}{}",
            frame.base,
            exported["download_path"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = if format == "zip" {
        "application/zip"
    } else {
        "application/json"
    };
    assert_eq!(response.headers()["content-type"], content_type);
    let length: u64 = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(length, bytes.len() as u64);
    assert_eq!(exported["size_bytes"].as_u64(), Some(length), "{exported}");
    assert_eq!(
        exported["checksum"].as_str(),
        Some(sha256_hex(&bytes).as_str())
    );
    (exported, bytes)
}

/// The contents of a packet as (type, id, title, order), the identity the checksum covers.
pub(crate) async fn contents_of(frame: &Frame, id: &str) -> Vec<Value> {
    let (status, contents) = frame
        .call("GET", &format!("/api/packets/{id}/contents"), None)
        .await;
    assert_eq!(status, 200, "{contents}");
    contents["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!([
                c["content_type"],
                c["content_id"],
                c["content_title"],
                c["order_num"]
            ])
        })
        .collect()
}

pub(crate) async fn packet_count(frame: &Frame) -> i64 {
    let (status, stats) = frame.call("GET", "/api/packets/stats/overview", None).await;
    assert_eq!(status, 200, "{stats}");
    stats["total_packets"].as_i64().unwrap()
}

/// The rest of the seed's table, with its errors: listings, stats, contents, deletion.
async fn remaining_endpoints_and_errors(backends: Backends) {
    let Some(data) = backends.data_dir("remaining_endpoints_and_errors", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let draft = new_packet(&frame, "draft one").await;
    let shared = finalized_packet(&frame, "shared one").await;
    let (status, _) = frame
        .call(
            "POST",
            &format!("/api/packets/{shared}/share"),
            Some(json!({"shared_with": "x"})),
        )
        .await;
    assert_eq!(status, 201);
    let finalized = finalized_packet(&frame, "final one").await;

    for (path, total) in [
        ("/api/packets/status/draft", 1),
        ("/api/packets/status/finalized", 1),
        ("/api/packets/status/shared", 1),
        ("/api/packets/?q=ONE", 3),
        ("/api/packets/?limit=1", 3),
    ] {
        let (status, list) = frame.call("GET", path, None).await;
        assert_eq!(
            (status, list["total"].as_i64()),
            (200, Some(total)),
            "{path}: {list}"
        );
    }
    let (status, list) = frame.call("GET", "/api/packets/status/shared", None).await;
    assert_eq!(
        (status, list["items"][0]["id"].as_str()),
        (200, Some(shared.as_str()))
    );
    let (status, count) = frame
        .call("GET", "/api/packets/count?status=draft", None)
        .await;
    assert_eq!((status, count["count"].as_i64()), (200, Some(1)));
    let (status, stats) = frame.call("GET", "/api/packets/stats/overview", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["total_packets"], 3);
    assert_eq!(stats["by_status"]["shared"], 1);
    assert_eq!(stats["total_contents"], 4);
    assert_eq!(stats["total_shares"], 1);
    assert_eq!(stats["total_versions"], 4);

    // Query and body validation: 422 with the field named.
    for path in [
        "/api/packets/?status=bogus",
        "/api/packets/?limit=0",
        "/api/packets/count?status=bogus",
    ] {
        let (status, err) = frame.call("GET", path, None).await;
        assert_eq!(status, 422, "{path}: {err}");
        assert!(err["error"]["fields"].is_object(), "{path}: {err}");
    }
    let (status, _) = frame.call("GET", "/api/packets/status/bogus", None).await;
    assert_eq!(status, 404);
    let (status, err) = frame
        .call(
            "POST",
            &format!("/api/packets/{draft}/contents"),
            Some(json!({"content_type": "weapon", "order_num": -1})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    for field in ["content_type", "content_id", "order_num"] {
        assert!(err["error"]["fields"][field].is_string(), "{field}: {err}");
    }
    let (status, err) = frame
        .call(
            "PUT",
            &format!("/api/packets/{draft}"),
            Some(json!({"visibility": "world"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"]["fields"]["visibility"].is_string(), "{err}");

    // Contents: duplicates, removal, only on drafts.
    let content = add_content(&frame, &draft, "report", "r-1").await;
    let (status, err) = frame
        .call(
            "POST",
            &format!("/api/packets/{draft}/contents"),
            Some(json!({"content_type": "report", "content_id": "r-1"})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("duplicate_content"))
    );
    let content_path = format!(
        "/api/packets/{draft}/contents/{}",
        content["id"].as_str().unwrap()
    );
    let (status, _) = frame.call("DELETE", &content_path, None).await;
    assert_eq!(status, 200);
    let (status, _) = frame.call("DELETE", &content_path, None).await;
    assert_eq!(status, 404);
    let (status, err) = frame
        .call(
            "POST",
            &format!("/api/packets/{finalized}/contents"),
            Some(json!({"content_type": "report", "content_id": "r-2"})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    let (status, contents) = frame
        .call("GET", &format!("/api/packets/{finalized}/contents"), None)
        .await;
    assert_eq!((status, contents["total"].as_i64()), (200, Some(2)));
    let first = contents["items"][0]["id"].as_str().unwrap();
    let (status, _) = frame
        .call(
            "DELETE",
            &format!("/api/packets/{finalized}/contents/{first}"),
            None,
        )
        .await;
    assert_eq!(status, 409);

    // Unknown ids: 404 on every path under a packet.
    for (method, path) in [
        ("GET", "/api/packets/nope"),
        ("PUT", "/api/packets/nope"),
        ("DELETE", "/api/packets/nope"),
        ("POST", "/api/packets/nope/finalize"),
        ("POST", "/api/packets/nope/archive"),
        ("GET", "/api/packets/nope/contents"),
        ("POST", "/api/packets/nope/contents"),
        ("DELETE", "/api/packets/nope/contents/x"),
        ("GET", "/api/packets/nope/shares"),
        ("DELETE", "/api/packets/nope/shares/x"),
        ("GET", "/api/packets/nope/versions"),
        ("GET", "/api/packets/nope/exports"),
    ] {
        let body = match method {
            "PUT" => Some(json!({"name": "x"})),
            "POST" if path.ends_with("contents") => {
                Some(json!({"content_type": "report", "content_id": "r"}))
            }
            _ => None,
        };
        let (status, err) = frame.call(method, path, body).await;
        assert_eq!(status, 404, "{method} {path}: {err}");
    }

    // DELETE archives; archiving twice is an illegal transition.
    let (status, archived) = frame
        .call("DELETE", &format!("/api/packets/{draft}"), None)
        .await;
    assert_eq!(
        (status, archived["status"].as_str()),
        (200, Some("archived"))
    );
    let (status, err) = frame
        .call("DELETE", &format!("/api/packets/{draft}"), None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("invalid_state"))
    );
    let (status, _) = frame
        .call("POST", &format!("/api/packets/{draft}/finalize"), None)
        .await;
    assert_eq!(status, 409);
    let (status, _) = frame.call("GET", "/api/packets/import", None).await;
    assert_eq!(status, 405);
    frame.stop();
}

crate::on_both_backends!(
    crud_workflow_and_errors,
    packets_survive_a_restart,
    packets_survive_kill_9,
    remaining_endpoints_and_errors
);
