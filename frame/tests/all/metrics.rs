//! `GET /metrics`: scraped after known traffic, on the frame's address (admin token) and on the
//! `[metrics] listen` address (no token).

use crate::harness::{Frame, admin_token, data_dir, eventually, install};
use serde_json::json;
use std::collections::BTreeMap;
use test_shards::{ECHO, HOSTILE, PACKETS, RECORDER, TRAPPER};

/// One dead letter after two attempts; echo over its rate after two requests; trapper's loop
/// and hostile's endless query stopped quickly.
const CONFIG: &str = r#"
[events]
retry_base_ms = 20
retry_max_ms = 100
max_attempts = 2

[limits.shards.echo]
requests_per_second = 1
request_burst = 2

[limits.shards.trapper]
request_timeout_ms = 300

[limits.shards.hostile]
statement_timeout_ms = 200

[metrics]
listen = "127.0.0.1:0"
"#;

/// A scrape: every sample by its name and (sorted) labels.
struct Scrape {
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
    text: String,
}

impl Scrape {
    /// Parses the Prometheus text format (0.0.4): `name{k="v",...} value` lines; comments
    /// skipped. Label values here never hold quotes or commas.
    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').unwrap();
                    let labels = rest
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').unwrap();
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            let previous = samples.insert((name, labels), value);
            assert!(previous.is_none(), "a series twice: {line}");
        }
        Self {
            samples,
            text: text.to_string(),
        }
    }

    /// The value of `name{labels}`, if exported.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// The value of `name{shard=...}` (plus `extra` labels), which must be exported.
    fn shard(&self, name: &str, shard: &str, extra: &[(&str, &str)]) -> f64 {
        let mut labels = vec![("shard", shard)];
        labels.extend_from_slice(extra);
        self.get(name, &labels)
            .unwrap_or_else(|| panic!("no {name} for {shard} {extra:?} in:\n{}", self.text))
    }

    fn requests(&self, shard: &str, class: &str) -> f64 {
        self.shard("arkham_shard_requests_total", shard, &[("class", class)])
    }

    /// Whether any series is labelled with `shard`.
    fn mentions(&self, shard: &str) -> bool {
        self.samples
            .keys()
            .any(|(_, labels)| labels.get("shard").map(String::as_str) == Some(shard))
    }
}

async fn scrape(frame: &Frame, token: &str) -> Scrape {
    let response = frame
        .client
        .get(format!("{}/metrics", frame.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Scrape::parse(&response.text().await.unwrap())
}

async fn status(frame: &Frame, method: &str, path: &str, body: Option<serde_json::Value>) -> u16 {
    frame.call(method, path, body).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_known_traffic() {
    let data = data_dir(CONFIG);
    install(
        data.path(),
        &[&PACKETS, &RECORDER, &TRAPPER, &ECHO, &HOSTILE],
    );
    let frame = Frame::start(data.path());
    let token = admin_token(data.path());

    // The frame's address wants the admin token.
    let refused = frame
        .client
        .get(format!("{}/metrics", frame.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let wrong = frame
        .client
        .get(format!("{}/metrics", frame.base))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    // packets: three creates (one event each), two 404s.
    for name in ["one", "two"] {
        let created = status(&frame, "POST", "/api/packets/", Some(json!({"name": name})));
        assert_eq!(created.await, 201);
    }
    for _ in 0..2 {
        assert_eq!(
            status(&frame, "GET", "/api/packets/missing", None).await,
            404
        );
    }
    // The recorder takes the first two events, then refuses the third twice: one retry, one
    // dead letter.
    eventually("two deliveries to the recorder", || async {
        scrape(&frame, &token)
            .await
            .shard("arkham_shard_events_delivered_total", "recorder", &[])
            == 2.0
    })
    .await;
    let fail = Some(json!({"fail": true}));
    assert_eq!(status(&frame, "PUT", "/api/recorder/fail", fail).await, 200);
    let created = status(
        &frame,
        "POST",
        "/api/packets/",
        Some(json!({"name": "three"})),
    );
    assert_eq!(created.await, 201);
    eventually("a dead letter for the recorder", || async {
        scrape(&frame, &token).await.shard(
            "arkham_shard_events_dead_lettered_total",
            "recorder",
            &[],
        ) == 1.0
    })
    .await;

    // trapper: two successes, a trap, a timeout; 16 bytes stored ("hello" + "text/plain" + "a").
    assert_eq!(status(&frame, "GET", "/api/trapper/ok", None).await, 200);
    let put = frame
        .client
        .put(format!("{}/api/trapper/blob/a", frame.base))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    assert_eq!(status(&frame, "GET", "/api/trapper/trap", None).await, 500);
    assert_eq!(status(&frame, "GET", "/api/trapper/loop", None).await, 504);

    // hostile: a memory bomb stopped at its limit, one statement stopped at its time limit.
    let bomb = status(&frame, "GET", "/api/hostile/alloc?mb=1024", None);
    assert_eq!(bomb.await, 503);
    let (code, body) = frame.call("GET", "/api/hostile/slowquery", None).await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("limit_exceeded"))
    );

    // echo: over its rate after its burst of two.
    let (mut ok, mut limited) = (0.0, 0.0);
    while limited == 0.0 {
        match status(&frame, "GET", "/api/echo/echo/x", None).await {
            200 => ok += 1.0,
            429 => limited += 1.0,
            other => panic!("echo answered {other}"),
        }
        assert!(ok < 10.0, "echo was never rate limited");
    }

    let m = scrape(&frame, &token).await;
    // Per frame.
    assert_eq!(
        m.get(
            "arkham_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(m.get("arkham_shards_loaded", &[]), Some(5.0));
    assert_eq!(m.get("arkham_shards_failed", &[]), Some(0.0));
    assert_eq!(m.get("arkham_instance_slots_in_use", &[]), Some(0.0));
    assert!(m.get("arkham_instance_slots", &[]).unwrap() > 0.0);
    // Requests by status class, and as many latency observations.
    assert_eq!(m.requests("packets", "2xx"), 3.0);
    assert_eq!(m.requests("packets", "4xx"), 2.0);
    assert_eq!(m.requests("packets", "5xx"), 0.0);
    assert_eq!(m.requests("recorder", "2xx"), 1.0);
    assert_eq!(m.requests("trapper", "2xx"), 2.0);
    assert_eq!(m.requests("trapper", "5xx"), 2.0);
    assert_eq!(m.requests("hostile", "2xx"), 1.0);
    assert_eq!(m.requests("hostile", "5xx"), 1.0);
    assert_eq!(m.requests("echo", "2xx"), ok);
    assert_eq!(m.requests("echo", "4xx"), limited);
    assert_eq!(
        m.shard("arkham_shard_requests_rate_limited_total", "echo", &[]),
        limited
    );
    let count = "arkham_shard_request_duration_seconds_count";
    assert_eq!(m.shard(count, "packets", &[]), 5.0);
    assert_eq!(m.shard(count, "trapper", &[]), 4.0);
    let bucket = "arkham_shard_request_duration_seconds_bucket";
    assert_eq!(m.shard(bucket, "trapper", &[("le", "+Inf")]), 4.0);
    // The loop ran for its 300 ms deadline: not in the 250 ms bucket.
    assert!(m.shard(bucket, "trapper", &[("le", "0.25")]) <= 3.0);
    // Traps, timeouts, memory-limit hits.
    assert_eq!(m.shard("arkham_shard_traps_total", "trapper", &[]), 1.0);
    assert_eq!(m.shard("arkham_shard_timeouts_total", "trapper", &[]), 1.0);
    assert_eq!(
        m.shard("arkham_shard_memory_limit_hits_total", "trapper", &[]),
        0.0
    );
    assert_eq!(
        m.shard("arkham_shard_memory_limit_hits_total", "hostile", &[]),
        1.0
    );
    assert_eq!(m.shard("arkham_shard_traps_total", "hostile", &[]), 0.0);
    // Events.
    let events = |name: &str, shard: &str| m.shard(name, shard, &[]);
    assert_eq!(
        events("arkham_shard_events_published_total", "packets"),
        3.0
    );
    assert_eq!(
        events("arkham_shard_events_delivered_total", "recorder"),
        2.0
    );
    assert_eq!(events("arkham_shard_events_retried_total", "recorder"), 1.0);
    // Past its dead letter, the recorder is behind on nothing.
    assert_eq!(events("arkham_shard_events_behind", "recorder"), 0.0);
    assert_eq!(
        events("arkham_shard_events_dead_lettered_total", "recorder"),
        1.0
    );
    assert_eq!(
        events("arkham_shard_events_published_total", "trapper"),
        0.0
    );
    // Database statements and errors.
    assert_eq!(
        m.shard("arkham_shard_database_statements_total", "hostile", &[]),
        1.0
    );
    assert_eq!(
        m.shard("arkham_shard_database_errors_total", "hostile", &[]),
        1.0
    );
    assert!(m.shard("arkham_shard_database_statements_total", "packets", &[]) >= 3.0);
    assert_eq!(
        m.shard("arkham_shard_database_errors_total", "packets", &[]),
        0.0
    );
    // Storage and instances.
    assert_eq!(m.shard("arkham_shard_storage_bytes", "trapper", &[]), 16.0);
    assert_eq!(
        m.shard("arkham_shard_instances_in_use", "packets", &[]),
        0.0
    );

    // The metrics address serves the same without a token, and nothing else.
    let serving: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.path().join("serving.json")).unwrap())
            .unwrap();
    let url = serving["metrics"].as_str().unwrap().to_string();
    let open = frame.client.get(&url).send().await.unwrap();
    assert_eq!(open.status().as_u16(), 200);
    let open = Scrape::parse(&open.text().await.unwrap());
    assert_eq!(open.requests("packets", "4xx"), 2.0);
    let other = url.replace("/metrics", "/api/frame/health");
    let other = frame.client.get(other).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);

    // A removed shard's series go with it.
    let removed = frame
        .client
        .delete(format!("{}/api/frame/admin/shards/echo", frame.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status().as_u16(), 200);
    let m = scrape(&frame, &token).await;
    assert!(!m.mentions("echo"), "{}", m.text);
    assert!(m.mentions("packets"));
    assert_eq!(m.get("arkham_shards_loaded", &[]), Some(4.0));
    frame.stop();
}

#[test]
fn the_parser_reads_what_the_frame_writes() {
    let m = Scrape::parse(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{shard=\"s\",class=\"2xx\"} 3\nb 1.5\n",
    );
    assert_eq!(
        m.get("a_total", &[("class", "2xx"), ("shard", "s")]),
        Some(3.0)
    );
    assert_eq!(m.get("b", &[]), Some(1.5));
}
