//! Export and import: round trips in both formats, bad bundles, and storage not granted.

use super::{
    contents_of, export, finalized_packet, new_packet, packet_count, post_bytes, sha256_hex,
};
use crate::backends::Backends;
use crate::harness::{Frame, arkham, eventually, install};
use serde_json::{Value, json};
use test_shards::PACKETS;

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

crate::on_both_backends!(
    export_import_round_trips,
    import_refuses_bad_bundles,
    storage_is_needed_to_export
);
