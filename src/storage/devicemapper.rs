//! The devicemapper driver's support check. Docker's devicemapper driver keeps layers as
//! dm-thin snapshots in a thin pool; that needs the kernel's device-mapper and its thin-pool
//! target. This module detects them and explains precisely what is missing.

use super::{Result, StorageError};
use std::path::Path;

/// Check that the kernel under `root` (`/` normally; a fake tree in tests) offers dm-thin:
/// device-mapper registered in `/proc/devices` with `/dev/mapper/control`, and the
/// `dm_thin_pool` module in `/sys/module`.
pub(crate) fn check_support(root: &Path) -> Result<()> {
    let devices = root.join("proc/devices");
    let has_dm = std::fs::read_to_string(&devices).is_ok_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("device-mapper"))
    });
    let control = root.join("dev/mapper/control");
    let thin = root.join("sys/module/dm_thin_pool");
    if !has_dm || !control.exists() {
        return Err(StorageError::DeviceMapper(format!(
            "this kernel has no device-mapper ({} lists no 'device-mapper', {} {}); \
             use overlay, btrfs or vfs",
            devices.display(),
            control.display(),
            if control.exists() {
                "exists"
            } else {
                "is missing"
            }
        )));
    }
    if !thin.exists() {
        return Err(StorageError::DeviceMapper(format!(
            "the kernel has device-mapper but no thin-pool target ({} is missing; \
             try 'modprobe dm_thin_pool'); use overlay, btrfs or vfs",
            thin.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_missing_and_present_dm_thin() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("proc")).unwrap();
        std::fs::write(r.join("proc/devices"), "Block devices:\n  7 loop\n").unwrap();
        let e = check_support(r).unwrap_err().to_string();
        assert!(e.contains("no device-mapper"), "{e}");

        std::fs::write(
            r.join("proc/devices"),
            "Block devices:\n253 device-mapper\n",
        )
        .unwrap();
        std::fs::create_dir_all(r.join("dev/mapper")).unwrap();
        std::fs::write(r.join("dev/mapper/control"), "").unwrap();
        let e = check_support(r).unwrap_err().to_string();
        assert!(e.contains("no thin-pool target"), "{e}");

        std::fs::create_dir_all(r.join("sys/module/dm_thin_pool")).unwrap();
        check_support(r).unwrap();
    }
}
