//! Canonical sha256 digests of files and directory trees: the serialisation behind
//! [`crate::reuse`]'s inputs key, and the tree digest `result.json` records for a result
//! directory (an OCI layout). Both `build`, which records digests, and `reuse`, which checks
//! them, use this module, so neither needs the other for it.

use crate::workdir::{RESULT_PREFIX, ROOT_PREFIX};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Version of the serialisation, the first field of every digest; bumped whenever what goes
/// into the inputs key changes.
pub const FORMAT: &str = "imgbuild-inputs/2";

/// Errors while reading what is digested.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// A file could not be read; the error comes from `fs_err`, whose message names the file
    /// and the call.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A directory could not be walked.
    #[error("{path}: {source}")]
    Walk {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: walkdir::Error,
    },
}

/// The canonical serialisation: tagged, length-prefixed fields hashed as they are written, so no
/// two different field sequences give the same bytes.
pub struct KeyWriter {
    hash: Sha256,
}

impl Default for KeyWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyWriter {
    /// A writer that has written the [`FORMAT`] field.
    pub fn new() -> KeyWriter {
        let mut w = KeyWriter {
            hash: Sha256::new(),
        };
        w.field("format", FORMAT.as_bytes());
        w
    }

    /// Writes one field.
    pub fn field(&mut self, tag: &str, value: &[u8]) {
        self.hash.update((tag.len() as u64).to_le_bytes());
        self.hash.update(tag.as_bytes());
        self.hash.update((value.len() as u64).to_le_bytes());
        self.hash.update(value);
    }

    /// Writes one field holding text.
    pub fn str(&mut self, tag: &str, value: &str) {
        self.field(tag, value.as_bytes());
    }

    /// The digest of everything written, as `sha256:<hex>`.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.hash.finalize()))
    }

    /// Writes every entry under `dir` in sorted order (symlinks recorded, not followed),
    /// skipping the paths in `skip` and imgbuild's own work directories.
    pub fn tree(&mut self, dir: &Path, skip: &[PathBuf]) -> Result<(), DigestError> {
        let walk = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let name = e.file_name().as_bytes();
                !(skip.iter().any(|s| s == e.path())
                    || name.starts_with(ROOT_PREFIX.as_bytes())
                    || name.starts_with(RESULT_PREFIX.as_bytes()))
            });
        for entry in walk {
            let entry = entry.map_err(|source| DigestError::Walk {
                path: dir.to_path_buf(),
                source,
            })?;
            let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            let meta = fs_err::symlink_metadata(entry.path())?;
            self.entry(rel, entry.path(), &meta)?;
        }
        Ok(())
    }

    /// Writes what `path` names, following symlinks: a directory's tree, a file's content, or
    /// its absence.
    pub fn followed(
        &mut self,
        tag: &str,
        path: &Path,
        skip: &[PathBuf],
    ) -> Result<(), DigestError> {
        self.followed_as(tag, path, path, skip)
    }

    /// [`KeyWriter::followed`], with `path` named `name` in the key (a path relative to the
    /// description directory, so the key does not depend on where that directory is).
    pub fn followed_as(
        &mut self,
        tag: &str,
        name: &Path,
        path: &Path,
        skip: &[PathBuf],
    ) -> Result<(), DigestError> {
        self.field(tag, name.as_os_str().as_bytes());
        match fs_err::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.str("missing", "");
                Ok(())
            }
            Err(e) => Err(e.into()),
            Ok(m) if m.is_dir() => {
                let real = fs_err::canonicalize(path)?;
                self.tree(&real, skip)
            }
            Ok(m) => self.entry(Path::new(""), path, &m),
        }
    }

    /// Writes one filesystem entry (not following a symlink): its relative path, type,
    /// permission bits, and its content digest or link target.
    fn entry(
        &mut self,
        rel: &Path,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<(), DigestError> {
        self.field("path", rel.as_os_str().as_bytes());
        self.str("mode", &format!("{:o}", meta.mode() & 0o7777));
        let ft = meta.file_type();
        if ft.is_file() {
            self.field("file", &file_sha256(path)?);
        } else if ft.is_symlink() {
            let target = fs_err::read_link(path)?;
            self.field("symlink", target.as_os_str().as_bytes());
        } else if ft.is_dir() {
            self.str("dir", "");
        } else {
            let kind = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_char_device() {
                "char"
            } else {
                "block"
            };
            self.str("special", &format!("{kind} {}", meta.rdev()));
        }
        Ok(())
    }
}

/// sha256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<[u8; 32], DigestError> {
    let mut f = fs_err::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// sha256 over a directory tree (sorted relative paths, types, permission bits, contents and
/// link targets): how a result directory such as an OCI layout is recorded and checked.
pub fn tree_digest(dir: &Path) -> Result<String, DigestError> {
    let mut w = KeyWriter::new();
    w.tree(dir, &[])?;
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_tree_digest_sees_content_modes_and_links_but_not_work_dirs() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("blobs")).unwrap();
        fs::write(d.join("blobs/a"), "a").unwrap();
        let first = tree_digest(d).unwrap();
        assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
        assert_eq!(tree_digest(d).unwrap(), first);
        fs::create_dir_all(d.join(format!("{ROOT_PREFIX}x"))).unwrap();
        assert_eq!(tree_digest(d).unwrap(), first, "a work dir is not content");
        fs::write(d.join("blobs/a"), "b").unwrap();
        let second = tree_digest(d).unwrap();
        assert_ne!(second, first);
        std::os::unix::fs::symlink("a", d.join("blobs/l")).unwrap();
        assert_ne!(tree_digest(d).unwrap(), second);
        let e = tree_digest(&d.join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
