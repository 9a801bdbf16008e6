//! A full, independent copy of a directory tree for the vfs driver: owners, modes (setuid
//! included), extended attributes, timestamps, symlinks, device nodes, FIFOs and the tree's own
//! hardlinks are kept. File data is copied with plain reads and writes, never reflinked or
//! hardlinked to the source, so a layer never shares storage with its parent.

use super::{Result, StorageError};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Copy the directory `src` to `dst` (which must not exist).
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    // (dev, inode) of multiply linked files already copied → their copy, to re-link within dst.
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    let mut buf = vec![0u8; 256 * 1024];
    copy_entry(src, dst, &mut links, &mut buf)
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
    buf: &mut [u8],
) -> Result<()> {
    let meta = fs::symlink_metadata(src).map_err(|e| StorageError::io(src, e))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::DirBuilder::new()
            .mode_private()
            .create(dst)
            .map_err(|e| StorageError::io(dst, e))?;
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(|e| StorageError::io(src, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| StorageError::io(src, e))?;
        names.sort();
        for name in names {
            copy_entry(&src.join(&name), &dst.join(&name), links, buf)?;
        }
    } else if ft.is_file() {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&key) {
                return fs::hard_link(first, dst).map_err(|e| StorageError::io(dst, e));
            }
            links.insert(key, dst.to_path_buf());
        }
        copy_data(src, dst, buf)?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(|e| StorageError::io(src, e))?;
        std::os::unix::fs::symlink(&target, dst).map_err(|e| StorageError::io(dst, e))?;
    } else {
        // Character and block devices, FIFOs, sockets: recreate the node itself.
        let c = cstring(dst)?;
        // SAFETY: `c` is a valid NUL-terminated path; mknod only reads it.
        let rc = unsafe { libc::mknod(c.as_ptr(), meta.mode() as libc::mode_t, meta.rdev()) };
        if rc != 0 {
            return Err(StorageError::io(dst, std::io::Error::last_os_error()));
        }
    }
    copy_metadata(src, dst, &meta)
}

trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        // Final mode is set after the contents; until then only the owner may enter.
        self.mode(0o700)
    }
}

fn copy_data(src: &Path, dst: &Path, buf: &mut [u8]) -> Result<()> {
    let mut from = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .map_err(|e| StorageError::io(src, e))?;
    let mut to: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| StorageError::io(dst, e))?;
    loop {
        let n = match from.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(StorageError::io(src, e)),
        };
        to.write_all(&buf[..n])
            .map_err(|e| StorageError::io(dst, e))?;
    }
    Ok(())
}

/// Owner, then mode (a chown clears setuid/setgid), then xattrs (a chown also drops
/// `security.capability`), then timestamps last (everything before touches ctime/mtime).
fn copy_metadata(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<()> {
    let is_link = meta.file_type().is_symlink();
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| StorageError::io(dst, e))?;
    if !is_link {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| StorageError::io(dst, e))?;
    }
    copy_xattrs(src, dst, is_link)?;
    let c = cstring(dst)?;
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    // SAFETY: valid path and a two-element timespec array, as utimensat requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(StorageError::io(dst, std::io::Error::last_os_error()));
    }
    Ok(())
}

fn copy_xattrs(src: &Path, dst: &Path, is_link: bool) -> Result<()> {
    let names = match xattr::list(src) {
        Ok(n) => n,
        // A filesystem without xattr support has none to copy.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(StorageError::io(src, e)),
    };
    for name in names {
        let Some(value) = xattr::get(src, &name).map_err(|e| StorageError::io(src, e))? else {
            continue;
        };
        match xattr::set(dst, &name, &value) {
            Ok(()) => {}
            // Symlinks cannot carry user.* attributes on Linux; the source cannot have had any
            // we are able to set either.
            Err(e) if is_link && matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {}
            Err(e) => return Err(StorageError::io(dst, e)),
        }
    }
    Ok(())
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        StorageError::io(
            path,
            std::io::Error::new(ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn copies_files_links_modes_and_hardlinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), b"data").unwrap();
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o4711)).unwrap();
        fs::hard_link(src.join("sub/f"), src.join("g")).unwrap();
        symlink("sub/f", src.join("l")).unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o751)).unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("sub/f")).unwrap(), b"data");
        let m = fs::symlink_metadata(dst.join("sub/f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4711);
        assert_eq!(m.mtime(), fs::metadata(src.join("sub/f")).unwrap().mtime());
        assert_eq!(
            fs::metadata(dst.join("sub")).unwrap().mode() & 0o7777,
            0o751
        );
        assert_eq!(fs::read_link(dst.join("l")).unwrap(), Path::new("sub/f"));
        // The tree's own hardlink is kept, but the copy shares no inode with the source.
        assert_eq!(m.ino(), fs::metadata(dst.join("g")).unwrap().ino());
        assert_ne!(m.ino(), fs::metadata(src.join("sub/f")).unwrap().ino());
        fs::write(dst.join("sub/f"), b"changed").unwrap();
        assert_eq!(fs::read(src.join("sub/f")).unwrap(), b"data");
    }

    #[test]
    #[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
    fn copies_devices_fifos_owners_and_xattrs() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let mk = |name: &str, mode: libc::mode_t, dev: libc::dev_t| {
            let c = cstring(&src.join(name)).unwrap();
            // SAFETY: `c` is a valid C string.
            assert_eq!(unsafe { libc::mknod(c.as_ptr(), mode, dev) }, 0);
        };
        mk("null", libc::S_IFCHR | 0o666, libc::makedev(1, 3));
        mk("fifo", libc::S_IFIFO | 0o640, 0);
        fs::write(src.join("owned"), b"x").unwrap();
        std::os::unix::fs::lchown(src.join("owned"), Some(1234), Some(5678)).unwrap();
        fs::set_permissions(src.join("owned"), fs::Permissions::from_mode(0o6750)).unwrap();
        xattr::set(src.join("owned"), "user.test", b"v").unwrap();
        xattr::set(src.join("owned"), "trusted.test", b"t").unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let null = fs::symlink_metadata(dst.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        let fifo = fs::symlink_metadata(dst.join("fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o640);
        let owned = fs::symlink_metadata(dst.join("owned")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
        assert_eq!(
            owned.mode() & 0o7777,
            0o6750,
            "chown must not clear setuid/setgid"
        );
        assert_eq!(
            xattr::get(dst.join("owned"), "user.test").unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(
            xattr::get(dst.join("owned"), "trusted.test").unwrap(),
            Some(b"t".to_vec())
        );
    }
}
