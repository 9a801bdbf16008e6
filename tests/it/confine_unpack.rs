//! Confined tar unpacking: normal archives come out as tar/bsdtar would write them, hostile
//! archives are refused with an error naming the entry and change nothing outside the root.

use crate::support::{is_root, skip};
use imgbuild::confine::{
    ConfineError, DevicePolicy, EntryKind, Resolver, Root, UnpackOptions, Whiteouts, unpack,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

/// A tar archive written entry by entry; names go into the header verbatim so hostile names
/// (`..`, absolute) survive (the tar crate's own setters refuse them).
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(name: &str, kind: EntryType, size: u64, mode: u32, link: Option<&str>) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            g.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        h
    }

    fn raw(mut self, h: Header, data: &[u8]) -> Tar {
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(self, name: &str, mode: u32) -> Tar {
        self.raw(Self::header(name, EntryType::Directory, 0, mode, None), b"")
    }

    fn file(self, name: &str, data: &[u8]) -> Tar {
        self.raw(
            Self::header(name, EntryType::Regular, data.len() as u64, 0o644, None),
            data,
        )
    }

    fn symlink(self, name: &str, target: &str) -> Tar {
        self.raw(
            Self::header(name, EntryType::Symlink, 0, 0o777, Some(target)),
            b"",
        )
    }

    fn hardlink(self, name: &str, target: &str) -> Tar {
        self.raw(
            Self::header(name, EntryType::Link, 0, 0o644, Some(target)),
            b"",
        )
    }

    fn pax(mut self, pairs: &[(&str, &[u8])]) -> Tar {
        self.0.append_pax_extensions(pairs.iter().copied()).unwrap();
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A temp dir holding `root/` and a sentinel tree `outside/` beside it.
struct Scene {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir_all(outside.join("etc")).unwrap();
        fs::write(outside.join("etc/passwd"), b"sentinel").unwrap();
        Scene {
            _tmp: tmp,
            root,
            outside,
        }
    }

    /// Every path under `outside/` with its content: must not change.
    fn outside_state(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        walkdir::WalkDir::new(&self.outside)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let data = if e.file_type().is_file() {
                    fs::read(e.path()).unwrap()
                } else {
                    Vec::new()
                };
                (e.path().to_path_buf(), data)
            })
            .collect()
    }
}

/// Unpack `tar` with both resolvers into fresh scenes; expect refusal of entry `index`, and
/// no change outside.
fn assert_refused(build: impl Fn(&Scene) -> Vec<u8>, index: u64, setup: impl Fn(&Scene)) {
    for resolver in [Resolver::Openat2, Resolver::Walk] {
        let scene = Scene::new();
        setup(&scene);
        let before = scene.outside_state();
        let root = Root::open_with(&scene.root, resolver).unwrap();
        let bytes = build(&scene);
        let err = unpack(&root, bytes.as_slice(), &UnpackOptions::default()).unwrap_err();
        match &err {
            ConfineError::Entry { index: i, .. } => assert_eq!(*i, index, "{err}"),
            other => panic!("expected an entry error, got {other}"),
        }
        assert_eq!(
            scene.outside_state(),
            before,
            "outside changed ({resolver:?}): {err}"
        );
    }
}

#[test]
fn regular_archive_round_trip() {
    let mut uid_file = Tar::header("d/owned", EntryType::Regular, 3, 0o4755, None);
    uid_file.set_uid(1234);
    uid_file.set_gid(4321);
    uid_file.set_cksum();
    let bytes = Tar::new()
        .dir("./", 0o755)
        .dir("./d/", 0o555)
        .file("./d/hello", b"hello")
        .raw(uid_file, b"abc")
        .symlink("./d/link", "/etc/hostname")
        .hardlink("./d/hard", "./d/hello")
        .raw(Tar::header("d/fifo", EntryType::Fifo, 0, 0o640, None), b"")
        .file("/abs/file", b"x")
        .bytes();
    for resolver in [Resolver::Openat2, Resolver::Walk] {
        let scene = Scene::new();
        let root = Root::open_with(&scene.root, resolver).unwrap();
        let opts = UnpackOptions {
            sha256: true,
            ..Default::default()
        };
        let report = unpack(&root, bytes.as_slice(), &opts).unwrap();
        let paths: Vec<_> = report
            .entries
            .iter()
            .map(|e| e.path.to_str().unwrap().to_string())
            .collect();
        // `abs` is created as a parent, not an entry: the report lists entries only.
        assert_eq!(
            paths,
            [
                ".", "d", "d/hello", "d/owned", "d/link", "d/hard", "d/fifo", "abs/file"
            ]
        );
        let hello = &report.entries[2];
        assert_eq!(hello.kind, EntryKind::File);
        assert_eq!(hello.size, 5);
        assert_eq!(hello.sha256, Some(Sha256::digest(b"hello").into()));
        assert_eq!(
            report.entries[4].link.as_deref(),
            Some(Path::new("/etc/hostname"))
        );
        assert_eq!(
            report.entries[5].link.as_deref(),
            Some(Path::new("d/hello"))
        );

        let d = scene.root.join("d");
        assert_eq!(
            fs::symlink_metadata(&d).unwrap().permissions().mode() & 0o7777,
            0o555
        );
        assert_eq!(fs::read(d.join("hello")).unwrap(), b"hello");
        let owned = fs::metadata(d.join("owned")).unwrap();
        if is_root() {
            assert_eq!((owned.uid(), owned.gid()), (1234, 4321));
            assert_eq!(owned.mode() & 0o7777, 0o4755);
        }
        assert_eq!(owned.mtime(), 1_600_000_000);
        assert_eq!(
            fs::read_link(d.join("link")).unwrap(),
            Path::new("/etc/hostname")
        );
        assert_eq!(
            fs::metadata(d.join("hard")).unwrap().ino(),
            fs::metadata(d.join("hello")).unwrap().ino()
        );
        let fifo = fs::symlink_metadata(d.join("fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o777, 0o640);
        assert_eq!(fs::symlink_metadata(&d).unwrap().mtime(), 1_600_000_000);
        assert_eq!(fs::read(scene.root.join("abs/file")).unwrap(), b"x");
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn xattrs_and_capabilities_match_bsdtar() {
    if !is_root() {
        skip(format_args!(
            "xattrs_and_capabilities_match_bsdtar needs root"
        ));
        return;
    }
    // cap_net_raw+ep as setcap writes it (VFS_CAP_REVISION_2).
    let cap: &[u8] = &[
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let bytes = Tar::new()
        .pax(&[
            ("SCHILY.xattr.security.capability", cap),
            ("SCHILY.xattr.user.note", b"hi"),
        ])
        .file("ping", b"binary")
        .bytes();
    let scene = Scene::new();
    let root = Root::open(&scene.root).unwrap();
    unpack(&root, bytes.as_slice(), &UnpackOptions::default()).unwrap();
    let ours = scene.root.join("ping");
    assert_eq!(
        xattr::get(&ours, "security.capability").unwrap().as_deref(),
        Some(cap)
    );
    assert_eq!(
        xattr::get(&ours, "user.note").unwrap().as_deref(),
        Some(&b"hi"[..])
    );

    let peer = tempfile::tempdir().unwrap();
    let tarfile = peer.path().join("a.tar");
    fs::write(&tarfile, &bytes).unwrap();
    let out = peer.path().join("x");
    fs::create_dir(&out).unwrap();
    match std::process::Command::new("bsdtar")
        .arg("--xattrs")
        .arg("-xpf")
        .arg(&tarfile)
        .arg("-C")
        .arg(&out)
        .status()
    {
        Ok(s) if s.success() => {
            for name in ["security.capability", "user.note"] {
                assert_eq!(
                    xattr::get(&ours, name).unwrap(),
                    xattr::get(out.join("ping"), name).unwrap(),
                    "{name}"
                );
            }
            let getcap = std::process::Command::new("getcap").arg(&ours).output();
            if let Ok(o) = getcap {
                assert!(
                    String::from_utf8_lossy(&o.stdout).contains("cap_net_raw"),
                    "{o:?}"
                );
            }
        }
        other => {
            skip(format_args!("bsdtar comparison unavailable: {other:?}"));
        }
    }
}

#[test]
fn dotdot_is_refused() {
    assert_refused(
        |_| {
            Tar::new()
                .file("ok", b"1")
                .file("../outside/etc/passwd", b"pwned")
                .bytes()
        },
        1,
        |_| {},
    );
    assert_refused(
        |_| {
            Tar::new()
                .file("a/../../outside/etc/passwd", b"pwned")
                .bytes()
        },
        0,
        |_| {},
    );
}

#[test]
fn symlink_then_write_through_it_is_refused() {
    // Absolute: the symlink points at the sentinel by its host path.
    assert_refused(
        |s| {
            let target = s.outside.join("etc");
            Tar::new()
                .symlink("x", target.to_str().unwrap())
                .file("x/passwd", b"pwned")
                .bytes()
        },
        1,
        |_| {},
    );
    assert_refused(
        |_| {
            Tar::new()
                .symlink("x", "/etc")
                .file("x/passwd", b"pwned")
                .bytes()
        },
        1,
        |_| {},
    );
    // Relative, climbing out.
    assert_refused(
        |_| {
            Tar::new()
                .symlink("y", "../outside/etc")
                .file("y/passwd", b"pwned")
                .bytes()
        },
        1,
        |_| {},
    );
    // Deeper: the symlink is a parent two levels up.
    assert_refused(
        |_| {
            Tar::new()
                .dir("d", 0o755)
                .symlink("d/up", "../../..")
                .file("d/up/outside/etc/passwd", b"pwned")
                .bytes()
        },
        2,
        |_| {},
    );
}

#[test]
fn race_symlink_to_tmp_outside_then_child() {
    // The archive first creates `a -> <outside>` then writes `a/b`.
    assert_refused(
        |s| {
            Tar::new()
                .symlink("a", s.outside.to_str().unwrap())
                .dir("a/b", 0o755)
                .file("a/b/c", b"x")
                .bytes()
        },
        1,
        |_| {},
    );
}

#[test]
fn hardlinks_outside_or_missing_are_refused() {
    assert_refused(
        |_| Tar::new().hardlink("h", "../outside/etc/passwd").bytes(),
        0,
        |_| {},
    );
    assert_refused(
        |s| {
            Tar::new()
                .hardlink("h", s.outside.join("etc/passwd").to_str().unwrap())
                .bytes()
        },
        0,
        |_| {},
    );
    assert_refused(|_| Tar::new().hardlink("h", "missing").bytes(), 0, |_| {});
    // Through an in-archive symlink to the outside.
    assert_refused(
        |s| {
            Tar::new()
                .symlink("l", s.outside.join("etc").to_str().unwrap())
                .hardlink("h", "l/passwd")
                .bytes()
        },
        1,
        |_| {},
    );
    // The link count of the sentinel did not move either.
    let s = Scene::new();
    assert_eq!(
        fs::metadata(s.outside.join("etc/passwd")).unwrap().nlink(),
        1
    );
}

#[test]
fn existing_symlink_pointing_outside_is_not_followed_out() {
    // Relative and climbing: refused.
    assert_refused(
        |_| Tar::new().file("up/etc/passwd", b"pwned").bytes(),
        0,
        |s| std::os::unix::fs::symlink("../outside", s.root.join("up")).unwrap(),
    );
    // Absolute: resolved inside the root as in the image; the sentinel never changes.
    for resolver in [Resolver::Openat2, Resolver::Walk] {
        let s = Scene::new();
        std::os::unix::fs::symlink(&s.outside, s.root.join("abs")).unwrap();
        let before = s.outside_state();
        let root = Root::open_with(&s.root, resolver).unwrap();
        let bytes = Tar::new().file("abs/etc/passwd", b"inside").bytes();
        // The target does not exist inside the root: the dangling link cannot be written through.
        let err = unpack(&root, bytes.as_slice(), &UnpackOptions::default()).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(s.outside_state(), before);
        // Once the target exists inside the root, writes land there.
        let inside = s.root.join(s.outside.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.join("etc")).unwrap();
        unpack(&root, bytes.as_slice(), &UnpackOptions::default()).unwrap();
        assert_eq!(fs::read(inside.join("etc/passwd")).unwrap(), b"inside");
        assert_eq!(s.outside_state(), before);
    }
}

#[test]
fn file_over_final_symlink_replaces_the_link() {
    for resolver in [Resolver::Openat2, Resolver::Walk] {
        let s = Scene::new();
        std::os::unix::fs::symlink(s.outside.join("etc/passwd"), s.root.join("f")).unwrap();
        let before = s.outside_state();
        let root = Root::open_with(&s.root, resolver).unwrap();
        let bytes = Tar::new().file("f", b"new").bytes();
        unpack(&root, bytes.as_slice(), &UnpackOptions::default()).unwrap();
        assert_eq!(s.outside_state(), before);
        assert!(fs::symlink_metadata(s.root.join("f")).unwrap().is_file());
    }
}

#[test]
fn merged_usr_directory_symlink_is_kept() {
    let s = Scene::new();
    fs::create_dir_all(s.root.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib", s.root.join("lib")).unwrap();
    let root = Root::open(&s.root).unwrap();
    let bytes = Tar::new()
        .dir("./lib/", 0o755)
        .dir("./lib/x86/", 0o755)
        .file("./lib/x86/libz.so", b"z")
        .bytes();
    unpack(&root, bytes.as_slice(), &UnpackOptions::default()).unwrap();
    assert!(
        fs::symlink_metadata(s.root.join("lib"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(s.root.join("usr/lib/x86/libz.so")).unwrap(), b"z");

    // Layers replace the symlink with their directory instead.
    let opts = UnpackOptions {
        keep_directory_symlinks: false,
        ..Default::default()
    };
    unpack(
        &root,
        Tar::new().dir("lib", 0o755).bytes().as_slice(),
        &opts,
    )
    .unwrap();
    assert!(fs::symlink_metadata(s.root.join("lib")).unwrap().is_dir());
}

#[test]
fn non_empty_directory_is_not_replaced_by_a_file() {
    let s = Scene::new();
    fs::create_dir_all(s.root.join("d/sub")).unwrap();
    let root = Root::open(&s.root).unwrap();
    let err = unpack(
        &root,
        Tar::new().file("d", b"x").bytes().as_slice(),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("non-empty directory"), "{err}");
    assert!(s.root.join("d/sub").is_dir());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn devices_follow_the_policy() {
    let dev = || {
        Tar::new()
            .raw(
                Tar::header("dev/null", EntryType::Char, 0, 0o666, None),
                b"",
            )
            .bytes()
    };
    let s = Scene::new();
    let root = Root::open(&s.root).unwrap();
    let err = unpack(
        &root,
        dev().as_slice(),
        &UnpackOptions {
            devices: DevicePolicy::Error,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("dev/null"), "{err}");
    let r = unpack(
        &root,
        dev().as_slice(),
        &UnpackOptions {
            devices: DevicePolicy::Skip,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(r.entries.is_empty());
    assert_eq!(r.notes.len(), 1);
    assert!(!s.root.join("dev/null").exists());
    if !is_root() {
        skip(format_args!(
            "devices_follow_the_policy (create) needs root"
        ));
        return;
    }
    let mut h = Tar::header("dev/null", EntryType::Char, 0, 0o666, None);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    let bytes = Tar::new().raw(h, b"").bytes();
    let r = unpack(
        &root,
        bytes.as_slice(),
        &UnpackOptions {
            devices: DevicePolicy::Create,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.entries[0].kind, EntryKind::CharDevice);
    let m = fs::symlink_metadata(s.root.join("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(m.mode() & 0o777, 0o666);
}

#[test]
fn whiteouts_apply_removes_lower_content() {
    let s = Scene::new();
    fs::create_dir_all(s.root.join("a/olddir")).unwrap();
    fs::write(s.root.join("a/old"), b"o").unwrap();
    fs::write(s.root.join("a/olddir/f"), b"o").unwrap();
    fs::write(s.root.join("b"), b"b").unwrap();
    fs::write(s.root.join("c"), b"c").unwrap();
    let root = Root::open(&s.root).unwrap();
    let bytes = Tar::new()
        .file(".wh.b", b"")
        .dir("a", 0o755)
        .file("a/new", b"n")
        .file("a/.wh..wh..opq", b"")
        .file("a/later", b"l")
        .bytes();
    let opts = UnpackOptions {
        whiteouts: Whiteouts::Apply,
        ..Default::default()
    };
    let r = unpack(&root, bytes.as_slice(), &opts).unwrap();
    assert!(!s.root.join("b").exists());
    assert!(s.root.join("c").exists());
    let mut names: Vec<_> = fs::read_dir(s.root.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["later", "new"]);
    let kinds: Vec<_> = r
        .entries
        .iter()
        .map(|e| (e.path.to_str().unwrap().to_string(), e.kind))
        .collect();
    assert_eq!(kinds[0], ("b".to_string(), EntryKind::Whiteout));
    assert_eq!(kinds[3], ("a".to_string(), EntryKind::Opaque));

    // Keep: whiteout files are just files.
    let r = unpack(
        &root,
        Tar::new().file(".wh.c", b"").bytes().as_slice(),
        &UnpackOptions::default(),
    )
    .unwrap();
    assert_eq!(r.entries[0].kind, EntryKind::File);
    assert!(s.root.join(".wh.c").exists() && s.root.join("c").exists());

    // A whiteout cannot reach outside either.
    let err = unpack(
        &root,
        Tar::new()
            .file("../outside/.wh.etc", b"")
            .bytes()
            .as_slice(),
        &opts,
    )
    .unwrap_err();
    assert!(matches!(err, ConfineError::Entry { index: 0, .. }), "{err}");
    assert!(s.outside.join("etc/passwd").exists());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn whiteouts_overlayfs_form() {
    if !is_root() {
        skip(format_args!("whiteouts_overlayfs_form needs root"));
        return;
    }
    let s = Scene::new();
    let root = Root::open(&s.root).unwrap();
    let bytes = Tar::new()
        .dir("a", 0o755)
        .file("a/.wh.gone", b"")
        .file("a/.wh..wh..opq", b"")
        .bytes();
    let opts = UnpackOptions {
        whiteouts: Whiteouts::OverlayFs,
        ..Default::default()
    };
    unpack(&root, bytes.as_slice(), &opts).unwrap();
    let m = fs::symlink_metadata(s.root.join("a/gone")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    assert_eq!(
        xattr::get(s.root.join("a"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!s.root.join("a/.wh..wh..opq").exists());
}

#[test]
fn map_hook_strips_and_skips() {
    let s = Scene::new();
    let root = Root::open(&s.root).unwrap();
    let map = |p: &Path| -> Option<PathBuf> {
        let p = p.strip_prefix("rootfs").ok()?;
        (!p.starts_with("skip")).then(|| p.to_path_buf())
    };
    let opts = UnpackOptions {
        map: Some(&map),
        ..Default::default()
    };
    let bytes = Tar::new()
        .file("rootfs/etc/motd", b"m")
        .file("rootfs/skip/x", b"")
        .file("other", b"")
        .hardlink("rootfs/etc/motd2", "rootfs/etc/motd")
        .bytes();
    let r = unpack(&root, bytes.as_slice(), &opts).unwrap();
    let paths: Vec<_> = r.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(
        paths,
        [PathBuf::from("etc/motd"), PathBuf::from("etc/motd2")]
    );
    assert!(!s.root.join("skip").exists() && !s.root.join("other").exists());
}

#[test]
fn truncated_archive_is_an_archive_error() {
    let bytes = Tar::new()
        .file("a", &[7u8; 4096])
        .file("b", &[8u8; 4096])
        .bytes();
    let s = Scene::new();
    let root = Root::open(&s.root).unwrap();
    let err = unpack(
        &root,
        &bytes[..512 + 4096 + 512 + 100],
        &UnpackOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains('b') || msg.contains("reading archive"),
        "{msg}"
    );
}

#[test]
fn many_entries_unpack() {
    // Not a benchmark: a sanity bound that catches accidental quadratic behaviour.
    let mut t = Tar::new();
    for d in 0..50 {
        t = t.dir(&format!("d{d}"), 0o755);
        for f in 0..100 {
            t = t.file(&format!("d{d}/f{f}"), b"data");
        }
    }
    let bytes = t.bytes();
    let s = Scene::new();
    let root = Root::open(&s.root).unwrap();
    let r = unpack(&root, bytes.as_slice(), &UnpackOptions::default()).unwrap();
    assert_eq!(r.entries.len(), 5050);
}

#[test]
fn hardlink_to_a_symlink_links_the_symlink_itself() {
    let s = Scene::new();
    let root = Root::open(&s.root).unwrap();
    let target = s.outside.join("etc/passwd");
    let bytes = Tar::new()
        .symlink("l", target.to_str().unwrap())
        .hardlink("h", "l")
        .bytes();
    unpack(&root, bytes.as_slice(), &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read_link(s.root.join("h")).unwrap(), target);
    assert_eq!(fs::metadata(&target).unwrap().nlink(), 1);
}

/// A concurrent attacker swaps a directory inside the root for a symlink to the outside while
/// files are written below it: nothing may ever land outside.
#[test]
fn concurrent_symlink_swap_never_escapes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    for resolver in [None, Some(Resolver::Openat2), Some(Resolver::Walk)] {
        for target in ["abs", "rel"] {
            let s = Scene::new();
            fs::create_dir(s.root.join("d")).unwrap();
            let link_target = if target == "abs" {
                s.outside.join("etc")
            } else {
                PathBuf::from("../outside/etc")
            };
            let stop = Arc::new(AtomicBool::new(false));
            let attacker = {
                let (root, stop) = (s.root.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (d, link) = (root.join("d"), root.join("d.link"));
                    std::os::unix::fs::symlink(&link_target, &link).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        // Atomically exchange d (dir) and d.link (symlink): `d` is always one
                        // of the two.
                        let _ = nix::fcntl::renameat2(
                            nix::fcntl::AT_FDCWD,
                            &d,
                            nix::fcntl::AT_FDCWD,
                            &link,
                            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                        );
                        std::thread::yield_now();
                    }
                })
            };
            // Keep writing until enough writes raced the swaps (a loaded machine may starve
            // either thread for a while).
            let (mut written, mut attempts) = (0, 0);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while (written < 200 || attempts < 2000) && std::time::Instant::now() < deadline {
                let ok = match &resolver {
                    Some(r) => {
                        let root = Root::open_with(&s.root, *r).unwrap();
                        root.create_file(format!("d/f{attempts}"), 0o644).is_ok()
                    }
                    // The control: plain host-path writes, which the swap does redirect.
                    None => fs::File::create(s.root.join(format!("d/f{attempts}"))).is_ok(),
                };
                written += u32::from(ok);
                attempts += 1;
                if resolver.is_none() && fs::read_dir(s.outside.join("etc")).unwrap().count() > 1 {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            attacker.join().unwrap();
            let names: Vec<_> = fs::read_dir(s.outside.join("etc"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            if resolver.is_some() {
                assert_eq!(names, ["passwd"], "{resolver:?} {target}: escaped");
                if written == 0 {
                    eprintln!("note: {resolver:?} {target}: no write won the race on this run");
                }
            } else {
                // Proof that the attack is live on this machine.
                assert!(names.len() > 1, "the race never redirected a plain write");
            }
        }
    }
}

#[test]
fn whiteout_of_dot_or_dotdot_is_refused() {
    let s = Scene::new();
    fs::create_dir_all(s.root.join("a/b")).unwrap();
    let root = Root::open(&s.root).unwrap();
    for name in ["a/b/.wh..", "a/b/.wh..."] {
        let err = unpack(
            &root,
            Tar::new().file(name, b"").bytes().as_slice(),
            &UnpackOptions::for_layer(Whiteouts::Apply),
        )
        .unwrap_err();
        assert!(err.to_string().contains("whiteout of"), "{err}");
        assert!(s.root.join("a/b").is_dir());
    }
}

#[test]
fn package_options_leave_existing_directories_alone() {
    let s = Scene::new();
    fs::create_dir(s.root.join("usr")).unwrap();
    fs::set_permissions(s.root.join("usr"), fs::Permissions::from_mode(0o711)).unwrap();
    let root = Root::open(&s.root).unwrap();
    let bytes = Tar::new()
        .dir("./usr/", 0o755)
        .dir("./usr/new/", 0o750)
        .bytes();
    unpack(&root, bytes.as_slice(), &UnpackOptions::for_package()).unwrap();
    assert_eq!(
        fs::metadata(s.root.join("usr")).unwrap().mode() & 0o7777,
        0o711
    );
    assert_eq!(
        fs::metadata(s.root.join("usr/new")).unwrap().mode() & 0o7777,
        0o750
    );
    // tar and layers do apply the entry's attributes.
    unpack(
        &root,
        bytes.as_slice(),
        &UnpackOptions::for_layer(Whiteouts::Apply),
    )
    .unwrap();
    assert_eq!(
        fs::metadata(s.root.join("usr")).unwrap().mode() & 0o7777,
        0o755
    );
}

#[test]
fn opaque_marker_never_prunes_through_a_symlink() {
    let s = Scene::new();
    fs::create_dir_all(s.root.join("usr/lib")).unwrap();
    fs::write(s.root.join("usr/lib/libc.so"), b"c").unwrap();
    std::os::unix::fs::symlink("usr/lib", s.root.join("lib")).unwrap();
    let root = Root::open(&s.root).unwrap();
    let opts = UnpackOptions::for_layer(Whiteouts::Apply);
    let r = unpack(
        &root,
        Tar::new().file("lib/.wh..wh..opq", b"").bytes().as_slice(),
        &opts,
    )
    .unwrap();
    assert!(s.root.join("usr/lib/libc.so").exists());
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    // An opaque marker for a directory that does not exist is a no-op.
    unpack(
        &root,
        Tar::new().file("nope/.wh..wh..opq", b"").bytes().as_slice(),
        &opts,
    )
    .unwrap();
}
