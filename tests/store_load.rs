//! `imgbuild load`, `save`, `build --load` and `run ARCHIVE`: every archive format into the
//! store, save→load round trips, refusal of corrupt and hostile archives, and an image built
//! from a description run straight from the store. The store uses the vfs driver, which needs
//! root to give files their owners; the build and run tests also need the Debian mirror.

mod busybox_root;
mod storage_common;

use imgbuild::storage::archive::{self, SaveFormat};
use imgbuild::storage::{DriverKind, Store, StoreOptions, sha256_digest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use storage_common::*;

const TAG: &str = "test/img:1";

fn open(root: &Path) -> Store {
    Store::open(&StoreOptions {
        root: root.to_path_buf(),
        driver: Some(DriverKind::Vfs),
    })
    .unwrap()
}

fn imgbuild(root: &Path, args: &[&str]) -> Output {
    // Global options first: after `run IMAGE` everything is the container's command.
    Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .arg("--storage-root")
        .arg(root)
        .arg("--storage-driver")
        .arg("vfs")
        .args(args)
        .env_remove("IMGBUILD_STORAGE_ROOT")
        .env_remove("IMGBUILD_STORAGE_DRIVER")
        .output()
        .unwrap()
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// The store holds no image, layer, blob or temp file.
fn assert_empty(root: &Path) {
    for d in ["images", "layers", "blobs/sha256", "tmp", "vfs/layers"] {
        assert_eq!(count(&root.join(d)), 0, "{d} not empty");
    }
}

fn two_layer() -> TestImage {
    TestImage::new(&[base_layer(), top_layer()], "load")
}

/// A tar of `(name, bytes)` members.
fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// The members of an OCI layout holding `img` named `ref_name`.
fn oci_members(img: &TestImage, ref_name: &str) -> Vec<(String, Vec<u8>)> {
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_digest(&img.manifest),
            "size": img.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    }))
    .unwrap();
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut m = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_string(), index),
        (blob(&sha256_digest(&img.manifest)), img.manifest.clone()),
        (blob(&img.id()), img.config.clone()),
    ];
    for (d, b) in &img.blobs {
        m.push((blob(d), b.clone()));
    }
    m
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(data), &mut out).unwrap();
    out
}

/// The members of a docker-archive of `img` (uncompressed layer tars) tagged `tag`.
fn docker_members(img: &TestImage, tag: &str) -> Vec<(String, Vec<u8>)> {
    let config_hex = img.id().trim_start_matches("sha256:").to_string();
    let mut m = vec![(format!("{config_hex}.json"), img.config.clone())];
    let mut names = Vec::new();
    for (_, gz) in &img.blobs {
        let tar = gunzip(gz);
        let name = format!(
            "{}/layer.tar",
            sha256_digest(&tar).trim_start_matches("sha256:")
        );
        names.push(name.clone());
        m.push((name, tar));
    }
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [tag],
        "Layers": names,
    }]))
    .unwrap();
    m.push(("manifest.json".to_string(), manifest));
    m
}

fn write_layout(dir: &Path, members: &[(String, Vec<u8>)]) {
    for (name, data) in members {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Every format the loader reads, each as (label, path) under `dir`.
fn archives(dir: &Path, img: &TestImage) -> Vec<(&'static str, PathBuf)> {
    let oci = tar_of(&oci_members(img, TAG));
    let docker = tar_of(&docker_members(img, TAG));
    let mut out = Vec::new();
    let layout = dir.join("layout");
    write_layout(&layout, &oci_members(img, TAG));
    out.push(("oci-layout", layout));
    for (label, name, data) in [
        ("oci-archive", "img.oci.tar", oci.clone()),
        ("oci-archive.gz", "img.oci.tar.gz", gzip(&oci)),
        (
            "oci-archive.zst",
            "img.oci.tar.zst",
            zstd::encode_all(&oci[..], 3).unwrap(),
        ),
        ("docker-archive", "img.docker.tar", docker.clone()),
        ("docker-archive.gz", "img.docker.tar.gz", gzip(&docker)),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        out.push((label, p));
    }
    out
}

#[test]
fn every_format_loads_with_its_tags() {
    if !root_or_skip("every_format_loads_with_its_tags") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = two_layer();
    for (label, path) in archives(t.path(), &img) {
        let root = t.path().join(format!("store-{label}"));
        let store = open(&root);
        let rec = archive::load_archive(&store, &path, &["extra:2".to_string()])
            .unwrap_or_else(|e| panic!("{label}: {e}"))
            .record;
        assert_eq!(rec.id, img.id(), "{label}");
        assert_eq!(rec.tags, vec!["extra:2", TAG], "{label}");
        assert_eq!(rec.layers.len(), 2, "{label}");
        if !label.starts_with("docker") {
            // OCI forms keep the manifest byte for byte.
            assert_eq!(rec.manifest_digest, sha256_digest(&img.manifest), "{label}");
        }
        // The layers were unpacked: a container of the image shows the merged view.
        let c = store.create_container(TAG).unwrap();
        assert_merged_view(&c.rootfs);
        store.release_container(&c.id).unwrap();
    }
}

#[test]
fn cli_load_prints_the_names() {
    if !root_or_skip("cli_load_prints_the_names") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("img.tar");
    std::fs::write(&p, tar_of(&docker_members(&two_layer(), TAG))).unwrap();
    let root = t.path().join("store");
    let out = imgbuild(&root, &["load", p.to_str().unwrap(), "--tag", "other"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("Loaded image: {TAG}")), "{stdout}");
    assert!(stdout.contains("Loaded image: other:latest"), "{stdout}");
    let out = imgbuild(&root, &["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], two_layer().id());
}

fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap();
    u32::from_str_radix(v.trim(), 8).unwrap()
}

#[test]
fn save_then_load_gives_the_same_image() {
    if !root_or_skip("save_then_load_gives_the_same_image") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = two_layer();
    for (label, src) in archives(t.path(), &img) {
        let a = open(&t.path().join(format!("a-{label}")));
        let orig = archive::load_archive(&a, &src, &[]).unwrap().record;
        for (fmt, name) in [
            (SaveFormat::OciArchive, "oci"),
            (SaveFormat::DockerArchive, "docker"),
        ] {
            let out = t.path().join(format!("{label}-{name}.tar"));
            let written = archive::save_image(&a, TAG, &out, fmt).unwrap();
            assert_eq!(written.path, out);
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&out).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o644 & !current_umask(), "{label} → {name}");
            // The same image gives the same bytes.
            let again = t.path().join(format!("{label}-{name}-again.tar"));
            archive::save_image(&a, &orig.id, &again, fmt).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
            let b = open(&t.path().join(format!("b-{label}-{name}")));
            let back = archive::load_archive(&b, &out, &[]).unwrap().record;
            assert_eq!(back.id, orig.id, "{label} → {name}");
            assert_eq!(back.tags, vec![TAG], "{label} → {name}");
            let diff = |r: &imgbuild::storage::ImageRecord| {
                r.layers
                    .iter()
                    .map(|l| l.diff_id.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(diff(&back), diff(&orig), "{label} → {name}");
            // An oci-archive keeps the manifest as stored; a docker-archive of an image that
            // came from one (uncompressed layers, derived manifest) comes back identical too.
            if name == "oci" || label.starts_with("docker") {
                assert_eq!(
                    back.manifest_digest, orig.manifest_digest,
                    "{label} → {name}"
                );
                assert_eq!(back.layers, orig.layers, "{label} → {name}");
            }
        }
        // No staging directory is left beside the outputs.
        let leftovers: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn corrupt_archives_are_refused_and_leave_nothing() {
    if !root_or_skip("corrupt_archives_are_refused_and_leave_nothing") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = two_layer();
    let oci = tar_of(&oci_members(&img, TAG));
    // A flipped byte inside the last layer blob's data.
    let mut flipped = img.clone();
    let last = flipped.blobs.len() - 1;
    let n = flipped.blobs[last].1.len();
    flipped.blobs[last].1[n / 2] ^= 0xff;
    let mut members = oci_members(&flipped, TAG);
    // Keep the digest the manifest names, so the content no longer matches it.
    let blob_name = format!(
        "blobs/sha256/{}",
        img.blobs[last].0.trim_start_matches("sha256:")
    );
    for m in &mut members {
        if m.0 == blob_name {
            m.1 = flipped.blobs[last].1.clone();
        }
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", oci[..oci.len() / 2].to_vec()),
        ("flipped-layer", tar_of(&members)),
        ("not-an-archive", b"this is not a tar file at all".to_vec()),
        ("empty-tar", tar_of(&[("hello".to_string(), b"x".to_vec())])),
    ];
    for (label, data) in cases {
        let p = t.path().join(format!("{label}.tar"));
        std::fs::write(&p, data).unwrap();
        let root = t.path().join(format!("store-{label}"));
        let out = imgbuild(&root, &["load", p.to_str().unwrap()]);
        assert!(!out.status.success(), "{label} loaded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(p.to_str().unwrap()), "{label}: {err}");
        assert_empty(&root);
    }
}

#[test]
fn layer_with_a_path_escape_is_refused_and_leaves_nothing() {
    if !root_or_skip("layer_with_a_path_escape_is_refused_and_leaves_nothing") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // A raw header: tar::Builder refuses names that climb out.
    let mut h = tar::Header::new_old();
    let name = b"../../../escaped-by-load";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(1);
    h.set_cksum();
    let mut layer = h.as_bytes().to_vec();
    layer.push(b'x');
    layer.resize(1024, 0);
    layer.extend_from_slice(&[0u8; 1024]);
    let gz = gzip(&layer);
    let img = TestImage::assemble(
        vec![sha256_digest(&layer)],
        vec![(sha256_digest(&gz), gz)],
        "escape",
    );
    for (label, data) in [
        ("oci", tar_of(&oci_members(&img, TAG))),
        ("docker", tar_of(&docker_members(&img, TAG))),
    ] {
        let p = t.path().join(format!("{label}.tar"));
        std::fs::write(&p, data).unwrap();
        let root = t.path().join(format!("store-{label}"));
        let out = imgbuild(&root, &["load", p.to_str().unwrap()]);
        assert!(!out.status.success(), "{label} loaded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("escaped-by-load"), "{label}: {err}");
        assert_empty(&root);
        for up in [
            root.join("escaped-by-load"),
            root.join("vfs/escaped-by-load"),
            t.path().join("escaped-by-load"),
        ] {
            assert!(!up.exists(), "{label}: {}", up.display());
        }
    }
}

#[test]
fn save_of_an_unknown_image_is_a_clear_error() {
    if !root_or_skip("save_of_an_unknown_image_is_a_clear_error") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let dest = t.path().join("out.tar");
    let out = imgbuild(&root, &["save", "nosuch:1", "-o", dest.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such image: nosuch:1"), "{err}");
    assert!(!dest.exists());
    assert_eq!(count(t.path()), 1, "only the store is left");
}

/// The host's Debian mirror answers (tests needing it skip otherwise).
fn mirror_or_skip(test: &str) -> bool {
    let ok = Command::new("apt-get")
        .args(["download", "--print-uris", "busybox-static"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: {test} needs the Debian mirror");
    }
    ok
}

#[test]
fn run_takes_an_archive_path() {
    if !root_or_skip("run_takes_an_archive_path") {
        return;
    }
    let busybox = match busybox_root::cached() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIP: run_takes_an_archive_path needs the Debian mirror: {e}");
            return;
        }
    };
    let t = tempfile::tempdir().unwrap();
    // A one-layer docker-archive of the busybox tree, packed by the system tar.
    let layer = t.path().join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&busybox)
        .args(["--numeric-owner", "-cf"])
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let layer_bytes = std::fs::read(&layer).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer_bytes)]},
    }))
    .unwrap();
    let archive = t.path().join("busybox.tar");
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["test/busybox:archive"],
        "Layers": ["layer.tar"],
    }]))
    .unwrap();
    std::fs::write(
        &archive,
        tar_of(&[
            ("config.json".to_string(), config),
            ("layer.tar".to_string(), layer_bytes),
            ("manifest.json".to_string(), manifest),
        ]),
    )
    .unwrap();
    let root = t.path().join("store");
    let out = imgbuild(
        &root,
        &[
            "run",
            "--rm",
            archive.to_str().unwrap(),
            "echo",
            "from-archive",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-archive\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loaded"), "{err}");
    // The image stays in the store under the archive's name.
    let out = imgbuild(&root, &["run", "--rm", "test/busybox:archive", "true"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn build_load_then_run() {
    if !root_or_skip("build_load_then_run") || !mirror_or_skip("build_load_then_run") {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cache = tmp.join("store-load-cache");
    let t = tempfile::tempdir_in(tmp).unwrap();
    let root = t.path().join("store");
    let target = t.path().join("out");
    let desc = Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptions/debian-minimal");
    let out = imgbuild(
        &root,
        &[
            "build",
            desc.to_str().unwrap(),
            "--profile",
            "bookworm",
            "--target-dir",
            target.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--load",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Loaded image: debian-minimal:12"),
        "{stdout}"
    );
    let out = imgbuild(
        &root,
        &[
            "run",
            "--rm",
            "debian-minimal:12",
            "cat",
            "/etc/debian_version",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("12."),
        "{out:?}"
    );
    // The store's image is the one the build wrote.
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("result.json")).unwrap()).unwrap();
    let store = open(&root);
    let rec = store.image("debian-minimal:12").unwrap();
    assert_eq!(
        result["config_digest"].as_str(),
        Some(rec.id.as_str()),
        "{result}"
    );
}
