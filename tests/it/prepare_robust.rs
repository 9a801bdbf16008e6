//! `imgbuild prepare` under interruption, concurrency and bad requests: SIGINT mid-install and
//! SIGKILL (mid-download and mid-install) leave no mounts and no process behind, the next prepare
//! from the same cache succeeds and the cache holds no partial file; two prepares sharing one
//! cache both succeed; a failed prepare names the package and leaves no root; an existing
//! non-empty root is refused; `lock` then `prepare --offline` installs exactly the lock. Needs
//! root and the mirror of the host's apt sources (except the refusal test); skips clearly
//! otherwise.

use crate::support::build::{
    check_cache, installed_packages, package_cache, preconditions, prepare_cmd, processes_using,
    wait_no_processes,
};
use crate::support::{heavy, imgbuild_bin, mounts_under, ok, scratch, tail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running prepare whose stderr lines arrive on a channel (and are kept for messages).
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: JoinHandle<Vec<String>>,
}

fn spawn_prepare(root: &Path, cache: &Path) -> Running {
    // `--verbose`: a line per downloaded file, which the kill mid-download waits for;
    // `--no-snapshot`: the install the signals land in runs even when an earlier prepare of the
    // run kept its package stage.
    let mut cmd = prepare_cmd(
        root,
        Some("bookworm"),
        cache,
        &["--verbose", "--no-snapshot"],
    );
    // Its own process group, so SIGINT can go to the whole group as a terminal's Ctrl-C does.
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn imgbuild prepare");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    Running {
        child,
        lines: rx,
        reader,
    }
}

impl Running {
    /// Wait for a stderr line containing `needle`; panics after `limit` or if the prepare ends
    /// first.
    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("no stderr line containing {needle:?} ({e:?})");
                }
            }
        }
    }

    /// Wait until a process of the build runs inside `root` (a sandboxed maintainer script or
    /// dpkg), so a signal lands while the sandbox and its mounts are live; panics if the prepare
    /// ends first or after `limit`.
    fn wait_for_sandbox(&mut self, root: &Path, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while processes_using(root).is_empty() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the prepare ended ({status}) before its sandbox was seen running");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no sandboxed process seen inside {}",
                root.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send `sig` (to the process group when `group`), wait for the end, and return the exit
    /// status and the stderr lines.
    fn signal(mut self, sig: Signal, group: bool) -> (std::process::ExitStatus, Vec<String>) {
        let pid = Pid::from_raw(self.child.id().cast_signed());
        if group {
            killpg(pid, sig).expect("killpg");
        } else {
            kill(pid, sig).expect("kill");
        }
        let status = self.child.wait().expect("wait for imgbuild");
        let lines = self.reader.join().unwrap_or_default();
        (status, lines)
    }
}

/// After an interrupted prepare under `work`: no mount and no live process is left there.
fn assert_nothing_left(work: &Path, what: &str) {
    let procs = wait_no_processes(work, Duration::from_secs(15));
    assert!(
        procs.is_empty(),
        "{what}: processes still inside {}: {procs:?}",
        work.display()
    );
    let mounts = mounts_under(work);
    assert!(
        mounts.is_empty(),
        "{what}: mounts left under {}: {mounts:#?}",
        work.display()
    );
}

fn assert_cache_whole(cache: &Path, at_least: usize) {
    let (checked, bad, partial) = check_cache(cache);
    assert!(
        bad.is_empty(),
        "cache blobs not matching their sha256: {bad:?}"
    );
    assert!(
        partial.is_empty(),
        "partial files in the cache: {partial:?}"
    );
    assert!(
        checked >= at_least,
        "only {checked} blobs in the cache, expected at least {at_least}"
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn sigint_mid_install_leaves_no_mounts() {
    let Some(_) = preconditions("sigint_mid_install_leaves_no_mounts", "bookworm") else {
        return;
    };
    let _h = heavy();
    let work = scratch("prepare-sigint");
    let cache = package_cache();
    let before = mounts_under(work.path());

    let root1 = work.path().join("root-1");
    let mut run = spawn_prepare(&root1, &cache);
    run.wait_for("imgbuild: bootstrap ...", Duration::from_mins(10));
    run.wait_for_sandbox(&root1, Duration::from_mins(5));
    let (status, lines) = run.signal(Signal::SIGINT, true);
    assert!(
        !status.success(),
        "the prepare finished before SIGINT arrived; stderr:\n{}",
        lines.join("\n")
    );
    assert_eq!(mounts_under(work.path()), before);
    assert_nothing_left(work.path(), "after SIGINT");

    let root = work.path().join("root-2");
    ok(&mut prepare_cmd(&root, Some("bookworm"), &cache, &[]));
    assert!(installed_packages(&root).len() > 50);
    assert_nothing_left(work.path(), "after the next prepare");
    assert_cache_whole(&cache, 80);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn sigkill_mid_download_and_mid_install_then_prepare_succeeds() {
    let test = "sigkill_mid_download_and_mid_install_then_prepare_succeeds";
    let Some(_) = preconditions(test, "bookworm") else {
        return;
    };
    let _h = heavy();
    let work = scratch("prepare-sigkill");
    // A cold cache of its own, so the kill lands among half-written downloads.
    let cache = work.path().join("cache");

    let mut run = spawn_prepare(&work.path().join("root-1"), &cache);
    run.wait_for("[20/", Duration::from_mins(10));
    let (status, lines) = run.signal(Signal::SIGKILL, false);
    assert!(
        !status.success(),
        "killed prepare succeeded?\n{}",
        lines.join("\n")
    );
    assert_nothing_left(work.path(), "after SIGKILL mid-download");

    let root2 = work.path().join("root-2");
    let mut run = spawn_prepare(&root2, &cache);
    run.wait_for("imgbuild: bootstrap ...", Duration::from_mins(10));
    run.wait_for_sandbox(&root2, Duration::from_mins(5));
    let (status, lines) = run.signal(Signal::SIGKILL, false);
    assert!(
        !status.success(),
        "the prepare finished before SIGKILL arrived; stderr:\n{}",
        lines.join("\n")
    );
    assert_nothing_left(work.path(), "after SIGKILL mid-install");

    let root = work.path().join("root-3");
    ok(&mut prepare_cmd(&root, Some("bookworm"), &cache, &[]));
    let pkgs = installed_packages(&root);
    assert!(pkgs.len() > 50, "too few packages: {pkgs:?}");
    assert_nothing_left(work.path(), "after the next prepare");
    assert_cache_whole(&cache, pkgs.len());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn two_prepares_sharing_a_cold_cache_both_succeed() {
    let Some(_) = preconditions("two_prepares_sharing_a_cold_cache_both_succeed", "bookworm")
    else {
        return;
    };
    let _h = heavy();
    let work = scratch("prepare-concurrent");
    let cache = work.path().join("cache");
    let (a, b) = (work.path().join("root-a"), work.path().join("root-b"));
    let mut ca = prepare_cmd(&a, Some("bookworm"), &cache, &[]);
    let mut cb = prepare_cmd(&b, Some("bookworm"), &cache, &[]);
    let ha = std::thread::spawn(move || ca.output().expect("start prepare a"));
    let hb = std::thread::spawn(move || cb.output().expect("start prepare b"));
    for (name, out) in [("a", ha.join()), ("b", hb.join())] {
        let out = out.expect("prepare thread");
        assert!(
            out.status.success(),
            "concurrent prepare {name} failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 40)
        );
    }
    let (pa, pb) = (installed_packages(&a), installed_packages(&b));
    assert!(pa.len() > 50);
    assert_eq!(pa, pb, "the two roots differ");
    assert_nothing_left(work.path(), "after concurrent prepares");
    assert_cache_whole(&cache, pa.len());
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn failed_prepare_names_the_package_and_leaves_no_root() {
    let test = "failed_prepare_names_the_package_and_leaves_no_root";
    let Some(_) = preconditions(test, "bookworm") else {
        return;
    };
    let _h = heavy();
    let work = scratch("prepare-fail");
    let root = work.path().join("root");
    let out = prepare_cmd(
        &root,
        Some("bookworm"),
        &package_cache(),
        &["--add-package", "no-such-package-xyz"],
    )
    .output()
    .expect("start imgbuild");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "prepare succeeded:\n{err}");
    assert!(
        err.contains("no-such-package-xyz"),
        "the error does not name the package:\n{err}"
    );
    assert!(
        !root.exists(),
        "a failed prepare left {} behind",
        root.display()
    );
    assert_nothing_left(work.path(), "after a failed prepare");
}

#[test]
fn existing_non_empty_root_is_refused() {
    let work = scratch("prepare-existing");
    let root = work.path().join("root");
    std::fs::create_dir(&root).expect("mkdir root");
    std::fs::write(root.join("keep-me"), b"precious\n").expect("write file");
    let out = prepare_cmd(&root, Some("bookworm"), &work.path().join("cache"), &[])
        .output()
        .expect("start imgbuild");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "prepare into a non-empty root succeeded:\n{err}"
    );
    assert!(
        err.contains("--allow-existing-root") && err.contains(&*root.to_string_lossy()),
        "the refusal does not name the root and the option:\n{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&root)
        .expect("read root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("keep-me")]);
    assert_eq!(
        std::fs::read(root.join("keep-me")).expect("read file"),
        b"precious\n"
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn lock_then_offline_prepare_installs_the_lock() {
    let Some(_) = preconditions("lock_then_offline_prepare_installs_the_lock", "bookworm") else {
        return;
    };
    let _h = heavy();
    let work = scratch("prepare-lock");
    let lock = work.path().join("imgbuild.lock");
    let cache = package_cache();
    ok(std::process::Command::new(imgbuild_bin())
        .arg("lock")
        .arg(crate::support::description("debian-minimal"))
        .args(["--profile", "bookworm", "--lock"])
        .arg(&lock)
        .arg("--cache-dir")
        .arg(&cache)
        .stdin(Stdio::null()));
    let locked = imgbuild::apt::lock::LockFile::read(&lock).expect("read the lock file");
    assert!(locked.packages.len() > 50);

    // Warm the cache with exactly the locked packages, then build offline from lock and cache.
    let root = work.path().join("root");
    let lock_arg = lock.to_string_lossy().into_owned();
    ok(&mut prepare_cmd(
        &work.path().join("warm"),
        Some("bookworm"),
        &cache,
        &["--lock", &lock_arg],
    ));
    let out = ok(prepare_cmd(
        &root,
        Some("bookworm"),
        &cache,
        &["--offline", "--lock", &lock_arg],
    )
    .env("IMGBUILD_APT_HOST_MIRROR", "http://127.0.0.1:9/unreachable"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("using lock file") && err.contains(&lock_arg),
        "prepare did not say it used the lock:\n{err}"
    );
    let want: std::collections::BTreeSet<String> = locked
        .packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    assert_eq!(installed_packages(&root), want);
    assert_nothing_left(work.path(), "after offline prepare");
}
