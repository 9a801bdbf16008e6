//! A small signed rpm-md repository built with the distribution's own rpm tools from the specs in
//! `tests/fixtures/rpm/` (one package per spec), and the peers (zypper, dnf, rpm) run on it: the
//! reference the RPM tests compare imgbuild with.
//!
//! The repository is built once per test run and kept in the target dir, keyed by a hash of its
//! inputs (the specs, the host's busybox-static binary, this file, the arch and the signing key), so an
//! unchanged fixture is reused across runs. A rebuild is byte-identical (rpms, signatures and
//! metadata): `SOURCE_DATE_EPOCH` clamps build times and file mtimes, the build host is fixed,
//! the signing key (kept beside in the target dir, made once) signs at a fixed time with RSA
//! (deterministic), and `createrepo_c` takes the fixed time for the repository's and the files'.
//! Payloads are zstd, except `filesystem` (gzip) and `busybox` (xz).
//!
//! Quirks of the peers found here (Debian 12: rpm 4.18, zypper 1.14 on libzypp 17.25, dnf 4.14):
//! - Debian's rpm puts its database at `~/.rpmdb` (`%_dbpath` is `~/.rpmdb`), also under
//!   `--root`, and dnf follows that macro. Every peer here runs with `HOME` set to a directory
//!   whose `.rpmmacros` sets `%_dbpath` to [`DBPATH`] (openSUSE's place), and the root is made
//!   with that directory already there, which is what libzypp looks for; `rpm --root` then always
//!   needs `--dbpath` too: see [`rpm_in`].
//! - Debian's `rpmsign` calls `gpg2`, which Debian does not ship: `%__gpg` is set to gpg.
//! - libzypp reads only primary.xml, never filelists.xml: a file dependency on a path that only
//!   filelists lists (`needs-file` on `/usr/share/fixture/data`) is unresolvable for zypper
//!   (exit 4), while dnf resolves it.
//! - Asked for `old-tool`, zypper installs old-tool 1.0 (by name); dnf installs new-tool, which
//!   obsoletes it.
//! - A failing `%post` keeps the package installed with both; zypper exits 107, dnf exits 0
//!   and only says so ("scriptlet failed"), which [`PeerRun::scriptlet_failed`] looks for.
//! - Where both agree: `(impl-x or impl-y)` and a plain `Requires: impl` both get impl-y (the
//!   higher version); `Supplements: busybox` (weak-target) comes in with weak dependencies on.
//! - Debian's libzypp makes no `pattern:` solvables from `pattern() = NAME` provides (its
//!   solv files are built without autopatterns): `zypper install -t pattern minimal` finds
//!   nothing, `zypper install 'pattern() = minimal'` installs `pattern-minimal`. dnf has no
//!   patterns at all.
//! - Debian's busybox-static has no adduser/addgroup: `with-scripts`' `%pre` edits the account
//!   files itself.
//! - dnf's gpgme starts a gpg-agent on its keyring in the root's cache and leaves it running;
//!   [`dnf_install`] stops it.
//! - libzypp logs to the host's `/var/log/zypper.log` even with `--root`: `ZYPP_LOGFILE` points
//!   it into the run's scratch dir.
//! - Debian's `rpm` wrapper prints an "use Alien instead" warning on every install, which
//!   zypper shows as "Additional rpm output".

use super::apt_fixture::Server;
use super::{repo_dir, scratch, target_tmp};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

/// Where the peers' rpm database is, inside a root (openSUSE's and Fedora's place).
pub const DBPATH: &str = "/usr/lib/sysimage/rpm";

/// The fixture's build time, file mtime clamp and signing time (2023-11-14 22:13:20 UTC).
pub const SOURCE_DATE_EPOCH: u64 = 1_700_000_000;

/// The same instant as gpg's `--faked-system-time` wants it (the `!` freezes the clock).
const GPG_TIME: &str = "20231114T221320!";

/// The signing key's user id.
const KEY_UID: &str = "imgbuild rpm fixture <rpm-fixture@test.invalid>";

/// The repository's alias for the peers.
const ALIAS: &str = "fixture";

/// The built repository.
#[derive(Debug)]
pub struct RpmRepo {
    /// The rpm-md repository: `<arch>/*.rpm`, `noarch/*.rpm`, `repodata/` with `repomd.xml`,
    /// `repomd.xml.asc` (detached, armored) and `repomd.xml.key` (the public key, as openSUSE
    /// repositories carry it).
    pub dir: PathBuf,
    /// The signing key's public half, armored (outside `dir`).
    pub key: PathBuf,
    /// The signing key's fingerprint (upper-case hex).
    pub fingerprint: String,
    /// The host's rpm architecture (`%_arch`), the arch of `busybox` and `filesystem`.
    pub arch: String,
    /// Every rpm by its spec's name: the package name, except `epoch-pkg-e1` (the older
    /// `epoch-pkg` build, 1:9.0 beside `epoch-pkg`'s 2:1.0).
    pub rpms: BTreeMap<String, PathBuf>,
}

impl RpmRepo {
    /// Serves [`RpmRepo::dir`] over loopback HTTP; the repository is at the server's `base`.
    pub fn serve(&self) -> Server {
        Server::start(self.dir.clone())
    }

    /// The repository as a KIWI `dir://` source.
    pub fn url(&self) -> String {
        format!("dir://{}", self.dir.display())
    }

    /// The repository as a `file://` URL (what dnf takes).
    pub fn file_url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

/// Debian's static busybox (the `busybox-static` package), repackaged as the fixture's shell.
const BUSYBOX: &str = "/bin/busybox";

/// The fixture repository, built on the first call of the run (or found from an earlier run
/// with the same inputs). Its needs (rpmbuild, `createrepo_c`, busybox-static's `/bin/busybox`)
/// are what the tests' `imgbuild_has_rpm_tools` cfg checks, so an error is a failure: a failing
/// tool prints its output.
pub fn repo() -> Result<&'static RpmRepo, String> {
    static REPO: OnceLock<Result<RpmRepo, String>> = OnceLock::new();
    REPO.get_or_init(build).as_ref().map_err(Clone::clone)
}

/// [`repo`] for a test: the tests that call it carry the `imgbuild_has_rpm_tools` cfg (its
/// needs are there), so a fixture that cannot be built fails the test with the reason.
pub fn shared() -> &'static RpmRepo {
    let _heavy = super::heavy();
    repo().unwrap_or_else(|e| panic!("the rpm fixture repository: {e}"))
}

/// The spec files, by name without `.spec`.
fn specs() -> Result<BTreeMap<String, PathBuf>, String> {
    let dir = repo_dir().join("tests/fixtures/rpm");
    let mut specs = BTreeMap::new();
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str()?.strip_suffix(".spec"))
        {
            specs.insert(stem.to_string(), p.clone());
        }
    }
    Ok(specs)
}

/// Reads `path`, naming it on error.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `cmd`; its stdout when it succeeds, else its status and output.
fn run(cmd: &mut Command) -> Result<String, String> {
    super::try_ok(cmd.stdin(Stdio::null())).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// gpg on the fixture's key home, non-interactive, at the fixed time.
fn gpg(home: &Path) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty", "--faked-system-time", GPG_TIME]);
    cmd
}

/// Stops the gpg-agent a key home started (gpg leaves one running per home).
fn stop_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home)
        .args(["--kill", "gpg-agent"])
        .stdin(Stdio::null())
        .output();
}

/// The signing key's home (`<target tmp>/rpm-fixture-gnupg`, made once and kept, so rebuilt
/// repositories carry the same key and signatures) and its fingerprint.
fn signing_key() -> Result<(PathBuf, String), String> {
    let home = target_tmp().join("rpm-fixture-gnupg");
    if !home.join("done").exists() {
        let work = tempfile::Builder::new()
            .prefix("rpm-fixture-gnupg-")
            .tempdir_in(target_tmp())
            .map_err(|e| e.to_string())?;
        let new = work.path().join("home");
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&new)
            .map_err(|e| format!("{}: {e}", new.display()))?;
        let made = run(gpg(&new).args([
            "--passphrase",
            "",
            "--quick-gen-key",
            KEY_UID,
            "rsa3072",
            "sign",
            "never",
        ]));
        stop_agent(&new);
        made?;
        std::fs::write(new.join("done"), "").map_err(|e| format!("{}: {e}", new.display()))?;
        if let Err(e) = std::fs::rename(&new, &home)
            && !home.join("done").exists()
        {
            return Err(format!("rename to {}: {e}", home.display()));
        }
    }
    // Listing secret keys asks (and so starts) the agent too.
    let list = run(gpg(&home).args(["--with-colons", "--list-secret-keys"]));
    stop_agent(&home);
    let list = list?;
    let fpr = list
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').find(|f| !f.is_empty()))
        .ok_or_else(|| format!("no key in {}", home.display()))?
        .to_string();
    Ok((home, fpr))
}

/// Builds the repository (or finds it from an earlier run).
fn build() -> Result<RpmRepo, String> {
    let specs = specs()?;
    let busybox = Path::new(BUSYBOX);
    let arch = run(Command::new("rpm").args(["--eval", "%{_arch}"]))?
        .trim()
        .to_string();
    let (gnupg, fingerprint) = signing_key()?;

    let mut hash = Sha256::new();
    for (name, path) in &specs {
        hash.update(format!("spec {name} ").as_bytes());
        hash.update(read(path)?);
    }
    hash.update(read(busybox)?);
    hash.update(include_str!("rpm_repo.rs").as_bytes());
    hash.update(format!("{arch} {fingerprint}").as_bytes());
    let id = hex::encode(&hash.finalize()[..8]);
    let dest = target_tmp().join(format!("rpm-repo-{id}"));

    if !dest.join("done").exists() {
        let work = tempfile::Builder::new()
            .prefix("rpm-repo-build-")
            .tempdir_in(target_tmp())
            .map_err(|e| e.to_string())?;
        let out = work.path().join("out");
        make(
            &specs,
            busybox,
            &arch,
            &gnupg,
            &fingerprint,
            work.path(),
            &out,
        )?;
        std::fs::write(out.join("done"), "").map_err(|e| format!("{}: {e}", out.display()))?;
        if let Err(e) = std::fs::rename(&out, &dest)
            && !dest.join("done").exists()
        {
            return Err(format!("rename to {}: {e}", dest.display()));
        }
        // Older fixtures (other inputs) only take space now.
        if let Ok(entries) = std::fs::read_dir(target_tmp()) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("rpm-repo-")
                    && !n.starts_with("rpm-repo-build-")
                    && e.path() != dest
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    let dir = dest.join("repo");
    let mut rpms = BTreeMap::new();
    for sub in [arch.as_str(), "noarch"] {
        let d = dir.join(sub);
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| format!("{}: {e}", d.display()))?.path();
            let marker = PathBuf::from(format!("{}.spec-name", p.display()));
            if let Ok(name) = std::fs::read_to_string(&marker) {
                rpms.insert(name.trim().to_string(), p);
            }
        }
    }
    if rpms.len() != specs.len() {
        return Err(format!(
            "{}: {} rpms for {} specs",
            dir.display(),
            rpms.len(),
            specs.len()
        ));
    }
    Ok(RpmRepo {
        dir,
        key: dest.join("key.asc"),
        fingerprint,
        arch,
        rpms,
    })
}

/// Builds every spec with rpmbuild, signs the rpms, makes the rpm-md metadata and signs it:
/// the repository in `out/repo`, the public key in `out/key.asc`. `work` holds the rest.
fn make(
    specs: &BTreeMap<String, PathBuf>,
    busybox: &Path,
    arch: &str,
    gnupg: &Path,
    fingerprint: &str,
    work: &Path,
    out: &Path,
) -> Result<(), String> {
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    let top = work.join("top");
    let sources = top.join("SOURCES");
    let home = work.join("home");
    let repo = out.join("repo");
    for d in [&sources, &home, &repo] {
        mkdir(d)?;
    }
    // The busybox spec's Source0: Debian's static binary.
    std::fs::copy(busybox, sources.join("busybox"))
        .map_err(|e| format!("{} to {}: {e}", busybox.display(), sources.display()))?;
    // rpmbuild reads ~/.rpmmacros and, on Debian, would make ~/.rpmdb: a private HOME.
    let db = work.join("db");
    std::fs::write(
        home.join(".rpmmacros"),
        format!("%_dbpath {}\n", db.display()),
    )
    .map_err(|e| format!("{}: {e}", home.display()))?;

    for (name, spec) in specs {
        let rpmdir = work.join("rpms").join(name);
        let builddir = work.join("build").join(name);
        mkdir(&builddir)?;
        let define = |k: &str, v: &str| ["--define".to_string(), format!("{k} {v}")];
        let mut cmd = Command::new("rpmbuild");
        cmd.args(["-bb", "--nodeps", "--quiet"])
            .args(define("_topdir", &top.to_string_lossy()))
            .args(define("_sourcedir", &sources.to_string_lossy()))
            .args(define("_builddir", &builddir.to_string_lossy()))
            .args(define("_rpmdir", &rpmdir.to_string_lossy()))
            .args(define("_buildhost", "imgbuild-test"))
            .args(define("use_source_date_epoch_as_buildtime", "1"))
            .args(define("clamp_mtime_to_source_date_epoch", "1"))
            // zstd unless a spec picks another (filesystem: gzip, busybox: xz).
            .args(define("_binary_payload", "w19.zstdio"))
            .args(define("_binary_filedigest_algorithm", "8"))
            // No /usr/lib/.build-id links, debuginfo packages or brp scripts (strip): the
            // packages hold what their specs say.
            .args(define("_build_id_links", "none"))
            .args(define("debug_package", "%{nil}"))
            .args(define("__os_install_post", "%{nil}"))
            .arg(spec)
            .env("HOME", &home)
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
            .env("TZ", "UTC")
            .env("LC_ALL", "C");
        run(&mut cmd)?;
        let built: Vec<PathBuf> = walkdir::WalkDir::new(&rpmdir)
            .into_iter()
            .filter_map(Result::ok)
            .map(walkdir::DirEntry::into_path)
            .filter(|p| p.extension().is_some_and(|x| x == "rpm"))
            .collect();
        let [rpm] = built.as_slice() else {
            return Err(format!("{}: built {built:?}", spec.display()));
        };
        let sub = rpm
            .parent()
            .and_then(Path::file_name)
            .ok_or_else(|| format!("{}: no arch dir", rpm.display()))?;
        let file = rpm
            .file_name()
            .ok_or_else(|| format!("{}: no file name", rpm.display()))?;
        let dest_dir = repo.join(sub);
        mkdir(&dest_dir)?;
        let dest = dest_dir.join(file);
        std::fs::rename(rpm, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        // Which spec made it (two specs make epoch-pkg); createrepo_c ignores other files.
        std::fs::write(format!("{}.spec-name", dest.display()), name)
            .map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    if !repo.join(arch).is_dir() {
        return Err(format!("no {arch} packages in {}", repo.display()));
    }

    let rpms: Vec<PathBuf> = walkdir::WalkDir::new(&repo)
        .into_iter()
        .filter_map(Result::ok)
        .map(walkdir::DirEntry::into_path)
        .filter(|p| p.extension().is_some_and(|x| x == "rpm"))
        .collect();
    let signed = run(Command::new("rpmsign")
        .arg("--addsign")
        .args(["--define", "__gpg /usr/bin/gpg"])
        .arg("--define")
        .arg(format!("_gpg_path {}", gnupg.display()))
        .arg("--define")
        .arg(format!("_gpg_name {fingerprint}"))
        .arg("--define")
        .arg(format!(
            "_gpg_sign_cmd_extra_args --faked-system-time {GPG_TIME}"
        ))
        .args(&rpms)
        .env("HOME", &home));
    stop_agent(gnupg);
    signed?;

    // primary.xml records each file's mtime: the fixed time, so the metadata repeats too.
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(SOURCE_DATE_EPOCH);
    for rpm in &rpms {
        std::fs::File::options()
            .write(true)
            .open(rpm)
            .and_then(|f| f.set_modified(when))
            .map_err(|e| format!("{}: {e}", rpm.display()))?;
    }
    run(Command::new("createrepo_c")
        .args(["--no-database", "--revision"])
        .arg(SOURCE_DATE_EPOCH.to_string())
        .arg("--set-timestamp-to-revision")
        .arg(&repo))?;
    let key = run(gpg(gnupg).args(["--armor", "--export", fingerprint]))?;
    for p in [out.join("key.asc"), repo.join("repodata/repomd.xml.key")] {
        std::fs::write(&p, &key).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let signed = run(gpg(gnupg)
        .args([
            "--yes",
            "--local-user",
            fingerprint,
            "--armor",
            "--detach-sign",
        ])
        .arg(repo.join("repodata/repomd.xml")));
    stop_agent(gnupg);
    signed?;
    Ok(())
}

/// A root a peer installed into, kept until dropped.
pub struct PeerRun {
    /// Holds `root` and the peer's `HOME`, removed on drop.
    _dir: tempfile::TempDir,
    /// The root.
    pub root: PathBuf,
    /// The peer's exit status.
    pub status: ExitStatus,
    /// The peer's stdout and stderr.
    pub output: String,
    /// What `rpm -qa` lists in the root afterwards: `name-epoch:version-release.arch`, sorted,
    /// without the imported key (`gpg-pubkey`).
    pub installed: Vec<String>,
}

impl PeerRun {
    /// True when rpm reported a failing scriptlet (dnf still exits 0 then).
    pub fn scriptlet_failed(&self) -> bool {
        self.output.contains("scriptlet failed")
    }

    /// An error with the peer's status and output unless it succeeded without a failing
    /// scriptlet.
    pub fn check(&self, peer: &str) -> Result<(), String> {
        if self.status.success() && !self.scriptlet_failed() {
            return Ok(());
        }
        Err(format!(
            "{peer} into {} failed ({}):\n{}",
            self.root.display(),
            self.status,
            super::tail(&self.output, 60)
        ))
    }
}

/// `rpm --root ROOT --dbpath DBPATH`, with a `HOME` that cannot redirect it (see the module
/// doc): how to ask rpm about a root the peers (or imgbuild) installed.
pub fn rpm_in(root: &Path) -> Command {
    let mut cmd = Command::new("rpm");
    cmd.arg("--root")
        .arg(root)
        .args(["--dbpath", DBPATH])
        .env("HOME", "/nonexistent");
    cmd
}

/// The packages installed in `root`: `name-epoch:version-release.arch`, sorted, without
/// `gpg-pubkey`.
pub fn installed(root: &Path) -> Result<Vec<String>, String> {
    let out = run(rpm_in(root).args([
        "-qa",
        "--qf",
        "%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\\n",
    ]))?;
    let mut list: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with("gpg-pubkey-"))
        .map(String::from)
        .collect();
    list.sort();
    Ok(list)
}

/// A fresh scratch dir with an empty root holding the database directory libzypp looks for,
/// the key imported into it, and a `HOME` whose `.rpmmacros` points rpm (and dnf) at it.
fn fresh_root(repo: &RpmRepo, peer: &str) -> Result<(tempfile::TempDir, PathBuf, PathBuf), String> {
    let dir = scratch(&format!("rpm-{peer}"));
    let root = dir.path().join("root");
    let home = dir.path().join("home");
    for d in [root.join(DBPATH.trim_start_matches('/')), home.clone()] {
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(home.join(".rpmmacros"), format!("%_dbpath {DBPATH}\n"))
        .map_err(|e| format!("{}: {e}", home.display()))?;
    run(rpm_in(&root)
        .arg("--import")
        .arg(&repo.key)
        .env("HOME", &home))?;
    Ok((dir, root, home))
}

/// Runs `cmd` to its end (whatever its status), then lists what the root holds.
fn finish(cmd: &mut Command, dir: tempfile::TempDir, root: PathBuf) -> Result<PeerRun, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = installed(&root)?;
    Ok(PeerRun {
        _dir: dir,
        root,
        status: out.status,
        output,
        installed,
    })
}

/// The distribution's zypper installs `request` from the fixture into a fresh root: the key
/// imported into the root's rpm database first (so zypper trusts the repository's signature
/// without `--gpg-auto-import-keys`), the repository added with gpgcheck on, then a real
/// non-interactive install (scriptlets run), recommends installed only when `with_recommends`.
pub fn zypper_install(
    repo: &RpmRepo,
    request: &[&str],
    with_recommends: bool,
) -> Result<PeerRun, String> {
    let (dir, root, home) = fresh_root(repo, "zypper")?;
    // libzypp logs to the host's /var/log/zypper.log, also with --root.
    let log = dir.path().join("zypper.log");
    let zypper = || {
        let mut cmd = Command::new("zypper");
        cmd.args(["--non-interactive", "--root"])
            .arg(&root)
            .env("HOME", &home)
            .env("ZYPP_LOGFILE", &log);
        cmd
    };
    run(zypper()
        .args(["addrepo", "--gpgcheck"])
        .arg(repo.url())
        .arg(ALIAS))?;
    let mut cmd = zypper();
    cmd.arg("install").arg(if with_recommends {
        "--recommends"
    } else {
        "--no-recommends"
    });
    cmd.args(request);
    finish(&mut cmd, dir, root)
}

/// dnf installs `request` from the fixture into a fresh root (`--installroot`), with only the
/// fixture enabled, package and metadata signatures checked against its key, weak
/// dependencies as `with_recommends` says.
pub fn dnf_install(
    repo: &RpmRepo,
    request: &[&str],
    with_recommends: bool,
) -> Result<PeerRun, String> {
    let (dir, root, home) = fresh_root(repo, "dnf")?;
    let cache = root.join("var/cache/dnf");
    let mut cmd = Command::new("dnf");
    cmd.args(["-y", "--noplugins", "--releasever=1", "--installroot"])
        .arg(&root)
        .args(["--disablerepo=*", &format!("--enablerepo={ALIAS}")])
        .arg(format!("--repofrompath={ALIAS},{}", repo.file_url()))
        .arg(format!("--setopt={ALIAS}.gpgcheck=1"))
        .arg(format!("--setopt={ALIAS}.repo_gpgcheck=1"))
        .arg(format!(
            "--setopt={ALIAS}.gpgkey=file://{}",
            repo.key.display()
        ))
        .arg(format!(
            "--setopt=install_weak_deps={}",
            if with_recommends { "True" } else { "False" }
        ))
        .arg("install")
        .args(request)
        .env("HOME", &home);
    let run = finish(&mut cmd, dir, root);
    // dnf checks signatures with gpgme on a keyring in its cache, which starts a gpg-agent
    // there and leaves it running.
    for e in walkdir::WalkDir::new(&cache)
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_dir() && e.file_name() == "pubring" {
            stop_agent(e.path());
        }
    }
    run
}

/// What zypper installs for `request` (see [`zypper_install`]): `name-epoch:version-release.arch`,
/// sorted; an error with its output when it fails (also when a scriptlet failed).
pub fn zypper_choice(
    repo: &RpmRepo,
    request: &[&str],
    with_recommends: bool,
) -> Result<Vec<String>, String> {
    let run = zypper_install(repo, request, with_recommends)?;
    run.check("zypper")?;
    Ok(run.installed)
}

/// What dnf installs for `request` (see [`dnf_install`]), as [`zypper_choice`].
pub fn dnf_choice(
    repo: &RpmRepo,
    request: &[&str],
    with_recommends: bool,
) -> Result<Vec<String>, String> {
    let run = dnf_install(repo, request, with_recommends)?;
    run.check("dnf")?;
    Ok(run.installed)
}
