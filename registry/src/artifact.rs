//! The CNCF Wasm OCI artifact: an OCI image manifest with a `application/vnd.wasm.config.v0+json`
//! config and exactly one `application/wasm` layer holding the component.

use crate::digest::Digest;
use std::collections::BTreeMap;

/// The OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index media type (`index.json` of a layout).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The Wasm config media type.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The Wasm layer media type.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// Layer media types accepted on pull: the spec's, Spin's, and older tools'.
pub const ACCEPTED_LAYER_MEDIA_TYPES: &[&str] = &[
    WASM_LAYER_MEDIA_TYPE,
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.oci.image.layer.v1.tar",
    "application/octet-stream",
];

/// Manifest annotation keys.
pub mod annotations {
    /// `org.opencontainers.image.title`.
    pub const TITLE: &str = "org.opencontainers.image.title";
    /// `org.opencontainers.image.version`.
    pub const VERSION: &str = "org.opencontainers.image.version";
    /// `org.opencontainers.image.description`.
    pub const DESCRIPTION: &str = "org.opencontainers.image.description";
    /// `org.opencontainers.image.licenses`.
    pub const LICENSES: &str = "org.opencontainers.image.licenses";
    /// `org.opencontainers.image.source`.
    pub const SOURCE: &str = "org.opencontainers.image.source";
    /// `org.opencontainers.image.created`.
    pub const CREATED: &str = "org.opencontainers.image.created";
    /// The tag name in an OCI layout's `index.json`.
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    /// The shard's name.
    pub const SHARD_NAME: &str = "dev.arkham.shard.name";
    /// The shard's `requires_frame`.
    pub const SHARD_REQUIRES_FRAME: &str = "dev.arkham.shard.requires-frame";
    /// The services the shard uses, comma-separated.
    pub const SHARD_SERVICES: &str = "dev.arkham.shard.services";
    /// The whole shard manifest (TOML), so `add` can check it before downloading the component.
    pub const SHARD_MANIFEST: &str = "dev.arkham.shard.manifest";
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The content's media type.
    pub media_type: String,
    /// The content's digest (any algorithm on input; only sha256 is accepted when fetched).
    pub digest: String,
    /// The content's size in bytes.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// OCI 1.1 artifact type (not written; read when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The Wasm config blob (`application/vnd.wasm.config.v0+json`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// When the artifact was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made it.
    #[serde(default)]
    pub author: Option<String>,
    /// Always `wasm`.
    #[serde(default)]
    pub architecture: String,
    /// `wasip2` for components.
    #[serde(default)]
    pub os: String,
    /// The digests of the layers.
    #[serde(default)]
    pub layer_digests: Vec<String>,
    /// What the component imports and exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

/// The `component` part of the Wasm config.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ComponentInfo {
    /// Exported interfaces, e.g. `wasi:http/incoming-handler@0.2.6`.
    #[serde(default)]
    pub exports: Vec<String>,
    /// Imported interfaces.
    #[serde(default)]
    pub imports: Vec<String>,
    /// The target world, if known.
    #[serde(default)]
    pub target: Option<String>,
}

/// Serializes `value` as canonical-enough JSON (sorted map keys via BTreeMap, no whitespace).
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Builds the manifest and config of an artifact holding `component`.
pub fn build(
    component: &[u8],
    title: &str,
    interfaces: ComponentInfo,
    created: &str,
    annotations: BTreeMap<String, String>,
) -> (ImageManifest, Vec<u8>) {
    build_for(
        &Digest::of(component),
        component.len() as u64,
        title,
        interfaces,
        created,
        annotations,
    )
}

/// Like [`build`], for a component known by its digest and size (one streamed from a file).
pub fn build_for(
    layer_digest: &Digest,
    layer_size: u64,
    title: &str,
    interfaces: ComponentInfo,
    created: &str,
    annotations: BTreeMap<String, String>,
) -> (ImageManifest, Vec<u8>) {
    let config = WasmConfig {
        created: Some(created.to_string()),
        author: None,
        architecture: "wasm".to_string(),
        os: "wasip2".to_string(),
        layer_digests: vec![layer_digest.to_string()],
        component: Some(interfaces),
    };
    let config_bytes = to_json(&config);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
        artifact_type: None,
        config: Descriptor {
            media_type: WASM_CONFIG_MEDIA_TYPE.to_string(),
            digest: Digest::of(&config_bytes).to_string(),
            size: config_bytes.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: vec![Descriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
            digest: layer_digest.to_string(),
            size: layer_size,
            annotations: BTreeMap::from([(annotations::TITLE.to_string(), title.to_string())]),
        }],
        annotations,
    };
    (manifest, config_bytes)
}
