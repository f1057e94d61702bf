//! Several frames, one deployment (`[cluster] enabled`): members on the same engines share the
//! catalog, grants, admin token and components through NATS, so a change made through any of
//! them is applied by all, and a member that starts with an empty data dir serves everything.

use crate::backends::Backends;
use crate::harness::{Frame, admin_token, arkham, eventually, manifest_of, package_with, packaged};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use test_shards::{ECHO, PACKETS, RECORDER};

/// A second (or third) member's data dir: the first one's config, nothing else.
fn member_of(first: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(first.join("arkham.toml"), dir.path().join("arkham.toml")).unwrap();
    dir
}

async fn serves(frame: &Frame, path: &str) -> bool {
    frame.call("GET", path, None).await.0 == 200
}

async fn admin(frame: &Frame, token: &str, path: &str) -> Value {
    let response = frame
        .client
        .get(format!("{}{path}", frame.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn members_share_installs_grants_and_removals() {
    let Some(data) = Backends::Engines.data_dir("cluster_members", "[cluster]\nenabled = true\n")
    else {
        return;
    };
    let b_dir = member_of(data.path());
    let a = Frame::start(data.path());
    let b = Frame::start(b_dir.path());
    // One admin token for the deployment: the second member took the first one's.
    let token = admin_token(data.path());
    assert_eq!(admin_token(b_dir.path()), token);

    // Installed through member A's data dir: B serves it too.
    let (ok, out, err) = arkham(
        data.path(),
        &[
            "shard",
            "add",
            packaged(&PACKETS).to_str().unwrap(),
            "--yes",
        ],
    );
    assert!(ok, "{out}{err}");
    eventually("member B serves packets", || serves(&b, "/api/packets/")).await;
    let (status, created) = a
        .call("POST", "/api/packets/", Some(json!({ "name": "shared" })))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, got) = b.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(
        (status, got["name"].as_str()),
        (200, Some("shared")),
        "{got}"
    );

    // A member that starts with nothing but the config loads every shard from the deployment
    // (the component from its object store, checked against its digest).
    let c_dir = member_of(data.path());
    let c = Frame::start(c_dir.path());
    let (status, got) = c.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!(
        (status, got["name"].as_str()),
        (200, Some("shared")),
        "{got}"
    );

    // `cluster status` (and its API) from any member's config: three members, each serving
    // packets. A member announces a shard once it has loaded it (at start shards are pending
    // until their first call or the background load), and renews its announcement within
    // moments of that: polled.
    let announced = |out: &str| {
        let status: Value = serde_json::from_str(out).unwrap();
        let members = status["members"].as_array().cloned().unwrap_or_default();
        members.len() == 3
            && members
                .iter()
                .all(|m| m["loaded"] == json!(["packets@0.1.0"]))
    };
    eventually("three members announce packets", || async {
        let (ok, out, err) = arkham(c_dir.path(), &["cluster", "status", "--json"]);
        assert!(ok, "{err}");
        announced(&out)
    })
    .await;
    let (code, api) = b.call("GET", "/api/frame/cluster", None).await;
    assert_eq!(code, 200, "{api}");
    assert_eq!(api["members"].as_array().unwrap().len(), 3, "{api}");

    // A grant revoked through member B: A enforces it on its next call.
    let (ok, out, err) = arkham(
        b_dir.path(),
        &["shard", "grants", "packets", "--revoke", "storage"],
    );
    assert!(ok, "{out}{err}");
    for member in [&a, &b, &c] {
        eventually("every member applies the revoked grant", || async {
            let grants = admin(member, &token, "/api/frame/admin/shards/packets/grants").await;
            let granted = grants["granted"].to_string();
            granted.contains("database") && !granted.contains("storage")
        })
        .await;
    }

    // Another shard through C, then packets removed through A: gone from every member.
    let (ok, out, err) = arkham(
        c_dir.path(),
        &["shard", "add", packaged(&ECHO).to_str().unwrap(), "--yes"],
    );
    assert!(ok, "{out}{err}");
    eventually("member A serves echo", || serves(&a, "/api/echo/health")).await;
    let (ok, out, err) = arkham(data.path(), &["shard", "remove", "packets"]);
    assert!(ok, "{out}{err}");
    for member in [&a, &b, &c] {
        eventually("packets is gone", || async {
            member.call("GET", "/api/packets/", None).await.0 == 404
        })
        .await;
        assert!(serves(member, "/api/echo/health").await);
    }
    let (_, list, _) = arkham(b_dir.path(), &["shard", "list", "--json"]);
    assert!(
        list.contains("\"echo\"") && !list.contains("\"packets\""),
        "{list}"
    );
    c.stop();
    b.stop();
    a.stop();
}

#[test]
fn a_member_needs_the_shared_engines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("arkham.toml"),
        "[cluster]\nenabled = true\n",
    )
    .unwrap();
    let (ok, _, err) = arkham(dir.path(), &["cluster", "status"]);
    assert!(!ok);
    assert!(
        err.contains("cluster.enabled needs engines every member shares")
            && err.contains("[database] backend = \"postgres\""),
        "{err}"
    );
}

/// kill -9 of one of three members during creates spread over all three: the survivors answer
/// every request, each create acknowledged with a 201 (by any member, the killed one included)
/// is readable through every survivor and its event reaches the subscriber, and the killed
/// member serves again once restarted.
/// During a rolling upgrade a newer member may install a shard whose `requires_frame` excludes
/// the older members. Here the newer member's install is what it leaves in the deployment: the
/// component and its catalog entry, mirrored into a member's data dir as a sync would (this
/// frame's own `shard add` refuses such a shard). Every member it excludes reports it, with the
/// reason, answers 503 `shard_not_loaded` for it (so a balancer retries on a member it fits), and
/// goes on serving the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_for_a_newer_frame_is_reported_by_the_members_it_excludes() {
    let Some(data) = Backends::Engines.data_dir("cluster_versions", "[cluster]\nenabled = true\n")
    else {
        return;
    };
    let b_dir = member_of(data.path());
    let a = Frame::start(data.path());
    let b = Frame::start(b_dir.path());
    let (ok, out, err) = arkham(
        data.path(),
        &["shard", "add", packaged(&ECHO).to_str().unwrap(), "--yes"],
    );
    assert!(ok, "{out}{err}");
    eventually("member B serves echo", || serves(&b, "/api/echo/health")).await;

    // Packets built for a frame that does not exist yet.
    let work = tempfile::tempdir().unwrap();
    let mut manifest = manifest_of(&PACKETS);
    manifest.requires_frame = ">=99.0.0".parse().unwrap();
    let file = work.path().join("packets-next.shard.wasm");
    package_with(&PACKETS, &manifest, &file);
    let (ok, _, err) = arkham(
        data.path(),
        &["shard", "add", file.to_str().unwrap(), "--yes"],
    );
    assert!(!ok && err.contains("requires frame >=99.0.0"), "{err}");
    let component = std::fs::read(&file).unwrap();
    let digest = arkham_registry::digest::Digest::of(&component);
    let blob = data.path().join("store/blobs/sha256").join(digest.hex());
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, &component).unwrap();
    let catalog_file = data.path().join("installed.json");
    let mut catalog: Value =
        serde_json::from_slice(&std::fs::read(&catalog_file).unwrap()).unwrap();
    let entry = json!({
        "name": "packets",
        "version": manifest.version.to_string(),
        "digest": digest.to_string(),
        "source": "a newer member",
        "installed_at": "2026-12-02T00:00:00Z",
    });
    catalog["shards"].as_array_mut().unwrap().push(entry);
    let tmp = catalog_file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&catalog).unwrap()).unwrap();
    std::fs::rename(&tmp, &catalog_file).unwrap();

    // Both members report it, with why, and keep serving echo.
    let reported = |members: &Value| {
        let members = members["members"].as_array().cloned().unwrap_or_default();
        members.len() == 2
            && members.iter().all(|m| {
                m["failed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|f| f.to_string().contains("requires frame >=99.0.0"))
            })
    };
    eventually("both members report the shard they cannot run", || async {
        let (_, members) = a.call("GET", "/api/frame/cluster", None).await;
        reported(&members)
    })
    .await;
    for member in [&a, &b] {
        let (status, body) = member.call("GET", "/api/packets/", None).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "shard_not_loaded", "{body}");
        assert!(serves(member, "/api/echo/health").await);
    }
    b.stop();
    a.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_killed_under_load_loses_nothing() {
    let Some(data) = Backends::Engines.data_dir(
        "cluster_kill",
        "[cluster]\nenabled = true\n[events]\nretry_base_ms = 20\nretry_max_ms = 200\n",
    ) else {
        return;
    };
    for shard in [&PACKETS, &RECORDER] {
        let (ok, out, err) = arkham(
            data.path(),
            &["shard", "add", packaged(shard).to_str().unwrap(), "--yes"],
        );
        assert!(ok, "{out}{err}");
    }
    let (b_dir, c_dir) = (member_of(data.path()), member_of(data.path()));
    let mut a = Frame::start(data.path());
    let b = Frame::start(b_dir.path());
    let c = Frame::start(c_dir.path());
    let bases = [a.base.clone(), b.base.clone(), c.base.clone()];
    let killed = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let load = {
        let (client, killed, made) = (b.client.clone(), killed.clone(), made.clone());
        tokio::spawn(async move {
            // (member, status, packet id)
            let mut answers = Vec::new();
            for i in 0..150usize {
                let member = i % 3;
                if member == 0 && killed.load(Ordering::SeqCst) {
                    continue;
                }
                let sent = client
                    .post(format!("{}/api/packets/", bases[member]))
                    .json(&json!({ "name": format!("load-{i}") }))
                    .send()
                    .await;
                made.fetch_add(1, Ordering::SeqCst);
                let Ok(response) = sent else {
                    // Only the killed member may fail to answer.
                    answers.push((member, 0, None));
                    continue;
                };
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                answers.push((member, status, body["id"].as_str().map(str::to_string)));
            }
            answers
        })
    };
    while made.load(Ordering::SeqCst) < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    a.kill();
    let answers = load.await.unwrap();
    for (member, status, _) in &answers {
        if *member != 0 {
            assert_eq!(*status, 201, "a survivor answered {status}: {answers:?}");
        }
    }
    let created: Vec<String> = answers
        .iter()
        .filter(|(_, status, _)| *status == 201)
        .filter_map(|(_, _, id)| id.clone())
        .collect();
    assert!(created.len() >= 100, "{answers:?}");
    for id in &created {
        for survivor in [&b, &c] {
            let (status, got) = survivor
                .call("GET", &format!("/api/packets/{id}"), None)
                .await;
            assert_eq!(status, 200, "{id}: {got}");
        }
    }
    // Every acknowledged create's event reaches the subscriber at least once, through
    // whichever member pulls it (one in flight on the killed member comes back after the ack
    // wait).
    eventually("every created event recorded", || async {
        let (_, events) = b.call("GET", "/api/recorder/events", None).await;
        let payloads = events["events"].to_string();
        created.iter().all(|id| payloads.contains(id.as_str()))
    })
    .await;
    // The killed member comes back with nothing done by hand.
    let a = Frame::start(data.path());
    let (status, got) = a
        .call("GET", &format!("/api/packets/{}", created[0]), None)
        .await;
    assert_eq!(status, 200, "{got}");
    a.stop();
    b.stop();
    c.stop();
}
