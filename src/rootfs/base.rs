//! The first step of a derived image (`derived_from`): its bases unpacked into the root by the
//! [`BaseStep`] `prepare` is given, recorded in the root's `/image`, and the packages the base's
//! dpkg database has installed, on which the image packages are then solved.

use super::prepared::{BaseRecord, PreparedError, PreparedRoot};
use crate::description::ResolvedImage;
use crate::plan;
use std::path::{Path, PathBuf};

/// Errors of the base step.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The [`BaseStep`] failed; its error is passed through as it is.
    #[error(transparent)]
    Step(BaseStepError),
    /// The bases could not be recorded in the root.
    #[error(transparent)]
    Record(#[from] PreparedError),
    /// The base's dpkg database could not be read.
    #[error("{path}: {source}")]
    Status {
        /// `var/lib/dpkg/status` of the root.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The base's rpm database could not be read.
    #[error(transparent)]
    RpmDb(#[from] super::rpmdb::RpmDbError),
    /// The base's dpkg database is malformed.
    #[error("{path}: {source}")]
    StatusParse {
        /// `var/lib/dpkg/status` of the root.
        path: PathBuf,
        /// What is wrong, with its line.
        source: crate::apt::control::ParseError,
    },
}

/// The base step of a derived image (`derived_from`): unpack its bases into the root in order
/// (layers bottom first, whiteouts applied, every path confined to the root) and save the tree
/// they gave at [`PreparedRoot::snapshot_path`], so that `create` can write one diff layer.
/// Reading images is the business of `image`, which comes after this module in the pipeline, so
/// `prepare` receives the step instead of reaching forward for it: `build::base::ImageBases` is
/// imgbuild's.
pub trait BaseStep {
    /// Unpack the bases of `image` (each `derived_from` URI resolved with [`resolve_base_uri`])
    /// into `root`, save the snapshot, and return the record of each base, in order.
    fn unpack(&self, root: &Path, image: &ResolvedImage) -> Result<Vec<BaseRecord>, BaseStepError>;
}

/// The error of a failed [`BaseStep`], passed through as it is.
pub type BaseStepError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the base step, records the bases in `/image`, and returns the packages the base's dpkg
/// database has installed.
pub fn unpack_bases(
    root: &Path,
    image: &ResolvedImage,
    bases: &dyn BaseStep,
) -> Result<Vec<plan::InstalledPackage>, BaseError> {
    let records = bases.unpack(root, image).map_err(BaseError::Step)?;
    PreparedRoot::new(root).write_base_records(&records)?;

    let status = root.join("var/lib/dpkg/status");
    match std::fs::read_to_string(&status) {
        Ok(text) => plan::installed_packages(&text).map_err(|source| BaseError::StatusParse {
            path: status.clone(),
            source,
        }),
        // A base without dpkg: an rpm one has its rpm database; without either (busybox,
        // distroless) nothing is installed as far as a package manager knows.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => rpm_installed(root),
        Err(source) => Err(BaseError::Status {
            path: status,
            source,
        }),
    }
}

/// The packages of the rpm database in `root` (where the image's rpm keeps it, or where
/// openSUSE and Fedora do), as the plan takes an installed set; none without a database.
fn rpm_installed(root: &Path) -> Result<Vec<plan::InstalledPackage>, BaseError> {
    let own = super::rpmdb::image_dbpath(root);
    for dbpath in std::iter::once(own.as_str()).chain(super::rpmdb::DBPATHS) {
        let db = root
            .join(dbpath.trim_start_matches('/'))
            .join("rpmdb.sqlite");
        if db.is_file() {
            return Ok(installed_rpms(&super::rpmdb::installed_at(root, dbpath)?));
        }
    }
    Ok(Vec::new())
}

/// The installed set of an rpm database as the plan takes it (gpg-pubkey entries are keys).
pub fn installed_rpms(pkgs: &[super::rpmdb::InstalledRpm]) -> Vec<plan::InstalledPackage> {
    let mut out: Vec<plan::InstalledPackage> = pkgs
        .iter()
        .filter(|p| p.name != "gpg-pubkey")
        .map(|p| plan::InstalledPackage {
            name: p.name.clone(),
            version: p.evr(),
            architecture: p.arch.clone(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A `derived_from` URI with a relative path made absolute against `dir` (the description
/// directory), so that a description and its base stay together whatever the working directory.
/// An archive URI's `:TAG` suffix (`oci-archive:PATH:TAG`) is dropped when PATH names the file:
/// archives written by image builders hold one image, which is then the one meant.
pub fn resolve_base_uri(uri: &str, dir: &Path) -> String {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let abs = |p: &str| {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        }
    };
    for transport in ["oci-archive:", "docker-archive:"] {
        if let Some(rest) = uri.strip_prefix(transport) {
            let mut path = abs(rest);
            if !path.exists()
                && let Some((file, tag)) = rest.rsplit_once(':')
                && !tag.contains('/')
                && abs(file).is_file()
            {
                path = abs(file);
            }
            return format!("{transport}{}", path.display());
        }
    }
    if let Some(rest) = uri.strip_prefix("oci:") {
        // `oci:DIR[:TAG]`: the tag is after the last ':' unless that is part of the path.
        return match rest.rsplit_once(':') {
            Some((d, tag)) if !tag.contains('/') && !d.is_empty() && !abs(rest).exists() => {
                format!("oci:{}:{tag}", abs(d).display())
            }
            _ => format!("oci:{}", abs(rest).display()),
        };
    }
    if uri.contains("://") && !uri.starts_with("file://") {
        return uri.to_string();
    }
    abs(uri.strip_prefix("file://").unwrap_or(uri))
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_uris_resolve_against_the_description_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("desc");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(t.path().join("base.tar"), b"").unwrap();
        let base = t.path().join("desc/../base.tar");
        // A relative archive path follows the description; an unneeded `:TAG` is dropped.
        assert_eq!(
            resolve_base_uri("oci-archive:../base.tar:13", &dir),
            format!("oci-archive:{}", base.display())
        );
        assert_eq!(
            resolve_base_uri("docker-archive:../base.tar", &dir),
            format!("docker-archive:{}", base.display())
        );
        // Absolute paths stay; layouts keep their tag.
        assert_eq!(
            resolve_base_uri("oci-archive:/x/base.tar", &dir),
            "oci-archive:/x/base.tar"
        );
        assert_eq!(
            resolve_base_uri("oci:layout:v1", &dir),
            format!("oci:{}:v1", dir.join("layout").display())
        );
        assert_eq!(
            resolve_base_uri("file://b.tar", &dir),
            dir.join("b.tar").display().to_string()
        );
        assert_eq!(
            resolve_base_uri("docker://debian:12", &dir),
            "docker://debian:12"
        );
    }
}
