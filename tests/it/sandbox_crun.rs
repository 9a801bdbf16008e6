//! The container profile's capabilities against crun's, on the same busybox root. crun's own
//! `crun spec` sample keeps only `AUDIT_WRITE`, KILL and `NET_BIND_SERVICE`; engines (Docker,
//! Podman) hand it their default list, so the bundle here lists Docker's defaults and the
//! kernel-visible result (`/proc/self/status`) must be identical. Needs root and crun; skips
//! clearly otherwise.

use std::path::Path;
use std::process::Command;

use crate::support::{busybox, host_quirks, in_process_sandbox, root_or_skip, skip};
use imgbuild::sandbox::caps::{self, DOCKER_DEFAULT_NAMES};
use imgbuild::sandbox::{Profile, Sandbox, Stdio};

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
    let test = "container_capabilities_match_crun";
    if !root_or_skip(test) {
        return;
    }
    let root = match busybox::root() {
        Ok(r) => r,
        Err(e) => {
            skip(format_args!(
                "{test} needs the busybox-static test root (Debian mirror): {e}"
            ));
            return;
        }
    };
    host_quirks();
    let _s = in_process_sandbox();
    let crun = match crun_status(root, DOCKER_DEFAULT_NAMES) {
        Ok(s) => s,
        Err(e) => {
            skip(format_args!(
                "container_capabilities_match_crun: crun cannot run here: {e}"
            ));
            return;
        }
    };
    let ours = Sandbox::new(root, ["/bin/cat", "/proc/self/status"])
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
        root,
        &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
    ) {
        eprintln!(
            "crun's own sample spec CapBnd: {:016x}",
            caps::status_mask(&sample, "CapBnd").unwrap_or(0)
        );
    }
}
