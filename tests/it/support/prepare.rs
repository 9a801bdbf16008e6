//! Shared helpers of the `prepare` integration tests: the binary, a download cache kept in the
//! test target dir (so reruns are warm), the root / mirror preconditions, and what the host sees
//! of a root tree (installed packages, mounts, processes inside it).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The `imgbuild` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgbuild")
}

/// `descriptions/debian-minimal` of this checkout.
pub fn minimal_description() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptions/debian-minimal")
}

/// The test target dir (created on demand).
pub fn target_tmp() -> PathBuf {
    let t = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&t).expect("create CARGO_TARGET_TMPDIR");
    t
}

/// The download cache shared by every prepare test run (kept, so reruns are warm).
pub fn shared_cache() -> PathBuf {
    target_tmp().join("prepare-cache")
}

/// A fresh temporary directory in the test target dir, removed on drop.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(target_tmp())
        .expect("create temp dir")
}

/// The archive `apt-host:/` means for `suite`, read from the host's apt sources at run time.
pub fn host_mirror(suite: &str) -> Result<String, String> {
    imgbuild::apt::hostsources::resolve_from_host(
        "/",
        suite,
        Path::new(imgbuild::apt::hostsources::DEFAULT_APT_DIR),
    )
    .map(|r| r.uri)
    .map_err(|e| e.to_string())
}

/// Root and a reachable mirror for `suite`, or print `SKIP: …` and return `None`.
pub fn preconditions(test: &str, suite: &str) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: {test} needs root");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set, so this test may not skip (see the SKIP line)"
        );
        return None;
    }
    let mirror = match host_mirror(suite) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIP: {test} needs the Debian mirror of the host's apt sources: {e}");
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set, so this test may not skip (see the SKIP line)"
            );
            return None;
        }
    };
    let url = format!("{}/dists/{suite}/InRelease", mirror.trim_end_matches('/'));
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    match agent.head(&url).call() {
        Ok(_) => Some(mirror),
        Err(e) => {
            eprintln!("SKIP: {test} needs the mirror ({url} unreachable: {e})");
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set, so this test may not skip (see the SKIP line)"
            );
            None
        }
    }
}

/// `imgbuild prepare` of debian-minimal (`profile` selects bookworm; `None` is the default,
/// trixie) into `root` with `cache`; `extra` arguments are appended. Resolves afresh unless
/// `extra` names a lock file.
pub fn prepare_cmd(root: &Path, profile: Option<&str>, cache: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("prepare")
        .arg(minimal_description())
        .arg("--root")
        .arg(root)
        .arg("--cache-dir")
        .arg(cache);
    if let Some(p) = profile {
        c.args(["--profile", p]);
    }
    if !extra.contains(&"--lock") {
        c.arg("--no-lock");
    }
    c.args(extra)
        .env_remove("IMGBUILD_CACHE_DIR")
        .stdin(Stdio::null());
    c
}

/// Run `cmd`, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 60)
    );
    out
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `name version` of every installed package in `root`, read by the host's dpkg-query from the
/// root's dpkg database.
pub fn installed_packages(root: &Path) -> BTreeSet<String> {
    let out = run_ok(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${Package} ${Version}\\n"]),
        "dpkg-query -W",
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Run `args` inside `root` through `imgbuild sandbox-run`.
pub fn in_root(root: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("sandbox-run")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("start imgbuild sandbox-run")
}

/// Lines of `/proc/self/mountinfo` whose mount point lies under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mp| mp == dir || mp.starts_with(&format!("{dir}/")))
        })
        .map(str::to_string)
        .collect()
}

/// Processes (any mount namespace) whose root or working directory lies under `dir`, or whose
/// mount table mentions it: what would keep a sandbox's mounts alive after imgbuild is gone.
pub fn processes_using(dir: &Path) -> Vec<String> {
    let dir_s = dir.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let p = e.path();
        let under = |link: &str| {
            std::fs::read_link(p.join(link))
                .is_ok_and(|t| t.starts_with(dir) && !t.to_string_lossy().ends_with(" (deleted)"))
        };
        let in_mounts = std::fs::read_to_string(p.join("mountinfo"))
            .is_ok_and(|m| m.lines().any(|l| l.contains(&dir_s)));
        if under("root") || under("cwd") || in_mounts {
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            found.push(format!("{pid} {}", comm.trim()));
        }
    }
    found.sort();
    found
}

/// Wait until `processes_using(dir)` is empty (children of a killed build may take a moment to
/// be reaped), at most `limit`; returns what is left.
pub fn wait_no_processes(dir: &Path, limit: Duration) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let left = processes_using(dir);
        if left.is_empty() || start.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Check a download cache: every file under `blobs/` must be named by its sha256 and hash to
/// it. Returns (blobs checked, blobs whose content does not match their name, partial files:
/// `.tmp-*` anywhere outside `locks/`, or any other file under `blobs/`).
pub fn check_cache(cache: &Path) -> (usize, Vec<String>, Vec<String>) {
    use sha2::{Digest, Sha256};
    let mut checked = 0;
    let mut bad = Vec::new();
    let mut partial = Vec::new();
    for e in walkdir::WalkDir::new(cache).sort_by_file_name() {
        let e = e.expect("walk cache");
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(cache).unwrap_or(e.path());
        let name = e.file_name().to_string_lossy().into_owned();
        let in_blobs = rel.starts_with("blobs");
        let is_digest = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if in_blobs && is_digest {
            let data = std::fs::read(e.path()).expect("read cache blob");
            checked += 1;
            if hex::encode(Sha256::digest(&data)) != name.to_ascii_lowercase() {
                bad.push(rel.display().to_string());
            }
        } else if in_blobs || (name.starts_with(".tmp-") && !rel.starts_with("locks")) {
            partial.push(rel.display().to_string());
        }
    }
    (checked, bad, partial)
}
