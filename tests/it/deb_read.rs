//! `.deb` reading: packages built here in every compression, hostile packages refused with
//! nothing changed outside the root, and real Debian packages unpacked exactly as
//! `dpkg-deb -x` unpacks them (network: the host's apt mirror; skipped when unreachable).

use crate::support::{root_or_skip, skip};
use imgbuild::apt::deb::{Compression, Deb, DebError};
use imgbuild::confine::{EntryKind, Root, UnpackOptions};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tar::{EntryType, Header};

fn tar_of(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        // Raw name bytes: the tar crate's setters would refuse the hostile ones.
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            g.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
        Compression::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

fn suffix(c: Compression) -> &'static str {
    match c {
        Compression::None => "",
        Compression::Gzip => ".gz",
        Compression::Xz => ".xz",
        Compression::Zstd => ".zst",
        Compression::Bzip2 => ".bz2",
    }
}

fn ar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = ar::Builder::new(Vec::new());
    for (name, data) in members {
        b.append(
            &ar::Header::new(name.as_bytes().to_vec(), data.len() as u64),
            data.as_slice(),
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

const CONTROL: &str = "Package: hello\nVersion: 1.0-1\nArchitecture: all\nMaintainer: A <a@example.org>\nDescription: test\n package\n";

fn control_tar() -> Vec<u8> {
    tar_of(&[
        ("./", EntryType::Directory, b"", None),
        ("./control", EntryType::Regular, CONTROL.as_bytes(), None),
        (
            "./postinst",
            EntryType::Regular,
            b"#!/bin/sh\nexit 0\n",
            None,
        ),
        (
            "./md5sums",
            EntryType::Regular,
            b"0123  usr/share/hello\n",
            None,
        ),
    ])
}

fn deb_with(data_c: Compression, control_c: Compression, data: &[u8]) -> Vec<u8> {
    ar_of(&[
        ("debian-binary", b"2.0\n".to_vec()),
        (
            &format!("control.tar{}", suffix(control_c)),
            compress(control_c, &control_tar()),
        ),
        (
            &format!("data.tar{}", suffix(data_c)),
            compress(data_c, data),
        ),
    ])
}

fn good_data() -> Vec<u8> {
    tar_of(&[
        ("./", EntryType::Directory, b"", None),
        ("./usr/", EntryType::Directory, b"", None),
        ("./usr/share/", EntryType::Directory, b"", None),
        (
            "./usr/share/hello",
            EntryType::Regular,
            b"hello world\n",
            None,
        ),
        ("./usr/share/hi", EntryType::Symlink, b"", Some("hello")),
    ])
}

struct Scene {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let root = dir.join("root");
        let outside = dir.join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("passwd"), b"sentinel").unwrap();
        Scene {
            _tmp: tmp,
            dir,
            root,
            outside,
        }
    }

    fn write_deb(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn outside_state(&self) -> Vec<(PathBuf, Vec<u8>)> {
        walkdir::WalkDir::new(&self.outside)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let d = if e.file_type().is_file() {
                    fs::read(e.path()).unwrap()
                } else {
                    Vec::new()
                };
                (e.path().to_path_buf(), d)
            })
            .collect()
    }
}

#[test]
fn every_compression_reads_and_unpacks() {
    let all = [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
        Compression::Bzip2,
    ];
    for data_c in all {
        for control_c in [
            Compression::None,
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let s = Scene::new();
            let path = s.write_deb("hello.deb", &deb_with(data_c, control_c, &good_data()));
            let deb = Deb::open(&path).unwrap();
            assert_eq!(deb.format_version(), "2.0");
            assert_eq!(deb.control().get("Package"), Some("hello"));
            assert_eq!(deb.control().get("Description"), Some("test\npackage"));
            assert_eq!(
                deb.control_member("postinst"),
                Some(&b"#!/bin/sh\nexit 0\n"[..])
            );
            assert!(deb.control_member("prerm").is_none());
            let names: Vec<_> = deb.control_members().map(|(n, _)| n).collect();
            assert_eq!(names, ["control", "md5sums", "postinst"]);
            assert_eq!(deb.data_compression(), data_c);
            assert_eq!(deb.data_member(), format!("data.tar{}", suffix(data_c)));
            let root = Root::open(&s.root).unwrap();
            let report = deb.unpack_data(&root, &UnpackOptions::default()).unwrap();
            let paths: Vec<_> = report
                .entries
                .iter()
                .map(|e| e.path.to_str().unwrap().to_string())
                .collect();
            assert_eq!(
                paths,
                [".", "usr", "usr/share", "usr/share/hello", "usr/share/hi"]
            );
            assert_eq!(
                fs::read(s.root.join("usr/share/hello")).unwrap(),
                b"hello world\n"
            );
            assert_eq!(
                fs::read_link(s.root.join("usr/share/hi")).unwrap(),
                Path::new("hello")
            );
        }
    }
}

#[test]
fn structure_errors_name_the_file_and_member() {
    let s = Scene::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "v3.deb",
            ar_of(&[
                ("debian-binary", b"3.0\n".to_vec()),
                ("control.tar", control_tar()),
                ("data.tar", good_data()),
            ]),
            "unsupported format version",
        ),
        (
            "order.deb",
            ar_of(&[
                ("debian-binary", b"2.0\n".to_vec()),
                ("data.tar", good_data()),
                ("control.tar", control_tar()),
            ]),
            "member `data.tar`",
        ),
        (
            "first.deb",
            ar_of(&[("control.tar", control_tar()), ("data.tar", good_data())]),
            "first member is not `debian-binary`",
        ),
        (
            "nodata.deb",
            ar_of(&[
                ("debian-binary", b"2.0\n".to_vec()),
                ("control.tar", control_tar()),
            ]),
            "no data.tar member",
        ),
        (
            "nocontrolfile.deb",
            ar_of(&[
                ("debian-binary", b"2.0\n".to_vec()),
                (
                    "control.tar",
                    tar_of(&[("./postinst", EntryType::Regular, b"x", None)]),
                ),
                ("data.tar", good_data()),
            ]),
            "has no `control` file",
        ),
        (
            "hostilecontrol.deb",
            ar_of(&[
                ("debian-binary", b"2.0\n".to_vec()),
                (
                    "control.tar",
                    tar_of(&[("../control", EntryType::Regular, CONTROL.as_bytes(), None)]),
                ),
                ("data.tar", good_data()),
            ]),
            "unexpected path",
        ),
        (
            "notar.deb",
            b"this is not an ar archive at all".to_vec(),
            "notar.deb",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = s.write_deb(name, &bytes);
        let err = Deb::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(name), "{name}: {msg}");
        assert!(msg.contains(expect), "{name}: {msg}");
    }
    // `_`-prefixed members are skipped, as dpkg does.
    let bytes = ar_of(&[
        ("debian-binary", b"2.0\n".to_vec()),
        ("_gpgorigin", b"sig".to_vec()),
        ("control.tar", control_tar()),
        ("data.tar", good_data()),
    ]);
    let deb = Deb::open(s.write_deb("sig.deb", &bytes)).unwrap();
    let root = Root::open(&s.root).unwrap();
    deb.unpack_data(&root, &UnpackOptions::default()).unwrap();
    assert!(s.root.join("usr/share/hello").exists());
}

/// Builds a data tarball for a scene (hostile ones point at the scene's sentinel).
type DataFn = Box<dyn Fn(&Scene) -> Vec<u8>>;

#[test]
fn hostile_debs_are_refused_and_change_nothing_outside() {
    let cases: Vec<(&str, DataFn, &str)> = vec![
        (
            "dotdot",
            Box::new(|_| tar_of(&[("./../outside/passwd", EntryType::Regular, b"pwned", None)])),
            "`..`",
        ),
        (
            "symlink",
            Box::new(|s| {
                let target = s.outside.to_str().unwrap().to_string();
                tar_of(&[
                    ("./etc", EntryType::Symlink, b"", Some(target.as_str())),
                    ("./etc/passwd", EntryType::Regular, b"pwned", None),
                ])
            }),
            "symlink `etc`",
        ),
        (
            "relsymlink",
            Box::new(|_| {
                tar_of(&[
                    ("./a/", EntryType::Directory, b"", None),
                    ("./a/up", EntryType::Symlink, b"", Some("../../outside")),
                    ("./a/up/passwd", EntryType::Regular, b"pwned", None),
                ])
            }),
            "symlink `a/up`",
        ),
        (
            "hardlink",
            Box::new(|_| tar_of(&[("./h", EntryType::Link, b"", Some("../outside/passwd"))])),
            "`..`",
        ),
        (
            "abshardlink",
            Box::new(|s| {
                let target = s.outside.join("passwd").to_str().unwrap().to_string();
                tar_of(&[("./h", EntryType::Link, b"", Some(target.as_str()))])
            }),
            "does not exist in the root",
        ),
    ];
    for (name, data, expect) in cases {
        for c in [Compression::Xz, Compression::Zstd] {
            let s = Scene::new();
            let before = s.outside_state();
            let path = s.write_deb(
                &format!("{name}.deb"),
                &deb_with(c, Compression::Gzip, &data(&s)),
            );
            let deb = Deb::open(&path).unwrap();
            let root = Root::open(&s.root).unwrap();
            let err = deb
                .unpack_data(&root, &UnpackOptions::default())
                .unwrap_err();
            assert!(matches!(err, DebError::Unpack { .. }), "{name}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{name}.deb")) && msg.contains("data.tar"),
                "{name}: {msg}"
            );
            assert!(msg.contains("archive entry"), "{name}: {msg}");
            assert!(msg.contains(expect), "{name}: {msg}");
            assert_eq!(s.outside_state(), before, "{name}");
            assert_eq!(fs::metadata(s.outside.join("passwd")).unwrap().nlink(), 1);
        }
    }
}

/// Real packages fetched once per test run with `apt-get download` (from the host's configured
/// mirror) into the target dir, or `None` when that is not possible here.
fn real_debs() -> Option<&'static (PathBuf, Vec<PathBuf>)> {
    static DEBS: OnceLock<Option<(PathBuf, Vec<PathBuf>)>> = OnceLock::new();
    DEBS.get_or_init(|| {
        let dir = crate::support::fixture_dir("real-debs");
        let pkgs = ["coreutils", "iputils-ping", "passwd", "bzip2"];
        let out = Command::new("apt-get")
            // Fail fast when the mirror is unreachable, so the tests skip instead of hanging.
            .args([
                "-o",
                "Acquire::http::Timeout=20",
                "-o",
                "Acquire::Retries=0",
            ])
            .arg("download")
            .args(pkgs)
            .current_dir(&dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "apt-get download failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        let mut debs: Vec<PathBuf> = fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        debs.sort();
        (debs.len() == pkgs.len()).then_some((dir, debs))
    })
    .as_ref()
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<i64>,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
    /// The first path (in sorted order) sharing this node's inode: hardlink groups.
    first_link: Option<PathBuf>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let m = fs::symlink_metadata(e.path()).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let first_link = (ft.is_file() && m.nlink() > 1)
            .then(|| inodes.entry(m.ino()).or_insert(rel.clone()).clone());
        let xattrs = if ft.is_symlink() {
            BTreeMap::new()
        } else {
            xattr::list(e.path())
                .unwrap()
                .map(|n| {
                    let v = xattr::get(e.path(), &n).unwrap().unwrap_or_default();
                    (n.to_string_lossy().into_owned(), v)
                })
                .collect()
        };
        out.insert(
            rel,
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                // dpkg-deb -x leaves directory mtimes at the time of extraction; we apply the
                // archive's (as tar does), so only file mtimes are comparable.
                mtime: ft.is_file().then(|| m.mtime()),
                content: ft.is_file().then(|| fs::read(e.path()).unwrap()),
                link: ft.is_symlink().then(|| fs::read_link(e.path()).unwrap()),
                first_link,
                xattrs,
            },
        );
    }
    out
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn real_debs_unpack_like_dpkg_deb() {
    if !root_or_skip("real_debs_unpack_like_dpkg_deb") {
        return;
    }
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        skip(format_args!(
            "real_debs_unpack_like_dpkg_deb needs dpkg-deb"
        ));
        return;
    }
    let Some((_dir, debs)) = real_debs() else {
        skip(format_args!(
            "real_debs_unpack_like_dpkg_deb needs the apt mirror (apt-get download failed)"
        ));
        return;
    };
    let mut saw_setuid = false;
    let mut saw_hardlink = false;
    for deb_path in debs {
        let s = Scene::new();
        let peer = s.dir.join("peer");
        fs::create_dir(&peer).unwrap();
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb_path)
            .arg(&peer)
            .status()
            .unwrap();
        assert!(st.success());

        let deb = Deb::open(deb_path).unwrap();
        assert!(deb.control().get("Version").is_some());
        let root = Root::open(&s.root).unwrap();
        let opts = UnpackOptions {
            sha256: true,
            ..Default::default()
        };
        let report = deb.unpack_data(&root, &opts).unwrap();

        // Same file list, in archive order, as the data tarball itself.
        let tar = Command::new("sh")
            .arg("-c")
            .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -t")
            .arg("sh")
            .arg(deb_path)
            .output()
            .unwrap();
        assert!(tar.status.success());
        let listed: Vec<String> = String::from_utf8(tar.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let l = l.trim_start_matches("./").trim_end_matches('/');
                if l.is_empty() {
                    ".".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect();
        let ours: Vec<String> = report
            .entries
            .iter()
            .map(|e| e.path.to_str().unwrap().to_string())
            .collect();
        assert_eq!(ours, listed, "{}", deb_path.display());

        // Same tree: types, modes, owners, mtimes, contents, link targets, hardlinks, xattrs.
        let a = snapshot(&peer);
        let b = snapshot(&s.root);
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{}",
            deb_path.display()
        );
        for (p, node) in &a {
            assert_eq!(
                Some(node),
                b.get(p),
                "{}: {}",
                deb_path.display(),
                p.display()
            );
        }
        saw_setuid |= a.values().any(|n| n.mode & 0o4000 != 0);
        saw_hardlink |= a.values().any(|n| n.first_link.is_some());
        // Digests in the report match the written files.
        for e in report.entries.iter().filter(|e| e.kind == EntryKind::File) {
            use sha2::Digest;
            let d: [u8; 32] = sha2::Sha256::digest(fs::read(s.root.join(&e.path)).unwrap()).into();
            assert_eq!(e.sha256, Some(d), "{}", e.path.display());
        }
    }
    assert!(saw_setuid, "passwd should carry setuid binaries");
    assert!(saw_hardlink, "bzip2 should carry hardlinks");
}

#[test]
fn real_deb_control_members() {
    let Some((_dir, debs)) = real_debs() else {
        skip(format_args!(
            "real_deb_control_members needs the apt mirror (apt-get download failed)"
        ));
        return;
    };
    for deb_path in debs {
        let deb = Deb::open(deb_path).unwrap();
        let fields = Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb_path)
            .arg("Package")
            .arg("Version")
            .output();
        if let Ok(o) = fields {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            assert!(
                text.contains(deb.control().get("Package").unwrap()),
                "{text}"
            );
            assert!(
                text.contains(deb.control().get("Version").unwrap()),
                "{text}"
            );
        }
        assert!(
            deb.control_member("md5sums").is_some(),
            "{}",
            deb_path.display()
        );
        // Every control member dpkg-deb extracts is one we expose, byte for byte.
        let out = tempfile::tempdir().unwrap();
        let st = Command::new("dpkg-deb")
            .arg("-e")
            .arg(deb_path)
            .arg(out.path().join("c"))
            .status();
        if let Ok(st) = st {
            assert!(st.success());
            for e in fs::read_dir(out.path().join("c")).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                assert_eq!(
                    deb.control_member(&name),
                    Some(fs::read(e.path()).unwrap().as_slice()),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn parallel_unpacks_share_one_root() {
    let s = Scene::new();
    let debs: Vec<Deb> = (0..8)
        .map(|i| {
            let file = format!("./usr/share/doc/pkg{i}/copyright");
            let dir = format!("./usr/share/doc/pkg{i}/");
            let data = tar_of(&[
                ("./", EntryType::Directory, b"", None),
                ("./usr/", EntryType::Directory, b"", None),
                ("./usr/share/", EntryType::Directory, b"", None),
                ("./usr/share/doc/", EntryType::Directory, b"", None),
                (dir.as_str(), EntryType::Directory, b"", None),
                (file.as_str(), EntryType::Regular, b"free", None),
            ]);
            let path = s.write_deb(
                &format!("pkg{i}.deb"),
                &deb_with(Compression::Zstd, Compression::Gzip, &data),
            );
            Deb::open(path).unwrap()
        })
        .collect();
    let root = Root::open(&s.root).unwrap();
    let opts = UnpackOptions::for_package();
    std::thread::scope(|scope| {
        for deb in &debs {
            let (root, opts) = (&root, &opts);
            scope.spawn(move || deb.unpack_data(root, opts).unwrap());
        }
    });
    for i in 0..8 {
        assert_eq!(
            fs::read(s.root.join(format!("usr/share/doc/pkg{i}/copyright"))).unwrap(),
            b"free"
        );
    }
}
