//! The image's own package sources: `imageinclude` repositories written into the root as deb822
//! `.sources` files, so that `apt-get` in the finished image uses them; for rpm images as
//! `.repo` files for the image's zypper (`/etc/zypp/repos.d`) or dnf (`/etc/yum.repos.d`), with
//! every repository's signing keys imported into the image's rpm database, as KIWI does.

use crate::confine::{ConfineError, Root};
use crate::plan::Plan;
use std::path::{Path, PathBuf};

/// Errors writing the image's apt sources.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// The root could not be opened for confined writes.
    #[error("{path}: opening the root: {source}")]
    Root {
        /// The root tree.
        path: PathBuf,
        /// What went wrong.
        source: ConfineError,
    },
    /// A sources file or keyring could not be made in the root.
    #[error("{path}: {source}")]
    Write {
        /// The directory written into (`etc/apt` of the root).
        path: PathBuf,
        /// What went wrong (the error names the file).
        source: ConfineError,
    },
    /// A signing key could not be imported into the image's rpm database.
    #[error(transparent)]
    RpmDb(#[from] super::rpmdb::RpmDbError),
    /// A repository's signing key could not be read, or a file not written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(path: &Path, source: std::io::Error) -> SourcesError {
    SourcesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `imageinclude` repositories written into the image as deb822 sources. A signing key the
/// image does not already have at the same path is copied to `/etc/apt/keyrings/`.
pub fn image_sources(
    root: &Path,
    plan: &Plan,
    manager: &str,
    epoch: u64,
) -> Result<(), SourcesError> {
    let r = Root::open(root).map_err(|source| SourcesError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if plan.format == crate::plan::PackageFormat::Rpm {
        return rpm_sources(root, &r, plan, manager, epoch);
    }
    let write = |source| SourcesError::Write {
        path: root.join("etc/apt"),
        source,
    };
    for repo in plan.repositories.iter().filter(|r| r.spec.imageinclude) {
        let name: String = repo
            .spec
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut signed_by = None;
        if let Some(key) = repo.keyrings.first() {
            let rel = key.to_string_lossy().trim_start_matches('/').to_string();
            if r.lstat(&rel).is_ok() {
                signed_by = Some(format!("/{rel}"));
            } else {
                let data = std::fs::read(key).map_err(|source| io(key, source))?;
                let ext = key.extension().and_then(|e| e.to_str()).unwrap_or("gpg");
                let target = format!("etc/apt/keyrings/{name}.{ext}");
                r.create_dir_all("etc/apt/keyrings", 0o755).map_err(write)?;
                let mut f = r.create_file(&target, 0o644).map_err(write)?;
                std::io::Write::write_all(&mut f, &data)
                    .map_err(|source| io(&root.join(&target), source))?;
                signed_by = Some(format!("/{target}"));
            }
        }
        r.create_dir_all("etc/apt/sources.list.d", 0o755)
            .map_err(write)?;
        let target = format!("etc/apt/sources.list.d/{name}.sources");
        let mut f = r.create_file(&target, 0o644).map_err(write)?;
        std::io::Write::write_all(&mut f, repo.sources_entry(signed_by.as_deref()).as_bytes())
            .map_err(|source| io(&root.join(&target), source))?;
    }
    Ok(())
}

/// A repository name usable as a file name and `.repo` section.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The rpm side of [`image_sources`]: the signing keys of every repository imported into the
/// image's rpm database (so the image's zypper or dnf trusts what it was built from), and a
/// `.repo` file for each `imageinclude` repository in the place the image's package manager reads.
fn rpm_sources(
    root: &Path,
    r: &Root,
    plan: &Plan,
    manager: &str,
    epoch: u64,
) -> Result<(), SourcesError> {
    let mut keys = Vec::new();
    for spec in &plan.rpm_repositories {
        for k in spec.signing_key_paths().unwrap_or_default() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    super::rpmdb::import_keys(root, &keys, epoch)?;
    let zypper = manager == "zypper";
    let dir = if zypper {
        "etc/zypp/repos.d"
    } else {
        "etc/yum.repos.d"
    };
    let write = |source| SourcesError::Write {
        path: root.join(dir),
        source,
    };
    for spec in plan.rpm_repositories.iter().filter(|s| s.imageinclude) {
        let name = file_name(&spec.name());
        let baseurl = spec
            .source
            .strip_prefix("dir://")
            .map_or_else(|| spec.source.clone(), |p| format!("file://{p}"));
        let check = |v: Option<bool>| u8::from(v.unwrap_or(true));
        let mut text = format!(
            "[{name}]\nname={}\nenabled=1\nbaseurl={baseurl}\n",
            spec.name()
        );
        if zypper {
            text.push_str("autorefresh=0\ntype=rpm-md\nkeeppackages=0\n");
            text.push_str(&format!(
                "gpgcheck={}\nrepo_gpgcheck={}\npkg_gpgcheck={}\n",
                check(spec.repository_gpgcheck.or(spec.package_gpgcheck)),
                check(spec.repository_gpgcheck),
                check(spec.package_gpgcheck)
            ));
        } else {
            text.push_str(&format!(
                "gpgcheck={}\nrepo_gpgcheck={}\n",
                check(spec.package_gpgcheck),
                check(spec.repository_gpgcheck)
            ));
        }
        if let Some(p) = spec.priority {
            text.push_str(&format!("priority={p}\n"));
        }
        r.create_dir_all(dir, 0o755).map_err(write)?;
        let target = format!("{dir}/{name}.repo");
        let mut f = r.create_file(&target, 0o644).map_err(write)?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .map_err(|source| io(&root.join(&target), source))?;
    }
    Ok(())
}
