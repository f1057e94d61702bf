//! Start-up with many shards: those that subscribe to nothing are `pending` when the frame
//! listens, and loaded on their first call (concurrent first calls share one load) or in the
//! background; one that does not load ends `failed`, and its calls get 503.

use crate::harness::{Frame, arkham, data_dir, eventually, manifest_of, package_with};
use serde_json::Value;
use std::path::{Path, PathBuf};
use test_shards::MINIMAL;

/// Installs the minimal shard under each of `names` with one `arkham shard add`.
fn install_as(data: &Path, names: &[&str]) {
    let files: Vec<PathBuf> = names
        .iter()
        .map(|name| {
            let mut manifest = manifest_of(&MINIMAL);
            manifest.name = name.to_string();
            let path = data.join(format!("{name}.shard.wasm"));
            package_with(&MINIMAL, &manifest, &path);
            path
        })
        .collect();
    let mut args = vec!["shard", "add"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.push("--yes");
    let (ok, out, err) = arkham(data, &args);
    assert!(ok, "{out}{err}");
}

/// Flips a byte inside `name`'s component in the blob store, away from its manifest (the last
/// section): the manifest still reads, the component no longer matches its digest.
fn corrupt(data: &Path, name: &str) {
    let (ok, list, err) = arkham(data, &["shard", "list", "--json"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let digest = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = data
        .join("store/blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
}

/// Each shard's status in `GET /api/frame/shards`, by name.
async fn statuses(frame: &Frame) -> Vec<(String, String)> {
    let (status, list) = frame.call("GET", "/api/frame/shards", None).await;
    assert_eq!(status, 200, "{list}");
    list["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The frame's log without the terminal colours around field names.
fn plain_log(frame: &Frame) -> String {
    let log = frame.log();
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // `ESC [ … m`
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// How many times the frame logged that it loaded `shard`.
/// [`loads_of`] once the frame's log, read from its pipe by another thread, shows at least one
/// load of `shard`: the frame logs a load before it serves the call, but the test may read the
/// captured log before that thread has.
async fn loads_seen(frame: &Frame, shard: &str) -> usize {
    eventually(&format!("the log shows {shard} loaded"), || async {
        loads_of(frame, shard) > 0
    })
    .await;
    loads_of(frame, shard)
}

fn loads_of(frame: &Frame, shard: &str) -> usize {
    let field = format!("shard={shard} ");
    plain_log(frame)
        .lines()
        .filter(|line| line.contains(" loaded ") && line.contains(&field))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_shards_load_on_first_call_or_in_the_background_and_a_broken_one_fails() {
    let data = data_dir("");
    let names = ["alpha", "bravo", "broken", "charlie", "delta", "foxtrot"];
    install_as(data.path(), &names);
    corrupt(data.path(), "broken");
    let frame = Frame::start_listening(data.path());

    // A call right after start is served, whether its shard is loaded yet or not.
    let (status, body) = frame.call("GET", "/api/foxtrot/", None).await;
    assert_eq!(status, 200, "{body}");

    // A shard whose component does not load: its call gets 503 and it shows `failed`, why.
    let (status, body) = frame.call("GET", "/api/broken/", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "shard_not_loaded", "{body}");
    let (_, list) = frame.call("GET", "/api/frame/shards", None).await;
    let broken = list["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(broken["status"], "failed", "{broken}");
    assert!(
        broken["error"].as_str().unwrap().contains("is corrupt"),
        "{broken}"
    );

    // The others load without a call.
    eventually("every other shard running", || async {
        statuses(&frame).await.iter().all(|(name, status)| {
            status
                == if name == "broken" {
                    "failed"
                } else {
                    "running"
                }
        })
    })
    .await;
    let (_, health) = frame.call("GET", "/api/frame/health", None).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["shards"]["failed"], 1, "{health}");
    for name in names.iter().filter(|n| **n != "broken") {
        assert_eq!(
            loads_seen(&frame, name).await,
            1,
            "{name}:\n{}",
            frame.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_first_calls_share_one_load_and_an_uncalled_shard_stays_pending() {
    // Without the background load, a shard stays pending until it is called.
    let data = data_dir("[server]\npreload_shards = false\n");
    install_as(data.path(), &["idle", "called"]);
    let frame = Frame::start_listening(data.path());
    assert_eq!(
        statuses(&frame).await,
        [
            ("called".to_string(), "pending".to_string()),
            ("idle".to_string(), "pending".to_string())
        ]
    );
    // A pending shard already shows its manifest.
    let (_, list) = frame.call("GET", "/api/frame/shards", None).await;
    assert_eq!(list["shards"][0]["manifest"]["name"], "called", "{list}");

    let calls = (0..8).map(|_| frame.call("GET", "/api/called/", None));
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(loads_seen(&frame, "called").await, 1, "{}", frame.log());
    assert_eq!(
        statuses(&frame).await,
        [
            ("called".to_string(), "running".to_string()),
            ("idle".to_string(), "pending".to_string())
        ]
    );
    assert_eq!(loads_of(&frame, "idle"), 0, "{}", frame.log());
    let (_, list) = frame.call("GET", "/api/frame/shards", None).await;
    assert_eq!(
        list["shards"][0]["http_interface"], "arkham:shard/http-handler@0.2.0",
        "{list}"
    );
}
