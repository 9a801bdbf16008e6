//! Safe tar unpacking into a [`Root`]: the tar crate parses, every write goes through the root.
//!
//! Beyond the root's own confinement (nothing can land outside it), hostile entries are refused
//! with an error naming them: `..` components, writes through a symlink the same archive created
//! (`x -> /etc` then `x/passwd`: never legitimate in one archive, the classic tar attack), writes
//! through an existing symlink whose relative target climbs above the root, hardlinks to targets
//! that do not exist in the root. Absolute symlink targets already in the root are resolved
//! against the root, as inside the image (Debian's `/var/run -> /run`, merged-usr's
//! `/lib -> usr/lib`).

use super::{
    At, ConfineError, DirReplace, NodeKind, Result, Root, chmod_at, chown_at, fsetxattr, io_err,
    lsetxattr_at, lstat_at, mkdir_at, normalize, open_dir_at, readlink_at, refused, stat_is_dir,
    stat_is_symlink, utimes_at,
};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use tar::EntryType;

/// A hook mapping an entry's root-relative path to where it should go: `None` skips the entry,
/// `Some(path)` writes it there (strip a prefix, relocate). Hardlink targets are mapped too.
pub type PathMap<'a> = &'a (dyn Fn(&Path) -> Option<PathBuf> + Sync + 'a);

/// How OCI whiteout files (`.wh.NAME`, `.wh..wh..opq`) are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Whiteouts {
    /// Ordinary files (package archives, overlay tarballs).
    #[default]
    Keep,
    /// Applied to the tree: `.wh.NAME` removes NAME, `.wh..wh..opq` removes what earlier layers
    /// put in the directory (the layer's own entries stay).
    Apply,
    /// Translated to overlayfs form: a 0/0 character device for `.wh.NAME`, the xattr
    /// `trusted.overlay.opaque=y` for an opaque directory.
    OverlayFs,
}

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePolicy {
    /// Create them (needs `CAP_MKNOD`).
    Create,
    /// Skip them with a note in the report.
    Skip,
    /// Refuse the archive.
    Error,
}

/// Options for [`unpack`].
#[derive(Clone, Copy)]
pub struct UnpackOptions<'a> {
    /// Whiteout handling (OCI layers).
    pub whiteouts: Whiteouts,
    /// Apply the archive's numeric uid/gid (default: when running as root).
    pub preserve_owners: bool,
    /// Device nodes (default: create when root, skip otherwise).
    pub devices: DevicePolicy,
    /// Apply `SCHILY.xattr.*` extended attributes (default: yes). Without root, attributes the
    /// kernel refuses (`security.capability`, `trusted.*`) are skipped with a note.
    pub xattrs: bool,
    /// Record the sha256 of every regular file in the report.
    pub sha256: bool,
    /// A directory entry over an existing symlink to a directory keeps the symlink, as dpkg and
    /// `tar --keep-directory-symlink` do (merged-usr roots need it). Default: yes. Layers set
    /// it to `false` so their directory replaces the symlink.
    pub keep_directory_symlinks: bool,
    /// Apply mode, owner, mtime and xattrs of directory entries to directories that existed
    /// before (tar, OCI layers). Default: yes; dpkg leaves existing directories alone.
    pub update_existing_dirs: bool,
    /// Path mapping / filter hook.
    pub map: Option<PathMap<'a>>,
}

impl Default for UnpackOptions<'_> {
    fn default() -> Self {
        let root = nix::unistd::geteuid().is_root();
        UnpackOptions {
            whiteouts: Whiteouts::Keep,
            preserve_owners: root,
            devices: if root {
                DevicePolicy::Create
            } else {
                DevicePolicy::Skip
            },
            xattrs: true,
            sha256: false,
            keep_directory_symlinks: true,
            update_existing_dirs: true,
            map: None,
        }
    }
}

impl UnpackOptions<'_> {
    /// Options for a package's data tarball, as dpkg unpacks it: existing directories (shared
    /// with other packages) keep their attributes, directory symlinks (merged-usr) are kept.
    pub fn for_package() -> Self {
        UnpackOptions {
            update_existing_dirs: false,
            ..Default::default()
        }
    }

    /// Options for an image layer applied over earlier ones: whiteouts in the given form,
    /// directories replace symlinks and take the layer's attributes.
    pub fn for_layer(whiteouts: Whiteouts) -> Self {
        UnpackOptions {
            whiteouts,
            keep_directory_symlinks: false,
            ..Default::default()
        }
    }
}

impl std::fmt::Debug for UnpackOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnpackOptions")
            .field("whiteouts", &self.whiteouts)
            .field("preserve_owners", &self.preserve_owners)
            .field("devices", &self.devices)
            .field("xattrs", &self.xattrs)
            .field("sha256", &self.sha256)
            .field("keep_directory_symlinks", &self.keep_directory_symlinks)
            .field("update_existing_dirs", &self.update_existing_dirs)
            .field("map", &self.map.is_some())
            .finish()
    }
}

/// The type of an unpacked entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hardlink to an earlier path.
    Hardlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// A whiteout: the path was removed (`Apply`) or marked deleted (`OverlayFs`).
    Whiteout,
    /// An opaque-directory marker: the path is the directory.
    Opaque,
}

/// One path written by [`unpack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Root-relative path; the root itself is `.`.
    pub path: PathBuf,
    /// For directories: the mode, owner and mtime the archive gives them (applied only to
    /// directories this unpack created). Lets callers that unpack several archives in parallel
    /// settle shared directories deterministically.
    pub dir_attrs: Option<DirAttrs>,
    /// What was written.
    pub kind: EntryKind,
    /// Symlink target, or the root-relative hardlink target.
    pub link: Option<PathBuf>,
    /// Size of a regular file's contents.
    pub size: u64,
    /// sha256 of a regular file's contents, when asked for.
    pub sha256: Option<[u8; 32]>,
}

/// A directory entry's attributes as the archive states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirAttrs {
    /// Permission bits (with setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
}

/// What [`unpack`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Every path written, in archive order (like dpkg's `.list`).
    pub entries: Vec<Unpacked>,
    /// Entries skipped or attributes not applied, one line each.
    pub notes: Vec<String>,
}

/// Unpack the tar stream `reader` into `root`. Stops at the first bad entry with an error naming
/// it; what was written before stays (callers unpack into fresh or disposable trees).
pub fn unpack(root: &Root, reader: impl Read, opts: &UnpackOptions) -> Result<UnpackReport> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|source| ConfineError::Archive {
        after: None,
        source,
    })?;
    let mut u = Unpacker {
        root,
        opts,
        is_root: nix::unistd::geteuid().is_root(),
        verified: HashSet::new(),
        archive_symlinks: HashSet::new(),
        written: HashSet::new(),
        dirs: Vec::new(),
        buf: vec![0; 256 * 1024],
        prefix: PathBuf::new(),
        report: UnpackReport::default(),
    };
    // The last good entry's name, kept in one reused buffer: only errors need it.
    let mut last: Vec<u8> = Vec::new();
    for (index, entry) in entries.enumerate() {
        let mut entry = entry
            .and_then(|e| crate::interrupt::check_io().map(|()| e))
            .map_err(|source| ConfineError::Archive {
                after: (index > 0).then(|| PathBuf::from(OsStr::from_bytes(&last))),
                source,
            })?;
        if let Err(e) = u.entry(&mut entry) {
            return Err(ConfineError::Entry {
                index: index as u64,
                path: PathBuf::from(OsStr::from_bytes(&entry.path_bytes())),
                source: Box::new(e),
            });
        }
        last.clear();
        last.extend_from_slice(&entry.path_bytes());
    }
    u.finish_dirs()?;
    Ok(u.report)
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    secs: i64,
    nsecs: u32,
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Unpacker<'r, 'o> {
    root: &'r Root,
    opts: &'o UnpackOptions<'o>,
    is_root: bool,
    /// Directory prefixes already checked (real directories, or symlinks judged safe).
    verified: HashSet<PathBuf>,
    /// Symlinks this archive created: nothing may be written through them.
    archive_symlinks: HashSet<PathBuf>,
    /// Paths this archive wrote (kept only for opaque whiteouts).
    written: HashSet<PathBuf>,
    /// Directories whose mode and mtime are applied after their contents.
    dirs: Vec<(PathBuf, u32, i64, u32)>,
    buf: Vec<u8>,
    /// Scratch path for parent checks (reused: no allocation per entry).
    prefix: PathBuf,
    report: UnpackReport,
}

const OP: &str = "unpack";

/// An entry name made root-relative: leading `/` and `.` dropped (tar semantics), `..` refused.
fn entry_path(p: &Path) -> Result<PathBuf> {
    normalize(OP, p)
}

/// True when relative symlink `target` at `link` climbs above the root.
fn climbs_out(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for c in target.components() {
        match c {
            Component::ParentDir => {
                let Some(up) = depth.checked_sub(1) else {
                    return true;
                };
                depth = up;
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

fn parse_pax_time(v: &str) -> Option<(i64, u32)> {
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = s.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((secs, digits.parse().ok()?))
}

impl Unpacker<'_, '_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let etype = entry.header().entry_type();
        if matches!(
            etype,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let mut rel = entry_path(Path::new(OsStr::from_bytes(&entry.path_bytes())))?;
        if let Some(map) = self.opts.map {
            match map(&rel) {
                Some(p) => rel = entry_path(&p)?,
                None => return Ok(()),
            }
        }
        let meta = self.meta(entry, &rel)?;
        if self.opts.whiteouts != Whiteouts::Keep
            && let Some(name) = rel
                .file_name()
                .and_then(|n| n.as_bytes().strip_prefix(b".wh."))
        {
            let name = name.to_vec();
            return self.whiteout(&rel, &name);
        }
        match etype {
            EntryType::Directory => self.dir(rel, &meta),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(rel, entry, &meta)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_err("read link name", &rel))?
                    .ok_or_else(|| refused(OP, &rel, "symlink without a target"))?
                    .into_owned();
                self.symlink(rel, target, &meta)
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io_err("read link name", &rel))?
                    .ok_or_else(|| refused(OP, &rel, "hardlink without a target"))?
                    .into_owned();
                self.hardlink(rel, &target)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let kind = match etype {
                    EntryType::Char => NodeKind::Char,
                    EntryType::Block => NodeKind::Block,
                    _ => NodeKind::Fifo,
                };
                let h = entry.header();
                // Read only for devices the policy creates: fifos carry no numbers, and some
                // writers leave the fields empty.
                let dev = |rel: &Path| -> Result<(u32, u32)> {
                    let major = h
                        .device_major()
                        .map_err(io_err("read device number", rel))?;
                    let minor = h
                        .device_minor()
                        .map_err(io_err("read device number", rel))?;
                    Ok((major.unwrap_or(0), minor.unwrap_or(0)))
                };
                self.node(rel, kind, dev, &meta)
            }
            other => Err(refused(
                OP,
                &rel,
                format!("unsupported tar entry type {:?}", other.as_byte() as char),
            )),
        }
    }

    fn meta<R: Read>(&mut self, entry: &mut tar::Entry<R>, rel: &Path) -> Result<Meta> {
        let h = entry.header();
        let bad = |what: &'static str| io_err(what, rel);
        let mut m = Meta {
            mode: h.mode().map_err(bad("read mode"))? & 0o7777,
            uid: u32::try_from(h.uid().map_err(bad("read uid"))?)
                .map_err(|_| refused(OP, rel, "uid out of range"))?,
            gid: u32::try_from(h.gid().map_err(bad("read gid"))?)
                .map_err(|_| refused(OP, rel, "gid out of range"))?,
            secs: i64::try_from(h.mtime().map_err(bad("read mtime"))?)
                .map_err(|_| refused(OP, rel, "mtime out of range"))?,
            nsecs: 0,
            xattrs: Vec::new(),
        };
        if let Some(exts) = entry.pax_extensions().map_err(bad("read pax header"))? {
            for ext in exts {
                let ext = ext.map_err(bad("read pax header"))?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if self.opts.xattrs {
                        let n = CString::new(name)
                            .map_err(|_| refused(OP, rel, "xattr name with NUL"))?;
                        m.xattrs.push((n, ext.value_bytes().to_vec()));
                    }
                    continue;
                }
                let val = ext.value().unwrap_or("");
                match key {
                    "uid" => {
                        m.uid = val
                            .parse()
                            .map_err(|_| refused(OP, rel, format!("bad pax uid {val:?}")))?;
                    }
                    "gid" => {
                        m.gid = val
                            .parse()
                            .map_err(|_| refused(OP, rel, format!("bad pax gid {val:?}")))?;
                    }
                    "mtime" => {
                        (m.secs, m.nsecs) = parse_pax_time(val)
                            .ok_or_else(|| refused(OP, rel, format!("bad pax mtime {val:?}")))?;
                    }
                    _ => {}
                }
            }
        }
        Ok(m)
    }

    /// Refuse a path whose parents run through a symlink this archive made, or through one
    /// whose relative target climbs above the root.
    fn check_parents(&mut self, rel: &Path) -> Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut prefix = std::mem::take(&mut self.prefix);
        prefix.clear();
        let r = self.check_prefixes(rel, parent, &mut prefix);
        self.prefix = prefix;
        r
    }

    fn check_prefixes(&mut self, rel: &Path, parent: &Path, prefix: &mut PathBuf) -> Result<()> {
        for c in parent.components() {
            prefix.push(c);
            if self.verified.contains(prefix) {
                continue;
            }
            let at = match self.root.at(prefix) {
                Ok(at) => at,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("open parent", prefix)(e)),
            };
            let st = match lstat_at(&at) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("lstat", prefix)(e)),
            };
            if stat_is_symlink(&st) {
                if self.archive_symlinks.contains(prefix) {
                    return Err(refused(
                        OP,
                        rel,
                        format!(
                            "path runs through symlink `{}` created earlier in this archive",
                            prefix.display()
                        ),
                    ));
                }
                let target = readlink_at(&at).map_err(io_err("read link", prefix))?;
                if climbs_out(prefix, &target) {
                    return Err(refused(
                        OP,
                        rel,
                        format!(
                            "path runs through symlink `{}` -> `{}`, which points outside the root",
                            prefix.display(),
                            target.display()
                        ),
                    ));
                }
            } else if !stat_is_dir(&st) {
                return Err(refused(
                    OP,
                    rel,
                    format!("parent `{}` is not a directory", prefix.display()),
                ));
            }
            self.verified.insert(prefix.clone());
        }
        Ok(())
    }

    /// Check the parents of `rel`, create missing ones (mode 0755, as tar does) and open them.
    fn prepare(&mut self, rel: &Path) -> Result<At> {
        self.check_parents(rel)?;
        match self.root.at(rel) {
            Ok(at) => Ok(at),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = rel.parent().unwrap_or(Path::new(""));
                self.root
                    .mkdir_all(parent, 0o755)
                    .map_err(io_err("create parent directories", parent))?;
                self.root.at(rel).map_err(io_err("open parent", rel))
            }
            Err(e) => Err(io_err("open parent", rel)(e)),
        }
    }

    fn dir_replace(&self) -> DirReplace {
        if self.opts.whiteouts == Whiteouts::Keep {
            DirReplace::IfEmpty
        } else {
            DirReplace::All
        }
    }

    /// Make room for a new entry at `rel` and drop what we knew about the old one.
    fn replace(&mut self, at: &At, rel: &Path) -> Result<()> {
        Root::clear(at, self.dir_replace()).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTEMPTY) {
                refused(OP, rel, "would replace a non-empty directory")
            } else {
                io_err("remove existing entry", rel)(e)
            }
        })?;
        self.archive_symlinks.remove(rel);
        if self.verified.remove(rel) {
            self.verified.retain(|p| !p.starts_with(rel));
        }
        Ok(())
    }

    fn record(
        &mut self,
        rel: PathBuf,
        kind: EntryKind,
        link: Option<PathBuf>,
        size: u64,
        sha256: Option<[u8; 32]>,
    ) {
        if self.opts.whiteouts == Whiteouts::Apply {
            self.written.insert(rel.clone());
        }
        let path = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        self.report.entries.push(Unpacked {
            path,
            dir_attrs: None,
            kind,
            link,
            size,
            sha256,
        });
    }

    fn record_dir(&mut self, rel: PathBuf, meta: &Meta) {
        self.record(rel, EntryKind::Dir, None, 0, None);
        if let Some(last) = self.report.entries.last_mut() {
            last.dir_attrs = Some(DirAttrs {
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
                mtime: meta.secs,
            });
        }
    }

    fn set_xattrs_fd(&mut self, fd: &impl AsRawFd, rel: &Path, meta: &Meta) -> Result<()> {
        for (name, value) in &meta.xattrs {
            if let Err(e) = fsetxattr(fd.as_raw_fd(), name, value) {
                self.xattr_failed(rel, name, e)?;
            }
        }
        Ok(())
    }

    fn set_xattrs_at(&mut self, at: &At, rel: &Path, meta: &Meta) -> Result<()> {
        for (name, value) in &meta.xattrs {
            if let Err(e) = lsetxattr_at(at, name, value) {
                self.xattr_failed(rel, name, e)?;
            }
        }
        Ok(())
    }

    fn xattr_failed(&mut self, rel: &Path, name: &CString, e: io::Error) -> Result<()> {
        // Without root the kernel refuses privileged namespaces; that is expected, not hostile.
        if !self.is_root && matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            self.report.notes.push(format!(
                "{}: xattr {} not set: {e}",
                rel.display(),
                name.to_string_lossy()
            ));
            return Ok(());
        }
        Err(ConfineError::Io {
            op: "set xattr",
            path: rel.join(format!("[{}]", name.to_string_lossy())),
            source: e,
        })
    }

    fn dir(&mut self, rel: PathBuf, meta: &Meta) -> Result<()> {
        let at = self.prepare(&rel)?;
        let existing = match lstat_at(&at) {
            Ok(st) => Some(st),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("lstat", &rel)(e)),
        };
        let created = match existing {
            None => true,
            Some(st) if stat_is_dir(&st) => false,
            Some(st)
                if stat_is_symlink(&st)
                    && self.opts.keep_directory_symlinks
                    && !self.archive_symlinks.contains(&rel)
                    && self.root.resolve_dir(&rel).is_ok() =>
            {
                self.record_dir(rel, meta);
                return Ok(());
            }
            Some(_) => {
                self.replace(&at, &rel)?;
                true
            }
        };
        let mut created = created;
        if created {
            // Owner-writable while it is filled; the archive's mode is applied at the end.
            match mkdir_at(&at, 0o700) {
                Ok(()) => {}
                // Another unpack into the same root (packages unpacked in parallel) made it
                // first: it is an existing directory now.
                Err(e)
                    if e.raw_os_error() == Some(libc::EEXIST)
                        && lstat_at(&at).is_ok_and(|st| stat_is_dir(&st)) =>
                {
                    created = false;
                }
                Err(e) => return Err(io_err("create dir", &rel)(e)),
            }
        }
        self.archive_symlinks.remove(&rel);
        self.verified.insert(rel.clone());
        if created || self.opts.update_existing_dirs {
            let f = open_dir_at(&at).map_err(io_err("open dir", &rel))?;
            if self.opts.preserve_owners {
                // SAFETY: valid fd.
                if unsafe { libc::fchown(f.as_raw_fd(), meta.uid, meta.gid) } < 0 {
                    return Err(io_err("chown", &rel)(io::Error::last_os_error()));
                }
            }
            self.set_xattrs_fd(&f, &rel, meta)?;
            self.dirs
                .push((rel.clone(), meta.mode, meta.secs, meta.nsecs));
        }
        self.record_dir(rel, meta);
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        rel: PathBuf,
        entry: &mut tar::Entry<R>,
        meta: &Meta,
    ) -> Result<()> {
        let at = self.prepare(&rel)?;
        self.replace(&at, &rel)?;
        let mut f = Root::create_file_at(&at, 0o600).map_err(io_err("create file", &rel))?;
        let mut hasher = self.opts.sha256.then(Sha256::new);
        let mut size = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read archive data", &rel)(e)),
            };
            let chunk = &self.buf[..n];
            if let Some(h) = hasher.as_mut() {
                h.update(chunk);
            }
            f.write_all(chunk).map_err(io_err("write", &rel))?;
            size += n as u64;
        }
        let fd = f.as_raw_fd();
        // chown before chmod: chown clears setuid/setgid; capabilities are set after both
        // because chown drops security.capability too.
        // SAFETY: valid fd for all three calls.
        if self.opts.preserve_owners && unsafe { libc::fchown(fd, meta.uid, meta.gid) } < 0 {
            return Err(io_err("chown", &rel)(io::Error::last_os_error()));
        }
        // SAFETY: valid fd.
        if unsafe { libc::fchmod(fd, meta.mode as libc::mode_t) } < 0 {
            return Err(io_err("chmod", &rel)(io::Error::last_os_error()));
        }
        self.set_xattrs_fd(&f, &rel, meta)?;
        let ts = libc::timespec {
            tv_sec: meta.secs as libc::time_t,
            tv_nsec: libc::c_long::from(meta.nsecs),
        };
        // SAFETY: valid fd and times array.
        if unsafe { libc::futimens(fd, [ts, ts].as_ptr()) } < 0 {
            return Err(io_err("set mtime", &rel)(io::Error::last_os_error()));
        }
        let digest = hasher.map(|h| h.finalize().into());
        self.record(rel, EntryKind::File, None, size, digest);
        Ok(())
    }

    fn symlink(&mut self, rel: PathBuf, target: PathBuf, meta: &Meta) -> Result<()> {
        let at = self.prepare(&rel)?;
        if at.name.is_none() {
            return Err(refused(OP, &rel, "the root cannot become a symlink"));
        }
        self.replace(&at, &rel)?;
        Root::symlink_at(&target, &at).map_err(io_err("symlink", &rel))?;
        self.archive_symlinks.insert(rel.clone());
        if self.opts.preserve_owners {
            chown_at(&at, meta.uid, meta.gid).map_err(io_err("chown", &rel))?;
        }
        self.set_xattrs_at(&at, &rel, meta)?;
        utimes_at(&at, meta.secs, meta.nsecs).map_err(io_err("set mtime", &rel))?;
        self.record(rel, EntryKind::Symlink, Some(target), 0, None);
        Ok(())
    }

    fn hardlink(&mut self, rel: PathBuf, target: &Path) -> Result<()> {
        let mut trel = entry_path(target)?;
        if let Some(map) = self.opts.map {
            trel = match map(&trel) {
                Some(p) => entry_path(&p)?,
                None => {
                    return Err(refused(
                        OP,
                        &rel,
                        format!("hardlink target `{}` was filtered out", trel.display()),
                    ));
                }
            };
        }
        self.check_parents(&trel)?;
        let src = match self.root.at(&trel) {
            Ok(at) => at,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(refused(
                    OP,
                    &rel,
                    format!(
                        "hardlink target `{}` does not exist in the root",
                        trel.display()
                    ),
                ));
            }
            Err(e) => return Err(io_err("open hardlink target", &trel)(e)),
        };
        let at = self.prepare(&rel)?;
        if at.name.is_none() {
            return Err(refused(OP, &rel, "the root cannot become a hardlink"));
        }
        if trel != rel {
            self.replace(&at, &rel)?;
        }
        Root::hardlink_at(&src, &trel, &at, &rel)?;
        self.record(rel, EntryKind::Hardlink, Some(trel), 0, None);
        Ok(())
    }

    fn node(
        &mut self,
        rel: PathBuf,
        kind: NodeKind,
        dev: impl FnOnce(&Path) -> Result<(u32, u32)>,
        meta: &Meta,
    ) -> Result<()> {
        let (major, minor) = if kind == NodeKind::Fifo {
            (0, 0)
        } else {
            match self.opts.devices {
                DevicePolicy::Create => dev(&rel)?,
                DevicePolicy::Skip => {
                    self.report
                        .notes
                        .push(format!("{}: device node skipped", rel.display()));
                    return Ok(());
                }
                DevicePolicy::Error => {
                    return Err(refused(OP, &rel, "device nodes are not allowed here"));
                }
            }
        };
        let at = self.prepare(&rel)?;
        if at.name.is_none() {
            return Err(refused(OP, &rel, "the root cannot become a device"));
        }
        self.replace(&at, &rel)?;
        Root::mknod_raw(&at, kind, major, minor).map_err(io_err("mknod", &rel))?;
        if self.opts.preserve_owners {
            chown_at(&at, meta.uid, meta.gid).map_err(io_err("chown", &rel))?;
        }
        chmod_at(&at, meta.mode).map_err(io_err("chmod", &rel))?;
        self.set_xattrs_at(&at, &rel, meta)?;
        utimes_at(&at, meta.secs, meta.nsecs).map_err(io_err("set mtime", &rel))?;
        let kind = match kind {
            NodeKind::Char => EntryKind::CharDevice,
            NodeKind::Block => EntryKind::BlockDevice,
            NodeKind::Fifo => EntryKind::Fifo,
        };
        self.record(rel, kind, None, 0, None);
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, name: &[u8]) -> Result<()> {
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == b".wh..opq" {
            return self.opaque(dir);
        }
        if name.is_empty() || name == b"." || name == b".." {
            // `.wh..` would whiteout the directory itself, `.wh...` its parent.
            return Err(refused(OP, rel, "whiteout of `.` or `..`"));
        }
        if name.starts_with(b".wh.") {
            // aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): not part of the tree.
            self.report
                .notes
                .push(format!("{}: aufs metadata skipped", rel.display()));
            return Ok(());
        }
        let target = dir.join(OsStr::from_bytes(name));
        match self.opts.whiteouts {
            Whiteouts::Apply => {
                if self.written.contains(&target) {
                    return Ok(());
                }
                self.check_parents(&target)?;
                let at = match self.root.at(&target) {
                    Ok(at) => at,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.record(target, EntryKind::Whiteout, None, 0, None);
                        return Ok(());
                    }
                    Err(e) => return Err(io_err("open parent", &target)(e)),
                };
                self.replace(&at, &target)?;
            }
            Whiteouts::OverlayFs => {
                let at = self.prepare(&target)?;
                self.replace(&at, &target)?;
                Root::mknod_raw(&at, NodeKind::Char, 0, 0)
                    .map_err(io_err("mknod whiteout", &target))?;
            }
            Whiteouts::Keep => {}
        }
        self.record(target, EntryKind::Whiteout, None, 0, None);
        Ok(())
    }

    fn opaque(&mut self, dir: PathBuf) -> Result<()> {
        match self.opts.whiteouts {
            Whiteouts::Apply => {
                self.check_parents(&dir.join("x"))?;
                let at = self.root.at(&dir).map_err(io_err("open parent", &dir));
                match at.and_then(|at| lstat_at(&at).map_err(io_err("lstat", &dir))) {
                    Ok(st) if stat_is_dir(&st) => self.prune(&dir)?,
                    // Never prune through a symlink: the layer's own directory entry replaces
                    // it; without one there is nothing of this directory to hide.
                    Ok(_) => self.report.notes.push(format!(
                        "{}: opaque marker on a non-directory ignored",
                        dir.display()
                    )),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            Whiteouts::OverlayFs => {
                self.check_parents(&dir.join("x"))?;
                self.root
                    .mkdir_all(&dir, 0o755)
                    .map_err(io_err("create dir", &dir))?;
                let at = self.root.at(&dir).map_err(io_err("open dir", &dir))?;
                lsetxattr_at(&at, c"trusted.overlay.opaque", b"y").map_err(|source| {
                    ConfineError::Io {
                        op: "set xattr",
                        path: dir.join("[trusted.overlay.opaque]"),
                        source,
                    }
                })?;
            }
            Whiteouts::Keep => {}
        }
        self.record(dir, EntryKind::Opaque, None, 0, None);
        Ok(())
    }

    /// Remove from `dir` what this archive did not write (opaque directory). Directories of
    /// this archive are kept and pruned in turn.
    fn prune(&mut self, dir: &Path) -> Result<()> {
        for name in self.root.read_dir(dir)? {
            let p = dir.join(&name);
            if self.written.contains(&p) {
                if self.root.lstat(&p)?.is_dir() {
                    self.prune(&p)?;
                }
            } else {
                self.root.remove_all(&p)?;
                self.archive_symlinks.remove(&p);
                if self.verified.remove(&p) {
                    self.verified.retain(|v| !v.starts_with(&p));
                }
            }
        }
        Ok(())
    }

    /// Apply directory modes and mtimes, deepest last-written first, so that filling a
    /// directory never needs its final (maybe read-only) mode and never moves its mtime.
    fn finish_dirs(&mut self) -> Result<()> {
        for (rel, mode, secs, nsecs) in self.dirs.iter().rev() {
            let at = self.root.at(rel).map_err(io_err("open dir", rel))?;
            let f = match open_dir_at(&at) {
                Ok(f) => f,
                // Replaced or removed by a later entry: its attributes no longer apply.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(io_err("open dir", rel)(e)),
            };
            // SAFETY: valid fd.
            if unsafe { libc::fchmod(f.as_raw_fd(), *mode as libc::mode_t) } < 0 {
                return Err(io_err("chmod", rel)(io::Error::last_os_error()));
            }
            let ts = libc::timespec {
                tv_sec: *secs as libc::time_t,
                tv_nsec: libc::c_long::from(*nsecs),
            };
            // SAFETY: valid fd and times array.
            if unsafe { libc::futimens(f.as_raw_fd(), [ts, ts].as_ptr()) } < 0 {
                return Err(io_err("set mtime", rel)(io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn climbs_out_counts_depth() {
        assert!(climbs_out(Path::new("x"), Path::new("../etc")));
        assert!(!climbs_out(
            Path::new("usr/lib/x"),
            Path::new("../../bin/y")
        ));
        assert!(climbs_out(
            Path::new("usr/lib/x"),
            Path::new("../../../bin")
        ));
        assert!(!climbs_out(Path::new("x"), Path::new("/etc")));
        assert!(!climbs_out(Path::new("a/x"), Path::new("b/../../c")));
    }

    #[test]
    fn pax_time_parses_fractions() {
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("7"), Some((7, 0)));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time("1.2a"), None);
    }
}
