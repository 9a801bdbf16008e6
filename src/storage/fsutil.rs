//! Small file helpers: atomic writes (temp + fsync + rename), JSON records, removal that
//! tolerates absence, random ids.

use super::{Result, StorageError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

/// Write `bytes` to `path` atomically: a temp file in `tmp_dir` (same filesystem), fsynced, then
/// renamed over `path`, so readers see the old or the new content, never a part.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], tmp_dir: &Path) -> Result<()> {
    let mut tmp =
        tempfile::NamedTempFile::new_in(tmp_dir).map_err(|e| StorageError::io(tmp_dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| StorageError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| StorageError::io(path, e.error))?;
    Ok(())
}

/// Serialise `value` as pretty JSON (fields in declaration order, so stable) and write it
/// atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T, tmp_dir: &Path) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Json {
        path: path.display().to_string(),
        source: e,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, tmp_dir)
}

/// Read a JSON record; `None` when the file does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StorageError::Json {
            path: path.display().to_string(),
            source: e,
        })
}

/// Remove a file or a whole tree; absence is not an error.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    let res = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match res {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StorageError::io(path, e)),
        _ => Ok(()),
    }
}

/// Create a directory and its parents with mode 0700 (the store holds root trees of images).
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| StorageError::io(path, e))
}

/// Give a fresh layer root the owner and mode of `like` (its parent layer's root), or
/// root:root 0755 for a base layer, as Docker does: the root of an image is not private.
pub(crate) fn set_root_attrs(dir: &Path, like: Option<&Path>) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (uid, gid, mode) = match like {
        Some(p) => {
            let m = std::fs::metadata(p).map_err(|e| StorageError::io(p, e))?;
            (m.uid(), m.gid(), m.mode() & 0o7777)
        }
        None => (0, 0, 0o755),
    };
    let own = std::fs::metadata(dir).map_err(|e| StorageError::io(dir, e))?;
    if (own.uid(), own.gid()) != (uid, gid) {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| StorageError::io(dir, e))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| StorageError::io(dir, e))
}

/// 64 random hex digits from the kernel's random source (container ids).
pub(crate) fn random_hex_id() -> Result<String> {
    let path = Path::new("/dev/urandom");
    let mut buf = [0u8; 32];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| StorageError::io(path, e))?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_json_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.json");
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), None);
        write_json(&p, &vec![1u32, 2], dir.path()).unwrap();
        write_json(&p, &vec![3u32], dir.path()).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), Some(vec![3]));
        // Only the record is left: the temp file was renamed, not copied.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&p, b"{").unwrap();
        assert!(read_json::<Vec<u32>>(&p).is_err());
        remove_any(&p).unwrap();
        remove_any(&p).unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn random_ids_are_distinct_hex() {
        let a = random_hex_id().unwrap();
        let b = random_hex_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
