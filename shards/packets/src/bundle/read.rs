//! Reading a bundle: unpacking either encoding, then checking it whole before any record is
//! built from it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use arkham_shard_sdk::{ApiError, random};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    CONTENTS, FORMAT, FORMAT_VERSION, MANIFEST, MAX_CONTENTS, MAX_FILE_NAME, MAX_JSON_BYTES,
    MAX_SUMMARY, MAX_TIMESTAMP, MAX_TOTAL_BYTES, MAX_VERSIONS, PACKET, VERSIONS, snapshot_file,
    to_bytes,
};
use crate::model::{Content, ContentType, ExportFormat, Packet, Status, Version, Visibility};
use crate::{files, snapshot, validate};

/// A bundle checked whole and turned into new records for the packet `id`.
pub struct Imported {
    pub format: ExportFormat,
    pub source_packet_id: String,
    pub packet: Packet,
    pub contents: Vec<Content>,
    /// Each version with the snapshot to store under its `snapshot_path`.
    pub versions: Vec<(Version, Option<Vec<u8>>)>,
}

/// 422 `invalid_bundle`, naming the file (or `bundle`) and what is wrong with it. Both may
/// quote the bundle, so both are cut short: an error never echoes a large input back.
fn refuse(file: &str, problem: impl Into<String>) -> ApiError {
    let file = shortened(file, MAX_FILE_NAME);
    let problem = shortened(&problem.into(), 400);
    ApiError::new(
        422,
        "invalid_bundle",
        format!("the bundle is refused: {file}: {problem}"),
    )
    .with_field(file, problem)
}

/// `text` cut to at most `max` characters, marked with `…` when cut.
fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    source_packet_id: String,
    contents_checksum: String,
    files: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    path: String,
    size: u64,
    sha256: String,
}

#[derive(Deserialize)]
struct PortablePacket {
    name: String,
    #[serde(default)]
    description: String,
    status: String,
    visibility: String,
    created_by: String,
    version: i64,
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

#[derive(Deserialize)]
struct PortableContent {
    content_type: String,
    content_id: String,
    #[serde(default)]
    content_title: Option<String>,
    added_at: String,
    added_by: String,
    order_num: i64,
}

#[derive(Deserialize)]
struct PortableVersion {
    version_number: i64,
    created_at: String,
    changes_summary: String,
    #[serde(default)]
    snapshot: Option<String>,
}

/// The bundle's manifest (as a document) and its files' bytes.
struct Unpacked<'a> {
    format: ExportFormat,
    manifest: Value,
    files: BTreeMap<String, Cow<'a, [u8]>>,
}

fn unpack(body: &[u8]) -> Result<Unpacked<'_>, ApiError> {
    if body.starts_with(b"PK") {
        let limits = crate::zip::Limits {
            max_entries: MAX_VERSIONS + 8,
            max_name_bytes: MAX_FILE_NAME,
            max_total_bytes: MAX_TOTAL_BYTES,
        };
        let entries =
            crate::zip::read(body, &limits).map_err(|err| refuse("bundle", err.to_string()))?;
        let mut files = BTreeMap::new();
        let mut manifest = None;
        for (name, data) in entries {
            if name == MANIFEST {
                manifest = Some(
                    serde_json::from_slice::<Value>(data)
                        .map_err(|err| refuse(MANIFEST, format!("not JSON: {err}")))?,
                );
            } else {
                files.insert(name, Cow::Borrowed(data));
            }
        }
        let manifest = manifest.ok_or_else(|| refuse(MANIFEST, "missing from the archive"))?;
        return Ok(Unpacked {
            format: ExportFormat::Zip,
            manifest,
            files,
        });
    }
    if body.len() > MAX_JSON_BYTES {
        return Err(refuse(
            "bundle",
            format!("a JSON bundle is at most {MAX_JSON_BYTES} bytes; import a zip bundle"),
        ));
    }
    let document: Value = serde_json::from_slice(body).map_err(|err| {
        refuse(
            "bundle",
            format!("neither a zip archive nor a JSON document ({err})"),
        )
    })?;
    let Value::Object(mut document) = document else {
        return Err(refuse("bundle", "the JSON document is not an object"));
    };
    let manifest = document
        .remove("manifest")
        .ok_or_else(|| refuse(MANIFEST, "the document has no `manifest`"))?;
    let Some(Value::Object(embedded)) = document.remove("files") else {
        return Err(refuse("bundle", "the document has no `files` object"));
    };
    if embedded.len() > MAX_VERSIONS + 8 {
        return Err(refuse("bundle", "too many files"));
    }
    let mut files = BTreeMap::new();
    for (path, value) in embedded {
        files.insert(path, Cow::Owned(to_bytes(&value)?));
    }
    Ok(Unpacked {
        format: ExportFormat::Json,
        manifest,
        files,
    })
}

fn parse<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| refuse(file, format!("unexpected shape: {err}")))
}

fn text(
    file: &str,
    field: &str,
    value: &str,
    max: usize,
    allow_empty: bool,
) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() && !allow_empty {
        return Err(refuse(file, format!("`{field}` is empty")));
    }
    if value.chars().count() > max {
        return Err(refuse(file, format!("`{field}` passes {max} characters")));
    }
    Ok(value.to_owned())
}

fn word<T>(
    file: &str,
    field: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, ApiError> {
    parse(value).ok_or_else(|| refuse(file, format!("`{field}` is not a known value: `{value}`")))
}

/// Checks `body` whole and builds the records of a new packet `id` created at `now`.
pub fn decode(body: &[u8], id: &str, now: &str) -> Result<Imported, ApiError> {
    let unpacked = unpack(body)?;
    match unpacked.manifest.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(refuse(
                MANIFEST,
                format!("not a packets bundle (format `{other}`, expected `{FORMAT}`)"),
            ));
        }
        None => return Err(refuse(MANIFEST, "not a packets bundle (no `format`)")),
    }
    match unpacked
        .manifest
        .get("format_version")
        .and_then(Value::as_i64)
    {
        Some(FORMAT_VERSION) => {}
        other => {
            return Err(refuse(
                MANIFEST,
                format!(
                    "format_version {other:?} is not supported (this shard reads {FORMAT_VERSION})"
                ),
            ));
        }
    }
    let manifest: Manifest = serde_json::from_value(unpacked.manifest)
        .map_err(|err| refuse(MANIFEST, format!("unexpected shape: {err}")))?;
    if manifest.source_packet_id.len() > MAX_TIMESTAMP {
        return Err(refuse(MANIFEST, "`source_packet_id` is too long"));
    }

    // Every listed file is there, whole and unchanged; nothing else is.
    let mut listed = BTreeSet::new();
    for entry in &manifest.files {
        if !listed.insert(entry.path.as_str()) {
            return Err(refuse(&entry.path, "listed twice in the manifest"));
        }
        let Some(bytes) = unpacked.files.get(&entry.path) else {
            return Err(refuse(&entry.path, "listed in the manifest but missing"));
        };
        if bytes.len() as u64 != entry.size {
            return Err(refuse(
                &entry.path,
                format!("{} bytes, the manifest says {}", bytes.len(), entry.size),
            ));
        }
        if !snapshot::sha256_hex(bytes).eq_ignore_ascii_case(&entry.sha256) {
            return Err(refuse(
                &entry.path,
                "does not match its SHA-256 in the manifest",
            ));
        }
    }
    if let Some(extra) = unpacked
        .files
        .keys()
        .find(|path| !listed.contains(path.as_str()))
    {
        return Err(refuse(extra, "not listed in the manifest"));
    }
    let file = |name: &str| {
        unpacked
            .files
            .get(name)
            .ok_or_else(|| refuse(name, "missing from the bundle"))
    };

    let portable: PortablePacket = parse(PACKET, file(PACKET)?)?;
    let portable_contents: Vec<PortableContent> = parse(CONTENTS, file(CONTENTS)?)?;
    let portable_versions: Vec<PortableVersion> = parse(VERSIONS, file(VERSIONS)?)?;
    if portable_contents.len() > MAX_CONTENTS {
        return Err(refuse(CONTENTS, format!("more than {MAX_CONTENTS} items")));
    }
    if portable_versions.len() > MAX_VERSIONS {
        return Err(refuse(
            VERSIONS,
            format!("more than {MAX_VERSIONS} versions"),
        ));
    }

    // Entry ids are new; sorted, so that items with the same order_num and added_at keep
    // their order (the listing's tie-break is the id).
    let mut entry_ids: Vec<String> = portable_contents
        .iter()
        .map(|_| random::uuid_v4())
        .collect();
    entry_ids.sort();
    let mut contents = Vec::with_capacity(portable_contents.len());
    let mut seen = BTreeSet::new();
    for (item, entry_id) in portable_contents.into_iter().zip(entry_ids) {
        let content_type = word(
            CONTENTS,
            "content_type",
            &item.content_type,
            ContentType::parse,
        )?;
        let content_id = text(
            CONTENTS,
            "content_id",
            &item.content_id,
            validate::CONTENT_ID_MAX,
            false,
        )?;
        if !seen.insert((content_type.as_str(), content_id.clone())) {
            return Err(refuse(
                CONTENTS,
                format!("{} `{content_id}` appears twice", content_type.as_str()),
            ));
        }
        let content_title = item
            .content_title
            .map(|title| text(CONTENTS, "content_title", &title, validate::TITLE_MAX, true))
            .transpose()?;
        if !(0..=i64::from(i32::MAX)).contains(&item.order_num) {
            return Err(refuse(CONTENTS, "`order_num` is out of range"));
        }
        contents.push(Content {
            id: entry_id,
            packet_id: id.to_owned(),
            content_type,
            content_id,
            content_title,
            added_at: text(CONTENTS, "added_at", &item.added_at, MAX_TIMESTAMP, false)?,
            added_by: text(
                CONTENTS,
                "added_by",
                &item.added_by,
                validate::ACTOR_MAX,
                false,
            )?,
            order_num: item.order_num,
        });
    }

    let listing = snapshot::canonical_listing(&contents);
    let contents_checksum = snapshot::sha256_hex(&listing);
    if !contents_checksum.eq_ignore_ascii_case(&manifest.contents_checksum) {
        return Err(refuse(
            CONTENTS,
            "does not match the manifest's contents_checksum",
        ));
    }
    if let Some(checksum) = &portable.checksum
        && !checksum.eq_ignore_ascii_case(&contents_checksum)
    {
        return Err(refuse(PACKET, "`checksum` does not match the contents"));
    }

    let mut versions = Vec::with_capacity(portable_versions.len());
    let mut numbers = BTreeSet::new();
    let mut snapshot_files = BTreeSet::new();
    for item in portable_versions {
        let number = item.version_number;
        if number < 1 || number > portable.version {
            return Err(refuse(
                VERSIONS,
                format!("version {number} is outside 1..={}", portable.version),
            ));
        }
        if !numbers.insert(number) {
            return Err(refuse(VERSIONS, format!("version {number} appears twice")));
        }
        let version_id = random::uuid_v4();
        let snapshot = match item.snapshot {
            None => None,
            Some(path) => {
                if path != snapshot_file(number) {
                    return Err(refuse(
                        VERSIONS,
                        format!("version {number} names the snapshot `{path}`"),
                    ));
                }
                let bytes = file(&path)?;
                if !serde_json::from_slice::<Value>(bytes).is_ok_and(|value| value.is_object()) {
                    return Err(refuse(&path, "not a JSON object"));
                }
                snapshot_files.insert(path);
                Some(bytes.to_vec())
            }
        };
        versions.push((
            Version {
                snapshot_path: snapshot
                    .as_ref()
                    .map(|_| files::snapshot_key(id, number, &version_id)),
                id: version_id,
                packet_id: id.to_owned(),
                version_number: number,
                created_at: text(
                    VERSIONS,
                    "created_at",
                    &item.created_at,
                    MAX_TIMESTAMP,
                    false,
                )?,
                changes_summary: text(
                    VERSIONS,
                    "changes_summary",
                    &item.changes_summary,
                    MAX_SUMMARY,
                    true,
                )?,
            },
            snapshot,
        ));
    }
    if let Some(stray) = unpacked.files.keys().find(|path| {
        ![PACKET, CONTENTS, VERSIONS].contains(&path.as_str()) && !snapshot_files.contains(*path)
    }) {
        return Err(refuse(stray, "not part of a packets bundle"));
    }

    let status = match word(PACKET, "status", &portable.status, Status::parse)? {
        // Shares are not carried over: an imported shared packet is finalised, unshared.
        Status::Shared => Status::Finalized,
        status => status,
    };
    if portable.version < 1 {
        return Err(refuse(PACKET, "`version` must be at least 1"));
    }
    let packet = Packet {
        id: id.to_owned(),
        name: text(PACKET, "name", &portable.name, validate::NAME_MAX, false)?,
        description: text(
            PACKET,
            "description",
            &portable.description,
            validate::DESCRIPTION_MAX,
            true,
        )?,
        status,
        visibility: word(
            PACKET,
            "visibility",
            &portable.visibility,
            Visibility::parse,
        )?,
        created_by: text(
            PACKET,
            "created_by",
            &portable.created_by,
            validate::ACTOR_MAX,
            false,
        )?,
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        version: portable.version,
        contents_count: i64::try_from(contents.len()).unwrap_or(i64::MAX),
        size_bytes: if portable.checksum.is_some() {
            i64::try_from(listing.len()).unwrap_or(i64::MAX)
        } else {
            0
        },
        checksum: portable.checksum.map(|c| c.to_ascii_lowercase()),
        metadata: Value::Object(portable.metadata),
        import_source: None,
    };
    Ok(Imported {
        format: unpacked.format,
        source_packet_id: manifest.source_packet_id,
        packet,
        contents,
        versions,
    })
}
