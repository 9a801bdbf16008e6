//! What a new user runs into first: the image's date when `config.sh` removes the docs, reuse
//! of a description named by a bare file name, the preflight of root and free space before any
//! download, and a typo in a package name, named where it was written with what was meant.
//!
//! Needs root (and the Debian mirror of the host's apt sources for the builds).

use crate::support::build::{can_build, imgbuild, minimal_build, package_cache, result_json};
use crate::support::{description, heavy, ok, root_or_skip, scratch};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of debian-minimal in `dir` (its `config.xml` only), `edit` applied to the XML.
fn minimal_copy(dir: &Path, edit: impl FnOnce(String) -> String) -> std::path::PathBuf {
    fs::create_dir_all(dir).unwrap();
    let xml = fs::read_to_string(description("debian-minimal").join("config.xml")).unwrap();
    fs::write(dir.join("config.xml"), edit(xml)).unwrap();
    dir.to_path_buf()
}

/// Names in `dir` other than those listed.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Finding 1 and 2: a `config.sh` that empties `/usr/share/doc` used to date the image 1970;
/// `cd desc && imgbuild build config.xml` used to rebuild every time.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn config_sh_removing_the_docs_keeps_the_date_and_a_bare_name_reuses() {
    let test = "config_sh_removing_the_docs_keeps_the_date_and_a_bare_name_reuses";
    if !can_build(test) {
        return;
    }
    let _h = heavy();
    let t = scratch(test);
    let desc = minimal_copy(&t.path().join("desc"), |x| x);
    fs::write(
        desc.join("config.sh"),
        "#!/bin/sh\nset -e\nrm -rf /usr/share/doc/*\n",
    )
    .unwrap();
    let cache = package_cache();
    let run = |cwd: &Path, name: &str| {
        ok(imgbuild(t.path())
            .current_dir(cwd)
            .args(["build", name, "--target-dir"])
            .arg(t.path().join("out"))
            .arg("--cache-dir")
            .arg(&cache))
    };
    let first = run(&desc, "config.xml");
    let log = stderr(&first);
    assert!(!log.contains("not checking for a reusable result"), "{log}");
    assert!(!log.contains("warning"), "{log}");
    let result = result_json(&t.path().join("out"));
    let epoch = result["source_date_epoch"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 2020-09-13: any Debian package of a supported release is newer.
    assert!(
        (1_600_000_000..=now).contains(&epoch),
        "dated {epoch}:\n{log}"
    );
    // The same packages as the plain build give the same date: the docs' removal changes nothing.
    if let Some(plain) = minimal_build(test) {
        let stem = "debian-minimal.x86_64-13.0.0.packages";
        let same_packages = fs::read(plain.target.join(stem)).unwrap()
            == fs::read(t.path().join("out").join(stem)).unwrap();
        if same_packages {
            assert_eq!(
                result_json(&plain.target)["source_date_epoch"].as_u64(),
                Some(epoch)
            );
        }
    }

    // Named by a bare file name, `.`, a path through `..` and through a symlinked directory,
    // the unchanged description is reused each time.
    std::os::unix::fs::symlink(&desc, t.path().join("link")).unwrap();
    for (cwd, name) in [
        (desc.clone(), "config.xml"),
        (desc.clone(), "."),
        (desc.join("../desc"), "../desc/config.xml"),
        (t.path().join("link"), "config.xml"),
    ] {
        let again = run(&cwd, name);
        let log = stderr(&again);
        assert!(
            log.contains("imgbuild: up to date"),
            "{name} in {}:\n{log}",
            cwd.display()
        );
    }
}

/// Finding 3: as a plain user, the build stops before any download with one line saying why,
/// and leaves neither target nor cache behind.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn a_user_without_root_is_stopped_before_any_download() {
    let test = "a_user_without_root_is_stopped_before_any_download";
    if !root_or_skip(test) {
        return;
    }
    let t = scratch(test);
    // The scratch directory is root's; the user needs a place to stand.
    fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let o = imgbuild(t.path())
        .args(["build"])
        .arg(description("debian-minimal"))
        .arg("--target-dir")
        .arg(t.path().join("out"))
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .env("IMGBUILD_STORAGE_ROOT", t.path().join("store"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("imgbuild: error: this needs root") && err.contains("uid 65534"),
        "{err}"
    );
    assert!(entries(t.path()).is_empty(), "{:?}", entries(t.path()));
}

/// Unmounts the tmpfs when the test ends, also when it fails.
struct Tmpfs<'a>(&'a Path);

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Finding 3: too little space for the target and the cache is said before any work, one line
/// each, naming the place.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn too_little_space_is_reported_before_any_work() {
    let test = "too_little_space_is_reported_before_any_work";
    if !root_or_skip(test) {
        return;
    }
    let t = scratch(test);
    let small = t.path().join("small");
    fs::create_dir(&small).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &small,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=16m"),
    )
    .unwrap();
    let _umount = Tmpfs(&small);
    let o = imgbuild(t.path())
        .args(["build"])
        .arg(description("debian-minimal"))
        .arg("--target-dir")
        .arg(small.join("out"))
        .arg("--cache-dir")
        .arg(small.join("cache"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    let out = small.join("out").display().to_string();
    let cache = small.join("cache").display().to_string();
    assert!(
        lines[0].starts_with(&format!("imgbuild: error: {out}: "))
            && lines[0].ends_with(
                "free for the target directory; nothing can be built in less than 32 MB"
            ),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("imgbuild: error: {cache}: "))
            && lines[1].contains("download cache"),
        "{err}"
    );
    assert!(entries(&small).is_empty(), "{:?}", entries(&small));
}

/// Finding 4: a typo in a package name is named at its `<package>` element, once, with the
/// name that was meant, and without the temporary root's path.
#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn a_typo_in_a_package_is_named_at_its_element_with_the_meant_name() {
    let test = "a_typo_in_a_package_is_named_at_its_element_with_the_meant_name";
    if !can_build(test) {
        return;
    }
    let t = scratch(test);
    let desc = minimal_copy(&t.path().join("desc"), |x| {
        x.replace(
            "<packages type=\"bootstrap\">",
            "<packages type=\"image\">\n        <package name=\"pyhton3-minimal\"/>\n        \
             <package name=\"zzzz-no-such-thing\"/>\n    </packages>\n    \
             <packages type=\"bootstrap\">",
        )
    });
    let o = imgbuild(t.path())
        .current_dir(t.path())
        .args(["build", "desc", "--target-dir", "out", "--cache-dir"])
        .arg(package_cache())
        .args(["--add-package", "bsah"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("imgbuild: error: "))
        .collect();
    let xml = fs::read_to_string(desc.join("config.xml")).unwrap();
    let at = |name: &str| {
        let row = xml.lines().position(|l| l.contains(name)).unwrap() + 1;
        format!("desc/config.xml:{row}:9")
    };
    assert_eq!(
        errors,
        [
            format!(
                "imgbuild: error: {}: package \"pyhton3-minimal\" is not in the repositories \
                 (no package or provider of that name); did you mean \"python3-minimal\"?",
                at("pyhton3-minimal")
            ),
            format!(
                "imgbuild: error: {}: package \"zzzz-no-such-thing\" is not in the repositories \
                 (no package or provider of that name)",
                at("zzzz-no-such-thing")
            ),
            "imgbuild: error: --add-package: package \"bsah\" is not in the repositories (no \
             package or provider of that name); did you mean \"bash\"?"
                .to_string(),
        ],
        "{err}"
    );
    assert!(!err.contains(".imgbuild-"), "{err}");
    let left: Vec<String> = entries(t.path())
        .into_iter()
        .filter(|n| n == "out" || n.starts_with(".imgbuild-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
