//! `imgbuild load`, `save`, `build --load` and `run ARCHIVE`: every archive format into the
//! store, save→load round trips, refusal of corrupt and hostile archives, and an image built
//! from a description run straight from the store. The store uses the vfs driver, which needs
//! root to give files their owners; the build and run tests also need the Debian mirror.

use crate::support::build::bookworm_build;
use crate::support::storage::*;
use crate::support::{busybox, heavy, root_or_skip, skip};

use imgbuild::storage::archive::{self, SaveFormat};
use imgbuild::storage::{DriverKind, Store, StoreOptions, sha256_digest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    std::fs::read_dir(dir).map_or(0, std::iter::Iterator::count)
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
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
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
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
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
    assert_eq!(v[0]["Id"], two_layer().id()[7..]);
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
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
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
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
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
        // Said of the archive: not of the temporary copy a member is verified in.
        assert!(!err.contains("imgbuild-base-"), "{label}: {err}");
        assert_empty(&root);
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
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
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
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

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn run_takes_an_archive_path() {
    if !root_or_skip("run_takes_an_archive_path") {
        return;
    }
    let busybox = match busybox::root() {
        Ok(p) => p,
        Err(e) => {
            skip(format_args!(
                "run_takes_an_archive_path needs the Debian mirror: {e}"
            ));
            return;
        }
    };
    let t = tempfile::tempdir().unwrap();
    // A one-layer docker-archive of the busybox tree, packed by the system tar.
    let layer = t.path().join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(busybox)
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
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn build_load_then_run() {
    // The bookworm build made once per run: built again unchanged, it is reused, and
    // `--load` loads it all the same.
    let Some(shared) = bookworm_build("build_load_then_run") else {
        return;
    };
    let _h = heavy();
    let t = crate::support::scratch("build_load_then_run");
    let root = t.path().join("store");
    let target = &shared.target;
    let desc = crate::support::description("debian-minimal");
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
            shared.cache.to_str().unwrap(),
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

// Limits on untrusted archives (issue 9, finding 8): an archive of 10,000 layers was unpacked
// for over a minute, and a layer whose diff_id is wrong was unpacked until the disk was full.

/// An image whose `n` layers are all the same tiny layer (one blob): the cheapest deep image.
fn deep_image(n: usize) -> TestImage {
    let one = TestImage::new(&[vec![E::File("f", b"x", 0o644, 0, 0)]], "deep");
    let diff = sha256_digest(&layer_tar(&[E::File("f", b"x", 0o644, 0, 0)]));
    TestImage::assemble(vec![diff; n], vec![one.blobs[0].clone(); n], "deep")
}

/// `members` without repeated names (the first of each kept).
fn dedup(members: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut seen = std::collections::BTreeSet::new();
    members
        .into_iter()
        .filter(|(n, _)| seen.insert(n.clone()))
        .collect()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn load_refuses_too_many_layers() {
    if !root_or_skip("load_refuses_too_many_layers") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let deep = deep_image(126);
    let layout = t.path().join("layout");
    write_layout(&layout, &dedup(oci_members(&deep, TAG)));
    let oci = t.path().join("deep.oci.tar");
    std::fs::write(&oci, tar_of(&dedup(oci_members(&deep, TAG)))).unwrap();
    let docker = t.path().join("deep.docker.tar.gz");
    std::fs::write(&docker, gzip(&tar_of(&dedup(docker_members(&deep, TAG))))).unwrap();
    for path in [&layout, &oci, &docker] {
        let root = t.path().join(format!(
            "store-{}",
            path.file_name().unwrap().to_string_lossy()
        ));
        let out = imgbuild(&root, &["load", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{} loaded", path.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "{}: the image has 126 layers, more than the 125 Docker and podman allow",
                path.display()
            )),
            "{err}"
        );
        assert_empty(&root);
        // Refused by the count alone, before any blob was unpacked or read for a digest.
        match archive::open_archive(path) {
            Err(archive::ArchiveError::Read {
                source: imgbuild::image::ImageError::TooManyLayers { count: 126, .. },
                ..
            }) => {}
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    // 125 is Docker's limit, and allowed.
    let ok = t.path().join("ok.oci.tar");
    std::fs::write(&ok, tar_of(&dedup(oci_members(&deep_image(125), TAG)))).unwrap();
    let store = open(&t.path().join("store-ok"));
    let rec = archive::load_archive(&store, &ok, &[]).unwrap().record;
    assert_eq!(rec.layers.len(), 125);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn load_stops_at_wrong_diff_id_layer_without_filling_disk() {
    if !root_or_skip("load_stops_at_wrong_diff_id_layer_without_filling_disk") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // The store on a 64 MiB filesystem; each layer unpacks to 128 MiB.
    let fs = Tmpfs::new(64 << 20).expect("mount a tmpfs");
    let reserve = imgbuild::image::limits::reserve_of(64 << 20);
    let (gz, true_diff_id) = zero_layer(128 << 20);
    let wrong = sha256_digest(b"not this layer");
    let blob = (sha256_digest(&gz), gz);
    for (label, diff_id) in [("wrong-diff-id", &wrong), ("gzip-bomb", &true_diff_id)] {
        let img = TestImage::assemble(vec![diff_id.clone()], vec![blob.clone()], label);
        let path = t.path().join(format!("{label}.oci.tar"));
        std::fs::write(&path, tar_of(&oci_members(&img, TAG))).unwrap();
        let root = fs.path().join(label);
        let store = open(&root);
        let before = fs.available();
        // The least free space seen while the load runs, measured until it has ended.
        let done = std::sync::atomic::AtomicBool::new(false);
        let (result, least) = std::thread::scope(|s| {
            let watch = s.spawn(|| {
                let mut least = u64::MAX;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    least = least.min(fs.available());
                    std::thread::yield_now();
                }
                least
            });
            let result = archive::load_archive(&store, &path, &[]);
            done.store(true, std::sync::atomic::Ordering::Release);
            (result, watch.join().unwrap())
        });
        let err = result.expect_err(label);
        assert!(
            matches!(
                &err,
                archive::ArchiveError::Store {
                    source: imgbuild::storage::StorageError::LayerTooLarge { .. },
                    ..
                }
            ),
            "{label}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&blob.0) && msg.contains("the partial layer was removed"),
            "{label}: {msg}"
        );
        // Stopped at the bound, never at a full disk, and nothing of the layer is left.
        assert!(
            least >= reserve / 2,
            "{label}: only {least} bytes were left free"
        );
        assert_empty(&root);
        assert!(
            fs.available() + (64 << 10) >= before,
            "{label}: space not given back"
        );
    }
    // A docker-archive's layer is checked against its diff_id before it is stored at all.
    let img = TestImage::assemble(vec![wrong.clone()], vec![blob.clone()], "docker");
    let path = t.path().join("wrong.docker.tar");
    let mut members = docker_members(&img, TAG);
    // docker_members unpacks the layer; keep it compressed (docker load accepts that too).
    for m in &mut members {
        if m.0.ends_with("layer.tar") {
            m.1 = blob.1.clone();
        }
    }
    std::fs::write(&path, tar_of(&members)).unwrap();
    let root = fs.path().join("docker");
    let store = open(&root);
    let err = archive::load_archive(&store, &path, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("digest mismatch") && err.contains(&wrong),
        "{err}"
    );
    assert_empty(&root);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn oci_blob_larger_than_descriptor_is_refused() {
    if !root_or_skip("oci_blob_larger_than_descriptor_is_refused") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = two_layer();
    let (digest, data) = img.blobs[1].clone();
    let declared = data.len();
    let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let mut members = oci_members(&img, TAG);
    for m in &mut members {
        if m.0 == name {
            // The blob as the manifest describes it, and a megabyte more.
            m.1.extend(std::iter::repeat_n(0u8, 1 << 20));
        }
    }
    let layout = t.path().join("layout");
    write_layout(&layout, &members);
    let oci = t.path().join("big-blob.oci.tar");
    std::fs::write(&oci, tar_of(&members)).unwrap();
    let want = format!(
        "layer blob {digest} is {} bytes but the manifest says {declared}",
        declared + (1 << 20)
    );
    for path in [&layout, &oci] {
        let root = t.path().join(format!(
            "store-{}",
            path.file_name().unwrap().to_string_lossy()
        ));
        let out = imgbuild(&root, &["load", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{} loaded", path.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&want) && err.contains(path.to_str().unwrap()),
            "{err}"
        );
        assert_empty(&root);
    }
    // The same for a base of a derived build.
    let err = imgbuild::image::base::BaseImage::open(&format!("oci-archive:{}", oci.display()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&want), "{err}");
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn oversized_manifests_and_configs_are_refused() {
    if !root_or_skip("oversized_manifests_and_configs_are_refused") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = two_layer();
    // JSON padded with whitespace past the 4 MiB containers/image allows (1 MiB for a
    // docker-archive's manifest.json).
    let pad = |json: &[u8], to: usize| {
        let mut v = json.to_vec();
        v.resize(to, b' ');
        v
    };
    let mut big_index = oci_members(&img, TAG);
    for m in &mut big_index {
        if m.0 == "index.json" {
            m.1 = pad(&m.1, (4 << 20) + 1);
        }
    }
    let mut big_docker = docker_members(&img, TAG);
    for m in &mut big_docker {
        if m.0 == "manifest.json" {
            m.1 = pad(&m.1, (1 << 20) + 1);
        }
    }
    // A config over the limit, named by a manifest that agrees with it.
    let mut cfg: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    cfg["config"]["Labels"]["pad"] = serde_json::Value::String("x".repeat(4 << 20));
    let config = serde_json::to_vec(&cfg).unwrap();
    let mut big_config_img = img.clone();
    let mut m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    m["config"]["digest"] = sha256_digest(&config).into();
    m["config"]["size"] = config.len().into();
    big_config_img.manifest = serde_json::to_vec(&m).unwrap();
    big_config_img.config = config;
    let cases = [
        ("index", tar_of(&big_index), "index.json of 4194305 bytes"),
        (
            "docker-manifest",
            tar_of(&big_docker),
            "docker-archive manifest.json of 1048577 bytes",
        ),
        (
            "config",
            tar_of(&oci_members(&big_config_img, TAG)),
            "config of",
        ),
    ];
    for (label, data, want) in cases {
        let p = t.path().join(format!("{label}.tar"));
        std::fs::write(&p, data).unwrap();
        let root = t.path().join(format!("store-{label}"));
        let out = imgbuild(&root, &["load", p.to_str().unwrap()]);
        assert!(!out.status.success(), "{label} loaded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want) && err.contains("is larger than the"),
            "{label}: {err}"
        );
        assert_empty(&root);
    }
}
