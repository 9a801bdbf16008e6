//! Every shape of real-world KIWI container description for zypper and dnf
//! (`tests/fixtures/rpm-descriptions`, one description per shape found in 92 surveyed ones)
//! either resolves against the fixture repository (`imgbuild lock`) or is refused with a clear
//! message naming what is missing — never "not supported yet" for what the RPM engine does.

use crate::support::build::imgbuild;
use crate::support::rpm_repo::{self, RpmRepo};
use crate::support::{repo_dir, run, scratch};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

/// What `imgbuild lock` must do with a fixture.
enum Expect {
    /// Resolve, writing a lock that holds these packages among others.
    Plans(&'static [&'static str]),
    /// Fail (exit 1) with every one of these in its message.
    Refused(&'static [&'static str]),
}

use Expect::{Plans, Refused};

/// fixture, profiles to resolve it for (none: the default selection), expectation.
const CASES: &[(&str, &[&str], Expect)] = &[
    (
        "01-zypper-bootstrap-only",
        &[],
        Plans(&["busybox", "filesystem"]),
    ),
    ("02-zypper-bootstrap-delete", &[], Plans(&["busybox"])),
    ("03-zypper-bootstrap-image-delete", &[], Plans(&["busybox"])),
    (
        "04-zypper-users-locale-nosigcheck",
        &[],
        Plans(&["busybox"]),
    ),
    (
        "05-zypper-obs-derived-obsrepositories",
        &[],
        Refused(&["%RELEASE%", "Open Build Service"]),
    ),
    (
        "06-zypper-obs-obsrepositories",
        &[],
        Refused(&["obsrepositories:/", "Open Build Service", "config.kiwi:"]),
    ),
    (
        "07-zypper-obs-project-paths",
        &[],
        Refused(&["obs://", "Open Build Service"]),
    ),
    (
        "08-zypper-derived-local-base",
        &[],
        Plans(&["extra-tool", "rich-a"]),
    ),
    (
        "09-zypper-bootstrap-plusrecommended",
        &[],
        Plans(&["rich-a", "extra-tool"]),
    ),
    (
        "10-zypper-namedcollection-pattern",
        &[],
        Plans(&["pattern-minimal"]),
    ),
    (
        "11-dnf5-oci-profiles-include",
        &["RpmBase"],
        Plans(&["busybox"]),
    ),
    (
        "11-dnf5-oci-profiles-include",
        &["RpmMinimal"],
        Plans(&["busybox"]),
    ),
    (
        "11-dnf5-oci-profiles-include",
        &["RpmInit"],
        Plans(&["busybox"]),
    ),
    (
        "12-dnf5-oci-toolbox-uninstall",
        &["RpmToolbox"],
        Plans(&["busybox"]),
    ),
    (
        "13-dnf4-namedcollection-group",
        &["RpmContainer"],
        Refused(&["namedCollection", "comps", "config.kiwi:"]),
    ),
    (
        "14-dnf5-metalink-mirrorlist",
        &[],
        Refused(&["sourcetype", "metalink"]),
    ),
    ("15-dnf5-releasever-basearch", &[], Plans(&["busybox"])),
    (
        "16-zypper-profiled-container-archive",
        &["RpmContainer"],
        Plans(&["busybox"]),
    ),
    ("17-zypper-this-relative-repo", &[], Plans(&["busybox"])),
    ("18-dnf-two-repos-priority", &[], Plans(&["busybox"])),
    ("19-zypper-repository-attributes", &[], Plans(&["busybox"])),
    ("20-zypper-signed-repository", &[], Plans(&["busybox"])),
    (
        "21-dnf4-collectionmodule",
        &[],
        Refused(&["collectionModule", "modular", "config.kiwi:"]),
    ),
    (
        "22-zypper-product-ignore",
        &[],
        Refused(&["product() =", "config.kiwi:"]),
    ),
    ("23-zypper-containerconfig-full", &[], Plans(&["busybox"])),
    (
        "24-zypper-obs-label-helper",
        &[],
        Refused(&["suse_label_helper:add_prefix", "Open Build Service"]),
    ),
    ("25-dnf5-docker-basic", &[], Plans(&["busybox"])),
    ("26-microdnf-minimal", &[], Plans(&["busybox"])),
];

/// Copies `fixture` into `dir` with its placeholders filled in for `repo`, and the files the
/// fixture README says the test provides.
fn materialise(fixture: &str, dir: &Path, repo: &RpmRepo, tree: &Path, base: &str) -> PathBuf {
    let src = repo_dir()
        .join("tests/fixtures/rpm-descriptions")
        .join(fixture);
    let dst = dir.join(fixture);
    fs::create_dir_all(&dst).unwrap();
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            run(std::process::Command::new("cp")
                .arg("-a")
                .arg(e.path())
                .arg(&to));
            continue;
        }
        let bytes = fs::read(e.path()).unwrap();
        match String::from_utf8(bytes.clone()) {
            Ok(text) => {
                let text = text
                    .replace("/IMGBUILD_RPM_REPO", &tree.display().to_string())
                    .replace("/IMGBUILD_RPM_KEY", &repo.key.display().to_string())
                    .replace("oci-archive:IMGBUILD_RPM_BASE", base);
                fs::write(&to, text).unwrap();
            }
            Err(_) => fs::write(&to, bytes).unwrap(),
        }
        let mode = fs::metadata(e.path()).unwrap().permissions();
        fs::set_permissions(&to, mode).unwrap();
    }
    // `this://release` leads to the repository.
    if fixture.starts_with("17-") {
        std::os::unix::fs::symlink(&repo.dir, dst.join("release")).unwrap();
    }
    dst
}

/// A directory standing for the repository at the paths the fixtures name: the repository
/// itself, and `15/<arch>` leading to it for `$releasever/$basearch`.
fn repository_tree(dir: &Path, repo: &RpmRepo) -> PathBuf {
    let tree = dir.join("repo-tree");
    fs::create_dir_all(tree.join("15")).unwrap();
    for e in fs::read_dir(&repo.dir).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), tree.join(e.file_name())).unwrap();
    }
    std::os::unix::fs::symlink(&repo.dir, tree.join("15").join(std::env::consts::ARCH)).unwrap();
    tree
}

fn lock(scratch_dir: &Path, desc: &Path, profiles: &[&str], key: &Path, out: &Path) -> Output {
    let mut c = imgbuild(scratch_dir);
    c.arg("lock")
        .arg(desc)
        .arg("--cache-dir")
        .arg(scratch_dir.join("cache"))
        .arg("--lock")
        .arg(out)
        .arg("--signing-key")
        .arg(key);
    for p in profiles {
        c.args(["--profile", p]);
    }
    c.output().unwrap()
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn every_surveyed_description_shape_resolves_or_is_refused_clearly() {
    let repo = rpm_repo::shared();
    let t = scratch("rpm-descriptions");
    let tree = repository_tree(t.path(), repo);
    // Fixture 08 derives from a local base: an image of fixture 01.
    let base_desc = materialise(
        "01-zypper-bootstrap-only",
        &t.path().join("base"),
        repo,
        &tree,
        "",
    );
    let base_out = t.path().join("base-out");
    run(imgbuild(t.path())
        .arg("build")
        .arg(&base_desc)
        .arg("--target-dir")
        .arg(&base_out)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .arg("--signing-key")
        .arg(&repo.key)
        .arg("--no-lock"));
    let base_archive = crate::support::build::only_file_with_suffix(&base_out, ".docker.tar");
    let base = format!("docker-archive:{}", base_archive.display());

    let mut failures = Vec::new();
    for (i, (fixture, profiles, expect)) in CASES.iter().enumerate() {
        let dir = t.path().join(format!("case-{i}"));
        let desc = materialise(fixture, &dir, repo, &tree, &base);
        let out = dir.join("packages.lock");
        let o = lock(t.path(), &desc, profiles, &repo.key, &out);
        let said = String::from_utf8_lossy(&o.stderr).into_owned();
        let label = format!("{fixture} {profiles:?}");
        if said.contains("not supported yet") && matches!(expect, Plans(_)) {
            failures.push(format!("{label}: says \"not supported yet\":\n{said}"));
            continue;
        }
        match expect {
            Plans(names) => {
                if !o.status.success() {
                    failures.push(format!("{label}: did not resolve:\n{said}"));
                    continue;
                }
                let text = fs::read_to_string(&out).unwrap_or_default();
                for n in *names {
                    if !text.contains(&format!("\"name\": \"{n}\"")) {
                        failures.push(format!("{label}: {n} not in the lock:\n{text}"));
                    }
                }
            }
            Refused(words) => {
                if o.status.code() != Some(1) {
                    failures.push(format!(
                        "{label}: not refused (exit {:?}):\n{said}",
                        o.status
                    ));
                    continue;
                }
                for w in *words {
                    if !said.contains(w) {
                        failures.push(format!("{label}: the refusal does not say {w:?}:\n{said}"));
                    }
                }
                if out.exists() {
                    failures.push(format!("{label}: a refused description left a lock"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The signed fixture with a key that did not sign it: refused, naming the repository.
    let dir = t.path().join("wrong-key");
    let desc = materialise("20-zypper-signed-repository", &dir, repo, &tree, &base);
    let other = t.path().join("other.asc");
    fs::write(&other, wrong_key(t.path())).unwrap();
    let config = desc.join("config.kiwi");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace(
            &repo.key.display().to_string(),
            &other.display().to_string(),
        ),
    )
    .unwrap();
    let mut c = imgbuild(t.path());
    let o = c
        .arg("lock")
        .arg(&desc)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .arg("--lock")
        .arg(dir.join("packages.lock"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("repomd.xml"), "{said}");
    assert!(!dir.join("packages.lock").exists());
}

/// An armored public key that did not sign the fixture.
fn wrong_key(dir: &Path) -> Vec<u8> {
    let home = dir.join("gnupg-other");
    fs::create_dir_all(&home).unwrap();
    let gpg = |args: &[&str]| {
        let o = std::process::Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    gpg(&[
        "--quick-gen-key",
        "other <other@test.invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    let key = gpg(&["--armor", "--export", "other@test.invalid"]);
    let _ = std::process::Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "all"])
        .status();
    key
}
