//! Reading base images for derived builds: `oci-archive:PATH`, `docker-archive:PATH`,
//! `oci:DIR[:TAG]` or a plain path (archive or layout, detected). Every blob is checked against
//! its digest before use; layer streams are decompressed and checked against their `diff_id` as
//! they are read. Archives are unpacked into a private temp dir by name only (regular files
//! and in-archive symlinks to them; nothing can land outside it).

use std::collections::{BTreeMap, BTreeSet};
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
use super::{ImageError, Result, io_err, limits};

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
        if uri.starts_with("obs:") || uri.starts_with("obsrepositories:") {
            return Err(ImageError::Option {
                option: "derived_from".into(),
                reason: format!(
                    "{uri}: images of the Open Build Service are resolved by the build service, which imgbuild does not reach; use docker://, oci-archive:, docker-archive: or oci: with the base image"
                ),
            });
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
    /// The manifest's bytes: as stored, or for docker-archives the canonical JSON of the
    /// equivalent OCI manifest (they hash to `manifest_digest`).
    pub manifest_json: Vec<u8>,
    /// The image config.
    pub config: ImageConfiguration,
    /// The config's bytes as stored.
    pub config_json: Vec<u8>,
    /// The layers, bottom first.
    pub layers: Vec<BaseLayer>,
    /// The config's history.
    pub history: Vec<History>,
    /// The OCI `index.json` the image was found through, if any (for its names).
    pub(crate) index_json: Option<Vec<u8>>,
    /// The docker-archive `manifest.json`, if the image came from one (for its names).
    pub(crate) docker_manifest_json: Option<Vec<u8>>,
    _tmp: Option<tempfile::TempDir>,
}

pub(super) fn bad(path: &Path, reason: impl Into<String>) -> ImageError {
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

/// `blobs/sha256/<hex>` of a descriptor, once its digest is known to be a sha256 digest.
pub(super) fn blob_rel(origin: &Path, d: &Descriptor) -> Result<PathBuf> {
    let digest = d.digest();
    let hexd = digest.digest();
    let hex_ok = hexd.len() == 64
        && hexd
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if digest.algorithm().as_ref() != "sha256" || !hex_ok {
        return Err(bad(origin, format!("unsupported digest {digest}")));
    }
    Ok(Path::new("blobs/sha256").join(hexd))
}

/// Checks a blob of a layout directory against its descriptor and returns its path. The size
/// is compared first, so a blob larger than its descriptor says is refused without reading it.
pub(super) fn verified_blob(layout: &Path, d: &Descriptor) -> Result<PathBuf> {
    let path = layout.join(blob_rel(layout, d)?);
    verify_file(&path, d)?;
    Ok(path)
}

/// Checks the file `path` against the size (compared first) and digest of `d`.
pub(super) fn verify_file(path: &Path, d: &Descriptor) -> Result<()> {
    let size = fs::metadata(path).map_err(io_err(path))?.len();
    if size != d.size() {
        return Err(bad(
            path,
            format!("size {size} but the descriptor says {}", d.size()),
        ));
    }
    let (actual, read) = sha256_of(path)?;
    if read != d.size() {
        return Err(bad(path, "blob changed while it was read"));
    }
    if actual != d.digest().to_string() {
        return Err(ImageError::DigestMismatch {
            path: path.display().to_string(),
            expected: d.digest().to_string(),
            actual,
        });
    }
    Ok(())
}

pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(data: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(data).map_err(|source| ImageError::Json {
        what: what.to_string(),
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

/// What one reading pass over an archive learned; nothing is written.
#[derive(Default)]
pub(super) struct Members {
    /// Regular members and their sizes.
    pub(super) sizes: BTreeMap<PathBuf, u64>,
    /// Symbolic and hard links, each to the member it names (resolved inside the archive).
    pub(super) links: BTreeMap<PathBuf, PathBuf>,
    /// The contents of the members asked for.
    pub(super) read: BTreeMap<PathBuf, Vec<u8>>,
}

impl Members {
    /// The regular member a name leads to through links (a few hops at most).
    fn resolve(&self, name: &Path) -> PathBuf {
        let mut cur = name.to_path_buf();
        for _ in 0..8 {
            match self.links.get(&cur) {
                Some(next) => cur = next.clone(),
                None => break,
            }
        }
        cur
    }

    /// The size of the regular member `name` leads to.
    fn size(&self, name: &Path) -> Option<u64> {
        self.sizes.get(&self.resolve(name)).copied()
    }
}

/// Opens an archive, plain or compressed as a whole.
fn open_tar(path: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let f = File::open(path).map_err(io_err(path))?;
    let r = compress::decoder(BufReader::new(f)).map_err(io_err(path))?;
    Ok(tar::Archive::new(r))
}

/// The member name of an entry, refused if it could leave the archive.
fn member_name<R: Read>(path: &Path, e: &tar::Entry<'_, R>) -> Result<PathBuf> {
    let raw = e.path().map_err(io_err(path))?.into_owned();
    safe_name(&raw).ok_or_else(|| {
        bad(
            path,
            format!("member {} escapes the archive", raw.display()),
        )
    })
}

/// Where a link entry points, resolved inside the archive.
fn link_target<R: Read>(path: &Path, name: &Path, e: &tar::Entry<'_, R>) -> Result<PathBuf> {
    let target = e
        .link_name()
        .map_err(io_err(path))?
        .ok_or_else(|| bad(path, format!("{}: link without target", name.display())))?;
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
                    format!("link {} escapes the archive", name.display()),
                ));
            }
        }
    }
    Ok(norm)
}

/// One reading pass over an archive: every member's name, size and link target, and the
/// contents of the members `want` names (each with its size limit and what it is; a larger one
/// is refused without being read).
pub(super) fn scan_members(
    path: &Path,
    want: &BTreeMap<PathBuf, (u64, String)>,
) -> Result<Members> {
    let mut out = Members::default();
    let mut ar = open_tar(path)?;
    for (i, e) in ar.entries().map_err(io_err(path))?.enumerate() {
        // A first entry that does not read is no tar at all: say what was expected, not the
        // tar reader's words for a short block.
        let mut e = e.map_err(|err| {
            if i == 0 {
                bad(
                    path,
                    "not an image archive (a docker-archive or an oci-archive, a tar file \
                     plain or compressed, or an OCI layout directory)",
                )
            } else {
                io_err(path)(err)
            }
        })?;
        let name = member_name(path, &e)?;
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = e.size();
                out.sizes.insert(name.clone(), size);
                if let Some((max, what)) = want.get(&name) {
                    let member = format!("{}:{}", path.display(), name.display());
                    limits::check_size(Path::new(&member), what, size, *max)?;
                    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                    e.read_to_end(&mut data).map_err(io_err(path))?;
                    out.read.insert(name, data);
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = link_target(path, &name, &e)?;
                out.links.insert(name, target);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Where the blobs of an OCI layout are read from while the image is located: the files of a
/// layout directory, or the members of an archive (read in extra passes, never unpacked).
pub(super) trait BlobSource {
    /// The path errors name.
    fn origin(&self) -> &Path;
    /// The size of the file `rel` of the layout, if present.
    fn size(&self, rel: &Path) -> Result<Option<u64>>;
    /// The content of `rel`, which must be at most `max` bytes.
    fn read(&mut self, rel: &Path, what: &str, max: u64) -> Result<Vec<u8>>;
}

pub(super) struct DirSource<'a>(pub(super) &'a Path);

impl BlobSource for DirSource<'_> {
    fn origin(&self) -> &Path {
        self.0
    }

    fn size(&self, rel: &Path) -> Result<Option<u64>> {
        let p = self.0.join(rel);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    fn read(&mut self, rel: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
        limits::read_bounded(&self.0.join(rel), what, max)
    }
}

struct ArchiveSource<'a> {
    path: &'a Path,
    members: Members,
}

impl BlobSource for ArchiveSource<'_> {
    fn origin(&self) -> &Path {
        self.path
    }

    fn size(&self, rel: &Path) -> Result<Option<u64>> {
        Ok(self.members.size(rel))
    }

    fn read(&mut self, rel: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
        let real = self.members.resolve(rel);
        if let Some(data) = self.members.read.get(&real) {
            return Ok(data.clone());
        }
        let want = BTreeMap::from([(real.clone(), (max, what.to_string()))]);
        let mut pass = scan_members(self.path, &want)?;
        let data = pass
            .read
            .remove(&real)
            .ok_or_else(|| bad(self.path, format!("{what} {} not found", rel.display())))?;
        self.members.read.insert(real, data.clone());
        Ok(data)
    }
}

/// Fails unless the blob `rel` of `d` exists in `src` with the size its descriptor gives.
fn check_blob_size(
    src: &mut dyn BlobSource,
    origin: &Path,
    rel: &Path,
    d: &Descriptor,
    what: &str,
) -> Result<()> {
    match src.size(rel)? {
        None => Err(bad(origin, format!("{what} blob {} not found", d.digest()))),
        Some(n) if n != d.size() => Err(bad(
            origin,
            format!(
                "{what} blob {} is {n} bytes but the manifest says {}",
                d.digest(),
                d.size()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Reads the blob a descriptor names, checking its size (before reading it) and its digest.
pub(super) fn read_blob(
    src: &mut dyn BlobSource,
    d: &Descriptor,
    what: &str,
    max: u64,
) -> Result<Vec<u8>> {
    let origin = src.origin().to_path_buf();
    let rel = blob_rel(&origin, d)?;
    let shown = format!("{}:{}", origin.display(), rel.display());
    limits::check_size(Path::new(&shown), what, d.size(), max)?;
    check_blob_size(src, &origin, &rel, d, what)?;
    let data = src.read(&rel, what, max)?;
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    if actual != d.digest().to_string() || data.len() as u64 != d.size() {
        return Err(ImageError::DigestMismatch {
            path: shown,
            expected: d.digest().to_string(),
            actual,
        });
    }
    Ok(data)
}

/// The host's architecture as OCI names it.
fn host_arch() -> String {
    std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64")
}

/// An image manifest found through an `index.json` and checked against the limits.
struct Located {
    index_json: Vec<u8>,
    manifest_digest: String,
    manifest_json: Vec<u8>,
    manifest: ImageManifest,
}

/// Finds the image an OCI layout's `index.json` names (by `tag`, else the only one, else the
/// host's platform, else the first; through one nested index), reads its manifest and checks,
/// before any layer is read: the layer count, and that the config and every layer blob are
/// present with the sizes their descriptors give.
fn locate(src: &mut dyn BlobSource, tag: Option<&str>) -> Result<Located> {
    let origin = src.origin().to_path_buf();
    let index_json = src.read(
        Path::new("index.json"),
        "index.json",
        limits::MAX_MANIFEST_SIZE,
    )?;
    let index: ImageIndex = parse_json(&index_json, &format!("{}:index.json", origin.display()))?;
    let pick = |m: &&Descriptor| match tag {
        Some(t) => m
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .is_some_and(|r| r == t),
        None => true,
    };
    let candidates: Vec<&Descriptor> = index.manifests().iter().filter(pick).collect();
    let on_host = |d: &&Descriptor| {
        d.platform()
            .as_ref()
            .is_some_and(|p| p.architecture().to_string() == host_arch())
    };
    let mut mdesc = match (candidates.as_slice(), tag) {
        ([one], _) => (*one).clone(),
        ([], Some(t)) => return Err(bad(&origin, format!("no image tagged {t}"))),
        ([], None) => return Err(bad(&origin, "index.json lists no image")),
        // Several: prefer the host architecture, else the first.
        (many, _) => (*many.iter().find(|d| on_host(d)).unwrap_or(&many[0])).clone(),
    };
    let mut manifest_json = read_blob(src, &mdesc, "manifest", limits::MAX_MANIFEST_SIZE)?;
    if *mdesc.media_type() == MediaType::ImageIndex {
        // A nested (multi-platform) index: take the host's platform or the first.
        let nested: ImageIndex = parse_json(&manifest_json, mdesc.digest().as_ref())?;
        mdesc = nested
            .manifests()
            .iter()
            .find(|d| on_host(d))
            .or_else(|| nested.manifests().first())
            .ok_or_else(|| bad(&origin, "nested index lists no image"))?
            .clone();
        manifest_json = read_blob(src, &mdesc, "manifest", limits::MAX_MANIFEST_SIZE)?;
    }
    let manifest: ImageManifest = parse_json(&manifest_json, mdesc.digest().as_ref())?;
    limits::check_layer_count(&origin, manifest.layers().len())?;
    let c = manifest.config();
    let shown = format!("{}:{}", origin.display(), blob_rel(&origin, c)?.display());
    limits::check_size(
        Path::new(&shown),
        "config",
        c.size(),
        limits::MAX_CONFIG_SIZE,
    )?;
    for (i, d) in std::iter::once(c).chain(manifest.layers()).enumerate() {
        let what = if i == 0 { "config" } else { "layer" };
        check_blob_size(src, &origin, &blob_rel(&origin, d)?, d, what)?;
    }
    Ok(Located {
        index_json,
        manifest_digest: mdesc.digest().to_string(),
        manifest_json,
        manifest,
    })
}

/// The archive formats an image file may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Oci,
    Docker,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    layers: Vec<String>,
}

/// Unpacks the members `needed` (regular files, or links to them, which become copies) of an
/// archive into a new temp dir, refusing a member that would leave the temp dir's filesystem
/// too full before writing it.
fn unpack_members(
    path: &Path,
    members: &Members,
    needed: &BTreeSet<PathBuf>,
) -> Result<tempfile::TempDir> {
    unpack_members_in(
        path,
        members,
        needed,
        &std::env::temp_dir(),
        "imgbuild-base-",
    )
}

/// [`unpack_members`] into a temp dir named `prefix…` made in `parent` (on the filesystem the
/// members are hard-linked to next).
pub(super) fn unpack_members_in(
    path: &Path,
    members: &Members,
    needed: &BTreeSet<PathBuf>,
    parent: &Path,
    prefix: &str,
) -> Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    let mut budget = limits::SpaceBudget::of(tmp.path()).map_err(io_err(tmp.path()))?;
    let mut take = |name: &Path, size: u64| {
        budget.take(size).map_err(|bound| ImageError::NoSpace {
            path: format!("{}:{}", path.display(), name.display()),
            bound,
        })
    };
    // Regular members to write: the needed ones and the ones needed links lead to.
    let real: BTreeSet<PathBuf> = needed.iter().map(|n| members.resolve(n)).collect();
    let mut ar = open_tar(path)?;
    for e in ar.entries().map_err(io_err(path))? {
        let mut e = e.map_err(io_err(path))?;
        if !matches!(
            e.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let name = member_name(path, &e)?;
        if !real.contains(&name) {
            continue;
        }
        take(&name, e.size())?;
        let dest = tmp.path().join(&name);
        if let Some(p) = dest.parent() {
            fs::create_dir_all(p).map_err(io_err(p))?;
        }
        let mut out = File::create(&dest).map_err(io_err(&dest))?;
        io::copy(&mut e, &mut out).map_err(io_err(path))?;
    }
    for name in needed {
        let target = members.resolve(name);
        if target == *name {
            continue;
        }
        let (src, dest) = (tmp.path().join(&target), tmp.path().join(name));
        if src.is_file() && !dest.exists() {
            take(name, members.sizes.get(&target).copied().unwrap_or(0))?;
            if let Some(p) = dest.parent() {
                fs::create_dir_all(p).map_err(io_err(p))?;
            }
            fs::copy(&src, &dest).map_err(io_err(&src))?;
        }
    }
    Ok(tmp)
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
            BaseSource::OciLayout(dir, tag) => {
                let located = locate(&mut DirSource(dir), tag.as_deref())?;
                Self::from_layout(dir, located, name, None)
            }
            BaseSource::OciArchive(p) => Self::from_archive(p, Some(Format::Oci), name),
            BaseSource::DockerArchive(p) => Self::from_archive(p, Some(Format::Docker), name),
        }
    }

    /// Reads and verifies the image in an archive file: an oci-archive, else a docker-archive
    /// (an archive holding both is read as an oci-archive).
    pub fn from_archive_file(path: &Path, name: &str) -> Result<Self> {
        Self::from_archive(path, None, name)
    }

    /// Reads an archive: one reading pass for its metadata, for an oci-archive one or two more
    /// for its manifest; the limits are checked there, before anything is written. Then only the
    /// members the image needs are unpacked into a private temp dir and verified.
    fn from_archive(path: &Path, format: Option<Format>, name: &str) -> Result<Self> {
        let want = BTreeMap::from([
            (
                PathBuf::from("manifest.json"),
                (
                    limits::MAX_TAR_MANIFEST_SIZE,
                    "docker-archive manifest.json".to_string(),
                ),
            ),
            (
                PathBuf::from("index.json"),
                (limits::MAX_MANIFEST_SIZE, "index.json".to_string()),
            ),
        ]);
        let members = scan_members(path, &want)?;
        let has_index = members.read.contains_key(Path::new("index.json"));
        let oci = has_index && members.sizes.contains_key(Path::new("oci-layout"));
        let docker = members.read.contains_key(Path::new("manifest.json"));
        let format = match format {
            Some(Format::Oci) if has_index => Format::Oci,
            Some(Format::Oci) => return Err(bad(path, "not an oci-archive: no index.json")),
            Some(Format::Docker) if docker => Format::Docker,
            Some(Format::Docker) => {
                return Err(bad(path, "not a docker-archive: no manifest.json"));
            }
            None if oci => Format::Oci,
            None if docker => Format::Docker,
            None => {
                return Err(bad(
                    path,
                    "neither a docker-archive (no manifest.json) nor an oci-archive (no \
                     index.json and oci-layout)",
                ));
            }
        };
        match format {
            Format::Oci => {
                let mut src = ArchiveSource { path, members };
                let located = locate(&mut src, None)?;
                let mut needed = BTreeSet::new();
                for d in std::iter::once(located.manifest.config()).chain(located.manifest.layers())
                {
                    needed.insert(blob_rel(path, d)?);
                }
                let tmp = unpack_members(path, &src.members, &needed)?;
                let dir = tmp.path().to_path_buf();
                // Said of the archive and its member, not of the temporary copy verified.
                Self::from_layout(&dir, located, name, Some(tmp)).map_err(|e| match e {
                    ImageError::BadBase { reason, .. } => bad(path, reason),
                    ImageError::DigestMismatch {
                        path: copy,
                        expected,
                        actual,
                    } => ImageError::DigestMismatch {
                        path: Path::new(&copy)
                            .strip_prefix(&dir)
                            .map_or(copy.clone(), |m| {
                                format!("{}:{}", path.display(), m.display())
                            }),
                        expected,
                        actual,
                    },
                    e => e,
                })
            }
            Format::Docker => Self::from_docker_archive(path, &members, name),
        }
    }

    /// Finishes a located image of a layout directory: reads and checks the config, and
    /// verifies every layer blob.
    fn from_layout(
        dir: &Path,
        located: Located,
        name: &str,
        tmp: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let Located {
            index_json,
            manifest_digest,
            manifest_json,
            manifest,
        } = located;
        let config_json = read_blob(
            &mut DirSource(dir),
            manifest.config(),
            "config",
            limits::MAX_CONFIG_SIZE,
        )?;
        let config: ImageConfiguration =
            parse_json(&config_json, manifest.config().digest().as_ref())?;
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
            manifest_digest,
            manifest_json,
            config,
            config_json,
            layers,
            index_json: Some(index_json),
            docker_manifest_json: None,
            _tmp: tmp,
        })
    }

    fn from_docker_archive(archive: &Path, members: &Members, name: &str) -> Result<Self> {
        let manifest_json = members
            .read
            .get(Path::new("manifest.json"))
            .cloned()
            .unwrap_or_default();
        let entries: Vec<DockerManifestEntry> = parse_json(
            &manifest_json,
            &format!("{}:manifest.json", archive.display()),
        )?;
        let entry = entries
            .first()
            .ok_or_else(|| bad(archive, "manifest.json lists no image"))?;
        limits::check_layer_count(archive, entry.layers.len())?;
        let member = |n: &str| {
            safe_name(Path::new(n))
                .ok_or_else(|| bad(archive, format!("member {n} escapes the archive")))
        };
        let config_name = member(&entry.config)?;
        let config_size = members
            .size(&config_name)
            .ok_or_else(|| bad(archive, format!("config {} not found", entry.config)))?;
        let shown = format!("{}:{}", archive.display(), entry.config);
        limits::check_size(
            Path::new(&shown),
            "config",
            config_size,
            limits::MAX_CONFIG_SIZE,
        )?;
        let mut needed = BTreeSet::from([config_name.clone()]);
        for l in &entry.layers {
            let n = member(l)?;
            if members.size(&n).is_none() {
                return Err(bad(archive, format!("layer {l} not found")));
            }
            needed.insert(n);
        }
        let tmp = unpack_members(archive, members, &needed)?;
        let dir = tmp.path();
        let cpath = dir.join(&config_name);
        let config_json = limits::read_bounded(&cpath, "config", limits::MAX_CONFIG_SIZE)?;
        let cdigest = format!("sha256:{}", hex::encode(Sha256::digest(&config_json)));
        let config: ImageConfiguration = parse_json(&config_json, &shown)?;
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
            let path = dir.join(member(l)?);
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
            .config(descriptor(
                MediaType::ImageConfig,
                &cdigest,
                config_json.len() as u64,
                &cpath,
            )?)
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
            manifest_json: mjson,
            config,
            config_json,
            layers,
            index_json: None,
            docker_manifest_json: Some(manifest_json),
            _tmp: Some(tmp),
        })
    }

    /// Readers over the decompressed layer tars, bottom first. Each reader fails with
    /// `InvalidData` at its end if the content does not match the layer's `diff_id`.
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

    /// The content of the regular file at `path` (relative, e.g. `var/lib/dpkg/status`) in the
    /// image's merged tree, read from the layers without unpacking them: the topmost layer's
    /// copy wins; a whiteout of the file or an opaque whiteout of its directory in a higher
    /// layer removes lower copies. `None` when the tree has no such file. Files above `limit`
    /// bytes are refused (the caller's bound for what it would hold in memory).
    pub fn read_file(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let want = Path::new(path.trim_start_matches('/'));
        let (dir, name) = match (want.parent(), want.file_name()) {
            (Some(d), Some(n)) => (d.to_path_buf(), n.to_string_lossy().into_owned()),
            _ => return Ok(None),
        };
        let whiteout = dir.join(format!(".wh.{name}"));
        let opaque = dir.join(".wh..wh..opq");
        let mut found = None;
        for (layer, reader) in self.layers.iter().zip(self.layer_readers()) {
            let mut reader = reader?;
            let layer_err = |e: io::Error| ImageError::BadBase {
                path: layer.path.clone(),
                reason: e.to_string(),
            };
            let mut ar = tar::Archive::new(&mut reader);
            let mut in_layer = None;
            for entry in ar.entries().map_err(layer_err)? {
                let mut entry = entry.map_err(layer_err)?;
                let raw = entry.path().map_err(layer_err)?.into_owned();
                let name: PathBuf = raw
                    .components()
                    .filter(|c| matches!(c, Component::Normal(_)))
                    .collect();
                if name == whiteout || name == opaque {
                    found = None;
                } else if name == want && entry.header().entry_type().is_file() {
                    let size = entry.size();
                    if size > limit {
                        return Err(bad(
                            &layer.path,
                            format!("{path} is {size} bytes, more than the {limit} allowed"),
                        ));
                    }
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data).map_err(layer_err)?;
                    in_layer = Some(data);
                } else if name == want {
                    // Replaced by something that is not a regular file.
                    in_layer = None;
                    found = None;
                }
            }
            // The rest of the stream, so that the diff_id check at its end runs.
            io::copy(&mut reader, &mut io::sink()).map_err(layer_err)?;
            if in_layer.is_some() {
                found = in_layer;
            }
        }
        Ok(found)
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

/// A decompressed layer stream checked against its `diff_id` at the end.
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
    fn docker_archive_layers_may_be_links_and_junk_is_not_unpacked() {
        // Older `docker save` writes a repeated layer as a symlink to the first copy.
        let mut layer = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(1);
        layer.append_data(&mut h, "f", &b"x"[..]).unwrap();
        let layer = layer.into_inner().unwrap();
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [&diff_id, &diff_id]},
        })
        .to_string();
        let manifest = r#"[{"Config":"c.json","Layers":["a/layer.tar","b/layer.tar"]}]"#;
        let mut ar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            ar.append_data(&mut h, name, data).unwrap();
        };
        add("c.json", config.as_bytes());
        add("a/layer.tar", &layer);
        add("junk/big", &vec![0u8; 1 << 20]);
        add("manifest.json", manifest.as_bytes());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        ar.append_link(&mut h, "b/layer.tar", "../a/layer.tar")
            .unwrap();
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("img.tar");
        fs::write(&p, ar.into_inner().unwrap()).unwrap();
        let base = BaseImage::open(&format!("docker-archive:{}", p.display())).unwrap();
        assert_eq!(base.layers.len(), 2);
        assert_eq!(base.layers[1].diff_id, diff_id);
        let unpacked = base.layers[0].path.parent().unwrap().parent().unwrap();
        assert!(
            !unpacked.join("junk").exists(),
            "a member the image does not use was unpacked"
        );
    }

    /// A docker-archive of `layers` (each a list of (path, content); content `None` is an
    /// empty regular file named as a whiteout).
    fn archive_of(dir: &Path, layers: &[&[(&str, &[u8])]]) -> BaseImage {
        let tars: Vec<Vec<u8>> = layers
            .iter()
            .map(|files| {
                let mut b = tar::Builder::new(Vec::new());
                for (name, data) in *files {
                    let mut h = tar::Header::new_ustar();
                    h.set_mode(0o644);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, *data).unwrap();
                }
                b.into_inner().unwrap()
            })
            .collect();
        let diff_ids: Vec<String> = tars
            .iter()
            .map(|t| format!("sha256:{}", hex::encode(Sha256::digest(t))))
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string();
        let names: Vec<String> = (0..tars.len()).map(|i| format!("{i}/layer.tar")).collect();
        let manifest = serde_json::json!([{"Config": "c.json", "Layers": names}]).to_string();
        let mut ar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            ar.append_data(&mut h, name, data).unwrap();
        };
        add("c.json", config.as_bytes());
        for (n, t) in names.iter().zip(&tars) {
            add(n, t);
        }
        add("manifest.json", manifest.as_bytes());
        let p = dir.join("img.tar");
        fs::write(&p, ar.into_inner().unwrap()).unwrap();
        BaseImage::open(&format!("docker-archive:{}", p.display())).unwrap()
    }

    #[test]
    fn read_file_sees_the_merged_tree() {
        let t = tempfile::tempdir().unwrap();
        let status = "var/lib/dpkg/status";
        let base = archive_of(
            t.path(),
            &[
                &[("var/lib/dpkg/status", b"one")],
                &[("./var/lib/dpkg/status", b"two"), ("etc/x", b"x")],
                &[("etc/y", b"y")],
            ],
        );
        assert_eq!(
            base.read_file(status, 100).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(base.read_file("nope/x", 100).unwrap(), None);
        assert!(base.read_file(status, 2).is_err(), "over the limit");

        let t = tempfile::tempdir().unwrap();
        let gone = archive_of(
            t.path(),
            &[
                &[("var/lib/dpkg/status", b"one")],
                &[("var/lib/dpkg/.wh.status", b"")],
            ],
        );
        assert_eq!(gone.read_file(status, 100).unwrap(), None);

        let t = tempfile::tempdir().unwrap();
        let opaque = archive_of(
            t.path(),
            &[
                &[("var/lib/dpkg/status", b"one")],
                &[
                    ("var/lib/dpkg/.wh..wh..opq", b""),
                    ("var/lib/dpkg/status", b"new"),
                ],
            ],
        );
        assert_eq!(
            opaque.read_file(status, 100).unwrap().as_deref(),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn archive_members_cannot_escape() {
        assert_eq!(safe_name(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(safe_name(Path::new("../a")), None);
        assert_eq!(safe_name(Path::new("/etc/passwd")), None);
        assert_eq!(safe_name(Path::new("a/../../b")), None);
    }
}
