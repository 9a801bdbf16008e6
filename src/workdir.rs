//! Work directories beside a build's target: `.imgbuild-root-*` (the root `build` prepares) and
//! `.imgbuild-result-*` (the result files before they replace the target). They sit beside the
//! target so that the result can replace it with one rename.
//!
//! Each holds an owner lock, `owner.lock`, `flock`ed for as long as its [`WorkDir`] lives. A
//! build killed with SIGKILL (or a crashed machine) cannot remove its directory, but the kernel
//! drops its lock: [`remove_stale`], run at the start of every build, removes the directories
//! whose lock is free. Directories without a lock file (written by imgbuild versions before the
//! lock existed) count as stale once they are a minute old.

use crate::interrupt;
use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Name prefix of the temporary root of `build`.
pub const ROOT_PREFIX: &str = ".imgbuild-root-";
/// Name prefix of the directory `create` writes the result files into before the swap.
pub const RESULT_PREFIX: &str = ".imgbuild-result-";
/// The owner lock inside a work directory.
pub const LOCK_FILE: &str = "owner.lock";
/// A work directory without a lock file is stale once its mtime is this old.
pub const UNLOCKED_STALE_AFTER: Duration = Duration::from_mins(1);

/// Errors of work directories.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    /// A file system call failed (an `fs_err` error: its message names the call and the path).
    #[error(transparent)]
    Fs(#[from] io::Error),
    /// The directory could not be created in its parent, or its owner lock not taken.
    #[error("{path}: {source}")]
    Io {
        /// The parent directory, or the lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A new, owner-locked work directory; removed (with everything in it) on drop, and by the
/// interrupt watcher if it has to end the process (see [`crate::interrupt`]).
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    lock: Option<File>,
    _registration: interrupt::Registration,
}

impl WorkDir {
    /// Create `<parent>/<prefix><random>` and take its owner lock.
    pub fn create(parent: &Path, prefix: &str) -> Result<WorkDir, WorkDirError> {
        let path = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|source| WorkDirError::Io {
                path: parent.to_path_buf(),
                source,
            })?
            .keep();
        let mut dir = WorkDir {
            _registration: interrupt::remove_on_exit(&path, |p| remove_tree(p).is_ok()),
            path,
            lock: None,
        };
        // Locked under a temporary name, then renamed: `owner.lock` never exists unlocked, so a
        // concurrent sweep cannot take a new directory for a dead one.
        let fresh = dir.path.join(".owner.lock.new");
        let file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&fresh)?
            .into_file();
        fs4::FileExt::try_lock(&file).map_err(|e| WorkDirError::Io {
            path: fresh.clone(),
            source: e.into(),
        })?;
        fs_err::rename(&fresh, dir.path.join(LOCK_FILE))?;
        dir.lock = Some(file);
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Removed while still locked, so no sweep races the removal.
        let _ = remove_tree(&self.path);
        self.lock.take();
    }
}

/// A stale work directory [`remove_stale`] found.
#[derive(Debug)]
pub struct Stale {
    /// The directory.
    pub path: PathBuf,
    /// True when it had an owner lock (free); false for an old one without a lock file.
    pub had_lock: bool,
    /// Why it could not be removed, if it could not.
    pub error: Option<WorkDirError>,
}

/// Remove the work directories in `parent` whose owner is gone: a free owner lock, or no lock
/// file and an mtime older than [`UNLOCKED_STALE_AFTER`]. Directories of running builds (lock
/// held) are left alone; so is anything that is not a real directory. A missing or unreadable
/// `parent` has nothing stale.
pub fn remove_stale(parent: &Path) -> Vec<Stale> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(ROOT_PREFIX) || name.starts_with(RESULT_PREFIX)) {
            continue;
        }
        // Never through a symlink: only a directory that is itself in `parent`.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let path = entry.path();
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path);
        let (had_lock, _held) = match lock {
            Ok(f) => {
                if fs4::FileExt::try_lock(&f).is_err() {
                    continue; // its build is running
                }
                (true, Some(f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|age| age >= UNLOCKED_STALE_AFTER);
                if !old {
                    continue; // just created, or too young to tell
                }
                (false, None)
            }
            Err(_) => continue,
        };
        let error = remove_tree(&path).err();
        found.push(Stale {
            path,
            had_lock,
            error,
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Remove `path` and everything under it without following any symlink, also when a directory
/// inside is read-only (its owner's permission bits are restored first). A missing `path` is
/// not an error. A work directory's [`LOCK_FILE`] goes last: a removal cut short by SIGKILL
/// leaves the lock file behind, so the next sweep sees a free lock and finishes the job at once.
pub fn remove_tree(path: &Path) -> Result<(), WorkDirError> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(fs_err::remove_file(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    clear_all_but_lock(path);
    remove_all(path)
}

/// Remove everything in the directory `path` except its [`LOCK_FILE`]; best effort: whatever is
/// left is removed (or reported) with the directory itself.
fn clear_all_but_lock(path: &Path) {
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_name() == LOCK_FILE {
                continue;
            }
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = remove_all(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
}

/// `remove_dir_all`, restoring owner permissions on a permission error and trying again.
fn remove_all(path: &Path) -> Result<(), WorkDirError> {
    // std's remove_dir_all works on directory fds and never follows a symlink out of the tree.
    match fs_err::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e.into()),
    }
    make_owner_writable(path);
    match fs_err::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Give every real directory under `dir` (and `dir`) owner rwx, so its entries can be removed.
/// Symlinks are never followed: `symlink_metadata` and the entries' own file types decide what
/// is a directory. The tree belongs to a build that is gone, so nothing changes it meanwhile.
fn make_owner_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            make_owner_writable(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn set_old(path: &Path) {
        let old = SystemTime::now() - Duration::from_hours(1);
        let f = File::open(path).unwrap();
        f.set_modified(old).unwrap();
    }

    #[test]
    fn a_work_dir_is_locked_while_it_lives_and_removed_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let w = WorkDir::create(t.path(), ROOT_PREFIX).unwrap();
        assert!(w.path().join(LOCK_FILE).is_file());
        assert!(
            w.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(ROOT_PREFIX)
        );
        fs::create_dir_all(w.path().join("root/etc")).unwrap();
        // A live owner: the sweep leaves it alone.
        assert!(remove_stale(t.path()).is_empty());
        assert!(w.path().join("root/etc").is_dir());
        let p = w.path().to_path_buf();
        drop(w);
        assert!(!p.exists());
    }

    #[test]
    fn stale_dirs_go_live_and_foreign_ones_stay() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path();
        // A killed build: a lock file nobody holds, a read-only directory inside, and a symlink
        // pointing out of the tree.
        let dead = parent.join(format!("{ROOT_PREFIX}dead"));
        fs::create_dir_all(dead.join("root/usr/ro/sub")).unwrap();
        fs::write(dead.join(LOCK_FILE), b"").unwrap();
        let outside = parent.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"user data").unwrap();
        symlink(&outside, dead.join("root/link")).unwrap();
        fs::write(dead.join("root/usr/ro/sub/f"), b"x").unwrap();
        fs::set_permissions(dead.join("root/usr/ro"), fs::Permissions::from_mode(0o500)).unwrap();
        // An old version's directory: no lock, old; and a young one without a lock.
        let old = parent.join(format!("{RESULT_PREFIX}old"));
        fs::create_dir(&old).unwrap();
        set_old(&old);
        let young = parent.join(format!("{ROOT_PREFIX}young"));
        fs::create_dir(&young).unwrap();
        // A live build.
        let live = WorkDir::create(parent, ROOT_PREFIX).unwrap();
        // Not ours, or not a directory.
        let other = parent.join("imgbuild-root-not-hidden");
        fs::create_dir(&other).unwrap();
        let file = parent.join(format!("{ROOT_PREFIX}file"));
        fs::write(&file, b"").unwrap();
        let link = parent.join(format!("{ROOT_PREFIX}link"));
        symlink(&outside, &link).unwrap();

        let stale = remove_stale(parent);
        let paths: Vec<&Path> = stale.iter().map(|s| s.path.as_path()).collect();
        assert_eq!(paths, vec![old.as_path(), dead.as_path()]);
        assert!(stale.iter().all(|s| s.error.is_none()), "{stale:?}");
        assert!(stale[1].had_lock && !stale[0].had_lock);
        assert!(!dead.exists() && !old.exists());
        assert!(young.is_dir() && live.path().is_dir() && other.is_dir() && file.is_file());
        assert!(link.symlink_metadata().is_ok());
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"user data");
    }

    #[test]
    fn the_lock_file_is_removed_last() {
        // What a removal cut short after its first pass leaves: the lock file alone, which the
        // next sweep takes for a dead build's.
        let t = tempfile::tempdir().unwrap();
        let w = WorkDir::create(t.path(), RESULT_PREFIX).unwrap();
        fs::create_dir_all(w.path().join("out/sub")).unwrap();
        fs::write(w.path().join("out/sub/f"), "x").unwrap();
        fs::write(w.path().join("z-file"), "x").unwrap();
        clear_all_but_lock(w.path());
        let left: Vec<_> = fs::read_dir(w.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [LOCK_FILE]);
        let p = w.path().to_path_buf();
        drop(w);
        assert!(!p.exists());
    }

    #[test]
    fn remove_tree_copes_with_missing_and_read_only() {
        let t = tempfile::tempdir().unwrap();
        remove_tree(&t.path().join("missing")).unwrap();
        let d = t.path().join("d");
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/f"), b"x").unwrap();
        fs::set_permissions(d.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(d.join("a"), fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&d).unwrap();
        assert!(!d.exists());
    }
}
