//! dpkg's database in a root tree, written natively for packages imgbuild unpacked itself.
//!
//! imgbuild extracts `.deb` data natively (in parallel) and then records each package exactly as
//! `dpkg --unpack` would have left it: `Status: install ok unpacked`, `info/<pkg>.list`, the
//! control members (`md5sums`, maintainer scripts, `triggers`, `shlibs`, ...), and every conffile
//! moved aside as `<path>.dpkg-new` with a `newconffile` hash. A later `dpkg --configure -a` inside
//! the sandbox then runs the maintainer scripts, installs the conffiles and processes triggers, so
//! the resulting database is dpkg's own.

use super::write_atomic;
use crate::apt::control::{self, Paragraph};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Errors from reading or writing the dpkg database.
#[derive(Debug, thiserror::Error)]
pub enum DpkgDbError {
    /// A file of the database could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The status file does not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The status file.
        path: PathBuf,
        /// What is wrong, with its line.
        source: control::ParseError,
    },
    /// A package's control data lacks a required field.
    #[error("package control data has no {field} field")]
    MissingField {
        /// The field name.
        field: &'static str,
    },
    /// A conffile path from a package is not a plain absolute path inside the root.
    #[error("package {package}: conffile {path:?} is not a plain absolute path")]
    BadConffile {
        /// The package naming it.
        package: String,
        /// The path as listed.
        path: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DpkgDbError + '_ {
    move |source| DpkgDbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A package whose data imgbuild has unpacked into the root, ready to be registered.
#[derive(Debug, Clone, Default)]
pub struct UnpackedPackage {
    /// The `control` paragraph of the `.deb`.
    pub control: Paragraph,
    /// The other control members by name (`md5sums`, `conffiles`, `postinst`, ...).
    pub members: BTreeMap<String, Vec<u8>>,
    /// Paths in the data archive, in archive order (`./usr/bin/x` or root-relative `usr/bin/x`).
    pub files: Vec<String>,
}

impl UnpackedPackage {
    /// The package name.
    pub fn name(&self) -> Result<&str, DpkgDbError> {
        self.control
            .get("Package")
            .ok_or(DpkgDbError::MissingField { field: "Package" })
    }

    /// The name dpkg files this package under: `name:arch` for `Multi-Arch: same`, else `name`.
    pub fn db_key(&self) -> Result<String, DpkgDbError> {
        let name = self.name()?;
        if self.control.get("Multi-Arch") == Some("same") {
            let arch = self
                .control
                .get("Architecture")
                .ok_or(DpkgDbError::MissingField {
                    field: "Architecture",
                })?;
            Ok(format!("{name}:{arch}"))
        } else {
            Ok(name.to_string())
        }
    }

    /// Conffile paths as listed in the `conffiles` member (flagged `remove-on-upgrade` ones skipped).
    pub fn conffiles(&self) -> Vec<String> {
        let Some(data) = self.members.get("conffiles") else {
            return Vec::new();
        };
        String::from_utf8_lossy(data)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("remove-on-upgrade "))
            .map(str::to_string)
            .collect()
    }
}

/// Convert a path as the data archive or [`crate::confine::UnpackReport`] names it to dpkg's
/// `.list` form: `./` or `.` → `/.`, `./usr/` or `usr` → `/usr`.
pub fn list_path(member: &str) -> String {
    let p = member.strip_prefix("./").unwrap_or(member);
    let p = p.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() || p == "." {
        "/.".to_string()
    } else {
        format!("/{p}")
    }
}

/// The dpkg administrative directory of one root tree.
#[derive(Debug, Clone)]
pub struct DpkgDb {
    root: PathBuf,
    admin: PathBuf,
}

/// Control members that dpkg keeps as executable maintainer scripts.
const SCRIPTS: &[&str] = &["preinst", "postinst", "prerm", "postrm", "config"];

impl DpkgDb {
    /// The database of the root at `root` (`<root>/var/lib/dpkg`).
    pub fn new(root: &Path) -> Self {
        DpkgDb {
            root: root.to_path_buf(),
            admin: root.join("var/lib/dpkg"),
        }
    }

    /// Create the directories and empty files dpkg expects in a fresh root, with `arch` as the
    /// native architecture. Existing files are left alone.
    pub fn init(&self, arch: &str) -> Result<(), DpkgDbError> {
        for dir in ["info", "updates", "triggers", "alternatives", "parts"] {
            let d = self.admin.join(dir);
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        for file in ["status", "available", "diversions", "statoverride"] {
            let p = self.admin.join(file);
            if !p.exists() {
                fs::write(&p, b"").map_err(io_err(&p))?;
            }
        }
        let p = self.admin.join("arch");
        if !p.exists() {
            fs::write(&p, format!("{arch}\n")).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// The paragraphs of the status file.
    pub fn status(&self) -> Result<Vec<Paragraph>, DpkgDbError> {
        let path = self.admin.join("status");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        control::parse(&text).map_err(|source| DpkgDbError::Parse { path, source })
    }

    /// Record `pkgs` as unpacked: info files, conffiles moved aside, status entries merged in
    /// (replacing entries of the same key). The status file is rewritten sorted by key, atomically.
    pub fn register_unpacked(&self, pkgs: &[UnpackedPackage]) -> Result<(), DpkgDbError> {
        let mut status: BTreeMap<String, Paragraph> = BTreeMap::new();
        for p in self.status()? {
            status.insert(status_key(&p), p);
        }
        for pkg in pkgs {
            let key = pkg.db_key()?;
            self.write_info(&key, pkg)?;
            let conffiles = pkg.conffiles();
            for c in &conffiles {
                self.move_conffile_aside(pkg.name()?, c)?;
            }
            let entry = status_entry(pkg, &conffiles);
            status.insert(status_key(&entry), entry);
        }
        let mut text = String::new();
        for (i, p) in status.values().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(&p.to_string());
        }
        let path = self.admin.join("status");
        write_atomic(&path, text.as_bytes()).map_err(io_err(&path))
    }

    fn write_info(&self, key: &str, pkg: &UnpackedPackage) -> Result<(), DpkgDbError> {
        let info = self.admin.join("info");
        let mut list = String::new();
        for f in &pkg.files {
            list.push_str(&list_path(f));
            list.push('\n');
        }
        let list_file = info.join(format!("{key}.list"));
        write_atomic(&list_file, list.as_bytes()).map_err(io_err(&list_file))?;
        for (name, data) in &pkg.members {
            // Member names come from the archive: only plain names become files.
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                continue;
            }
            let path = info.join(format!("{key}.{name}"));
            write_atomic(&path, data).map_err(io_err(&path))?;
            if SCRIPTS.contains(&name.as_str()) {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    /// dpkg unpacks a new conffile as `<path>.dpkg-new` and installs it when configuring.
    fn move_conffile_aside(&self, package: &str, conffile: &str) -> Result<(), DpkgDbError> {
        let bad = || DpkgDbError::BadConffile {
            package: package.to_string(),
            path: conffile.to_string(),
        };
        let rel = Path::new(conffile).strip_prefix("/").map_err(|_| bad())?;
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad());
        }
        let from = self.root.join(rel);
        // Refuse a parent that resolves outside the root (a symlinked directory planted there).
        let parent = from.parent().ok_or_else(bad)?;
        let real_root = fs::canonicalize(&self.root).map_err(io_err(&self.root))?;
        match fs::canonicalize(parent) {
            Ok(real_parent) if real_parent.starts_with(&real_root) => {}
            Ok(_) => return Err(bad()),
            // A conffile listed but not shipped: dpkg tolerates it, so do we.
            Err(_) => return Ok(()),
        }
        let mut to = from.clone().into_os_string();
        to.push(".dpkg-new");
        match fs::symlink_metadata(&from) {
            Ok(_) => fs::rename(&from, &to).map_err(io_err(&from)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&from)(e)),
        }
    }
}

fn status_key(p: &Paragraph) -> String {
    let name = p.get("Package").unwrap_or_default();
    if p.get("Multi-Arch") == Some("same") {
        format!("{name}:{}", p.get("Architecture").unwrap_or_default())
    } else {
        name.to_string()
    }
}

/// The status paragraph dpkg writes after `--unpack`: the control fields with `Status` after
/// `Package`, and new conffiles with the `newconffile` marker.
fn status_entry(pkg: &UnpackedPackage, conffiles: &[String]) -> Paragraph {
    let mut out = Paragraph::default();
    for (k, v) in pkg.control.fields() {
        if k.eq_ignore_ascii_case("Status") || k.eq_ignore_ascii_case("Conffiles") {
            continue;
        }
        out.set(k, v);
        if k.eq_ignore_ascii_case("Package") {
            out.set("Status", "install ok unpacked");
        }
    }
    if !conffiles.is_empty() {
        let mut v = String::new();
        for c in conffiles {
            v.push('\n');
            v.push_str(c);
            v.push_str(" newconffile");
        }
        out.set("Conffiles", v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(control: &str, files: &[&str], members: &[(&str, &str)]) -> UnpackedPackage {
        UnpackedPackage {
            control: control::parse(control).unwrap().remove(0),
            members: members
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            files: files.iter().map(std::string::ToString::to_string).collect(),
        }
    }

    #[test]
    fn list_paths_match_dpkg() {
        assert_eq!(list_path("./"), "/.");
        assert_eq!(list_path("./usr/"), "/usr");
        assert_eq!(list_path("./usr/bin/x"), "/usr/bin/x");
        assert_eq!(list_path("."), "/.");
        assert_eq!(list_path("usr/.hidden"), "/usr/.hidden");
        assert_eq!(list_path(".hidden"), "/.hidden");
    }

    #[test]
    fn registers_like_dpkg_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/foo.conf"), "x=1\n").unwrap();
        let db = DpkgDb::new(root);
        db.init("amd64").unwrap();
        let libc = pkg(
            "Package: libz\nVersion: 1\nArchitecture: amd64\nMulti-Arch: same\nDescription: z\n",
            &["./", "./usr/", "./usr/lib/libz.so"],
            &[
                ("md5sums", "abc  usr/lib/libz.so\n"),
                ("triggers", "activate-noawait ldconfig\n"),
            ],
        );
        let foo = pkg(
            "Package: foo\nVersion: 2\nArchitecture: all\nDescription: foo\n long\n",
            &["./", "./etc/", "./etc/foo.conf"],
            &[
                ("conffiles", "/etc/foo.conf\n"),
                ("postinst", "#!/bin/sh\n"),
            ],
        );
        db.register_unpacked(&[libc, foo]).unwrap();
        let status = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
        assert_eq!(
            status,
            "Package: foo\nStatus: install ok unpacked\nVersion: 2\nArchitecture: all\nDescription: foo\n long\nConffiles:\n /etc/foo.conf newconffile\n\n\
             Package: libz\nStatus: install ok unpacked\nVersion: 1\nArchitecture: amd64\nMulti-Arch: same\nDescription: z\n"
        );
        let info = root.join("var/lib/dpkg/info");
        assert_eq!(
            fs::read_to_string(info.join("libz:amd64.list")).unwrap(),
            "/.\n/usr\n/usr/lib/libz.so\n"
        );
        assert!(info.join("libz:amd64.triggers").exists());
        let mode = fs::metadata(info.join("foo.postinst"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!root.join("etc/foo.conf").exists());
        assert_eq!(
            fs::read_to_string(root.join("etc/foo.conf.dpkg-new")).unwrap(),
            "x=1\n"
        );
        // Registering again replaces, never duplicates.
        let again = db.status().unwrap();
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn refuses_escaping_conffile() {
        let dir = tempfile::tempdir().unwrap();
        let db = DpkgDb::new(dir.path());
        db.init("amd64").unwrap();
        let bad = pkg(
            "Package: bad\nVersion: 1\nArchitecture: all\n",
            &["./"],
            &[("conffiles", "/etc/../../x\n")],
        );
        let err = db.register_unpacked(&[bad]).unwrap_err();
        assert!(matches!(err, DpkgDbError::BadConffile { .. }), "{err}");
    }
}
