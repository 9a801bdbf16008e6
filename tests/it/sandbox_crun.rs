//! The container profile's capabilities against crun's, on the same busybox root. crun's own
//! `crun spec` sample keeps only AUDIT_WRITE, KILL and NET_BIND_SERVICE; engines (Docker,
//! Podman) hand it their default list, so the bundle here lists Docker's defaults and the
//! kernel-visible result (`/proc/self/status`) must be identical. Needs root and crun; skips
//! clearly otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use imgbuild::sandbox::caps::{self, DOCKER_DEFAULT_NAMES};
use imgbuild::sandbox::{Profile, Sandbox, Stdio};

fn busybox_root() -> Option<PathBuf> {
    // A minimal tree of its own (sh and cat), cached beside sandbox_run's full one.
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-busybox-min-root");
    if dest.join("bin/busybox").exists() {
        return Some(dest);
    }
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).ok()?;
    let ok = Command::new("apt-get")
        .args(["download", "busybox-static"])
        .current_dir(work.path())
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    let deb = std::fs::read_dir(work.path())
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))?;
    let root = work.path().join("root");
    Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .ok()?;
    for applet in ["sh", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).ok()?;
    }
    for d in ["etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).ok()?;
    }
    std::fs::rename(&root, &dest)
        .ok()
        .or_else(|| dest.exists().then_some(()))?;
    Some(dest)
}

fn host_quirks() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for rel in [
        "../shared/scripts/host-quirks.sh",
        "../../shared/scripts/host-quirks.sh",
    ] {
        let script = manifest.join(rel);
        if script.exists() {
            let _ = Command::new(&script).output();
            return;
        }
    }
}

fn crun_status(root: &Path, names: &[&str]) -> Result<String, String> {
    let bundle = tempfile::tempdir().map_err(|e| e.to_string())?;
    let st = Command::new("crun")
        .arg("spec")
        .current_dir(bundle.path())
        .status()
        .map_err(|e| format!("crun: {e}"))?;
    if !st.success() {
        return Err("crun spec failed".into());
    }
    let path = bundle.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["/bin/cat", "/proc/self/status"]);
    let list = serde_json::json!(names);
    for set in ["bounding", "effective", "permitted"] {
        cfg["process"]["capabilities"][set] = list.clone();
    }
    cfg["process"]["capabilities"]["inheritable"] = serde_json::json!([]);
    cfg["process"]["capabilities"]["ambient"] = serde_json::json!([]);
    cfg["root"]["path"] = root.to_string_lossy().into_owned().into();
    cfg["root"]["readonly"] = true.into();
    std::fs::write(&path, cfg.to_string()).map_err(|e| e.to_string())?;
    let id = format!("imgbuild-sandbox-crun-{}", std::process::id());
    let out = Command::new("crun")
        .args(["run", "-b"])
        .arg(bundle.path())
        .arg(&id)
        .output()
        .map_err(|e| e.to_string())?;
    let _ = Command::new("crun").args(["delete", "-f", &id]).output();
    if !out.status.success() {
        return Err(format!(
            "crun run failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn container_capabilities_match_crun() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: container_capabilities_match_crun needs root");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set, so this test may not skip (see the SKIP line)"
        );
        return;
    }
    let Some(root) = busybox_root() else {
        eprintln!(
            "SKIP: container_capabilities_match_crun needs the busybox-static test root (Debian mirror)"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set, so this test may not skip (see the SKIP line)"
        );
        return;
    };
    host_quirks();
    let crun = match crun_status(&root, DOCKER_DEFAULT_NAMES) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIP: container_capabilities_match_crun: crun cannot run here: {e}");
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set, so this test may not skip (see the SKIP line)"
            );
            return;
        }
    };
    let ours = Sandbox::new(&root, ["/bin/cat", "/proc/self/status"])
        .profile(Profile::Container)
        .stdout(Stdio::Capture)
        .run()
        .unwrap();
    assert_eq!(ours.code, 0);
    let ours = String::from_utf8_lossy(&ours.stdout).into_owned();
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            caps::status_mask(&ours, field),
            caps::status_mask(&crun, field),
            "{field}: ours vs crun"
        );
    }
    let nnp = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("NoNewPrivs:"))
            .map(str::to_string)
    };
    assert_eq!(nnp(&ours), nnp(&crun));
    if let Ok(sample) = crun_status(
        &root,
        &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
    ) {
        eprintln!(
            "crun's own sample spec CapBnd: {:016x}",
            caps::status_mask(&sample, "CapBnd").unwrap_or(0)
        );
    }
}
