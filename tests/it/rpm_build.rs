//! A KIWI description for zypper (rpm-md repository, bootstrap and image packages, config.sh,
//! containerconfig) built by imgbuild from the signed fixture repository: the installed set is
//! the one zypper chooses for the same request, the rpm database is rpm's own (`rpm -qa`,
//! `rpm -Va`), scriptlets ran in order with their users, the image runs in podman, the lock
//! reproduces the same bytes, and hostile or broken input is refused with nothing left behind.

use crate::support::build::imgbuild;
use crate::support::image::{PodmanStore, podman};
use crate::support::rpm_repo::{self, RpmRepo};
use crate::support::{host_quirks, run, scratch};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BOOTSTRAP: [&str; 2] = ["filesystem", "busybox"];
const IMAGE: [&str; 5] = [
    "with-scripts",
    "rich-a",
    "new-tool",
    "epoch-pkg",
    "account-tools",
];

/// Writes a zypper description for `repo` into `dir` with these package sections, and a
/// config.sh that leaves a marker; `<users>` when the image packages bring the account tools.
pub(crate) fn description(
    dir: &Path,
    repo: &RpmRepo,
    bootstrap: &[&str],
    image: &[&str],
) -> PathBuf {
    let users = if image.contains(&"account-tools") {
        "    <users>\n        <user name=\"app\" id=\"1200\" groups=\"app\" home=\"/srv/app\" shell=\"/bin/sh\" password=\"!\"/>\n    </users>\n"
    } else {
        ""
    };
    fs::create_dir_all(dir).unwrap();
    let list = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("        <package name=\"{n}\"/>\n"))
            .collect()
    };
    let image_section = if image.is_empty() {
        String::new()
    } else {
        format!(
            "    <packages type=\"image\">\n{}    </packages>\n",
            list(image)
        )
    };
    let xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="7.4" name="rpm-test">
    <description type="system">
        <author>imgbuild tests</author>
        <contact>tests@example.invalid</contact>
        <specification>zypper image from an rpm-md repository</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>zypper</packagemanager>
        <rpm-excludedocs>true</rpm-excludedocs>
        <type image="docker">
            <containerconfig name="rpm-test" tag="latest">
                <entrypoint execute="/usr/bin/busybox">
                    <argument name="sh"/>
                </entrypoint>
            </containerconfig>
        </type>
    </preferences>
    <repository type="rpm-md" alias="fixture">
        <source path="{}">
            <signing key="file://{}"/>
        </source>
    </repository>
{users}    <packages type="bootstrap">
{}    </packages>
{image_section}</image>
"#,
        repo.url(),
        repo.key.display(),
        list(bootstrap),
    );
    fs::write(dir.join("config.kiwi"), xml).unwrap();
    let script = dir.join("config.sh");
    fs::write(
        &script,
        "#!/bin/sh\necho configured > /etc/configured-by-config-sh\n",
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

/// The host's rpm on the database imgbuild writes for an image without rpm of its own.
fn rpm_q(root: &Path) -> Command {
    let mut c = Command::new("rpm");
    c.arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"])
        .env("HOME", "/nonexistent");
    c
}

/// `name-[epoch:]version-release.arch` of every installed package but the imported keys, as
/// the fixture's peer harness lists them.
fn installed(root: &Path) -> Vec<String> {
    let out = run(rpm_q(root).args([
        "-qa",
        "--qf",
        "%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\\n",
    ]));
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with("gpg-pubkey-"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn prepare(scratch_dir: &Path, desc: &Path, root: &Path, cache: &Path, extra: &[&str]) -> Output {
    imgbuild(scratch_dir)
        .arg("prepare")
        .arg(desc)
        .arg("--root")
        .arg(root)
        .arg("--cache-dir")
        .arg(cache)
        .args(extra)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
#[cfg_attr(
    not(all(
        imgbuild_tests_as_root,
        imgbuild_has_rpm_tools,
        imgbuild_has_registry_tools
    )),
    ignore = "needs root, rpmbuild, createrepo_c, zypper, dnf, busybox-static and podman"
)]
fn a_zypper_description_installs_what_zypper_chooses_and_runs_in_podman() {
    let repo = rpm_repo::shared();
    let t = scratch("rpm-build");
    let desc = description(&t.path().join("desc"), repo, &BOOTSTRAP, &IMAGE);
    let root = t.path().join("root");
    let cache = t.path().join("cache");
    let o = prepare(t.path(), &desc, &root, &cache, &["--no-lock"]);
    assert!(o.status.success(), "prepare failed:\n{}", text(&o));

    // The same set zypper installs for the same request from the same repository.
    let request: Vec<&str> = BOOTSTRAP.iter().chain(&IMAGE).copied().collect();
    let zypper = rpm_repo::zypper_choice(repo, &request, false).unwrap();
    let ours = installed(&root);
    assert_eq!(
        ours,
        zypper,
        "imgbuild installed:\n  {}\nzypper installs:\n  {}",
        ours.join("\n  "),
        zypper.join("\n  ")
    );

    // dnf chooses the same for this request (where they differ, zypper is the reference).
    let dnf = rpm_repo::dnf_choice(repo, &request, false).unwrap();
    assert_eq!(ours, dnf, "dnf installs:\n  {}", dnf.join("\n  "));

    // rpm's own database: every file as the headers say, but the account files %pre edits
    // (config files, as after zypper).
    let verify = rpm_q(&root).arg("-Va").output().unwrap();
    let changed: BTreeSet<String> = String::from_utf8_lossy(&verify.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    let expected: BTreeSet<String> = ["/etc/group", "/etc/passwd", "/etc/shadow"]
        .map(String::from)
        .into();
    assert_eq!(
        changed,
        expected,
        "rpm -Va:\n{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // Scriptlets ran, in order: %pre made the account the package's file belongs to.
    let marks = root.join("var/lib/with-scripts");
    for m in ["pre-ran", "post-ran", "posttrans-ran"] {
        assert!(marks.join(m).exists(), "{m} missing");
    }
    assert_eq!(
        fs::read_to_string(marks.join("post-ran")).unwrap().trim(),
        "1"
    );
    let owned = fs::metadata(marks.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (480, 480));
    assert_eq!(
        fs::read_to_string(root.join("etc/configured-by-config-sh")).unwrap(),
        "configured\n"
    );
    // <users>: made with the image's own account tools, as KIWI makes them.
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("app:x:1200:") && l.ends_with(":/srv/app:/bin/sh")),
        "{passwd}"
    );
    assert_eq!(fs::metadata(root.join("srv/app")).unwrap().uid(), 1200);
    assert!(
        !root.join("var/tmp").exists()
            || fs::read_dir(root.join("var/tmp")).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("rpm-tmp")),
        "scriptlet files left in /var/tmp"
    );

    // The image: KIWI's rpm `.packages`, and it runs.
    let target = t.path().join("out");
    run(imgbuild(t.path())
        .arg("create")
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(&target));
    let packages = crate::support::build::only_file_with_suffix(&target, ".packages");
    let listed = fs::read_to_string(packages).unwrap();
    assert!(
        listed.contains("epoch-pkg|2|1.0|1|noarch|(none)|MIT\n")
            && listed.contains("filesystem|(none)|1.0|1|"),
        "{listed}"
    );
    let archive = crate::support::build::only_file_with_suffix(&target, ".docker.tar");
    let short = tempfile::tempdir().unwrap();
    let store = PodmanStore(short.path().join("p"));
    run(podman(&store.0).arg("load").arg("-i").arg(&archive));
    let out = run(podman(&store.0)
        .args(["run", "--rm", "--network=none"])
        .args(host_quirks())
        .args([
            "--user",
            "app",
            "rpm-test:latest",
            "-c",
            "cat /var/lib/with-scripts/post-ran /etc/configured-by-config-sh; id -u",
        ]));
    assert_eq!(out, "1\nconfigured\n1200\n");
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn a_failing_post_fails_the_build_naming_the_package_and_leaves_no_root() {
    let repo = rpm_repo::shared();
    let t = scratch("rpm-fails-post");
    let desc = description(&t.path().join("desc"), repo, &BOOTSTRAP, &["fails-post"]);
    let root = t.path().join("root");
    let o = prepare(
        t.path(),
        &desc,
        &root,
        &t.path().join("cache"),
        &["--no-lock"],
    );
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains("fails-post") && said.contains("%post scriptlet failed"),
        "{said}"
    );
    assert!(!root.exists(), "a failed prepare left its root");
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn the_lock_rebuilds_the_same_bytes_offline() {
    let repo = rpm_repo::shared();
    let t = scratch("rpm-lock");
    let desc = description(&t.path().join("desc"), repo, &BOOTSTRAP, &IMAGE);
    let cache = t.path().join("cache");
    let lock = t.path().join("packages.lock");
    let build = |target: &Path, extra: &[&str]| {
        run(imgbuild(t.path())
            .arg("build")
            .arg(&desc)
            .arg("--target-dir")
            .arg(target)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--lock")
            .arg(&lock)
            .args(extra));
        crate::support::build::result_json(target)
    };
    run(imgbuild(t.path())
        .arg("lock")
        .arg(&desc)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--lock")
        .arg(&lock));
    assert!(lock.exists(), "imgbuild lock wrote no lock");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let first = build(&a, &[]);
    let second = build(&b, &["--offline"]);
    let digest = |r: &serde_json::Value| r["manifest_digest"].clone();
    assert!(!digest(&first).is_null(), "{first}");
    assert_eq!(digest(&first), digest(&second));
    // A third build of the same inputs into the first result is a no-op.
    let again = imgbuild(t.path())
        .arg("build")
        .arg(&desc)
        .arg("--target-dir")
        .arg(&a)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--lock")
        .arg(&lock)
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("imgbuild: up to date (inputs sha256:"),
        "{}",
        text(&again)
    );
    // Without a lock, the signed repomd.xml decides: unchanged, the rebuild is a no-op too.
    let c = t.path().join("c");
    let unlocked = || {
        imgbuild(t.path())
            .arg("build")
            .arg(&desc)
            .arg("--target-dir")
            .arg(&c)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--no-lock")
            .output()
            .unwrap()
    };
    let first_unlocked = unlocked();
    assert!(first_unlocked.status.success(), "{}", text(&first_unlocked));
    let second_unlocked = unlocked();
    assert!(
        text(&second_unlocked).contains("imgbuild: up to date (inputs sha256:"),
        "{}",
        text(&second_unlocked)
    );
    let tar = |d: &Path| {
        fs::read(crate::support::build::only_file_with_suffix(
            d,
            ".docker.tar",
        ))
        .unwrap()
    };
    assert!(tar(&a) == tar(&b), "the docker archives differ");
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn a_package_that_is_not_what_the_signed_metadata_says_is_refused_with_nothing_left() {
    let repo = rpm_repo::shared();
    let t = scratch("rpm-tampered");
    // A copy of the repository whose metadata (and its signature) is untouched, but one
    // package's bytes differ: a mirror serving a substituted file.
    let copy = t.path().join("repo");
    run(Command::new("cp").arg("-a").arg(&repo.dir).arg(&copy));
    let busybox = fs::read_dir(copy.join(&repo.arch))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("busybox-") && n.to_string_lossy().ends_with(".rpm")
            })
        })
        .unwrap();
    let mut bytes = fs::read(&busybox).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&busybox, &bytes).unwrap();
    let tampered = RpmRepo {
        dir: copy.clone(),
        key: repo.key.clone(),
        fingerprint: repo.fingerprint.clone(),
        arch: repo.arch.clone(),
        rpms: repo.rpms.clone(),
    };
    let desc = description(&t.path().join("desc"), &tampered, &BOOTSTRAP, &[]);
    let root = t.path().join("root");
    let cache = t.path().join("cache");
    let o = prepare(t.path(), &desc, &root, &cache, &["--no-lock"]);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("busybox"), "{said}");
    assert!(!root.exists(), "a failed prepare left its root");
    // Nothing with the substituted bytes in the cache.
    let bad = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let found = walkdir::WalkDir::new(&cache)
        .into_iter()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(&bad));
    assert!(!found, "the cache kept the substituted package");
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn delete_and_uninstall_sections_remove_packages_as_kiwi_does() {
    let repo = rpm_repo::shared();
    let t = scratch("rpm-remove");
    let desc = description(
        &t.path().join("desc"),
        repo,
        &BOOTSTRAP,
        &["new-tool", "config-pkg", "rich-a"],
    );
    // delete: forced, no scriptlets; uninstall: refused while needed, so only a leaf.
    let config = desc.join("config.kiwi");
    let xml = fs::read_to_string(&config).unwrap().replace(
        "</image>",
        "    <packages type=\"delete\">\n        <package name=\"new-tool\"/>\n        <package name=\"not-installed\"/>\n    </packages>\n    <packages type=\"uninstall\">\n        <package name=\"config-pkg\"/>\n    </packages>\n</image>",
    );
    fs::write(&config, xml).unwrap();
    let root = t.path().join("root");
    let o = prepare(
        t.path(),
        &desc,
        &root,
        &t.path().join("cache"),
        &["--no-lock"],
    );
    assert!(o.status.success(), "prepare failed:\n{}", text(&o));
    let left = installed(&root);
    assert!(
        !left
            .iter()
            .any(|p| p.starts_with("new-tool-") || p.starts_with("config-pkg-")),
        "{left:?}"
    );
    assert!(left.iter().any(|p| p.starts_with("rich-a-")), "{left:?}");
    assert!(!root.join("etc/config-pkg.conf").exists());
    assert!(
        text(&o).contains("not-installed is not installed"),
        "{}",
        text(&o)
    );
    // What is left verifies.
    let verify = rpm_q(&root).arg("-Va").output().unwrap();
    let changed: Vec<String> = String::from_utf8_lossy(&verify.stdout)
        .lines()
        .filter(|l| {
            !l.ends_with("/etc/passwd") && !l.ends_with("/etc/group") && !l.ends_with("/etc/shadow")
        })
        .map(str::to_string)
        .collect();
    assert!(changed.is_empty(), "rpm -Va: {changed:?}");
}

#[test]
#[cfg_attr(
    not(all(
        imgbuild_tests_as_root,
        imgbuild_has_rpm_tools,
        imgbuild_has_registry_tools
    )),
    ignore = "needs root, rpmbuild, createrepo_c, zypper, dnf, busybox-static and podman"
)]
fn a_derived_image_adds_packages_to_its_rpm_base_in_one_layer() {
    let repo = rpm_repo::shared();
    let t = scratch("rpm-derived");
    let cache = t.path().join("cache");
    let base_desc = description(&t.path().join("base"), repo, &BOOTSTRAP, &[]);
    let base_out = t.path().join("base-out");
    run(imgbuild(t.path())
        .arg("build")
        .arg(&base_desc)
        .arg("--no-lock")
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--target-dir")
        .arg(&base_out));
    let base_archive = crate::support::build::only_file_with_suffix(&base_out, ".docker.tar");

    // The derived description: image packages only, on the base image.
    let desc = description(
        &t.path().join("derived"),
        repo,
        &[],
        &["with-scripts", "rich-a"],
    );
    let config = desc.join("config.kiwi");
    let xml = fs::read_to_string(&config)
        .unwrap()
        .replace(
            "<type image=\"docker\">",
            &format!(
                "<type image=\"docker\" derived_from=\"docker-archive:{}\">",
                base_archive.display()
            ),
        )
        .replace("    <packages type=\"bootstrap\">\n    </packages>\n", "");
    fs::write(&config, xml).unwrap();
    // `imgbuild lock` reads the base's rpm database from its layers.
    let lock = t.path().join("derived.lock");
    run(imgbuild(t.path())
        .arg("lock")
        .arg(&desc)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--lock")
        .arg(&lock));
    let locked = fs::read_to_string(&lock).unwrap();
    assert!(
        locked.contains("\"name\": \"with-scripts\"") && !locked.contains("\"name\": \"busybox\""),
        "the lock must hold only what the base lacks:\n{locked}"
    );

    let root = t.path().join("root");
    let o = prepare(
        t.path(),
        &desc,
        &root,
        &cache,
        &["--lock", lock.to_str().unwrap()],
    );
    assert!(o.status.success(), "prepare failed:\n{}", text(&o));
    // One database: the base's packages and the new ones.
    let ours = installed(&root);
    for p in [
        "busybox-",
        "filesystem-",
        "with-scripts-",
        "rich-a-",
        "helper-",
    ] {
        assert!(
            ours.iter().any(|x| x.starts_with(p)),
            "{p} missing: {ours:?}"
        );
    }
    let target = t.path().join("out");
    run(imgbuild(t.path())
        .arg("create")
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(&target));
    let result = crate::support::build::result_json(&target);
    assert_eq!(
        result["layers"].as_array().map(Vec::len),
        Some(2),
        "the base's layer and one diff layer: {result}"
    );
    let archive = crate::support::build::only_file_with_suffix(&target, ".docker.tar");
    let short = tempfile::tempdir().unwrap();
    let store = PodmanStore(short.path().join("p"));
    run(podman(&store.0).arg("load").arg("-i").arg(&archive));
    let out = run(podman(&store.0)
        .args(["run", "--rm", "--network=none"])
        .args(host_quirks())
        .args([
            "rpm-test:latest",
            "-c",
            "cat /var/lib/with-scripts/post-ran",
        ]));
    assert_eq!(out, "1\n");
}
