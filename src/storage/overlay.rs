//! The overlay driver: each layer is one directory holding only its diff, whiteouts in overlayfs
//! form (0/0 character devices, `trusted.overlay.opaque=y`); a container's root tree is an
//! overlayfs mount of the image's layer directories as lowerdirs with its own upper and work
//! directories, unmounted and deleted on release.
//!
//! Layout under `<root>/overlay`:
//! `<id>/diff` (the layer), `<id>/link` (its short name), `<id>/lower` (the parents' short
//! names, nearest first), `l/<short>` → `../<id>/diff`, and `containers/<cid>/{upper,work,merged}`.
//! As in Docker, the short `l/` names keep the mount options string below the page-size limit
//! of mount(2); when even those absolute paths are too long, the mount is made from a child
//! process that changed into the driver directory, with relative paths.

use super::driver::{Driver, DriverKind, FillLayer};
use super::fsutil::{create_private_dir, remove_any, set_root_attrs};
use super::{ApplyMode, Result, StorageError};
use nix::mount::{MntFlags, MsFlags};
use sha2::{Digest as _, Sha256};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The overlay driver rooted at its directory.
pub struct Overlay {
    dir: PathBuf,
}

impl Overlay {
    pub(crate) fn open(dir: &Path) -> Result<Overlay> {
        let s = dir.as_os_str().as_bytes();
        if s.iter().any(|b| matches!(b, b',' | b':' | b'=')) {
            return Err(StorageError::DriverUnavailable {
                driver: DriverKind::Overlay,
                path: dir.to_path_buf(),
                reason: "the store path must not contain ',', ':' or '=' (overlayfs option syntax)"
                    .to_string(),
            });
        }
        create_private_dir(&dir.join("l"))?;
        create_private_dir(&dir.join("containers"))?;
        Ok(Overlay {
            dir: dir.to_path_buf(),
        })
    }

    fn read_text(path: &Path) -> Result<String> {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| StorageError::io(path, e))
    }

    /// The `l/` names of layer `id` and all its parents, top first.
    fn lower_chain(&self, id: &str) -> Result<Vec<String>> {
        let layer = self.dir.join(id);
        let mut chain = vec![format!("l/{}", Self::read_text(&layer.join("link"))?)];
        let lower = Self::read_text(&layer.join("lower"))?;
        chain.extend(
            lower
                .split(':')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        Ok(chain)
    }
}

/// The short name of layer `id`: 26 hex digits derived from it (deterministic, so a re-created
/// layer gets its old name back).
fn short_name(id: &str) -> String {
    hex::encode(Sha256::digest(format!("overlay-link {id}").as_bytes()))[..26].to_string()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// The mount data for an overlay with `lowers` (top first) below `upper` and `work`, each path
/// prefixed by `prefix` (the driver directory with a slash, or empty for relative paths).
pub(crate) fn mount_options(prefix: &str, lowers: &[String], upper: &str, work: &str) -> String {
    let lowerdir: Vec<String> = lowers.iter().map(|l| format!("{prefix}{l}")).collect();
    format!(
        "lowerdir={},upperdir={prefix}{upper},workdir={prefix}{work}",
        lowerdir.join(":")
    )
}

fn cstr(s: &[u8], path: &Path) -> Result<CString> {
    CString::new(s).map_err(|_| {
        StorageError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte in path"),
        )
    })
}

/// Mount an overlay on `target` from a child process whose working directory is `cwd`, so
/// `data` may use paths relative to it without changing this (possibly threaded) process's
/// working directory.
fn mount_relative(cwd: &Path, target: &Path, data: &str) -> Result<()> {
    let c_cwd = cstr(cwd.as_os_str().as_bytes(), cwd)?;
    let c_target = cstr(target.as_os_str().as_bytes(), target)?;
    let c_overlay = cstr(b"overlay", target)?;
    let c_data = cstr(data.as_bytes(), target)?;
    // SAFETY: the child only makes async-signal-safe system calls (chdir, mount, _exit) on
    // buffers prepared before the fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(StorageError::sys("fork for overlay mount", target, e)),
        // SAFETY: as above: async-signal-safe calls on prepared buffers, then `_exit`.
        Ok(nix::unistd::ForkResult::Child) => unsafe {
            if libc::chdir(c_cwd.as_ptr()) != 0 {
                libc::_exit(*libc::__errno_location());
            }
            let rc = libc::mount(
                c_overlay.as_ptr(),
                c_target.as_ptr(),
                c_overlay.as_ptr(),
                0,
                c_data.as_ptr().cast(),
            );
            libc::_exit(if rc == 0 {
                0
            } else {
                *libc::__errno_location()
            });
        },
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Err(StorageError::sys(
                    "mount overlay",
                    target,
                    nix::Error::from_raw(code),
                )),
                Ok(other) => Err(StorageError::io(
                    target,
                    std::io::Error::other(format!("overlay mount helper ended with {other:?}")),
                )),
                Err(e) => Err(StorageError::sys("wait for overlay mount", target, e)),
            }
        }
    }
}

/// How an overlay mount's options are given to mount(2).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MountPlan {
    /// Absolute paths fit in one page.
    Absolute(String),
    /// Only paths relative to the driver directory fit: mount from a child that changed into it.
    Relative(String),
}

/// Choose the options for `lowers` (top first), `upper` and `work`, given relative to `base`:
/// absolute paths while they fit in `page` bytes (NUL included, the most mount(2) copies),
/// else relative ones; `None` when even those do not fit.
pub(crate) fn plan_mount(
    base: &Path,
    lowers: &[String],
    upper: &str,
    work: &str,
    page: usize,
) -> Option<MountPlan> {
    let abs = mount_options(&format!("{}/", base.display()), lowers, upper, work);
    if abs.len() < page {
        return Some(MountPlan::Absolute(abs));
    }
    let relative = mount_options("", lowers, upper, work);
    (relative.len() < page).then_some(MountPlan::Relative(relative))
}

/// Mount an overlay on `target` as [`plan_mount`] decides.
fn mount_overlay(
    base: &Path,
    target: &Path,
    lowers: &[String],
    upper: &str,
    work: &str,
) -> Result<()> {
    match plan_mount(base, lowers, upper, work, page_size()) {
        Some(MountPlan::Absolute(data)) => nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| StorageError::sys("mount overlay", target, e)),
        Some(MountPlan::Relative(data)) => mount_relative(base, target, &data),
        None => Err(StorageError::invalid(
            target.display().to_string(),
            format!(
                "{} layers do not fit in one overlay mount's options",
                lowers.len()
            ),
        )),
    }
}

fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        // Not a mount point (never mounted, or already released).
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
        // Something still holds it open: detach now, the kernel frees it when released.
        Err(nix::Error::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(|e| StorageError::sys("unmount", target, e)),
        Err(e) => Err(StorageError::sys("unmount", target, e)),
    }
}

/// Check that overlayfs can be mounted in `root`'s filesystem (and that we may mount at all).
pub(crate) fn probe(root: &Path) -> Result<()> {
    create_private_dir(root)?;
    let tmp = tempfile::Builder::new()
        .prefix(".overlay-probe")
        .tempdir_in(root)
        .map_err(|e| StorageError::io(root, e))?;
    let p = tmp.path();
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(p.join(d)).map_err(|e| StorageError::io(p.join(d), e))?;
    }
    let merged = p.join("merged");
    mount_overlay(p, &merged, &["lower".to_string()], "upper", "work")?;
    unmount(&merged)
}

impl Driver for Overlay {
    fn kind(&self) -> DriverKind {
        DriverKind::Overlay
    }

    fn apply_mode(&self) -> ApplyMode {
        ApplyMode::OverlayFs
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, fill: &mut FillLayer<'_>) -> Result<()> {
        let staging = self.dir.join(format!("{id}.tmp"));
        remove_any(&staging)?;
        let short = short_name(id);
        let result = (|| {
            let diff = staging.join("diff");
            create_private_dir(&diff)?;
            let parent_diff = parent.map(|p| self.dir.join(p).join("diff"));
            set_root_attrs(&diff, parent_diff.as_deref())?;
            let lower = match parent {
                Some(p) => self.lower_chain(p)?.join(":"),
                None => String::new(),
            };
            for (name, text) in [("link", &short), ("lower", &lower)] {
                let path = staging.join(name);
                std::fs::write(&path, text).map_err(|e| StorageError::io(&path, e))?;
            }
            fill(&diff)?;
            let dest = self.dir.join(id);
            std::fs::rename(&staging, &dest).map_err(|e| StorageError::io(&dest, e))?;
            let link = self.dir.join("l").join(&short);
            remove_any(&link)?;
            std::os::unix::fs::symlink(format!("../{id}/diff"), &link)
                .map_err(|e| StorageError::io(&link, e))
        })();
        if result.is_err() {
            let _ = remove_any(&staging);
        }
        result
    }

    fn has_layer(&self, id: &str) -> bool {
        self.dir.join(id).join("diff").is_dir()
    }

    fn remove_layer(&self, id: &str) -> Result<()> {
        remove_any(&self.dir.join("l").join(short_name(id)))?;
        remove_any(&self.dir.join(format!("{id}.tmp")))?;
        remove_any(&self.dir.join(id))
    }

    fn create_rootfs(&self, container: &str, top: &str) -> Result<PathBuf> {
        let lowers = self.lower_chain(top)?;
        let rel = format!("containers/{container}");
        let cdir = self.dir.join(&rel);
        let merged = cdir.join("merged");
        let result = (|| {
            for d in ["upper", "work", "merged"] {
                create_private_dir(&cdir.join(d))?;
            }
            // The merged root takes the upper directory's owner and mode.
            set_root_attrs(&cdir.join("upper"), Some(&self.dir.join(top).join("diff")))?;
            let upper = format!("{rel}/upper");
            let work = format!("{rel}/work");
            mount_overlay(&self.dir, &merged, &lowers, &upper, &work)
        })();
        match result {
            Ok(()) => Ok(merged),
            Err(e) => {
                let _ = unmount(&merged);
                let _ = remove_any(&cdir);
                Err(e)
            }
        }
    }

    fn mount_rootfs(&self, container: &str, top: &str) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let rel = format!("containers/{container}");
        let cdir = self.dir.join(&rel);
        let merged = cdir.join("merged");
        let dev = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.dev())
                .map_err(|e| StorageError::io(p, e))
        };
        // A mount point has another device than its parent directory.
        if dev(&merged)? != dev(&cdir)? {
            return Ok(());
        }
        let lowers = self.lower_chain(top)?;
        mount_overlay(
            &self.dir,
            &merged,
            &lowers,
            &format!("{rel}/upper"),
            &format!("{rel}/work"),
        )
    }

    fn unmount_rootfs(&self, container: &str) -> Result<()> {
        unmount(&self.dir.join("containers").join(container).join("merged"))
    }

    fn release_rootfs(&self, container: &str) -> Result<()> {
        let cdir = self.dir.join("containers").join(container);
        unmount(&cdir.join("merged"))?;
        remove_any(&cdir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_short_names() {
        let lowers = vec!["l/a".to_string(), "l/b".to_string()];
        assert_eq!(
            mount_options("/s/", &lowers, "c/1/upper", "c/1/work"),
            "lowerdir=/s/l/a:/s/l/b,upperdir=/s/c/1/upper,workdir=/s/c/1/work"
        );
        assert_eq!(
            mount_options("", &lowers, "u", "w"),
            "lowerdir=l/a:l/b,upperdir=u,workdir=w"
        );
        let base = Path::new("/var/lib/imgbuild/overlay");
        assert!(matches!(
            plan_mount(base, &lowers, "u", "w", 4096),
            Some(MountPlan::Absolute(o)) if o.starts_with("lowerdir=/var/lib/imgbuild/overlay/l/a:")
        ));
        // 100 layers: absolute paths exceed a page, the relative short names do not.
        let many: Vec<String> = (0..100).map(|i| format!("l/{i:026}")).collect();
        assert!(matches!(
            plan_mount(base, &many, "c/1/upper", "c/1/work", 4096),
            Some(MountPlan::Relative(o)) if o.starts_with("lowerdir=l/")
        ));
        let too_many: Vec<String> = (0..200).map(|i| format!("l/{i:026}")).collect();
        assert_eq!(plan_mount(base, &too_many, "u", "w", 4096), None);
        let s = short_name("abc");
        assert_eq!(s.len(), 26);
        assert_eq!(s, short_name("abc"));
        assert_ne!(s, short_name("abd"));
    }
}
