//! Attacks through SQL alone (the `hostile-sql` fixture, holding only the `database` grant)
//! against a live frame with packets beside it: pointer functions, huge results, TEMP tables and
//! a leaked transaction. Each is refused with its error code, the frame stays up, packets keeps
//! answering, and the frame's memory stays bounded.

use crate::harness::{Frame, data_dir, install, rss};
use crate::hostile::packets_answers;
use serde_json::Value;
use std::time::{Duration, Instant};
use test_shards::{HOSTILE_SQL, PACKETS};

/// A small pool, so that the frame's data (stacks and instance memories) is small and the
/// attacks' host memory shows under the data limit the frame runs with.
const CONFIG: &str = "
[database]
statement_timeout_ms = 2000
max_size_bytes = 8388608

[limits]
instances_total = 32
";

/// The frame's data limit (`RLIMIT_DATA`): 32 slots of at most 130 MiB, its heap, and less than
/// one of the old unbounded zeroblob queries (2 GB).
const DATA_LIMIT: u64 = 1536 << 20;

/// Whether the process runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|state| !state.trim_start().starts_with('Z'))
    })
}

/// `GET /api/hostile-sql{path}`, which must answer 200 with JSON.
async fn attack(frame: &Frame, path: &str) -> Value {
    let (status, body) = frame
        .call("GET", &format!("/api/hostile-sql{path}"), None)
        .await;
    assert_eq!(status, 200, "{path}: {body}\n{}", frame.log());
    assert!(alive(frame.pid()), "the frame died during {path}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_attacks_fail_alone() {
    let data = data_dir(CONFIG);
    install(data.path(), &[&PACKETS, &HOSTILE_SQL]);
    let frame = Frame::start_with_data_limit(data.path(), DATA_LIMIT);
    packets_answers(&frame, "warm-up").await;

    // The fts3_tokenizer sequence: no pointer leaks, none is registered, no fts3 table.
    let body = attack(&frame, "/fts3").await;
    let steps: Vec<(&str, &str)> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("leak", "denied"),
            ("register", "denied"),
            ("create", "denied"),
            ("use", "invalid_sql")
        ],
        "{body}"
    );
    packets_answers(&frame, "after fts3").await;

    let body = attack(&frame, "/function").await;
    assert_eq!(body["outcome"], "denied", "{body}");

    // A value past max_value_bytes, bound or built.
    let body = attack(&frame, "/value").await;
    assert_eq!(
        (body["bound"].as_str(), body["built"].as_str()),
        (Some("limit_exceeded"), Some("limit_exceeded")),
        "{body}"
    );
    packets_answers(&frame, "after value").await;

    // TEMP is refused at once, so nothing lands in an unbounded temp file.
    let started = Instant::now();
    let body = attack(&frame, "/temp?mb=800").await;
    assert_eq!(
        (body["create"].as_str(), body["rows"].as_u64()),
        (Some("denied"), Some(0)),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{body}");
    packets_answers(&frame, "after temp").await;

    // A raw BEGIN does not survive its call: the next write neither blocks nor vanishes.
    let body = attack(&frame, "/begin").await;
    assert_eq!(body["outcome"], "ok", "{body}");
    for _ in 0..3 {
        let started = Instant::now();
        let body = attack(&frame, "/write").await;
        assert_eq!(body["outcome"], "ok", "{body}");
        assert!(started.elapsed() < Duration::from_millis(1500), "{body}");
    }
    packets_answers(&frame, "after begin").await;

    // Huge results: three at once of 40 x 50 MB rows (each value past the limit), then three of
    // 40 x 7 MB (each row fine, the result past max_result_bytes). Memory stays bounded.
    let baseline = rss(frame.pid());
    for query in [
        "/zeroblobs?n=40&bytes=50000000",
        "/zeroblobs?n=40&bytes=7000000",
    ] {
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let client = frame.client.clone();
                let url = format!("{}/api/hostile-sql{query}", frame.base);
                tokio::spawn(async move {
                    let response = client.get(url).send().await.unwrap();
                    let status = response.status().as_u16();
                    (status, response.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let mut peak = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !calls.iter().all(|c| c.is_finished()) {
            assert!(Instant::now() < deadline, "{query} did not finish");
            peak = peak.max(rss(frame.pid()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for call in calls {
            let (status, body) = call.await.unwrap();
            assert_eq!(
                (status, body["outcome"].as_str()),
                (200, Some("limit_exceeded")),
                "{query}: {body}"
            );
        }
        peak = peak.max(rss(frame.pid()));
        eprintln!("{query}: RSS baseline {baseline} bytes, peak {peak} bytes");
        assert!(
            peak < baseline + (256 << 20),
            "{query}: RSS went from {baseline} to {peak} bytes"
        );
        assert!(alive(frame.pid()));
        packets_answers(&frame, &format!("after {query}")).await;
    }

    // Legitimate results still come through whole.
    let body = attack(&frame, "/zeroblobs?n=3&bytes=1000000").await;
    assert_eq!(
        (body["outcome"].as_str(), body["rows"].as_u64()),
        (Some("ok"), Some(3)),
        "{body}"
    );
    frame.stop();
}
