//! The packet records as stored and as sent in JSON, and their closed vocabularies.

use arkham_shard_sdk::db::{self, Row};
use serde::Serialize;

/// Declares a closed vocabulary stored as TEXT: its JSON form, parsing and the list of names.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`")]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every name, in declaration order.
            pub const NAMES: &[&str] = &[$($text),+];

            /// The stored and JSON name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses a name; `None` if it is not one of [`Self::NAMES`].
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Reads the column `column` of `row`.
            // `allow`, not `expect`: only the vocabularies stored in a column use it.
            #[allow(dead_code, reason = "ExportFormat is never stored in a column")]
            pub fn from_row(row: &Row, column: &str) -> Result<Self, db::Error> {
                let text: String = row.get(column)?;
                Self::parse(&text).ok_or_else(|| {
                    db::Error::Other(format!(
                        "column `{column}` holds `{text}`, not one of {}",
                        Self::NAMES.join(", ")
                    ))
                })
            }
        }
    };
}

vocabulary! {
    /// Where a packet is in its workflow: draft -> finalized -> shared, any of them -> archived.
    Status { Draft = "draft", Finalized = "finalized", Shared = "shared", Archived = "archived" }
}

vocabulary! {
    /// Who may see a packet.
    Visibility { Private = "private", Internal = "internal", Public = "public" }
}

vocabulary! {
    /// What a share lets its recipient do.
    Permission { View = "view", Comment = "comment", Edit = "edit" }
}

vocabulary! {
    /// How an export bundle is encoded: one JSON document, or a zip of JSON files.
    ExportFormat { Json = "json", Zip = "zip" }
}

vocabulary! {
    /// The kind of item a packet bundles.
    ContentType {
        Document = "document",
        Entity = "entity",
        Claim = "claim",
        EvidenceChain = "evidence_chain",
        Matrix = "matrix",
        Timeline = "timeline",
        Report = "report",
    }
}

/// A packet (table `arkham_packets`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Packet {
    pub id: String,
    pub name: String,
    pub description: String,
    pub status: Status,
    pub visibility: Visibility,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// Starts at 1; every finalisation and every version asked for adds one, so it is the
    /// number of the newest version (1 while there is none).
    pub version: i64,
    pub contents_count: i64,
    /// Bytes of the canonical contents listing hashed into `checksum` (0 until finalised).
    pub size_bytes: i64,
    /// SHA-256 (hex) of the canonical contents listing, set when finalised.
    pub checksum: Option<String>,
    /// Free-form JSON object, stored as TEXT.
    pub metadata: serde_json::Value,
    /// Where an imported packet came from (`"{format}:{source packet id}"` or what the importer
    /// named); `None` for packets created here.
    pub import_source: Option<String>,
}

impl Packet {
    /// The columns [`Packet::from_row`] reads, for SELECT lists.
    pub const COLUMNS: &str = "id, name, description, status, visibility, created_by, created_at, \
         updated_at, version, contents_count, size_bytes, checksum, metadata, \
         (SELECT i.import_source FROM arkham_packet_imports i \
          WHERE i.packet_id = arkham_packets.id) AS import_source";

    /// Reads a row selected with [`Packet::COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Self, db::Error> {
        let metadata: String = row.get("metadata")?;
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            status: Status::from_row(row, "status")?,
            visibility: Visibility::from_row(row, "visibility")?,
            created_by: row.get("created_by")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
            version: row.get("version")?,
            contents_count: row.get("contents_count")?,
            size_bytes: row.get("size_bytes")?,
            checksum: row.get("checksum")?,
            // Only this shard writes the column, always from a JSON object.
            metadata: serde_json::from_str(&metadata)
                .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())),
            import_source: row.get("import_source")?,
        })
    }
}

/// An item bundled in a packet (table `arkham_packet_contents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Content {
    pub id: String,
    pub packet_id: String,
    pub content_type: ContentType,
    pub content_id: String,
    pub content_title: Option<String>,
    pub added_at: String,
    pub added_by: String,
    pub order_num: i64,
}

impl Content {
    /// The columns [`Content::from_row`] reads.
    pub const COLUMNS: &str =
        "id, packet_id, content_type, content_id, content_title, added_at, added_by, order_num";

    /// Reads a row selected with [`Content::COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Self, db::Error> {
        Ok(Self {
            id: row.get("id")?,
            packet_id: row.get("packet_id")?,
            content_type: ContentType::from_row(row, "content_type")?,
            content_id: row.get("content_id")?,
            content_title: row.get("content_title")?,
            added_at: row.get("added_at")?,
            added_by: row.get("added_by")?,
            order_num: row.get("order_num")?,
        })
    }
}

/// A grant of access to a packet (table `arkham_packet_shares`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    pub id: String,
    pub packet_id: String,
    pub shared_with: String,
    pub permissions: Permission,
    pub shared_at: String,
    /// RFC 3339 UTC with milliseconds; past it the token opens nothing.
    pub expires_at: Option<String>,
    pub access_token: String,
}

impl Share {
    /// The columns [`Share::from_row`] reads.
    pub const COLUMNS: &str =
        "id, packet_id, shared_with, permissions, shared_at, expires_at, access_token";

    /// Reads a row selected with [`Share::COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Self, db::Error> {
        Ok(Self {
            id: row.get("id")?,
            packet_id: row.get("packet_id")?,
            shared_with: row.get("shared_with")?,
            permissions: Permission::from_row(row, "permissions")?,
            shared_at: row.get("shared_at")?,
            expires_at: row.get("expires_at")?,
            access_token: row.get("access_token")?,
        })
    }
}

/// A comment left through a share link that grants `comment` (table `arkham_packet_comments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    pub id: String,
    pub packet_id: String,
    /// The share it came through (the token itself is never shown).
    pub share_id: String,
    /// Who wrote it: what the commenter gave, else the share's `shared_with`.
    pub author: String,
    pub body: String,
    pub created_at: String,
}

impl Comment {
    /// The columns [`Comment::from_row`] reads.
    pub const COLUMNS: &str = "id, packet_id, share_id, author, body, created_at";

    /// Reads a row selected with [`Comment::COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Self, db::Error> {
        Ok(Self {
            id: row.get("id")?,
            packet_id: row.get("packet_id")?,
            share_id: row.get("share_id")?,
            author: row.get("author")?,
            body: row.get("body")?,
            created_at: row.get("created_at")?,
        })
    }
}

/// A recorded state of a packet, made at finalisation or on request (table `arkham_packet_versions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub id: String,
    pub packet_id: String,
    pub version_number: i64,
    pub created_at: String,
    pub changes_summary: String,
    /// Storage key of the JSON snapshot; `None` when storage was unavailable at finalisation.
    pub snapshot_path: Option<String>,
}

impl Version {
    /// The columns [`Version::from_row`] reads.
    pub const COLUMNS: &str =
        "id, packet_id, version_number, created_at, changes_summary, snapshot_path";

    /// Reads a row selected with [`Version::COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Self, db::Error> {
        Ok(Self {
            id: row.get("id")?,
            packet_id: row.get("packet_id")?,
            version_number: row.get("version_number")?,
            created_at: row.get("created_at")?,
            changes_summary: row.get("changes_summary")?,
            snapshot_path: row.get("snapshot_path")?,
        })
    }
}

/// One page of a listing: `{"items":[...],"total":N,"limit":..,"offset":..}`.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}
