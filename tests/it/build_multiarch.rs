//! Multi-architecture images: a foreign build without qemu-user fails at once naming the fix;
//! debian-minimal for `x86_64` and `aarch64` in one run is one image index whose images are what
//! single-architecture builds on other "machines" give, which assembled there give the same
//! index; both images run (the arm64 one under qemu) in podman and `imgbuild run`.

use crate::support::binfmt::qemu_aarch64;
use crate::support::build::{imgbuild, package_cache, preconditions, result_json};
use crate::support::image::{PodmanStore, podman};
use crate::support::registry::Registry;
use crate::support::{description, heavy, host_quirks, scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn ok(c: &mut Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn copy_dir(from: &Path, to: &Path) {
    ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// The digest of the image index an OCI layout's `index.json` names.
fn layout_index_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"];
    assert_eq!(m.as_array().map(Vec::len), Some(1), "{index}");
    assert_eq!(
        m[0]["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    m[0]["digest"].as_str().unwrap().to_string()
}

/// The one entry of `dir` whose name ends in `suffix`.
fn only(dir: &Path, suffix: &str) -> PathBuf {
    crate::support::build::only_file_with_suffix(dir, suffix)
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn a_foreign_build_without_binfmt_fails_at_once_naming_the_fix() {
    // A user namespace of its own with an empty binfmt_misc instance (Linux 6.7+): no handler
    // runs aarch64 programs there, and the host's registrations are not touched.
    let t = scratch("no-binfmt");
    let target = t.path().join("out");
    let start = Instant::now();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 99; \
             exec \"$0\" build \"$1\" --profile bookworm --target-arch x86_64,aarch64 \
             --target-dir \"$2\" --cache-dir \"$3\"",
        )
        .arg(crate::support::imgbuild_bin())
        .arg(description("debian-minimal"))
        .arg(&target)
        .arg(t.path().join("cache"))
        .env_remove("IMGBUILD_CACHE_DIR")
        .output()
        .unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(99),
        "no binfmt_misc instance of its own: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("this host cannot execute aarch64 programs")
            && stderr.contains("apt-get install qemu-user-static")
            && stderr.contains("update-binfmts --enable qemu-aarch64"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(!target.exists(), "a failed build left its target");
    assert!(
        !t.path().join("cache").exists(),
        "a failed build made a cache"
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
#[cfg_attr(
    not(imgbuild_has_qemu_user),
    ignore = "needs qemu-user-static (apt-get install qemu-user-static)"
)]
#[cfg_attr(
    not(imgbuild_has_registry_tools),
    ignore = "needs skopeo and podman (see .ci/run)"
)]
#[cfg_attr(
    not(imgbuild_has_host_mirror),
    ignore = "needs a Debian archive in the host's apt sources"
)]
fn a_two_architecture_image_is_the_index_of_single_architecture_builds() {
    let test = "a_two_architecture_image_is_the_index_of_single_architecture_builds";
    if preconditions(test, "bookworm").is_none() {
        return;
    }
    let _qemu = qemu_aarch64();
    let _h = heavy();
    let t = scratch("multiarch");
    let desc = t.path().join("desc");
    copy_dir(&description("debian-minimal"), &desc);
    let cache = package_cache();

    // One lock for both architectures, so that every "machine" installs the same packages.
    ok(imgbuild(t.path())
        .arg("lock")
        .arg(&desc)
        .args(["--profile", "bookworm", "--target-arch", "x86_64,aarch64"])
        .arg("--cache-dir")
        .arg(&cache));
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(desc.join("imgbuild.lock")).unwrap()).unwrap();
    assert_eq!(lock["version"], 2);
    for arch in ["x86_64", "aarch64"] {
        let n = lock["architectures"][arch]["packages"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(n > 50, "{arch}: {n} packages locked");
    }
    let deb_arch = |arch: &str| {
        lock["architectures"][arch]["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["architecture"].as_str())
            .filter(|a| *a != "all")
            .map(String::from)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(deb_arch("x86_64"), ["amd64".to_string()].into());
    assert_eq!(deb_arch("aarch64"), ["arm64".to_string()].into());

    // One run, both architectures (with --platform, the OCI names).
    let one = t.path().join("one");
    ok(imgbuild(t.path())
        .current_dir(t.path())
        .arg("build")
        .arg(&desc)
        .args([
            "--profile",
            "bookworm",
            "--platform",
            "linux/amd64,linux/arm64",
        ])
        .arg("--target-dir")
        .arg(&one)
        .arg("--cache-dir")
        .arg(&cache));
    let result = result_json(&one);
    let index_digest = result["manifest_digest"].as_str().unwrap().to_string();
    let platforms = result["platforms"].as_array().unwrap();
    let digest_of = |arch: &str| {
        platforms
            .iter()
            .find(|p| p["arch"] == arch)
            .unwrap_or_else(|| panic!("{arch} not in {result}"))["manifest_digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let layout = only(&one, ".oci");
    assert_eq!(layout_index_digest(&layout), index_digest);
    // skopeo reads the index with both platforms, from the layout and from the archive.
    for transport in [
        format!("oci:{}", layout.display()),
        format!("oci-archive:{}", only(&one, ".oci.tar").display()),
    ] {
        let raw = ok(Command::new("skopeo").args(["inspect", "--raw", &transport])).stdout;
        let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let seen: Vec<(String, String)> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["platform"]["architecture"].as_str().unwrap().to_string(),
                    m["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("amd64".to_string(), digest_of("x86_64")),
                ("arm64".to_string(), digest_of("aarch64")),
            ],
            "{transport}"
        );
        assert_eq!(
            format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw))
            ),
            index_digest
        );
    }
    // Each architecture's own result is a whole single-architecture result, KIWI's index of
    // it naming its files where they are (not where they were written).
    for arch in ["x86_64", "aarch64"] {
        let dir = one.join(arch);
        let r = result_json(&dir);
        assert_eq!(r["manifest_digest"].as_str().unwrap(), digest_of(arch));
        let docker = only(&dir, ".docker.tar");
        only(&dir, ".packages");
        only(&dir, ".spdx.json");
        let kiwi: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("kiwi.result.json")).unwrap()).unwrap();
        assert_eq!(
            kiwi["container"]["filename"].as_str().map(PathBuf::from),
            Some(std::path::absolute(&docker).unwrap()),
            "{kiwi}"
        );
    }
    // Run again, pushing: both architectures are reused, the index is the same, and the
    // registry holds it with both platforms.
    std::fs::create_dir_all(t.path().join("registry")).unwrap();
    let registry = Registry::start(&t.path().join("registry"), None, None);
    let dest = format!("127.0.0.1:{}/multi/debian:12", registry.port);
    let again = ok(imgbuild(t.path())
        .current_dir(t.path())
        .arg("build")
        .arg(&desc)
        .args(["--profile", "bookworm", "--target-arch", "x86_64,aarch64"])
        .arg("--target-dir")
        .arg(&one)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--push", &dest]));
    let log = String::from_utf8_lossy(&again.stderr);
    for arch in ["x86_64", "aarch64"] {
        assert!(log.contains(&format!("[{arch}] up to date")), "{log}");
    }
    assert_eq!(
        result_json(&one)["manifest_digest"].as_str().unwrap(),
        index_digest
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&format!("{dest} {index_digest}")),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let raw = ok(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{dest}")))
    .stdout;
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw))
        ),
        index_digest
    );

    // Two "machines", one architecture each: their own package cache, image store, temporary
    // directory, working directory and copy of the description; then a third assembles.
    let mut results = Vec::new();
    for (machine, arch) in [("a", "x86_64"), ("b", "aarch64")] {
        let m = t.path().join(format!("machine-{machine}"));
        let work = m.join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(m.join("tmp")).unwrap();
        copy_dir(&desc, &work.join("description"));
        ok(imgbuild(&m)
            .current_dir(&work)
            .env("TMPDIR", m.join("tmp"))
            .args(["build", "description", "--profile", "bookworm", "--oci-dir"])
            .args(["--target-arch", arch, "--target-dir", "out"])
            .arg("--cache-dir")
            .arg(m.join("cache")));
        let r = result_json(&work.join("out"));
        assert_eq!(
            r["manifest_digest"].as_str().unwrap(),
            digest_of(arch),
            "{arch} built alone differs from the one-run build's"
        );
        results.push(work.join("out"));
    }
    let c = t.path().join("machine-c");
    std::fs::create_dir_all(&c).unwrap();
    let list = c.join("list");
    ok(imgbuild(&c)
        .current_dir(&c)
        .args(["manifest", "create", "list"]));
    // Added in the other order: the index's order is canonical.
    for r in results.iter().rev() {
        ok(imgbuild(&c)
            .current_dir(&c)
            .args(["manifest", "add", "list"])
            .arg(r));
    }
    assert_eq!(layout_index_digest(&list), index_digest);

    // podman runs each platform of the index; the arm64 one under qemu.
    // podman limits the runroot path to 50 characters: the store lives in a short temp dir.
    let short = tempfile::tempdir().unwrap();
    let store = PodmanStore(short.path().join("p"));
    let archive = only(&one, ".oci.tar");
    for (platform, machine) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let out = ok(podman(&store.0)
            .args(["run", "--rm", "--network", "none", "--platform", platform])
            .args(host_quirks())
            .arg(format!("oci-archive:{}", archive.display()))
            .args(["uname", "-m"]));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), machine);
    }
    // And imgbuild's own run of the arm64 docker-archive.
    let out = ok(imgbuild(t.path())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--platform",
            "linux/arm64",
        ])
        .arg(only(&one.join("aarch64"), ".docker.tar"))
        .args(["uname", "-m"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "aarch64");
}
