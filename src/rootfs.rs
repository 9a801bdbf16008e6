//! The root tree: bootstrap and image package phases, dpkg configuration in the sandbox, overlays,
//! users, hooks, removals and volatile-file cleanup.

pub mod cleanup;
pub mod dpkgdb;
pub mod profile;
pub mod users;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Errors of the root-tree stage.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A file in the root tree could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// dpkg's database could not be updated.
    #[error(transparent)]
    DpkgDb(#[from] dpkgdb::DpkgDbError),
    /// Volatile files could not be removed.
    #[error(transparent)]
    Cleanup(#[from] cleanup::CleanupError),
}

/// Write `data` to `path` (mode 0644) through a temporary file in the same directory and a rename,
/// so a reader never sees a half-written file.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
