//! The vfs driver: every layer is a complete, independent copy of its parent with its diff
//! applied; a container gets a complete copy of its image's top layer. Slow and large, but it
//! works on any filesystem.

use super::copy::copy_tree;
use super::driver::{Driver, DriverKind, FillLayer};
use super::fsutil::{create_private_dir, remove_any, set_root_attrs};
use super::{ApplyMode, Result, StorageError};
use std::path::{Path, PathBuf};

/// The vfs driver; layers in `<dir>/layers/<id>`, containers in `<dir>/containers/<id>`.
pub struct Vfs {
    layers: PathBuf,
    containers: PathBuf,
}

impl Vfs {
    pub(crate) fn open(dir: &Path) -> Result<Vfs> {
        let v = Vfs {
            layers: dir.join("layers"),
            containers: dir.join("containers"),
        };
        create_private_dir(&v.layers)?;
        create_private_dir(&v.containers)?;
        Ok(v)
    }
}

impl Driver for Vfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Vfs
    }

    fn apply_mode(&self) -> ApplyMode {
        ApplyMode::Apply
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, fill: &mut FillLayer<'_>) -> Result<()> {
        let staging = self.layers.join(format!("{id}.tmp"));
        remove_any(&staging)?;
        let made = match parent {
            Some(p) => copy_tree(&self.layers.join(p), &staging),
            None => std::fs::create_dir(&staging)
                .map_err(|e| StorageError::io(&staging, e))
                .and_then(|()| set_root_attrs(&staging, None)),
        };
        let done = made.and_then(|()| fill(&staging)).and_then(|()| {
            let dest = self.layers.join(id);
            std::fs::rename(&staging, &dest).map_err(|e| StorageError::io(&dest, e))
        });
        if done.is_err() {
            // Best effort: the original error matters more than a failed cleanup.
            let _ = remove_any(&staging);
        }
        done
    }

    fn has_layer(&self, id: &str) -> bool {
        self.layers.join(id).is_dir()
    }

    fn remove_layer(&self, id: &str) -> Result<()> {
        remove_any(&self.layers.join(format!("{id}.tmp")))?;
        remove_any(&self.layers.join(id))
    }

    fn create_rootfs(&self, container: &str, top: &str) -> Result<PathBuf> {
        let dest = self.containers.join(container);
        if let Err(e) = copy_tree(&self.layers.join(top), &dest) {
            let _ = remove_any(&dest);
            return Err(e);
        }
        Ok(dest)
    }

    fn release_rootfs(&self, container: &str) -> Result<()> {
        remove_any(&self.containers.join(container))
    }
}
