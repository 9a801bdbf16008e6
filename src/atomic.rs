//! Files that appear whole or not at all: written to a temporary file in the target's directory,
//! synced, then renamed over the target.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Write `data` to `path` (mode 0644) atomically: a reader sees the old file or the new one, and a
/// crash leaves no partial file under `path`.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    write_with(path, data, true, 0o644)
}

/// [`write`] with mode 0600, for files holding secrets (the temporary file is created 0600, so
/// the data is never readable by others).
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    write_with(path, data, true, 0o600)
}

/// [`write`] without the sync: for files inside a root tree being built, which is thrown away
/// if the build does not finish. A sync there would also flush every file unpacked so far, since
/// the filesystem's journal commits them together.
pub fn write_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    write_with(path, data, false, 0o644)
}

/// The directory `path` lives in: its parent, or `.` for a bare file name (whose parent is
/// empty) — where a file written "beside" `path` goes.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn write_with(path: &Path, data: &[u8], sync: bool, mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".imgbuild-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        super::write(&p, b"one").unwrap();
        super::write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
