//! The hostile-shard suite: every attack of the `hostile` fixture (and a few of `trapper`)
//! against a live frame with packets installed beside them. For each, the expected outcome is
//! asserted, packets keeps answering correctly during and after, and the frame's memory returns
//! to its baseline.

use crate::backends::Backends;
use crate::harness::{
    Frame, arkham, data_dir, eventually, install, manifest_of, package_with, rss,
};
use serde_json::json;
use test_shards::{HOSTILE, PACKETS, RECORDER, TRAPPER};

// The statement limit leaves packets' own statements room while three guests spin on two
// cores (and other tests load the machine): 1 s was seen to pass under CI-like load.
const CONFIG: &str = "
[database]
statement_timeout_ms = 3000
max_size_bytes = 8388608

[limits]
memory_bytes = 268435456
request_timeout_ms = 4000
event_timeout_ms = 500

[events]
retry_base_ms = 50
retry_max_ms = 200
max_attempts = 3
";

/// Creates and reads back a packet: packets is alive and correct.
pub(crate) async fn packets_answers(frame: &Frame, name: &str) -> String {
    let (status, body) = frame
        .call("POST", "/api/packets/", Some(json!({ "name": name })))
        .await;
    assert_eq!(
        status, 201,
        "packets failed to create during the attack: {body}"
    );
    let id = body["id"].as_str().unwrap().to_string();
    let (status, got) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
    assert_eq!((status, got["name"].as_str()), (200, Some(name)), "{got}");
    id
}

async fn expect_error(frame: &Frame, method: &str, path: &str, status: u16, code: &str) {
    let (got, body) = frame.call(method, path, None).await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{method} {path}: {body}"
    );
}

async fn hostile_shards_fail_alone(backends: Backends) {
    let Some(data) = backends.data_dir("hostile_shards_fail_alone", CONFIG) else {
        return;
    };
    let _heavy = crate::harness::cpu_heavy().await;
    install(data.path(), &[&PACKETS, &RECORDER, &TRAPPER, &HOSTILE]);
    let frame = Frame::start(data.path());

    // Warm up every shard, then take the memory baseline.
    for i in 0..20 {
        packets_answers(&frame, &format!("warm-{i}")).await;
        frame.call("GET", "/api/hostile/events", None).await;
        frame.call("GET", "/api/trapper/ok", None).await;
    }
    let baseline = rss(frame.pid());

    // Memory bomb: stopped at the instance's memory limit.
    expect_error(
        &frame,
        "GET",
        "/api/hostile/alloc?mb=1024",
        503,
        "shard_memory_exceeded",
    )
    .await;
    packets_answers(&frame, "after memory bomb").await;

    // Deep recursion: a stack overflow traps the instance.
    expect_error(&frame, "GET", "/api/hostile/recurse", 500, "shard_failed").await;
    // A panic and a trap.
    expect_error(&frame, "GET", "/api/trapper/panic", 500, "shard_failed").await;
    expect_error(&frame, "GET", "/api/trapper/trap", 500, "shard_failed").await;
    packets_answers(&frame, "after traps").await;

    // Endless loops and a flood of host calls, all at once, while packets serves.
    let slow: Vec<_> = [
        "/api/hostile/flood",
        "/api/trapper/loop",
        "/api/hostile/flood",
    ]
    .into_iter()
    .map(|path| {
        let client = frame.client.clone();
        let url = format!("{}{path}", frame.base);
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    })
    .collect();
    for i in 0..5 {
        packets_answers(&frame, &format!("during loops {i}")).await;
    }
    for task in slow {
        assert_eq!(task.await.unwrap(), 504);
    }

    // A 100 MiB response is refused at the response limit (64 MiB by default).
    expect_error(
        &frame,
        "GET",
        "/api/hostile/big?mb=100",
        502,
        "response_too_large",
    )
    .await;
    packets_answers(&frame, "after big response").await;

    // Every way out of its own database is denied, ATTACH of packets' file by path first (the
    // SQLite escapes; PostgreSQL's own are in `engines::postgres_escapes_are_denied`).
    if backends == Backends::Embedded {
        sqlite_escapes_are_denied(&frame, data.path()).await;
    }

    // A query that never ends is interrupted at the statement time limit, and a database
    // cannot grow past its size limit.
    let (status, body) = frame.call("GET", "/api/hostile/slowquery", None).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("limit_exceeded")),
        "{body}"
    );
    let (status, body) = frame.call("GET", "/api/hostile/fill?mb=32", None).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("limit_exceeded")),
        "{body}"
    );
    assert!(body["rows"].as_i64().unwrap() < 10, "{body}");
    let size = match backends {
        Backends::Embedded => std::fs::metadata(data.path().join("shards/hostile/database.sqlite"))
            .unwrap()
            .len(),
        Backends::Engines => data
            .psql(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname LIKE 'shard_hostile_%' AND c.relkind = 'r'",
            )
            .parse()
            .unwrap(),
    };
    // One write past the last measurement at most (PostgreSQL's quota is measured, not a page
    // count).
    assert!(
        size <= (8 << 20) + (2 << 20),
        "database grew to {size} bytes"
    );
    packets_answers(&frame, "after database abuse").await;
    hostile_shards_fail_alone_rest(&frame, baseline).await;
    frame.stop();
}

async fn sqlite_escapes_are_denied(frame: &Frame, data: &std::path::Path) {
    let packets_db = data.join("shards/packets/database.sqlite");
    let vacuum_target = data.join("stolen.sqlite");
    let (status, escape) = frame
        .call(
            "GET",
            &format!("/api/hostile/escape?path={}", packets_db.display()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{escape}");
    for attempt in escape["attempts"].as_array().unwrap() {
        assert_ne!(attempt["outcome"], "ok", "{attempt}");
        assert_eq!(attempt["outcome"], "denied", "{attempt}");
    }
    let (_, escape) = frame
        .call(
            "GET",
            &format!("/api/hostile/escape?path={}", vacuum_target.display()),
            None,
        )
        .await;
    assert!(
        escape["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["outcome"] == "denied"),
        "{escape}"
    );
    assert!(
        !vacuum_target.exists(),
        "VACUUM INTO wrote outside the shard's database"
    );
}

/// The attacks of `hostile_shards_fail_alone` that do not depend on the database engine.
async fn hostile_shards_fail_alone_rest(frame: &Frame, baseline: u64) {
    // Storage keys cannot leave the namespace.
    for bad in ["..%2F..%2Fpackets%2Fdatabase.sqlite", "%2Fetc%2Fpasswd"] {
        let response = frame
            .client
            .put(format!("{}/api/trapper/blob/{bad}", frame.base))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
    }

    // Publishing as packets is refused.
    let (status, body) = frame
        .call(
            "POST",
            "/api/hostile/publish",
            Some(json!({"name": "packets.packet.created", "payload": {}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("denied")),
        "{body}"
    );

    // An endless event handler: its deliveries time out and are retried, then dead-lettered,
    // while packets' events still reach the recorder.
    let (status, body) = frame
        .call(
            "POST",
            "/api/hostile/publish",
            Some(json!({"name": "hostile.loop.forever", "payload": {}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = packets_answers(frame, "while a handler loops").await;
    eventually("the recorder got packets' event", || async {
        let (_, body) = frame.call("GET", "/api/recorder/events", None).await;
        body.to_string().contains(&id)
    })
    .await;
    eventually("the looping handler timed out", || async {
        frame.log().contains("did not finish within 500 ms")
    })
    .await;

    // Receives only what it subscribes to: no packets events ever reached hostile.
    let (_, received) = frame.call("GET", "/api/hostile/events", None).await;
    let names = received["events"].as_array().unwrap();
    assert!(
        names
            .iter()
            .all(|n| n.as_str().unwrap().starts_with("hostile.")),
        "{received}"
    );

    // Memory is back near the baseline: instances and their memories were released.
    let settled = rss(frame.pid());
    eprintln!(
        "frame RSS: baseline {} MiB, after the attacks {} MiB",
        baseline >> 20,
        settled >> 20
    );
    assert!(
        settled < baseline + (96 << 20),
        "frame RSS grew from {} MiB to {} MiB",
        baseline >> 20,
        settled >> 20
    );
    packets_answers(frame, "at the end").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_at_its_instance_limit_gets_503() {
    // The loop holds the instance until its deadline: long enough for a loaded CI machine to
    // see the 503 in that window.
    let data =
        data_dir("[limits]\nrequest_timeout_ms = 6000\n[limits.shards.trapper]\ninstances = 1\n");
    install(data.path(), &[&PACKETS, &TRAPPER]);
    let frame = Frame::start(data.path());
    let start_loop = || {
        let client = frame.client.clone();
        let url = format!("{}/api/trapper/loop", frame.base);
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    };
    let mut looping = start_loop();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while frame.call("GET", "/api/trapper/ok", None).await.0 != 503 {
        // The loop and a probe race for the only instance; a loop that lost was refused with
        // 503 and never ran, so start another.
        if looping.is_finished() {
            assert_eq!(looping.await.unwrap(), 503);
            looping = start_loop();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loop never held trapper's only instance"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    expect_error(&frame, "GET", "/api/trapper/ok", 503, "shard_busy").await;
    packets_answers(&frame, "while trapper is full").await;
    assert_eq!(looping.await.unwrap(), 504);
    assert_eq!(frame.call("GET", "/api/trapper/ok", None).await.0, 200);
    frame.stop();
}

#[test]
fn ungranted_imports_and_lying_manifests_are_refused_at_install() {
    let data = data_dir("");
    let work = tempfile::tempdir().unwrap();

    // hostile's component uses the database; a manifest that does not say so is refused.
    let mut liar = manifest_of(&HOSTILE);
    liar.services.required.retain(|s| s.as_str() != "database");
    let path = work.path().join("liar.wasm");
    package_with(&HOSTILE, &liar, &path);
    let (ok, _, err) = arkham(
        data.path(),
        &["shard", "add", path.to_str().unwrap(), "--yes"],
    );
    assert!(!ok);
    assert!(
        err.contains("imports `arkham:shard/database@0.2.0` but its manifest does not declare"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_limits_can_be_overridden_per_shard() {
    let data = data_dir(
        "[limits.shards.trapper]\nstorage_max_total_bytes = 50\nevents_max_per_call = 0\n",
    );
    // An object costs its content, content type and key: 10 + 24 (`application/octet-stream`)
    // + 1, so one fits under 50 and a second does not.
    install(data.path(), &[&TRAPPER, &HOSTILE]);
    let frame = Frame::start(data.path());
    let put = |key: &str, len: usize| {
        frame
            .client
            .put(format!("{}/api/trapper/blob/{key}", frame.base))
            .body(vec![b'x'; len])
            .send()
    };
    assert_eq!(put("a", 10).await.unwrap().status().as_u16(), 200);
    let response = put("b", 10).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("limit_exceeded"));
    let (status, body) = frame
        .call(
            "POST",
            "/api/trapper/publish",
            Some(json!({"name": "trapper.thing.happened", "payload": {}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("limit_exceeded")),
        "{body}"
    );
    // Other shards keep the defaults.
    let (status, body) = frame
        .call(
            "POST",
            "/api/hostile/publish",
            Some(json!({"name": "hostile.thing.done", "payload": {}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    frame.stop();
}

crate::on_both_backends!(hostile_shards_fail_alone);
