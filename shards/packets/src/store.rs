//! Database access: the schema and one function per query. Write paths that need several
//! statements take a [`Transaction`]; read paths take any [`Executor`].

use arkham_shard_sdk::db::{self, Executor, Value};
use arkham_shard_sdk::params;

use crate::model::{Comment, Content, Packet, Share, Status, Version};
use crate::validate::ListFilter;

/// Bump when `SCHEMA` changes; `SCHEMA` must work on a new database and on any older version.
/// Portable to SQLite and PostgreSQL: TEXT timestamps, BIGINT where a count may pass 2^31
/// (INTEGER is 32-bit on PostgreSQL; SQLite reads BIGINT as INTEGER, so existing files match).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS arkham_packets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'draft',
    visibility TEXT NOT NULL DEFAULT 'private',
    created_by TEXT NOT NULL DEFAULT 'system',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    contents_count INTEGER NOT NULL DEFAULT 0,
    size_bytes BIGINT NOT NULL DEFAULT 0,
    checksum TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS idx_packets_status ON arkham_packets(status);
CREATE INDEX IF NOT EXISTS idx_packets_creator ON arkham_packets(created_by);

CREATE TABLE IF NOT EXISTS arkham_packet_contents (
    id TEXT PRIMARY KEY,
    packet_id TEXT NOT NULL REFERENCES arkham_packets(id),
    content_type TEXT NOT NULL,
    content_id TEXT NOT NULL,
    content_title TEXT,
    added_at TEXT NOT NULL,
    added_by TEXT NOT NULL DEFAULT 'system',
    order_num INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_contents_packet ON arkham_packet_contents(packet_id);

CREATE TABLE IF NOT EXISTS arkham_packet_shares (
    id TEXT PRIMARY KEY,
    packet_id TEXT NOT NULL REFERENCES arkham_packets(id),
    shared_with TEXT NOT NULL,
    permissions TEXT NOT NULL DEFAULT 'view',
    shared_at TEXT NOT NULL,
    expires_at TEXT,
    access_token TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_shares_packet ON arkham_packet_shares(packet_id);
CREATE INDEX IF NOT EXISTS idx_shares_token ON arkham_packet_shares(access_token);

CREATE TABLE IF NOT EXISTS arkham_packet_versions (
    id TEXT PRIMARY KEY,
    packet_id TEXT NOT NULL REFERENCES arkham_packets(id),
    version_number INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    changes_summary TEXT NOT NULL,
    snapshot_path TEXT
);
CREATE INDEX IF NOT EXISTS idx_versions_packet ON arkham_packet_versions(packet_id);

-- Version 2. Where imported packets came from: a table of its own rather than an ALTER, so the
-- script stays idempotent for every later version. Two versions of a packet never share a
-- number: of two concurrent version requests, the second fails instead of duplicating it.
CREATE TABLE IF NOT EXISTS arkham_packet_imports (
    packet_id TEXT PRIMARY KEY REFERENCES arkham_packets(id),
    import_source TEXT NOT NULL,
    imported_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_versions_number
    ON arkham_packet_versions(packet_id, version_number);

-- Version 3. Comments left through a share link that grants `comment`; kept when the share is
-- revoked (they are the packet's), with the share they came through.
CREATE TABLE IF NOT EXISTS arkham_packet_comments (
    id TEXT PRIMARY KEY,
    packet_id TEXT NOT NULL REFERENCES arkham_packets(id),
    share_id TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_comments_packet ON arkham_packet_comments(packet_id, created_at);
";

/// Creates the tables on first use; afterwards the frame answers from memory.
pub fn ensure_schema() -> Result<(), db::Error> {
    db::ensure_schema(SCHEMA_VERSION, SCHEMA)
}

fn count(db: &impl Executor, sql: &str, params: &[Value]) -> Result<i64, db::Error> {
    match db.query_opt(sql, params)? {
        Some(row) => row.get("n"),
        None => Ok(0),
    }
}

// ---- packets ----

pub fn insert_packet(db: &impl Executor, packet: &Packet) -> Result<(), db::Error> {
    db.execute(
        "INSERT INTO arkham_packets (id, name, description, status, visibility, created_by, \
         created_at, updated_at, version, contents_count, size_bytes, checksum, metadata) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            &packet.id,
            &packet.name,
            &packet.description,
            packet.status.as_str(),
            packet.visibility.as_str(),
            &packet.created_by,
            &packet.created_at,
            &packet.updated_at,
            packet.version,
            packet.contents_count,
            packet.size_bytes,
            packet.checksum.as_deref(),
            packet.metadata.to_string(),
        ],
    )?;
    if let Some(source) = &packet.import_source {
        db.execute(
            "INSERT INTO arkham_packet_imports (packet_id, import_source, imported_at) \
             VALUES (?, ?, ?)",
            params![&packet.id, source, &packet.created_at],
        )?;
    }
    Ok(())
}

pub fn get_packet(db: &impl Executor, id: &str) -> Result<Option<Packet>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packets WHERE id = ?",
        Packet::COLUMNS
    );
    db.query_opt(&sql, params![id])?
        .map(|row| Packet::from_row(&row))
        .transpose()
}

/// Writes every mutable column of `packet` back.
pub fn update_packet(db: &impl Executor, packet: &Packet) -> Result<(), db::Error> {
    db.execute(
        "UPDATE arkham_packets SET name = ?, description = ?, status = ?, visibility = ?, \
         updated_at = ?, version = ?, contents_count = ?, size_bytes = ?, checksum = ?, \
         metadata = ? WHERE id = ?",
        params![
            &packet.name,
            &packet.description,
            packet.status.as_str(),
            packet.visibility.as_str(),
            &packet.updated_at,
            packet.version,
            packet.contents_count,
            packet.size_bytes,
            packet.checksum.as_deref(),
            packet.metadata.to_string(),
            &packet.id,
        ],
    )?;
    Ok(())
}

/// The WHERE clause and its parameters for a listing.
fn list_where(filter: &ListFilter) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    match filter.status {
        Some(status) => {
            clauses.push("status = ?");
            params.push(status.as_str().into());
        }
        None => {
            clauses.push("status <> ?");
            params.push(Status::Archived.as_str().into());
        }
    }
    if let Some(visibility) = filter.visibility {
        clauses.push("visibility = ?");
        params.push(visibility.as_str().into());
    }
    if let Some(created_by) = &filter.created_by {
        clauses.push("created_by = ?");
        params.push(created_by.into());
    }
    if let Some(q) = &filter.q {
        // LOWER on both sides: LIKE is case-insensitive in SQLite but not in PostgreSQL.
        clauses.push("LOWER(name) LIKE ? ESCAPE '\\'");
        params.push(format!("%{}%", escape_like(&q.to_lowercase())).into());
    }
    (clauses.join(" AND "), params)
}

fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// One page of packets, newest first, and the total matching the filter.
pub fn list_packets(
    db: &impl Executor,
    filter: &ListFilter,
) -> Result<(Vec<Packet>, i64), db::Error> {
    let (where_sql, mut params) = list_where(filter);
    let total = count(
        db,
        &format!("SELECT COUNT(*) AS n FROM arkham_packets WHERE {where_sql}"),
        &params,
    )?;
    params.push(filter.limit.into());
    params.push(filter.offset.into());
    let sql = format!(
        "SELECT {} FROM arkham_packets WHERE {where_sql} \
         ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
        Packet::COLUMNS
    );
    let packets = db.query(&sql, &params)?.map(|row| Packet::from_row(&row))?;
    Ok((packets, total))
}

/// Packets with `status`, or all that are not archived.
pub fn count_packets(db: &impl Executor, status: Option<Status>) -> Result<i64, db::Error> {
    match status {
        Some(status) => count(
            db,
            "SELECT COUNT(*) AS n FROM arkham_packets WHERE status = ?",
            params![status.as_str()],
        ),
        None => count(
            db,
            "SELECT COUNT(*) AS n FROM arkham_packets WHERE status <> ?",
            params![Status::Archived.as_str()],
        ),
    }
}

/// Packet counts per status (every status present, zero when none).
pub fn count_by_status(db: &impl Executor) -> Result<Vec<(Status, i64)>, db::Error> {
    let rows = db.query(
        "SELECT status, COUNT(*) AS n FROM arkham_packets GROUP BY status",
        params![],
    )?;
    let mut counts: Vec<(Status, i64)> = [
        Status::Draft,
        Status::Finalized,
        Status::Shared,
        Status::Archived,
    ]
    .into_iter()
    .map(|status| (status, 0))
    .collect();
    for row in rows {
        let status = Status::from_row(&row, "status")?;
        let n: i64 = row.get("n")?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

/// Totals of the side tables: (contents, shares, versions).
pub fn side_totals(db: &impl Executor) -> Result<(i64, i64, i64), db::Error> {
    Ok((
        count(
            db,
            "SELECT COUNT(*) AS n FROM arkham_packet_contents",
            params![],
        )?,
        count(
            db,
            "SELECT COUNT(*) AS n FROM arkham_packet_shares",
            params![],
        )?,
        count(
            db,
            "SELECT COUNT(*) AS n FROM arkham_packet_versions",
            params![],
        )?,
    ))
}

// ---- contents ----

/// The packet's contents in their canonical order.
pub fn list_contents(db: &impl Executor, packet_id: &str) -> Result<Vec<Content>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packet_contents WHERE packet_id = ? ORDER BY order_num, added_at, id",
        Content::COLUMNS
    );
    db.query(&sql, params![packet_id])?
        .map(|row| Content::from_row(&row))
}

pub fn get_content(
    db: &impl Executor,
    packet_id: &str,
    id: &str,
) -> Result<Option<Content>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packet_contents WHERE packet_id = ? AND id = ?",
        Content::COLUMNS
    );
    db.query_opt(&sql, params![packet_id, id])?
        .map(|row| Content::from_row(&row))
        .transpose()
}

/// How many items the packet holds.
pub fn count_contents(db: &impl Executor, packet_id: &str) -> Result<i64, db::Error> {
    count(
        db,
        "SELECT COUNT(*) AS n FROM arkham_packet_contents WHERE packet_id = ?",
        params![packet_id],
    )
}

/// Whether the packet already holds this item.
pub fn has_content(
    db: &impl Executor,
    packet_id: &str,
    content: (&str, &str),
) -> Result<bool, db::Error> {
    let (content_type, content_id) = content;
    Ok(count(
        db,
        "SELECT COUNT(*) AS n FROM arkham_packet_contents \
         WHERE packet_id = ? AND content_type = ? AND content_id = ?",
        params![packet_id, content_type, content_id],
    )? > 0)
}

/// The order number after the packet's last item.
pub fn next_order_num(db: &impl Executor, packet_id: &str) -> Result<i64, db::Error> {
    match db.query_opt(
        "SELECT MAX(order_num) AS n FROM arkham_packet_contents WHERE packet_id = ?",
        params![packet_id],
    )? {
        Some(row) => Ok(row.get::<Option<i64>>("n")?.map_or(0, |n| n + 1)),
        None => Ok(0),
    }
}

pub fn insert_content(db: &impl Executor, content: &Content) -> Result<(), db::Error> {
    db.execute(
        "INSERT INTO arkham_packet_contents (id, packet_id, content_type, content_id, \
         content_title, added_at, added_by, order_num) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            &content.id,
            &content.packet_id,
            content.content_type.as_str(),
            &content.content_id,
            content.content_title.as_deref(),
            &content.added_at,
            &content.added_by,
            content.order_num,
        ],
    )?;
    Ok(())
}

pub fn delete_content(db: &impl Executor, packet_id: &str, id: &str) -> Result<u64, db::Error> {
    db.execute(
        "DELETE FROM arkham_packet_contents WHERE packet_id = ? AND id = ?",
        params![packet_id, id],
    )
}

// ---- shares ----

pub fn list_shares(db: &impl Executor, packet_id: &str) -> Result<Vec<Share>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packet_shares WHERE packet_id = ? ORDER BY shared_at, id",
        Share::COLUMNS
    );
    db.query(&sql, params![packet_id])?
        .map(|row| Share::from_row(&row))
}

pub fn get_share(
    db: &impl Executor,
    packet_id: &str,
    id: &str,
) -> Result<Option<Share>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packet_shares WHERE packet_id = ? AND id = ?",
        Share::COLUMNS
    );
    db.query_opt(&sql, params![packet_id, id])?
        .map(|row| Share::from_row(&row))
        .transpose()
}

/// The share whose token is `token`, if any: tokens are looked up, never listed to a holder.
pub fn get_share_by_token(db: &impl Executor, token: &str) -> Result<Option<Share>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packet_shares WHERE access_token = ?",
        Share::COLUMNS
    );
    db.query_opt(&sql, params![token])?
        .map(|row| Share::from_row(&row))
        .transpose()
}

pub fn insert_share(db: &impl Executor, share: &Share) -> Result<(), db::Error> {
    db.execute(
        "INSERT INTO arkham_packet_shares (id, packet_id, shared_with, permissions, shared_at, \
         expires_at, access_token) VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![
            &share.id,
            &share.packet_id,
            &share.shared_with,
            share.permissions.as_str(),
            &share.shared_at,
            share.expires_at.as_deref(),
            &share.access_token,
        ],
    )?;
    Ok(())
}

pub fn delete_share(db: &impl Executor, packet_id: &str, id: &str) -> Result<u64, db::Error> {
    db.execute(
        "DELETE FROM arkham_packet_shares WHERE packet_id = ? AND id = ?",
        params![packet_id, id],
    )
}

// ---- comments ----

pub fn list_comments(db: &impl Executor, packet_id: &str) -> Result<Vec<Comment>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packet_comments WHERE packet_id = ? ORDER BY created_at, id",
        Comment::COLUMNS
    );
    db.query(&sql, params![packet_id])?
        .map(|row| Comment::from_row(&row))
}

pub fn insert_comment(db: &impl Executor, comment: &Comment) -> Result<(), db::Error> {
    db.execute(
        "INSERT INTO arkham_packet_comments (id, packet_id, share_id, author, body, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
        params![
            &comment.id,
            &comment.packet_id,
            &comment.share_id,
            &comment.author,
            &comment.body,
            &comment.created_at,
        ],
    )?;
    Ok(())
}

// ---- versions ----

pub fn list_versions(db: &impl Executor, packet_id: &str) -> Result<Vec<Version>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packet_versions WHERE packet_id = ? ORDER BY version_number, id",
        Version::COLUMNS
    );
    db.query(&sql, params![packet_id])?
        .map(|row| Version::from_row(&row))
}

pub fn get_version(
    db: &impl Executor,
    packet_id: &str,
    version_number: i64,
) -> Result<Option<Version>, db::Error> {
    let sql = format!(
        "SELECT {} FROM arkham_packet_versions WHERE packet_id = ? AND version_number = ?",
        Version::COLUMNS
    );
    db.query_opt(&sql, params![packet_id, version_number])?
        .map(|row| Version::from_row(&row))
        .transpose()
}

pub fn insert_version(db: &impl Executor, version: &Version) -> Result<(), db::Error> {
    db.execute(
        "INSERT INTO arkham_packet_versions (id, packet_id, version_number, created_at, \
         changes_summary, snapshot_path) VALUES (?, ?, ?, ?, ?, ?)",
        params![
            &version.id,
            &version.packet_id,
            version.version_number,
            &version.created_at,
            &version.changes_summary,
            version.snapshot_path.as_deref(),
        ],
    )?;
    Ok(())
}
