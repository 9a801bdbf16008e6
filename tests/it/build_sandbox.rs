//! The build sandbox against hostile hooks: a `config.sh` (as untrusted as any package's
//! maintainer script) tries to change host sysctls, to open a host block device through a node
//! it makes, to see host processes and to mount; every attempt fails and the host is unchanged.
//! Needs root and the Debian mirror (skips otherwise; fails in CI).

use crate::support::build::{can_build, imgbuild, package_cache};
use crate::support::loop_device::LoopDevice;
use crate::support::{description, heavy, ok, scratch};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Writes each value back unchanged, so a sandbox that failed to protect the host changes
/// nothing while the probe still sees that the write went through.
const PROBE: &str = r#"#!/bin/sh
out=/probe.txt
: > $out
for p in vm/swappiness kernel/core_pattern kernel/domainname; do
  v=$(cat /proc/sys/$p)
  (printf '%s\n' "$v" > /proc/sys/$p) 2>/dev/null && echo "$p writable" >> $out || echo "$p refused" >> $out
done
(echo h > /proc/sysrq-trigger) 2>/dev/null && echo "sysrq writable" >> $out || echo "sysrq refused" >> $out
mknod /tmp/blk b MAJOR MINOR 2>/dev/null && echo mknod-ok >> $out || echo mknod-refused >> $out
rm -f /tmp/blk
# A node of the host's device shipped in the tree (here by an archive of the description).
[ -b /srv/blk ] && echo node-present >> $out
dd if=/srv/blk of=/dev/null bs=512 count=1 2>/dev/null && echo block-read >> $out || echo block-read-denied >> $out
dd if=/dev/zero of=/srv/blk bs=512 count=1 conv=notrunc,nocreat 2>/dev/null && echo block-write >> $out || echo block-write-denied >> $out
rm -f /srv/blk
n=0; for d in /proc/[0-9]*; do n=$((n+1)); done; echo "procs $n" >> $out
(mount -t tmpfs none /mnt) 2>/dev/null && echo mount-ok >> $out || echo mount-refused >> $out
grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status >> $out
exit 0
"#;

fn host_processes() -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn build_hook_cannot_write_host_sysctls_open_host_devices_or_see_host_processes() {
    if !can_build("build_hook_cannot_write_host_sysctls_open_host_devices_or_see_host_processes") {
        return;
    }
    let _h = heavy();
    let t = scratch("build-sandbox");
    let desc = t.path().join("desc");
    fs::create_dir_all(&desc).unwrap();
    let lo = LoopDevice::attach();
    let (major, minor) = lo.numbers();
    // An archive carrying a block node of the loop device, unpacked into the root.
    let nodes = t.path().join("nodes");
    fs::create_dir_all(nodes.join("srv")).unwrap();
    nix::sys::stat::mknod(
        &nodes.join("srv/blk"),
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major, minor),
    )
    .unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&nodes)
        .arg("-cf")
        .arg(desc.join("nodes.tar"))
        .arg("srv")
        .status()
        .unwrap();
    assert!(st.success());
    let config = fs::read_to_string(description("debian-minimal").join("config.xml"))
        .unwrap()
        .replace(
            "</image>",
            "<packages type=\"image\"><archive name=\"nodes.tar\"/></packages></image>",
        );
    fs::write(desc.join("config.xml"), config).unwrap();
    let script = PROBE
        .replace("MAJOR", &major.to_string())
        .replace("MINOR", &minor.to_string());
    let hook = desc.join("config.sh");
    fs::write(&hook, script).unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    // The backing file carries a marker a write through the node would destroy.
    fs::write(lo.backing(), b"marker").unwrap();
    let swappiness = fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let core_pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();

    let root = t.path().join("root");
    ok(imgbuild(t.path())
        .arg("prepare")
        .arg(&desc)
        .arg("--root")
        .arg(&root)
        .arg("--cache-dir")
        .arg(package_cache()));
    let probe = fs::read_to_string(root.join("probe.txt")).unwrap();
    for fact in [
        "vm/swappiness refused",
        "kernel/core_pattern refused",
        "kernel/domainname refused",
        "sysrq refused",
        "mknod-refused",
        "node-present",
        "block-read-denied",
        "block-write-denied",
        "mount-refused",
        "CapBnd:\t00000000800000db",
        "NoNewPrivs:\t0",
        "Seccomp:\t2",
    ] {
        assert!(probe.contains(fact), "missing {fact:?} in:\n{probe}");
    }
    let procs: usize = probe
        .lines()
        .find_map(|l| l.strip_prefix("procs "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "the hook sees {procs} processes:\n{probe}");
    assert!(host_processes() > procs);
    assert_eq!(
        fs::read_to_string("/proc/sys/vm/swappiness").unwrap(),
        swappiness
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
    assert!(fs::read(lo.backing()).unwrap().starts_with(b"marker"));
    assert!(!Path::new(&root).join("tmp/blk").exists());
    assert!(!Path::new(&root).join("srv/blk").exists());
}
