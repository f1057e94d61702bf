//! SQL text for PostgreSQL: the WIT's `?` placeholders rewritten to `$n`, and the names the
//! backend derives for a shard's role and schema.

use crate::bindings::database::Error;
use sha2::{Digest, Sha256};

/// Rewrites each `?` placeholder of `sql` to `$1`, `$2`, ... in order, leaving string literals
/// (`'…'`, `E'…'`), quoted identifiers, comments and dollar-quoted strings alone, and checks
/// that there are exactly `params` of them.
pub(super) fn rewrite_placeholders(sql: &str, params: usize) -> Result<String, Error> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut count = 0usize;
    let mut i = 0;
    // Start of the text not yet copied: only ASCII bytes are ever split on, so every slice
    // boundary is a char boundary.
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'?' => {
                out.push_str(&sql[copied..i]);
                count += 1;
                out.push('$');
                out.push_str(&count.to_string());
                i += 1;
                copied = i;
            }
            b'\'' => {
                // E'…' allows backslash escapes; a plain literal only doubles quotes.
                let escapes =
                    i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !is_word(bytes, i - 1);
                i = skip_quoted(bytes, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' => {
                if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) && !is_word(bytes, i) {
                    return Err(Error::InvalidSql(
                        "numbered placeholders (`$1`) are not portable: write `?` and pass the \
                         values in order"
                            .to_string(),
                    ));
                }
                i = skip_dollar_quoted(bytes, i);
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    if count != params {
        return Err(Error::InvalidSql(format!(
            "the statement has {count} `?` placeholder(s) but {params} parameter(s) were given"
        )));
    }
    Ok(out)
}

/// Whether the byte before `i` continues an identifier (so `i` is inside a word).
fn is_word(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] >= 0x80)
}

/// The index after the quoted run starting at `start` (its opening `quote`); a doubled quote
/// stays inside, and with `escapes` a backslash escapes the next byte. Unterminated: the end.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8, escapes: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index after the (nestable, as in PostgreSQL) block comment starting at `start`.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index after the dollar-quoted string starting at `start` (`$tag$…$tag$`), or after the
/// `$` when it opens none (part of an identifier such as `a$b`).
fn skip_dollar_quoted(bytes: &[u8], start: usize) -> usize {
    if is_word(bytes, start) {
        return start + 1;
    }
    let tag_len = bytes[start + 1..]
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80));
    let Some(tag_len) = tag_len else {
        return bytes.len();
    };
    if bytes[start + 1 + tag_len] != b'$' {
        return start + 1;
    }
    let tag = &bytes[start..start + tag_len + 2];
    let body = start + tag.len();
    bytes[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(bytes.len(), |p| body + p + tag.len())
}

/// Quotes `name` as a PostgreSQL identifier.
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The first `n` hex digits of SHA-256 over the parts, each ended by a NUL.
fn hash(parts: &[&str], n: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..n].to_string()
}

/// `name` reduced to `[a-z0-9_]`, at most `max` bytes: readable, not unique (a hash is added).
fn readable(name: &str, max: usize) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .take(max)
        .collect()
}

/// The role of `shard` on `database`. Roles belong to the cluster, not to one database, so the
/// name hashes both (two databases of one cluster may hold shards of the same name):
/// `ark_<16 hex of sha256(database, shard)>_<shard, readable, ≤ 30>`, at most 51 bytes
/// (PostgreSQL's limit is 63).
pub(super) fn role_name(database: &str, shard: &str) -> String {
    format!(
        "ark_{}_{}",
        hash(&[database, shard], 16),
        readable(shard, 30)
    )
}

/// The schema of `shard` inside its database: `shard_<readable name, ≤ 40>_<8 hex>`, unique
/// per shard name within the database.
pub(super) fn schema_name(shard: &str) -> String {
    format!("shard_{}_{}", readable(shard, 40), hash(&[shard], 8))
}

/// The advisory-lock key of `ensure-schema` for a shard's schema.
pub(super) fn lock_key(schema: &str) -> i64 {
    let hex = hash(&["arkham-schema", schema], 16);
    // 16 hex digits are 64 bits; reinterpreting them as signed is what an int8 key wants.
    u64::from_str_radix(&hex, 16).map_or(0, |v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str, n: usize) -> String {
        rewrite_placeholders(sql, n).unwrap()
    }

    #[test]
    fn placeholders_become_numbered_outside_literals_and_comments() {
        assert_eq!(rw("SELECT ?, ?", 2), "SELECT $1, $2");
        assert_eq!(
            rw("SELECT '?', ? -- ?\n, ?", 2),
            "SELECT '?', $1 -- ?\n, $2"
        );
        assert_eq!(rw("SELECT 'it''s ?', ?", 1), "SELECT 'it''s ?', $1");
        assert_eq!(rw(r"SELECT E'\' ?', ?", 1), r"SELECT E'\' ?', $1");
        assert_eq!(
            rw("SELECT \"a?\" FROM t WHERE x = ?", 1),
            "SELECT \"a?\" FROM t WHERE x = $1"
        );
        assert_eq!(
            rw("SELECT /* ? /* ? */ ? */ ?", 1),
            "SELECT /* ? /* ? */ ? */ $1"
        );
        assert_eq!(
            rw("SELECT $$ ? $$, $x$ ?$ $x$, ?", 1),
            "SELECT $$ ? $$, $x$ ?$ $x$, $1"
        );
        assert_eq!(rw("SELECT 'é?', ?", 1), "SELECT 'é?', $1");
        assert_eq!(
            rw("SELECT a$b FROM t WHERE c = ?", 1),
            "SELECT a$b FROM t WHERE c = $1"
        );
        // A backslash in a plain literal is an ordinary character.
        assert_eq!(rw(r"SELECT '\', ?", 1), r"SELECT '\', $1");
    }

    #[test]
    fn placeholder_count_must_match_and_numbered_ones_are_refused() {
        assert!(
            matches!(rewrite_placeholders("SELECT ?", 0), Err(Error::InvalidSql(m)) if m.contains("1 `?`"))
        );
        assert!(matches!(
            rewrite_placeholders("SELECT '?'", 1),
            Err(Error::InvalidSql(_))
        ));
        assert!(
            matches!(rewrite_placeholders("SELECT $1", 1), Err(Error::InvalidSql(m)) if m.contains("`?`"))
        );
        // Unterminated quotes do not panic.
        for sql in [
            "SELECT '",
            "SELECT \"",
            "SELECT /*",
            "SELECT $a$",
            "SELECT $",
            "SELECT E'\\",
        ] {
            let _ = rewrite_placeholders(sql, 0);
        }
    }

    #[test]
    fn role_and_schema_names_fit_and_differ_per_database() {
        let long = "x".repeat(200);
        assert!(role_name(&long, &long).len() <= 63);
        assert!(schema_name(&long).len() <= 63);
        assert_ne!(role_name("a_b", "c"), role_name("a", "b_c"));
        assert_ne!(role_name("db1", "packets"), role_name("db2", "packets"));
        assert_ne!(schema_name("a-b"), schema_name("a_b"));
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
