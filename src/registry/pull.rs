//! `pull`: an image from a registry into the local store.
//!
//! The manifest is fetched by tag or digest and verified against the digest the reference
//! names (or, by tag, against the digest computed from its bytes, which a `Docker-Content-Digest`
//! header must agree with). An image index or Docker manifest list is resolved to one platform's
//! manifest (the host's unless told otherwise). The config and every layer are downloaded into a
//! temporary directory under the store's `tmp/` (several layers at once), each checked for size
//! and sha256 as it streams; a dropped connection resumes with a `Range` request. Only then is the
//! image handed to [`Store::load`], which verifies everything again and stores it atomically; the
//! temporary directory goes away in every case (the store's garbage collection removes one left
//! by a killed process).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::fetch::FetchedManifest;
use super::{Client, Direction, OCI_MANIFEST, Reference, RegistryError, TransferProgress, sha256};
use crate::image::limits;
use crate::interrupt::{self, Interrupted};
use crate::storage::{ConfinedApplier, ImageRecord, LayerBlob, StorageError, Store, StoreInput};

/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The Docker v2 schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker v2 schema 1 manifests (refused).
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Layers downloaded at the same time.
const PARALLEL: usize = 3;
/// Attempts per blob before a pull gives up (the first and the retries).
const ATTEMPTS: u32 = 5;

/// Errors of a pull; each names the URL or reference and the digest involved.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// A request failed (transport, status, authentication).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The manifest's bytes do not hash to the digest they were asked for by.
    #[error("{url}: the manifest hashes to {actual}, not {expected}; refusing it")]
    ManifestDigest {
        /// The URL it was fetched from.
        url: String,
        /// The digest asked for (or announced by the registry).
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A Docker schema 1 manifest, which imgbuild does not read.
    #[error(
        "{url}: the registry serves a Docker schema 1 manifest ({media_type}), which is not supported; \
         push the image again with a current tool (Docker schema 2 or OCI)"
    )]
    Schema1 {
        /// The manifest's URL.
        url: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest of a media type that is no image manifest or index.
    #[error("{url}: unsupported manifest media type {media_type:?}")]
    MediaType {
        /// The manifest's URL.
        url: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest that cannot be used.
    #[error("{url}: invalid manifest: {reason}")]
    Manifest {
        /// The manifest's URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The index has no image for the platform asked for.
    #[error("{reference}: no image for platform {wanted} (the index has: {available})")]
    NoPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A `--platform` value that is not `os/arch[/variant]`.
    #[error(transparent)]
    PlatformSpec(#[from] crate::image::platform::PlatformError),
    /// A blob's bytes do not match its descriptor (digest or size).
    #[error("{url}: blob {digest}: {reason}; refusing it")]
    Blob {
        /// The blob's URL.
        url: String,
        /// The digest the manifest names.
        digest: String,
        /// What did not match.
        reason: String,
    },
    /// A blob's transfer failed on every attempt.
    #[error("{url}: blob {digest}: {message} (gave up after {attempts} attempts)")]
    GaveUp {
        /// The blob's URL.
        url: String,
        /// The blob.
        digest: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// A temporary file of the pull could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store refused or failed to store the image.
    #[error("storing {reference}: {source}")]
    Store {
        /// The reference pulled.
        reference: String,
        /// The store's error.
        #[source]
        source: StorageError,
    },
    /// The blobs to download (kept twice while they are stored) do not fit on the store's
    /// filesystem; checked before any download.
    #[error("{reference}: the image's {bytes} bytes of blobs do not fit: {source}")]
    NoSpace {
        /// The reference pulled.
        reference: String,
        /// The bytes the blobs need (twice their size).
        bytes: u64,
        /// What the filesystem has.
        #[source]
        source: limits::SpaceExceeded,
    },
    /// A stop signal arrived.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

fn io_err(path: &Path, source: std::io::Error) -> PullError {
    PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub use crate::image::platform::Platform;

/// What to pull of a multi-platform image.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to choose from an index; `None`: the host's.
    pub platform: Option<Platform>,
    /// Pull every platform's image of an index (the tag goes to the chosen platform's image,
    /// or to the index's first when it has none for that platform).
    pub all_platforms: bool,
}

/// What [`pull`] did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The digest of the image manifest stored.
    pub manifest_digest: String,
    /// The digest of the index or manifest list the image was chosen from, if any.
    pub index_digest: Option<String>,
    /// The image id (the config's digest).
    pub image_id: String,
    /// The image's platform (from the index entry, else the config).
    pub platform: Option<Platform>,
    /// The stored image's record.
    pub record: ImageRecord,
    /// Blobs downloaded (layers and config) for this image, all platforms included.
    pub downloaded: Vec<String>,
    /// The image was in the store already (nothing was downloaded for it).
    pub already_present: bool,
    /// With `all_platforms`: the other platforms' stored images (untagged).
    pub others: Vec<ImageRecord>,
}

/// What [`resolve`] found: the manifest a pull of the reference would store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The image manifest's digest (for a lock file: pull `REPO@DIGEST` later).
    pub manifest_digest: String,
    /// The index it was chosen from, if any.
    pub index_digest: Option<String>,
    /// The platform of the index entry chosen, if any.
    pub platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: u64,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Document {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// A verified manifest, parsed.
enum Manifest {
    /// An image manifest: its config and layers.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An index or manifest list: its entries.
    Index(Vec<Descriptor>),
}

/// What kind of document `media_type` (header or field) names, if one imgbuild reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Index,
}

fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(Kind::Index),
        _ => None,
    }
}

/// Parses a fetched manifest: its `mediaType` field, else the `Content-Type` header, else its
/// shape decides what it is. Schema 1 is refused by name.
fn parse_manifest(fetched: &FetchedManifest) -> Result<Manifest, PullError> {
    let bad = |reason: String| PullError::Manifest {
        url: fetched.url.clone(),
        reason,
    };
    let doc: Document =
        serde_json::from_slice(&fetched.bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let header = fetched
        .content_type
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json");
    let media_type = doc.media_type.clone().or(header);
    let schema1 = media_type
        .as_deref()
        .is_some_and(|m| DOCKER_SCHEMA1.contains(&m));
    if schema1 || doc.schema_version == Some(1) {
        return Err(PullError::Schema1 {
            url: fetched.url.clone(),
            media_type: media_type.unwrap_or_else(|| DOCKER_SCHEMA1[0].to_string()),
        });
    }
    let kind = match media_type.as_deref() {
        Some(m) => kind_of(m).ok_or_else(|| PullError::MediaType {
            url: fetched.url.clone(),
            media_type: m.to_string(),
        })?,
        None if doc.manifests.is_some() => Kind::Index,
        None => Kind::Image,
    };
    match kind {
        Kind::Index => {
            Ok(Manifest::Index(doc.manifests.ok_or_else(|| {
                bad("an index without \"manifests\"".into())
            })?))
        }
        Kind::Image => {
            let config = doc
                .config
                .ok_or_else(|| bad("no \"config\" descriptor".into()))?;
            let layers = doc.layers.unwrap_or_default();
            for d in std::iter::once(&config).chain(&layers) {
                check_digest(&d.digest).map_err(&bad)?;
            }
            if layers.is_empty() {
                return Err(bad("the image has no layers".into()));
            }
            if layers.len() > limits::MAX_LAYERS {
                return Err(bad(format!(
                    "{} layers, more than the {} Docker and podman allow",
                    layers.len(),
                    limits::MAX_LAYERS
                )));
            }
            if config.size > limits::MAX_CONFIG_SIZE {
                return Err(bad(format!(
                    "a config of {} bytes, more than the {} allowed",
                    config.size,
                    limits::MAX_CONFIG_SIZE
                )));
            }
            Ok(Manifest::Image { config, layers })
        }
    }
}

/// A blob digest imgbuild can verify and use as a file name: `sha256:` and 64 lowercase hex.
fn check_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        _ => Err(format!("unsupported digest {digest:?} (sha256 only)")),
    }
}

/// Fetches the manifest `reference` (tag or digest) of `repo` and verifies it: against
/// `expected` when given, else against the `Docker-Content-Digest` header when that is a sha256.
/// Returns it with the digest of its bytes.
fn fetch_verified(
    client: &Client,
    repo: &str,
    reference: &str,
    expected: Option<&str>,
) -> Result<(FetchedManifest, String), PullError> {
    let fetched = client.get_manifest(repo, reference)?;
    let actual = sha256(&fetched.bytes);
    let announced = fetched
        .header_digest
        .as_deref()
        .filter(|d| d.starts_with("sha256:"));
    if let Some(expected) = expected.or(announced)
        && expected != actual
    {
        return Err(PullError::ManifestDigest {
            url: fetched.url.clone(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok((fetched, actual))
}

/// The platforms of an index's image entries, for the error naming what it has.
fn platforms_of(entries: &[Descriptor]) -> String {
    let list: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref().map(Platform::to_string))
        .collect();
    if list.is_empty() {
        "no platforms".to_string()
    } else {
        list.join(", ")
    }
}

/// Whether an index entry is a platform's image (not an attestation or an unknown kind).
fn is_image_entry(e: &Descriptor) -> bool {
    e.media_type
        .as_deref()
        .is_none_or(|m| kind_of(m) == Some(Kind::Image))
        && e.platform.as_ref().is_none_or(|p| p.os != "unknown")
}

/// The index entry for `wanted`: the first whose platform matches; when the variant was not
/// written and none matches exactly, the first of the same OS and architecture.
fn choose<'a>(entries: &'a [Descriptor], wanted: &Platform) -> Option<&'a Descriptor> {
    let images = || entries.iter().filter(|e| is_image_entry(e));
    images()
        .find(|e| e.platform.as_ref().is_some_and(|p| wanted.matches(p)))
        .or_else(|| {
            wanted.variant.is_none().then_some(())?;
            images().find(|e| {
                e.platform
                    .as_ref()
                    .is_some_and(|p| p.os == wanted.os && p.architecture == wanted.architecture)
            })
        })
}

/// What to fetch the manifest by: the digest when the reference has one (a `TAG@DIGEST`
/// reference means the digest, as for podman), else the tag, else `latest`.
fn fetch_reference(reference: &Reference) -> &str {
    reference
        .digest
        .as_deref()
        .or(reference.tag.as_deref())
        .unwrap_or("latest")
}

fn display(reference: &Reference) -> String {
    let mut s = format!("{}/{}", reference.host, reference.repository);
    if let Some(t) = &reference.tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = &reference.digest {
        s.push('@');
        s.push_str(d);
    }
    s
}

/// Chooses the index entry for `opts` or fails naming the platforms the index has.
fn choose_entry<'a>(
    reference: &Reference,
    entries: &'a [Descriptor],
    opts: &PullOptions,
) -> Result<&'a Descriptor, PullError> {
    let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
    choose(entries, &wanted).ok_or_else(|| PullError::NoPlatform {
        reference: display(reference),
        wanted: wanted.to_string(),
        available: platforms_of(entries),
    })
}

/// Resolves `reference` to the digest of the image manifest a pull with `opts` would store,
/// fetching only the manifest (and verifying it). For an index this is the chosen platform's
/// entry, so a lock file can pin `REPO@DIGEST`.
pub fn resolve(
    client: &Client,
    reference: &Reference,
    opts: &PullOptions,
) -> Result<Resolved, PullError> {
    let repo = &reference.repository;
    let (fetched, digest) = fetch_verified(
        client,
        repo,
        fetch_reference(reference),
        reference.digest.as_deref(),
    )?;
    match parse_manifest(&fetched)? {
        Manifest::Image { .. } => Ok(Resolved {
            manifest_digest: digest,
            index_digest: None,
            platform: None,
        }),
        Manifest::Index(entries) => {
            let entry = choose_entry(reference, &entries, opts)?;
            check_digest(&entry.digest).map_err(|reason| PullError::Manifest {
                url: fetched.url.clone(),
                reason,
            })?;
            Ok(Resolved {
                manifest_digest: entry.digest.clone(),
                index_digest: Some(digest),
                platform: entry.platform.clone(),
            })
        }
    }
}

/// Pulls `reference` into `store` through `client` (connected to its host) and tags it
/// `HOST/REPO:TAG` when the reference has a tag (a pull by digest stays untagged, found by
/// `HOST/REPO@DIGEST` or the digest). An image the store has already (same manifest digest)
/// is only tagged: nothing is downloaded. On failure the store is unchanged. The repository is
/// recorded as holding the image's blobs (`blobinfo`), so that a later push of an image built on
/// it to another repository of the registry mounts them.
pub fn pull(
    client: &Client,
    reference: &Reference,
    opts: &PullOptions,
    store: &Store,
    progress: &dyn TransferProgress,
) -> Result<PullReport, PullError> {
    let report = pull_into(client, reference, opts, store, progress)?;
    let mut digests: Vec<String> = report
        .record
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect();
    digests.push(report.record.id.clone());
    // A hint only: a record that cannot be written costs a mount later, not the pull.
    let _ = super::blobinfo::record(
        store.root(),
        &reference.host,
        &reference.repository,
        &digests,
    );
    Ok(report)
}

fn pull_into(
    client: &Client,
    reference: &Reference,
    opts: &PullOptions,
    store: &Store,
    progress: &dyn TransferProgress,
) -> Result<PullReport, PullError> {
    let tags: Vec<String> = match (&reference.tag, &reference.digest) {
        (Some(t), _) => vec![format!("{}/{}:{t}", reference.host, reference.repository)],
        (None, Some(_)) => Vec::new(),
        (None, None) => vec![format!(
            "{}/{}:latest",
            reference.host, reference.repository
        )],
    };
    let name = display(reference);
    // By digest, an image the store has needs no request at all.
    if let Some(d) = &reference.digest
        && let Some(record) = present(store, d, &tags, &name)?
    {
        return Ok(report_present(record, None, None));
    }
    let repo = &reference.repository;
    let (fetched, digest) = fetch_verified(
        client,
        repo,
        fetch_reference(reference),
        reference.digest.as_deref(),
    )?;
    let job = Job {
        client,
        repo,
        name: &name,
        store,
        progress,
    };
    match parse_manifest(&fetched)? {
        Manifest::Image { config, layers } => {
            let (record, downloaded, already) =
                job.image(&fetched.bytes, &digest, &config, &layers, &tags)?;
            let platform = record_platform(&record);
            Ok(PullReport {
                manifest_digest: digest,
                index_digest: None,
                image_id: record.id.clone(),
                platform,
                record,
                downloaded,
                already_present: already,
                others: Vec::new(),
            })
        }
        Manifest::Index(entries) => {
            let chosen = match choose_entry(reference, &entries, opts) {
                Ok(e) => e,
                Err(e) if !opts.all_platforms => return Err(e),
                Err(e) => entries.iter().find(|e| is_image_entry(e)).ok_or(e)?,
            };
            let mut todo: Vec<&Descriptor> = vec![chosen];
            if opts.all_platforms {
                todo.extend(
                    entries
                        .iter()
                        .filter(|e| is_image_entry(e) && e.digest != chosen.digest),
                );
            }
            let mut report: Option<PullReport> = None;
            for entry in todo {
                let entry_tags = if report.is_none() { &tags[..] } else { &[] };
                let one = job.entry(entry, entry_tags)?;
                match &mut report {
                    None => {
                        report = Some(PullReport {
                            index_digest: Some(digest.clone()),
                            platform: entry.platform.clone(),
                            ..one
                        });
                    }
                    Some(r) => {
                        r.downloaded.extend(one.downloaded);
                        r.others.push(one.record);
                    }
                }
            }
            report.ok_or_else(|| PullError::Manifest {
                url: fetched.url.clone(),
                reason: "the index lists no image".into(),
            })
        }
    }
}

fn record_platform(record: &ImageRecord) -> Option<Platform> {
    Some(Platform {
        os: record.os.clone()?,
        architecture: record.architecture.clone()?,
        variant: None,
    })
}

fn report_present(
    record: ImageRecord,
    index_digest: Option<String>,
    platform: Option<Platform>,
) -> PullReport {
    PullReport {
        manifest_digest: record.manifest_digest.clone(),
        index_digest,
        image_id: record.id.clone(),
        platform: platform.or_else(|| record_platform(&record)),
        record,
        downloaded: Vec::new(),
        already_present: true,
        others: Vec::new(),
    }
}

/// The stored image of manifest `digest`, given `tags`, if the store has it.
fn present(
    store: &Store,
    digest: &str,
    tags: &[String],
    name: &str,
) -> Result<Option<ImageRecord>, PullError> {
    let store_err = |source| PullError::Store {
        reference: name.to_string(),
        source,
    };
    let record = match store.image(digest) {
        Ok(r) if r.manifest_digest == digest => r,
        Ok(_) | Err(StorageError::ImageNotFound(_) | StorageError::AmbiguousReference { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(store_err(e)),
    };
    let mut record = record;
    for t in tags {
        record = store.tag(&record.id, t).map_err(store_err)?;
    }
    Ok(Some(record))
}

/// One pull's shared pieces.
struct Job<'a> {
    client: &'a Client,
    repo: &'a str,
    name: &'a str,
    store: &'a Store,
    progress: &'a dyn TransferProgress,
}

impl Job<'_> {
    /// Pulls the index entry `entry` (an image manifest by digest).
    fn entry(&self, entry: &Descriptor, tags: &[String]) -> Result<PullReport, PullError> {
        let url = self.client.blob_url(self.repo, &entry.digest);
        check_digest(&entry.digest).map_err(|reason| PullError::Manifest {
            url: url.clone(),
            reason,
        })?;
        if let Some(record) = present(self.store, &entry.digest, tags, self.name)? {
            return Ok(report_present(record, None, entry.platform.clone()));
        }
        let (fetched, digest) =
            fetch_verified(self.client, self.repo, &entry.digest, Some(&entry.digest))?;
        if fetched.bytes.len() as u64 != entry.size {
            return Err(PullError::Manifest {
                url: fetched.url,
                reason: format!(
                    "{} bytes where the index says {}",
                    fetched.bytes.len(),
                    entry.size
                ),
            });
        }
        let Manifest::Image { config, layers } = parse_manifest(&fetched)? else {
            return Err(PullError::Manifest {
                url: fetched.url,
                reason: "an index inside an index is not supported".into(),
            });
        };
        let (record, downloaded, already) =
            self.image(&fetched.bytes, &digest, &config, &layers, tags)?;
        Ok(PullReport {
            manifest_digest: digest,
            index_digest: None,
            image_id: record.id.clone(),
            platform: entry.platform.clone(),
            record,
            downloaded,
            already_present: already,
            others: Vec::new(),
        })
    }

    /// Downloads the blobs of one image manifest the store does not have, then loads it.
    /// Returns the record, the blobs downloaded, and whether the image was there already.
    fn image(
        &self,
        manifest: &[u8],
        digest: &str,
        config: &Descriptor,
        layers: &[Descriptor],
        tags: &[String],
    ) -> Result<(ImageRecord, Vec<String>, bool), PullError> {
        if let Some(record) = present(self.store, digest, tags, self.name)? {
            return Ok((record, Vec::new(), true));
        }
        let tmp_root = self.store.root().join("tmp");
        let dir = tempfile::Builder::new()
            .prefix("pull-")
            .tempdir_in(&tmp_root)
            .map_err(|e| io_err(&tmp_root, e))?;
        // Removed by its Drop on every return; the watcher removes it when a signal ends the
        // process before that.
        let _registration =
            interrupt::remove_on_exit(dir.path(), |p| std::fs::remove_dir_all(p).is_ok());
        // The config is small and always fetched; layers the store has are not.
        let mut wanted: Vec<&Descriptor> = vec![config];
        for d in layers {
            if self.store.has_blob(&d.digest) {
                self.progress.skipped(&d.digest, "already in the store");
            } else if !wanted.iter().any(|w| w.digest == d.digest) {
                wanted.push(d);
            }
        }
        // Downloaded into tmp/ and moved into blobs/, then unpacked, which takes at least as
        // much again: twice the declared sizes, refused before any byte moves when the
        // filesystem cannot hold them (a manifest may declare any size).
        let bytes = wanted
            .iter()
            .fold(0u64, |sum, d| sum.saturating_add(d.size.saturating_mul(2)));
        limits::SpaceBudget::of(dir.path())
            .map_err(|e| io_err(dir.path(), e))?
            .take(bytes)
            .map_err(|source| PullError::NoSpace {
                reference: self.name.to_string(),
                bytes,
                source,
            })?;
        self.download_all(&wanted, dir.path())?;
        let blob_path = |d: &str| dir.path().join(d.trim_start_matches("sha256:"));
        let config_path = blob_path(&config.digest);
        let config_bytes = std::fs::read(&config_path).map_err(|e| io_err(&config_path, e))?;
        // The verified layer files become the store's blobs by rename, not by a second copy;
        // `load` then finds them there. What a failed load leaves of them is discarded.
        let mut adopted = Vec::new();
        for d in wanted.iter().filter(|w| w.digest != config.digest) {
            let p = blob_path(&d.digest);
            let moved = self
                .store
                .adopt_blob(&d.digest, &p)
                .map_err(|source| PullError::Store {
                    reference: self.name.to_string(),
                    source,
                });
            match moved {
                Ok(true) => adopted.push(d.digest.clone()),
                Ok(false) => {}
                Err(e) => {
                    let _ = self.store.discard_blobs(&adopted);
                    return Err(e);
                }
            }
        }
        let mut blobs = Vec::with_capacity(layers.len());
        for l in layers {
            // The store has every layer blob now and does not read this stream.
            let data: Box<dyn Read + Send> = Box::new(std::io::empty());
            blobs.push(LayerBlob {
                digest: l.digest.clone(),
                media_type: l
                    .media_type
                    .clone()
                    .unwrap_or_else(|| "application/vnd.oci.image.layer.v1.tar+gzip".into()),
                data,
            });
        }
        let input = StoreInput {
            manifest: manifest.to_vec(),
            config: config_bytes,
            layers: blobs,
        };
        let loaded = interrupt::check().map_err(PullError::from).and_then(|()| {
            self.store
                .load(input, tags, &ConfinedApplier)
                .map_err(|source| PullError::Store {
                    reference: self.name.to_string(),
                    source,
                })
        });
        let record = match loaded {
            Ok(r) => r,
            Err(e) => {
                let _ = self.store.discard_blobs(&adopted);
                return Err(e);
            }
        };
        let downloaded = wanted.iter().map(|d| d.digest.clone()).collect();
        Ok((record, downloaded, false))
    }

    /// Downloads `blobs` into `dir`, [`PARALLEL`] at a time; the first failure stops the others
    /// and is returned.
    fn download_all(&self, blobs: &[&Descriptor], dir: &Path) -> Result<(), PullError> {
        let queue = Mutex::new(blobs.iter());
        let failed: Mutex<Option<PullError>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..PARALLEL.min(blobs.len()) {
                s.spawn(|| {
                    loop {
                        let next = queue.lock().ok().and_then(|mut q| q.next());
                        let Some(desc) = next else { break };
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Err(e) = self.download(desc, dir, &stop) {
                            stop.store(true, Ordering::SeqCst);
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                            break;
                        }
                    }
                });
            }
        });
        match failed.into_inner() {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(poisoned) => poisoned.into_inner().map_or(Ok(()), Err),
        }
    }

    /// Downloads one blob to `dir/HEX`, verifying its size and sha256 while it streams. A
    /// dropped connection or a 5xx answer is retried from the bytes already written
    /// (`Range`), or from the start when the registry ignores the range.
    fn download(&self, desc: &Descriptor, dir: &Path, stop: &AtomicBool) -> Result<(), PullError> {
        let digest = &desc.digest;
        let url = self.client.blob_url(self.repo, digest);
        let path = dir.join(digest.trim_start_matches("sha256:"));
        let mut file = File::create(&path).map_err(|e| io_err(&path, e))?;
        let mut hash = Sha256::new();
        let mut have = 0u64;
        let mut attempt = 1;
        self.progress
            .start(digest, desc.size, Direction::Download, 0);
        loop {
            let failure = match self.client.get_blob(self.repo, digest, have) {
                Ok(body) => {
                    if body.offset == 0 && have > 0 {
                        // The registry ignored the range: start over.
                        file.set_len(0)
                            .and_then(|()| file.rewind())
                            .map_err(|e| io_err(&path, e))?;
                        hash = Sha256::new();
                        have = 0;
                        self.progress
                            .retry(digest, 0, "the registry ignored the range");
                    }
                    let mut body = body.body.into_reader();
                    match self.copy(
                        &mut body, &mut file, &path, &mut hash, &mut have, desc, stop,
                    )? {
                        None => break,
                        Some(message) => message,
                    }
                }
                Err(RegistryError::Transport { message, .. }) => message,
                Err(RegistryError::Status { status, .. }) if retryable_status(status) => {
                    format!("HTTP {status}")
                }
                Err(e) => return Err(e.into()),
            };
            if attempt >= ATTEMPTS {
                return Err(PullError::GaveUp {
                    url,
                    digest: digest.clone(),
                    attempts: attempt,
                    message: failure,
                });
            }
            self.progress.retry(digest, have, &failure);
            interrupt::sleep(Duration::from_millis(250 << attempt))?;
            attempt += 1;
        }
        if have != desc.size {
            return Err(PullError::Blob {
                url,
                digest: digest.clone(),
                reason: format!("{have} bytes where the manifest says {}", desc.size),
            });
        }
        let actual = format!("sha256:{}", hex::encode(hash.finalize()));
        if actual != *digest {
            return Err(PullError::Blob {
                url,
                digest: digest.clone(),
                reason: format!("the content hashes to {actual}"),
            });
        }
        file.flush().map_err(|e| io_err(&path, e))?;
        self.progress.done(digest);
        Ok(())
    }

    /// Copies a response body into the blob's file. `Ok(None)`: the body ended (the caller
    /// checks size and digest); `Ok(Some(why))`: the connection failed, retry from `have`.
    #[allow(clippy::too_many_arguments)]
    fn copy(
        &self,
        body: &mut dyn Read,
        file: &mut File,
        path: &Path,
        hash: &mut Sha256,
        have: &mut u64,
        desc: &Descriptor,
        stop: &AtomicBool,
    ) -> Result<Option<String>, PullError> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            interrupt::check()?;
            if stop.load(Ordering::SeqCst) {
                return Err(PullError::Registry(RegistryError::Transport {
                    url: self.client.blob_url(self.repo, &desc.digest),
                    message: "stopped after another blob failed".into(),
                }));
            }
            let n = match body.read(&mut buf) {
                Ok(0) if *have < desc.size => {
                    return Ok(Some(format!("the connection ended after {have} bytes")));
                }
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) => return Ok(Some(e.to_string())),
            };
            if *have + n as u64 > desc.size {
                return Err(PullError::Blob {
                    url: self.client.blob_url(self.repo, &desc.digest),
                    digest: desc.digest.clone(),
                    reason: format!("more than the {} bytes the manifest says", desc.size),
                });
            }
            file.write_all(&buf[..n]).map_err(|e| io_err(path, e))?;
            hash.update(&buf[..n]);
            *have += n as u64;
            self.progress.advance(&desc.digest, n as u64);
        }
    }
}

/// Answers worth another attempt (besides a failed connection): the registry's temporary errors.
fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest_char: char, platform: &str) -> Descriptor {
        Descriptor {
            media_type: Some(OCI_MANIFEST.into()),
            digest: format!("sha256:{}", digest_char.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform::parse(platform).unwrap()),
        }
    }

    #[test]
    fn fetches_by_digest_when_there_is_one() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = |s: &str| Reference::parse(s).unwrap();
        assert_eq!(fetch_reference(&r(&format!("h.org/x:1@{d}"))), d);
        assert_eq!(fetch_reference(&r("h.org/x:1")), "1");
        assert_eq!(fetch_reference(&r("h.org/x")), "latest");
    }

    #[test]
    fn chooses_index_entries() {
        let mut attestation = entry('c', "unknown/unknown");
        attestation.media_type = Some(OCI_MANIFEST.into());
        let entries = vec![
            attestation,
            entry('a', "linux/amd64"),
            entry('b', "linux/arm64/v8"),
            entry('d', "linux/arm/v6"),
        ];
        let pick =
            |s| choose(&entries, &Platform::parse(s).unwrap()).map(|e| e.digest.as_bytes()[7]);
        assert_eq!(pick("linux/amd64"), Some(b'a'));
        assert_eq!(pick("linux/arm64"), Some(b'b'));
        // No v7: an unwritten variant falls back to the same architecture; a written one not.
        assert_eq!(pick("linux/arm"), Some(b'd'));
        assert_eq!(pick("linux/arm/v7"), None);
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(pick("unknown/unknown"), None);
        assert_eq!(
            platforms_of(&entries),
            "unknown/unknown, linux/amd64, linux/arm64/v8, linux/arm/v6"
        );
    }

    fn fetched(body: &str, content_type: Option<&str>) -> FetchedManifest {
        FetchedManifest {
            bytes: body.as_bytes().to_vec(),
            content_type: content_type.map(str::to_string),
            header_digest: None,
            url: "http://r/v2/x/manifests/1".into(),
        }
    }

    #[test]
    fn tells_media_types_apart() {
        let d = format!("sha256:{}", "a".repeat(64));
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{d}","size":2}},"layers":[{{"digest":"{d}","size":3}}]}}"#
        );
        for ct in [Some(OCI_MANIFEST), Some(DOCKER_MANIFEST), None] {
            assert!(matches!(
                parse_manifest(&fetched(&image, ct)),
                Ok(Manifest::Image { .. })
            ));
        }
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{d}","size":2}}]}}"#);
        for ct in [Some(OCI_INDEX), Some(DOCKER_MANIFEST_LIST), None] {
            assert!(
                matches!(parse_manifest(&fetched(&index, ct)), Ok(Manifest::Index(e)) if e.len() == 1)
            );
        }
        let schema1 = r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#;
        let err = parse_manifest(&fetched(schema1, Some(DOCKER_SCHEMA1[1])))
            .err()
            .unwrap();
        assert!(err.to_string().contains("schema 1"), "{err}");
        assert!(matches!(
            parse_manifest(&fetched(schema1, Some("application/json"))),
            Err(PullError::Schema1 { .. })
        ));
        let helm = r#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart.v1"}"#;
        assert!(matches!(
            parse_manifest(&fetched(helm, None)),
            Err(PullError::MediaType { .. })
        ));
        let traversal =
            r#"{"schemaVersion":2,"config":{"digest":"sha256:../../x","size":2},"layers":[]}"#;
        let err = parse_manifest(&fetched(traversal, None)).err().unwrap();
        assert!(err.to_string().contains("sha256 only"), "{err}");
        let no_layers =
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{d}","size":2}},"layers":[]}}"#);
        assert!(parse_manifest(&fetched(&no_layers, None)).is_err());
    }
}
