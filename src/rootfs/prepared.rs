//! The `image/` directory of a prepared root: what `prepare` keeps there so that `create` can
//! finish the image from the root alone (KIWI's `/image`). [`PreparedRoot`] is the only code
//! that knows its layout; both ends write and read it through that type.
//!
//! | file | written by | read by |
//! |---|---|---|
//! | `config.xml` | `prepare`: the description, includes spliced | `imgbuild create` |
//! | `selection.json` | `prepare`: the profiles, type and architecture ([`SelectionRecord`]) | `imgbuild create` |
//! | `images.sh` | `prepare`: the description's hook, when it has one | `create` runs it |
//! | `post_bootstrap.sh`, `config.sh` | the hook runner: the script it runs | — |
//! | `base.json` | `prepare` of a derived image: its bases ([`BaseRecord`]) | `create` re-opens them |
//! | `base.snapshot` | the base step: the tree the bases gave | `create` writes the diff layer |
//! | `packages.lock` | `prepare`: the installed packages' lock | the SBOM takes their digests |
//! | `epoch.json` | `prepare`: the packages' date, before the hooks ran ([`EpochRecord`]) | `create` dates the image |
//!
//! `/image` is never packed into a layer, but the root `imgbuild prepare --root` leaves is the
//! user's, so the files keep their exact bytes.

use super::hooks;
use crate::apt::lock::{LockError, LockFile};
use crate::description::{Description, ResolvedImage, Selection};
use std::path::{Path, PathBuf};

/// The kept directory, relative to the root.
const DIR: &str = "image";
/// The resolved description.
const DESCRIPTION: &str = "config.xml";
/// The [`SelectionRecord`].
const SELECTION: &str = "selection.json";
/// The [`BaseRecord`]s of a derived root.
const BASE_RECORD: &str = "base.json";
/// The tree a derived root's bases gave.
const BASE_SNAPSHOT: &str = "base.snapshot";
/// The lock of the installed packages.
const PACKAGES_LOCK: &str = "packages.lock";
/// The [`EpochRecord`].
const EPOCH: &str = "epoch.json";
/// The description's hooks that `create` runs, kept with the description.
const CREATE_HOOKS: &[&str] = &["images.sh"];

/// Errors reading or writing a prepared root's `image/` directory.
#[derive(Debug, thiserror::Error)]
pub enum PreparedError {
    /// A file could not be read, written or copied in.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The root has no readable selection, so `prepare` did not make it.
    #[error("{path}: not a root prepared by imgbuild (run `imgbuild prepare` first): {source}")]
    NotPrepared {
        /// The selection file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The selection file is not the JSON `prepare` writes.
    #[error("{path}: invalid selection: {source}")]
    Selection {
        /// The selection file.
        path: PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// A derived root has no readable record of its bases.
    #[error("{path}: {source} (a derived image's root must be prepared by imgbuild)")]
    NoBaseRecord {
        /// The record file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The record of the bases could not be written, or is not the JSON `prepare` writes.
    #[error("{path}: {source}")]
    BaseRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// The lock of the installed packages could not be written or read.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The record of the packages' date is not the JSON `prepare` writes.
    #[error("{path}: {source}")]
    Epoch {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
}

/// Where the date of an image's packages was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpochSource {
    /// The newest `/usr/share/doc/*/changelog*` of the installed tree: Debian's own date of
    /// its packages, which `SOURCE_DATE_EPOCH` builds of a package also use.
    Changelogs,
    /// The newest build time of the installed `.deb` files: the tree had no changelogs.
    PackageBuilds,
    /// Neither was there (no package installed, and a base without changelogs): 0.
    Unknown,
}

/// The date of a prepared root's packages, taken after they were installed and before any hook
/// ran (a `config.sh` that removes `/usr/share/doc` does not move it), kept in `epoch.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    /// Seconds since 1970.
    pub seconds: u64,
    /// Where it was found.
    pub source: EpochSource,
}

impl EpochRecord {
    /// The newest build time of a package set (0 when none was known) and its source.
    pub fn from_builds(built: u64) -> EpochRecord {
        EpochRecord {
            seconds: built,
            source: if built > 0 {
                EpochSource::PackageBuilds
            } else {
                EpochSource::Unknown
            },
        }
    }
}

/// The selection a prepared root's description was resolved for, kept in `selection.json`.
///
/// The fields are declared in the order the file has always listed them (sorted by name), since
/// serde writes a struct's fields in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SelectionRecord {
    /// The target architecture (Debian's name).
    pub arch: String,
    /// The selected profiles, in order.
    pub profiles: Vec<String>,
    /// The image type (`<type image=…>`).
    #[serde(rename = "type")]
    pub image_type: String,
}

impl SelectionRecord {
    /// The selection `image` was resolved for.
    pub fn of(image: &ResolvedImage) -> SelectionRecord {
        SelectionRecord {
            arch: image.arch.clone(),
            profiles: image.profiles.clone(),
            image_type: image.build_type.image.clone(),
        }
    }

    /// The selection to resolve the kept description with again.
    pub fn selection(&self) -> Selection {
        Selection {
            profiles: self.profiles.clone(),
            build_type: Some(self.image_type.clone()),
            target_arch: self.arch.clone(),
        }
    }
}

/// One base a derived root was unpacked from, as recorded in `base.json`.
///
/// `create` re-opens the base from its URI rather than keeping a copy of its blobs in the root:
/// the base is an input like the description (a copy would double the disk the base takes, and
/// archives would have to be unpacked anyway), every blob is verified against its digest again
/// when re-read, and the recorded manifest digest makes a base that changed in between an error
/// instead of a silently different image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseRecord {
    /// The base's URI with its path made absolute.
    pub uri: String,
    /// `sha256:` digest of the base's manifest when it was unpacked.
    pub manifest_digest: String,
    /// For a registry base: the OCI layout in the image store it was read from (by digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<PathBuf>,
    /// For a registry base: its reference (`HOST/REPOSITORY[:TAG]`), the image's base name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A root tree's `image/` directory, written by `prepare` and read by `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRoot {
    root: PathBuf,
}

impl PreparedRoot {
    /// The kept files of the root tree at `root` (nothing is read or created yet).
    pub fn new(root: impl Into<PathBuf>) -> PreparedRoot {
        PreparedRoot { root: root.into() }
    }

    /// The root tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(DIR).join(name)
    }

    /// Creates the `image/` directory, for a file another module writes into it (the base
    /// snapshot); the writers here create it themselves.
    pub fn create_dir(&self) -> Result<(), PreparedError> {
        let dir = self.root.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|source| PreparedError::Io { path: dir, source })
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<(), PreparedError> {
        self.create_dir()?;
        let path = self.path(name);
        crate::atomic::write(&path, data).map_err(|source| PreparedError::Io { path, source })
    }

    /// Keeps the description (includes spliced), the selection it was resolved for, and the
    /// hooks `create` runs, so that `create` can finish the image from the root alone.
    pub fn keep_description(
        &self,
        desc: &Description,
        image: &ResolvedImage,
    ) -> Result<(), PreparedError> {
        self.write(DESCRIPTION, desc.to_xml().as_bytes())?;
        self.write_selection(&SelectionRecord::of(image))?;
        for name in CREATE_HOOKS {
            if let Some(script) = hooks::hook(&image.dir, name) {
                let data = std::fs::read(&script).map_err(|source| PreparedError::Io {
                    path: script.clone(),
                    source,
                })?;
                self.write(name, &data)?;
            }
        }
        Ok(())
    }

    /// The kept description, to load again with `description::load`.
    pub fn description_path(&self) -> PathBuf {
        self.path(DESCRIPTION)
    }

    /// Writes `selection.json`: pretty JSON and a final newline.
    pub fn write_selection(&self, selection: &SelectionRecord) -> Result<(), PreparedError> {
        let path = self.path(SELECTION);
        let json = serde_json::to_string_pretty(selection)
            .map_err(|source| PreparedError::Selection { path, source })?;
        self.write(SELECTION, (json + "\n").as_bytes())
    }

    /// The kept selection; an error naming the file (and saying the root was not prepared by
    /// imgbuild) when it is missing or malformed.
    pub fn selection(&self) -> Result<SelectionRecord, PreparedError> {
        let path = self.path(SELECTION);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(PreparedError::NotPrepared { path, source }),
        };
        serde_json::from_str(&text).map_err(|source| PreparedError::Selection { path, source })
    }

    /// Writes `base.json`, the bases of a derived root in order.
    pub fn write_base_records(&self, records: &[BaseRecord]) -> Result<(), PreparedError> {
        let path = self.path(BASE_RECORD);
        let json = serde_json::to_string_pretty(records)
            .map_err(|source| PreparedError::BaseRecord { path, source })?;
        self.write(BASE_RECORD, (json + "\n").as_bytes())
    }

    /// The bases recorded in a prepared derived root, in order.
    pub fn base_records(&self) -> Result<Vec<BaseRecord>, PreparedError> {
        let path = self.path(BASE_RECORD);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(PreparedError::NoBaseRecord { path, source }),
        };
        serde_json::from_str(&text).map_err(|source| PreparedError::BaseRecord { path, source })
    }

    /// Where the tree a derived root's bases gave is saved (the format is `image`'s).
    pub fn snapshot_path(&self) -> PathBuf {
        self.path(BASE_SNAPSHOT)
    }

    /// Where the lock of the installed packages is kept.
    pub fn lock_path(&self) -> PathBuf {
        self.path(PACKAGES_LOCK)
    }

    /// Keeps the lock of the installed packages, for the SBOM `create` writes.
    pub fn write_lock(&self, lock: &LockFile) -> Result<(), PreparedError> {
        self.create_dir()?;
        Ok(lock.write(&self.lock_path())?)
    }

    /// The kept lock of the installed packages; none in a root prepared before imgbuild kept it.
    pub fn lock(&self) -> Result<Option<LockFile>, PreparedError> {
        let path = self.lock_path();
        if !path.is_file() {
            return Ok(None);
        }
        Ok(Some(LockFile::read(&path)?))
    }

    /// Keeps the date of the installed packages.
    pub fn write_epoch(&self, epoch: &EpochRecord) -> Result<(), PreparedError> {
        let path = self.path(EPOCH);
        let json = serde_json::to_string_pretty(epoch)
            .map_err(|source| PreparedError::Epoch { path, source })?;
        self.write(EPOCH, (json + "\n").as_bytes())
    }

    /// The kept date of the installed packages; none in a root prepared before imgbuild kept it.
    pub fn epoch(&self) -> Result<Option<EpochRecord>, PreparedError> {
        let path = self.path(EPOCH);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PreparedError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| PreparedError::Epoch { path, source })
    }

    /// Copies a hook script in (mode 0755) and returns the path it runs as inside the root.
    pub fn keep_hook(&self, script: &Path, name: &str) -> Result<String, PreparedError> {
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::read(script).map_err(|source| PreparedError::Io {
            path: script.to_path_buf(),
            source,
        })?;
        self.write(name, &data)?;
        let path = self.path(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|source| PreparedError::Io { path, source })?;
        Ok(format!("/{DIR}/{name}"))
    }

    /// A hook `create` runs (`images.sh`), when the description had it.
    pub fn kept_hook(&self, name: &str) -> Option<PathBuf> {
        let path = self.path(name);
        path.is_file().then_some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_bytes_are_those_of_the_sorted_json_object() {
        let t = tempfile::tempdir().unwrap();
        let kept = PreparedRoot::new(t.path());
        for profiles in [vec![], vec!["a".to_string(), "b c".to_string()]] {
            let record = SelectionRecord {
                arch: "amd64".into(),
                profiles: profiles.clone(),
                image_type: "docker".into(),
            };
            kept.write_selection(&record).unwrap();
            // What `prepare` wrote before the record was typed.
            let old = serde_json::json!({
                "profiles": profiles,
                "type": "docker",
                "arch": "amd64",
            });
            let bytes = std::fs::read(t.path().join("image/selection.json")).unwrap();
            assert_eq!(String::from_utf8(bytes).unwrap(), format!("{old:#}\n"));
            assert_eq!(kept.selection().unwrap(), record);
        }
    }

    #[test]
    fn base_records_round_trip_as_pretty_json() {
        let t = tempfile::tempdir().unwrap();
        let kept = PreparedRoot::new(t.path());
        let records = vec![BaseRecord {
            uri: "oci-archive:/b.tar".into(),
            manifest_digest: "sha256:00".into(),
            layout: None,
            name: None,
        }];
        kept.write_base_records(&records).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("image/base.json")).unwrap(),
            "[\n  {\n    \"uri\": \"oci-archive:/b.tar\",\n    \"manifest_digest\": \"sha256:00\"\n  }\n]\n"
        );
        assert_eq!(kept.base_records().unwrap(), records);
    }

    #[test]
    fn a_missing_or_bad_selection_names_the_file() {
        let t = tempfile::tempdir().unwrap();
        let kept = PreparedRoot::new(t.path());
        let path = t.path().join("image/selection.json");
        let e = kept.selection().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}: not a root prepared by imgbuild (run `imgbuild prepare` first): ",
                path.display()
            )),
            "{e}"
        );
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"profiles": 1}"#).unwrap();
        let e = kept.selection().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: invalid selection: ", path.display())),
            "{e}"
        );
        let e = kept.base_records().unwrap_err().to_string();
        assert!(e.contains("image/base.json: "), "{e}");
        assert!(e.ends_with("(a derived image's root must be prepared by imgbuild)"));
        assert!(kept.lock().unwrap().is_none());
    }

    #[test]
    fn hooks_are_kept_executable_and_run_from_image() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("config.sh");
        std::fs::write(&script, b"echo hi\n").unwrap();
        let kept = PreparedRoot::new(t.path().join("root"));
        assert_eq!(
            kept.keep_hook(&script, "config.sh").unwrap(),
            "/image/config.sh"
        );
        let copy = t.path().join("root/image/config.sh");
        assert_eq!(std::fs::read(&copy).unwrap(), b"echo hi\n");
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(kept.kept_hook("config.sh"), Some(copy));
        assert_eq!(kept.kept_hook("images.sh"), None);
    }
}
