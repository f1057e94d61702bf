//! The database service driven through its `Host` traits, without wasm.

use super::*;
use crate::bindings::database::{Host, HostTransaction};

async fn service() -> (tempfile::TempDir, DatabaseCtx) {
    let dir = tempfile::tempdir().unwrap();
    let service = DatabaseService::new(dir.path().to_path_buf(), DatabaseConfig::default());
    let db = service.open("demo").await.unwrap();
    (dir, DatabaseCtx::granted(db))
}

#[tokio::test]
async fn execute_query_and_typed_values() {
    let (_dir, ctx) = service().await;
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    Host::execute_batch(&mut view, "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT); CREATE TABLE u (k TEXT PRIMARY KEY);".into())
        .await
        .unwrap()
        .unwrap();
    let params = vec![
        Value::Integer(7),
        Value::Real(1.5),
        Value::Text("x".into()),
        Value::Blob(vec![1, 2]),
        Value::Null,
    ];
    let changed = Host::execute(
        &mut view,
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)".into(),
        params.clone(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(changed, 1);
    let rows = Host::query(&mut view, "SELECT * FROM t".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows.columns, ["i", "r", "s", "b", "n"]);
    assert_eq!(rows.rows.len(), 1);
    assert!(matches!(rows.rows[0][0], Value::Integer(7)));
    assert!(matches!(rows.rows[0][1], Value::Real(r) if r == 1.5));
    assert!(matches!(&rows.rows[0][2], Value::Text(s) if s == "x"));
    assert!(matches!(&rows.rows[0][3], Value::Blob(b) if b == &[1, 2]));
    assert!(matches!(rows.rows[0][4], Value::Null));

    // Columns are known even without rows.
    let empty = Host::query(&mut view, "SELECT k FROM u".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (empty.columns.as_slice(), empty.rows.len()),
        (&["k".to_string()][..], 0)
    );

    // Errors map to the WIT variants.
    Host::execute(&mut view, "INSERT INTO u VALUES ('a')".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    let dup = Host::execute(&mut view, "INSERT INTO u VALUES ('a')".into(), vec![])
        .await
        .unwrap();
    assert!(matches!(dup, Err(Error::Constraint(_))), "{dup:?}");
    let bad = Host::query(&mut view, "SELECT * FROM nope".into(), vec![])
        .await
        .unwrap();
    assert!(matches!(bad, Err(Error::InvalidSql(_))), "{bad:?}");
    let attach = Host::execute(&mut view, "ATTACH DATABASE '/tmp/x.db' AS x".into(), vec![])
        .await
        .unwrap();
    assert!(matches!(attach, Err(Error::Denied(_))), "{attach:?}");
}

#[tokio::test]
async fn transactions_commit_roll_back_and_roll_back_on_drop() {
    let (_dir, ctx) = service().await;
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    Host::execute_batch(&mut view, "CREATE TABLE t (v INTEGER)".into())
        .await
        .unwrap()
        .unwrap();
    let count = |rows: Rows| match rows.rows[0][0] {
        Value::Integer(n) => n,
        _ => -1,
    };

    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    HostTransaction::execute(&mut view, rep, "INSERT INTO t VALUES (1)".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    HostTransaction::commit(&mut view, tx)
        .await
        .unwrap()
        .unwrap();

    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    HostTransaction::execute(&mut view, rep, "INSERT INTO t VALUES (2)".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    HostTransaction::rollback(&mut view, tx)
        .await
        .unwrap()
        .unwrap();

    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    HostTransaction::execute(&mut view, rep, "INSERT INTO t VALUES (3)".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    HostTransaction::drop(&mut view, tx).await.unwrap();

    let rows = Host::query(&mut view, "SELECT COUNT(*) FROM t".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count(rows), 1);
}

#[tokio::test]
async fn denied_without_the_service() {
    let ctx = DatabaseCtx::denied();
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let result = Host::query(&mut view, "SELECT 1".into(), vec![])
        .await
        .unwrap();
    assert!(matches!(result, Err(Error::Denied(_))));
}

/// `ensure-schema` through the `Host` trait.
async fn ensure(ctx: &DatabaseCtx, version: i64, script: &str) -> Result<(), Error> {
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx,
        table: &mut table,
    };
    Host::ensure_schema(&mut view, version, script.into())
        .await
        .unwrap()
}

/// Whether table `t` exists with column `column`.
async fn has_column(ctx: &DatabaseCtx, column: &str) -> bool {
    let mut resources = ResourceTable::new();
    let mut view = DatabaseView {
        ctx,
        table: &mut resources,
    };
    Host::query(&mut view, format!("SELECT {column} FROM t"), vec![])
        .await
        .unwrap()
        .is_ok()
}

// The scripts below are deliberately not idempotent: running one a second time fails, which is
// how the tests see that it did not run again.
const V1: &str = "CREATE TABLE t (a INTEGER)";
const V2: &str = "CREATE TABLE IF NOT EXISTS t (a INTEGER); ALTER TABLE t ADD COLUMN b TEXT";

#[tokio::test]
async fn ensure_schema_runs_each_version_once_and_remembers_it() {
    let dir = tempfile::tempdir().unwrap();
    let service = DatabaseService::new(dir.path().to_path_buf(), DatabaseConfig::default());
    let db = service.open("demo").await.unwrap();
    let ctx = DatabaseCtx::granted(db.clone());

    // A new database gets the script and the version.
    ensure(&ctx, 1, V1).await.unwrap();
    ensure(&ctx, 1, V1).await.unwrap();
    assert!(has_column(&ctx, "a").await && !has_column(&ctx, "b").await);
    // A newer version runs its script once; an older one asks for nothing.
    ensure(&ctx, 2, V2).await.unwrap();
    ensure(&ctx, 2, V2).await.unwrap();
    ensure(&ctx, 1, V1).await.unwrap();
    assert!(has_column(&ctx, "b").await);

    // A current version is answered from memory: no SQL runs, so even a closed pool answers.
    db.close().await;
    ensure(&ctx, 2, V2).await.unwrap();

    // The version is in the file: a frame opening it again (an upgrade, a restart) reads it.
    let service = DatabaseService::new(dir.path().to_path_buf(), DatabaseConfig::default());
    let ctx = DatabaseCtx::granted(service.open("demo").await.unwrap());
    ensure(&ctx, 2, V2).await.unwrap();
    ensure(&ctx, 1, V1).await.unwrap();
}

#[tokio::test]
async fn ensure_schema_is_atomic_and_checked() {
    let (_dir, ctx) = service().await;
    // A failing script leaves nothing behind, not even its first statement or a version.
    let failed = ensure(
        &ctx,
        1,
        "CREATE TABLE t (a INTEGER); CREATE TABLE t (a INTEGER)",
    )
    .await;
    assert!(matches!(failed, Err(Error::InvalidSql(_))), "{failed:?}");
    ensure(&ctx, 1, V1).await.unwrap();
    // The script is checked like any other statement.
    let denied = ensure(&ctx, 2, "ATTACH DATABASE '/tmp/x.db' AS x").await;
    assert!(matches!(denied, Err(Error::Denied(_))), "{denied:?}");
    ensure(&ctx, 2, V2).await.unwrap();
    let denied = ensure(&DatabaseCtx::denied(), 1, V1).await;
    assert!(matches!(denied, Err(Error::Denied(_))), "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_run_the_script_once() {
    let (_dir, ctx) = service().await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move { ensure(&ctx, 1, V1).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
}
