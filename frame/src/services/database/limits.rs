//! SQLite's own hardening for untrusted SQL, applied to every shard connection next to the
//! authorizer (sqlite.org/security.html, "Defense Against The Dark Arts"): defensive mode, no
//! trusted schema, no FTS3 tokenizer pointers, no extension loading, and run-time limits on the
//! size of everything a statement can build.
//!
//! The value limit (`SQLITE_LIMIT_LENGTH`) is also scaled per statement: a statement returning
//! `n` columns may build values of at most `max_result_bytes / n`, so that a single row, which
//! sqlx copies whole before the host can count it, never exceeds the result budget.
//!
//! This module is the FFI boundary with SQLite; each `unsafe` carries its proof.
#![expect(
    unsafe_code,
    reason = "SQLite's configuration, limits and trace hook are only reachable through FFI"
)]

use libsqlite3_sys as ffi;
use std::ffi::{c_int, c_uint, c_void};
use std::ptr::NonNull;
use std::sync::Mutex;

/// The size bounds of one shard database's connections, from its `[database]` config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ValueLimits {
    /// Largest single value (string, blob, stored row), in bytes.
    pub max_value_bytes: c_int,
    /// Largest result of one query, in bytes.
    pub max_result_bytes: u64,
}

impl ValueLimits {
    /// Limits from the config, clamped to what SQLite's `int` limits can hold.
    pub fn new(max_value_bytes: u64, max_result_bytes: u64) -> Self {
        Self {
            max_value_bytes: c_int::try_from(max_value_bytes.max(1)).unwrap_or(c_int::MAX),
            max_result_bytes: max_result_bytes.max(1),
        }
    }

    /// The value limit for a statement with `columns` result columns.
    fn for_columns(self, columns: c_int) -> c_int {
        let Ok(columns) = u64::try_from(columns) else {
            return self.max_value_bytes;
        };
        if columns == 0 {
            return self.max_value_bytes;
        }
        let share = c_int::try_from(self.max_result_bytes / columns).unwrap_or(c_int::MAX);
        share.clamp(1, self.max_value_bytes)
    }
}

/// SQLite's run-time limits other than the value length; see the reasons beside each.
const LIMITS: &[(c_int, c_int)] = &[
    // SQL text of one call (a migration script included): 1 MiB is far past any real schema.
    (ffi::SQLITE_LIMIT_SQL_LENGTH, 1 << 20),
    // Columns of a table, index, result, ORDER BY or GROUP BY (default 2000).
    (ffi::SQLITE_LIMIT_COLUMN, 200),
    // Parser recursion on the sqlx worker thread's stack (default 1000).
    (ffi::SQLITE_LIMIT_EXPR_DEPTH, 100),
    // Terms of one compound SELECT; multi-row VALUES is not counted (default 500).
    (ffi::SQLITE_LIMIT_COMPOUND_SELECT, 50),
    // Size of one compiled statement's program, i.e. its memory (default 250,000,000).
    (ffi::SQLITE_LIMIT_VDBE_OP, 250_000),
    // Arguments of one function call; json_object takes two per key (default 127).
    (ffi::SQLITE_LIMIT_FUNCTION_ARG, 100),
    // No other database files, whatever else fails.
    (ffi::SQLITE_LIMIT_ATTACHED, 0),
    // LIKE/GLOB run inside one VM step, where the statement deadline cannot interrupt them.
    (ffi::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1_000),
    // Highest `?` index; each one is a slot allocated per statement (default 32766).
    (ffi::SQLITE_LIMIT_VARIABLE_NUMBER, 10_000),
    // Nested trigger activations, each on the worker thread's stack (default 1000).
    (ffi::SQLITE_LIMIT_TRIGGER_DEPTH, 10),
    // No helper threads for sorting.
    (ffi::SQLITE_LIMIT_WORKER_THREADS, 0),
];

/// Settings as sqlite.org/security.html recommends for untrusted SQL: `(option, on)`.
const DB_CONFIG: &[(c_int, c_int)] = &[
    // No writes to shadow tables, writable_schema or other ways to corrupt the file.
    (ffi::SQLITE_DBCONFIG_DEFENSIVE, 1),
    // Views, triggers and schema expressions run only functions marked innocuous.
    (ffi::SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0),
    // fts3_tokenizer() with two arguments registers a native pointer.
    (ffi::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0),
    // No loading of native code, through the C API or SQL.
    (ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0),
];

/// Errors hardening a connection; any one closes the connection before a shard can use it.
#[derive(Debug, thiserror::Error)]
pub(super) enum HardenError {
    /// `sqlite3_db_config` refused an option.
    #[error("SQLite refused configuration option {option} (code {code})")]
    Config {
        /// The `SQLITE_DBCONFIG_*` option.
        option: c_int,
        /// SQLite's result code.
        code: c_int,
    },
    /// The trace hook could not be installed.
    #[error("SQLite refused the statement trace hook (code {0})")]
    Trace(c_int),
}

/// Interned [`ValueLimits`], so each configuration lives once for the whole process and the
/// trace hook can borrow it for as long as any connection lives.
static INTERNED: Mutex<Vec<&'static ValueLimits>> = Mutex::new(Vec::new());

fn intern(limits: ValueLimits) -> &'static ValueLimits {
    let mut all = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = all.iter().find(|l| ***l == limits) {
        return found;
    }
    // One allocation per distinct configuration (a handful per process): never freed on purpose.
    let leaked: &'static ValueLimits = Box::leak(Box::new(limits));
    all.push(leaked);
    leaked
}

/// Applies the settings, the limits and the per-statement value limit to `db`.
pub(super) fn harden(db: NonNull<ffi::sqlite3>, limits: ValueLimits) -> Result<(), HardenError> {
    let db = db.as_ptr();
    for &(option, on) in DB_CONFIG {
        // SAFETY: `db` is a live connection whose lock the caller holds (see `install` in
        // authorizer.rs). These options take exactly `(int, int*)` as their variadic
        // arguments; a null `int*` means "do not report the new value".
        let code = unsafe { ffi::sqlite3_db_config(db, option, on, std::ptr::null_mut::<c_int>()) };
        if code != ffi::SQLITE_OK {
            return Err(HardenError::Config { option, code });
        }
    }
    for &(limit, value) in LIMITS {
        // SAFETY: `db` is live and locked; `sqlite3_limit` only stores an int.
        unsafe { ffi::sqlite3_limit(db, limit, value) };
    }
    // SAFETY: as above.
    unsafe { ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, limits.max_value_bytes) };
    let context: *const ValueLimits = intern(limits);
    // SAFETY: `db` is live and locked. `on_statement` has the signature SQLite expects and never
    // unwinds; its context points to an interned value that lives for the whole process.
    let code = unsafe {
        ffi::sqlite3_trace_v2(
            db,
            ffi::SQLITE_TRACE_STMT,
            Some(on_statement),
            context.cast_mut().cast::<c_void>(),
        )
    };
    if code != ffi::SQLITE_OK {
        return Err(HardenError::Trace(code));
    }
    Ok(())
}

/// Resets the value limit of `db` to the configured one before each host call, so a statement
/// that starts looking nested (its text begins with a `--` comment) starts from it, never from
/// a previous call's share (see [`on_statement`]).
pub(super) fn reset_value_limit(db: NonNull<ffi::sqlite3>, limits: ValueLimits) {
    // SAFETY: `db` is a live connection whose lock the caller holds; this only stores an int.
    unsafe {
        ffi::sqlite3_limit(
            db.as_ptr(),
            ffi::SQLITE_LIMIT_LENGTH,
            limits.max_value_bytes,
        )
    };
}

/// Whether `db` is inside a transaction (not in autocommit mode).
pub(super) fn in_transaction(db: NonNull<ffi::sqlite3>) -> bool {
    // SAFETY: `db` is a live connection whose lock the caller holds; this reads one flag.
    unsafe { ffi::sqlite3_get_autocommit(db.as_ptr()) == 0 }
}

/// SQLite calls this as each statement (and each trigger program in it) starts: it sets the
/// value limit to the statement's share of the result budget. A nested statement (a trigger
/// program, FTS5's own queries), which SQLite marks with a leading `--`, may only lower it, so
/// it cannot raise the limit of the statement it runs inside.
///
/// # Safety
/// Called by SQLite for `SQLITE_TRACE_STMT` with `context` as installed by [`harden`] (an
/// interned, never-freed `ValueLimits`), `statement` a live `sqlite3_stmt` and `sql` null or a
/// NUL-terminated string.
unsafe extern "C" fn on_statement(
    event: c_uint,
    context: *mut c_void,
    statement: *mut c_void,
    sql: *mut c_void,
) -> c_int {
    if event != ffi::SQLITE_TRACE_STMT || context.is_null() || statement.is_null() {
        return 0;
    }
    // SAFETY: `context` is the interned `ValueLimits` installed with this hook; it is never freed.
    let limits = unsafe { *context.cast::<ValueLimits>() };
    let sql = sql.cast::<u8>().cast_const();
    // SAFETY: `sql` is null or NUL-terminated, so its second byte is read only when the first is
    // not the terminator.
    let nested = !sql.is_null() && unsafe { *sql == b'-' && *sql.add(1) == b'-' };
    let statement = statement.cast::<ffi::sqlite3_stmt>();
    // SAFETY: SQLite passes the live statement that is starting; these only read its column
    // count and set the connection's limit, under the connection mutex SQLite already holds
    // (it is recursive).
    unsafe {
        let db = ffi::sqlite3_db_handle(statement);
        if db.is_null() {
            return 0;
        }
        let wanted = limits.for_columns(ffi::sqlite3_column_count(statement));
        if !nested || wanted < ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, -1) {
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, wanted);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_gets_its_share_of_the_result_budget() {
        let limits = ValueLimits::new(8 << 20, 32 << 20);
        assert_eq!(limits.for_columns(0), 8 << 20);
        assert_eq!(limits.for_columns(1), 8 << 20);
        assert_eq!(limits.for_columns(4), 8 << 20);
        assert_eq!(limits.for_columns(8), 4 << 20);
        assert_eq!(limits.for_columns(200), (32 << 20) / 200);
        assert_eq!(limits.for_columns(-1), 8 << 20);
        // Values past what SQLite's int holds are clamped, never wrapped.
        let huge = ValueLimits::new(u64::MAX, u64::MAX);
        assert_eq!(huge.max_value_bytes, c_int::MAX);
        assert_eq!(huge.for_columns(1), c_int::MAX);
        assert_eq!(ValueLimits::new(0, 0).for_columns(3), 1);
    }
}
