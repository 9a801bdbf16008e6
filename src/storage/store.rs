//! The image store: blobs, layer and image records, tags, containers, and the lock that
//! serialises commands sharing a store.
//!
//! Layout under the root: `storage.json` (the driver the store was made with), `storage.lock`,
//! `blobs/sha256/<hex>`, `layers/<chain hex>.json`, `images/<id hex>.json`,
//! `containers/<id>.json`, `tmp/` (atomic writes), `layouts/<manifest hex>/` (OCI layouts of
//! stored images that derived builds read their registry bases from, removed with the image),
//! and one directory per driver. The registry client keeps `registry-blobs.json` beside them.

use super::digest::{HashingReader, chain_ids, digest_hex, sha256_digest};
use super::driver::{Driver, DriverKind, default_driver, open_driver};
use super::fsutil::{create_private_dir, random_hex_id, read_json, remove_any, write_json};
use super::reference::normalize_tag;
use super::{LayerApplier, LayerBlob, Result, StorageError, StoreInput};
use crate::image::limits::{self, SpaceBound};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Where the store lives unless told otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/imgbuild";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The store's root directory.
    pub root: PathBuf,
    /// The driver asked for; `None` takes the store's recorded driver, or for a new store
    /// overlay where it works, else vfs.
    pub driver: Option<DriverKind>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            root: PathBuf::from(DEFAULT_ROOT),
            driver: None,
        }
    }
}

/// One layer of a stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLayer {
    /// The layer's chain id (identifies the unpacked layer, shared between images).
    pub chain_id: String,
    /// sha256 of the uncompressed layer tar.
    pub diff_id: String,
    /// The blob's digest as the manifest lists it.
    pub digest: String,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// A stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: the config's digest, as Docker and Podman use it.
    pub id: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// `name:tag` references, sorted.
    pub tags: Vec<String>,
    /// From the config.
    pub architecture: Option<String>,
    /// From the config.
    pub os: Option<String>,
    /// From the config (RFC 3339).
    pub created: Option<String>,
    /// Sum of the layer blobs' sizes.
    pub size: u64,
    /// Bottom first.
    pub layers: Vec<ImageLayer>,
}

/// What `inspect` shows: the record with the parsed config and manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    /// The store's record.
    #[serde(flatten)]
    pub record: ImageRecord,
    /// The image config.
    pub config: serde_json::Value,
    /// The image manifest.
    pub manifest: serde_json::Value,
}

/// A container's writable root tree made from an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    /// The image id it was made from.
    pub image: String,
    /// The driver holding its root tree.
    pub driver: DriverKind,
    /// The root tree.
    pub rootfs: PathBuf,
}

/// What `remove_image` did, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Removal {
    /// The tag was removed.
    Untagged(String),
    /// The image (id) was deleted.
    Deleted(String),
}

#[derive(Serialize, Deserialize)]
struct StoreConfig {
    version: u32,
    driver: DriverKind,
}

#[derive(Serialize, Deserialize)]
struct LayerRecord {
    chain_id: String,
    diff_id: String,
    parent: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
struct ImageConfig {
    architecture: Option<String>,
    os: Option<String>,
    created: Option<String>,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// A held store lock; released when dropped (closing the file drops the flock).
struct Lock {
    _file: File,
}

/// An opened image store with its driver.
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    driver: Box<dyn Driver>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("driver", &self.driver.kind())
            .finish_non_exhaustive()
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Json {
        path: what.to_string(),
        source: e,
    })
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl Store {
    /// Open (creating if needed) the store at `opts.root` with the driver asked for. A store
    /// records its driver when first opened; asking for another later is an error.
    pub fn open(opts: &StoreOptions) -> Result<Store> {
        let root = opts.root.clone();
        for d in ["tmp", "blobs/sha256", "images", "layers", "containers"] {
            create_private_dir(&root.join(d))?;
        }
        let _lock = Self::lock_at(&root, true)?;
        let config_path = root.join("storage.json");
        let recorded: Option<StoreConfig> = read_json(&config_path)?;
        let kind = match (&recorded, opts.driver) {
            (Some(r), Some(q)) if r.driver != q => {
                return Err(StorageError::DriverMismatch {
                    root,
                    recorded: r.driver,
                    requested: q,
                });
            }
            (Some(r), _) => r.driver,
            (None, Some(q)) => q,
            (None, None) => default_driver(&root),
        };
        let driver = open_driver(kind, &root.join(kind.name()))?;
        if recorded.is_none() {
            if kind == DriverKind::Overlay {
                super::overlay::probe(&root).map_err(|e| StorageError::DriverUnavailable {
                    driver: kind,
                    path: root.clone(),
                    reason: format!("overlayfs cannot be mounted here ({e})"),
                })?;
            }
            let cfg = StoreConfig {
                version: 1,
                driver: kind,
            };
            write_json(&config_path, &cfg, &root.join("tmp"))?;
        }
        Ok(Store {
            tmp: root.join("tmp"),
            root,
            driver,
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's driver.
    pub fn driver_kind(&self) -> DriverKind {
        self.driver.kind()
    }

    fn lock_at(root: &Path, exclusive: bool) -> Result<Lock> {
        let path = root.join("storage.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        let locked = if exclusive {
            fs4::FileExt::lock(&file)
        } else {
            fs4::FileExt::lock_shared(&file)
        };
        locked.map_err(|e| StorageError::Lock { path, source: e })?;
        Ok(Lock { _file: file })
    }

    fn lock(&self, exclusive: bool) -> Result<Lock> {
        Self::lock_at(&self.root, exclusive)
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    fn image_path(&self, id: &str) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{}.json", hex_of(id)))
    }

    fn layer_path(&self, chain_id: &str) -> PathBuf {
        self.root
            .join("layers")
            .join(format!("{}.json", hex_of(chain_id)))
    }

    /// Store a blob from a stream, verifying it hashes to `expected` and, when `size` is given,
    /// that it has that many bytes: reading stops at the first byte past it. Returns its size.
    fn put_blob(&self, expected: &str, size: Option<u64>, data: &mut dyn Read) -> Result<u64> {
        digest_hex(expected, "blob")?;
        let dest = self.blob_path(expected);
        if let Ok(meta) = std::fs::metadata(&dest) {
            // Content-addressed and verified when written: the same digest is the same bytes.
            return Ok(meta.len());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&self.tmp)
            .map_err(|e| StorageError::io(&self.tmp, e))?;
        let blob_err = |path: &Path, e| StorageError::BlobWrite {
            digest: expected.to_string(),
            path: path.to_path_buf(),
            source: e,
        };
        let mut reader = HashingReader::new(data.take(size.map_or(u64::MAX, |n| n + 1)));
        std::io::copy(&mut reader, &mut tmp).map_err(|e| blob_err(tmp.path(), e))?;
        let (actual, len) = reader.finish().map_err(|e| blob_err(tmp.path(), e))?;
        if let Some(declared) = size
            && len != declared
        {
            return Err(StorageError::BlobSizeMismatch {
                digest: expected.to_string(),
                declared,
                found: if len > declared {
                    format!("more than {declared}")
                } else {
                    len.to_string()
                },
            });
        }
        if actual != expected {
            return Err(StorageError::BlobDigestMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        tmp.flush()
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| StorageError::io(tmp.path(), e))?;
        tmp.persist(&dest)
            .map_err(|e| StorageError::io(&dest, e.error))?;
        Ok(len)
    }

    /// Decompress a stored layer blob (gzip, zstd or plain tar, recognised by content as
    /// Docker does), hand it to the applier and check its diff id.
    fn apply_blob(&self, layer: &ImageLayer, dir: &Path, applier: &dyn LayerApplier) -> Result<()> {
        let path = self.blob_path(&layer.digest);
        let file = File::open(&path).map_err(|e| StorageError::io(&path, e))?;
        let mut buf = BufReader::with_capacity(256 * 1024, file);
        let head = buf.fill_buf().map_err(|e| StorageError::io(&path, e))?;
        let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::bufread::MultiGzDecoder::new(buf))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(
                zstd::stream::read::Decoder::with_buffer(buf)
                    .map_err(|e| StorageError::io(&path, e))?,
            )
        } else {
            Box::new(buf)
        };
        // Nothing declares the uncompressed size, and a wrong diff_id shows only at the end:
        // the stream is bounded by the space of the layer's filesystem instead, so a layer
        // that could never be stored stops at the first byte past it, not at a full disk.
        // Measured (and named) at the store's root: the layer directory is a temporary one on
        // the same filesystem.
        let bounded =
            SpaceBound::new(decoded, &self.root).map_err(|e| StorageError::io(&self.root, e))?;
        let mut reader = HashingReader::new(bounded);
        let applied = applier
            .apply(&mut reader, dir, self.driver.apply_mode())
            .map_err(|source| StorageError::Apply {
                blob: layer.digest.clone(),
                source,
            })
            // The tar reader stops at the end-of-archive marker: the rest is hashed too.
            .and_then(|()| {
                std::io::copy(&mut reader, &mut std::io::sink())
                    .map_err(|e| StorageError::io(&path, e))
            });
        if let Some(e) = reader.get_ref().exceeded() {
            return Err(StorageError::LayerTooLarge {
                blob: layer.digest.clone(),
                bound: e.clone(),
            });
        }
        applied?;
        let (actual, _) = reader.finish().map_err(|e| StorageError::io(&path, e))?;
        if actual != layer.diff_id {
            return Err(StorageError::DiffIdMismatch {
                blob: layer.digest.clone(),
                expected: layer.diff_id.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Load an image into the store and give it `tags` (`name[:tag]`, moved from any image
    /// holding them). Every blob is verified against its digest and every layer against its
    /// diff id; layers already stored (same chain id) are reused. On failure nothing of the
    /// image is left behind.
    pub fn load(
        &self,
        input: StoreInput,
        tags: &[String],
        applier: &dyn LayerApplier,
    ) -> Result<ImageRecord> {
        let tags = tags
            .iter()
            .map(|t| normalize_tag(t))
            .collect::<Result<Vec<_>>>()?;
        // The container tools' own limits (see `image::limits`), checked before anything is
        // stored.
        for (what, len, max) in [
            (
                "image manifest",
                input.manifest.len(),
                limits::MAX_MANIFEST_SIZE,
            ),
            ("image config", input.config.len(), limits::MAX_CONFIG_SIZE),
        ] {
            if len as u64 > max {
                return Err(StorageError::invalid(
                    what,
                    format!("{len} bytes, more than the {max} allowed"),
                ));
            }
        }
        let manifest: Manifest = parse_json(&input.manifest, "image manifest")?;
        digest_hex(&manifest.config.digest, "manifest config")?;
        let id = sha256_digest(&input.config);
        if manifest.config.digest != id {
            return Err(StorageError::BlobDigestMismatch {
                expected: manifest.config.digest,
                actual: id,
            });
        }
        let config: ImageConfig = parse_json(&input.config, "image config")?;
        if config.rootfs.kind != "layers" {
            return Err(StorageError::invalid(
                "image config",
                format!("rootfs type '{}' is not 'layers'", config.rootfs.kind),
            ));
        }
        let n = manifest.layers.len();
        if n == 0 {
            return Err(StorageError::invalid(
                "image manifest",
                "the image has no layers",
            ));
        }
        if n > limits::MAX_LAYERS {
            return Err(StorageError::invalid(
                "image manifest",
                format!(
                    "the image has {n} layers, more than the {} Docker and podman allow",
                    limits::MAX_LAYERS
                ),
            ));
        }
        if config.rootfs.diff_ids.len() != n || input.layers.len() != n {
            return Err(StorageError::invalid(
                "image manifest",
                format!(
                    "{n} layers in the manifest, {} diff_ids in the config, {} blobs given",
                    config.rootfs.diff_ids.len(),
                    input.layers.len()
                ),
            ));
        }
        for (i, (blob, desc)) in input.layers.iter().zip(&manifest.layers).enumerate() {
            digest_hex(&desc.digest, &format!("manifest layer {i}"))?;
            digest_hex(&config.rootfs.diff_ids[i], &format!("config diff_id {i}"))?;
            if blob.digest != desc.digest {
                return Err(StorageError::invalid(
                    format!("layer {i}"),
                    format!(
                        "blob {} given where the manifest lists {}",
                        blob.digest, desc.digest
                    ),
                ));
            }
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        let manifest_digest = sha256_digest(&input.manifest);
        let record = ImageRecord {
            id: id.clone(),
            manifest_digest: manifest_digest.clone(),
            manifest_media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| OCI_MANIFEST.to_string()),
            tags: Vec::new(),
            architecture: config.architecture,
            os: config.os,
            created: config.created,
            size: 0,
            layers: Vec::new(),
        };

        let _lock = self.lock(true)?;
        let result = self.load_locked(
            input,
            record,
            &manifest,
            &config.rootfs.diff_ids,
            &chains,
            &tags,
            applier,
        );
        if result.is_err() {
            // Best effort: drop whatever this load stored that no image refers to.
            let _ = self.collect_garbage();
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn load_locked(
        &self,
        input: StoreInput,
        mut record: ImageRecord,
        manifest: &Manifest,
        diff_ids: &[String],
        chains: &[String],
        tags: &[String],
        applier: &dyn LayerApplier,
    ) -> Result<ImageRecord> {
        self.put_blob(&record.id, None, &mut &input.config[..])?;
        self.put_blob(&record.manifest_digest, None, &mut &input.manifest[..])?;
        for (i, blob) in input.layers.into_iter().enumerate() {
            let LayerBlob {
                digest,
                media_type,
                mut data,
            } = blob;
            let size = self.put_blob(&digest, Some(manifest.layers[i].size), &mut data)?;
            record.size += size;
            record.layers.push(ImageLayer {
                chain_id: chains[i].clone(),
                diff_id: diff_ids[i].clone(),
                digest,
                media_type: manifest.layers[i].media_type.clone().unwrap_or(media_type),
                size,
            });
        }
        for (i, layer) in record.layers.iter().enumerate() {
            let hex = hex_of(&layer.chain_id);
            let meta = self.layer_path(&layer.chain_id);
            if meta.exists() && self.driver.has_layer(hex) {
                continue;
            }
            // A layer without its record is a leftover of an interrupted load: rebuild it.
            self.driver.remove_layer(hex)?;
            let parent = i.checked_sub(1).map(|p| hex_of(&chains[p]).to_string());
            self.driver
                .create_layer(hex, parent.as_deref(), &mut |dir| {
                    self.apply_blob(layer, dir, applier)
                })?;
            let rec = LayerRecord {
                chain_id: layer.chain_id.clone(),
                diff_id: layer.diff_id.clone(),
                parent: i.checked_sub(1).map(|p| chains[p].clone()),
            };
            if let Err(e) = write_json(&meta, &rec, &self.tmp) {
                // Without its record the layer would be invisible to garbage collection.
                let _ = self.driver.remove_layer(hex);
                return Err(e);
            }
        }
        let path = self.image_path(&record.id);
        let mut all_tags: BTreeSet<String> = match read_json::<ImageRecord>(&path)? {
            Some(old) => old.tags.into_iter().collect(),
            None => BTreeSet::new(),
        };
        all_tags.extend(tags.iter().cloned());
        record.tags = all_tags.into_iter().collect();
        self.take_tags(tags, &record.id)?;
        write_json(&path, &record, &self.tmp)?;
        Ok(record)
    }

    /// Remove `tags` from every image other than `keep`.
    fn take_tags(&self, tags: &[String], keep: &str) -> Result<()> {
        for mut other in self.read_images()? {
            if other.id == keep {
                continue;
            }
            let before = other.tags.len();
            other.tags.retain(|t| !tags.contains(t));
            if other.tags.len() != before {
                write_json(&self.image_path(&other.id), &other, &self.tmp)?;
            }
        }
        Ok(())
    }

    fn read_images(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root.join("images");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| StorageError::io(&dir, e))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| StorageError::io(&dir, e))?;
        names.sort();
        let mut out = Vec::new();
        for p in names {
            if p.extension().is_some_and(|e| e == "json")
                && let Some(r) = read_json::<ImageRecord>(&p)?
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// All images, tagged ones first by their first tag, then untagged ones by id.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let _lock = self.lock(false)?;
        let mut images = self.read_images()?;
        images.sort_by(|a, b| {
            (a.tags.is_empty(), a.tags.first(), &a.id).cmp(&(
                b.tags.is_empty(),
                b.tags.first(),
                &b.id,
            ))
        });
        Ok(images)
    }

    /// Find the image `reference` names: `name[:tag]`, a full `sha256:` id or manifest digest,
    /// `name@sha256:<manifest digest>` (a pull by digest; the digest names the content, so the
    /// name is not compared), or a unique prefix of an id (with or without `sha256:`).
    fn resolve(images: &[ImageRecord], reference: &str) -> Result<ImageRecord> {
        if let Some((_, digest)) = reference.split_once('@') {
            let found = digest_hex(digest, "reference")
                .ok()
                .and_then(|_| images.iter().find(|i| i.manifest_digest == digest));
            return found
                .cloned()
                .ok_or_else(|| StorageError::ImageNotFound(reference.to_string()));
        }
        let by_prefix = |hex: &str| -> Vec<&ImageRecord> {
            images
                .iter()
                .filter(|i| {
                    hex_of(&i.id).starts_with(hex) || i.manifest_digest == format!("sha256:{hex}")
                })
                .collect()
        };
        let is_hex = |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit());
        let matches = if let Some(hex) = reference.strip_prefix("sha256:") {
            if is_hex(hex) {
                by_prefix(&hex.to_ascii_lowercase())
            } else {
                Vec::new()
            }
        } else {
            let tagged: Vec<&ImageRecord> = match normalize_tag(reference) {
                Ok(tag) => images.iter().filter(|i| i.tags.contains(&tag)).collect(),
                Err(_) => Vec::new(),
            };
            if tagged.is_empty() && is_hex(reference) {
                by_prefix(&reference.to_ascii_lowercase())
            } else {
                tagged
            }
        };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(StorageError::ImageNotFound(reference.to_string())),
            many => Err(StorageError::AmbiguousReference {
                reference: reference.to_string(),
                count: many.len(),
            }),
        }
    }

    /// The record of the image `reference` names.
    pub fn image(&self, reference: &str) -> Result<ImageRecord> {
        let _lock = self.lock(false)?;
        Self::resolve(&self.read_images()?, reference)
    }

    /// Whether the store holds the blob `digest` (`sha256:<hex>`), verified when it was stored.
    pub fn has_blob(&self, digest: &str) -> bool {
        digest_hex(digest, "blob").is_ok() && self.blob_path(digest).is_file()
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        std::fs::read(&path).map_err(|e| StorageError::io(&path, e))
    }

    /// The image's record with its config and manifest.
    pub fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        let _lock = self.lock(false)?;
        let record = Self::resolve(&self.read_images()?, reference)?;
        let config = parse_json(&self.read_blob(&record.id)?, &record.id)?;
        let manifest = parse_json(
            &self.read_blob(&record.manifest_digest)?,
            &record.manifest_digest,
        )?;
        Ok(ImageDetails {
            record,
            config,
            manifest,
        })
    }

    /// Give the image `source` names the tag `target` (`name[:tag]`), moving it from any
    /// other image.
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageRecord> {
        let tag = normalize_tag(target)?;
        let _lock = self.lock(true)?;
        let mut record = Self::resolve(&self.read_images()?, source)?;
        self.take_tags(std::slice::from_ref(&tag), &record.id)?;
        if !record.tags.contains(&tag) {
            record.tags.push(tag);
            record.tags.sort();
            write_json(&self.image_path(&record.id), &record, &self.tmp)?;
        }
        Ok(record)
    }

    /// Remove one image as `rmi` does (see [`Store::remove_images`]); its error is the one
    /// reason it was refused.
    pub fn remove_image(&self, reference: &str) -> Result<Vec<Removal>> {
        match self.remove_images(&[reference.to_string()], false, false) {
            Err(StorageError::NotRemoved(mut errors)) if errors.len() == 1 => {
                Err(errors.swap_remove(0))
            }
            other => other,
        }
    }

    /// Remove images as `podman rmi` does, all or nothing: every reference is resolved and
    /// checked before anything changes, and if any fails nothing is removed
    /// ([`StorageError::NotRemoved`] lists each failure). A `name:tag` of an image with other
    /// tags only untags; an image named by id or digest that has several tags is refused
    /// unless `force`; an image a container was made from is refused unless `force`, which
    /// releases those containers' root trees. `all` removes every image (`references` are then
    /// ignored). Layers and blobs no remaining image uses are deleted afterwards.
    pub fn remove_images(
        &self,
        references: &[String],
        all: bool,
        force: bool,
    ) -> Result<Vec<Removal>> {
        let _lock = self.lock(true)?;
        let images = self.read_images()?;
        let containers = self.read_containers()?;
        // Tags still on each image as earlier references of this call are planned.
        let mut remaining: std::collections::BTreeMap<String, Vec<String>> = images
            .iter()
            .map(|i| (i.id.clone(), i.tags.clone()))
            .collect();
        let mut untag: Vec<(String, String)> = Vec::new();
        let mut delete: Vec<String> = Vec::new();
        let mut errors = Vec::new();
        let targets: Vec<(Option<String>, Result<ImageRecord>)> = if all {
            images.iter().map(|i| (None, Ok(i.clone()))).collect()
        } else {
            references
                .iter()
                .map(|r| (Some(r.clone()), Self::resolve(&images, r)))
                .collect()
        };
        for (reference, found) in targets {
            let record = match found {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if delete.contains(&record.id) {
                continue;
            }
            let tags = remaining.get(&record.id).cloned().unwrap_or_default();
            if let Some(reference) = &reference {
                let by_tag = normalize_tag(reference)
                    .ok()
                    .filter(|t| record.tags.contains(t));
                match by_tag {
                    // Already untagged by an earlier reference; the image stays.
                    Some(tag) if !tags.contains(&tag) => continue,
                    Some(tag) if tags.len() > 1 => {
                        if let Some(t) = remaining.get_mut(&record.id) {
                            t.retain(|x| *x != tag);
                        }
                        untag.push((record.id.clone(), tag));
                        continue;
                    }
                    None if tags.len() > 1 && !force => {
                        errors.push(StorageError::SeveralTags {
                            reference: reference.clone(),
                            tags,
                        });
                        continue;
                    }
                    Some(_) | None => {}
                }
            }
            if !force && let Some(c) = containers.iter().find(|c| c.image == record.id) {
                errors.push(StorageError::ImageInUse {
                    image: record.id.clone(),
                    container: c.id.clone(),
                });
                continue;
            }
            delete.push(record.id);
        }
        if !errors.is_empty() {
            return Err(StorageError::NotRemoved(errors));
        }
        let mut out = Vec::new();
        for (id, tag) in untag {
            if delete.contains(&id) {
                continue;
            }
            let Some(mut record) = images.iter().find(|i| i.id == id).cloned() else {
                continue;
            };
            record.tags = remaining.get(&id).cloned().unwrap_or_default();
            write_json(&self.image_path(&id), &record, &self.tmp)?;
            out.push(Removal::Untagged(tag));
        }
        for id in &delete {
            for c in containers.iter().filter(|c| c.image == *id) {
                self.driver.release_rootfs(&c.id)?;
                remove_any(&self.container_path(&c.id))?;
            }
            let path = self.image_path(id);
            std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            let record = images.iter().find(|i| i.id == *id);
            out.extend(
                record
                    .map(|r| r.tags.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(Removal::Untagged),
            );
            out.push(Removal::Deleted(id.clone()));
        }
        if !delete.is_empty() {
            self.collect_garbage()?;
        }
        Ok(out)
    }

    /// Delete layers and blobs no image refers to and leftover temp files. Called with the
    /// exclusive lock held.
    fn collect_garbage(&self) -> Result<()> {
        let images = self.read_images()?;
        let mut layers = BTreeSet::new();
        let mut blobs = BTreeSet::new();
        for img in &images {
            blobs.insert(hex_of(&img.id).to_string());
            blobs.insert(hex_of(&img.manifest_digest).to_string());
            for l in &img.layers {
                layers.insert(hex_of(&l.chain_id).to_string());
                blobs.insert(hex_of(&l.digest).to_string());
            }
        }
        for entry in list_dir(&self.root.join("layers"))? {
            let name = entry.to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            if !layers.contains(hex) {
                self.driver.remove_layer(hex)?;
                remove_any(&self.root.join("layers").join(&name))?;
            }
        }
        let blob_dir = self.root.join("blobs/sha256");
        for entry in list_dir(&blob_dir)? {
            if !blobs.contains(&*entry.to_string_lossy()) {
                remove_any(&blob_dir.join(entry))?;
            }
        }
        // The OCI layouts of registry bases (`Store::oci_layout`) go with their image: their
        // hard links would keep its blobs' data on disk.
        let layouts = self.root.join("layouts");
        if layouts.is_dir() {
            for entry in list_dir(&layouts)? {
                if !blobs.contains(&*entry.to_string_lossy()) {
                    remove_any(&layouts.join(entry))?;
                }
            }
        }
        for entry in list_dir(&self.tmp)? {
            remove_any(&self.tmp.join(entry))?;
        }
        Ok(())
    }

    /// Moves the file `file` (in the store's `tmp/`, so on the store's filesystem) into the
    /// store as the blob `digest`, without copying it: hashed again here (a read, which the
    /// page cache usually serves), synced, and renamed into place. Returns whether it was
    /// adopted (`false`: the store had the blob; the file is left). A downloader that verified
    /// its files while writing them hands them over this way instead of as streams
    /// [`Store::load`] would copy.
    pub fn adopt_blob(&self, digest: &str, file: &Path) -> Result<bool> {
        digest_hex(digest, "blob")?;
        if !file.starts_with(&self.tmp) {
            return Err(StorageError::invalid(
                "blob file",
                format!("{} is not in the store's tmp directory", file.display()),
            ));
        }
        let dest = self.blob_path(digest);
        if dest.exists() {
            return Ok(false);
        }
        let f = File::open(file).map_err(|e| StorageError::io(file, e))?;
        let mut reader = HashingReader::new(BufReader::new(&f));
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| StorageError::io(file, e))?;
        let (actual, _) = reader.finish().map_err(|e| StorageError::io(file, e))?;
        if actual != digest {
            return Err(StorageError::BlobDigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        f.sync_all().map_err(|e| StorageError::io(file, e))?;
        std::fs::rename(file, &dest).map_err(|e| StorageError::io(&dest, e))?;
        Ok(true)
    }

    /// Removes the blobs `digests` that no image refers to: what a failed load leaves of the
    /// blobs adopted for it.
    pub fn discard_blobs(&self, digests: &[String]) -> Result<()> {
        let _lock = self.lock(true)?;
        let images = self.read_images()?;
        for d in digests {
            let used = images.iter().any(|i| {
                i.id == *d || i.manifest_digest == *d || i.layers.iter().any(|l| l.digest == *d)
            });
            if !used {
                let p = self.blob_path(d);
                if p.exists() {
                    remove_any(&p)?;
                }
            }
        }
        Ok(())
    }

    /// The file of the blob `digest` in the store (which may not exist): a push reads a
    /// layer again from it to resume an upload.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        self.blob_path(digest)
    }

    /// The image's blobs as a [`StoreInput`], ready for an archive writer.
    pub fn export(&self, reference: &str) -> Result<StoreInput> {
        let _lock = self.lock(false)?;
        let record = Self::resolve(&self.read_images()?, reference)?;
        let mut layers = Vec::with_capacity(record.layers.len());
        for l in &record.layers {
            let path = self.blob_path(&l.digest);
            let file = File::open(&path).map_err(|e| StorageError::io(&path, e))?;
            layers.push(LayerBlob {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                data: Box::new(file),
            });
        }
        Ok(StoreInput {
            manifest: self.read_blob(&record.manifest_digest)?,
            config: self.read_blob(&record.id)?,
            layers,
        })
    }

    fn container_path(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(format!("{id}.json"))
    }

    fn read_containers(&self) -> Result<Vec<Container>> {
        let dir = self.root.join("containers");
        let mut out = Vec::new();
        for name in list_dir(&dir)? {
            let p = dir.join(name);
            if p.extension().is_some_and(|e| e == "json")
                && let Some(c) = read_json::<Container>(&p)?
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// All containers whose root trees exist, by id.
    pub fn containers(&self) -> Result<Vec<Container>> {
        let _lock = self.lock(false)?;
        self.read_containers()
    }

    /// Make a new container's writable root tree from the image `reference` names.
    pub fn create_container(&self, reference: &str) -> Result<Container> {
        let _lock = self.lock(true)?;
        let image = Self::resolve(&self.read_images()?, reference)?;
        let top = image
            .layers
            .last()
            .ok_or_else(|| StorageError::invalid(&image.id, "the image has no layers"))?;
        let id = random_hex_id()?;
        let rootfs = self.driver.create_rootfs(&id, hex_of(&top.chain_id))?;
        let container = Container {
            id: id.clone(),
            image: image.id,
            driver: self.driver.kind(),
            rootfs,
        };
        if let Err(e) = write_json(&self.container_path(&id), &container, &self.tmp) {
            let _ = self.driver.release_rootfs(&id);
            return Err(e);
        }
        Ok(container)
    }

    /// Unmount container `id`'s root tree (full id), keeping its writable part: for a
    /// container whose command has ended. Its `rootfs` then shows nothing until released.
    pub fn unmount_container(&self, id: &str) -> Result<()> {
        let _lock = self.lock(true)?;
        if !self.read_containers()?.iter().any(|c| c.id == id) {
            return Err(StorageError::ContainerNotFound(id.to_string()));
        }
        self.driver.unmount_rootfs(id)
    }

    /// Mount container `id`'s root tree again (full id) for a new start of its command; its
    /// writable part is kept from before. A mounted one stays as it is.
    pub fn mount_container(&self, id: &str) -> Result<()> {
        let _lock = self.lock(true)?;
        let container = self
            .read_containers()?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| StorageError::ContainerNotFound(id.to_string()))?;
        let image = Self::resolve(&self.read_images()?, &container.image)?;
        let top = image
            .layers
            .last()
            .ok_or_else(|| StorageError::invalid(&image.id, "the image has no layers"))?;
        self.driver.mount_rootfs(id, hex_of(&top.chain_id))
    }

    /// Release a container's root tree (unmount, delete its writable part). `id` may be a
    /// unique prefix.
    pub fn release_container(&self, id: &str) -> Result<()> {
        let _lock = self.lock(true)?;
        let found: Vec<Container> = if id.is_empty() {
            Vec::new()
        } else {
            self.read_containers()?
                .into_iter()
                .filter(|c| c.id.starts_with(id))
                .collect()
        };
        let container = match found.as_slice() {
            [one] => one,
            [] => return Err(StorageError::ContainerNotFound(id.to_string())),
            many => {
                return Err(StorageError::AmbiguousReference {
                    reference: id.to_string(),
                    count: many.len(),
                });
            }
        };
        self.driver.release_rootfs(&container.id)?;
        remove_any(&self.container_path(&container.id))
    }
}

fn list_dir(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| StorageError::io(dir, e))?;
    names.sort();
    Ok(names)
}
