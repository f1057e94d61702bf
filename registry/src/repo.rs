//! One repository, remote or local: the operations push and pull are built from.

use crate::artifact::{Descriptor, MANIFEST_MEDIA_TYPE};
use crate::auth::{self, Credentials};
use crate::cache::TagIndex;
use crate::digest::Digest;
use crate::error::{RegistryError, from_oci};
use crate::layout::Layout;
use crate::reference::Location;
use crate::store::BlobStore;
use crate::transfer::{Sink, check_size, copy_file, file_chunks, oversize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Manifest media types asked for and accepted on pull.
/// Tags asked for per page of `tags/list`: the page size GHCR and Docker Hub use.
const TAG_PAGE: usize = 100;
/// Pages read at most: 100000 tags, far past any real repository; bounds a registry that pages
/// forever.
const MAX_TAG_PAGES: usize = 1000;

const MANIFEST_TYPES: &[&str] = &[
    MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// How to talk to a remote registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// Use plain HTTP even though the registry is not on loopback.
    pub plain_http: bool,
    /// Use no network: only what the local cache holds ([`Repo::cached`]).
    pub offline: bool,
}

/// Whether `registry` (`host` or `host:port`) is on loopback, where plain HTTP is used by default.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A repository to push to or pull from.
pub enum Repo {
    /// A registry over HTTP(S).
    Remote {
        /// The client (holds tokens between calls).
        client: oci_client::Client,
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// The credentials.
        credentials: Credentials,
        /// How to connect (for the token exchange of an identity token).
        options: ConnectOptions,
        /// The access token an identity token was exchanged for, and whether it may push.
        exchanged: std::sync::Mutex<Option<(bool, String)>>,
    },
    /// A local OCI layout folder.
    Layout(Layout, Location),
    /// What the blob store and the tag index hold of a repository: read-only, for working
    /// offline ([`crate::cache`]).
    Cached {
        /// Holds the manifests, configs and components.
        store: BlobStore,
        /// Tag → manifest digest, for the tags resolved before.
        tags: BTreeMap<String, String>,
        /// The repository it stands for.
        location: Location,
    },
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repo({})", self.location())
    }
}

impl Repo {
    /// Opens the repository at `location`, reading credentials for a remote one.
    pub fn open(location: &Location, options: ConnectOptions) -> Result<Self, RegistryError> {
        match location {
            Location::Layout { dir, repository } => Ok(Repo::Layout(
                Layout::new(dir.join(repository)),
                location.clone(),
            )),
            Location::Remote {
                registry,
                repository,
            } => {
                // rustls needs a process-wide crypto provider; a second install is a no-op.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let protocol = if options.plain_http || is_loopback(registry) {
                    oci_client::client::ClientProtocol::Http
                } else {
                    oci_client::client::ClientProtocol::Https
                };
                let config = oci_client::client::ClientConfig {
                    protocol,
                    connect_timeout: Some(Duration::from_secs(10)),
                    read_timeout: Some(Duration::from_secs(60)),
                    platform_resolver: None,
                    ..Default::default()
                };
                Ok(Repo::Remote {
                    client: oci_client::Client::new(config),
                    registry: registry.clone(),
                    repository: repository.clone(),
                    credentials: auth::credentials_for(registry)?,
                    options,
                    exchanged: std::sync::Mutex::new(None),
                })
            }
        }
    }

    /// What to authenticate a remote call with: the credentials, or for an identity token the
    /// access token it is exchanged for (once per repository; again when a push needs more than
    /// the pull token held).
    async fn auth(&self, push: bool) -> Result<oci_client::secrets::RegistryAuth, RegistryError> {
        let Repo::Remote {
            registry,
            repository,
            credentials,
            options,
            exchanged,
            ..
        } = self
        else {
            return Ok(oci_client::secrets::RegistryAuth::Anonymous);
        };
        let Credentials::IdentityToken { token, .. } = credentials else {
            return Ok(credentials.to_oci());
        };
        let held = exchanged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|(may_push, _)| *may_push || !push);
        let access = match held {
            Some((_, access)) => access,
            None => {
                let access = crate::login::exchange_identity_token(
                    registry, repository, push, token, *options,
                )
                .await?;
                *exchanged.lock().unwrap_or_else(|e| e.into_inner()) = Some((push, access.clone()));
                access
            }
        };
        Ok(oci_client::secrets::RegistryAuth::Bearer(access))
    }

    /// The repository at `location` as the local cache holds it, without the network.
    pub fn cached(location: &Location, store: BlobStore, index: &TagIndex) -> Self {
        Repo::Cached {
            tags: index.tags(&location.to_string()),
            store,
            location: location.clone(),
        }
    }

    /// Where it is, as text.
    pub fn location(&self) -> String {
        match self {
            Repo::Remote {
                registry,
                repository,
                ..
            } => format!("{registry}/{repository}"),
            Repo::Layout(_, location) | Repo::Cached { location, .. } => location.to_string(),
        }
    }

    fn reference(&self, tag_or_digest: &str) -> oci_client::Reference {
        let (registry, repository) = match self {
            Repo::Remote {
                registry,
                repository,
                ..
            } => (registry.clone(), repository.clone()),
            Repo::Layout(..) | Repo::Cached { .. } => (String::new(), String::new()),
        };
        if tag_or_digest.starts_with("sha256:") {
            oci_client::Reference::with_digest(registry, repository, tag_or_digest.to_string())
        } else {
            oci_client::Reference::with_tag(registry, repository, tag_or_digest.to_string())
        }
    }

    /// Every tag; a repository that does not exist yet has none.
    pub async fn tags(&self) -> Result<Vec<String>, RegistryError> {
        match self {
            Repo::Layout(layout, _) => layout.tags(),
            // Only tags whose manifest is still here: those can be installed.
            Repo::Cached { store, tags, .. } => Ok(tags
                .iter()
                .filter(|(_, digest)| digest.parse().is_ok_and(|d| store.contains(&d)))
                .map(|(tag, _)| tag.clone())
                .collect()),
            Repo::Remote {
                client,
                registry,
                repository,
                ..
            } => {
                let reference = self.reference("latest");
                let auth = self.auth(false).await?;
                // Registries page `tags/list` (GHCR and Docker Hub at 100); oci-client does not
                // show the `Link` header, so ask for the page after the last tag seen until a
                // page brings nothing new (which also ends the loop on a registry that ignores
                // `last` and answers the same page again).
                let mut tags: Vec<String> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for _ in 0..MAX_TAG_PAGES {
                    let page = client
                        .list_tags(
                            &reference,
                            &auth,
                            Some(TAG_PAGE),
                            tags.last().map(String::as_str),
                        )
                        .await
                        .map_err(|e| from_oci(e, registry, repository, "the repository"))?;
                    let before = tags.len();
                    tags.extend(page.tags.into_iter().filter(|t| seen.insert(t.clone())));
                    if tags.len() == before {
                        return Ok(tags);
                    }
                }
                Err(RegistryError::TooManyTags {
                    location: self.location(),
                    limit: MAX_TAG_PAGES * TAG_PAGE,
                })
            }
        }
    }

    /// The manifest tagged `tag_or_digest` (or with that digest): its bytes and verified digest.
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<(Vec<u8>, Digest), RegistryError> {
        let what = if tag_or_digest.starts_with("sha256:") {
            format!("manifest {tag_or_digest}")
        } else {
            format!("version {tag_or_digest}")
        };
        match self {
            Repo::Layout(layout, _) => {
                let descriptor = if tag_or_digest.starts_with("sha256:") {
                    Descriptor {
                        media_type: MANIFEST_MEDIA_TYPE.to_string(),
                        digest: tag_or_digest.to_string(),
                        size: 0,
                        annotations: Default::default(),
                    }
                } else {
                    layout.resolve_tag(tag_or_digest)?
                };
                let bytes = layout.blob(&descriptor.digest)?;
                let digest = verify(&bytes, &descriptor, "the manifest", &self.location(), false)?;
                Ok((bytes, digest))
            }
            Repo::Cached { store, tags, .. } => {
                let digest = if tag_or_digest.starts_with("sha256:") {
                    Some(tag_or_digest)
                } else {
                    tags.get(tag_or_digest).map(String::as_str)
                };
                let bytes = digest
                    .and_then(|d| d.parse::<Digest>().ok())
                    .and_then(|d| store.get(&d).ok())
                    .ok_or_else(|| RegistryError::NotCached {
                        what,
                        location: self.location(),
                    })?;
                Ok((bytes.clone(), Digest::of(&bytes)))
            }
            Repo::Remote {
                client,
                registry,
                repository,
                ..
            } => {
                let reference = self.reference(tag_or_digest);
                let auth = self.auth(false).await?;
                let (bytes, digest) = client
                    .pull_manifest_raw(&reference, &auth, MANIFEST_TYPES)
                    .await
                    .map_err(|e| from_oci(e, registry, repository, &what))?;
                let actual = Digest::of(&bytes);
                if actual.to_string() != digest {
                    return Err(RegistryError::DigestMismatch {
                        what: "the manifest".to_string(),
                        location: self.location(),
                        expected: digest,
                        actual: actual.to_string(),
                    });
                }
                Ok((bytes.to_vec(), actual))
            }
        }
    }

    /// The blob `descriptor` names, verified against its digest and size, in memory: for the
    /// small ones (configs, signature payloads); a component goes through
    /// [`Repo::blob_to_store`].
    pub async fn blob(
        &self,
        descriptor: &Descriptor,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        self.blob_with_progress(descriptor, what, &|_, _| {}).await
    }

    /// Like [`Repo::blob`], calling `progress(received, total)` as bytes arrive.
    pub async fn blob_with_progress(
        &self,
        descriptor: &Descriptor,
        what: &str,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Vec<u8>, RegistryError> {
        let bytes = match self {
            Repo::Layout(layout, _) => layout.blob(&descriptor.digest)?,
            Repo::Cached { store, .. } => descriptor
                .digest
                .parse::<Digest>()
                .ok()
                .and_then(|d| store.get(&d).ok())
                .ok_or_else(|| RegistryError::NotCached {
                    what: what.to_string(),
                    location: self.location(),
                })?,
            Repo::Remote {
                client,
                registry,
                repository,
                ..
            } => {
                let reference = self.reference("latest");
                client
                    .store_auth_if_needed(registry, &self.auth(false).await?)
                    .await;
                let mut out = Counting {
                    bytes: Vec::with_capacity(
                        usize::try_from(descriptor.size).unwrap_or(0).min(1 << 28),
                    ),
                    total: descriptor.size,
                    progress,
                };
                client
                    .pull_blob(&reference, descriptor.digest.as_str(), &mut out)
                    .await
                    .map_err(|e| from_oci(e, registry, repository, what))?;
                out.bytes
            }
        };
        verify(&bytes, descriptor, what, &self.location(), true)?;
        Ok(bytes)
    }

    /// Streams the blob `descriptor` names into `store`, hashing and counting it on the way, and
    /// answers its digest: memory stays at one buffer whatever its size. More bytes than the
    /// descriptor's size are refused as they arrive; the blob is renamed into place only once its
    /// size and digest are checked, so a failed or interrupted download leaves nothing in the
    /// store. A blob the store already holds is verified there and not downloaded again.
    pub async fn blob_to_store(
        &self,
        descriptor: &Descriptor,
        what: &str,
        store: &BlobStore,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Digest, RegistryError> {
        let location = self.location();
        let expected: Digest =
            descriptor
                .digest
                .parse()
                .map_err(|_| RegistryError::DigestMismatch {
                    what: what.to_string(),
                    location: location.clone(),
                    expected: descriptor.digest.clone(),
                    actual: "a digest that is not sha256".to_string(),
                })?;
        if store.contains(&expected) {
            match store.check(&expected) {
                Ok(size) => {
                    check_size(size, descriptor, what, &location)?;
                    return Ok(expected);
                }
                // Removed as corrupt: fetched again below.
                Err(crate::store::StoreError::Corrupt { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut sink = Sink::new(store.writer()?, descriptor.size, progress);
        match self {
            Repo::Layout(layout, _) => {
                let path = layout.blob_path(&descriptor.digest)?;
                copy_file(&path, &mut sink, || RegistryError::NotFound {
                    what: format!("blob {}", descriptor.digest),
                    location: location.clone(),
                })?;
            }
            Repo::Cached { store: cache, .. } => {
                copy_file(&cache.path(&expected), &mut sink, || {
                    RegistryError::NotCached {
                        what: what.to_string(),
                        location: location.clone(),
                    }
                })?;
            }
            Repo::Remote {
                client,
                registry,
                repository,
                ..
            } => {
                let reference = self.reference("latest");
                client
                    .store_auth_if_needed(registry, &self.auth(false).await?)
                    .await;
                let pulled = client
                    .pull_blob(&reference, descriptor.digest.as_str(), &mut sink)
                    .await;
                if let Err(e) = pulled {
                    if sink.over {
                        return Err(oversize(descriptor, what, &location));
                    }
                    return Err(from_oci(e, registry, repository, what));
                }
            }
        }
        if sink.over {
            return Err(oversize(descriptor, what, &location));
        }
        let writer = sink.writer;
        check_size(writer.written(), descriptor, what, &location)?;
        let actual = writer.digest();
        if actual != expected {
            return Err(RegistryError::DigestMismatch {
                what: what.to_string(),
                location,
                expected: descriptor.digest.clone(),
                actual: actual.to_string(),
            });
        }
        Ok(writer.commit()?)
    }

    /// Uploads the file at `path` as a blob, streamed from disk (skipped when the registry has
    /// it), and answers its digest and size.
    pub async fn push_blob_file(&self, path: &Path) -> Result<(Digest, u64), RegistryError> {
        let io_err = |source| RegistryError::Io {
            path: path.to_path_buf(),
            source,
        };
        match self {
            Repo::Layout(layout, _) => {
                let digest = layout.put_blob_file(path)?;
                // Content-addressed: the stored blob's size is the size of what was hashed.
                let stored = layout.blob_path(&digest.to_string())?;
                let size = std::fs::metadata(&stored).map_err(io_err)?.len();
                Ok((digest, size))
            }
            Repo::Cached { .. } => Err(self.read_only()),
            Repo::Remote {
                client,
                registry,
                repository,
                credentials,
                ..
            } => {
                let owned = path.to_path_buf();
                let (digest, size) =
                    tokio::task::spawn_blocking(move || crate::store::digest_file(&owned))
                        .await
                        .map_err(|e| io_err(std::io::Error::other(e)))?
                        .map_err(io_err)?;
                let map =
                    |e| push_refused(from_oci(e, registry, repository, "the upload"), credentials);
                let Some(reference) = self.missing_blob(&digest).await? else {
                    return Ok((digest, size));
                };
                let file = tokio::fs::File::open(path).await.map_err(io_err)?;
                client
                    .push_blob_stream(
                        &reference,
                        file_chunks(file),
                        &digest.to_string(),
                        Some(size),
                    )
                    .await
                    .map_err(map)?;
                Ok((digest, size))
            }
        }
    }

    /// Authenticates for push and answers the reference to upload `digest` to, or `None` when
    /// the registry has that blob already. Remote repositories only.
    async fn missing_blob(
        &self,
        digest: &Digest,
    ) -> Result<Option<oci_client::Reference>, RegistryError> {
        let Repo::Remote {
            client,
            registry,
            repository,
            credentials,
            ..
        } = self
        else {
            return Err(self.read_only());
        };
        let reference = self.reference("latest");
        let auth = self
            .auth(true)
            .await
            .map_err(|e| push_refused(e, credentials))?;
        client.store_auth_if_needed(registry, &auth).await;
        let map = |e| push_refused(from_oci(e, registry, repository, "the upload"), credentials);
        // Authenticate for push first: blob_exists alone would use a pull token.
        client
            .auth(&reference, &auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(map)?;
        let exists = client
            .blob_exists(&reference, &digest.to_string())
            .await
            .map_err(map)?;
        Ok((!exists).then_some(reference))
    }

    fn read_only(&self) -> RegistryError {
        RegistryError::Protocol {
            registry: self.location(),
            message: "the offline cache is read-only; push without --offline".to_string(),
        }
    }

    /// Uploads a blob held in memory (skipped when the registry has it); a component on disk
    /// goes up streamed through [`Repo::push_blob_file`].
    pub async fn push_blob(&self, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        match self {
            Repo::Layout(layout, _) => layout.put_blob(bytes),
            Repo::Cached { .. } => Err(self.read_only()),
            Repo::Remote {
                client,
                registry,
                repository,
                credentials,
                ..
            } => {
                let map =
                    |e| push_refused(from_oci(e, registry, repository, "the upload"), credentials);
                if let Some(reference) = self.missing_blob(&digest).await? {
                    client
                        .push_blob(&reference, bytes.to_vec(), &digest.to_string())
                        .await
                        .map_err(map)?;
                }
                Ok(digest)
            }
        }
    }

    /// Uploads a manifest and points `tag` at it.
    pub async fn push_manifest(&self, tag: &str, bytes: &[u8]) -> Result<Digest, RegistryError> {
        match self {
            Repo::Layout(layout, _) => layout.put_manifest(tag, MANIFEST_MEDIA_TYPE, bytes),
            Repo::Cached { .. } => Err(self.read_only()),
            Repo::Remote {
                client,
                registry,
                repository,
                credentials,
                ..
            } => {
                let reference = self.reference(tag);
                client
                    .push_manifest_raw(&reference, bytes.to_vec(), http_header(MANIFEST_MEDIA_TYPE))
                    .await
                    .map_err(|e| {
                        push_refused(
                            from_oci(e, registry, repository, "the manifest upload"),
                            credentials,
                        )
                    })?;
                Ok(Digest::of(bytes))
            }
        }
    }
}

/// A refusal to push with credentials is not a missing login: the account may pull but not
/// push (a token registry grants the scopes it allows), and the message says so.
fn push_refused(e: RegistryError, credentials: &Credentials) -> RegistryError {
    match (e, credentials) {
        (
            RegistryError::Unauthorized {
                registry,
                repository,
            },
            Credentials::Basic { username, .. } | Credentials::IdentityToken { username, .. },
        ) => RegistryError::PushDenied {
            registry,
            repository,
            username: username.clone(),
        },
        (e, _) => e,
    }
}

fn http_header(value: &'static str) -> http::HeaderValue {
    http::HeaderValue::from_static(value)
}

/// Checks `bytes` against `descriptor`'s digest and (when `check_size` or it is known) size.
fn verify(
    bytes: &[u8],
    descriptor: &Descriptor,
    what: &str,
    location: &str,
    check_size: bool,
) -> Result<Digest, RegistryError> {
    if (check_size || descriptor.size != 0) && bytes.len() as u64 != descriptor.size {
        return Err(RegistryError::SizeMismatch {
            what: what.to_string(),
            location: location.to_string(),
            expected: descriptor.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(bytes);
    if actual.to_string() != descriptor.digest {
        return Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            location: location.to_string(),
            expected: descriptor.digest.clone(),
            actual: actual.to_string(),
        });
    }
    Ok(actual)
}

/// A download buffer that reports how much has arrived.
struct Counting<'a> {
    bytes: Vec<u8>,
    total: u64,
    progress: &'a (dyn Fn(u64, u64) + Send + Sync),
}

impl tokio::io::AsyncWrite for Counting<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        // A registry sending more than the descriptor says is refused as it arrives, before
        // the digest check could, so it cannot fill the frame's memory.
        if this.bytes.len() as u64 + buf.len() as u64 > this.total {
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the registry sent more than the {} bytes the manifest gives",
                this.total
            ))));
        }
        this.bytes.extend_from_slice(buf);
        (this.progress)(this.bytes.len() as u64, this.total);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["ghcr.io", "10.0.0.1:5000", "example.com:443"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
