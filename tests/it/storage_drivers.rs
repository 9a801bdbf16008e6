//! Storage drivers end to end (root only): a synthetic two-layer image with a whiteout, an
//! opaque directory, symlinks and setuid/setgid files is loaded; containers made from it see the
//! merged view and never each other's writes; images sharing a base store it once; nothing stays
//! mounted afterwards.

use crate::support::storage::*;
use crate::support::{mounts_under, root_or_skip, skip};

use imgbuild::storage::{ConfinedApplier, DriverKind, Store, StoreOptions};
use std::path::Path;

fn open(root: &Path, kind: DriverKind) -> Store {
    Store::open(&StoreOptions {
        root: root.to_path_buf(),
        driver: Some(kind),
    })
    .unwrap()
}

fn two_layer() -> TestImage {
    TestImage::new(&[base_layer(), top_layer()], "two")
}

/// Load the image, make two containers, check the merged view and their isolation.
fn containers_are_isolated(root: &Path, kind: DriverKind) {
    let store = open(root, kind);
    assert_eq!(store.driver_kind(), kind);
    let img = two_layer();
    let rec = store
        .load(img.input(), &["test/two:1".to_string()], &ConfinedApplier)
        .unwrap();
    assert_eq!(rec.id, img.id());
    assert_eq!(rec.layers.len(), 2);

    let a = store.create_container("test/two:1").unwrap();
    // A short id prefix names the image too.
    let b = store.create_container(&rec.id[7..19]).unwrap();
    assert_ne!(a.id, b.id);
    assert_ne!(a.rootfs, b.rootfs);
    assert_merged_view(&a.rootfs);
    assert_merged_view(&b.rootfs);

    std::fs::write(a.rootfs.join("etc/written-in-a"), b"a").unwrap();
    std::fs::write(a.rootfs.join("etc/os-release"), b"ID=changed\n").unwrap();
    std::fs::remove_file(a.rootfs.join("keep/a")).unwrap();
    assert!(
        !b.rootfs.join("etc/written-in-a").exists(),
        "b sees a's new file"
    );
    assert_eq!(
        std::fs::read(b.rootfs.join("etc/os-release")).unwrap(),
        b"ID=imgbuild-test\n"
    );
    assert!(b.rootfs.join("keep/a").exists(), "b lost a file a deleted");

    store.release_container(&a.id).unwrap();
    // A third container starts from the pristine image again.
    let c = store.create_container("test/two:1").unwrap();
    assert_merged_view(&c.rootfs);
    assert!(!c.rootfs.join("etc/written-in-a").exists());
    for x in [&b, &c] {
        store.release_container(&x.id).unwrap();
    }
    for x in [&a, &b, &c] {
        assert!(!x.rootfs.exists(), "{} left behind", x.rootfs.display());
    }
    assert!(store.containers().unwrap().is_empty());
    assert_eq!(mounts_under(root), Vec::<String>::new());
}

/// Load two images sharing the base; `count` reports how many layers the driver holds.
fn base_is_shared(root: &Path, kind: DriverKind, count: &dyn Fn() -> usize) {
    let store = open(root, kind);
    let one = two_layer();
    let two = TestImage::new(&[base_layer(), other_top_layer()], "other");
    store
        .load(one.input(), &["one".to_string()], &ConfinedApplier)
        .unwrap();
    store
        .load(two.input(), &["two".to_string()], &ConfinedApplier)
        .unwrap();
    let recs = store.images().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].layers[0].chain_id, recs[1].layers[0].chain_id);
    assert_eq!(count(), 3, "base layer stored more than once");
    assert_eq!(std::fs::read_dir(root.join("layers")).unwrap().count(), 3);

    let c = store.create_container("two").unwrap();
    assert!(c.rootfs.join("srv/other").exists());
    assert!(
        c.rootfs.join("etc/gone").exists(),
        "the other image has no whiteout"
    );
    store.remove_image("one").unwrap();
    assert_eq!(count(), 2, "removing one image must keep the shared base");
    assert!(c.rootfs.join("etc/os-release").exists());
    store.release_container(&c.id).unwrap();
    store.remove_image("two").unwrap();
    assert_eq!(count(), 0);
    assert_eq!(
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(mounts_under(root), Vec::<String>::new());
}

fn dir_count(dir: &Path, skip: &[&str]) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            !skip.iter().any(|s| n == *s)
        })
        .count()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn vfs_containers_are_isolated() {
    if !root_or_skip("vfs_containers_are_isolated") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    containers_are_isolated(dir.path(), DriverKind::Vfs);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn vfs_base_is_shared() {
    if !root_or_skip("vfs_base_is_shared") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layers = dir.path().join("vfs/layers");
    base_is_shared(dir.path(), DriverKind::Vfs, &|| dir_count(&layers, &[]));
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn overlay_containers_are_isolated() {
    if !root_or_skip("overlay_containers_are_isolated") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    containers_are_isolated(dir.path(), DriverKind::Overlay);
    // The layer directories hold whiteouts in overlayfs form.
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let store = open(dir.path(), DriverKind::Overlay);
    let rec = store.image("test/two:1").unwrap();
    let top = rec.layers[1].chain_id.strip_prefix("sha256:").unwrap();
    let diff = dir.path().join("overlay").join(top).join("diff");
    let wh = std::fs::symlink_metadata(diff.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr::get(diff.join("opq"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn overlay_base_is_shared() {
    if !root_or_skip("overlay_base_is_shared") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ov = dir.path().join("overlay");
    base_is_shared(dir.path(), DriverKind::Overlay, &|| {
        assert_eq!(
            dir_count(&ov.join("l"), &[]),
            dir_count(&ov, &["l", "containers"])
        );
        dir_count(&ov, &["l", "containers"])
    });
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn overlay_mount_options_beyond_a_page_use_relative_paths() {
    if !root_or_skip("overlay_mount_options_beyond_a_page_use_relative_paths") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A 1.6 kB store path makes the absolute options (four paths) exceed 4 kB.
    let mut root = dir.path().to_path_buf();
    for i in 0..16 {
        root.push(format!("{i:02}{}", "x".repeat(98)));
    }
    assert!(root.as_os_str().len() * 4 > 4096);
    containers_are_isolated(&root, DriverKind::Overlay);
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn overlay_is_the_default_where_it_mounts() {
    if !root_or_skip("overlay_is_the_default_where_it_mounts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions {
        root: dir.path().to_path_buf(),
        driver: None,
    })
    .unwrap();
    assert_eq!(store.driver_kind(), DriverKind::Overlay);
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn btrfs_containers_are_isolated() {
    if !root_or_skip("btrfs_containers_are_isolated") {
        return;
    }
    let (image, mnt) = {
        let fs = BtrfsLoop::new().unwrap();
        let root = fs.mnt.join("store");
        containers_are_isolated(&root, DriverKind::Btrfs);
        // Only the two layer subvolumes remain; container snapshots are gone.
        let subs = fs.subvolumes();
        assert_eq!(subs.len(), 2, "{subs:?}");
        assert!(
            subs.iter()
                .all(|s| s.starts_with("store/btrfs/subvolumes/"))
        );
        (fs.image.clone(), fs.mnt.clone())
    };
    assert_eq!(mounts_under(&mnt), Vec::<String>::new());
    assert_eq!(loops_backed_by(&image), Vec::<String>::new());
    assert!(!image.exists());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn btrfs_base_is_shared() {
    if !root_or_skip("btrfs_base_is_shared") {
        return;
    }
    let (image, mnt) = {
        let fs = BtrfsLoop::new().unwrap();
        let root = fs.mnt.join("store");
        base_is_shared(&root, DriverKind::Btrfs, &|| {
            fs.subvolumes()
                .iter()
                .filter(|s| s.starts_with("store/btrfs/subvolumes/"))
                .count()
        });
        (fs.image.clone(), fs.mnt.clone())
    };
    assert_eq!(mounts_under(&mnt), Vec::<String>::new());
    assert_eq!(loops_backed_by(&image), Vec::<String>::new());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn btrfs_loop_guard_cleans_up_when_a_test_panics() {
    if !root_or_skip("btrfs_loop_guard_cleans_up_when_a_test_panics") {
        return;
    }
    let mut seen = None;
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let fs = BtrfsLoop::new().unwrap();
        seen = Some((fs.image.clone(), fs.mnt.clone()));
        let store = open(&fs.mnt.join("store"), DriverKind::Btrfs);
        store
            .load(two_layer().input(), &[], &ConfinedApplier)
            .unwrap();
        let _c = store.create_container(&two_layer().id()).unwrap();
        panic!("deliberate failure with a container snapshot in place");
    }));
    assert!(res.is_err());
    let (image, mnt) = seen.unwrap();
    assert_eq!(mounts_under(&mnt), Vec::<String>::new());
    assert_eq!(loops_backed_by(&image), Vec::<String>::new());
    assert!(!image.exists());
}

#[test]
fn btrfs_refused_off_btrfs() {
    let dir = tempfile::tempdir().unwrap();
    let st = nix::sys::statfs::statfs(dir.path()).unwrap();
    if st.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC {
        skip(format_args!(
            "btrfs_refused_off_btrfs needs a temp dir not on btrfs"
        ));
        return;
    }
    let err = Store::open(&StoreOptions {
        root: dir.path().to_path_buf(),
        driver: Some(DriverKind::Btrfs),
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("needs the store on a btrfs filesystem"),
        "{err}"
    );
    // Nothing was recorded: the store can still be opened with another driver.
    assert!(!dir.path().join("storage.json").exists());
}

#[test]
fn devicemapper_refused_without_dm_thin() {
    let has_dm = std::fs::read_to_string("/proc/devices")
        .unwrap()
        .contains("device-mapper");
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(&StoreOptions {
        root: dir.path().to_path_buf(),
        driver: Some(DriverKind::Devicemapper),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("devicemapper"), "{err}");
    if !has_dm {
        assert!(err.contains("this kernel has no device-mapper"), "{err}");
    }
    assert!(!dir.path().join("storage.json").exists());
}
