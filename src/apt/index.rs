//! Repository package indexes: `Package` records from `Packages` paragraphs, with their
//! relationship fields (`Depends`, `Provides`, `Conflicts`, …) parsed.

use std::fmt;

use rayon::prelude::*;

use std::borrow::Cow;

use super::control::{self, ParseError, RawParagraph};
use super::version::{Version, VersionError};

/// Why a `Packages` index could not be read. Every variant names the 1-based line of the paragraph
/// (or field) involved.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The text is not valid deb822.
    #[error("Packages index: {0}")]
    Control(#[from] ParseError),
    /// A required field is absent.
    #[error("Packages index: line {line}: paragraph has no {field} field")]
    MissingField {
        /// Line where the paragraph starts.
        line: usize,
        /// The missing field.
        field: &'static str,
    },
    /// A version (in `Version`, `Source` or a relation) is invalid.
    #[error("Packages index: line {line}: field {field}: {source}")]
    BadVersion {
        /// Line where the paragraph starts.
        line: usize,
        /// Field holding the version.
        field: &'static str,
        /// What dpkg's rules say.
        source: VersionError,
    },
    /// A relationship field could not be parsed.
    #[error("Packages index: line {line}: field {field}: {message} in {text:?}")]
    BadRelation {
        /// Line where the paragraph starts.
        line: usize,
        /// The relationship field.
        field: &'static str,
        /// The offending text.
        text: String,
        /// What was wrong.
        message: String,
    },
    /// A numeric or boolean field has an unusable value.
    #[error("Packages index: line {line}: field {field}: bad value {value:?}")]
    BadValue {
        /// Line where the paragraph starts.
        line: usize,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// `Multi-Arch` field values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum MultiArch {
    /// No field (or `no`): the package satisfies dependencies of its own architecture only.
    #[default]
    No,
    /// Co-installable with itself for other architectures.
    Same,
    /// Satisfies dependencies of packages of any architecture.
    Foreign,
    /// Satisfies `pkg:any` dependencies.
    Allowed,
}

/// A version comparison operator in a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (and the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// True when `have OP want` holds.
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        let o = have.cmp(want);
        match self {
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Eq => o.is_eq(),
            Op::Ge => o.is_ge(),
            Op::Gt => o.is_gt(),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        })
    }
}

/// An architecture qualifier on a relation target (`name:qual`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum ArchQual {
    /// No qualifier: the depending package's own architecture rules apply.
    #[default]
    None,
    /// `:any`: any architecture, via `Multi-Arch: allowed`.
    Any,
    /// `:native`: the native architecture.
    Native,
    /// An explicit architecture such as `:amd64`.
    Arch(String),
}

/// One package a relation can be satisfied by: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// Package (or virtual package) name.
    pub name: String,
    /// Architecture qualifier.
    pub arch: ArchQual,
    /// Version constraint, if any.
    pub constraint: Option<(Op, Version)>,
    /// `[arch …]` restriction list as written (entries may start with `!`); empty when absent.
    /// Binary indexes should not carry these; they are kept so callers can decide.
    pub arch_restriction: Vec<String>,
}

impl fmt::Display for Alternative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.arch {
            ArchQual::None => {}
            ArchQual::Any => f.write_str(":any")?,
            ArchQual::Native => f.write_str(":native")?,
            ArchQual::Arch(a) => write!(f, ":{a}")?,
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// One comma-separated item of a relationship field: satisfied by any of its alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// `a | b | c`, in order of preference.
    pub alternatives: Vec<Alternative>,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// A binary package as listed in a repository's `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: Version,
    /// `Architecture` (`amd64`, `all`, …).
    pub architecture: String,
    /// `Multi-Arch`.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (`required`, `important`, `optional`, …).
    pub priority: Option<String>,
    /// Source package name (the package name when the field is absent).
    pub source: String,
    /// Source version (the package version when the field gives none).
    pub source_version: Version,
    /// `Installed-Size` in KiB.
    pub installed_size: Option<u64>,
    /// `Depends`.
    pub depends: Vec<Relation>,
    /// `Pre-Depends`.
    pub pre_depends: Vec<Relation>,
    /// `Recommends`.
    pub recommends: Vec<Relation>,
    /// `Provides` (only `=` constraints are meaningful).
    pub provides: Vec<Alternative>,
    /// `Conflicts`.
    pub conflicts: Vec<Alternative>,
    /// `Breaks`.
    pub breaks: Vec<Alternative>,
    /// `Replaces`.
    pub replaces: Vec<Alternative>,
    /// `Filename`, relative to the repository root.
    pub filename: Option<String>,
    /// `Size` of the `.deb` in bytes.
    pub size: Option<u64>,
    /// `SHA256` of the `.deb`, lowercase hex.
    pub sha256: Option<String>,
    /// Index of the repository this record came from, as supplied by the caller.
    pub repo: usize,
}

/// The fields [`Package::from_paragraph`] reads, in the order [`PackageFields`] holds them.
pub const FIELDS: [&str; 18] = [
    "Package",
    "Version",
    "Architecture",
    "Multi-Arch",
    "Essential",
    "Priority",
    "Source",
    "Installed-Size",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Provides",
    "Conflicts",
    "Breaks",
    "Replaces",
    "Filename",
    "Size",
    "SHA256",
];

/// Position of `name` in [`FIELDS`]; field names are case-insensitive, canonical spelling first.
fn field_index(name: &str) -> Option<usize> {
    FIELDS
        .iter()
        .position(|f| *f == name)
        .or_else(|| FIELDS.iter().position(|f| f.eq_ignore_ascii_case(name)))
}

/// The values of [`FIELDS`] found in one paragraph, by position in [`FIELDS`]: everything a
/// [`Package`] is made from (the packed index cache stores exactly these).
pub type PackageFields<'a> = [Option<Cow<'a, str>>; FIELDS.len()];

/// The values of [`FIELDS`] found in one paragraph.
struct Found<'a, 'b>(&'b PackageFields<'a>);

impl Found<'_, '_> {
    fn get(&self, name: &str) -> Option<&str> {
        field_index(name).and_then(|i| self.0[i].as_deref())
    }
}

impl Package {
    /// Build a package from one paragraph. `repo` is stored as given.
    pub fn from_paragraph(p: &RawParagraph<'_>, repo: usize) -> Result<Package, IndexError> {
        Package::from_fields(&paragraph_fields(p), p.line, repo)
    }

    /// Build a package from the values of [`FIELDS`] of the paragraph starting at `line`.
    /// `repo` is stored as given.
    pub fn from_fields(
        found: &PackageFields<'_>,
        line: usize,
        repo: usize,
    ) -> Result<Package, IndexError> {
        let p = Found(found);
        let req =
            |field: &'static str| p.get(field).ok_or(IndexError::MissingField { line, field });
        let version_of = |field: &'static str, s: &str| {
            Version::parse(s).map_err(|source| IndexError::BadVersion {
                line,
                field,
                source,
            })
        };
        let number = |field: &'static str| -> Result<Option<u64>, IndexError> {
            p.get(field)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| IndexError::BadValue {
                        line,
                        field,
                        value: v.to_string(),
                    })
                })
                .transpose()
        };
        let relations = |field: &'static str| -> Result<Vec<Relation>, IndexError> {
            match p.get(field) {
                Some(v) => parse_relations(v).map_err(|(text, message)| IndexError::BadRelation {
                    line,
                    field,
                    text,
                    message,
                }),
                None => Ok(Vec::new()),
            }
        };
        let flat = |field: &'static str| -> Result<Vec<Alternative>, IndexError> {
            let relations = relations(field)?;
            let mut out = Vec::with_capacity(relations.len());
            for r in relations {
                if r.alternatives.len() != 1 {
                    return Err(IndexError::BadRelation {
                        line,
                        field,
                        text: r.to_string(),
                        message: "alternatives are not allowed here".into(),
                    });
                }
                out.extend(r.alternatives);
            }
            Ok(out)
        };

        let name = req("Package")?.to_string();
        let version = version_of("Version", req("Version")?)?;
        let architecture = req("Architecture")?.to_string();
        let multi_arch = match p.get("Multi-Arch").map(str::to_ascii_lowercase).as_deref() {
            None | Some("no") => MultiArch::No,
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            Some(other) => {
                return Err(IndexError::BadValue {
                    line,
                    field: "Multi-Arch",
                    value: other.to_string(),
                });
            }
        };
        let essential = match p.get("Essential").map(str::to_ascii_lowercase).as_deref() {
            None | Some("no") => false,
            Some("yes") => true,
            Some(other) => {
                return Err(IndexError::BadValue {
                    line,
                    field: "Essential",
                    value: other.to_string(),
                });
            }
        };
        let (source, source_version) = match p.get("Source") {
            None => (name.clone(), version.clone()),
            Some(s) => match s.split_once('(') {
                None => (s.trim().to_string(), version.clone()),
                Some((n, rest)) => {
                    let v = rest
                        .trim_end()
                        .strip_suffix(')')
                        .ok_or(IndexError::BadValue {
                            line,
                            field: "Source",
                            value: s.to_string(),
                        })?;
                    (n.trim().to_string(), version_of("Source", v)?)
                }
            },
        };
        Ok(Package {
            version,
            architecture,
            multi_arch,
            essential,
            priority: p.get("Priority").map(str::to_string),
            source,
            source_version,
            installed_size: number("Installed-Size")?,
            depends: relations("Depends")?,
            pre_depends: relations("Pre-Depends")?,
            recommends: relations("Recommends")?,
            provides: flat("Provides")?,
            conflicts: flat("Conflicts")?,
            breaks: flat("Breaks")?,
            replaces: flat("Replaces")?,
            filename: p.get("Filename").map(str::to_string),
            size: number("Size")?,
            sha256: p.get("SHA256").map(str::to_ascii_lowercase),
            name,
            repo,
        })
    }
}

/// The values of [`FIELDS`] in paragraph `p` (the first occurrence of each), in one pass over
/// the paragraph instead of a scan per field: indexes are large.
pub fn paragraph_fields<'a>(p: &RawParagraph<'a>) -> PackageFields<'a> {
    let mut found: PackageFields<'a> = Default::default();
    for (k, v) in &p.fields {
        if let Some(i) = field_index(k) {
            found[i].get_or_insert_with(|| v.value());
        }
    }
    found
}

/// Parse a whole `Packages` index; `repo` is stored in every record. Large indexes are cut at
/// paragraph boundaries and parsed in parallel; records keep file order and the first error in
/// file order is the one reported.
pub fn parse_packages(text: &str, repo: usize) -> Result<Vec<Package>, IndexError> {
    let pieces = rayon::current_num_threads() * 4;
    let chunks = split_at_paragraphs(text, pieces);
    let parts: Vec<Result<Vec<Package>, IndexError>> = chunks
        .par_iter()
        .map(|&(first_line, chunk)| {
            let offset = first_line - 1;
            control::paragraphs(chunk)
                .map(|p| {
                    let mut p = p.map_err(|mut e| {
                        e.line += offset;
                        e
                    })?;
                    p.line += offset;
                    Package::from_paragraph(&p, repo)
                })
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.as_ref().map_or(0, Vec::len)).sum());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Cut `text` into about `pieces` chunks, each starting right after an empty line (so at a
/// paragraph start), paired with the 1-based line number it starts on.
pub(crate) fn split_at_paragraphs(text: &str, pieces: usize) -> Vec<(usize, &str)> {
    const MIN_CHUNK: usize = 256 * 1024;
    let target = (text.len() / pieces.max(1)).max(MIN_CHUNK);
    let mut out = Vec::new();
    let (mut start, mut line) = (0usize, 1usize);
    while start < text.len() {
        let want = start + target;
        let end = if want >= text.len() {
            text.len()
        } else {
            match text[want..].find("\n\n") {
                Some(i) => want + i + 2,
                None => text.len(),
            }
        };
        let chunk = &text[start..end];
        out.push((line, chunk));
        line += chunk.bytes().filter(|&b| b == b'\n').count();
        start = end;
    }
    out
}

/// Parse a relationship field (`Depends` syntax). Errors carry the offending item and a message.
pub fn parse_relations(field: &str) -> Result<Vec<Relation>, (String, String)> {
    // Sized up front: a repository's indexes hold several hundred thousand of these.
    let mut out = Vec::with_capacity(field.bytes().filter(|&b| b == b',').count() + 1);
    for item in field.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue; // dpkg tolerates a trailing comma
        }
        let mut alternatives = Vec::with_capacity(item.bytes().filter(|&b| b == b'|').count() + 1);
        for alt in item.split('|') {
            alternatives.push(parse_alternative(alt.trim()).map_err(|m| (item.to_string(), m))?);
        }
        out.push(Relation { alternatives });
    }
    out.shrink_to_fit();
    Ok(out)
}

fn parse_alternative(s: &str) -> Result<Alternative, String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || "+-._".contains(c);
    let end = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
    let name = &s[..end];
    if name.is_empty() {
        return Err("missing package name".into());
    }
    let mut rest = &s[end..];
    let mut arch = ArchQual::None;
    if let Some(r) = rest.strip_prefix(':') {
        let e = r.find(|c: char| !is_name_char(c)).unwrap_or(r.len());
        arch = match &r[..e] {
            "" => return Err("empty architecture qualifier".into()),
            "any" => ArchQual::Any,
            "native" => ArchQual::Native,
            a => ArchQual::Arch(a.to_string()),
        };
        rest = &r[e..];
    }
    rest = rest.trim_start();
    let mut constraint = None;
    if let Some(r) = rest.strip_prefix('(') {
        let close = r.find(')').ok_or("unclosed '('")?;
        let inner = r[..close].trim();
        rest = r[close + 1..].trim_start();
        let (op, v) = [
            ("<<", Op::Lt),
            ("<=", Op::Le),
            (">=", Op::Ge),
            (">>", Op::Gt),
            ("=", Op::Eq),
            ("<", Op::Le),
            (">", Op::Ge),
        ]
        .iter()
        .find_map(|(p, op)| inner.strip_prefix(p).map(|v| (*op, v)))
        .ok_or_else(|| format!("bad version relation {inner:?}"))?;
        let version = Version::parse(v).map_err(|e| e.to_string())?;
        constraint = Some((op, version));
    }
    let mut arch_restriction = Vec::new();
    if let Some(r) = rest.strip_prefix('[') {
        let close = r.find(']').ok_or("unclosed '['")?;
        arch_restriction = r[..close].split_whitespace().map(str::to_string).collect();
        rest = r[close + 1..].trim_start();
    }
    // Build profiles (`<!nocheck> <stage1>`) only matter for build dependencies: skip them.
    while let Some(r) = rest.strip_prefix('<') {
        let close = r.find('>').ok_or("unclosed '<'")?;
        rest = r[close + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(format!("unexpected {rest:?}"));
    }
    Ok(Alternative {
        name: name.to_string(),
        arch,
        constraint,
        arch_restriction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations() {
        let r = parse_relations(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo:amd64 (<< 2~) [amd64 !i386] <!nocheck>, bar (>1),",
        )
        .unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].alternatives[0].name, "libc6");
        assert_eq!(
            r[0].alternatives[0].constraint,
            Some((Op::Ge, Version::parse("2.34").unwrap()))
        );
        assert_eq!(r[1].alternatives.len(), 2);
        assert_eq!(r[1].alternatives[1].name, "debconf-2.0");
        assert_eq!(r[2].alternatives[0].arch, ArchQual::Any);
        let foo = &r[3].alternatives[0];
        assert_eq!(foo.arch, ArchQual::Arch("amd64".into()));
        assert_eq!(foo.constraint.as_ref().map(|c| c.0), Some(Op::Lt));
        assert_eq!(foo.arch_restriction, vec!["amd64", "!i386"]);
        assert_eq!(r[1].to_string(), "debconf (>= 0.5) | debconf-2.0");
        assert_eq!(
            parse_relations("bar (>1)").unwrap()[0].alternatives[0].constraint,
            Some((Op::Ge, Version::parse("1").unwrap()))
        );
    }

    #[test]
    fn bad_relations() {
        for bad in [
            "a (>= )", "a (~ 1)", "a | | b", "a (>= 1", "a b", "(>= 1)", "a:",
        ] {
            assert!(parse_relations(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn package_record() {
        let text = "Package: libfoo1\nSource: foo (1.2-3)\nVersion: 1.2-3+b1\nArchitecture: amd64\n\
Multi-Arch: same\nPriority: optional\nSection: libs\nInstalled-Size: 42\nPre-Depends: libc6 (>= 2.36)\n\
Depends: bar | baz\nProvides: libfoo (= 1.2)\nBreaks: old (<< 1)\nFilename: pool/f/foo.deb\nSize: 1000\n\
SHA256: ABCD\nDescription: a lib\n long text\n\nPackage: sh\nVersion: 1\nArchitecture: all\nEssential: yes\n";
        let ps = parse_packages(text, 3).unwrap();
        assert_eq!(ps.len(), 2);
        let p = &ps[0];
        assert_eq!(p.source, "foo");
        assert_eq!(p.source_version.as_str(), "1.2-3");
        assert_eq!(p.multi_arch, MultiArch::Same);
        assert_eq!(p.installed_size, Some(42));
        assert_eq!(p.pre_depends[0].alternatives[0].name, "libc6");
        assert_eq!(p.provides[0].to_string(), "libfoo (= 1.2)");
        assert_eq!(p.sha256.as_deref(), Some("abcd"));
        assert_eq!(p.repo, 3);
        assert!(ps[1].essential);
        assert_eq!(ps[1].source, "sh");
    }

    #[test]
    fn chunked_parsing_keeps_order_and_line_numbers() {
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!(
                "Package: p{i}\nVersion: 1.{i}\nArchitecture: all\nDescription: x\n long\n\n"
            ));
        }
        let ps = parse_packages(&text, 0).unwrap();
        assert_eq!(ps.len(), 20_000);
        assert!(
            ps.iter()
                .enumerate()
                .all(|(i, p)| p.name == format!("p{i}"))
        );
        assert!(split_at_paragraphs(&text, 8).len() > 1);
        // An error deep in the file reports its true line (paragraph 15000 starts at line 90001).
        let bad = text.replacen("Version: 1.15000\n", "Version: x\n", 1);
        let e = parse_packages(&bad, 0).unwrap_err();
        assert!(
            matches!(e, IndexError::BadVersion { line: 90001, .. }),
            "{e}"
        );
        let bad = text.replacen("Package: p17000\n", "p17000\n", 1);
        let e = parse_packages(&bad, 0).unwrap_err();
        assert!(
            matches!(e, IndexError::Control(ParseError { line: 102_001, .. })),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let text = "Package: a\nVersion: 1\nArchitecture: all\n\nPackage: b\nVersion: x1\nArchitecture: all\n";
        let e = parse_packages(text, 0).unwrap_err();
        assert!(
            matches!(
                e,
                IndexError::BadVersion {
                    line: 5,
                    field: "Version",
                    ..
                }
            ),
            "{e}"
        );
        let e = parse_packages("Package: a\nArchitecture: all\n", 0).unwrap_err();
        assert!(matches!(
            e,
            IndexError::MissingField {
                line: 1,
                field: "Version"
            }
        ));
        let e = parse_packages(
            "Package: a\nVersion: 1\nArchitecture: all\nDepends: b (>= \n",
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 1: field Depends"), "{e}");
        let e = parse_packages(
            "Package: a\nVersion: 1\nArchitecture: all\nConflicts: b | c\n",
            0,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            IndexError::BadRelation {
                field: "Conflicts",
                ..
            }
        ));
    }
}
