//! The image's own apt sources: `imageinclude` repositories written into the root as deb822
//! `.sources` files, so that `apt-get` in the finished image uses them.

use crate::confine::{ConfineError, Root};
use crate::plan::Plan;
use std::path::{Path, PathBuf};

/// Errors writing the image's apt sources.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// The root could not be opened for confined writes.
    #[error("{path}: opening the root: {source}")]
    Root {
        /// The root tree.
        path: PathBuf,
        /// What went wrong.
        source: ConfineError,
    },
    /// A sources file or keyring could not be made in the root.
    #[error("{path}: {source}")]
    Write {
        /// The directory written into (`etc/apt` of the root).
        path: PathBuf,
        /// What went wrong (the error names the file).
        source: ConfineError,
    },
    /// A repository's signing key could not be read, or a file not written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(path: &Path, source: std::io::Error) -> SourcesError {
    SourcesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `imageinclude` repositories written into the image as deb822 sources. A signing key the
/// image does not already have at the same path is copied to `/etc/apt/keyrings/`.
pub fn image_sources(root: &Path, plan: &Plan) -> Result<(), SourcesError> {
    let r = Root::open(root).map_err(|source| SourcesError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let write = |source| SourcesError::Write {
        path: root.join("etc/apt"),
        source,
    };
    for repo in plan.repositories.iter().filter(|r| r.spec.imageinclude) {
        let name: String = repo
            .spec
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut signed_by = None;
        if let Some(key) = repo.keyrings.first() {
            let rel = key.to_string_lossy().trim_start_matches('/').to_string();
            if r.lstat(&rel).is_ok() {
                signed_by = Some(format!("/{rel}"));
            } else {
                let data = std::fs::read(key).map_err(|source| io(key, source))?;
                let ext = key.extension().and_then(|e| e.to_str()).unwrap_or("gpg");
                let target = format!("etc/apt/keyrings/{name}.{ext}");
                r.create_dir_all("etc/apt/keyrings", 0o755).map_err(write)?;
                let mut f = r.create_file(&target, 0o644).map_err(write)?;
                std::io::Write::write_all(&mut f, &data)
                    .map_err(|source| io(&root.join(&target), source))?;
                signed_by = Some(format!("/{target}"));
            }
        }
        r.create_dir_all("etc/apt/sources.list.d", 0o755)
            .map_err(write)?;
        let target = format!("etc/apt/sources.list.d/{name}.sources");
        let mut f = r.create_file(&target, 0o644).map_err(write)?;
        std::io::Write::write_all(&mut f, repo.sources_entry(signed_by.as_deref()).as_bytes())
            .map_err(|source| io(&root.join(&target), source))?;
    }
    Ok(())
}
