//! The database service driven through its `Host` traits, without wasm.
//!
//! The behaviour tests run on every backend: `on_backends!` makes a `sqlite` and a `postgres`
//! test of each (the PostgreSQL one skips when PostgreSQL is not installed, and fails under
//! `CI=true`). Engine-specific tests follow them; PostgreSQL's are in `postgres_tests.rs`.

use super::*;
use crate::bindings::database::{Host, HostTransaction};

/// An engine for one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Sqlite,
    Postgres,
}

/// A service on a fresh database of one engine, and how to open it again.
pub(super) struct Backend {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    /// The superuser URL of the test's PostgreSQL database.
    pub url: Option<String>,
    pub service: DatabaseService,
}

impl Backend {
    /// A fresh database on `kind`, or `None` when that engine is not installed.
    pub async fn new(kind: Kind, label: &str, config: DatabaseConfig) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let url = match kind {
            Kind::Sqlite => None,
            Kind::Postgres => Some(test_shards::engines::Postgres::shared()?.database(label)),
        };
        let service = Self::service(&dir, url.as_deref(), config).await;
        Some(Self {
            kind,
            dir,
            url,
            service,
        })
    }

    async fn service(
        dir: &tempfile::TempDir,
        url: Option<&str>,
        config: DatabaseConfig,
    ) -> DatabaseService {
        let config = match url {
            Some(url) => DatabaseConfig {
                backend: DatabaseBackend::Postgres,
                url: Some(url.to_string()),
                ..config
            },
            None => config,
        };
        DatabaseService::connect(dir.path().to_path_buf(), config)
            .await
            .unwrap()
    }

    /// Another service (a restart, or a second frame) on the same databases.
    pub async fn reopen(&self, config: DatabaseConfig) -> DatabaseService {
        Self::service(&self.dir, self.url.as_deref(), config).await
    }

    /// The context of shard `demo`.
    pub async fn ctx(&self) -> DatabaseCtx {
        DatabaseCtx::granted(self.service.open("demo").await.unwrap())
    }
}

/// `on_backends!(name, config)` runs `async fn name(backend: Backend)` as `name::sqlite` and
/// `name::postgres`, each on a fresh database made with `config`.
macro_rules! on_backends {
    ($name:ident, $config:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(b) = Backend::new(Kind::Sqlite, stringify!($name), $config).await {
                    super::$name(b).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(b) = Backend::new(Kind::Postgres, stringify!($name), $config).await {
                    super::$name(b).await;
                }
            }
        }
    };
    ($name:ident) => {
        on_backends!($name, DatabaseConfig::default());
    };
}

on_backends!(execute_query_and_typed_values);
async fn execute_query_and_typed_values(b: Backend) {
    let ctx = b.ctx().await;
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let blob = if b.kind == Kind::Postgres {
        "BYTEA"
    } else {
        "BLOB"
    };
    Host::execute_batch(&mut view, format!("CREATE TABLE t (i BIGINT, r DOUBLE PRECISION, s TEXT, b {blob}, n TEXT); CREATE TABLE u (k TEXT PRIMARY KEY);"))
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
    let escape = match b.kind {
        Kind::Sqlite => "ATTACH DATABASE '/tmp/x.db' AS x",
        Kind::Postgres => "SELECT pg_read_file('/etc/passwd')",
    };
    let attach = Host::execute(&mut view, escape.into(), vec![])
        .await
        .unwrap();
    assert!(matches!(attach, Err(Error::Denied(_))), "{attach:?}");
    // NULL goes into any column type, and text compares with text.
    Host::execute(
        &mut view,
        "INSERT INTO t (i, r, s, b, n) VALUES (?, ?, ?, ?, ?)".into(),
        vec![
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Text("y".into()),
        ],
    )
    .await
    .unwrap()
    .unwrap();
    let rows = Host::query(
        &mut view,
        "SELECT count(*) FROM t WHERE n = ? AND b IS NULL".into(),
        vec![Value::Text("y".into())],
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        matches!(rows.rows[0][0], Value::Integer(1)),
        "{:?}",
        rows.rows
    );
    // The same statement bound with other types.
    Host::query(&mut view, "SELECT ?".into(), vec![Value::Integer(1)])
        .await
        .unwrap()
        .unwrap();
    let text = Host::query(&mut view, "SELECT ?".into(), vec![Value::Text("a".into())])
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&text.rows[0][0], Value::Text(s) if s == "a"),
        "{:?}",
        text.rows
    );
}

on_backends!(transactions_commit_roll_back_and_roll_back_on_drop);
async fn transactions_commit_roll_back_and_roll_back_on_drop(b: Backend) {
    let ctx = b.ctx().await;
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

on_backends!(ensure_schema_runs_each_version_once_and_remembers_it);
async fn ensure_schema_runs_each_version_once_and_remembers_it(b: Backend) {
    let db = b.service.open("demo").await.unwrap();
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

    // The version is in the database: a frame opening it again (an upgrade, a restart) reads it.
    let service = b.reopen(DatabaseConfig::default()).await;
    let ctx = DatabaseCtx::granted(service.open("demo").await.unwrap());
    ensure(&ctx, 2, V2).await.unwrap();
    ensure(&ctx, 1, V1).await.unwrap();
}

on_backends!(ensure_schema_is_atomic_and_checked);
async fn ensure_schema_is_atomic_and_checked(b: Backend) {
    let ctx = b.ctx().await;
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
    let escape = match b.kind {
        Kind::Sqlite => "ATTACH DATABASE '/tmp/x.db' AS x",
        Kind::Postgres => "CREATE ROLE escape SUPERUSER",
    };
    let denied = ensure(&ctx, 2, escape).await;
    assert!(matches!(denied, Err(Error::Denied(_))), "{denied:?}");
    ensure(&ctx, 2, V2).await.unwrap();
    let denied = ensure(&DatabaseCtx::denied(), 1, V1).await;
    assert!(matches!(denied, Err(Error::Denied(_))), "{denied:?}");
}

on_backends!(concurrent_first_calls_run_the_script_once);
async fn concurrent_first_calls_run_the_script_once(b: Backend) {
    let ctx = b.ctx().await;
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

/// Small limits, so the tests reach them quickly.
fn small() -> DatabaseConfig {
    DatabaseConfig {
        statement_timeout_ms: 2_000,
        max_size_bytes: 512 << 10,
        max_value_bytes: 1 << 20,
        max_result_bytes: 4 << 20,
        ..DatabaseConfig::default()
    }
}

async fn service_with(config: DatabaseConfig) -> (tempfile::TempDir, DatabaseCtx) {
    let dir = tempfile::tempdir().unwrap();
    let service = DatabaseService::new(dir.path().to_path_buf(), config);
    let db = service.open("demo").await.unwrap();
    (dir, DatabaseCtx::granted(db))
}

async fn run(ctx: &DatabaseCtx, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx,
        table: &mut table,
    };
    Host::execute(&mut view, sql.into(), params).await.unwrap()
}

async fn select(ctx: &DatabaseCtx, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx,
        table: &mut table,
    };
    Host::query(&mut view, sql.into(), params).await.unwrap()
}

async fn batch(ctx: &DatabaseCtx, sql: &str) -> Result<(), Error> {
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx,
        table: &mut table,
    };
    Host::execute_batch(&mut view, sql.into()).await.unwrap()
}

fn denied_naming(result: &Result<impl std::fmt::Debug, Error>, word: &str) -> bool {
    matches!(result, Err(Error::Denied(m)) if m.contains(word))
}

/// The fts3_tokenizer attack: leak a pointer, register one, use it. Every step is refused.
#[tokio::test]
async fn pointer_functions_are_denied_even_with_bound_parameters() {
    let (_dir, ctx) = service_with(small()).await;
    let leak = select(
        &ctx,
        "SELECT fts3_tokenizer(?)",
        vec![Value::Text("simple".into())],
    )
    .await;
    assert!(denied_naming(&leak, "`fts3_tokenizer`"), "{leak:?}");
    assert!(denied_naming(&leak, "not available to shards"), "{leak:?}");
    let register = select(
        &ctx,
        "SELECT fts3_tokenizer(?, ?)",
        vec![Value::Text("evil".into()), Value::Blob(vec![0x41; 8])],
    )
    .await;
    assert!(denied_naming(&register, "`fts3_tokenizer`"), "{register:?}");
    for module in ["fts3", "fts4"] {
        let create = run(
            &ctx,
            &format!("CREATE VIRTUAL TABLE t_{module} USING {module}(body, tokenize=evil)"),
            vec![],
        )
        .await;
        assert!(denied_naming(&create, &format!("`{module}`")), "{create:?}");
    }
    // Through a batch (a migration) too.
    let script = batch(&ctx, "CREATE VIRTUAL TABLE t USING fts3(body)").await;
    assert!(denied_naming(&script, "`fts3`"), "{script:?}");
    let other = select(&ctx, "SELECT sqlite_compileoption_get(0)", vec![]).await;
    assert!(
        denied_naming(&other, "`sqlite_compileoption_get`"),
        "{other:?}"
    );
    let api = select(&ctx, "SELECT fts5(?)", vec![Value::Null]).await;
    assert!(denied_naming(&api, "`fts5`"), "{api:?}");
    // A denial does not stick to the connection: the next statement runs.
    select(&ctx, "SELECT 1", vec![]).await.unwrap();
}

/// What shards legitimately use keeps working under the allowlists and TRUSTED_SCHEMA off.
#[tokio::test]
async fn listed_functions_fts5_and_table_valued_functions_work() {
    let (_dir, ctx) = service_with(small()).await;
    batch(
        &ctx,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, doc TEXT NOT NULL CHECK (length(doc) < 1000), \
           at TEXT NOT NULL DEFAULT (datetime('now')), lo TEXT GENERATED ALWAYS AS (lower(doc)));
         CREATE INDEX t_lo ON t (lower(doc));
         CREATE VIEW v AS SELECT id, json_object('doc', doc) AS j FROM t;
         CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN UPDATE t SET doc = upper(doc) WHERE id = new.id AND 0; END;
         CREATE VIRTUAL TABLE f USING fts5(body);",
    )
    .await
    .unwrap();
    run(
        &ctx,
        "INSERT INTO t (doc) VALUES (?), (?)",
        vec![
            Value::Text("Hello World".into()),
            Value::Text("{\"a\":[1,2]}".into()),
        ],
    )
    .await
    .unwrap();
    run(
        &ctx,
        "INSERT INTO f (body) VALUES ('the quick brown fox'), ('lazy dogs')",
        vec![],
    )
    .await
    .unwrap();
    let rows = select(
        &ctx,
        "SELECT highlight(f, 0, '[', ']'), bm25(f) FROM f WHERE f MATCH 'quick' ORDER BY rank",
        vec![],
    )
    .await
    .unwrap();
    assert!(
        matches!(&rows.rows[..], [row] if matches!(&row[0], Value::Text(s) if s == "the [quick] brown fox")),
        "{:?}",
        rows.rows
    );
    let rows = select(
        &ctx,
        "SELECT count(*), group_concat(lo, '|'), max(length(at)), sum(j ->> '$.doc' IS NOT NULL), \
           row_number() OVER () FROM t JOIN v USING (id)",
        vec![],
    )
    .await
    .unwrap();
    assert!(
        matches!(rows.rows[0][0], Value::Integer(2)),
        "{:?}",
        rows.rows
    );
    let each = select(
        &ctx,
        "SELECT e.value FROM t, json_each(t.doc, '$.a') AS e WHERE json_valid(t.doc)",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(each.rows.len(), 2);
    let tree = select(
        &ctx,
        "SELECT count(*) FROM json_tree('{\"x\":{\"y\":1}}')",
        vec![],
    )
    .await
    .unwrap();
    assert!(
        matches!(tree.rows[0][0], Value::Integer(3)),
        "{:?}",
        tree.rows
    );
    let info = select(
        &ctx,
        "SELECT name FROM pragma_table_info('t') ORDER BY cid",
        vec![],
    )
    .await
    .unwrap();
    // table_info leaves the generated column out (table_xinfo lists it).
    assert_eq!(info.rows.len(), 3, "{:?}", info.rows);
    // A table-valued PRAGMA is checked like the PRAGMA.
    let list = select(&ctx, "SELECT * FROM pragma_database_list", vec![]).await;
    assert!(matches!(list, Err(Error::Denied(_))), "{list:?}");
    // ALTER TABLE runs SQLite's internal functions.
    batch(
        &ctx,
        "ALTER TABLE t RENAME TO t2; ALTER TABLE t2 ADD COLUMN extra TEXT; \
         ALTER TABLE t2 RENAME COLUMN extra TO more; ALTER TABLE t2 DROP COLUMN more;",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn temp_objects_are_denied() {
    let (_dir, ctx) = service_with(small()).await;
    for sql in [
        "CREATE TEMP TABLE big (data BLOB)",
        "CREATE TEMPORARY TABLE big AS SELECT 1",
        "CREATE TABLE temp.big (data BLOB)",
        "CREATE TEMP VIEW v AS SELECT 1",
    ] {
        let result = run(&ctx, sql, vec![]).await;
        assert!(
            denied_naming(&result, "use a regular table"),
            "{sql}: {result:?}"
        );
    }
    let result = batch(&ctx, "CREATE TEMP TABLE big (data BLOB)").await;
    assert!(denied_naming(&result, "use a regular table"), "{result:?}");
}

#[tokio::test]
async fn values_and_results_are_bounded() {
    let (_dir, ctx) = service_with(small()).await;
    // A single value past max_value_bytes, built or bound.
    let built = select(&ctx, "SELECT zeroblob(2000000)", vec![]).await;
    assert!(matches!(built, Err(Error::LimitExceeded(_))), "{built:?}");
    let built = select(&ctx, "SELECT length(randomblob(2000000))", vec![]).await;
    assert!(matches!(built, Err(Error::LimitExceeded(_))), "{built:?}");
    batch(&ctx, "CREATE TABLE b (data BLOB)").await.unwrap();
    let bound = run(
        &ctx,
        "INSERT INTO b VALUES (?)",
        vec![Value::Blob(vec![0; 2_000_000])],
    )
    .await;
    assert!(matches!(bound, Err(Error::LimitExceeded(_))), "{bound:?}");
    // Under it, fine.
    let ok = select(&ctx, "SELECT zeroblob(900000)", vec![])
        .await
        .unwrap();
    assert!(matches!(&ok.rows[0][0], Value::Blob(b) if b.len() == 900_000));

    // Many rows under the value limit add up past max_result_bytes.
    let many = select(
        &ctx,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) \
         SELECT zeroblob(900000) FROM n",
        vec![],
    )
    .await;
    assert!(
        matches!(&many, Err(Error::LimitExceeded(m)) if m.contains("result passed")),
        "{many:?}"
    );
    // One wide row: each column gets its share of the result budget.
    let wide = select(
        &ctx,
        &format!("SELECT {}", ["zeroblob(900000)"; 8].join(", ")),
        vec![],
    )
    .await;
    // Refused as SQLite builds the row (a value past its share), not after the host holds it.
    assert!(
        matches!(&wide, Err(Error::LimitExceeded(m)) if m.contains("max_value_bytes")),
        "{wide:?}"
    );
    // The share is per statement: a narrow statement after a wide one in the same batch gets
    // the whole value limit back.
    batch(
        &ctx,
        &format!(
            "SELECT {}; SELECT length(zeroblob(900000));",
            (0..10)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .await
    .unwrap();
    // Many tiny values count too.
    let tiny = select(
        &ctx,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
             SELECT {} FROM n",
            ["NULL"; 50].join(", ")
        ),
        vec![],
    )
    .await;
    assert!(matches!(tiny, Err(Error::LimitExceeded(_))), "{tiny:?}");
    // The connection is usable afterwards, and the same limits hold inside a transaction.
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    let inside = HostTransaction::query(
        &mut view,
        rep,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) \
         SELECT zeroblob(900000) FROM n"
            .into(),
        vec![],
    )
    .await
    .unwrap();
    assert!(matches!(inside, Err(Error::LimitExceeded(_))), "{inside:?}");
    HostTransaction::rollback(&mut view, tx)
        .await
        .unwrap()
        .unwrap();
    select(&ctx, "SELECT 1", vec![]).await.unwrap();
}

// A raw `BEGIN` through `execute` must not leave the connection in a transaction for the next
// caller, nor hold the write lock.
on_backends!(a_raw_begin_does_not_outlive_its_call, small());
async fn a_raw_begin_does_not_outlive_its_call(b: Backend) {
    let ctx = b.ctx().await;
    batch(&ctx, "CREATE TABLE t (v INTEGER)").await.unwrap();
    let begin = match b.kind {
        Kind::Sqlite => "BEGIN IMMEDIATE",
        Kind::Postgres => "BEGIN",
    };
    run(&ctx, begin, vec![]).await.unwrap();
    let started = std::time::Instant::now();
    run(&ctx, "INSERT INTO t VALUES (1)", vec![]).await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1_500),
        "the write waited for a leaked transaction"
    );
    // Other connections see the write: it was committed, not kept in a leaked transaction.
    let mut seen = 0;
    for _ in 0..4 {
        let rows = select(&ctx, "SELECT count(*) FROM t", vec![])
            .await
            .unwrap();
        if let Value::Integer(n) = rows.rows[0][0] {
            seen = n;
        }
        assert_eq!(seen, 1);
    }
    // Transaction control smuggled into a host transaction or a batch leaves sqlx's own
    // bookkeeping behind; the next transaction still starts.
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    HostTransaction::execute(&mut view, rep, "COMMIT".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    let _ = HostTransaction::commit(&mut view, tx).await.unwrap();
    let _ = batch(&ctx, "COMMIT").await;
    for _ in 0..3 {
        let tx = Host::begin(&mut view).await.unwrap().unwrap();
        let rep = Resource::<Transaction>::new_own(tx.rep());
        HostTransaction::execute(&mut view, rep, "INSERT INTO t VALUES (2)".into(), vec![])
            .await
            .unwrap()
            .unwrap();
        HostTransaction::commit(&mut view, tx)
            .await
            .unwrap()
            .unwrap();
        batch(&ctx, "INSERT INTO t VALUES (3)").await.unwrap();
    }
}

/// After the database hits its size limit (SQLITE_FULL), everywhere, writes work again once
/// there is room.
#[tokio::test]
async fn a_full_database_recovers() {
    let (_dir, ctx) = service_with(small()).await;
    batch(&ctx, "CREATE TABLE f (data BLOB)").await.unwrap();
    let chunk = Value::Blob(vec![7; 100_000]);
    let mut full = None;
    for _ in 0..20 {
        if let Err(e) = run(&ctx, "INSERT INTO f VALUES (?)", vec![chunk.clone()]).await {
            full = Some(e);
            break;
        }
    }
    assert!(matches!(full, Some(Error::LimitExceeded(_))), "{full:?}");
    // Inside a transaction and a batch too.
    let mut table = ResourceTable::new();
    let mut view = DatabaseView {
        ctx: &ctx,
        table: &mut table,
    };
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    let inside = HostTransaction::execute(
        &mut view,
        rep,
        "INSERT INTO f VALUES (?)".into(),
        vec![chunk.clone()],
    )
    .await
    .unwrap();
    assert!(matches!(inside, Err(Error::LimitExceeded(_))), "{inside:?}");
    let _ = HostTransaction::commit(&mut view, tx).await.unwrap();
    let script = batch(&ctx, "INSERT INTO f SELECT data FROM f").await;
    assert!(matches!(script, Err(Error::LimitExceeded(_))), "{script:?}");
    // Room again: a small write, a batch and a transaction all work.
    run(&ctx, "DELETE FROM f", vec![]).await.unwrap();
    run(&ctx, "INSERT INTO f VALUES (x'00')", vec![])
        .await
        .unwrap();
    batch(&ctx, "INSERT INTO f VALUES (x'01')").await.unwrap();
    let tx = Host::begin(&mut view).await.unwrap().unwrap();
    let rep = Resource::<Transaction>::new_own(tx.rep());
    HostTransaction::execute(
        &mut view,
        rep,
        "INSERT INTO f VALUES (x'02')".into(),
        vec![],
    )
    .await
    .unwrap()
    .unwrap();
    HostTransaction::commit(&mut view, tx)
        .await
        .unwrap()
        .unwrap();
    let rows = select(&ctx, "SELECT count(*) FROM f", vec![])
        .await
        .unwrap();
    assert!(
        matches!(rows.rows[0][0], Value::Integer(3)),
        "{:?}",
        rows.rows
    );
}

#[path = "postgres_tests.rs"]
mod postgres_tests;

// The packets shard's schema and the shapes of its queries, on every engine: its SQL is the
// portable dialect (read from its source, so this follows it).
on_backends!(the_packets_shard_sql_is_portable);
async fn the_packets_shard_sql_is_portable(b: Backend) {
    let source = include_str!("../../../../shards/packets/src/store.rs");
    let start = source.find("const SCHEMA: &str = \"").unwrap() + "const SCHEMA: &str = \"".len();
    let schema = &source[start..start + source[start..].find("\";").unwrap()];
    let ctx = b.ctx().await;
    ensure(&ctx, 1, schema).await.unwrap();
    let text = |s: &str| Value::Text(s.into());
    run(
        &ctx,
        "INSERT INTO arkham_packets (id, name, description, status, visibility, created_by, \
         created_at, updated_at, version, contents_count, size_bytes, checksum, metadata) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            text("p1"),
            text("Big_Report"),
            text(""),
            text("draft"),
            text("private"),
            text("me"),
            text("2026-01-01T00:00:00Z"),
            text("2026-01-01T00:00:00Z"),
            Value::Integer(1),
            Value::Integer(0),
            Value::Integer(5_000_000_000),
            Value::Null,
            text("{}"),
        ],
    )
    .await
    .unwrap();
    let found = select(
        &ctx,
        "SELECT id, size_bytes FROM arkham_packets WHERE status <> ? AND LOWER(name) LIKE ? \
         ESCAPE '\\' ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
        vec![
            text("archived"),
            text("%g\\_r%"),
            Value::Integer(10),
            Value::Integer(0),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        format!("{:?}", found.rows),
        r#"[[Value::Text("p1"), Value::Integer(5000000000)]]"#
    );
    let max = select(
        &ctx,
        "SELECT MAX(order_num) AS n FROM arkham_packet_contents WHERE packet_id = ?",
        vec![text("p1")],
    )
    .await
    .unwrap();
    assert_eq!(format!("{:?}", max.rows), "[[Value::Null]]");
    let counts = select(
        &ctx,
        "SELECT status, COUNT(*) AS n FROM arkham_packets GROUP BY status",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        format!("{:?}", counts.rows),
        r#"[[Value::Text("draft"), Value::Integer(1)]]"#
    );
}
