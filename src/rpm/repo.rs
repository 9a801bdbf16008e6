//! rpm-md repositories: resolve a `<repository>`'s source, fetch and verify `repomd.xml`
//! against the keys the description names, then fetch the `primary` (and, when file
//! dependencies need it, `filelists`) metadata it pins and read the packages.
//!
//! Trust: `repomd.xml` must carry a detached signature (`repomd.xml.asc`) made by one of the
//! repository's `<signing key>` files, unless `repository_gpgcheck="false"`. A key the repository
//! serves itself (`repomd.xml.key`, which zypper offers to import) is never trusted: it comes from
//! the same place as the metadata it would vouch for. Every other file is pinned by a checksum in
//! the verified `repomd.xml` (metadata) or `primary.xml` (packages). `package_gpgcheck` is not
//! checked here: packages are pinned by the signed metadata, as apt's are by the Release file.
//!
//! Caching: `repomd.xml` and its signature are fetched fresh online and remembered under cache
//! refs keyed by URL, so an offline build finds (and verifies) them again. Metadata files with a
//! sha256 and a size are content-addressed downloads; others (sha1/sha224/sha384/sha512, or no
//! size) are read whole (capped), checked with their own hash, then stored under their sha256
//! with a ref by URL, and checked against the repomd checksum again each time they are reused.

use super::package::{Package, Requirement, Rich};
use super::primary::{
    FILELISTS_LIMIT, PRIMARY_LIMIT, PrimaryError, open_decompressed, parse_filelists, parse_primary,
};
use super::repomd::{MetadataFile, REPOMD_LIMIT, RepoMd, RepomdError};
use crate::apt::cache::{Cache, CacheError, CacheMode, Expected, Sha256Digest};
use crate::apt::fetch::{Download, FetchError, Fetcher};
use crate::apt::keyring::{Keyring, KeyringError};
use crate::apt::repo::{RepoError, RepoSpec};
use crate::rpm::package::Checksum;
use sha2::Digest as _;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

/// Largest compressed metadata file read whole (those without a sha256 and size in repomd.xml).
pub const METADATA_FILE_LIMIT: u64 = 1 << 30;

/// Source schemes that need the Open Build Service, a SUSE product or a zypper plugin.
const OBS_SCHEMES: [&str; 6] = [
    "obs:",
    "obsrepositories:",
    "ibs:",
    "iso:",
    "suse:",
    "plugin:",
];

/// Errors of rpm-md repositories. Each names the repository (alias), URL or package involved.
#[derive(Debug, thiserror::Error)]
pub enum RpmRepoError {
    /// The repository's source or type cannot be used.
    #[error("repository {alias}: source {source_path:?}: {message}")]
    Source {
        /// The repository's alias (or the name derived from its source).
        alias: String,
        /// The source as given.
        source_path: String,
        /// What is wrong and what to use instead.
        message: String,
    },
    /// A signing key path is unusable.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Key loading or the signature check failed.
    #[error("repository {alias}: {source}")]
    Keyring {
        /// The repository's alias.
        alias: String,
        /// The keyring error (it names the URL or key file).
        source: KeyringError,
    },
    /// `repomd.xml.asc` is missing and the signature must be checked.
    #[error(
        "repository {alias}: {url}: the repository metadata is not signed (no repomd.xml.asc); refused (set repository_gpgcheck=\"false\" to accept unsigned metadata)"
    )]
    Unsigned {
        /// The repository's alias.
        alias: String,
        /// The repomd.xml URL.
        url: String,
    },
    /// The signature must be checked but no key is named for the repository.
    #[error(
        "repository {alias}: {url}: no signing key is given for this repository, so its signature cannot be checked; imgbuild never trusts a key only because the repository serves it (repomd.xml.key): check the key and name it in <source><signing key=\"file:///…\"/></source> (or set repository_gpgcheck=\"false\" to accept the metadata unchecked)"
    )]
    NoKeys {
        /// The repository's alias.
        alias: String,
        /// The repomd.xml URL.
        url: String,
    },
    /// The source has no `repodata/repomd.xml`.
    #[error(
        "repository {alias}: {url}: not found; is the source an rpm-md repository (the directory holding repodata/)?"
    )]
    NoRepomd {
        /// The repository's alias.
        alias: String,
        /// The repomd.xml URL.
        url: String,
    },
    /// repomd.xml is malformed.
    #[error(transparent)]
    Repomd(#[from] RepomdError),
    /// repomd.xml lists no metadata of a needed type.
    #[error("{url}: lists no {kind} metadata")]
    MissingMetadata {
        /// The repomd.xml URL.
        url: String,
        /// The type wanted (`primary`).
        kind: String,
    },
    /// A metadata file does not have the checksum or size repomd.xml gives.
    #[error(
        "{url}: {kind} {actual} does not match the expected {expected} given by repomd.xml; refused, nothing cached"
    )]
    Checksum {
        /// The file's URL.
        url: String,
        /// The checksum type (or `size`).
        kind: String,
        /// What repomd.xml gives.
        expected: String,
        /// What was received.
        actual: String,
    },
    /// A checksum type that is not accepted.
    #[error("{url}: checksum type {kind} is not accepted (use sha256 or sha512)")]
    WeakChecksum {
        /// The file's URL.
        url: String,
        /// The checksum type.
        kind: String,
    },
    /// primary.xml or filelists.xml is malformed.
    #[error(transparent)]
    Primary(#[from] PrimaryError),
    /// A package cannot be downloaded as the metadata describes it.
    #[error("package {package} ({url}): {message}")]
    Package {
        /// The package (name-epoch:version-release.arch).
        package: String,
        /// Its URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A download failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The cache failed or (offline) lacks a file.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What every repository of a build shares.
#[derive(Debug, Clone)]
pub struct RpmContext<'a> {
    /// The download cache; its mode decides online or offline.
    pub cache: &'a Cache,
    /// The downloader.
    pub fetcher: &'a Fetcher,
    /// The description directory: `this://` sources and keys are relative to it.
    pub description_dir: PathBuf,
}

impl<'a> RpmContext<'a> {
    /// A context for a description in `description_dir`.
    pub fn new(
        cache: &'a Cache,
        fetcher: &'a Fetcher,
        description_dir: impl Into<PathBuf>,
    ) -> RpmContext<'a> {
        RpmContext {
            cache,
            fetcher,
            description_dir: description_dir.into(),
        }
    }
}

/// A repository whose metadata was fetched, verified and read.
#[derive(Debug, Clone)]
pub struct RpmMetadata {
    /// The specification.
    pub spec: RepoSpec,
    /// Index of the repository, in the order given (each package's `repo`).
    pub repo_index: usize,
    /// The repository root URL (where `repodata/` is), without trailing slash; `this://`
    /// resolved to a `dir://` URL.
    pub base_url: String,
    /// The repomd.xml URL.
    pub repomd_url: String,
    /// sha256 of repomd.xml as fetched (it pins everything else).
    pub repomd_digest: Sha256Digest,
    /// Whether the signature was checked (false only with `repository_gpgcheck="false"`).
    pub verified: bool,
    /// `<revision>` of repomd.xml.
    pub revision: Option<String>,
    /// The parsed repomd.xml.
    pub repomd: RepoMd,
    /// The packages of primary.xml.
    pub packages: Vec<Package>,
}

impl RpmMetadata {
    /// Where `pkg`'s `.rpm` file is: its `xml:base` (when given) or the repository root, joined
    /// with its location.
    pub fn file_url(&self, pkg: &Package) -> String {
        let base = pkg.location_base.as_deref().unwrap_or(&self.base_url);
        format!("{}/{}", base.trim_end_matches('/'), pkg.location)
    }

    /// A download of `pkg` for the cache, pinned by its sha256 and size. Refused for packages
    /// whose checksum is not sha256 (the cache is addressed by sha256, and trusting a second,
    /// unsigned hash would break the chain from the signed repomd.xml), without a size, or
    /// whose `xml:base` is not an http(s) URL. Credentials go only to the repository's own URL.
    pub fn download(&self, pkg: &Package) -> Result<Download, RpmRepoError> {
        let url = self.file_url(pkg);
        let refuse = |message: String| RpmRepoError::Package {
            package: pkg.nevra(),
            url: url.clone(),
            message,
        };
        if let Some(base) = &pkg.location_base
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(refuse(format!(
                "xml:base {base:?} is not an http(s) URL; refused"
            )));
        }
        if pkg.checksum.kind != "sha256" {
            return Err(refuse(format!(
                "the repository gives a {} checksum; imgbuild's download cache verifies packages by sha256 (recreate the repository with createrepo_c --checksum sha256)",
                pkg.checksum.kind
            )));
        }
        if pkg.size == 0 {
            return Err(refuse("primary.xml gives no package size".into()));
        }
        let sha256 = pkg
            .checksum
            .hex
            .parse::<Sha256Digest>()
            .map_err(|e| refuse(e.to_string()))?;
        let own = url.starts_with(&format!("{}/", self.base_url));
        Ok(Download {
            url,
            expected: Expected {
                sha256,
                size: Some(pkg.size),
            },
            credentials: if own {
                self.spec.credentials.clone()
            } else {
                None
            },
        })
    }
}

/// Fail unless `spec` is an rpm-md repository imgbuild can reach: `http(s)://`, `dir://`,
/// `file://` or `this://` (relative to the description); not an Open Build Service, ISO,
/// product or plugin source. For the plan stage, before any download.
pub fn check_source(spec: &RepoSpec) -> Result<(), RpmRepoError> {
    let refuse = |message: String| RpmRepoError::Source {
        alias: spec.name(),
        source_path: spec.source.clone(),
        message,
    };
    match spec.repo_type.as_str() {
        "rpm-md" | "" => {}
        other => {
            return Err(refuse(format!(
                "type {other:?} is not supported for RPM repositories (only rpm-md)"
            )));
        }
    }
    let src = spec.source.as_str();
    if let Some(scheme) = OBS_SCHEMES.iter().find(|s| src.starts_with(*s)) {
        let what = match *scheme {
            "iso:" => {
                "an iso:// source mounts an ISO image, which imgbuild does not do; mount or extract it and use its dir:// path"
            }
            "plugin:" => {
                "a plugin: source runs a zypper URL resolver plugin; use the http(s) URL it resolves to"
            }
            "suse:" => {
                "a suse:// source names a SUSE product repository served by the Open Build Service, which imgbuild cannot reach; use the repository's http(s) or dir URL"
            }
            _ => {
                "this source is resolved through the Open Build Service (KIWI maps it to the build service's download server), and imgbuild reaches no Open Build Service; use the repository's http(s) URL (or a dir:// path to a copy)"
            }
        };
        return Err(refuse(what.into()));
    }
    let known = ["http://", "https://", "dir:/", "file:/", "this://"];
    if !known.iter().any(|k| src.starts_with(k)) {
        return Err(refuse(
            "unsupported scheme (use http://, https://, dir:///path, file:///path or this://path)"
                .into(),
        ));
    }
    if src == "this://"
        || src
            .strip_prefix("this://")
            .is_some_and(|r| r.starts_with('/'))
    {
        return Err(refuse(
            "this:// takes a path relative to the description directory".into(),
        ));
    }
    if let Some(st) = &spec.sourcetype
        && !st.is_empty()
        && st != "baseurl"
    {
        return Err(refuse(format!(
            "sourcetype {st:?} is not supported (use baseurl with the repository's URL)"
        )));
    }
    Ok(())
}

/// The repository root URL of `spec` without trailing slash (`this://` made a `dir://` URL).
pub fn base_url(spec: &RepoSpec, ctx: &RpmContext<'_>) -> Result<String, RpmRepoError> {
    check_source(spec)?;
    let base = if let Some(rel) = spec.source.strip_prefix("this://") {
        let dir = std::path::absolute(&ctx.description_dir).map_err(|e| RpmRepoError::Source {
            alias: spec.name(),
            source_path: spec.source.clone(),
            message: format!("{}: {e}", ctx.description_dir.display()),
        })?;
        format!("dir://{}", dir.join(rel).display())
    } else {
        spec.source.clone()
    };
    Ok(base.trim_end_matches('/').to_string())
}

/// The key files trusted for `spec`: `file:`/absolute paths, and `this://` ones relative to the
/// description directory.
fn key_files(spec: &RepoSpec, ctx: &RpmContext<'_>) -> Result<Vec<PathBuf>, RpmRepoError> {
    let mut out = Vec::new();
    for k in &spec.signing_keys {
        if let Some(rel) = k.strip_prefix("this://") {
            out.push(ctx.description_dir.join(rel));
        } else {
            let one = RepoSpec {
                signing_keys: vec![k.clone()],
                ..spec.clone()
            };
            out.extend(one.signing_key_paths()?);
        }
    }
    Ok(out)
}

/// Fetch (or, offline, read from the cache) and verify `spec`'s repomd.xml, then its primary
/// metadata, and read the packages (each tagged with `repo_index`).
pub fn fetch_metadata(
    spec: &RepoSpec,
    repo_index: usize,
    ctx: &RpmContext<'_>,
) -> Result<RpmMetadata, RpmRepoError> {
    let VerifiedRepomd {
        base_url: base,
        repomd_url,
        repomd_digest,
        repomd,
        verified,
    } = fetch_repomd(spec, ctx)?;
    let entry = repomd
        .get("primary")
        .ok_or_else(|| RpmRepoError::MissingMetadata {
            url: repomd_url.clone(),
            kind: "primary".into(),
        })?;
    let url = format!("{base}/{}", entry.location);
    let path = fetch_metadata_file(ctx, spec, &url, entry)?;
    let reader = open_decompressed(&path, &url)?;
    let limit = entry
        .open_size
        .map_or(PRIMARY_LIMIT, |s| s.min(PRIMARY_LIMIT));
    let packages = parse_primary(reader, &url, repo_index, limit)?;
    Ok(RpmMetadata {
        spec: spec.clone(),
        repo_index,
        base_url: base,
        repomd_digest,
        repomd_url,
        verified,
        revision: repomd.revision.clone(),
        repomd,
        packages,
    })
}

/// A repository's `repomd.xml`, fetched (offline: from the cache) and verified.
#[derive(Debug, Clone)]
pub struct VerifiedRepomd {
    /// The repository root URL, without trailing slash.
    pub base_url: String,
    /// The URL of `repodata/repomd.xml`.
    pub repomd_url: String,
    /// sha256 of repomd.xml as fetched: it pins every metadata file, so it decides the packages.
    pub repomd_digest: Sha256Digest,
    /// The parsed repomd.xml.
    pub repomd: RepoMd,
    /// Whether its signature was checked (false only with `repository_gpgcheck="false"`).
    pub verified: bool,
}

/// Fetches (offline: reads from the cache) `spec`'s `repodata/repomd.xml` and checks its
/// detached signature against the repository's keys; the metadata it lists is not read.
pub fn fetch_repomd(spec: &RepoSpec, ctx: &RpmContext<'_>) -> Result<VerifiedRepomd, RpmRepoError> {
    let base = base_url(spec, ctx)?;
    let alias = spec.name();
    let repomd_url = format!("{base}/repodata/repomd.xml");
    let asc_url = format!("{repomd_url}.asc");
    let creds = spec.credentials.as_ref();
    let gpgcheck = spec.gpgcheck();
    let (raw, sig) = match ctx.cache.mode() {
        CacheMode::Online => {
            let raw = match ctx.fetcher.get_bytes(&repomd_url, creds, REPOMD_LIMIT) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => {
                    return Err(RpmRepoError::NoRepomd {
                        alias,
                        url: repomd_url,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            let sig = if gpgcheck {
                match ctx.fetcher.get_bytes(&asc_url, creds, REPOMD_LIMIT) {
                    Ok(b) => Some(b),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            (raw, sig)
        }
        CacheMode::Offline => {
            let raw = ctx
                .cache
                .read_ref(&repomd_url)?
                .ok_or_else(|| CacheError::Missing {
                    name: repomd_url.clone(),
                    path: ctx.cache.ref_location(&repomd_url),
                })?;
            let sig = if gpgcheck {
                ctx.cache.read_ref(&asc_url)?
            } else {
                None
            };
            (raw, sig)
        }
    };
    if gpgcheck {
        let Some(sig) = &sig else {
            return Err(RpmRepoError::Unsigned {
                alias,
                url: repomd_url,
            });
        };
        let files = key_files(spec, ctx)?;
        if files.is_empty() {
            return Err(RpmRepoError::NoKeys {
                alias,
                url: repomd_url,
            });
        }
        let keyring_err = |source| RpmRepoError::Keyring {
            alias: alias.clone(),
            source,
        };
        let mut keyring = Keyring::new();
        for f in &files {
            keyring.add_file(f).map_err(keyring_err)?;
        }
        keyring
            .verify_detached(&repomd_url, &raw, sig)
            .map_err(keyring_err)?;
    }
    let repomd = RepoMd::parse(&raw, &repomd_url)?;
    // Only metadata that passed the signature check (or was explicitly trusted) is remembered
    // for offline builds.
    if ctx.cache.mode() == CacheMode::Online {
        remember(ctx.cache, &repomd_url, &raw)?;
        if let Some(sig) = &sig {
            remember(ctx.cache, &asc_url, sig)?;
        }
    }
    Ok(VerifiedRepomd {
        base_url: base,
        repomd_digest: Sha256Digest::of(&raw),
        repomd_url,
        repomd,
        verified: gpgcheck,
    })
}

/// [`fetch_metadata`] for several repositories at once (their downloads overlap); repository
/// `i` gets index `i`. Results are in the order of `specs`; the first failure in that order is
/// returned.
pub fn fetch_all_metadata(
    specs: &[RepoSpec],
    ctx: &RpmContext<'_>,
) -> Result<Vec<RpmMetadata>, RpmRepoError> {
    let results: Vec<Result<RpmMetadata, RpmRepoError>> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| s.spawn(move || fetch_metadata(spec, i, ctx)))
            .collect();
        handles
            .into_iter()
            .zip(specs)
            .map(|(h, spec)| {
                h.join().unwrap_or_else(|_| {
                    Err(RpmRepoError::Source {
                        alias: spec.name(),
                        source_path: spec.source.clone(),
                        message: "metadata worker panicked".into(),
                    })
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

fn remember(cache: &Cache, url: &str, data: &[u8]) -> Result<(), CacheError> {
    let (digest, _) = cache.insert_bytes(url, data)?;
    cache.set_ref(url, &digest)
}

/// The cached, verified file for metadata `entry` of repomd.xml, fetched from `url` when needed.
fn fetch_metadata_file(
    ctx: &RpmContext<'_>,
    spec: &RepoSpec,
    url: &str,
    entry: &MetadataFile,
) -> Result<PathBuf, RpmRepoError> {
    let creds = spec.credentials.as_ref();
    if entry.checksum.kind == "sha256"
        && let Some(size) = entry.size
        && size <= METADATA_FILE_LIMIT
    {
        let sha256 = entry
            .checksum
            .hex
            .parse::<Sha256Digest>()
            .map_err(|e| mismatch(url, "sha256", &entry.checksum.hex, &e.to_string()))?;
        let expected = Expected {
            sha256,
            size: Some(size),
        };
        return Ok(ctx
            .fetcher
            .fetch_to_cache(ctx.cache, url, creds, &expected)?);
    }
    // Not content-addressable by what repomd.xml gives: read whole, check, then cache.
    if let Some(data) = ctx.cache.read_ref(url)?
        && verify(url, entry, &data).is_ok()
    {
        return Ok(ctx.cache.blob_path(&Sha256Digest::of(&data)));
    }
    if ctx.cache.mode() == CacheMode::Offline {
        return Err(CacheError::Missing {
            name: url.to_string(),
            path: ctx.cache.ref_location(url),
        }
        .into());
    }
    let limit = entry
        .size
        .map_or(METADATA_FILE_LIMIT, |s| s.min(METADATA_FILE_LIMIT));
    let data = ctx.fetcher.get_bytes(url, creds, limit)?;
    verify(url, entry, &data)?;
    let (digest, path) = ctx.cache.insert_bytes(url, &data)?;
    ctx.cache.set_ref(url, &digest)?;
    Ok(path)
}

fn mismatch(url: &str, kind: &str, expected: &str, actual: &str) -> RpmRepoError {
    RpmRepoError::Checksum {
        url: url.to_string(),
        kind: kind.to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

/// Check `data` against the size and checksum repomd.xml gives for it.
fn verify(url: &str, entry: &MetadataFile, data: &[u8]) -> Result<(), RpmRepoError> {
    if let Some(size) = entry.size
        && size != data.len() as u64
    {
        return Err(mismatch(
            url,
            "size",
            &size.to_string(),
            &data.len().to_string(),
        ));
    }
    let actual = digest_hex(url, &entry.checksum, data)?;
    if actual != entry.checksum.hex {
        return Err(mismatch(
            url,
            &entry.checksum.kind,
            &entry.checksum.hex,
            &actual,
        ));
    }
    Ok(())
}

/// The hex digest of `data` in the checksum's type. md5 is refused.
fn digest_hex(url: &str, checksum: &Checksum, data: &[u8]) -> Result<String, RpmRepoError> {
    Ok(match checksum.kind.as_str() {
        "sha1" => {
            use sha1::Digest as _;
            hex::encode(sha1::Sha1::digest(data))
        }
        "sha224" => hex::encode(sha2::Sha224::digest(data)),
        "sha256" => hex::encode(sha2::Sha256::digest(data)),
        "sha384" => hex::encode(sha2::Sha384::digest(data)),
        "sha512" => hex::encode(sha2::Sha512::digest(data)),
        other => {
            return Err(RpmRepoError::WeakChecksum {
                url: url.to_string(),
                kind: other.to_string(),
            });
        }
    })
}

/// Add the file paths dependencies need to the packages that have them. primary.xml lists only
/// some files (`/etc/*`, `*bin/*`); a requirement or recommendation on another path (walking
/// rich dependencies), or a path in `extra`, that no package's files or provides already
/// satisfy is looked up in the repositories' filelists (fetched only then), and each match is
/// appended to the providing package's `files`.
pub fn add_file_provides(
    metas: &mut [RpmMetadata],
    extra: &[String],
    ctx: &RpmContext<'_>,
) -> Result<(), RpmRepoError> {
    let mut wanted: BTreeSet<String> = extra
        .iter()
        .filter(|p| p.starts_with('/'))
        .cloned()
        .collect();
    let mut have: HashSet<&str> = HashSet::new();
    for pkg in metas.iter().flat_map(|m| &m.packages) {
        for r in pkg.requires.iter().chain(&pkg.recommends) {
            file_paths(r, &mut wanted);
        }
        have.extend(pkg.files.iter().map(String::as_str));
        have.extend(pkg.provides.iter().map(|d| d.name.as_str()));
    }
    wanted.retain(|p| !have.contains(p.as_str()));
    drop(have);
    if wanted.is_empty() {
        return Ok(());
    }
    for meta in metas.iter_mut() {
        let Some(entry) = meta.repomd.get("filelists").cloned() else {
            continue;
        };
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in meta.packages.iter().enumerate() {
            by_id.entry(p.checksum.hex.clone()).or_default().push(i);
        }
        let url = format!("{}/{}", meta.base_url, entry.location);
        let path = fetch_metadata_file(ctx, &meta.spec, &url, &entry)?;
        let reader = open_decompressed(&path, &url)?;
        let limit = entry
            .open_size
            .map_or(FILELISTS_LIMIT, |s| s.min(FILELISTS_LIMIT));
        let mut found: Vec<(usize, String)> = Vec::new();
        parse_filelists(reader, &url, limit, &mut |id, file| {
            if wanted.contains(file)
                && let Some(ixs) = by_id.get(id)
            {
                found.extend(ixs.iter().map(|&i| (i, file.to_string())));
            }
        })?;
        for (i, file) in found {
            let files = &mut meta.packages[i].files;
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    Ok(())
}

/// Collect the file paths (`/…`) a requirement names, through rich dependencies.
fn file_paths(r: &Requirement, out: &mut BTreeSet<String>) {
    match r {
        Requirement::Simple(d) => {
            if d.name.starts_with('/') {
                out.insert(d.name.clone());
            }
        }
        Requirement::Rich(rich) => match rich.as_ref() {
            Rich::And(v) | Rich::Or(v) | Rich::With(v) => {
                for x in v {
                    file_paths(x, out);
                }
            }
            Rich::If(a, b, c) | Rich::Unless(a, b, c) => {
                file_paths(a, out);
                file_paths(b, out);
                if let Some(c) = c {
                    file_paths(c, out);
                }
            }
            Rich::Without(a, b) => {
                file_paths(a, out);
                file_paths(b, out);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::cache::CacheMode;
    use crate::apt::fetch::FetchOptions;
    use crate::rpm::package::Dep;
    use std::io::Write as _;
    use std::path::Path;

    const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm"><name>app</name><arch>noarch</arch><version epoch="0" ver="1" rel="1"/>
  <checksum type="sha256" pkgid="YES">1111111111111111111111111111111111111111111111111111111111111111</checksum>
  <size package="100" installed="1"/><location href="Packages/app-1-1.noarch.rpm"/>
  <format><rpm:requires><rpm:entry name="/usr/libexec/helper"/><rpm:entry name="/bin/sh"/></rpm:requires></format>
</package>
<package type="rpm"><name>helper</name><arch>noarch</arch><version epoch="0" ver="2" rel="1"/>
  <checksum type="sha256" pkgid="YES">2222222222222222222222222222222222222222222222222222222222222222</checksum>
  <size package="200" installed="1"/><location href="Packages/helper-2-1.noarch.rpm"/>
  <format><file>/bin/sh</file></format>
</package>
</metadata>
"#;

    const FILELISTS: &str = r#"<filelists packages="2">
<package pkgid="2222222222222222222222222222222222222222222222222222222222222222" name="helper" arch="noarch">
  <version epoch="0" ver="2" rel="1"/><file>/bin/sh</file><file>/usr/libexec/helper</file><file>/usr/share/doc/helper</file>
</package>
<package pkgid="1111111111111111111111111111111111111111111111111111111111111111" name="app" arch="noarch">
  <version epoch="0" ver="1" rel="1"/><file>/usr/bin/app</file>
</package>
</filelists>
"#;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    /// Write an unsigned repository: primary pinned by sha256 with its size, filelists by
    /// sha512 without one.
    fn write_repo(root: &Path, primary: &[u8]) {
        let rd = root.join("repodata");
        std::fs::create_dir_all(&rd).unwrap();
        let p = gz(primary);
        let f = gz(FILELISTS.as_bytes());
        std::fs::write(rd.join("primary.xml.gz"), &p).unwrap();
        std::fs::write(rd.join("filelists.xml.gz"), &f).unwrap();
        let repomd = format!(
            r#"<?xml version="1.0"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>7</revision>
<data type="primary"><checksum type="sha256">{}</checksum><location href="repodata/primary.xml.gz"/><size>{}</size></data>
<data type="filelists"><checksum type="sha512">{}</checksum><location href="repodata/filelists.xml.gz"/></data>
</repomd>"#,
            hex::encode(sha2::Sha256::digest(&p)),
            p.len(),
            hex::encode(sha2::Sha512::digest(&f)),
        );
        std::fs::write(rd.join("repomd.xml"), repomd).unwrap();
    }

    fn unsigned(source: String) -> RepoSpec {
        RepoSpec {
            alias: Some("test".into()),
            repo_type: "rpm-md".into(),
            repository_gpgcheck: Some(false),
            ..RepoSpec::new(source)
        }
    }

    #[test]
    fn sources_imgbuild_cannot_reach_are_refused_by_name() {
        for src in [
            "obs://openSUSE:Factory/standard",
            "obsrepositories:/",
            "ibs://SUSE:SLE-15/standard",
            "suse://product",
        ] {
            let mut s = unsigned(src.into());
            s.alias = Some("os".into());
            let e = check_source(&s).unwrap_err().to_string();
            assert!(e.starts_with("repository os: source"), "{e}");
            assert!(
                e.contains("Open Build Service") && e.contains("http(s)"),
                "{e}"
            );
        }
        let e = check_source(&unsigned("iso:///x.iso".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dir://"), "{e}");
        let e = check_source(&unsigned("plugin:/services".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("plugin"), "{e}");
        let e = check_source(&unsigned("ftp://h/r".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported scheme"), "{e}");
        let mut s = unsigned("http://h/r".into());
        s.repo_type = "rpm-dir".into();
        assert!(
            check_source(&s)
                .unwrap_err()
                .to_string()
                .contains("rpm-dir")
        );
        let mut s = unsigned("http://h/r".into());
        s.sourcetype = Some("metalink".into());
        assert!(check_source(&s).is_err());
        assert!(check_source(&unsigned("this:///abs".into())).is_err());
        for ok in [
            "http://h/r/",
            "https://h/r",
            "dir:///srv/r",
            "file:///srv/r",
            "this://repo",
        ] {
            check_source(&unsigned(ok.into())).unwrap();
        }
    }

    #[test]
    fn fetches_parses_and_adds_file_provides() {
        let dir = tempfile::tempdir().unwrap();
        let desc = dir.path().join("desc");
        write_repo(&desc.join("repo"), PRIMARY.as_bytes());
        let cache = Cache::open(dir.path().join("cache"), CacheMode::Online).unwrap();
        let fetcher = Fetcher::new(FetchOptions::default());
        let ctx = RpmContext::new(&cache, &fetcher, &desc);
        let spec = unsigned("this://repo".into());
        let meta = fetch_metadata(&spec, 4, &ctx).unwrap();
        assert_eq!(
            meta.base_url,
            format!("dir://{}", desc.join("repo").display())
        );
        assert_eq!(meta.revision.as_deref(), Some("7"));
        assert!(!meta.verified);
        assert_eq!(meta.packages.len(), 2);
        assert!(meta.packages.iter().all(|p| p.repo == 4));
        let app = &meta.packages[0];
        assert_eq!(
            meta.file_url(app),
            format!("{}/Packages/app-1-1.noarch.rpm", meta.base_url)
        );
        let d = meta.download(app).unwrap();
        assert_eq!(d.expected.size, Some(100));
        assert_eq!(d.expected.sha256.to_hex(), "1".repeat(64));

        // Several at once: in order, each with its index.
        let other = unsigned(format!("dir://{}", desc.join("repo").display()));
        let all = fetch_all_metadata(&[spec.clone(), other], &ctx).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[1].packages.iter().all(|p| p.repo == 1));
        assert_eq!(all[0].base_url, meta.base_url);

        // /usr/libexec/helper is only in filelists; /bin/sh is in primary already.
        let mut metas = vec![meta];
        add_file_provides(&mut metas, &["/usr/share/doc/helper".into()], &ctx).unwrap();
        assert_eq!(
            metas[0].packages[1].files,
            vec!["/bin/sh", "/usr/libexec/helper", "/usr/share/doc/helper"]
        );
        assert_eq!(metas[0].packages[0].files, Vec::<String>::new());

        // Offline, everything comes from the cache (sha512-pinned filelists included).
        std::fs::remove_dir_all(desc.join("repo")).unwrap();
        drop(cache);
        let cache = Cache::open(dir.path().join("cache"), CacheMode::Offline).unwrap();
        let ctx = RpmContext::new(&cache, &fetcher, &desc);
        let mut metas = vec![fetch_metadata(&spec, 0, &ctx).unwrap()];
        add_file_provides(&mut metas, &[], &ctx).unwrap();
        assert!(
            metas[0].packages[1]
                .files
                .contains(&"/usr/libexec/helper".to_string())
        );
        let e = fetch_metadata(&unsigned("dir:///nonexistent/r".into()), 0, &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("offline") && e.contains("repomd.xml"), "{e}");
    }

    #[test]
    fn mismatched_metadata_is_refused_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        write_repo(&repo, PRIMARY.as_bytes());
        // Same size, other content.
        let mut p = std::fs::read(repo.join("repodata/primary.xml.gz")).unwrap();
        let last = p.len() - 1;
        p[last] ^= 0xff;
        std::fs::write(repo.join("repodata/primary.xml.gz"), &p).unwrap();
        let mut f = std::fs::read(repo.join("repodata/filelists.xml.gz")).unwrap();
        let flast = f.len() - 1;
        f[flast] ^= 0xff;
        let cache = Cache::open(dir.path().join("cache"), CacheMode::Online).unwrap();
        let fetcher = Fetcher::new(FetchOptions::default());
        let ctx = RpmContext::new(&cache, &fetcher, dir.path());
        let spec = unsigned(format!("dir://{}", repo.display()));
        let e = fetch_metadata(&spec, 0, &ctx).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains("does not match"), "{e}");
        let blobs: Vec<_> = std::fs::read_dir(cache.root().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        // Only repomd.xml (remembered before primary was fetched) is there; no temporary files.
        assert_eq!(blobs.len(), 1, "{blobs:?}");

        // A sha512-pinned file that does not match is refused the same way.
        write_repo(&repo, PRIMARY.as_bytes());
        std::fs::write(repo.join("repodata/filelists.xml.gz"), &f).unwrap();
        let mut metas = vec![fetch_metadata(&spec, 0, &ctx).unwrap()];
        let e = add_file_provides(&mut metas, &[], &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sha512") && e.contains("nothing cached"), "{e}");
        assert!(
            cache
                .read_ref(&format!("{}/repodata/filelists.xml.gz", spec.source))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn signature_rules() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        write_repo(&repo, PRIMARY.as_bytes());
        let cache = Cache::open(dir.path().join("cache"), CacheMode::Online).unwrap();
        let fetcher = Fetcher::new(FetchOptions::default());
        let ctx = RpmContext::new(&cache, &fetcher, dir.path());
        let mut spec = unsigned(format!("dir://{}", repo.display()));
        spec.repository_gpgcheck = None;
        let e = fetch_metadata(&spec, 0, &ctx).unwrap_err().to_string();
        assert!(
            e.contains("not signed") && e.contains("repository_gpgcheck=\"false\""),
            "{e}"
        );
        std::fs::write(repo.join("repodata/repomd.xml.asc"), "sig").unwrap();
        std::fs::write(repo.join("repodata/repomd.xml.key"), "key").unwrap();
        let e = fetch_metadata(&spec, 0, &ctx).unwrap_err().to_string();
        assert!(
            e.contains("no signing key") && e.contains("repomd.xml.key"),
            "{e}"
        );
        spec.signing_keys = vec!["this://missing.asc".into()];
        let e = fetch_metadata(&spec, 0, &ctx).unwrap_err().to_string();
        assert!(
            e.starts_with("repository test: ") && e.contains("missing.asc"),
            "{e}"
        );
        // Nothing unverified was remembered for offline builds.
        assert!(
            cache
                .read_ref(&format!("{}/repodata/repomd.xml", spec.source))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn downloads_refuse_what_the_cache_cannot_pin() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        write_repo(&repo, PRIMARY.as_bytes());
        let cache = Cache::open(dir.path().join("cache"), CacheMode::Online).unwrap();
        let fetcher = Fetcher::new(FetchOptions::default());
        let ctx = RpmContext::new(&cache, &fetcher, dir.path());
        let mut spec = unsigned("http://127.0.0.1:9/r".into());
        spec.credentials = Some(crate::apt::fetch::Credentials {
            username: "u".into(),
            password: "p".into(),
        });
        let mut meta =
            fetch_metadata(&unsigned(format!("dir://{}", repo.display())), 0, &ctx).unwrap();
        meta.spec = spec;
        meta.base_url = "http://127.0.0.1:9/r".into();
        let mut p = meta.packages[0].clone();
        assert!(meta.download(&p).unwrap().credentials.is_some());
        p.location_base = Some("https://mirror.invalid/os".into());
        let d = meta.download(&p).unwrap();
        assert_eq!(
            d.url,
            "https://mirror.invalid/os/Packages/app-1-1.noarch.rpm"
        );
        assert!(
            d.credentials.is_none(),
            "credentials only go to the repository"
        );
        p.location_base = Some("file:///etc".into());
        assert!(
            meta.download(&p)
                .unwrap_err()
                .to_string()
                .contains("xml:base")
        );
        p.location_base = None;
        p.checksum.kind = "sha512".into();
        let e = meta.download(&p).unwrap_err().to_string();
        assert!(
            e.starts_with("package app-1-1.noarch (") && e.contains("sha512"),
            "{e}"
        );
    }

    #[test]
    fn file_paths_walk_rich_dependencies() {
        let s = |n: &str| Requirement::Simple(Dep::named(n));
        let r = Requirement::Rich(Box::new(Rich::Or(vec![
            s("/usr/bin/a"),
            Requirement::Rich(Box::new(Rich::If(s("b"), s("/etc/c"), Some(s("/d"))))),
            Requirement::Rich(Box::new(Rich::Without(s("/e"), s("f")))),
        ])));
        let mut out = BTreeSet::new();
        file_paths(&r, &mut out);
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            vec!["/d", "/e", "/etc/c", "/usr/bin/a"]
        );
    }
}
