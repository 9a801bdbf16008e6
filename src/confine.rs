//! Writes confined to a root directory: every path is resolved inside the root, so `..`,
//! absolute symlinks and hardlinks can never reach outside it. Used by every stage that unpacks
//! untrusted archives.
//!
//! A [`Root`] holds an `O_PATH` descriptor on the root directory. Every operation opens the
//! *parent* of its path through that descriptor with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` (or, on kernels without `openat2`, an equivalent component walk with
//! `O_NOFOLLOW`), then acts on the final name with an `*at` call that does not follow it. Symlinks
//! met on the way are resolved as a `chroot` into the root would resolve them: absolute targets
//! start at the root and `..` stops there. So a path can never leave the root, whatever the tree
//! holds, and the final component is never followed.
//!
//! [`unpack`] streams a tar archive into a root on top of this, with stricter checks that turn
//! hostile entries into errors instead of silently confining them.

mod unpack;

pub use unpack::{
    DevicePolicy, EntryKind, PathMap, UnpackOptions, UnpackReport, Unpacked, Whiteouts, unpack,
};

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Errors of confined operations and of archive unpacking. Paths are root-relative.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A system call failed.
    #[error("{op} `{}`: {source}", path.display())]
    Io {
        /// The operation, e.g. `create file`.
        op: &'static str,
        /// Root-relative path the operation was applied to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The operation was refused because it would leave the root or is otherwise unsafe.
    #[error("{op} `{}`: refused: {reason}", path.display())]
    Refused {
        /// The operation.
        op: &'static str,
        /// Root-relative path.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// An archive entry could not be unpacked.
    #[error("archive entry {index} `{}`: {source}", path.display())]
    Entry {
        /// 0-based position of the entry in the archive.
        index: u64,
        /// The entry's name as stored in the archive.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<ConfineError>,
    },
    /// The archive stream itself could not be read (corrupt, truncated, decompression error).
    #[error("reading archive{}: {source}", after.as_ref().map(|p| format!(" after entry `{}`", p.display())).unwrap_or_default())]
    Archive {
        /// The last entry read successfully, if any.
        after: Option<PathBuf>,
        /// The read error.
        #[source]
        source: io::Error,
    },
}

impl ConfineError {
    /// True when the underlying OS error is "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        match self {
            ConfineError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            ConfineError::Entry { source, .. } => source.is_not_found(),
            _ => false,
        }
    }
}

type Result<T, E = ConfineError> = std::result::Result<T, E>;

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ConfineError + 'p {
    move |source| ConfineError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn refused(op: &'static str, path: &Path, reason: impl Into<String>) -> ConfineError {
    ConfineError::Refused {
        op,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// How a [`Root`] resolves paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (Linux ≥ 5.6): the kernel confines.
    Openat2,
    /// A component walk with `O_NOFOLLOW`, resolving symlinks by hand with the same semantics.
    Walk,
}

/// The kind of a special node for [`Root::mknod`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// What to do when the path of a new entry is an existing directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirReplace {
    /// Remove it when empty, else refuse (tar's default).
    IfEmpty,
    /// Remove it with everything below (a layer replacing a directory of an earlier layer).
    All,
}

/// A handle on a root directory; every operation stays inside it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    resolver: Resolver,
}

/// The opened parent directory of a path, and the final name (`None` for the root itself).
pub(crate) struct At {
    pub(crate) dir: OwnedFd,
    pub(crate) name: Option<CString>,
}

impl At {
    fn name_ptr(&self) -> *const libc::c_char {
        match &self.name {
            Some(n) => n.as_ptr(),
            None => c".".as_ptr(),
        }
    }
}

const MAX_SYMLINKS: u32 = 40;

/// What [`Root::walk`] does with a component that does not exist or is not a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Fail with `ENOENT` or `ENOTDIR`, as the kernel's lookup would.
    Fail,
    /// Keep it, and everything below it, literally.
    Literal,
}

/// One component resolved by [`Root::walk`].
struct Step {
    name: OsString,
    /// An `O_PATH` descriptor when the component is an existing directory.
    dir: Option<OwnedFd>,
}

impl Step {
    fn literal(name: OsString) -> Step {
        Step { name, dir: None }
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

/// `openat` retrying on EINTR, returning an owned descriptor.
fn openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is a valid C string; the returned fd is owned by us.
        let r = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if r >= 0 {
            // SAFETY: `r` is a fresh descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(r) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn openat2(dir: RawFd, name: &CStr, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { mem::zeroed() };
    how.flags = u64::try_from(flags | libc::O_CLOEXEC)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    how.resolve = resolve;
    let mut again = 0;
    loop {
        // SAFETY: arguments match the openat2 ABI; `how` outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                name.as_ptr(),
                &raw const how,
                mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: `r` is a fresh descriptor.
            let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
            // SAFETY: `fd` is a fresh descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            // RESOLVE_IN_ROOT returns EAGAIN when a rename raced the lookup; retrying is the
            // documented answer.
            Some(libc::EAGAIN) if again < 16 => again += 1,
            _ => return Err(e),
        }
    }
}

fn fstatat(dir: RawFd, name: *const libc::c_char, flags: libc::c_int) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is valid; the kernel fills it.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: `name` points to a valid C string.
    cvt(unsafe { libc::fstatat(dir, name, &raw mut st, flags) })?;
    Ok(st)
}

fn readlinkat(dir: RawFd, name: *const libc::c_char) -> io::Result<OsString> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::readlinkat(dir, name, buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else {
            return Err(io::Error::last_os_error());
        };
        if n < buf.len() {
            buf.truncate(n);
            return Ok(OsString::from_vec(buf));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// Split a caller's path into plain names: leading `/` and `.` dropped, `..` refused.
pub(crate) fn normalize(op: &'static str, path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(refused(op, path, "path has a `..` component")),
        }
    }
    Ok(out)
}

impl Root {
    /// Open `path` (which must be a directory) as a root, using `openat2` when the kernel has it.
    pub fn open(path: impl AsRef<Path>) -> Result<Root> {
        let path = path.as_ref();
        let fd = Self::open_dir(path)?;
        let probe = openat2(
            fd.as_raw_fd(),
            c".",
            libc::O_PATH | libc::O_DIRECTORY,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        );
        let resolver = match probe {
            Ok(_) => Resolver::Openat2,
            // ENOSYS: old kernel; EPERM: a seccomp filter that blocks it; E2BIG/EINVAL: a kernel
            // without the resolve flags we ask for.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EPERM | libc::E2BIG | libc::EINVAL)
                ) =>
            {
                Resolver::Walk
            }
            Err(e) => return Err(io_err("open root", path)(e)),
        };
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            resolver,
        })
    }

    /// Open `path` as a root with a chosen resolver (tests use this to exercise the walk).
    pub fn open_with(path: impl AsRef<Path>, resolver: Resolver) -> Result<Root> {
        let path = path.as_ref();
        let fd = Self::open_dir(path)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            resolver,
        })
    }

    fn open_dir(path: &Path) -> Result<OwnedFd> {
        let c = cstring(path.as_os_str()).map_err(io_err("open root", path))?;
        openat(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(io_err("open root", path))
    }

    /// The host path the root was opened from (for messages; never used to resolve).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resolver in use.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Open directory `rel` (symlinks followed inside the root) as an `O_PATH` descriptor.
    fn resolve_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return self.fd.try_clone();
        }
        match self.resolver {
            Resolver::Openat2 => {
                let c = cstring(rel.as_os_str())?;
                openat2(
                    self.fd.as_raw_fd(),
                    &c,
                    libc::O_PATH | libc::O_DIRECTORY,
                    libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
                )
            }
            Resolver::Walk => self.walk_dir(rel),
        }
    }

    /// The in-root resolver every by-hand lookup goes through (the `Walk` resolver here, and
    /// the sandbox's mount targets through [`Root::resolve`]): follows symlinks as
    /// `RESOLVE_IN_ROOT` does, so absolute targets restart at the root and `..` never climbs
    /// above it; every open is `O_NOFOLLOW`, so no component is ever followed by the kernel.
    /// Returns the resolved components, each with an `O_PATH` descriptor when it is an existing
    /// directory. With [`Missing::Literal`] a component that does not exist, is not a
    /// directory, or lies below one of those is kept literally (without a descriptor) instead
    /// of failing with `ENOENT`/`ENOTDIR`.
    fn walk(&self, rel: &Path, missing: Missing) -> io::Result<Vec<Step>> {
        let mut todo: Vec<OsString> = rel
            .components()
            .rev()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let mut done: Vec<Step> = Vec::new();
        let mut links = 0u32;
        while let Some(comp) = todo.pop() {
            match comp.as_bytes() {
                b"" | b"." | b"/" => continue,
                b".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let parent = match done.last() {
                None => Some(self.fd.as_raw_fd()),
                Some(step) => step.dir.as_ref().map(AsRawFd::as_raw_fd),
            };
            // Below a missing component or a non-directory: only reached with `Literal`.
            let Some(parent) = parent else {
                done.push(Step::literal(comp));
                continue;
            };
            let c = cstring(&comp)?;
            let fd = match openat(parent, &c, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                Ok(fd) => fd,
                Err(e)
                    if missing == Missing::Literal
                        && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) =>
                {
                    done.push(Step::literal(comp));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let st = fstatat(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH)?;
            if is_symlink(&st) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = PathBuf::from(readlinkat(fd.as_raw_fd(), c"".as_ptr())?);
                if target.is_absolute() {
                    done.clear();
                }
                todo.extend(
                    target
                        .components()
                        .rev()
                        .map(|c| c.as_os_str().to_os_string()),
                );
            } else if is_dir(&st) {
                done.push(Step {
                    name: comp,
                    dir: Some(fd),
                });
            } else if missing == Missing::Literal {
                done.push(Step::literal(comp));
            } else {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
        }
        Ok(done)
    }

    /// Directory `rel` resolved by [`Root::walk`].
    fn walk_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        match self.walk(rel, Missing::Fail)?.pop() {
            Some(Step { dir: Some(fd), .. }) => Ok(fd),
            // `Fail` keeps only directories, each with its descriptor.
            Some(Step { dir: None, .. }) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            None => self.fd.try_clone(),
        }
    }

    /// The root-relative path `rel` names as seen from inside the root (as by a process
    /// `chroot`ed there): symlinks followed, absolute ones restarting at the root, `..` stopping
    /// there. Components that do not exist, and those below a non-directory, are taken
    /// literally, so the result may name something still to be created (a mount target).
    pub(crate) fn resolve(&self, rel: &Path) -> io::Result<PathBuf> {
        Ok(self
            .walk(rel, Missing::Literal)?
            .into_iter()
            .map(|step| step.name)
            .collect())
    }

    /// Open the parent of normalized `rel` and split off the final name.
    pub(crate) fn at(&self, rel: &Path) -> io::Result<At> {
        let Some(name) = rel.file_name() else {
            return Ok(At {
                dir: self.fd.try_clone()?,
                name: None,
            });
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok(At {
            dir: self.resolve_dir(parent)?,
            name: Some(cstring(name)?),
        })
    }

    fn at_op(&self, op: &'static str, rel: &Path) -> Result<(PathBuf, At)> {
        let rel = normalize(op, rel)?;
        let at = self.at(&rel).map_err(io_err(op, &rel))?;
        Ok((rel, at))
    }

    /// `lstat` of `rel`: the final component is not followed.
    pub fn lstat(&self, rel: impl AsRef<Path>) -> Result<Metadata> {
        let (rel, at) = self.at_op("lstat", rel.as_ref())?;
        let fd = match &at.name {
            Some(n) => openat(at.dir.as_raw_fd(), n, libc::O_PATH | libc::O_NOFOLLOW, 0),
            None => at.dir.try_clone(),
        }
        .map_err(io_err("lstat", &rel))?;
        // std's metadata() uses statx/fstat, both of which work on O_PATH descriptors.
        File::from(fd).metadata().map_err(io_err("lstat", &rel))
    }

    /// The target of symlink `rel`.
    pub fn read_link(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let (rel, at) = self.at_op("read link", rel.as_ref())?;
        readlinkat(at.dir.as_raw_fd(), at.name_ptr())
            .map(PathBuf::from)
            .map_err(io_err("read link", &rel))
    }

    /// Open regular file `rel` for reading; symlinks (also the final one) are followed inside the root.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> Result<File> {
        let rel = normalize("open", rel.as_ref())?;
        let fd = match self.resolver {
            Resolver::Openat2 => {
                let c = cstring(rel.as_os_str()).map_err(io_err("open", &rel))?;
                openat2(
                    self.fd.as_raw_fd(),
                    &c,
                    libc::O_RDONLY,
                    libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
                )
            }
            Resolver::Walk => self.open_final_walk(&rel, libc::O_RDONLY),
        }
        .map_err(io_err("open", &rel))?;
        Ok(File::from(fd))
    }

    /// Open `rel`, following a final symlink, by hand: each link's target is resolved again
    /// from the link's directory by the same walk, so `..` in a target climbs from where the
    /// walk really is (as `RESOLVE_IN_ROOT` does), never lexically.
    fn open_final_walk(&self, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        let mut rel = rel.to_path_buf();
        for _ in 0..MAX_SYMLINKS {
            let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let (dir, name) = match rel.components().next_back() {
                Some(Component::Normal(name)) => (self.resolve_dir(&parent)?, cstring(name)?),
                // Ends in `..`, `.` or the root: a directory, resolved whole.
                _ => (self.resolve_dir(&rel)?, c".".to_owned()),
            };
            match openat(dir.as_raw_fd(), &name, flags | libc::O_NOFOLLOW, 0) {
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    let target = PathBuf::from(readlinkat(dir.as_raw_fd(), name.as_ptr())?);
                    // An absolute target restarts at the root; a relative one from the link's
                    // directory (`join` keeps an absolute `target` as it is).
                    rel = parent.join(target);
                }
                r => return r,
            }
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }

    /// Entry names of directory `rel`, sorted (directory symlinks followed inside the root).
    pub fn read_dir(&self, rel: impl AsRef<Path>) -> Result<Vec<OsString>> {
        let rel = normalize("read dir", rel.as_ref())?;
        let fd = self.resolve_dir(&rel).map_err(io_err("read dir", &rel))?;
        read_dir_fd(&fd).map_err(io_err("read dir", &rel))
    }

    /// Create directory `rel` and its missing parents with `mode` (existing ones are kept as they are).
    pub fn create_dir_all(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        let rel = normalize("create dir", rel.as_ref())?;
        self.mkdir_all(&rel, mode)
            .map(drop)
            .map_err(io_err("create dir", &rel))
    }

    /// Create missing directories up to `rel`; returns the directory's `O_PATH` descriptor.
    pub(crate) fn mkdir_all(&self, rel: &Path, mode: u32) -> io::Result<OwnedFd> {
        match self.resolve_dir(rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => return r,
        }
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return self.fd.try_clone();
        };
        let pfd = self.mkdir_all(parent, mode)?;
        let c = cstring(name)?;
        // SAFETY: valid fd and C string.
        match cvt(unsafe { libc::mkdirat(pfd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) }) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
            _ => {}
        }
        self.resolve_dir(rel)
    }

    /// Remove whatever is at `at` so a new non-directory can take its place.
    pub(crate) fn clear(at: &At, dirs: DirReplace) -> io::Result<bool> {
        let Some(name) = &at.name else {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        };
        let st = match fstatat(at.dir.as_raw_fd(), name.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            r => r?,
        };
        if is_dir(&st) {
            if dirs == DirReplace::All {
                remove_all_at(at.dir.as_raw_fd(), name)?;
            } else {
                // SAFETY: valid fd and C string.
                cvt(unsafe {
                    libc::unlinkat(at.dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR)
                })?;
            }
        } else {
            // SAFETY: valid fd and C string.
            cvt(unsafe { libc::unlinkat(at.dir.as_raw_fd(), name.as_ptr(), 0) })?;
        }
        Ok(true)
    }

    /// Create regular file `rel` with `mode`, replacing an existing non-directory entry.
    /// The parent must exist.
    pub fn create_file(&self, rel: impl AsRef<Path>, mode: u32) -> Result<File> {
        let (rel, at) = self.at_op("create file", rel.as_ref())?;
        Self::clear(&at, DirReplace::IfEmpty).map_err(io_err("create file", &rel))?;
        Self::create_file_at(&at, mode).map_err(io_err("create file", &rel))
    }

    /// Create a new file; the name must be free.
    pub(crate) fn create_file_at(at: &At, mode: u32) -> io::Result<File> {
        let Some(name) = &at.name else {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        };
        let fd = openat(
            at.dir.as_raw_fd(),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode as libc::mode_t,
        )?;
        Ok(File::from(fd))
    }

    /// Create symlink `rel` pointing at `target` (any text: it is data, and later operations
    /// resolve it inside the root), replacing an existing non-directory entry.
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> Result<()> {
        let (rel, at) = self.at_op("symlink", rel.as_ref())?;
        Self::clear(&at, DirReplace::IfEmpty).map_err(io_err("symlink", &rel))?;
        Self::symlink_at(target.as_ref(), &at).map_err(io_err("symlink", &rel))
    }

    /// Create a symlink; the name must be free.
    pub(crate) fn symlink_at(target: &Path, at: &At) -> io::Result<()> {
        let t = cstring(target.as_os_str())?;
        // SAFETY: valid fd and C strings.
        cvt(unsafe { libc::symlinkat(t.as_ptr(), at.dir.as_raw_fd(), at.name_ptr()) }).map(drop)
    }

    /// Create hardlink `rel` to the existing non-directory `source`; both resolve inside the
    /// root (the source's final component is not followed), replacing an existing entry at `rel`.
    pub fn hardlink(&self, source: impl AsRef<Path>, rel: impl AsRef<Path>) -> Result<()> {
        let (rel, at) = self.at_op("hardlink", rel.as_ref())?;
        let src_rel = normalize("hardlink", source.as_ref())?;
        let src = match self.at(&src_rel) {
            Ok(src) => src,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(refused(
                    "hardlink",
                    &rel,
                    format!("target `{}` does not exist in the root", src_rel.display()),
                ));
            }
            Err(e) => return Err(io_err("hardlink", &src_rel)(e)),
        };
        Self::hardlink_at(&src, &src_rel, &at, &rel)
    }

    pub(crate) fn hardlink_at(src: &At, src_rel: &Path, at: &At, rel: &Path) -> Result<()> {
        let Some(sname) = &src.name else {
            return Err(refused("hardlink", rel, "the source is the root directory"));
        };
        let st = match fstatat(
            src.dir.as_raw_fd(),
            sname.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(refused(
                    "hardlink",
                    rel,
                    format!("target `{}` does not exist in the root", src_rel.display()),
                ));
            }
            Err(e) => return Err(io_err("hardlink", rel)(e)),
        };
        if is_dir(&st) {
            return Err(refused(
                "hardlink",
                rel,
                format!("target `{}` is a directory", src_rel.display()),
            ));
        }
        if src_rel == rel {
            return Err(refused("hardlink", rel, "links to itself"));
        }
        Self::clear(at, DirReplace::IfEmpty).map_err(io_err("hardlink", rel))?;
        // SAFETY: valid fds and C strings; flags 0: the source is not followed.
        cvt(unsafe {
            libc::linkat(
                src.dir.as_raw_fd(),
                sname.as_ptr(),
                at.dir.as_raw_fd(),
                at.name_ptr(),
                0,
            )
        })
        .map(drop)
        .map_err(io_err("hardlink", rel))
    }

    /// Create a device node or fifo at `rel` (permission bits from `mode`), replacing an existing
    /// non-directory entry. Devices need `CAP_MKNOD`.
    pub fn mknod(
        &self,
        rel: impl AsRef<Path>,
        kind: NodeKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<()> {
        let (rel, at) = self.at_op("mknod", rel.as_ref())?;
        Self::mknod_at(&at, kind, mode, major, minor).map_err(io_err("mknod", &rel))
    }

    pub(crate) fn mknod_at(
        at: &At,
        kind: NodeKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        Self::clear(at, DirReplace::IfEmpty)?;
        Self::mknod_raw(at, kind, major, minor)?;
        chmod_at(at, mode)
    }

    /// mknod with mode 0 (the caller sets owner, then mode); the name must be free.
    pub(crate) fn mknod_raw(at: &At, kind: NodeKind, major: u32, minor: u32) -> io::Result<()> {
        let fmt = match kind {
            NodeKind::Char => libc::S_IFCHR,
            NodeKind::Block => libc::S_IFBLK,
            NodeKind::Fifo => libc::S_IFIFO,
        };
        let dev = if kind == NodeKind::Fifo {
            0
        } else {
            libc::makedev(major, minor)
        };
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::mknodat(at.dir.as_raw_fd(), at.name_ptr(), fmt, dev) }).map(drop)
    }

    /// Create a fifo at `rel`.
    pub fn mkfifo(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        self.mknod(rel, NodeKind::Fifo, mode, 0, 0)
    }

    /// Change the owner of `rel` without following a final symlink (`lchown`).
    pub fn chown(&self, rel: impl AsRef<Path>, uid: u32, gid: u32) -> Result<()> {
        let (rel, at) = self.at_op("chown", rel.as_ref())?;
        chown_at(&at, uid, gid).map_err(io_err("chown", &rel))
    }

    /// Set the permission bits of `rel` (including setuid, setgid and sticky). Symlinks are refused.
    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        let (rel, at) = self.at_op("chmod", rel.as_ref())?;
        chmod_at(&at, mode).map_err(io_err("chmod", &rel))
    }

    /// Set extended attribute `name` of `rel` (the final symlink is not followed).
    pub fn set_xattr(&self, rel: impl AsRef<Path>, name: &str, value: &[u8]) -> Result<()> {
        let (rel, at) = self.at_op("set xattr", rel.as_ref())?;
        let n = cstring(OsStr::new(name)).map_err(io_err("set xattr", &rel))?;
        lsetxattr_at(&at, &n, value).map_err(|source| ConfineError::Io {
            op: "set xattr",
            path: rel.join(format!("[{name}]")),
            source,
        })
    }

    /// Set the access and modification time of `rel` (the final symlink is not followed).
    pub fn set_mtime(&self, rel: impl AsRef<Path>, secs: i64, nsecs: u32) -> Result<()> {
        let (rel, at) = self.at_op("set mtime", rel.as_ref())?;
        utimes_at(&at, secs, nsecs).map_err(io_err("set mtime", &rel))
    }

    /// Remove the file, symlink, node or empty directory `rel`.
    pub fn remove(&self, rel: impl AsRef<Path>) -> Result<()> {
        let (rel, at) = self.at_op("remove", rel.as_ref())?;
        if at.name.is_none() {
            return Err(refused("remove", &rel, "cannot remove the root"));
        }
        Self::clear(&at, DirReplace::IfEmpty).map_err(io_err("remove", &rel))?;
        Ok(())
    }

    /// Remove `rel` with everything below it; a missing path is not an error. Symlinks are
    /// removed, never followed.
    pub fn remove_all(&self, rel: impl AsRef<Path>) -> Result<()> {
        let (rel, at) = self.at_op("remove", rel.as_ref())?;
        if at.name.is_none() {
            return Err(refused("remove", &rel, "cannot remove the root"));
        }
        Self::clear(&at, DirReplace::All)
            .map(drop)
            .map_err(io_err("remove", &rel))
    }

    /// Rename `from` to `to`, both inside the root.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        let (from, f) = self.at_op("rename", from.as_ref())?;
        let (to, t) = self.at_op("rename", to.as_ref())?;
        if f.name.is_none() || t.name.is_none() {
            return Err(refused("rename", &from, "cannot rename the root"));
        }
        // SAFETY: valid fds and C strings.
        cvt(unsafe {
            libc::renameat(
                f.dir.as_raw_fd(),
                f.name_ptr(),
                t.dir.as_raw_fd(),
                t.name_ptr(),
            )
        })
        .map(drop)
        .map_err(|source| ConfineError::Io {
            op: "rename",
            path: from.join(format!("-> {}", to.display())),
            source,
        })
    }
}

fn read_dir_fd(fd: &OwnedFd) -> io::Result<Vec<OsString>> {
    let dfd = openat(fd.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut dir = nix::dir::Dir::from_fd(dfd).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(io::Error::from)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    names.sort();
    Ok(names)
}

/// Remove `name` in `dir` recursively; every open is `O_NOFOLLOW`, `unlinkat` never follows.
fn remove_all_at(dir: RawFd, name: &CStr) -> io::Result<()> {
    let st = match fstatat(dir, name.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    if is_dir(&st) {
        let sub = openat(
            dir,
            name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        for child in read_dir_fd(&sub)? {
            remove_all_at(sub.as_raw_fd(), &cstring(&child)?)?;
        }
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) })?;
    } else {
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) })?;
    }
    Ok(())
}

pub(crate) fn chown_at(at: &At, uid: u32, gid: u32) -> io::Result<()> {
    let flags = if at.name.is_some() {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        libc::AT_EMPTY_PATH
    };
    let name = if at.name.is_some() {
        at.name_ptr()
    } else {
        c"".as_ptr()
    };
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::fchownat(at.dir.as_raw_fd(), name, uid, gid, flags) }).map(drop)
}

pub(crate) fn utimes_at(at: &At, secs: i64, nsecs: u32) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: libc::c_long::from(nsecs.min(999_999_999)),
    };
    let times = [ts, ts];
    let (name, flags) = match &at.name {
        Some(n) => (n.as_ptr(), libc::AT_SYMLINK_NOFOLLOW),
        None => (c"".as_ptr(), libc::AT_EMPTY_PATH),
    };
    // SAFETY: valid fd, C string and times array.
    cvt(unsafe { libc::utimensat(at.dir.as_raw_fd(), name, times.as_ptr(), flags) }).map(drop)
}

/// chmod without following a final symlink: `fchmodat2(AT_SYMLINK_NOFOLLOW)` (Linux ≥ 6.6), else
/// an `O_PATH` open plus chmod through its `/proc/self/fd` entry (what glibc does).
pub(crate) fn chmod_at(at: &At, mode: u32) -> io::Result<()> {
    let mode = (mode & 0o7777) as libc::mode_t;
    let Some(name) = &at.name else {
        let fd = openat(
            at.dir.as_raw_fd(),
            c".",
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        // SAFETY: valid fd.
        return cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop);
    };
    // SAFETY: arguments follow the fchmodat2 ABI.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            at.dir.as_raw_fd(),
            name.as_ptr(),
            mode,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // ENOSYS: kernel before 6.6; EINVAL: a kernel that knows the call but not the flag.
    if !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
        return Err(e);
    }
    let fd = openat(at.dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    let st = fstatat(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH)?;
    if is_symlink(&st) {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    let proc = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::chmod(proc.as_ptr(), mode) }).map(drop)
}

/// The extended attributes of `path` (the final symlink is not followed), sorted by name; none
/// where the filesystem has none (`ENOTSUP`). Shared by everything that records a tree.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        if let Some(v) = xattr::get(path, &name)? {
            out.push((name.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// Set an xattr without following a final symlink: regular files and directories through a real
/// descriptor, other nodes through `/proc/self/fd/<parent>/<name>` with `lsetxattr` (opening a
/// device or fifo to get a descriptor could block or have side effects).
pub(crate) fn lsetxattr_at(at: &At, name: &CStr, value: &[u8]) -> io::Result<()> {
    let st = fstatat(at.dir.as_raw_fd(), at.name_ptr(), libc::AT_SYMLINK_NOFOLLOW)?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFREG || kind == libc::S_IFDIR {
        let flags = libc::O_RDONLY
            | libc::O_NOFOLLOW
            | libc::O_NONBLOCK
            | if kind == libc::S_IFDIR {
                libc::O_DIRECTORY
            } else {
                0
            };
        let fd = match &at.name {
            Some(n) => openat(at.dir.as_raw_fd(), n, flags, 0)?,
            None => openat(at.dir.as_raw_fd(), c".", flags, 0)?,
        };
        return fsetxattr(fd.as_raw_fd(), name, value);
    }
    let mut p = format!("/proc/self/fd/{}/", at.dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(at.name.as_deref().map_or(&b"."[..], |n| n.to_bytes()));
    let p = CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C strings and buffer.
    cvt(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

pub(crate) fn fsetxattr(fd: RawFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid fd, C string and buffer.
    cvt(unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
        .map(drop)
}

pub(crate) fn lstat_at(at: &At) -> io::Result<libc::stat> {
    fstatat(at.dir.as_raw_fd(), at.name_ptr(), libc::AT_SYMLINK_NOFOLLOW)
}

pub(crate) fn readlink_at(at: &At) -> io::Result<PathBuf> {
    readlinkat(at.dir.as_raw_fd(), at.name_ptr()).map(PathBuf::from)
}

pub(crate) fn mkdir_at(at: &At, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::mkdirat(at.dir.as_raw_fd(), at.name_ptr(), mode as libc::mode_t) }).map(drop)
}

/// Open the directory at `at` (not following a final symlink) for attribute changes.
pub(crate) fn open_dir_at(at: &At) -> io::Result<File> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let fd = match &at.name {
        Some(n) => openat(at.dir.as_raw_fd(), n, flags, 0)?,
        None => openat(at.dir.as_raw_fd(), c".", flags, 0)?,
    };
    Ok(File::from(fd))
}

pub(crate) fn stat_is_dir(st: &libc::stat) -> bool {
    is_dir(st)
}

pub(crate) fn stat_is_symlink(st: &libc::stat) -> bool {
    is_symlink(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(dir: &Path) -> Vec<Root> {
        vec![
            Root::open(dir).unwrap(),
            Root::open_with(dir, Resolver::Walk).unwrap(),
        ]
    }

    #[test]
    fn normalize_strips_root_and_refuses_dotdot() {
        assert_eq!(
            normalize("t", Path::new("/a/./b/")).unwrap(),
            PathBuf::from("a/b")
        );
        assert!(matches!(
            normalize("t", Path::new("a/../b")),
            Err(ConfineError::Refused { .. })
        ));
    }

    #[test]
    fn symlinks_resolve_inside_root() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let rootdir = tmp.path().join("root");
        std::fs::create_dir(&rootdir).unwrap();
        for root in roots(&rootdir) {
            root.remove_all("x").unwrap();
            root.remove_all("up").unwrap();
            root.symlink(&outside, "x").unwrap();
            root.symlink("../../..", "up").unwrap();
            // `x` points at a host path; inside the root that path does not exist.
            let e = root.create_file("x/f", 0o644).unwrap_err();
            assert!(e.is_not_found(), "{e}");
            root.create_file("up/top", 0o644).unwrap();
            assert!(rootdir.join("top").is_file());
            std::fs::remove_file(rootdir.join("top")).unwrap();
            root.create_dir_all(outside.strip_prefix("/").unwrap(), 0o755)
                .unwrap();
            root.create_file("x/f", 0o644).unwrap();
            assert!(
                rootdir
                    .join(outside.strip_prefix("/").unwrap())
                    .join("f")
                    .is_file()
            );
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
            assert_eq!(root.read_link("x").unwrap(), outside);
            root.remove_all(
                outside
                    .strip_prefix("/")
                    .unwrap()
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str(),
            )
            .unwrap();
        }
    }

    /// The one in-root walk, both as the fd lookup of the `Walk` resolver and as the path
    /// lookup for sandbox mount targets: `..` and symlinks (relative or absolute) never leave
    /// the root.
    #[test]
    fn walk_contains_symlink_and_dotdot_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let rootdir = tmp.path().join("root");
        std::fs::create_dir_all(rootdir.join("usr/bin")).unwrap();
        std::fs::create_dir_all(rootdir.join("host")).unwrap();
        std::fs::create_dir_all(rootdir.join("etc")).unwrap();
        std::fs::write(rootdir.join("file"), b"").unwrap();
        std::os::unix::fs::symlink("usr/bin", rootdir.join("bin")).unwrap();
        std::os::unix::fs::symlink("/etc/../../../host", rootdir.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../..", rootdir.join("usr/up")).unwrap();
        std::os::unix::fs::symlink("loop", rootdir.join("loop")).unwrap();
        let root = Root::open_with(&rootdir, Resolver::Walk).unwrap();

        // Paths, missing components taken literally.
        let resolve = |p: &str| root.resolve(Path::new(p)).unwrap();
        assert_eq!(resolve("/bin/sh"), PathBuf::from("usr/bin/sh"));
        assert_eq!(resolve("/escape/x"), PathBuf::from("host/x"));
        assert_eq!(resolve("usr/up/outside"), PathBuf::from("outside"));
        assert_eq!(resolve("/../../etc"), PathBuf::from("etc"));
        assert_eq!(resolve("missing/../bin/sh"), PathBuf::from("usr/bin/sh"));
        assert_eq!(resolve("file/x"), PathBuf::from("file/x"));
        let e = root.resolve(Path::new("/loop/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));

        // Descriptors: the same escapes end inside the root; missing components fail.
        root.create_file("usr/up/top", 0o644).unwrap();
        assert!(rootdir.join("top").is_file());
        root.create_file("escape/in-host", 0o644).unwrap();
        assert!(rootdir.join("host/in-host").is_file());
        assert!(
            root.create_file("missing/x", 0o644)
                .unwrap_err()
                .is_not_found()
        );
        assert!(root.create_file("file/x", 0o644).is_err());
        assert!(root.create_file("loop/x", 0o644).is_err());
        assert!(!tmp.path().join("top").exists());
    }

    /// A final symlink whose target climbs out of a symlinked directory: `..` applies where
    /// the walk is, as the kernel's `RESOLVE_IN_ROOT` applies it, for both resolvers.
    #[test]
    fn open_file_dotdot_after_symlinked_dir_matches_the_kernel() {
        let tmp = tempfile::tempdir().unwrap();
        let rootdir = tmp.path().join("root");
        std::fs::create_dir_all(rootdir.join("x/y")).unwrap();
        std::fs::write(rootdir.join("x/f"), b"in x").unwrap();
        std::fs::write(rootdir.join("f"), b"at top").unwrap();
        std::os::unix::fs::symlink("x/y", rootdir.join("a")).unwrap();
        std::os::unix::fs::symlink("a/../f", rootdir.join("l")).unwrap();
        std::os::unix::fs::symlink("a/..", rootdir.join("d")).unwrap();
        std::os::unix::fs::symlink("../../../../f", rootdir.join("x/y/up")).unwrap();
        for root in roots(&rootdir) {
            let read = |p: &str| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut root.open_file(p).unwrap(), &mut s).unwrap();
                s
            };
            assert_eq!(read("l"), "in x", "{:?}", root.resolver());
            assert_eq!(read("d/f"), "in x", "{:?}", root.resolver());
            assert_eq!(read("a/up"), "at top", "{:?}", root.resolver());
        }
    }

    #[test]
    fn final_symlink_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let rootdir = tmp.path().join("root");
        std::fs::create_dir(&rootdir).unwrap();
        for root in roots(&rootdir) {
            root.symlink(&victim, "l").unwrap();
            root.chmod("l", 0o777).unwrap_err();
            root.set_mtime("l", 5, 0).unwrap();
            let mut f = root.create_file("l", 0o600).unwrap();
            std::io::Write::write_all(&mut f, b"new").unwrap();
            assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
            assert!(root.lstat("l").unwrap().is_file());
            root.remove("l").unwrap();
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn hardlink_needs_existing_source_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let rootdir = tmp.path().join("root");
        std::fs::create_dir(&rootdir).unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        for root in roots(&rootdir) {
            let e = root.hardlink("../secret", "h").unwrap_err();
            assert!(matches!(e, ConfineError::Refused { .. }), "{e}");
            let e = root.hardlink(tmp.path().join("secret"), "h").unwrap_err();
            assert!(matches!(e, ConfineError::Refused { .. }), "{e}");
            root.create_file("a", 0o644).unwrap();
            root.hardlink("a", "b").unwrap();
            assert_eq!(
                std::os::unix::fs::MetadataExt::ino(&root.lstat("a").unwrap()),
                std::os::unix::fs::MetadataExt::ino(&root.lstat("b").unwrap())
            );
            root.rename("b", "c").unwrap();
            assert!(root.lstat("b").unwrap_err().is_not_found());
            root.remove_all("a").unwrap();
            root.remove_all("c").unwrap();
        }
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let rootdir = tmp.path().join("root");
        std::fs::create_dir(&rootdir).unwrap();
        let root = Root::open(&rootdir).unwrap();
        root.create_dir_all("d/e", 0o755).unwrap();
        root.symlink(&outside, "d/e/out").unwrap();
        root.mkfifo("d/fifo", 0o600).unwrap();
        assert_eq!(
            root.read_dir("d").unwrap(),
            vec![OsString::from("e"), OsString::from("fifo")]
        );
        root.remove_all("d").unwrap();
        assert!(!rootdir.join("d").exists());
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn attributes_and_nodes() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        root.create_dir_all("usr/bin", 0o755).unwrap();
        drop(root.create_file("usr/bin/su", 0o755).unwrap());
        root.chmod("usr/bin/su", 0o4755).unwrap();
        root.set_mtime("usr/bin/su", 1_000_000, 5).unwrap();
        let m = root.lstat("usr/bin/su").unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000, 5));
        root.mkfifo("usr/fifo", 0o620).unwrap();
        let m = root.lstat("usr/fifo").unwrap();
        assert!(m.file_type().is_fifo());
        assert_eq!(m.mode() & 0o777, 0o620);
        let e = root.chmod("nope/x", 0o644).unwrap_err();
        assert!(e.to_string().contains("chmod `nope/x`"), "{e}");
    }

    #[test]
    #[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
    fn owners_capabilities_and_devices() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        root.create_dir_all("usr/bin", 0o755).unwrap();
        drop(root.create_file("usr/bin/su", 0o755).unwrap());
        root.chown("usr/bin/su", 0, 42).unwrap();
        assert_eq!(root.lstat("usr/bin/su").unwrap().gid(), 42);
        let cap = [
            0u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        root.set_xattr("usr/bin/su", "security.capability", &cap)
            .unwrap();
        let got = xattr::get(tmp.path().join("usr/bin/su"), "security.capability").unwrap();
        assert_eq!(got.as_deref(), Some(&cap[..]));
        root.mknod("dev-null", NodeKind::Char, 0o666, 1, 3).unwrap();
        let m = root.lstat("dev-null").unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), libc::makedev(1, 3));
        root.set_xattr("dev-null", "trusted.x", b"1").unwrap();
        root.symlink("/nowhere", "l").unwrap();
        root.chown("l", 7, 7).unwrap();
        assert_eq!(root.lstat("l").unwrap().uid(), 7);
    }

    #[test]
    fn open_file_follows_symlinks_inside_the_root() {
        use std::io::Read;
        let tmp = tempfile::tempdir().unwrap();
        let rootdir = tmp.path().join("root");
        std::fs::create_dir_all(rootdir.join("etc")).unwrap();
        std::fs::write(rootdir.join("etc/real"), b"inside").unwrap();
        std::fs::write(tmp.path().join("real"), b"outside").unwrap();
        std::os::unix::fs::symlink("/etc/real", rootdir.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../etc/real", rootdir.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), rootdir.join("etc/host")).unwrap();
        for root in roots(&rootdir) {
            for link in ["etc/abs", "etc/rel"] {
                let mut s = String::new();
                root.open_file(link)
                    .unwrap()
                    .read_to_string(&mut s)
                    .unwrap();
                assert_eq!(s, "inside", "{link} {:?}", root.resolver());
            }
            assert!(root.open_file("etc/host").unwrap_err().is_not_found());
        }
    }
}
