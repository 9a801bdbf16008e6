//! The btrfs driver: a base layer is a new subvolume, every other layer a snapshot of its
//! parent with its diff applied, and a container's root tree a writable snapshot of its image's
//! top layer. Snapshots share unchanged extents, so layers cost only what they change.
//!
//! The driver calls the btrfs ioctls directly (`BTRFS_IOC_SUBVOL_CREATE`,
//! `BTRFS_IOC_SNAP_CREATE_V2`, `BTRFS_IOC_SNAP_DESTROY`) rather than the `btrfs` program: no
//! process per layer, no dependency on btrfs-progs being installed or on its output format, and
//! errors come back as errno values tied to the path involved.

use super::driver::{Driver, DriverKind, FillLayer};
use super::fsutil::{create_private_dir, remove_any, set_root_attrs};
use super::{ApplyMode, Result, StorageError};
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// `struct btrfs_ioctl_vol_args` (linux/btrfs.h).
#[repr(C)]
pub(crate) struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_vol_args_v2` (linux/btrfs.h); the two unions are laid out as their
/// largest members.
#[repr(C)]
pub(crate) struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

const BTRFS_IOCTL_MAGIC: u8 = 0x94;
nix::ioctl_write_ptr!(ioc_subvol_create, BTRFS_IOCTL_MAGIC, 14, VolArgs);
nix::ioctl_write_ptr!(ioc_snap_destroy, BTRFS_IOCTL_MAGIC, 15, VolArgs);
nix::ioctl_write_ptr!(ioc_snap_create_v2, BTRFS_IOCTL_MAGIC, 23, VolArgsV2);

/// The inode number of every subvolume's root directory.
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

/// The btrfs driver: layers in `<dir>/subvolumes/<id>`, containers in `<dir>/containers/<id>`.
pub struct Btrfs {
    subvolumes: PathBuf,
    containers: PathBuf,
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StorageError::sys("open", path, e))
}

fn name_bytes<const N: usize>(name: &str, path: &Path) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= N || b.contains(&0) || b.contains(&b'/') {
        return Err(StorageError::invalid(
            path.display().to_string(),
            "bad subvolume name",
        ));
    }
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// Create an empty subvolume `name` in directory `dir`.
fn subvol_create(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    let dfd = open_dir(dir)?;
    let args = VolArgs {
        fd: 0,
        name: name_bytes(name, &path)?,
    };
    // SAFETY: `args` is a properly laid out btrfs_ioctl_vol_args living across the call.
    unsafe { ioc_subvol_create(dfd.as_raw_fd(), &raw const args) }
        .map_err(|e| StorageError::sys("create btrfs subvolume", &path, e))?;
    Ok(())
}

/// Snapshot subvolume `src` as `name` in directory `dir` (writable).
fn snapshot(src: &Path, dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    let sfd = open_dir(src)?;
    let dfd = open_dir(dir)?;
    let args = VolArgsV2 {
        fd: i64::from(sfd.as_raw_fd()),
        transid: 0,
        flags: 0,
        unused: [0; 4],
        name: name_bytes(name, &path)?,
    };
    // SAFETY: `args` is a properly laid out btrfs_ioctl_vol_args_v2 living across the call.
    unsafe { ioc_snap_create_v2(dfd.as_raw_fd(), &raw const args) }
        .map_err(|e| StorageError::sys("snapshot btrfs subvolume", &path, e))?;
    Ok(())
}

/// Delete subvolume (or leftover plain directory) `name` in `dir`; absence is not an error.
fn destroy(dir: &Path, name: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    if !(meta.is_dir() && meta.ino() == BTRFS_FIRST_FREE_OBJECTID) {
        return remove_any(&path);
    }
    let dfd = open_dir(dir)?;
    let args = VolArgs {
        fd: 0,
        name: name_bytes(name, &path)?,
    };
    // SAFETY: as above.
    unsafe { ioc_snap_destroy(dfd.as_raw_fd(), &raw const args) }
        .map_err(|e| StorageError::sys("delete btrfs subvolume", &path, e))?;
    Ok(())
}

impl Btrfs {
    pub(crate) fn open(dir: &Path) -> Result<Btrfs> {
        create_private_dir(dir)?;
        let fs = nix::sys::statfs::statfs(dir).map_err(|e| StorageError::sys("statfs", dir, e))?;
        if fs.filesystem_type() != nix::sys::statfs::BTRFS_SUPER_MAGIC {
            return Err(StorageError::NotBtrfs {
                path: dir.to_path_buf(),
                found: format!("filesystem magic {:#x}", fs.filesystem_type().0),
            });
        }
        let b = Btrfs {
            subvolumes: dir.join("subvolumes"),
            containers: dir.join("containers"),
        };
        create_private_dir(&b.subvolumes)?;
        create_private_dir(&b.containers)?;
        Ok(b)
    }
}

impl Driver for Btrfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Btrfs
    }

    fn apply_mode(&self) -> ApplyMode {
        ApplyMode::Apply
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, fill: &mut FillLayer<'_>) -> Result<()> {
        let staging = format!("{id}.tmp");
        destroy(&self.subvolumes, &staging)?;
        let result = match parent {
            Some(p) => snapshot(&self.subvolumes.join(p), &self.subvolumes, &staging),
            None => subvol_create(&self.subvolumes, &staging)
                .and_then(|()| set_root_attrs(&self.subvolumes.join(&staging), None)),
        }
        .and_then(|()| fill(&self.subvolumes.join(&staging)))
        .and_then(|()| {
            // A subvolume is renamed like a directory.
            let dest = self.subvolumes.join(id);
            std::fs::rename(self.subvolumes.join(&staging), &dest)
                .map_err(|e| StorageError::io(&dest, e))
        });
        if result.is_err() {
            let _ = destroy(&self.subvolumes, &staging);
        }
        result
    }

    fn has_layer(&self, id: &str) -> bool {
        self.subvolumes.join(id).is_dir()
    }

    fn remove_layer(&self, id: &str) -> Result<()> {
        destroy(&self.subvolumes, &format!("{id}.tmp"))?;
        destroy(&self.subvolumes, id)
    }

    fn create_rootfs(&self, container: &str, top: &str) -> Result<PathBuf> {
        snapshot(&self.subvolumes.join(top), &self.containers, container)?;
        Ok(self.containers.join(container))
    }

    fn release_rootfs(&self, container: &str) -> Result<()> {
        destroy(&self.containers, container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_structs_match_the_kernel_abi() {
        // Both structs are 4096 bytes in linux/btrfs.h; the ioctl numbers encode their size.
        assert_eq!(std::mem::size_of::<VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<VolArgsV2>(), 4096);
    }

    #[test]
    fn refuses_a_store_not_on_btrfs() {
        let dir = tempfile::tempdir().unwrap();
        let st = nix::sys::statfs::statfs(dir.path()).unwrap();
        if st.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC {
            return;
        }
        let err = Btrfs::open(&dir.path().join("btrfs")).err().unwrap();
        assert!(
            err.to_string().contains("needs the store on a btrfs"),
            "{err}"
        );
    }
}
