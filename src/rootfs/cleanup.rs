//! Volatile files removed from a finished root tree, so that rebuilds are byte-identical and the
//! image carries no build leftovers (package lists, caches, logs, backup databases).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Errors while cleaning a root tree.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct CleanupError {
    /// The path that could not be removed or read.
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

/// What to remove. Each entry is root-relative; see [`VOLATILE`].
#[derive(Debug, Clone, Copy)]
pub enum Volatile {
    /// Remove this one file if present.
    File(&'static str),
    /// Remove the files (not directories) directly in this directory whose names end with the suffix
    /// (`""` for every file).
    FilesIn(&'static str, &'static str),
    /// Remove every file below this directory, keeping the directories themselves.
    FilesBelow(&'static str),
    /// Empty this directory completely (files and subdirectories), keeping it.
    Contents(&'static str),
}

/// The volatile paths of a Debian root, as mmdebstrap and KIWI clean them.
pub const VOLATILE: &[Volatile] = &[
    Volatile::FilesIn("var/lib/apt/lists", ""),
    Volatile::FilesIn("var/lib/apt/lists/partial", ""),
    Volatile::FilesIn("var/cache/apt", ".bin"),
    Volatile::FilesIn("var/cache/apt/archives", ".deb"),
    Volatile::FilesIn("var/cache/apt/archives/partial", ""),
    Volatile::FilesIn("var/lib/dpkg", "-old"),
    Volatile::FilesIn("var/cache/debconf", "-old"),
    Volatile::File("var/cache/ldconfig/aux-cache"),
    Volatile::File("etc/machine-id"),
    Volatile::File("var/lib/dbus/machine-id"),
    Volatile::File("usr/sbin/policy-rc.d"),
    Volatile::FilesBelow("var/log"),
];

/// Remove every [`VOLATILE`] path from `root`; with `empty_tmpdirs`, also empty `/tmp`, `/var/tmp`
/// and `/run` (KIWI's `ensure_empty_tmpdirs`, on by default). Never follows a symlink.
pub fn clean(root: &Path, empty_tmpdirs: bool) -> Result<(), CleanupError> {
    for v in VOLATILE {
        apply(root, *v)?;
    }
    if empty_tmpdirs {
        for d in ["tmp", "var/tmp", "run"] {
            apply(root, Volatile::Contents(d))?;
        }
    }
    Ok(())
}

fn apply(root: &Path, v: Volatile) -> Result<(), CleanupError> {
    match v {
        Volatile::File(rel) => remove_file(&root.join(rel)),
        Volatile::FilesIn(rel, suffix) => {
            for (path, ty) in entries(&root.join(rel))? {
                if !ty.is_dir() && name_ends_with(&path, suffix) {
                    remove_file(&path)?;
                }
            }
            Ok(())
        }
        Volatile::FilesBelow(rel) => files_below(&root.join(rel)),
        Volatile::Contents(rel) => {
            for (path, ty) in entries(&root.join(rel))? {
                if ty.is_dir() {
                    fs::remove_dir_all(&path).map_err(err(&path))?;
                } else {
                    remove_file(&path)?;
                }
            }
            Ok(())
        }
    }
}

fn files_below(dir: &Path) -> Result<(), CleanupError> {
    for (path, ty) in entries(dir)? {
        if ty.is_dir() {
            files_below(&path)?;
        } else {
            remove_file(&path)?;
        }
    }
    Ok(())
}

fn name_ends_with(path: &Path, suffix: &str) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
}

/// Entries of a real directory (not a symlink to one); none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, fs::FileType)>, CleanupError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(dir)(e)),
    }
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(err(dir))? {
        let e = e.map_err(err(dir))?;
        let ty = e.file_type().map_err(err(&e.path()))?;
        out.push((e.path(), ty));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn remove_file(path: &Path) -> Result<(), CleanupError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(path)(e)),
    }
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> CleanupError + '_ {
    move |source| CleanupError {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn removes_volatile_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "var/lib/apt/lists/deb_Packages",
            "var/lib/apt/lists/lock",
            "var/cache/apt/pkgcache.bin",
            "var/cache/apt/archives/x.deb",
            "var/lib/dpkg/status-old",
            "var/lib/dpkg/status",
            "var/log/dpkg.log",
            "var/log/apt/history.log",
            "tmp/junk/deep",
            "run/lock/x",
            "etc/machine-id",
            "etc/keep",
        ] {
            touch(r, f);
        }
        // A symlinked /var/log must not be followed.
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "precious");
        fs::create_dir_all(r.join("srv")).unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("srv/log")).unwrap();

        clean(r, true).unwrap();
        for gone in [
            "var/lib/apt/lists/deb_Packages",
            "var/lib/apt/lists/lock",
            "var/cache/apt/pkgcache.bin",
            "var/cache/apt/archives/x.deb",
            "var/lib/dpkg/status-old",
            "var/log/dpkg.log",
            "var/log/apt/history.log",
            "tmp/junk",
            "run/lock",
            "etc/machine-id",
        ] {
            assert!(!r.join(gone).exists(), "{gone} should be gone");
        }
        for kept in [
            "var/lib/dpkg/status",
            "etc/keep",
            "var/log/apt",
            "tmp",
            "run",
        ] {
            assert!(r.join(kept).exists(), "{kept} should stay");
        }
        assert!(outside.path().join("precious").exists());
    }

    #[test]
    fn keeps_tmpdirs_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "tmp/keep-me");
        clean(dir.path(), false).unwrap();
        assert!(dir.path().join("tmp/keep-me").exists());
    }
}
