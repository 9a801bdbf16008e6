//! `imgbuild build` and `prepare` end to end: the binary with a private store, the one package
//! cache every build and prepare of a run shares, the root / mirror gate, what the host sees of
//! a root tree, and the Debian builds made once per run and shared by the tests that need them.

use super::{heavy, is_root, ok, skip, target_tmp, try_ok};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The package cache every build and prepare of the tests shares (kept between runs, so reruns
/// are warm; imgbuild's cache is safe for concurrent builds).
pub fn package_cache() -> PathBuf {
    target_tmp().join("package-cache")
}

/// The archive `apt-host:/` means for `suite`, read from the host's apt sources.
pub fn host_mirror(suite: &str) -> Result<String, String> {
    imgbuild::apt::hostsources::resolve_from_host(
        "/",
        suite,
        Path::new(imgbuild::apt::hostsources::DEFAULT_APT_DIR),
    )
    .map(|r| r.uri)
    .map_err(|e| e.to_string())
}

/// Root and a reachable mirror of the host's apt sources for `suite` (returned), or `None`
/// after [`skip`]ping `test`.
pub fn preconditions(test: &str, suite: &str) -> Option<String> {
    if !is_root() {
        skip(format_args!("{test} needs root"));
        return None;
    }
    let mirror = match host_mirror(suite) {
        Ok(m) => m,
        Err(e) => {
            skip(format_args!(
                "{test} needs the Debian mirror of the host's apt sources: {e}"
            ));
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
            skip(format_args!(
                "{test} needs the mirror ({url} unreachable: {e})"
            ));
            None
        }
    }
}

/// Root and the trixie mirror ([`preconditions`]).
pub fn can_build(test: &str) -> bool {
    preconditions(test, "trixie").is_some()
}

/// `imgbuild` with a private image store under `scratch`, no inherited build settings.
pub fn imgbuild(scratch: &Path) -> Command {
    let mut c = Command::new(super::imgbuild_bin());
    c.env("IMGBUILD_STORAGE_ROOT", scratch.join("store"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("IMGBUILD_CACHE_DIR")
        .stdin(Stdio::null());
    c
}

/// `imgbuild build DESC --target-dir TARGET --cache-dir CACHE EXTRA…`, run in `cwd`; panics
/// unless it succeeds.
pub fn build(
    scratch: &Path,
    desc: &Path,
    target: &Path,
    cache: &Path,
    cwd: &Path,
    extra: &[&str],
) -> Output {
    ok(imgbuild(scratch)
        .current_dir(cwd)
        .arg("build")
        .arg(desc)
        .arg("--target-dir")
        .arg(target)
        .arg("--cache-dir")
        .arg(cache)
        .args(extra))
}

/// `imgbuild prepare` of debian-minimal (`profile` selects bookworm; `None` is the default,
/// trixie) into `root` with `cache`; `extra` arguments are appended. Resolves afresh unless
/// `extra` names a lock file.
pub fn prepare_cmd(root: &Path, profile: Option<&str>, cache: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(super::imgbuild_bin());
    c.arg("prepare")
        .arg(super::description("debian-minimal"))
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

/// `result.json` of a target dir.
pub fn result_json(target: &Path) -> serde_json::Value {
    let p = target.join("result.json");
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every file under `dir` (relative path → bytes, symlinks as their target), sorted.
pub fn tree_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
        let ft = e.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(e.path()).unwrap();
            v.push((rel, t.as_os_str().as_encoded_bytes().to_vec()));
        } else if ft.is_file() {
            v.push((rel, fs::read(e.path()).unwrap()));
        } else {
            v.push((rel, Vec::new()));
        }
    }
    v
}

/// `name version` of every installed package in `root`, read by the host's dpkg-query from the
/// root's dpkg database.
pub fn installed_packages(root: &Path) -> BTreeSet<String> {
    let out = ok(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package} ${Version}\\n"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Run `args` inside `root` through `imgbuild sandbox-run`.
pub fn in_root(root: &Path, args: &[&str]) -> Output {
    Command::new(super::imgbuild_bin())
        .arg("sandbox-run")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("start imgbuild sandbox-run")
}

/// Processes (any mount namespace) whose root or working directory lies under `dir`, or whose
/// mount table mentions it: what would keep a sandbox's mounts alive after imgbuild is gone.
pub fn processes_using(dir: &Path) -> Vec<String> {
    let dir_s = dir.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let p = e.path();
        let under = |link: &str| {
            fs::read_link(p.join(link))
                .is_ok_and(|t| t.starts_with(dir) && !t.to_string_lossy().ends_with(" (deleted)"))
        };
        let in_mounts = fs::read_to_string(p.join("mountinfo"))
            .is_ok_and(|m| m.lines().any(|l| l.contains(&dir_s)));
        if under("root") || under("cwd") || in_mounts {
            let comm = fs::read_to_string(p.join("comm")).unwrap_or_default();
            found.push(format!("{pid} {}", comm.trim()));
        }
    }
    found.sort();
    found
}

/// Wait until `processes_using(dir)` is empty (children of a killed build are reaped a little
/// later, and a sandbox another test starts holds a copy of the host's mounts until it has
/// pivoted), at most `limit`; returns what is left.
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
            let data = fs::read(e.path()).expect("read cache blob");
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

/// A build of a shipped description made once per run and shared by the tests that need one.
pub struct SharedBuild {
    /// The directory the build ran in (its store, working directory and target live here).
    pub dir: PathBuf,
    /// The target dir.
    pub target: PathBuf,
    /// The package cache it used.
    pub cache: PathBuf,
}

/// `imgbuild build debian-minimal` as `b` says, with `extra` options.
fn shared_build(b: &SharedBuild, extra: &[&str]) -> Result<Output, String> {
    try_ok(
        imgbuild(&b.dir)
            .current_dir(&b.dir)
            .arg("build")
            .arg(super::description("debian-minimal"))
            .arg("--target-dir")
            .arg(&b.target)
            .arg("--cache-dir")
            .arg(&b.cache)
            .args(extra),
    )
}

/// debian-minimal, the default profile (trixie), built with a package cache of its own that
/// was empty before (so the build started cold) and no other option: the result the
/// reproducibility test rebuilds and the podman test runs. `None` after [`skip`]ping `test`
/// when root or the mirror is missing.
pub fn minimal_build(test: &str) -> Option<&'static SharedBuild> {
    if !can_build(test) {
        return None;
    }
    let _h = heavy();
    static BUILD: OnceLock<Result<SharedBuild, String>> = OnceLock::new();
    let b = BUILD.get_or_init(|| {
        let dir = super::fixture_dir("shared-minimal-build");
        let b = SharedBuild {
            target: dir.join("out"),
            cache: dir.join("cache"),
            dir,
        };
        shared_build(&b, &[])?;
        Ok(b)
    });
    Some(
        b.as_ref()
            .unwrap_or_else(|e| panic!("the shared debian-minimal build: {e}")),
    )
}

/// debian-minimal with `--profile bookworm`, built once per run with the shared
/// [`package_cache`]: the base of the derived-image test, and what the store test loads.
/// `None` after [`skip`]ping `test` when root or the mirror is missing.
pub fn bookworm_build(test: &str) -> Option<&'static SharedBuild> {
    preconditions(test, "bookworm")?;
    let _h = heavy();
    static BUILD: OnceLock<Result<SharedBuild, String>> = OnceLock::new();
    let b = BUILD.get_or_init(|| {
        let dir = super::fixture_dir("shared-bookworm-build");
        let b = SharedBuild {
            target: dir.join("out"),
            cache: package_cache(),
            dir,
        };
        shared_build(&b, &["--profile", "bookworm"])?;
        Ok(b)
    });
    Some(
        b.as_ref()
            .unwrap_or_else(|e| panic!("the shared bookworm build: {e}")),
    )
}

/// A Debian bookworm root made once per run by `mmdebstrap --variant=minbase` (with its
/// merged-usr hook) from the host's mirror: the reference of the bookworm parity test and the
/// real root the sandbox test works in (on a copy when it changes it). `None` after
/// [`skip`]ping `test` when root or the mirror is missing.
pub fn bookworm_minbase(test: &str) -> Option<&'static Path> {
    let mirror = preconditions(test, "bookworm")?;
    let _h = heavy();
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let root = super::fixture_dir("shared-bookworm-minbase").join("root");
        try_ok(
            Command::new("mmdebstrap")
                .args([
                    "--variant=minbase",
                    "--quiet",
                    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                    "bookworm",
                ])
                .arg(&root)
                .arg(&mirror)
                // mmdebstrap reads extra sources from a non-terminal stdin.
                .stdin(Stdio::null()),
        )?;
        Ok(root)
    });
    Some(
        root.as_ref()
            .unwrap_or_else(|e| panic!("the shared bookworm root: {e}")),
    )
}

/// The one file in `dir` whose name ends with `suffix` (an output of a build); panics unless
/// there is exactly one.
pub fn only_file_with_suffix(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{suffix} in {}: {found:?}", dir.display());
    found[0].clone()
}
