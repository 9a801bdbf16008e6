//! Archives in and out of the store: `load` reads a docker-archive, an oci-archive (either
//! possibly compressed as a whole) or an OCI layout directory with the image module's verifying
//! reader and hands it to [`Store::load`]; `save` writes an image of the store with the image
//! module's atomic archive writers.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    ANNOTATION_REF_NAME, DescriptorBuilder, Digest, ImageIndex, ImageManifest, MediaType,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{
    ConfinedApplier, ImageRecord, LayerBlob, StorageError, Store, StoreInput, normalize_tag,
};
use crate::image::base::{BaseImage, BaseSource};
use crate::image::config::{BuiltImage, ImageLayer};
use crate::image::output::{self, OutputFile};
use crate::image::{Compression, ImageError};

/// Errors of loading and saving archives; each names the archive or image involved.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive could not be read or failed verification.
    #[error("{}", named(path, source))]
    Read {
        /// The archive.
        path: PathBuf,
        /// What the reader found.
        #[source]
        source: ImageError,
    },
    /// The archive is readable but not usable as an image.
    #[error("{path}: {reason}")]
    Invalid {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The store refused the image or does not hold it.
    #[error("{context}: {source}")]
    Store {
        /// The archive loaded or the image saved.
        context: String,
        /// The store's error.
        #[source]
        source: StorageError,
    },
    /// Writing the archive failed (nothing is left at the destination).
    #[error("writing {path}: {source}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// The writer's error.
        #[source]
        source: ImageError,
    },
}

/// Result alias for archive operations.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// The archive formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save`'s format: `manifest.json`, `<config>.json`, uncompressed layer tars.
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// An archive read and verified, ready for [`Store::load`].
#[derive(Debug)]
pub struct ArchiveImage {
    /// The image as the store takes it.
    pub input: StoreInput,
    /// The names the archive gives the image (docker-archive `RepoTags`, OCI
    /// `org.opencontainers.image.ref.name` when it is a full `name:tag`), normalised.
    pub tags: Vec<String>,
    /// Keeps the reader's temporary unpacked copy alive while the layers are read.
    base: BaseImage,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

/// Tags an OCI index gives the manifest `digest`: ref names that are full `name:tag`
/// references (a bare tag such as `12` names no repository and is skipped).
fn index_tags(index: &[u8], digest: &str) -> Vec<String> {
    let Ok(index) = serde_json::from_slice::<ImageIndex>(index) else {
        return Vec::new();
    };
    let single = index.manifests().len() == 1;
    index
        .manifests()
        .iter()
        .filter(|d| single || d.digest().to_string() == digest)
        .filter_map(|d| {
            let ann = d.annotations().as_ref()?;
            let r = ann
                .get(ANNOTATION_REF_NAME)
                .filter(|r| r.contains(':') || r.contains('/'))
                .or_else(|| ann.get("io.containerd.image.name"))?;
            Some(r.clone())
        })
        .collect()
}

fn docker_tags(manifest_json: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Vec<DockerEntry>>(manifest_json)
        .ok()
        .and_then(|v| v.into_iter().next())
        .and_then(|e| e.repo_tags)
        .unwrap_or_default()
}

/// Normalised, sorted, deduplicated tags; ones that are not valid references are dropped
/// (an archive's names are advisory, the image loads without them).
fn clean_tags(tags: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = tags
        .iter()
        .filter_map(|t| {
            // Docker's familiar form: Docker Hub's host and `library/` are implied.
            let t = t.strip_prefix("docker.io/").unwrap_or(t);
            let t = t.strip_prefix("library/").unwrap_or(t);
            normalize_tag(t).ok()
        })
        .collect();
    set.into_iter().collect()
}

/// Reads and verifies the image in `path`: an OCI layout directory, or a docker-archive or
/// oci-archive file, plain or compressed as a whole with gzip, zstd or xz. Every blob is
/// checked against its digest and every layer against its diff id before anything is stored.
/// The limits of [`crate::image::limits`] are checked first: an image of too many layers, or
/// with an oversized manifest, index or config, is refused before anything is unpacked.
pub fn open_archive(path: &Path) -> Result<ArchiveImage> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let name = path.display().to_string();
    let base = if meta.is_dir() {
        BaseImage::from_source(&BaseSource::OciLayout(path.to_path_buf(), None), &name)
    } else {
        BaseImage::from_archive_file(path, &name)
    }
    .map_err(|source| ArchiveError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tags = base
        .docker_manifest_json
        .as_deref()
        .map(docker_tags)
        .unwrap_or_default();
    if let Some(index) = &base.index_json {
        tags.extend(index_tags(index, &base.manifest_digest));
    }
    let mut layers = Vec::with_capacity(base.layers.len());
    for l in &base.layers {
        let f = File::open(&l.path).map_err(io_err(&l.path))?;
        layers.push(LayerBlob {
            digest: l.descriptor.digest().to_string(),
            media_type: l.descriptor.media_type().to_string(),
            data: Box::new(f),
        });
    }
    Ok(ArchiveImage {
        input: StoreInput {
            manifest: base.manifest_json.clone(),
            config: base.config_json.clone(),
            layers,
        },
        tags: clean_tags(&tags),
        base,
    })
}

impl ArchiveImage {
    /// The file each layer blob is read from (digest → path; an archive's are in the reader's
    /// temporary copy, which lives as long as `self`): a push reads them again to resume.
    pub fn layer_files(&self) -> std::collections::HashMap<String, PathBuf> {
        self.base
            .layers
            .iter()
            .map(|l| (l.descriptor.digest().to_string(), l.path.clone()))
            .collect()
    }
}

/// `error` led by the archive's path, said once: most reader errors name it already, but one
/// found in a member unpacked for verification names that member's temporary file instead.
fn named(path: &Path, error: &ImageError) -> String {
    let text = error.to_string();
    let shown = path.display().to_string();
    if text.starts_with(&shown) {
        text
    } else {
        format!("{shown}: {text}")
    }
}

/// An image [`load_archive`] put into the store.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The image's record after the load (all its tags, also ones it had before).
    pub record: ImageRecord,
    /// The names this load gave it: the archive's, then the extra ones.
    pub tags: Vec<String>,
}

/// Loads the image in `path` (see [`open_archive`]) into `store` with the archive's own tags
/// plus `extra_tags`, unpacking layers with the confined extraction. On failure nothing of
/// the image is left in the store.
pub fn load_archive(store: &Store, path: &Path, extra_tags: &[String]) -> Result<Loaded> {
    // The names asked for are checked before the archive is read.
    let extra = extra_tags
        .iter()
        .map(|t| normalize_tag(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ArchiveError::Store {
            context: format!("loading {}", path.display()),
            source,
        })?;
    let img = open_archive(path)?;
    let mut tags = img.tags.clone();
    for t in extra {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    let ArchiveImage { input, base, .. } = img;
    let record = store
        .load(input, &tags, &ConfinedApplier)
        .map_err(|source| ArchiveError::Store {
            context: format!("loading {}", path.display()),
            source,
        })?;
    drop(base);
    Ok(Loaded { record, tags })
}

fn spec_err(dest: &Path, what: &str, message: String) -> ArchiveError {
    ArchiveError::Write {
        path: dest.to_path_buf(),
        source: ImageError::Spec {
            field: what.to_string(),
            message,
        },
    }
}

/// Writes the image `reference` of `store` as an archive at `dest` in `format`, uncompressed
/// and with fixed timestamps (the same image gives the same bytes). The file appears only
/// when complete; on failure nothing is left. The first name is `reference` when it is a tag
/// of the image, else the image's first tag.
pub fn save_image(
    store: &Store,
    reference: &str,
    dest: &Path,
    format: SaveFormat,
) -> Result<OutputFile> {
    let store_err = |source| ArchiveError::Store {
        context: format!("saving {reference}"),
        source,
    };
    let record = store.image(reference).map_err(store_err)?;
    let input = store.export(reference).map_err(store_err)?;
    let parent = crate::atomic::parent_dir(dest).to_path_buf();
    // The writers take an image whose blobs are files in one directory: stage them next to
    // the destination (same filesystem, removed when done).
    let stage = tempfile::Builder::new()
        .prefix(".tmp-save-")
        .tempdir_in(&parent)
        .map_err(io_err(&parent))?;
    let blobs = stage.path().join("blobs");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let put = |digest: &str, data: &mut dyn Read| -> Result<u64> {
        let p = blobs.join(digest.trim_start_matches("sha256:"));
        let mut f = File::create(&p).map_err(io_err(&p))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let len = data.read(&mut buf).map_err(io_err(&p))?;
            if len == 0 {
                break;
            }
            h.update(&buf[..len]);
            io::Write::write_all(&mut f, &buf[..len]).map_err(io_err(&p))?;
            size += len as u64;
        }
        let actual = format!("sha256:{}", hex::encode(h.finalize()));
        if actual != digest {
            return Err(invalid(
                &p,
                format!("stored blob {digest} now hashes to {actual}"),
            ));
        }
        Ok(size)
    };
    let manifest: ImageManifest = serde_json::from_slice(&input.manifest)
        .map_err(|e| spec_err(dest, "manifest", e.to_string()))?;
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&input.config)
        .map_err(|e| spec_err(dest, "config", e.to_string()))?;
    put(&record.manifest_digest, &mut &input.manifest[..])?;
    put(&record.id, &mut &input.config[..])?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != input.layers.len() || manifest.layers().len() != input.layers.len() {
        return Err(spec_err(
            dest,
            "manifest",
            "layer counts of manifest, config and store differ".into(),
        ));
    }
    let mut layers = Vec::new();
    for ((mut blob, desc), diff_id) in input
        .layers
        .into_iter()
        .zip(manifest.layers())
        .zip(diff_ids)
    {
        put(&blob.digest, &mut blob.data)?;
        layers.push(ImageLayer {
            descriptor: desc.clone(),
            diff_id: diff_id.clone(),
            tar_size: None,
            plain: None,
        });
    }
    let digest = |d: &str| {
        d.parse::<Digest>()
            .map_err(|e| spec_err(dest, "digest", format!("{d}: {e}")))
    };
    let manifest_desc = DescriptorBuilder::default()
        .media_type(MediaType::from(record.manifest_media_type.as_str()))
        .digest(digest(&record.manifest_digest)?)
        .size(input.manifest.len() as u64)
        .build()
        .map_err(|e| spec_err(dest, "manifest", e.to_string()))?;
    let mut tags = record.tags.clone();
    if let Ok(t) = normalize_tag(reference)
        && let Some(i) = tags.iter().position(|x| *x == t)
    {
        let t = tags.remove(i);
        tags.insert(0, t);
    }
    let image = BuiltImage {
        blobs_dir: blobs.clone(),
        manifest: manifest_desc,
        config: manifest.config().clone(),
        layers,
        ref_name: tags.first().cloned().unwrap_or_default(),
        repo_tags: tags,
        architecture: record.architecture.clone().unwrap_or_default(),
        os: record.os.clone().unwrap_or_default(),
    };
    let write = match format {
        SaveFormat::DockerArchive => output::write_docker_archive,
        SaveFormat::OciArchive => output::write_oci_archive,
    };
    let out =
        write(&image, dest, Compression::None, 1, 0).map_err(|source| ArchiveError::Write {
            path: dest.to_path_buf(),
            source,
        })?;
    // The writer's temp file is private (0600); a saved image is an ordinary file, as
    // `docker save` leaves it: 0644 less the umask.
    let mode = 0o644 & !process_umask();
    fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(io_err(dest))?;
    Ok(out)
}

/// The process's umask, read without changing it (setting it to read it back would race with
/// other threads creating files); 022 where the kernel does not report it.
fn process_umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_need_a_repository() {
        let idx = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"annotations":{"org.opencontainers.image.ref.name":"12"}}]}"#;
        assert!(index_tags(idx, "sha256:x").is_empty());
        let idx = String::from_utf8_lossy(idx).replace("\"12\"", "\"deb:12\"");
        assert_eq!(index_tags(idx.as_bytes(), "sha256:x"), vec!["deb:12"]);
    }

    #[test]
    fn tags_are_normalised_and_bad_ones_dropped() {
        assert_eq!(
            clean_tags(&[
                "docker.io/library/debian:12".into(),
                "docker.io/sk/img:2".into(),
                "debian:12".into(),
                "Bad Name".into(),
                "x".into(),
            ]),
            vec!["debian:12", "sk/img:2", "x:latest"]
        );
    }

    #[test]
    fn docker_manifest_tags() {
        assert_eq!(
            docker_tags(br#"[{"Config":"a.json","RepoTags":["a:1"],"Layers":[]}]"#),
            vec!["a:1"]
        );
        assert!(docker_tags(br#"[{"Config":"a.json","RepoTags":null}]"#).is_empty());
        assert!(docker_tags(b"garbage").is_empty());
    }
}
