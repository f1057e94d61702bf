//! The runtime's side of the sandbox (issue 11): an instance's memory over all its memories,
//! components past the pool's limits refused at install, deadlines that hold while a guest
//! waits in a host call, a control plane that answers whatever handlers do, a fair share of the
//! instance pool, bounded response headers, trap details kept from clients, and events durable
//! before a 2xx (kill -9).

use crate::harness::{Frame, admin_token, arkham, data_dir, eventually, install, rss};
use crate::hostile::packets_answers;
use arkham_frame::shards::manifest::Manifest;
use arkham_frame::shards::package::embed_manifest;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_shards::{HOSTILE, NETREACH, PACKETS, RECORDER, STREAMER, TRAPPER};

/// A component with `memories` core instances of a module whose memory starts at `pages` 64 KiB
/// pages and whose start function touches every page, plus `extra` core instances of an empty
/// module; it exports `wasi:http/incoming-handler`, whose handler returns without answering.
fn many_instances_wat(memories: usize, pages: u32, extra: usize) -> String {
    let mut wat = String::from(
        r#"(component
  (import "wasi:http/types@0.2.12" (instance $types
    (export "incoming-request" (type (sub resource)))
    (export "response-outparam" (type (sub resource)))))
  (alias export $types "incoming-request" (type $req))
  (alias export $types "response-outparam" (type $out))
"#,
    );
    wat.push_str(&format!(
        r#"  (core module $mem
    (memory {pages})
    (func $touch (local $at i32)
      (loop $next
        (i32.store8 (local.get $at) (i32.const 1))
        (local.set $at (i32.add (local.get $at) (i32.const 4096)))
        (br_if $next (i32.lt_u (local.get $at) (i32.const {bytes})))))
    (start $touch))
  (core module $empty)
"#,
        bytes = u64::from(pages) * 65536,
    ));
    for i in 0..memories {
        wat.push_str(&format!("  (core instance $m{i} (instantiate $mem))\n"));
    }
    for i in 0..extra {
        wat.push_str(&format!("  (core instance $e{i} (instantiate $empty))\n"));
    }
    wat.push_str(
        r#"  (core module $main (func (export "handle") (param i32 i32)))
  (core instance $main (instantiate $main))
  (func $handle (param "request" (own $req)) (param "response-out" (own $out))
    (canon lift (core func $main "handle")))
  (instance $handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.12" (instance $handler))
)"#,
    );
    wat
}

/// Packages a hand-written component as the shard `name` in `dir`; returns the file.
fn packaged_wat(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let component = wat::parse_str(wat).unwrap();
    let manifest =
        Manifest::parse(&format!("name = \"{name}\"\nversion = \"0.1.0\"\n"), "test").unwrap();
    let path = dir.join(format!("{name}.shard.wasm"));
    std::fs::write(&path, embed_manifest(&component, &manifest).unwrap()).unwrap();
    path
}

fn add(data: &Path, file: &Path) -> (bool, String) {
    let (ok, out, err) = arkham(data, &["shard", "add", file.to_str().unwrap(), "--yes"]);
    (ok, format!("{out}{err}"))
}

async fn expect_error(frame: &Frame, path: &str, status: u16, code: &str) -> serde_json::Value {
    let (got, body) = frame.call("GET", path, None).await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "GET {path}: {body}"
    );
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_gets_its_memory_limit_over_all_its_memories() {
    let data = data_dir("[limits]\nmemory_bytes = 134217728\n");
    let work = tempfile::tempdir().unwrap();
    install(data.path(), &[&PACKETS]);
    // 3 × 48 MiB = 144 MiB: each memory under the 128 MiB limit, together over it. 2 × 48 MiB
    // fit.
    let over = packaged_wat(work.path(), "threemem", &many_instances_wat(3, 768, 0));
    let under = packaged_wat(work.path(), "twomem", &many_instances_wat(2, 768, 0));
    for file in [&over, &under] {
        let (ok, log) = add(data.path(), file);
        assert!(ok, "{log}");
    }
    let frame = Frame::start(data.path());
    packets_answers(&frame, "warm").await;
    let baseline = rss(frame.pid());
    for _ in 0..3 {
        expect_error(&frame, "/api/threemem/", 503, "shard_memory_exceeded").await;
        // Under the limit, it instantiates (and answers nothing, as it is written to).
        expect_error(&frame, "/api/twomem/", 500, "shard_no_response").await;
        packets_answers(&frame, "between memory attacks").await;
    }
    // Ten at once: each instance holds at most its 128 MiB while it runs, and gives it back.
    let attacks: Vec<_> = (0..10)
        .map(|_| {
            let client = frame.client.clone();
            let url = format!("{}/api/threemem/", frame.base);
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    packets_answers(&frame, "during memory attacks").await;
    for attack in attacks {
        assert_eq!(attack.await.unwrap(), 503);
    }
    let settled = rss(frame.pid());
    eprintln!(
        "frame RSS: baseline {} MiB, after {} MiB",
        baseline >> 20,
        settled >> 20
    );
    assert!(
        settled < baseline + (256 << 20),
        "RSS grew from {} MiB to {} MiB",
        baseline >> 20,
        settled >> 20
    );
    frame.stop();
}

/// The frame under a data limit (`RLIMIT_DATA`) sized from its config survives the memory
/// attacks: many-memory instances, memory bombs and large responses, six at a time. Its
/// data is bounded by `instances_total` × (`memory_bytes` + one async stack) plus its own
/// heap: 16 × 130 MiB here, under a 3 GiB limit that three of the old unbounded attacks passed.
#[tokio::test(flavor = "multi_thread")]
async fn under_a_data_limit_the_frame_survives_the_memory_attacks() {
    let data = data_dir("[limits]\nmemory_bytes = 134217728\ninstances_total = 16\n");
    let work = tempfile::tempdir().unwrap();
    install(data.path(), &[&PACKETS, &HOSTILE]);
    let over = packaged_wat(work.path(), "threemem", &many_instances_wat(3, 768, 0));
    let (ok, log) = add(data.path(), &over);
    assert!(ok, "{log}");
    let frame = Frame::start_with_data_limit(data.path(), 3 << 30);
    packets_answers(&frame, "warm").await;
    for round in 0..3 {
        let attacks: Vec<_> = [
            "/api/threemem/",
            "/api/hostile/alloc?mb=1024",
            "/api/hostile/big?mb=60",
        ]
        .iter()
        .cycle()
        .take(12)
        .map(|path| {
            let client = frame.client.clone();
            let url = format!("{}{path}", frame.base);
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                let status = response.status().as_u16();
                // Read the body: a response is only done once it is sent.
                let _ = response.bytes().await;
                status
            })
        })
        .collect();
        packets_answers(&frame, &format!("during memory attacks {round}")).await;
        for attack in attacks {
            assert!([200, 503].contains(&attack.await.unwrap()));
        }
    }
    packets_answers(&frame, "after the memory attacks").await;
    frame.stop();
}

#[test]
fn components_past_the_pools_limits_are_refused_at_install() {
    let data = data_dir("");
    let work = tempfile::tempdir().unwrap();
    let instances = packaged_wat(work.path(), "instances", &many_instances_wat(0, 1, 73));
    let (ok, log) = add(data.path(), &instances);
    assert!(!ok, "{log}");
    // 73 and the component's own main module.
    assert!(
        log.contains("74 core module instances")
            && log.contains("max_core_instances_per_component"),
        "{log}"
    );
    let memories = packaged_wat(work.path(), "memories", &many_instances_wat(5, 1, 0));
    let (ok, log) = add(data.path(), &memories);
    assert!(!ok, "{log}");
    assert!(
        log.contains("5 Wasm linear memories") && log.contains("max_memories_per_component"),
        "{log}"
    );
    // Nothing was installed.
    let (_, list, _) = arkham(data.path(), &["shard", "list", "--json"]);
    assert!(
        !list.contains("instances") && !list.contains("memories"),
        "{list}"
    );
}

/// `wasi:sockets` is linked so that runtimes importing it install, and refuses everything:
/// no connection, no datagram, no name lookup, and not one socket opened in the frame.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_using_sockets_installs_and_reaches_nothing() {
    let data = data_dir("");
    install(data.path(), &[&PACKETS, &NETREACH]);
    let frame = Frame::start(data.path());
    // A listener the shard would reach if anything got through.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", frame.pid()))
            .unwrap()
            .count()
    };
    let (status, body) = frame.call("GET", "/api/netreach/connect", None).await;
    assert_eq!(status, 200, "{body}");
    let before = fds();
    let (status, body) = frame.call("GET", "/api/netreach/connect?n=500", None).await;
    assert_eq!(status, 200, "{body}");
    for (what, outcome) in body.as_object().unwrap() {
        let outcome = outcome.as_str().unwrap();
        assert_ne!(outcome, "reached", "{what}: {body}");
        assert!(
            outcome.contains("denied")
                || outcome.contains("not permitted")
                || outcome.contains("resolve")
                || outcome.contains("failed to lookup"),
            "{what}: {outcome}"
        );
    }
    assert!(
        fds() <= before + 2,
        "sockets were opened: {before} -> {}",
        fds()
    );
    assert!(listener.accept().is_err());
    packets_answers(&frame, "after the network attempts").await;
    frame.stop();
}

/// An interface the frame does not link at all (outgoing HTTP) is refused at install.
#[test]
fn a_component_importing_outgoing_http_is_refused_at_install() {
    let data = data_dir("");
    let work = tempfile::tempdir().unwrap();
    let wat = r#"(component
        (import "wasi:http/outgoing-handler@0.2.12" (instance (export "ping" (func))))
    )"#;
    let (ok, log) = add(data.path(), &packaged_wat(work.path(), "fetcher", wat));
    assert!(!ok, "{log}");
    assert!(
        log.contains("imports `wasi:http/outgoing-handler@0.2.12`"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_sleeping_in_a_host_call_is_stopped_at_its_deadline() {
    let data = data_dir("[limits]\nrequest_timeout_ms = 1500\n");
    install(data.path(), &[&PACKETS, &HOSTILE]);
    let frame = Frame::start(data.path());
    let started = Instant::now();
    expect_error(&frame, "/api/hostile/sleep?ms=120000", 504, "shard_timeout").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "504 after {took:?}");

    // Holding the database's write lock while it sleeps: the lock goes with the instance.
    let sleeper = {
        let client = frame.client.clone();
        let url = format!("{}/api/hostile/sleep-in-tx?ms=120000", frame.base);
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    };
    packets_answers(&frame, "while hostile holds its lock").await;
    assert_eq!(sleeper.await.unwrap(), 504);
    let (status, body) = frame.call("GET", "/api/hostile/write", None).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("ok")),
        "{body}"
    );

    // A client that goes away does not keep the call past its deadline either.
    let gone = frame
        .client
        .get(format!("{}/api/hostile/sleep?ms=120000", frame.base))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gone.is_err());
    packets_answers(&frame, "after the sleepers").await;
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_event_handler_does_not_hold_the_control_plane() {
    // The handler's own deadline is ten minutes: only the control plane's bounds can end it.
    let data = data_dir(
        "[limits.shards.hostile]\nevent_timeout_ms = 600000\n[events]\nmax_attempts = 1\n",
    );
    install(data.path(), &[&PACKETS, &HOSTILE, &RECORDER]);
    let frame = Frame::start(data.path());
    let (status, body) = frame
        .call(
            "POST",
            "/api/hostile/publish",
            Some(json!({"name": "hostile.loop.sleep", "payload": {}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the handler is asleep", || async {
        let (_, body) = frame.call("GET", "/api/hostile/events", None).await;
        body.to_string().contains("hostile.loop.sleep")
    })
    .await;
    // Revoking the subscription restarts delivery to the shard: bounded, not behind the sleep.
    let started = Instant::now();
    let response = frame
        .client
        .put(format!("{}/api/frame/admin/shards/hostile/grants", frame.base))
        .bearer_auth(admin_token(data.path()))
        .json(&json!({"services": ["database", "events"], "publishes": ["hostile.loop.*"], "subscribes": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "grant change took {took:?}");
    packets_answers(&frame, "after the grant change").await;

    // Stopping the frame while a handler sleeps is bounded too: subscribe again, and wait until
    // the second sleeper is asleep. (`shard remove` stops delivery the same way the grant
    // change above did.)
    let response = frame
        .client
        .put(format!("{}/api/frame/admin/shards/hostile/grants", frame.base))
        .bearer_auth(admin_token(data.path()))
        .json(&json!({"services": ["database", "events"], "publishes": ["hostile.loop.*"], "subscribes": ["hostile.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, body) = frame
        .call(
            "POST",
            "/api/hostile/publish",
            Some(json!({"name": "hostile.loop.sleep", "payload": {}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the second handler is asleep", || async {
        let (_, body) = frame.call("GET", "/api/hostile/events", None).await;
        body.to_string().matches("hostile.loop.sleep").count() >= 2
    })
    .await;
    let started = Instant::now();
    frame.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "SIGTERM took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shard_cannot_take_the_pool_from_the_others() {
    // 40 slots; every shard keeps 8 of them, so hostile can hold at most 40 - 8 - 8.
    let data = data_dir(
        "[limits]\ninstances_total = 40\ninstances_reserved_per_shard = 8\nrequest_timeout_ms = 3000\n",
    );
    install(data.path(), &[&PACKETS, &HOSTILE]);
    let frame = Frame::start(data.path());
    let sleepers: Vec<_> = (0..60)
        .map(|_| {
            let client = frame.client.clone();
            let url = format!("{}/api/hostile/sleep?ms=120000", frame.base);
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    // Let the flood take what it can, then packets must still be served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..5 {
        packets_answers(&frame, &format!("during the flood {i}")).await;
    }
    let mut statuses = Vec::new();
    for sleeper in sleepers {
        statuses.push(sleeper.await.unwrap());
    }
    let refused = statuses.iter().filter(|s| **s == 503).count();
    let timed_out = statuses.iter().filter(|s| **s == 504).count();
    assert_eq!(refused + timed_out, 60, "{statuses:?}");
    assert!(timed_out <= 32, "hostile held {timed_out} instances");
    // Slots came back at the deadline.
    let (status, _) = frame.call("GET", "/api/hostile/events", None).await;
    assert_eq!(status, 200);
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_with_too_many_headers_and_traps_tell_clients_little() {
    let data = data_dir("");
    install(data.path(), &[&PACKETS, &HOSTILE, &TRAPPER]);
    let frame = Frame::start(data.path());
    let body = expect_error(
        &frame,
        "/api/hostile/headers?n=30000",
        502,
        "shard_invalid_response",
    )
    .await;
    assert!(body.to_string().contains("at most 500"), "{body}");
    let (status, _) = frame.call("GET", "/api/hostile/headers?n=10", None).await;
    assert_eq!(status, 200);
    packets_answers(&frame, "after the header flood").await;

    // A trap's details (the guest's backtrace) stay in the log, under the reference.
    let body = expect_error(&frame, "/api/trapper/trap", 500, "shard_failed").await;
    let message = body["error"]["message"].as_str().unwrap().to_string();
    assert!(!message.contains("wasm"), "{message}");
    let reference = message
        .split("reference ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .to_string();
    eventually("the trap's details are logged", || async {
        frame
            .log()
            .lines()
            .any(|l| l.contains(&reference) && l.contains("wasm"))
    })
    .await;

    // The admin API's refusal does not say where the data dir is.
    let response = frame
        .client
        .get(format!("{}/api/frame/admin/config", frame.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&data.path().display().to_string()), "{text}");
    frame.stop();
}

/// Host resources (streams, pollables, transactions) live in the host's memory, outside the
/// instance's limit: a shard that asks for them without end fills its own resource table, not
/// the frame's memory.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_hoarding_host_resources_fails_alone() {
    let data = data_dir("");
    install(data.path(), &[&PACKETS, &HOSTILE]);
    let frame = Frame::start(data.path());
    packets_answers(&frame, "before the hoard").await;
    // Up to the frame's bound (10,000 per instance, a tenth of wasmtime's default) it is served.
    let (status, body) = frame.call("GET", "/api/hostile/leak?n=9000", None).await;
    assert_eq!(
        (status, body["leaked"].as_u64()),
        (200, Some(9000)),
        "{body}"
    );
    let baseline = rss(frame.pid());
    let hoards: Vec<_> = (0..4)
        .map(|_| {
            let client = frame.client.clone();
            let url = format!("{}/api/hostile/leak?n=20000000", frame.base);
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    for hoard in hoards {
        let (status, body) = hoard.await.unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (500, Some("shard_failed")),
            "{body}"
        );
    }
    let grown = rss(frame.pid()).saturating_sub(baseline);
    assert!(grown < 32 << 20, "the frame grew by {} MiB", grown >> 20);
    packets_answers(&frame, "after the hoard").await;
    eventually("the refusal is logged", || async {
        frame
            .log()
            .lines()
            .any(|l| l.contains("resource table has no free keys"))
    })
    .await;
    frame.stop();
}

/// Headers live in the host's memory too: a `wasi:http` shard making `fields` without end gets
/// a bounded number of header edits, and the frame does not grow by the gigabyte it asked for.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_hoarding_headers_gets_a_bounded_budget() {
    let data = data_dir("");
    install(data.path(), &[&PACKETS, &STREAMER]);
    let frame = Frame::start(data.path());
    packets_answers(&frame, "before the headers").await;
    let baseline = rss(frame.pid());
    let hoards: Vec<_> = (0..4)
        .map(|_| {
            let client = frame.client.clone();
            let url = format!("{}/api/streamer/hoard-headers", frame.base);
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    for hoard in hoards {
        let (status, accepted) = hoard.await.unwrap();
        assert_eq!(status, 200, "{accepted}");
        // 40,000 asked for; the budget (1,024 edits, the request's own headers among them).
        let accepted: u64 = accepted.parse().unwrap();
        assert!(
            (900..=1024).contains(&accepted),
            "{accepted} appends accepted"
        );
    }
    let grown = rss(frame.pid()).saturating_sub(baseline);
    assert!(grown < 256 << 20, "the frame grew by {} MiB", grown >> 20);
    packets_answers(&frame, "after the headers").await;
    frame.stop();
}

/// kill -9 in the middle of a burst of creates: every create a client was told 201 for is
/// stored, and its event is in the log and reaches the subscriber after the restart.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_acknowledged_is_lost_to_kill_9() {
    let data = data_dir("[events]\nretry_base_ms = 20\nretry_max_ms = 200\n");
    install(data.path(), &[&PACKETS, &RECORDER]);
    let mut frame = Frame::start(data.path());
    let burst: Vec<_> = (0..200)
        .map(|i| {
            let client = frame.client.clone();
            let url = format!("{}/api/packets/", frame.base);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({ "name": format!("burst-{i}") }))
                    .send()
                    .await
                    .ok()?;
                if response.status().as_u16() != 201 {
                    return None;
                }
                let body: serde_json::Value = response.json().await.ok()?;
                body["id"].as_str().map(str::to_string)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    frame.kill();
    let mut acknowledged = Vec::new();
    for task in burst {
        if let Some(id) = task.await.unwrap() {
            acknowledged.push(id);
        }
    }
    eprintln!("{} creates acknowledged before kill -9", acknowledged.len());
    frame = Frame::start(data.path());
    for id in &acknowledged {
        let (status, body) = frame.call("GET", &format!("/api/packets/{id}"), None).await;
        assert_eq!(status, 200, "acknowledged packet {id} is gone: {body}");
    }
    eventually(
        "every acknowledged create's event reached the recorder",
        || async {
            let (_, body) = frame.call("GET", "/api/recorder/events", None).await;
            let seen = body.to_string();
            acknowledged.iter().all(|id| seen.contains(id.as_str()))
        },
    )
    .await;
    frame.stop();
}
