//! The storage-driver trait and the choice of driver for a store.

use super::{ApplyMode, Result, StorageError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The storage drivers imgbuild knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// Each layer a full copy of its parent plus its diff.
    Vfs,
    /// One diff directory per layer, stacked as overlayfs lower directories.
    Overlay,
    /// Each layer a btrfs subvolume snapshot of its parent plus its diff.
    Btrfs,
    /// Thin-pool snapshots; refused where the kernel lacks dm-thin.
    Devicemapper,
}

impl DriverKind {
    /// The driver's name as given to `--storage-driver`.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Vfs => "vfs",
            DriverKind::Overlay => "overlay",
            DriverKind::Btrfs => "btrfs",
            DriverKind::Devicemapper => "devicemapper",
        }
    }
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DriverKind {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "vfs" => Ok(DriverKind::Vfs),
            // Docker's name for the same driver.
            "overlay" | "overlay2" => Ok(DriverKind::Overlay),
            "btrfs" => Ok(DriverKind::Btrfs),
            "devicemapper" => Ok(DriverKind::Devicemapper),
            other => Err(StorageError::UnknownDriver(other.to_string())),
        }
    }
}

/// Fills a layer directory (the store applies the layer's tar stream into it).
pub type FillLayer<'a> = dyn FnMut(&Path) -> Result<()> + 'a;

/// A storage driver: where unpacked layers and container root trees live.
///
/// Layer ids are the hex part of chain ids; container ids are 64 hex digits. The store calls
/// these with its lock held, so drivers need no locking of their own.
pub trait Driver: Send + Sync {
    /// Which driver this is.
    fn kind(&self) -> DriverKind;

    /// How layer tars must be applied into the directories this driver hands out.
    fn apply_mode(&self) -> ApplyMode;

    /// Create layer `id` on top of `parent` (none for a base layer): the driver prepares a
    /// directory, `fill` writes the layer's diff into it, and the layer appears under `id` only
    /// when `fill` succeeded. On failure nothing of the layer is left.
    fn create_layer(&self, id: &str, parent: Option<&str>, fill: &mut FillLayer<'_>) -> Result<()>;

    /// Whether layer `id` exists.
    fn has_layer(&self, id: &str) -> bool;

    /// Remove layer `id` (absence is not an error).
    fn remove_layer(&self, id: &str) -> Result<()>;

    /// Make a writable root tree for container `container` whose image's top layer is `top`;
    /// returns the tree's path. Writes in it never reach the layers.
    fn create_rootfs(&self, container: &str, top: &str) -> Result<PathBuf>;

    /// Unmount container `container`'s root tree, keeping its writable part, once its
    /// command has ended: no mount stays on the host for a stopped container. Drivers whose
    /// root trees are plain directories do nothing.
    fn unmount_rootfs(&self, _container: &str) -> Result<()> {
        Ok(())
    }

    /// Mount container `container`'s root tree again after [`Driver::unmount_rootfs`] (its
    /// image's top layer is `top`), keeping its writable part; nothing when it is mounted.
    /// Drivers whose root trees are plain directories do nothing.
    fn mount_rootfs(&self, _container: &str, _top: &str) -> Result<()> {
        Ok(())
    }

    /// Release container `container`'s root tree (unmounting it if mounted) and delete its
    /// writable part. Releasing a container that is not there is not an error.
    fn release_rootfs(&self, container: &str) -> Result<()>;
}

/// Open driver `kind` with its data under `dir` (the store's `<root>/<driver>` directory).
pub(crate) fn open_driver(kind: DriverKind, dir: &Path) -> Result<Box<dyn Driver>> {
    Ok(match kind {
        DriverKind::Vfs => Box::new(super::vfs::Vfs::open(dir)?),
        DriverKind::Overlay => Box::new(super::overlay::Overlay::open(dir)?),
        DriverKind::Btrfs => Box::new(super::btrfs::Btrfs::open(dir)?),
        DriverKind::Devicemapper => {
            super::devicemapper::check_support(Path::new("/"))?;
            return Err(StorageError::DriverUnavailable {
                driver: kind,
                path: dir.to_path_buf(),
                reason: "the kernel has dm-thin, but imgbuild does not build thin pools yet; \
                         use overlay, btrfs or vfs"
                    .to_string(),
            });
        }
    })
}

/// The driver a new store gets when none is asked for: overlay where a probe mount on the
/// store's filesystem works (as Docker picks), else vfs.
pub(crate) fn default_driver(root: &Path) -> DriverKind {
    if super::overlay::probe(root).is_ok() {
        DriverKind::Overlay
    } else {
        DriverKind::Vfs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_roundtrip() {
        for k in [
            DriverKind::Vfs,
            DriverKind::Overlay,
            DriverKind::Btrfs,
            DriverKind::Devicemapper,
        ] {
            assert_eq!(k.name().parse::<DriverKind>().unwrap(), k);
        }
        assert_eq!(
            "overlay2".parse::<DriverKind>().unwrap(),
            DriverKind::Overlay
        );
        let err = "zfs".parse::<DriverKind>().unwrap_err().to_string();
        assert!(err.contains("zfs") && err.contains("vfs"), "{err}");
    }
}
