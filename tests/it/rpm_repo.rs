//! rpm-md repositories built by the real tools: packages from `rpmbuild`, metadata from
//! `createrepo_c` (gzip, xz and bzip2; zstd recompressed here, which Debian 12's `createrepo_c`
//! cannot write), `repomd.xml` signed with a throwaway `gpg` key, read through `dir://` and a
//! loopback HTTP server: the packages as rpm wrote them, signature and checksum refusals, file
//! provides from filelists, package downloads and unreachable sources.

use crate::support::apt_fixture::Server;
use crate::support::{ok, scratch};
use imgbuild::apt::cache::{Cache, CacheMode};
use imgbuild::apt::fetch::{FetchOptions, Fetcher, Progress};
use imgbuild::apt::repo::RepoSpec;
use imgbuild::rpm::package::{Cmp, Requirement};
use imgbuild::rpm::repo::{
    RpmContext, RpmMetadata, RpmRepoError, add_file_provides, check_source, fetch_metadata,
};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HELLO_SPEC: &str = r"Name: hello
Version: 1.0
Release: 1
Epoch: 2
Summary: says hello
License: MIT
BuildArch: noarch
Requires: /usr/libexec/hello-helper
Requires(pre): coreutils >= 8.0
Provides: greeting = 1.0
Conflicts: oldhello < 1.0
Obsoletes: hello-legacy
%description
Says hello.
%install
mkdir -p %{buildroot}/usr/bin
echo hi > %{buildroot}/usr/bin/hello
%files
/usr/bin/hello
";

const HELPER_SPEC: &str = r"Name: hello-helper
Version: 3
Release: 4
Summary: helps
License: MIT
BuildArch: noarch
%description
Helps.
%install
mkdir -p %{buildroot}/usr/libexec
echo help > %{buildroot}/usr/libexec/hello-helper
%files
/usr/libexec/hello-helper
";

/// Build both packages into `dir/rpms` and return their paths.
fn build_rpms(dir: &Path) -> Vec<PathBuf> {
    let top = dir.join("rpmbuild");
    for (name, spec) in [("hello", HELLO_SPEC), ("hello-helper", HELPER_SPEC)] {
        let path = dir.join(format!("{name}.spec"));
        std::fs::write(&path, spec).unwrap();
        ok(Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("--dbpath")
            .arg(dir.join("rpmdb"))
            .arg("--quiet")
            .arg("-bb")
            .arg(&path));
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(top.join("RPMS/noarch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    assert_eq!(out.len(), 2, "{out:?}");
    out
}

/// A throwaway gpg home with one signing key; its public key is exported to `key.asc`.
struct Gpg {
    home: PathBuf,
    public: PathBuf,
}

impl Gpg {
    fn new(dir: &Path, name: &str) -> Gpg {
        let home = dir.join(format!("gnupg-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let g = Gpg {
            public: dir.join(format!("{name}.asc")),
            home,
        };
        ok(g.cmd().args([
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("{name} <{name}@test.invalid>"),
            "ed25519",
            "sign",
            "never",
        ]));
        let key = ok(g.cmd().args(["--armor", "--export"])).stdout;
        std::fs::write(&g.public, key).unwrap();
        g
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &self.home)
            .args(["--batch", "--yes", "--pinentry-mode", "loopback"]);
        c
    }

    fn sign(&self, file: &Path) {
        let asc = PathBuf::from(format!("{}.asc", file.display()));
        ok(self
            .cmd()
            .args(["--passphrase", "", "--detach-sign", "--armor", "-o"])
            .arg(&asc)
            .arg(file));
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // The agent gpg started for this home; it would outlive the test otherwise.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A repository directory with the packages and `createrepo_c`'s metadata (`compress`: its
/// `--general-compress-type`).
fn make_repo(dir: &Path, name: &str, rpms: &[PathBuf], compress: &str) -> PathBuf {
    let repo = dir.join(name);
    std::fs::create_dir_all(repo.join("Packages")).unwrap();
    for r in rpms {
        std::fs::copy(r, repo.join("Packages").join(r.file_name().unwrap())).unwrap();
    }
    ok(Command::new("createrepo_c")
        .args([
            "--quiet",
            "--no-database",
            "--general-compress-type",
            compress,
        ])
        .arg(&repo));
    repo
}

/// The file of `repo`'s metadata of `kind` (`primary`, `filelists`).
fn metadata_file(repo: &Path, kind: &str) -> PathBuf {
    std::fs::read_dir(repo.join("repodata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains(&format!("-{kind}.xml"))
        })
        .unwrap_or_else(|| panic!("no {kind} in {}", repo.display()))
}

/// Recompress `repo`'s primary metadata with zstd and point repomd.xml at it, as repositories
/// made by a newer `createrepo_c` (Fedora's) look.
fn recompress_primary_zstd(repo: &Path) {
    let old = metadata_file(repo, "primary");
    let plain = {
        let mut d = flate2::read::MultiGzDecoder::new(std::fs::File::open(&old).unwrap());
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut v).unwrap();
        v
    };
    let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
    let hex = hex::encode(sha2::Sha256::digest(&zst));
    let name = format!("{hex}-primary.xml.zst");
    std::fs::write(repo.join("repodata").join(&name), &zst).unwrap();
    std::fs::remove_file(&old).unwrap();
    let repomd_path = repo.join("repodata/repomd.xml");
    let repomd = std::fs::read_to_string(&repomd_path).unwrap();
    let start = repomd.find("<data type=\"primary\">").unwrap();
    let end = start + repomd[start..].find("</data>").unwrap();
    let mut block = String::new();
    for line in repomd[start..end].lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if t.starts_with("<checksum ") {
            block.push_str(&format!(
                "{indent}<checksum type=\"sha256\">{hex}</checksum>\n"
            ));
        } else if t.starts_with("<location ") {
            block.push_str(&format!("{indent}<location href=\"repodata/{name}\"/>\n"));
        } else if t.starts_with("<size>") {
            block.push_str(&format!("{indent}<size>{}</size>\n", zst.len()));
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    let text = format!("{}{}{}", &repomd[..start], block, &repomd[end..]);
    std::fs::write(&repomd_path, text).unwrap();
}

fn fetcher() -> Fetcher {
    Fetcher::new(FetchOptions {
        retries: 1,
        backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(10),
        concurrency: 2,
        progress: Progress::Quiet,
        ..FetchOptions::default()
    })
}

fn spec(source: String, key: &Path) -> RepoSpec {
    RepoSpec {
        alias: Some("local".into()),
        repo_type: "rpm-md".into(),
        signing_keys: vec![format!("file://{}", key.display())],
        ..RepoSpec::new(source)
    }
}

/// The packages are what rpmbuild made, and file provides come from filelists.
fn check_packages(meta: &mut RpmMetadata, ctx: &RpmContext<'_>) {
    assert!(meta.verified);
    assert!(meta.revision.is_some());
    let mut names: Vec<String> = meta
        .packages
        .iter()
        .map(imgbuild::rpm::package::Package::nevra)
        .collect();
    names.sort();
    // createrepo_c writes epoch="0" for packages without one; it is kept in the model but not
    // printed, as zypper prints it.
    assert_eq!(names, ["hello-2:1.0-1.noarch", "hello-helper-3-4.noarch"]);
    let hello = meta.packages.iter().find(|p| p.name == "hello").unwrap();
    assert_eq!(hello.evr.epoch, Some(2));
    assert_eq!(hello.license, "MIT");
    assert_eq!(hello.summary, "says hello");
    assert!(
        hello
            .location
            .starts_with("Packages/hello-1.0-1.noarch.rpm")
    );
    assert!(
        hello
            .provides
            .iter()
            .any(|d| d.to_string() == "greeting = 1.0")
    );
    let coreutils = hello
        .requires
        .iter()
        .find_map(|r| match r {
            Requirement::Simple(d) if d.name == "coreutils" => Some(d),
            _ => None,
        })
        .expect("coreutils requirement");
    assert!(coreutils.pre);
    assert_eq!(coreutils.version.as_ref().unwrap().0, Cmp::Ge);
    assert_eq!(hello.conflicts[0].name, "oldhello");
    assert_eq!(hello.obsoletes[0].name, "hello-legacy");
    assert_eq!(hello.files, ["/usr/bin/hello"]);
    // /usr/libexec is not among the paths primary.xml lists: filelists supplies it.
    let helper_ix = meta
        .packages
        .iter()
        .position(|p| p.name == "hello-helper")
        .unwrap();
    assert!(meta.packages[helper_ix].files.is_empty());
    add_file_provides(std::slice::from_mut(meta), &[], ctx).unwrap();
    assert_eq!(
        meta.packages[helper_ix].files,
        ["/usr/libexec/hello-helper"]
    );
}

#[test]
#[cfg_attr(
    not(imgbuild_has_rpm_tools),
    ignore = "needs rpmbuild, createrepo_c, zypper, dnf and busybox-static"
)]
fn real_repositories_signed_and_compressed() {
    let t = scratch("rpm-repo");
    let dir = t.path();
    let rpms = build_rpms(dir);
    let gpg = Gpg::new(dir, "repo");
    let other = Gpg::new(dir, "other");
    let repos: Vec<PathBuf> = ["gz", "xz", "bz2"]
        .iter()
        .map(|c| make_repo(dir, &format!("repo-{c}"), &rpms, c))
        .collect();
    let zst = make_repo(dir, "repo-zst", &rpms, "gz");
    recompress_primary_zstd(&zst);
    let fetcher = fetcher();
    let cache = Cache::open(dir.join("cache"), CacheMode::Online).unwrap();
    let ctx = RpmContext::new(&cache, &fetcher, dir);
    for repo in repos.iter().chain([&zst]) {
        gpg.sign(&repo.join("repodata/repomd.xml"));
        let mut meta = fetch_metadata(
            &spec(format!("dir://{}", repo.display()), &gpg.public),
            1,
            &ctx,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", repo.display()));
        check_packages(&mut meta, &ctx);
    }

    // Over HTTP, with this:// for the key, and a package download verified into the cache.
    let server = Server::start(dir.to_path_buf());
    let mut s = spec(format!("{}/repo-xz/", server.base), &gpg.public);
    s.signing_keys = vec!["this://repo.asc".into()];
    let mut meta = fetch_metadata(&s, 0, &ctx).unwrap();
    assert_eq!(meta.base_url, format!("{}/repo-xz", server.base));
    check_packages(&mut meta, &ctx);
    let hello = meta.packages.iter().find(|p| p.name == "hello").unwrap();
    let d = meta.download(hello).unwrap();
    assert_eq!(d.url, format!("{}/repo-xz/{}", server.base, hello.location));
    let paths = fetcher.fetch_many(&cache, &[d]).unwrap();
    let want = std::fs::read(
        rpms.iter()
            .find(|p| p.ends_with("hello-1.0-1.noarch.rpm"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&paths[0]).unwrap(), want);

    // Offline, the verified repomd.xml and the metadata come from the cache.
    let offline = Cache::open(dir.join("cache"), CacheMode::Offline).unwrap();
    let octx = RpmContext::new(&offline, &fetcher, dir);
    let before = server.count("repomd.xml");
    let meta = fetch_metadata(&s, 0, &octx).unwrap();
    assert_eq!(meta.packages.len(), 2);
    assert_eq!(server.count("repomd.xml"), before, "offline made a request");
    drop(offline);

    let gz = &repos[0];
    let gz_spec = spec(format!("dir://{}", gz.display()), &gpg.public);

    // A key that did not sign it is refused.
    let e = fetch_metadata(&spec(gz_spec.source.clone(), &other.public), 0, &ctx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no valid signature by a trusted key"), "{e}");

    // A changed repomd.xml no longer matches its signature.
    let repomd = gz.join("repodata/repomd.xml");
    let original = std::fs::read(&repomd).unwrap();
    let mut tampered = original.clone();
    tampered.extend_from_slice(b"<!-- changed -->\n");
    std::fs::write(&repomd, &tampered).unwrap();
    let e = fetch_metadata(&gz_spec, 0, &ctx).unwrap_err();
    assert!(matches!(e, RpmRepoError::Keyring { .. }), "{e}");
    assert!(e.to_string().contains("repository local:"), "{e}");
    std::fs::write(&repomd, &original).unwrap();

    // Without repomd.xml.asc: refused unless repository_gpgcheck="false".
    let asc = gz.join("repodata/repomd.xml.asc");
    let sig = std::fs::read(&asc).unwrap();
    std::fs::remove_file(&asc).unwrap();
    let e = fetch_metadata(&gz_spec, 0, &ctx).unwrap_err();
    assert!(matches!(e, RpmRepoError::Unsigned { .. }), "{e}");
    let mut trusting = gz_spec.clone();
    trusting.repository_gpgcheck = Some(false);
    let meta = fetch_metadata(&trusting, 0, &ctx).unwrap();
    assert!(!meta.verified);
    assert_eq!(meta.packages.len(), 2);
    std::fs::write(&asc, &sig).unwrap();

    // primary that does not match repomd.xml's checksum: refused, nothing left in the cache.
    let fresh = Cache::open(dir.join("cache2"), CacheMode::Online).unwrap();
    let fctx = RpmContext::new(&fresh, &fetcher, dir);
    let primary = metadata_file(gz, "primary");
    let mut bytes = std::fs::read(&primary).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&primary, &bytes).unwrap();
    let e = fetch_metadata(&gz_spec, 0, &fctx).unwrap_err().to_string();
    assert!(
        e.contains("does not match") && e.contains("primary.xml.gz"),
        "{e}"
    );
    let blobs: Vec<String> = std::fs::read_dir(fresh.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let primary_hex = primary
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('-')
        .next()
        .unwrap()
        .to_string();
    assert!(!blobs.contains(&primary_hex), "{blobs:?}");
    assert!(blobs.iter().all(|b| !b.starts_with(".tmp")), "{blobs:?}");
    // Only the verified repomd.xml and its signature are there.
    assert_eq!(blobs.len(), 2, "{blobs:?}");
}

#[test]
fn build_service_sources_are_refused_before_any_download() {
    let key = Path::new("/nonexistent.asc");
    let mut s = spec("obs://openSUSE:Factory/standard".into(), key);
    s.alias = Some("factory".into());
    let e = check_source(&s).unwrap_err().to_string();
    assert!(e.starts_with("repository factory: source \"obs://"), "{e}");
    assert!(e.contains("Open Build Service"), "{e}");
    let t = scratch("rpm-obs");
    let cache = Cache::open(t.path().join("cache"), CacheMode::Online).unwrap();
    let fetcher = fetcher();
    let ctx = RpmContext::new(&cache, &fetcher, t.path());
    let e2 = fetch_metadata(&s, 0, &ctx).unwrap_err().to_string();
    assert_eq!(e, e2);
}
