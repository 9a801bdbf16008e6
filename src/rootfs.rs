//! The root tree: bootstrap and image package phases, dpkg configuration in the sandbox, overlays,
//! users, hooks, removals and volatile-file cleanup.

pub mod cleanup;
pub mod dpkgdb;
pub mod profile;
pub mod users;

use std::io;
use std::path::PathBuf;

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

pub(crate) use crate::atomic::write as write_atomic;
