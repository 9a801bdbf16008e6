//! Repository specifications: what a `<repository>` element or a KIWI `--set-repo`/`--add-repo`
//! tuple says about one package source.

use crate::apt::fetch::Credentials;
use std::fmt;
use std::path::{Path, PathBuf};

/// Errors in a repository specification or a repository tuple.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RepoError {
    /// A tuple field has a bad value.
    #[error("repository tuple {tuple:?}: field {index} ({field}): {message}")]
    TupleField {
        /// The whole tuple as given.
        tuple: String,
        /// 1-based field number.
        index: usize,
        /// The field's name in KIWI's documentation.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A tuple has the wrong shape.
    #[error("repository tuple {tuple:?}: {message}")]
    Tuple {
        /// The whole tuple as given.
        tuple: String,
        /// What is wrong.
        message: String,
    },
    /// A credentials argument is malformed or its password file unreadable.
    #[error("repository credentials: {message}")]
    Credentials {
        /// What is wrong (never contains the password).
        message: String,
    },
    /// The repository type is not one imgbuild can use.
    #[error("repository {alias}: type {repo_type:?} is not supported yet (only apt-deb)")]
    UnsupportedType {
        /// The repository's alias.
        alias: String,
        /// The type given.
        repo_type: String,
    },
    /// The source path cannot be used.
    #[error("repository {alias}: source {source_path:?}: {message}")]
    Source {
        /// The repository's alias.
        alias: String,
        /// The source path.
        source_path: String,
        /// What is wrong.
        message: String,
    },
}

/// One package repository, as a description or the command line specifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// Name used in messages, lock files and written sources (`alias=`).
    pub alias: Option<String>,
    /// The source path as given: `http(s)://`, `file:/`, `dir:/`, or `apt-host:/…`.
    pub source: String,
    /// KIWI repository type (`apt-deb`; `deb-dir` is accepted as a flat apt repository).
    pub repo_type: String,
    /// Suite (`bookworm`, `trixie-security`); `None` means a flat repository (`Suites: ./`).
    pub distribution: Option<String>,
    /// Components (default `main`); ignored for flat repositories.
    pub components: Vec<String>,
    /// Architectures to read (empty: the build architecture).
    pub architectures: Vec<String>,
    /// Candidate preference (higher wins, as apt pins); `None` is apt's default 500.
    pub priority: Option<i32>,
    /// Check the Release signature (default true); false corresponds to apt's `trusted: yes`.
    pub repository_gpgcheck: Option<bool>,
    /// Check package signatures. apt verifies packages through the signed Release checksums, so
    /// this is recorded for the image's sources only.
    pub package_gpgcheck: Option<bool>,
    /// Signing key files (`file:/…` or paths) trusted for this repository; empty: the host's keys.
    pub signing_keys: Vec<String>,
    /// Also written into the image's apt sources.
    pub imageinclude: bool,
    /// Only written into the image, not used for the build.
    pub imageonly: bool,
    /// HTTP basic-auth credentials.
    pub credentials: Option<Credentials>,
    /// KIWI `sourcetype` (`baseurl`; `metalink`/`mirrorlist` are not meaningful for apt).
    pub sourcetype: Option<String>,
    /// Check the Release `Valid-Until` date; `None`: the default (check, unless the host's apt
    /// sources turn it off for the mirror `apt-host:/` resolves to).
    pub check_valid_until: Option<bool>,
}

impl Default for RepoSpec {
    fn default() -> Self {
        RepoSpec {
            alias: None,
            source: String::new(),
            repo_type: "apt-deb".into(),
            distribution: None,
            components: vec!["main".into()],
            architectures: Vec::new(),
            priority: None,
            repository_gpgcheck: None,
            package_gpgcheck: None,
            signing_keys: Vec::new(),
            imageinclude: false,
            imageonly: false,
            credentials: None,
            sourcetype: None,
            check_valid_until: None,
        }
    }
}

/// The scheme prefix of host-mirror sources.
pub const APT_HOST_SCHEME: &str = "apt-host:";

const FIELD_NAMES: [&str; 11] = [
    "source",
    "type",
    "alias",
    "priority",
    "imageinclude",
    "package_gpgcheck",
    "signing_keys",
    "components",
    "distribution",
    "repo_gpgcheck",
    "repo_sourcetype",
];

impl RepoSpec {
    /// A repository at `source` with default attributes.
    pub fn new(source: impl Into<String>) -> RepoSpec {
        RepoSpec {
            source: source.into(),
            ..RepoSpec::default()
        }
    }

    /// The alias, or one derived from the source when none was given.
    pub fn name(&self) -> String {
        if let Some(a) = &self.alias
            && !a.is_empty()
        {
            return a.clone();
        }
        let mut s: String = self
            .source
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if let Some(d) = &self.distribution {
            s.push('_');
            s.push_str(d);
        }
        s
    }

    /// True for a flat repository (no distribution; `Release` and `Packages` at the source root).
    pub fn is_flat(&self) -> bool {
        self.distribution
            .as_deref()
            .is_none_or(|d| d.is_empty() || d == "./" || d == ".")
    }

    /// True when the source uses the `apt-host:/` scheme.
    pub fn is_apt_host(&self) -> bool {
        self.source.starts_with(APT_HOST_SCHEME)
    }

    /// Whether the Release signature must be checked.
    pub fn gpgcheck(&self) -> bool {
        self.repository_gpgcheck.unwrap_or(true)
    }

    /// Fail unless this repository is one the apt client can read.
    pub fn check_supported(&self) -> Result<(), RepoError> {
        match self.repo_type.as_str() {
            "apt-deb" | "deb-dir" | "" => {}
            other => {
                return Err(RepoError::UnsupportedType {
                    alias: self.name(),
                    repo_type: other.to_string(),
                });
            }
        }
        let known = ["http://", "https://", "file:/", "dir:/", APT_HOST_SCHEME];
        if !known.iter().any(|k| self.source.starts_with(k)) {
            return Err(RepoError::Source {
                alias: self.name(),
                source_path: self.source.clone(),
                message: "unsupported scheme (use http, https, file, dir or apt-host)".into(),
            });
        }
        if let Some(st) = &self.sourcetype
            && !st.is_empty()
            && st != "baseurl"
        {
            return Err(RepoError::Source {
                alias: self.name(),
                source_path: self.source.clone(),
                message: format!("sourcetype {st:?} is not supported for apt (use baseurl)"),
            });
        }
        Ok(())
    }

    /// The signing key files, with `file:` prefixes removed.
    pub fn signing_key_paths(&self) -> Result<Vec<PathBuf>, RepoError> {
        self.signing_keys
            .iter()
            .map(|k| {
                let p = if let Some(rest) = k.strip_prefix("file:") {
                    rest.strip_prefix("//").unwrap_or(rest)
                } else {
                    k.as_str()
                };
                if p.starts_with('/') {
                    Ok(PathBuf::from(p))
                } else {
                    Err(RepoError::Source {
                        alias: self.name(),
                        source_path: self.source.clone(),
                        message: format!(
                            "signing key {k:?}: only local key files (file:/… or an absolute path) are supported"
                        ),
                    })
                }
            })
            .collect()
    }

    /// Parse KIWI's `--set-repo`/`--add-repo` tuple:
    /// `source,type,alias,priority,imageinclude,package_gpgcheck,{signing_keys},components,distribution,repo_gpgcheck,repo_sourcetype`.
    /// Only `source` is required; trailing fields may be left out and empty fields keep defaults.
    /// Signing keys are `{k1:k2}` (a `file:` prefix inside is kept with its path); components are
    /// separated by spaces.
    pub fn parse_tuple(tuple: &str) -> Result<RepoSpec, RepoError> {
        let fields: Vec<&str> = tuple.split(',').map(str::trim).collect();
        if fields.len() > FIELD_NAMES.len() {
            return Err(RepoError::Tuple {
                tuple: tuple.to_string(),
                message: format!(
                    "{} fields, at most {} expected ({})",
                    fields.len(),
                    FIELD_NAMES.len(),
                    FIELD_NAMES.join(",")
                ),
            });
        }
        let bad = |index: usize, message: String| RepoError::TupleField {
            tuple: tuple.to_string(),
            index: index + 1,
            field: FIELD_NAMES[index],
            message,
        };
        let get = |i: usize| fields.get(i).copied().filter(|s| !s.is_empty());
        let source = get(0)
            .ok_or_else(|| bad(0, "the source path is required".into()))?
            .to_string();
        let mut spec = RepoSpec::new(source);
        if let Some(t) = get(1) {
            spec.repo_type = t.to_string();
        }
        spec.alias = get(2).map(str::to_string);
        if let Some(p) = get(3) {
            spec.priority = Some(
                p.parse::<i32>()
                    .map_err(|_| bad(3, format!("{p:?} is not an integer")))?,
            );
        }
        if let Some(b) = get(4) {
            spec.imageinclude = parse_bool(b).ok_or_else(|| bad(4, bool_msg(b)))?;
        }
        if let Some(b) = get(5) {
            spec.package_gpgcheck = Some(parse_bool(b).ok_or_else(|| bad(5, bool_msg(b)))?);
        }
        if let Some(k) = get(6) {
            let inner = k
                .strip_prefix('{')
                .and_then(|k| k.strip_suffix('}'))
                .ok_or_else(|| bad(6, format!("{k:?} must be written as {{key1:key2}}")))?;
            spec.signing_keys = split_keys(inner);
        }
        if let Some(c) = get(7) {
            spec.components = c.split_whitespace().map(str::to_string).collect();
        }
        spec.distribution = get(8).map(str::to_string);
        if let Some(b) = get(9) {
            spec.repository_gpgcheck = Some(parse_bool(b).ok_or_else(|| bad(9, bool_msg(b)))?);
        }
        if let Some(s) = get(10) {
            if !matches!(s, "baseurl" | "metalink" | "mirrorlist") {
                return Err(bad(
                    10,
                    format!("{s:?} is not one of baseurl, metalink, mirrorlist"),
                ));
            }
            spec.sourcetype = Some(s.to_string());
        }
        Ok(spec)
    }
}

impl fmt::Display for RepoSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.name(), self.source)?;
        if let Some(d) = &self.distribution {
            write!(f, " {d}")?;
        }
        write!(f, ")")
    }
}

fn bool_msg(v: &str) -> String {
    format!("{v:?} is not true or false")
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// Split `k1:k2`, keeping URL schemes (`file:/a`, `https://h/k`) attached to their path.
fn split_keys(inner: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    for part in inner.split(':') {
        if let Some(scheme) = pending.take() {
            out.push(format!("{scheme}:{part}"));
            continue;
        }
        if matches!(part, "file" | "http" | "https") {
            pending = Some(part.to_string());
        } else if !part.trim().is_empty() {
            out.push(part.trim().to_string());
        }
    }
    if let Some(s) = pending {
        out.push(s);
    }
    out
}

impl Credentials {
    /// Parse KIWI's `user:password` or `user:FILE` (the password is the first line of FILE when
    /// FILE is an existing absolute path).
    pub fn parse(arg: &str) -> Result<Credentials, RepoError> {
        let Some((user, rest)) = arg.split_once(':') else {
            return Err(RepoError::Credentials {
                message: "expected user:password or user:/path/to/password-file".into(),
            });
        };
        if user.is_empty() {
            return Err(RepoError::Credentials {
                message: "the user name is empty".into(),
            });
        }
        let password = if rest.starts_with('/') && Path::new(rest).is_file() {
            let text = std::fs::read_to_string(rest).map_err(|e| RepoError::Credentials {
                message: format!("{rest}: {e}"),
            })?;
            text.lines().next().unwrap_or("").to_string()
        } else {
            rest.to_string()
        };
        Ok(Credentials {
            username: user.to_string(),
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_tuple() {
        let t = "http://example.invalid/debian,apt-deb,deb,42,true,false,{file:/etc/k1.gpg:/etc/k2.asc},main contrib,bookworm,false,baseurl";
        let s = RepoSpec::parse_tuple(t).unwrap();
        assert_eq!(s.source, "http://example.invalid/debian");
        assert_eq!(s.alias.as_deref(), Some("deb"));
        assert_eq!(s.priority, Some(42));
        assert!(s.imageinclude);
        assert_eq!(s.package_gpgcheck, Some(false));
        assert_eq!(s.signing_keys, vec!["file:/etc/k1.gpg", "/etc/k2.asc"]);
        assert_eq!(
            s.signing_key_paths().unwrap(),
            vec![PathBuf::from("/etc/k1.gpg"), PathBuf::from("/etc/k2.asc")]
        );
        assert_eq!(s.components, vec!["main", "contrib"]);
        assert_eq!(s.distribution.as_deref(), Some("bookworm"));
        assert_eq!(s.repository_gpgcheck, Some(false));
        assert!(!s.gpgcheck());
        assert_eq!(s.sourcetype.as_deref(), Some("baseurl"));
        s.check_supported().unwrap();
    }

    #[test]
    fn short_tuple_defaults() {
        let s = RepoSpec::parse_tuple("file:///srv/repo").unwrap();
        assert_eq!(s.repo_type, "apt-deb");
        assert_eq!(s.components, vec!["main"]);
        assert!(s.is_flat());
        assert!(s.gpgcheck());
        let s = RepoSpec::parse_tuple("apt-host:/,apt-deb,,,,,,,trixie").unwrap();
        assert!(s.is_apt_host());
        assert_eq!(s.distribution.as_deref(), Some("trixie"));
        assert!(!s.is_flat());
    }

    #[test]
    fn tuple_errors_name_the_field() {
        let e = RepoSpec::parse_tuple("http://h/,apt-deb,a,high").unwrap_err();
        assert!(e.to_string().contains("field 4 (priority)"), "{e}");
        let e = RepoSpec::parse_tuple("http://h/,apt-deb,a,1,maybe").unwrap_err();
        assert!(e.to_string().contains("field 5 (imageinclude)"), "{e}");
        let e = RepoSpec::parse_tuple("http://h/,,,,,,k1").unwrap_err();
        assert!(e.to_string().contains("signing_keys"), "{e}");
        let e = RepoSpec::parse_tuple(",apt-deb").unwrap_err();
        assert!(e.to_string().contains("source"), "{e}");
        let e =
            RepoSpec::parse_tuple("a,b,c,1,true,true,{},main,d,true,baseurl,extra").unwrap_err();
        assert!(e.to_string().contains("12 fields"), "{e}");
        let e = RepoSpec::parse_tuple("a,apt-deb,c,1,true,true,{},main,d,true,ftp").unwrap_err();
        assert!(e.to_string().contains("repo_sourcetype"), "{e}");
    }

    #[test]
    fn unsupported_types_and_schemes() {
        let s = RepoSpec::parse_tuple("http://h/,rpm-md,suse").unwrap();
        assert!(matches!(
            s.check_supported(),
            Err(RepoError::UnsupportedType { .. })
        ));
        let s = RepoSpec::parse_tuple("obs://Prj/repo,apt-deb").unwrap();
        assert!(matches!(s.check_supported(), Err(RepoError::Source { .. })));
    }

    #[test]
    fn credentials() {
        let c = Credentials::parse("bob:s3:cret").unwrap();
        assert_eq!(c.username, "bob");
        assert_eq!(c.password, "s3:cret");
        assert!(!format!("{c:?}").contains("s3"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "fromfile\n").unwrap();
        let c = Credentials::parse(&format!("amy:{}", f.display())).unwrap();
        assert_eq!(c.password, "fromfile");
        assert!(Credentials::parse("nouser").is_err());
        assert!(Credentials::parse(":pw").is_err());
    }
}
