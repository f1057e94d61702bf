//! Event and log floods from the `hostile-events` fixture: a handler that republishes what it
//! receives, a publish flood, a 1 MiB handler error and a log flood. Each is cut by its bound,
//! and packets (with the recorder receiving its events) keeps working throughout.

use crate::backends::{Backends, Data};
use crate::harness::{Frame, eventually, install};
use crate::hostile::packets_answers;
use arkham_frame::services::events::{ACK_WAIT, EventsConfig, JetStreamBus};
use arkham_frame::services::nats::NatsConfig;
use std::path::Path;
use std::time::{Duration, Instant};
use test_shards::{HOSTILE_EVENTS, PACKETS, RECORDER};

/// Small quotas so the floods reach them within a test; fast retries.
const CONFIG: &str = "
[events]
retry_base_ms = 20
retry_max_ms = 100
max_attempts = 3
max_hops = 8
publish_rate = 2000
publish_burst = 2000
publish_bytes_rate = 1048576
publish_bytes_burst = 4194304
max_retained_bytes_per_shard = 8388608

[logging]
rate_lines = 200
burst_lines = 1000
rate_bytes = 65536
burst_bytes = 262144
";

/// The event store (frame.db with its WAL, or JetStream's files) stays below this: the flooder's bytes are capped at 8 MiB retained
/// and ~4 MiB + 1 MiB/s published, and retention trims what every subscriber has passed.
const FRAME_DB_BOUND: u64 = 48 << 20;

/// Creates and reads back a packet, then waits until the recorder received its event.
async fn packets_works(frame: &Frame, name: &str) {
    let started = Instant::now();
    let id = packets_answers(frame, name).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "packets took {:?}",
        started.elapsed()
    );
    eventually(
        &format!("the recorder received the event of {id}"),
        || async {
            let (status, body) = frame.call("GET", "/api/recorder/events", None).await;
            status == 200
                && body["events"].as_array().is_some_and(|events| {
                    events.iter().any(|e| {
                        e["name"] == "packets.packet.created"
                            && e["payload"].as_str().is_some_and(|p| p.contains(&id))
                    })
                })
        },
    )
    .await;
}

/// Bytes the event backend keeps on disk: frame.db and its WAL, or the JetStream store.
fn event_store_bytes(data: &Data) -> u64 {
    match &data.nats {
        None => ["frame.db", "frame.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(data.path().join(f)).ok())
            .map(|m| m.len())
            .sum(),
        Some(nats) => dir_bytes(&nats.store_dir().join("jetstream")),
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The JetStream bus of an engines data dir, as a second client sees it.
async fn bus(data: &Data) -> JetStreamBus {
    let nats = data.nats.as_ref().unwrap();
    let config = NatsConfig {
        url: Some(nats.url()),
        ..NatsConfig::default()
    };
    let client = arkham_frame::services::nats::connect(&config)
        .await
        .unwrap();
    JetStreamBus::open(client, &config, &EventsConfig::default(), ACK_WAIT)
        .await
        .unwrap()
}

/// Every id the backend ever gave (retention deletes events, not the sequence), read directly:
/// frame.db read-only, or the event stream's last sequence.
async fn events_ever_logged(data: &Data) -> i64 {
    if let Some(nats) = &data.nats {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let mut stream = async_nats::jetstream::new(client)
            .get_stream("ARKHAM_EVENTS")
            .await
            .unwrap();
        return stream.info().await.unwrap().state.last_sequence as i64;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data.path().join("frame.db"))
        .read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    seq.unwrap_or(0)
}

/// The stored error of every dead letter, read directly.
async fn dead_letter_errors(data: &Data) -> Vec<String> {
    if data.nats.is_some() {
        return bus(data)
            .await
            .dead_letters("hostile-events", 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, error)| error)
            .collect();
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data.path().join("frame.db"))
        .read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
    sqlx::query_scalar("SELECT error FROM dead_letters")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

async fn stats(frame: &Frame) -> serde_json::Value {
    let (status, body) = frame.call("GET", "/api/hostile-events/stats", None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn event_and_log_floods_are_cut_and_packets_keeps_working(backends: Backends) {
    let Some(data) = backends.data_dir("event_and_log_floods", CONFIG) else {
        return;
    };
    install(data.path(), &[&PACKETS, &RECORDER, &HOSTILE_EVENTS]);
    let frame = Frame::start(data.path());
    packets_works(&frame, "before").await;

    // A causation loop: each handler republishes what it gets twice. Only the hop limit ends
    // it: hops 0..=8 make 1 + 2 + ... + 256 = 511 events, where the unbounded frame logged
    // 214,702 in 25 s.
    let before = events_ever_logged(&data).await;
    let (status, body) = frame
        .call("POST", "/api/hostile-events/loop?fanout=2", None)
        .await;
    assert_eq!(status, 200, "{body}");
    packets_works(&frame, "during the loop").await;
    eventually("the loop reached the hop limit", || async {
        stats(&frame).await["refused"].as_i64() >= Some(256)
    })
    .await;
    let body = stats(&frame).await;
    let refusal = &body["refusals"][0];
    assert_eq!(refusal["code"], "limit_exceeded", "{body}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("events.max_hops"),
        "{body}"
    );
    eventually("every loop event was handled", || async {
        stats(&frame).await["handled"].as_i64() == Some(511)
    })
    .await;
    // It has ended: nothing more is published (the loop events plus packets' own).
    let logged = events_ever_logged(&data).await - before;
    assert!((511..=520).contains(&logged), "{logged} events logged");
    packets_works(&frame, "after the loop").await;
    assert_eq!(events_ever_logged(&data).await - before, logged + 1);

    // A publish flood: 100 events of 64 KiB per request, far past the byte rate.
    let mut refused = None;
    for i in 0..20 {
        let (status, body) = frame
            .call("POST", "/api/hostile-events/flood?n=100&bytes=65536", None)
            .await;
        assert_eq!(status, 200, "{body}");
        if !body["error"].is_null() {
            refused = Some(body["error"].clone());
        }
        if i % 5 == 0 {
            packets_works(&frame, &format!("during the flood {i}")).await;
        }
    }
    let Some(refused) = refused else {
        panic!("the flood was never refused")
    };
    assert_eq!(refused["code"], "limit_exceeded", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("events.publish_bytes_rate")
            || message.contains("events.max_retained_bytes_per_shard"),
        "{message}"
    );
    let size = event_store_bytes(&data);
    assert!(
        size < FRAME_DB_BOUND,
        "the event store grew to {size} bytes"
    );

    // A handler error of 1 MiB is cut before it is logged (every attempt) and stored.
    let log_before = frame.log().len();
    let (status, body) = frame
        .call("POST", "/api/hostile-events/fail?kb=1024", None)
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the failing event became a dead letter", || async {
        !dead_letter_errors(&data).await.is_empty()
    })
    .await;
    for error in dead_letter_errors(&data).await {
        assert!(
            error.len() <= 1024,
            "a {}-byte dead-letter error",
            error.len()
        );
    }
    let grown = frame.log().len() - log_before;
    assert!(grown < 64 << 10, "3 failed attempts logged {grown} bytes");

    // A log flood: 20,000 lines of 1000 bytes through logging.log, stdout and stderr (~60 MB
    // unbounded; stdout and stderr are also cut at 1 MiB per call).
    let log_before = frame.log().len();
    let (status, body) = frame
        .call(
            "GET",
            "/api/hostile-events/log?lines=20000&bytes=1000",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    packets_works(&frame, "after the log flood").await;
    // The dropped-lines notice comes at once, and again after its interval when the shard logs.
    eventually("the dropped-lines notice", || async {
        frame
            .call("GET", "/api/hostile-events/log?lines=1&bytes=10", None)
            .await;
        frame.log()[log_before..].contains("shard hostile-events: dropped")
    })
    .await;
    let grown = frame.log().len() - log_before;
    // The burst (1000 lines, 256 KiB) plus the rate for the seconds the test took, plus the
    // frame's own lines: far below the 60 MB the shard wrote.
    assert!(grown < 2 << 20, "the frame's log grew by {grown} bytes");

    packets_works(&frame, "at the end").await;
    frame.stop();
}

crate::on_both_backends!(event_and_log_floods_are_cut_and_packets_keeps_working);
