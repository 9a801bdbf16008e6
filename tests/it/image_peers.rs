//! Image outputs checked by the real peers: podman, skopeo, umoci, and the OCI JSON schemas.
//! Needs root (setcap, mknod, podman) and the Debian mirror for busybox-static.

use crate::support::dockerd::Dockerd;
use crate::support::image::*;
use crate::support::{have, host_quirks, root_or_skip, run, skip};

use imgbuild::image::compress::Compression;
use imgbuild::image::config::{BuiltImage, assemble};
use imgbuild::image::output::{
    write_docker_archive, write_oci_archive, write_oci_layout, write_rootfs_tarball,
    write_sha256_file,
};
use imgbuild::image::walk::Excludes;
use imgbuild::image::{HistoryEntry, ImageSpec, LayerOptions, write_layer};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub fn rich_spec() -> ImageSpec {
    let mut labels = BTreeMap::new();
    labels.insert("org.example.vendor".to_string(), "imgbuild".to_string());
    labels.insert("a.label".to_string(), "x y".to_string());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.version".to_string(),
        "1.2.3".to_string(),
    );
    annotations.insert(
        "org.opencontainers.image.title".to_string(),
        "peer test".to_string(),
    );
    ImageSpec {
        name: "imgbuild-peer-test".into(),
        tag: "1.2.3".into(),
        additional_names: vec![":latest".into(), "other-name:".into()],
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["cat /etc/debian_version".into()]),
        env: vec!["PATH=/bin".into(), "LANG=C.UTF-8".into()],
        labels,
        exposed_ports: vec!["80".into(), "443/tcp".into(), "53/udp".into()],
        volumes: vec!["/data".into()],
        user: Some("root".into()),
        working_dir: Some("/etc".into()),
        stop_signal: Some("SIGINT".into()),
        author: Some("Imgbuild Test <test@example.org>".into()),
        created: EPOCH,
        architecture: "amd64".into(),
        os: "linux".into(),
        history: vec![HistoryEntry {
            created_by: Some("imgbuild test".into()),
            comment: Some("the root tree".into()),
            ..HistoryEntry::default()
        }],
        annotations,
        ..ImageSpec::default()
    }
}

fn build(root: &Path, work: &Path, compression: Compression) -> BuiltImage {
    let blobs = work.join("blobs");
    let opts = LayerOptions {
        source_date_epoch: EPOCH,
        compression,
        ..LayerOptions::default()
    };
    let layer = write_layer(root, &blobs, &opts).unwrap();
    assemble(&rich_spec(), &[layer], &blobs).unwrap()
}

/// The busybox fixture tree written as every output kind into a temp dir.
struct PeerOutputs {
    dir: tempfile::TempDir,
    root: PathBuf,
    image: BuiltImage,
    layout: PathBuf,
    oci_tar: PathBuf,
    docker_tar: PathBuf,
}

/// The outputs of the busybox fixture tree, or `None` (after [`skip`]ping `test`) without
/// root or the Debian mirror.
fn peer_outputs(test: &str) -> Option<PeerOutputs> {
    if !root_or_skip(test) {
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    if !busybox_tree(&root, test) {
        return None;
    }
    let work = t.path().join("work");
    let image = build(&root, &work, Compression::Gzip(6));
    let out = t.path().join("out");
    let layout = out.join("peer.oci");
    write_oci_layout(&image, &layout).unwrap();
    let oci_tar = out.join("peer.x86_64-1.2.3.oci.tar");
    write_oci_archive(&image, &oci_tar, Compression::None, 0, EPOCH).unwrap();
    let docker_tar = out.join("peer.x86_64-1.2.3.docker.tar");
    write_docker_archive(&image, &docker_tar, Compression::None, 0, EPOCH).unwrap();
    Some(PeerOutputs {
        dir: t,
        root,
        image,
        layout,
        oci_tar,
        docker_tar,
    })
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn outputs_are_accepted_by_podman_skopeo_umoci_and_schemas() {
    let Some(p) = peer_outputs("outputs_are_accepted_by_podman_skopeo_umoci_and_schemas") else {
        return;
    };
    let (t, root, image, layout, oci_tar, docker_tar) = (
        &p.dir,
        &p.root,
        &p.image,
        &p.layout,
        &p.oci_tar,
        &p.docker_tar,
    );
    let out = t.path().join("out");
    let rootfs = out.join("peer.x86_64-1.2.3.tar.xz");
    write_rootfs_tarball(
        root,
        &rootfs,
        &Excludes::default(),
        EPOCH,
        Compression::Xz(6),
        0,
    )
    .unwrap();
    let hexd = write_sha256_file(docker_tar).unwrap();
    let sha = fs::read_to_string(out.join("peer.x86_64-1.2.3.docker.tar.sha256")).unwrap();
    assert_eq!(sha, format!("{hexd}  peer.x86_64-1.2.3.docker.tar\n"));
    // No temp files left next to the results.
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "peer.oci",
            "peer.x86_64-1.2.3.docker.tar",
            "peer.x86_64-1.2.3.docker.tar.sha256",
            "peer.x86_64-1.2.3.oci.tar",
            "peer.x86_64-1.2.3.tar.xz"
        ]
    );

    // Schemas: index, manifest, config.
    if Command::new("python3")
        .args(["-c", "import jsonschema, referencing"])
        .status()
        .is_ok_and(|s| s.success())
    {
        let blobs = layout.join("blobs/sha256");
        validate_schema("image-index-schema.json", &layout.join("index.json"));
        validate_schema(
            "image-manifest-schema.json",
            &blobs.join(image.manifest.digest().digest()),
        );
        validate_schema(
            "config-schema.json",
            &blobs.join(image.config.digest().digest()),
        );
        validate_schema("image-layout-schema.json", &layout.join("oci-layout"));
    } else {
        skip(format_args!("schema validation needs python3-jsonschema"));
    }

    // skopeo sees every config field.
    if have("skopeo") {
        let cfg = run(Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci-archive:{}", oci_tar.display())));
        let v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
        let c = &v["config"];
        assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
        assert_eq!(c["Cmd"], serde_json::json!(["cat /etc/debian_version"]));
        assert_eq!(c["Env"], serde_json::json!(["PATH=/bin", "LANG=C.UTF-8"]));
        assert_eq!(c["Labels"]["org.example.vendor"], "imgbuild");
        assert!(c["ExposedPorts"]["80/tcp"].is_object());
        assert!(c["ExposedPorts"]["53/udp"].is_object());
        assert!(c["Volumes"]["/data"].is_object());
        assert_eq!(c["User"], "root");
        assert_eq!(c["WorkingDir"], "/etc");
        assert_eq!(c["StopSignal"], "SIGINT");
        assert_eq!(v["author"], "Imgbuild Test <test@example.org>");
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["history"][0]["created_by"], "imgbuild test");
    } else {
        skip(format_args!("skopeo check needs skopeo"));
    }

    // umoci unpacks the layout; the tree keeps setuid, caps, hardlinks, fifos, devices.
    if have("umoci") {
        let bundle = t.path().join("bundle");
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:1.2.3", layout.display()))
            .arg(&bundle));
        let r = bundle.join("rootfs");
        assert_eq!(
            fs::read_to_string(r.join("etc/debian_version")).unwrap(),
            "12.99-imgbuild-test\n"
        );
        assert_eq!(
            fs::symlink_metadata(r.join("bin/suidbox")).unwrap().mode() & 0o7777,
            0o4755
        );
        assert_eq!(
            xattr::get(r.join("bin/capbox"), "security.capability").unwrap(),
            xattr::get(root.join("bin/capbox"), "security.capability").unwrap()
        );
        assert_eq!(
            fs::metadata(r.join("etc/hl-a")).unwrap().ino(),
            fs::metadata(r.join("etc/hl-b")).unwrap().ino()
        );
        assert!(
            fs::symlink_metadata(r.join("etc/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert!(
            fs::symlink_metadata(r.join("etc/zero"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        for d in ["tmp", "dev", "run", "proc", "sys"] {
            assert_eq!(fs::read_dir(r.join(d)).unwrap().count(), 0, "{d} is empty");
        }
        for gone in ["image", ".kconfig", ".profile", "var/cache/kiwi"] {
            assert!(!r.join(gone).exists(), "{gone} excluded");
        }
        assert_eq!(
            fs::symlink_metadata(r.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        let long = "x".repeat(60) + "/" + &"y".repeat(60);
        assert!(
            r.join("usr/lib/deep")
                .join(long)
                .join("file-with-a-long-name")
                .exists()
        );
    } else {
        skip(format_args!("umoci check needs umoci"));
    }

    // podman loads the docker-archive and runs it; checks happen inside the container.
    if !have("podman") {
        skip(format_args!("podman check needs podman"));
        return;
    }
    let store = PodmanStore(t.path().join("podman"));
    let loaded = run(podman(&store.0).arg("load").arg("-i").arg(docker_tar));
    assert!(loaded.contains("imgbuild-peer-test:1.2.3"), "{loaded}");
    let in_container = |args: &[&str]| {
        run(podman(&store.0)
            .args(["run", "--rm", "--network", "none"])
            .args(host_quirks())
            .args(args))
    };
    let out = in_container(&[
        "--entrypoint",
        "/bin/cat",
        "imgbuild-peer-test:1.2.3",
        "/etc/debian_version",
    ]);
    assert_eq!(out, "12.99-imgbuild-test\n");
    // The image's own entrypoint + cmd.
    assert_eq!(
        in_container(&["localhost/imgbuild-peer-test:latest"]),
        "12.99-imgbuild-test\n"
    );
    let out = in_container(&[
        "--entrypoint",
        "/bin/sh",
        "other-name:1.2.3",
        "-c",
        "stat -c '%a %i' /bin/suidbox /etc/hl-a /etc/hl-b; ls -A /tmp | wc -l; stat -c %F /etc/fifo",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("4755 "), "{out}");
    let ino = |l: &str| l.split_whitespace().nth(1).unwrap_or_default().to_string();
    assert_eq!(ino(lines[1]), ino(lines[2]), "hardlink kept: {out}");
    assert_eq!(lines[3].trim(), "0", "/tmp empty: {out}");
    assert_eq!(lines[4], "fifo", "{out}");
    // The file capability is honoured: as a non-root user, capbox gets CAP_NET_BIND_SERVICE.
    let out = in_container(&[
        "--user",
        "1000:1000",
        "--entrypoint",
        "/capbin/grep",
        "imgbuild-peer-test:1.2.3",
        "CapPrm",
        "/proc/self/status",
    ]);
    assert!(
        out.contains("0000000000000400"),
        "cap_net_bind_service permitted: {out}"
    );
}

/// docker loads the docker-archive, sees its id and every tag, runs it, and builds on it: on a
/// private daemon of the test's own (its data, socket and containerd in a temp dir), stopped
/// and cleaned up also when the test fails.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn docker_loads_runs_and_builds_on_the_docker_archive() {
    let test = "docker_loads_runs_and_builds_on_the_docker_archive";
    if !have("dockerd") || !have("docker") {
        skip(format_args!("{test} needs dockerd and docker (docker.io)"));
        return;
    }
    let Some(p) = peer_outputs(test) else {
        return;
    };
    let daemon = Dockerd::start(Duration::from_mins(2)).unwrap_or_else(|e| panic!("{e}"));
    let docker = || daemon.docker();
    let loaded = run(docker().arg("load").arg("-i").arg(&p.docker_tar));
    let tags = [
        "imgbuild-peer-test:1.2.3",
        "imgbuild-peer-test:latest",
        "other-name:1.2.3",
    ];
    for tag in tags {
        assert!(
            loaded.contains(&format!("Loaded image: {tag}")),
            "{tag}: {loaded}"
        );
    }
    // The image id is the config's digest; its tags are the description's names.
    let inspect = run(docker().args(["image", "inspect", "imgbuild-peer-test:1.2.3"]));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(
        v[0]["Id"],
        format!("sha256:{}", p.image.config.digest().digest()),
        "{inspect}"
    );
    let mut repo_tags: Vec<&str> = v[0]["RepoTags"]
        .as_array()
        .unwrap_or_else(|| panic!("no RepoTags: {inspect}"))
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    repo_tags.sort_unstable();
    assert_eq!(repo_tags, tags, "{inspect}");
    assert_eq!(
        v[0]["Config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"]),
        "{inspect}"
    );

    // It runs, with its own entrypoint and cmd, and with a user that is not root.
    let out = run(docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        "imgbuild-peer-test:1.2.3",
    ]));
    assert_eq!(out, "12.99-imgbuild-test\n");
    let out = run(docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "1000:1000",
        "--entrypoint",
        "/bin/id",
        "other-name:1.2.3",
        "-u",
    ]));
    assert_eq!(out, "1000\n");

    // A Dockerfile FROM it builds (a RUN step in a container of the image), and the result
    // runs.
    let ctx = daemon.scratch("context");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM imgbuild-peer-test:1.2.3\nRUN [\"/bin/sh\", \"-c\", \"echo built-on-it > /etc/built\"]\n",
    )
    .unwrap();
    run(docker()
        .args([
            "build",
            "--network",
            "none",
            "--tag",
            "imgbuild-peer-child:1",
        ])
        .arg(&ctx));
    let out = run(docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/cat",
        "imgbuild-peer-child:1",
        "/etc/built",
        "/etc/debian_version",
    ]));
    assert_eq!(out, "built-on-it\n12.99-imgbuild-test\n");
}

/// Unpacks a base's layers into `dest` with GNU tar (the test's stand-in for the unpacker).
fn unpack_with_tar(base: &imgbuild::image::base::BaseImage, dest: &Path) {
    use std::io::Write;
    use std::process::Stdio;
    for r in base.layer_readers() {
        let mut r = r.unwrap();
        let mut child = Command::new("tar")
            .args([
                "-x",
                "-p",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-f",
                "-",
                "-C",
            ])
            .arg(dest)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::copy(&mut r, &mut stdin).unwrap();
        stdin.flush().unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success());
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn derived_image_keeps_base_layers_and_adds_one_diff_layer() {
    use imgbuild::image::base::BaseImage;
    use imgbuild::image::{TreeSnapshot, write_diff_layer};
    let test = "derived_image_keeps_base_layers_and_adds_one_diff_layer";
    if !root_or_skip(test) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    if !busybox_tree(&root, test) {
        return;
    }
    let base_img = build(&root, &t.path().join("w"), Compression::Gzip(6));
    let base_tar = t.path().join("base.oci.tar");
    write_oci_archive(&base_img, &base_tar, Compression::None, 0, EPOCH).unwrap();

    // Derive: unpack the base, snapshot it, change the tree.
    let base = BaseImage::open(&format!("oci-archive:{}", base_tar.display())).unwrap();
    let new_root = t.path().join("derived-root");
    fs::create_dir(&new_root).unwrap();
    unpack_with_tar(&base, &new_root);
    let ex = Excludes::default();
    let snap = TreeSnapshot::from_dir(&new_root, &ex).unwrap();
    fs::remove_file(new_root.join("etc/motd")).unwrap();
    fs::write(new_root.join("etc/added"), "added by the derived image\n").unwrap();
    fs::write(new_root.join("etc/debian_version"), "derived\n").unwrap();
    fs::remove_dir_all(new_root.join("usr/lib/deep")).unwrap();

    let blobs = t.path().join("w2/blobs");
    let opts = LayerOptions {
        source_date_epoch: EPOCH + 100,
        // gzip: the umoci on Debian 12 does not read zstd layers.
        compression: Compression::Gzip(6),
        ..LayerOptions::default()
    };
    let diff = write_diff_layer(&snap, &new_root, &blobs, &opts).unwrap();
    base.copy_blobs_to(&blobs).unwrap();
    let spec = ImageSpec {
        name: "imgbuild-derived-test".into(),
        tag: "2".into(),
        entrypoint: None,
        cmd: None,
        created: EPOCH + 100,
        architecture: "amd64".into(),
        os: "linux".into(),
        history: vec![HistoryEntry {
            created_by: Some("derived".into()),
            ..HistoryEntry::default()
        }],
        base: Some(base.base_ref()),
        ..ImageSpec::default()
    };
    let derived = assemble(&spec, &[diff], &blobs).unwrap();
    assert_eq!(derived.layers.len(), 2);
    assert_eq!(
        derived.layers[0].descriptor, base_img.layers[0].descriptor,
        "base layer unchanged"
    );
    let layout = t.path().join("derived.oci");
    write_oci_layout(&derived, &layout).unwrap();
    let docker_tar = t.path().join("derived.docker.tar");
    write_docker_archive(&derived, &docker_tar, Compression::None, 0, EPOCH).unwrap();

    if have("umoci") {
        let bundle = t.path().join("bundle");
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:2", layout.display()))
            .arg(&bundle));
        let r = bundle.join("rootfs");
        assert!(!r.join("etc/motd").exists());
        assert!(!r.join("usr/lib/deep").exists());
        assert!(r.join("usr/lib/big").exists());
        assert_eq!(
            fs::read_to_string(r.join("etc/added")).unwrap(),
            "added by the derived image\n"
        );
        assert_eq!(
            fs::read_to_string(r.join("etc/debian_version")).unwrap(),
            "derived\n"
        );
        assert_eq!(
            fs::symlink_metadata(r.join("bin/suidbox")).unwrap().mode() & 0o7777,
            0o4755
        );
    }
    if !have("podman") {
        skip(format_args!("{test}: podman part needs podman"));
        return;
    }
    let flags = host_quirks();
    let store = PodmanStore(t.path().join("podman"));
    run(podman(&store.0).arg("load").arg("-i").arg(&docker_tar));
    let layers = run(podman(&store.0).args([
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        "imgbuild-derived-test:2",
    ]));
    let layers: Vec<String> = serde_json::from_str(layers.trim()).unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0], base_img.layers[0].diff_id);
    // The base's entrypoint and cmd are inherited.
    let out = run(podman(&store.0)
        .args(["run", "--rm", "--network", "none"])
        .args(flags)
        .arg("imgbuild-derived-test:2"));
    assert_eq!(out, "derived\n");
    let out = run(podman(&store.0)
        .args(["run", "--rm", "--network", "none"])
        .args(flags)
        .args([
            "imgbuild-derived-test:2",
            "cat /etc/added; test -e /etc/motd && echo motd || echo no-motd; test -e /usr/lib/deep && echo deep || echo no-deep",
        ]));
    assert_eq!(out, "added by the derived image\nno-motd\nno-deep\n");
}
