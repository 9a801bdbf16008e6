//! Reading base images for derived builds: `oci-archive:PATH`, `docker-archive:PATH`,
//! `oci:DIR[:TAG]` or a plain path (archive or layout, detected). Every blob is checked against
//! its digest before use; layer streams are decompressed and checked against their diff_id as
//! they are read. Archives are unpacked into a private temp dir by name only (regular files
//! and in-archive symlinks to them; nothing can land outside it).

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, DescriptorBuilder, Digest, History, ImageConfiguration,
    ImageIndex, ImageManifest, ImageManifestBuilder, MediaType,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::compress::{self, HashingWriter};
use super::config::{BaseRef, canonical_json};
use super::{ImageError, Result, io_err};

/// Where a base image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseSource {
    /// An oci-archive file (optionally compressed as a whole).
    OciArchive(PathBuf),
    /// A docker-archive file (optionally compressed as a whole).
    DockerArchive(PathBuf),
    /// An OCI layout directory and an optional `org.opencontainers.image.ref.name`.
    OciLayout(PathBuf, Option<String>),
}

impl BaseSource {
    /// Parses a `derived_from` URI. Plain paths (with or without `file://`) are detected from
    /// what they hold: a directory is a layout, an archive with `manifest.json` is a
    /// docker-archive, otherwise an oci-archive.
    pub fn parse(uri: &str) -> Result<Self> {
        if let Some(p) = uri.strip_prefix("oci-archive:") {
            return Ok(BaseSource::OciArchive(p.into()));
        }
        if let Some(p) = uri.strip_prefix("docker-archive:") {
            return Ok(BaseSource::DockerArchive(p.into()));
        }
        if let Some(rest) = uri.strip_prefix("oci:") {
            // The tag is after the last ':' unless that ':' is part of the path.
            return Ok(match rest.rsplit_once(':') {
                Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => {
                    BaseSource::OciLayout(dir.into(), Some(tag.to_string()))
                }
                _ => BaseSource::OciLayout(rest.into(), None),
            });
        }
        let p = PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
        if p.is_dir() {
            return Ok(BaseSource::OciLayout(p, None));
        }
        if uri.contains("://") {
            return Err(ImageError::Option {
                option: "derived_from".into(),
                reason: format!("{uri}: transport not supported here"),
            });
        }
        // Peek: docker-archives hold manifest.json.
        let f = File::open(&p).map_err(io_err(&p))?;
        let r = compress::decoder(BufReader::new(f)).map_err(io_err(&p))?;
        let mut ar = tar::Archive::new(r);
        for e in ar.entries().map_err(io_err(&p))? {
            let e = e.map_err(io_err(&p))?;
            let name = e.path_bytes().into_owned();
            let name = name.strip_prefix(b"./").unwrap_or(&name);
            if name == b"manifest.json" {
                return Ok(BaseSource::DockerArchive(p));
            }
            if name == b"index.json" || name == b"oci-layout" {
                return Ok(BaseSource::OciArchive(p));
            }
        }
        Err(ImageError::BadBase {
            path: p,
            reason: "neither an oci-archive nor a docker-archive".into(),
        })
    }
}

/// One verified layer of a base image.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    /// Manifest descriptor of the blob.
    pub descriptor: Descriptor,
    /// `sha256:<hex>` of the uncompressed tar (from the config).
    pub diff_id: String,
    /// The blob file (digest already verified).
    pub path: PathBuf,
}

/// A base image read and verified.
#[derive(Debug)]
pub struct BaseImage {
    /// Where it came from, for `org.opencontainers.image.base.name`.
    pub name: String,
    /// The manifest (for docker-archives, the equivalent OCI manifest).
    pub manifest: ImageManifest,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// The image config.
    pub config: ImageConfiguration,
    /// The layers, bottom first.
    pub layers: Vec<BaseLayer>,
    /// The config's history.
    pub history: Vec<History>,
    _tmp: Option<tempfile::TempDir>,
}

fn bad(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::BadBase {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn sha256_of(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut h).map_err(io_err(path))?;
    let (_, hexd, n) = h.finish();
    Ok((format!("sha256:{hexd}"), n))
}

/// Checks a blob against its descriptor and returns its path.
fn verified_blob(layout: &Path, d: &Descriptor) -> Result<PathBuf> {
    let digest = d.digest();
    let hexd = digest.digest();
    if digest.algorithm().as_ref() != "sha256" || hexd.len() != 64 {
        return Err(bad(layout, format!("unsupported digest {digest}")));
    }
    let path = layout.join("blobs/sha256").join(hexd);
    let (actual, size) = sha256_of(&path)?;
    if actual != digest.to_string() {
        return Err(ImageError::DigestMismatch {
            path: path.display().to_string(),
            expected: digest.to_string(),
            actual,
        });
    }
    if size != d.size() {
        return Err(bad(
            &path,
            format!("size {size} but the descriptor says {}", d.size()),
        ));
    }
    Ok(path)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let data = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&data).map_err(|source| ImageError::Json {
        what: path.display().to_string(),
        source,
    })
}

/// Normalises an archive member name; `None` if it could leave the archive's namespace.
fn safe_name(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Unpacks the regular files (and symlinks to them) of an archive into a new temp dir.
fn unpack_archive(path: &Path) -> Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix("imgbuild-base-")
        .tempdir()
        .map_err(io_err(std::env::temp_dir()))?;
    let f = File::open(path).map_err(io_err(path))?;
    let r = compress::decoder(BufReader::new(f)).map_err(io_err(path))?;
    let mut ar = tar::Archive::new(r);
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for e in ar.entries().map_err(io_err(path))? {
        let mut e = e.map_err(io_err(path))?;
        let raw = e.path().map_err(io_err(path))?.into_owned();
        let Some(name) = safe_name(&raw) else {
            return Err(bad(
                path,
                format!("member {} escapes the archive", raw.display()),
            ));
        };
        let dest = tmp.path().join(&name);
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p).map_err(io_err(p))?;
                }
                let mut out = File::create(&dest).map_err(io_err(&dest))?;
                io::copy(&mut e, &mut out).map_err(io_err(path))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(io_err(path))?
                    .ok_or_else(|| bad(path, format!("{}: link without target", raw.display())))?;
                let resolved = if e.header().entry_type() == tar::EntryType::Symlink {
                    name.parent().unwrap_or(Path::new("")).join(target.as_ref())
                } else {
                    target.into_owned()
                };
                // Resolve `..` lexically inside the archive; escaping is an error.
                let mut norm = PathBuf::new();
                for c in resolved.components() {
                    match c {
                        Component::Normal(p) => norm.push(p),
                        Component::CurDir => {}
                        Component::ParentDir if norm.pop() => {}
                        _ => {
                            return Err(bad(
                                path,
                                format!("link {} escapes the archive", raw.display()),
                            ));
                        }
                    }
                }
                links.push((name, norm));
            }
            _ => {}
        }
    }
    for (name, target) in links {
        let src = tmp.path().join(&target);
        let dest = tmp.path().join(&name);
        if src.is_file() {
            if let Some(p) = dest.parent() {
                fs::create_dir_all(p).map_err(io_err(p))?;
            }
            fs::copy(&src, &dest).map_err(io_err(&src))?;
        }
    }
    Ok(tmp)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    layers: Vec<String>,
}

fn descriptor(mt: MediaType, digest: &str, size: u64, what: &Path) -> Result<Descriptor> {
    let d = Digest::from_str(digest).map_err(|e| bad(what, e.to_string()))?;
    DescriptorBuilder::default()
        .media_type(mt)
        .digest(d)
        .size(size)
        .build()
        .map_err(|e| bad(what, e.to_string()))
}

/// sha256 of a file's decompressed content.
fn diff_id_of(path: &Path) -> Result<String> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut r = compress::decoder(BufReader::new(f)).map_err(io_err(path))?;
    let mut h = HashingWriter::new(io::sink());
    io::copy(&mut r, &mut h).map_err(io_err(path))?;
    Ok(format!("sha256:{}", h.finish().1))
}

fn media_type_of(path: &Path) -> Result<MediaType> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut head = [0u8; 4];
    let n = f.read(&mut head).map_err(io_err(path))?;
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => MediaType::ImageLayerGzip,
        [0x28, 0xb5, 0x2f, 0xfd] => MediaType::ImageLayerZstd,
        _ => MediaType::ImageLayer,
    })
}

impl BaseImage {
    /// Reads and verifies the base named by a `derived_from` URI.
    pub fn open(uri: &str) -> Result<Self> {
        Self::from_source(&BaseSource::parse(uri)?, uri)
    }

    /// Reads and verifies a base from a parsed source; `name` is kept for annotations.
    pub fn from_source(src: &BaseSource, name: &str) -> Result<Self> {
        match src {
            BaseSource::OciLayout(dir, tag) => Self::from_layout(dir, tag.as_deref(), name, None),
            BaseSource::OciArchive(p) => {
                let tmp = unpack_archive(p)?;
                let dir = tmp.path().to_path_buf();
                Self::from_layout(&dir, None, name, Some(tmp)).map_err(|e| match e {
                    ImageError::BadBase { reason, .. } => bad(p, reason),
                    e => e,
                })
            }
            BaseSource::DockerArchive(p) => Self::from_docker_archive(p, name),
        }
    }

    fn from_layout(
        dir: &Path,
        tag: Option<&str>,
        name: &str,
        tmp: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let index: ImageIndex = read_json(&dir.join("index.json"))?;
        let pick = |m: &&Descriptor| match tag {
            Some(t) => m
                .annotations()
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_REF_NAME))
                .is_some_and(|r| r == t),
            None => true,
        };
        let candidates: Vec<&Descriptor> = index.manifests().iter().filter(pick).collect();
        let mdesc = match (candidates.as_slice(), tag) {
            ([one], _) => (*one).clone(),
            ([], Some(t)) => return Err(bad(dir, format!("no image tagged {t}"))),
            ([], None) => return Err(bad(dir, "index.json lists no image")),
            (many, _) => {
                // Several: prefer the host architecture, else the first.
                let arch = std::env::consts::ARCH.replace("x86_64", "amd64");
                let arch = arch.replace("aarch64", "arm64");
                let found = many.iter().find(|d| {
                    d.platform()
                        .as_ref()
                        .is_some_and(|p| p.architecture().to_string() == arch)
                });
                (*found.unwrap_or(&many[0])).clone()
            }
        };
        let mut mpath = verified_blob(dir, &mdesc)?;
        let mut mdigest = mdesc.digest().to_string();
        if *mdesc.media_type() == MediaType::ImageIndex {
            // A nested (multi-platform) index: take the host's platform or the first.
            let nested: ImageIndex = read_json(&mpath)?;
            let arch = std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64");
            let d = nested
                .manifests()
                .iter()
                .find(|d| {
                    d.platform()
                        .as_ref()
                        .is_some_and(|p| p.architecture().to_string() == arch)
                })
                .or_else(|| nested.manifests().first())
                .ok_or_else(|| bad(dir, "nested index lists no image"))?
                .clone();
            mpath = verified_blob(dir, &d)?;
            mdigest = d.digest().to_string();
        }
        let manifest: ImageManifest = read_json(&mpath)?;
        let cpath = verified_blob(dir, manifest.config())?;
        let config: ImageConfiguration = read_json(&cpath)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(bad(
                dir,
                format!(
                    "{} layers but {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (d, id) in manifest.layers().iter().zip(diff_ids) {
            layers.push(BaseLayer {
                path: verified_blob(dir, d)?,
                descriptor: d.clone(),
                diff_id: id.clone(),
            });
        }
        Ok(BaseImage {
            name: name.to_string(),
            history: config.history().clone().unwrap_or_default(),
            manifest,
            manifest_digest: mdigest,
            config,
            layers,
            _tmp: tmp,
        })
    }

    fn from_docker_archive(archive: &Path, name: &str) -> Result<Self> {
        let tmp = unpack_archive(archive)?;
        let dir = tmp.path();
        let entries: Vec<DockerManifestEntry> = read_json(&dir.join("manifest.json"))
            .map_err(|e| bad(archive, format!("manifest.json: {e}")))?;
        let entry = entries
            .first()
            .ok_or_else(|| bad(archive, "manifest.json lists no image"))?;
        let member = |n: &str| {
            safe_name(Path::new(n))
                .map(|p| dir.join(p))
                .ok_or_else(|| bad(archive, format!("member {n} escapes the archive")))
        };
        let cpath = member(&entry.config)?;
        let (cdigest, csize) = sha256_of(&cpath)?;
        let config: ImageConfiguration = read_json(&cpath)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != entry.layers.len() {
            return Err(bad(
                archive,
                format!(
                    "{} layers but {} diff_ids",
                    entry.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (l, id) in entry.layers.iter().zip(&diff_ids) {
            let path = member(l)?;
            let actual = diff_id_of(&path)?;
            if &actual != id {
                return Err(ImageError::DigestMismatch {
                    path: format!("{}:{l}", archive.display()),
                    expected: id.clone(),
                    actual,
                });
            }
            let (digest, size) = sha256_of(&path)?;
            let mt = media_type_of(&path)?;
            layers.push(BaseLayer {
                descriptor: descriptor(mt, &digest, size, &path)?,
                diff_id: id.clone(),
                path,
            });
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(MediaType::ImageConfig, &cdigest, csize, &cpath)?)
            .layers(
                layers
                    .iter()
                    .map(|l| l.descriptor.clone())
                    .collect::<Vec<_>>(),
            )
            .build()
            .map_err(|e| bad(archive, e.to_string()))?;
        let mjson = canonical_json(&manifest, "manifest")?;
        Ok(BaseImage {
            name: name.to_string(),
            history: config.history().clone().unwrap_or_default(),
            manifest,
            manifest_digest: format!("sha256:{}", hex::encode(Sha256::digest(&mjson))),
            config,
            layers,
            _tmp: Some(tmp),
        })
    }

    /// Readers over the decompressed layer tars, bottom first. Each reader fails with
    /// `InvalidData` at its end if the content does not match the layer's diff_id.
    pub fn layer_readers(&self) -> impl Iterator<Item = Result<LayerReader>> + '_ {
        self.layers.iter().map(|l| {
            let f = File::open(&l.path).map_err(io_err(&l.path))?;
            let inner = compress::decoder(BufReader::new(f)).map_err(io_err(&l.path))?;
            Ok(LayerReader {
                inner,
                hasher: Sha256::new(),
                expected: l.diff_id.clone(),
                path: l.path.clone(),
                done: false,
            })
        })
    }

    /// Puts every layer blob into `blobs_dir` under its digest (hardlink, else copy).
    pub fn copy_blobs_to(&self, blobs_dir: &Path) -> Result<()> {
        fs::create_dir_all(blobs_dir).map_err(io_err(blobs_dir))?;
        for l in &self.layers {
            let dest = blobs_dir.join(l.descriptor.digest().digest());
            if dest.exists() {
                continue;
            }
            if fs::hard_link(&l.path, &dest).is_err() {
                fs::copy(&l.path, &dest).map_err(io_err(&l.path))?;
            }
        }
        Ok(())
    }

    /// What [`super::config::assemble`] needs to derive from this base.
    pub fn base_ref(&self) -> BaseRef {
        BaseRef {
            name: self.name.clone(),
            manifest_digest: self.manifest_digest.clone(),
            config: self.config.clone(),
            layers: self.layers.iter().map(|l| l.descriptor.clone()).collect(),
        }
    }
}

/// A decompressed layer stream checked against its diff_id at the end.
pub struct LayerReader {
    inner: Box<dyn Read>,
    hasher: Sha256,
    expected: String,
    path: PathBuf,
    done: bool,
}

impl LayerReader {
    /// The blob this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            let got = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
            if got != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: diff_id mismatch: expected {}, found {got}",
                        self.path.display(),
                        self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_like_kiwi_uris() {
        assert_eq!(
            BaseSource::parse("oci-archive:/x/a.tar").unwrap(),
            BaseSource::OciArchive("/x/a.tar".into())
        );
        assert_eq!(
            BaseSource::parse("docker-archive:/x/a.tar").unwrap(),
            BaseSource::DockerArchive("/x/a.tar".into())
        );
        assert_eq!(
            BaseSource::parse("oci:/x/layout:v1").unwrap(),
            BaseSource::OciLayout("/x/layout".into(), Some("v1".into()))
        );
        assert_eq!(
            BaseSource::parse("oci:/x/layout").unwrap(),
            BaseSource::OciLayout("/x/layout".into(), None)
        );
        assert!(BaseSource::parse("/does/not/exist.tar").is_err());
    }

    #[test]
    fn archives_with_escaping_members_are_refused() {
        use crate::image::tarball;
        let t = tempfile::tempdir().unwrap();
        for evil in [&b"../evil"[..], b"/abs/evil", b"blobs/../../evil"] {
            let mut data = Vec::new();
            tarball::append_bytes(&mut data, b"oci-layout", b"{}", 0).unwrap();
            tarball::append_bytes(&mut data, evil, b"x", 0).unwrap();
            tarball::write_end(&mut data).unwrap();
            let p = t.path().join("evil.tar");
            fs::write(&p, &data).unwrap();
            match BaseImage::open(&format!("oci-archive:{}", p.display())) {
                Err(ImageError::BadBase { reason, .. }) => assert!(reason.contains("escapes")),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        assert!(!t.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn archive_members_cannot_escape() {
        assert_eq!(safe_name(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(safe_name(Path::new("../a")), None);
        assert_eq!(safe_name(Path::new("/etc/passwd")), None);
        assert_eq!(safe_name(Path::new("a/../../b")), None);
    }
}
