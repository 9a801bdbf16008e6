//! The files the description puts into the root besides its overlay: `<users>`, `/.profile`
//! and `/.kconfig` with the `kiwi_*` variables, `<locale>` and `<timezone>`, and the `<file>`s
//! of the bootstrap and image sets.

use super::hooks::{self, HookError};
use super::users::UserSpec;
use super::{RootfsError, profile};
use crate::confine::{ConfineError, Root};
use crate::description::ResolvedImage;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of the description's files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The root could not be opened for confined writes.
    #[error("{path}: opening the root: {source}")]
    Root {
        /// The root tree.
        path: PathBuf,
        /// What went wrong.
        source: ConfineError,
    },
    /// A file could not be made in the root (the error names it, relative to the root).
    #[error("{root}: {source}")]
    Write {
        /// The root tree.
        root: PathBuf,
        /// What went wrong.
        source: ConfineError,
    },
    /// A `<file>` of the description could not be copied into the root.
    #[error("<file> {path}: {source}")]
    DescriptionFile {
        /// The file in the description directory.
        path: PathBuf,
        /// What went wrong.
        source: ConfineError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `<timezone>` does not name a zone.
    #[error("<timezone> {zone:?}: not a zone name")]
    BadTimezone {
        /// The value given.
        zone: String,
    },
    /// `/.profile` or `/.kconfig` could not be written.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The script setting users or file owners failed.
    #[error(transparent)]
    Script(#[from] HookError),
}

fn io(path: &Path, source: std::io::Error) -> FilesError {
    FilesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open(root: &Path) -> Result<Root, FilesError> {
    Root::open(root).map_err(|source| FilesError::Root {
        path: root.to_path_buf(),
        source,
    })
}

/// `<users>`: the users and groups made in the root by one sandboxed script.
pub fn users(root: &Path, image: &ResolvedImage, verbose: bool) -> Result<(), FilesError> {
    let users: Vec<UserSpec> = image.users.iter().map(user_spec).collect();
    if !users.is_empty() {
        hooks::run_checked(root, "users", &super::users::script(&users), verbose)?;
    }
    Ok(())
}

fn user_spec(u: &crate::description::User) -> UserSpec {
    UserSpec {
        name: u.name.clone(),
        password: (!u.password.is_empty()).then(|| u.password.clone()),
        password_is_plain: u.pwdformat == "plain",
        home: u.home.clone(),
        id: u.id,
        groups: u.groups.clone(),
        realname: u.realname.clone(),
        shell: u.shell.clone(),
    }
}

/// Writes `/.profile` (with [`profile_vars`]) and `/.kconfig`, and returns the variables, which
/// the hooks also get in their environment.
pub fn profile(root: &Path, image: &ResolvedImage) -> Result<BTreeMap<String, String>, FilesError> {
    let vars = profile_vars(image);
    profile::write(root, &vars)?;
    Ok(vars)
}

/// The `kiwi_*` variables KIWI puts in `/.profile`.
pub fn profile_vars(image: &ResolvedImage) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut set = |k: &str, val: String| {
        v.insert(k.to_string(), val);
    };
    set("kiwi_iname", image.name.clone());
    if let Some(d) = &image.displayname {
        set("kiwi_displayname", d.clone());
    }
    let prefs = &image.preferences;
    set(
        "kiwi_iversion",
        prefs
            .version
            .as_ref()
            .map_or_else(|| "1.0.0".into(), |x| x.value.clone()),
    );
    set("kiwi_profiles", image.profiles.join(","));
    set("kiwi_type", image.build_type.image.clone());
    if let Some(l) = &prefs.locale {
        set("kiwi_language", l.value.clone());
    }
    if let Some(t) = &prefs.timezone {
        set("kiwi_timezone", t.value.clone());
    }
    if let Some(k) = &prefs.keytable {
        set("kiwi_keytable", k.value.clone());
    }
    let delete: Vec<String> = image
        .packages
        .delete
        .packages
        .iter()
        .map(|p| p.name.clone())
        .collect();
    if !delete.is_empty() {
        set("kiwi_delete", delete.join(" "));
    }
    let drivers: Vec<String> = image.drivers.iter().map(|d| d.name.clone()).collect();
    if !drivers.is_empty() {
        set("kiwi_drivers", drivers.join(","));
    }
    set("kiwi_arch", image.arch.clone());
    v
}

/// `<timezone>` as `/etc/localtime` + `/etc/timezone`, `<locale>` as `/etc/default/locale`.
pub fn locale_and_timezone(root: &Path, image: &ResolvedImage) -> Result<(), FilesError> {
    let r = open(root)?;
    let write = |source| FilesError::Write {
        root: root.to_path_buf(),
        source,
    };
    if let Some(tz) = &image.preferences.timezone {
        let zone = tz.value.trim();
        if zone.is_empty() || zone.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(FilesError::BadTimezone {
                zone: zone.to_string(),
            });
        }
        let _ = r.remove("etc/localtime");
        r.symlink(format!("/usr/share/zoneinfo/{zone}"), "etc/localtime")
            .map_err(write)?;
        let mut f = r.create_file("etc/timezone", 0o644).map_err(write)?;
        std::io::Write::write_all(&mut f, format!("{zone}\n").as_bytes())
            .map_err(|source| io(&root.join("etc/timezone"), source))?;
    }
    if let Some(loc) = &image.preferences.locale {
        let first = loc.value.split(',').next().unwrap_or("C").trim();
        if !matches!(first, "C" | "POSIX" | "") {
            let lang = if first.contains('.') {
                first.to_string()
            } else {
                format!("{first}.UTF-8")
            };
            r.create_dir_all("etc/default", 0o755).map_err(write)?;
            let mut f = r.create_file("etc/default/locale", 0o644).map_err(write)?;
            std::io::Write::write_all(&mut f, format!("LANG={lang}\n").as_bytes())
                .map_err(|source| io(&root.join("etc/default/locale"), source))?;
        }
    }
    Ok(())
}

/// `<file name= target= owner= permissions=>` of the bootstrap and image sets: files of the
/// description directory copied into the root (default target: `/<name>`), then owned and moded
/// with the image's own `chown`/`chmod`, so owner names resolve against the image's users.
pub fn description_files(
    root: &Path,
    image: &ResolvedImage,
    verbose: bool,
) -> Result<(), FilesError> {
    let r = open(root)?;
    let mut script = String::from("set -e\n");
    for set in [&image.packages.bootstrap, &image.packages.image] {
        for f in &set.files {
            let src = image.dir.join(&f.name);
            let data = std::fs::read(&src).map_err(|source| io(&src, source))?;
            let target = f.target.clone().unwrap_or_else(|| format!("/{}", f.name));
            let rel = target.trim_start_matches('/');
            let copy = |source| FilesError::DescriptionFile {
                path: src.clone(),
                source,
            };
            if let Some(parent) = Path::new(rel)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                r.create_dir_all(parent, 0o755).map_err(copy)?;
            }
            let mut out = r.create_file(rel, 0o644).map_err(copy)?;
            std::io::Write::write_all(&mut out, &data)
                .map_err(|source| io(&root.join(rel), source))?;
            let q = profile::shell_quote(&format!("/{rel}"));
            if let Some(owner) = &f.owner {
                script.push_str(&format!("chown {} {q}\n", profile::shell_quote(owner)));
            }
            if let Some(mode) = &f.permissions {
                script.push_str(&format!("chmod {} {q}\n", profile::shell_quote(mode)));
            }
        }
    }
    if script.len() > "set -e\n".len() {
        hooks::run_checked(root, "<file> owners and permissions", &script, verbose)?;
    }
    Ok(())
}
