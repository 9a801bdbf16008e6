//! `imgbuild build` end to end on the shipped descriptions, checked by the real peers: podman
//! loads and runs the images, skopeo reads every containerconfig field, umoci unpacks the OCI
//! layout, and manifest, config and index validate against the OCI image-spec JSON schemas.
//! Needs root and the Debian mirror of the host's apt sources (skips clearly otherwise).

use crate::support::build::{build, can_build, minimal_build, package_cache, result_json};
use crate::support::image::{PodmanStore, podman, validate_schema};
use crate::support::{description, have, heavy, host_quirks, run, scratch, skip};

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Loads `archive` into the private store and returns the reference podman reports.
fn podman_load(store: &Path, archive: &Path) -> String {
    let out = run(podman(store).arg("load").arg("-i").arg(archive));
    out.lines()
        .filter_map(|l| l.rsplit_once(": ").map(|(_, r)| r.trim().to_string()))
        .next_back()
        .unwrap_or_else(|| panic!("podman load printed no image: {out}"))
}

/// `podman run --rm --network=none` with this machine's flags; returns stdout.
fn podman_run(store: &Path, args: &[&str]) -> String {
    run(podman(store)
        .args(["run", "--rm", "--network=none"])
        .args(host_quirks())
        .args(args))
}

/// `/etc/debian_version` of a trixie image: `13.<point release>`.
fn expect_debian_13(version: &str) {
    let v = version.trim();
    assert!(
        v.starts_with("13.") || v == "13" || v.starts_with("trixie"),
        "/etc/debian_version of a trixie image: {v:?}"
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn minimal_docker_archive_runs_in_podman() {
    let test = "minimal_docker_archive_runs_in_podman";
    if !have("podman") {
        skip(format_args!("{test} needs podman"));
        return;
    }
    // The default description, built once per run (the reproducibility test rebuilds it).
    let Some(shared) = minimal_build(test) else {
        return;
    };
    let _h = heavy();
    let target = &shared.target;
    let stem = "debian-minimal.x86_64-13.0.0";
    let mut names: Vec<String> = fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want: Vec<String> = [
        "docker.tar",
        "docker.tar.sha256",
        "packages",
        "packages.sha256",
    ]
    .iter()
    .map(|s| format!("{stem}.{s}"))
    .chain(["result.json".to_string()])
    .collect();
    for w in &want {
        assert!(names.contains(w), "{w} in {names:?}");
    }
    let docker_tar = target.join(format!("{stem}.docker.tar"));
    let result = result_json(target);
    assert!(
        result["manifest_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{result}"
    );
    // Nothing else is left in the target's parent (the temporary root is gone).
    let left: Vec<_> = fs::read_dir(&shared.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".imgbuild"))
        .collect();
    assert!(left.is_empty(), "work directories left: {left:?}");

    // podman limits the runroot path to 50 characters: the store lives in a short temp dir.
    let short = tempfile::tempdir().unwrap();
    let store = PodmanStore(short.path().join("p"));
    let loaded = podman_load(&store.0, &docker_tar);
    assert!(loaded.contains("debian-minimal:13"), "{loaded}");
    let out = podman_run(
        &store.0,
        &["debian-minimal:13", "cat", "/etc/debian_version"],
    );
    expect_debian_13(&out);
    // The config podman sees has KIWI's default Cmd and the description's labels.
    let cfg = run(podman(&store.0).args([
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        "debian-minimal:13",
    ]));
    let cfg: serde_json::Value = serde_json::from_str(cfg.trim()).unwrap();
    assert_eq!(cfg["Cmd"], serde_json::json!(["/bin/bash"]), "{cfg}");
    assert_eq!(
        cfg["Labels"]["org.opencontainers.image.title"], "debian-minimal",
        "{cfg}"
    );
}

/// Hardlinked regular files under `root`, grouped by inode: the first pair (sorted by path).
fn hardlinked_pair(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if e.file_type().is_file() && m.nlink() > 1 {
            by_ino
                .entry(m.ino())
                .or_default()
                .push(e.path().strip_prefix(root).unwrap().to_path_buf());
        }
    }
    let mut pairs: Vec<(PathBuf, PathBuf)> = by_ino
        .into_values()
        .filter(|v| v.len() >= 2)
        .map(|v| (v[0].clone(), v[1].clone()))
        .collect();
    pairs.sort();
    pairs.into_iter().next()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn rich_oci_image_config_layout_and_special_files() {
    let test = "rich_oci_image_config_layout_and_special_files";
    for tool in ["podman", "skopeo", "umoci"] {
        if !have(tool) {
            skip(format_args!("{test} needs {tool}"));
            return;
        }
    }
    if !can_build(test) {
        return;
    }
    let _h = heavy();
    let t = scratch(test);
    let target = t.path().join("out");
    build(
        t.path(),
        &description("debian-rich"),
        &target,
        &package_cache(),
        t.path(),
        &["--type", "oci", "--oci-dir"],
    );
    let stem = "debian-rich.x86_64-13.1.0";
    let oci_tar = target.join(format!("{stem}.oci.tar"));
    let layout = target.join(format!("{stem}.oci"));
    assert!(oci_tar.is_file() && layout.is_dir());
    assert!(target.join(format!("{stem}.oci.tar.sha256")).is_file());
    assert!(target.join(format!("{stem}.packages")).is_file());

    // skopeo reads every containerconfig field of the description.
    let cfg = run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", oci_tar.display())));
    let v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let c = &v["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/bin/tini", "--"]));
    assert_eq!(
        c["Cmd"],
        serde_json::json!(["/usr/local/bin/hello", "--greeting", "hello from imgbuild"])
    );
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(env.contains(&"LANG=C.UTF-8"), "{env:?}");
    assert!(env.contains(&"APP_HOME=/srv/app"), "{env:?}");
    assert_eq!(c["Labels"]["org.opencontainers.image.title"], "debian-rich");
    assert_eq!(c["Labels"]["org.opencontainers.image.vendor"], "imgbuild");
    for port in ["8080/tcp", "8443/tcp", "5353/udp"] {
        assert!(c["ExposedPorts"][port].is_object(), "{port}: {c}");
    }
    for vol in ["/srv/app/data", "/var/log/app"] {
        assert!(c["Volumes"][vol].is_object(), "{vol}: {c}");
    }
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(v["author"], "imgbuild <imgbuild@localhost>");
    let h = &v["history"][0];
    assert_eq!(h["created_by"], "imgbuild build", "{v}");
    assert_eq!(h["author"], "imgbuild", "{v}");
    assert_eq!(h["comment"], "Debian 13 application base layer", "{v}");
    assert_eq!(h["created"], v["created"], "{v}");

    // The layout validates against the OCI image-spec schemas.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &serde_json::Value| {
        let d = digest.as_str().unwrap();
        layout
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };
    let manifest_path = blob(&index["manifests"][0]["digest"]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    let result = result_json(&target);
    assert_eq!(
        index["manifests"][0]["digest"], result["manifest_digest"],
        "result.json names the manifest"
    );
    if Command::new("python3")
        .args(["-c", "import jsonschema, referencing"])
        .status()
        .is_ok_and(|s| s.success())
    {
        validate_schema("image-index-schema.json", &layout.join("index.json"));
        validate_schema("image-manifest-schema.json", &manifest_path);
        validate_schema("config-schema.json", &blob(&manifest["config"]["digest"]));
        validate_schema("image-layout-schema.json", &layout.join("oci-layout"));
    } else {
        panic!("{test}: schema validation needs python3-jsonschema (Debian package)");
    }

    // umoci unpacks the layout; the tree keeps setuid, file capabilities and hardlinks.
    let bundle = t.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:13-oci", layout.display()))
        .arg(&bundle));
    let r = bundle.join("rootfs");
    expect_debian_13(&fs::read_to_string(r.join("etc/debian_version")).unwrap());
    assert_eq!(
        fs::symlink_metadata(r.join("usr/bin/passwd"))
            .unwrap()
            .mode()
            & 0o7777,
        0o4755
    );
    let cap = xattr::get(r.join("usr/bin/ping"), "security.capability").unwrap();
    assert!(
        cap.is_some(),
        "/usr/bin/ping has security.capability (iputils-ping's postinst setcap)"
    );
    let (hl_a, hl_b) = hardlinked_pair(&r).expect("the image has a hardlinked pair of files");
    assert_eq!(fs::read_dir(r.join("tmp")).unwrap().count(), 0);

    // podman loads the oci-archive and runs it; the checks happen inside the container.
    // podman limits the runroot path to 50 characters: the store lives in a short temp dir.
    let short = tempfile::tempdir().unwrap();
    let store = PodmanStore(short.path().join("p"));
    let image = podman_load(&store.0, &oci_tar);
    let out = podman_run(&store.0, &[&image, "cat", "/etc/debian_version"]);
    expect_debian_13(&out);
    let script = format!(
        "stat -c %a /usr/bin/passwd; getcap /usr/bin/ping; stat -c %i /{} /{}; ls -A /tmp | wc -l; id -un",
        hl_a.display(),
        hl_b.display()
    );
    let out = podman_run(&store.0, &[&image, "sh", "-c", &script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0], "4755", "setuid passwd: {out}");
    assert!(lines[1].contains("cap_net_raw"), "ping capability: {out}");
    assert_eq!(
        lines[2],
        lines[3],
        "hardlink {} = {} kept: {out}",
        hl_a.display(),
        hl_b.display()
    );
    assert_eq!(lines[4].trim(), "0", "/tmp empty: {out}");
    assert_eq!(lines[5], "app", "runs as the description's user: {out}");
    // The image's own entrypoint and cmd.
    let out = podman_run(&store.0, &[&image]);
    assert!(out.contains("hello from imgbuild"), "{out}");
}
