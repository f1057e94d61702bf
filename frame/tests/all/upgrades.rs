//! Upgrades that cannot take a shard down: a new version of a running shard is loaded beside
//! the old one and sent calls only once it answers its health check; a refused one leaves the
//! old one serving (and the CLI failing), and `rollback` returns to the version before, from the
//! store, through the same gate. A load loop runs through every swap and sees no failure.

use crate::harness::{Frame, admin_token, arkham, data_dir, install, manifest_of, package_with};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use test_shards::{ECHO, HOSTILE, PACKETS};

/// Requests against packets until stopped: (requests made, failures with what they were).
struct Load {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(frame: &Frame) -> Self {
        let (stop, made) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (client, base) = (frame.client.clone(), frame.base.clone());
        let task = tokio::spawn({
            let (stop, made) = (stop.clone(), made.clone());
            async move {
                let mut failures = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let response = if i.is_multiple_of(2) {
                        client
                            .post(format!("{base}/api/packets/"))
                            .json(&json!({ "name": format!("load {i}") }))
                            .send()
                            .await
                    } else {
                        client.get(format!("{base}/api/packets/count")).send().await
                    };
                    made.fetch_add(1, Ordering::Relaxed);
                    match response {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => failures.push(format!(
                            "{}: {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        )),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            }
        });
        Self { stop, made, task }
    }

    /// Waits until `n` more requests ran, so that the load overlaps what comes next.
    async fn at_least(&self, n: u64) {
        let start = self.made.load(Ordering::Relaxed);
        while self.made.load(Ordering::Relaxed) < start + n {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.unwrap();
        (self.made.load(Ordering::Relaxed), failures)
    }
}

/// What the frame says of packets: (version, status, refused version if any).
async fn serving(frame: &Frame) -> (String, String, Option<String>, Value) {
    let (_, list) = frame.call("GET", "/api/frame/shards", None).await;
    let entry = list["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "packets")
        .unwrap()
        .clone();
    (
        entry["version"].as_str().unwrap().to_string(),
        entry["status"].as_str().unwrap().to_string(),
        entry["refused"]["version"].as_str().map(str::to_string),
        entry,
    )
}

/// Packages packets' component as `version`, or echo's component posing as packets with a
/// health check that answers 500: a version that loads but is not healthy.
fn packets_as(dir: &std::path::Path, version: &str, healthy: bool) -> String {
    let mut manifest = manifest_of(&PACKETS);
    manifest.version = version.parse().unwrap();
    let path = dir.join(format!("packets-{version}.wasm"));
    if healthy {
        package_with(&PACKETS, &manifest, &path);
    } else {
        manifest.health = Some("/status/500".to_string());
        package_with(&ECHO, &manifest, &path);
    }
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn swaps_are_health_gated_and_rollback_returns_through_the_same_gate() {
    let work = tempfile::tempdir().unwrap();
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let frame = Frame::start(data.path());
    let (status, created) = frame
        .call("POST", "/api/packets/", Some(json!({ "name": "kept" })))
        .await;
    assert_eq!(status, 201, "{created}");
    let kept = created["id"].as_str().unwrap().to_string();
    let load = Load::start(&frame);
    load.at_least(20).await;

    // A version whose health check fails: refused, the CLI fails and says why, and 0.1.0
    // keeps serving with the catalog and grant as they were.
    let broken = packets_as(work.path(), "0.2.0", false);
    let (ok, out, err) = arkham(data.path(), &["shard", "add", &broken, "--yes"]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("refused packets 0.2.0"), "{err}");
    assert!(err.contains("GET /status/500 answered 500"), "{err}");
    assert!(err.contains("packets 0.1.0 keeps serving"), "{err}");
    let (version, status, refused, entry) = serving(&frame).await;
    assert_eq!(
        (version.as_str(), status.as_str()),
        ("0.1.0", "running"),
        "{entry}"
    );
    assert_eq!(refused.as_deref(), Some("0.2.0"));
    let (ok, list, _) = arkham(data.path(), &["shard", "list", "--json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["version"], "0.1.0", "{list}");
    let (ok, grants, err) = arkham(data.path(), &["shard", "grants", "packets", "--json"]);
    assert!(ok, "{err}");
    assert!(
        grants.contains("storage"),
        "the old version's grant is back: {grants}"
    );
    load.at_least(20).await;

    // A healthy version is swapped in under the same load.
    let good = packets_as(work.path(), "0.3.0", true);
    let (ok, out, err) = arkham(data.path(), &["shard", "add", &good, "--yes"]);
    assert!(ok, "{out}{err}");
    let (version, status, refused, _) = serving(&frame).await;
    assert_eq!((version.as_str(), status.as_str()), ("0.3.0", "running"));
    assert_eq!(refused, None, "a successful install clears the refusal");
    load.at_least(20).await;

    // Rollback: back to 0.1.0 from the store, with the data; twice returns to 0.3.0.
    let (ok, out, err) = arkham(data.path(), &["shard", "rollback", "packets", "--yes"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("rolled back packets 0.3.0 -> 0.1.0"), "{out}");
    assert_eq!(serving(&frame).await.0, "0.1.0");
    let (status, got) = frame
        .call("GET", &format!("/api/packets/{kept}"), None)
        .await;
    assert_eq!(status, 200, "{got}");
    let (ok, out, err) = arkham(data.path(), &["shard", "rollback", "packets", "--yes"]);
    assert!(ok, "{out}{err}");
    assert_eq!(serving(&frame).await.0, "0.3.0");
    load.at_least(20).await;

    // The admin API rolls back through the same gate.
    let token = admin_token(data.path());
    let response = frame
        .client
        .post(format!(
            "{}/api/frame/admin/shards/packets/rollback",
            frame.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(serving(&frame).await.0, "0.1.0");

    // The admin API's install of the broken version is refused with the reason.
    let response = frame
        .client
        .post(format!("{}/api/frame/admin/shards", frame.base))
        .bearer_auth(&token)
        .body(std::fs::read(&broken).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("refused") && message.contains("keeps serving"),
        "{message}"
    );
    assert_eq!(serving(&frame).await.0, "0.1.0");

    let (made, failures) = load.finish().await;
    assert!(made >= 100, "the load ran through the swaps: {made}");
    assert!(
        failures.is_empty(),
        "{} of {made} requests failed: {failures:?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_needs_an_earlier_version_and_works_without_a_frame() {
    let work = tempfile::tempdir().unwrap();
    let data = data_dir("");
    install(data.path(), &[&PACKETS]);
    let (ok, _, err) = arkham(data.path(), &["shard", "rollback", "packets", "--yes"]);
    assert!(!ok);
    assert!(err.contains("no earlier version"), "{err}");
    let (ok, _, err) = arkham(data.path(), &["shard", "rollback", "nosuch", "--yes"]);
    assert!(!ok);
    assert!(err.contains("no shard named `nosuch`"), "{err}");

    // With no frame running, rollback only changes the catalog; the next start serves it.
    let newer = packets_as(work.path(), "0.4.0", true);
    let (ok, out, err) = arkham(data.path(), &["shard", "add", &newer, "--yes"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = arkham(data.path(), &["shard", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("before: 0.1.0"), "{out}");
    let (ok, out, err) = arkham(data.path(), &["shard", "rollback", "packets", "--yes"]);
    assert!(ok, "{out}{err}");
    let frame = Frame::start(data.path());
    assert_eq!(serving(&frame).await.0, "0.1.0");
}

/// A health check that never answers is cut at 10 s (the reconcile lock is held meanwhile), and
/// the version serving keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_health_check_that_hangs_is_refused_in_time() {
    let work = tempfile::tempdir().unwrap();
    let data = data_dir("");
    install(data.path(), &[&HOSTILE]);
    let frame = Frame::start(data.path());
    let mut manifest = manifest_of(&HOSTILE);
    manifest.version = "0.2.0".parse().unwrap();
    // Sleeps in a host call, where only the frame's own deadline reaches it.
    manifest.health = Some("/sleep?ms=600000".to_string());
    let path = work.path().join("hostile-0.2.0.wasm");
    package_with(&HOSTILE, &manifest, &path);
    let started = std::time::Instant::now();
    let (ok, out, err) = arkham(
        data.path(),
        &["shard", "add", path.to_str().unwrap(), "--yes"],
    );
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("GET /sleep?ms=600000 did not answer within 10000 ms"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
    let (status, _) = frame.call("GET", "/api/hostile/events", None).await;
    assert_eq!(status, 200);
    frame.stop();
}
