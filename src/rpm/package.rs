//! One package of an rpm-md repository as its `primary` metadata describes it, and the
//! dependency model those entries use: simple dependencies (`name`, `name >= 1.0`) and rich
//! (boolean) dependencies (`(a or b)`, `(a if b else c)`).

use super::version::Evr;
use std::fmt;

/// A version comparison of a dependency, as primary.xml spells it (`LT`, `LE`, `EQ`, `GE`, `GT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=`
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl Cmp {
    /// The comparison a primary.xml `flags` attribute names.
    pub fn from_flags(flags: &str) -> Option<Cmp> {
        Some(match flags {
            "LT" => Cmp::Lt,
            "LE" => Cmp::Le,
            "EQ" => Cmp::Eq,
            "GE" => Cmp::Ge,
            "GT" => Cmp::Gt,
            _ => return None,
        })
    }

    /// The operator as written in a spec file or a rich dependency.
    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "=",
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
        }
    }
}

/// A simple dependency or provide: a name with an optional versioned comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dep {
    /// The capability name: a package name, a virtual name, a file path, `pattern()`, ….
    pub name: String,
    /// The comparison and the EVR it compares with; `None` for an unversioned dependency.
    pub version: Option<(Cmp, Evr)>,
    /// `pre="1"`: needed before the package's scriptlets run (`Requires(pre)`).
    pub pre: bool,
}

impl Dep {
    /// An unversioned dependency on `name`.
    pub fn named(name: impl Into<String>) -> Dep {
        Dep {
            name: name.into(),
            version: None,
            pre: false,
        }
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((cmp, evr)) = &self.version {
            write!(f, " {} {evr}", cmp.as_str())?;
        }
        Ok(())
    }
}

/// A requirement: a simple dependency, or a rich (boolean) one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// `name [op evr]`.
    Simple(Dep),
    /// `(…)`: a boolean expression of requirements.
    Rich(Box<Rich>),
}

/// A rich dependency, as rpm 4.13+ writes them (`and`, `or`, `if`/`else`, `unless`/`else`,
/// `with`, `without`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rich {
    /// `(a and b and …)`: all of them.
    And(Vec<Requirement>),
    /// `(a or b or …)`: at least one of them.
    Or(Vec<Requirement>),
    /// `(a if b [else c])`: `a` is needed when `b` is installed, else `c` (when given).
    If(Requirement, Requirement, Option<Requirement>),
    /// `(a unless b [else c])`: `a` is needed unless `b` is installed, then `c` (when given).
    Unless(Requirement, Requirement, Option<Requirement>),
    /// `(a with b with …)`: one package that satisfies all of them.
    With(Vec<Requirement>),
    /// `(a without b)`: one package that satisfies `a` but not `b`.
    Without(Requirement, Requirement),
}

/// A package's checksum in the repository metadata (`<checksum type="sha256">`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checksum {
    /// `sha256`, `sha512`, `sha1`, ….
    pub kind: String,
    /// Lower-case hex.
    pub hex: String,
}

/// One package of a repository's `primary` metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Architecture (`x86_64`, `noarch`, `aarch64`, …).
    pub arch: String,
    /// Epoch, version and release (the epoch is `Some(0)` when primary.xml says `epoch="0"`).
    pub evr: Evr,
    /// Checksum of the `.rpm` file (the package id).
    pub checksum: Checksum,
    /// `<location href>`: path relative to the repository (or to `base`).
    pub location: String,
    /// `<location xml:base>`: where the package lives when not beside the metadata.
    pub location_base: Option<String>,
    /// Size of the `.rpm` file in bytes.
    pub size: u64,
    /// Installed size in bytes.
    pub installed_size: u64,
    /// One-line summary.
    pub summary: String,
    /// `<rpm:license>`.
    pub license: String,
    /// `<rpm:vendor>`.
    pub vendor: String,
    /// `<url>`: the project's home page, when given.
    pub url: Option<String>,
    /// `<rpm:sourcerpm>`.
    pub sourcerpm: String,
    /// `<time build>`.
    pub buildtime: u64,
    /// What the package provides (its own `name = evr` included, as rpm records it).
    pub provides: Vec<Dep>,
    /// What it requires.
    pub requires: Vec<Requirement>,
    /// What it conflicts with.
    pub conflicts: Vec<Dep>,
    /// What it obsoletes (replaces).
    pub obsoletes: Vec<Dep>,
    /// Weak forward dependencies, installed unless only required packages are wanted.
    pub recommends: Vec<Requirement>,
    /// Weaker forward dependencies, not installed by default.
    pub suggests: Vec<Requirement>,
    /// Weak reverse dependencies: the package is recommended when these are installed.
    pub supplements: Vec<Requirement>,
    /// Weaker reverse dependencies.
    pub enhances: Vec<Requirement>,
    /// The files primary.xml lists (the `/etc/*`, `*bin/*` and `/usr/lib/sendmail` subset);
    /// the complete list is in `filelists`.
    pub files: Vec<String>,
    /// Index of the repository it came from, in the order repositories were given.
    pub repo: usize,
}

impl Package {
    /// `name-[epoch:]version-release.arch`, as rpm and zypper print a package.
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr, self.arch)
    }
}
