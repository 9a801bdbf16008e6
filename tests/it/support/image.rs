//! Shared fixtures for the image tests: a root tree with every kind of file, podman on a
//! private store, and the OCI schema check.

use super::{run, skip};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

pub const EPOCH: u64 = 1_700_000_000;

/// Files every fixture has, without busybox, caps or device nodes (works unprivileged).
pub fn plain_tree(root: &Path) {
    for d in [
        "etc",
        "bin",
        "usr/lib/deep",
        "tmp",
        "run",
        "dev",
        "proc",
        "sys",
        "var/cache/kiwi",
        "image",
        "empty",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/debian_version"), "12.99-imgbuild-test\n").unwrap();
    fs::write(root.join("etc/motd"), "hello\n").unwrap();
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
    fs::write(root.join("etc/hl-a"), "linked content\n").unwrap();
    fs::hard_link(root.join("etc/hl-a"), root.join("etc/hl-b")).unwrap();
    symlink("debian_version", root.join("etc/version-link")).unwrap();
    symlink("/a/".repeat(40) + "target", root.join("etc/long-link")).unwrap();
    let long = "x".repeat(60) + "/" + &"y".repeat(60);
    fs::create_dir_all(root.join("usr/lib/deep").join(&long)).unwrap();
    fs::write(
        root.join("usr/lib/deep")
            .join(&long)
            .join("file-with-a-long-name"),
        "long\n",
    )
    .unwrap();
    fs::write(root.join("tmp/junk"), "junk").unwrap();
    fs::write(root.join("run/pidfile"), "1").unwrap();
    fs::write(root.join("var/cache/kiwi/x"), "cache").unwrap();
    fs::write(root.join("image/config.xml"), "<image/>").unwrap();
    fs::write(root.join(".kconfig"), "").unwrap();
    fs::write(root.join(".profile"), "").unwrap();
    fs::write(root.join("usr/lib/big"), vec![7u8; 3 << 20]).unwrap();
    let mut p = fs::metadata(root.join("tmp")).unwrap().permissions();
    p.set_mode(0o1777);
    fs::set_permissions(root.join("tmp"), p).unwrap();
    nix::unistd::mkfifo(
        &root.join("etc/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    xattr::set(root.join("etc/motd"), "user.imgbuild", b"note").unwrap_or(());
}

/// The full fixture: busybox, a setuid copy, a copy with a file capability, device nodes.
/// Needs root; returns false (after [`skip`]ping `test`) when the mirror is unreachable.
pub fn busybox_tree(root: &Path, test: &str) -> bool {
    let deb = match super::busybox::deb() {
        Ok(d) => d,
        Err(e) => {
            skip(format_args!("{test} needs the Debian mirror: {e}"));
            return false;
        }
    };
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root));
    plain_tree(root);
    let bb = if root.join("bin/busybox").exists() {
        "bin/busybox"
    } else {
        "usr/bin/busybox"
    };
    if bb != "bin/busybox" {
        fs::copy(root.join(bb), root.join("bin/busybox")).unwrap();
    }
    for app in ["sh", "cat", "stat", "ls", "grep", "id"] {
        symlink("busybox", root.join("bin").join(app)).unwrap();
    }
    fs::copy(root.join("bin/busybox"), root.join("bin/suidbox")).unwrap();
    fs::set_permissions(root.join("bin/suidbox"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::copy(root.join("bin/busybox"), root.join("bin/capbox")).unwrap();
    run(Command::new("setcap")
        .arg("cap_net_bind_service+ep")
        .arg(root.join("bin/capbox")));
    // busybox picks the applet from argv[0]: a `grep` link that runs the capability copy.
    fs::create_dir(root.join("capbin")).unwrap();
    symlink("../bin/capbox", root.join("capbin/grep")).unwrap();
    run(Command::new("mknod")
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"]));
    run(Command::new("mknod")
        .arg(root.join("etc/zero"))
        .args(["c", "1", "5"]));
    true
}

/// `podman` on a private store under `store` (vfs, no systemd, no events), so tests leave no trace.
pub fn podman(store: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("runroot"))
        // Its own tmpdir too: `system reset` of another store would remove the shared default.
        .arg("--tmpdir")
        .arg(store.join("tmp"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ]);
    c
}

/// A private podman store, reset and removed on drop (also when the test fails).
pub struct PodmanStore(pub std::path::PathBuf);
impl Drop for PodmanStore {
    fn drop(&mut self) {
        let _ = podman(&self.0)
            .args(["system", "reset", "--force"])
            .output();
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Validates the JSON document `doc` against `schema` from the OCI image-spec schemas
/// (python3-jsonschema); panics with the violations.
pub fn validate_schema(schema: &str, doc: &Path) {
    let dir = ["../shared", "../../shared"]
        .iter()
        .map(|s| {
            super::repo_dir()
                .join(s)
                .join("corpus/oci-image-spec-schemas")
        })
        .find(|d| d.exists())
        .expect("the OCI image-spec schemas under ../shared/corpus");
    let script = r#"
import json, sys, os
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
d = sys.argv[1]
res = []
for f in os.listdir(d):
    if f.endswith('.json'):
        s = json.load(open(os.path.join(d, f)))
        r = Resource(contents=s, specification=DRAFT4)
        res.append(("https://opencontainers.org/schema/image/" + f, r))
        if 'id' in s: res.append((s['id'], r))
reg = Registry().with_resources(res)
schema = json.load(open(os.path.join(d, sys.argv[2])))
v = Draft4Validator(schema, registry=reg)
errs = list(v.iter_errors(json.load(open(sys.argv[3]))))
for e in errs: print(e.message, list(e.path))
sys.exit(1 if errs else 0)
"#;
    run(Command::new("python3")
        .args(["-c", script])
        .arg(&dir)
        .arg(schema)
        .arg(doc));
}
