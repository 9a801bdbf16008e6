//! Derived builds from a registry base (`derived_from="docker://HOST/REPO:TAG"`): the shared
//! bookworm build is pushed to a test registry, a description derives from it there, is locked
//! (the base pinned by digest), built, rebuilt `--offline` with the registry gone to the same
//! bytes, and run in podman. Needs root, the host's Debian mirror (bookworm), docker-registry,
//! skopeo and podman.

use crate::support::build::{bookworm_build, only_file_with_suffix, package_cache};
use crate::support::image::{PodmanStore, podman};
use crate::support::registry::{Registry, imgbuild_at as imgbuild, succeeded as ok};
use crate::support::{host_quirks, run, scratch};
use std::fs;
use std::path::Path;
use std::process::Output;

fn description(dir: &Path, uri: &str) {
    fs::create_dir_all(dir).unwrap();
    let xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="8.5" name="registry-derived">
    <description type="system">
        <author>imgbuild</author>
        <contact>imgbuild@localhost</contact>
        <specification>derived from a registry base</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>apt</packagemanager>
        <type image="docker" derived_from="{uri}">
            <containerconfig name="registry-derived" tag="1"/>
        </type>
    </preferences>
    <repository type="apt-deb" alias="bookworm" distribution="bookworm" components="main">
        <source path="apt-host:/">
            <signing key="file:///usr/share/keyrings/debian-archive-keyring.gpg"/>
        </source>
    </repository>
    <packages type="image">
        <package name="hello"/>
    </packages>
</image>
"#
    );
    fs::write(dir.join("config.xml"), xml).unwrap();
}

fn build(store: &Path, desc: &Path, target: &Path, extra: &[&str]) -> Output {
    imgbuild(store)
        .arg("build")
        .arg(desc)
        .arg("--target-dir")
        .arg(target)
        .arg("--cache-dir")
        .arg(package_cache())
        .args(extra)
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_registry_tools)),
    ignore = "needs root, docker-registry, skopeo, openssl and podman"
)]
fn a_registry_base_builds_locks_and_rebuilds_offline_to_the_same_digest() {
    let test = "a_registry_base_builds_locks_and_rebuilds_offline_to_the_same_digest";
    let Some(base) = bookworm_build(test) else {
        return;
    };
    let _h = crate::support::heavy();
    let t = scratch(test);
    let store = t.path().join("store");
    let mut registry = Registry::start(t.path(), None, None);
    let base_tar = only_file_with_suffix(&base.target, ".docker.tar");
    let base_ref = format!("{}/base/debian:12", registry.host());
    let base_digest = ok(
        imgbuild(&store)
            .arg("push")
            .arg(&base_tar)
            .arg(&base_ref)
            .output()
            .unwrap(),
        "push of the base",
    );

    let desc = t.path().join("desc");
    let uri = format!("docker://{base_ref}");
    description(&desc, &uri);

    // A malformed registry base is refused at its <type> element before any work.
    let bad_desc = t.path().join("bad");
    description(&bad_desc, "docker://UPPER/case:1");
    let bad = build(&store, &bad_desc, &t.path().join("bad-out"), &[]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("config.xml:"), "{err}");
    assert!(
        err.contains("derived_from \"docker://UPPER/case:1\""),
        "{err}"
    );
    assert!(!t.path().join("bad-out").exists());

    // The lock pins the base by its manifest digest.
    ok(
        imgbuild(&store)
            .arg("lock")
            .arg(&desc)
            .arg("--cache-dir")
            .arg(package_cache())
            .output()
            .unwrap(),
        "lock",
    );
    let lock: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(desc.join("imgbuild.lock")).unwrap()).unwrap();
    assert_eq!(lock["bases"][0]["uri"], uri.as_str(), "{lock}");
    assert_eq!(lock["bases"][0]["digest"], base_digest.as_str(), "{lock}");
    let names: Vec<&str> = lock["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"hello"), "{names:?}");
    assert!(
        !names.contains(&"base-files"),
        "only what the base lacks is locked: {names:?}"
    );

    let first = t.path().join("out1");
    let out = build(&store, &desc, &first, &[]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "the derived build");
    assert!(
        log.contains(&base_digest),
        "the base's digest is said: {log}"
    );
    let result: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(first.join("result.json")).unwrap()).unwrap();
    assert_eq!(
        result["layers"].as_array().map(Vec::len),
        Some(2),
        "{result}"
    );

    // The registry gone: the offline rebuild reads the base from the store, by the lock's pin.
    registry.kill();
    let second = t.path().join("out2");
    ok(
        build(&store, &desc, &second, &["--offline"]),
        "the offline rebuild",
    );
    let a = fs::read(only_file_with_suffix(&first, ".docker.tar")).unwrap();
    let b = fs::read(only_file_with_suffix(&second, ".docker.tar")).unwrap();
    assert!(a == b, "the offline rebuild differs from the first build");

    // Offline with an empty store: a clear error at the <type> element, nothing written.
    let empty = t.path().join("empty-store");
    let third = t.path().join("out3");
    let out = build(&empty, &desc, &third, &["--offline"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not in the image store"), "{err}");
    assert!(err.contains(&base_digest), "{err}");
    assert!(!third.exists());

    let podman_dir = tempfile::tempdir().unwrap();
    let pstore = PodmanStore(podman_dir.path().join("p"));
    run(podman(&pstore.0)
        .arg("load")
        .arg("-i")
        .arg(only_file_with_suffix(&first, ".docker.tar")));
    let hello = run(podman(&pstore.0)
        .args(["run", "--rm", "--network", "none"])
        .args(host_quirks())
        .args(["registry-derived:1", "hello"]));
    assert_eq!(hello.trim(), "Hello, world!");
}
