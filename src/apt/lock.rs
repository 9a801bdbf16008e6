//! The lock file: every package a build resolved, pinned by version and sha256, so a rebuild
//! installs exactly the same bytes (and `--offline` can build from the cache alone).
//!
//! Format: JSON, `{"version": 1, "inputs": "sha256:…", "packages": [...]}`, packages in install
//! order (bootstrap phase first, Pre-Depends before their dependents), two-space indented, one
//! trailing newline. The solver is deterministic, so the file is stable under re-locking and diffs
//! well in review. `inputs` is a digest of what was asked for (packages, repositories, architecture):
//! a lock whose inputs no longer match the description is refused as stale.
//!
//! A lock for several architectures (`imgbuild lock --target-arch x86_64,aarch64`) is version 2:
//! `{"version": 2, "architectures": {"aarch64": {"inputs": …, "packages": […]}, "x86_64": {…}}}`,
//! one version 1 body (without its `version`) per architecture, sorted by name. Each build reads
//! its architecture's pins ([`LockFile::read_for`]); re-locking one architecture keeps the others
//! ([`write_merged`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lock file format version of one architecture's pins.
pub const LOCK_VERSION: u32 = 1;
/// The lock file format version of several architectures' pins.
pub const MULTI_LOCK_VERSION: u32 = 2;

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
        "{path}: lock file version {found} is not supported (this build reads versions {LOCK_VERSION} and {MULTI_LOCK_VERSION})"
    )]
    Version {
        /// The lock file.
        path: PathBuf,
        /// The version it declares.
        found: u32,
    },
    /// A lock of several architectures pins none for the one being built.
    #[error(
        "{path}: the lock file pins packages for {have}, not {arch}; run `imgbuild lock --target-arch {arch}` (it keeps the other architectures' pins)"
    )]
    NoArch {
        /// The lock file.
        path: PathBuf,
        /// The architecture built.
        arch: String,
        /// The architectures it pins, comma-separated.
        have: String,
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

fn read_text(path: &Path) -> Result<String, LockError> {
    std::fs::read_to_string(path).map_err(|source| LockError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A lock file's content: one architecture's pins, or several architectures'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDocument {
    /// Version 1.
    One(LockFile),
    /// Version 2, by `--target-arch` name.
    Several(BTreeMap<String, LockFile>),
}

/// Version 2's body of one architecture: version 1 without its version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchPins {
    inputs: String,
    packages: Vec<LockedPackage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    bases: Vec<LockedBase>,
}

/// Only the version of a lock file, read first.
#[derive(Deserialize)]
struct Version {
    version: u32,
}

/// Version 2 as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeveralFile {
    version: u32,
    architectures: BTreeMap<String, ArchPins>,
}

impl LockDocument {
    /// Parses and checks a lock file of either version; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, LockError> {
        let parse_err = |e: serde_json::Error| LockError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        // The version decides the shape; everything else is read strictly by it.
        let version = serde_json::from_str::<Version>(text)
            .map_err(parse_err)?
            .version;
        match version {
            LOCK_VERSION => {
                let lock: LockFile = serde_json::from_str(text).map_err(parse_err)?;
                Ok(LockDocument::One(lock.check(path)?))
            }
            MULTI_LOCK_VERSION => {
                let file: SeveralFile = serde_json::from_str(text).map_err(parse_err)?;
                let mut by_arch = BTreeMap::new();
                for (arch, p) in file.architectures {
                    let lock = LockFile {
                        version: LOCK_VERSION,
                        inputs: p.inputs,
                        packages: p.packages,
                        bases: p.bases,
                    };
                    by_arch.insert(arch, lock.check(path)?);
                }
                Ok(LockDocument::Several(by_arch))
            }
            found => Err(LockError::Version {
                path: path.to_path_buf(),
                found,
            }),
        }
    }

    /// The canonical text: version 1 for one architecture's pins, else version 2.
    pub fn to_text(&self) -> String {
        match self {
            LockDocument::One(lock) => lock.to_text(),
            LockDocument::Several(by_arch) => {
                let file = SeveralFile {
                    version: MULTI_LOCK_VERSION,
                    architectures: by_arch
                        .iter()
                        .map(|(arch, l)| {
                            let pins = ArchPins {
                                inputs: l.inputs.clone(),
                                packages: l.packages.clone(),
                                bases: l.bases.clone(),
                            };
                            (arch.clone(), pins)
                        })
                        .collect(),
                };
                // Serialising plain strings and integers cannot fail.
                let mut s = serde_json::to_string_pretty(&file).unwrap_or_default();
                s.push('\n');
                s
            }
        }
    }
}

/// Writes the pins of `fresh` (by `--target-arch` name) to the lock file at `path`, atomically:
/// an existing version 2 file keeps the pins of the architectures not in `fresh`; a single
/// architecture's pins are written as version 1 unless the file already held several.
pub fn write_merged(path: &Path, fresh: BTreeMap<String, LockFile>) -> Result<(), LockError> {
    let existing = if path.exists() {
        match LockDocument::parse(path, &read_text(path)?) {
            Ok(LockDocument::Several(by_arch)) => by_arch,
            // A version 1 file (or an unreadable one) is replaced: re-locking is its fix.
            Ok(LockDocument::One(_)) | Err(_) => BTreeMap::new(),
        }
    } else {
        BTreeMap::new()
    };
    let mut fresh = fresh.into_iter();
    let doc = match (existing.is_empty(), fresh.len(), fresh.next()) {
        (true, 1, Some((_, one))) => LockDocument::One(one),
        (_, _, first) => {
            let mut all = existing;
            all.extend(first.into_iter().chain(fresh));
            LockDocument::Several(all)
        }
    };
    crate::atomic::write(path, doc.to_text().as_bytes()).map_err(|source| LockError::Io {
        path: path.to_path_buf(),
        source,
    })
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
        match LockDocument::parse(path, text)? {
            LockDocument::One(lock) => Ok(lock),
            LockDocument::Several(_) => Err(LockError::Version {
                path: path.to_path_buf(),
                found: MULTI_LOCK_VERSION,
            }),
        }
    }

    /// Checks the entries of one architecture's pins.
    fn check(self, path: &Path) -> Result<Self, LockError> {
        let lock = self;
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

    /// Read and check the lock file at `path` (one architecture's, version 1).
    pub fn read(path: &Path) -> Result<Self, LockError> {
        Self::parse(path, &read_text(path)?)
    }

    /// The pins for `arch` (a `--target-arch` name) of the lock file at `path`: a version 1
    /// file is one architecture's (its inputs, which include the architecture, tell whether it
    /// is `arch`'s); a version 2 file names them.
    pub fn read_for(path: &Path, arch: &str) -> Result<Self, LockError> {
        match LockDocument::parse(path, &read_text(path)?)? {
            LockDocument::One(lock) => Ok(lock),
            LockDocument::Several(mut by_arch) => {
                by_arch.remove(arch).ok_or_else(|| LockError::NoArch {
                    path: path.to_path_buf(),
                    arch: arch.to_string(),
                    have: by_arch.keys().cloned().collect::<Vec<_>>().join(", "),
                })
            }
        }
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

    #[test]
    fn several_architectures_are_pinned_apart_and_merged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imgbuild.lock");
        let amd = LockFile::new("sha256:a".into(), vec![pkg("bash", "amd64")]);
        let arm = LockFile::new("sha256:b".into(), vec![pkg("bash", "arm64")]);
        // One architecture alone: version 1, as before.
        write_merged(&path, BTreeMap::from([("x86_64".into(), amd.clone())])).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), amd.to_text());
        assert_eq!(LockFile::read_for(&path, "x86_64").unwrap(), amd);
        // Two: version 2, each read by its name.
        write_merged(
            &path,
            BTreeMap::from([
                ("x86_64".into(), amd.clone()),
                ("aarch64".into(), arm.clone()),
            ]),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n  \"version\": 2,"), "{text}");
        assert_eq!(LockFile::read_for(&path, "aarch64").unwrap(), arm);
        assert_eq!(LockFile::read_for(&path, "x86_64").unwrap(), amd);
        let e = LockFile::read_for(&path, "s390x").unwrap_err().to_string();
        assert!(
            e.contains("pins packages for aarch64, x86_64, not s390x"),
            "{e}"
        );
        // Re-locking one keeps the other.
        let arm2 = LockFile::new("sha256:c".into(), vec![pkg("dash", "arm64")]);
        write_merged(&path, BTreeMap::from([("aarch64".into(), arm2.clone())])).unwrap();
        assert_eq!(LockFile::read_for(&path, "aarch64").unwrap(), arm2);
        assert_eq!(LockFile::read_for(&path, "x86_64").unwrap(), amd);
        // A version 2 body is checked as strictly as version 1.
        let mut bad = pkg("x", "all");
        bad.filename = "/etc/passwd".into();
        let doc = LockDocument::Several(BTreeMap::from([(
            "x86_64".into(),
            LockFile::new(String::new(), vec![bad]),
        )]));
        assert!(matches!(
            LockDocument::parse(&path, &doc.to_text()),
            Err(LockError::Entry { .. })
        ));
    }
}
