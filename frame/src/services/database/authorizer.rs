//! SQLite's authorizer, installed on every shard connection: the host-side guarantee that a shard
//! reaches only its own database file and only the parts of SQLite it needs, whatever SQL it sends.
//!
//! Everything is an allowlist, since SQLite builds in more than shards should reach:
//! - functions: the core scalar, aggregate, window, date/time, JSON and math functions and FTS5's
//!   ranking functions ([`FUNCTIONS`]); anything else (`fts3_tokenizer`, which hands out and takes
//!   native pointers, `load_extension`, `fts5()`, rtree's debugging functions, ...) is denied;
//! - virtual tables: only `fts5` may be created ([`MODULES`]);
//! - databases: only `main`. ATTACH and DETACH are denied, and so is every TEMP object: the temp
//!   database lives outside the file whose size `max_page_count` bounds;
//! - PRAGMAs: a list that only reads the shard's own schema or sets its own `user_version`. In
//!   particular `max_page_count` (the size limit), `journal_mode` and `synchronous` (durability)
//!   cannot be changed by a shard.
//!
//! SQLite reports a denial only as "not authorized"; the reason is kept per connection so the
//! shard's error says what was refused and what to do instead ([`take_denial`]).
//!
//! This module is the FFI boundary with SQLite; each `unsafe` carries its proof.
#![expect(
    unsafe_code,
    reason = "SQLite's authorizer is only reachable through FFI"
)]

use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::Mutex;

/// SQL functions a shard may call (lower case). SQLite's own internal functions (ALTER TABLE's
/// `sqlite_rename_*`, ...) are unreachable from shard SQL anyway; they are listed so that the
/// statements SQLite runs for ALTER TABLE keep working if it ever authorizes them.
const FUNCTIONS: &[&str] = &[
    // Core scalar functions.
    "abs",
    "changes",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "format",
    "glob",
    "hex",
    "if",
    "ifnull",
    "iif",
    "instr",
    "last_insert_rowid",
    "length",
    "like",
    "likelihood",
    "likely",
    "lower",
    "ltrim",
    "max",
    "min",
    "nullif",
    "octet_length",
    "printf",
    "quote",
    "random",
    "randomblob",
    "replace",
    "round",
    "rtrim",
    "sign",
    "soundex",
    "sqlite_source_id",
    "sqlite_version",
    "substr",
    "substring",
    "total_changes",
    "trim",
    "typeof",
    "unhex",
    "unicode",
    "unistr",
    "unistr_quote",
    "unlikely",
    "upper",
    "zeroblob",
    // Aggregates.
    "avg",
    "count",
    "group_concat",
    "string_agg",
    "sum",
    "total",
    // Window functions.
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // Date and time.
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
    "current_date",
    "current_time",
    "current_timestamp",
    // Math (when SQLite is built with them).
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "ceiling",
    "cos",
    "cosh",
    "degrees",
    "exp",
    "floor",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    // JSON, including the `->` and `->>` operators.
    "json",
    "jsonb",
    "json_array",
    "jsonb_array",
    "json_array_length",
    "json_error_position",
    "json_extract",
    "jsonb_extract",
    "json_insert",
    "jsonb_insert",
    "json_object",
    "jsonb_object",
    "json_patch",
    "jsonb_patch",
    "json_pretty",
    "json_quote",
    "json_remove",
    "jsonb_remove",
    "json_replace",
    "jsonb_replace",
    "json_set",
    "jsonb_set",
    "json_type",
    "json_valid",
    "json_group_array",
    "jsonb_group_array",
    "json_group_object",
    "jsonb_group_object",
    "->",
    "->>",
    // FTS5's MATCH operator and auxiliary functions (ranking and highlighting).
    "match",
    "bm25",
    "highlight",
    "snippet",
    // Internal to ALTER TABLE (see above).
    "sqlite_rename_column",
    "sqlite_rename_table",
    "sqlite_rename_test",
    "sqlite_drop_column",
    "sqlite_rename_quotefix",
];

/// Virtual-table modules a shard may create: full-text search.
const MODULES: &[&str] = &["fts5"];

/// PRAGMAs a shard may run in any form.
const PRAGMAS_ANY: &[&str] = &["user_version", "application_id", "optimize"];

/// PRAGMAs whose argument names one of the shard's own tables or indexes (or bounds a check):
/// allowed with or without it, including as table-valued functions (`pragma_table_info('t')`).
const PRAGMAS_NAMED: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// PRAGMAs a shard may run only to read (no `= value`).
const PRAGMAS_READ: &[&str] = &[
    "schema_version",
    "data_version",
    "page_count",
    "page_size",
    "max_page_count",
    "freelist_count",
    "foreign_keys",
    "journal_mode",
    "collation_list",
    "function_list",
    "pragma_list",
];

/// Reads a possibly-null C string from SQLite.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string valid for the duration of the call.
unsafe fn text<'a>(ptr: *const c_char) -> Option<&'a str> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, and NUL-terminated and valid per the caller's contract.
    unsafe { CStr::from_ptr(ptr) }.to_str().ok()
}

/// Why an action was denied; its message is what the shard reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Denial {
    Function(String),
    Module(String),
    Temp,
    Attach,
    Pragma(String),
    Database(String),
}

impl Denial {
    fn message(&self) -> String {
        match self {
            Denial::Function(name) => format!(
                "the SQL function `{name}` is not available to shards; see the database \
                 interface's documentation for the functions that are"
            ),
            Denial::Module(name) => format!(
                "virtual tables using `{name}` are not available to shards; only `fts5` \
                 (full-text search) is"
            ),
            Denial::Temp => "TEMP tables, views, indexes and triggers are not available to shards \
                 (they would escape the database size limit); use a regular table and delete \
                 its rows when done"
                .to_string(),
            Denial::Attach => {
                "ATTACH and DETACH are not allowed for shards: they reach other database files"
                    .to_string()
            }
            Denial::Pragma(name) => format!(
                "PRAGMA `{name}` is not allowed for shards (or not in this form): only PRAGMAs \
                 that read the shard's own schema, and `user_version`/`application_id`, are"
            ),
            Denial::Database(name) => format!(
                "database `{name}` is not available to shards: a shard has only its own `main`"
            ),
        }
    }
}

/// The decision for one action; pure, so it is tested directly.
fn decide(
    action: c_int,
    arg1: Option<&str>,
    arg2: Option<&str>,
    database: Option<&str>,
) -> Result<(), Denial> {
    let lower = |s: Option<&str>| s.map(str::to_ascii_lowercase).unwrap_or_default();
    match action {
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => Err(Denial::Attach),
        // The one action that names its database first (the last slot is a column name).
        ffi::SQLITE_ALTER_TABLE => own_database(arg1),
        ffi::SQLITE_FUNCTION => {
            let name = lower(arg2);
            if FUNCTIONS.contains(&name.as_str()) {
                Ok(())
            } else {
                Err(Denial::Function(name))
            }
        }
        ffi::SQLITE_CREATE_VTABLE => {
            let module = lower(arg2);
            if !MODULES.contains(&module.as_str()) {
                Err(Denial::Module(module))
            } else {
                own_database(database)
            }
        }
        ffi::SQLITE_CREATE_TEMP_TABLE
        | ffi::SQLITE_CREATE_TEMP_INDEX
        | ffi::SQLITE_CREATE_TEMP_TRIGGER
        | ffi::SQLITE_CREATE_TEMP_VIEW
        | ffi::SQLITE_DROP_TEMP_TABLE
        | ffi::SQLITE_DROP_TEMP_INDEX
        | ffi::SQLITE_DROP_TEMP_TRIGGER
        | ffi::SQLITE_DROP_TEMP_VIEW => Err(Denial::Temp),
        ffi::SQLITE_PRAGMA => {
            let pragma = lower(arg1);
            let allowed = PRAGMAS_ANY.contains(&pragma.as_str())
                || PRAGMAS_NAMED.contains(&pragma.as_str())
                || (arg2.is_none() && PRAGMAS_READ.contains(&pragma.as_str()));
            if !allowed {
                return Err(Denial::Pragma(pragma));
            }
            own_database(database)
        }
        // ALTER TABLE fixes up references in the temp schema too; with TEMP objects denied it is
        // always empty, so its schema table alone is open there.
        _ if is_schema_table(arg1) && database.is_some_and(|d| d.eq_ignore_ascii_case("temp")) => {
            Ok(())
        }
        _ => own_database(database),
    }
}

fn is_schema_table(table: Option<&str>) -> bool {
    table.is_some_and(|t| {
        [
            "sqlite_master",
            "sqlite_temp_master",
            "sqlite_schema",
            "sqlite_temp_schema",
        ]
        .iter()
        .any(|name| t.eq_ignore_ascii_case(name))
    })
}

/// Allows only the shard's own `main` database (or none named).
fn own_database(database: Option<&str>) -> Result<(), Denial> {
    match database {
        None | Some("main") => Ok(()),
        Some(name) if name.eq_ignore_ascii_case("temp") => Err(Denial::Temp),
        Some(name) => Err(Denial::Database(name.to_string())),
    }
}

/// The last denial on each connection (by its `sqlite3` handle address), until the host call
/// that caused it takes it. Small: a denial ends its statement, and its call takes it at once.
static DENIALS: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());

/// Connections with a pending denial before the list is reset (a lost reason only makes the
/// message generic).
const MAX_PENDING: usize = 256;

fn record(handle: usize, denial: &Denial) {
    let mut all = DENIALS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|(h, _)| *h != handle);
    if all.len() >= MAX_PENDING {
        all.clear();
    }
    all.push((handle, denial.message()));
}

/// The reason the authorizer last denied an action on the connection `handle`, if any.
pub(super) fn take_denial(handle: usize) -> Option<String> {
    let mut all = DENIALS.lock().unwrap_or_else(|e| e.into_inner());
    let at = all.iter().position(|(h, _)| *h == handle)?;
    Some(all.swap_remove(at).1)
}

/// The callback SQLite calls for every action while compiling a statement.
///
/// # Safety
/// Called by SQLite with the documented arguments: each string is null or NUL-terminated and valid
/// for the call.
unsafe extern "C" fn authorize(
    user: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    // SAFETY: SQLite passes null or valid NUL-terminated strings that outlive this call.
    let (arg1, arg2, database) = unsafe { (text(arg1), text(arg2), text(database)) };
    match decide(action, arg1, arg2, database) {
        Ok(()) => ffi::SQLITE_OK,
        Err(denial) => {
            // The user data is the connection's handle address, used only as a key.
            record(user as usize, &denial);
            ffi::SQLITE_DENY
        }
    }
}

/// Installs the authorizer on the connection `db`.
pub(super) fn install(db: NonNull<ffi::sqlite3>) {
    // A previous connection at the same address may have left a reason behind.
    take_denial(db.as_ptr() as usize);
    // SAFETY: `db` is a live connection handle, borrowed from sqlx's `LockedSqliteHandle` by the
    // caller, which holds the connection's lock for the duration of this call, so no statement
    // runs concurrently. `authorize` is a plain function with the signature SQLite expects and
    // never unwinds (it compares strings and records a message). Its user data is the handle's
    // address, used only as a map key and never dereferenced, so nothing must outlive the
    // connection.
    unsafe {
        ffi::sqlite3_set_authorizer(db.as_ptr(), Some(authorize), db.as_ptr().cast::<c_void>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let ok = Ok(());
        assert_eq!(
            decide(ffi::SQLITE_ATTACH, Some("/x"), None, None),
            Err(Denial::Attach)
        );
        assert_eq!(
            decide(ffi::SQLITE_DETACH, Some("x"), None, None),
            Err(Denial::Attach)
        );
        // Functions: an allowlist, compared case-insensitively.
        for name in [
            "lower",
            "COUNT",
            "json_extract",
            "->>",
            "datetime",
            "bm25",
            "row_number",
        ] {
            assert_eq!(
                decide(ffi::SQLITE_FUNCTION, None, Some(name), None),
                ok,
                "{name}"
            );
        }
        for name in [
            "load_extension",
            "fts3_tokenizer",
            "FTS3_TOKENIZER",
            "fts5",
            "rtreenode",
        ] {
            assert_eq!(
                decide(ffi::SQLITE_FUNCTION, None, Some(name), None),
                Err(Denial::Function(name.to_ascii_lowercase())),
                "{name}"
            );
        }
        // Virtual tables: only fts5.
        assert_eq!(
            decide(
                ffi::SQLITE_CREATE_VTABLE,
                Some("t"),
                Some("fts5"),
                Some("main")
            ),
            ok
        );
        for module in ["fts3", "fts4", "rtree", "dbstat", "fts5vocab"] {
            assert_eq!(
                decide(
                    ffi::SQLITE_CREATE_VTABLE,
                    Some("t"),
                    Some(module),
                    Some("main")
                ),
                Err(Denial::Module(module.to_string()))
            );
        }
        // TEMP objects, however named.
        assert_eq!(
            decide(ffi::SQLITE_CREATE_TEMP_TABLE, Some("t"), None, Some("temp")),
            Err(Denial::Temp)
        );
        assert_eq!(
            decide(ffi::SQLITE_CREATE_TEMP_VIEW, Some("v"), None, Some("temp")),
            Err(Denial::Temp)
        );
        assert_eq!(
            decide(ffi::SQLITE_INSERT, Some("t"), None, Some("temp")),
            Err(Denial::Temp)
        );
        assert_eq!(
            decide(ffi::SQLITE_READ, Some("t"), Some("c"), Some("TEMP")),
            Err(Denial::Temp)
        );
        assert_eq!(
            decide(ffi::SQLITE_CREATE_TABLE, Some("t"), None, Some("main")),
            ok
        );
        assert_eq!(
            decide(
                ffi::SQLITE_ALTER_TABLE,
                Some("main"),
                Some("t"),
                Some("column")
            ),
            ok
        );
        assert_eq!(
            decide(ffi::SQLITE_ALTER_TABLE, Some("temp"), Some("t"), None),
            Err(Denial::Temp)
        );
        // ALTER TABLE's fix-ups of the (empty) temp schema.
        assert_eq!(
            decide(
                ffi::SQLITE_UPDATE,
                Some("sqlite_temp_master"),
                Some("sql"),
                Some("temp")
            ),
            ok
        );
        assert_eq!(
            decide(
                ffi::SQLITE_CREATE_VTABLE,
                Some("t"),
                Some("fts5"),
                Some("temp")
            ),
            Err(Denial::Temp)
        );
        // PRAGMAs.
        assert_eq!(
            decide(
                ffi::SQLITE_PRAGMA,
                Some("max_page_count"),
                Some("1"),
                Some("main")
            ),
            Err(Denial::Pragma("max_page_count".to_string()))
        );
        assert_eq!(
            decide(
                ffi::SQLITE_PRAGMA,
                Some("max_page_count"),
                None,
                Some("main")
            ),
            ok
        );
        assert_eq!(
            decide(ffi::SQLITE_PRAGMA, Some("USER_VERSION"), Some("3"), None),
            ok
        );
        assert_eq!(
            decide(ffi::SQLITE_PRAGMA, Some("table_info"), Some("t"), None),
            ok
        );
        assert_eq!(
            decide(ffi::SQLITE_PRAGMA, Some("page_size"), Some("512"), None),
            Err(Denial::Pragma("page_size".to_string()))
        );
        assert_eq!(
            decide(ffi::SQLITE_PRAGMA, Some("database_list"), None, None),
            Err(Denial::Pragma("database_list".to_string()))
        );
        assert_eq!(
            decide(ffi::SQLITE_PRAGMA, Some("journal_mode"), Some("off"), None),
            Err(Denial::Pragma("journal_mode".to_string()))
        );
        assert_eq!(
            decide(ffi::SQLITE_PRAGMA, Some("table_info"), None, Some("temp")),
            Err(Denial::Temp)
        );
        // Other databases.
        assert_eq!(
            decide(ffi::SQLITE_READ, Some("t"), Some("c"), Some("main")),
            ok
        );
        assert_eq!(
            decide(ffi::SQLITE_READ, Some("t"), Some("c"), Some("other")),
            Err(Denial::Database("other".to_string()))
        );
    }

    #[test]
    fn messages_name_what_was_refused() {
        let function = Denial::Function("fts3_tokenizer".into()).message();
        assert!(
            function.contains("`fts3_tokenizer`") && function.contains("not available to shards")
        );
        assert!(Denial::Temp.message().contains("use a regular table"));
        assert!(Denial::Module("fts3".into()).message().contains("`fts3`"));
    }

    #[test]
    fn denials_are_kept_per_connection_until_taken() {
        record(1, &Denial::Temp);
        record(2, &Denial::Attach);
        record(1, &Denial::Function("x".into()));
        assert_eq!(take_denial(1), Some(Denial::Function("x".into()).message()));
        assert_eq!(take_denial(1), None);
        assert_eq!(take_denial(2), Some(Denial::Attach.message()));
    }
}
