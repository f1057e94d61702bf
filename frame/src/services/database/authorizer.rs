//! SQLite's authorizer, installed on every shard connection: the host-side guarantee that a shard
//! reaches only its own database file, whatever SQL it sends.
//!
//! Denied: ATTACH and DETACH (other files), `load_extension` (native code), any database other
//! than `main` and `temp`, and every PRAGMA except a list that only reads the shard's own schema
//! or sets its own `user_version`. In particular `max_page_count` (the size limit), `journal_mode`
//! and `synchronous` (durability) cannot be changed by a shard.
//!
//! This module is the FFI boundary with SQLite; each `unsafe` carries its proof.
#![expect(
    unsafe_code,
    reason = "SQLite's authorizer is only reachable through FFI"
)]

use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr::NonNull;

/// PRAGMAs a shard may run in any form.
const PRAGMAS_ANY: &[&str] = &["user_version", "application_id", "optimize"];

/// PRAGMAs a shard may run only to read (no `= value`).
const PRAGMAS_READ: &[&str] = &[
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

/// The decision for one action; pure, so it is tested directly.
fn decide(action: c_int, arg1: Option<&str>, arg2: Option<&str>, database: Option<&str>) -> c_int {
    let lower = |s: Option<&str>| s.map(str::to_ascii_lowercase).unwrap_or_default();
    match action {
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => ffi::SQLITE_DENY,
        ffi::SQLITE_FUNCTION if lower(arg2) == "load_extension" => ffi::SQLITE_DENY,
        ffi::SQLITE_PRAGMA => {
            let pragma = lower(arg1);
            let allowed = PRAGMAS_ANY.contains(&pragma.as_str())
                || (arg2.is_none() && PRAGMAS_READ.contains(&pragma.as_str()));
            let own_db = matches!(database, None | Some("main"));
            if allowed && own_db {
                ffi::SQLITE_OK
            } else {
                ffi::SQLITE_DENY
            }
        }
        _ => match database {
            None | Some("main" | "temp") => ffi::SQLITE_OK,
            Some(_) => ffi::SQLITE_DENY,
        },
    }
}

/// The callback SQLite calls for every action while compiling a statement.
///
/// # Safety
/// Called by SQLite with the documented arguments: each string is null or NUL-terminated and valid
/// for the call.
unsafe extern "C" fn authorize(
    _user: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    // SAFETY: SQLite passes null or valid NUL-terminated strings that outlive this call.
    let (arg1, arg2, database) = unsafe { (text(arg1), text(arg2), text(database)) };
    decide(action, arg1, arg2, database)
}

/// Installs the authorizer on the connection `db`.
pub(super) fn install(db: NonNull<ffi::sqlite3>) {
    // SAFETY: `db` is a live connection handle, borrowed from sqlx's `LockedSqliteHandle` by the
    // caller, which holds the connection's lock for the duration of this call, so no statement
    // runs concurrently. `authorize` is a plain function with the signature SQLite expects, never
    // unwinds (it only compares strings), and uses no user data, so the null pointer is fine and
    // nothing must outlive the connection.
    unsafe {
        ffi::sqlite3_set_authorizer(db.as_ptr(), Some(authorize), std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let deny = ffi::SQLITE_DENY;
        let ok = ffi::SQLITE_OK;
        assert_eq!(decide(ffi::SQLITE_ATTACH, Some("/x"), None, None), deny);
        assert_eq!(decide(ffi::SQLITE_DETACH, Some("x"), None, None), deny);
        assert_eq!(
            decide(ffi::SQLITE_FUNCTION, None, Some("load_extension"), None),
            deny
        );
        assert_eq!(decide(ffi::SQLITE_FUNCTION, None, Some("lower"), None), ok);
        assert_eq!(
            decide(
                ffi::SQLITE_PRAGMA,
                Some("max_page_count"),
                Some("1"),
                Some("main")
            ),
            deny
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
            decide(ffi::SQLITE_PRAGMA, Some("database_list"), None, None),
            deny
        );
        assert_eq!(
            decide(ffi::SQLITE_PRAGMA, Some("journal_mode"), Some("off"), None),
            deny
        );
        assert_eq!(
            decide(ffi::SQLITE_READ, Some("t"), Some("c"), Some("main")),
            ok
        );
        assert_eq!(
            decide(ffi::SQLITE_READ, Some("t"), Some("c"), Some("other")),
            deny
        );
    }
}
