//! Short names and mirrors as the containers tools configure them (`containers-registries.conf`
//! version 2): `unqualified-search-registries`, `short-name-mode`, `[aliases]` (also in
//! `shortnames.conf` and the drop-ins of `registries.conf.d/`), and `[[registry]]` entries with
//! their `location`, `insecure`, `blocked` and `[[registry.mirror]]`s.
//!
//! A fully qualified reference always works without any configuration. A short name (`debian:12`)
//! resolves through an alias, else through the search registries: with one, to it; with several,
//! only when the mode is `permissive` or `disabled` (tried in order) — imgbuild never prompts, so
//! an ambiguous short name under `enforcing` is an error that names the candidates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Reference, RegistryError, Result};

/// The system configuration file.
pub const SYSTEM_CONF: &str = "/etc/containers/registries.conf";
/// The system drop-in directory.
pub const SYSTEM_CONF_D: &str = "/etc/containers/registries.conf.d";

/// How short names are resolved (`short-name-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShortNameMode {
    /// An alias or a single search registry; several search registries are ambiguous.
    #[default]
    Enforcing,
    /// Every search registry in order.
    Permissive,
    /// Every search registry in order (aliases still apply).
    Disabled,
}

/// Which references a mirror serves (`pull-from-mirror`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MirrorUse {
    /// Tags and digests.
    #[default]
    All,
    /// Only references by digest.
    DigestOnly,
    /// Only references by tag.
    TagOnly,
}

/// One `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mirror {
    /// `HOST[:PORT][/PATH]` the mirror serves the prefix at.
    pub location: String,
    /// Plain HTTP or unverified TLS for this mirror.
    #[serde(default)]
    pub insecure: bool,
    /// Which references it serves.
    #[serde(default)]
    pub pull_from_mirror: MirrorUse,
}

/// One `[[registry]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    /// The references it applies to (`HOST[/PATH]` or `*.DOMAIN`); default: `location`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where the prefix really lives.
    #[serde(default)]
    pub location: Option<String>,
    /// Plain HTTP or unverified TLS for this registry.
    #[serde(default)]
    pub insecure: bool,
    /// Pulls from it are refused.
    #[serde(default)]
    pub blocked: bool,
    /// Mirrors tried before the location, in order.
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

/// The keys of one configuration file that imgbuild reads; others are ignored, as the
/// containers tools ignore keys of newer versions.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    unqualified_search_registries: Option<Vec<String>>,
    short_name_mode: Option<ShortNameMode>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    registry: Option<Vec<RegistryEntry>>,
}

/// The merged configuration: the main file, then each drop-in in name order overriding the keys
/// it sets (aliases one by one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    /// `unqualified-search-registries`.
    pub search: Vec<String>,
    /// `short-name-mode`.
    pub mode: ShortNameMode,
    /// `[aliases]`: short name → fully qualified name.
    pub aliases: BTreeMap<String, String>,
    /// `[[registry]]` entries.
    pub registries: Vec<RegistryEntry>,
}

/// One place to try a reference at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The reference at that place.
    pub reference: Reference,
    /// Plain HTTP or unverified TLS allowed there.
    pub insecure: bool,
    /// Whether this is a mirror (a failure moves on to the next source).
    pub mirror: bool,
}

fn conf_err(path: &Path, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Config {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl RegistriesConf {
    /// Reads the configuration the containers tools would: `$CONTAINERS_REGISTRIES_CONF` alone
    /// when set; else `~/.config/containers/registries.conf` when it exists (for non-root
    /// users), else the system file; then the drop-ins of the system (and user) `.d` directory.
    /// Missing files are no configuration.
    pub fn load() -> Result<RegistriesConf> {
        if let Some(path) = std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
            return Self::from_files(&[PathBuf::from(path)]);
        }
        let mut files = Vec::new();
        let user = std::env::var_os("HOME")
            .filter(|_| !nix::unistd::geteuid().is_root())
            .map(|h| PathBuf::from(h).join(".config/containers"));
        match user.as_ref().map(|d| d.join("registries.conf")) {
            Some(u) if u.is_file() => files.push(u),
            _ => files.push(PathBuf::from(SYSTEM_CONF)),
        }
        let mut dirs = vec![PathBuf::from(SYSTEM_CONF_D)];
        dirs.extend(user.map(|d| d.join("registries.conf.d")));
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut drop_ins: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            drop_ins.sort();
            files.extend(drop_ins);
        }
        Self::from_files(&files)
    }

    /// Merges `files` in order; a missing file is skipped, an unreadable or invalid one is an
    /// error naming it (and the line, for syntax errors).
    pub fn from_files(files: &[PathBuf]) -> Result<RegistriesConf> {
        let mut conf = RegistriesConf::default();
        for path in files {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(conf_err(path, e)),
            };
            conf.merge(path, &text)?;
        }
        Ok(conf)
    }

    /// Merges the text of one file read from `path`.
    pub fn merge(&mut self, path: &Path, text: &str) -> Result<()> {
        let file: File = toml::from_str(text).map_err(|e| conf_err(path, e))?;
        if let Some(s) = file.unqualified_search_registries {
            self.search = s;
        }
        if let Some(m) = file.short_name_mode {
            self.mode = m;
        }
        for (name, target) in file.aliases {
            if Reference::parse(&target).is_err() {
                return Err(conf_err(
                    path,
                    format!("alias {name:?}: {target:?} is not a fully qualified image name"),
                ));
            }
            self.aliases.insert(name, target);
        }
        if let Some(r) = file.registry {
            for entry in &r {
                if entry.prefix.is_none() && entry.location.is_none() {
                    return Err(conf_err(
                        path,
                        "a [[registry]] entry needs a prefix or a location",
                    ));
                }
            }
            self.registries = r;
        }
        Ok(())
    }

    /// The fully qualified references a name may mean, in the order to try them. A fully
    /// qualified name is itself; a short name goes through the aliases and search registries
    /// (see the module doc).
    pub fn qualify(&self, name: &str) -> Result<Vec<Reference>> {
        let text = name.strip_prefix("docker://").unwrap_or(name);
        if is_qualified(text) {
            return Ok(vec![Reference::parse(text)?]);
        }
        let bad = |reason: String| RegistryError::Reference {
            reference: name.to_string(),
            reason,
        };
        let (path, suffix) = split_suffix(text);
        if path.is_empty() || path.contains("//") {
            return Err(bad("expected NAME[:TAG|@DIGEST]".into()));
        }
        if let Some(target) = self.aliases.get(path) {
            let target = target.strip_prefix("docker://").unwrap_or(target);
            return Ok(vec![Reference::parse(&format!("{target}{suffix}"))?]);
        }
        let candidates: Vec<String> = self
            .search
            .iter()
            .map(|host| format!("{host}/{}{suffix}", docker_library(host, path)))
            .collect();
        match (candidates.len(), self.mode) {
            (0, _) => Err(bad(format!(
                "a short name, and no unqualified-search-registries are configured in {SYSTEM_CONF}; \
                 use a full name (HOST/REPOSITORY[:TAG])"
            ))),
            (1, _) | (_, ShortNameMode::Permissive | ShortNameMode::Disabled) => {
                candidates.iter().map(|c| Reference::parse(c)).collect()
            }
            _ => Err(bad(format!(
                "an ambiguous short name (short-name-mode is enforcing and several search \
                 registries are configured); use a full name: {}",
                candidates.join(", ")
            ))),
        }
    }

    /// Where to pull `reference` from: its mirrors that serve it (tag or digest), then its
    /// location, as the `[[registry]]` entry with the longest matching prefix says. A blocked
    /// registry is an error.
    pub fn sources(&self, reference: &Reference) -> Result<Vec<Source>> {
        let full = format!("{}/{}", reference.host, reference.repository);
        let entry = self
            .registries
            .iter()
            .filter_map(|e| {
                let prefix = e.prefix.as_deref().or(e.location.as_deref())?;
                prefix_matches(prefix, &full).then_some((prefix.len(), prefix, e))
            })
            .max_by_key(|(len, _, _)| *len);
        let Some((_, prefix, entry)) = entry else {
            return Ok(vec![Source {
                reference: reference.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(RegistryError::Reference {
                reference: full,
                reason: format!("pulling from {prefix} is blocked in the registries configuration"),
            });
        }
        let rest = rest_after(prefix, &full);
        let at = |location: &str| -> Result<Reference> {
            let mut r = Reference::parse(&format!("{location}{rest}"))?;
            r.tag.clone_from(&reference.tag);
            r.digest.clone_from(&reference.digest);
            Ok(r)
        };
        let by_digest = reference.digest.is_some();
        let mut out = Vec::new();
        for m in &entry.mirror {
            let serves = match m.pull_from_mirror {
                MirrorUse::All => true,
                MirrorUse::DigestOnly => by_digest,
                MirrorUse::TagOnly => !by_digest,
            };
            if serves {
                out.push(Source {
                    reference: at(&m.location)?,
                    insecure: m.insecure,
                    mirror: true,
                });
            }
        }
        out.push(Source {
            reference: match &entry.location {
                Some(l) => at(l)?,
                None => reference.clone(),
            },
            insecure: entry.insecure,
            mirror: false,
        });
        Ok(out)
    }

    /// Whether `--insecure`-style access is configured for `host` (an `insecure = true` entry
    /// whose prefix is that host).
    pub fn insecure_host(&self, host: &str) -> bool {
        self.registries.iter().any(|e| {
            e.insecure
                && e.location
                    .as_deref()
                    .or(e.prefix.as_deref())
                    .is_some_and(|p| p.split('/').next() == Some(host))
        })
    }
}

/// Whether `text` names its registry host: a first component with a `.` or `:`, or `localhost`.
pub fn is_qualified(text: &str) -> bool {
    text.split_once('/')
        .is_some_and(|(host, _)| host.contains('.') || host.contains(':') || host == "localhost")
}

/// `debian:12` → (`debian`, `:12`); `x@sha256:…` → (`x`, `@sha256:…`).
fn split_suffix(text: &str) -> (&str, &str) {
    if let Some(i) = text.find('@') {
        return text.split_at(i);
    }
    match text.rfind(':') {
        Some(i) if !text[i..].contains('/') => text.split_at(i),
        _ => (text, ""),
    }
}

/// Docker Hub's official images live under `library/`.
fn docker_library(host: &str, path: &str) -> String {
    if host == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    }
}

/// Whether `prefix` (`HOST[/PATH]` or `*.DOMAIN[/PATH]`) covers `full` (`HOST/REPO`) at a
/// component boundary.
fn prefix_matches(prefix: &str, full: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = full.split('/').next().unwrap_or(full);
        return host.ends_with(&format!(".{domain}"));
    }
    full == prefix
        || full
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What follows the matched prefix in `full` (empty or starting with `/`).
fn rest_after<'a>(prefix: &str, full: &'a str) -> &'a str {
    if prefix.starts_with("*.") {
        // A wildcard entry's location replaces the host only.
        return full.find('/').map_or("", |i| &full[i..]);
    }
    &full[prefix.len().min(full.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        let mut c = RegistriesConf::default();
        c.merge(Path::new("test.conf"), text).unwrap();
        c
    }

    fn names(refs: &[Reference]) -> Vec<String> {
        refs.iter()
            .map(|r| format!("{}/{}:{}", r.host, r.repository, r.manifest_reference()))
            .collect()
    }

    #[test]
    fn full_names_need_no_configuration() {
        let c = RegistriesConf::default();
        assert_eq!(
            names(&c.qualify("docker://127.0.0.1:5000/a/b:1").unwrap()),
            ["127.0.0.1:5000/a/b:1"]
        );
        let err = c.qualify("debian:12").unwrap_err().to_string();
        assert!(err.contains("use a full name"), "{err}");
    }

    #[test]
    fn aliases_and_search_registries() {
        let c = conf(
            r#"
unqualified-search-registries = ["docker.io"]
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"#,
        );
        assert_eq!(
            names(&c.qualify("fedora:40").unwrap()),
            ["registry.fedoraproject.org/fedora:40"]
        );
        assert_eq!(
            names(&c.qualify("debian:12").unwrap()),
            ["docker.io/library/debian:12"]
        );
        assert_eq!(
            names(&c.qualify("me/tool").unwrap()),
            ["docker.io/me/tool:latest"]
        );
    }

    #[test]
    fn several_search_registries_are_ambiguous_unless_permissive() {
        let text = r#"unqualified-search-registries = ["registry.example.org", "quay.io"]"#;
        let err = conf(text).qualify("debian").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(
            err.contains("registry.example.org/debian, quay.io/debian"),
            "{err}"
        );
        let c = conf(&format!("{text}\nshort-name-mode = \"permissive\""));
        assert_eq!(
            names(&c.qualify("debian").unwrap()),
            [
                "registry.example.org/debian:latest",
                "quay.io/debian:latest"
            ]
        );
    }

    #[test]
    fn drop_ins_override_keys_they_set() {
        let mut c =
            conf("unqualified-search-registries = [\"a.example\"]\n[aliases]\nx = \"a.example/x\"");
        c.merge(Path::new("b.conf"), "[aliases]\ny = \"b.example/y\"")
            .unwrap();
        assert_eq!(c.search, ["a.example"]);
        assert_eq!(c.aliases.len(), 2);
    }

    #[test]
    fn mirrors_come_first_and_blocked_registries_are_refused() {
        let conf = conf(
            r#"
[[registry]]
prefix = "example.org/library"
location = "internal.example:5000/hub"
[[registry.mirror]]
location = "mirror.example/hub"
[[registry.mirror]]
location = "digests.example/hub"
pull-from-mirror = "digest-only"

[[registry]]
location = "bad.example"
blocked = true

[[registry]]
prefix = "*.corp.example"
location = "proxy.example"
insecure = true
"#,
        );
        let debian = Reference::parse("example.org/library/debian:12").unwrap();
        let found = conf.sources(&debian).unwrap();
        let got: Vec<String> = found
            .iter()
            .map(|s| format!("{}/{}", s.reference.host, s.reference.repository))
            .collect();
        assert_eq!(
            got,
            [
                "mirror.example/hub/debian",
                "internal.example:5000/hub/debian"
            ]
        );
        assert_eq!(found[1].reference.tag.as_deref(), Some("12"));
        assert!(found[0].mirror && !found[1].mirror);
        let d = format!("example.org/library/debian@sha256:{}", "a".repeat(64));
        assert_eq!(
            conf.sources(&Reference::parse(&d).unwrap()).unwrap().len(),
            3
        );
        let err = conf
            .sources(&Reference::parse("bad.example/x:1").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("blocked"), "{err}");
        let wild = conf
            .sources(&Reference::parse("reg.corp.example/team/app:1").unwrap())
            .unwrap();
        assert_eq!(wild[0].reference.host, "proxy.example");
        assert_eq!(wild[0].reference.repository, "team/app");
        assert!(wild[0].insecure);
        assert!(conf.insecure_host("proxy.example"));
        // No entry: the reference itself.
        let plain = Reference::parse("other.example/x:1").unwrap();
        assert_eq!(conf.sources(&plain).unwrap()[0].reference, plain);
        // Not at a component boundary: no match.
        let near = Reference::parse("example.org/libraryx/y:1").unwrap();
        assert_eq!(conf.sources(&near).unwrap()[0].reference, near);
    }

    #[test]
    fn bad_files_name_themselves() {
        let mut c = RegistriesConf::default();
        let err = c
            .merge(
                Path::new("/etc/x.conf"),
                "unqualified-search-registries = [",
            )
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/x.conf"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = c
            .merge(Path::new("a.conf"), "[aliases]\nx = \"notqualified\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("alias \"x\""), "{err}");
    }

    #[test]
    fn reads_the_shipped_shortnames_conf_when_present() {
        let path = Path::new("/etc/containers/registries.conf.d/shortnames.conf");
        if !path.is_file() {
            return;
        }
        let c = RegistriesConf::from_files(&[path.to_path_buf()]).unwrap();
        assert!(!c.aliases.is_empty());
    }
}
