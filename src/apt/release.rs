//! Repository metadata: fetch and verify `InRelease` (or `Release` + `Release.gpg`), parse it, and
//! fetch the `Packages` indexes it pins, checked against its sha256 sums and handed on decompressed.
//!
//! A warm build makes one request per repository (InRelease): every index is looked up in the cache
//! by the sha256 the signed Release gives, including the decompressed form when Release lists it.

use crate::apt::cache::{Cache, CacheError, CacheMode, Expected, ReleaseDate, Sha256Digest};
use crate::apt::control;
use crate::apt::fetch::{Credentials, Download, FetchError, Fetcher, METADATA_LIMIT};
use crate::apt::hostsources::{self, HostSourcesError, SignedBy};
use crate::apt::keyring::{Keyring, KeyringError};
use crate::apt::repo::{APT_HOST_SCHEME, RepoError, RepoSpec};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Environment variable that turns the `Valid-Until` check off (`0`, `no`, `false`) or forces it on.
pub const ENV_CHECK_VALID_UNTIL: &str = "IMGBUILD_CHECK_VALID_UNTIL";

/// Environment variable that turns the clock checks off (`0`, `no`, `false`): a Release `Date` in
/// the future, and `Valid-Until` with it, as apt's `Acquire::Check-Date`. `1` forces the `Date`
/// check on.
pub const ENV_CHECK_DATE: &str = "IMGBUILD_CHECK_DATE";

/// Environment variable of the `--allow-older-release` flag.
pub const ENV_ALLOW_OLDER_RELEASE: &str = "IMGBUILD_ALLOW_OLDER_RELEASE";

/// The command-line flag that accepts a Release older than the newest seen.
pub const FLAG_ALLOW_OLDER_RELEASE: &str = "--allow-older-release";

/// How far a Release `Date` may lie ahead of this machine's clock: apt's
/// `Acquire::Max-FutureTime` default. A host source's `date-max-future` overrides it.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(10);

/// Errors reading a repository's metadata. Each names the URL (and cache path) involved.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The repository specification is unusable.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// `apt-host:/` could not be resolved.
    #[error(transparent)]
    HostSources(#[from] HostSourcesError),
    /// Key loading or signature checking failed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A download failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The cache failed or (offline) lacks a file.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The repository publishes no signature and checking is on.
    #[error(
        "{url}: the repository metadata is not signed (no InRelease, no Release.gpg); refused (set repository_gpgcheck=\"false\" to accept unsigned metadata)"
    )]
    Unsigned {
        /// The Release URL.
        url: String,
    },
    /// Neither `InRelease` nor Release exists.
    #[error("{url}: no InRelease or Release file found")]
    NoRelease {
        /// The `InRelease` URL.
        url: String,
    },
    /// Release is malformed.
    #[error("{url}: {message}")]
    Parse {
        /// The Release URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The Release file's `Valid-Until` has passed.
    #[error(
        "{url}: the metadata expired (Valid-Until {valid_until}); a snapshot mirror needs the check off: repository check_valid_until false, the host's check-valid-until=no, or {env}=0"
    )]
    Expired {
        /// The Release URL.
        url: String,
        /// The Valid-Until value.
        valid_until: String,
        /// The environment override.
        env: &'static str,
    },
    /// The Release `Date` lies further ahead of this machine's clock than allowed.
    #[error(
        "{url}: the Release file is not valid yet (invalid for another {ahead}): its Date {date} is more than {allowed} s ahead of this machine's clock; check the clock, or turn the check off with the host's check-date=no (or date-max-future=SECONDS) for this source, or {env}=0"
    )]
    NotValidYet {
        /// The Release URL.
        url: String,
        /// The `Date` value.
        date: String,
        /// How far ahead of the clock it is, as apt prints it (`30d 0h 0min 0s`).
        ahead: String,
        /// The allowance in seconds.
        allowed: u64,
        /// The environment override.
        env: &'static str,
    },
    /// The Release `Date` is older than the newest this cache has seen for the repository: a
    /// mirror serving old metadata, or a replay.
    #[error(
        "{url}: the Release file would go back in time: its Date {date} is older than {newest}, the newest seen for this repository; refused, since old metadata may lack security updates. If the repository really was rolled back, pass {flag} (or set {env}=1), or build with a lock file pinning the packages"
    )]
    Rewound {
        /// The Release URL.
        url: String,
        /// The `Date` value (`(missing)` when the file has none that parses).
        date: String,
        /// The newest `Date` seen before.
        newest: String,
        /// The command-line override.
        flag: &'static str,
        /// The environment override.
        env: &'static str,
    },
    /// Release does not list a wanted index.
    #[error("{url}: Release lists no {path} (Packages, Packages.xz or Packages.gz)")]
    MissingIndex {
        /// The Release URL.
        url: String,
        /// The index path wanted.
        path: String,
    },
    /// A component is not in the Release's `Components`.
    #[error("{url}: component {component:?} is not in the repository (Components: {available})")]
    MissingComponent {
        /// The Release URL.
        url: String,
        /// The component wanted.
        component: String,
        /// What Release lists.
        available: String,
    },
    /// An architecture is not in the Release's `Architectures`.
    #[error("{url}: architecture {arch:?} is not in the repository (Architectures: {available})")]
    MissingArchitecture {
        /// The Release URL.
        url: String,
        /// The architecture wanted.
        arch: String,
        /// What Release lists.
        available: String,
    },
    /// A compressed index could not be decompressed.
    #[error("{url}: cannot decompress {path}: {source}")]
    Decompress {
        /// The index URL.
        url: String,
        /// The cached compressed file.
        path: PathBuf,
        /// The decoder error.
        source: io::Error,
    },
}

/// One file listed in the Release's SHA256 section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// sha256 of the file.
    pub sha256: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
}

impl IndexEntry {
    /// As an [`Expected`] for the cache.
    pub fn expected(&self) -> Expected {
        Expected {
            sha256: self.sha256,
            size: Some(self.size),
        }
    }
}

/// A parsed Release file (the parts imgbuild uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    /// `Origin`.
    pub origin: Option<String>,
    /// `Suite`.
    pub suite: Option<String>,
    /// `Codename`.
    pub codename: Option<String>,
    /// `Architectures`.
    pub architectures: Vec<String>,
    /// `Components`.
    pub components: Vec<String>,
    /// `Acquire-By-Hash: yes`.
    pub acquire_by_hash: bool,
    /// `Date`, as given.
    pub date: Option<String>,
    /// `Valid-Until`, as given.
    pub valid_until: Option<String>,
    /// The SHA256 section: path relative to the Release file → entry.
    pub sha256: BTreeMap<String, IndexEntry>,
}

impl Release {
    /// Parse Release text; `url` names it in errors.
    pub fn parse(text: &str, url: &str) -> Result<Release, ReleaseError> {
        let perr = |message: String| ReleaseError::Parse {
            url: url.to_string(),
            message,
        };
        let paragraphs = control::parse(text).map_err(|e| perr(e.to_string()))?;
        let Some(p) = paragraphs.first() else {
            return Err(perr("empty Release file".into()));
        };
        let words = |f: &str| -> Vec<String> {
            p.get(f)
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let mut sha256 = BTreeMap::new();
        let Some(section) = p.get("SHA256") else {
            return Err(perr(
                "no SHA256 section (MD5/SHA1-only repositories are not accepted)".into(),
            ));
        };
        for (i, line) in section.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [hash, size, path] = parts[..] else {
                return Err(perr(format!(
                    "SHA256 line {}: expected 'sha256 size path', found {line:?}",
                    i + 1
                )));
            };
            let sha = hash
                .parse::<Sha256Digest>()
                .map_err(|e| perr(format!("SHA256 entry {path}: {e}")))?;
            let size = size
                .parse::<u64>()
                .map_err(|_| perr(format!("SHA256 entry {path}: bad size {size:?}")))?;
            sha256.insert(path.to_string(), IndexEntry { sha256: sha, size });
        }
        Ok(Release {
            origin: p.get("Origin").map(str::to_string),
            suite: p.get("Suite").map(str::to_string),
            codename: p.get("Codename").map(str::to_string),
            architectures: words("Architectures"),
            components: words("Components"),
            acquire_by_hash: p
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            date: p.get("Date").map(str::to_string),
            valid_until: p.get("Valid-Until").map(str::to_string),
            sha256,
        })
    }

    /// The `Date` in seconds since the epoch; `None` when absent or not a date.
    pub fn date_epoch(&self) -> Option<i64> {
        self.date.as_deref().and_then(parse_rfc2822)
    }

    /// Fail when `Date` lies more than `allowed` ahead of `now` (apt's Check-Date).
    pub fn check_date(
        &self,
        now: SystemTime,
        allowed: Duration,
        url: &str,
    ) -> Result<(), ReleaseError> {
        let (Some(text), Some(date)) = (&self.date, self.date_epoch()) else {
            return Ok(());
        };
        let ahead = date.saturating_sub(epoch_secs(now));
        if ahead > i64::try_from(allowed.as_secs()).unwrap_or(i64::MAX) {
            return Err(ReleaseError::NotValidYet {
                url: url.to_string(),
                date: text.clone(),
                ahead: duration_text(ahead),
                allowed: allowed.as_secs(),
                env: ENV_CHECK_DATE,
            });
        }
        Ok(())
    }

    /// Fail when `Valid-Until` is before `now`.
    pub fn check_valid_until(&self, now: SystemTime, url: &str) -> Result<(), ReleaseError> {
        let Some(v) = &self.valid_until else {
            return Ok(());
        };
        let until = parse_rfc2822(v).ok_or_else(|| ReleaseError::Parse {
            url: url.to_string(),
            message: format!("Valid-Until {v:?} is not a date"),
        })?;
        if epoch_secs(now) > until {
            return Err(ReleaseError::Expired {
                url: url.to_string(),
                valid_until: v.clone(),
                env: ENV_CHECK_VALID_UNTIL,
            });
        }
        Ok(())
    }
}

/// Seconds since the epoch (0 for a clock before it).
fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A span of seconds the way apt prints one: `7d 3h 42min 1s`, `3h 0min 5s`, `42min 1s`, `9s`.
fn duration_text(secs: i64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h {m}min {s}s")
    } else if h > 0 {
        format!("{h}h {m}min {s}s")
    } else if m > 0 {
        format!("{m}min {s}s")
    } else {
        format!("{s}s")
    }
}

/// Parse an on/off environment value (`0`, `no`, `false`, `off` / `1`, `yes`, `true`, `on`).
fn env_switch(name: &str) -> Option<bool> {
    std::env::var(name)
        .ok()
        .and_then(|v| match v.to_ascii_lowercase().as_str() {
            "0" | "no" | "false" | "off" => Some(false),
            "1" | "yes" | "true" | "on" => Some(true),
            _ => None,
        })
}

/// Seconds since the epoch for a Release date such as `Sat, 10 Jun 2023 08:54:02 UTC`.
pub fn parse_rfc2822(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, r)| r.trim());
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() < 4 {
        return None;
    }
    let day: i64 = parts[0].parse().ok()?;
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = months
        .iter()
        .zip(1i64..)
        .find(|(m, _)| parts[1].to_ascii_lowercase().starts_with(*m))?
        .1;
    let year: i64 = parts[2].parse().ok()?;
    let hms: Vec<i64> = parts[3]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (h, mi, sec) = match hms[..] {
        [h, m, s] => (h, m, s),
        [h, m] => (h, m, 0),
        _ => return None,
    };
    let offset = match parts.get(4).copied() {
        None | Some("UTC" | "GMT" | "Z" | "UT") => 0,
        Some(z) if z.len() == 5 && z.is_ascii() && (z.starts_with('+') || z.starts_with('-')) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
        _ => return None,
    };
    if !(1..=31).contains(&day)
        || !(1900..=9999).contains(&year)
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + mi * 60 + sec - offset)
}

// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Settings shared by every repository of a build.
#[derive(Debug, Clone)]
pub struct RepoContext<'a> {
    /// The download cache.
    pub cache: &'a Cache,
    /// The downloader.
    pub fetcher: &'a Fetcher,
    /// The host's apt directory (`/etc/apt`): sources for `apt-host:/`, default trusted keys.
    pub apt_dir: PathBuf,
    /// The time Valid-Until and a future Date are checked against.
    pub now: SystemTime,
    /// Global Valid-Until override (the [`ENV_CHECK_VALID_UNTIL`] variable); `None` keeps each
    /// repository's own setting.
    pub check_valid_until: Option<bool>,
    /// Global clock-check override (the [`ENV_CHECK_DATE`] variable); `None` keeps each
    /// repository's own setting.
    pub check_date: Option<bool>,
    /// Accept a signed Release older than the newest seen for its repository, with a warning
    /// ([`FLAG_ALLOW_OLDER_RELEASE`]).
    pub allow_older_release: bool,
}

impl<'a> RepoContext<'a> {
    /// A context using the host's `/etc/apt`, the current time and the environment overrides;
    /// older Release files are refused.
    pub fn new(cache: &'a Cache, fetcher: &'a Fetcher) -> RepoContext<'a> {
        RepoContext {
            cache,
            fetcher,
            apt_dir: PathBuf::from(hostsources::DEFAULT_APT_DIR),
            now: SystemTime::now(),
            check_valid_until: env_switch(ENV_CHECK_VALID_UNTIL),
            check_date: env_switch(ENV_CHECK_DATE),
            allow_older_release: false,
        }
    }
}

/// A repository with its location resolved.
#[derive(Debug, Clone)]
pub struct ResolvedRepo {
    /// The specification.
    pub spec: RepoSpec,
    /// The archive root URI (where `dists/` and `pool/` are, or the flat repository's directory),
    /// without trailing slash.
    pub base_uri: String,
    /// Keyring files to trust (empty: the host default).
    pub keyrings: Vec<PathBuf>,
    /// An inline key block from the host's sources.
    pub inline_key: Option<String>,
    /// Whether to check Valid-Until.
    pub check_valid_until: bool,
    /// Whether to check the clock against the Release (apt's `check-date`): a `Date` in the
    /// future is refused. Off also turns the Valid-Until check off, as in apt.
    pub check_date: bool,
    /// How far `Date` may lie ahead of the clock (the host source's `date-max-future`);
    /// `None`: [`DEFAULT_MAX_FUTURE`].
    pub date_max_future: Option<Duration>,
}

impl ResolvedRepo {
    /// Resolve `spec` (`apt-host:/` through the host's sources under `apt_dir`).
    pub fn resolve(spec: &RepoSpec, apt_dir: &Path) -> Result<ResolvedRepo, ReleaseError> {
        spec.check_supported()?;
        let mut keyrings = spec.signing_key_paths()?;
        let mut inline_key = None;
        let mut check = spec.check_valid_until;
        let mut check_date = None;
        let mut date_max_future = None;
        let base_uri = if let Some(path) = spec.source.strip_prefix(APT_HOST_SCHEME) {
            let dist = spec.distribution.clone().unwrap_or_default();
            let r = hostsources::resolve_from_host(path, &dist, apt_dir)?;
            if keyrings.is_empty() {
                match r.signed_by {
                    Some(SignedBy::Files(f)) => keyrings = f,
                    Some(SignedBy::Inline(k)) => inline_key = Some(k),
                    None => {}
                }
            }
            check = check.or(r.check_valid_until);
            check_date = r.check_date;
            date_max_future = r.date_max_future;
            r.uri
        } else {
            let base = spec.source.trim_end_matches('/').to_string();
            if keyrings.is_empty() {
                // Trust what the host's sources say for the same archive, as apt would.
                let host = hostsources::read_host_sources(apt_dir).unwrap_or_default();
                for h in host.iter().filter(|h| h.uri == base) {
                    if let Some(SignedBy::Files(f)) = &h.signed_by {
                        keyrings.extend(f.iter().cloned());
                    }
                    check = check.or(h.check_valid_until);
                    check_date = check_date.or(h.check_date);
                    date_max_future = date_max_future.or(h.date_max_future);
                }
                keyrings.sort();
                keyrings.dedup();
            }
            base
        };
        Ok(ResolvedRepo {
            spec: spec.clone(),
            base_uri,
            keyrings,
            inline_key,
            check_valid_until: check.unwrap_or(true),
            check_date: check_date.unwrap_or(true),
            date_max_future: date_max_future.map(Duration::from_secs),
        })
    }

    /// The directory URL holding (In)Release, with trailing slash.
    pub fn dist_url(&self) -> String {
        match &self.spec.distribution {
            Some(d) if !self.spec.is_flat() => format!("{}/dists/{}/", self.base_uri, d),
            _ => format!("{}/", self.base_uri),
        }
    }

    /// The keys trusted for this repository.
    pub fn keyring(&self, apt_dir: &Path) -> Result<Keyring, KeyringError> {
        let mut k = if self.keyrings.is_empty() && self.inline_key.is_none() {
            Keyring::host_default(apt_dir)?
        } else {
            Keyring::new()
        };
        for f in &self.keyrings {
            k.add_file(f)?;
        }
        if let Some(inline) = &self.inline_key {
            k.add_bytes(inline.as_bytes(), Path::new("inline Signed-By key"))?;
        }
        Ok(k)
    }

    /// This repository as a deb822 apt sources paragraph (for `imageinclude` repositories written
    /// into the image). `keyring_in_image` is the `Signed-By` path inside the image, if any.
    pub fn sources_entry(&self, keyring_in_image: Option<&str>) -> String {
        let mut out = String::from("Types: deb\n");
        out.push_str(&format!("URIs: {}\n", self.base_uri));
        if self.spec.is_flat() {
            out.push_str("Suites: ./\n");
        } else {
            let dist = self.spec.distribution.as_deref().unwrap_or_default();
            out.push_str(&format!("Suites: {dist}\n"));
            out.push_str(&format!("Components: {}\n", self.spec.components.join(" ")));
        }
        if !self.spec.architectures.is_empty() {
            out.push_str(&format!(
                "Architectures: {}\n",
                self.spec.architectures.join(" ")
            ));
        }
        if let Some(k) = keyring_in_image {
            out.push_str(&format!("Signed-By: {k}\n"));
        }
        if !self.spec.gpgcheck() {
            out.push_str("Trusted: yes\n");
        }
        if !self.check_valid_until {
            out.push_str("Check-Valid-Until: no\n");
        }
        out
    }

    /// URL of a file named by a Packages `Filename` field.
    pub fn file_url(&self, filename: &str) -> String {
        format!("{}/{}", self.base_uri, filename.trim_start_matches("./"))
    }
}

/// A verified, decompressed Packages index in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagesIndex {
    /// Component (`main`); empty for flat repositories.
    pub component: String,
    /// Architecture (`amd64`).
    pub architecture: String,
    /// The URL of the index as listed in Release (uncompressed name).
    pub url: String,
    /// The decompressed Packages file in the cache (absent when its packed form was found
    /// sound: then nothing reads it).
    pub path: PathBuf,
    /// The sha256 (and size, when known) of the decompressed Packages file: the key of its
    /// packed form ([`crate::apt::packed`]).
    pub expected: Expected,
}

impl PackagesIndex {
    /// The index text.
    pub fn read(&self) -> Result<Vec<u8>, CacheError> {
        std::fs::read(&self.path).map_err(|source| CacheError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// A repository whose metadata has been fetched and verified.
#[derive(Debug, Clone)]
pub struct RepoMetadata {
    /// Where the repository is.
    pub repo: ResolvedRepo,
    /// The URL the Release text came from.
    pub release_url: String,
    /// sha256 of the (In)Release file as fetched.
    pub release_digest: Sha256Digest,
    /// Whether a signature was checked (false only with `repository_gpgcheck=false`).
    pub verified: bool,
    /// The parsed Release.
    pub release: Release,
    /// The Packages indexes, one per component and architecture, in that order.
    pub packages: Vec<PackagesIndex>,
    /// Set when this Release is older than the newest seen and was accepted only because
    /// [`RepoContext::allow_older_release`] is on: the warning to show.
    pub older: Option<OlderRelease>,
}

/// A signed Release older than the newest seen for its repository, accepted because the build
/// allows it. Its `Display` is the warning to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{url}: using a Release file older than one seen before (Date {date}; the newest seen is {newest}), as {FLAG_ALLOW_OLDER_RELEASE} allows"
)]
pub struct OlderRelease {
    /// The Release URL.
    pub url: String,
    /// Its `Date` (`(missing)` when it has none that parses).
    pub date: String,
    /// The newest `Date` seen before.
    pub newest: String,
}

impl RepoMetadata {
    /// A download for a package file named by its Packages `Filename`, `SHA256` and `Size`.
    pub fn download(&self, filename: &str, sha256: Sha256Digest, size: u64) -> Download {
        Download {
            url: self.repo.file_url(filename),
            expected: Expected {
                sha256,
                size: Some(size),
            },
            credentials: self.repo.spec.credentials.clone(),
        }
    }
}

enum Compression {
    Xz,
    Gz,
    None,
}

/// A repository's Release text as fetched (or, offline, read from the cache) and verified.
#[derive(Debug, Clone)]
pub struct FetchedRelease {
    /// The URL the Release text came from (`InRelease`, or `Release` with `Release.gpg`).
    pub url: String,
    /// The file's bytes as fetched.
    pub raw: Vec<u8>,
    /// The detached signature (`Release.gpg`), if one was used.
    pub detached: Option<Vec<u8>>,
    /// The Release text (the signed part of an `InRelease`).
    pub text: String,
    /// The parsed Release.
    pub release: Release,
    /// Set when the Release is older than the newest seen and the context allows that.
    pub older: Option<OlderRelease>,
}

/// Fetch (or, offline, read from the cache) a repository's `InRelease`, else Release and
/// Release.gpg, check the signature unless the repository is explicitly trusted, and parse it.
/// Online, its `Date` is checked as apt does: not ahead of the clock (see [`check_freshness`]),
/// and, when signed, not older than the newest seen for the repository. No index is fetched.
pub fn fetch_release(
    repo: &ResolvedRepo,
    ctx: &RepoContext<'_>,
) -> Result<FetchedRelease, ReleaseError> {
    let spec = &repo.spec;
    let creds = spec.credentials.as_ref();
    let dist_url = repo.dist_url();
    let inrelease_url = format!("{dist_url}InRelease");
    let release_url = format!("{dist_url}Release");
    let gpg_url = format!("{dist_url}Release.gpg");
    // (url of the Release text, raw bytes, detached signature)
    let (text_url, raw, detached) = match ctx.cache.mode() {
        CacheMode::Online => match ctx.fetcher.get_bytes(&inrelease_url, creds, METADATA_LIMIT) {
            Ok(b) => (inrelease_url.clone(), b, None),
            Err(e) if e.is_not_found() => {
                let rel = match ctx.fetcher.get_bytes(&release_url, creds, METADATA_LIMIT) {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => {
                        return Err(ReleaseError::NoRelease { url: inrelease_url });
                    }
                    Err(e) => return Err(e.into()),
                };
                let sig = match ctx.fetcher.get_bytes(&gpg_url, creds, METADATA_LIMIT) {
                    Ok(b) => Some(b),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e.into()),
                };
                (release_url.clone(), rel, sig)
            }
            Err(e) => return Err(e.into()),
        },
        CacheMode::Offline => {
            if let Some(b) = ctx.cache.read_ref(&inrelease_url)? {
                (inrelease_url.clone(), b, None)
            } else if let Some(b) = ctx.cache.read_ref(&release_url)? {
                let sig = ctx.cache.read_ref(&gpg_url)?;
                (release_url.clone(), b, sig)
            } else {
                return Err(CacheError::Missing {
                    name: inrelease_url.clone(),
                    path: ctx.cache.ref_location(&inrelease_url),
                }
                .into());
            }
        }
    };
    let gpgcheck = spec.gpgcheck();
    let text = if text_url == inrelease_url {
        if gpgcheck {
            let keyring = repo.keyring(&ctx.apt_dir)?;
            keyring.verify_cleartext(&text_url, &raw)?
        } else {
            unverified_cleartext(&text_url, &raw)?
        }
    } else {
        if gpgcheck {
            let Some(sig) = &detached else {
                return Err(ReleaseError::Unsigned { url: release_url });
            };
            let keyring = repo.keyring(&ctx.apt_dir)?;
            keyring.verify_detached(&text_url, &raw, sig)?;
        }
        String::from_utf8(raw.clone()).map_err(|e| ReleaseError::Parse {
            url: text_url.clone(),
            message: e.to_string(),
        })?
    };
    let release = Release::parse(&text, &text_url)?;
    // Offline builds reuse metadata that was checked when it was fetched.
    let older = match ctx.cache.mode() {
        CacheMode::Online => check_freshness(repo, ctx, &text_url, &release, gpgcheck)?,
        CacheMode::Offline => None,
    };
    Ok(FetchedRelease {
        url: text_url,
        raw,
        detached,
        text,
        release,
        older,
    })
}

/// apt's date checks on a freshly fetched Release:
/// - with the clock check on (apt's `Check-Date`), `Date` may lie at most the allowance ahead of
///   the clock ([`DEFAULT_MAX_FUTURE`], or the host source's `date-max-future`);
/// - when the signature was checked, `Date` must not be older than the newest this cache has
///   seen for the repository, which it then remembers. A Release without a `Date` that parses
///   counts as older than any (apt reads it as the epoch). Unsigned metadata proves nothing
///   and is neither compared nor remembered.
///
/// An older Release is refused, or, with [`RepoContext::allow_older_release`], returned for a
/// warning; the remembered date never moves back.
pub fn check_freshness(
    repo: &ResolvedRepo,
    ctx: &RepoContext<'_>,
    url: &str,
    release: &Release,
    verified: bool,
) -> Result<Option<OlderRelease>, ReleaseError> {
    if ctx.check_date.unwrap_or(repo.check_date) {
        let allowed = repo.date_max_future.unwrap_or(DEFAULT_MAX_FUTURE);
        release.check_date(ctx.now, allowed, url)?;
    }
    if !verified {
        return Ok(None);
    }
    let dist_url = repo.dist_url();
    let newest = match (&release.date, release.date_epoch()) {
        (Some(text), Some(epoch)) => ctx.cache.remember_release_date(
            &dist_url,
            &ReleaseDate {
                epoch,
                text: text.clone(),
            },
        )?,
        _ => ctx.cache.release_date(&dist_url)?,
    };
    let Some(newest) = newest else {
        return Ok(None);
    };
    let date = match &release.date {
        Some(d) if release.date_epoch().is_some() => d.clone(),
        _ => "(missing)".to_string(),
    };
    if ctx.allow_older_release {
        return Ok(Some(OlderRelease {
            url: url.to_string(),
            date,
            newest: newest.text,
        }));
    }
    Err(ReleaseError::Rewound {
        url: url.to_string(),
        date,
        newest: newest.text,
        flag: FLAG_ALLOW_OLDER_RELEASE,
        env: ENV_ALLOW_OLDER_RELEASE,
    })
}

/// Fetch (or, offline, read from the cache) and verify a repository's Release and its Packages
/// indexes for `architectures` (the spec's own list wins when it has one).
pub fn fetch_metadata(
    spec: &RepoSpec,
    architectures: &[String],
    ctx: &RepoContext<'_>,
) -> Result<RepoMetadata, ReleaseError> {
    let repo = ResolvedRepo::resolve(spec, &ctx.apt_dir)?;
    let dist_url = repo.dist_url();
    let gpg_url = format!("{dist_url}Release.gpg");
    let FetchedRelease {
        url: text_url,
        raw,
        detached,
        text: _,
        release,
        older,
    } = fetch_release(&repo, ctx)?;
    let release_digest = Sha256Digest::of(&raw);
    let gpgcheck = spec.gpgcheck();
    // Offline builds reuse metadata that was checked when it was fetched; an expiry date that has
    // passed since must not break a hermetic rebuild. Without the clock check (apt's
    // `check-date=no`), Valid-Until is not checked either, as in apt.
    let check_expiry = ctx.check_valid_until.unwrap_or(repo.check_valid_until)
        && ctx.check_date.unwrap_or(repo.check_date)
        && ctx.cache.mode() == CacheMode::Online;
    if check_expiry {
        release.check_valid_until(ctx.now, &text_url)?;
    }

    // Only metadata that passed the signature check (or was explicitly trusted) enters the cache,
    // where offline builds find it again.
    if ctx.cache.mode() == CacheMode::Online {
        remember(ctx.cache, &text_url, &raw)?;
        if let Some(sig) = &detached {
            remember(ctx.cache, &gpg_url, sig)?;
        }
    }

    let archs: Vec<String> = if spec.architectures.is_empty() {
        architectures.to_vec()
    } else {
        spec.architectures.clone()
    };
    let flat = spec.is_flat();
    let components: Vec<String> = if flat {
        vec![String::new()]
    } else {
        spec.components.clone()
    };
    if !flat {
        for c in &components {
            // Debian's security archive lists `updates/main` and serves `main/`: apt accepts
            // the last path element of a listed component, and so do we.
            let listed = |rc: &String| rc == c || rc.rsplit('/').next() == Some(c.as_str());
            if !release.components.is_empty() && !release.components.iter().any(listed) {
                return Err(ReleaseError::MissingComponent {
                    url: text_url.clone(),
                    component: c.clone(),
                    available: release.components.join(" "),
                });
            }
        }
        for a in &archs {
            if !release.architectures.is_empty()
                && a != "all"
                && !release.architectures.iter().any(|ra| ra == a)
            {
                return Err(ReleaseError::MissingArchitecture {
                    url: text_url.clone(),
                    arch: a.clone(),
                    available: release.architectures.join(" "),
                });
            }
        }
    }

    let mut packages = Vec::new();
    for comp in &components {
        for arch in &archs {
            let dir = if flat {
                String::new()
            } else {
                format!("{comp}/binary-{arch}/")
            };
            let idx = fetch_packages(ctx, &repo, &release, &text_url, &dist_url, &dir)?;
            packages.push(PackagesIndex {
                component: comp.clone(),
                architecture: arch.clone(),
                ..idx
            });
        }
    }
    Ok(RepoMetadata {
        repo,
        release_url: text_url,
        release_digest,
        verified: gpgcheck,
        release,
        packages,
        older,
    })
}

/// [`fetch_metadata`] for several repositories at once (their `InRelease` round trips overlap).
/// Results are in the order of `specs`; the first failure in that order is returned.
pub fn fetch_all_metadata(
    specs: &[RepoSpec],
    architectures: &[String],
    ctx: &RepoContext<'_>,
) -> Result<Vec<RepoMetadata>, ReleaseError> {
    let results: Vec<Result<RepoMetadata, ReleaseError>> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| s.spawn(move || fetch_metadata(spec, architectures, ctx)))
            .collect();
        handles
            .into_iter()
            .zip(specs)
            .map(|(h, spec)| {
                h.join().unwrap_or_else(|_| {
                    Err(ReleaseError::Parse {
                        url: spec.source.clone(),
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

/// The Release text inside an `InRelease` file without checking the signature
/// (`repository_gpgcheck=false`).
fn unverified_cleartext(url: &str, raw: &[u8]) -> Result<String, ReleaseError> {
    let text = std::str::from_utf8(raw).map_err(|e| ReleaseError::Parse {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    match pgp::composed::CleartextSignedMessage::from_string(text) {
        Ok((msg, _)) => Ok(msg.signed_text().replace("\r\n", "\n")),
        // Some unsigned repositories publish plain Release text as InRelease.
        Err(_) if !text.contains("-----BEGIN PGP") => Ok(text.to_string()),
        Err(e) => Err(ReleaseError::Parse {
            url: url.to_string(),
            message: e.to_string(),
        }),
    }
}

/// Fetch one Packages index under `dir` (`main/binary-amd64/` or empty for flat repositories).
fn fetch_packages(
    ctx: &RepoContext<'_>,
    repo: &ResolvedRepo,
    release: &Release,
    release_url: &str,
    dist_url: &str,
    dir: &str,
) -> Result<PackagesIndex, ReleaseError> {
    let plain_rel = format!("{dir}Packages");
    let url = format!("{dist_url}{plain_rel}");
    let plain = release.sha256.get(&plain_rel).copied();
    // Warmest path: the index pinned by Release is already packed; the Packages file itself is
    // not read (hashing it alone takes longer than using the packed form).
    if let Some(p) = plain
        && super::packed::is_packed(ctx.cache, &p.sha256)
    {
        return Ok(PackagesIndex {
            component: String::new(),
            architecture: String::new(),
            url,
            path: ctx.cache.blob_path(&p.sha256),
            expected: p.expected(),
        });
    }
    // Warm path: the decompressed index is pinned by Release and already cached.
    if let Some(p) = plain
        && let Some(path) = ctx.cache.get(&p.expected())?
    {
        return Ok(PackagesIndex {
            component: String::new(),
            architecture: String::new(),
            url,
            path,
            expected: p.expected(),
        });
    }
    let choice = [
        (".xz", Compression::Xz),
        (".gz", Compression::Gz),
        ("", Compression::None),
    ]
    .into_iter()
    .find_map(|(ext, c)| {
        let rel = format!("{plain_rel}{ext}");
        release.sha256.get(&rel).map(|e| (rel, *e, c))
    });
    let Some((rel, entry, compression)) = choice else {
        return Err(ReleaseError::MissingIndex {
            url: release_url.to_string(),
            path: plain_rel,
        });
    };
    let creds = repo.spec.credentials.as_ref();
    let file_url = format!("{dist_url}{rel}");
    let compressed = fetch_index_file(ctx, release, dist_url, dir, &file_url, creds, &entry)?;
    let (path, expected) = match compression {
        Compression::None => (compressed, entry.expected()),
        Compression::Xz | Compression::Gz => {
            let file = File::open(&compressed).map_err(|source| CacheError::Io {
                path: compressed.clone(),
                source,
            })?;
            let mut reader: Box<dyn Read> = match compression {
                Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(
                    io::BufReader::new(file),
                )),
                _ => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))),
            };
            let derr = |source| ReleaseError::Decompress {
                url: file_url.clone(),
                path: compressed.clone(),
                source,
            };
            // Release pins the decompressed form too: verify it on the way into the cache.
            if let Some(p) = plain {
                let mut w = ctx.cache.writer(&url, p.expected())?;
                copy_decoded(&mut reader, &mut w).map_err(derr)?;
                (w.commit()?, p.expected())
            } else {
                let mut data = Vec::new();
                reader.read_to_end(&mut data).map_err(derr)?;
                let (sha256, path) = ctx.cache.insert_bytes(&url, &data)?;
                let size = Some(data.len() as u64);
                (path, Expected { sha256, size })
            }
        }
    };
    Ok(PackagesIndex {
        component: String::new(),
        architecture: String::new(),
        url,
        path,
        expected,
    })
}

fn copy_decoded(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<()> {
    io::copy(r, w).map(|_| ())
}

/// Fetch an index file pinned by Release, through `by-hash/` when the repository offers it.
fn fetch_index_file(
    ctx: &RepoContext<'_>,
    release: &Release,
    dist_url: &str,
    dir: &str,
    file_url: &str,
    creds: Option<&Credentials>,
    entry: &IndexEntry,
) -> Result<PathBuf, ReleaseError> {
    let expected = entry.expected();
    if release.acquire_by_hash && ctx.cache.mode() == CacheMode::Online {
        let by_hash = format!("{dist_url}{dir}by-hash/SHA256/{}", entry.sha256.to_hex());
        match ctx
            .fetcher
            .fetch_to_cache(ctx.cache, &by_hash, creds, &expected)
        {
            Ok(p) => return Ok(p),
            // Mirrors may lag on by-hash; the plain name is checked against the same digest.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ctx
        .fetcher
        .fetch_to_cache(ctx.cache, file_url, creds, &expected)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_rfc2822("Sat, 10 Jun 2023 08:54:02 UTC"),
            Some(1_686_387_242)
        );
        assert_eq!(
            parse_rfc2822("Sat, 10 Jun 2023 10:54:02 +0200"),
            Some(1_686_387_242)
        );
        assert_eq!(parse_rfc2822("yesterday"), None);
        assert_eq!(
            parse_rfc2822("Sat, 10 Jun 99999999999999 08:54:02 UTC"),
            None
        );
        assert_eq!(parse_rfc2822("Sat, 10 Jun 2023 08:54:02 +0é0"), None);
    }

    #[test]
    fn future_dates_within_the_allowance_pass() {
        let r = Release {
            date: Some("Sat, 10 Jun 2023 08:54:12 UTC".into()),
            ..Release::default()
        };
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        // Ten seconds ahead is apt's default allowance; eleven is too many.
        r.check_date(at(1_686_387_242), DEFAULT_MAX_FUTURE, "u")
            .unwrap();
        let e = r
            .check_date(at(1_686_387_241), DEFAULT_MAX_FUTURE, "u")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("not valid yet (invalid for another 11s)"),
            "{e}"
        );
        r.check_date(at(1_686_387_241), Duration::from_secs(11), "u")
            .unwrap();
        // Without a Date that parses there is nothing to compare with the clock.
        for date in [None, Some("someday".to_string())] {
            let r = Release {
                date,
                ..Release::default()
            };
            assert_eq!(r.date_epoch(), None);
            r.check_date(UNIX_EPOCH, Duration::ZERO, "u").unwrap();
        }
    }

    #[test]
    fn durations_read_as_apt_prints_them() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(61), "1min 1s");
        assert_eq!(duration_text(3600), "1h 0min 0s");
        assert_eq!(duration_text(30 * 86_400 + 5), "30d 0h 0min 5s");
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator over the characters these formats care about.
        let alphabet: Vec<char> = "ab0123456789 :,+-\n\t.é{}/SHA256".chars().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let len = usize::try_from(x % 60).unwrap();
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[usize::try_from(x % alphabet.len() as u64).unwrap()]
                })
                .collect();
            let _ = parse_rfc2822(&s);
            let _ = Release::parse(&s, "u");
            let _ = Release::parse(&format!("SHA256:\n {s}\n"), "u");
            let _ = RepoSpec::parse_tuple(&s);
            let _ = hostsources::parse_one_line(&s, Path::new("x"));
            let _ = hostsources::parse_deb822(&s, Path::new("x"));
        }
    }

    #[test]
    fn parses_release() {
        let text = "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 Jun 2023 08:54:02 UTC\nValid-Until: Sat, 17 Jun 2023 08:54:02 UTC\nAcquire-By-Hash: yes\nArchitectures: all amd64 arm64\nComponents: main contrib\nMD5Sum:\n 0123 10 main/binary-amd64/Packages\nSHA256:\n ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad 3 main/binary-amd64/Packages\n ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad     3 main/binary-amd64/Packages.xz\n";
        let r = Release::parse(text, "u").unwrap();
        assert_eq!(r.codename.as_deref(), Some("bookworm"));
        assert!(r.acquire_by_hash);
        assert_eq!(r.architectures, vec!["all", "amd64", "arm64"]);
        assert_eq!(r.sha256.len(), 2);
        assert_eq!(r.sha256["main/binary-amd64/Packages.xz"].size, 3);
        let before = UNIX_EPOCH + std::time::Duration::from_secs(1_686_387_242);
        r.check_valid_until(before, "u").unwrap();
        let after = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let e = r.check_valid_until(after, "u").unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        assert!(Release::parse("Origin: x\n", "u").is_err());
        let e = Release::parse("SHA256:\n zz 1 a\n", "http://r/Release").unwrap_err();
        assert!(e.to_string().starts_with("http://r/Release"), "{e}");
    }
}
