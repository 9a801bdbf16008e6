//! Reproducibility and failure behaviour of `imgbuild build` / `prepare` + `create`: the same
//! description gives the same manifest digest and byte-identical files across cold and warm caches,
//! target dirs, working directories, wall-clock times and an explicit `SOURCE_DATE_EPOCH`; an
//! unwritable target fails cleanly; an existing result is replaced as a whole.
//! The builds need root and the Debian mirror of the host's apt sources (skip clearly otherwise).

use crate::support::build::{build, imgbuild, minimal_build, result_json, tree_bytes};
use crate::support::{description, heavy, ok, root_or_skip, scratch};

use std::fs;
use std::path::Path;

fn manifest_digest(target: &Path) -> String {
    let r = result_json(target);
    r["manifest_digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no manifest_digest in {r}"))
        .to_string()
}

/// The contents of `path` in the one layer of the docker-archive `target` holds.
fn file_in_layer(target: &Path, path: &str) -> String {
    let archive = fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".docker.tar"))
        .expect("a docker-archive in the result");
    let member = |name: &str| -> Vec<u8> {
        let mut a = tar::Archive::new(fs::File::open(&archive).unwrap());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == name {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut v).unwrap();
                return v;
            }
        }
        panic!("no {name} in {}", archive.display());
    };
    let manifest: serde_json::Value = serde_json::from_slice(&member("manifest.json")).unwrap();
    let layer = member(manifest[0]["Layers"][0].as_str().unwrap());
    let mut a = tar::Archive::new(&layer[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == path {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            return s;
        }
    }
    panic!("no {path} in the layer of {}", archive.display());
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_same_files(a: &Path, b: &Path) {
    let (ta, tb) = (tree_bytes(a), tree_bytes(b));
    let list =
        |t: &[(std::path::PathBuf, Vec<u8>)]| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(list(&ta), list(&tb), "same file names");
    for ((p, x), (_, y)) in ta.iter().zip(&tb) {
        // KIWI's kiwi.result.json names the target directory (absolute, as KIWI writes it):
        // the same once each directory's path is taken out.
        if p.as_os_str() == "kiwi.result.json" {
            let unplace = |b: &[u8], dir: &Path| {
                let dir = std::path::absolute(dir).unwrap();
                String::from_utf8_lossy(b).replace(dir.to_str().unwrap(), "TARGET")
            };
            assert_eq!(unplace(x, a), unplace(y, b), "kiwi.result.json");
            continue;
        }
        if p.as_os_str() == "kiwi.result.json.sha256" {
            continue;
        }
        if p.as_os_str() == "result.json" {
            // The inputs key records how the build was asked for (an explicit
            // SOURCE_DATE_EPOCH, `create` after `prepare`), not what it made; the digest of
            // kiwi.result.json depends on the target's path (compared above).
            let strip = |b: &[u8]| {
                let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                v.as_object_mut().unwrap().remove("inputs");
                for f in v["files"].as_array_mut().unwrap() {
                    if f["kind"] == "kiwi-result" {
                        f.as_object_mut().unwrap().remove("sha256");
                        f.as_object_mut().unwrap().remove("size");
                    }
                }
                v
            };
            assert_eq!(
                strip(x),
                strip(y),
                "result.json of {} and {}",
                a.display(),
                b.display()
            );
            continue;
        }
        assert!(
            x == y,
            "{} differs between {} and {}",
            p.display(),
            a.display(),
            b.display()
        );
    }
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn same_description_same_bytes() {
    let test = "same_description_same_bytes";
    // The first build, made once per run from a cold cache of its own (the podman test runs
    // its image); every build here uses that cache.
    let Some(first) = minimal_build(test) else {
        return;
    };
    let _h = heavy();
    let t = scratch(test);
    let s = t.path();
    let desc = description("debian-minimal");
    let cold = &first.cache;
    let (cwd1, cwd2) = (s.join("cwd1"), s.join("cwd2/nested"));
    fs::create_dir_all(&cwd1).unwrap();
    fs::create_dir_all(&cwd2).unwrap();

    let t1 = &first.target;
    let d1 = manifest_digest(t1);

    // Warm cache, another target dir (which holds old files, replaced as asked with
    // --replace-target-dir), another working directory, a later wall-clock time, the packages
    // installed afresh.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let t2 = s.join("b/other-name");
    fs::create_dir_all(&t2).unwrap();
    fs::write(t2.join("stale.docker.tar"), "old result").unwrap();
    fs::create_dir(t2.join("stale.oci")).unwrap();
    // `--no-snapshot`: the packages are installed again (the later builds restore the shared
    // build's package-stage snapshot, and must give the same bytes too).
    build(
        s,
        &desc,
        &t2,
        cold,
        &cwd2,
        &["--replace-target-dir", "--no-snapshot"],
    );
    assert_eq!(
        manifest_digest(&t2),
        d1,
        "warm-cache rebuild has the same manifest digest"
    );
    assert_same_files(t1, &t2);
    assert!(!t2.join("stale.docker.tar").exists() && !t2.join("stale.oci").exists());
    assert_eq!(
        names(&s.join("b")),
        ["other-name"],
        "no temporary left beside the result"
    );

    // An explicit SOURCE_DATE_EPOCH equal to the default one changes nothing.
    let epoch = result_json(t1)["source_date_epoch"].as_u64().unwrap();
    assert!(epoch > 1_600_000_000, "a package date: {epoch}");

    // Maintainer scripts date what they write by the packages, not by the day of the build:
    // pwconv's last-change day in /etc/shadow is at most the image's epoch day (an image
    // built tomorrow from the same lock must have the same bytes).
    let shadow = file_in_layer(t1, "etc/shadow");
    for line in shadow.lines() {
        let day: u64 = line.split(':').nth(2).unwrap().parse().unwrap();
        assert!(
            day <= epoch / 86_400,
            "{line}: dated after the image ({epoch})"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t3 = s.join("c");
    ok(imgbuild(s)
        .current_dir(&cwd1)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .arg("build")
        .arg(&desc)
        .arg("--target-dir")
        .arg(&t3)
        .arg("--cache-dir")
        .arg(cold));
    assert_eq!(manifest_digest(&t3), d1);
    assert_same_files(t1, &t3);

    // prepare + create (KIWI's split) gives the same image as build.
    let root = s.join("root");
    ok(imgbuild(s)
        .current_dir(&cwd2)
        .arg("prepare")
        .arg(&desc)
        .arg("--root")
        .arg(&root)
        .arg("--cache-dir")
        .arg(cold));
    let t4 = s.join("d");
    ok(imgbuild(s)
        .current_dir(&cwd1)
        .args(["create", "--root"])
        .arg(&root)
        .arg("--target-dir")
        .arg(&t4));
    assert_eq!(manifest_digest(&t4), d1, "create after prepare = build");
    assert_same_files(t1, &t4);

    // A different SOURCE_DATE_EPOCH does change the image (the date is really used).
    let t5 = s.join("e");
    ok(imgbuild(s)
        .env("SOURCE_DATE_EPOCH", (epoch + 86_400).to_string())
        .args(["create", "--root"])
        .arg(&root)
        .arg("--target-dir")
        .arg(&t5));
    assert_ne!(manifest_digest(&t5), d1);
    assert_eq!(result_json(&t5)["source_date_epoch"], epoch + 86_400);
}

/// Unmounts a bind mount on drop (also when the test fails).
struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Runs `imgbuild build` expecting failure; returns stderr.
fn build_fails(s: &Path, target: &Path) -> String {
    let out = imgbuild(s)
        .arg("build")
        .arg(description("debian-minimal"))
        .arg("--target-dir")
        .arg(target)
        .arg("--cache-dir")
        .arg(s.join("cache"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "build into {} succeeded",
        target.display()
    );
    assert_ne!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn unwritable_target_dir_fails_cleanly() {
    let test = "unwritable_target_dir_fails_cleanly";
    if !root_or_skip(test) {
        return;
    }
    let t = scratch(test);
    let s = t.path();

    // The target's parent is a file.
    fs::write(s.join("afile"), "x").unwrap();
    let target = s.join("afile/out");
    let err = build_fails(s, &target);
    assert!(
        err.contains(&s.join("afile").display().to_string()),
        "{err}"
    );
    assert_eq!(fs::read_to_string(s.join("afile")).unwrap(), "x");

    // The target's parent is read-only (a read-only bind mount: root ignores mode bits).
    let ro = s.join("ro");
    fs::create_dir(&ro).unwrap();
    fs::write(ro.join("keep"), "kept").unwrap();
    let flags = nix::mount::MsFlags::MS_BIND;
    nix::mount::mount(Some(&ro), &ro, None::<&str>, flags, None::<&str>).unwrap();
    let _guard = Unmount(ro.clone());
    nix::mount::mount(
        None::<&str>,
        &ro,
        None::<&str>,
        flags | nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let err = build_fails(s, &ro.join("out"));
    assert!(err.contains(&ro.display().to_string()), "{err}");
    assert_eq!(names(&ro), ["keep"], "no partial result");

    // Nothing else appeared: no cache, no work directories.
    let mut left = names(s);
    left.retain(|n| n != "store");
    assert_eq!(left, ["afile", "ro"]);
}
