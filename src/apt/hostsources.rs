//! The host's apt sources (`sources.list` one-line entries and `*.sources` deb822 files), read to
//! resolve `apt-host:/` repository paths to the archive this host already uses, so descriptions never
//! name a mirror host.
//!
//! Resolution: a `*-security` suite maps to the host's security archive entry; every other suite
//! (`trixie`, `bookworm-updates`, `sid`) maps to the host's main archive entry, even when the host
//! lists a different release there. The environment variables [`ENV_MIRROR`] and
//! [`ENV_SECURITY_MIRROR`] override the host's entries.

use crate::apt::control;
use std::io;
use std::path::{Path, PathBuf};

/// Environment variable overriding the main archive `apt-host:/` resolves to.
pub const ENV_MIRROR: &str = "IMGBUILD_APT_HOST_MIRROR";
/// Environment variable overriding the security archive `apt-host:/` resolves to for `*-security`.
pub const ENV_SECURITY_MIRROR: &str = "IMGBUILD_APT_HOST_SECURITY_MIRROR";
/// Where apt's configuration lives on the host.
pub const DEFAULT_APT_DIR: &str = "/etc/apt";

/// Errors reading the host's sources or resolving `apt-host:/`.
#[derive(Debug, thiserror::Error)]
pub enum HostSourcesError {
    /// A sources file or directory could not be read (an `fs_err` error: its message names
    /// the path).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A sources file is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No host entry fits the requested distribution.
    #[error(
        "apt-host:/ for {distribution:?}: no {kind} archive entry in the host's apt sources under {dir} (set {env} to choose one)"
    )]
    NoMatch {
        /// The distribution asked for.
        distribution: String,
        /// "main" or "security".
        kind: &'static str,
        /// The apt directory searched.
        dir: PathBuf,
        /// The environment variable that overrides it.
        env: &'static str,
    },
    /// `apt-host:/` needs a distribution to choose an archive.
    #[error("apt-host:/ needs a distribution to choose between the host's archives")]
    NoDistribution,
}

/// Where a host entry's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedBy {
    /// Keyring files.
    Files(Vec<PathBuf>),
    /// An armored key block written inline in a deb822 file.
    Inline(String),
}

/// One `deb` entry of the host's sources (deb-src entries are dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSource {
    /// Archive URI (without trailing slash).
    pub uri: String,
    /// Suites listed.
    pub suites: Vec<String>,
    /// Components listed.
    pub components: Vec<String>,
    /// `Signed-By`, when given.
    pub signed_by: Option<SignedBy>,
    /// `check-valid-until`, when given.
    pub check_valid_until: Option<bool>,
    /// `check-date`, when given (`no` trusts no clock check: neither a future `Date` nor
    /// `Valid-Until` is checked).
    pub check_date: Option<bool>,
    /// `date-max-future` in seconds, when given.
    pub date_max_future: Option<u64>,
    /// `trusted`, when given.
    pub trusted: Option<bool>,
    /// The file the entry came from.
    pub file: PathBuf,
}

/// What `apt-host:/…` resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The repository URI (host archive + the path after `apt-host:/`).
    pub uri: String,
    /// The host entry's `Signed-By`.
    pub signed_by: Option<SignedBy>,
    /// The host entry's `check-valid-until` (apt's snapshot mirrors turn it off).
    pub check_valid_until: Option<bool>,
    /// The host entry's `check-date`.
    pub check_date: Option<bool>,
    /// The host entry's `date-max-future`, in seconds.
    pub date_max_future: Option<u64>,
    /// The host entry's `trusted`.
    pub trusted: Option<bool>,
}

fn yes_no(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Read `<apt_dir>/sources.list` and `<apt_dir>/sources.list.d/*.list|*.sources` (files in name
/// order; missing files are fine; entries with `Enabled: no` are skipped).
pub fn read_host_sources(apt_dir: &Path) -> Result<Vec<HostSource>, HostSourcesError> {
    let mut out = Vec::new();
    let main = apt_dir.join("sources.list");
    match fs_err::read_to_string(&main) {
        Ok(text) => out.extend(parse_one_line(&text, &main)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let dir = apt_dir.join("sources.list.d");
    let mut files: Vec<PathBuf> = match fs_err::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("list" | "sources")
                )
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    files.sort();
    for f in files {
        let text = fs_err::read_to_string(&f)?;
        if f.extension().and_then(|e| e.to_str()) == Some("sources") {
            out.extend(parse_deb822(&text, &f)?);
        } else {
            out.extend(parse_one_line(&text, &f)?);
        }
    }
    Ok(out)
}

/// Parse one-line-style entries: `deb [opt=v …] URI SUITE [COMPONENT…]`.
pub fn parse_one_line(text: &str, file: &Path) -> Result<Vec<HostSource>, HostSourcesError> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |message: String| HostSourcesError::Parse {
            path: file.to_path_buf(),
            line: idx + 1,
            message,
        };
        let (kind, rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(format!("expected 'deb URI SUITE …', found {line:?}")))?;
        let mut rest = rest.trim_start();
        let mut options = Vec::new();
        if let Some(after) = rest.strip_prefix('[') {
            let (opts, tail) = after
                .split_once(']')
                .ok_or_else(|| bad("unterminated [ options ]".into()))?;
            options = opts.split_whitespace().map(str::to_string).collect();
            rest = tail.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            return Err(bad(format!("expected 'deb URI SUITE …', found {line:?}")));
        };
        if kind != "deb" {
            continue;
        }
        let mut entry = HostSource {
            uri: uri.trim_end_matches('/').to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
            signed_by: None,
            check_valid_until: None,
            check_date: None,
            date_max_future: None,
            trusted: None,
            file: file.to_path_buf(),
        };
        for opt in options {
            let Some((k, v)) = opt.split_once('=') else {
                continue;
            };
            match k.to_ascii_lowercase().as_str() {
                "signed-by" => {
                    entry.signed_by =
                        Some(SignedBy::Files(v.split(',').map(PathBuf::from).collect()));
                }
                "check-valid-until" => entry.check_valid_until = yes_no(v),
                "check-date" => entry.check_date = yes_no(v),
                "date-max-future" => entry.date_max_future = v.parse().ok(),
                "trusted" => entry.trusted = yes_no(v),
                _ => {}
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// Parse a deb822 `.sources` file.
pub fn parse_deb822(text: &str, file: &Path) -> Result<Vec<HostSource>, HostSourcesError> {
    let paragraphs = control::parse(text).map_err(|e| HostSourcesError::Parse {
        path: file.to_path_buf(),
        line: e.line,
        message: e.message,
    })?;
    let mut out = Vec::new();
    for p in paragraphs {
        if p.get("Enabled").and_then(yes_no) == Some(false) {
            continue;
        }
        let types: Vec<&str> = p.get("Types").unwrap_or("").split_whitespace().collect();
        if !types.contains(&"deb") {
            continue;
        }
        let Some(uris) = p.get("URIs") else {
            return Err(HostSourcesError::Parse {
                path: file.to_path_buf(),
                line: p.line,
                message: "entry without URIs".into(),
            });
        };
        let suites: Vec<String> = p
            .get("Suites")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let components: Vec<String> = p
            .get("Components")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let signed_by = p.get("Signed-By").map(|v| {
            if v.contains("BEGIN PGP PUBLIC KEY BLOCK") {
                SignedBy::Inline(v.trim().to_string())
            } else {
                SignedBy::Files(v.split_whitespace().map(PathBuf::from).collect())
            }
        });
        for uri in uris.split_whitespace() {
            out.push(HostSource {
                uri: uri.trim_end_matches('/').to_string(),
                suites: suites.clone(),
                components: components.clone(),
                signed_by: signed_by.clone(),
                check_valid_until: p.get("Check-Valid-Until").and_then(yes_no),
                check_date: p.get("Check-Date").and_then(yes_no),
                date_max_future: p.get("Date-Max-Future").and_then(|v| v.trim().parse().ok()),
                trusted: p.get("Trusted").and_then(yes_no),
                file: file.to_path_buf(),
            });
        }
    }
    Ok(out)
}

// Release code names of Debian and Ubuntu, to tell a distribution's own archive entries from
// third-party repositories in the host's sources.
const DEBIAN_SUITES: &[&str] = &[
    "buzz",
    "rex",
    "bo",
    "hamm",
    "slink",
    "potato",
    "woody",
    "sarge",
    "etch",
    "lenny",
    "squeeze",
    "wheezy",
    "jessie",
    "stretch",
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "stable",
    "oldstable",
    "oldoldstable",
    "testing",
    "unstable",
    "experimental",
];
const UBUNTU_SUITES: &[&str] = &[
    "trusty", "xenial", "bionic", "focal", "jammy", "kinetic", "lunar", "mantic", "noble",
    "oracular", "plucky", "questing", "resolute",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Debian,
    Ubuntu,
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Main,
    Security,
}

fn split_suite(suite: &str) -> (&str, Kind) {
    let base = suite.split(['-', '/']).next().unwrap_or(suite);
    let security = suite.ends_with("-security") || suite.ends_with("/updates");
    (base, if security { Kind::Security } else { Kind::Main })
}

fn family(base: &str) -> Family {
    if DEBIAN_SUITES.contains(&base) {
        Family::Debian
    } else if UBUNTU_SUITES.contains(&base) {
        Family::Ubuntu
    } else {
        Family::Other
    }
}

/// Pick the host archive for `distribution` among `sources` and append `path` (the part after
/// `apt-host:/`). `env` looks up environment overrides (pass `|k| std::env::var(k).ok()`).
pub fn resolve(
    path: &str,
    distribution: &str,
    sources: &[HostSource],
    apt_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, HostSourcesError> {
    if distribution.is_empty() {
        return Err(HostSourcesError::NoDistribution);
    }
    let (base, kind) = split_suite(distribution);
    let want_family = family(base);
    let env_name = match kind {
        Kind::Main => ENV_MIRROR,
        Kind::Security => ENV_SECURITY_MIRROR,
    };
    let tail = path.trim_start_matches('/');
    let join = |uri: &str| {
        let uri = uri.trim_end_matches('/');
        if tail.is_empty() {
            uri.to_string()
        } else {
            format!("{uri}/{tail}")
        }
    };
    if let Some(m) = env(env_name).filter(|m| !m.trim().is_empty()) {
        return Ok(Resolved {
            uri: join(m.trim()),
            signed_by: None,
            check_valid_until: None,
            check_date: None,
            date_max_future: None,
            trusted: None,
        });
    }
    // Score each entry: an exact suite match beats a same-family archive of the right kind.
    let mut best: Option<(u8, &HostSource)> = None;
    for s in sources {
        for suite in &s.suites {
            let (sbase, skind) = split_suite(suite);
            if skind != kind {
                continue;
            }
            let score = if suite == distribution {
                3
            } else if want_family != Family::Other && family(sbase) == want_family {
                2
            } else if want_family == Family::Other && family(sbase) != Family::Other {
                1
            } else {
                continue;
            };
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, s));
            }
        }
    }
    match best {
        Some((_, s)) => Ok(Resolved {
            uri: join(&expand_mirror_list(&s.uri, &s.file)?),
            signed_by: s.signed_by.clone(),
            check_valid_until: s.check_valid_until,
            check_date: s.check_date,
            date_max_future: s.date_max_future,
            trusted: s.trusted,
        }),
        None => Err(HostSourcesError::NoMatch {
            distribution: distribution.to_string(),
            kind: match kind {
                Kind::Main => "main",
                Kind::Security => "security",
            },
            dir: apt_dir.to_path_buf(),
            env: env_name,
        }),
    }
}

/// apt's `mirror+file:/path` method names a file listing mirrors (Debian's cloud images use it):
/// take its first mirror. Other URIs are returned unchanged.
fn expand_mirror_list(uri: &str, source_file: &Path) -> Result<String, HostSourcesError> {
    let Some(rest) = uri.strip_prefix("mirror+file:") else {
        return Ok(uri.to_string());
    };
    let path = PathBuf::from(rest.strip_prefix("//").unwrap_or(rest));
    let text = fs_err::read_to_string(&path)?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| !l.is_empty())
        .and_then(|l| l.split_whitespace().next())
        .map(|u| u.trim_end_matches('/').to_string())
        .ok_or_else(|| HostSourcesError::Parse {
            path: source_file.to_path_buf(),
            line: 0,
            message: format!("{uri}: the mirror list {} is empty", path.display()),
        })
}

/// Read the host's sources under `apt_dir` and resolve `apt-host:/<path>` for `distribution`, with
/// overrides from the process environment.
pub fn resolve_from_host(
    path: &str,
    distribution: &str,
    apt_dir: &Path,
) -> Result<Resolved, HostSourcesError> {
    let sources = read_host_sources(apt_dir)?;
    resolve(path, distribution, &sources, apt_dir, |k| {
        std::env::var(k).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_options_and_comments() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k/a.gpg check-valid-until=no] http://m.example/debian bookworm main contrib # tail\ndeb-src http://m.example/debian bookworm main\n\n";
        let v = parse_one_line(text, Path::new("x.list")).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].uri, "http://m.example/debian");
        assert_eq!(v[0].components, vec!["main", "contrib"]);
        assert_eq!(
            v[0].signed_by,
            Some(SignedBy::Files(vec![PathBuf::from("/k/a.gpg")]))
        );
        assert_eq!(v[0].check_valid_until, Some(false));
        assert_eq!((v[0].check_date, v[0].date_max_future), (None, None));
        let v = parse_one_line(
            "deb [check-date=no date-max-future=86400] http://m.example/debian bookworm main\n",
            Path::new("x.list"),
        )
        .unwrap();
        assert_eq!(
            (v[0].check_date, v[0].date_max_future),
            (Some(false), Some(86400))
        );
        let v = parse_deb822(
            "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\nCheck-Date: no\nDate-Max-Future: 60\n",
            Path::new("x.sources"),
        )
        .unwrap();
        assert_eq!(
            (v[0].check_date, v[0].date_max_future),
            (Some(false), Some(60))
        );
        let e = parse_one_line("deb http://only-uri\n", Path::new("y.list")).unwrap_err();
        assert!(e.to_string().starts_with("y.list:1:"), "{e}");
    }

    #[test]
    fn mirror_list_files() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("debian.list");
        std::fs::write(
            &list,
            "# mirrors\nhttp://m1.test/debian/ priority:1\nhttp://m2.test/debian\n",
        )
        .unwrap();
        let text = format!(
            "Types: deb\nURIs: mirror+file://{}\nSuites: bookworm\nComponents: main\n",
            list.display()
        );
        let src = parse_deb822(&text, Path::new("d.sources")).unwrap();
        let r = resolve("/", "trixie", &src, dir.path(), |_| None).unwrap();
        assert_eq!(r.uri, "http://m1.test/debian");
    }

    #[test]
    fn suite_classes() {
        assert_eq!(split_suite("trixie-security"), ("trixie", Kind::Security));
        assert_eq!(split_suite("bookworm-updates"), ("bookworm", Kind::Main));
        assert_eq!(split_suite("buster/updates"), ("buster", Kind::Security));
    }
}
