//! The root tree: bootstrap and image package phases, dpkg configuration in the sandbox, overlays,
//! users, hooks, removals and volatile-file cleanup, and the files a prepared root keeps in its
//! `/image` for `create` ([`prepared::PreparedRoot`]).

pub mod base;
pub mod cleanup;
pub mod dpkgdb;
pub mod files;
pub mod hooks;
pub mod install;
pub mod overlay;
pub mod prepare;
pub mod prepared;
pub mod profile;
pub mod remove;
pub mod rpmdb;
pub mod rpminstall;
pub mod snapshot_cache;
pub mod sources;
pub mod users;

use std::io;
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

pub(crate) use crate::atomic::write_unsynced as write_atomic;

/// Top-level directories that are symlinks into `/usr` on a merged-/usr Debian root: `lib64`
/// only where the architecture's dynamic loader lives there.
pub fn merged_usr_links(arch: &str) -> &'static [&'static str] {
    match arch {
        "amd64" | "ppc64el" | "loong64" => &["bin", "lib", "lib64", "sbin"],
        _ => &["bin", "lib", "sbin"],
    }
}

/// Lay out a fresh root at `root`: the merged-/usr links and an empty dpkg database for `arch`.
pub fn skeleton(root: &Path, arch: &str) -> Result<(), RootfsError> {
    let io = |path: PathBuf| move |source| RootfsError::Io { path, source };
    for dir in merged_usr_links(arch) {
        let target = root.join("usr").join(dir);
        std::fs::create_dir_all(&target).map_err(io(target.clone()))?;
        let link = root.join(dir);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("usr/{dir}"), &link).map_err(io(link.clone()))?;
        }
    }
    dpkgdb::DpkgDb::new(root).init(arch)?;
    Ok(())
}
