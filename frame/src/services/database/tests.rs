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
