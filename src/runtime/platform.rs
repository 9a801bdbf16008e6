//! Whether this host can execute another architecture's programs: a `binfmt_misc` handler
//! (qemu-user, registered by Debian's `qemu-user-static`) that is enabled.

use super::{Result, RuntimeError};
use std::path::Path;

/// Whether the `binfmt_misc` mounted at `dir` has an enabled handler for `architecture`.
pub fn binfmt_enabled(dir: &Path, architecture: &str) -> bool {
    let on =
        |p: &Path| std::fs::read_to_string(p).is_ok_and(|t| t.lines().next() == Some("enabled"));
    on(&dir.join("status")) && on(&dir.join(crate::binfmt::qemu_name(architecture)))
}

/// Refuse a foreign `architecture` (OCI name) this host cannot execute, naming the fix: a probe
/// program of the architecture is run ([`crate::binfmt`]), else, for an architecture without
/// one, an enabled handler of qemu's name is looked for.
pub fn check_binfmt(architecture: &str) -> Result<()> {
    let refuse = |reason: String| RuntimeError::InvalidOption {
        option: "--platform",
        reason,
    };
    let platform = crate::image::platform::Platform {
        os: "linux".to_string(),
        architecture: architecture.to_string(),
        variant: None,
    };
    let Some(arch) = platform.kiwi_arch() else {
        let dir = Path::new(crate::binfmt::BINFMT_DIR);
        if binfmt_enabled(dir, architecture) {
            return Ok(());
        }
        return Err(refuse(format!(
            "this host cannot execute {architecture} programs: no enabled binfmt_misc handler \
             for it in {} (install qemu-user-static, which registers one)",
            dir.display()
        )));
    };
    let scratch = tempfile::tempdir().map_err(|e| refuse(format!("a probe directory: {e}")))?;
    crate::binfmt::probe(arch, scratch.path()).map_err(|e| refuse(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_must_be_registered_and_enabled() {
        let t = tempfile::tempdir().unwrap();
        assert!(!binfmt_enabled(t.path(), "arm64"));
        std::fs::write(t.path().join("status"), "enabled\n").unwrap();
        std::fs::write(t.path().join("qemu-aarch64"), "disabled\ninterpreter /x\n").unwrap();
        assert!(!binfmt_enabled(t.path(), "arm64"));
        std::fs::write(t.path().join("qemu-aarch64"), "enabled\ninterpreter /x\n").unwrap();
        assert!(binfmt_enabled(t.path(), "arm64"));
        assert!(!binfmt_enabled(t.path(), "s390x"));
    }
}
