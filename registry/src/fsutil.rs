//! Durable file writes shared by every part of arkham that keeps state on disk.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writers in one process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a synced temporary file (created with `mode`), a rename, and a
/// sync of the folder: after it returns the new content survives a crash, and readers only ever
/// see the old or the new file, whole. Creates missing parent folders.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = TempFile::new_in(dir, &name, mode)?;
    tmp.write_all(bytes)?;
    tmp.persist(path)
}

/// A file written under a temporary name, renamed into place by [`TempFile::persist`]; dropped
/// before that (an error, a cancelled download), it is removed, so nothing half-written stays.
#[derive(Debug)]
pub struct TempFile {
    file: std::fs::File,
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// A new empty file in `dir` (created if missing), named after `name`, with `mode`.
    pub fn new_in(dir: &Path, name: &str, mode: u32) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        Ok(Self {
            file,
            path,
            persisted: false,
        })
    }

    /// Where it is, under its temporary name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Syncs the file, renames it to `path` and syncs the folder: after it returns the content
    /// survives a crash, and readers of `path` see the old or the new file, whole.
    pub fn persist(mut self, path: &Path) -> std::io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.path, path)?;
        self.persisted = true;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn writes_whole_files_with_their_mode_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file");
        super::write_atomically(&path, b"one", 0o600).unwrap();
        super::write_atomically(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("a/b")).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_temporary_file_dropped_before_it_is_persisted_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut tmp = super::TempFile::new_in(dir.path(), "blob", 0o644).unwrap();
        tmp.write_all(b"half").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(tmp);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
