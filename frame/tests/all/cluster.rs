//! Several frames, one deployment (`[cluster] enabled`): members on the same engines share the
//! catalog, grants, admin token and components through NATS, so a change made through any of
//! them is applied by all, and a member that starts with an empty data dir serves everything.

use crate::backends::{Backends, engines_with_own_postgres};
use crate::harness::{Frame, admin_token, arkham, eventually, manifest_of, package_with, packaged};
use arkham_frame::cluster::LOST;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use test_shards::{ECHO, PACKETS, RECORDER, TRAPPER};

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

    // A shard installed through member A's admin API: the others serve it too.
    let response = a
        .client
        .post(format!("{}/api/frame/admin/shards", a.base))
        .bearer_auth(&token)
        .body(std::fs::read(packaged(&TRAPPER)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    for member in [&b, &c] {
        eventually("every member serves what A's admin API installed", || {
            serves(member, "/api/trapper/ok")
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

/// The config of the failure tests: a member of a deployment, events retried soon.
/// Deliveries failing while an engine is down are retried, not dead-lettered (10 attempts
/// of at most 200 ms would be used up within the outage).
const UNDER_LOAD: &str = "[cluster]\nenabled = true\n\
    [events]\nretry_base_ms = 20\nretry_max_ms = 200\nmax_attempts = 1000\n";

/// Installs packets and the recorder into `data` (their deployment's first member), then
/// starts three members: its frame and two more with only its config.
fn three_members(data: &Path) -> (Vec<tempfile::TempDir>, Vec<Frame>) {
    for shard in [&PACKETS, &RECORDER] {
        let (ok, out, err) = arkham(
            data,
            &["shard", "add", packaged(shard).to_str().unwrap(), "--yes"],
        );
        assert!(ok, "{out}{err}");
    }
    let dirs = vec![member_of(data), member_of(data)];
    let frames = vec![
        Frame::start(data),
        Frame::start(dirs[0].path()),
        Frame::start(dirs[1].path()),
    ];
    (dirs, frames)
}

/// One call of a load: the member it went to, whether it was a create (else a read of the
/// packet the last create made), its status (0: no answer at all) and its JSON body.
#[derive(Debug, Clone)]
struct Call {
    member: usize,
    create: bool,
    status: u16,
    body: Value,
    /// When it was answered, counted in calls: for telling those of an outage apart.
    at: usize,
}

impl Call {
    /// A failure the client can act on: a 5xx with the house JSON error code.
    fn failed_cleanly(&self) -> bool {
        self.status >= 500 && self.code().is_some_and(|c| !c.is_empty())
    }

    fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// The packet a 201 made.
    fn created(&self) -> Option<String> {
        (self.create && self.status == 201)
            .then(|| self.body["id"].as_str().map(str::to_string))
            .flatten()
    }
}

/// A bounded load on `bases`: creates spread over the members in turn, each one answered 201
/// read back through the next member, until `stop` is set (or 600 calls); `made` counts the
/// calls answered. One request at a time: two cores run this beside other tests.
fn load(
    bases: Vec<String>,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<Call>> {
    tokio::spawn(async move {
        // Longer than a publish may wait for JetStream (its ack timeout, once retried).
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let mut calls = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) && calls.len() < 600 {
            let member = i % bases.len();
            i += 1;
            let sent = client
                .post(format!("{}/api/packets/", bases[member]))
                .json(&json!({ "name": format!("load-{i}") }))
                .send()
                .await;
            let call = answered(sent, member, true, made.fetch_add(1, Ordering::SeqCst)).await;
            let created = call.created();
            calls.push(call);
            let Some(id) = created else {
                // An engine down answers at once: paced, so the outage does not use up the load.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let reader = i % bases.len();
            let sent = client
                .get(format!("{}/api/packets/{id}", bases[reader]))
                .send()
                .await;
            calls.push(answered(sent, reader, false, made.fetch_add(1, Ordering::SeqCst)).await);
        }
        calls
    })
}

async fn answered(
    sent: reqwest::Result<reqwest::Response>,
    member: usize,
    create: bool,
    at: usize,
) -> Call {
    let (status, body) = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    };
    Call {
        member,
        create,
        status,
        body,
        at,
    }
}

/// What the tests under a restarted engine assert of the load: every call succeeded or failed
/// cleanly (no member stopped answering, no read of an acknowledged create missed it), and
/// each 201 made a packet that every member reads and whose event the recorder got. Returns
/// the packets made.
async fn nothing_acknowledged_lost(calls: &[Call], members: &[Frame]) -> Vec<String> {
    for call in calls {
        let ok = if call.create { 201 } else { 200 };
        assert!(
            call.status == ok || call.failed_cleanly(),
            "member {} answered {} {}",
            call.member,
            call.status,
            call.body
        );
    }
    let created: Vec<String> = calls.iter().filter_map(Call::created).collect();
    for id in &created {
        for member in members {
            let (status, got) = member
                .call("GET", &format!("/api/packets/{id}"), None)
                .await;
            assert_eq!(status, 200, "{id} through {}: {got}", member.base);
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, events) = members[members.len() - 1]
            .call("GET", "/api/recorder/events", None)
            .await;
        let payloads = events["events"].to_string();
        let missing: Vec<&String> = created
            .iter()
            .filter(|id| !payloads.contains(id.as_str()))
            .collect();
        if missing.is_empty() {
            return created;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "the events of {} acknowledged creates never reached the recorder: {missing:?}",
                missing.len(),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Each member's announcement, by address: its `seen_at`, which it renews every few seconds.
async fn announced(member: &Frame) -> std::collections::BTreeMap<String, String> {
    let (status, api) = member.call("GET", "/api/frame/cluster", None).await;
    assert_eq!(status, 200, "{api}");
    api["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["address"].as_str().unwrap().to_string(),
                m["seen_at"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until `member` creates a packet again (a 201), each failure before it a clean one.
async fn creates_again(member: &Frame, what: &str) {
    eventually(what, || async {
        let (status, body) = member
            .call("POST", "/api/packets/", Some(json!({ "name": "again" })))
            .await;
        if status == 201 {
            return true;
        }
        assert!(
            status >= 500 && body["error"]["code"].is_string(),
            "{status} {body}"
        );
        false
    })
    .await;
}

/// nats-server restarted (same port and store) under creates and reads spread over three
/// members: each member reconnects by itself and announces itself again; a create that could
/// not make its event durable fails with a clean 503, never a 201; every 201's packet is read
/// through every member and its event reaches the subscriber; no member exits.
///
/// On Debian's nats-server 2.9 this fails every time: a few acknowledged events vanish from the
/// interest-retention stream undelivered after the restart. Not on 2.10 and later (2.15.1,
/// which `scripts/setup` pins, passes), so the tests run that.
#[tokio::test(flavor = "multi_thread")]
async fn nats_restarted_under_load_loses_nothing_acknowledged() {
    let Some(mut data) = Backends::Engines.data_dir("cluster_nats_restart", UNDER_LOAD) else {
        return;
    };
    let (_dirs, mut members) = three_members(data.path());
    let before = announced(&members[0]).await;
    assert_eq!(before.len(), 3, "{before:?}");
    let (stop, made) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let bases = members.iter().map(|m| m.base.clone()).collect();
    let running = load(bases, stop.clone(), made.clone());
    while made.load(Ordering::SeqCst) < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::task::block_in_place(|| data.nats().restart());
    for (i, member) in members.iter().enumerate() {
        creates_again(member, &format!("member {i} publishes again")).await;
    }
    // The load goes on a little with all three back.
    let back = made.load(Ordering::SeqCst);
    while made.load(Ordering::SeqCst) < back + 20 && !running.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let calls = running.await.unwrap();
    let created = nothing_acknowledged_lost(&calls, &members).await;
    assert!(created.len() >= 20, "{calls:?}");
    // Each member renews its announcement on the restarted server, and reads the others'.
    for member in &members {
        eventually("three members announced again", || async {
            let now = announced(member).await;
            now.len() == 3
                && now
                    .iter()
                    .all(|(address, seen)| before.get(address) != Some(seen))
        })
        .await;
    }
    for member in &mut members {
        assert!(member.alive(), "a member exited:\n{}", member.log());
    }
    for member in members {
        member.stop();
    }
}

/// The deployment's PostgreSQL cluster (one of its own: the run's shared one serves other
/// tests meanwhile) stopped with a fast shutdown under creates and reads spread over three
/// members, kept down 2 s, then started again on the same port and data: while it is down the
/// database calls fail with `database_busy`/`database_other` (a 5xx, never a 201 for a row not
/// committed); after, every member works again by itself, each 201's row is there and read
/// through every member, its event delivered; no member exits.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted_under_load_loses_nothing_committed() {
    let Some(data) = engines_with_own_postgres("cluster_pg_restart", UNDER_LOAD) else {
        return;
    };
    let (_dirs, mut members) = three_members(data.path());
    let (stop, made) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let bases = members.iter().map(|m| m.base.clone()).collect();
    let running = load(bases, stop.clone(), made.clone());
    while made.load(Ordering::SeqCst) < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::task::block_in_place(|| data.own_postgres().stop_server());
    let down = made.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let up = made.load(Ordering::SeqCst);
    tokio::task::block_in_place(|| data.own_postgres().start_server());
    for (i, member) in members.iter().enumerate() {
        creates_again(member, &format!("member {i} writes again")).await;
    }
    let back = made.load(Ordering::SeqCst);
    while made.load(Ordering::SeqCst) < back + 20 && !running.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let calls = running.await.unwrap();

    // While the server was down (calls answered well inside that window), each call failed
    // with what the database service reports for a server it cannot reach.
    let outage: Vec<&Call> = calls
        .iter()
        .filter(|c| c.at > down + 2 && c.at + 2 < up)
        .collect();
    assert!(!outage.is_empty(), "no call while the server was down");
    for call in &outage {
        assert!(
            matches!(call.code(), Some("database_busy" | "database_other")),
            "while the database was down: {call:?}"
        );
    }
    let created = nothing_acknowledged_lost(&calls, &members).await;
    assert!(created.len() >= 20, "{calls:?}");
    // Nothing else committed: each load row is a 201's packet or that of a create that
    // failed (its commit may have landed as the server went down, its answer not).
    let schema = data.psql(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'arkham_packets'",
    );
    let rows = data.psql(&format!(
        "SELECT id FROM \"{schema}\".arkham_packets WHERE name LIKE 'load-%'"
    ));
    let rows: std::collections::BTreeSet<&str> = rows.lines().collect();
    assert!(created.iter().all(|id| rows.contains(id.as_str())));
    let failed = calls.iter().filter(|c| c.create && c.status != 201).count();
    assert!(rows.len() <= created.len() + failed, "{rows:?}");
    for member in &mut members {
        assert!(member.alive(), "a member exited:\n{}", member.log());
    }
    for member in members {
        member.stop();
    }
}

/// `echo` as (name, version, digest, status) in a member's `GET /api/frame/shards`.
async fn echo_served(member: &Frame) -> Option<(String, String, String)> {
    let (status, list) = member.call("GET", "/api/frame/shards", None).await;
    assert_eq!(status, 200, "{list}");
    let shards = list["shards"].as_array().unwrap();
    assert!(shards.len() <= 1, "{list}");
    let echo = shards.iter().find(|s| s["name"] == "echo")?;
    Some((
        echo["version"].as_str().unwrap().to_string(),
        echo["digest"].as_str().unwrap().to_string(),
        echo["status"].as_str().unwrap().to_string(),
    ))
}

/// Two operators run `arkham shard add` of two versions of one shard at the same moment, from
/// two data dirs with the deployment's config, three rounds: each round exactly one wins and
/// says it installed its version; the other exits non-zero saying its change was undone; every
/// member ends up serving the winner's version (its component, by digest), with the same
/// catalog and grants as the operators' data dirs.
#[tokio::test(flavor = "multi_thread")]
async fn two_operators_adding_at_once_one_wins_and_both_are_told() {
    let Some(data) = Backends::Engines.data_dir("cluster_operators", "[cluster]\nenabled = true\n")
    else {
        return;
    };
    let b_dir = member_of(data.path());
    let members = [Frame::start(data.path()), Frame::start(b_dir.path())];
    let operators = [member_of(data.path()), member_of(data.path())];
    let work = tempfile::tempdir().unwrap();
    for round in 0..3u32 {
        let versions = [
            format!("0.{}.0", 2 * round + 1),
            format!("0.{}.0", 2 * round + 2),
        ];
        let packages: Vec<std::path::PathBuf> = versions
            .iter()
            .map(|version| {
                let mut manifest = manifest_of(&ECHO);
                manifest.version = version.parse().unwrap();
                let path = work.path().join(format!("echo-{version}.wasm"));
                package_with(&ECHO, &manifest, &path);
                path
            })
            .collect();
        // Both commands start together; each runs its whole add (take the deployment's state,
        // install, share) while the other does.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let runs: Vec<_> = operators
            .iter()
            .zip(&packages)
            .map(|(dir, package)| {
                let (dir, package, barrier) =
                    (dir.path().to_path_buf(), package.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    arkham(&dir, &["shard", "add", package.to_str().unwrap(), "--yes"])
                })
            })
            .collect();
        let results: Vec<(bool, String, String)> =
            runs.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<usize> = (0..2).filter(|&i| results[i].0).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let (winner, loser) = (winners[0], 1 - winners[0]);
        let version = &versions[winner];
        assert!(
            results[winner].1.contains(&format!("echo {version}")),
            "round {round}: {results:?}"
        );
        assert!(
            results[loser].2.contains(LOST) && results[loser].2.contains("run the command again"),
            "round {round}: {results:?}"
        );

        // Every member serves the winner's version, its component loaded.
        let digest =
            arkham_registry::digest::Digest::of(&std::fs::read(&packages[winner]).unwrap())
                .to_string();
        for member in &members {
            eventually("every member serves the winner's version", || async {
                echo_served(member).await
                    == Some((version.clone(), digest.clone(), "running".to_string()))
            })
            .await;
            assert!(serves(member, "/api/echo/health").await);
        }
        // One catalog and one set of grants, in every member's and operator's data dir.
        let dirs = [
            data.path(),
            b_dir.path(),
            operators[0].path(),
            operators[1].path(),
        ];
        for file in ["installed.json", "grants.json"] {
            let first = std::fs::read(dirs[0].join(file)).unwrap();
            for dir in &dirs[1..] {
                assert_eq!(
                    std::fs::read(dir.join(file)).unwrap(),
                    first,
                    "round {round}: {file} differs in {}",
                    dir.display()
                );
            }
        }
    }
    for member in members {
        member.stop();
    }
}
