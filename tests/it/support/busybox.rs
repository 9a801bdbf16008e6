//! busybox-static from the host's Debian mirror: the package, downloaded once into the target
//! dir, and a root tree made of it once, shared by the sandbox, runtime, store and image tests.

use super::target_tmp;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The busybox-static `.deb` (kept in the target dir between runs), or why it cannot be had
/// (typically: the mirror is unreachable); callers skip then.
pub fn deb() -> Result<&'static Path, String> {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DEB.get_or_init(|| {
        let cache = target_tmp().join("busybox-deb");
        std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
        let find = || {
            std::fs::read_dir(&cache)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("busybox-static_"))
                        && p.extension().is_some_and(|x| x == "deb")
                })
        };
        if let Some(p) = find() {
            return Ok(p);
        }
        let out = Command::new("apt-get")
            .args(["download", "busybox-static"])
            .current_dir(&cache)
            .output()
            .map_err(|e| format!("apt-get: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apt-get download busybox-static failed (mirror unreachable?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        find().ok_or_else(|| "apt-get download left no busybox-static .deb".to_string())
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

/// The busybox root tree (`<target tmp>/busybox-root`, made once and kept): every applet as a
/// link, `/etc/passwd`, `/etc/group`, its own `resolv.conf`, and the usual mount points. An
/// error says why it cannot be had; callers skip then.
pub fn root() -> Result<&'static Path, String> {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dest = target_tmp().join("busybox-root");
        if dest.join("bin/busybox").exists() {
            return Ok(dest);
        }
        build_root(deb()?, &dest)?;
        Ok(dest)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

/// Makes the tree from `deb` beside `dest`, then renames it into place.
fn build_root(deb: &Path, dest: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| e.to_string();
    let work = tempfile::tempdir_in(target_tmp()).map_err(err)?;
    let root = work.path().join("root");
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&root)
        .status()
        .map_err(err)?;
    if !st.success() {
        return Err(format!("dpkg-deb -x {} failed", deb.display()));
    }
    let list = Command::new(root.join("bin/busybox"))
        .arg("--list")
        .output()
        .map_err(err)?;
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link).map_err(err)?;
        }
    }
    for d in ["etc", "proc", "sys", "dev", "root", "tmp", "work"] {
        std::fs::create_dir_all(root.join(d)).map_err(err)?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .map_err(err)?;
    std::fs::write(
        root.join("etc/resolv.conf"),
        "# the root's own resolv.conf\n",
    )
    .map_err(err)?;
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .map_err(err)?;
    std::fs::write(root.join("etc/group"), "root:x:0:\ntty:x:5:\n").map_err(err)?;
    match std::fs::rename(&root, dest) {
        Ok(()) => Ok(()),
        // Another test process made it meanwhile.
        Err(_) if dest.join("bin/busybox").exists() => Ok(()),
        Err(e) => Err(format!("rename to {}: {e}", dest.display())),
    }
}
