//! Names, tags and label names given on the command line are checked as strictly as a
//! description's own (issue 9, finding 8: `--set-container-tag 'bad tag/..'` and a
//! 10,000-character tag were written into the archive, which podman then refused). Each is
//! refused with the flag and the reason, a non-zero exit, before any work starts: no target
//! directory, work directory or store appears. None of these needs root or the network.

use std::path::Path;
use std::process::{Command, Output};

const DESC: &str = "descriptions/debian-minimal";

fn imgbuild(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .arg("--storage-root")
        .arg(store)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("IMGBUILD_STORAGE_ROOT")
        .env_remove("IMGBUILD_STORAGE_DRIVER")
        .output()
        .expect("run imgbuild")
}

/// Asserts a refusal naming `want`, and that `dir` (the test's temp dir) is still empty.
fn assert_refused(out: &Output, want: &str, dir: &Path) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(err.contains(want), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "work was done: {left:?}");
}

/// `build` with `extra` output flags, into a target and store inside `dir`.
fn build_with(dir: &Path, extra: &[&str]) -> Output {
    let target = dir.join("out");
    let mut args = vec![
        "build",
        DESC,
        "--profile",
        "bookworm",
        "--target-dir",
        target.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    imgbuild(&dir.join("store"), &args)
}

#[test]
fn set_container_tag_invalid_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let out = build_with(t.path(), &["--set-container-tag", "bad tag/.."]);
    assert_refused(
        &out,
        "--set-container-tag \"bad tag/..\": ' ' is not allowed",
        t.path(),
    );
    for tag in ["-x", ".x", "a:b", "ä"] {
        let flag = format!("--set-container-tag={tag}");
        let out = build_with(t.path(), &[&flag]);
        assert_refused(&out, &format!("--set-container-tag {tag:?}: "), t.path());
    }
}

#[test]
fn long_tag_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let long = "a".repeat(10_000);
    let out = build_with(t.path(), &["--set-container-tag", &long]);
    assert_refused(
        &out,
        "(10000 characters): it is 10000 characters long, at most 128 are allowed",
        t.path(),
    );
    // The message quotes the start of the tag, not all of it.
    assert!(
        out.stderr.len() < 1000,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 128 is the limit, not 127.
    let out = build_with(t.path(), &["--set-container-tag", &"a".repeat(129)]);
    assert_refused(&out, "at most 128", t.path());
}

#[test]
fn add_container_label_invalid_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let out = build_with(t.path(), &["--add-container-label", "bad name=x"]);
    assert_refused(
        &out,
        "--add-container-label: \"bad name\" is not a valid label name",
        t.path(),
    );
    let out = build_with(t.path(), &["--add-container-label", "=x"]);
    assert_refused(&out, "it is empty", t.path());
}

#[test]
fn store_names_are_refused_before_the_store_is_opened() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let archive = t.path().join("no-such.tar");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["load", archive.to_str().unwrap(), "--tag", "Bad/Name:1"],
            "--tag \"Bad/Name:1\": image name \"Bad/Name\"",
        ),
        (
            vec!["load", archive.to_str().unwrap(), "--tag", "ok:bad tag"],
            "--tag \"ok:bad tag\": tag \"bad tag\"",
        ),
        (vec!["tag", "img", "a..b:1"], "tag: TARGET \"a..b:1\""),
        (vec!["tag", "img", "x@sha256:00"], "digest references"),
        (
            vec!["run", "--name", "bad name", "img", "true"],
            "invalid container name 'bad name'",
        ),
    ];
    for (args, want) in cases {
        let out = imgbuild(&store, &args);
        assert_refused(&out, want, t.path());
    }
    let long = format!("x:{}", "t".repeat(10_000));
    let out = imgbuild(&store, &["tag", "img", &long]);
    assert_refused(&out, "at most 128 are allowed", t.path());
    assert!(out.stderr.len() < 1000);
}

#[test]
fn set_container_derived_from_invalid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    let layout = dir.path().join("missing-layout");
    for (uri, want) in [
        (
            format!("oci:{}:bad tag", dir.path().display()),
            "' ' is not allowed",
        ),
        (
            "https://example.invalid/base".to_string(),
            "transport not supported",
        ),
        (layout.display().to_string(), "missing-layout"),
    ] {
        let out = imgbuild(
            &dir.path().join("store"),
            &[
                "build",
                "descriptions/debian-derived",
                "--target-dir",
                target.to_str().unwrap(),
                "--set-container-derived-from",
                &uri,
            ],
        );
        assert_refused(&out, "--set-container-derived-from", dir.path());
        assert!(String::from_utf8_lossy(&out.stderr).contains(want), "{uri}");
    }
}
