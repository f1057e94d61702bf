//! The frame's own connection to PostgreSQL: the frame schema, and a role and schema per shard.
//!
//! `arkham_frame.shards` (no grants to anyone) keeps each shard's role name and random password,
//! so that several frames on one database share them; creating or updating a shard's role runs
//! under an advisory lock keyed by the shard. See `postgres.rs` for how the shard's calls run.

use super::pg_sql::{self, ident};
use super::postgres::PgDatabase;
use super::{DatabaseConfig, DatabaseServiceError};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Executor};
use std::time::Duration;

/// The server-side large-object functions that create objects, revoked from PUBLIC.
const LARGE_OBJECTS: &str = "REVOKE EXECUTE ON FUNCTION pg_catalog.lo_create(oid), \
     pg_catalog.lo_creat(integer), pg_catalog.lo_from_bytea(oid, bytea), \
     pg_catalog.lo_import(text), pg_catalog.lo_import(text, oid), pg_catalog.lo_put(oid, bigint, bytea), \
     pg_catalog.lowrite(integer, bytea) FROM PUBLIC";

/// The frame's connection to PostgreSQL: bootstraps the frame schema and opens shards.
#[derive(Clone)]
pub(super) struct PgCluster {
    admin: PgPool,
    options: PgConnectOptions,
    database: String,
    /// `host:port/database`, for messages (never the password).
    target: String,
}

/// Where `url` points, without the password.
fn target_of(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

impl PgCluster {
    /// Connects as the frame and makes sure the frame schema exists and that PUBLIC has no
    /// right on the database or its `public` schema.
    pub(super) async fn connect(url: &str) -> Result<Self, DatabaseServiceError> {
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            DatabaseServiceError::Url {
                // sqlx's message quotes no part of the URL.
                reason: e.to_string(),
            }
        })?;
        // sqlx logs statements (slow ones as warnings): the frame's include passwords, and a
        // shard's slow ones would flood the log with the shard's own SQL.
        let options = options.disable_statement_logging();
        let target = target_of(&options);
        let admin = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|source| DatabaseServiceError::Connect {
                target: target.clone(),
                source,
            })?;
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&admin)
            .await
            .map_err(|source| DatabaseServiceError::Connect {
                target: target.clone(),
                source,
            })?;
        let cluster = Self {
            admin,
            options,
            database,
            target,
        };
        cluster
            .bootstrap()
            .await
            .map_err(|source| DatabaseServiceError::Bootstrap {
                target: cluster.target.clone(),
                source,
            })?;
        Ok(cluster)
    }

    async fn bootstrap(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.admin.begin().await?;
        // Frames starting together on one database take turns.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('arkham_frame'))")
            .execute(&mut *tx)
            .await?;
        let db = ident(&self.database);
        let script = format!(
            "CREATE SCHEMA IF NOT EXISTS arkham_frame;
             REVOKE ALL ON SCHEMA arkham_frame FROM PUBLIC;
             CREATE TABLE IF NOT EXISTS arkham_frame.shards (
                 shard TEXT PRIMARY KEY, role TEXT NOT NULL, schema TEXT NOT NULL,
                 password TEXT NOT NULL);
             REVOKE ALL ON arkham_frame.shards FROM PUBLIC;
             REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;
             REVOKE ALL ON SCHEMA public FROM PUBLIC;"
        );
        tx.execute(sqlx::raw_sql(AssertSqlSafe(script))).await?;
        // Large objects live outside every schema, so they would escape the size quota. Only
        // the functions' owner (a superuser) can revoke them; without that right the frame
        // still starts, and says so.
        tx.execute("SAVEPOINT large_objects").await?;
        if let Err(e) = tx.execute(sqlx::raw_sql(LARGE_OBJECTS)).await {
            tx.execute("ROLLBACK TO SAVEPOINT large_objects").await?;
            tracing::warn!(
                target = %self.target,
                error = %e,
                "cannot revoke the large-object functions from PUBLIC (needs a superuser): \
                 shards can store large objects outside their size quota"
            );
        }
        tx.commit().await
    }

    /// Closes the frame's connections.
    pub(super) async fn close(&self) {
        self.admin.close().await;
    }

    /// Creates (or updates) the role and schema of `shard` and opens its connections.
    pub(super) async fn open(
        &self,
        shard: &str,
        config: &DatabaseConfig,
    ) -> Result<PgDatabase, DatabaseServiceError> {
        let failed = |source| DatabaseServiceError::Prepare {
            shard: shard.to_string(),
            target: self.target.clone(),
            source,
        };
        let (role, schema, password) = self.provision(shard, config).await.map_err(failed)?;
        let options = self
            .options
            .clone()
            .username(&role)
            .password(&password)
            .application_name(&format!("arkham shard {shard}"));
        Ok(PgDatabase::new(
            shard,
            schema,
            options,
            self.admin.clone(),
            config,
        ))
    }

    /// Drops the schema and role of `shard` and forgets them, under the shard's provisioning
    /// lock. A frame still serving the shard loses its database: purge after removing it.
    pub(super) async fn purge(&self, shard: &str) -> Result<(), DatabaseServiceError> {
        let failed = |source| DatabaseServiceError::Prepare {
            shard: shard.to_string(),
            target: self.target.clone(),
            source,
        };
        let purge = async {
            let mut tx = self.admin.begin().await?;
            lock_database(&mut tx, shard).await?;
            let known: Option<(String, String)> = sqlx::query_as(
                "DELETE FROM arkham_frame.shards WHERE shard = $1 RETURNING role, schema",
            )
            .bind(shard)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((role, schema)) = known {
                let (r, s) = (ident(&role), ident(&schema));
                // The shard's sessions end first: a role with connections cannot be dropped.
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                )
                .bind(&role)
                .execute(&mut *tx)
                .await?;
                let script = format!(
                    "DROP SCHEMA IF EXISTS {s} CASCADE;
                     DROP OWNED BY {r};
                     DROP ROLE IF EXISTS {r};"
                );
                tx.execute(sqlx::raw_sql(AssertSqlSafe(script))).await?;
            }
            tx.commit().await
        };
        purge.await.map_err(failed)
    }

    /// The role, schema and password of `shard`, created on first use and brought in line with
    /// `config` every time, under a lock so that frames sharing the database agree.
    async fn provision(
        &self,
        shard: &str,
        config: &DatabaseConfig,
    ) -> Result<(String, String, String), sqlx::Error> {
        let mut tx = self.admin.begin().await?;
        lock_database(&mut tx, shard).await?;
        let known: Option<(String, String, String)> = sqlx::query_as(
            "SELECT role, schema, password FROM arkham_frame.shards WHERE shard = $1",
        )
        .bind(shard)
        .fetch_optional(&mut *tx)
        .await?;
        let (role, schema, password) = match known {
            Some(known) => known,
            None => {
                let bytes: [u8; 24] = rand::rng().random();
                let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let role = pg_sql::role_name(&self.database, shard);
                let schema = pg_sql::schema_name(shard);
                sqlx::query(
                    "INSERT INTO arkham_frame.shards (shard, role, schema, password) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(shard)
                .bind(&role)
                .bind(&schema)
                .bind(&password)
                .execute(&mut *tx)
                .await?;
                (role, schema, password)
            }
        };
        // Interpolated into CREATE/ALTER ROLE below (DDL takes no parameters): only ever hex.
        if password.is_empty() || !password.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(sqlx::Error::Protocol(format!(
                "the password of shard `{shard}` in arkham_frame.shards is not the frame's \
                 (hex); delete its row to have a new one made"
            )));
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&role)
                .fetch_one(&mut *tx)
                .await?;
        let (r, s, db) = (ident(&role), ident(&schema), ident(&self.database));
        // The password is hex and the limits numbers: nothing here needs escaping but names.
        // Only a superuser may name SUPERUSER, REPLICATION or BYPASSRLS in an ALTER ROLE (even
        // to deny them), and the frame's role need not be one: an existing role gets the rest,
        // and is checked below to have none of them.
        // Every frame of a deployment opens the shard's database with its own pool: the role
        // may hold each one's, plus two for a frame restarting while its old connections close.
        let limits = format!(
            "LOGIN NOINHERIT CONNECTION LIMIT {} PASSWORD '{password}'",
            config
                .max_connections
                .saturating_mul(config.frames.max(1))
                .saturating_add(2)
        );
        let attributes = if exists {
            limits
        } else {
            format!("{limits} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
        };
        let script = format!(
            "{} ROLE {r} {attributes};
             -- CREATE SCHEMA … AUTHORIZATION needs the frame to be a member of the role.
             GRANT {r} TO CURRENT_USER;
             CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {r};
             ALTER SCHEMA {s} OWNER TO {r};
             REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
             GRANT CONNECT ON DATABASE {db} TO {r};
             ALTER ROLE {r} SET search_path = {s};
             ALTER ROLE {r} SET statement_timeout = {};",
            if exists { "ALTER" } else { "CREATE" },
            config.statement_timeout_ms.max(1),
        );
        tx.execute(sqlx::raw_sql(AssertSqlSafe(script))).await?;
        let (powerful,): (bool,) = sqlx::query_as(
            "SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls \
             FROM pg_roles WHERE rolname = $1",
        )
        .bind(&role)
        .fetch_one(&mut *tx)
        .await?;
        if powerful {
            return Err(sqlx::Error::Protocol(format!(
                "the role `{role}` of shard `{shard}` has been given SUPERUSER, CREATEDB, \
                 CREATEROLE, REPLICATION or BYPASSRLS; a shard's role must have none (ALTER ROLE \
                 it back as a superuser)"
            )));
        }
        tx.commit().await?;
        Ok((role, schema, password))
    }
}

/// Takes, for the rest of `tx`, the lock every frame on the database takes to change roles and
/// grants (so that frames starting together, or provisioning and purging at once, never update
/// the database's ACL concurrently: PostgreSQL fails one with "tuple concurrently updated"),
/// then the lock of `shard`. Always in that order, so no two frames deadlock.
async fn lock_database(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    shard: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('arkham_frame'))")
        .execute(&mut **tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('arkham_frame'), hashtext($1))")
        .bind(shard)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
