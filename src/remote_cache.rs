//! The shared build cache in a registry: `build --cache-to` stores a finished result (every file
//! of the target directory) as an OCI artifact tagged by its inputs key, and `--cache-from`
//! fetches such an artifact, verifies it completely and puts it in place of the target instead
//! of building.
//!
//! The artifact is an OCI image manifest with `artifactType` [`ARTIFACT_TYPE`], the empty config
//! ([`EMPTY_CONFIG`], `{}`), and one layer ([`FILE_MEDIA_TYPE`]) per file of the result, named
//! by its `org.opencontainers.image.title` annotation: the path relative to the target
//! directory (an OCI layout directory contributes each of its files). Its tag is
//! `imgbuild-<hex of the inputs key>` ([`cache_tag`]).
//!
//! The registry is not trusted: a fetched artifact must have the expected type, plain relative
//! titles (no absolute path, no `..`, no duplicates, nothing outside what its `result.json`
//! lists), a `result.json` whose inputs key equals this build's, blobs matching their digests
//! and sizes, and then pass [`crate::reuse::check`], the same check a local result passes. Only
//! then does it replace the target, in one rename, with KIWI's `kiwi.result.json` (which names
//! the files by absolute path) written for this target; anything else leaves the target
//! untouched.

use crate::build::{Created, ResultFile};
use crate::description::ResolvedImage;
use crate::digest::file_sha256;
use crate::registry::{
    Client, ClientOptions, NoProgress, PushImage, PushOptions, Reference, RegistryError,
};
use crate::reuse::{self, Verdict};
use crate::storage::{LayerBlob, StoreInput};
use crate::workdir::{self, WorkDir, WorkDirError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The `artifactType` of a cached result.
pub const ARTIFACT_TYPE: &str = "application/vnd.imgbuild.result.v1+json";
/// The media type of each file of a cached result (a layer of the artifact).
pub const FILE_MEDIA_TYPE: &str = "application/vnd.imgbuild.result.file.v1";
/// The media type of the artifact's config: OCI's empty descriptor, the two bytes `{}`.
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The annotation naming a layer's file, relative to the target directory.
pub const TITLE: &str = "org.opencontainers.image.title";
/// The prefix of a cached result's tag; the hex of the inputs key follows.
pub const TAG_PREFIX: &str = "imgbuild-";

/// The OCI image manifest media type (artifacts are image manifests with an `artifactType`).
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The empty config's bytes.
const EMPTY_JSON: &[u8] = b"{}";
/// The most files an artifact may list (an OCI layout of a many-layer image stays far below).
const MAX_FILES: usize = 10_000;
/// The largest `result.json` read before the blobs are fetched.
const MAX_RESULT_JSON: u64 = 16 << 20;
/// Blobs downloaded at once.
const PARALLEL: usize = 3;

/// Errors of the registry cache; each names the cache reference.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A `--cache-to`/`--cache-from` value is not a repository reference.
    #[error("invalid cache reference {reference:?}: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached, or refused or failed a request.
    #[error("{reference}: {source}")]
    Registry {
        /// `HOST/REPO:TAG`.
        reference: String,
        /// The registry error.
        source: RegistryError,
    },
    /// The registry holds no result under the key's tag.
    #[error("{reference}: no cached result")]
    Missing {
        /// `HOST/REPO:TAG`.
        reference: String,
    },
    /// The artifact is not a usable cached result of this build (wrong type, bad titles, other
    /// inputs, a blob that does not match its digest, a file the check refuses).
    #[error("{reference}: {reason}")]
    Artifact {
        /// `HOST/REPO:TAG`.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The result in the target directory cannot be stored (not an intact result of the key).
    #[error("{target}: {reason}")]
    Result {
        /// The target directory.
        target: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The work directory beside the target could not be made.
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    /// The fetched result could not replace the target.
    #[error(transparent)]
    Replace(#[from] crate::build::BuildError),
}

fn io(path: &Path, source: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The registry caches of a build: where results are fetched from and stored to, and how the
/// registries are reached.
#[derive(Debug, Clone, Default)]
pub struct RegistryCache {
    /// `--cache-from`, in order: the first verified hit is used.
    pub from: Vec<Reference>,
    /// `--cache-to`: each gets the result after a successful build or reuse.
    pub to: Vec<Reference>,
    /// Credentials, TLS and certificates (as `--push` uses them).
    pub client: ClientOptions,
}

/// Parses a `--cache-to`/`--cache-from` value `[docker://]HOST[:PORT]/REPO`: a repository, no
/// tag or digest (the tags are the inputs keys).
pub fn parse_reference(text: &str) -> Result<Reference, CacheError> {
    let bad = |reason: String| CacheError::Reference {
        reference: text.to_string(),
        reason,
    };
    let r = Reference::parse(text).map_err(|e| bad(e.to_string()))?;
    if r.tag.is_some() || r.digest.is_some() {
        return Err(bad(
            "a cache names a repository only; its tags are the builds' inputs keys".into(),
        ));
    }
    Ok(r)
}

/// `HOST/REPO`, as reports name a cache.
pub fn shown(r: &Reference) -> String {
    format!("{}/{}", r.host, r.repository)
}

/// The tag of the result of inputs `key` (`sha256:<hex>`): `imgbuild-<hex>` (a tag cannot hold
/// `:`). `None` for a key of another form.
pub fn cache_tag(key: &str) -> Option<String> {
    let hex = key.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| format!("{TAG_PREFIX}{hex}"))
}

/// `r` with the tag of `key`.
fn tagged(r: &Reference, key: &str) -> Result<Reference, CacheError> {
    let tag = cache_tag(key).ok_or_else(|| CacheError::Reference {
        reference: shown(r),
        reason: format!("the inputs key {key:?} is not a sha256 digest"),
    })?;
    Ok(Reference {
        tag: Some(tag),
        digest: None,
        ..r.clone()
    })
}

fn full(r: &Reference) -> String {
    format!("{}/{}:{}", r.host, r.repository, r.manifest_reference())
}

/// A descriptor of the artifact manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// The annotations (a file's [`TITLE`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The artifact manifest, in the field order it is written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST`] (a registry may serve a manifest without it).
    #[serde(default)]
    pub media_type: Option<String>,
    /// [`ARTIFACT_TYPE`].
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// The empty config.
    pub config: Descriptor,
    /// One per file, sorted by title.
    pub layers: Vec<Descriptor>,
}

/// A file of a result, as the artifact carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    /// Its path relative to the target directory, `/`-separated.
    pub title: String,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Its size.
    pub size: u64,
}

/// The artifact manifest of `files` (sorted by title here), as bytes: the same files always
/// give the same manifest, so re-storing a result changes no digest.
pub fn artifact_manifest(files: &[ArtifactFile]) -> Vec<u8> {
    let mut files = files.to_vec();
    files.sort_by(|a, b| a.title.cmp(&b.title));
    let manifest = ArtifactManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: Descriptor {
            media_type: EMPTY_CONFIG.to_string(),
            digest: sha256_of(EMPTY_JSON),
            size: EMPTY_JSON.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: files
            .into_iter()
            .map(|f| Descriptor {
                media_type: FILE_MEDIA_TYPE.to_string(),
                digest: f.digest,
                size: f.size,
                annotations: BTreeMap::from([(TITLE.to_string(), f.title)]),
            })
            .collect(),
    };
    // Serialising a plain struct of strings and numbers cannot fail.
    serde_json::to_vec(&manifest).unwrap_or_default()
}

fn sha256_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Checks the titles of an artifact: each a plain relative path (`/`-separated components, none
/// empty, `.` or `..`; no NUL), no two the same, and none the directory of another.
pub fn check_titles<'a>(titles: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for t in titles {
        let plain = !t.is_empty()
            && !t.contains('\0')
            && t.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if !plain {
            return Err(format!("the file name {t:?} is not a plain relative path"));
        }
        if !seen.insert(t) {
            return Err(format!("the file name {t:?} is given twice"));
        }
    }
    for t in &seen {
        let mut prefix = String::new();
        for c in t
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            prefix.push_str(c);
            if seen.contains(prefix.as_str()) {
                return Err(format!(
                    "{prefix:?} is both a file and the directory of {t:?}"
                ));
            }
            prefix.push('/');
        }
    }
    Ok(())
}

/// Whether `title` is a file a result with `files` has: `result.json`, a listed file or its
/// `.sha256`, or a file inside a listed directory.
fn belongs(title: &str, files: &[ResultFile]) -> bool {
    title == "result.json"
        || files.iter().any(|f| match f.tree {
            Some(_) => title
                .strip_prefix(f.name.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
            None => title == f.name || title.strip_prefix(f.name.as_str()) == Some(".sha256"),
        })
}

/// The size `result.json` fixes for the file `title`: a listed file's recorded size, or the
/// length of the `.sha256` line beside it (`<64 hex>  <name>\n`).
fn expected_size(title: &str, files: &[ResultFile]) -> Option<u64> {
    files.iter().find_map(|f| {
        if title == f.name {
            f.size
        } else if f.sha256.is_some() && title.strip_prefix(f.name.as_str()) == Some(".sha256") {
            Some(64 + 2 + f.name.len() as u64 + 1)
        } else {
            None
        }
    })
}

/// What [`store`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `HOST/REPO:TAG`.
    pub reference: String,
    /// The artifact manifest's digest.
    pub manifest_digest: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry had (or mounted).
    pub skipped: usize,
}

/// The regular files under `target` (relative, `/`-separated, sorted), refusing anything else
/// (a symlink or special file is no part of a result).
fn result_files(target: &Path) -> Result<Vec<String>, CacheError> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(target)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
    {
        let e = e.map_err(|e| CacheError::Result {
            target: target.to_path_buf(),
            reason: e.to_string(),
        })?;
        let ft = e.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = e.path().strip_prefix(target).unwrap_or(e.path());
        let title = rel
            .to_str()
            .ok_or_else(|| CacheError::Result {
                target: target.to_path_buf(),
                reason: format!("{} is not UTF-8", rel.display()),
            })?
            .to_string();
        if !ft.is_file() {
            return Err(CacheError::Result {
                target: target.to_path_buf(),
                reason: format!("{title} is not a regular file"),
            });
        }
        out.push(title);
    }
    Ok(out)
}

/// Stores the result in `target` (an intact result of inputs `key`: `result.json` records it)
/// in the repository `dest` under the key's tag: every file as a blob (those the registry has
/// are not sent again), then the manifest.
pub fn store(
    target: &Path,
    key: &str,
    dest: &Reference,
    client_opts: &ClientOptions,
) -> Result<Stored, CacheError> {
    let dest = tagged(dest, key)?;
    let reference = full(&dest);
    let created = read_result(target)?;
    if created.inputs.as_deref() != Some(key) {
        return Err(CacheError::Result {
            target: target.to_path_buf(),
            reason: format!("result.json does not record the inputs {key}"),
        });
    }
    let titles = result_files(target)?;
    if let Some(stray) = titles.iter().find(|t| !belongs(t, &created.files)) {
        return Err(CacheError::Result {
            target: target.to_path_buf(),
            reason: format!("{stray} is not a file result.json lists"),
        });
    }
    let mut files = Vec::with_capacity(titles.len());
    let mut paths = HashMap::new();
    for title in titles {
        let path = target.join(&title);
        let digest = format!(
            "sha256:{}",
            hex::encode(file_sha256(&path).map_err(|e| CacheError::Result {
                target: target.to_path_buf(),
                reason: e.to_string(),
            })?)
        );
        let size = path.metadata().map_err(|e| io(&path, e))?.len();
        paths.entry(digest.clone()).or_insert(path);
        files.push(ArtifactFile {
            title,
            digest,
            size,
        });
    }
    let manifest = artifact_manifest(&files);
    // One blob per digest (equal files share one); the config is pushed as the config.
    let config_digest = sha256_of(EMPTY_JSON);
    let mut layers = Vec::new();
    for (digest, path) in &paths {
        if *digest == config_digest {
            continue;
        }
        let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
        layers.push(LayerBlob {
            digest: digest.clone(),
            media_type: FILE_MEDIA_TYPE.to_string(),
            data: Box::new(f),
        });
    }
    let registry_err = |source| CacheError::Registry {
        reference: reference.clone(),
        source,
    };
    let client = Client::connect(&dest, client_opts).map_err(registry_err)?;
    let image = PushImage {
        input: StoreInput {
            manifest,
            config: EMPTY_JSON.to_vec(),
            layers,
        },
        files: paths.into_iter().collect(),
    };
    let report = crate::registry::push(&client, &dest, image, &PushOptions::new(&NoProgress))
        .map_err(registry_err)?;
    Ok(Stored {
        reference,
        manifest_digest: report.manifest_digest,
        uploaded: report.uploaded.len(),
        skipped: report.skipped.len() + report.mounted.len(),
    })
}

fn read_result(target: &Path) -> Result<Created, CacheError> {
    let p = target.join("result.json");
    let text = std::fs::read(&p).map_err(|e| io(&p, e))?;
    serde_json::from_slice(&text).map_err(|e| CacheError::Result {
        target: target.to_path_buf(),
        reason: format!("result.json: {e}"),
    })
}

/// Fetches the result of inputs `key` from the repository `source` and, once it is verified
/// (see the module documentation), puts it in place of `target` (which `build` has checked is
/// new, empty or imgbuild's), with `kiwi.result.json` written for this target ([`relocate`]),
/// so the files are those a build of `image` into `target` writes. Returns the result as its
/// `result.json` records it. On any error the target is untouched and the downloaded files
/// are removed.
pub fn fetch(
    target: &Path,
    key: &str,
    source: &Reference,
    client_opts: &ClientOptions,
    image: &ResolvedImage,
) -> Result<Created, CacheError> {
    let src = tagged(source, key)?;
    let reference = full(&src);
    let bad = |reason: String| CacheError::Artifact {
        reference: reference.clone(),
        reason,
    };
    let registry_err = |source| CacheError::Registry {
        reference: reference.clone(),
        source,
    };
    let client = Client::connect(&src, client_opts).map_err(registry_err)?;
    let tag = src.manifest_reference();
    let fetched = match client.get_manifest(&src.repository, tag) {
        Ok(m) => m,
        Err(RegistryError::Status { status: 404, .. }) => {
            return Err(CacheError::Missing {
                reference: reference.clone(),
            });
        }
        Err(e) => return Err(registry_err(e)),
    };
    let manifest: ArtifactManifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| bad(format!("the manifest cannot be read: {e}")))?;
    let layers = check_manifest(&manifest).map_err(bad)?;

    let parent = crate::atomic::parent_dir(target);
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let work = WorkDir::create(parent, workdir::RESULT_PREFIX)?;
    let out = work.path().join("out");
    make_dir(&out)?;

    // result.json first: an artifact of other inputs costs no more than this small file.
    let (rj_title, rj) = layers
        .iter()
        .find(|(t, _)| t == "result.json")
        .ok_or_else(|| bad("the artifact has no result.json".into()))?;
    if rj.size > MAX_RESULT_JSON {
        return Err(bad(format!("result.json is {} bytes", rj.size)));
    }
    download(&client, &src.repository, rj, &out.join(rj_title)).map_err(|e| e.named(&reference))?;
    let created = read_result(&out).map_err(|e| bad(e.to_string()))?;
    if created.inputs.as_deref() != Some(key) {
        return Err(bad(format!(
            "its result.json records the inputs {}, not {key}",
            created.inputs.as_deref().unwrap_or("(none)")
        )));
    }
    if let Some((t, _)) = layers.iter().find(|(t, _)| !belongs(t, &created.files)) {
        return Err(bad(format!("{t:?} is not a file its result.json lists")));
    }
    // Sizes result.json fixes are checked before anything large is downloaded.
    for (t, d) in &layers {
        if let Some(size) = expected_size(t, &created.files)
            && size != d.size
        {
            return Err(bad(format!(
                "{t:?} is {} bytes in the manifest, {size} in result.json",
                d.size
            )));
        }
    }
    let rest: Vec<&(String, Descriptor)> =
        layers.iter().filter(|(t, _)| t != "result.json").collect();
    download_all(&client, &src.repository, &rest, &out).map_err(|e| e.named(&reference))?;
    match reuse::check(&out, key) {
        Verdict::Reuse(_) => {}
        Verdict::Rebuild(reason) => {
            return Err(bad(format!("the fetched result fails the check: {reason}")));
        }
    }
    let created = relocate(&out, target, image, created)?;
    crate::build::replace_dir(&out, target)?;
    Ok(created)
}

/// Makes the verified result in `out` the one a build into `target` writes: KIWI's
/// `kiwi.result.json` names the files by absolute path, so it (with its `.sha256` and its entry
/// in `result.json`) is written again for `target`, as `create` writes it; the pushes of the
/// machine that stored the result are not this one's. Everything else is content-addressed
/// and stays as fetched.
fn relocate(
    out: &Path,
    target: &Path,
    image: &ResolvedImage,
    mut created: Created,
) -> Result<Created, CacheError> {
    created.pushed.clear();
    crate::build::relocate_result(out, target, image, created).map_err(|e| CacheError::Result {
        target: target.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The checks of a fetched manifest: type, config, titles; returns the layers with their
/// titles.
fn check_manifest(m: &ArtifactManifest) -> Result<Vec<(String, Descriptor)>, String> {
    if m.schema_version != 2 {
        return Err(format!("schemaVersion {} (not 2)", m.schema_version));
    }
    if m.media_type.as_deref().is_some_and(|t| t != OCI_MANIFEST) {
        return Err(format!(
            "the manifest is a {}, not an OCI image manifest",
            m.media_type.as_deref().unwrap_or_default()
        ));
    }
    if m.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
        return Err(format!(
            "the artifact type is {:?}, not {ARTIFACT_TYPE}",
            m.artifact_type.as_deref().unwrap_or("(none)")
        ));
    }
    if m.config.media_type != EMPTY_CONFIG {
        return Err(format!("the config is a {}", m.config.media_type));
    }
    if m.layers.is_empty() || m.layers.len() > MAX_FILES {
        return Err(format!("{} files", m.layers.len()));
    }
    let mut out = Vec::with_capacity(m.layers.len());
    for l in &m.layers {
        let title = l
            .annotations
            .get(TITLE)
            .ok_or_else(|| format!("the blob {} has no {TITLE}", l.digest))?;
        if cache_tag(&l.digest).is_none() {
            return Err(format!(
                "{title:?}: the digest {:?} is not sha256",
                l.digest
            ));
        }
        out.push((title.clone(), l.clone()));
    }
    check_titles(out.iter().map(|(t, _)| t.as_str()))?;
    Ok(out)
}

/// A download that failed: why (the reference is added by the caller).
#[derive(Debug)]
enum DownloadError {
    Registry(RegistryError),
    Content(String),
    Io(PathBuf, std::io::Error),
}

impl DownloadError {
    fn named(self, reference: &str) -> CacheError {
        match self {
            DownloadError::Registry(source) => CacheError::Registry {
                reference: reference.to_string(),
                source,
            },
            DownloadError::Content(reason) => CacheError::Artifact {
                reference: reference.to_string(),
                reason,
            },
            DownloadError::Io(path, source) => CacheError::Io { path, source },
        }
    }
}

fn make_dir(dir: &Path) -> Result<(), CacheError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    // The mode a build's directories have, whatever the umask (tree digests see modes).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| io(dir, e))
}

/// Downloads the blobs `layers` into `out` (their titles below it), `PARALLEL` at a time; the
/// first error stops the others.
fn download_all(
    client: &Client,
    repository: &str,
    layers: &[&(String, Descriptor)],
    out: &Path,
) -> Result<(), DownloadError> {
    // Directories first, in title order, all 0755 (titles are checked plain and relative).
    for (title, _) in layers {
        let mut dir = out.to_path_buf();
        let parts: Vec<&str> = title.split('/').collect();
        for c in &parts[..parts.len() - 1] {
            dir.push(c);
            if !dir.is_dir() {
                make_dir(&dir).map_err(|e| match e {
                    CacheError::Io { path, source } => DownloadError::Io(path, source),
                    other => DownloadError::Content(other.to_string()),
                })?;
            }
        }
    }
    let queue = Mutex::new(layers.iter().rev().copied().collect::<Vec<_>>());
    let first_error: Mutex<Option<DownloadError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(layers.len()) {
            s.spawn(|| {
                loop {
                    if first_error.lock().map_or(true, |e| e.is_some()) {
                        return;
                    }
                    let Some((title, d)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                        return;
                    };
                    if let Err(e) = download(client, repository, d, &out.join(title))
                        && let Ok(mut slot) = first_error.lock()
                    {
                        slot.get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(_) => Err(DownloadError::Content("a download thread panicked".into())),
    }
}

/// Downloads blob `d` into the new file `path` (mode 0644), checking its size and digest as
/// it streams.
fn download(
    client: &Client,
    repository: &str,
    d: &Descriptor,
    path: &Path,
) -> Result<(), DownloadError> {
    let ioe = |e| DownloadError::Io(path.to_path_buf(), e);
    let mut body = client
        .get_blob(repository, &d.digest, 0)
        .map_err(DownloadError::Registry)?
        .body
        .into_reader()
        // One byte more than declared shows a blob that is too long.
        .take(d.size + 1);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(ioe)?;
    // The mode a build's files have, whatever the umask.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(ioe)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(|e| {
            DownloadError::Registry(RegistryError::Transport {
                url: client.blob_url(repository, &d.digest),
                message: e.to_string(),
            })
        })?;
        if n == 0 {
            break;
        }
        got += n as u64;
        hash.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(ioe)?;
    }
    if got != d.size {
        return Err(DownloadError::Content(format!(
            "the blob {} is {}{got} bytes, not the {} the manifest says",
            d.digest,
            if got > d.size { "over " } else { "" },
            d.size
        )));
    }
    let digest = format!("sha256:{}", hex::encode(hash.finalize()));
    if digest != d.digest {
        return Err(DownloadError::Content(format!(
            "the blob {} has the digest {digest}",
            d.digest
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_must_be_plain_relative_and_unique() {
        assert!(check_titles(["result.json", "a.tar", "a.oci/blobs/sha256/ab"]).is_ok());
        for bad in [
            vec!["/etc/passwd"],
            vec!["../x"],
            vec!["a/../../x"],
            vec!["a/./b"],
            vec!["a//b"],
            vec!["a/"],
            vec![""],
            vec!["."],
            vec!["a\0b"],
            vec!["x", "x"],
            vec!["a.oci", "a.oci/index.json"],
        ] {
            assert!(
                check_titles(bad.iter().copied()).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn only_files_result_json_lists_belong() {
        let files = vec![
            ResultFile {
                kind: crate::build::ResultKind::DockerArchive,
                name: "i.tar".into(),
                sha256: Some("0".into()),
                size: Some(1),
                tree: None,
            },
            ResultFile {
                kind: crate::build::ResultKind::OciLayout,
                name: "i.oci".into(),
                sha256: None,
                size: None,
                tree: Some("sha256:0".into()),
            },
        ];
        for ok in ["result.json", "i.tar", "i.tar.sha256", "i.oci/index.json"] {
            assert!(belongs(ok, &files), "{ok}");
        }
        for no in ["i.tarx", "i.oci", "i.ocix/a", "evil.sh", "i.tar.sha256x"] {
            assert!(!belongs(no, &files), "{no}");
        }
        assert_eq!(expected_size("i.tar", &files), Some(1));
        assert_eq!(expected_size("i.tar.sha256", &files), Some(72));
        assert_eq!(expected_size("i.oci/index.json", &files), None);
    }

    #[test]
    fn the_manifest_is_an_artifact_with_the_empty_config_and_titled_layers() {
        let files = vec![
            ArtifactFile {
                title: "result.json".into(),
                digest: sha256_of(b"r"),
                size: 1,
            },
            ArtifactFile {
                title: "a.oci/index.json".into(),
                digest: sha256_of(b"i"),
                size: 1,
            },
        ];
        let bytes = artifact_manifest(&files);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_MANIFEST);
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
        assert_eq!(v["config"]["mediaType"], EMPTY_CONFIG);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(v["config"]["size"], 2);
        // Sorted by title, each titled, whatever order they were given in.
        let titles: Vec<&str> = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                assert_eq!(l["mediaType"], FILE_MEDIA_TYPE);
                l["annotations"][TITLE].as_str().unwrap()
            })
            .collect();
        assert_eq!(titles, ["a.oci/index.json", "result.json"]);
        let mut reversed = files.clone();
        reversed.reverse();
        assert_eq!(artifact_manifest(&reversed), bytes);
        // What it writes, the fetch side accepts.
        let m: ArtifactManifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(check_manifest(&m).unwrap().len(), 2);
    }

    #[test]
    fn a_manifest_of_another_kind_is_refused() {
        let good: ArtifactManifest = serde_json::from_slice(&artifact_manifest(&[ArtifactFile {
            title: "result.json".into(),
            digest: sha256_of(b"r"),
            size: 1,
        }]))
        .unwrap();
        let mut m = good.clone();
        m.artifact_type = None;
        assert!(check_manifest(&m).unwrap_err().contains("artifact type"));
        let mut m = good.clone();
        m.artifact_type = Some("application/vnd.other+json".into());
        assert!(check_manifest(&m).is_err());
        let mut m = good.clone();
        m.config.media_type = "application/vnd.oci.image.config.v1+json".into();
        assert!(check_manifest(&m).unwrap_err().contains("config"));
        let mut m = good.clone();
        m.layers[0].annotations.clear();
        assert!(check_manifest(&m).unwrap_err().contains(TITLE));
        let mut m = good.clone();
        m.layers[0].digest = "md5:00".into();
        assert!(check_manifest(&m).is_err());
        let mut m = good.clone();
        m.layers[0]
            .annotations
            .insert(TITLE.into(), "../../etc/passwd".into());
        assert!(check_manifest(&m).unwrap_err().contains("plain relative"));
        let mut m = good;
        m.layers.push(m.layers[0].clone());
        assert!(check_manifest(&m).unwrap_err().contains("twice"));
    }

    #[test]
    fn the_tag_is_the_hex_of_the_key() {
        let key = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            cache_tag(&key).unwrap(),
            format!("imgbuild-{}", "a".repeat(64))
        );
        assert!(cache_tag("sha256:xyz").is_none());
        assert!(cache_tag(&"a".repeat(64)).is_none());
        assert!(crate::reference::check_tag(&cache_tag(&key).unwrap()).is_ok());
    }

    #[test]
    fn a_cache_names_a_repository() {
        let r = parse_reference("docker://localhost:5000/ci/cache").unwrap();
        assert_eq!(shown(&r), "localhost:5000/ci/cache");
        assert!(parse_reference("localhost:5000/ci/cache:tag").is_err());
        assert!(parse_reference("cache").is_err());
    }
}
