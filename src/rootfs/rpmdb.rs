//! The root's rpm database, written and read with the host's `rpm` (`--root`, `--dbpath`): the
//! database is rpm's own sqlite file, so the image's rpm, zypper and dnf read it as theirs.
//! rpm only touches the database here: packages are registered with `--justdb` (no file is
//! written, no scriptlet run) and queried with `-qa`.

use crate::confine::Root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors of the rpm database.
#[derive(Debug, thiserror::Error)]
pub enum RpmDbError {
    /// The host's `rpm` is missing or failed.
    #[error("{root}: rpm database {dbpath}: {message}")]
    Rpm {
        /// The root tree.
        root: PathBuf,
        /// The database directory inside the root.
        dbpath: String,
        /// What went wrong (rpm's own output).
        message: String,
    },
}

/// rpm's own default database directory.
pub const DEFAULT_DBPATH: &str = "/var/lib/rpm";

/// The rpm database directory the image's own rpm uses: `%_dbpath` from the rpm macros in the
/// root when it has rpm (openSUSE and Fedora use `/usr/lib/sysimage/rpm`), else
/// [`DEFAULT_DBPATH`]. Read through [`Root`]: the tree may come from an untrusted base.
pub fn image_dbpath(root: &Path) -> String {
    let Ok(r) = Root::open(root) else {
        return DEFAULT_DBPATH.into();
    };
    let mut files = vec![PathBuf::from("usr/lib/rpm/macros")];
    for dir in ["usr/lib/rpm/macros.d", "etc/rpm"] {
        let mut names = r.read_dir(dir).unwrap_or_default();
        names.sort();
        files.extend(names.into_iter().map(|n| Path::new(dir).join(n)));
    }
    let mut found = None;
    for rel in files {
        let mut text = String::new();
        if let Ok(mut f) = r.open_file(&rel) {
            let _ = std::io::Read::read_to_string(&mut f, &mut text);
        }
        for line in text.lines() {
            if let Some(v) = line.trim_start().strip_prefix("%_dbpath")
                && v.starts_with([' ', '\t'])
            {
                found = Some(v.trim().to_string());
            }
        }
    }
    let Some(mut path) = found else {
        return DEFAULT_DBPATH.into();
    };
    for (name, value) in [
        ("%{_usr}", "/usr"),
        ("%{_prefix}", "/usr"),
        ("%{_var}", "/var"),
        ("%{_localstatedir}", "/var"),
        ("%{_sharedstatedir}", "/var/lib"),
    ] {
        path = path.replace(name, value);
    }
    if path.contains('%') || !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return DEFAULT_DBPATH.into();
    }
    path
}

/// The host's rpm on `root`'s database, with a fixed environment.
fn rpm(root: &Path, dbpath: &str) -> Command {
    let mut cmd = Command::new("rpm");
    cmd.arg("--root")
        .arg(root)
        .args(["--dbpath", dbpath])
        .args(["--define", "_db_backend sqlite"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env("HOME", "/nonexistent");
    cmd
}

/// Runs `cmd`, returning its stdout.
fn run(mut cmd: Command, root: &Path, dbpath: &str) -> Result<Vec<u8>, RpmDbError> {
    let fail = |message: String| RpmDbError::Rpm {
        root: root.to_path_buf(),
        dbpath: dbpath.to_string(),
        message,
    };
    let out = cmd.output().map_err(|e| {
        fail(if e.kind() == std::io::ErrorKind::NotFound {
            "the host has no `rpm`, which writes the image's rpm database (install it: apt-get install rpm)".into()
        } else {
            format!("running rpm: {e}")
        })
    })?;
    if !out.status.success() {
        // Debian's rpm warns on every run that it is not Debian's package manager: not news.
        let err = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("Alien") && !l.contains("assuming you know"))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(fail(err));
    }
    Ok(out.stdout)
}

/// Registers `rpms` (files imgbuild has verified and unpacked) in `root`'s database: rpm writes
/// the database only (`--justdb`), runs no scriptlet or trigger, and takes the install time from
/// `SOURCE_DATE_EPOCH` = `epoch`, so the database is the same bytes for the same packages.
pub fn register(
    root: &Path,
    rpms: &[PathBuf],
    exclude_docs: bool,
    epoch: u64,
) -> Result<(), RpmDbError> {
    if rpms.is_empty() {
        return Ok(());
    }
    let dbpath = image_dbpath(root);
    follow_rpm(root, &dbpath)?;
    let mut cmd = rpm(root, &dbpath);
    cmd.args(["--define", "_install_langs all"]).args([
        "-i",
        "--justdb",
        "--nodeps",
        "--noscripts",
        "--notriggers",
        // Digests and signatures were checked against the signed repository metadata.
        "--nodigest",
        "--nosignature",
        "--ignorearch",
        "--ignoreos",
        "--replacefiles",
        "--replacepkgs",
    ]);
    if exclude_docs {
        cmd.arg("--excludedocs");
    }
    cmd.args(rpms)
        .env("SOURCE_DATE_EPOCH", epoch.max(1).to_string());
    run(cmd, root, &dbpath)?;
    remove_transient(root, &dbpath);
    Ok(())
}

/// Moves a database written at [`DEFAULT_DBPATH`] (before the image had rpm) to `dbpath`, where
/// the image's rpm, installed since, keeps it (KIWI moves it the same way).
fn follow_rpm(root: &Path, dbpath: &str) -> Result<(), RpmDbError> {
    if dbpath == DEFAULT_DBPATH {
        return Ok(());
    }
    let old = root.join(DEFAULT_DBPATH.trim_start_matches('/'));
    let new = root.join(dbpath.trim_start_matches('/'));
    if !old.join("rpmdb.sqlite").is_file() || new.join("rpmdb.sqlite").exists() {
        return Ok(());
    }
    let r = Root::open(root).map_err(|e| RpmDbError::Rpm {
        root: root.to_path_buf(),
        dbpath: dbpath.to_string(),
        message: e.to_string(),
    })?;
    let fail = |e: crate::confine::ConfineError| RpmDbError::Rpm {
        root: root.to_path_buf(),
        dbpath: dbpath.to_string(),
        message: format!("moving the database from {DEFAULT_DBPATH}: {e}"),
    };
    let rel = dbpath.trim_start_matches('/');
    r.create_dir_all(rel, 0o755).map_err(fail)?;
    for name in ["rpmdb.sqlite", ".rpm.lock"] {
        let from = Path::new(DEFAULT_DBPATH.trim_start_matches('/')).join(name);
        if r.lstat(&from).is_ok() {
            r.rename(&from, Path::new(rel).join(name)).map_err(fail)?;
        }
    }
    Ok(())
}

/// sqlite's shared-memory index and (checkpointed, empty) write-ahead log, which rpm leaves
/// beside the database: they differ from run to run and are never part of an image.
fn remove_transient(root: &Path, dbpath: &str) {
    let db = root.join(dbpath.trim_start_matches('/'));
    for name in ["rpmdb.sqlite-shm", "rpmdb.sqlite-wal"] {
        let _ = std::fs::remove_file(db.join(name));
    }
}

/// Imports the OpenPGP public keys in `keys` into `root`'s rpm database (as `gpg-pubkey`
/// entries, as `rpm --import` makes them), so that the image's own rpm trusts them; dated
/// `epoch`.
pub fn import_keys(root: &Path, keys: &[PathBuf], epoch: u64) -> Result<(), RpmDbError> {
    if keys.is_empty() {
        return Ok(());
    }
    let dbpath = image_dbpath(root);
    let mut cmd = rpm(root, &dbpath);
    // The key entries' install time is the packages' date, not the clock.
    cmd.arg("--import")
        .args(keys)
        .env("SOURCE_DATE_EPOCH", epoch.max(1).to_string());
    run(cmd, root, &dbpath)?;
    remove_transient(root, &dbpath);
    Ok(())
}

/// One installed package, as the rpm database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRpm {
    /// Name.
    pub name: String,
    /// Epoch, when it has one.
    pub epoch: Option<u32>,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture.
    pub arch: String,
    /// `DISTURL` (where the package was built), when recorded.
    pub disturl: Option<String>,
    /// License expression.
    pub license: String,
    /// `VENDOR`, when recorded.
    pub vendor: Option<String>,
    /// Source rpm file name.
    pub sourcerpm: Option<String>,
    /// Names of what it requires (`rpmlib(…)` ones left out).
    pub requires: Vec<String>,
    /// Names of what it provides.
    pub provides: Vec<String>,
    /// When it was built (`BUILDTIME`, seconds since the epoch; 0 when unrecorded).
    pub buildtime: u64,
}

impl InstalledRpm {
    /// `[epoch:]version-release`.
    pub fn evr(&self) -> String {
        let e = self.epoch.map(|e| format!("{e}:")).unwrap_or_default();
        format!("{e}{}-{}", self.version, self.release)
    }
}

/// Every package in `root`'s rpm database, sorted by name, architecture and version; empty when
/// the root has no database.
pub fn installed(root: &Path) -> Result<Vec<InstalledRpm>, RpmDbError> {
    installed_at(root, &image_dbpath(root))
}

/// Where an rpm database may be in an image: openSUSE's and Fedora's place, then rpm's default.
pub const DBPATHS: [&str; 2] = ["/usr/lib/sysimage/rpm", DEFAULT_DBPATH];

/// The packages of the database at `dbpath` in `root` ([`installed`] with the path given).
pub fn installed_at(root: &Path, dbpath: &str) -> Result<Vec<InstalledRpm>, RpmDbError> {
    let dbpath = dbpath.to_string();
    if !root
        .join(dbpath.trim_start_matches('/'))
        .join("rpmdb.sqlite")
        .exists()
    {
        return Ok(Vec::new());
    }
    let mut cmd = rpm(root, &dbpath);
    // One record per package, fields separated by \x1f, list items by \x1e.
    cmd.args([
        "-qa",
        "--qf",
        "%{NAME}\x1f%{EPOCH}\x1f%{VERSION}\x1f%{RELEASE}\x1f%{ARCH}\x1f%{DISTURL}\x1f%{LICENSE}\x1f%{VENDOR}\x1f%{SOURCERPM}\x1f[%{REQUIRENAME}\x1e]\x1f[%{PROVIDENAME}\x1e]\x1f%{BUILDTIME}\n",
    ]);
    let out = run(cmd, root, &dbpath)?;
    remove_transient(root, &dbpath);
    let none = |s: &str| (s != "(none)" && !s.is_empty()).then(|| s.to_string());
    let list = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .split('\x1e')
            .filter(|x| !x.is_empty() && !x.starts_with("rpmlib("))
            .map(str::to_string)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut pkgs: Vec<InstalledRpm> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\x1f').collect();
            (f.len() == 12).then(|| InstalledRpm {
                name: f[0].to_string(),
                epoch: f[1].parse().ok(),
                version: f[2].to_string(),
                release: f[3].to_string(),
                arch: f[4].to_string(),
                disturl: none(f[5]),
                license: f[6].to_string(),
                vendor: none(f[7]),
                sourcerpm: none(f[8]),
                requires: list(f[9]),
                provides: list(f[10]),
                buildtime: f[11].parse().unwrap_or(0),
            })
        })
        .collect();
    pkgs.sort_by(|a, b| {
        (&a.name, &a.arch)
            .cmp(&(&b.name, &b.arch))
            .then_with(|| a.evr().cmp(&b.evr()))
    });
    Ok(pkgs)
}

/// A removal scriptlet kept in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScriptlet {
    /// Interpreter and arguments (empty: `/bin/sh`).
    pub prog: Vec<String>,
    /// The script, when it has one.
    pub body: Option<String>,
}

/// The `%preun` and `%postun` scriptlets of the installed packages `names`, as
/// `(name, "preun" | "postun", scriptlet)` in the order of `names`.
pub fn removal_scriptlets(
    root: &Path,
    names: &[String],
) -> Result<Vec<(String, &'static str, StoredScriptlet)>, RpmDbError> {
    let dbpath = image_dbpath(root);
    let mut out = Vec::new();
    for name in names {
        let mut cmd = rpm(root, &dbpath);
        cmd.args([
            "-q",
            "--qf",
            "[%{PREUNPROG}\x1e]\x1f%{PREUN}\x1f[%{POSTUNPROG}\x1e]\x1f%{POSTUN}",
            "--",
            name,
        ]);
        let text = String::from_utf8_lossy(&run(cmd, root, &dbpath)?).into_owned();
        let f: Vec<&str> = text.split('\x1f').collect();
        if f.len() != 4 {
            continue;
        }
        let prog = |s: &str| -> Vec<String> {
            s.split('\x1e')
                .filter(|x| !x.is_empty() && *x != "(none)")
                .map(str::to_string)
                .collect()
        };
        let body = |s: &str| (s != "(none)" && !s.is_empty()).then(|| s.to_string());
        for (which, p, b) in [("preun", f[0], f[1]), ("postun", f[2], f[3])] {
            let s = StoredScriptlet {
                prog: prog(p),
                body: body(b),
            };
            if !s.prog.is_empty() || s.body.is_some() {
                out.push((name.clone(), which, s));
            }
        }
    }
    remove_transient(root, &dbpath);
    Ok(out)
}

/// Removes the installed packages `names` (every installed version) with rpm, which runs no
/// scriptlet or trigger; `force`: without checking whether other packages still need them
/// (KIWI's `delete`), else refused while one does.
pub fn erase(root: &Path, names: &[String], force: bool) -> Result<(), RpmDbError> {
    if names.is_empty() {
        return Ok(());
    }
    let dbpath = image_dbpath(root);
    let mut cmd = rpm(root, &dbpath);
    cmd.args(["-e", "--allmatches", "--noscripts", "--notriggers"]);
    if force {
        cmd.arg("--nodeps");
    }
    cmd.arg("--").args(names);
    run(cmd, root, &dbpath)?;
    remove_transient(root, &dbpath);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_path_is_the_images_own() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(image_dbpath(t.path()), DEFAULT_DBPATH);
        let m = t.path().join("usr/lib/rpm");
        std::fs::create_dir_all(m.join("macros.d")).unwrap();
        std::fs::write(
            m.join("macros"),
            "%_dbpath\t\t%{_var}/lib/rpm\n%_dbpath_rebuild %{_dbpath}\n",
        )
        .unwrap();
        assert_eq!(image_dbpath(t.path()), "/var/lib/rpm");
        std::fs::write(
            m.join("macros.d/macros.sysimage"),
            "%_dbpath %{_usr}/lib/sysimage/rpm\n",
        )
        .unwrap();
        assert_eq!(image_dbpath(t.path()), "/usr/lib/sysimage/rpm");
        // What cannot be expanded safely falls back to the default.
        std::fs::write(m.join("macros.d/macros.zz"), "%_dbpath %{_weird}/db\n").unwrap();
        assert_eq!(image_dbpath(t.path()), DEFAULT_DBPATH);
        std::fs::write(m.join("macros.d/macros.zz"), "%_dbpath /usr/../../etc\n").unwrap();
        assert_eq!(image_dbpath(t.path()), DEFAULT_DBPATH);
    }
}
