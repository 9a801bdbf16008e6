//! `imgbuild build` of derived images (`derived_from`), end to end through the binary.
//!
//! `derived_image_adds_one_layer_on_the_unchanged_base` needs root, the host's Debian mirror
//! (bookworm) and podman; the bad-input tests need root only (they fail before any download).

use crate::support::build::{bookworm_build, only_file_with_suffix, package_cache};
use crate::support::image::{PodmanStore, podman};
use crate::support::{have, host_quirks, imgbuild_bin, root_or_skip, run, skip, storage};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn imgbuild() -> Command {
    Command::new(imgbuild_bin())
}

const REPO: &str = r#"    <repository type="apt-deb" alias="bookworm" distribution="bookworm" components="main">
        <source path="apt-host:/">
            <signing key="file:///usr/share/keyrings/debian-archive-keyring.gpg"/>
        </source>
    </repository>
"#;

/// Writes a derived description into `dir` deriving from `uri`, adding `packages`.
fn derived_description(dir: &Path, uri: &str, packages: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    let mut pk = String::new();
    for p in packages {
        pk.push_str(&format!("        <package name=\"{p}\"/>\n"));
    }
    let xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="8.5" name="derived-test">
    <description type="system">
        <author>imgbuild</author>
        <contact>imgbuild@localhost</contact>
        <specification>a derived test image</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>apt</packagemanager>
        <type image="docker" derived_from="{uri}">
            <containerconfig name="derived-test" tag="1">
                <history created_by="imgbuild test">add hello</history>
            </containerconfig>
        </type>
    </preferences>
{REPO}    <packages type="image">
{pk}    </packages>
</image>
"#
    );
    fs::write(dir.join("config.xml"), xml).unwrap();
}

fn rootfs_layers(store: &Path, image: &str) -> Vec<String> {
    let out = run(podman(store).args(["image", "inspect", image]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no RootFS.Layers in {out}"))
        .iter()
        .map(|l| l.as_str().unwrap_or_default().to_string())
        .collect()
}

/// `path` relative to the directory `from` (both absolute), with `..` where they part.
fn relative_to(path: &Path, from: &Path) -> PathBuf {
    let common = path
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    rel.extend(path.components().skip(common));
    rel
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn derived_image_adds_one_layer_on_the_unchanged_base() {
    let test = "derived_image_adds_one_layer_on_the_unchanged_base";
    if !have("podman") {
        skip(format_args!("{test} needs podman"));
        return;
    }
    let Some(base) = bookworm_build(test) else {
        return;
    };
    let _h = crate::support::heavy();
    let t = crate::support::scratch(test);
    let base_out = base.target.clone();
    let base_tar = only_file_with_suffix(&base_out, ".docker.tar");

    // The derived description: hello added, a file added by the overlay, one deleted by
    // config.sh; derived_from relative to the description directory.
    let desc = t.path().join("desc");
    derived_description(
        &desc,
        &format!(
            "docker-archive:{}",
            relative_to(&base_tar, &t.path().join("desc")).display()
        ),
        &["hello"],
    );
    fs::create_dir_all(desc.join("root/etc")).unwrap();
    fs::write(
        desc.join("root/etc/added-by-derived"),
        "added by the derived image\n",
    )
    .unwrap();
    fs::write(desc.join("config.sh"), "set -e\nrm /etc/issue.net\n").unwrap();
    let out = t.path().join("derived-out");
    // From another working directory: the relative base path follows the description.
    run(imgbuild()
        .current_dir("/")
        .arg("build")
        .arg(&desc)
        .arg("--target-dir")
        .arg(&out)
        .arg("--cache-dir")
        .arg(package_cache()));
    let derived_tar = only_file_with_suffix(&out, ".docker.tar");
    let packages = fs::read_to_string(only_file_with_suffix(&out, ".packages")).unwrap();
    assert!(packages.contains("\nhello|None|"), "{packages}");
    // Only what is new was installed: the base's packages are all still there as they were.
    let base_packages = fs::read_to_string(only_file_with_suffix(&base_out, ".packages")).unwrap();
    for line in base_packages.lines() {
        assert!(packages.lines().any(|l| l == line), "{line} changed");
    }
    let result: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(
        result["layers"].as_array().map(Vec::len),
        Some(2),
        "{result}"
    );

    // The same build again with the base named on the command line (as a plain path, from
    // the test's working directory): the same config and layers, byte for byte.
    let again = t.path().join("again-out");
    run(imgbuild()
        .arg("build")
        .arg(&desc)
        .arg("--target-dir")
        .arg(&again)
        .arg("--cache-dir")
        .arg(package_cache())
        .arg("--set-container-derived-from")
        .arg(&base_tar));
    let result2: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(again.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["config_digest"], result2["config_digest"]);
    assert_eq!(result["layers"], result2["layers"]);
    fs::remove_dir_all(&again).unwrap();

    let flags = host_quirks();
    // podman wants a short runroot path: its own temp dir under /tmp.
    let podman_dir = tempfile::tempdir().unwrap();
    let store = PodmanStore(podman_dir.path().join("p"));
    run(podman(&store.0).arg("load").arg("-i").arg(&base_tar));
    run(podman(&store.0).arg("load").arg("-i").arg(&derived_tar));
    let base_layers = rootfs_layers(&store.0, "debian-minimal:12");
    let derived_layers = rootfs_layers(&store.0, "derived-test:1");
    assert_eq!(base_layers.len(), 1);
    assert_eq!(derived_layers.len(), 2, "{derived_layers:?}");
    assert_eq!(derived_layers[0], base_layers[0], "the base layer changed");
    assert_ne!(derived_layers[1], base_layers[0]);

    let history =
        run(podman(&store.0).args(["history", "--format", "{{.CreatedBy}}", "derived-test:1"]));
    assert!(history.contains("imgbuild test"), "{history}");

    let check = run(podman(&store.0)
        .args(["run", "--rm", "--network", "none"])
        .args(flags)
        .args([
            "derived-test:1",
            "sh",
            "-c",
            "test ! -e /etc/issue.net && echo gone; cat /etc/added-by-derived; hello; cat /etc/debian_version",
        ]));
    let mut lines = check.lines();
    assert_eq!(lines.next(), Some("gone"), "{check}");
    assert_eq!(lines.next(), Some("added by the derived image"), "{check}");
    assert_eq!(lines.next(), Some("Hello, world!"), "{check}");
    assert!(
        lines.next().is_some_and(|v| v.starts_with("12.")),
        "{check}"
    );
}

/// Runs a derived build that must fail; checks the message and that nothing is left behind.
fn expect_failure(work: &Path, desc: &Path, must_say: &str) -> Output {
    let target = work.join("target");
    let root = work.join("root");
    let out = imgbuild()
        .arg("build")
        .arg(desc)
        .arg("--target-dir")
        .arg(&target)
        .arg("--root")
        .arg(&root)
        .arg("--cache-dir")
        .arg(package_cache())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build succeeded: {stderr}");
    assert!(stderr.contains(must_say), "{must_say:?} not in: {stderr}");
    assert!(!target.exists(), "a target dir was left: {stderr}");
    assert!(!root.exists(), "a root was left: {stderr}");
    // No temporary work directory beside the target either.
    let left: Vec<String> = fs::read_dir(work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".imgbuild"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    out
}

/// One tar member, written by hand so that any name (`../x`) can be given.
fn tar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A docker-archive whose one (valid, digest-correct) layer has a `../escaped` entry.
fn escaping_docker_archive(path: &Path) {
    let mut layer = Vec::new();
    tar_member(&mut layer, "etc/ok", b"fine\n");
    tar_member(&mut layer, "../escaped-by-layer", b"evil\n");
    layer.extend_from_slice(&[0u8; 1024]);
    let diff_id = sha256_hex(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    })
    .to_string();
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let layer_name = format!("{diff_id}.tar");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "Layers": [layer_name],
        "RepoTags": ["evil:1"],
    }])
    .to_string();
    let mut ar = Vec::new();
    tar_member(&mut ar, "manifest.json", manifest.as_bytes());
    tar_member(&mut ar, &config_name, config.as_bytes());
    tar_member(&mut ar, &layer_name, &layer);
    ar.extend_from_slice(&[0u8; 1024]);
    fs::File::create(path).unwrap().write_all(&ar).unwrap();
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn bad_bases_fail_clearly_and_leave_nothing() {
    let test = "bad_bases_fail_clearly_and_leave_nothing";
    if !root_or_skip(test) {
        return;
    }
    let t = crate::support::scratch(test);

    // A missing base archive.
    let work = t.path().join("missing");
    fs::create_dir_all(&work).unwrap();
    derived_description(&work.join("desc"), "docker-archive:no-such-base.tar", &[]);
    expect_failure(&work, &work.join("desc"), "no-such-base.tar");

    // A corrupt (truncated) base: a real docker-archive cut in half.
    let work = t.path().join("truncated");
    fs::create_dir_all(&work).unwrap();
    let whole = work.join("whole.tar");
    escaping_docker_archive(&whole);
    let data = fs::read(&whole).unwrap();
    fs::write(work.join("base.tar"), &data[..data.len() / 2 + 100]).unwrap();
    derived_description(&work.join("desc"), "docker-archive:../base.tar", &[]);
    expect_failure(&work, &work.join("desc"), "base image");

    // A base whose layer has a `../` entry: refused, nothing written outside the root.
    let work = t.path().join("escape");
    fs::create_dir_all(&work).unwrap();
    escaping_docker_archive(&work.join("base.tar"));
    derived_description(&work.join("desc"), "docker-archive:../base.tar", &[]);
    expect_failure(&work, &work.join("desc"), "escaped-by-layer");
    assert!(!work.join("escaped-by-layer").exists());
    assert!(!t.path().join("escaped-by-layer").exists());
}

#[test]
fn set_container_derived_from_needs_a_derived_description() {
    let t = tempfile::tempdir().unwrap();
    let minimal = crate::support::description("debian-minimal");
    let out = imgbuild()
        .arg("build")
        .arg(&minimal)
        .arg("--target-dir")
        .arg(t.path().join("out"))
        .args([
            "--set-container-derived-from",
            "oci-archive:/nonexistent.tar",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("has no derived_from"), "{stderr}");
    assert!(!t.path().join("out").exists());
}

/// A docker-archive of `layers` (each `(member bytes, diff_id)`, listed in this order).
fn docker_archive_of(path: &Path, layers: &[(Vec<u8>, String)]) {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.1).collect::<Vec<_>>()},
    })
    .to_string();
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let mut names = Vec::new();
    let mut ar = Vec::new();
    tar_member(&mut ar, &config_name, config.as_bytes());
    for (data, _) in layers {
        let name = format!("{}/layer.tar", sha256_hex(data));
        if !names.contains(&name) {
            tar_member(&mut ar, &name, data);
        }
        names.push(name);
    }
    let manifest = serde_json::json!([{"Config": config_name, "Layers": names}]).to_string();
    tar_member(&mut ar, "manifest.json", manifest.as_bytes());
    ar.extend_from_slice(&[0u8; 1024]);
    fs::write(path, ar).unwrap();
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn base_with_too_many_layers_is_refused() {
    if !root_or_skip("base_with_too_many_layers_is_refused") {
        return;
    }
    let t = crate::support::scratch("derived");
    let mut layer = Vec::new();
    tar_member(&mut layer, "f", b"x");
    layer.extend_from_slice(&[0u8; 1024]);
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let base = t.path().join("deep.tar");
    docker_archive_of(&base, &vec![(layer, diff_id); 126]);
    let desc = t.path().join("desc");
    derived_description(&desc, &format!("docker-archive:{}", base.display()), &[]);
    expect_failure(
        t.path(),
        &desc,
        &format!(
            "{}: the image has 126 layers, more than the 125 Docker and podman allow",
            base.display()
        ),
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn base_layer_bomb_stops_without_filling_disk() {
    if !root_or_skip("base_layer_bomb_stops_without_filling_disk") {
        return;
    }
    let t = crate::support::scratch("derived");
    // The base is right (its diff_id matches), but its one layer unpacks to 128 MiB, and the
    // build's root is on a 64 MiB filesystem: it must stop at the bound, not at a full disk.
    let (gz, diff_id) = storage::zero_layer(128 << 20);
    let base = t.path().join("bomb.tar");
    docker_archive_of(&base, &[(gz, diff_id)]);
    let fs = storage::Tmpfs::new(64 << 20).expect("mount a tmpfs");
    let desc = t.path().join("desc");
    derived_description(&desc, &format!("docker-archive:{}", base.display()), &[]);
    let before = fs.available();
    let out = expect_failure(
        fs.path(),
        &desc,
        "refused: unpacked, it would leave less than 3.2 MiB free",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("No space left"), "{err}");
    assert!(
        fs.available() + (64 << 10) >= before,
        "space not given back: {err}"
    );
}
