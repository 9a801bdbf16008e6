//! A busybox-static root tree built once from the host's Debian mirror (`apt-get download`)
//! and cached in the test target dir; shared by the sandbox and runtime tests.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build the tree into `dest` (atomically: built beside it, then renamed).
pub fn build_busybox_root(dest: &Path) -> Result<(), String> {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).map_err(|e| e.to_string())?;
    let work = tempfile::tempdir_in(tmp).map_err(|e| e.to_string())?;
    let out = Command::new("apt-get")
        .args(["download", "busybox-static"])
        .current_dir(work.path())
        .output()
        .map_err(|e| format!("apt-get: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "apt-get download busybox-static failed (mirror unreachable?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let deb = std::fs::read_dir(work.path())
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("no .deb downloaded")?;
    let root = work.path().join("root");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("dpkg-deb -x failed".into());
    }
    let list = Command::new(root.join("bin/busybox"))
        .arg("--list")
        .output()
        .map_err(|e| e.to_string())?;
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link).map_err(|e| e.to_string())?;
        }
    }
    for d in ["etc", "proc", "sys", "dev", "root", "tmp", "work"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .map_err(|e| e.to_string())?;
    std::fs::write(
        root.join("etc/resolv.conf"),
        "# the root's own resolv.conf\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(root.join("etc/group"), "root:x:0:\ntty:x:5:\n").map_err(|e| e.to_string())?;
    match std::fs::rename(&root, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.join("bin/busybox").exists() => Ok(()),
        Err(e) => Err(format!("rename to {}: {e}", dest.display())),
    }
}

/// The cached tree (`<target tmp>/sandbox-busybox-root`), built on first use. An error says
/// why it cannot be had (typically: the mirror is unreachable); callers skip then.
pub fn cached() -> Result<PathBuf, String> {
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-busybox-root");
    if dest.join("bin/busybox").exists() {
        return Ok(dest);
    }
    build_busybox_root(&dest)?;
    Ok(dest)
}
