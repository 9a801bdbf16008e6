//! Release freshness as apt checks it (issue 9, finding 4): a signed Release older than the newest
//! one a cache has seen for its repository is refused as going back in time, unless a lock file
//! pins the packages or `--allow-older-release` allows it; a `Date` further ahead of the clock than
//! apt's allowance is refused as not valid yet. Network-free (loopback server).

use crate::support::apt_fixture;

use apt_fixture::{FakeRepo, RepoOptions, Server, sha256_hex};
use imgbuild::apt::cache::{Cache, CacheMode};
use imgbuild::apt::fetch::{FetchOptions, Fetcher, Progress};
use imgbuild::apt::release::{
    self, ENV_ALLOW_OLDER_RELEASE, ENV_CHECK_DATE, ReleaseError, RepoContext, ResolvedRepo,
    fetch_metadata,
};
use imgbuild::apt::repo::RepoSpec;
use imgbuild::description::{self, Selection};
use imgbuild::plan::{self, Overrides, Plan, PlanError, PlanOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// "Now" of these tests: the `Date` of the first Release a build sees.
const NOW: &str = "Sat, 10 Jun 2023 08:54:02 UTC";
const NOW_EPOCH: u64 = 1_686_387_242;
/// The replayed Release: twenty days before [`NOW`].
const TWENTY_DAYS_AGO: &str = "Sun, 21 May 2023 08:54:02 UTC";
/// Thirty days after [`NOW`].
const IN_THIRTY_DAYS: &str = "Mon, 10 Jul 2023 08:54:02 UTC";
/// Five seconds after [`NOW`]: within apt's 10 s allowance.
const IN_FIVE_SECONDS: &str = "Sat, 10 Jun 2023 08:54:07 UTC";

fn fetcher() -> Fetcher {
    Fetcher::new(FetchOptions {
        retries: 1,
        backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(10),
        progress: Progress::Quiet,
        ..FetchOptions::default()
    })
}

fn at_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_EPOCH)
}

fn ctx<'a>(cache: &'a Cache, fetcher: &'a Fetcher, apt_dir: &Path) -> RepoContext<'a> {
    RepoContext {
        apt_dir: apt_dir.to_path_buf(),
        now: at_now(),
        check_valid_until: None,
        check_date: None,
        allow_older_release: false,
        ..RepoContext::new(cache, fetcher)
    }
}

/// A repository with no packages yet; [`offer`] publishes them.
fn empty_repo() -> FakeRepo {
    FakeRepo::build(RepoOptions {
        debs: 0,
        ..RepoOptions::default()
    })
}

/// Publish `hello` at `version` alone, in a Release dated `date`, validly signed.
fn offer(repo: &mut FakeRepo, version: &str, date: &str) {
    let filename = format!("pool/main/h/hello/hello_{version}_amd64.deb");
    let data = format!("hello {version}\n").into_bytes();
    let path = repo.root().join(&filename);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &data).unwrap();
    repo.packages = format!(
        "Package: hello\nVersion: {version}\nArchitecture: amd64\nFilename: {filename}\nSize: {}\nSHA256: {}\n\n",
        data.len(),
        sha256_hex(&data)
    );
    repo.opts.date = date.to_string();
    repo.write_metadata();
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

/// The version of `hello` in the repository's index as fetched.
fn offered(md: &release::RepoMetadata) -> String {
    let text = String::from_utf8(md.packages[0].read().unwrap()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_string()
}

/// A description installing `hello` from the repository at `base`.
fn description(dir: &Path, repo: &FakeRepo, base: &str) -> PathBuf {
    let xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="8.5" name="replay">
    <description type="system">
        <author>imgbuild</author>
        <contact>imgbuild@localhost</contact>
        <specification>replayed metadata</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>apt</packagemanager>
        <type image="docker" primary="true"/>
    </preferences>
    <repository type="apt-deb" alias="test" distribution="test" components="main">
        <source path="{base}">
            <signing key="file://{key}"/>
        </source>
    </repository>
    <packages type="bootstrap">
        <package name="hello"/>
    </packages>
</image>
"#,
        key = repo.keyring.display()
    );
    let d = dir.join("desc");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.xml"), xml).unwrap();
    d
}

fn plan_options(cache: &Path, lock: &Path, apt_dir: &Path) -> PlanOptions {
    PlanOptions {
        cache_dir: cache.to_path_buf(),
        offline: false,
        lock_path: lock.to_path_buf(),
        ignore_lock: true,
        progress: Progress::Quiet,
        apt_dir: apt_dir.to_path_buf(),
        allow_older_release: false,
    }
}

fn make_plan(desc: &Path, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let image = description::load(desc)
        .unwrap()
        .resolve(&Selection {
            profiles: Vec::new(),
            build_type: None,
            target_arch: "x86_64".into(),
        })
        .unwrap();
    let (cache, fetcher) = plan::open_cache(opts)?;
    plan::plan(&image, &Overrides::default(), opts, &cache, &fetcher)
}

fn hello_version(p: &Plan) -> &str {
    let hello: Vec<_> = p.packages.iter().filter(|p| p.name == "hello").collect();
    assert_eq!(hello.len(), 1, "{:?}", p.packages);
    &hello[0].version
}

fn assert_rewound(err: &dyn std::fmt::Display, url: &str) {
    let msg = err.to_string();
    for want in [
        url,
        "would go back in time",
        TWENTY_DAYS_AGO,
        NOW,
        "--allow-older-release",
        ENV_ALLOW_OLDER_RELEASE,
        "lock file",
    ] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
}

/// The finding as reported: after a build saw a signed `InRelease` dated now offering 2.0, the
/// same URL serves an older, validly signed one (now − 20 days) offering 1.0.
#[test]
fn replayed_older_inrelease_is_refused() {
    let mut repo = empty_repo();
    offer(&mut repo, "2.0", NOW);
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let apt = tempfile::tempdir().unwrap();
    let f = fetcher();
    let spec = spec_for(&repo, &server.base);
    let inrelease = format!("{}/dists/test/InRelease", server.base);

    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let md = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap();
    assert_eq!(offered(&md), "2.0");
    assert_eq!(md.older, None);

    // The replay: refused before any index is read from it.
    offer(&mut repo, "1.0", TWENTY_DAYS_AGO);
    server.clear_log();
    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap_err();
    assert!(matches!(err, ReleaseError::Rewound { .. }), "{err}");
    assert_rewound(&err, &inrelease);
    assert_eq!(server.log(), vec!["/dists/test/InRelease".to_string()]);
    // The inputs key of a build reads the Release alone: refused there too.
    let resolved = ResolvedRepo::resolve(&spec, apt.path()).unwrap();
    let err = release::fetch_release(&resolved, &ctx(&cache, &f, apt.path())).unwrap_err();
    assert!(matches!(err, ReleaseError::Rewound { .. }), "{err}");

    // The cache still holds the newer metadata: an offline build sees 2.0.
    drop(cache);
    let off = Cache::open(cdir.path(), CacheMode::Offline).unwrap();
    let md = fetch_metadata(&spec, &amd64(), &ctx(&off, &f, apt.path())).unwrap();
    assert_eq!(offered(&md), "2.0");
    drop(off);

    // Allowed explicitly: accepted, with the warning naming both dates.
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let allow = RepoContext {
        allow_older_release: true,
        ..ctx(&cache, &f, apt.path())
    };
    let md = fetch_metadata(&spec, &amd64(), &allow).unwrap();
    assert_eq!(offered(&md), "1.0");
    let older = md.older.expect("an older Release is reported");
    let warning = older.to_string();
    for want in [
        &inrelease[..],
        TWENTY_DAYS_AGO,
        NOW,
        "--allow-older-release",
    ] {
        assert!(warning.contains(want), "{want:?} missing from: {warning}");
    }
    // Allowing it once did not move the remembered date back.
    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap_err();
    assert!(matches!(err, ReleaseError::Rewound { .. }), "{err}");

    // The repository moves on: a newer Release is accepted and remembered.
    offer(&mut repo, "3.0", IN_FIVE_SECONDS);
    let md = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap();
    assert_eq!(offered(&md), "3.0");
    offer(&mut repo, "2.0", NOW);
    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap_err();
    assert!(err.to_string().contains(IN_FIVE_SECONDS), "{err}");

    // A Release without a Date is older than any seen (apt reads it as the epoch).
    let text = std::fs::read_to_string(repo.dist_dir().join("Release")).unwrap();
    let undated: String = text
        .lines()
        .filter(|l| !l.starts_with("Date:"))
        .map(|l| format!("{l}\n"))
        .collect();
    repo.write_release(&undated);
    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap_err();
    assert!(
        matches!(&err, ReleaseError::Rewound { date, .. } if date == "(missing)"),
        "{err}"
    );
}

/// The same replay seen through planning, the way a build meets it: nothing is planned from the
/// older Release unless the flag allows it; with a lock file the packages stay pinned.
#[test]
fn replayed_older_inrelease_is_refused_by_the_plan_unless_pinned_or_allowed() {
    let mut repo = empty_repo();
    offer(&mut repo, "2.0", NOW);
    let server = Server::start(repo.root());
    let work = tempfile::tempdir().unwrap();
    let apt = tempfile::tempdir().unwrap();
    let desc = description(work.path(), &repo, &server.base);
    let lock = work.path().join("imgbuild.lock");
    let cache = work.path().join("cache");
    let opts = plan_options(&cache, &lock, apt.path());

    let first = make_plan(&desc, &opts).unwrap();
    assert_eq!(hello_version(&first), "2.0");
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    first.lock_file().write(&lock).unwrap();

    offer(&mut repo, "1.0", TWENTY_DAYS_AGO);
    let err = make_plan(&desc, &opts).unwrap_err();
    assert!(
        matches!(err, PlanError::Release(ReleaseError::Rewound { .. })),
        "{err}"
    );
    assert_rewound(&err, &format!("{}/dists/test/InRelease", server.base));

    // With the lock file the packages are pinned by sha256: no metadata is read at all, and
    // the replay cannot change what is installed.
    server.clear_log();
    let pinned = make_plan(
        &desc,
        &PlanOptions {
            ignore_lock: false,
            ..opts.clone()
        },
    )
    .unwrap();
    assert!(pinned.from_lock);
    assert_eq!(hello_version(&pinned), "2.0");
    assert!(server.log().is_empty(), "{:?}", server.log());

    // Allowed explicitly: planned from the older Release, with a warning.
    let allowed = make_plan(
        &desc,
        &PlanOptions {
            allow_older_release: true,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(hello_version(&allowed), "1.0");
    assert_eq!(allowed.warnings.len(), 1, "{:?}", allowed.warnings);
    assert!(
        allowed.warnings[0].contains(TWENTY_DAYS_AGO),
        "{:?}",
        allowed.warnings
    );
}

/// The flag and its environment variable reach the plan from the command line.
#[test]
fn replayed_older_inrelease_is_refused_by_imgbuild_lock() {
    let mut repo = empty_repo();
    offer(&mut repo, "2.0", NOW);
    let server = Server::start(repo.root());
    let work = tempfile::tempdir().unwrap();
    let desc = description(work.path(), &repo, &server.base);
    let lock = work.path().join("out.lock");
    let cache = work.path().join("cache");
    let run = |extra: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgbuild"));
        cmd.arg("lock")
            .arg(&desc)
            .args(["--target-arch", "x86_64", "--cache-dir"])
            .arg(&cache)
            .arg("--lock")
            .arg(&lock)
            .args(extra)
            .env_remove(ENV_ALLOW_OLDER_RELEASE)
            .env_remove(ENV_CHECK_DATE);
        if let Some(v) = env {
            cmd.env(ENV_ALLOW_OLDER_RELEASE, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let locked = || std::fs::read_to_string(&lock).unwrap();

    let (code, err) = run(&[], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(locked().contains("\"2.0\""), "{}", locked());

    offer(&mut repo, "1.0", TWENTY_DAYS_AGO);
    let (code, err) = run(&[], None);
    assert_ne!(code, Some(0), "{err}");
    assert_rewound(&err, &format!("{}/dists/test/InRelease", server.base));
    assert!(locked().contains("\"2.0\""), "the lock was rewritten");
    let (code, err) = run(&[], Some("no"));
    assert_ne!(code, Some(0), "{err}");
    assert_rewound(&err, &format!("{}/dists/test/InRelease", server.base));

    for (extra, env) in [(&["--allow-older-release"][..], None), (&[][..], Some("1"))] {
        let (code, err) = run(extra, env);
        assert_eq!(code, Some(0), "{err}");
        assert!(
            err.contains("warning:") && err.contains(TWENTY_DAYS_AGO),
            "{err}"
        );
        assert!(locked().contains("\"1.0\""), "{}", locked());
    }
}

/// An `InRelease` dated 30 days in the future is refused; one a few seconds ahead, within apt's
/// allowance for clock skew, is accepted. The host's `check-date=no` and the environment turn
/// the check off, `date-max-future` widens the allowance.
#[test]
fn future_dated_inrelease_is_refused() {
    let mut repo = empty_repo();
    offer(&mut repo, "2.0", IN_THIRTY_DAYS);
    let server = Server::start(repo.root());
    let cdir = tempfile::tempdir().unwrap();
    let apt = tempfile::tempdir().unwrap();
    let f = fetcher();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    let spec = spec_for(&repo, &server.base);

    let err = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap_err();
    assert!(matches!(err, ReleaseError::NotValidYet { .. }), "{err}");
    let msg = err.to_string();
    for want in [
        &format!("{}/dists/test/InRelease", server.base)[..],
        "not valid yet",
        "invalid for another 30d 0h 0min 0s",
        IN_THIRTY_DAYS,
        "10 s",
        "check-date=no",
        ENV_CHECK_DATE,
    ] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    // Nothing of it was kept: no index fetched, no date remembered.
    assert_eq!(server.count("Packages.xz"), 0);
    let dist_url = format!("{}/dists/test/", server.base);
    assert_eq!(cache.release_date(&dist_url).unwrap(), None);

    // The environment override.
    let unchecked = RepoContext {
        check_date: Some(false),
        ..ctx(&cache, &f, apt.path())
    };
    fetch_metadata(&spec, &amd64(), &unchecked).unwrap();

    // Within the allowance.
    let cdir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cdir.path(), CacheMode::Online).unwrap();
    offer(&mut repo, "2.0", IN_FIVE_SECONDS);
    let md = fetch_metadata(&spec, &amd64(), &ctx(&cache, &f, apt.path())).unwrap();
    assert_eq!(offered(&md), "2.0");

    // The host's sources for the same archive: check-date=no, or a wider date-max-future.
    offer(&mut repo, "2.0", IN_THIRTY_DAYS);
    let mut keyless = spec_for(&repo, &server.base);
    keyless.signing_keys.clear();
    for (options, ok) in [
        ("", false),
        ("check-date=no", true),
        ("date-max-future=2592000", true),
        ("date-max-future=2591999", false),
    ] {
        std::fs::write(
            apt.path().join("sources.list"),
            format!(
                "deb [signed-by={} {options}] {} test main\n",
                repo.keyring.display(),
                server.base
            ),
        )
        .unwrap();
        let r = fetch_metadata(&keyless, &amd64(), &ctx(&cache, &f, apt.path()));
        assert_eq!(r.is_ok(), ok, "{options}: {:?}", r.err());
    }

    // Offline, metadata is not judged by the clock again (as with Valid-Until).
    drop(cache);
    let off = Cache::open(cdir.path(), CacheMode::Offline).unwrap();
    let early = RepoContext {
        now: at_now() - Duration::from_hours(1),
        ..ctx(&off, &f, apt.path())
    };
    fetch_metadata(&spec, &amd64(), &early).unwrap();
}

/// The packed index cache through planning: the first plan packs the `Packages` index into
/// `packed/sha256/<its sha256>`; a second plan reads only the packed form (the Packages file
/// may be gone) and plans the same; a damaged packed index is refused, the index fetched and
/// packed again, and the plan is still the same.
#[test]
fn packed_index_cache_plans_as_the_parsed_index() {
    let mut repo = empty_repo();
    offer(&mut repo, "2.0", NOW);
    let server = Server::start(repo.root());
    let work = tempfile::tempdir().unwrap();
    let apt = tempfile::tempdir().unwrap();
    let desc = description(work.path(), &repo, &server.base);
    let cache = work.path().join("cache");
    let opts = plan_options(&cache, &work.path().join("imgbuild.lock"), apt.path());
    let plain = sha256_hex(repo.packages.as_bytes());
    let packed = cache.join("packed/sha256").join(&plain);
    let blob = cache.join("blobs/sha256").join(&plain);

    let first = make_plan(&desc, &opts).unwrap();
    assert_eq!(hello_version(&first), "2.0");
    let written = std::fs::read(&packed).expect("the index was packed");

    std::fs::remove_file(&blob).unwrap();
    let second = make_plan(&desc, &opts).unwrap();
    assert_eq!(second.packages, first.packages);
    assert!(
        !blob.exists(),
        "a sound packed index is used without the Packages file"
    );

    std::fs::write(&packed, &written[..written.len() - 3]).unwrap();
    let third = make_plan(&desc, &opts).unwrap();
    assert_eq!(third.packages, first.packages);
    assert_eq!(std::fs::read(&packed).unwrap(), written, "packed again");
    assert!(blob.exists(), "fetched again to pack it");
}
