//! PostgreSQL-only tests: isolation by roles and schemas, the hostile list, time and size
//! limits, session state, and the value mapping.

use super::*;
use crate::bindings::database::Host;
use std::time::{Duration, Instant};

async fn pg(label: &str, config: DatabaseConfig) -> Option<Backend> {
    Backend::new(Kind::Postgres, label, config).await
}

fn cluster() -> &'static test_shards::engines::Postgres {
    // Only called after `pg` returned a backend, so the cluster exists.
    test_shards::engines::Postgres::shared().unwrap()
}

/// The database name in a test URL.
fn db_name(b: &Backend) -> String {
    b.url
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sql_is_denied() {
    let Some(b) = pg("hostile", small()).await else {
        return;
    };
    let ctx = b.ctx().await;
    let other = DatabaseCtx::granted(b.service.open("other").await.unwrap());
    batch(
        &other,
        "CREATE TABLE secret (v TEXT); INSERT INTO secret VALUES ('x')",
    )
    .await
    .unwrap();
    let Some(ShardDatabase::Postgres(theirs)) = other.db.clone() else {
        panic!("not on PostgreSQL")
    };
    batch(&ctx, "CREATE TABLE t (v TEXT)").await.unwrap();
    let other_table = format!("SELECT * FROM {}.secret", pg_sql::ident(theirs.schema()));
    let statements = [
        other_table.as_str(),
        "SELECT * FROM arkham_frame.shards",
        "CREATE TABLE public.escape (v TEXT)",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "COPY t TO PROGRAM 'id'",
        "COPY t FROM PROGRAM 'id'",
        "COPY t FROM '/etc/passwd'",
        "COPY t TO '/tmp/arkham-escape'",
        "SET ROLE arkham_admin",
        "SET SESSION AUTHORIZATION arkham_admin",
        "CREATE EXTENSION dblink",
        "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        "ALTER SYSTEM SET work_mem = '1GB'",
        "CREATE DATABASE escape",
        "CREATE ROLE escape",
        "SELECT dblink_connect('host=127.0.0.1')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_export(1, '/tmp/arkham-escape')",
        "SELECT lo_from_bytea(0, '\\x00')",
        "SELECT lo_create(0)",
        "CREATE TEMP TABLE big (v TEXT)",
        "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'libc.so.6', 'abort'",
        "CREATE FUNCTION g() RETURNS int LANGUAGE plpython3u AS 'return 1'",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename <> current_user",
    ];
    for sql in statements {
        let result = run(&ctx, sql, vec![]).await;
        // pg_terminate_backend on others answers false, not an error: check it killed nothing.
        if sql.starts_with("SELECT pg_terminate_backend") {
            assert!(!matches!(result, Err(Error::Other(_))), "{sql}: {result:?}");
            continue;
        }
        assert!(matches!(result, Err(Error::Denied(_))), "{sql}: {result:?}");
        // Through a batch (a migration) too.
        let script = batch(&ctx, sql).await;
        assert!(
            matches!(script, Err(Error::Denied(_))),
            "batch {sql}: {script:?}"
        );
    }
    // The other shard's data is intact and its own.
    let rows = select(&other, "SELECT v FROM secret", vec![])
        .await
        .unwrap();
    assert_eq!(rows.rows.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_do_not_see_each_other() {
    let Some(b) = pg("isolation", DatabaseConfig::default()).await else {
        return;
    };
    let a = b.ctx().await;
    let other = DatabaseCtx::granted(b.service.open("other").await.unwrap());
    batch(
        &a,
        "CREATE TABLE items (v TEXT); INSERT INTO items VALUES ('a')",
    )
    .await
    .unwrap();
    batch(
        &other,
        "CREATE TABLE items (v TEXT); INSERT INTO items VALUES ('b')",
    )
    .await
    .unwrap();
    for (ctx, want) in [(&a, "a"), (&other, "b")] {
        let rows = select(ctx, "SELECT v FROM items", vec![]).await.unwrap();
        assert!(
            matches!(&rows.rows[..], [row] if matches!(&row[0], Value::Text(s) if s == want)),
            "{:?}",
            rows.rows
        );
    }
    // Not even a search_path change reaches the other schema.
    let Some(ShardDatabase::Postgres(theirs)) = other.db.clone() else {
        panic!("not on PostgreSQL")
    };
    let sql = format!("SET search_path = {}", pg_sql::ident(theirs.schema()));
    run(&a, &sql, vec![]).await.unwrap();
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &a,
        table: &mut table,
    };
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    crate::bindings::database::HostTransaction::execute(&mut view, rep, sql, vec![])
        .await
        .unwrap()
        .unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    let read = crate::bindings::database::HostTransaction::query(
        &mut view,
        rep,
        "SELECT v FROM items".into(),
        vec![],
    )
    .await
    .unwrap();
    // PostgreSQL leaves schemas without USAGE out of the search path: the table is not found.
    assert!(
        matches!(&read, Err(Error::InvalidSql(m) | Error::Denied(m)) if !m.contains("'b'")),
        "{read:?}"
    );
    crate::bindings::database::HostTransaction::drop(&mut view, tx)
        .await
        .unwrap();
    // Roles of one shard name differ between databases of the cluster.
    let again = pg("isolation", DatabaseConfig::default()).await.unwrap();
    let c = again.ctx().await;
    let mine = select(&c, "SELECT current_user", vec![]).await.unwrap();
    let theirs = select(&a, "SELECT current_user", vec![]).await.unwrap();
    assert_ne!(format!("{:?}", mine.rows), format!("{:?}", theirs.rows));
}

/// `len` bytes (rounded down to 8) that do not compress (xorshift): TOAST cannot fit them into
/// free space, so each row of them grows its table.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_quota_refuses_writes_past_it() {
    let config = DatabaseConfig {
        max_size_bytes: 256 << 10,
        ..small()
    };
    let Some(b) = pg("quota", config).await else {
        return;
    };
    let ctx = b.ctx().await;
    batch(&ctx, "CREATE TABLE f (data BYTEA)").await.unwrap();
    let chunk = Value::Blob(incompressible(100_000));
    let mut refused = None;
    for _ in 0..200 {
        match run(&ctx, "INSERT INTO f VALUES (?)", vec![chunk.clone()]).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(&refused, Some(Error::LimitExceeded(m)) if m.contains("max_size_bytes")),
        "{refused:?}"
    );
    let script = batch(&ctx, "INSERT INTO f SELECT data FROM f").await;
    assert!(matches!(script, Err(Error::LimitExceeded(_))), "{script:?}");
    // Inside a transaction the commit is refused (and the transaction rolled back).
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    crate::bindings::database::HostTransaction::execute(
        &mut view,
        rep,
        "INSERT INTO f VALUES (?)".into(),
        vec![chunk.clone()],
    )
    .await
    .unwrap()
    .unwrap();
    let commit = crate::bindings::database::HostTransaction::commit(&mut view, tx)
        .await
        .unwrap();
    assert!(matches!(commit, Err(Error::LimitExceeded(_))), "{commit:?}");
    // Reads still work, and writes that do not grow the schema (deleting) make room again.
    select(&ctx, "SELECT count(*) FROM f", vec![])
        .await
        .unwrap();
    run(&ctx, "DELETE FROM f", vec![]).await.unwrap();
    run(&ctx, "TRUNCATE f", vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    run(&ctx, "INSERT INTO f VALUES (?)", vec![Value::Blob(vec![1])])
        .await
        .unwrap();
}

/// A shard's first call is a transaction that grows its (never measured) schema past the
/// quota: the commit still compares with the size before it, and refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_transaction_past_the_quota_is_refused() {
    let config = DatabaseConfig {
        max_size_bytes: 64 << 10,
        ..small()
    };
    let Some(b) = pg("quota_first_tx", config).await else {
        return;
    };
    let ctx = b.ctx().await;
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    let chunk = incompressible(50_000);
    let mut statements = vec![("CREATE TABLE g (data BYTEA)".to_string(), vec![])];
    for _ in 0..6 {
        statements.push((
            "INSERT INTO g VALUES (?)".to_string(),
            vec![Value::Blob(chunk.clone())],
        ));
    }
    for (sql, params) in statements {
        let rep = Resource::<Transaction>::new_borrow(rep.rep());
        crate::bindings::database::HostTransaction::execute(&mut view, rep, sql, params)
            .await
            .unwrap()
            .unwrap();
    }
    let commit = crate::bindings::database::HostTransaction::commit(&mut view, tx)
        .await
        .unwrap();
    assert!(
        matches!(&commit, Err(Error::LimitExceeded(m)) if m.contains("max_size_bytes")),
        "{commit:?}"
    );
    // Rolled back: the table is not there.
    let read = select(&ctx, "SELECT count(*) FROM g", vec![]).await;
    assert!(read.is_err(), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_past_the_deadline_is_cancelled_on_the_server() {
    let config = DatabaseConfig {
        statement_timeout_ms: 1_000,
        ..DatabaseConfig::default()
    };
    let Some(b) = pg("sleep", config.clone()).await else {
        return;
    };
    let ctx = b.ctx().await;
    // The shard lifts its own statement timeout first: the host's deadline still holds.
    for sql in [
        "SET statement_timeout = 0; SELECT pg_sleep(1000)",
        "SELECT pg_sleep(1000)",
    ] {
        let started = Instant::now();
        let result = if sql.contains(';') {
            batch(&ctx, sql).await.map(|_| ())
        } else {
            select(&ctx, sql, vec![]).await.map(|_| ())
        };
        let took = started.elapsed();
        assert!(
            matches!(&result, Err(Error::LimitExceeded(m)) if m.contains("statement time limit")),
            "{sql}: {result:?}"
        );
        assert!(took < Duration::from_millis(2_100), "{sql}: took {took:?}");
    }
    // Inside a transaction too.
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    crate::bindings::database::HostTransaction::execute(
        &mut view,
        rep,
        "SET LOCAL statement_timeout = 0".into(),
        vec![],
    )
    .await
    .unwrap()
    .unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    let started = Instant::now();
    let slept = crate::bindings::database::HostTransaction::query(
        &mut view,
        rep,
        "SELECT pg_sleep(1000)".into(),
        vec![],
    )
    .await
    .unwrap();
    assert!(matches!(slept, Err(Error::LimitExceeded(_))), "{slept:?}");
    assert!(started.elapsed() < Duration::from_millis(2_100));
    crate::bindings::database::HostTransaction::drop(&mut view, tx)
        .await
        .unwrap();
    // No server backend is still sleeping for the shard.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = cluster().psql(
        &db_name(&b),
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1000)%' \
         AND state = 'active' AND pid <> pg_backend_pid() \
         AND datname = current_database()",
    );
    assert_eq!(busy, "0");
    // And the shard's next call works.
    select(&ctx, "SELECT 1", vec![]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_does_not_leak_into_the_next_call() {
    let config = DatabaseConfig {
        max_connections: 1,
        statement_timeout_ms: 1_500,
        ..DatabaseConfig::default()
    };
    let Some(b) = pg("session", config).await else {
        return;
    };
    let ctx = b.ctx().await;
    let path = select(&ctx, "SELECT current_setting('search_path')", vec![])
        .await
        .unwrap();
    run(&ctx, "SET search_path = pg_catalog", vec![])
        .await
        .unwrap();
    run(&ctx, "SET statement_timeout = 0", vec![])
        .await
        .unwrap();
    run(
        &ctx,
        "SELECT set_config('application_name', 'x', false)",
        vec![],
    )
    .await
    .unwrap();
    // One connection: the next calls run on the same one.
    let after = select(&ctx, "SELECT current_setting('search_path')", vec![])
        .await
        .unwrap();
    assert_eq!(format!("{:?}", path.rows), format!("{:?}", after.rows));
    let timeout = select(&ctx, "SELECT current_setting('statement_timeout')", vec![])
        .await
        .unwrap();
    assert!(
        matches!(&timeout.rows[0][0], Value::Text(s) if s == "1500ms"),
        "{:?}",
        timeout.rows
    );
    // Nor do a shard's prepared statements, cursors or listens; and the reset keeps the
    // connection (the same server process answers).
    let pid = select(&ctx, "SELECT pg_backend_pid()", vec![])
        .await
        .unwrap();
    batch(
        &ctx,
        "PREPARE mine AS SELECT 1; LISTEN chan; DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    )
    .await
    .unwrap();
    let prepared = select(
        &ctx,
        "SELECT count(*) FROM pg_prepared_statements WHERE from_sql",
        vec![],
    )
    .await
    .unwrap();
    assert!(
        matches!(prepared.rows[0][0], Value::Integer(0)),
        "{:?}",
        prepared.rows
    );
    let cursors = select(
        &ctx,
        "SELECT count(*) FROM pg_cursors WHERE name = 'c'",
        vec![],
    )
    .await
    .unwrap();
    assert!(
        matches!(cursors.rows[0][0], Value::Integer(0)),
        "{:?}",
        cursors.rows
    );
    let again = select(&ctx, "SELECT pg_backend_pid()", vec![])
        .await
        .unwrap();
    assert_eq!(format!("{:?}", pid.rows), format!("{:?}", again.rows));
    // A raw BEGIN or a failed one does not stick either.
    run(&ctx, "BEGIN", vec![]).await.unwrap();
    select(&ctx, "SELECT 1", vec![]).await.unwrap();
    batch(&ctx, "CREATE TABLE t (v INTEGER)").await.unwrap();
    run(&ctx, "INSERT INTO t VALUES (1)", vec![]).await.unwrap();
    let rows = select(&ctx, "SELECT count(*) FROM t", vec![])
        .await
        .unwrap();
    assert!(matches!(rows.rows[0][0], Value::Integer(1)));
    // The raw BEGIN ended with its call: a savepoint has no transaction to live in.
    run(&ctx, "BEGIN", vec![]).await.unwrap();
    assert!(run(&ctx, "SAVEPOINT s", vec![]).await.is_err());
    // A transaction left aborted is ended too, and the connection is kept.
    assert!(batch(&ctx, "BEGIN; SELECT 1 / 0").await.is_err());
    let after_abort = select(&ctx, "SELECT pg_backend_pid()", vec![])
        .await
        .unwrap();
    assert_eq!(format!("{:?}", pid.rows), format!("{:?}", after_abort.rows));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_schema_from_two_frames_runs_the_script_once() {
    let Some(b) = pg("migrate", DatabaseConfig::default()).await else {
        return;
    };
    let mut calls = Vec::new();
    for i in 0..6 {
        // Even calls through this frame, odd ones through a second frame on the same database.
        let ctx = if i % 2 == 0 {
            b.ctx().await
        } else {
            DatabaseCtx::granted(
                b.reopen(DatabaseConfig::default())
                    .await
                    .open("demo")
                    .await
                    .unwrap(),
            )
        };
        calls.push(tokio::spawn(async move { ensure(&ctx, 1, V1).await }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_map_to_the_five_types() {
    let Some(b) = pg("values", small()).await else {
        return;
    };
    let ctx = b.ctx().await;
    let rows = select(
        &ctx,
        "SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.5::float8, 12.25::numeric, true, \
         'x'::varchar, 'y'::text, '\\x0102'::bytea, NULL, '{\"a\":1}'::jsonb",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        format!("{:?}", rows.rows[0]),
        "[Value::Integer(1), Value::Integer(2), Value::Integer(3), Value::Real(1.5), \
         Value::Real(2.5), Value::Real(12.25), Value::Integer(1), Value::Text(\"x\"), \
         Value::Text(\"y\"), Value::Blob([1, 2]), Value::Null, Value::Text(\"{\\\"a\\\": 1}\")]"
    );
    let other = select(&ctx, "SELECT now() AS at", vec![]).await;
    assert!(
        matches!(&other, Err(Error::InvalidSql(m)) if m.contains("`at`") && m.contains("cast it to text")),
        "{other:?}"
    );
    // Bound values come back as they went in.
    let params = vec![
        Value::Integer(i64::MIN),
        Value::Real(-0.25),
        Value::Text("é'?".into()),
        Value::Blob(vec![0, 255]),
        Value::Null,
    ];
    let back = select(&ctx, "SELECT ?, ?, ?, ?, ?", params).await.unwrap();
    assert_eq!(
        format!("{:?}", back.rows[0]),
        "[Value::Integer(-9223372036854775808), Value::Real(-0.25), Value::Text(\"é'?\"), \
         Value::Blob([0, 255]), Value::Null]"
    );
    // Placeholders: count checked, literals left alone.
    let wrong = select(&ctx, "SELECT ?, '?'", vec![]).await;
    assert!(matches!(wrong, Err(Error::InvalidSql(_))), "{wrong:?}");
    let literal = select(&ctx, "SELECT '?' || ?", vec![Value::Text("!".into())])
        .await
        .unwrap();
    assert!(matches!(&literal.rows[0][0], Value::Text(s) if s == "?!"));
    // Constraint and syntax errors map like SQLite's.
    batch(
        &ctx,
        "CREATE TABLE u (k TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    )
    .await
    .unwrap();
    run(&ctx, "INSERT INTO u VALUES ('a', 1)", vec![])
        .await
        .unwrap();
    let dup = run(&ctx, "INSERT INTO u VALUES ('a', 1)", vec![]).await;
    assert!(matches!(dup, Err(Error::Constraint(_))), "{dup:?}");
    let null = run(&ctx, "INSERT INTO u VALUES ('b', NULL)", vec![]).await;
    assert!(matches!(null, Err(Error::Constraint(_))), "{null:?}");
    let syntax = run(&ctx, "INSERT INTO", vec![]).await;
    assert!(matches!(syntax, Err(Error::InvalidSql(_))), "{syntax:?}");
    // Rows and result bytes are bounded while streaming.
    let many = select(
        &ctx,
        "SELECT repeat('x', 900000) FROM generate_series(1, 40)",
        vec![],
    )
    .await;
    assert!(
        matches!(&many, Err(Error::LimitExceeded(m)) if m.contains("result passed")),
        "{many:?}"
    );
    let rows = select(&ctx, "SELECT generate_series(1, 100001)", vec![]).await;
    assert!(matches!(&rows, Err(Error::LimitExceeded(_))), "{rows:?}");
    let narrow = DatabaseConfig {
        max_rows: 10,
        ..small()
    };
    let rows_ctx = DatabaseCtx::granted(b.reopen(narrow).await.open("narrow").await.unwrap());
    let rows = select(&rows_ctx, "SELECT generate_series(1, 11)", vec![]).await;
    assert!(
        matches!(&rows, Err(Error::LimitExceeded(m)) if m.contains("10 rows")),
        "{rows:?}"
    );
    select(&rows_ctx, "SELECT generate_series(1, 10)", vec![])
        .await
        .unwrap();
    // A failed statement ends a transaction on PostgreSQL: its commit says so, keeps nothing.
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    crate::bindings::database::HostTransaction::execute(
        &mut view,
        rep,
        "INSERT INTO u VALUES ('c', 3)".into(),
        vec![],
    )
    .await
    .unwrap()
    .unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    let dup = crate::bindings::database::HostTransaction::execute(
        &mut view,
        rep,
        "INSERT INTO u VALUES ('a', 1)".into(),
        vec![],
    )
    .await
    .unwrap();
    assert!(matches!(dup, Err(Error::Constraint(_))), "{dup:?}");
    let commit = crate::bindings::database::HostTransaction::commit(&mut view, tx)
        .await
        .unwrap();
    assert!(
        matches!(&commit, Err(Error::Other(m)) if m.contains("rolled back")),
        "{commit:?}"
    );
    let kept = select(&ctx, "SELECT count(*) FROM u WHERE k = 'c'", vec![])
        .await
        .unwrap();
    assert!(
        matches!(kept.rows[0][0], Value::Integer(0)),
        "{:?}",
        kept.rows
    );
    let big = select(&ctx, "SELECT repeat('x', 2000000)", vec![]).await;
    assert!(matches!(big, Err(Error::LimitExceeded(_))), "{big:?}");
    let bound = run(
        &ctx,
        "SELECT length(?)",
        vec![Value::Text("x".repeat(2_000_000))],
    )
    .await;
    assert!(matches!(bound, Err(Error::LimitExceeded(_))), "{bound:?}");
}

#[tokio::test]
async fn config_needs_a_url_and_never_prints_the_password() {
    let config = DatabaseConfig {
        backend: DatabaseBackend::Postgres,
        ..DatabaseConfig::default()
    };
    assert_eq!(
        redacted("postgres://u:p@h:1/d?password=p&sslmode=require"),
        "postgres://h:1/d"
    );
    let missing = config.validate().unwrap_err().to_string();
    assert!(missing.contains("url"), "{missing}");
    let config = DatabaseConfig {
        backend: DatabaseBackend::Postgres,
        url: Some("postgres://frame:s3cret@127.0.0.1:1/nowhere".into()),
        statement_timeout_ms: 500,
        ..DatabaseConfig::default()
    };
    assert!(!format!("{config:?}").contains("s3cret"));
    let shown = serde_json::to_string(&config).unwrap();
    assert!(
        shown.contains("postgres://127.0.0.1:1/nowhere") && !shown.contains("s3cret"),
        "{shown}"
    );
    let dir = tempfile::tempdir().unwrap();
    let Err(failed) = DatabaseService::connect(dir.path().to_path_buf(), config).await else {
        panic!("connected to port 1")
    };
    let failed = failed.to_string();
    assert!(
        failed.contains("127.0.0.1:1/nowhere") && !failed.contains("s3cret"),
        "{failed}"
    );
}

#[test]
fn the_config_section_parses_both_backends() {
    let pg: DatabaseConfig =
        toml::from_str("backend = \"postgres\"\nurl = \"postgres://f:pw@db:5432/arkham\"").unwrap();
    assert_eq!(pg.backend, DatabaseBackend::Postgres);
    pg.validate().unwrap();
    let embedded: DatabaseConfig = toml::from_str("max_rows = 10").unwrap();
    assert_eq!(embedded.backend, DatabaseBackend::Embedded);
    embedded.validate().unwrap();
    let unused: DatabaseConfig = toml::from_str("url = \"postgres://f:pw@db/arkham\"").unwrap();
    assert!(
        unused
            .validate()
            .unwrap_err()
            .to_string()
            .contains("backend")
    );
    let unknown = toml::from_str::<DatabaseConfig>("backend = \"mysql\"").unwrap_err();
    assert!(unknown.to_string().contains("postgres"), "{unknown}");
    assert!(toml::from_str::<DatabaseConfig>("urll = \"x\"").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_server_are_replaced() {
    let Some(b) = pg("reconnect", DatabaseConfig::default()).await else {
        return;
    };
    let ctx = b.ctx().await;
    select(&ctx, "SELECT 1", vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // What a server restart does to the idle connections.
    let killed = cluster().psql(
        &db_name(&b),
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE usename LIKE 'ark\\_%'",
    );
    assert_ne!(killed, "0");
    tokio::time::sleep(Duration::from_millis(300)).await;
    select(&ctx, "SELECT 1", vec![]).await.unwrap();
}

/// The frame needs no superuser: CREATEROLE and owning the database are enough (the
/// large-object functions then stay available, with a warning at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_role_with_createrole_that_owns_the_database_suffices() {
    // A database the superuser has not bootstrapped.
    let Some(pgc) = test_shards::engines::Postgres::shared() else {
        return;
    };
    let url = pgc.database("nonsuper");
    let db = url.rsplit('/').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let owner = format!("{db}_frame");
    cluster().psql(
        "postgres",
        &format!("CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD 'framepw'"),
    );
    cluster().psql(&db, &format!("ALTER DATABASE {db} OWNER TO {owner}"));
    let config = DatabaseConfig {
        backend: DatabaseBackend::Postgres,
        url: Some(format!(
            "postgres://{owner}:framepw@127.0.0.1:{}/{db}",
            cluster().port()
        )),
        ..DatabaseConfig::default()
    };
    let service = DatabaseService::connect(dir.path().to_path_buf(), config)
        .await
        .unwrap();
    let ctx = DatabaseCtx::granted(service.open("shard2").await.unwrap());
    ensure(&ctx, 1, V1).await.unwrap();
    run(&ctx, "INSERT INTO t VALUES (?)", vec![Value::Integer(1)])
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM arkham_frame.shards",
        "CREATE ROLE escape",
        "CREATE TEMP TABLE x (v INTEGER)",
        "CREATE TABLE public.x (v INTEGER)",
    ] {
        let result = run(&ctx, sql, vec![]).await;
        assert!(matches!(result, Err(Error::Denied(_))), "{sql}: {result:?}");
    }
    // A frame that starts again (or a second member of the deployment) opens the shard's
    // existing role with the same frame role, and sees its data.
    let again = DatabaseService::connect(dir.path().to_path_buf(), service_config(&owner, &db))
        .await
        .unwrap();
    let ctx = DatabaseCtx::granted(again.open("shard2").await.unwrap());
    let rows = select(&ctx, "SELECT count(*) FROM t", vec![])
        .await
        .unwrap();
    assert!(matches!(rows.rows.as_slice(), [row] if matches!(row.as_slice(), [Value::Integer(1)])));
}

fn service_config(owner: &str, db: &str) -> DatabaseConfig {
    DatabaseConfig {
        backend: DatabaseBackend::Postgres,
        url: Some(format!(
            "postgres://{owner}:framepw@127.0.0.1:{}/{db}",
            cluster().port()
        )),
        ..DatabaseConfig::default()
    }
}

/// A call whose future is dropped mid-statement (its request trapped or timed out) does not
/// leave the statement running on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_stops_its_statement() {
    let config = DatabaseConfig {
        statement_timeout_ms: 60_000,
        ..DatabaseConfig::default()
    };
    let Some(b) = pg("dropped", config).await else {
        return;
    };
    let ctx = b.ctx().await;
    let call = tokio::time::timeout(
        Duration::from_millis(500),
        select(&ctx, "SELECT pg_sleep(1000)", vec![]),
    )
    .await;
    assert!(call.is_err(), "the sleep returned: {call:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let busy = cluster().psql(
        &db_name(&b),
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1000)%' \
         AND state = 'active' AND pid <> pg_backend_pid() \
         AND datname = current_database()",
    );
    assert_eq!(busy, "0");
    select(&ctx, "SELECT 1", vec![]).await.unwrap();
}
