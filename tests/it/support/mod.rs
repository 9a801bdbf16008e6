//! Helpers shared by the integration tests: how a test that cannot run says so, running
//! commands, scratch space, and the locks that keep the tests of this one process from
//! disturbing each other.
//!
//! Every test of the binary runs in this process, on the harness's threads. Nothing here (or in
//! a test) changes process-wide state: no environment variables, working directory, umask or
//! signal dispositions; child processes get what they need through their `Command`.

pub mod apt_fixture;
pub mod binfmt;
pub mod build;
pub mod busybox;
pub mod dockerd;
pub mod image;
pub mod loop_device;
pub mod proxy;
pub mod registry;
pub mod rpm_repo;
pub mod runtime;
pub mod storage;
pub mod token_server;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

/// A test that cannot run here prints `SKIP: <why>` and returns; with `CI` set, where every
/// test must run, it fails instead.
pub fn skip(why: std::fmt::Arguments) {
    eprintln!("SKIP: {why}");
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set, so this test may not skip: {why}"
    );
}

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when running as root; otherwise skips `test` (see [`skip`]).
pub fn root_or_skip(test: &str) -> bool {
    let root = is_root();
    if !root {
        skip(format_args!("{test} needs root"));
    }
    root
}

/// True when `tool` is on the `PATH`.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd`: its output when it succeeds, else a message with its status and output.
pub fn try_ok(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(out);
    }
    Err(format!(
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 60)
    ))
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns the whole output.
pub fn ok(cmd: &mut Command) -> Output {
    try_ok(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cmd` like [`ok`]; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&ok(cmd).stdout).into_owned()
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The repository's checkout.
pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A shipped description directory.
pub fn description(name: &str) -> PathBuf {
    repo_dir().join("descriptions").join(name)
}

/// The `imgbuild` binary under test.
pub fn imgbuild_bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgbuild")
}

/// The tests' directory in the target dir (created on demand): caches kept between runs and
/// scratch directories live here, never in the checkout.
pub fn target_tmp() -> PathBuf {
    let t = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&t).unwrap_or_else(|e| panic!("{}: {e}", t.display()));
    t
}

/// A fresh directory `<name>-*` in [`target_tmp`], removed on drop.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(target_tmp())
        .unwrap_or_else(|e| panic!("scratch dir {name}: {e}"))
}

/// A directory `name` in [`target_tmp`] that a fixture fills once per run: emptied on the first
/// call of the run (so no run sees the last run's leftovers), then kept (also after the run,
/// for a look at what a failed test saw).
pub fn fixture_dir(name: &str) -> PathBuf {
    let dir = target_tmp().join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Mount points at or below `dir` (from `/proc/self/mountinfo`), innermost last.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .collect()
}

/// The shared host-quirks script (fixes the cgroup set-up for crun on our build machines) run
/// once; returns the `podman run` flags it prints (none where the script is absent).
pub fn host_quirks() -> &'static [String] {
    static FLAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    FLAGS.get_or_init(|| {
        let script = [
            "../shared/scripts/host-quirks.sh",
            "../../shared/scripts/host-quirks.sh",
        ]
        .iter()
        .map(|rel| repo_dir().join(rel))
        .find(|p| p.exists());
        match script {
            Some(s) => run(&mut Command::new(s))
                .split_whitespace()
                .map(String::from)
                .collect(),
            None => Vec::new(),
        }
    })
}

/// The thread holding the heavy-work lock, and how often it took it.
struct Owner {
    thread: Option<ThreadId>,
    depth: usize,
}

static HEAVY: Mutex<Owner> = Mutex::new(Owner {
    thread: None,
    depth: 0,
});
static HEAVY_FREED: Condvar = Condvar::new();

/// Held while a test does heavy work: a whole Debian build or prepare, mmdebstrap or
/// debootstrap. One at a time keeps two cores from thrashing (and the tests that time signals
/// against build stages meaningful) while light tests run beside it. Reentrant, so a test
/// holding it can call a fixture that takes it too.
pub struct Heavy(PhantomData<*const ()>);

/// Takes the heavy-work lock (see [`Heavy`]).
pub fn heavy() -> Heavy {
    let me = std::thread::current().id();
    let mut owner = HEAVY.lock().unwrap_or_else(PoisonError::into_inner);
    while owner.thread.is_some_and(|t| t != me) {
        owner = HEAVY_FREED
            .wait(owner)
            .unwrap_or_else(PoisonError::into_inner);
    }
    owner.thread = Some(me);
    owner.depth += 1;
    Heavy(PhantomData)
}

impl Drop for Heavy {
    fn drop(&mut self) {
        let mut owner = HEAVY.lock().unwrap_or_else(PoisonError::into_inner);
        owner.depth -= 1;
        if owner.depth == 0 {
            owner.thread = None;
            HEAVY_FREED.notify_one();
        }
    }
}

/// Held by tests that run the sandbox inside this process: their leak checks look for cgroups
/// named after this process's id, which every in-process sandbox shares.
pub fn in_process_sandbox() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `imgbuild ARGS` run in the checkout (so descriptions are found by relative path), to the
/// end.
pub fn imgbuild_in_checkout(args: &[&str]) -> Output {
    Command::new(imgbuild_bin())
        .args(args)
        .current_dir(repo_dir())
        .output()
        .expect("run imgbuild")
}

/// Cgroup directories the sandboxes of the processes `pids` made and left behind (they are
/// named `imgbuild-sandbox-<pid>-…`).
pub fn cgroups_of(pids: &[u32]) -> Vec<PathBuf> {
    let prefixes: Vec<String> = pids
        .iter()
        .map(|p| format!("imgbuild-sandbox-{p}-"))
        .collect();
    walkdir::WalkDir::new("/sys/fs/cgroup")
        .max_depth(6)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            e.file_type().is_dir() && prefixes.iter().any(|p| n.starts_with(p.as_str()))
        })
        .map(walkdir::DirEntry::into_path)
        .collect()
}
