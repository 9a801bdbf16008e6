//! A loop device attached for one test (1 MiB of zeros in /var/tmp), detached on drop, also
//! when the test fails.

use std::path::Path;
use std::process::Command;

/// An attached loop device and its backing file.
pub struct LoopDevice {
    dev: String,
    file: tempfile::NamedTempFile,
}

impl LoopDevice {
    /// `losetup -f --show` on a fresh 1 MiB file; panics when that fails.
    pub fn attach() -> LoopDevice {
        let file = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        file.as_file().set_len(1 << 20).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {out:?}");
        LoopDevice {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            file,
        }
    }

    /// The backing file (what a write through the device would change).
    pub fn backing(&self) -> &Path {
        self.file.path()
    }

    /// Major and minor number of the device.
    pub fn numbers(&self) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&self.dev).unwrap().rdev();
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}
