//! Installing `.deb` files into a root tree.
//!
//! The data of every package is unpacked natively and in parallel through [`crate::confine`]
//! (no path can escape the root), each package is recorded in dpkg's database as dpkg
//! `--unpack` would have left it ([`super::dpkgdb`]), and then one sandboxed shell runs the
//! `preinst install` scripts (base-passwd's first, since the others need its `/etc/passwd`),
//! `dpkg --configure -a` (dpkg orders the `postinst` runs by dependencies, installs the
//! conffiles, and activates and processes the packages' own triggers), and the file triggers of
//! packages installed before that the new packages' paths activate. This is the order KIWI and
//! mmdebstrap use for the essential set, applied to every phase: the result is dpkg's own
//! database, checked clean by `dpkg --audit` and `dpkg -V`.

use super::RootfsError;
use super::dpkgdb::{DpkgDb, UnpackedPackage};
use super::prepared::{EpochRecord, EpochSource};
use super::profile::shell_quote;
use crate::apt::deb::{Deb, DebError};
use crate::confine::{EntryKind, Root, UnpackOptions};
use crate::sandbox::{Outcome, Profile, Sandbox, SandboxError, Stdio};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors while installing packages.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A package could not be read or unpacked.
    #[error(transparent)]
    Deb(#[from] DebError),
    /// The root could not be opened.
    #[error("{path}: {source}")]
    Root {
        /// The root tree.
        path: PathBuf,
        /// The underlying error.
        source: crate::confine::ConfineError,
    },
    /// A file of the root could not be written.
    #[error(transparent)]
    Rootfs(#[from] Box<RootfsError>),
    /// The sandbox could not run the configure step.
    #[error("configuring packages in {root}: {source}")]
    Sandbox {
        /// The root tree.
        root: PathBuf,
        /// The underlying error.
        source: SandboxError,
    },
    /// A maintainer script or `dpkg --configure` failed.
    #[error("configuring packages in {root} failed (exit {code}):\n{output}")]
    Configure {
        /// The root tree.
        root: PathBuf,
        /// The exit code of the configure shell.
        code: i32,
        /// The last lines the scripts printed.
        output: String,
    },
}

impl From<super::dpkgdb::DpkgDbError> for InstallError {
    fn from(e: super::dpkgdb::DpkgDbError) -> Self {
        InstallError::Rootfs(Box::new(RootfsError::DpkgDb(e)))
    }
}

/// The environment maintainer scripts run with: no prompts, C locale, a plain PATH.
pub const SCRIPT_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
    ("LC_ALL", "C"),
    ("LANGUAGE", "C"),
    ("LANG", "C"),
    ("HOME", "/root"),
];

/// The newest mtime of any `/usr/share/doc/*/changelog*` file: every Debian package ships one,
/// dated by its upload, so the same package set always gives the same epoch. Read through
/// [`Root`], since a derived build's tree comes from an untrusted base: a symlinked
/// `/usr/share/doc` resolves inside the root, never to the host's files.
pub fn package_epoch(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = Root::open(root) else {
        return 0;
    };
    let doc = Path::new("usr/share/doc");
    let mut newest = 0i64;
    for dir in root.read_dir(doc).unwrap_or_default() {
        let dir = doc.join(dir);
        for file in root.read_dir(&dir).unwrap_or_default() {
            if file.to_string_lossy().starts_with("changelog")
                && let Ok(m) = root.lstat(dir.join(&file))
                && m.is_file()
            {
                newest = newest.max(m.mtime());
            }
        }
    }
    // Before 1970 (a clamp, not a wrap): the epoch itself.
    u64::try_from(newest).unwrap_or(0)
}

/// The date of the packages installed in `root` from `debs`: the newest changelog in the tree
/// ([`package_epoch`]), else the newest build time of the `.deb` files, else 0, with where it
/// came from. A `.deb` that cannot be read is skipped: it was installed from, so it is whole.
pub fn packages_epoch(root: &Path, debs: &[PathBuf]) -> EpochRecord {
    let changelogs = package_epoch(root);
    if changelogs > 0 {
        return EpochRecord {
            seconds: changelogs,
            source: EpochSource::Changelogs,
        };
    }
    let built = debs
        .iter()
        .filter_map(|d| crate::apt::deb::built(d).ok())
        .max()
        .unwrap_or(0);
    EpochRecord::from_builds(built)
}

/// What an install did.
#[derive(Debug, Clone, Default)]
pub struct InstallReport {
    /// Packages installed, by dpkg key, in the order given.
    pub packages: Vec<String>,
    /// Paths shipped by more than one of the packages (the later package's copy was kept).
    pub overlaps: Vec<String>,
    /// Notes from unpacking (skipped devices, attributes the kernel refused).
    pub notes: Vec<String>,
}

/// Install `debs` (in dependency order: Pre-Depends first) into the root at `root`, which must
/// already hold a usable `dpkg` or receive one among `debs`; `verbose`: see [`run_in_sandbox`].
pub fn install(
    root: &Path,
    debs: &[PathBuf],
    verbose: bool,
) -> Result<InstallReport, InstallError> {
    let opened: Vec<Deb> = debs
        .par_iter()
        .map(Deb::open)
        .collect::<Result<_, DebError>>()?;
    let open_root = || {
        Root::open(root).map_err(|source| InstallError::Root {
            path: root.to_path_buf(),
            source,
        })
    };
    // dpkg leaves existing directories alone and follows directory symlinks (merged /usr).
    let dpkg_like = UnpackOptions::for_package;
    let mut reports = unpack_largest_first(&opened, root, dpkg_like)?;

    // Parallel unpacking leaves a path shipped by two packages in a racy state: unpack the
    // packages involved again, in order, so the later one wins as it would under dpkg.
    let mut owners: BTreeMap<&Path, Vec<usize>> = BTreeMap::new();
    for (i, rep) in reports.iter().enumerate() {
        for e in &rep.entries {
            if e.kind != EntryKind::Dir {
                owners.entry(e.path.as_path()).or_default().push(i);
            }
        }
    }
    let mut again: Vec<usize> = Vec::new();
    let mut overlaps = Vec::new();
    for (path, pkgs) in &owners {
        if pkgs.len() > 1 {
            overlaps.push(path.to_string_lossy().into_owned());
            again.extend(pkgs);
        }
    }
    again.sort_unstable();
    again.dedup();
    if !again.is_empty() {
        let r = open_root()?;
        for &i in &again {
            reports[i] = opened[i].unpack_data(&r, &dpkg_like())?;
        }
    }

    settle_shared_dirs(root, &reports)?;

    let mut notes = Vec::new();
    let mut unpacked = Vec::with_capacity(opened.len());
    for (deb, rep) in opened.iter().zip(reports) {
        notes.extend(
            rep.notes
                .iter()
                .map(|n| format!("{}: {n}", deb.path().display())),
        );
        unpacked.push(UnpackedPackage {
            control: deb.control().clone(),
            members: deb
                .control_members()
                .filter(|(name, _)| *name != "control")
                .map(|(name, data)| (name.to_string(), data.to_vec()))
                .collect(),
            files: rep
                .entries
                .iter()
                .filter(|e| e.kind != EntryKind::Whiteout && e.kind != EntryKind::Opaque)
                .map(|e| e.path.to_string_lossy().into_owned())
                .collect(),
        });
    }
    let db = DpkgDb::new(root);
    db.register_unpacked(&unpacked)?;
    let script = configure_script(root, &unpacked)?;
    run_script(root, &script, verbose)?;
    Ok(InstallReport {
        packages: unpacked
            .iter()
            .map(super::dpkgdb::UnpackedPackage::db_key)
            .collect::<Result<_, _>>()?,
        overlaps,
        notes,
    })
}

/// Unpack every package's data into `root`, in parallel, returning the reports in the order of
/// `debs`. The packages are taken largest first (by `Installed-Size`) from one shared queue, so the
/// biggest ones do not start last and leave a core idle at the end (longest-processing-time-first
/// scheduling); the order does not show in the tree, which parallel unpacking already makes
/// independent of timing (see [`install`]). On an error no further package starts, and of the
/// packages that failed the first in `debs` order is reported.
fn unpack_largest_first(
    debs: &[Deb],
    root: &Path,
    opts: fn() -> UnpackOptions<'static>,
) -> Result<Vec<crate::confine::UnpackReport>, InstallError> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let size = |d: &Deb| {
        d.control()
            .get("Installed-Size")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut order: Vec<usize> = (0..debs.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(size(&debs[i])), i));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<_, InstallError>>>> =
        debs.iter().map(|_| Mutex::new(None)).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, debs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        break;
                    };
                    let r = Root::open(root)
                        .map_err(|source| InstallError::Root {
                            path: root.to_path_buf(),
                            source,
                        })
                        .and_then(|h| Ok(debs[i].unpack_data(&h, &opts())?));
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    *slots[i]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                }
            });
        }
    });
    let mut reports = Vec::with_capacity(debs.len());
    let mut skipped = false;
    for slot in slots {
        match slot
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(Ok(r)) => reports.push(r),
            Some(Err(e)) => return Err(e),
            None => skipped = true,
        }
    }
    // Packages are skipped only after a failure, which returned above.
    debug_assert!(!skipped);
    Ok(reports)
}

/// A directory shipped by several packages ends up with the mtime of whichever parallel unpack
/// touched it last. Give it the mtime the first package (in install order) gives it, so the tree
/// does not depend on thread timing.
fn settle_shared_dirs(
    root: &Path,
    reports: &[crate::confine::UnpackReport],
) -> Result<(), InstallError> {
    let mut first: BTreeMap<&Path, (usize, i64)> = BTreeMap::new();
    for rep in reports {
        for e in &rep.entries {
            if let Some(a) = e.dir_attrs {
                first
                    .entry(e.path.as_path())
                    .and_modify(|(n, _)| *n += 1)
                    .or_insert((1, a.mtime));
            }
        }
    }
    let r = Root::open(root).map_err(|source| InstallError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    for (path, (count, mtime)) in first {
        if count < 2 {
            continue;
        }
        // Merged-/usr links stand where packages ship directories: leave them.
        match r.lstat(path) {
            Ok(m) if m.is_dir() => {}
            _ => continue,
        }
        r.set_mtime(path, mtime, 0)
            .map_err(|source| InstallError::Root {
                path: root.join(path),
                source,
            })?;
    }
    Ok(())
}

/// The shell run in the sandbox after unpacking: preinsts, `dpkg --configure -a`, then the file
/// triggers dpkg would have activated while unpacking, processed at once.
///
/// The explicit triggers of the packages' `triggers` members (`activate-noawait ldconfig` of every
/// shared library) are not activated here: dpkg activates a package's explicit triggers itself
/// when it configures it, and `--configure -a` processes them at its end, after the last package
/// is configured. Activating them again afterwards (one `dpkg-trigger` per library) only ran the
/// same trigger a second time on the same tree.
fn configure_script(root: &Path, pkgs: &[UnpackedPackage]) -> Result<String, InstallError> {
    let mut s = String::from(
        "set -e\n\
         DPKG_RUNNING_VERSION=$(dpkg-query -W -f='${Version}' dpkg 2>/dev/null || true)\n\
         export DPKG_RUNNING_VERSION DPKG_ROOT=\n",
    );
    let mut with_preinst: Vec<&UnpackedPackage> = pkgs
        .iter()
        .filter(|p| p.members.contains_key("preinst"))
        .collect();
    // base-passwd's preinst writes /etc/passwd and /etc/group, which other scripts need.
    with_preinst.sort_by_key(|p| p.name().map_or(true, |n| n != "base-passwd"));
    for p in with_preinst {
        let key = p.db_key()?;
        let arch = p.control.get("Architecture").unwrap_or("all");
        s.push_str(&format!(
            "DPKG_MAINTSCRIPT_PACKAGE={} DPKG_MAINTSCRIPT_ARCH={} DPKG_MAINTSCRIPT_NAME=preinst /var/lib/dpkg/info/{}.preinst install\n",
            shell_quote(p.name()?),
            shell_quote(arch),
            shell_quote(&key)
        ));
    }
    s.push_str("dpkg --configure -a\n");
    let activations = file_trigger_activations(root, pkgs)?;
    if !activations.is_empty() {
        for (trigger, pkg) in &activations {
            s.push_str(&format!(
                "dpkg-trigger --no-await --by-package={} {}\n",
                shell_quote(pkg),
                shell_quote(trigger)
            ));
        }
        s.push_str("dpkg --triggers-only --pending\n");
    }
    Ok(s)
}

/// The file triggers (`/var/lib/dpkg/triggers/File`, the interests of the packages installed
/// before) that a path of the new packages falls under, as dpkg would activate them when
/// unpacking: each trigger once, by the first package (in `pkgs` order) that activates it. The
/// activating package does not matter beyond that, since the activations do not await.
///
/// The new packages' own interests are not in that file yet; dpkg would not need them either,
/// since a package that is configured after its trigger was activated has its pending triggers
/// cleared by its `postinst configure`.
fn file_trigger_activations(
    root: &Path,
    pkgs: &[UnpackedPackage],
) -> Result<BTreeMap<String, String>, InstallError> {
    let interests_path = root.join("var/lib/dpkg/triggers/File");
    let interests: Vec<String> = match std::fs::read_to_string(&interests_path) {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(InstallError::Rootfs(Box::new(RootfsError::Io {
                path: interests_path,
                source,
            })));
        }
    };
    let mut out = BTreeMap::new();
    for p in pkgs {
        for interest in &interests {
            if out.contains_key(interest) {
                continue;
            }
            let under = format!("{interest}/");
            let hit = p.files.iter().any(|f| {
                let f = super::dpkgdb::list_path(f);
                f == *interest || f.starts_with(&under)
            });
            if hit {
                out.insert(interest.clone(), p.name()?.to_string());
            }
        }
    }
    Ok(out)
}

/// Run `script` with `sh` in the build sandbox of `root`, with services kept from starting.
fn run_script(root: &Path, script: &str, verbose: bool) -> Result<(), InstallError> {
    let policy = root.join("usr/sbin/policy-rc.d");
    let had_policy = policy.symlink_metadata().is_ok();
    if !had_policy {
        write_policy_rc(root)?;
    }
    let result = run_in_sandbox(root, script, None, verbose);
    if !had_policy {
        let _ = std::fs::remove_file(&policy);
    }
    let out = result?;
    if out.success() {
        return Ok(());
    }
    Err(InstallError::Configure {
        root: root.to_path_buf(),
        code: out.code,
        output: output_tail(&out),
    })
}

/// The last 30 lines a sandboxed command printed (stdout, then stderr), for error messages.
pub fn output_tail(out: &Outcome) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `policy-rc.d` exiting 101 tells invoke-rc.d not to start services during the build.
fn write_policy_rc(root: &Path) -> Result<(), InstallError> {
    let r = Root::open(root).map_err(|source| InstallError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let wrap = |source| InstallError::Root {
        path: root.join("usr/sbin/policy-rc.d"),
        source,
    };
    r.create_dir_all("usr/sbin", 0o755).map_err(wrap)?;
    let mut f = r.create_file("usr/sbin/policy-rc.d", 0o755).map_err(wrap)?;
    std::io::Write::write_all(&mut f, b"#!/bin/sh\nexit 101\n").map_err(|source| {
        InstallError::Rootfs(Box::new(RootfsError::Io {
            path: root.join("usr/sbin/policy-rc.d"),
            source,
        }))
    })?;
    r.chmod("usr/sbin/policy-rc.d", 0o755).map_err(wrap)?;
    Ok(())
}

/// Run a shell script in the build sandbox of `root`, capturing its output; with a `timeout`,
/// a script still running after it is killed ([`SandboxError::TimedOut`]). `verbose`: the
/// output of a successful script goes to stderr too (a failure always carries it in its error).
pub fn run_in_sandbox(
    root: &Path,
    script: &str,
    timeout: Option<std::time::Duration>,
    verbose: bool,
) -> Result<Outcome, InstallError> {
    let out = run_in_sandbox_quiet(root, script, timeout)?;
    if out.success() && verbose {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&out.stdout);
        let _ = err.write_all(&out.stderr);
    }
    Ok(out)
}

fn run_in_sandbox_quiet(
    root: &Path,
    script: &str,
    timeout: Option<std::time::Duration>,
) -> Result<Outcome, InstallError> {
    // No signal reaches the script: when imgbuild is told to stop, the build sandbox kills the
    // shell (PID 1 of its namespace) and everything it started.
    let mut sb = Sandbox::new(root, ["/bin/sh", "-c", script])
        .profile(Profile::Build)
        .stdin(Stdio::Null)
        .stdout(Stdio::Capture)
        .stderr(Stdio::Capture);
    if let Some(t) = timeout {
        sb = sb.timeout(t);
    }
    for (k, v) in SCRIPT_ENV {
        sb = sb.env(*k, *v);
    }
    // Scripts that stamp the date into files (pwconv's last-change day in /etc/shadow, for
    // one) take SOURCE_DATE_EPOCH instead of the clock: the epoch of the packages unpacked so
    // far, as `create` dates the image, so the tree does not depend on the day it was built.
    sb = sb.env("SOURCE_DATE_EPOCH", package_epoch(root).to_string());
    sb.run().map_err(|source| InstallError::Sandbox {
        root: root.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::{configure_script, package_epoch, packages_epoch};
    use crate::rootfs::dpkgdb::UnpackedPackage;
    use crate::rootfs::prepared::{EpochRecord, EpochSource};
    use std::fs;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    fn changelog(path: &Path, secs: u64) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = fs::File::create(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn the_epoch_is_the_newest_changelog_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        changelog(&root.join("usr/share/doc/a/changelog.Debian.gz"), 1_000);
        changelog(&root.join("usr/share/doc/b/changelog.gz"), 2_000);
        changelog(&root.join("usr/share/doc/b/NEWS.gz"), 9_000);
        std::os::unix::fs::symlink("b", root.join("usr/share/doc/c")).unwrap();
        assert_eq!(package_epoch(&root), 2_000);

        // A hostile tree's absolute symlink resolves inside the root, never to the host.
        let host = t.path().join("host-doc");
        changelog(&host.join("x/changelog.gz"), 5_000);
        let other = t.path().join("other");
        changelog(&other.join("usr/share/doc/x/changelog.gz"), 3_000);
        fs::create_dir_all(other.join("host-doc/x")).unwrap();
        fs::remove_dir_all(other.join("usr/share/doc")).unwrap();
        std::os::unix::fs::symlink(&host, other.join("usr/share/doc")).unwrap();
        assert_eq!(
            package_epoch(&other),
            0,
            "{} must not be read",
            host.display()
        );
        assert_eq!(package_epoch(&t.path().join("missing")), 0);
    }

    /// A `.deb`-shaped ar archive whose first member is dated `secs`.
    fn deb(path: &Path, secs: u64) {
        let mut b = ar::Builder::new(fs::File::create(path).unwrap());
        let mut h = ar::Header::new(b"debian-binary".to_vec(), 4);
        h.set_mtime(secs);
        b.append(&h, &b"2.0\n"[..]).unwrap();
    }

    #[test]
    fn without_changelogs_the_packages_build_times_date_the_image_and_say_so() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("usr/share/doc/a")).unwrap();
        let (a, b) = (t.path().join("a.deb"), t.path().join("b.deb"));
        deb(&a, 7_000);
        deb(&b, 8_000);
        let unreadable = t.path().join("missing.deb");
        let debs = [a, unreadable, b];
        assert_eq!(
            packages_epoch(&root, &debs),
            EpochRecord {
                seconds: 8_000,
                source: EpochSource::PackageBuilds
            }
        );
        assert_eq!(packages_epoch(&root, &[]).source, EpochSource::Unknown);
        changelog(&root.join("usr/share/doc/a/changelog.gz"), 1_000);
        assert_eq!(
            packages_epoch(&root, &debs),
            EpochRecord {
                seconds: 1_000,
                source: EpochSource::Changelogs
            }
        );
    }

    fn unpacked(name: &str, files: &[&str], triggers: Option<&str>) -> UnpackedPackage {
        let text = format!("Package: {name}\nVersion: 1\nArchitecture: amd64\n");
        UnpackedPackage {
            control: crate::apt::control::parse(&text).unwrap().remove(0),
            members: triggers
                .map(|t| ("triggers".to_string(), t.as_bytes().to_vec()))
                .into_iter()
                .collect(),
            files: files.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_script_activates_each_hit_file_trigger_once_and_leaves_explicit_ones_to_dpkg() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let pkgs = [
            unpacked(
                "liba",
                &["./usr/lib/liba.so.1"],
                Some("activate-noawait ldconfig\n"),
            ),
            unpacked("b", &["./usr/share/foo/", "./usr/share/foo/b"], None),
            unpacked("c", &["./usr/share/foo/c", "./usr/share/bar"], None),
        ];
        // A fresh root: no interests yet, so nothing to activate after configuring.
        let script = configure_script(root, &pkgs).unwrap();
        assert!(script.contains("dpkg --configure -a\n"), "{script}");
        assert!(!script.contains("dpkg-trigger"), "{script}");
        assert!(!script.contains("--triggers-only"), "{script}");

        // The interests of the packages installed before: b and c both ship files under the
        // first, nothing is under the second. The explicit ldconfig trigger is dpkg's to activate
        // (it does when configuring liba), so the script never names it.
        let triggers = root.join("var/lib/dpkg/triggers");
        std::fs::create_dir_all(&triggers).unwrap();
        std::fs::write(
            triggers.join("File"),
            "/usr/share/foo i/noawait\n/usr/lib32 base-files/noawait\n",
        )
        .unwrap();
        let script = configure_script(root, &pkgs).unwrap();
        let activations: Vec<&str> = script
            .lines()
            .filter(|l| l.starts_with("dpkg-trigger"))
            .collect();
        assert_eq!(
            activations,
            ["dpkg-trigger --no-await --by-package='b' '/usr/share/foo'"]
        );
        assert!(!script.contains("ldconfig"), "{script}");
        assert!(
            script.ends_with("dpkg --triggers-only --pending\n"),
            "{script}"
        );
    }
}
