//! The two backend sets every behaviour test that matters runs against: the embedded defaults
//! (SQLite, the frame's own event log, local files) and the engines (PostgreSQL for databases,
//! NATS JetStream for events and storage).
//!
//! A test takes a [`Backends`] and gets its data dir from [`Backends::data_dir`]; the
//! [`on_both_backends!`](crate::on_both_backends) macro runs it once per set, as
//! `…::embedded` and `…::engines`. On the engines, each data dir gets a fresh database in the
//! run's PostgreSQL cluster and its own nats-server, which live as long as the [`Data`].

use std::path::Path;
use test_shards::engines::{Nats, Postgres};

/// Which engines answer the shards' WIT calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// SQLite files, the frame's own event log, local files: the zero-configuration default.
    Embedded,
    /// PostgreSQL for `database`, NATS JetStream for `events` and `storage`.
    Engines,
}

/// A data dir and the engines its frame uses; they stop when it is dropped.
pub struct Data {
    dir: tempfile::TempDir,
    /// The NATS server of the engines set (restartable by the test).
    pub nats: Option<Nats>,
    /// The superuser URL of this data dir's PostgreSQL database.
    pub postgres_url: Option<String>,
    /// The PostgreSQL cluster of this data dir alone, when it has one (restartable by the
    /// test); else its database is in the run's shared cluster.
    pub own_postgres: Option<Postgres>,
}

impl Data {
    /// The data dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The NATS server; panics on the embedded set.
    pub fn nats(&mut self) -> &mut Nats {
        self.nats.as_mut().unwrap()
    }

    /// Runs `sql` on this data dir's PostgreSQL database as the superuser.
    pub fn psql(&self, sql: &str) -> String {
        let url = self.postgres_url.as_ref().unwrap();
        let database = url.rsplit('/').next().unwrap();
        match &self.own_postgres {
            Some(own) => own.psql(database, sql),
            None => Postgres::shared().unwrap().psql(database, sql),
        }
    }

    /// This data dir's own PostgreSQL cluster; panics if its database is in the shared one.
    pub fn own_postgres(&self) -> &Postgres {
        self.own_postgres.as_ref().unwrap()
    }
}

/// The engines set with a PostgreSQL cluster of the data dir's own, which the test may stop
/// and start again (restarting the run's shared cluster would fail the tests running beside
/// it); `None` when an engine is not installed (a panic under `CI=true`).
pub fn engines_with_own_postgres(label: &str, config: &str) -> Option<Data> {
    let own = Postgres::private()?;
    let mut data = Backends::data_dir_on(label, config, &own)?;
    data.own_postgres = Some(own);
    Some(data)
}

impl Backends {
    /// A fresh data dir whose arkham.toml is `config` with this set's backend settings merged
    /// in; `None` when an engine is not installed (a panic under `CI=true`, from the engines).
    pub fn data_dir(self, label: &str, config: &str) -> Option<Data> {
        match self {
            Backends::Embedded => Some(write_data_dir(config.parse().unwrap(), None, None)),
            Backends::Engines => Self::data_dir_on(label, config, Postgres::shared()?),
        }
    }

    /// [`data_dir`](Self::data_dir) of the engines set, its database in `postgres`.
    fn data_dir_on(label: &str, config: &str, postgres: &Postgres) -> Option<Data> {
        let mut table: toml::Table = config.parse().unwrap();
        let nats = Nats::start()?;
        let url = postgres.database(label);
        set(&mut table, "database", "backend", "postgres");
        set(&mut table, "database", "url", &url);
        set(&mut table, "events", "backend", "nats");
        set(&mut table, "storage", "backend", "nats");
        set(&mut table, "nats", "url", &nats.url());
        Some(write_data_dir(table, Some(nats), Some(url)))
    }
}

fn write_data_dir(table: toml::Table, nats: Option<Nats>, postgres_url: Option<String>) -> Data {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("arkham.toml"), table.to_string()).unwrap();
    Data {
        dir,
        nats,
        postgres_url,
        own_postgres: None,
    }
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: &str) {
    let entry = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(section) = entry {
        section.insert(key.to_string(), toml::Value::String(value.to_string()));
    }
}

/// Runs each `async fn NAME(backends: Backends)` of the calling module on both backend sets, as
/// the tests `NAME::embedded` and `NAME::engines`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn embedded() {
                    super::$name($crate::backends::Backends::Embedded).await
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn engines() {
                    super::$name($crate::backends::Backends::Engines).await
                }
            }
        )*
    };
}
