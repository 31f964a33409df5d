//! Where a file's chunks and list live on disk, and the positioned reads and writes on them
//! (blocking calls, run on tokio's blocking pool).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tokenim_crypto::file::CHUNK_TAG_LEN;

use super::FileError;

pub(super) fn enc_path(dir: &Path, id: &[u8; 16]) -> PathBuf {
    dir.join(format!("{}.enc", hex::encode(id)))
}

pub(super) fn list_path(dir: &Path, id: &[u8; 16]) -> PathBuf {
    dir.join(format!("{}.list", hex::encode(id)))
}

/// Where chunk `index` starts in the `.enc` file.
pub(super) fn offset(chunk_size: u32, index: u32) -> u64 {
    u64::from(index) * (u64::from(chunk_size) + CHUNK_TAG_LEN as u64)
}

pub(super) fn remove(dir: &Path, id: &[u8; 16]) {
    let _ = std::fs::remove_file(enc_path(dir, id));
    let _ = std::fs::remove_file(list_path(dir, id));
}

/// Writes `bytes` at `at` in `path` (created if missing).
pub(super) async fn write_at(path: PathBuf, at: u64, bytes: Vec<u8>) -> Result<(), FileError> {
    blocking(move || {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| FileError::io("opening a file's chunks", &e))?;
        f.write_all_at(&bytes, at)
            .map_err(|e| FileError::io("writing a chunk", &e))
    })
    .await
}

/// Reads `len` bytes at `at` of `path`.
pub(super) async fn read_at(path: PathBuf, at: u64, len: usize) -> Result<Vec<u8>, FileError> {
    blocking(move || {
        let f = File::open(&path).map_err(|e| FileError::io("opening a file's chunks", &e))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, at)
            .map_err(|e| FileError::io("reading a chunk", &e))?;
        Ok(buf)
    })
    .await
}

/// Flushes `path` to disk (before its progress is recorded).
pub(super) async fn sync(path: PathBuf) -> Result<(), FileError> {
    blocking(move || {
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.sync_data())
            .map_err(|e| FileError::io("flushing a file's chunks", &e))
    })
    .await
}

pub(super) async fn write(path: PathBuf, bytes: Vec<u8>) -> Result<(), FileError> {
    blocking(move || {
        std::fs::write(&path, bytes).map_err(|e| FileError::io("writing a chunk list", &e))
    })
    .await
}

pub(super) async fn read(path: PathBuf) -> Result<Option<Vec<u8>>, FileError> {
    blocking(move || match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::io("reading a chunk list", &e)),
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FileError::Io(format!("disk task: {e}")))?
}
