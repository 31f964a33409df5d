//! Secret key files in the data directory: created with mode 0600, refused when other users
//! could read them, never overwritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::NodeError;

/// Writes `bytes` to a new file readable only by its owner. Fails if the file exists.
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                NodeError::AlreadyInitialised(path.display().to_string())
            } else {
                NodeError::Io(format!("creating {}", path.display()), e)
            }
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| NodeError::Io(format!("writing {}", path.display()), e))
}

/// Reads a secret file, refusing one that group or others may read; the bytes are wiped when
/// dropped.
pub(crate) fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, NodeError> {
    let meta = fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NodeError::NotInitialised(path.display().to_string())
        } else {
            NodeError::Io(format!("reading {}", path.display()), e)
        }
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NodeError::KeyFile {
            path: path.display().to_string(),
            reason: format!("mode {mode:o} lets other users read it; run chmod 600"),
        });
    }
    fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| NodeError::Io(format!("reading {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        write_secret(&p, b"secret").expect("write");
        assert_eq!(
            fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_secret(&p).expect("read").as_slice(), b"secret");
        assert!(matches!(
            write_secret(&p, b"other"),
            Err(NodeError::AlreadyInitialised(_))
        ));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(read_secret(&p), Err(NodeError::KeyFile { .. })));
        assert!(matches!(
            read_secret(&dir.path().join("nope")),
            Err(NodeError::NotInitialised(_))
        ));
    }
}
