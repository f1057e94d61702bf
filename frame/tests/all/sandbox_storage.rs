//! Storage quotas under attack (`hostile-storage`): metadata, key lengths and entry floods are
//! counted and refused with the documented errors, what is on disk stays within the quota across
//! a restart, and packets answers throughout.

use crate::backends::Backends;
use crate::harness::{Frame, install};
use crate::hostile::packets_answers;
use serde_json::Value;
use std::path::Path;
use test_shards::{HOSTILE_STORAGE, PACKETS};

const QUOTA: u64 = 65536;
const ENTRIES: u64 = 300;

const CONFIG: &str = "
[storage]
max_total_bytes = 65536
max_entries = 300
max_object_bytes = 1048576
";

/// (bytes in files, files, folders) under `dir`.
fn on_disk(dir: &Path) -> (u64, u64, u64) {
    let mut total = (0, 0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            let (bytes, files, folders) = on_disk(&entry.path());
            total = (total.0 + bytes, total.1 + files, total.2 + folders + 1);
        } else {
            total = (total.0 + meta.len(), total.1 + 1, total.2);
        }
    }
    total
}

/// Runs an attack endpoint while packets serves; returns its JSON.
async fn attack(frame: &Frame, path: &str) -> Value {
    let request = {
        let client = frame.client.clone();
        let url = format!("{}/api/hostile-storage{path}", frame.base);
        tokio::spawn(async move {
            let response = client.post(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let mut i = 0;
    while !request.is_finished() && i < 50 {
        packets_answers(frame, &format!("during {path} {i}")).await;
        i += 1;
    }
    let (status, text) = request.await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn refused(result: &Value, code: &str, says: &str) {
    assert_eq!(result["error"]["code"], code, "{result}");
    let message = result["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}

async fn storage_quotas_count_metadata_keys_and_entries(backends: Backends) {
    let Some(data) = backends.data_dir("storage_quotas", CONFIG) else {
        return;
    };
    // What is on disk is the embedded backend's to check; on NATS the bucket is the engine's.
    let files = backends == Backends::Embedded;
    install(data.path(), &[&PACKETS, &HOSTILE_STORAGE]);
    let mut frame = Frame::start(data.path());
    let namespace = data.path().join("shards/hostile-storage/storage");
    packets_answers(&frame, "warm").await;

    // A 60 MB content type is refused outright, before anything is written.
    let result = attack(&frame, "/content-types?n=3&len=62914560").await;
    assert_eq!(result["stored"], 0, "{result}");
    refused(&result, "limit_exceeded", "content type");
    if files {
        assert_eq!(on_disk(&namespace).0, 0);
    }
    let result = attack(&frame, "/content-type-bytes").await;
    refused(&result, "invalid_key", "printable ASCII");

    // Empty objects with the longest content type: each costs 256 + its key, so the byte quota
    // stops them after about 250.
    let result = attack(&frame, "/content-types?n=100000&len=256").await;
    refused(&result, "limit_exceeded", "quota");
    let stored = result["stored"].as_u64().unwrap();
    assert!((200..=256).contains(&stored), "{result}");
    if files {
        let (bytes, files, _) = on_disk(&namespace);
        assert!(bytes <= QUOTA, "{bytes} bytes on disk, quota {QUOTA}");
        assert!(bytes >= stored * 256, "{bytes} bytes for {stored} objects");
        assert_eq!(files, 2 * stored, "an object and its metadata each");
    }

    // After a restart the usage recomputed from disk agrees: the quota is still full (new keys:
    // replacing an object costs only the difference).
    frame.stop();
    frame = Frame::start(data.path());
    let result = attack(&frame, "/content-types?n=10&len=256&from=100000").await;
    assert_eq!(result["stored"], 0, "{result}");
    refused(&result, "limit_exceeded", "quota");
    let (status, cleared) = frame.call("POST", "/api/hostile-storage/clear", None).await;
    assert_eq!(
        (status, cleared["deleted"].as_u64()),
        (200, Some(stored)),
        "{cleared}"
    );
    if files {
        assert_eq!(on_disk(&namespace.join("objects")), (0, 0, 0));
    }

    // Empty objects each under folders of their own: 1 object + 4 folders per key, plus `e`.
    let result = attack(&frame, "/entries?n=100000&depth=3").await;
    refused(&result, "limit_exceeded", "entries");
    let stored = result["stored"].as_u64().unwrap();
    assert_eq!(stored, (ENTRIES - 1) / 5, "{result}");
    if files {
        let (_, files, folders) = on_disk(&namespace.join("objects"));
        assert!(
            (files - stored) + folders <= ENTRIES,
            "{files} files and {folders} folders for {stored} objects, limit {ENTRIES} entries"
        );
    }
    let (status, cleared) = frame.call("POST", "/api/hostile-storage/clear", None).await;
    assert_eq!(
        (status, cleared["deleted"].as_u64()),
        (200, Some(stored)),
        "{cleared}"
    );
    // Deleting the objects removed the folders they implied.
    if files {
        assert_eq!(on_disk(&namespace.join("objects")), (0, 0, 0));
    }

    // Segments: 240 bytes round-trip; longer ones are refused by the key rules, never by the
    // file system.
    let result = attack(&frame, "/segments").await;
    assert_eq!(result["240"], "ok", "{result}");
    for len in ["241", "249", "255"] {
        assert_eq!(result[len], "invalid_key", "{result}");
        let message = result["messages"][len].as_str().unwrap();
        assert!(message.contains("at most 240"), "{message}");
    }
    packets_answers(&frame, "after").await;
    frame.stop();
}

crate::on_both_backends!(storage_quotas_count_metadata_keys_and_entries);
