//! Installing `.rpm` files into a root tree, in rpm's transaction order.
//!
//! Payloads are unpacked natively through [`crate::confine`] (no path can escape the root), in
//! parallel where rpm's order allows it: packages are taken in install order, and a package with
//! a `%pre` scriptlet starts a new batch, since its scriptlet must run after everything before it
//! and before its own files (it typically creates the user its files belong to). Each batch is
//! unpacked in parallel (a path shipped twice is unpacked again in order, so the later package
//! wins as under rpm), then the batch's `%post` scriptlets run in order in the build sandbox, then
//! the next `%pre`. After the last batch the packages are registered in the root's rpm database
//! with rpm itself (`--justdb`: rpm writes only its database, from headers imgbuild has verified,
//! and runs nothing), and the `%posttrans` scriptlets run. The database is rpm's own, so
//! `rpm -qa` and `rpm -V -a` work in the image as after a `zypper install`.
//!
//! File ownership comes from the header's user and group names, looked up in the root's
//! `/etc/passwd` and `/etc/group` as they are when the package is unpacked (after its `%pre`),
//! with root for a name that does not exist — rpm's rule.

use super::install::{SCRIPT_ENV, output_tail};
use super::prepared::EpochRecord;
use crate::confine::Root;
use crate::rpm::header::{RpmFile, RpmFileError, Scriptlet, Scriptlets};
use crate::rpm::payload::{self, PayloadError, PayloadOptions};
use crate::sandbox::{Profile, Sandbox, SandboxError, Stdio};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `RPMTAG_BUILDTIME`: when the package was built (seconds since the epoch).
const BUILDTIME: u32 = 1006;

/// Errors while installing rpm packages.
#[derive(Debug, thiserror::Error)]
pub enum RpmInstallError {
    /// A package could not be read, or its digests do not match.
    #[error(transparent)]
    File(#[from] RpmFileError),
    /// A payload could not be unpacked.
    #[error(transparent)]
    Payload(Box<PayloadError>),
    /// The root could not be opened or written.
    #[error("{path}: {source}")]
    Root {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: crate::confine::ConfineError,
    },
    /// A scriptlet could not be started.
    #[error("{package}: running its %{which} scriptlet: {source}")]
    Sandbox {
        /// `name-version-release.arch`.
        package: String,
        /// `pre`, `post`, `posttrans`, ….
        which: &'static str,
        /// The underlying error.
        source: SandboxError,
    },
    /// A scriptlet failed.
    #[error("{package}: %{which} scriptlet failed (exit {code}):\n{output}")]
    Scriptlet {
        /// `name-version-release.arch`.
        package: String,
        /// `pre`, `post`, `posttrans`, ….
        which: &'static str,
        /// Its exit code.
        code: i32,
        /// The last lines it printed.
        output: String,
    },
    /// A scriptlet in a language imgbuild cannot run.
    #[error(
        "{package}: its %{which} scriptlet is written in {interpreter}, which imgbuild cannot run (only scriptlets run by a program in the image, such as /bin/sh)"
    )]
    Interpreter {
        /// `name-version-release.arch`.
        package: String,
        /// `pre`, `post`, ….
        which: &'static str,
        /// The interpreter (`<lua>`).
        interpreter: String,
    },
    /// A name to remove cannot name an rpm package.
    #[error("package {name:?} cannot be removed from {root}: not an rpm package name")]
    BadName {
        /// The name given.
        name: String,
        /// The root tree.
        root: PathBuf,
    },
    /// The package database could not be written.
    #[error(transparent)]
    Database(#[from] super::rpmdb::RpmDbError),
}

/// How to install.
#[derive(Debug, Clone, Default)]
pub struct RpmInstallOptions {
    /// KIWI's `<rpm-excludedocs>`: leave out files marked `%doc` (rpm `--excludedocs`).
    pub exclude_docs: bool,
    /// Show the output of successful scriptlets on stderr.
    pub verbose: bool,
    /// The packages' date (the newest build time of the whole package set): scriptlets get it
    /// as `SOURCE_DATE_EPOCH`, and the rpm database records it as the install time, so the tree
    /// does not depend on the day it was built.
    pub epoch: u64,
}

/// What an install did.
#[derive(Debug, Clone, Default)]
pub struct RpmInstallReport {
    /// Packages installed (`name-version-release.arch`), in install order.
    pub packages: Vec<String>,
    /// Scriptlets run, as `package %which`.
    pub scriptlets: Vec<String>,
}

/// Install `rpms` (already in rpm's transaction order, their files verified against the
/// repository metadata) into `root`.
pub fn install(
    root: &Path,
    rpms: &[PathBuf],
    opts: &RpmInstallOptions,
) -> Result<RpmInstallReport, RpmInstallError> {
    let opened: Vec<RpmFile> = rpms
        .par_iter()
        .map(|p| {
            let f = RpmFile::open(p)?;
            f.verify()?;
            Ok(f)
        })
        .collect::<Result<_, RpmFileError>>()?;
    let scripts: Vec<Scriptlets> = opened
        .iter()
        .map(RpmFile::scriptlets)
        .collect::<Result<_, _>>()?;
    let r = Root::open(root).map_err(|source| RpmInstallError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    // Refuse what cannot run before anything is unpacked.
    for (f, s) in opened.iter().zip(&scripts) {
        for (which, s) in install_scriptlets(s) {
            if s.prog.first().is_some_and(|p| p.starts_with('<')) {
                return Err(RpmInstallError::Interpreter {
                    package: f.nevra(),
                    which,
                    interpreter: s.prog[0].clone(),
                });
            }
        }
    }
    let mut report = RpmInstallReport::default();

    // %pretrans runs before anything of the transaction is unpacked.
    for (f, s) in opened.iter().zip(&scripts) {
        if let Some(s) = &s.pretrans {
            run_scriptlet(root, &r, f, "pretrans", s, opts, &mut report)?;
        }
    }

    let mut start = 0;
    while start < opened.len() {
        // A batch: the package at `start` (whose %pre, if any, runs first) and the following
        // packages up to the next one with a %pre.
        let end = (start + 1..opened.len())
            .find(|&i| scripts[i].pre.is_some())
            .unwrap_or(opened.len());
        if let Some(s) = &scripts[start].pre {
            run_scriptlet(root, &r, &opened[start], "pre", s, opts, &mut report)?;
        }
        unpack_batch(root, &opened[start..end], opts)?;
        for i in start..end {
            if let Some(s) = &scripts[i].post {
                run_scriptlet(root, &r, &opened[i], "post", s, opts, &mut report)?;
            }
        }
        start = end;
    }

    super::rpmdb::register(root, rpms, opts.exclude_docs, opts.epoch)?;

    for (f, s) in opened.iter().zip(&scripts) {
        if let Some(s) = &s.posttrans {
            run_scriptlet(root, &r, f, "posttrans", s, opts, &mut report)?;
        }
    }
    report.packages = opened.iter().map(RpmFile::nevra).collect();
    Ok(report)
}

/// The install-time scriptlets of a package with their names.
fn install_scriptlets(s: &Scriptlets) -> Vec<(&'static str, &Scriptlet)> {
    [
        ("pretrans", &s.pretrans),
        ("pre", &s.pre),
        ("post", &s.post),
        ("posttrans", &s.posttrans),
    ]
    .into_iter()
    .filter_map(|(w, s)| s.as_ref().map(|s| (w, s)))
    .collect()
}

/// Unpacks `batch` in parallel; a path shipped by two of them is unpacked again in order, so
/// the later package's copy is the one left, as rpm leaves it.
fn unpack_batch(
    root: &Path,
    batch: &[RpmFile],
    opts: &RpmInstallOptions,
) -> Result<(), RpmInstallError> {
    let ids = Ids::read(root);
    let unpack_one = |i: usize| -> Result<payload::UnpackReport, RpmInstallError> {
        let owners = |user: &str, group: &str| ids.lookup(user, group);
        let popts = PayloadOptions {
            owners: &owners,
            exclude_docs: opts.exclude_docs,
            chown: true,
        };
        let r = Root::open(root).map_err(|source| RpmInstallError::Root {
            path: root.to_path_buf(),
            source,
        })?;
        // The payload error names the package file.
        payload::unpack(&batch[i], &r, &popts).map_err(|e| RpmInstallError::Payload(Box::new(e)))
    };
    let reports = (0..batch.len())
        .into_par_iter()
        .map(unpack_one)
        .collect::<Result<Vec<_>, _>>()?;
    let mut shippers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, rep) in reports.iter().enumerate() {
        for f in &rep.files {
            shippers.entry(f.as_str()).or_default().push(i);
        }
    }
    let mut again: Vec<usize> = shippers
        .values()
        .filter(|v| v.len() > 1)
        .flatten()
        .copied()
        .collect();
    again.sort_unstable();
    again.dedup();
    for i in again {
        unpack_one(i)?;
    }
    Ok(())
}

/// User and group ids by name, from the root's `/etc/passwd` and `/etc/group`.
struct Ids {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Ids {
    /// Reads the root's account files through [`Root`] (a missing or unreadable file: no names).
    fn read(root: &Path) -> Ids {
        let text = |rel: &str| -> String {
            let Ok(r) = Root::open(root) else {
                return String::new();
            };
            let mut s = String::new();
            if let Ok(mut f) = r.open_file(rel) {
                let _ = std::io::Read::read_to_string(&mut f, &mut s);
            }
            s
        };
        let parse = |text: String| -> HashMap<String, u32> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let id = f.nth(1)?.parse().ok()?;
                    Some((name.to_string(), id))
                })
                .collect()
        };
        Ids {
            users: parse(text("etc/passwd")),
            groups: parse(text("etc/group")),
        }
    }

    /// The ids of `user` and `group`; root (0) for a name the root does not know, as rpm does.
    fn lookup(&self, user: &str, group: &str) -> (u32, u32) {
        (
            self.users.get(user).copied().unwrap_or(0),
            self.groups.get(group).copied().unwrap_or(0),
        )
    }
}

/// One scriptlet to run: of which package, which one, its program and body, and the instance
/// count rpm passes it (none for `%pretrans`/`%posttrans`).
struct Job<'a> {
    package: String,
    name: &'a str,
    version: &'a str,
    release: &'a str,
    which: &'static str,
    prog: &'a [String],
    body: Option<&'a str>,
    count: Option<u32>,
}

/// Runs one install scriptlet of `f` (instance count 1: a fresh install).
fn run_scriptlet(
    root: &Path,
    r: &Root,
    f: &RpmFile,
    which: &'static str,
    s: &Scriptlet,
    opts: &RpmInstallOptions,
    report: &mut RpmInstallReport,
) -> Result<(), RpmInstallError> {
    let job = Job {
        package: f.nevra(),
        name: f.name(),
        version: f.version(),
        release: f.release(),
        which,
        prog: &s.prog,
        body: s.body.as_deref(),
        count: (which != "pretrans" && which != "posttrans").then_some(1),
    };
    run_job(root, r, &job, opts)?;
    report.scriptlets.push(format!("{} %{which}", job.package));
    Ok(())
}

/// Runs a removal scriptlet (`%preun`/`%postun`, instance count 0: the package goes).
fn run_removal_scriptlet(
    root: &Path,
    name: &str,
    which: &'static str,
    s: &super::rpmdb::StoredScriptlet,
    opts: &RpmInstallOptions,
) -> Result<(), RpmInstallError> {
    if s.prog.first().is_some_and(|p| p.starts_with('<')) {
        return Err(RpmInstallError::Interpreter {
            package: name.to_string(),
            which,
            interpreter: s.prog[0].clone(),
        });
    }
    let r = Root::open(root).map_err(|source| RpmInstallError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let job = Job {
        package: name.to_string(),
        name,
        version: "",
        release: "",
        which,
        prog: &s.prog,
        body: s.body.as_deref(),
        count: Some(0),
    };
    run_job(root, &r, &job, opts)
}

/// Runs a scriptlet as rpm does, in the build sandbox: the body written to a file under
/// `/var/tmp` in the root and run by its interpreter (`/bin/sh` when none is named) with the
/// file and the instance count as arguments; a scriptlet without a body runs its program with
/// the count.
fn run_job(
    root: &Path,
    r: &Root,
    job: &Job<'_>,
    opts: &RpmInstallOptions,
) -> Result<(), RpmInstallError> {
    let mut argv: Vec<String> = if job.prog.is_empty() {
        vec!["/bin/sh".to_string()]
    } else {
        job.prog.to_vec()
    };
    let script_rel = format!("var/tmp/rpm-tmp.imgbuild.{}.{}", job.name, job.which);
    let root_err = |source| RpmInstallError::Root {
        path: root.join(&script_rel),
        source,
    };
    if let Some(body) = job.body {
        r.create_dir_all("var/tmp", 0o1777).map_err(root_err)?;
        let mut file = r.create_file(&script_rel, 0o600).map_err(root_err)?;
        file.write_all(body.as_bytes()).map_err(|source| {
            root_err(crate::confine::ConfineError::Io {
                op: "write file",
                path: PathBuf::from(&script_rel),
                source,
            })
        })?;
        argv.push(format!("/{script_rel}"));
    }
    if let Some(n) = job.count {
        argv.push(n.to_string());
    }
    let mut sb = Sandbox::new(root, &argv)
        .profile(Profile::Build)
        .stdin(Stdio::Null)
        .stdout(Stdio::Capture)
        .stderr(Stdio::Capture);
    for (k, v) in SCRIPT_ENV {
        sb = sb.env(*k, *v);
    }
    sb = sb
        .env("RPM_PACKAGE_NAME", job.name)
        .env("RPM_PACKAGE_VERSION", job.version)
        .env("RPM_PACKAGE_RELEASE", job.release)
        .env("SOURCE_DATE_EPOCH", opts.epoch.to_string());
    let out = sb.run();
    if job.body.is_some() {
        let _ = r.remove(&script_rel);
    }
    let out = out.map_err(|source| RpmInstallError::Sandbox {
        package: job.package.clone(),
        which: job.which,
        source,
    })?;
    if !out.success() {
        return Err(RpmInstallError::Scriptlet {
            package: job.package.clone(),
            which: job.which,
            code: out.code,
            output: output_tail(&out),
        });
    }
    if opts.verbose {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&out.stdout);
        let _ = err.write_all(&out.stderr);
    }
    Ok(())
}

/// The date of the packages in `rpms`: the newest build time in their headers (rpm packages
/// carry no changelog file to read it from); an rpm that cannot be read is skipped, since it was
/// installed from and so is whole.
pub fn packages_epoch(rpms: &[PathBuf]) -> EpochRecord {
    let built = rpms
        .iter()
        .filter_map(|p| RpmFile::open(p).ok())
        .filter_map(|f| f.tag_ints(BUILDTIME).ok().flatten())
        .filter_map(|t| t.first().copied())
        .max()
        .unwrap_or(0);
    EpochRecord::from_builds(built)
}

/// The date of an rpm root's packages: the newest build time of `rpms` (the ones installed now)
/// and of what the root's database already holds (a derived image's base).
pub fn root_epoch(root: &Path, rpms: &[PathBuf]) -> EpochRecord {
    let base = super::rpmdb::installed(root)
        .unwrap_or_default()
        .iter()
        .map(|p| p.buildtime)
        .max()
        .unwrap_or(0);
    EpochRecord::from_builds(packages_epoch(rpms).seconds.max(base))
}

/// Removes `uninstall` and `delete` packages from the root, as KIWI does for rpm: `delete` ones
/// forced (no dependency check, no scriptlet), `uninstall` ones with their `%preun`/`%postun`
/// scriptlets run in the build sandbox, refused while another package still requires them. A
/// listed package that is not installed is reported and skipped.
pub fn remove_packages(
    root: &Path,
    uninstall: &[String],
    delete: &[String],
    opts: &RpmInstallOptions,
) -> Result<(), RpmInstallError> {
    for name in uninstall.iter().chain(delete) {
        // rpm names are [A-Za-z0-9_+.-]; anything else cannot name a package, and must not
        // reach rpm as an option.
        let valid = !name.is_empty()
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '-'));
        if !valid {
            return Err(RpmInstallError::BadName {
                name: name.clone(),
                root: root.to_path_buf(),
            });
        }
    }
    let installed: Vec<String> = super::rpmdb::installed(root)?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let present = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|n| {
                let here = installed.contains(n);
                if !here {
                    eprintln!("imgbuild: {n} is not installed, not removed");
                }
                here
            })
            .cloned()
            .collect()
    };
    let uninstall = present(uninstall);
    if !uninstall.is_empty() {
        let scripts = super::rpmdb::removal_scriptlets(root, &uninstall)?;
        for (name, which, s) in scripts.iter().filter(|(_, w, _)| *w == "preun") {
            run_removal_scriptlet(root, name, which, s, opts)?;
        }
        super::rpmdb::erase(root, &uninstall, false)?;
        for (name, which, s) in scripts.iter().filter(|(_, w, _)| *w == "postun") {
            run_removal_scriptlet(root, name, which, s, opts)?;
        }
    }
    let delete = present(delete);
    if !delete.is_empty() {
        super::rpmdb::erase(root, &delete, true)?;
    }
    Ok(())
}
