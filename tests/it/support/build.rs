//! Shared helpers for the end-to-end `imgbuild build` tests: the binary, the shared package
//! cache, the root/mirror gate and result files.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The repository's checkout (descriptions live under it).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A shipped description directory.
pub fn description(name: &str) -> PathBuf {
    repo_dir().join("descriptions").join(name)
}

/// The package cache the build tests share (kept between runs, under the target dir).
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("build-test-cache")
}

/// Scratch directories for these tests live under the target dir, never in /tmp of the repo.
pub fn scratch(name: &str) -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).unwrap();
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(base)
        .unwrap()
}

/// True when the test can run: root, and the Debian archive the host's apt sources name for trixie
/// answers. Prints a SKIP line naming the reason otherwise.
pub fn can_build(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: {test} needs root");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set, so this test may not skip (see the SKIP line)"
        );
        return false;
    }
    let uri = match imgbuild::apt::hostsources::resolve_from_host(
        "/",
        "trixie",
        Path::new(imgbuild::apt::hostsources::DEFAULT_APT_DIR),
    ) {
        Ok(r) => r.uri,
        Err(e) => {
            eprintln!("SKIP: {test} needs the Debian mirror of the host's apt sources ({e})");
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set, so this test may not skip (see the SKIP line)"
            );
            return false;
        }
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into();
    let url = format!("{uri}/dists/trixie/InRelease");
    if let Err(e) = agent.get(&url).call() {
        eprintln!("SKIP: {test} needs the Debian mirror ({url}: {e})");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set, so this test may not skip (see the SKIP line)"
        );
        return false;
    }
    true
}

/// `imgbuild` (the binary under test) with a private image store under `scratch`.
pub fn imgbuild(scratch: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgbuild"));
    c.env("IMGBUILD_STORAGE_ROOT", scratch.join("store"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("IMGBUILD_CACHE_DIR");
    c
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns the whole output.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `imgbuild build DESC --target-dir TARGET --cache-dir CACHE EXTRA…`, run in `cwd`.
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
