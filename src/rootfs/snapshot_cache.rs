//! The package-stage snapshot cache: the root tree as it stands after the package phases
//! (bootstrap, `post_bootstrap.sh`, image packages), kept in the cache directory under a key of
//! everything that shaped it ([`stage_key`]), so that a rebuild whose packages did not change
//! (only `config.sh`, the overlay, users, files or labels did) restores it instead of installing
//! again — what Docker's layer cache does for a Dockerfile, for KIWI descriptions.
//!
//! Layout: `<cache>/snapshots/<key>/` holds `manifest` (every entry's type, owner, mode,
//! times, extended attributes, link target and content sha256, behind a checksummed header),
//! `tree/` (the regular files' contents only, as plain root-owned 0644 files: no setuid binary
//! or device node sits in the cache), `info.json` (what `imgbuild cache ls` shows) and `used`
//! (its mtime is the last use, for least-recently-used eviction).
//!
//! Restoring recreates the tree from the manifest through [`crate::confine`], never from the
//! cached tree's own metadata; contents are cloned (`FICLONE`) where the filesystem shares
//! extents, else copied, in parallel, and every restored file is hashed and compared with the
//! manifest. A snapshot altered or damaged in any way is reported as [`SnapshotError::Corrupt`]:
//! the caller removes it and installs afresh.
//!
//! Concurrency: a snapshot appears whole, by one rename of a finished directory out of an
//! owner-locked work directory (see [`crate::workdir`], whose sweep removes those of killed
//! builds). Readers hold a shared lock (`locks/<key>`) while they copy; removal takes it
//! exclusively, skips a snapshot in use, and renames the snapshot into a work directory before
//! deleting it, so a removal cut short never leaves something that looks valid.

use crate::confine::{self, NodeKind};
use crate::digest::KeyWriter;
use crate::plan::Plan;
use crate::workdir::{self, WorkDir, WorkDirError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The snapshots' directory inside the package cache directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// The default size cap of the snapshot cache (`--snapshot-cache-size`).
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// First line of a manifest, before the checksum of the rest.
const MAGIC: &str = "imgbuild-snapshot v1";
const MANIFEST: &str = "manifest";
const INFO: &str = "info.json";
const USED: &str = "used";
const TREE: &str = "tree";
const LOCKS: &str = "locks";

/// Errors of the snapshot cache; each names the path or snapshot involved.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file of the cache or the root could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A write into the root was refused or failed.
    #[error(transparent)]
    Confine(#[from] confine::ConfineError),
    /// A work directory for a snapshot being written or removed could not be made.
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    /// The snapshot does not match its manifest (or the manifest its checksum).
    #[error("snapshot {key} is corrupt: {reason}")]
    Corrupt {
        /// The snapshot's key.
        key: String,
        /// What did not match.
        reason: String,
    },
    /// The root holds something a snapshot cannot record exactly, or the snapshot directory
    /// is not private.
    #[error("{path}: {reason}; package-stage snapshots are not used")]
    Unsupported {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, SnapshotError>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.into();
    move |source| SnapshotError::Io { path, source }
}

/// What shapes the package stage of a fresh (not derived) root, for [`stage_key`].
#[derive(Debug, Clone, Copy)]
pub struct StageInputs<'a> {
    /// The imgbuild binary's identity (version and build), since it does the installing.
    pub tool: &'a str,
    /// The packages, per phase in install order, with their digests.
    pub plan: &'a Plan,
    /// The description's `post_bootstrap.sh`, which runs between the phases.
    pub post_bootstrap: Option<&'a Path>,
    /// rpm's `--excludedocs` (KIWI's `rpm-excludedocs`).
    pub exclude_docs: bool,
}

/// The key of a package stage: lowercase hex sha256 of the tool, the package format and
/// architecture, every package (phase, name, version, architecture, sha256, size) in install
/// order, the content of `post_bootstrap.sh` and the install options.
pub fn stage_key(inputs: &StageInputs<'_>) -> Result<String> {
    let mut w = KeyWriter::new();
    w.str("stage", "package-stage snapshot v1");
    w.str("tool", inputs.tool);
    w.str("package-format", &format!("{:?}", inputs.plan.format));
    w.str("arch", &inputs.plan.arch);
    for p in &inputs.plan.packages {
        w.str("phase", p.phase.as_str());
        w.str("name", &p.name);
        w.str("version", &p.version);
        w.str("architecture", &p.architecture);
        w.str("sha256", &p.sha256);
        w.str("size", &p.size.to_string());
    }
    match inputs.post_bootstrap {
        Some(script) => w.field(
            "post_bootstrap.sh",
            &fs::read(script).map_err(io_err(script))?,
        ),
        None => w.str("post_bootstrap.sh", "none"),
    }
    w.str("exclude-docs", if inputs.exclude_docs { "1" } else { "0" });
    let key = w.finish();
    Ok(key.trim_start_matches("sha256:").to_string())
}

/// One entry of a snapshot's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// Root-relative path; empty for the root itself.
    path: String,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    mtime_nsec: u32,
    /// Extended attributes: name, hex value; sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Kind {
    Dir,
    File {
        size: u64,
        sha256: String,
    },
    /// A hard link to an earlier `File` entry.
    Link {
        to: String,
    },
    Symlink {
        target: String,
    },
    Char {
        rdev: u64,
    },
    Block {
        rdev: u64,
    },
    Fifo,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    entries: Vec<Entry>,
}

/// What `imgbuild cache ls` shows of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The key (hex sha256 of the stage's inputs).
    pub key: String,
    /// The image it was made for (name, version, architecture).
    pub label: String,
    /// Packages installed.
    pub packages: usize,
    /// Entries in the tree.
    pub entries: usize,
    /// Bytes of file content kept (each hard-linked file once) plus the manifest.
    pub bytes: u64,
    /// When it was written (seconds since the epoch).
    pub created: u64,
    /// When it was last written or restored (seconds since the epoch); set by [`SnapshotCache::list`].
    #[serde(default)]
    pub last_used: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Copy)]
pub struct Restored {
    /// Entries recreated.
    pub entries: usize,
    /// Bytes of file content restored.
    pub bytes: u64,
    /// Whether contents were shared with the cache (reflink) rather than copied.
    pub cloned: bool,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Written now.
    Written(SnapshotInfo),
    /// Another build had written the same snapshot first.
    Existing,
}

/// What a prune did.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Snapshots removed.
    pub removed: Vec<SnapshotInfo>,
    /// Snapshots that matched but were in use by a running build, so stayed.
    pub busy: Vec<String>,
    /// Left-over work directories of killed builds removed.
    pub stale: usize,
}

/// Which snapshots a prune removes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrunePolicy {
    /// Every snapshot.
    pub all: bool,
    /// Those not used for longer than this.
    pub unused_for: Option<Duration>,
    /// Then the least recently used, until the cache is at most this big.
    pub max_bytes: Option<u64>,
}

/// The snapshot cache in a package cache directory.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    dir: PathBuf,
}

impl SnapshotCache {
    /// The snapshot cache of the package cache directory `cache_dir` (created when written).
    pub fn new(cache_dir: &Path) -> SnapshotCache {
        SnapshotCache {
            dir: cache_dir.join(SNAPSHOT_DIR),
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn snapshot(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Whether a snapshot of `key` is present (it may still turn out corrupt on restore).
    pub fn contains(&self, key: &str) -> bool {
        valid_key(key)
            && fs::symlink_metadata(self.snapshot(key).join(MANIFEST)).is_ok_and(|m| m.is_file())
    }

    /// Creates the snapshot directory (owner-only) and checks that nobody else can write it: a
    /// snapshot's manifest is the root tree a build continues from, so a directory another
    /// user could write is not used at all.
    fn private_dir(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(io_err(&self.dir))?;
            }
            Err(e) => return Err(io_err(&self.dir)(e)),
        }
        let meta = fs::symlink_metadata(&self.dir).map_err(io_err(&self.dir))?;
        let reason = if !meta.is_dir() {
            Some("not a directory (a symlink?)".to_string())
        } else if meta.uid() != nix::unistd::geteuid().as_raw() {
            Some(format!("owned by uid {}, not this user", meta.uid()))
        } else if meta.mode() & 0o022 != 0 {
            Some(format!(
                "writable by others (mode {:o}; chmod go-w)",
                meta.mode() & 0o777
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(SnapshotError::Unsupported {
                path: self.dir.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The lock file of `key`, opened (and created) for locking.
    fn lock_file(&self, key: &str) -> Result<File> {
        self.private_dir()?;
        let dir = self.dir.join(LOCKS);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(key);
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err(path))
    }

    /// Recreate the snapshot `key` in the empty directory `root`. `Ok(None)`: there is none.
    /// A snapshot that does not match its manifest gives [`SnapshotError::Corrupt`]; the root
    /// then holds part of the tree and must be cleared by the caller.
    pub fn restore(&self, key: &str, root: &Path) -> Result<Option<Restored>> {
        if !valid_key(key) {
            return Ok(None);
        }
        let lock = self.lock_file(key)?;
        fs4::FileExt::lock_shared(&lock).map_err(io_err(self.dir.join(LOCKS).join(key)))?;
        let dir = self.snapshot(key);
        let manifest = match read_manifest(&dir.join(MANIFEST), key) {
            Ok(m) => m,
            Err(SnapshotError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        check_entries(&manifest.entries, key)?;
        let empty = fs::read_dir(root).map_err(io_err(root))?.next().is_none();
        if !empty {
            return Err(SnapshotError::Io {
                path: root.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a snapshot is restored only into an empty root",
                ),
            });
        }
        let restored = write_tree(&manifest.entries, &dir.join(TREE), root, key)?;
        touch(&dir.join(USED));
        drop(lock);
        Ok(Some(restored))
    }

    /// Keep the tree at `root` as the snapshot `key` (`label`: the image it was made for,
    /// `packages`: how many were installed). The tree must not change meanwhile.
    pub fn save(&self, key: &str, root: &Path, label: &str, packages: usize) -> Result<Saved> {
        if !valid_key(key) {
            return Err(SnapshotError::Unsupported {
                path: self.dir.join(key),
                reason: "not a snapshot key".into(),
            });
        }
        if self.contains(key) {
            return Ok(Saved::Existing);
        }
        self.private_dir()?;
        let work = WorkDir::create(&self.dir, workdir::ROOT_PREFIX)?;
        let new = work.path().join("snapshot");
        let tree = new.join(TREE);
        fs::create_dir_all(&tree).map_err(io_err(&tree))?;
        let entries = read_tree(root, &tree)?;
        let count = entries.len();
        let content: u64 = entries
            .iter()
            .map(|e| match &e.kind {
                Kind::File { size, .. } => *size,
                _ => 0,
            })
            .sum();
        let body = serde_json::to_vec(&Manifest { entries })
            .map_err(|e| io_err(new.join(MANIFEST))(io::Error::other(e)))?;
        let manifest = [
            format!("{MAGIC} sha256:{}\n", hex::encode(Sha256::digest(&body))).as_bytes(),
            &body,
        ]
        .concat();
        write_file(&new.join(MANIFEST), &manifest)?;
        let info = SnapshotInfo {
            key: key.to_string(),
            label: label.to_string(),
            packages,
            entries: count,
            bytes: content + manifest.len() as u64,
            created: now_secs(),
            last_used: 0,
        };
        let json = serde_json::to_vec_pretty(&info)
            .map_err(|e| io_err(new.join(INFO))(io::Error::other(e)))?;
        write_file(&new.join(INFO), &json)?;
        write_file(&new.join(USED), b"")?;
        let dest = self.snapshot(key);
        match fs::rename(&new, &dest) {
            Ok(()) => Ok(Saved::Written(info)),
            // Another build won the race: its snapshot is the same tree.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                Ok(Saved::Existing)
            }
            Err(e) => Err(io_err(dest)(e)),
        }
    }

    /// Remove the snapshot `key` unless a build is restoring it; returns whether it was removed.
    pub fn remove(&self, key: &str) -> Result<bool> {
        if !valid_key(key) || !self.snapshot(key).exists() {
            return Ok(false);
        }
        let lock = self.lock_file(key)?;
        if fs4::FileExt::try_lock(&lock).is_err() {
            return Ok(false);
        }
        let work = WorkDir::create(&self.dir, workdir::ROOT_PREFIX)?;
        let from = self.snapshot(key);
        match fs::rename(&from, work.path().join("removed")) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(from)(e)),
        }
        // Removed while the lock is held (the work directory goes on drop).
        drop(work);
        let _ = fs::remove_file(self.dir.join(LOCKS).join(key));
        drop(lock);
        Ok(true)
    }

    /// The snapshots, most recently used first. Unreadable entries are left out.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(key) = name.to_str().filter(|k| valid_key(k)) else {
                continue;
            };
            let dir = entry.path();
            let Ok(text) = fs::read(dir.join(INFO)) else {
                continue;
            };
            let Ok(mut info) = serde_json::from_slice::<SnapshotInfo>(&text) else {
                continue;
            };
            info.key = key.to_string();
            info.last_used = fs::metadata(dir.join(USED))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(info.created, |d| d.as_secs());
            out.push(info);
        }
        out.sort_by(|a, b| {
            b.last_used
                .cmp(&a.last_used)
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok(out)
    }

    /// Remove what `policy` says, never `keep`, and the work directories of killed builds.
    pub fn prune(&self, policy: &PrunePolicy, keep: Option<&str>) -> Result<Pruned> {
        let mut pruned = Pruned {
            stale: workdir::remove_stale(&self.dir).len(),
            ..Pruned::default()
        };
        let now = now_secs();
        let mut left = Vec::new();
        for info in self.list()? {
            let old = policy
                .unused_for
                .is_some_and(|d| now.saturating_sub(info.last_used) > d.as_secs());
            if Some(info.key.as_str()) != keep && (policy.all || old) {
                self.remove_counted(info, &mut pruned)?;
            } else {
                left.push(info);
            }
        }
        if let Some(max) = policy.max_bytes {
            let mut total: u64 = left.iter().map(|i| i.bytes).sum();
            // Least recently used first.
            while total > max {
                let Some(info) = left.pop() else { break };
                if Some(info.key.as_str()) == keep {
                    continue;
                }
                total -= info.bytes;
                self.remove_counted(info, &mut pruned)?;
            }
        }
        Ok(pruned)
    }

    fn remove_counted(&self, info: SnapshotInfo, pruned: &mut Pruned) -> Result<()> {
        if self.remove(&info.key)? {
            pruned.removed.push(info);
        } else {
            pruned.busy.push(info.key);
        }
        Ok(())
    }
}

/// Keys are lowercase hex sha256: nothing else is ever a path in the cache.
fn valid_key(key: &str) -> bool {
    key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Marks a snapshot used now (best effort: a read-only cache still restores).
fn touch(path: &Path) {
    if let Ok(f) = fs::OpenOptions::new().write(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).map_err(io_err(path))
}

fn read_manifest(path: &Path, key: &str) -> Result<Manifest> {
    let data = fs::read(path).map_err(io_err(path))?;
    parse_manifest(&data, key)
}

fn parse_manifest(data: &[u8], key: &str) -> Result<Manifest> {
    let corrupt = |reason: &str| SnapshotError::Corrupt {
        key: key.to_string(),
        reason: format!("manifest: {reason}"),
    };
    let nl = data
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt("no header line"))?;
    let header = std::str::from_utf8(&data[..nl]).map_err(|_| corrupt("header is not text"))?;
    let sum = header
        .strip_prefix(MAGIC)
        .and_then(|s| s.strip_prefix(" sha256:"))
        .ok_or_else(|| corrupt("unknown header"))?;
    let body = &data[nl + 1..];
    if hex::encode(Sha256::digest(body)) != sum {
        return Err(corrupt("checksum mismatch"));
    }
    serde_json::from_slice(body).map_err(|e| corrupt(&e.to_string()))
}

/// Checks the manifest describes a tree that can be recreated safely: the root first, every
/// path plain (no `.`, `..` or empty component), unique, under a directory entry listed before
/// it, and every hard link to an earlier regular file.
fn check_entries(entries: &[Entry], key: &str) -> Result<()> {
    let corrupt = |path: &str, reason: &str| SnapshotError::Corrupt {
        key: key.to_string(),
        reason: format!("manifest entry `{path}`: {reason}"),
    };
    match entries.first() {
        Some(Entry {
            path,
            kind: Kind::Dir,
            ..
        }) if path.is_empty() => {}
        _ => return Err(corrupt("", "the root directory is not the first entry")),
    }
    let mut dirs: BTreeSet<&str> = BTreeSet::from([""]);
    let mut files: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::from([""]);
    for e in &entries[1..] {
        let p = e.path.as_str();
        if p.split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'))
        {
            return Err(corrupt(p, "not a plain relative path"));
        }
        let parent = p.rsplit_once('/').map_or("", |(d, _)| d);
        if !dirs.contains(parent) {
            return Err(corrupt(p, "its directory is not listed before it"));
        }
        if !seen.insert(p) {
            return Err(corrupt(p, "listed twice"));
        }
        match &e.kind {
            Kind::Dir => {
                dirs.insert(p);
            }
            Kind::File { sha256, .. } => {
                if sha256.len() != 64 {
                    return Err(corrupt(p, "bad content digest"));
                }
                files.insert(p);
            }
            Kind::Link { to } if !files.contains(to.as_str()) => {
                return Err(corrupt(p, "hard link to a file not listed before it"));
            }
            Kind::Symlink { target } if target.contains('\0') => {
                return Err(corrupt(p, "bad symlink target"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn utf8<'a>(path: &'a Path, what: &Path) -> Result<&'a str> {
    path.to_str().ok_or_else(|| SnapshotError::Unsupported {
        path: what.to_path_buf(),
        reason: "a name that is not UTF-8".into(),
    })
}

/// Records the tree at `root` and copies its regular files' contents into `tree`.
fn read_tree(root: &Path, tree: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    // Regular files to copy: index into `entries`, absolute source path.
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name();
    for item in walk {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            SnapshotError::Io {
                path,
                source: e.into(),
            }
        })?;
        let abs = item.path();
        let rel = abs.strip_prefix(root).unwrap_or(Path::new(""));
        let rel_str = utf8(rel, abs)?.to_string();
        // The walk's own lstat (links are not followed).
        let meta = item.metadata().map_err(|e| io_err(abs)(e.into()))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            let dir = tree.join(rel);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            Kind::Dir
        } else if ft.is_file() {
            let inode = (meta.dev(), meta.ino());
            if let Some(first) = inodes.get(&inode).filter(|_| meta.nlink() > 1) {
                Kind::Link { to: first.clone() }
            } else {
                if meta.nlink() > 1 {
                    inodes.insert(inode, rel_str.clone());
                }
                files.push((entries.len(), abs.to_path_buf()));
                Kind::File {
                    size: meta.len(),
                    sha256: String::new(),
                }
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(io_err(abs))?;
            Kind::Symlink {
                target: utf8(&target, abs)?.to_string(),
            }
        } else if ft.is_char_device() {
            Kind::Char { rdev: meta.rdev() }
        } else if ft.is_block_device() {
            Kind::Block { rdev: meta.rdev() }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            return Err(SnapshotError::Unsupported {
                path: abs.to_path_buf(),
                reason: "a socket".into(),
            });
        };
        let mut xattrs = Vec::new();
        for (name, value) in confine::read_xattrs(abs).map_err(io_err(abs))? {
            let name = String::from_utf8(name).map_err(|_| SnapshotError::Unsupported {
                path: abs.to_path_buf(),
                reason: "an extended attribute name that is not UTF-8".into(),
            })?;
            xattrs.push((name, hex::encode(value)));
        }
        entries.push(Entry {
            path: rel_str,
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            mtime_nsec: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
            xattrs,
        });
    }
    let sums: Vec<(usize, String, u64)> = files
        .par_iter()
        .map(|(i, abs)| {
            let rel = abs.strip_prefix(root).unwrap_or(abs);
            let dest = tree.join(rel);
            let (sum, size) = copy_hashing(abs, &dest)?;
            Ok((*i, sum, size))
        })
        .collect::<Result<_>>()?;
    for (i, sum, len) in sums {
        if let Kind::File { size, sha256 } = &mut entries[i].kind {
            // The size read is what was kept; a file that changed meanwhile is caught on restore.
            *size = len;
            *sha256 = sum;
        }
    }
    Ok(entries)
}

/// Copies `src` to the new file `dest` (cloned where the filesystem can), returning the sha256
/// and size of what was copied.
fn copy_hashing(src: &Path, dest: &Path) -> Result<(String, u64)> {
    let mut from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .map_err(io_err(src))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
        .map_err(io_err(dest))?;
    let cloned = clone_file(&from, &to);
    hash_copy(&mut from, (!cloned).then_some(&mut to), src, dest)
}

/// Shares `from`'s extents with the empty `to` (`FICLONE`); false where the filesystem cannot.
fn clone_file(from: &File, to: &File) -> bool {
    // SAFETY: both descriptors are open; FICLONE takes the source descriptor as its argument.
    unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) == 0 }
}

thread_local! {
    /// One read buffer per thread: a package stage has thousands of mostly small files.
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 << 10]);
}

/// Reads `from` (`src`) to its end, writing it to `to` (`dest`) when given; returns the sha256
/// and size of what was read.
fn hash_copy(
    from: &mut File,
    mut to: Option<&mut File>,
    src: &Path,
    dest: &Path,
) -> Result<(String, u64)> {
    BUFFER.with_borrow_mut(|buf| {
        let mut h = Sha256::new();
        let mut n = 0u64;
        loop {
            let got = match from.read(buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(src)(e)),
            };
            h.update(&buf[..got]);
            if let Some(to) = to.as_deref_mut() {
                to.write_all(&buf[..got]).map_err(io_err(dest))?;
            }
            n += got as u64;
        }
        Ok((hex::encode(h.finalize()), n))
    })
}

/// Recreates `entries` in the empty `root`, contents from `tree`; checks every content digest.
fn write_tree(entries: &[Entry], tree: &Path, root: &Path, key: &str) -> Result<Restored> {
    let confined = confine::Root::open(root)?;
    let corrupt = |path: &str, reason: String| SnapshotError::Corrupt {
        key: key.to_string(),
        reason: format!("{path}: {reason}"),
    };
    // Directories first (owner-only until their metadata is set at the end), then the other
    // nodes; regular files in parallel.
    for e in &entries[1..] {
        if e.kind == Kind::Dir {
            confined.create_dir_all(&e.path, 0o700)?;
        }
    }
    let files: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::File { .. }))
        .collect();
    let results: Vec<(u64, bool)> = files
        .par_iter()
        .map(|e| {
            let Kind::File { size, sha256 } = &e.kind else {
                unreachable!("filtered to files")
            };
            let src = tree.join(&e.path);
            let mut from = match fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&src)
            {
                Ok(f) => f,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    return Err(corrupt(&e.path, "content missing".into()));
                }
                Err(err) => return Err(io_err(&src)(err)),
            };
            let mut to = confined.create_file(&e.path, 0o600)?;
            let dest = root.join(&e.path);
            // A clone shares the source's extents: its bytes are what was restored.
            let cloned = clone_file(&from, &to);
            let (sum, n) = hash_copy(&mut from, (!cloned).then_some(&mut to), &src, &dest)?;
            if n != *size || sum != *sha256 {
                return Err(corrupt(&e.path, "content differs from the manifest".into()));
            }
            set_fd_meta(&to, e, &dest)?;
            Ok((n, cloned))
        })
        .collect::<Result<_>>()?;
    for e in &entries[1..] {
        match &e.kind {
            Kind::Dir | Kind::File { .. } => {}
            Kind::Link { to } => confined.hardlink(to, &e.path)?,
            Kind::Symlink { target } => {
                confined.symlink(target, &e.path)?;
                set_path_meta(&confined, e)?;
            }
            Kind::Char { rdev } | Kind::Block { rdev } => {
                let kind = if matches!(e.kind, Kind::Char { .. }) {
                    NodeKind::Char
                } else {
                    NodeKind::Block
                };
                confined.mknod(&e.path, kind, 0, libc::major(*rdev), libc::minor(*rdev))?;
                set_path_meta(&confined, e)?;
            }
            Kind::Fifo => {
                confined.mkfifo(&e.path, 0)?;
                set_path_meta(&confined, e)?;
            }
        }
    }
    // Directories last, deepest first: creating entries in a directory changes its mtime.
    for e in entries.iter().rev().filter(|e| e.kind == Kind::Dir) {
        set_path_meta(&confined, e)?;
    }
    Ok(Restored {
        entries: entries.len(),
        bytes: results.iter().map(|(n, _)| n).sum(),
        cloned: results.iter().any(|(_, c)| *c),
    })
}

fn decode_xattr(e: &Entry, value: &str) -> Result<Vec<u8>> {
    hex::decode(value).map_err(|_| SnapshotError::Unsupported {
        path: PathBuf::from(&e.path),
        reason: "an extended attribute value that is not hex".into(),
    })
}

/// Owner, then mode (a chown clears setuid bits), then extended attributes (a chown clears
/// `security.capability`), then times, through the open file.
fn set_fd_meta(f: &File, e: &Entry, path: &Path) -> Result<()> {
    use nix::sys::stat::{Mode, fchmod, futimens};
    use nix::sys::time::TimeSpec;
    let err = |errno: nix::errno::Errno| io_err(path)(io::Error::from(errno));
    nix::unistd::fchown(f, Some(e.uid.into()), Some(e.gid.into())).map_err(err)?;
    fchmod(f, Mode::from_bits_truncate(e.mode)).map_err(err)?;
    for (name, value) in &e.xattrs {
        xattr::FileExt::set_xattr(f, name, &decode_xattr(e, value)?).map_err(io_err(path))?;
    }
    let ts = TimeSpec::new(e.mtime, i64::from(e.mtime_nsec));
    futimens(f, &ts, &ts).map_err(err)
}

/// The same for a directory, symlink or node, by path inside the root.
fn set_path_meta(root: &confine::Root, e: &Entry) -> Result<()> {
    root.chown(&e.path, e.uid, e.gid)?;
    if !matches!(e.kind, Kind::Symlink { .. }) {
        root.chmod(&e.path, e.mode)?;
    }
    for (name, value) in &e.xattrs {
        root.set_xattr(&e.path, name, &decode_xattr(e, value)?)?;
    }
    let mtime = e.mtime;
    root.set_mtime(&e.path, mtime, e.mtime_nsec)?;
    Ok(())
}

/// Removes everything in `root` (a failed restore's part of a tree), keeping the directory.
pub fn clear_root(root: &Path) -> Result<()> {
    for entry in fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        workdir::remove_tree(&entry.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A tree with every kind of entry a package stage leaves: nested directories with odd
    /// modes, a setuid file, a hard link, symlinks (dangling, absolute), a fifo, nanosecond
    /// times, an extended attribute, and other owners where the test runs as root.
    fn sample_tree(root: &Path) {
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
        fs::create_dir_all(root.join("image")).unwrap();
        fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
        fs::set_permissions(
            root.join("usr/bin/tool"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        fs::write(root.join("usr/bin/big"), vec![7u8; 3 << 20]).unwrap();
        fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-link")).unwrap();
        fs::write(root.join("var/lib/dpkg/status"), b"Package: x\n").unwrap();
        fs::write(root.join("image/epoch.json"), b"{}").unwrap();
        fs::write(root.join("empty"), b"").unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("/nowhere/at/all", root.join("dangling")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        fs::set_permissions(
            root.join("var/lib/dpkg/info"),
            fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        xattr::set(
            root.join("usr/bin/big"),
            "user.imgbuild-test",
            b"\x00\x01value",
        )
        .unwrap();
        if is_root() {
            nix::unistd::chown(
                &root.join("var/lib/dpkg/status"),
                Some(1234.into()),
                Some(4321.into()),
            )
            .unwrap();
            std::os::unix::fs::lchown(root.join("bin"), Some(7), Some(8)).unwrap();
            // security.capability as setcap writes it (cap_net_raw+ep, revision 2).
            let cap = [
                0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
            xattr::set(root.join("usr/bin/big"), "security.capability", &cap).unwrap();
        }
        let ts = nix::sys::time::TimeSpec::new(1_700_000_000, 123_456_789);
        for p in ["usr/bin/big", "fifo", "usr/bin", "var/lib/dpkg/info", ""] {
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &root.join(p),
                &ts,
                &ts,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
    }

    /// Everything the image layers can see of a tree, entry by entry.
    fn describe(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(root).sort_by_file_name() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let content = if m.is_file() {
                hex::encode(Sha256::digest(fs::read(e.path()).unwrap()))
            } else if m.file_type().is_symlink() {
                fs::read_link(e.path()).unwrap().display().to_string()
            } else {
                String::new()
            };
            let mtime = if m.is_dir() || m.is_file() || m.file_type().is_fifo() {
                format!("{}.{}", m.mtime(), m.mtime_nsec())
            } else {
                String::new()
            };
            out.push(format!(
                "{rel} {:o} {}:{} nlink={} {mtime} {content} {:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                if m.is_dir() { 0 } else { m.nlink() },
                confine::read_xattrs(e.path()).unwrap(),
            ));
        }
        out
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const KEY2: &str = "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_saved_tree_is_restored_exactly() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        sample_tree(&src);
        let cache = SnapshotCache::new(&t.path().join("cache"));
        let Saved::Written(info) = cache.save(KEY, &src, "test 1.0 amd64", 3).unwrap() else {
            panic!("not written");
        };
        assert_eq!(info.packages, 3);
        assert!(info.bytes > 3 << 20, "{info:?}");
        assert_eq!(cache.save(KEY, &src, "x", 3).unwrap(), Saved::Existing);
        // Nothing privileged sits in the cache: contents are plain files.
        let kept = fs::metadata(cache.dir().join(KEY).join("tree/usr/bin/tool")).unwrap();
        assert_eq!(kept.mode() & 0o7777, 0o644);

        let dest = t.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let r = cache.restore(KEY, &dest).unwrap().expect("restored");
        assert_eq!(r.entries, describe(&src).len());
        assert_eq!(describe(&dest), describe(&src));
        let list = cache.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].label, "test 1.0 amd64");
        assert!(
            cache.restore(KEY2, &dest).unwrap().is_none(),
            "no such snapshot"
        );
    }

    #[test]
    fn altered_contents_or_manifests_are_corrupt_and_nothing_escapes_the_root() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        sample_tree(&src);
        let cache = SnapshotCache::new(&t.path().join("cache"));
        cache.save(KEY, &src, "t", 1).unwrap();
        let snap = cache.dir().join(KEY);
        let restore = || {
            let dest = tempfile::tempdir_in(t.path()).unwrap();
            cache.restore(KEY, dest.path()).map(|r| r.is_some())
        };

        // A flipped byte in a content file.
        let big = snap.join("tree/usr/bin/big");
        let good = fs::read(&big).unwrap();
        let mut bad = good.clone();
        bad[1000] ^= 1;
        fs::write(&big, &bad).unwrap();
        let e = restore().unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("usr/bin/big"), "{e}");
        // A missing one.
        fs::remove_file(&big).unwrap();
        let e = restore().unwrap_err().to_string();
        assert!(e.contains("content missing"), "{e}");
        fs::write(&big, &good).unwrap();
        assert!(restore().unwrap());

        // A truncated manifest, and one whose body was edited.
        let manifest = snap.join(MANIFEST);
        let text = fs::read(&manifest).unwrap();
        fs::write(&manifest, &text[..text.len() / 2]).unwrap();
        let e = restore().unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        let edited = String::from_utf8(text.clone())
            .unwrap()
            .replace("\"mode\":2541", "\"mode\":2559");
        fs::write(&manifest, edited).unwrap();
        assert!(restore().unwrap_err().to_string().contains("checksum"));

        // A manifest re-sealed with a path leaving the root, or under a symlink, is refused
        // before anything is written.
        for (from, to) in [
            ("\"path\":\"empty\"", "\"path\":\"../escaped\""),
            ("\"path\":\"empty\"", "\"path\":\"bin/escaped\""),
        ] {
            let body = String::from_utf8(text.clone()).unwrap();
            let body = body.split_once('\n').unwrap().1.replace(from, to);
            let sealed = format!(
                "{MAGIC} sha256:{}\n{body}",
                hex::encode(Sha256::digest(body.as_bytes()))
            );
            fs::write(&manifest, sealed).unwrap();
            let dest = tempfile::tempdir_in(t.path()).unwrap();
            let e = cache.restore(KEY, dest.path()).unwrap_err().to_string();
            assert!(e.contains("corrupt"), "{e}");
            assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0, "{e}");
            assert!(!t.path().join("escaped").exists());
            assert!(!src.join("usr/bin/escaped").exists());
        }
        assert!(cache.remove(KEY).unwrap());
        assert!(!snap.exists());
        assert!(cache.list().unwrap().is_empty());
    }

    #[test]
    fn prune_removes_least_recently_used_and_never_one_in_use() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("f"), vec![1u8; 100_000]).unwrap();
        let cache = SnapshotCache::new(&t.path().join("cache"));
        let keys: Vec<String> = (0..3).map(|i| format!("{i}{}", &KEY[1..])).collect();
        for (age, key) in keys.iter().enumerate() {
            cache.save(key, &src, "t", 1).unwrap();
            // keys[0] is the most recently used, keys[2] the least.
            let used = File::options()
                .write(true)
                .open(cache.dir().join(key).join(USED))
                .unwrap();
            used.set_modified(SystemTime::now() - Duration::from_secs(3600 * age as u64))
                .unwrap();
        }
        let listed: Vec<String> = cache.list().unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(listed, keys);
        let one = cache.list().unwrap()[0].bytes;

        // Room for two: the least recently used goes.
        let p = cache
            .prune(
                &PrunePolicy {
                    max_bytes: Some(2 * one),
                    ..PrunePolicy::default()
                },
                None,
            )
            .unwrap();
        assert_eq!(
            p.removed.iter().map(|i| &i.key).collect::<Vec<_>>(),
            [&keys[2]]
        );

        // One in use by a restore (a shared lock) stays; `keep` stays.
        let lock = cache.lock_file(&keys[1]).unwrap();
        fs4::FileExt::lock_shared(&lock).unwrap();
        let p = cache
            .prune(
                &PrunePolicy {
                    all: true,
                    ..PrunePolicy::default()
                },
                Some(&keys[0]),
            )
            .unwrap();
        assert!(p.removed.is_empty(), "{p:?}");
        assert_eq!(p.busy, [keys[1].clone()]);
        drop(lock);
        let p = cache
            .prune(
                &PrunePolicy {
                    unused_for: Some(Duration::from_mins(1)),
                    ..PrunePolicy::default()
                },
                None,
            )
            .unwrap();
        assert_eq!(
            p.removed.iter().map(|i| &i.key).collect::<Vec<_>>(),
            [&keys[1]]
        );
        assert_eq!(cache.list().unwrap().len(), 1);
    }

    #[test]
    fn a_snapshot_directory_others_can_write_or_a_symlink_is_not_used() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("f"), "x").unwrap();
        let cache = SnapshotCache::new(&t.path().join("cache"));
        cache.save(KEY, &src, "t", 1).unwrap();
        assert_eq!(
            fs::metadata(cache.dir()).unwrap().mode() & 0o777,
            0o700,
            "made owner-only"
        );
        fs::set_permissions(cache.dir(), fs::Permissions::from_mode(0o777)).unwrap();
        let dest = t.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let e = cache.restore(KEY, &dest).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
        let e = cache.save(KEY2, &src, "t", 1).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
        assert_eq!(fs::read_dir(&dest).unwrap().count(), 0);

        let elsewhere = t.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, t.path().join("linked")).unwrap();
        let linked = SnapshotCache {
            dir: t.path().join("linked"),
        };
        let e = linked.save(KEY, &src, "t", 1).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_saves_and_restores_of_one_key_agree() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        sample_tree(&src);
        let cache = SnapshotCache::new(&t.path().join("cache"));
        let outcomes: Vec<Saved> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| cache.save(KEY, &src, "t", 1).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let written = outcomes
            .iter()
            .filter(|o| matches!(o, Saved::Written(_)))
            .count();
        assert!(written >= 1, "{outcomes:?}");
        std::thread::scope(|s| {
            for i in 0..3 {
                let dest = t.path().join(format!("dest{i}"));
                let (cache, src) = (&cache, &src);
                s.spawn(move || {
                    fs::create_dir(&dest).unwrap();
                    cache.restore(KEY, &dest).unwrap().unwrap();
                    assert_eq!(describe(&dest), describe(src));
                });
            }
        });
        // No work directory is left in the cache.
        let names: Vec<String> = fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n == KEY || n == LOCKS), "{names:?}");
    }

    #[test]
    fn keys_change_with_every_input() {
        use crate::plan::{PackageFormat, Phase, PlannedPackage};
        let pkg = |sha: &str| PlannedPackage {
            name: "base-files".into(),
            version: "13.8".into(),
            architecture: "amd64".into(),
            repository: "main".into(),
            url: "http://x/base-files.deb".into(),
            filename: "pool/base-files.deb".into(),
            sha256: sha.into(),
            size: 10,
            phase: Phase::Bootstrap,
        };
        let plan = |sha: &str| Plan {
            format: PackageFormat::Deb,
            arch: "amd64".into(),
            repositories: Vec::new(),
            rpm_repositories: Vec::new(),
            packages: vec![pkg(sha)],
            from_lock: true,
            inputs: String::new(),
            warnings: Vec::new(),
        };
        let t = tempfile::tempdir().unwrap();
        let hook = t.path().join("post_bootstrap.sh");
        fs::write(&hook, "echo a\n").unwrap();
        let (a, b) = (plan(&"a".repeat(64)), plan(&"b".repeat(64)));
        let key = |plan: &Plan, tool: &str, hook: Option<&Path>, docs: bool| {
            stage_key(&StageInputs {
                tool,
                plan,
                post_bootstrap: hook,
                exclude_docs: docs,
            })
            .unwrap()
        };
        let base = key(&a, "imgbuild 1", None, false);
        assert!(valid_key(&base), "{base}");
        assert_eq!(key(&a, "imgbuild 1", None, false), base);
        let with_hook = key(&a, "imgbuild 1", Some(&hook), false);
        let others = [
            key(&b, "imgbuild 1", None, false),
            key(&a, "imgbuild 2", None, false),
            with_hook.clone(),
            key(&a, "imgbuild 1", None, true),
        ];
        for k in &others {
            assert_ne!(k, &base);
        }
        fs::write(&hook, "echo b\n").unwrap();
        assert_ne!(key(&a, "imgbuild 1", Some(&hook), false), with_hook);
    }
}
