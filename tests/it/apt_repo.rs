//! Repository client: signature checks, Release and Packages verification, retries, flat and
//! unsigned repositories, offline mode and `apt-host:/` resolution. Network-free except
//! `real_bookworm_metadata`, which skips when the host's mirror is unreachable.

use crate::support::apt_fixture;
use crate::support::skip;

use apt_fixture::{FakeRepo, RepoOptions, Server, gen_key, write_pubkey_armored};
use imgbuild::apt::cache::{Cache, CacheError, CacheMode};
use imgbuild::apt::fetch::{FetchError, FetchOptions, Fetcher, Progress};
use imgbuild::apt::hostsources::{self, SignedBy};
use imgbuild::apt::keyring::KeyringError;
use imgbuild::apt::release::{ReleaseError, RepoContext, fetch_metadata};
use imgbuild::apt::repo::RepoSpec;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

fn fetcher() -> Fetcher {
    Fetcher::new(FetchOptions {
        retries: 3,
        backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(10),
        concurrency: 4,
        progress: Progress::Quiet,
        ..FetchOptions::default()
    })
}

fn ctx<'a>(cache: &'a Cache, fetcher: &'a Fetcher, apt_dir: &Path) -> RepoContext<'a> {
    RepoContext {
        cache,
        fetcher,
        apt_dir: apt_dir.to_path_buf(),
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_686_387_242),
        check_valid_until: None,
        check_date: None,
        allow_older_release: false,
    }
}

fn spec_for(repo: &FakeRepo, base: &str) -> RepoSpec {
    let mut s = RepoSpec::new(base);
    s.alias = Some("test".into());
    s.distribution = repo.opts.dist.clone();
    s.signing_keys = vec![format!("file:{}", repo.keyring.display())];
    s
}

fn amd64() -> Vec<String> {
    vec!["amd64".to_string()]
}

/// Files in the cache's blob directory (including leftovers of failed writes).
fn blobs(cache_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache_dir.join("blobs/sha256"))
        .map(|rd| {
            rd.filter_map(std::result::Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn signed_repository_over_http() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let md = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap();
    assert!(md.verified);
    assert_eq!(md.release.codename.as_deref(), Some("test"));
    assert_eq!(md.packages.len(), 1);
    let text = md.packages[0].read().unwrap();
    assert_eq!(text, repo.packages.as_bytes());
    assert_eq!(md.packages[0].component, "main");
    assert_eq!(md.packages[0].architecture, "amd64");
    // The .xz form was chosen and the decompressed index verified against Release.
    assert_eq!(server.count("/Packages.xz"), 1);
    assert_eq!(server.count("/Packages"), 0);

    // Packages download in parallel into the cache.
    let downloads: Vec<_> = repo
        .debs
        .iter()
        .map(|d| md.download(&d.filename, d.sha256(), d.data.len() as u64))
        .collect();
    let paths = f.fetch_many(&cache, &downloads).unwrap();
    for (p, d) in paths.iter().zip(&repo.debs) {
        assert_eq!(std::fs::read(p).unwrap(), d.data);
    }

    // Warm: only InRelease goes over the network.
    server.clear_log();
    let md2 = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap();
    f.fetch_many(&cache, &downloads).unwrap();
    assert_eq!(server.log(), vec!["/dists/test/InRelease".to_string()]);
    assert_eq!(md2.packages[0].path, md.packages[0].path);

    // Offline: nothing over the network at all.
    drop(cache);
    server.clear_log();
    let off = Cache::open(cdir.path(), CacheMode::Offline).unwrap();
    let md3 = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&off, &f, empty.path()),
    )
    .unwrap();
    assert_eq!(md3.packages[0].read().unwrap(), repo.packages.as_bytes());
    f.fetch_many(&off, &downloads).unwrap();
    assert!(server.log().is_empty(), "{:?}", server.log());
}

#[test]
fn offline_names_the_missing_file() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Offline).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let err = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap_err();
    assert!(
        matches!(err, ReleaseError::Cache(CacheError::Missing { .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("offline") && msg.contains("/dists/test/InRelease"),
        "{msg}"
    );
    assert!(server.log().is_empty());

    let d = &repo.debs[0];
    let dl = imgbuild::apt::fetch::Download {
        url: format!("{}/{}", server.base, d.filename),
        expected: imgbuild::apt::cache::Expected {
            sha256: d.sha256(),
            size: Some(d.data.len() as u64),
        },
        credentials: None,
    };
    let err = f.fetch_many(&cache, &[dl]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&d.filename) && msg.contains(&d.sha256().to_hex()),
        "{msg}"
    );
}

#[test]
fn tampered_inrelease_is_refused() {
    let repo = FakeRepo::build(RepoOptions::default());
    let inrel = repo.dist_dir().join("InRelease");
    let text = std::fs::read_to_string(&inrel).unwrap();
    std::fs::write(&inrel, text.replacen("Origin: Test", "Origin: Evil", 1)).unwrap();
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let err = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::Keyring(KeyringError::BadSignature { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/dists/test/InRelease"), "{err}");
    assert!(blobs(cdir.path()).is_empty(), "{:?}", blobs(cdir.path()));
    assert_eq!(server.count("Packages.xz"), 0);
}

#[test]
fn untrusted_key_is_refused() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let other = gen_key("other");
    let kdir = tempfile::tempdir().unwrap();
    let other_path = kdir.path().join("other.asc");
    write_pubkey_armored(&other, &other_path);
    let mut spec = spec_for(&repo, &server.base);
    spec.signing_keys = vec![other_path.display().to_string()];
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, kdir.path())).unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::Keyring(KeyringError::BadSignature { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("other.asc"), "{err}");
    assert!(blobs(cdir.path()).is_empty());

    // The same key, armored, in a default host trust directory is accepted.
    let apt = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(apt.path().join("trusted.gpg.d")).unwrap();
    write_pubkey_armored(&repo.key, &apt.path().join("trusted.gpg.d/repo.asc"));
    spec.signing_keys.clear();
    fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap();
}

#[test]
fn tampered_packages_is_refused() {
    let repo = FakeRepo::build(RepoOptions::default());
    // Replace the index after Release was signed.
    let bad = repo.packages.replace("Version: 1.0", "Version: 9.9");
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut xz, bad.as_bytes()).unwrap();
    let xz = xz.finish().unwrap();
    let bad_digest = apt_fixture::sha256_hex(&xz);
    std::fs::write(repo.index_dir().join("Packages.xz"), &xz).unwrap();
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let err = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ReleaseError::Fetch(FetchError::Cache(
                CacheError::SizeMismatch { .. } | CacheError::DigestMismatch { .. }
            ))
        ),
        "{msg}"
    );
    assert!(msg.contains("main/binary-amd64/Packages.xz"), "{msg}");
    assert!(msg.contains(&cdir.path().display().to_string()), "{msg}");
    let left = blobs(cdir.path());
    assert!(!left.contains(&bad_digest), "{left:?}");
    assert!(left.iter().all(|n| !n.starts_with(".tmp")), "{left:?}");
    // Only the verified InRelease is cached.
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn tampered_deb_is_refused() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let md = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap();
    let before = blobs(cdir.path());
    // Same size, one byte changed.
    let d = &repo.debs[1];
    let mut evil = d.data.clone();
    evil[100] ^= 0xff;
    std::fs::write(repo.root().join(&d.filename), &evil).unwrap();
    let dl = md.download(&d.filename, d.sha256(), d.data.len() as u64);
    let err = f.fetch_many(&cache, &[dl]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, FetchError::Cache(CacheError::DigestMismatch { .. })),
        "{msg}"
    );
    assert!(msg.contains(&d.filename), "{msg}");
    assert!(msg.contains(&cdir.path().display().to_string()), "{msg}");
    assert_eq!(blobs(cdir.path()), before);
    // A longer file is cut off as soon as it exceeds the promised size.
    let mut longer = d.data.clone();
    longer.extend_from_slice(b"trailing");
    std::fs::write(repo.root().join(&d.filename), &longer).unwrap();
    let dl = md.download(&d.filename, d.sha256(), d.data.len() as u64);
    let err = f
        .fetch_to_cache(&cache, &dl.url, None, &dl.expected)
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Cache(CacheError::SizeMismatch { .. })),
        "{err}"
    );
    assert_eq!(blobs(cdir.path()), before);
}

#[test]
fn retries_transient_errors_but_not_404() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    server.fail("/dists/test/InRelease", &[500, 503]);
    let md = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap();
    assert_eq!(server.count("/dists/test/InRelease"), 3);

    // 404 is final: one request, an error naming the URL.
    let d = &repo.debs[0];
    let missing = md.download("pool/main/p/none/none_1_amd64.deb", d.sha256(), 10);
    let err = f
        .fetch_to_cache(&cache, &missing.url, None, &missing.expected)
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("none_1_amd64.deb"), "{err}");
    assert_eq!(server.count("none_1_amd64.deb"), 1);

    // Persistent 500 gives up after the bounded retries.
    let dl = md.download(&d.filename, d.sha256(), d.data.len() as u64);
    let path = format!("/{}", d.filename);
    server.fail(&path, &[500, 500, 500, 500, 500, 500]);
    let err = f
        .fetch_to_cache(&cache, &dl.url, None, &dl.expected)
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Status {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&d.filename), "{err}");
    assert_eq!(server.count(&d.filename), 4);
    assert!(!blobs(cdir.path()).contains(&d.sha256().to_hex()));
}

#[test]
fn connection_cut_mid_body_is_retried() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let d = &repo.debs[2];
    server.cut(&format!("/{}", d.filename), 2);
    let url = format!("{}/{}", server.base, d.filename);
    let expected = imgbuild::apt::cache::Expected {
        sha256: d.sha256(),
        size: Some(d.data.len() as u64),
    };
    let p = f.fetch_to_cache(&cache, &url, None, &expected).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), d.data);
    assert_eq!(server.count(&d.filename), 3);
    assert_eq!(blobs(cdir.path()), vec![d.sha256().to_hex()]);
}

#[test]
fn a_stalled_request_is_hedged_on_another_connection() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let d = &repo.debs[1];
    // The first request for the file gets no answer for longer than the test may take.
    let stall = Duration::from_mins(1);
    server.stall(&format!("/{}", d.filename), 1, stall);
    let url = format!("{}/{}", server.base, d.filename);
    let expected = imgbuild::apt::cache::Expected {
        sha256: d.sha256(),
        size: Some(d.data.len() as u64),
    };
    let started = std::time::Instant::now();
    let p = f.fetch_to_cache(&cache, &url, None, &expected).unwrap();
    assert!(started.elapsed() < stall, "the stalled answer was awaited");
    assert_eq!(std::fs::read(p).unwrap(), d.data);
    // The same GET went out twice: the stalled one and the hedge that answered.
    assert_eq!(server.count(&d.filename), 2);
    assert_eq!(blobs(cdir.path()), vec![d.sha256().to_hex()]);
}

#[test]
fn credentials_are_sent_and_never_printed() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let mut spec = spec_for(&repo, &server.base);
    spec.credentials = Some(imgbuild::apt::fetch::Credentials::parse("bob:pa55word").unwrap());
    let md = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, empty.path())).unwrap();
    let d = &repo.debs[0];
    let dl = md.download(&d.filename, d.sha256(), d.data.len() as u64);
    f.fetch_many(&cache, std::slice::from_ref(&dl)).unwrap();
    let auth = server.auth();
    // InRelease, Packages.xz and the package.
    assert_eq!(auth.len(), 3, "{auth:?}");
    assert!(
        auth.iter().all(|a| a == "Basic Ym9iOnBhNTV3b3Jk"),
        "{auth:?}"
    );
    assert!(!format!("{dl:?}").contains("pa55word"));
    // A failure message does not carry the password either.
    let missing = md.download("pool/none.deb", d.sha256(), 1);
    let err = f.fetch_many(&cache, &[missing]).unwrap_err();
    assert!(!err.to_string().contains("pa55word"), "{err}");
}

#[test]
fn release_gpg_and_by_hash() {
    let repo = FakeRepo::build(RepoOptions {
        inrelease: false,
        by_hash: true,
        ..RepoOptions::default()
    });
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let md = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap();
    assert!(md.release_url.ends_with("/dists/test/Release"));
    assert_eq!(md.packages[0].read().unwrap(), repo.packages.as_bytes());
    assert_eq!(server.count("/Release.gpg"), 1);
    assert!(server.log().iter().any(|p| p.contains("/by-hash/SHA256/")));

    // A tampered Release under a detached signature is refused.
    let rel = repo.dist_dir().join("Release");
    let t = std::fs::read_to_string(&rel).unwrap();
    std::fs::write(&rel, t.replace("Label: Test", "Label: Evil")).unwrap();
    let cdir2 = tempfile::tempdir().unwrap();
    let cache2 = Cache::open(cdir2.path(), CacheMode::Online).unwrap();
    let err = fetch_metadata(
        &spec_for(&repo, &server.base),
        &amd64(),
        &ctx(&cache2, &f, empty.path()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/dists/test/Release"), "{err}");
    assert!(blobs(cdir2.path()).is_empty());
}

#[test]
fn unsigned_repository_needs_gpgcheck_off() {
    let repo = FakeRepo::build(RepoOptions {
        inrelease: false,
        release_gpg: false,
        ..RepoOptions::default()
    });
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let mut spec = spec_for(&repo, &server.base);
    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, empty.path())).unwrap_err();
    assert!(matches!(err, ReleaseError::Unsigned { .. }), "{err}");
    assert!(err.to_string().contains("repository_gpgcheck"), "{err}");
    spec.repository_gpgcheck = Some(false);
    let md = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, empty.path())).unwrap();
    assert!(!md.verified);
    assert_eq!(md.packages[0].read().unwrap(), repo.packages.as_bytes());
}

#[test]
fn flat_repository_from_file_url() {
    let repo = FakeRepo::build(RepoOptions {
        dist: None,
        ..RepoOptions::default()
    });
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let base = format!("file://{}", repo.root().display());
    let spec = spec_for(&repo, &base);
    assert!(spec.is_flat());
    let md = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, empty.path())).unwrap();
    assert!(
        md.release_url.ends_with("/repo/InRelease"),
        "{}",
        md.release_url
    );
    assert_eq!(md.packages[0].read().unwrap(), repo.packages.as_bytes());
    let d = &repo.debs[2];
    let p = f
        .fetch_many(
            &cache,
            &[md.download(&d.filename, d.sha256(), d.data.len() as u64)],
        )
        .unwrap();
    assert_eq!(std::fs::read(&p[0]).unwrap(), d.data);
}

#[test]
fn valid_until_is_checked_unless_disabled() {
    let repo = FakeRepo::build(RepoOptions {
        valid_until: Some("Sat, 17 Jun 2023 08:54:02 UTC".into()),
        ..RepoOptions::default()
    });
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let mut c = ctx(&cache, &f, empty.path());
    c.now = SystemTime::UNIX_EPOCH + Duration::from_hours(500_000);
    let mut spec = spec_for(&repo, &server.base);
    let err = fetch_metadata(&spec, &amd64(), &c).unwrap_err();
    assert!(matches!(err, ReleaseError::Expired { .. }), "{err}");
    assert!(blobs(cdir.path()).is_empty());
    spec.check_valid_until = Some(false);
    fetch_metadata(&spec, &amd64(), &c).unwrap();
    spec.check_valid_until = None;
    c.check_valid_until = Some(false);
    fetch_metadata(&spec, &amd64(), &c).unwrap();
}

#[test]
fn missing_component_is_named() {
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let mut spec = spec_for(&repo, &server.base);
    spec.components = vec!["main".into(), "contrib".into()];
    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, empty.path())).unwrap_err();
    assert!(err.to_string().contains("\"contrib\""), "{err}");
}

// ---- apt-host:/ resolution ----

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn apt_host_from_one_line_sources() {
    let apt = tempfile::tempdir().unwrap();
    write(
        &apt.path().join("sources.list"),
        "deb http://mirror.test/debian bookworm main\n\
         deb http://mirror.test/debian bookworm-updates main\n\
         deb [signed-by=/k/sec.gpg] http://security.test/debian-security bookworm-security main\n",
    );
    write(
        &apt.path().join("sources.list.d/vendor.list"),
        "deb https://vendor.test/apt vendor-bookworm main\n",
    );
    let src = hostsources::read_host_sources(apt.path()).unwrap();
    assert_eq!(src.len(), 4);
    let r = |path: &str, dist: &str| {
        hostsources::resolve(path, dist, &src, apt.path(), no_env)
            .unwrap()
            .uri
    };
    assert_eq!(r("/", "bookworm"), "http://mirror.test/debian");
    assert_eq!(r("/", "trixie"), "http://mirror.test/debian");
    assert_eq!(r("/", "trixie-updates"), "http://mirror.test/debian");
    assert_eq!(
        r("/", "trixie-security"),
        "http://security.test/debian-security"
    );
    assert_eq!(
        r("/debian-ports", "sid"),
        "http://mirror.test/debian/debian-ports"
    );
    let sec = hostsources::resolve("/", "bookworm-security", &src, apt.path(), no_env).unwrap();
    assert_eq!(
        sec.signed_by,
        Some(SignedBy::Files(vec![PathBuf::from("/k/sec.gpg")]))
    );
    // The environment overrides the host.
    let env =
        |k: &str| (k == hostsources::ENV_MIRROR).then(|| "http://override.test/d/".to_string());
    let o = hostsources::resolve("/", "trixie", &src, apt.path(), env).unwrap();
    assert_eq!(o.uri, "http://override.test/d");
    let o = hostsources::resolve("/", "trixie-security", &src, apt.path(), env).unwrap();
    assert_eq!(o.uri, "http://security.test/debian-security");
}

#[test]
fn apt_host_from_deb822_sources() {
    let apt = tempfile::tempdir().unwrap();
    write(
        &apt.path().join("sources.list.d/debian.sources"),
        "Types: deb\n# a comment\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\nCheck-Valid-Until: no\n\n\
         Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
         Types: deb\nURIs: http://disabled.test/debian\nSuites: trixie\nComponents: main\nEnabled: no\n\n\
         Types: deb-src\nURIs: http://src.test/debian\nSuites: trixie\nComponents: main\n",
    );
    write(
        &apt.path().join("sources.list.d/node.sources"),
        "Types: deb\nURIs: https://node.test/node_20.x\nSuites: nodistro\nComponents: main\n",
    );
    let src = hostsources::read_host_sources(apt.path()).unwrap();
    let t = hostsources::resolve("/", "trixie", &src, apt.path(), no_env).unwrap();
    assert_eq!(t.uri, "http://mirror.test/debian");
    assert_eq!(t.check_valid_until, Some(false));
    assert_eq!(
        t.signed_by,
        Some(SignedBy::Files(vec![PathBuf::from(
            "/usr/share/keyrings/debian-archive-keyring.gpg"
        )]))
    );
    let s = hostsources::resolve("/", "trixie-security", &src, apt.path(), no_env).unwrap();
    assert_eq!(s.uri, "http://mirror.test/debian-security");
    // No security entry at all: a clear error naming the override.
    std::fs::remove_file(apt.path().join("sources.list.d/debian.sources")).unwrap();
    let src = hostsources::read_host_sources(apt.path()).unwrap();
    let e = hostsources::resolve("/", "trixie-security", &src, apt.path(), no_env).unwrap_err();
    assert!(
        e.to_string().contains(hostsources::ENV_SECURITY_MIRROR),
        "{e}"
    );
    assert!(e.to_string().contains("security"), "{e}");
}

#[test]
fn apt_host_repository_uses_host_sources() {
    // apt-host:/ resolved through an injected sources directory to a loopback repository.
    let repo = FakeRepo::build(RepoOptions::default());
    let server = Server::start(repo.root());
    let apt = tempfile::tempdir().unwrap();
    write(
        &apt.path().join("sources.list.d/test.sources"),
        &format!(
            "Types: deb\nURIs: {}\nSuites: bookworm\nComponents: main\nSigned-By: {}\n",
            server.base,
            repo.keyring.display()
        ),
    );
    // The fake repository's suite "test" is no known release name: it resolves to the host's
    // Debian archive entry (listed for bookworm), whose Signed-By key is trusted.
    let mut spec = RepoSpec::parse_tuple("apt-host:/,apt-deb,host,,,,,main,test").unwrap();
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let md = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap();
    assert_eq!(md.repo.base_uri, server.base);
    assert!(md.verified);
    spec.distribution = None;
    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap_err();
    assert!(err.to_string().contains("distribution"), "{err}");
}

// ---- the host's real mirror ----

#[test]
fn real_bookworm_metadata() {
    let apt_dir = Path::new("/etc/apt");
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    if !keyring.is_file() {
        skip(format_args!(
            "real_bookworm_metadata needs {}",
            keyring.display()
        ));
        return;
    }
    let mut spec = RepoSpec::parse_tuple("apt-host:/,apt-deb,bookworm,,,,,main,bookworm").unwrap();
    spec.signing_keys = vec![format!("file:{}", keyring.display())];
    let resolved = match imgbuild::apt::release::ResolvedRepo::resolve(&spec, apt_dir) {
        Ok(r) => r,
        Err(e) => {
            skip(format_args!("real_bookworm_metadata: no host mirror: {e}"));
            return;
        }
    };
    let f = Fetcher::new(FetchOptions {
        retries: 1,
        timeout: Duration::from_secs(20),
        progress: Progress::Quiet,
        ..FetchOptions::default()
    });
    let probe = format!("{}InRelease", resolved.dist_url());
    let inrelease = match f.get_bytes(&probe, None, 16 << 20) {
        Ok(b) => b,
        Err(e) => {
            skip(format_args!(
                "real_bookworm_metadata: mirror unreachable: {e}"
            ));
            return;
        }
    };
    // The host's default trust (trusted.gpg.d) verifies it too, and a changed byte breaks it.
    let host = imgbuild::apt::keyring::Keyring::host_default(apt_dir).unwrap();
    if !host.is_empty() {
        let text = host.verify_cleartext(&probe, &inrelease).unwrap();
        assert!(text.contains("Codename: bookworm"));
        let tampered = String::from_utf8(inrelease.clone()).unwrap().replacen(
            "Codename: bookworm",
            "Codename: bookwork",
            1,
        );
        assert!(host.verify_cleartext(&probe, tampered.as_bytes()).is_err());
    }
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let c = RepoContext::new(&cache, &f);
    let md = fetch_metadata(&spec, &amd64(), &c).unwrap();
    assert!(md.verified);
    assert_eq!(md.release.codename.as_deref(), Some("bookworm"));
    let text = md.packages[0].read().unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("\nPackage: bash\n"));
    assert!(text.len() > 10_000_000, "{}", text.len());
}

#[test]
fn several_repositories_at_once() {
    let a = FakeRepo::build(RepoOptions::default());
    let b = FakeRepo::build(RepoOptions {
        dist: None,
        debs: 1,
        ..RepoOptions::default()
    });
    let server = Server::start(a.root());
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let f = fetcher();
    let empty = tempfile::tempdir().unwrap();
    let mut flat = spec_for(&b, &format!("file://{}", b.root().display()));
    flat.alias = Some("flat".into());
    flat.repository_gpgcheck = Some(false);
    let specs = vec![spec_for(&a, &server.base), flat];
    let mds = imgbuild::apt::release::fetch_all_metadata(
        &specs,
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap();
    assert_eq!(mds.len(), 2);
    assert_eq!(mds[0].packages[0].read().unwrap(), a.packages.as_bytes());
    assert_eq!(mds[1].packages[0].read().unwrap(), b.packages.as_bytes());
    assert_eq!(
        mds[0]
            .repo
            .sources_entry(Some("/usr/share/keyrings/test.gpg")),
        format!(
            "Types: deb\nURIs: {}\nSuites: test\nComponents: main\nSigned-By: /usr/share/keyrings/test.gpg\n",
            server.base
        )
    );
    assert_eq!(
        mds[1].repo.sources_entry(None),
        format!(
            "Types: deb\nURIs: file://{}\nSuites: ./\nTrusted: yes\n",
            b.root().display()
        )
    );
    // A failing repository fails the whole set, named.
    let mut bad = spec_for(&a, &server.base);
    bad.distribution = Some("nosuch".into());
    let err = imgbuild::apt::release::fetch_all_metadata(
        &[specs[0].clone(), bad],
        &amd64(),
        &ctx(&cache, &f, empty.path()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/dists/nosuch/InRelease"), "{err}");
}
