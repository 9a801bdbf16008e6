//! The production layer applier: the crate's confined tar extraction.

use super::{ApplyError, ApplyMode, LayerApplier};
use crate::confine::{self, Root, UnpackOptions, Whiteouts};
use std::io::Read;
use std::path::Path;

/// Unpacks layers with [`confine::unpack`], the same safe extraction the package stage uses:
/// every write is resolved inside the layer directory, and entries that climb out (`..`, writes
/// through a symlink, hardlinks to outside) are refused with an error naming them.
///
/// Layer semantics as Docker applies them: a directory entry replaces a symlink of a lower
/// layer, directory entries update existing directories, owners are kept when running as root,
/// and whiteouts are applied (vfs, btrfs) or translated to overlayfs form (overlay).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfinedApplier;

impl LayerApplier for ConfinedApplier {
    fn apply(
        &self,
        layer: &mut dyn Read,
        target: &Path,
        mode: ApplyMode,
    ) -> Result<(), ApplyError> {
        let root = Root::open(target)?;
        let opts = UnpackOptions {
            whiteouts: match mode {
                ApplyMode::Apply => Whiteouts::Apply,
                ApplyMode::OverlayFs => Whiteouts::OverlayFs,
            },
            keep_directory_symlinks: false,
            update_existing_dirs: true,
            ..UnpackOptions::default()
        };
        confine::unpack(&root, &mut *layer, &opts)?;
        Ok(())
    }
}
