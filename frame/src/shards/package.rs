//! Self-describing shard components: the manifest embedded as a custom section, and what a
//! component imports and exports.
//!
//! A built shard is one `.wasm` file: the component exactly as the toolchain produced it, plus a
//! top-level custom section named [`MANIFEST_SECTION`] holding the manifest as TOML. Custom sections
//! do not change what a component does, so every runtime and tool still sees a normal component.

use super::manifest::{Manifest, ManifestError};
use std::ops::Range;

/// Name of the custom section that carries the shard manifest.
pub const MANIFEST_SECTION: &str = "arkham-shard-manifest";

const MAGIC: &[u8; 4] = b"\0asm";
/// Component-model binary version and layer, as every component since the 0.2 WASI release has.
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// A file that is not a shard component, or whose manifest is missing or invalid.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with `\\0asm`)")]
    NotWasm,
    /// A core module where a component is expected.
    #[error(
        "this is a core WebAssembly module, not a component; build for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The binary is truncated or malformed.
    #[error("the component is malformed: {0}")]
    Malformed(String),
    /// No manifest section.
    #[error(
        "the component carries no shard manifest (custom section `{MANIFEST_SECTION}`); build it with `arkham shard build`, or pass its shard.toml"
    )]
    NoManifest,
    /// More than one manifest section.
    #[error("the component carries {0} shard manifests; it must carry exactly one")]
    ManyManifests(usize),
    /// The embedded manifest is not valid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component could not be read.
    #[error("cannot read the component: {0}")]
    Read(String),
}

/// One top-level section of a component: its id and the byte range of its contents.
struct Section {
    id: u8,
    whole: Range<usize>,
    contents: Range<usize>,
}

fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> Result<u32, PackageError> {
    let mut result: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes
            .get(*pos)
            .ok_or_else(|| PackageError::Malformed("truncated section header".into()))?;
        *pos += 1;
        result |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(result);
        }
    }
    Err(PackageError::Malformed(
        "section size is not a valid LEB128 u32".into(),
    ))
}

fn write_leb_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Checks the header and lists the top-level sections without parsing their contents.
fn sections(bytes: &[u8]) -> Result<Vec<Section>, PackageError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PackageError::NotWasm);
    }
    if bytes[4..8] != COMPONENT_VERSION {
        return Err(if bytes[6..8] == [0, 0] {
            PackageError::CoreModule
        } else {
            PackageError::Malformed(format!(
                "unsupported binary version {:02x?}; expected a component-model component",
                &bytes[4..8]
            ))
        });
    }
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let size = read_leb_u32(bytes, &mut pos)? as usize;
        let end = pos
            .checked_add(size)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| {
                PackageError::Malformed(format!("section at byte {start} runs past the end"))
            })?;
        out.push(Section {
            id,
            whole: start..end,
            contents: pos..end,
        });
        pos = end;
    }
    Ok(out)
}

/// The name and data of a custom section's contents.
fn custom_section(bytes: &[u8], section: &Section) -> Result<(String, Range<usize>), PackageError> {
    let mut pos = section.contents.start;
    let len = read_leb_u32(bytes, &mut pos)? as usize;
    let name_end = pos
        .checked_add(len)
        .filter(|e| *e <= section.contents.end)
        .ok_or_else(|| {
            PackageError::Malformed("custom section name runs past its section".into())
        })?;
    let name = std::str::from_utf8(&bytes[pos..name_end])
        .map_err(|_| PackageError::Malformed("custom section name is not UTF-8".into()))?;
    Ok((name.to_string(), name_end..section.contents.end))
}

/// A manifest section: the whole section's bytes, and its data's.
type ManifestSection = (Range<usize>, Range<usize>);

fn manifest_sections(bytes: &[u8]) -> Result<Vec<ManifestSection>, PackageError> {
    let mut found = Vec::new();
    for section in sections(bytes)? {
        if section.id == 0 {
            let (name, data) = custom_section(bytes, &section)?;
            if name == MANIFEST_SECTION {
                found.push((section.whole.clone(), data));
            }
        }
    }
    Ok(found)
}

/// The key of `component`'s compiled artifact (see [`Scan::compile_key`]), from a component in
/// memory: one hash over its header and every section that is not custom.
pub fn compile_key(component: &[u8]) -> Result<String, PackageError> {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    hash.update(&component[..8.min(component.len())]);
    for section in sections(component)? {
        if section.id != 0 {
            hash.update(&component[section.whole]);
        }
    }
    Ok(code_key(hash))
}

fn code_key(hash: sha2::Sha256) -> String {
    use sha2::Digest as _;
    format!("code-{}", crate::runtime::cache::hex(&hash.finalize()))
}

/// Largest top-level section a [`scan`] holds in memory (the manifest, the import and export
/// sections); everything else streams through.
const MAX_HELD_SECTION: u32 = 16 << 20;

/// What one pass over a packaged component finds, reading it as a stream: it is never held
/// whole, so a component read from a file costs memory for what it declares, not its size.
#[derive(Debug)]
pub struct Scan {
    /// The contents of each manifest section (see [`Scan::manifest`]).
    manifests: Vec<Vec<u8>>,
    /// Its top-level imports and exports.
    pub interfaces: Interfaces,
    /// The digest of every byte.
    pub digest: arkham_registry::digest::Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The key of its compiled artifact: a SHA-256 of the component without its top-level
    /// custom sections (the manifest, producers, padding), so that the same code packaged under
    /// other manifests (names, versions) compiles once. Sound because wasmtime's component
    /// translation skips top-level custom sections (wasmtime-environ 48
    /// `component/translate.rs`: `Payload::CustomSection { .. } => {}`): the artifact does not
    /// depend on them, which the tests below and the bench's thousand byte-identical artifacts
    /// of one component under a thousand names show too.
    pub compile_key: String,
    /// The component without its top-level custom sections, when asked for: what to compile,
    /// producing the same artifact as the whole component (see `compile_key`).
    pub code: Option<Vec<u8>>,
}

impl Scan {
    /// The manifest the component carries: exactly one.
    pub fn manifest(&self) -> Result<Manifest, PackageError> {
        let found: Vec<&[u8]> = self.manifests.iter().map(Vec::as_slice).collect();
        the_manifest(&found)
    }
}

/// Reads `input` as a stream of bytes that are all hashed, counting where it is.
struct Stream<R> {
    input: R,
    digest: arkham_registry::digest::Hasher,
    read: u64,
}

impl<R: std::io::Read> Stream<R> {
    /// Fills `buf`; `false` at a clean end of input before any byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, PackageError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(PackageError::Malformed(format!(
                        "the component ends inside a section, at byte {}",
                        self.read + filled as u64
                    )));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PackageError::Read(e.to_string())),
            }
        }
        self.digest.update(buf);
        self.read += buf.len() as u64;
        Ok(true)
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), PackageError> {
        if self.fill(buf)? || buf.is_empty() {
            return Ok(());
        }
        Err(PackageError::Malformed(format!(
            "the component ends inside a section, at byte {}",
            self.read
        )))
    }

    /// A LEB128 u32, and the bytes it was read from.
    fn leb_u32(&mut self, raw: &mut Vec<u8>) -> Result<u32, PackageError> {
        let mut result: u32 = 0;
        for shift in (0..35).step_by(7) {
            let mut byte = [0u8];
            self.exact(&mut byte)?;
            raw.push(byte[0]);
            result |= u32::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(result);
            }
        }
        Err(PackageError::Malformed(
            "section size is not a valid LEB128 u32".into(),
        ))
    }

    /// `len` bytes, held (bounded by [`MAX_HELD_SECTION`]).
    fn held(&mut self, len: u32, what: &str) -> Result<Vec<u8>, PackageError> {
        if len > MAX_HELD_SECTION {
            return Err(PackageError::Malformed(format!(
                "{what} is {len} bytes; at most {MAX_HELD_SECTION} are accepted"
            )));
        }
        let mut data = vec![0; len as usize];
        self.exact(&mut data)?;
        Ok(data)
    }

    /// Passes `len` bytes through to `sink` (each chunk), holding one chunk at a time.
    fn pass(&mut self, mut len: u64, mut sink: impl FnMut(&[u8])) -> Result<(), PackageError> {
        let mut chunk = vec![0u8; 64 << 10];
        while len > 0 {
            let n = len.min(chunk.len() as u64) as usize;
            self.exact(&mut chunk[..n])?;
            sink(&chunk[..n]);
            len -= n as u64;
        }
        Ok(())
    }
}

/// Component-model section ids whose names the frame checks.
const COMPONENT_IMPORT_SECTION: u8 = 10;
const COMPONENT_EXPORT_SECTION: u8 = 11;

/// Reads a packaged component from `input` in one pass (see [`Scan`]); with `keep_code`, keeps
/// what is compiled of it.
pub fn scan(input: impl std::io::Read, keep_code: bool) -> Result<Scan, PackageError> {
    use sha2::{Digest as _, Sha256};
    // Every byte is hashed once for the digest and, unless custom, once for the compile key.
    let mut stream = Stream {
        input,
        digest: arkham_registry::digest::Hasher::new(),
        read: 0,
    };
    let mut header = [0u8; 8];
    // Shorter than a header is not WebAssembly, as much as a wrong header.
    if !stream.fill(&mut header).map_err(|e| match e {
        PackageError::Malformed(_) => PackageError::NotWasm,
        e => e,
    })? || &header[..4] != MAGIC
    {
        return Err(PackageError::NotWasm);
    }
    if header[4..8] != COMPONENT_VERSION {
        return Err(if header[6..8] == [0, 0] {
            PackageError::CoreModule
        } else {
            PackageError::Malformed(format!(
                "unsupported binary version {:02x?}; expected a component-model component",
                &header[4..8]
            ))
        });
    }
    let mut code_hash = Sha256::new();
    let mut code = keep_code.then(Vec::new);
    let mut keep = |bytes: &[u8]| {
        code_hash.update(bytes);
        if let Some(code) = code.as_mut() {
            code.extend_from_slice(bytes);
        }
    };
    keep(&header);
    let mut manifests = Vec::new();
    let mut interfaces = Interfaces::default();
    loop {
        let start = stream.read;
        let mut id = [0u8];
        if !stream.fill(&mut id)? {
            break;
        }
        let mut head = vec![id[0]];
        let size = stream.leb_u32(&mut head)?;
        match id[0] {
            0 => {
                let mut name_len = Vec::new();
                let len = stream.leb_u32(&mut name_len)?;
                let rest = u64::from(size)
                    .checked_sub(name_len.len() as u64 + u64::from(len))
                    .ok_or_else(|| {
                        PackageError::Malformed(format!(
                            "the name of the custom section at byte {start} runs past its section"
                        ))
                    })?;
                let name = stream.held(len, "a custom section's name")?;
                if name == MANIFEST_SECTION.as_bytes() {
                    // `rest` fits: it is below `size`, a u32.
                    manifests.push(stream.held(rest as u32, "the manifest section")?);
                } else {
                    stream.pass(rest, |_| {})?;
                }
            }
            COMPONENT_IMPORT_SECTION | COMPONENT_EXPORT_SECTION => {
                let offset = stream.read as usize;
                let data = stream.held(size, "an import or export section")?;
                keep(&head);
                keep(&data);
                let malformed =
                    |e: wasmparser::BinaryReaderError| PackageError::Malformed(e.to_string());
                let reader = wasmparser::BinaryReader::new(&data, offset);
                if id[0] == COMPONENT_IMPORT_SECTION {
                    for import in
                        wasmparser::ComponentImportSectionReader::new(reader).map_err(malformed)?
                    {
                        interfaces
                            .imports
                            .push(import.map_err(malformed)?.name.name.to_string());
                    }
                } else {
                    for export in
                        wasmparser::ComponentExportSectionReader::new(reader).map_err(malformed)?
                    {
                        interfaces
                            .exports
                            .push(export.map_err(malformed)?.name.name.to_string());
                    }
                }
            }
            _ => {
                keep(&head);
                stream.pass(u64::from(size), &mut keep)?;
            }
        }
    }
    Ok(Scan {
        manifests,
        interfaces,
        digest: stream.digest.digest(),
        size: stream.read,
        compile_key: code_key(code_hash),
        code,
    })
}

/// Returns the component with `manifest` embedded, replacing any manifest it carried.
pub fn embed_manifest(component: &[u8], manifest: &Manifest) -> Result<Vec<u8>, PackageError> {
    let existing = manifest_sections(component)?;
    let text = manifest.to_embedded_toml();
    let mut out = Vec::with_capacity(component.len() + text.len() + 32);
    let mut pos = 0;
    for (whole, _) in &existing {
        out.extend_from_slice(&component[pos..whole.start]);
        pos = whole.end;
    }
    out.extend_from_slice(&component[pos..]);

    let mut contents = Vec::with_capacity(text.len() + MANIFEST_SECTION.len() + 5);
    write_leb_u32(&mut contents, MANIFEST_SECTION.len() as u32);
    contents.extend_from_slice(MANIFEST_SECTION.as_bytes());
    contents.extend_from_slice(text.as_bytes());
    out.push(0);
    let size = u32::try_from(contents.len())
        .map_err(|_| PackageError::Malformed("manifest is larger than 4 GiB".into()))?;
    write_leb_u32(&mut out, size);
    out.extend_from_slice(&contents);
    Ok(out)
}

/// Reads the manifest a component carries, without hashing it (a frame's lazy start reads a
/// thousand of them).
pub fn extract_manifest(component: &[u8]) -> Result<Manifest, PackageError> {
    let found: Vec<&[u8]> = manifest_sections(component)?
        .into_iter()
        .map(|(_, data)| &component[data])
        .collect();
    the_manifest(&found)
}

/// The one manifest among the contents of a component's manifest sections.
fn the_manifest(found: &[&[u8]]) -> Result<Manifest, PackageError> {
    match found {
        [] => Err(PackageError::NoManifest),
        [data] => {
            let text = std::str::from_utf8(data).map_err(|_| {
                PackageError::Malformed("the embedded manifest is not UTF-8".into())
            })?;
            Ok(Manifest::parse(text, "the component's embedded manifest")?)
        }
        many => Err(PackageError::ManyManifests(many.len())),
    }
}

/// The names of a component's top-level imports and exports (`wasi:http/types@0.2.12`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Interfaces {
    /// Names of the component's imports.
    pub imports: Vec<String>,
    /// Names of the component's exports.
    pub exports: Vec<String>,
}

impl Interfaces {
    /// The `arkham:shard` world the component was built for, as an artifact's `target` names it:
    /// `buffered-shard` when it exports `http-handler`, else `shard`, at the package version of
    /// its arkham imports and exports. `None` when it uses no arkham interface at all.
    pub fn target_world(&self) -> Option<String> {
        let version = self
            .imports
            .iter()
            .chain(&self.exports)
            .filter_map(|name| name.strip_prefix("arkham:shard/"))
            .find_map(|rest| rest.split_once('@'))
            .map(|(_, version)| version)?;
        let world = if self
            .exports
            .iter()
            .any(|e| split_versioned(e).0 == "arkham:shard/http-handler")
        {
            "buffered-shard"
        } else {
            "shard"
        };
        Some(format!("arkham:shard/{world}@{version}"))
    }
}

/// Lists a component's top-level imports and exports.
pub fn interfaces(component: &[u8]) -> Result<Interfaces, PackageError> {
    Ok(scan(component, false)?.interfaces)
}

/// Splits `wasi:http/types@0.2.12` into (`wasi:http/types`, `Some(0.2.12)`).
pub fn split_versioned(name: &str) -> (&str, Option<semver::Version>) {
    match name.split_once('@') {
        Some((bare, version)) => (bare, semver::Version::parse(version).ok()),
        None => (name, None),
    }
}

/// Whether an import of `wanted` is satisfied by a host providing `provided`, with the same
/// semver rule wasmtime's linker applies: same major, or same minor while the major is 0.
pub fn version_compatible(wanted: &semver::Version, provided: &semver::Version) -> bool {
    if wanted.major != provided.major {
        return false;
    }
    wanted.major != 0 || wanted.minor == provided.minor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_world_follows_the_exports_and_the_version() {
        let of = |imports: &[&str], exports: &[&str]| {
            Interfaces {
                imports: imports.iter().map(|s| s.to_string()).collect(),
                exports: exports.iter().map(|s| s.to_string()).collect(),
            }
            .target_world()
        };
        assert_eq!(
            of(
                &["wasi:io/poll@0.2.12"],
                &["arkham:shard/http-handler@0.2.0"]
            )
            .as_deref(),
            Some("arkham:shard/buffered-shard@0.2.0")
        );
        assert_eq!(
            of(
                &["arkham:shard/database@0.1.0"],
                &["wasi:http/incoming-handler@0.2.12"]
            )
            .as_deref(),
            Some("arkham:shard/shard@0.1.0")
        );
        assert_eq!(of(&[], &["wasi:http/incoming-handler@0.2.12"]), None);
    }

    /// The smallest valid component: header only.
    const EMPTY_COMPONENT: [u8; 8] = [0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];

    fn manifest(version: &str) -> Manifest {
        Manifest::parse(
            &format!("name = \"demo\"\nversion = \"{version}\"\n"),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn embeds_extracts_and_replaces() {
        let once = embed_manifest(&EMPTY_COMPONENT, &manifest("1.0.0")).unwrap();
        assert_eq!(
            extract_manifest(&once).unwrap().version.to_string(),
            "1.0.0"
        );
        let twice = embed_manifest(&once, &manifest("2.0.0")).unwrap();
        assert_eq!(
            extract_manifest(&twice).unwrap().version.to_string(),
            "2.0.0"
        );
        assert_eq!(manifest_sections(&twice).unwrap().len(), 1);
        assert_eq!(interfaces(&twice).unwrap(), Interfaces::default());
    }

    #[test]
    fn the_compile_key_ignores_custom_sections_only() {
        let bare = compile_key(&EMPTY_COMPONENT).unwrap();
        let one = embed_manifest(&EMPTY_COMPONENT, &manifest("1.0.0")).unwrap();
        let other = embed_manifest(&EMPTY_COMPONENT, &manifest("2.0.0")).unwrap();
        assert_ne!(one, other);
        assert_eq!(compile_key(&one).unwrap(), bare);
        assert_eq!(compile_key(&other).unwrap(), bare);
        // A custom section of another name (producers, padding) is no code either.
        let mut padded = one.clone();
        padded.extend_from_slice(&[0, 2, 1, b'x']);
        assert_eq!(compile_key(&padded).unwrap(), bare);
        // Any other section is: here an empty component type section.
        let mut more = one.clone();
        more.extend_from_slice(&[7, 1, 0]);
        assert_ne!(compile_key(&more).unwrap(), bare);
    }

    #[test]
    fn a_scan_reads_a_stream_as_the_whole_and_keeps_only_the_code() {
        let component = wat::parse_str(
            r#"(component
                (import "wasi:cli/stdout@0.2.3" (instance))
                (core module (func (export "f") (result i32) i32.const 7)))"#,
        )
        .unwrap();
        let mut packaged = embed_manifest(&component, &manifest("1.0.0")).unwrap();
        // A megabyte of padding in a custom section, as debug info or a bench's padding.
        packaged.push(0);
        write_leb_u32(&mut packaged, 1 + 7 + (1 << 20));
        packaged.push(7);
        packaged.extend_from_slice(b"padding");
        packaged.resize(packaged.len() + (1 << 20), 0x5a);
        // One byte at a time: nothing depends on how the reads fall.
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let scanned = scan(Trickle(&packaged), true).unwrap();
        assert_eq!(scanned.size, packaged.len() as u64);
        assert_eq!(
            scanned.digest,
            arkham_registry::digest::Digest::of(&packaged)
        );
        assert_eq!(scanned.manifest().unwrap().version.to_string(), "1.0.0");
        assert_eq!(scanned.interfaces.imports, ["wasi:cli/stdout@0.2.3"]);
        let code = scanned.code.unwrap();
        assert_eq!(
            code, component,
            "the code is the component without custom sections"
        );
        assert_eq!(scanned.compile_key, compile_key(&component).unwrap());
        // What is compiled of it is what compiling all of it gives.
        let engine = wasmtime::Engine::default();
        assert_eq!(
            engine.precompile_component(&code).unwrap(),
            engine.precompile_component(&packaged).unwrap()
        );
        // Cut anywhere inside a section, it is refused, never read short.
        for cut in [9, component.len() + 3, packaged.len() - 1] {
            let e = scan(&packaged[..cut], false).unwrap_err();
            assert!(matches!(e, PackageError::Malformed(_)), "cut at {cut}: {e}");
        }
        // A manifest section past the held bound is refused, not read.
        let mut huge = component.clone();
        huge.extend_from_slice(&[0, 0x80, 0x80, 0x80, 0x10]);
        huge.push(MANIFEST_SECTION.len() as u8);
        huge.extend_from_slice(MANIFEST_SECTION.as_bytes());
        let e = scan(huge.as_slice(), false).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }

    /// What the key relies on: the artifact of a component is the same whatever manifest it
    /// carries.
    #[test]
    fn a_component_compiles_to_the_same_artifact_under_any_manifest() {
        let component = wat::parse_str(
            r#"(component (core module (func (export "f") (result i32) i32.const 7)))"#,
        )
        .unwrap();
        let engine = wasmtime::Engine::default();
        let one = embed_manifest(&component, &manifest("1.0.0")).unwrap();
        let other = embed_manifest(&component, &manifest("2.0.0")).unwrap();
        assert_eq!(
            engine.precompile_component(&one).unwrap(),
            engine.precompile_component(&other).unwrap()
        );
        assert_ne!(
            engine.precompile_component(&one).unwrap(),
            engine
                .precompile_component(
                    &wat::parse_str(r#"(component (core module (func (export "g"))))"#).unwrap()
                )
                .unwrap()
        );
    }

    #[test]
    fn refuses_what_is_not_a_shard() {
        assert!(matches!(
            extract_manifest(b"hello world"),
            Err(PackageError::NotWasm)
        ));
        let module = [0, b'a', b's', b'm', 1, 0, 0, 0];
        assert!(matches!(
            extract_manifest(&module),
            Err(PackageError::CoreModule)
        ));
        assert!(matches!(
            extract_manifest(&EMPTY_COMPONENT),
            Err(PackageError::NoManifest)
        ));
        let mut truncated = embed_manifest(&EMPTY_COMPONENT, &manifest("1.0.0")).unwrap();
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            extract_manifest(&truncated),
            Err(PackageError::Malformed(_))
        ));
    }

    #[test]
    fn versions() {
        let v = |s| semver::Version::parse(s).unwrap();
        assert!(version_compatible(&v("0.2.0"), &v("0.2.12")));
        assert!(version_compatible(&v("0.2.15"), &v("0.2.12")));
        assert!(!version_compatible(&v("0.3.0"), &v("0.2.12")));
        assert!(version_compatible(&v("1.4.0"), &v("1.0.0")));
        assert_eq!(split_versioned("wasi:io/poll@0.2.6").0, "wasi:io/poll");
    }
}
