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
///
/// ```no_run
/// use arkham_shard_sdk::{db, params};
///
/// let changed = db::execute("UPDATE notes SET body = ? WHERE id = ?", params!["new", "n1"])?;
/// assert!(changed <= 1);
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
pub fn execute(sql: &str, params: &[Value]) -> Result<u64, Error> {
    raw::execute(sql, params)
}

/// Runs one statement that returns rows (a SELECT, or a write with RETURNING).
///
/// ```no_run
/// use arkham_shard_sdk::{db, params};
///
/// let titles: Vec<String> = db::query("SELECT title FROM notes WHERE done = ?", params![false])?
///     .map(|row| row.get("title"))?;
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
pub fn query(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    raw::query(sql, params).map(Rows::from)
}

/// Runs a query and returns its first row, if any.
///
/// ```no_run
/// use arkham_shard_sdk::{db, params};
///
/// let body: Option<String> = db::query_opt("SELECT body FROM notes WHERE id = ?", params!["n1"])?
///     .map(|row| row.get("body"))
///     .transpose()?;
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
pub fn query_opt(sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
    query(sql, params).map(|rows| rows.into_iter().next())
}

/// Runs a `;`-separated script without parameters, atomically (schema set-up, migrations).
///
/// ```no_run
/// use arkham_shard_sdk::db;
///
/// db::execute_batch("DELETE FROM drafts; UPDATE stats SET drafts = 0")?;
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
pub fn execute_batch(sql: &str) -> Result<(), Error> {
    raw::execute_batch(sql)
}

/// Starts a transaction; see [`Transaction`].
///
/// ```no_run
/// use arkham_shard_sdk::{db, params};
///
/// let tx = db::begin()?;
/// tx.execute("UPDATE accounts SET balance = balance - 5 WHERE id = ?", params!["a"])?;
/// tx.execute("UPDATE accounts SET balance = balance + 5 WHERE id = ?", params!["b"])?;
/// tx.commit()?;
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
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
///
/// ```no_run
/// use arkham_shard_sdk::db;
///
/// // Version 2 added the index; the script as a whole stays safe to run at any older version.
/// db::ensure_schema(
///     2,
///     "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, body TEXT);
///      CREATE INDEX IF NOT EXISTS notes_by_body ON notes (body);",
/// )?;
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
pub fn ensure_schema(version: i64, script: &str) -> Result<(), Error> {
    raw::ensure_schema(version, script)
}

/// Something that runs statements: [`Autocommit`] (each statement on its own) or a
/// [`Transaction`]. Lets data-access code serve both.
///
/// ```no_run
/// use arkham_shard_sdk::db::{self, Autocommit, Executor};
/// use arkham_shard_sdk::params;
///
/// fn count_notes(db: &impl Executor) -> Result<i64, db::Error> {
///     let row = db.query_opt("SELECT count(*) AS n FROM notes", params![])?;
///     row.map_or(Ok(0), |row| row.get("n"))
/// }
///
/// let outside = count_notes(&Autocommit)?;
/// let tx = db::begin()?;
/// let inside = count_notes(&tx)?;
/// tx.commit()?;
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
pub trait Executor {
    /// Runs one statement that returns no rows; see [`execute`].
    ///
    /// ```no_run
    /// use arkham_shard_sdk::db::{Autocommit, Executor};
    /// use arkham_shard_sdk::params;
    ///
    /// Autocommit.execute("DELETE FROM notes WHERE id = ?", params!["n1"])?;
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error>;

    /// Runs one statement that returns rows; see [`query`].
    ///
    /// ```no_run
    /// use arkham_shard_sdk::db::{Autocommit, Executor};
    /// use arkham_shard_sdk::params;
    ///
    /// let rows = Autocommit.query("SELECT id FROM notes", params![])?;
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error>;

    /// The first row of a query, if any; see [`query_opt`].
    ///
    /// ```no_run
    /// use arkham_shard_sdk::db::{Autocommit, Executor};
    /// use arkham_shard_sdk::params;
    ///
    /// let found = Autocommit.query_opt("SELECT id FROM notes WHERE id = ?", params!["n1"])?;
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        self.query(sql, params).map(|rows| rows.into_iter().next())
    }
}

/// Runs every statement on its own, outside any transaction (the free functions of this module).
/// See [`Executor`] for an example.
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
///
/// ```no_run
/// use arkham_shard_sdk::{db, params};
///
/// fn rename(id: &str, name: &str) -> Result<(), db::Error> {
///     let tx = db::begin()?;
///     // An error here returns early and drops `tx`: nothing of it is kept.
///     tx.execute("UPDATE notes SET title = ? WHERE id = ?", params![name, id])?;
///     tx.execute("INSERT INTO renames (id, name) VALUES (?, ?)", params![id, name])?;
///     tx.commit()
/// }
/// ```
#[derive(Debug)]
pub struct Transaction {
    inner: raw::Transaction,
}

impl Transaction {
    /// Like [`execute`], inside this transaction.
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// let tx = db::begin()?;
    /// tx.execute("DELETE FROM notes WHERE id = ?", params!["n1"])?;
    /// tx.commit()?;
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        self.inner.execute(sql, params)
    }

    /// Like [`query`], inside this transaction.
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// let tx = db::begin()?;
    /// let rows = tx.query("SELECT id FROM notes ORDER BY id", params![])?;
    /// tx.commit()?;
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        self.inner.query(sql, params).map(Rows::from)
    }

    /// Like [`query_opt`], inside this transaction.
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// let tx = db::begin()?;
    /// let next: i64 = tx
    ///     .query_opt("SELECT coalesce(max(id), 0) + 1 AS next FROM notes", params![])?
    ///     .map_or(Ok(1), |row| row.get("next"))?;
    /// tx.execute("INSERT INTO notes (id) VALUES (?)", params![next])?;
    /// tx.commit()?;
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, Error> {
        self.query(sql, params).map(|rows| rows.into_iter().next())
    }

    /// Makes every write durable and visible. See [`Transaction`] for an example.
    pub fn commit(self) -> Result<(), Error> {
        raw::Transaction::commit(self.inner)
    }

    /// Discards every write (as dropping the transaction does, but reporting errors).
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// let tx = db::begin()?;
    /// tx.execute("DELETE FROM notes", params![])?;
    /// tx.rollback()?; // the notes are still there
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn rollback(self) -> Result<(), Error> {
        raw::Transaction::rollback(self.inner)
    }
}

/// The rows of a query. Iterate it to get [`Row`]s.
///
/// ```no_run
/// # use arkham_shard_sdk::{db, params};
/// let rows = db::query("SELECT id, title FROM notes", params![])?;
/// assert_eq!(rows.columns(), ["id", "title"]);
/// println!("{} notes", rows.len());
/// for row in rows {
///     let title: String = row.get("title")?;
/// }
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
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
    /// Column names in select order. See [`Rows`] for an example.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// How many rows there are. See [`Rows`] for an example.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// let empty = db::query("SELECT id FROM notes LIMIT 1", params![])?.is_empty();
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Converts every row with `f`, stopping at the first error.
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// let pairs: Vec<(String, i64)> = db::query("SELECT name, n FROM counts", params![])?
    ///     .map(|row| Ok::<_, db::Error>((row.get("name")?, row.get("n")?)))?;
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
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

/// Iterator over the [`Row`]s of [`Rows`], from `rows.into_iter()` (or a `for` loop; see
/// [`Rows`]).
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
///
/// ```no_run
/// # use arkham_shard_sdk::{db, params};
/// if let Some(row) = db::query_opt("SELECT id, body FROM notes LIMIT 1", params![])? {
///     let id: String = row.get("id")?;
///     let body: Option<String> = row.get("BODY")?; // NULL is None; names ignore ASCII case
/// }
/// # Ok::<(), arkham_shard_sdk::db::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Row {
    columns: Rc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of `column` converted to `T`. Column names compare ASCII case-insensitively,
    /// since PostgreSQL folds unquoted names to lowercase. A missing column or a value of the
    /// wrong type is an [`Error::Other`] naming the column. See [`Row`] for an example.
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T, Error> {
        let value = self
            .value(column)
            .ok_or_else(|| Error::Other(format!("the query has no column `{column}`")))?;
        T::from_value(value)
            .map_err(|problem| Error::Other(format!("column `{column}`: {problem}")))
    }

    /// The raw value of `column`, if the query has it.
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// # let row = db::query_opt("SELECT 1 AS n", params![])?.unwrap();
    /// assert!(matches!(row.value("n"), Some(db::Value::Integer(1))));
    /// assert!(row.value("missing").is_none());
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn value(&self, column: &str) -> Option<&Value> {
        self.columns
            .iter()
            .position(|name| name.eq_ignore_ascii_case(column))
            .and_then(|index| self.values.get(index))
    }

    /// Column names in select order.
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// # let row = db::query_opt("SELECT 1 AS n", params![])?.unwrap();
    /// assert_eq!(row.columns(), ["n"]);
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The values, lined up with [`Row::columns`].
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// # let row = db::query_opt("SELECT 1 AS n", params![])?.unwrap();
    /// for (column, value) in row.columns().iter().zip(row.values()) {
    ///     println!("{column} = {value:?}");
    /// }
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Takes the values out of the row.
    ///
    /// ```no_run
    /// # use arkham_shard_sdk::{db, params};
    /// # let row = db::query_opt("SELECT 1 AS n", params![])?.unwrap();
    /// let values: Vec<db::Value> = row.into_values();
    /// # Ok::<(), arkham_shard_sdk::db::Error>(())
    /// ```
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

/// Conversion from a column [`Value`]; the error says what was found instead. Implemented for
/// the integers, `f64`, `bool`, `String`, `Vec<u8>`, [`Value`] and `Option` of them (NULL).
///
/// ```
/// use arkham_shard_sdk::db::{FromValue, Value};
///
/// /// A status kept as TEXT.
/// #[derive(Debug, PartialEq)]
/// enum Status { Draft, Final }
///
/// impl FromValue for Status {
///     fn from_value(value: &Value) -> Result<Self, String> {
///         match String::from_value(value)?.as_str() {
///             "draft" => Ok(Status::Draft),
///             "final" => Ok(Status::Final),
///             other => Err(format!("unknown status {other:?}")),
///         }
///     }
/// }
///
/// assert_eq!(Status::from_value(&Value::Text("final".into())), Ok(Status::Final));
/// assert!(Status::from_value(&Value::Integer(1)).is_err());
/// ```
pub trait FromValue: Sized {
    /// Converts `value`, or describes why it cannot. See [`FromValue`] for an example.
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
    ///
    /// ```
    /// use arkham_shard_sdk::db::Error;
    ///
    /// assert_eq!(Error::Busy("locked".into()).code(), "busy");
    /// ```
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
    ///
    /// ```
    /// use arkham_shard_sdk::db::Error;
    ///
    /// assert_eq!(Error::Busy("locked".into()).message(), "locked");
    /// ```
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
