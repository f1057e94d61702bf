//! What only the engine backends have: escapes particular to PostgreSQL (attempted through the
//! `hostile-sql` fixture's `/sql`, as the shard's own role), and restarts of nats-server. The
//! behaviour both backend sets share is tested on both in the other modules.

use crate::backends::{Backends, Data};
use crate::harness::{Frame, eventually, install};
use crate::hostile::packets_answers;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use test_shards::{HOSTILE_SQL, PACKETS, RECORDER, TRAPPER};

const CONFIG: &str = "
[database]
statement_timeout_ms = 1000
max_size_bytes = 4194304

[events]
retry_base_ms = 20
retry_max_ms = 200
max_attempts = 1000
";

async fn sql(frame: &Frame, kind: &str, sql: &str) -> Value {
    let (status, body) = frame
        .call(
            "POST",
            "/api/hostile-sql/sql",
            Some(json!({"kind": kind, "sql": sql})),
        )
        .await;
    assert_eq!(status, 200, "{sql}: {body}\n{}", frame.log());
    body
}

fn engines(label: &str) -> Option<Data> {
    Backends::Engines.data_dir(label, CONFIG)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_escapes_are_denied() {
    let Some(data) = engines("postgres_escapes_are_denied") else {
        return;
    };
    install(data.path(), &[&PACKETS, &HOSTILE_SQL]);
    let frame = Frame::start(data.path());
    packets_answers(&frame, "before").await;

    // The schema packets' tables live in, as PostgreSQL names it.
    let packets_schema = data.psql(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'arkham_packets' LIMIT 1",
    );
    assert!(
        !packets_schema.is_empty(),
        "packets has a table `arkham_packets`"
    );

    let attempts = [
        format!("SELECT * FROM \"{packets_schema}\".arkham_packets"),
        format!("DELETE FROM \"{packets_schema}\".arkham_packets"),
        format!("CREATE TABLE \"{packets_schema}\".planted (x int8)"),
        "SELECT pg_read_file('/etc/passwd')".to_string(),
        "SELECT pg_ls_dir('.')".to_string(),
        "SELECT pg_read_binary_file('postgresql.conf')".to_string(),
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/arkham-pwned'".to_string(),
        "CREATE TABLE IF NOT EXISTS loot (line text)".to_string()
            + "; COPY loot FROM '/etc/passwd'",
        "SET ROLE arkham_admin".to_string(),
        "SET SESSION AUTHORIZATION arkham_admin".to_string(),
        "CREATE EXTENSION IF NOT EXISTS dblink".to_string(),
        "ALTER SYSTEM SET fsync = off".to_string(),
        "CREATE ROLE intruder LOGIN SUPERUSER".to_string(),
        "CREATE DATABASE intruder".to_string(),
        "SELECT lo_import('/etc/passwd')".to_string(),
        "CREATE FUNCTION sh() RETURNS int AS 'libc.so.6', 'system' LANGUAGE c".to_string(),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ];
    for attempt in &attempts {
        let kind = if attempt.contains(';') {
            "batch"
        } else {
            "query"
        };
        let body = sql(&frame, kind, attempt).await;
        // Terminating backends the role does not own reads as zero rows signalled, or denied.
        if attempt.contains("pg_terminate_backend") && body["outcome"] == "ok" {
            assert!(
                body["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r[0] != json!(1)),
                "{attempt}: {body}"
            );
            continue;
        }
        assert_eq!(body["outcome"], "denied", "{attempt}: {body}");
    }
    assert!(!std::path::Path::new("/tmp/arkham-pwned").exists());
    assert_eq!(
        data.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'intruder'"),
        "0"
    );

    // Its own schema is its own: tables, writes and reads work.
    let body = sql(
        &frame,
        "batch",
        "CREATE TABLE mine (v int8); INSERT INTO mine VALUES (7)",
    )
    .await;
    assert_eq!(body["outcome"], "ok", "{body}");
    let body = sql(&frame, "query", "SELECT v FROM mine").await;
    assert_eq!(body["rows"], json!([[7]]), "{body}");

    // Session settings a call makes do not outlive it.
    let body = sql(
        &frame,
        "batch",
        "SET search_path = pg_catalog; SET statement_timeout = 0",
    )
    .await;
    assert_eq!(body["outcome"], "ok", "{body}");
    let body = sql(
        &frame,
        "query",
        "SELECT current_setting('statement_timeout')",
    )
    .await;
    assert_ne!(body["rows"], json!([["0"]]), "{body}");
    let body = sql(&frame, "query", "SELECT v FROM mine").await;
    assert_eq!(body["outcome"], "ok", "{body}");

    packets_answers(&frame, "after").await;
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_time_and_size_are_bounded() {
    let Some(data) = engines("postgres_time_and_size_are_bounded") else {
        return;
    };
    install(data.path(), &[&PACKETS, &HOSTILE_SQL]);
    let frame = Frame::start(data.path());

    // A sleep past the statement limit, even with the shard's own timeout turned off, ends at
    // the limit, and no server backend keeps sleeping for it.
    for (kind, statement) in [
        ("query", "SELECT pg_sleep(60)"),
        ("batch", "SET statement_timeout = 0; SELECT pg_sleep(60)"),
    ] {
        let started = Instant::now();
        let body = sql(&frame, kind, statement).await;
        assert_ne!(body["outcome"], "ok", "{statement}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{statement} took {:?}",
            started.elapsed()
        );
        eventually("no backend still sleeping", || async {
            data.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")
                == "0"
        })
        .await;
    }

    // Writes past the size quota are refused with limit_exceeded; packets still writes.
    let body = sql(&frame, "execute", "CREATE TABLE fill (b bytea)").await;
    assert_eq!(body["outcome"], "ok", "{body}");
    let mut outcome = String::new();
    for _ in 0..64 {
        let body = sql(
            &frame,
            "execute",
            // 256 KiB of random bytes a row: nothing TOAST could compress away.
            "INSERT INTO fill SELECT decode(string_agg(md5(random()::text), ''), 'hex') \
             FROM generate_series(1, 16384)",
        )
        .await;
        outcome = body["outcome"].as_str().unwrap().to_string();
        if outcome != "ok" {
            break;
        }
    }
    assert_eq!(outcome, "limit_exceeded");
    // Writing through `query` (`RETURNING`) or a batch is refused the same way.
    for (kind, statement) in [
        (
            "query",
            "INSERT INTO fill SELECT decode(string_agg(md5(random()::text), ''), 'hex') \
             FROM generate_series(1, 16384) RETURNING 1",
        ),
        (
            "batch",
            "INSERT INTO fill SELECT decode(string_agg(md5(random()::text), ''), 'hex') \
             FROM generate_series(1, 16384)",
        ),
    ] {
        let body = sql(&frame, kind, statement).await;
        assert_eq!(body["outcome"], "limit_exceeded", "{kind}: {body}");
    }
    packets_answers(&frame, "after the fill").await;
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_restart_loses_nothing_acknowledged() {
    let Some(mut data) = engines("a_nats_restart_loses_nothing_acknowledged") else {
        return;
    };
    install(data.path(), &[&PACKETS, &RECORDER, &TRAPPER]);
    let frame = Frame::start(data.path());
    let (status, _) = frame
        .call("PUT", "/api/recorder/fail", Some(json!({"fail": true})))
        .await;
    assert_eq!(status, 200);
    let mut created = 0;
    for i in 0..3 {
        let (status, _) = frame
            .call(
                "POST",
                "/api/packets/",
                Some(json!({"name": format!("n{i}")})),
            )
            .await;
        assert_eq!(status, 201);
        created += 1;
    }
    let url = format!("{}/api/trapper/blob/kept.txt", frame.base);
    let response = frame
        .client
        .put(&url)
        .header("content-type", "text/plain")
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    data.nats().restart();

    // The frame reconnects: new requests work again (a request during the reconnect may get
    // 503 events_not_logged, never a 2xx whose events are lost).
    eventually("packets publishes again after the restart", || async {
        let (status, body) = frame
            .call("POST", "/api/packets/", Some(json!({"name": "after"})))
            .await;
        if status == 201 {
            return true;
        }
        assert_eq!(status, 503, "{body}");
        false
    })
    .await;
    created += 1;
    let (status, _) = frame
        .call("PUT", "/api/recorder/fail", Some(json!({"fail": false})))
        .await;
    assert_eq!(status, 200);
    eventually("every acknowledged event delivered", || async {
        let (_, body) = frame.call("GET", "/api/recorder/events", None).await;
        body["events"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| e["name"] == "packets.packet.created")
                    .count()
            })
            .unwrap_or(0)
            >= created
    })
    .await;
    let response = frame.client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "kept");
    frame.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_purge_deletes_the_engines_data() {
    let Some(data) = engines("remove_purge_deletes_the_engines_data") else {
        return;
    };
    install(data.path(), &[&PACKETS, &HOSTILE_SQL, &TRAPPER]);
    let frame = Frame::start(data.path());
    let body = sql(
        &frame,
        "batch",
        "CREATE TABLE kept (v int8); INSERT INTO kept VALUES (1)",
    )
    .await;
    assert_eq!(body["outcome"], "ok", "{body}");
    let response = frame
        .client
        .put(format!("{}/api/trapper/blob/gone.txt", frame.base))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Roles are cluster-wide (other tests' databases have a `hostile-sql` too): this data dir's
    // are the ones its frame recorded.
    let role = data.psql("SELECT role FROM arkham_frame.shards WHERE shard = 'hostile-sql'");
    let schema = data.psql("SELECT schema FROM arkham_frame.shards WHERE shard = 'hostile-sql'");
    assert!(!role.is_empty() && !schema.is_empty());
    let role_count = format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'");
    let schema_count = format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'");
    assert_eq!(data.psql(&role_count), "1");
    frame.stop();

    // Without --purge the data stays; with it, the schema, role and bucket go.
    let (ok, _, err) = crate::harness::arkham(data.path(), &["shard", "remove", "hostile-sql"]);
    assert!(ok, "{err}");
    assert_eq!(data.psql(&role_count), "1");
    install(data.path(), &[&HOSTILE_SQL]);
    for shard in ["hostile-sql", "trapper"] {
        let (ok, _, err) =
            crate::harness::arkham(data.path(), &["shard", "remove", "--purge", shard]);
        assert!(ok, "{shard}: {err}");
    }
    assert_eq!(data.psql(&role_count), "0");
    assert_eq!(data.psql(&schema_count), "0");
    assert_eq!(
        data.psql("SELECT count(*) FROM arkham_frame.shards WHERE shard = 'hostile-sql'"),
        "0"
    );
    let nats = data.nats.as_ref().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    assert!(js.get_object_store("arkham_trapper").await.is_err());
    // Packets' data is untouched.
    assert_eq!(
        data.psql("SELECT count(*) FROM arkham_frame.shards WHERE shard = 'packets'"),
        "1"
    );
}
