//! The image store's bookkeeping: verification, references, tags, removal, concurrency,
//! export, the recorded driver, and the `images`/`inspect`/`rmi`/`tag` commands. These use the
//! vfs driver, which needs root to give files their owners.

use crate::support::root_or_skip;
use crate::support::storage::*;

use imgbuild::storage::{
    ApplyMode, ConfinedApplier, DriverKind, LayerApplier, Removal, StorageError, Store,
    StoreOptions, sha256_digest,
};
use std::path::{Path, PathBuf};
use std::process::Command;

fn open(root: &Path) -> Store {
    Store::open(&StoreOptions {
        root: root.to_path_buf(),
        driver: Some(DriverKind::Vfs),
    })
    .unwrap()
}

fn two_layer(label: &str) -> TestImage {
    TestImage::new(&[base_layer(), top_layer()], label)
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// The store holds no image, layer, blob or temp file.
fn assert_empty(root: &Path) {
    for d in [
        "images",
        "layers",
        "blobs/sha256",
        "tmp",
        "vfs/layers",
        "containers",
    ] {
        assert_eq!(count(&root.join(d)), 0, "{d} not empty");
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn blob_stream_longer_than_its_manifest_size_stops_at_the_first_extra_byte() {
    if !root_or_skip("blob_stream_longer_than_its_manifest_size_stops_at_the_first_extra_byte") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let img = two_layer("endless");
    let mut input = img.input();
    // The blob goes on for ever after the bytes its descriptor counts: the store must stop
    // reading at the first byte too many (this test would not end otherwise).
    let (digest, data) = img.blobs[1].clone();
    let endless = std::io::Read::chain(std::io::Cursor::new(data.clone()), std::io::repeat(0));
    input.layers[1].data = Box::new(endless);
    let err = store.load(input, &[], &ConfinedApplier).unwrap_err();
    match &err {
        StorageError::BlobSizeMismatch {
            digest: d,
            declared,
            found,
        } => {
            assert_eq!(d, &digest);
            assert_eq!(*declared, data.len() as u64);
            assert_eq!(found, &format!("more than {}", data.len()));
        }
        other => panic!("{other}"),
    }
    assert_empty(dir.path());
    // More layers than Docker allows are refused before anything is stored.
    let layer = layer_tar(&[E::File("f", b"x", 0o644, 0, 0)]);
    let one = TestImage::new(&[vec![E::File("f", b"x", 0o644, 0, 0)]], "deep");
    let deep = TestImage::assemble(
        vec![sha256_digest(&layer); 126],
        vec![one.blobs[0].clone(); 126],
        "deep",
    );
    let err = store.load(deep.input(), &[], &ConfinedApplier).unwrap_err();
    assert!(
        err.to_string().contains("126 layers, more than the 125"),
        "{err}"
    );
    assert_empty(dir.path());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn corrupt_layer_blob_is_refused_and_leaves_nothing() {
    if !root_or_skip("corrupt_layer_blob_is_refused_and_leaves_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut img = two_layer("corrupt");
    let last = img.blobs[1].1.len() - 1;
    img.blobs[1].1[last] ^= 0xff;
    let err = store
        .load(img.input(), &["bad".into()], &ConfinedApplier)
        .unwrap_err();
    match &err {
        StorageError::BlobDigestMismatch { expected, actual } => {
            assert_eq!(expected, &img.blobs[1].0);
            assert_ne!(expected, actual);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_empty(dir.path());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn wrong_diff_id_is_refused_and_leaves_nothing() {
    if !root_or_skip("wrong_diff_id_is_refused_and_leaves_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let good = two_layer("diff");
    // The config claims the base layer's uncompressed content is something else.
    let diff_ids = vec![
        sha256_digest(b"not the layer"),
        sha256_digest(&layer_tar(&top_layer())),
    ];
    let img = TestImage::assemble(diff_ids, good.blobs.clone(), "diff");
    let err = store.load(img.input(), &[], &ConfinedApplier).unwrap_err();
    assert!(matches!(err, StorageError::DiffIdMismatch { .. }), "{err}");
    assert_empty(dir.path());
    // The good image still loads afterwards.
    store.load(good.input(), &[], &ConfinedApplier).unwrap();
}

#[test]
fn config_not_matching_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions {
        root: dir.path().to_path_buf(),
        driver: Some(DriverKind::Vfs),
    })
    .unwrap();
    let mut img = two_layer("cfg");
    img.config.push(b' ');
    let err = store.load(img.input(), &[], &ConfinedApplier).unwrap_err();
    assert!(
        matches!(err, StorageError::BlobDigestMismatch { .. }),
        "{err}"
    );
    let mut img = two_layer("cfg");
    img.blobs.pop();
    let err = store.load(img.input(), &[], &ConfinedApplier).unwrap_err();
    assert!(err.to_string().contains("blobs given"), "{err}");
    let err = store
        .load(
            two_layer("cfg").input(),
            &["Bad:tag".into()],
            &ConfinedApplier,
        )
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidReference(_)), "{err}");
}

#[test]
fn driver_choice_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let err = Store::open(&StoreOptions {
        root: dir.path().to_path_buf(),
        driver: Some(DriverKind::Overlay),
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StorageError::DriverMismatch { .. }));
    assert!(msg.contains("'vfs'") && msg.contains("'overlay'"), "{msg}");
    let again = Store::open(&StoreOptions {
        root: dir.path().to_path_buf(),
        driver: None,
    })
    .unwrap();
    assert_eq!(again.driver_kind(), DriverKind::Vfs);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn references_tags_and_removal() {
    if !root_or_skip("references_tags_and_removal") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let one = two_layer("one");
    let two = TestImage::new(&[base_layer(), other_top_layer()], "two");
    let r1 = store
        .load(one.input(), &["repo/one".into()], &ConfinedApplier)
        .unwrap();
    assert_eq!(r1.tags, vec!["repo/one:latest"]);
    store
        .load(two.input(), &["repo/two:2".into()], &ConfinedApplier)
        .unwrap();

    // By tag, full id, id prefix with and without sha256:, manifest digest.
    let hex = &r1.id[7..];
    for r in [
        "repo/one",
        "repo/one:latest",
        &r1.id,
        &hex[..10],
        &format!("sha256:{}", &hex[..8]),
        &r1.manifest_digest,
    ] {
        assert_eq!(store.image(r).unwrap().id, r1.id, "{r}");
    }
    assert!(matches!(
        store.image("repo/none"),
        Err(StorageError::ImageNotFound(_))
    ));
    assert!(matches!(
        store.image("sha256:"),
        Err(StorageError::ImageNotFound(_))
    ));

    // A tag moves between images.
    store.tag("repo/one", "shared:x").unwrap();
    store.tag("repo/two:2", "shared:x").unwrap();
    assert_eq!(store.image("shared:x").unwrap().id, two.id());
    assert_eq!(store.image(&r1.id).unwrap().tags, vec!["repo/one:latest"]);
    // Loading an image with a tag another holds moves it as well.
    store
        .load(one.input(), &["shared:x".into()], &ConfinedApplier)
        .unwrap();
    assert_eq!(store.image("shared:x").unwrap().id, one.id());
    assert_eq!(store.image("repo/two:2").unwrap().tags, vec!["repo/two:2"]);

    // rmi of one of several tags only untags; of the last deletes.
    assert_eq!(
        store.remove_image("shared:x").unwrap(),
        vec![Removal::Untagged("shared:x".into())]
    );
    let c = store.create_container("repo/one").unwrap();
    assert!(matches!(
        store.remove_image("repo/one"),
        Err(StorageError::ImageInUse { .. })
    ));
    store.release_container(&c.id[..12]).unwrap();
    assert!(matches!(
        store.release_container(&c.id),
        Err(StorageError::ContainerNotFound(_))
    ));
    assert_eq!(
        store.remove_image("repo/one").unwrap(),
        vec![
            Removal::Untagged("repo/one:latest".into()),
            Removal::Deleted(r1.id.clone())
        ]
    );
    assert_eq!(store.images().unwrap().len(), 1);
    // The shared base stays for the other image: base + its own top.
    assert_eq!(count(&dir.path().join("layers")), 2);
    store.remove_image(&two.id()).unwrap();
    assert_empty(dir.path());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn ambiguous_prefix_is_an_error() {
    if !root_or_skip("ambiguous_prefix_is_an_error") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 17 ids over 16 hex digits: two share a first digit.
    let mut ids = Vec::new();
    for i in 0..17 {
        let img = TestImage::new(&[other_top_layer()], &format!("amb{i}"));
        ids.push(store.load(img.input(), &[], &ConfinedApplier).unwrap().id);
    }
    assert_eq!(count(&dir.path().join("layers")), 1);
    let first = |id: &String| id[7..8].to_string();
    let shared = ids
        .iter()
        .map(first)
        .find(|p| ids.iter().filter(|i| first(i) == *p).count() > 1)
        .unwrap();
    assert!(matches!(
        store.image(&shared),
        Err(StorageError::AmbiguousReference { .. })
    ));
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn concurrent_loads_share_the_base() {
    if !root_or_skip("concurrent_loads_share_the_base") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let root = dir.path().to_path_buf();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                // Each thread opens its own store, as separate commands would.
                let store = open(&root);
                let top = vec![E::File(["t0", "t1", "t2", "t3"][i], b"x", 0o644, 0, 0)];
                let img = TestImage::new(&[base_layer(), top], &format!("c{i}"));
                store
                    .load(img.input(), &[format!("conc:{i}")], &ConfinedApplier)
                    .unwrap()
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.images().unwrap().len(), 4);
    assert_eq!(count(&dir.path().join("layers")), 5);
    assert_eq!(count(&dir.path().join("vfs/layers")), 5);
    assert_eq!(count(&dir.path().join("tmp")), 0);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn export_round_trips_into_another_store() {
    if !root_or_skip("export_round_trips_into_another_store") {
        return;
    }
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let img = two_layer("export");
    let rec = open(a.path())
        .load(img.input(), &["x:1".into()], &ConfinedApplier)
        .unwrap();
    let input = open(a.path()).export("x:1").unwrap();
    assert_eq!(input.manifest, img.manifest);
    assert_eq!(input.config, img.config);
    let rec2 = open(b.path()).load(input, &[], &ConfinedApplier).unwrap();
    assert_eq!(rec2.id, rec.id);
    assert_eq!(rec2.manifest_digest, rec.manifest_digest);
    assert_eq!(rec2.layers, rec.layers);
}

fn imgbuild(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .args(args)
        .arg("--storage-root")
        .arg(root)
        .env_remove("IMGBUILD_STORAGE_ROOT")
        .env_remove("IMGBUILD_STORAGE_DRIVER")
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn cli_images_inspect_tag_rmi() {
    if !root_or_skip("cli_images_inspect_tag_rmi") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = two_layer("cli");
    open(dir.path())
        .load(img.input(), &["cli/img:1".into()], &ConfinedApplier)
        .unwrap();
    let root = dir.path();

    let out = imgbuild(root, &["images"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("REPOSITORY"), "{text}");
    assert!(
        text.contains("cli/img") && text.contains(&img.id()[7..19]),
        "{text}"
    );

    // Global options before the subcommand work too.
    let out = Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .arg("--storage-root")
        .arg(root)
        .args(["--storage-driver", "vfs", "tag", "cli/img:1", "cli/other"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = imgbuild(root, &["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Id"], img.id()[7..]);
    assert_eq!(
        v[0]["Names"],
        serde_json::json!(["cli/img:1", "cli/other:latest"])
    );

    let out = imgbuild(root, &["inspect", "cli/other"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Config"]["Labels"]["test"], "cli");
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    let out = imgbuild(root, &["--storage-driver", "overlay", "images"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("created with the 'vfs' storage driver"),
        "{err}"
    );

    // All or nothing: a missing name leaves the other untagged.
    let out = imgbuild(root, &["rmi", "cli/img:1", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such image: nope"));
    let out = imgbuild(root, &["rmi", "cli/img:1"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Untagged: cli/img:1\n"
    );
    let out = imgbuild(root, &["rmi", "cli/other"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Untagged: cli/other:latest\nDeleted: {}\n", &img.id()[7..])
    );
    assert_empty(root);
}

/// A raw tar header with any name (`tar::Builder` refuses names that climb out).
fn raw_entry(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn finish_tar(mut entries: Vec<u8>) -> Vec<u8> {
    entries.extend_from_slice(&[0u8; 1024]);
    entries
}

/// Hostile layers, each trying to write outside the layer directory in another way.
fn escape_layers(outside: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let victim = outside.join("victim");
    let victim = victim.to_str().unwrap().as_bytes().to_vec();
    let dir = outside.to_str().unwrap().as_bytes().to_vec();
    vec![
        (
            "dot-dot",
            finish_tar(raw_entry(
                b"../../escape",
                tar::EntryType::Regular,
                b"",
                b"x",
            )),
        ),
        ("symlink-then-write", {
            let mut t = raw_entry(b"out", tar::EntryType::Symlink, &dir, b"");
            t.extend(raw_entry(
                b"out/victim",
                tar::EntryType::Regular,
                b"",
                b"pwned",
            ));
            finish_tar(t)
        }),
        ("relative-symlink-then-write", {
            let mut t = raw_entry(b"up", tar::EntryType::Symlink, b"../../../../..", b"");
            let mut name = b"up".to_vec();
            name.extend_from_slice(&victim);
            t.extend(raw_entry(&name, tar::EntryType::Regular, b"", b"pwned"));
            finish_tar(t)
        }),
        (
            "hardlink-to-outside",
            finish_tar(raw_entry(b"hl", tar::EntryType::Link, &victim, b"")),
        ),
    ]
}

/// Every path below `dir` with its content (files) or link target, skipping `skip`.
fn snapshot(dir: &Path, skip: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !e.path().starts_with(skip))
        .map(|e| {
            let e = e.unwrap();
            let data = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else if e.file_type().is_symlink() {
                std::fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                Vec::new()
            };
            (e.path().to_path_buf(), data)
        })
        .collect()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn confined_applier_refuses_escapes_in_both_modes() {
    if !root_or_skip("confined_applier_refuses_escapes_in_both_modes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"original").unwrap();
    let layers_dir = dir.path().join("layers");
    for mode in [ApplyMode::Apply, ApplyMode::OverlayFs] {
        for (what, tar) in escape_layers(&outside) {
            let target = layers_dir.join(format!("{what}-{mode:?}"));
            std::fs::create_dir_all(&target).unwrap();
            let before = snapshot(dir.path(), &layers_dir);
            let err = ConfinedApplier
                .apply(&mut &tar[..], &target, mode)
                .expect_err(what);
            let msg = err.to_string();
            assert!(
                msg.contains("refused") || msg.contains("escape"),
                "{what}: {msg}"
            );
            assert_eq!(snapshot(dir.path(), &layers_dir), before, "{what} {mode:?}");
            assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"original");
        }
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn applier_errors_leave_nothing_behind() {
    if !root_or_skip("applier_errors_leave_nothing_behind") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"original").unwrap();
    let root = dir.path().join("store");
    let store = open(&root);
    let base = layer_tar(&base_layer());
    for (what, bad) in escape_layers(&outside) {
        let before = snapshot(dir.path(), &root);
        let blobs: Vec<(String, Vec<u8>)> = [base.clone(), bad.clone()]
            .into_iter()
            .map(|t| (sha256_digest(&t), t))
            .collect();
        let img = TestImage::assemble(vec![sha256_digest(&base), sha256_digest(&bad)], blobs, what);
        let err = store
            .load(img.input(), &["esc".into()], &ConfinedApplier)
            .unwrap_err();
        assert!(matches!(err, StorageError::Apply { .. }), "{what}: {err}");
        assert!(err.to_string().contains(&sha256_digest(&bad)), "{err}");
        assert_eq!(snapshot(dir.path(), &root), before, "{what}");
        assert!(!dir.path().join("escape").exists());
        assert!(!root.join("escape").exists());
        assert_empty(&root);
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn zstd_and_uncompressed_layers_load() {
    if !root_or_skip("zstd_and_uncompressed_layers_load") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let base = layer_tar(&base_layer());
    let top = layer_tar(&top_layer());
    let zst = zstd::encode_all(&top[..], 3).unwrap();
    let img = TestImage::assemble(
        vec![sha256_digest(&base), sha256_digest(&top)],
        vec![(sha256_digest(&base), base), (sha256_digest(&zst), zst)],
        "zstd",
    );
    store
        .load(img.input(), &["z".into()], &ConfinedApplier)
        .unwrap();
    let c = store.create_container("z").unwrap();
    assert_merged_view(&c.rootfs);
    store.release_container(&c.id).unwrap();
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn concurrent_tag_commands_lose_nothing() {
    if !root_or_skip("concurrent_tag_commands_lose_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = two_layer("tags");
    open(dir.path())
        .load(img.input(), &["t:0".into()], &ConfinedApplier)
        .unwrap();
    // Each command reads, changes and rewrites the same image record; without the store lock
    // some of these updates would be lost.
    let children: Vec<_> = (1..=8)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_imgbuild"))
                .arg("--storage-root")
                .arg(dir.path())
                .args(["tag", "t:0", &format!("t:{i}")])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let tags = open(dir.path()).image("t:0").unwrap().tags;
    assert_eq!(tags.len(), 9, "{tags:?}");
}

/// A stored image as an OCI layout (what a derived build reads a registry base from): its blobs
/// are hard links to the store's, it reads back as a verified base with the image's manifest
/// digest, and removing the image removes the layout.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn oci_layout_of_an_image_is_linked_and_removed_with_it() {
    use std::os::unix::fs::MetadataExt;
    if !root_or_skip("oci_layout_of_an_image_is_linked_and_removed_with_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let img = two_layer("layout");
    let record = store
        .load(img.input(), &["layout/test:1".into()], &ConfinedApplier)
        .unwrap();
    let layout = store.oci_layout("layout/test:1").unwrap();
    assert_eq!(layout, store.oci_layout(&record.manifest_digest).unwrap());
    for (digest, _) in &img.blobs {
        let hex = digest.trim_start_matches("sha256:");
        let linked = std::fs::metadata(layout.join("blobs/sha256").join(hex)).unwrap();
        let stored = std::fs::metadata(dir.path().join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(linked.ino(), stored.ino(), "{digest} is a hard link");
    }
    let base =
        imgbuild::image::base::BaseImage::open(&format!("oci:{}", layout.display())).unwrap();
    assert_eq!(base.manifest_digest, record.manifest_digest);
    assert_eq!(base.layers.len(), 2);
    store.remove_image("layout/test:1").unwrap();
    assert!(!layout.exists(), "the layout went with its image");
    assert_empty(dir.path());
}
