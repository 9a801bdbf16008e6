//! Where blobs were seen: `<store root>/registry-blobs.json` maps each registry host to the
//! digests seen there and the repositories holding them, so that a push to one repository can
//! mount a blob from another on the same registry instead of uploading it again.
//!
//! The record is a hint: a repository named there may have lost the blob (the mount then
//! falls back to an upload), and a record that cannot be read counts as empty. Updates take
//! `registry-blobs.lock` so that concurrent pushes do not lose each other's entries; the file
//! itself is replaced atomically.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// The record's file in the store root.
const FILE: &str = "registry-blobs.json";
const LOCK: &str = "registry-blobs.lock";
/// Repositories kept per blob: enough to find a mount source, bounded so that a blob pushed
/// to many repositories does not grow the file without end (the newest are kept).
const MAX_REPOSITORIES: usize = 8;

/// host → digest → repositories.
type Locations = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// An update of the record failed; the path names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct BlobInfoError {
    /// The record or its lock file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

fn read(path: &Path) -> Locations {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records that `repository` on `host` holds each of `digests` (after a push, a pull or a
/// HEAD that found them). Creates the store root if needed.
pub fn record(
    store_root: &Path,
    host: &str,
    repository: &str,
    digests: &[String],
) -> Result<(), BlobInfoError> {
    if digests.is_empty() {
        return Ok(());
    }
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BlobInfoError { path, source }
    };
    std::fs::create_dir_all(store_root).map_err(err(store_root))?;
    let lock_path = store_root.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(err(&lock_path))?;
    fs4::FileExt::lock(&lock).map_err(err(&lock_path))?;
    let path = store_root.join(FILE);
    let mut all = read(&path);
    let seen = all.entry(host.to_string()).or_default();
    for d in digests {
        let repos = seen.entry(d.clone()).or_default();
        repos.retain(|r| r != repository);
        repos.push(repository.to_string());
        if repos.len() > MAX_REPOSITORIES {
            repos.drain(..repos.len() - MAX_REPOSITORIES);
        }
    }
    let json = serde_json::to_vec_pretty(&all).map_err(|e| BlobInfoError {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::atomic::write(&path, &json).map_err(err(&path))?;
    drop(lock);
    Ok(())
}

/// The blob locations of one registry host, read once for a push.
#[derive(Debug, Clone, Default)]
pub struct BlobLocations {
    seen: BTreeMap<String, Vec<String>>,
}

impl BlobLocations {
    /// What the record of `store_root` knows of `host` (nothing when there is no record).
    pub fn load(store_root: &Path, host: &str) -> BlobLocations {
        BlobLocations {
            seen: read(&store_root.join(FILE))
                .remove(host)
                .unwrap_or_default(),
        }
    }

    /// Repositories other than `except` known to hold `digest`, the most recently seen first.
    pub fn repositories(&self, digest: &str, except: &str) -> Vec<String> {
        self.seen
            .get(digest)
            .map(|r| r.iter().rev().filter(|r| *r != except).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_finds_other_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        assert!(
            BlobLocations::load(&root, "h:1")
                .repositories(&d('a'), "x")
                .is_empty()
        );
        record(&root, "h:1", "base", &[d('a'), d('b')]).unwrap();
        record(&root, "h:1", "derived", &[d('a')]).unwrap();
        record(&root, "other:2", "elsewhere", &[d('b')]).unwrap();
        let here = BlobLocations::load(&root, "h:1");
        assert_eq!(here.repositories(&d('a'), "x"), ["derived", "base"]);
        assert_eq!(here.repositories(&d('a'), "derived"), ["base"]);
        assert_eq!(here.repositories(&d('b'), "x"), ["base"]);
        assert!(here.repositories(&d('c'), "x").is_empty());
        // Recording again moves the repository to the newest place, once.
        record(&root, "h:1", "base", &[d('a')]).unwrap();
        assert_eq!(
            BlobLocations::load(&root, "h:1").repositories(&d('a'), "x"),
            ["base", "derived"]
        );
        for i in 0..20 {
            record(&root, "h:1", &format!("r{i}"), &[d('a')]).unwrap();
        }
        let many = BlobLocations::load(&root, "h:1").repositories(&d('a'), "x");
        assert_eq!(many.len(), MAX_REPOSITORIES);
        assert_eq!(many[0], "r19");
        // A damaged record counts as empty and is replaced by the next update.
        std::fs::write(root.join(FILE), b"{not json").unwrap();
        assert!(
            BlobLocations::load(&root, "h:1")
                .repositories(&d('a'), "x")
                .is_empty()
        );
        record(&root, "h:1", "base", &[d('a')]).unwrap();
        assert_eq!(
            BlobLocations::load(&root, "h:1").repositories(&d('a'), "x"),
            ["base"]
        );
    }
}
