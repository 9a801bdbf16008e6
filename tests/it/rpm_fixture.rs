//! The RPM fixture (`support::rpm_repo`) is what it claims, checked with the peers only: the
//! repository's signatures verify, zypper and dnf install from it and agree, scriptlets run,
//! a failing `%post` is reported, and the installed root runs. Needs root (the peers chroot to
//! run scriptlets), rpmbuild, `createrepo_c`, zypper, dnf and busybox-static's `/bin/busybox`.

use crate::support::rpm_repo::{self, PeerRun, RpmRepo};
use crate::support::{heavy, run, scratch};

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// The request both peers are compared on.
const REQUEST: [&str; 5] = ["busybox", "with-scripts", "rich-a", "new-tool", "epoch-pkg"];

fn listing(list: &[String]) -> String {
    list.join("\n  ")
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn repomd_signature_verifies_with_the_fixture_key() {
    let repo = rpm_repo::shared();
    let home = scratch("rpm-gpg");
    let gpg = || {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(home.path()).arg("--batch");
        cmd
    };
    run(gpg().arg("--import").arg(&repo.key));
    let repodata = repo.dir.join("repodata");
    let verify = gpg()
        .arg("--verify")
        .arg(repodata.join("repomd.xml.asc"))
        .arg(repodata.join("repomd.xml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "gpg --verify failed:\n{said}");
    assert!(said.contains("Good signature"), "{said}");
    // The signature covers the file: one changed byte fails it.
    let tampered = home.path().join("repomd.xml");
    let mut xml = std::fs::read(repodata.join("repomd.xml")).unwrap();
    let at = xml.iter().position(|&b| b == b'<').unwrap();
    xml.insert(at, b' ');
    std::fs::write(&tampered, xml).unwrap();
    let bad = gpg()
        .arg("--verify")
        .arg(repodata.join("repomd.xml.asc"))
        .arg(&tampered)
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a changed repomd.xml verified");
    // The key the repository carries is the fixture's.
    assert_eq!(
        std::fs::read(repodata.join("repomd.xml.key")).unwrap(),
        std::fs::read(&repo.key).unwrap()
    );
    // The served repository is the same bytes.
    let server = repo.serve();
    let addr = server.base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /repodata/repomd.xml HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let head = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let body = &answer[head + 4..];
    assert_eq!(body, std::fs::read(repodata.join("repomd.xml")).unwrap());
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home.path())
        .args(["--kill", "gpg-agent"])
        .output();
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn every_rpm_is_signed_and_its_digests_check() {
    let repo = rpm_repo::shared();
    let db = scratch("rpm-keys");
    let rpm = || {
        let mut cmd = Command::new("rpm");
        cmd.arg("--dbpath").arg(db.path()).env("HOME", db.path());
        cmd
    };
    run(rpm().arg("--import").arg(&repo.key));
    let out = run(rpm().arg("-K").args(repo.rpms.values()));
    assert_eq!(out.lines().count(), repo.rpms.len(), "{out}");
    for line in out.lines() {
        assert!(
            line.ends_with(": digests signatures OK"),
            "rpm -K: {line}\n{out}"
        );
    }
    // Signed by the fixture's key (rpm names its short id).
    let id = repo.fingerprint[repo.fingerprint.len() - 16..].to_lowercase();
    let sigs = run(rpm()
        .args(["-qp", "--qf", "%{RSAHEADER:pgpsig}\\n"])
        .args(repo.rpms.values()));
    for line in sigs.lines() {
        assert!(line.ends_with(&format!("Key ID {id}")), "{line}");
    }
    // Every spec made its package, at the arch it claims.
    for (name, path) in &repo.rpms {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let arch = if ["busybox", "filesystem"].contains(&name.as_str()) {
            repo.arch.as_str()
        } else {
            "noarch"
        };
        assert!(file.ends_with(&format!(".{arch}.rpm")), "{name}: {file}");
    }
}

/// zypper's and dnf's installs of `request`, which must agree.
fn agreeing(repo: &RpmRepo, request: &[&str], with_recommends: bool) -> (PeerRun, PeerRun) {
    let zypper = rpm_repo::zypper_install(repo, request, with_recommends).unwrap();
    let dnf = rpm_repo::dnf_install(repo, request, with_recommends).unwrap();
    let both = format!(
        "zypper:\n  {}\ndnf:\n  {}",
        listing(&zypper.installed),
        listing(&dnf.installed)
    );
    zypper
        .check("zypper")
        .unwrap_or_else(|e| panic!("{e}\n{both}"));
    dnf.check("dnf").unwrap_or_else(|e| panic!("{e}\n{both}"));
    assert_eq!(
        zypper.installed, dnf.installed,
        "zypper and dnf chose differently for {request:?} (recommends: {with_recommends}):\n{both}"
    );
    (zypper, dnf)
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn zypper_and_dnf_install_the_same_set() {
    let repo = rpm_repo::shared();
    let _heavy = heavy();
    let arch = &repo.arch;
    let required: Vec<String> = [
        format!("busybox-0:1.35.0-1.{arch}"),
        "epoch-pkg-2:1.0-1.noarch".into(),
        format!("filesystem-0:1.0-1.{arch}"),
        // (helper if busybox): busybox is in.
        "helper-0:1.0-1.noarch".into(),
        // (impl-x or impl-y): both peers take the higher version.
        "impl-y-0:2.0-1.noarch".into(),
        "new-tool-0:2.0-1.noarch".into(),
        "rich-a-0:1.0-1.noarch".into(),
        "with-scripts-0:1.0-1.noarch".into(),
    ]
    .into();
    let (zypper, dnf) = agreeing(repo, &REQUEST, false);
    assert_eq!(zypper.installed, required);
    for peer in [&zypper, &dnf] {
        // The scriptlets ran in order, as a first install ($1 = 1), and the file %pre's
        // account owns has that account's ids.
        let dir = peer.root.join("var/lib/with-scripts");
        for (marker, says) in [
            ("pre-ran", "1"),
            ("post-ran", "1"),
            ("posttrans-ran", "done"),
        ] {
            let text = std::fs::read_to_string(dir.join(marker))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(marker).display()));
            assert_eq!(text.trim(), says, "{marker}");
        }
        let owned = std::fs::metadata(dir.join("owned")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), (480, 480));
        // rpm's own verification of what it installed: only the accounts files %pre edited
        // (config files, so marked `c`) differ.
        let verify = rpm_repo::rpm_in(&peer.root).arg("-Va").output().unwrap();
        let said = String::from_utf8_lossy(&verify.stdout);
        for line in said.lines() {
            assert!(
                ["/etc/passwd", "/etc/group", "/etc/shadow"]
                    .iter()
                    .any(|f| line.ends_with(&format!(" c {f}"))),
                "rpm -Va in {}: {said}",
                peer.root.display()
            );
        }
    }

    let mut with_weak = required;
    // Recommends: extra-tool; weak-target Supplements: busybox.
    with_weak.push("extra-tool-0:1.0-1.noarch".into());
    with_weak.push("weak-target-0:1.0-1.noarch".into());
    with_weak.sort();
    let (zypper, _dnf) = agreeing(repo, &REQUEST, true);
    assert_eq!(zypper.installed, with_weak);

    // The choice functions say the same.
    assert_eq!(
        rpm_repo::zypper_choice(repo, &["needs-impl"], false).unwrap(),
        rpm_repo::dnf_choice(repo, &["needs-impl"], false).unwrap()
    );
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn a_failing_post_is_reported_by_both_peers() {
    let repo = rpm_repo::shared();
    let _heavy = heavy();
    let zypper = rpm_repo::zypper_install(repo, &["fails-post"], false).unwrap();
    let dnf = rpm_repo::dnf_install(repo, &["fails-post"], false).unwrap();
    // zypper's exit code for a failed scriptlet (ZYPPER_EXIT_INF_RPM_SCRIPT_FAILED); dnf exits
    // 0 and only says so.
    assert_eq!(zypper.status.code(), Some(107), "{}", zypper.output);
    for (name, peer) in [("zypper", &zypper), ("dnf", &dnf)] {
        assert!(peer.scriptlet_failed(), "{name}:\n{}", peer.output);
        assert!(peer.check(name).is_err());
        // rpm keeps the package installed.
        assert!(
            peer.installed.iter().any(|p| p.starts_with("fails-post-")),
            "{name}: {:?}",
            peer.installed
        );
    }
    assert!(rpm_repo::zypper_choice(repo, &["fails-post"], false).is_err());
    assert!(rpm_repo::dnf_choice(repo, &["fails-post"], false).is_err());
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn the_installed_root_runs_busybox() {
    let repo = rpm_repo::shared();
    let _heavy = heavy();
    let zypper = rpm_repo::zypper_install(repo, &["busybox"], false).unwrap();
    zypper.check("zypper").unwrap();
    let out = run(Command::new("chroot").arg(&zypper.root).args([
        "/usr/bin/busybox",
        "sh",
        "-c",
        "echo ok",
    ]));
    assert_eq!(out, "ok\n");
    // /bin is usr-merged: the shell scriptlets run is the package's.
    let out = run(Command::new("chroot").arg(&zypper.root).args([
        "/bin/sh",
        "-c",
        "readlink /bin; id -un",
    ]));
    assert_eq!(out, "usr/bin\nroot\n");
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn the_file_kinds_install_as_rpm_says() {
    let repo = rpm_repo::shared();
    let _heavy = heavy();
    let (zypper, dnf) = agreeing(repo, &["caps-pkg", "config-pkg"], false);
    for peer in [&zypper, &dnf] {
        let root = &peer.root;
        let caps = run(Command::new("getcap").arg(root.join("usr/bin/caps-ping")));
        assert!(caps.contains("cap_net_raw=ep"), "getcap: {caps}");
        let one = std::fs::metadata(root.join("usr/share/config-pkg/one")).unwrap();
        let two = std::fs::metadata(root.join("usr/share/config-pkg/two")).unwrap();
        assert_eq!((one.ino(), one.nlink()), (two.ino(), 2), "hardlinked pair");
        assert!(root.join("usr/share/config-pkg/empty").is_dir());
        assert!(root.join("etc/config-pkg.conf").is_file());
        assert!(root.join("usr/share/doc/config-pkg/README").is_file());
        // A ghost is owned but not installed.
        assert!(!root.join("var/log/config-pkg.log").exists());
        let modes = run(rpm_repo::rpm_in(root).args([
            "-q",
            "--qf",
            "[%{FILEMODES:perms} %{FILENAMES}\\n]",
            "filesystem",
        ]));
        for want in [
            "drwx------ /root",
            "drwxrwxrwt /tmp",
            "-rw-r----- /etc/shadow",
        ] {
            assert!(modes.contains(want), "{want} in:\n{modes}");
        }
        let meta = std::fs::metadata(root.join("tmp")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o1777);
    }
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn the_peers_differ_where_documented() {
    let repo = rpm_repo::shared();
    let _heavy = heavy();
    // libzypp reads no filelists.xml: a file only listed there provides nothing to zypper.
    let zypper = rpm_repo::zypper_install(repo, &["needs-file"], false).unwrap();
    assert_eq!(zypper.status.code(), Some(4), "{}", zypper.output);
    assert!(
        zypper.output.contains("/usr/share/fixture/data"),
        "{}",
        zypper.output
    );
    let dnf = rpm_repo::dnf_choice(repo, &["needs-file"], false).unwrap();
    assert!(dnf.iter().any(|p| p.starts_with("data-files-")), "{dnf:?}");
    // Asked for an obsoleted name, zypper installs it, dnf its obsoleter.
    let zypper = rpm_repo::zypper_choice(repo, &["old-tool"], false).unwrap();
    let dnf = rpm_repo::dnf_choice(repo, &["old-tool"], false).unwrap();
    assert_eq!(zypper, ["old-tool-0:1.0-1.noarch"]);
    assert_eq!(dnf, ["new-tool-0:2.0-1.noarch"]);
    // Debian's zypper knows no pattern made of `pattern()` provides, only the capability.
    let zypper = rpm_repo::zypper_install(repo, &["-t", "pattern", "minimal"], false).unwrap();
    assert_eq!(zypper.status.code(), Some(104), "{}", zypper.output);
    let zypper = rpm_repo::zypper_choice(repo, &["pattern() = minimal"], false).unwrap();
    assert!(
        zypper.iter().any(|p| p.starts_with("pattern-minimal-")),
        "{zypper:?}"
    );
}

#[test]
#[cfg_attr(
    not(all(imgbuild_tests_as_root, imgbuild_has_rpm_tools)),
    ignore = "needs root and rpmbuild, createrepo_c, zypper, dnf, busybox-static"
)]
fn a_conflict_is_refused_by_both_peers() {
    let repo = rpm_repo::shared();
    let _heavy = heavy();
    let request = ["conflicting", "impl-x"];
    let zypper = rpm_repo::zypper_install(repo, &request, false).unwrap();
    let dnf = rpm_repo::dnf_install(repo, &request, false).unwrap();
    // zypper: solver problem (4), dnf: error (1); nothing installed by either.
    assert_eq!(zypper.status.code(), Some(4), "{}", zypper.output);
    assert_eq!(dnf.status.code(), Some(1), "{}", dnf.output);
    for (name, peer) in [("zypper", &zypper), ("dnf", &dnf)] {
        assert!(peer.output.contains("impl-x"), "{name}:\n{}", peer.output);
        assert!(peer.installed.is_empty(), "{name}: {:?}", peer.installed);
    }
    // Without impl-x in the request, needs-impl beside conflicting takes impl-y.
    let both = ["conflicting", "needs-impl"];
    let zypper = rpm_repo::zypper_choice(repo, &both, false).unwrap();
    assert_eq!(zypper, rpm_repo::dnf_choice(repo, &both, false).unwrap());
    assert!(
        zypper.iter().any(|p| p.starts_with("impl-y-")),
        "{zypper:?}"
    );
}
