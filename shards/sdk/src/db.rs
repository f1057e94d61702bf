//! The shard's own SQL database (manifest service `database`).
//!
//! Keep to the SQL that SQLite and PostgreSQL share: `?` placeholders, INTEGER/REAL/TEXT/BLOB,
//! timestamps as ISO-8601 TEXT, booleans as 0/1, one statement per [`execute`]/[`query`].
//!
//! ```no_run
//! use arkham_shard_sdk::{db, params};
//!
//! # fn demo() -> Result<(), db::Error> {
//! db::execute("INSERT INTO notes (id, body) VALUES (?, ?)", params!["n1", "hello"])?;
//! for row in db::query("SELECT id, body FROM notes ORDER BY id", params![])? {
//!     let id: String = row.get("id")?;
//!     let body: Option<String> = row.get("body")?;
//! }
//! # Ok(())
//! # }
//! ```

use std::rc::Rc;

use crate::bindings::arkham::shard::database as raw;

pub use raw::{Error, Value};

/// Runs one statement that returns no rows and returns how many rows it changed.
pub fn execute(sql: &str, params: &[Value]) -> Result<u64, Error> {
    raw::execute(sql, params)
}

/// Runs one statement that returns rows (a SELECT, or a write with RETURNING).
pub fn query(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    raw::query(sql, params).map(Rows::from)
}

/// Runs a query and returns its first row, if any.
pub fn query_opt(sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
    query(sql, params).map(|rows| rows.into_iter().next())
}

/// Runs a `;`-separated script without parameters, atomically (schema set-up, migrations).
pub fn execute_batch(sql: &str) -> Result<(), Error> {
    raw::execute_batch(sql)
}

/// Starts a transaction; see [`Transaction`].
pub fn begin() -> Result<Transaction, Error> {
    raw::begin().map(|inner| Transaction { inner })
}

/// Brings the schema up to `version` by running `script` once, at no cost on every later call.
///
/// When the database records no version or an older one, the host runs `script` together with
/// the version update as one atomic batch, one caller at a time; the version lives in a table
/// `arkham_schema` (one row). `script` must work both on a new database and on one at any older
/// version: `CREATE TABLE IF NOT EXISTS ...`, then migrations appended as `version` grows. The
/// host remembers the version in place, so once it is current this runs no SQL at all: meant for
/// the start of every request, since every request runs in a fresh instance.
pub fn ensure_schema(version: i64, script: &str) -> Result<(), Error> {
    raw::ensure_schema(version, script)
}

/// Something that runs statements: [`Autocommit`] (each statement on its own) or a
/// [`Transaction`]. Lets data-access code serve both.
pub trait Executor {
    /// Runs one statement that returns no rows; see [`execute`].
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error>;

    /// Runs one statement that returns rows; see [`query`].
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error>;

    /// The first row of a query, if any; see [`query_opt`].
    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        self.query(sql, params).map(|rows| rows.into_iter().next())
    }
}

/// Runs every statement on its own, outside any transaction (the free functions of this module).
#[derive(Debug, Clone, Copy, Default)]
pub struct Autocommit;

impl Executor for Autocommit {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        execute(sql, params)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        query(sql, params)
    }
}

impl Executor for Transaction {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        self.inner.execute(sql, params)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        self.inner.query(sql, params).map(Rows::from)
    }
}

/// A database transaction. Writers are serialised: it takes the write lock when it starts.
/// Dropping it without [`commit`](Transaction::commit) rolls it back, so `?` inside a
/// transaction is safe.
#[derive(Debug)]
pub struct Transaction {
    inner: raw::Transaction,
}

impl Transaction {
    /// Like [`execute`], inside this transaction.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        self.inner.execute(sql, params)
    }

    /// Like [`query`], inside this transaction.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        self.inner.query(sql, params).map(Rows::from)
    }

    /// Like [`query_opt`], inside this transaction.
    pub fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        self.query(sql, params).map(|rows| rows.into_iter().next())
    }

    /// Makes every write durable and visible.
    pub fn commit(self) -> Result<(), Error> {
        raw::Transaction::commit(self.inner)
    }

    /// Discards every write.
    pub fn rollback(self) -> Result<(), Error> {
        raw::Transaction::rollback(self.inner)
    }
}

/// The rows of a query. Iterate it to get [`Row`]s.
#[derive(Debug, Clone)]
pub struct Rows {
    columns: Rc<[String]>,
    rows: Vec<Vec<Value>>,
}

impl From<raw::Rows> for Rows {
    fn from(rows: raw::Rows) -> Self {
        Self {
            columns: rows.columns.into(),
            rows: rows.rows,
        }
    }
}

impl Rows {
    /// Column names in select order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Converts every row with `f`, stopping at the first error.
    pub fn map<T, E>(self, f: impl FnMut(Row) -> Result<T, E>) -> Result<Vec<T>, E> {
        self.into_iter().map(f).collect()
    }
}

impl IntoIterator for Rows {
    type Item = Row;
    type IntoIter = RowsIter;

    fn into_iter(self) -> RowsIter {
        RowsIter {
            columns: self.columns,
            rows: self.rows.into_iter(),
        }
    }
}

/// Iterator over the [`Row`]s of [`Rows`].
#[derive(Debug)]
pub struct RowsIter {
    columns: Rc<[String]>,
    rows: std::vec::IntoIter<Vec<Value>>,
}

impl Iterator for RowsIter {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        self.rows.next().map(|values| Row {
            columns: Rc::clone(&self.columns),
            values,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

/// One row of a query, readable by column name.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Rc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of `column` converted to `T`. Column names compare ASCII case-insensitively,
    /// since PostgreSQL folds unquoted names to lowercase. A missing column or a value of the
    /// wrong type is an [`Error::Other`] naming the column.
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T, Error> {
        let value = self
            .value(column)
            .ok_or_else(|| Error::Other(format!("the query has no column `{column}`")))?;
        T::from_value(value)
            .map_err(|problem| Error::Other(format!("column `{column}`: {problem}")))
    }

    /// The raw value of `column`, if the query has it.
    pub fn value(&self, column: &str) -> Option<&Value> {
        self.columns
            .iter()
            .position(|name| name.eq_ignore_ascii_case(column))
            .and_then(|index| self.values.get(index))
    }

    /// Column names in select order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The values, lined up with [`Row::columns`].
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Takes the values out of the row.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

/// Conversion from a column [`Value`]; the error says what was found instead.
pub trait FromValue: Sized {
    /// Converts `value`, or describes why it cannot.
    fn from_value(value: &Value) -> Result<Self, String>;
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(n) => Ok(*n),
            other => Err(format!("expected an integer, found {}", kind(other))),
        }
    }
}

macro_rules! from_value_via_i64 {
    ($($ty:ty),*) => {$(
        impl FromValue for $ty {
            fn from_value(value: &Value) -> Result<Self, String> {
                let n = i64::from_value(value)?;
                <$ty>::try_from(n).map_err(|_| format!("{n} does not fit in {}", stringify!($ty)))
            }
        }
    )*};
}

from_value_via_i64!(i32, u32, u64, usize);

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(x) => Ok(*x),
            // Engines hand back whole REAL values as integers at times.
            Value::Integer(n) => Ok(*n as f64),
            other => Err(format!("expected a real, found {}", kind(other))),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(n) => Ok(*n != 0),
            other => Err(format!("expected an integer 0/1, found {}", kind(other))),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(format!("expected text, found {}", kind(other))),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(bytes) => Ok(bytes.clone()),
            Value::Text(text) => Ok(text.clone().into_bytes()),
            other => Err(format!("expected a blob, found {}", kind(other))),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Integer(n.into())
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Integer(n.into())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Integer(i64::from(b))
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Real(x)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::Text(text.clone())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Value::Blob(bytes)
    }
}

impl From<&[u8]> for Value {
    fn from(bytes: &[u8]) -> Self {
        Value::Blob(bytes.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

impl Error {
    /// The variant's name in snake_case, e.g. `"busy"`, for error codes.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidSql(_) => "invalid_sql",
            Error::Constraint(_) => "constraint",
            Error::Denied(_) => "denied",
            Error::Busy(_) => "busy",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::TransactionClosed => "transaction_closed",
            Error::Other(_) => "other",
        }
    }

    /// The frame's message (or a description, for `transaction_closed`).
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidSql(message)
            | Error::Constraint(message)
            | Error::Denied(message)
            | Error::Busy(message)
            | Error::LimitExceeded(message)
            | Error::Other(message) => message,
            Error::TransactionClosed => "the transaction was already committed or rolled back",
        }
    }
}
