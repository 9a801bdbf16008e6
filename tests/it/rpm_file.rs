//! `.rpm` reading and payload unpacking against rpm's own tools: packages built here with
//! `rpmbuild` in every payload compression are read and checked against `rpm -qp
//! --queryformat`, unpacked and compared with what `rpm --root X -i` installs from them, and
//! a crafted package whose payload climbs out of the root is refused with nothing written.

use imgbuild::confine::Root;
use imgbuild::rpm::header::{RpmFile, RpmFileError};
use imgbuild::rpm::payload::{self, Compressor, PayloadError, PayloadOptions};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const SPEC: &str = r"Name: imgt
Version: 1.2
Release: 3
Epoch: 4
Summary: imgbuild test package
License: MIT
BuildArch: noarch
%description
A package with one file of every kind rpm knows.
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc %{buildroot}/usr/share/doc/imgt %{buildroot}/var/lib/imgt
printf 'hello\n' > %{buildroot}/usr/bin/hello
chmod 755 %{buildroot}/usr/bin/hello
ln -s hello %{buildroot}/usr/bin/hi
printf 'linked\n' > %{buildroot}/usr/bin/a
ln %{buildroot}/usr/bin/a %{buildroot}/usr/bin/b
printf 'conf\n' > %{buildroot}/etc/imgt.conf
printf 'doc\n' > %{buildroot}/usr/share/doc/imgt/README
printf 'su\n' > %{buildroot}/usr/bin/su
printf 'ping\n' > %{buildroot}/usr/bin/ping
printf 'owned\n' > %{buildroot}/var/lib/imgt/data
%files
%dir /var/lib/imgt
/usr/bin/hello
/usr/bin/hi
/usr/bin/a
/usr/bin/b
%config(noreplace) /etc/imgt.conf
%doc /usr/share/doc/imgt/README
%attr(4755,root,root) /usr/bin/su
%caps(cap_net_raw=ep) /usr/bin/ping
%attr(0640,imgtuser,imgtgroup) /var/lib/imgt/data
%ghost /var/log/imgt.log
%dev(c,1,3) /dev/imgt-null
%pre -p /bin/sh
echo pre
%post -p /bin/sh
echo post
%posttrans -p /bin/sh
echo posttrans
%triggerin -- bash >= 1.0
echo trig-bash
%triggerpostun -p /bin/sh -- glibc
echo trig-glibc
%filetriggerin -P 2000 -- /usr/lib/imgt
echo filetrig
%transfiletriggerin -- /usr/share/imgt
echo transfiletrig
";

/// The payload settings built, with the compressor each must report.
const PAYLOADS: [(&str, Compressor); 6] = [
    ("w19.zstdio", Compressor::Zstd),
    ("w6.xzdio", Compressor::Xz),
    ("w9.gzdio", Compressor::Gzip),
    ("w9.bzdio", Compressor::Bzip2),
    ("w6.lzdio", Compressor::Lzma),
    ("w.ufdio", Compressor::None),
];

const PASSWD: &str = "root:x:0:0::/root:/bin/sh\nimgtuser:x:4242:4343::/:/bin/sh\n";
const GROUP: &str = "root:x:0:\nimgtgroup:x:4343:\n";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Build the test package in `dir` with `payload` (`_binary_payload`); returns its path.
fn rpmbuild(dir: &Path, payload: &str) -> PathBuf {
    let spec = dir.join("imgt.spec");
    fs::write(&spec, SPEC).unwrap();
    let top = dir.join(format!("top-{payload}"));
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg(format!("_binary_payload {payload}"))
        .arg("--define")
        .arg(format!("_dbpath {}", dir.join("db").display()))
        .arg("-bb")
        .arg(&spec));
    top.join("RPMS/noarch/imgt-1.2-3.noarch.rpm")
}

fn query(rpm: &Path, dir: &Path, format: &str) -> String {
    run(Command::new("rpm")
        .arg("--dbpath")
        .arg(dir.join("db"))
        .arg("-qp")
        .arg("--queryformat")
        .arg(format)
        .arg(rpm))
}

/// The ids `PASSWD` and `GROUP` give (unknown names map to root, as rpm maps them).
fn owners(user: &str, group: &str) -> (u32, u32) {
    let uid = if user == "imgtuser" { 4242 } else { 0 };
    let gid = if group == "imgtgroup" { 4343 } else { 0 };
    (uid, gid)
}

/// The package's triggers as `rpm -qp --queryformat` gives them, each condition joined with
/// its script, in the form `headers_read_as_rpm_reads_them` prints ours.
fn trigger_query(path: &Path, dir: &Path) -> String {
    let mut want = String::new();
    for (kind, tag, priorities) in [
        ("Package", "TRIGGER", false),
        ("File", "FILETRIGGER", true),
        ("TransactionFile", "TRANSFILETRIGGER", true),
    ] {
        let conds = query(
            path,
            dir,
            &format!("[%{{{tag}NAME}}\t%{{{tag}VERSION}}\t%{{{tag}FLAGS}}\t%{{{tag}INDEX}}\n]"),
        );
        let prio = if priorities {
            format!("\t%{{{tag}PRIORITIES}}")
        } else {
            String::new()
        };
        let scripts = query(
            path,
            dir,
            &format!("[%{{{tag}SCRIPTS}}\t%{{{tag}SCRIPTPROG}}{prio}\n]"),
        );
        let scripts: Vec<Vec<&str>> = scripts.lines().map(|l| l.split('\t').collect()).collect();
        for line in conds.lines() {
            let c: Vec<&str> = line.split('\t').collect();
            let s = &scripts[c[3].parse::<usize>().unwrap()];
            want += &format!(
                "{kind}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                c[0],
                c[1],
                c[2],
                s[0],
                s[1],
                s.get(2).unwrap_or(&"-")
            );
        }
    }
    want
}

#[test]
#[cfg_attr(
    not(imgbuild_has_rpm_tools),
    ignore = "needs rpmbuild, createrepo_c, zypper, dnf and busybox-static"
)]
fn headers_read_as_rpm_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    for (setting, compressor) in PAYLOADS {
        let path = rpmbuild(tmp.path(), setting);
        let rpm = RpmFile::open(&path).unwrap();
        rpm.verify().unwrap();
        assert_eq!(payload::compressor(&rpm).unwrap(), compressor, "{setting}");
        assert_eq!(
            format!(
                "{} {:?} {} {} {} {}",
                rpm.name(),
                rpm.epoch(),
                rpm.version(),
                rpm.release(),
                rpm.arch(),
                rpm.payload_format().unwrap().unwrap_or_default()
            ),
            query(
                &path,
                tmp.path(),
                "%{NAME} Some(%{EPOCH}) %{VERSION} %{RELEASE} %{ARCH} %{PAYLOADFORMAT}"
            )
        );
        let ours: String = rpm
            .files()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    f.path,
                    f.mode,
                    f.user,
                    f.group,
                    f.mtime,
                    f.flags.0,
                    f.size,
                    f.link_target,
                    f.digest,
                    f.inode,
                    f.device,
                    f.rdev,
                    f.caps.as_deref().unwrap_or_default()
                )
            })
            .collect();
        let theirs = query(
            &path,
            tmp.path(),
            "[%{FILENAMES}\t%{FILEMODES}\t%{FILEUSERNAME}\t%{FILEGROUPNAME}\t%{FILEMTIMES}\t\
             %{FILEFLAGS}\t%{LONGFILESIZES}\t%{FILELINKTOS}\t%{FILEDIGESTS}\t%{FILEINODES}\t\
             %{FILEDEVICES}\t%{FILERDEVS}\t%{FILECAPS}\n]",
        );
        assert_eq!(ours, theirs, "{setting}");
        let files = rpm.files().unwrap();
        let by_path: BTreeMap<_, _> = files.iter().map(|f| (f.path.as_str(), f)).collect();
        assert!(by_path["/var/log/imgt.log"].flags.ghost());
        assert!(by_path["/etc/imgt.conf"].flags.noreplace());
        assert!(by_path["/etc/imgt.conf"].flags.config());
        assert!(by_path["/usr/share/doc/imgt/README"].flags.doc());
        let s = rpm.scriptlets().unwrap();
        for (name, got) in [
            ("PREIN", &s.pre),
            ("POSTIN", &s.post),
            ("POSTTRANS", &s.posttrans),
        ] {
            let got = got.as_ref().unwrap();
            let want = query(&path, tmp.path(), &format!("%{{{name}PROG}}|%{{{name}}}"));
            assert_eq!(
                format!(
                    "{}|{}",
                    got.prog.join(" "),
                    got.body.as_deref().unwrap_or_default()
                ),
                want
            );
        }
        assert!(s.preun.is_none() && s.postun.is_none() && s.pretrans.is_none());
        let ours: String = rpm
            .triggers()
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{:?}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    t.kind,
                    t.name,
                    t.version.as_deref().unwrap_or_default(),
                    t.flags,
                    t.script.body.as_deref().unwrap_or_default(),
                    t.script.prog.join(" "),
                    t.priority.map_or("-".to_string(), |p| p.to_string())
                )
            })
            .collect();
        assert_eq!(ours.lines().count(), 4, "{ours}");
        assert_eq!(ours, trigger_query(&path, tmp.path()), "{setting}");
        // The header blob is the one rpm's digest covers.
        let blob = fs::read(&path).unwrap();
        let start = usize::try_from(rpm.payload_offset()).unwrap() - rpm.header_blob().len();
        assert_eq!(
            &blob[start..start + rpm.header_blob().len()],
            rpm.header_blob()
        );
    }
}

#[test]
#[cfg_attr(
    not(imgbuild_has_rpm_tools),
    ignore = "needs rpmbuild, createrepo_c, zypper, dnf and busybox-static"
)]
fn tampered_packages_fail_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let path = rpmbuild(tmp.path(), "w6.xzdio");
    let good = fs::read(&path).unwrap();
    let bad = tmp.path().join("bad.rpm");
    let mut b = good.clone();
    *b.last_mut().unwrap() ^= 0x55;
    fs::write(&bad, &b).unwrap();
    let e = RpmFile::open(&bad).unwrap().verify().unwrap_err();
    assert!(
        matches!(
            e,
            RpmFileError::Digest {
                what: "payload",
                ..
            }
        ),
        "{e}"
    );
    let mut b = good;
    let at = b.windows(10).position(|w| w == b"imgbuild t").unwrap();
    b[at] = b'I';
    fs::write(&bad, &b).unwrap();
    let e = RpmFile::open(&bad).unwrap().verify().unwrap_err();
    assert!(
        matches!(
            e,
            RpmFileError::Digest {
                what: "header SHA256",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("bad.rpm"), "{e}");
}

/// What a test compares of one path.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    mtime: Option<i64>,
    rdev: u64,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
    caps: Option<Vec<u8>>,
}

/// Every path of `root` except `skip`ped ones; mtimes only for non-directories in `owned`.
fn snapshot(root: &Path, owned: &[String], skip: &[&str]) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        if skip
            .iter()
            .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
        {
            continue;
        }
        let m = e.path().symlink_metadata().unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else {
            "other"
        };
        let abs = format!("/{rel}");
        out.insert(
            rel,
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                nlink: if ft.is_dir() { 0 } else { m.nlink() },
                // rpm sets a directory's mtime before filling it, so it ends up "now"; the
                // header's value is checked on our side alone.
                mtime: (owned.contains(&abs) && !ft.is_dir()).then(|| m.mtime()),
                rdev: m.rdev(),
                content: ft.is_file().then(|| fs::read(e.path()).unwrap()),
                link: ft.is_symlink().then(|| fs::read_link(e.path()).unwrap()),
                caps: if ft.is_file() {
                    xattr::get(e.path(), "security.capability").unwrap()
                } else {
                    None
                },
            },
        );
    }
    out
}

fn fixture_root(dir: &Path) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/passwd"), PASSWD).unwrap();
    fs::write(dir.join("etc/group"), GROUP).unwrap();
}

fn unpack_into(rpm: &RpmFile, dir: &Path, exclude_docs: bool) -> payload::UnpackReport {
    let root = Root::open(dir).unwrap();
    payload::unpack(
        rpm,
        &root,
        &PayloadOptions {
            owners: &owners,
            exclude_docs,
            chown: true,
        },
    )
    .unwrap()
}

#[test]
#[cfg_attr(
    not(imgbuild_has_rpm_tools),
    ignore = "needs rpmbuild, createrepo_c, zypper, dnf and busybox-static"
)]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn unpacks_what_rpm_installs() {
    let tmp = tempfile::tempdir().unwrap();
    for (setting, _) in PAYLOADS {
        let path = rpmbuild(tmp.path(), setting);
        let rpm = RpmFile::open(&path).unwrap();
        let owned: Vec<String> = rpm
            .files()
            .unwrap()
            .into_iter()
            .filter(|f| !f.flags.ghost())
            .map(|f| f.path)
            .collect();
        let ours = tmp.path().join(format!("ours-{setting}"));
        let theirs = tmp.path().join(format!("theirs-{setting}"));
        fixture_root(&ours);
        fixture_root(&theirs);
        let report = unpack_into(&rpm, &ours, false);
        let mut installed = report.files.clone();
        installed.sort();
        assert_eq!(installed, owned, "{setting}");
        assert_eq!(report.bytes, 6 + 7 + 5 + 4 + 3 + 5 + 6, "{setting}");
        // Debian's rpm keeps its database in ~/.rpmdb unless told otherwise.
        run(Command::new("rpm")
            .arg("--root")
            .arg(&theirs)
            .args([
                "--dbpath",
                "/var/lib/rpm",
                "--nodeps",
                "--noscripts",
                "--notriggers",
                "-i",
            ])
            .arg(&path));
        let skip = ["var/lib/rpm"];
        let want = snapshot(&theirs, &owned, &skip);
        assert_eq!(snapshot(&ours, &owned, &skip), want, "{setting}");
        assert_eq!(want["var/lib/imgt/data"].uid, 4242);
        assert_eq!(want["usr/bin/su"].mode, 0o4755);
        assert!(want["usr/bin/ping"].caps.is_some());
        assert_eq!(want["usr/bin/a"].nlink, 2);
        let dir_mtime = rpm
            .files()
            .unwrap()
            .iter()
            .find(|f| f.path == "/var/lib/imgt")
            .unwrap()
            .mtime;
        assert_eq!(
            ours.join("var/lib/imgt").metadata().unwrap().mtime(),
            i64::from(dir_mtime)
        );
        // Again over the installed tree: files are replaced, the result is the same.
        unpack_into(&rpm, &ours, false);
        assert_eq!(snapshot(&ours, &owned, &skip), want, "{setting} again");
    }
    // --excludedocs.
    let path = rpmbuild(tmp.path(), "w19.zstdio");
    let rpm = RpmFile::open(&path).unwrap();
    let dir = tmp.path().join("nodocs");
    fixture_root(&dir);
    let report = unpack_into(&rpm, &dir, true);
    assert!(!report.files.iter().any(|f| f.contains("/doc/")));
    assert!(!dir.join("usr/share/doc/imgt/README").exists());
    assert!(!dir.join("var/log/imgt.log").exists());
}

/// A `newc` cpio member.
fn newc(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        1,
        0,
        0,
        1,
        0,
        data.len(),
        0,
        0,
        0,
        0,
        name.len() + 1,
        0
    )
    .into_bytes();
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(data);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

#[test]
#[cfg_attr(
    not(imgbuild_has_rpm_tools),
    ignore = "needs rpmbuild, createrepo_c, zypper, dnf and busybox-static"
)]
fn crafted_escape_is_refused_with_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let path = rpmbuild(tmp.path(), "w.ufdio");
    let rpm = RpmFile::open(&path).unwrap();
    let offset = usize::try_from(rpm.payload_offset()).unwrap();
    let head = fs::read(&path).unwrap()[..offset].to_vec();
    for name in [
        "../escape",
        "./../escape",
        "./usr/../../escape",
        "/../escape",
    ] {
        let mut pkg = head.clone();
        pkg.extend(newc("./usr/bin/hello", 0o100_755, b"hello\n"));
        pkg.extend(newc(name, 0o100_644, b"x"));
        pkg.extend(newc("TRAILER!!!", 0, b""));
        let crafted = tmp.path().join("crafted.rpm");
        fs::write(&crafted, pkg).unwrap();
        let rpm = RpmFile::open(&crafted).unwrap();
        let dir = tmp.path().join("root/inner");
        fs::create_dir_all(&dir).unwrap();
        let root = Root::open(&dir).unwrap();
        let owners = |_: &str, _: &str| (0, 0);
        let e = payload::unpack(
            &rpm,
            &root,
            &PayloadOptions {
                owners: &owners,
                exclude_docs: false,
                chown: false,
            },
        )
        .unwrap_err();
        assert!(matches!(e, PayloadError::Refused { .. }), "{name}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("imgt-4:1.2-3.noarch") && msg.contains(name),
            "{msg}"
        );
        assert!(!tmp.path().join("root/escape").exists(), "{name}");
        assert!(!tmp.path().join("escape").exists(), "{name}");
        fs::remove_dir_all(tmp.path().join("root")).unwrap();
    }
}
