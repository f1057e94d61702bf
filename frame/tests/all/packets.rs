//! The packets shard end to end: CRUD, workflow, errors, persistence across restarts; versions,
//! export and import, shares and the share link; and the nine events with their payloads.

use crate::backends::Backends;
use crate::harness::{Frame, arkham, eventually, install};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use test_shards::{PACKETS, RECORDER};

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

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates a draft named `name` and returns its id.
async fn new_packet(frame: &Frame, name: &str) -> String {
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

async fn add_content(frame: &Frame, id: &str, content_type: &str, content_id: &str) -> Value {
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
async fn finalized_packet(frame: &Frame, name: &str) -> String {
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
async fn post_bytes(frame: &Frame, path: &str, body: Vec<u8>) -> (u16, Value) {
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
async fn export(frame: &Frame, id: &str, format: &str) -> (Value, Vec<u8>) {
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
async fn contents_of(frame: &Frame, id: &str) -> Vec<Value> {
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

async fn packet_count(frame: &Frame) -> i64 {
    let (status, stats) = frame.call("GET", "/api/packets/stats/overview", None).await;
    assert_eq!(status, 200, "{stats}");
    stats["total_packets"].as_i64().unwrap()
}

async fn versions_on_request_and_snapshots(backends: Backends) {
    let Some(data) = backends.data_dir("versions_on_request", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let id = new_packet(&frame, "versioned").await;
    add_content(&frame, &id, "entity", "e-1").await;

    // A version of a draft, whenever asked: the next number, with a snapshot in storage.
    let (status, version) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/versions"),
            Some(json!({"changes_summary": "first look"})),
        )
        .await;
    assert_eq!(status, 201, "{version}");
    assert_eq!(version["version_number"], 2);
    assert_eq!(version["changes_summary"], "first look");
    let (status, snapshot) = frame
        .call("GET", &format!("/api/packets/{id}/versions/2"), None)
        .await;
    assert_eq!(status, 200, "{snapshot}");
    assert_eq!(snapshot["packet"]["id"], id.as_str());
    assert_eq!(snapshot["packet"]["version"], 2);
    assert_eq!(snapshot["contents"][0]["content_id"], "e-1");

    // The draft still changes; the snapshot does not.
    add_content(&frame, &id, "entity", "e-2").await;
    let (status, finalized) = frame
        .call("POST", &format!("/api/packets/{id}/finalize"), None)
        .await;
    assert_eq!(status, 200, "{finalized}");
    assert_eq!(finalized["version"], 3);
    let (_, snapshot) = frame
        .call("GET", &format!("/api/packets/{id}/versions/2"), None)
        .await;
    assert_eq!(snapshot["contents"].as_array().map(Vec::len), Some(1));
    let (status, snapshot) = frame
        .call("GET", &format!("/api/packets/{id}/versions/3"), None)
        .await;
    assert_eq!(status, 200, "{snapshot}");
    assert_eq!(snapshot["contents"].as_array().map(Vec::len), Some(2));
    assert_eq!(snapshot["packet"]["checksum"], finalized["checksum"]);
    let (_, versions) = frame
        .call("GET", &format!("/api/packets/{id}/versions"), None)
        .await;
    assert_eq!(versions["total"], 2, "{versions}");

    // Errors: a missing or bad summary, unknown packets and versions, an archived packet.
    let path = format!("/api/packets/{id}/versions");
    let (status, err) = frame.call("POST", &path, Some(json!({}))).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["fields"]["changes_summary"], "required");
    let (status, err) = frame
        .call("POST", &path, Some(json!({"changes_summary": 5})))
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"]["fields"]["changes_summary"].is_string(),
        "{err}"
    );
    let (status, _) = frame
        .call(
            "POST",
            "/api/packets/nope/versions",
            Some(json!({"changes_summary": "x"})),
        )
        .await;
    assert_eq!(status, 404);
    for n in ["9", "abc", "-1"] {
        let (status, err) = frame
            .call("GET", &format!("/api/packets/{id}/versions/{n}"), None)
            .await;
        assert_eq!(status, 404, "{n}: {err}");
    }
    let (status, _) = frame
        .call("GET", "/api/packets/nope/versions/1", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = frame
        .call("DELETE", &format!("/api/packets/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, err) = frame
        .call("POST", &path, Some(json!({"changes_summary": "late"})))
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "invalid_state");
    frame.stop();
}

async fn export_import_round_trips(backends: Backends) {
    let Some(data) = backends.data_dir("export_import_round_trips", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let id = finalized_packet(&frame, "exported").await;
    let (_, original) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    let checksum = original["checksum"].as_str().unwrap().to_string();
    let original_contents = contents_of(&frame, &id).await;

    let mut contents_checksums = Vec::new();
    for format in ["json", "zip"] {
        let (exported, bytes) = export(&frame, &id, format).await;
        assert_eq!(
            exported["contents_checksum"],
            checksum.as_str(),
            "{exported}"
        );
        if format == "zip" {
            assert_eq!(&bytes[..4], b"PK\x03\x04");
        } else {
            let document: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(document["manifest"]["format"], "arkham-packets-bundle");
            let files = document["manifest"]["files"].as_array().unwrap();
            assert!(
                files
                    .iter()
                    .all(|f| f["sha256"].as_str().is_some_and(|s| s.len() == 64)),
                "{document}"
            );
            assert!(
                document["files"]["snapshots/v3.json"].is_object(),
                "{document}"
            );
            assert!(!String::from_utf8_lossy(&bytes).contains("access_token"));
        }

        let (status, imported) = post_bytes(
            &frame,
            "/api/packets/import?created_by=importer",
            bytes.clone(),
        )
        .await;
        assert_eq!(status, 201, "{imported}");
        let new_id = imported["packet"]["id"].as_str().unwrap().to_string();
        assert_ne!(new_id, id);
        let (status, copy) = frame
            .call("GET", &format!("/api/packets/{new_id}"), None)
            .await;
        assert_eq!(status, 200, "{copy}");
        assert_eq!(copy["created_by"], "importer");
        assert_eq!(copy["import_source"], format!("{format}:{id}"));
        assert_eq!(copy["name"], "exported");
        assert_eq!(copy["checksum"], checksum.as_str());
        assert_eq!(copy["version"], original["version"]);
        assert_eq!(copy["status"], "finalized");
        assert_eq!(contents_of(&frame, &new_id).await, original_contents);
        let (_, versions) = frame
            .call("GET", &format!("/api/packets/{new_id}/versions"), None)
            .await;
        assert_eq!(versions["total"], 2, "{versions}");
        assert_eq!(versions["items"][1]["changes_summary"], "reviewed");
        let (status, snapshot) = frame
            .call("GET", &format!("/api/packets/{new_id}/versions/3"), None)
            .await;
        assert_eq!(status, 200, "{snapshot}");
        assert_eq!(snapshot["contents"].as_array().map(Vec::len), Some(2));

        // Export -> import -> export: the same content checksums, file by file.
        let (again, again_bytes) = export(&frame, &new_id, format).await;
        assert_eq!(again["contents_checksum"], exported["contents_checksum"]);
        let (_, third) = post_bytes(&frame, "/api/packets/import", again_bytes).await;
        assert_eq!(third["packet"]["checksum"], checksum.as_str(), "{third}");
        contents_checksums.push(exported["contents_checksum"].clone());

        // The bundles are listed, and an unknown one is 404.
        let (status, listed) = frame
            .call("GET", &format!("/api/packets/{id}/exports"), None)
            .await;
        assert_eq!(status, 200, "{listed}");
        assert!(
            listed
                .to_string()
                .contains(exported["file_path"].as_str().unwrap())
        );
    }
    assert_eq!(contents_checksums[0], contents_checksums[1]);

    // A bundle can be deleted; then it is neither listed nor downloadable.
    let (first, _) = export(&frame, &id, "json").await;
    let path = first["download_path"].as_str().unwrap().to_string();
    let (status, body) = frame.call("DELETE", &path, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = frame.call("GET", &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = frame.call("DELETE", &path, None).await;
    assert_eq!(status, 404);
    let (_, listed) = frame
        .call("GET", &format!("/api/packets/{id}/exports"), None)
        .await;
    assert!(
        !listed
            .to_string()
            .contains(first["file_path"].as_str().unwrap())
    );
    assert_eq!(listed["total"], 2, "{listed}");
    let (status, _) = frame
        .call(
            "GET",
            &format!("/api/packets/{id}/exports/00000000-0000-4000-8000-000000000000.zip"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = frame
        .call(
            "GET",
            &format!("/api/packets/{id}/exports/..%2Fx.zip"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A draft exports too, and a query parameter can name the format.
    let draft = new_packet(&frame, "draft").await;
    let (status, exported) = frame
        .call(
            "POST",
            &format!("/api/packets/{draft}/export?format=zip"),
            None,
        )
        .await;
    assert_eq!(
        (status, exported["format"].as_str()),
        (201, Some("zip")),
        "{exported}"
    );

    // Errors: unknown packet, unknown format.
    let (status, _) = frame
        .call(
            "POST",
            "/api/packets/nope/export",
            Some(json!({"format": "json"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, err) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/export"),
            Some(json!({"format": "tar"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"]["fields"]["format"].is_string(), "{err}");
    frame.stop();
}

/// A zip end-of-central-directory record alone, claiming `entries` entries.
fn end_record(entries: u16) -> Vec<u8> {
    let mut record = b"PK\x05\x06\0\0\0\0".to_vec();
    record.extend_from_slice(&entries.to_le_bytes());
    record.extend_from_slice(&entries.to_le_bytes());
    record.extend_from_slice(&[0; 10]);
    record
}

/// Flips the byte at `at`, keeping the rest.
fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[at] ^= 0x01;
    bytes
}

async fn import_refuses_bad_bundles(backends: Backends) {
    let Some(data) = backends.data_dir("import_refuses_bad_bundles", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let id = finalized_packet(&frame, "source").await;
    let (_, zip) = export(&frame, &id, "zip").await;
    let (_, json_bytes) = export(&frame, &id, "json").await;
    let document: Value = serde_json::from_slice(&json_bytes).unwrap();
    let before = packet_count(&frame).await;
    let (_, stats_before) = frame.call("GET", "/api/packets/stats/overview", None).await;

    let mut tampered_title = document.clone();
    tampered_title["files"]["contents.json"][0]["content_title"] = json!("forged");
    let mut tampered_both = tampered_title.clone();
    // The file changed and the manifest says so, but the contents checksum does not follow.
    let forged_bytes = serde_json::to_vec(&tampered_both["files"]["contents.json"]).unwrap();
    for file in tampered_both["manifest"]["files"].as_array_mut().unwrap() {
        if file["path"] == "contents.json" {
            file["sha256"] = json!(sha256_hex(&forged_bytes));
            file["size"] = json!(forged_bytes.len());
        }
    }
    let mut extra_file = document.clone();
    extra_file["files"]["evil.json"] = json!({});
    let mut missing_file = document.clone();
    missing_file["files"]
        .as_object_mut()
        .unwrap()
        .remove("versions.json");
    let mut foreign_version = document.clone();
    foreign_version["manifest"]["format_version"] = json!(99);
    let mut bad_type = document.clone();
    bad_type["files"]["contents.json"][0]["content_type"] = json!("weapon");

    // A JSON document past the 4 MiB a JSON bundle may have (under the frame's 16 MiB).
    let mut huge_json = serde_json::to_vec(&document).unwrap();
    huge_json.truncate(huge_json.len() - 1);
    huge_json.extend_from_slice(format!(",\"pad\":\"{}\"}}", "x".repeat(5 << 20)).as_bytes());
    // The data of the first zip entry starts after its 30-byte header and name.
    let first_data = 30 + "manifest.json".len();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", Vec::new(), "bundle"),
        ("not a bundle", b"hello".to_vec(), "bundle"),
        (
            "foreign JSON",
            br#"{"manifest":{"format":"other"},"files":{}}"#.to_vec(),
            "manifest.json",
        ),
        (
            "future version",
            serde_json::to_vec(&foreign_version).unwrap(),
            "manifest.json",
        ),
        (
            "tampered title",
            serde_json::to_vec(&tampered_title).unwrap(),
            "contents.json",
        ),
        (
            "tampered with its hash",
            serde_json::to_vec(&tampered_both).unwrap(),
            "contents.json",
        ),
        (
            "unlisted file",
            serde_json::to_vec(&extra_file).unwrap(),
            "evil.json",
        ),
        (
            "missing file",
            serde_json::to_vec(&missing_file).unwrap(),
            "versions.json",
        ),
        (
            "unknown content type",
            serde_json::to_vec(&bad_type).unwrap(),
            "contents.json",
        ),
        ("truncated zip", zip[..zip.len() / 2].to_vec(), "bundle"),
        (
            "zip cut at the end",
            zip[..zip.len() - 1].to_vec(),
            "bundle",
        ),
        ("flipped zip byte", flipped(&zip, first_data), "bundle"),
        (
            "flipped central directory",
            flipped(&zip, zip.len() - 30),
            "bundle",
        ),
        ("zip of garbage", b"PK\x03\x04garbage".to_vec(), "bundle"),
        ("too many zip entries", end_record(2000), "bundle"),
        ("zip64", end_record(0xffff), "bundle"),
        ("JSON past 4 MiB", huge_json, "bundle"),
    ];
    for (what, body, field) in cases {
        let (status, err) = post_bytes(&frame, "/api/packets/import", body).await;
        assert_eq!(status, 422, "{what}: {err}");
        assert_eq!(err["error"]["code"], "invalid_bundle", "{what}: {err}");
        assert!(
            err["error"]["fields"][field].is_string(),
            "{what}: expected a problem with {field}: {err}"
        );
    }
    let (status, err) = post_bytes(&frame, "/api/packets/import?created_by=", zip.clone()).await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"]["fields"]["created_by"].is_string(), "{err}");

    // Nothing was left behind by the refusals.
    assert_eq!(packet_count(&frame).await, before);
    let (_, stats_after) = frame.call("GET", "/api/packets/stats/overview", None).await;
    assert_eq!(stats_after, stats_before);
    // And the genuine bundle still imports.
    let (status, imported) = post_bytes(&frame, "/api/packets/import", zip).await;
    assert_eq!(status, 201, "{imported}");
    frame.stop();
}

async fn storage_is_needed_to_export(backends: Backends) {
    let Some(data) = backends.data_dir("storage_is_needed_to_export", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let id = finalized_packet(&frame, "with storage").await;
    let (_, zip) = export(&frame, &id, "zip").await;
    let before = packet_count(&frame).await;
    let (_, stats_before) = frame.call("GET", "/api/packets/stats/overview", None).await;

    let (ok, _, err) = arkham(
        data.path(),
        &["shard", "grants", "packets", "--revoke", "storage"],
    );
    assert!(ok, "{err}");
    let export_path = format!("/api/packets/{id}/export");
    eventually("storage is revoked in the running frame", || async {
        frame.call("POST", &export_path, None).await.0 == 503
    })
    .await;
    let (status, err) = frame
        .call("POST", &export_path, Some(json!({"format": "zip"})))
        .await;
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["error"]["code"], "storage_unavailable");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not granted"),
        "{err}"
    );
    let (status, err) = frame
        .call(
            "POST",
            &format!("/api/packets/{id}/versions"),
            Some(json!({"changes_summary": "no storage"})),
        )
        .await;
    assert_eq!(status, 503, "{err}");
    let (status, _) = frame
        .call("GET", &format!("/api/packets/{id}/versions/3"), None)
        .await;
    assert_eq!(status, 503);

    // An import whose snapshots cannot be stored leaves nothing: no packet, no rows.
    let (status, err) = post_bytes(&frame, "/api/packets/import", zip).await;
    assert_eq!(status, 503, "{err}");
    assert_eq!(packet_count(&frame).await, before);
    let (_, stats_after) = frame.call("GET", "/api/packets/stats/overview", None).await;
    assert_eq!(stats_after, stats_before);

    // Finalising does not need storage: the version has no snapshot, and says so.
    let draft = new_packet(&frame, "no storage").await;
    let (status, _) = frame
        .call("POST", &format!("/api/packets/{draft}/finalize"), None)
        .await;
    assert_eq!(status, 200);
    let (status, err) = frame
        .call("GET", &format!("/api/packets/{draft}/versions/2"), None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("no_snapshot")),
        "{err}"
    );
    frame.stop();
}

async fn shares_expire_and_revoke(backends: Backends) {
    let Some(data) = backends.data_dir("shares_expire_and_revoke", "") else {
        return;
    };
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let draft = new_packet(&frame, "private draft").await;
    let id = finalized_packet(&frame, "shared").await;
    let share_path = format!("/api/packets/{id}/share");

    // Errors first: drafts cannot be shared, bodies are checked, the expiry must be ahead.
    let (status, err) = frame
        .call(
            "POST",
            &format!("/api/packets/{draft}/share"),
            Some(json!({"shared_with": "bob"})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    let (status, err) = frame
        .call(
            "POST",
            &share_path,
            Some(json!({"shared_with": "", "permissions": "own", "expires_at": "soon"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    for field in ["shared_with", "permissions", "expires_at"] {
        assert!(err["error"]["fields"][field].is_string(), "{field}: {err}");
    }
    let (status, err) = frame
        .call(
            "POST",
            &share_path,
            Some(json!({"shared_with": "bob", "expires_at": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    let (status, _) = frame
        .call(
            "POST",
            "/api/packets/nope/share",
            Some(json!({"shared_with": "bob"})),
        )
        .await;
    assert_eq!(status, 404);

    let share = |body: Value| {
        let frame = &frame;
        let share_path = &share_path;
        async move {
            let (status, share) = frame.call("POST", share_path, Some(body)).await;
            assert_eq!(status, 201, "{share}");
            assert_eq!(share["state"], "active");
            share
        }
    };
    let viewer = share(json!({"shared_with": "viewer"})).await;
    let editor = share(json!({"shared_with": "editor", "permissions": "edit"})).await;
    // Two to three seconds ahead, written with a +01:00 offset: stored in UTC.
    let soon = {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3;
        let local = unix + 3600;
        let (y, mo, d) = civil_from_days((local / 86_400) as i64);
        let (h, m, s) = ((local / 3600) % 24, (local / 60) % 60, local % 60);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}+01:00")
    };
    let brief = share(json!({"shared_with": "brief", "expires_at": soon})).await;
    assert!(
        brief["expires_at"].as_str().unwrap().ends_with('Z'),
        "{brief}"
    );
    let (status, packet) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!((status, packet["status"].as_str()), (200, Some("shared")));

    // The link shows the packet read-only, and nothing beyond it.
    let token = viewer["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    let (status, shared) = frame
        .call("GET", &format!("/api/packets/shared/{token}"), None)
        .await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(shared["packet"]["id"], id.as_str());
    assert_eq!(shared["read_only"], true);
    assert_eq!(shared["share"]["permissions"], "view");
    assert_eq!(shared["contents"].as_array().map(Vec::len), Some(2));
    let text = shared.to_string();
    for leak in [
        "owner-only",
        "access_token",
        editor["access_token"].as_str().unwrap(),
        draft.as_str(),
    ] {
        assert!(!text.contains(leak), "{leak} leaked: {shared}");
    }
    // Permissions are checked on the link; even `edit` cannot change a shared packet.
    let link = format!("/api/packets/shared/{token}");
    let (status, err) = frame.call("PUT", &link, Some(json!({"name": "x"}))).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("permission_denied")),
        "{err}"
    );
    let (status, err) = frame
        .call("POST", &link, Some(json!({"comment": "x"})))
        .await;
    assert_eq!(status, 403, "{err}");
    let edit_link = format!(
        "/api/packets/shared/{}",
        editor["access_token"].as_str().unwrap()
    );
    let (status, shared) = frame.call("GET", &edit_link, None).await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(
        shared["share"]["allowed"],
        json!(["view", "comment", "edit"])
    );
    let (status, err) = frame
        .call("PUT", &edit_link, Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, 409, "{err}");

    // Unknown and malformed tokens open nothing, alike.
    for bad in [
        "0".repeat(64),
        "zz".to_string(),
        format!("{token}0"),
        token.to_uppercase(),
    ] {
        let (status, _) = frame
            .call("GET", &format!("/api/packets/shared/{bad}"), None)
            .await;
        assert_eq!(status, 404, "{bad}");
    }

    // Expiry: once past, the token opens nothing and the listing marks the share expired.
    let brief_link = format!(
        "/api/packets/shared/{}",
        brief["access_token"].as_str().unwrap()
    );
    let (status, _) = frame.call("GET", &brief_link, None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, err) = frame.call("GET", &brief_link, None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (410, Some("share_expired")),
        "{err}"
    );
    let (status, shares) = frame
        .call("GET", &format!("/api/packets/{id}/shares"), None)
        .await;
    assert_eq!(status, 200);
    let mut states: Vec<(&str, &str)> = shares["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["shared_with"].as_str().unwrap(),
                s["state"].as_str().unwrap(),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            ("brief", "expired"),
            ("editor", "active"),
            ("viewer", "active")
        ]
    );

    // Revoking kills the token at once.
    let (status, _) = frame
        .call(
            "DELETE",
            &format!(
                "/api/packets/{id}/shares/{}",
                viewer["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = frame.call("GET", &link, None).await;
    assert_eq!(status, 404);
    let (status, _) = frame
        .call(
            "DELETE",
            &format!(
                "/api/packets/{id}/shares/{}",
                viewer["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = frame.call("GET", "/api/packets/nope/shares", None).await;
    assert_eq!(status, 404);

    // An archived packet is no longer open to its links.
    let (status, _) = frame
        .call("POST", &format!("/api/packets/{id}/archive"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = frame.call("GET", &edit_link, None).await;
    assert_eq!(status, 410);
    frame.stop();
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
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

crate::on_both_backends!(
    crud_workflow_and_errors,
    packets_survive_a_restart,
    packets_survive_kill_9,
    versions_on_request_and_snapshots,
    export_import_round_trips,
    import_refuses_bad_bundles,
    storage_is_needed_to_export,
    shares_expire_and_revoke,
    remaining_endpoints_and_errors,
    the_nine_events
);
