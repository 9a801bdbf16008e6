//! The download cache: corruption detected and repaired, concurrent builds (threads and processes)
//! sharing one cache, leftovers of killed builds removed. Network-free (loopback server).

use crate::support::apt_fixture;

use apt_fixture::{FakeRepo, RepoOptions, Server};
use imgbuild::apt::cache::{Cache, CacheError, CacheMode, Expected};
use imgbuild::apt::fetch::{Download, FetchError, FetchOptions, Fetcher, Progress};
use std::path::Path;
use std::time::Duration;

fn fetcher() -> Fetcher {
    Fetcher::new(FetchOptions {
        retries: 2,
        backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(10),
        concurrency: 8,
        progress: Progress::Quiet,
        ..FetchOptions::default()
    })
}

fn downloads(repo: &FakeRepo, base: &str) -> Vec<Download> {
    repo.debs
        .iter()
        .map(|d| Download {
            url: format!("{base}/{}", d.filename),
            expected: Expected {
                sha256: d.sha256(),
                size: Some(d.data.len() as u64),
            },
            credentials: None,
        })
        .collect()
}

fn check_cache(dir: &Path, repo: &FakeRepo) {
    let cache = Cache::open(dir, CacheMode::Offline).unwrap();
    for d in &repo.debs {
        let p = cache
            .get(&Expected {
                sha256: d.sha256(),
                size: Some(d.data.len() as u64),
            })
            .unwrap()
            .unwrap_or_else(|| panic!("{} missing from the cache", d.name));
        assert_eq!(std::fs::read(p).unwrap(), d.data);
    }
    let names: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    assert_eq!(names.len(), repo.debs.len(), "{names:?}");
}

#[test]
fn corrupt_cache_file_is_detected_and_refetched() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let dl = &downloads(&repo, &server.base)[1];
    let path = f
        .fetch_to_cache(&cache, &dl.url, None, &dl.expected)
        .unwrap();
    assert_eq!(server.count(&repo.debs[1].filename), 1);

    // Reuse does not download again.
    f.fetch_to_cache(&cache, &dl.url, None, &dl.expected)
        .unwrap();
    assert_eq!(server.count(&repo.debs[1].filename), 1);

    // A flipped byte (same size) is noticed on reuse and repaired.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let again = f
        .fetch_to_cache(&cache, &dl.url, None, &dl.expected)
        .unwrap();
    assert_eq!(again, path);
    assert_eq!(std::fs::read(&path).unwrap(), repo.debs[1].data);
    assert_eq!(server.count(&repo.debs[1].filename), 2);

    // So is a truncated file.
    std::fs::write(&path, &repo.debs[1].data[..100]).unwrap();
    f.fetch_to_cache(&cache, &dl.url, None, &dl.expected)
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), repo.debs[1].data);
    assert_eq!(server.count(&repo.debs[1].filename), 3);

    // Offline, a corrupt file is removed and reported missing by name.
    drop(cache);
    std::fs::write(&path, b"garbage").unwrap();
    let off = Cache::open(cdir.path(), CacheMode::Offline).unwrap();
    let err = f
        .fetch_to_cache(&off, &dl.url, None, &dl.expected)
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Cache(CacheError::Missing { .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&repo.debs[1].filename), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(!path.exists());
    assert_eq!(server.count(&repo.debs[1].filename), 3);
}

#[test]
fn two_threads_share_one_cache() {
    let repo = FakeRepo::build(RepoOptions {
        debs: 12,
        ..RepoOptions::default()
    });
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let dls = downloads(&repo, &server.base);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    // Each "build" opens the cache on its own, as separate processes would.
                    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
                    fetcher().fetch_many(&cache, &dls).unwrap()
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results[0], results[1]);
    });
    check_cache(cdir.path(), &repo);
    // The per-file lock makes the second build wait for, then reuse, the first one's download.
    for d in &repo.debs {
        assert_eq!(server.count(&d.filename), 1, "{}", d.filename);
    }
}

const CHILD_ENV: &str = "IMGBUILD_TEST_CACHE_CHILD";

/// `dls` into the cache at `cache_dir`, as a [`CHILD_ENV`] value.
fn child_spec(cache_dir: &Path, dls: &[Download]) -> String {
    let mut spec = cache_dir.display().to_string();
    for d in dls {
        spec.push_str(&format!(
            "\n{} {} {}",
            d.url,
            d.expected.sha256.to_hex(),
            d.expected.size.unwrap()
        ));
    }
    spec
}

/// Fill the cache a [`child_spec`] names with its downloads.
fn populate(spec: &str) {
    let mut parts = spec.split('\n');
    let cache_dir = parts.next().unwrap();
    let dls: Vec<Download> = parts
        .map(|line| {
            let mut w = line.split(' ');
            let url = w.next().unwrap().to_string();
            let sha = w.next().unwrap().parse().unwrap();
            let size = w.next().unwrap().parse().unwrap();
            Download {
                url,
                expected: Expected {
                    sha256: sha,
                    size: Some(size),
                },
                credentials: None,
            }
        })
        .collect();
    let cache = Cache::open(cache_dir, CacheMode::Online).unwrap();
    fetcher().fetch_many(&cache, &dls).unwrap();
}

/// The child process of the two tests below (this binary, run with this test's name and
/// [`CHILD_ENV`] set): fills the cache named there. Run as a test of its own, it checks the
/// same on a repository of its own: the cache it fills holds every package whole.
#[test]
fn child_populates_cache() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        populate(&spec);
        return;
    }
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    populate(&child_spec(cdir.path(), &downloads(&repo, &server.base)));
    check_cache(cdir.path(), &repo);
}

/// This binary running only [`child_populates_cache`], as a child process filling the cache
/// `spec` names.
fn cache_child(spec: &str) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "apt_cache::child_populates_cache", "--quiet"])
        .env(CHILD_ENV, spec);
    c
}

#[test]
fn two_processes_share_one_cache() {
    let repo = FakeRepo::build(RepoOptions {
        debs: 10,
        ..RepoOptions::default()
    });
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let spec = child_spec(cdir.path(), &downloads(&repo, &server.base));
    let children: Vec<_> = (0..2)
        .map(|_| {
            cache_child(&spec)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The child really ran the helper (not zero tests).
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    check_cache(cdir.path(), &repo);
    for d in &repo.debs {
        assert_eq!(server.count(&d.filename), 1, "{}", d.filename);
    }
}

#[test]
fn leftovers_of_a_killed_build_are_removed() {
    let cdir = tempfile::tempdir().unwrap();
    let first = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let stale = cdir.path().join("blobs/sha256/.tmp-killed");
    std::fs::write(&stale, b"partial").unwrap();
    // While another build has the cache open, its temporary files are left alone.
    let second = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    assert!(stale.exists());
    drop(first);
    drop(second);
    // The next build that has the cache to itself removes them.
    let _third = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    assert!(!stale.exists());
}

#[test]
fn clear_empties_the_cache() {
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let (d, p) = cache.insert_bytes("x", b"some content").unwrap();
    assert!(p.exists());
    cache.clear().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    assert!(
        cache
            .get(&Expected {
                sha256: d,
                size: None
            })
            .unwrap()
            .is_none()
    );
}

#[test]
fn killed_download_leaves_no_partial_file() {
    let repo = FakeRepo::build(RepoOptions {
        debs: 12,
        ..RepoOptions::default()
    });
    let server = Server::start(repo.root());
    // About 50 chunks of 16 KiB, 20 ms apart: the child is caught mid-download.
    server.throttle(Duration::from_millis(20));
    let big = &repo.debs[11];
    let dl = &downloads(&repo, &server.base)[11];
    let cdir = tempfile::tempdir().unwrap();
    let spec = child_spec(cdir.path(), std::slice::from_ref(dl));
    let mut child = cache_child(&spec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let blob_dir = cdir.path().join("blobs/sha256");
    let temp_files = || -> Vec<String> {
        std::fs::read_dir(&blob_dir)
            .map(|rd| {
                rd.filter_map(std::result::Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while temp_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never started writing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().cast_signed()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let expected = Expected {
        sha256: big.sha256(),
        size: Some(big.data.len() as u64),
    };
    // Nothing under the real name; the partial write is only a temporary file.
    let final_path = blob_dir.join(big.sha256().to_hex());
    assert!(!final_path.exists());
    assert_eq!(temp_files().len(), 1);
    // The next build cleans up and downloads the file whole.
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    assert!(temp_files().is_empty());
    let p = fetcher()
        .fetch_to_cache(&cache, &dl.url, None, &expected)
        .unwrap();
    assert_eq!(std::fs::read(p).unwrap(), big.data);
}
