//! Closed pipes: when the reader of imgbuild's stdout or stderr has gone (`imgbuild info DIR |
//! head`), every command ends as SIGPIPE ends coreutils and podman: killed by SIGPIPE, no
//! message, no panic. A build whose stderr closes stops cleanly first (nothing left behind). The
//! commands imgbuild runs in its sandboxes get SIGPIPE's default action back.
//!
//! Each pipe's read end is closed before imgbuild starts, so its first write fails: no timing.

use crate::support::build::{imgbuild as imgbuild_in, in_root};
use crate::support::storage::{TestImage, base_layer};
use crate::support::{busybox, imgbuild_bin, repo_dir, root_or_skip, scratch, skip};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `imgbuild ARGS` in the checkout with a private store under `scratch`.
fn imgbuild(scratch: &Path, args: &[&str]) -> Command {
    let mut c = imgbuild_in(scratch);
    c.args(args).current_dir(repo_dir());
    c
}

/// Runs `cmd` with stdout a pipe nobody reads (its read end closed first); stderr captured.
fn stdout_closed(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

/// Runs `cmd` with stderr a pipe nobody reads; stdout captured.
fn stderr_closed(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stderr(writer).stdout(Stdio::piped()).output().unwrap()
}

/// The process was killed by SIGPIPE and said nothing on stderr.
#[track_caller]
fn assert_sigpipe(what: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{what}: {} (stderr: {err})",
        out.status
    );
    assert!(err.is_empty(), "{what}: said {err}");
}

#[test]
fn info_help_and_version_end_quietly_on_a_closed_stdout() {
    let t = scratch("pipes-info");
    for args in [
        &["info", "descriptions/debian-minimal"][..],
        &["info", "--format", "yaml", "descriptions/debian-minimal"],
        &["info", "--list-profiles", "descriptions/debian-minimal"],
        &["validate", "descriptions/debian-minimal"],
        &["version"],
        &["--help"],
        &["build", "--help"],
    ] {
        let out = stdout_closed(&mut imgbuild(t.path(), args));
        assert_sigpipe(&format!("{args:?}"), &out);
    }
}

#[test]
fn errors_end_quietly_on_a_closed_stderr() {
    let t = scratch("pipes-stderr");
    // An error, a usage error and a validation error, each with nobody reading stderr.
    for args in [
        &["info", "no/such/description"][..],
        &["info", "--no-such-option"],
        &["validate", "no/such/description"],
    ] {
        let out = stderr_closed(&mut imgbuild(t.path(), args));
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {}",
            out.status
        );
    }
}

#[test]
fn a_build_with_a_closed_stderr_stops_cleanly() {
    // Offline with an empty cache: no root or network needed to start; the first stage line
    // finds stderr closed, and the build must stop, leave no work directory and end by SIGPIPE.
    let t = scratch("pipes-build");
    let out_dir = t.path().join("out");
    let cache = t.path().join("cache");
    let lock = t.path().join("none.lock");
    let out = stderr_closed(&mut imgbuild(
        t.path(),
        &[
            "build",
            "descriptions/debian-minimal",
            "--offline",
            "--no-lock",
            "--lock",
            lock.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--target-dir",
            out_dir.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{}", out.status);
    assert!(out.stdout.is_empty());
    let left: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".imgbuild-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!out_dir.exists());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn store_listings_end_quietly_on_a_closed_stdout() {
    let test = "store_listings_end_quietly_on_a_closed_stdout";
    if !root_or_skip(test) {
        return;
    }
    let t = scratch("pipes-store");
    let store_root = t.path().join("store");
    let store = imgbuild::storage::Store::open(&imgbuild::storage::StoreOptions {
        root: store_root.clone(),
        driver: Some(imgbuild::storage::DriverKind::Vfs),
    })
    .unwrap();
    let image = TestImage::new(&[base_layer()], "pipes");
    store
        .load(
            image.input(),
            &["pipes/test:1".to_string()],
            &imgbuild::storage::ConfinedApplier,
        )
        .unwrap();
    drop(store);
    let run = |args: &[&str]| {
        let mut c = Command::new(imgbuild_bin());
        c.arg("--storage-root")
            .arg(&store_root)
            .args(["--storage-driver", "vfs"])
            .args(args)
            .stdin(Stdio::null());
        stdout_closed(&mut c)
    };
    for args in [
        &["images"][..],
        &["images", "--format", "json"],
        &["inspect", "pipes/test:1"],
        &["ps", "--all"],
    ] {
        assert_sigpipe(&format!("{args:?}"), &run(args));
    }
    // `save -o -` to a closed pipe ends the same way, and its temporary copy is gone.
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut c = Command::new(imgbuild_bin());
    c.arg("--storage-root")
        .arg(&store_root)
        .args(["--storage-driver", "vfs", "save", "-o", "-", "pipes/test:1"])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null());
    assert_sigpipe("save -o -", &stdout_closed(&mut c));
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "left in TMPDIR"
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn sandboxed_commands_get_the_default_sigpipe_action() {
    let test = "sandboxed_commands_get_the_default_sigpipe_action";
    if !root_or_skip(test) {
        return;
    }
    let root = match busybox::root() {
        Ok(r) => r,
        Err(e) => {
            skip(format_args!(
                "{test} needs the busybox-static test root: {e}"
            ));
            return;
        }
    };
    // imgbuild itself ignores SIGPIPE; its sandboxed commands must not inherit that: `yes`
    // ends by SIGPIPE when `head` has read its line, and SIGPIPE is not in the ignored set.
    let out = in_root(
        root,
        &[
            "/bin/sh",
            "-c",
            "yes | head -n 1; grep '^SigIgn:' /proc/self/status",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ignored = text
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map_or_else(
            || panic!("no SigIgn line in {text}"),
            |m| u64::from_str_radix(m.trim(), 16).unwrap(),
        );
    assert_eq!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {text}"
    );
    assert_eq!(text.lines().next(), Some("y"));
}
