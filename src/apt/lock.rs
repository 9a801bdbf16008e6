//! The lock file: every package a build resolved, pinned by version and sha256, so a rebuild
//! installs exactly the same bytes (and `--offline` can build from the cache alone).
//!
//! Format: JSON, `{"version": 1, "inputs": "sha256:…", "packages": [...]}`, packages in install
//! order (bootstrap phase first, Pre-Depends before their dependents), two-space indented, one
//! trailing newline. The solver is deterministic, so the file is stable under re-locking and diffs
//! well in review. `inputs` is a digest of what was asked for (packages, repositories, architecture):
//! a lock whose inputs no longer match the description is refused as stale.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The lock file format version this build reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// Errors reading or writing a lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A base entry's digest is malformed.
    #[error("{path}: base {uri}: the digest must be sha256: and 64 lowercase hex digits")]
    Base {
        /// The lock file.
        path: PathBuf,
        /// The base's URI.
        uri: String,
    },
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid lock file.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The lock file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file was written by a newer or older format.
    #[error(
        "{path}: lock file version {found} is not supported (this build reads version {LOCK_VERSION})"
    )]
    Version {
        /// The lock file.
        path: PathBuf,
        /// The version it declares.
        found: u32,
    },
    /// A package entry is unusable.
    #[error("{path}: package {name}: {message}")]
    Entry {
        /// The lock file.
        path: PathBuf,
        /// The package.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact Debian version.
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub architecture: String,
    /// Alias of the repository it came from.
    pub repository: String,
    /// Path of the `.deb` relative to the repository root (the `Filename` field).
    pub filename: String,
    /// sha256 of the `.deb`, lowercase hex.
    pub sha256: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// The install phase: `bootstrap` or `image`.
    pub phase: String,
}

/// One pinned base image of a derived build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedBase {
    /// The `derived_from` URI as the description gives it.
    pub uri: String,
    /// The `sha256:` digest of the base's image manifest (for a registry base, of the
    /// platform's manifest, not of the index).
    pub digest: String,
}

/// A whole lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// Format version, [`LOCK_VERSION`].
    pub version: u32,
    /// Digest of the request this lock answers.
    pub inputs: String,
    /// Pinned packages, in install order.
    pub packages: Vec<LockedPackage>,
    /// The base images of a derived build, in `derived_from` order (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<LockedBase>,
}

impl LockFile {
    /// A lock file answering `inputs` with `packages` (kept in the order given).
    pub fn new(inputs: String, packages: Vec<LockedPackage>) -> Self {
        LockFile {
            version: LOCK_VERSION,
            inputs,
            packages,
            bases: Vec::new(),
        }
    }

    /// The canonical text of this lock file.
    pub fn to_text(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parse and check a lock file's text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, LockError> {
        let lock: LockFile = serde_json::from_str(text).map_err(|e| LockError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if lock.version != LOCK_VERSION {
            return Err(LockError::Version {
                path: path.to_path_buf(),
                found: lock.version,
            });
        }
        for b in &lock.bases {
            let hex = b.digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(LockError::Base {
                    path: path.to_path_buf(),
                    uri: b.uri.clone(),
                });
            }
        }
        for p in &lock.packages {
            let bad = |message: &str| LockError::Entry {
                path: path.to_path_buf(),
                name: p.name.clone(),
                message: message.to_string(),
            };
            if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("sha256 must be 64 hex digits"));
            }
            if !matches!(p.phase.as_str(), "bootstrap" | "image") {
                return Err(bad("phase must be bootstrap or image"));
            }
            if p.filename.split('/').any(|c| c == "..") || p.filename.starts_with('/') {
                return Err(bad(
                    "filename must be a relative path inside the repository",
                ));
            }
        }
        Ok(lock)
    }

    /// Read and check the lock file at `path`.
    pub fn read(path: &Path) -> Result<Self, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Write the lock file atomically.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        crate::atomic::write(path, self.to_text().as_bytes()).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, arch: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: "1.0-1".into(),
            architecture: arch.into(),
            repository: "debian".into(),
            filename: format!("pool/main/x/{name}.deb"),
            sha256: "ab".repeat(32),
            size: 10,
            phase: "bootstrap".into(),
        }
    }

    #[test]
    fn sorted_canonical_round_trip() {
        let lock = LockFile::new(
            "sha256:00".into(),
            vec![pkg("zlib1g", "amd64"), pkg("bash", "amd64")],
        );
        assert_eq!(lock.packages[0].name, "zlib1g");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imgbuild.lock");
        lock.write(&path).unwrap();
        assert_eq!(LockFile::read(&path).unwrap(), lock);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), lock.to_text());
    }

    #[test]
    fn rejects_bad_entries_with_position() {
        let p = Path::new("x.lock");
        let err = LockFile::parse(p, "{\"version\": 1,\n \"packages\": [}").unwrap_err();
        assert!(err.to_string().starts_with("x.lock:2:"), "{err}");
        let err =
            LockFile::parse(p, "{\"version\": 9, \"inputs\": \"\", \"packages\": []}").unwrap_err();
        assert!(matches!(err, LockError::Version { found: 9, .. }));
        let mut bad = pkg("x", "all");
        bad.filename = "../../etc/passwd".into();
        let text = LockFile::new(String::new(), vec![bad]).to_text();
        assert!(matches!(
            LockFile::parse(p, &text),
            Err(LockError::Entry { .. })
        ));
    }
}
