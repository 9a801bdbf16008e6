//! Sorted, depth-first walk of a root tree with KIWI's pack exclusions.
//!
//! Order is `tar --sort=name`: a directory, then its entries sorted byte-wise by name, each
//! directory's subtree before its next sibling. The walk never follows symlinks.

use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Result, io_err};

/// Directories whose contents KIWI never packs; the directories themselves stay, empty.
const EMPTIED: &[&[u8]] = &[b"dev", b"proc", b"sys", b"run"];
/// Paths KIWI never packs at all (build-time helpers and caches).
const DROPPED: &[&[u8]] = &[
    b"image",
    b".kconfig",
    b".profile",
    b"var/cache/kiwi",
    b".buildenv",
];

/// What the walk leaves out.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    /// Keep the contents of `/tmp` (KIWI's `ensure_empty_tmpdirs="false"`).
    pub keep_tmpdirs: bool,
    /// Extra root-relative glob patterns (`*` and `?` within a name, `**` across names); a
    /// matching directory is left out with everything below it.
    pub patterns: Vec<String>,
}

impl Excludes {
    /// True if the root-relative path `rel` is not packed.
    pub fn excludes(&self, rel: &[u8]) -> bool {
        for d in EMPTIED {
            if rel.len() > d.len() && rel.starts_with(d) && rel[d.len()] == b'/' {
                return true;
            }
        }
        if !self.keep_tmpdirs && rel.len() > 4 && rel.starts_with(b"tmp/") {
            return true;
        }
        if DROPPED.contains(&rel) {
            return true;
        }
        self.patterns.iter().any(|p| {
            let p = p.trim_start_matches('/').trim_end_matches('/');
            glob_match(p.as_bytes(), rel)
        })
    }
}

/// Matches a glob where `*` and `?` stay within one path component and `**` crosses them.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    match pat.first() {
        None => s.is_empty(),
        Some(b'*') if pat.get(1) == Some(&b'*') => {
            let rest = &pat[2..];
            (0..=s.len()).any(|i| glob_match(rest, &s[i..]))
        }
        Some(b'*') => {
            let rest = &pat[1..];
            for i in 0..=s.len() {
                if glob_match(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == b'/' {
                    return false;
                }
            }
            false
        }
        Some(b'?') => !s.is_empty() && s[0] != b'/' && glob_match(&pat[1..], &s[1..]),
        Some(&c) => !s.is_empty() && s[0] == c && glob_match(&pat[1..], &s[1..]),
    }
}

/// One entry met by the walk.
#[derive(Debug)]
pub struct WalkEntry {
    /// Path relative to the root, as bytes, no leading `/` or `./`.
    pub rel: Vec<u8>,
    /// Absolute path on disk.
    pub abs: PathBuf,
    /// `lstat` of the entry.
    pub meta: Metadata,
}

/// Walks `root` (which is not itself reported) calling `f` for every entry in tar order.
pub fn walk<F>(root: &Path, excludes: &Excludes, mut f: F) -> Result<()>
where
    F: FnMut(&WalkEntry) -> Result<()>,
{
    walk_dir(root, &[], excludes, &mut f)
}

/// Joins a root-relative path and a name.
pub fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = rel.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The names in `dir`, sorted byte-wise, leaving out what `excludes` excludes (`rel` is the
/// directory's root-relative path).
pub fn list_dir(dir: &Path, rel: &[u8], excludes: &Excludes) -> Result<Vec<Vec<u8>>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().as_bytes().to_vec();
        if !excludes.excludes(&join_rel(rel, &name)) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// `lstat`s `rel` under `root` into a walk entry.
pub fn stat_entry(root: &Path, rel: &[u8]) -> Result<WalkEntry> {
    let abs = root.join(std::ffi::OsStr::from_bytes(rel));
    let meta = fs::symlink_metadata(&abs).map_err(io_err(&abs))?;
    Ok(WalkEntry {
        rel: rel.to_vec(),
        abs,
        meta,
    })
}

fn walk_dir<F>(dir: &Path, rel: &[u8], excludes: &Excludes, f: &mut F) -> Result<()>
where
    F: FnMut(&WalkEntry) -> Result<()>,
{
    for name in list_dir(dir, rel, excludes)? {
        let child_rel = join_rel(rel, &name);
        let abs = dir.join(std::ffi::OsStr::from_bytes(&name));
        // Packing is the longest step after installing: stop it promptly on a stop signal.
        crate::interrupt::check_io().map_err(io_err(&abs))?;
        let meta = fs::symlink_metadata(&abs).map_err(io_err(&abs))?;
        let is_dir = meta.is_dir();
        let entry = WalkEntry {
            rel: child_rel,
            abs,
            meta,
        };
        f(&entry)?;
        if is_dir {
            walk_dir(&entry.abs, &entry.rel, excludes, f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stay_within_components_unless_double_star() {
        assert!(glob_match(b"usr/share/doc/*", b"usr/share/doc/bash"));
        assert!(!glob_match(
            b"usr/share/doc/*",
            b"usr/share/doc/bash/README"
        ));
        assert!(glob_match(b"usr/**/README", b"usr/share/doc/bash/README"));
        assert!(glob_match(b"var/log/*.log", b"var/log/dpkg.log"));
        assert!(!glob_match(b"var/log/?.log", b"var/log/ab.log"));
    }

    #[test]
    fn kiwi_exclusions_keep_the_directories_themselves() {
        let ex = Excludes::default();
        for keep in [
            "dev",
            "proc",
            "sys",
            "run",
            "tmp",
            "var/cache",
            "imagefoo",
            "etc",
        ] {
            assert!(!ex.excludes(keep.as_bytes()), "{keep}");
        }
        for drop in [
            "dev/null",
            "proc/1",
            "run/lock",
            "tmp/junk",
            "image",
            ".kconfig",
            ".profile",
            ".buildenv",
            "var/cache/kiwi",
        ] {
            assert!(ex.excludes(drop.as_bytes()), "{drop}");
        }
        let keep_tmp = Excludes {
            keep_tmpdirs: true,
            patterns: vec!["/usr/share/doc/*".into()],
        };
        assert!(!keep_tmp.excludes(b"tmp/junk"));
        assert!(keep_tmp.excludes(b"usr/share/doc/x"));
    }

    #[test]
    fn walk_is_sorted_depth_first_bytewise() {
        let t = tempfile::tempdir().unwrap();
        for d in ["a", "a/b", "a.b", "B", "tmp", "tmp/x"] {
            fs::create_dir(t.path().join(d)).unwrap();
        }
        fs::write(t.path().join("a/z"), "").unwrap();
        fs::write(t.path().join("a-"), "").unwrap();
        let mut seen = Vec::new();
        walk(t.path(), &Excludes::default(), |e| {
            seen.push(String::from_utf8(e.rel.clone()).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["B", "a", "a/b", "a/z", "a-", "a.b", "tmp"]);
    }
}
