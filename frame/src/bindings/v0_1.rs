//! `arkham:shard@0.1.0`, the package before 0.2.0, which the frame still runs.
//!
//! Components built against 0.1.0 import its interfaces under their 0.1.0 names and export its
//! handlers, and the component model matches variants case for case: 0.2.0's storage `error`,
//! with its added `denied`, cannot satisfy a 0.1.0 import. So the frozen 0.1.0 WIT
//! (`frame/wit/arkham-shard-0.1.0`) gets bindings of its own, linked next to the current ones.
//!
//! Every 0.1.0 function is the current one with its arguments and results converted: the
//! services have one implementation, and the conversions below are where the versions differ.
//! The only difference today: a storage call refused as `denied` reads as `io` in 0.1.0, which is
//! what 0.1.0 always answered.

wasmtime::component::bindgen!({
    path: "wit/arkham-shard-0.1.0",
    world: "arkham:shard/buffered-shard",
    imports: { default: async | trappable },
    exports: { default: async },
    require_store_data_send: true,
    with: {
        // The same host resource as the current version's: a transaction is a transaction.
        "arkham:shard/database.transaction": crate::services::database::Transaction,
    },
});

use crate::bindings as now;
use crate::services::database::{self as db_service, DatabaseView, Transaction};
use crate::services::events::{self as events_service, EventsView};
use crate::services::logging::{self as logging_service, LoggingView};
use crate::services::storage::{self as storage_service, StorageView};
use arkham::shard::{database, events, logging, storage};
pub use exports::arkham::shard::{event_handler, http_handler};
use wasmtime::component::{Linker, Resource};

/// Adds the four 0.1.0 service interfaces to `linker`, on the same store views as the current
/// ones (so the same grants, quotas and limits apply to both).
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    database: fn(&mut T) -> DatabaseView<'_>,
    events: fn(&mut T) -> EventsView<'_>,
    storage: fn(&mut T) -> StorageView<'_>,
    logging: fn(&mut T) -> LoggingView<'_>,
) -> wasmtime::Result<()> {
    database::add_to_linker::<T, db_service::Database>(linker, database)?;
    events::add_to_linker::<T, events_service::Events>(linker, events)?;
    storage::add_to_linker::<T, storage_service::Storage>(linker, storage)?;
    logging::add_to_linker::<T, logging_service::Logging>(linker, logging)?;
    Ok(())
}

// ---- database: identical types in both versions ----

impl From<database::Value> for now::database::Value {
    fn from(value: database::Value) -> Self {
        match value {
            database::Value::Null => Self::Null,
            database::Value::Integer(i) => Self::Integer(i),
            database::Value::Real(r) => Self::Real(r),
            database::Value::Text(t) => Self::Text(t),
            database::Value::Blob(b) => Self::Blob(b),
        }
    }
}

impl From<now::database::Value> for database::Value {
    fn from(value: now::database::Value) -> Self {
        match value {
            now::database::Value::Null => Self::Null,
            now::database::Value::Integer(i) => Self::Integer(i),
            now::database::Value::Real(r) => Self::Real(r),
            now::database::Value::Text(t) => Self::Text(t),
            now::database::Value::Blob(b) => Self::Blob(b),
        }
    }
}

impl From<now::database::Rows> for database::Rows {
    fn from(rows: now::database::Rows) -> Self {
        Self {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(Into::into).collect())
                .collect(),
        }
    }
}

impl From<now::database::Error> for database::Error {
    fn from(error: now::database::Error) -> Self {
        use now::database::Error as E;
        match error {
            E::InvalidSql(m) => Self::InvalidSql(m),
            E::Constraint(m) => Self::Constraint(m),
            E::Denied(m) => Self::Denied(m),
            E::Busy(m) => Self::Busy(m),
            E::LimitExceeded(m) => Self::LimitExceeded(m),
            E::TransactionClosed => Self::TransactionClosed,
            E::Other(m) => Self::Other(m),
        }
    }
}

fn params(params: Vec<database::Value>) -> Vec<now::database::Value> {
    params.into_iter().map(Into::into).collect()
}

/// A current result as its 0.1.0 counterpart.
fn then<T, U: From<T>, E, F: From<E>>(
    result: wasmtime::Result<Result<T, E>>,
) -> wasmtime::Result<Result<U, F>> {
    result.map(|r| r.map(U::from).map_err(F::from))
}

impl database::Host for DatabaseView<'_> {
    async fn execute(
        &mut self,
        sql: String,
        values: Vec<database::Value>,
    ) -> wasmtime::Result<Result<u64, database::Error>> {
        then(now::database::Host::execute(self, sql, params(values)).await)
    }

    async fn query(
        &mut self,
        sql: String,
        values: Vec<database::Value>,
    ) -> wasmtime::Result<Result<database::Rows, database::Error>> {
        then(now::database::Host::query(self, sql, params(values)).await)
    }

    async fn execute_batch(
        &mut self,
        sql: String,
    ) -> wasmtime::Result<Result<(), database::Error>> {
        then(now::database::Host::execute_batch(self, sql).await)
    }

    async fn ensure_schema(
        &mut self,
        version: i64,
        script: String,
    ) -> wasmtime::Result<Result<(), database::Error>> {
        then(now::database::Host::ensure_schema(self, version, script).await)
    }

    async fn begin(&mut self) -> wasmtime::Result<Result<Resource<Transaction>, database::Error>> {
        then(now::database::Host::begin(self).await)
    }
}

impl database::HostTransaction for DatabaseView<'_> {
    async fn execute(
        &mut self,
        tx: Resource<Transaction>,
        sql: String,
        values: Vec<database::Value>,
    ) -> wasmtime::Result<Result<u64, database::Error>> {
        then(now::database::HostTransaction::execute(self, tx, sql, params(values)).await)
    }

    async fn query(
        &mut self,
        tx: Resource<Transaction>,
        sql: String,
        values: Vec<database::Value>,
    ) -> wasmtime::Result<Result<database::Rows, database::Error>> {
        then(now::database::HostTransaction::query(self, tx, sql, params(values)).await)
    }

    async fn commit(
        &mut self,
        tx: Resource<Transaction>,
    ) -> wasmtime::Result<Result<(), database::Error>> {
        then(now::database::HostTransaction::commit(self, tx).await)
    }

    async fn rollback(
        &mut self,
        tx: Resource<Transaction>,
    ) -> wasmtime::Result<Result<(), database::Error>> {
        then(now::database::HostTransaction::rollback(self, tx).await)
    }

    async fn drop(&mut self, tx: Resource<Transaction>) -> wasmtime::Result<()> {
        now::database::HostTransaction::drop(self, tx).await
    }
}

// ---- events, logging: identical types ----

impl From<now::events::Error> for events::Error {
    fn from(error: now::events::Error) -> Self {
        use now::events::Error as E;
        match error {
            E::InvalidName(m) => Self::InvalidName(m),
            E::Denied(m) => Self::Denied(m),
            E::LimitExceeded(m) => Self::LimitExceeded(m),
            E::Other(m) => Self::Other(m),
        }
    }
}

impl events::Host for EventsView<'_> {
    async fn publish(
        &mut self,
        name: String,
        payload: String,
    ) -> wasmtime::Result<Result<(), events::Error>> {
        then(now::events::Host::publish(self, name, payload).await)
    }
}

impl From<logging::Level> for now::logging::Level {
    fn from(level: logging::Level) -> Self {
        match level {
            logging::Level::Trace => Self::Trace,
            logging::Level::Debug => Self::Debug,
            logging::Level::Info => Self::Info,
            logging::Level::Warn => Self::Warn,
            logging::Level::Error => Self::Error,
        }
    }
}

impl logging::Host for LoggingView<'_> {
    async fn log(&mut self, level: logging::Level, message: String) -> wasmtime::Result<()> {
        now::logging::Host::log(self, level.into(), message).await
    }
}

// ---- storage: 0.1.0 has no `denied` ----

impl From<now::storage::ObjectInfo> for storage::ObjectInfo {
    fn from(info: now::storage::ObjectInfo) -> Self {
        Self {
            key: info.key,
            size: info.size,
            content_type: info.content_type,
            modified_at: info.modified_at,
        }
    }
}

impl From<now::storage::Object> for storage::Object {
    fn from(object: now::storage::Object) -> Self {
        Self {
            info: object.info.into(),
            data: object.data,
        }
    }
}

impl From<now::storage::Error> for storage::Error {
    fn from(error: now::storage::Error) -> Self {
        use now::storage::Error as E;
        match error {
            E::InvalidKey(m) => Self::InvalidKey(m),
            E::LimitExceeded(m) => Self::LimitExceeded(m),
            // 0.1.0 reported an ungranted call as `io`, with the same message.
            E::Denied(m) | E::Io(m) => Self::Io(m),
        }
    }
}

/// A current `option` result as its 0.1.0 counterpart.
fn then_option<T, U: From<T>>(
    result: wasmtime::Result<Result<Option<T>, now::storage::Error>>,
) -> wasmtime::Result<Result<Option<U>, storage::Error>> {
    result.map(|r| r.map(|o| o.map(U::from)).map_err(Into::into))
}

impl storage::Host for StorageView<'_> {
    async fn put(
        &mut self,
        key: String,
        data: Vec<u8>,
        content_type: String,
    ) -> wasmtime::Result<Result<storage::ObjectInfo, storage::Error>> {
        then(now::storage::Host::put(self, key, data, content_type).await)
    }

    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<storage::Object>, storage::Error>> {
        then_option(now::storage::Host::get(self, key).await)
    }

    async fn stat(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<storage::ObjectInfo>, storage::Error>> {
        then_option(now::storage::Host::stat(self, key).await)
    }

    async fn exists(&mut self, key: String) -> wasmtime::Result<Result<bool, storage::Error>> {
        then(now::storage::Host::exists(self, key).await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, storage::Error>> {
        then(now::storage::Host::delete(self, key).await)
    }

    async fn list(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<storage::ObjectInfo>, storage::Error>> {
        now::storage::Host::list(self, prefix).await.map(|r| {
            r.map(|infos| infos.into_iter().map(Into::into).collect())
                .map_err(Into::into)
        })
    }
}

// ---- exports: identical types ----

impl From<now::http_handler::Request> for http_handler::Request {
    fn from(request: now::http_handler::Request) -> Self {
        Self {
            method: request.method,
            path_with_query: request.path_with_query,
            headers: request.headers,
            body: request.body,
        }
    }
}

impl From<http_handler::Response> for now::http_handler::Response {
    fn from(response: http_handler::Response) -> Self {
        Self {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }
}

impl From<now::event_handler::Event> for event_handler::Event {
    fn from(event: now::event_handler::Event) -> Self {
        Self {
            id: event.id,
            name: event.name,
            source: event.source,
            payload: event.payload,
            published_at: event.published_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_storage_call_reads_as_io_in_0_1() {
        let converted: storage::Error = now::storage::Error::Denied("not granted".into()).into();
        assert!(matches!(converted, storage::Error::Io(m) if m == "not granted"));
        let converted: storage::Error = now::storage::Error::LimitExceeded("full".into()).into();
        assert!(matches!(converted, storage::Error::LimitExceeded(m) if m == "full"));
    }
}
