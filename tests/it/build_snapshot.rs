//! The package-stage snapshot cache end to end: a `config.sh` edit restores the package stage
//! and gives the bytes of a cold build of the edited description; a changed package (lock)
//! misses the snapshot; a corrupt snapshot is detected, replaced, and the build is unchanged;
//! concurrent builds share one snapshot; `cache ls|prune` show and remove them.

use crate::support::build::{build, imgbuild, minimal_build, only_file_with_suffix};
use crate::support::rpm_repo::{self, RpmRepo};
use crate::support::{heavy, ok, run, scratch};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn restored(log: &str) -> bool {
    log.contains("package stage restored from snapshot")
}

fn kept(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.strip_prefix("imgbuild: package stage kept as snapshot "))
        .map(|k| k.split_whitespace().next().unwrap_or_default().to_string())
}

fn manifest(target: &Path) -> String {
    let digest = crate::support::build::result_json(target)["manifest_digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(digest.starts_with("sha256:"), "{}", target.display());
    digest
}

fn write_config_sh(desc: &Path, body: &str) {
    let p = desc.join("config.sh");
    fs::write(&p, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

fn file_bytes(target: &Path, suffix: &str) -> Vec<u8> {
    fs::read(only_file_with_suffix(target, suffix)).unwrap()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn a_config_sh_edit_restores_the_package_stage_with_the_bytes_of_a_cold_build() {
    let test = "a_config_sh_edit_restores_the_package_stage_with_the_bytes_of_a_cold_build";
    let Some(shared) = minimal_build(test) else {
        return;
    };
    let _h = heavy();
    let t = scratch("snapshot-edit");
    // The shared build's warm package cache, without its snapshots: this test saves its own.
    let cache = t.path().join("cache");
    ok(std::process::Command::new("cp")
        .arg("-a")
        .arg(&shared.cache)
        .arg(&cache));
    let _ = fs::remove_dir_all(cache.join("snapshots"));
    let desc = t.path().join("desc");
    ok(std::process::Command::new("cp")
        .arg("-a")
        .arg(crate::support::description("debian-minimal"))
        .arg(&desc));
    let lock = ["--no-lock"];

    write_config_sh(&desc, "echo first > /etc/edited");
    let first = build(
        t.path(),
        &desc,
        &t.path().join("a"),
        &cache,
        t.path(),
        &lock,
    );
    let log = stderr(&first);
    assert!(!restored(&log), "{log}");
    let key = kept(&log).unwrap_or_else(|| panic!("no snapshot kept:\n{log}"));
    assert!(log.contains("imgbuild: bootstrap ..."), "{log}");

    // The edit: the package stage comes from the snapshot; only what follows it runs.
    write_config_sh(
        &desc,
        "echo second > /etc/edited\nrm -f /usr/bin/which.debianutils",
    );
    let edited = t.path().join("b");
    let second = build(t.path(), &desc, &edited, &cache, t.path(), &lock);
    let log = stderr(&second);
    assert!(restored(&log), "{log}");
    assert!(log.contains(&format!("snapshot {key}")), "{log}");
    for stage in ["download", "bootstrap", "install"] {
        assert!(
            !log.contains(&format!("imgbuild: {stage} ...")),
            "{stage} ran:\n{log}"
        );
    }

    // A cold build of the edited description without the snapshot: the same bytes.
    let cold = t.path().join("c");
    let third = build(
        t.path(),
        &desc,
        &cold,
        &cache,
        t.path(),
        &["--no-lock", "--no-snapshot"],
    );
    let log = stderr(&third);
    assert!(!restored(&log) && kept(&log).is_none(), "{log}");
    assert!(log.contains("imgbuild: bootstrap ..."), "{log}");
    assert_eq!(manifest(&edited), manifest(&cold));
    assert_eq!(
        file_bytes(&edited, ".docker.tar"),
        file_bytes(&cold, ".docker.tar")
    );
    assert_ne!(manifest(&edited), manifest(&t.path().join("a")));

    let listed = run(imgbuild(t.path())
        .args(["cache", "ls", "--no-trunc", "--cache-dir"])
        .arg(&cache));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains(&key) && listed.contains("debian-minimal 13.0.0 amd64"),
        "{listed}"
    );
}

/// The rpm build test's zypper description of the fixture repository, with `epoch-pkg` the
/// one image package.
fn rpm_description(dir: &Path, repo: &RpmRepo) -> PathBuf {
    let dir = crate::rpm_build::description(dir, repo, &["filesystem", "busybox"], &["epoch-pkg"]);
    write_config_sh(&dir, "echo one > /etc/marker");
    dir
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

/// The lock with its `name` entry pointing at the fixture rpm `rpm` instead.
fn relock(lock: &Path, name: &str, repo: &RpmRepo, rpm: &Path) {
    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(lock).unwrap()).unwrap();
    let evr = run(std::process::Command::new("rpm")
        .args([
            "-qp",
            "--nosignature",
            "--qf",
            "%{EPOCH}:%{VERSION}-%{RELEASE}",
        ])
        .arg(rpm));
    let entry = json["packages"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the lock"));
    entry["version"] = evr.into();
    entry["filename"] = rpm
        .strip_prefix(&repo.dir)
        .unwrap()
        .display()
        .to_string()
        .into();
    entry["sha256"] = sha256_hex(rpm).into();
    entry["size"] = fs::metadata(rpm).unwrap().len().into();
    fs::write(lock, serde_json::to_string_pretty(&json).unwrap() + "\n").unwrap();
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root, rpmbuild, createrepo_c, zypper, dnf and busybox-static"
)]
fn a_changed_lock_misses_a_corrupt_snapshot_is_rebuilt_and_concurrent_builds_share_one() {
    let repo = rpm_repo::shared();
    let t = scratch("snapshot-rpm");
    let desc = rpm_description(&t.path().join("desc"), repo);
    let cache = t.path().join("cache");
    let lock = desc.join("imgbuild.lock");
    ok(imgbuild(t.path())
        .arg("lock")
        .arg(&desc)
        .arg("--cache-dir")
        .arg(&cache));
    let go = |target: &str, extra: &[&str]| {
        let target = t.path().join(target);
        let o = build(t.path(), &desc, &target, &cache, t.path(), extra);
        (target, stderr(&o))
    };

    let (a, log) = go("a", &[]);
    let key = kept(&log).unwrap_or_else(|| panic!("{log}"));
    write_config_sh(&desc, "echo two > /etc/marker");
    let (b, log) = go("b", &[]);
    assert!(restored(&log), "{log}");

    // A different package in the lock: the snapshot does not apply; a new one is kept.
    let saved_lock = fs::read(&lock).unwrap();
    relock(&lock, "epoch-pkg", repo, &repo.rpms["epoch-pkg-e1"]);
    let (c, log) = go("c", &[]);
    assert!(!restored(&log), "{log}");
    let other = kept(&log).unwrap_or_else(|| panic!("{log}"));
    assert_ne!(other, key);
    let listed = fs::read_to_string(only_file_with_suffix(&c, ".packages")).unwrap();
    assert!(listed.contains("epoch-pkg|1|9.0|1|"), "{listed}");
    assert_ne!(manifest(&c), manifest(&b));
    fs::write(&lock, &saved_lock).unwrap();

    // The first snapshot damaged: detected, removed, the packages installed afresh, the
    // snapshot kept anew, and the image is the one the intact snapshot gave.
    let full = |k: &str| {
        let listed = run(imgbuild(t.path())
            .args([
                "cache",
                "ls",
                "--no-trunc",
                "--format",
                "json",
                "--cache-dir",
            ])
            .arg(&cache));
        let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].as_str().unwrap().to_string())
            .find(|full| full.starts_with(k))
    };
    let snap = cache.join("snapshots").join(full(&key).unwrap());
    let busybox = snap.join("tree/usr/bin/busybox");
    let mut bytes = fs::read(&busybox).unwrap();
    bytes[4096] ^= 0x55;
    fs::write(&busybox, bytes).unwrap();
    let (d, log) = go("d", &[]);
    assert!(
        log.contains("is corrupt") && log.contains("usr/bin/busybox"),
        "{log}"
    );
    assert!(!restored(&log), "{log}");
    assert_eq!(kept(&log).as_deref(), Some(key.as_str()), "{log}");
    assert_eq!(manifest(&d), manifest(&b));
    let (_, log) = go("e", &[]);
    assert!(restored(&log), "the replaced snapshot is used:\n{log}");

    // Two builds at once on an empty snapshot cache: both succeed with the same bytes, and
    // one snapshot is kept, with no work directory left behind.
    ok(imgbuild(t.path())
        .args(["cache", "prune", "--cache-dir"])
        .arg(&cache));
    assert_eq!(full(""), None);
    let spawn = |target: &str| {
        imgbuild(t.path())
            .current_dir(t.path())
            .arg("build")
            .arg(&desc)
            .arg("--target-dir")
            .arg(t.path().join(target))
            .arg("--cache-dir")
            .arg(&cache)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn("f1"), spawn("f2"));
    for p in [p1, p2] {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(manifest(&t.path().join("f1")), manifest(&b));
    assert_eq!(manifest(&t.path().join("f2")), manifest(&b));
    let names: Vec<String> = fs::read_dir(cache.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "one snapshot and the locks: {names:?}");
    assert!(full(&key).is_some());
    let _ = a;
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn on_btrfs_a_snapshot_shares_its_extents_with_the_root_it_restores() {
    use imgbuild::rootfs::snapshot_cache::{Saved, SnapshotCache};
    let fs_ = crate::support::storage::BtrfsLoop::new().unwrap();
    let src = fs_.mnt.join("src");
    fs::create_dir_all(src.join("usr/lib")).unwrap();
    for i in 0..8u8 {
        // Incompressible-ish, distinct content: 8 MiB in all.
        let data: Vec<u8> = (0..1u32 << 20)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8 ^ i)
            .collect();
        fs::write(src.join(format!("usr/lib/lib{i}.so")), data).unwrap();
    }
    let cache = SnapshotCache::new(&fs_.mnt.join("cache"));
    let key = "ab".repeat(32);
    assert!(matches!(
        cache.save(&key, &src, "btrfs test", 8).unwrap(),
        Saved::Written(_)
    ));
    let dest = fs_.mnt.join("dest");
    fs::create_dir(&dest).unwrap();
    let restored = cache.restore(&key, &dest).unwrap().expect("restored");
    assert!(restored.cloned, "btrfs clones the contents");
    assert_eq!(restored.bytes, 8 << 20);
    for i in 0..8 {
        let rel = format!("usr/lib/lib{i}.so");
        assert_eq!(
            fs::read(dest.join(&rel)).unwrap(),
            fs::read(src.join(&rel)).unwrap()
        );
    }
    // `btrfs filesystem du`: the restored files' extents are shared, not copies.
    let du = run(std::process::Command::new("btrfs")
        .args(["filesystem", "du", "-s", "--raw"])
        .arg(&dest));
    let line = du.lines().last().unwrap_or_default();
    let cols: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .filter_map(|c| c.parse().ok())
        .collect();
    assert_eq!(cols.len(), 3, "{du}");
    let (total, exclusive) = (cols[0], cols[1]);
    assert!(total >= 8 << 20 && exclusive < 1 << 20, "{du}");
}
