//! Builds that meet a clumsy user or an impatient one (issue 9, findings 5 to 7): a target
//! directory holding the user's files is refused; SIGTERM and SIGINT stop a build whose hook
//! hangs, killing its processes and removing its temporary root; `--hook-timeout` ends a hung
//! hook; work directories of killed builds are removed by the next build; and kill -9 or SIGINT
//! at random points of a build leave nothing behind that the next build does not clean, with the
//! same image every time.
//!
//! The builds need root and the Debian mirror of the host's apt sources: they skip clearly
//! without them, and fail when `CI` is set. The refusal and stale-directory checks run anywhere.

use crate::support::build::{can_build, imgbuild, package_cache, result_json, wait_no_processes};
use crate::support::{cgroups_of, description, fixture_dir, heavy, mounts_under, ok, scratch};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The smallest shipped description with a lock file, made once per run (so every build here
/// installs the same packages without resolving, and from the shared cache without the network).
fn locked_description() -> &'static Path {
    static DESC: OnceLock<PathBuf> = OnceLock::new();
    DESC.get_or_init(|| {
        let dir = fixture_dir("build-interrupt-description");
        fs::copy(
            description("debian-minimal").join("config.xml"),
            dir.join("config.xml"),
        )
        .unwrap();
        let scratch_dir = scratch("lock");
        ok(imgbuild(scratch_dir.path())
            .arg("lock")
            .arg(&dir)
            .arg("--cache-dir")
            .arg(package_cache()));
        dir
    })
}

/// A copy of the locked description under `dir`, with `config.sh` when given.
fn description_with(dir: &Path, config_sh: Option<&str>) -> PathBuf {
    let desc = dir.join("desc");
    fs::create_dir_all(&desc).unwrap();
    for f in ["config.xml", "imgbuild.lock"] {
        fs::copy(locked_description().join(f), desc.join(f)).unwrap();
    }
    if let Some(script) = config_sh {
        fs::write(desc.join("config.sh"), script).unwrap();
    }
    desc
}

/// `imgbuild build DESC --target-dir TARGET --cache-dir <shared>` plus `extra`.
fn build_cmd(scratch: &Path, desc: &Path, target: &Path, extra: &[&str]) -> Command {
    let mut c = imgbuild(scratch);
    c.arg("build")
        .arg(desc)
        .arg("--target-dir")
        .arg(target)
        .arg("--cache-dir")
        .arg(package_cache())
        .args(extra);
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// imgbuild's work directories (`.imgbuild-root-*`, `.imgbuild-result-*`) in `dir`.
fn work_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".imgbuild-"))
        .collect();
    v.sort();
    v
}

/// Nothing of a build is left under `dir`: no work directory, process or mount.
fn assert_nothing_left(dir: &Path, what: &str) {
    assert_eq!(
        work_dirs(dir),
        Vec::<String>::new(),
        "{what}: work dirs left"
    );
    let procs = wait_no_processes(dir, Duration::from_secs(15));
    assert!(procs.is_empty(), "{what}: processes left: {procs:?}");
    let mounts = mounts_under(dir);
    assert!(mounts.is_empty(), "{what}: mounts left: {mounts:#?}");
}

/// A build running in the background, its stderr collected by a thread.
struct Running {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imgbuild");
        let err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        Running { child, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid().cast_signed()), sig)
            .expect("signal imgbuild");
    }

    /// Wait until `cond` holds, checking between short pauses; panics when the build ends
    /// first or after `limit`.
    fn wait_until(&mut self, what: &str, limit: Duration, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the build ended ({st}) before {what}");
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("no {what} within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the end (at most `limit`, a safety net, then SIGKILL and panic).
    fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait for imgbuild") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("imgbuild did not end within {limit:?} after the signal");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.stderr.join().unwrap_or_default())
    }
}

/// The hook of the hang tests: it says it is running, then waits for ever, with a second
/// process in the background, so the whole tree has to die.
const HANGING_HOOK: &str =
    "#!/bin/sh\nsleep infinity &\necho running > /image/hook-running\nsleep infinity\n";

/// The marker the hanging hook writes, once it runs, inside the build's temporary root.
fn hook_running(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".imgbuild-root-")
                && e.path().join("root/image/hook-running").exists()
        })
    })
}

/// A build whose `config.sh` hangs gets `sig` once the hook runs: it exits with 128 + the
/// signal, and leaves no temporary root, process or mount.
fn hanging_hook_stops_on(test: &str, sig: nix::sys::signal::Signal) {
    if !can_build(test) {
        return;
    }
    let _h = heavy();
    let t = scratch(test);
    let desc = description_with(t.path(), Some(HANGING_HOOK));
    let target = t.path().join("out");
    let mut run = Running::spawn(&mut build_cmd(t.path(), &desc, &target, &[]));
    run.wait_until("config.sh running", Duration::from_mins(15), || {
        hook_running(t.path())
    });
    run.signal(sig);
    let (status, stderr) = run.finish(Duration::from_mins(2));
    assert_eq!(status.code(), Some(128 + sig as i32), "{status}\n{stderr}");
    assert!(
        stderr.contains(&format!("interrupted by {}", sig.as_str())),
        "{stderr}"
    );
    assert!(!target.exists(), "no result written");
    // The interrupted build itself removed everything: no waiting for a later build.
    assert_nothing_left(t.path(), test);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn hanging_hook_stops_on_sigterm() {
    hanging_hook_stops_on("hanging_hook_stops_on_sigterm", nix::sys::signal::SIGTERM);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn hanging_hook_stops_on_sigint() {
    hanging_hook_stops_on("hanging_hook_stops_on_sigint", nix::sys::signal::SIGINT);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn hook_timeout_ends_hung_hook() {
    let test = "hook_timeout_ends_hung_hook";
    if !can_build(test) {
        return;
    }
    let _h = heavy();
    let t = scratch(test);
    let desc = description_with(t.path(), Some(HANGING_HOOK));
    let target = t.path().join("out");
    let run = Running::spawn(&mut build_cmd(
        t.path(),
        &desc,
        &target,
        &["--hook-timeout", "3"],
    ));
    let (status, stderr) = run.finish(Duration::from_mins(15));
    assert_eq!(status.code(), Some(1), "{status}\n{stderr}");
    assert!(
        stderr.contains("config.sh in ")
            && stderr.contains("did not finish within 3 s")
            && stderr.contains("--hook-timeout"),
        "the error names the hook and the timeout:\n{stderr}"
    );
    assert!(!target.exists(), "no result written");
    assert_nothing_left(t.path(), test);
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn target_dir_with_user_files_is_refused() {
    let test = "target_dir_with_user_files_is_refused";
    let t = scratch(test);
    let desc = description("debian-minimal");
    // A cache directory that must not even be created: the refusal comes before any work.
    let cache = t.path().join("untouched-cache");
    let user_dir = t.path().join("mine");
    fs::create_dir(&user_dir).unwrap();
    fs::write(user_dir.join("thesis.tex"), "years of work").unwrap();
    let refused = |target: &Path, extra: &[&str]| -> Output {
        let out = imgbuild(t.path())
            .arg("build")
            .arg(&desc)
            .arg("--target-dir")
            .arg(target)
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{target:?} was not refused");
        assert!(!cache.exists(), "the cache was touched before the refusal");
        out
    };
    let out = refused(&user_dir, &[]);
    let err = text(&out.stderr);
    assert!(
        err.contains(&user_dir.display().to_string()) && err.contains("thesis.tex"),
        "the message names the directory and the file: {err}"
    );
    assert!(err.contains("--replace-target-dir"), "{err}");
    assert_eq!(
        fs::read_to_string(user_dir.join("thesis.tex")).unwrap(),
        "years of work"
    );
    // `--force` keeps its meaning (do not reuse) and does not override the refusal.
    refused(&user_dir, &["--force"]);
    assert!(user_dir.join("thesis.tex").exists());
    // A regular file as the target is refused too, and stays.
    let file = t.path().join("a-file");
    fs::write(&file, "data").unwrap();
    let err = text(&refused(&file, &[]).stderr);
    assert!(err.contains("not a directory"), "{err}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "data");

    if !can_build(test) {
        return;
    }
    let _h = heavy();
    let desc = description_with(t.path(), None);
    // imgbuild's own result is rebuilt as before.
    let own = t.path().join("own");
    ok(&mut build_cmd(t.path(), &desc, &own, &[]));
    let first = result_json(&own)["manifest_digest"].clone();
    let again = ok(&mut build_cmd(t.path(), &desc, &own, &["--force"]));
    assert!(text(&again.stderr).contains("pack ..."), "rebuilt");
    assert_eq!(result_json(&own)["manifest_digest"], first);
    // `create` refuses the user's directory as well.
    let root = t.path().join("root");
    ok(&mut build_cmd(
        t.path(),
        &desc,
        &t.path().join("kept"),
        &["--root", root.to_str().unwrap()],
    ));
    let out = imgbuild(t.path())
        .arg("create")
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(&user_dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "create replaced the user's directory"
    );
    assert!(text(&out.stderr).contains("thesis.tex"));
    assert!(user_dir.join("thesis.tex").exists());
    // With the opt-in the directory is replaced by the result.
    ok(&mut build_cmd(
        t.path(),
        &desc,
        &user_dir,
        &["--replace-target-dir"],
    ));
    assert!(!user_dir.join("thesis.tex").exists());
    assert_eq!(result_json(&user_dir)["manifest_digest"], first);
    assert_nothing_left(t.path(), test);
}

#[test]
fn stale_temporary_roots_are_removed() {
    use std::os::unix::fs::PermissionsExt;
    let test = "stale_temporary_roots_are_removed";
    let t = scratch(test);
    let dir = t.path();
    // A build killed with kill -9: its work dir with a lock file nobody holds, a read-only
    // directory in its root and a symlink out of it.
    let dead = dir.join(".imgbuild-root-killed");
    fs::create_dir_all(dead.join("root/usr/share/ro")).unwrap();
    fs::write(dead.join("root/usr/share/ro/file"), "x").unwrap();
    fs::set_permissions(
        dead.join("root/usr/share/ro"),
        fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    let outside = dir.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), "keep").unwrap();
    std::os::unix::fs::symlink(&outside, dead.join("root/escape")).unwrap();
    fs::write(dead.join("owner.lock"), "").unwrap();
    let dead_result = dir.join(".imgbuild-result-killed");
    fs::create_dir_all(dead_result.join("out")).unwrap();
    fs::write(dead_result.join("owner.lock"), "").unwrap();
    // A build still running: its lock is held (here, by this test).
    let live = dir.join(".imgbuild-root-running");
    fs::create_dir_all(live.join("root")).unwrap();
    let held = fs::File::create(live.join("owner.lock")).unwrap();
    fs4::FileExt::try_lock(&held).unwrap();
    // An older imgbuild's directory (no lock file) an hour old, and a fresh one.
    let old = dir.join(".imgbuild-root-oldversion");
    fs::create_dir(&old).unwrap();
    fs::File::open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_hours(1))
        .unwrap();
    let fresh = dir.join(".imgbuild-root-starting");
    fs::create_dir(&fresh).unwrap();

    // Any build with a target in this directory sweeps it first; this one then fails at once
    // (offline, with an empty cache and no lock file), which is all it needs to do here.
    let out = imgbuild(dir)
        .arg("build")
        .arg(description("debian-minimal"))
        .arg("--target-dir")
        .arg(dir.join("out"))
        .arg("--cache-dir")
        .arg(dir.join("empty-cache"))
        .arg("--offline")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    for gone in [&dead, &dead_result, &old] {
        assert!(!gone.exists(), "{} left:\n{err}", gone.display());
        let name = gone.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with("imgbuild: removed") && l.contains(&name))
                .count(),
            1,
            "one log line for {name}:\n{err}"
        );
    }
    assert!(
        live.join("root").is_dir(),
        "a running build's root was removed"
    );
    assert!(fresh.is_dir(), "a directory just created was removed");
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "keep"
    );
    assert!(!err.contains(".imgbuild-root-running"), "{err}");
    drop(held);
}

/// The seed of the random points: `IMGBUILD_TEST_SEED` to replay a run, else from the clock.
fn seed() -> u64 {
    std::env::var("IMGBUILD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn kill9_and_sigint_at_random_points_leave_nothing() {
    use nix::sys::signal::Signal;
    use rand::{Rng, SeedableRng};
    let test = "kill9_and_sigint_at_random_points_leave_nothing";
    if !can_build(test) {
        return;
    }
    let _h = heavy();
    let seed = seed();
    eprintln!("{test}: seed {seed} (IMGBUILD_TEST_SEED={seed} replays these points)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let t = scratch(test);
    let dir = t.path();
    let desc = description_with(dir, None);
    let target = dir.join("out");
    let mut pids = Vec::new();
    let manifest = |target: &Path| result_json(target)["manifest_digest"].clone();

    // The undisturbed build: its image, and how long a build takes.
    let start = Instant::now();
    let reference = Running::spawn(&mut build_cmd(dir, &desc, &target, &["--force"]));
    pids.push(reference.pid());
    let (status, stderr) = reference.finish(Duration::from_mins(15));
    assert!(status.success(), "{stderr}");
    let took = start.elapsed();
    let digest = manifest(&target);
    assert!(digest.is_string(), "{digest}");

    for point in 0..10 {
        let sig = if point % 2 == 0 {
            Signal::SIGKILL
        } else {
            Signal::SIGINT
        };
        let delay = took.mul_f64(rng.r#gen::<f64>());
        eprintln!("{test}: point {point}: {} after {delay:?}", sig.as_str());
        let run = Running::spawn(&mut build_cmd(dir, &desc, &target, &["--force"]));
        pids.push(run.pid());
        std::thread::sleep(delay);
        run.signal(sig);
        let (status, stderr) = run.finish(Duration::from_mins(5));
        let what = format!("point {point} ({} after {delay:?}, {status})", sig.as_str());
        if sig == Signal::SIGINT {
            // Stopped (130), done before the signal came (0), or killed by it before the
            // handlers were installed (the first milliseconds after exec, before anything is
            // written): the check below holds in every case.
            let before_handlers = status.signal() == Some(Signal::SIGINT as i32);
            assert!(
                matches!(status.code(), Some(130 | 0)) || before_handlers,
                "{what}:\n{stderr}"
            );
            // A stopped build cleans up itself.
            assert_nothing_left(dir, &what);
        } else {
            let procs = wait_no_processes(dir, Duration::from_secs(30));
            assert!(procs.is_empty(), "{what}: processes left: {procs:?}");
        }
        // The target is whole at every point: the old result or the new one, the same image.
        assert_eq!(manifest(&target), digest, "{what}");

        // The next build succeeds, with the same image, and removes what kill -9 left.
        let next = Running::spawn(&mut build_cmd(dir, &desc, &target, &["--force"]));
        pids.push(next.pid());
        let (status, stderr) = next.finish(Duration::from_mins(15));
        assert!(status.success(), "the build after {what}:\n{stderr}");
        assert_eq!(manifest(&target), digest, "the build after {what}");
        assert_nothing_left(dir, &format!("after the build after {what}:\n{stderr}"));
    }
    let cgroups = cgroups_of(&pids);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}
