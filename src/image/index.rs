//! Multi-platform image indexes ("manifest lists"): an OCI layout directory whose `index.json`
//! names exactly one image index, tagged with `org.opencontainers.image.ref.name` when a tag
//! is given. Images are added from OCI layouts and oci-archives (every blob verified and
//! hard-linked into the list) or, for images in a registry, as their manifest and config only
//! (the layers stay in the registry and are recorded in [`REMOTE_FILE`]).
//!
//! The index lists one image per platform, in a canonical order (os, architecture, variant,
//! then digest), written as canonical JSON: the same images give the same index digest in
//! whatever order they were added, on whichever machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest,
    MediaType,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::base::{self, BlobSource, DirSource, bad, blob_rel, parse_json, read_blob};
use super::config::{BuiltImage, canonical_json, write_blob};
use super::output::{OCI_LAYOUT, OutputFile, write_layout_archive};
use super::platform::Platform;
use super::{Compression, ImageError, Result, io_err, limits};

/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The Docker manifest list media type (read as an index).
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The OCI image manifest media type.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The file of a list naming the layers that are not in it but in a registry: a JSON object of
/// `sha256:` digest → `HOST/REPOSITORY` holding the blob. Not part of the index.
pub const REMOTE_FILE: &str = "imgbuild-remote-blobs.json";

/// The platform of an index entry, serialised with the image-spec's field names (`os.version`,
/// `os.features`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPlatform {
    /// E.g. `linux`.
    pub os: String,
    /// The OCI architecture: `amd64`, `arm64`, …
    pub architecture: String,
    /// The CPU variant (`v8`, `v7`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The OS version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
}

impl std::fmt::Display for IndexPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.platform().fmt(f)
    }
}

impl From<Platform> for IndexPlatform {
    fn from(p: Platform) -> IndexPlatform {
        IndexPlatform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant,
            os_version: None,
            os_features: None,
        }
    }
}

impl IndexPlatform {
    /// The platform an image config states.
    pub fn of_config(config: &ImageConfiguration) -> IndexPlatform {
        IndexPlatform {
            os: config.os().to_string(),
            architecture: config.architecture().to_string(),
            variant: config.variant().clone().filter(|v| !v.is_empty()),
            os_version: config.os_version().clone().filter(|v| !v.is_empty()),
            os_features: config.os_features().clone().filter(|v| !v.is_empty()),
        }
    }

    /// The `os/architecture[/variant]` part.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    /// Whether two platforms are the same for an index (one image each): the same OS version
    /// and the same platform as the container tools match them (`arm64` is `arm64/v8`).
    pub fn same_as(&self, other: &IndexPlatform) -> bool {
        self.os_version == other.os_version && self.platform().matches(&other.platform())
    }

    /// The canonical order of entries: os, architecture, variant (none first), OS version.
    fn sort_key(&self) -> (&str, &str, Option<&str>, Option<&str>) {
        (
            &self.os,
            &self.architecture,
            self.variant.as_deref(),
            self.os_version.as_deref(),
        )
    }
}

/// One image of the list: its manifest's descriptor and platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The manifest's media type (OCI, or Docker schema 2 for images from a registry).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:` digest of the manifest.
    pub digest: String,
    /// Size of the manifest in bytes.
    pub size: u64,
    /// The platform the image is for.
    pub platform: IndexPlatform,
}

/// The image index document as written: canonical JSON of this gives the index bytes.
#[derive(Serialize, Deserialize)]
struct IndexDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    manifests: Vec<IndexEntry>,
}

/// `index.json` of the list: the one image index, with the tag.
#[derive(Serialize, Deserialize)]
struct TopDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<TopEntry>,
}

#[derive(Serialize, Deserialize)]
struct TopEntry {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// A manifest list: an OCI layout directory holding one image index and its images.
#[derive(Debug)]
pub struct ManifestList {
    dir: PathBuf,
    entries: Vec<IndexEntry>,
    tag: Option<String>,
    remote: BTreeMap<String, String>,
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn descriptor(media_type: &str, digest: &str, size: u64, what: &Path) -> Result<Descriptor> {
    let d = Digest::from_str(digest).map_err(|e| bad(what, format!("{digest}: {e}")))?;
    Ok(Descriptor::new(MediaType::from(media_type), size, d))
}

/// The `mediaType` a manifest states, else the OCI manifest type.
fn manifest_media_type(json: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| OCI_MANIFEST.to_string())
}

impl ManifestList {
    /// A new, empty list at `dir` (which must not exist, or be an empty directory), saved at
    /// once so that [`ManifestList::open`] finds it.
    pub fn create(dir: &Path) -> Result<ManifestList> {
        match fs::read_dir(dir) {
            Ok(mut d) => {
                if d.next().is_some() {
                    return Err(bad(
                        dir,
                        "exists and is not empty; a new list needs a new directory",
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(dir)(e)),
        }
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let p = dir.join("oci-layout");
        crate::atomic::write(&p, OCI_LAYOUT).map_err(io_err(&p))?;
        let mut list = ManifestList {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
            tag: None,
            remote: BTreeMap::new(),
        };
        list.save(None)?;
        Ok(list)
    }

    /// Opens the list at `dir`; errors name the file and what is wrong with it.
    pub fn open(dir: &Path) -> Result<ManifestList> {
        let index_path = dir.join("index.json");
        if !dir.join("oci-layout").is_file() {
            return Err(bad(dir, "not a manifest list (no oci-layout file)"));
        }
        let top_json = limits::read_bounded(&index_path, "index.json", limits::MAX_MANIFEST_SIZE)?;
        let top: TopDoc = parse_json(&top_json, &index_path.display().to_string())?;
        let one = match top.manifests.as_slice() {
            [one] if is_index(&one.media_type) => one,
            [one] => {
                return Err(bad(
                    &index_path,
                    format!(
                        "names an image ({}), not an image index: not a manifest list",
                        one.media_type
                    ),
                ));
            }
            many => {
                return Err(bad(
                    &index_path,
                    format!(
                        "names {} manifests; a manifest list's index.json names exactly one image index",
                        many.len()
                    ),
                ));
            }
        };
        let d = descriptor(&one.media_type, &one.digest, one.size, &index_path)?;
        let json = read_blob(
            &mut DirSource(dir),
            &d,
            "image index",
            limits::MAX_MANIFEST_SIZE,
        )?;
        let shown = dir.join(blob_rel(dir, &d)?);
        let doc: IndexDoc = parse_json(&json, &shown.display().to_string())?;
        let remote_path = dir.join(REMOTE_FILE);
        let remote = match fs::read(&remote_path) {
            Ok(b) => parse_json(&b, &remote_path.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_err(&remote_path)(e)),
        };
        Ok(ManifestList {
            dir: dir.to_path_buf(),
            entries: doc.manifests,
            tag: one.annotations.get(ANNOTATION_REF_NAME).cloned(),
            remote,
        })
    }

    /// The list's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The images, in the canonical order once saved.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The tag `index.json` gives the index, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Layers that are not in the list but in a registry: `sha256:` digest → `HOST/REPOSITORY`.
    pub fn remote_blobs(&self) -> &BTreeMap<String, String> {
        &self.remote
    }

    /// Adds the image of the OCI layout `layout` (`tag` picks one when its `index.json` names
    /// several; an image index found there adds each of its images): every blob is verified
    /// against its digest and hard-linked (copied across filesystems) into the list. The
    /// platform is the image config's unless `platform` is given. An entry of the same platform
    /// is replaced. Returns the entries added.
    pub fn add_layout(
        &mut self,
        layout: &Path,
        tag: Option<&str>,
        platform: Option<IndexPlatform>,
    ) -> Result<Vec<IndexEntry>> {
        let mut src = DirSource(layout);
        let index_json = src.read(
            Path::new("index.json"),
            "index.json",
            limits::MAX_MANIFEST_SIZE,
        )?;
        let index_path = layout.join("index.json");
        let index: ImageIndex = parse_json(&index_json, &index_path.display().to_string())?;
        let ref_name = |d: &Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_REF_NAME).cloned())
        };
        let picked: Vec<&Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| tag.is_none_or(|t| ref_name(d).as_deref() == Some(t)))
            .collect();
        let top = match (picked.as_slice(), tag) {
            ([one], _) => *one,
            ([], Some(t)) => return Err(bad(&index_path, format!("no image tagged {t}"))),
            ([], None) => return Err(bad(&index_path, "lists no image")),
            (many, _) => {
                let tags: Vec<String> = many.iter().filter_map(|d| ref_name(d)).collect();
                return Err(bad(
                    &index_path,
                    format!(
                        "names {} images (tags: {}); say which with oci:{}:TAG",
                        many.len(),
                        if tags.is_empty() {
                            "none".into()
                        } else {
                            tags.join(", ")
                        },
                        layout.display()
                    ),
                ));
            }
        };
        let images: Vec<Descriptor> = if is_index(top.media_type().as_ref()) {
            let json = read_blob(&mut src, top, "image index", limits::MAX_MANIFEST_SIZE)?;
            let nested: ImageIndex = parse_json(&json, top.digest().as_ref())?;
            if nested.manifests().is_empty() {
                return Err(bad(
                    layout,
                    format!("the image index {} lists no image", top.digest()),
                ));
            }
            nested.manifests().clone()
        } else {
            vec![top.clone()]
        };
        if platform.is_some() && images.len() > 1 {
            return Err(ImageError::Option {
                option: "platform".into(),
                reason: format!(
                    "{} holds {} images; a platform can be given for one image only",
                    layout.display(),
                    images.len()
                ),
            });
        }
        let mut platform = platform;
        let mut added = Vec::new();
        for d in &images {
            if is_index(d.media_type().as_ref()) {
                return Err(bad(
                    layout,
                    format!(
                        "{} is an index inside an index, which is not added",
                        d.digest()
                    ),
                ));
            }
            added.push(self.add_layout_image(layout, d, platform.take())?);
        }
        Ok(added)
    }

    /// One image manifest of a layout: blobs verified into the list, then the entry.
    fn add_layout_image(
        &mut self,
        layout: &Path,
        d: &Descriptor,
        platform: Option<IndexPlatform>,
    ) -> Result<IndexEntry> {
        let mut src = DirSource(layout);
        let manifest_json = read_blob(&mut src, d, "manifest", limits::MAX_MANIFEST_SIZE)?;
        let manifest: ImageManifest = parse_json(&manifest_json, d.digest().as_ref())?;
        limits::check_layer_count(layout, manifest.layers().len())?;
        let config_json = read_blob(
            &mut src,
            manifest.config(),
            "config",
            limits::MAX_CONFIG_SIZE,
        )?;
        for l in manifest.layers() {
            self.import_blob(layout, l)?;
        }
        self.add_verified(&manifest_json, &manifest, &config_json, platform, None)
    }

    /// Adds the image of an oci-archive (plain or compressed as a whole; `tag` and `platform`
    /// as for [`ManifestList::add_layout`]). Its layout members are unpacked into a temporary
    /// directory inside the list (so the blobs are hard-linked from there), then added.
    pub fn add_oci_archive(
        &mut self,
        archive: &Path,
        tag: Option<&str>,
        platform: Option<IndexPlatform>,
    ) -> Result<Vec<IndexEntry>> {
        let want = BTreeMap::from([(
            PathBuf::from("index.json"),
            (limits::MAX_MANIFEST_SIZE, "index.json".to_string()),
        )]);
        let members = base::scan_members(archive, &want)?;
        if !members.read.contains_key(Path::new("index.json")) {
            return Err(bad(archive, "not an oci-archive: no index.json"));
        }
        let layout_member = |n: &Path| {
            n == Path::new("index.json")
                || n == Path::new("oci-layout")
                || n.parent() == Some(Path::new("blobs/sha256"))
        };
        let needed: BTreeSet<PathBuf> = members
            .sizes
            .keys()
            .chain(members.links.keys())
            .filter(|n| layout_member(n))
            .cloned()
            .collect();
        let tmp = base::unpack_members_in(archive, &members, &needed, &self.dir, ".tmp-archive-")?;
        let dir = tmp.path().to_path_buf();
        // Errors name the archive and its member, not the temporary copy.
        self.add_layout(&dir, tag, platform).map_err(|e| match e {
            ImageError::BadBase { path, reason } => bad(
                &path.strip_prefix(&dir).map_or(archive.to_path_buf(), |m| {
                    PathBuf::from(format!("{}:{}", archive.display(), m.display()))
                }),
                reason.replace(&dir.display().to_string(), &archive.display().to_string()),
            ),
            ImageError::DigestMismatch {
                path,
                expected,
                actual,
            } => ImageError::DigestMismatch {
                path: path.replace(
                    &format!("{}/", dir.display()),
                    &format!("{}:", archive.display()),
                ),
                expected,
                actual,
            },
            e => e,
        })
    }

    /// Adds an image imgbuild built (its blobs in one directory; see [`BuiltImage`]): every blob
    /// verified and hard-linked into the list, the platform the image's config states unless
    /// `platform` is given, replacing an image of the same platform.
    pub fn add_image(
        &mut self,
        image: &BuiltImage,
        platform: Option<IndexPlatform>,
    ) -> Result<IndexEntry> {
        let read = |d: &Descriptor, what: &str, max: u64| -> Result<Vec<u8>> {
            let path = image.blob_path(d.digest());
            limits::check_size(&path, what, d.size(), max)?;
            let data = limits::read_bounded(&path, what, max)?;
            let actual = digest_of(&data);
            if actual != d.digest().to_string() || data.len() as u64 != d.size() {
                return Err(ImageError::DigestMismatch {
                    path: path.display().to_string(),
                    expected: d.digest().to_string(),
                    actual,
                });
            }
            Ok(data)
        };
        let manifest_json = read(&image.manifest, "manifest", limits::MAX_MANIFEST_SIZE)?;
        let manifest: ImageManifest = parse_json(&manifest_json, image.manifest.digest().as_ref())?;
        let config_json = read(manifest.config(), "config", limits::MAX_CONFIG_SIZE)?;
        for l in manifest.layers() {
            self.import_file(&image.blob_path(l.digest()), l)?;
        }
        self.add_verified(&manifest_json, &manifest, &config_json, platform, None)
    }

    /// Adds an image of a registry by its manifest and config only (`platform` as for
    /// [`ManifestList::add_layout`]): its layers are recorded as held by `remote`
    /// (`HOST/REPOSITORY`), from where a push to that registry mounts them.
    pub fn add_manifest(
        &mut self,
        manifest_json: &[u8],
        config_json: &[u8],
        remote: &str,
        platform: Option<IndexPlatform>,
    ) -> Result<IndexEntry> {
        let what = format!("{remote}@{}", digest_of(manifest_json));
        limits::check_size(
            Path::new(&what),
            "manifest",
            manifest_json.len() as u64,
            limits::MAX_MANIFEST_SIZE,
        )?;
        let manifest: ImageManifest = parse_json(manifest_json, &what)?;
        limits::check_layer_count(Path::new(&what), manifest.layers().len())?;
        let expected = manifest.config().digest().to_string();
        let actual = digest_of(config_json);
        if actual != expected || config_json.len() as u64 != manifest.config().size() {
            return Err(ImageError::DigestMismatch {
                path: format!("{what}: config"),
                expected,
                actual,
            });
        }
        self.add_verified(
            manifest_json,
            &manifest,
            config_json,
            platform,
            Some(remote),
        )
    }

    /// Records a verified image: writes its manifest and config blobs, the entry (replacing
    /// one of the same platform), and for a registry image its layers as remote.
    fn add_verified(
        &mut self,
        manifest_json: &[u8],
        manifest: &ImageManifest,
        config_json: &[u8],
        platform: Option<IndexPlatform>,
        remote: Option<&str>,
    ) -> Result<IndexEntry> {
        let config: ImageConfiguration =
            parse_json(config_json, manifest.config().digest().as_ref())?;
        let platform = platform.unwrap_or_else(|| IndexPlatform::of_config(&config));
        if platform.os.is_empty() || platform.architecture.is_empty() {
            return Err(ImageError::Spec {
                field: format!("{}: os/architecture", manifest.config().digest()),
                message: "the image config names no OS or architecture; give the platform".into(),
            });
        }
        let blobs = self.blobs_dir();
        let (digest, size) = write_blob(&blobs, manifest_json)?;
        write_blob(&blobs, config_json)?;
        if let Some(remote) = remote {
            for l in manifest.layers() {
                let d = l.digest().to_string();
                if !blobs.join(hex_of(&d)).is_file() {
                    self.remote.insert(d, remote.to_string());
                }
            }
        }
        let entry = IndexEntry {
            media_type: manifest_media_type(manifest_json),
            digest: digest.to_string(),
            size,
            platform,
        };
        self.entries
            .retain(|e| !e.platform.same_as(&entry.platform) && e.digest != entry.digest);
        self.entries.push(entry.clone());
        Ok(entry)
    }

    /// Sets the platform of the entry `digest` (replacing another entry of that platform).
    pub fn set_platform(&mut self, digest: &str, platform: IndexPlatform) -> Result<IndexEntry> {
        let i = self
            .entries
            .iter()
            .position(|e| e.digest == digest)
            .ok_or_else(|| bad(&self.dir, format!("no image {digest} in the list")))?;
        let mut entry = self.entries.remove(i);
        entry.platform = platform;
        self.entries
            .retain(|e| !e.platform.same_as(&entry.platform));
        self.entries.push(entry.clone());
        Ok(entry)
    }

    /// Removes the entry `digest`; `false` if the list has none.
    pub fn remove(&mut self, digest: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.digest != digest);
        self.entries.len() != before
    }

    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs/sha256")
    }

    /// Puts the blob `d` of `layout` into the list (see [`ManifestList::import_file`]).
    fn import_blob(&self, layout: &Path, d: &Descriptor) -> Result<()> {
        self.import_file(&layout.join(blob_rel(layout, d)?), d)
    }

    /// Puts the file `src`, blob `d`, into the list: verified against its digest, hard-linked
    /// (or copied) under a temporary name, then renamed to its digest, so a name in the list is
    /// always a whole, checked blob. A blob the list has is not read again.
    fn import_file(&self, src: &Path, d: &Descriptor) -> Result<()> {
        let blobs = self.blobs_dir();
        let dest = blobs.join(hex_of(d.digest().as_ref()));
        if dest.is_file() {
            return Ok(());
        }
        base::verify_file(src, d)?;
        let tmp = blobs.join(format!(".tmp-import-{}", hex_of(d.digest().as_ref())));
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(src, &tmp).is_err() {
            fs::copy(src, &tmp).map_err(io_err(src))?;
        }
        fs::rename(&tmp, &dest).map_err(io_err(&dest))
    }

    /// Every blob the index and its images need: (hex, whether it is in the list).
    fn referenced(&self, index_digest: Option<&str>) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        if let Some(d) = index_digest {
            out.insert(hex_of(d).to_string());
        }
        for e in &self.entries {
            let d = descriptor(&e.media_type, &e.digest, e.size, &self.dir)?;
            let json = read_blob(
                &mut DirSource(&self.dir),
                &d,
                "manifest",
                limits::MAX_MANIFEST_SIZE,
            )?;
            let m: ImageManifest = parse_json(&json, &e.digest)?;
            out.insert(hex_of(&e.digest).to_string());
            for b in std::iter::once(m.config()).chain(m.layers()) {
                out.insert(hex_of(b.digest().as_ref()).to_string());
            }
        }
        Ok(out)
    }

    /// Writes the image index blob and `index.json` (atomically), tagged `tag` (`None` keeps
    /// the list's tag), removes the blobs no image needs any more, and returns the index's
    /// `sha256:` digest. The entries are sorted (os, architecture, variant, OS version, digest)
    /// and the JSON is canonical, so the same images give the same digest in any add order.
    pub fn save(&mut self, tag: Option<&str>) -> Result<String> {
        if let Some(t) = tag {
            self.tag = Some(t.to_string());
        }
        self.entries.sort_by(|a, b| {
            a.platform
                .sort_key()
                .cmp(&b.platform.sort_key())
                .then_with(|| a.digest.cmp(&b.digest))
        });
        let doc = IndexDoc {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: self.entries.clone(),
        };
        let json = canonical_json(&doc, "image index")?;
        let (digest, size) = write_blob(&self.blobs_dir(), &json)?;
        let digest = digest.to_string();
        let mut annotations = BTreeMap::new();
        if let Some(t) = &self.tag {
            annotations.insert(ANNOTATION_REF_NAME.to_string(), t.clone());
        }
        let top = TopDoc {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: vec![TopEntry {
                media_type: OCI_INDEX.to_string(),
                digest: digest.clone(),
                size,
                annotations,
            }],
        };
        let top_json = canonical_json(&top, "index.json")?;
        let keep = self.referenced(Some(&digest))?;
        self.remote.retain(|d, _| keep.contains(hex_of(d)));
        let remote_path = self.dir.join(REMOTE_FILE);
        if self.remote.is_empty() {
            match fs::remove_file(&remote_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&remote_path)(e));
                }
                _ => {}
            }
        } else {
            let json = canonical_json(&self.remote, REMOTE_FILE)?;
            crate::atomic::write(&remote_path, &json).map_err(io_err(&remote_path))?;
        }
        let index_path = self.dir.join("index.json");
        crate::atomic::write(&index_path, &top_json).map_err(io_err(&index_path))?;
        // Blobs of replaced or removed images: the index no longer reaches them.
        let blobs = self.blobs_dir();
        for e in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let e = e.map_err(io_err(&blobs))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let p = e.path();
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        Ok(digest)
    }

    /// The digest and bytes of the saved image index.
    pub fn index_json(&self) -> Result<(String, Vec<u8>)> {
        let index_path = self.dir.join("index.json");
        let top_json = limits::read_bounded(&index_path, "index.json", limits::MAX_MANIFEST_SIZE)?;
        let top: TopDoc = parse_json(&top_json, &index_path.display().to_string())?;
        let one = top
            .manifests
            .first()
            .ok_or_else(|| bad(&index_path, "names no image index"))?;
        let d = descriptor(&one.media_type, &one.digest, one.size, &index_path)?;
        let json = read_blob(
            &mut DirSource(&self.dir),
            &d,
            "image index",
            limits::MAX_MANIFEST_SIZE,
        )?;
        Ok((one.digest.clone(), json))
    }
}

/// `sha256:` digest of `data`.
fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes the list at `list` as a multi-platform oci-archive at `dest` (a tar of the layout:
/// sorted entries, fixed owner and mtime 0), compressed with `compression`. Refused while an
/// image's layers are only in a registry.
pub fn write_index_archive(
    list: &Path,
    dest: &Path,
    compression: Compression,
) -> Result<OutputFile> {
    write_index_archive_with(list, dest, compression, super::compress::threads(0), 0)
}

/// [`write_index_archive`] with the compressor's threads and the entries' mtime.
pub fn write_index_archive_with(
    list: &Path,
    dest: &Path,
    compression: Compression,
    threads: usize,
    mtime: u64,
) -> Result<OutputFile> {
    let l = ManifestList::open(list)?;
    if let Some((d, from)) = l.remote.iter().next() {
        return Err(bad(
            list,
            format!(
                "blob {d} is in the registry ({from}), not in the list; an archive needs every \
                 blob: add that image from an OCI layout or oci-archive instead"
            ),
        ));
    }
    let (digest, _) = l.index_json()?;
    let index_path = list.join("index.json");
    let index = limits::read_bounded(&index_path, "index.json", limits::MAX_MANIFEST_SIZE)?;
    let blobs: Vec<(String, PathBuf)> = l
        .referenced(Some(&digest))?
        .into_iter()
        .map(|h| {
            let p = l.blobs_dir().join(&h);
            (h, p)
        })
        .collect();
    write_layout_archive(dest, &blobs, &index, compression, threads, mtime)
}

/// Small single-image OCI layouts for tests (here and in the integration tests).
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// Writes an OCI layout at `dir` holding one image of one tiny layer (`content` in a file
    /// `f`) whose config says `os`/`architecture`[/`variant`]; `tag` names it in `index.json`.
    /// Returns the manifest digest.
    pub fn write_layout(
        dir: &Path,
        architecture: &str,
        variant: Option<&str>,
        content: &[u8],
        tag: Option<&str>,
    ) -> Result<String> {
        let blobs = dir.join("blobs/sha256");
        let mut tar = Vec::new();
        super::super::tarball::append_bytes(&mut tar, b"f", content, 0).map_err(io_err(dir))?;
        super::super::tarball::write_end(&mut tar).map_err(io_err(dir))?;
        let (layer, layer_size) = write_blob(&blobs, &tar)?;
        let mut config = serde_json::json!({
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.to_string()]},
            "config": {},
        });
        if let Some(v) = variant {
            config["variant"] = v.into();
        }
        let config = canonical_json(&config, "config")?;
        let (config_digest, config_size) = write_blob(&blobs, &config)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer.to_string(),
                "size": layer_size,
            }],
        });
        let manifest = canonical_json(&manifest, "manifest")?;
        let (m, m_size) = write_blob(&blobs, &manifest)?;
        let mut entry = serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": m.to_string(), "size": m_size,
        });
        if let Some(t) = tag {
            entry["annotations"] = serde_json::json!({ ANNOTATION_REF_NAME: t });
        }
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
        let p = dir.join("index.json");
        fs::write(&p, canonical_json(&index, "index.json")?).map_err(io_err(&p))?;
        let p = dir.join("oci-layout");
        fs::write(&p, OCI_LAYOUT).map_err(io_err(&p))?;
        Ok(m.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::write_layout;
    use super::*;

    fn layouts(t: &Path) -> (PathBuf, PathBuf) {
        let a = t.join("amd64");
        let b = t.join("arm64");
        write_layout(&a, "amd64", None, b"amd64", Some("1.0")).unwrap();
        write_layout(&b, "arm64", Some("v8"), b"arm64", None).unwrap();
        (a, b)
    }

    #[test]
    fn any_add_order_gives_the_same_index() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let (amd, arm) = layouts(t);
        let mut one = ManifestList::create(&t.join("one")).unwrap();
        one.add_layout(&amd, None, None).unwrap();
        one.add_layout(&arm, None, None).unwrap();
        let first = one.save(Some("v1")).unwrap();
        let mut two = ManifestList::create(&t.join("two")).unwrap();
        two.add_layout(&arm, None, None).unwrap();
        two.add_layout(&amd, Some("1.0"), None).unwrap();
        assert_eq!(two.save(Some("v1")).unwrap(), first);
        let reopened = ManifestList::open(&t.join("one")).unwrap();
        assert_eq!(reopened.tag(), Some("v1"));
        let archs: Vec<&str> = reopened
            .entries()
            .iter()
            .map(|e| e.platform.architecture.as_str())
            .collect();
        assert_eq!(archs, ["amd64", "arm64"]);
        assert_eq!(
            reopened.entries()[1].platform.variant.as_deref(),
            Some("v8")
        );
        // The index blob is what index.json names, with the image-spec's field names.
        let (digest, json) = reopened.index_json().unwrap();
        assert_eq!(digest, first);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains(r#""mediaType":"application/vnd.oci.image.index.v1+json""#));
        assert!(
            text.contains(r#""platform":{"architecture":"arm64","os":"linux","variant":"v8"}"#)
        );
        // Archives of either list are the same bytes.
        let archive = |list: &str, name: &str| {
            write_index_archive(&t.join(list), &t.join(name), Compression::None).unwrap()
        };
        let from_one = archive("one", "one.tar");
        assert_eq!(from_one.sha256, archive("two", "two.tar").sha256);
        // And the archive adds back as the same list.
        let mut three = ManifestList::create(&t.join("three")).unwrap();
        three.add_oci_archive(&from_one.path, None, None).unwrap();
        assert_eq!(three.save(None).unwrap(), first);
    }

    #[test]
    fn an_image_of_the_same_platform_is_replaced_and_its_blobs_dropped() {
        let t = tempfile::tempdir().unwrap();
        let (a, _) = layouts(t.path());
        let a2 = t.path().join("amd64-new");
        let new = write_layout(&a2, "amd64", None, b"newer", None).unwrap();
        let dir = t.path().join("list");
        let mut l = ManifestList::create(&dir).unwrap();
        let old = l.add_layout(&a, None, None).unwrap().remove(0);
        l.save(None).unwrap();
        l.add_layout(&a2, None, None).unwrap();
        l.save(None).unwrap();
        assert_eq!(l.entries().len(), 1);
        assert_eq!(l.entries()[0].digest, new);
        assert!(!dir.join("blobs/sha256").join(hex_of(&old.digest)).exists());
        // A platform given on add replaces what the config says.
        let p = IndexPlatform {
            architecture: "arm64".into(),
            variant: Some("v8".into()),
            ..l.entries()[0].platform.clone()
        };
        l.add_layout(&a, None, Some(p)).unwrap();
        l.save(None).unwrap();
        assert_eq!(l.entries().len(), 2);
        // arm64 without a variant is arm64/v8: the same platform.
        let same = IndexPlatform {
            variant: None,
            ..l.entries()[1].platform.clone()
        };
        l.set_platform(&new, same).unwrap();
        assert_eq!(l.entries().len(), 1);
    }

    #[test]
    fn a_tampered_blob_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let (a, _) = layouts(t.path());
        // The layer is the largest blob of the image: replace its content, keep its size.
        let blobs = a.join("blobs/sha256");
        let layer = fs::read_dir(&blobs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap();
        let mut data = fs::read(&layer).unwrap();
        data[600] ^= 1;
        fs::write(&layer, &data).unwrap();
        let dir = t.path().join("list");
        let mut l = ManifestList::create(&dir).unwrap();
        match l.add_layout(&a, None, None) {
            Err(ImageError::DigestMismatch { path, .. }) => {
                assert!(path.contains(&layer.display().to_string()), "{path}");
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert!(l.entries().is_empty());
        let left: Vec<_> = fs::read_dir(dir.join("blobs/sha256")).unwrap().collect();
        assert_eq!(left.len(), 1, "only the empty index blob: {left:?}");
    }

    #[test]
    fn the_platform_comes_from_the_config_and_registry_layers_are_remote() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, arm) = layouts(tmp.path());
        let mut local = ManifestList::create(&tmp.path().join("list")).unwrap();
        let entry = local.add_layout(&arm, None, None).unwrap().remove(0);
        assert_eq!(entry.platform.to_string(), "linux/arm64/v8");
        // The same image as a registry would hand it: manifest and config only.
        let blobs = arm.join("blobs/sha256");
        let manifest_json = fs::read(blobs.join(hex_of(&entry.digest))).unwrap();
        let manifest: ImageManifest = serde_json::from_slice(&manifest_json).unwrap();
        let config = fs::read(blobs.join(manifest.config().digest().digest())).unwrap();
        let dir = tmp.path().join("remote");
        let mut remote = ManifestList::create(&dir).unwrap();
        assert!(
            remote
                .add_manifest(&manifest_json, b"{}", "h:5000/r", None)
                .is_err(),
            "config not checked"
        );
        let added = remote
            .add_manifest(&manifest_json, &config, "h:5000/r", None)
            .unwrap();
        assert_eq!(added, entry);
        assert_eq!(remote.save(Some("x")).unwrap(), local.save(None).unwrap());
        let layer = manifest.layers()[0].digest().to_string();
        let reopened = ManifestList::open(&dir).unwrap();
        assert_eq!(
            reopened.remote_blobs().get(&layer).map(String::as_str),
            Some("h:5000/r")
        );
        let archive = tmp.path().join("a.tar");
        assert!(write_index_archive(&dir, &archive, Compression::None).is_err());
    }

    #[test]
    fn a_built_image_adds_as_its_layout_does() {
        let tmp = tempfile::tempdir().unwrap();
        let (amd, _) = layouts(tmp.path());
        let mut from_layout = ManifestList::create(&tmp.path().join("a")).unwrap();
        let entry = from_layout.add_layout(&amd, None, None).unwrap().remove(0);
        let blobs = amd.join("blobs/sha256");
        let manifest_json = fs::read(blobs.join(hex_of(&entry.digest))).unwrap();
        let manifest: ImageManifest = serde_json::from_slice(&manifest_json).unwrap();
        let image = BuiltImage {
            blobs_dir: blobs,
            manifest: descriptor(OCI_MANIFEST, &entry.digest, entry.size, &amd).unwrap(),
            config: manifest.config().clone(),
            layers: Vec::new(),
            ref_name: "1.0".into(),
            repo_tags: Vec::new(),
            architecture: "amd64".into(),
            os: "linux".into(),
        };
        let mut built = ManifestList::create(&tmp.path().join("b")).unwrap();
        assert_eq!(built.add_image(&image, None).unwrap(), entry);
        assert_eq!(built.save(None).unwrap(), from_layout.save(None).unwrap());
    }

    #[test]
    fn what_is_not_a_list_is_refused_with_the_file() {
        let t = tempfile::tempdir().unwrap();
        let (a, _) = layouts(t.path());
        let err = ManifestList::open(&a).unwrap_err().to_string();
        assert!(
            err.contains("index.json") && err.contains("not an image index"),
            "{err}"
        );
        assert!(ManifestList::create(&a).is_err(), "not empty");
    }
}
