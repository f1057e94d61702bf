//! Moving a blob without holding it: a download written to the store as it arrives (hashed,
//! counted, refused past its descriptor's size), a local blob copied through one buffer, and a
//! file read as a stream of upload chunks. [`crate::repo::Repo`] builds its streamed operations
//! from these.

use crate::artifact::Descriptor;
use crate::error::RegistryError;
use crate::store::BlobWriter;
use std::path::Path;

/// The piece a streamed upload reads and sends at a time: oci-client's own chunk size, so each
/// piece is one `PATCH`.
const UPLOAD_CHUNK: usize = 4 * 1024 * 1024;
/// The buffer a local blob is copied through.
const COPY_CHUNK: usize = 256 * 1024;

pub(crate) fn check_size(
    size: u64,
    descriptor: &Descriptor,
    what: &str,
    location: &str,
) -> Result<(), RegistryError> {
    if size != descriptor.size {
        return Err(RegistryError::SizeMismatch {
            what: what.to_string(),
            location: location.to_string(),
            expected: descriptor.size,
            actual: size,
        });
    }
    Ok(())
}

pub(crate) fn oversize(descriptor: &Descriptor, what: &str, location: &str) -> RegistryError {
    RegistryError::SizeMismatch {
        what: what.to_string(),
        location: location.to_string(),
        expected: descriptor.size,
        actual: descriptor.size.saturating_add(1),
    }
}

/// Copies the local file at `path` into `sink` through one buffer; a missing file is `missing()`.
pub(crate) fn copy_file(
    path: &Path,
    sink: &mut Sink<'_>,
    missing: impl FnOnce() -> RegistryError,
) -> Result<(), RegistryError> {
    use std::io::Read as _;
    let io_err = |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(io_err(e)),
    };
    let mut buf = vec![0; COPY_CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 || !sink.accept(&buf[..n])? {
            return Ok(());
        }
    }
}

/// The file's content as a stream of [`UPLOAD_CHUNK`]-sized pieces, for a streamed upload.
pub(crate) fn file_chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<bytes::Bytes, oci_client::errors::OciDistributionError>>
+ Send
+ 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = Vec::with_capacity(UPLOAD_CHUNK);
        // `read` may return less than asked; fill the piece so each PATCH is a whole chunk.
        while buf.len() < UPLOAD_CHUNK {
            let n = (&mut file)
                .take((UPLOAD_CHUNK - buf.len()) as u64)
                .read_to_end(&mut buf)
                .await?;
            if n == 0 {
                break;
            }
        }
        if buf.is_empty() {
            Ok(None)
        } else {
            Ok(Some((bytes::Bytes::from(buf), file)))
        }
    })
}

/// Where a streamed download goes: a blob writer in the store, which refuses more bytes than the
/// descriptor gives as they arrive and reports progress.
pub(crate) struct Sink<'a> {
    pub(crate) writer: BlobWriter,
    total: u64,
    /// More than `total` bytes came.
    pub(crate) over: bool,
    progress: &'a (dyn Fn(u64, u64) + Send + Sync),
}

impl<'a> Sink<'a> {
    /// A sink into `writer` for a blob of `total` bytes.
    pub(crate) fn new(
        writer: BlobWriter,
        total: u64,
        progress: &'a (dyn Fn(u64, u64) + Send + Sync),
    ) -> Self {
        Self {
            writer,
            total,
            over: false,
            progress,
        }
    }

    /// Writes `bytes`, or answers `false` (writing nothing) when they pass the descriptor's size.
    fn accept(&mut self, bytes: &[u8]) -> Result<bool, RegistryError> {
        if self.writer.written() + bytes.len() as u64 > self.total {
            self.over = true;
            return Ok(false);
        }
        self.writer.write(bytes)?;
        (self.progress)(self.writer.written(), self.total);
        Ok(true)
    }
}

impl tokio::io::AsyncWrite for Sink<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // A local file write of one network read: short enough to do in place.
        let result = match self.get_mut().accept(buf) {
            Ok(true) => Ok(buf.len()),
            Ok(false) => Err(std::io::Error::other(
                "the registry sent more bytes than the manifest gives",
            )),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        std::task::Poll::Ready(result)
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
    use crate::artifact::Descriptor;
    use crate::digest::Digest;
    use crate::error::RegistryError;
    use crate::reference::Location;
    use crate::repo::{ConnectOptions, Repo};
    use crate::store::BlobStore;
    use std::path::Path;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A registry that answers every blob request with `body`, announcing `length` bytes, and
    /// closes the connection after the body (so a short body is a connection cut mid-way).
    async fn serve_blob(body: Vec<u8>, length: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let body = body.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        host
    }

    fn descriptor(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: "application/wasm".to_string(),
            digest: Digest::of(bytes).to_string(),
            size: bytes.len() as u64,
            annotations: Default::default(),
        }
    }

    fn remote(host: &str) -> Repo {
        let location = Location::Remote {
            registry: host.to_string(),
            repository: "streamed".to_string(),
        };
        Repo::open(&location, ConnectOptions::default()).unwrap()
    }

    /// Every file in the store's blob folder, temporary ones included.
    fn files(store_dir: &Path) -> Vec<String> {
        match std::fs::read_dir(store_dir.join("blobs/sha256")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn component() -> Vec<u8> {
        (0..600_000u32).map(|i| (i % 253) as u8).collect()
    }

    #[tokio::test]
    async fn a_streamed_download_is_stored_only_when_whole_and_verified() {
        let blob = component();
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let seen = std::sync::atomic::AtomicU64::new(0);
        let progress = |received: u64, _: u64| {
            seen.store(received, std::sync::atomic::Ordering::SeqCst);
        };

        // Cut mid-way: the connection closes after half the announced bytes.
        let host = serve_blob(blob[..blob.len() / 2].to_vec(), blob.len()).await;
        let err = remote(&host)
            .blob_to_store(&descriptor(&blob), "the component", &store, &progress)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Interrupted { .. }), "{err:?}");
        assert!(err.to_string().contains("broke off"), "{err}");
        assert_eq!(files(dir.path()), Vec::<String>::new());

        // More than the descriptor's size: refused as it arrives.
        let mut longer = blob.clone();
        longer.extend_from_slice(&[7; 100_000]);
        let host = serve_blob(longer.clone(), longer.len()).await;
        let err = remote(&host)
            .blob_to_store(&descriptor(&blob), "the component", &store, &progress)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::SizeMismatch { expected, .. } if expected == blob.len() as u64),
            "{err:?}"
        );
        assert!(
            seen.load(std::sync::atomic::Ordering::SeqCst) <= blob.len() as u64,
            "more than the descriptor's size was written"
        );
        assert_eq!(files(dir.path()), Vec::<String>::new());

        // The right size, other bytes.
        let mut altered = blob.clone();
        altered[12_345] ^= 1;
        let host = serve_blob(altered, blob.len()).await;
        let err = remote(&host)
            .blob_to_store(&descriptor(&blob), "the component", &store, &progress)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::DigestMismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("is corrupt"), "{err}");
        assert_eq!(files(dir.path()), Vec::<String>::new());

        // Whole: stored under its digest, and nothing else.
        let host = serve_blob(blob.clone(), blob.len()).await;
        let digest = remote(&host)
            .blob_to_store(&descriptor(&blob), "the component", &store, &progress)
            .await
            .unwrap();
        assert_eq!(digest, Digest::of(&blob));
        assert_eq!(store.get(&digest).unwrap(), blob);
        assert_eq!(files(dir.path()), vec![digest.hex().to_string()]);
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            blob.len() as u64
        );
    }

    #[tokio::test]
    async fn a_local_layout_blob_is_streamed_and_checked() {
        let blob = component();
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("component.wasm");
        std::fs::write(&source, &blob).unwrap();
        let layout_dir = dir.path().join("layout");
        let location = Location::Layout {
            dir: layout_dir.clone(),
            repository: "packets".to_string(),
        };
        let repo = Repo::open(&location, ConnectOptions::default()).unwrap();
        let (pushed, size) = repo.push_blob_file(&source).await.unwrap();
        assert_eq!(
            (pushed.clone(), size),
            (Digest::of(&blob), blob.len() as u64)
        );

        let store_dir = dir.path().join("store");
        let store = BlobStore::new(&store_dir);
        let layer = descriptor(&blob);
        // A descriptor that says less than the file holds.
        let mut short = layer.clone();
        short.size -= 1;
        let err = repo
            .blob_to_store(&short, "the component", &store, &|_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err:?}");
        assert_eq!(files(&store_dir), Vec::<String>::new());

        // The blob file corrupted in the layout.
        let file = layout_dir.join("packets/blobs/sha256").join(pushed.hex());
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let err = repo
            .blob_to_store(&layer, "the component", &store, &|_, _| {})
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::DigestMismatch { .. }),
            "{err:?}"
        );
        assert_eq!(files(&store_dir), Vec::<String>::new());

        std::fs::write(&file, &blob).unwrap();
        let digest = repo
            .blob_to_store(&layer, "the component", &store, &|_, _| {})
            .await
            .unwrap();
        assert_eq!(store.get(&digest).unwrap(), blob);
        // Stored now: answered from the store, even with the layout's copy gone.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            repo.blob_to_store(&layer, "the component", &store, &|_, _| {})
                .await
                .unwrap(),
            digest
        );
    }
}
