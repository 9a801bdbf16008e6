//! The image description: KIWI XML or YAML read into one element tree, included, upgraded,
//! validated, and resolved for the selected profiles, architecture and build type.
//!
//! # Public API
//!
//! - [`load`]`(path) -> Result<`[`Description`]`, `[`DescriptionError`]`>` reads a description file,
//!   or a directory holding `config.xml`, else its one `*.kiwi`, `*.yaml` or `*.yml` file. It
//!   splices `<include>`s, upgrades schema 7.4–8.5 to 8.5, and validates against the 8.5 grammar
//!   and the semantic rules that matter to container builds, reporting every problem found with
//!   `file:line:col`.
//! - [`Description::resolve`]`(&`[`Selection`]`) -> Result<`[`ResolvedImage`]`, `[`DescriptionError`]`>`
//!   applies profiles (`--profile`, else the `import="true"` ones, expanded through `requires`),
//!   the target architecture and the build type (`--type`, else `primary="true"`, else the first)
//!   and returns the typed image everything later reads. Every item keeps its source [`Loc`];
//!   [`ResolvedImage`] serialises to the stable JSON of `imgbuild info --format json`
//!   (documented in `docs/descriptions.md`).
//! - [`Description::to_xml`] / [`Description::to_yaml`] write the upgraded, included description
//!   in either markup; nothing the user wrote is dropped.
//!
//! Processing order: read (XML via quick-xml, YAML via yaml-rust2 events, both with positions) →
//! include splicing → schema upgrade → validation → resolution. Hostile input is bounded: files
//! over [`MAX_FILE_SIZE`] bytes, nesting deeper than [`MAX_DEPTH`], more than [`MAX_NODES`]
//! elements, DOCTYPEs, entity declarations, YAML aliases and invalid UTF-8 are refused with an error.

mod checks;
pub mod grammar;
mod model;
pub mod tree;
pub mod upgrade;
mod wellformed;
pub mod xml;
pub mod yaml;

pub use model::*;
pub use tree::{Attr, Loc, Node};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest description file accepted, in bytes.
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one file.
pub const MAX_NODES: usize = 200_000;
/// Most problems reported for one description; validation stops collecting after this many.
pub const MAX_DIAGNOSTICS: usize = 200;
/// Most attributes accepted on one element (KIWI's `<type>` defines about 130).
pub const MAX_ATTRS: usize = 256;

/// One problem found in a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where it is.
    pub loc: Loc,
    /// The element (`packages`) or attribute (`type@image`) concerned, or `xml`/`yaml` for syntax.
    pub subject: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `loc` about `subject`.
    pub fn new(loc: Loc, subject: &str, message: String) -> Self {
        Diagnostic {
            loc,
            subject: subject.to_string(),
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.loc, self.subject, self.message)
    }
}

/// Everything that can go wrong reading or resolving a description.
#[derive(Debug, thiserror::Error)]
pub enum DescriptionError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_FILE_SIZE`].
    #[error("{path}: file is {size} bytes; descriptions are limited to {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A directory holds no description file.
    #[error(
        "{dir}: no description found (expected config.xml, or one *.kiwi, *.yaml or *.yml file)"
    )]
    NotFound {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory holds several candidate description files and no config.xml.
    #[error("{dir}: several description files ({}); pass the one to use", .candidates.join(", "))]
    Ambiguous {
        /// The directory.
        dir: PathBuf,
        /// The candidates found.
        candidates: Vec<String>,
    },
    /// Syntax, schema or semantic errors, each with its position.
    #[error("{}", Diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// A profile named on the command line (or in `requires`) does not exist.
    #[error("profile {name:?} is not defined; defined profiles: {}", list(.known))]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The profiles the description defines.
        known: Vec<String>,
    },
    /// No `<type>` applies with the active profiles.
    #[error("no build type defined with profiles [{}]; profiles that define a type: {}", .active.join(", "), list(.candidates))]
    NoBuildType {
        /// The active profiles.
        active: Vec<String>,
        /// Profiles whose preferences define a type.
        candidates: Vec<String>,
    },
    /// `--type` names a type that no applicable `<type>` has.
    #[error("build type {requested:?} not found with profiles [{}]; available: {}", .active.join(", "), list(.available))]
    UnknownType {
        /// The type asked for.
        requested: String,
        /// The active profiles.
        active: Vec<String>,
        /// The types that would be accepted.
        available: Vec<String>,
    },
}

impl DescriptionError {
    /// The positioned problems, for an [`DescriptionError::Invalid`] error.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            DescriptionError::Invalid(d) => d,
            _ => &[],
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

struct Diagnostics<'a>(&'a [Diagnostic]);

impl fmt::Display for Diagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Which markup a file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Markup {
    /// KIWI XML.
    Xml,
    /// KIWI's YAML form.
    Yaml,
}

impl Markup {
    /// The markup of `path`, by extension: `.kiwi` files are XML unless they start like YAML.
    fn of(path: &Path, text: &str) -> Markup {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Markup::Yaml,
            Some("xml") => Markup::Xml,
            _ => {
                let head = text.trim_start_matches('\u{feff}').trim_start();
                if head.starts_with('<') {
                    Markup::Xml
                } else {
                    Markup::Yaml
                }
            }
        }
    }
}

/// The description file a path names: the file itself, or in a directory `config.xml`, else the
/// one `*.kiwi`, `*.yaml` or `*.yml` file.
pub fn find(path: &Path) -> Result<PathBuf, DescriptionError> {
    let meta = std::fs::metadata(path).map_err(|source| DescriptionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(path.to_path_buf());
    }
    let config = path.join("config.xml");
    if config.is_file() {
        return Ok(config);
    }
    let entries = std::fs::read_dir(path).map_err(|source| DescriptionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    for e in entries {
        let e = e.map_err(|source| DescriptionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let p = e.path();
        if p.is_file()
            && matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("kiwi" | "yaml" | "yml")
            )
        {
            found.push(p);
        }
    }
    found.sort();
    match found.len() {
        0 => Err(DescriptionError::NotFound {
            dir: path.to_path_buf(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(DescriptionError::Ambiguous {
            dir: path.to_path_buf(),
            candidates: found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect(),
        }),
    }
}

/// Read one description file (size-capped, UTF-8 checked) into a tree.
pub(crate) fn read_tree(path: &Path) -> Result<(Node, Markup), DescriptionError> {
    use std::io::Read;
    let io = |source| DescriptionError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_FILE_SIZE {
        return Err(DescriptionError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_FILE_SIZE,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // take() guards against a file that grows while being read
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(DescriptionError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit: MAX_FILE_SIZE,
        });
    }
    parse_bytes(&bytes, path)
}

/// Parse description bytes read from `path` (the path names the file in positions and decides
/// the markup). Used by [`load`] and by the fuzz targets.
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<(Node, Markup), DescriptionError> {
    let file: Arc<Path> = Arc::from(path);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = tree::byte_position(bytes, e.valid_up_to());
        DescriptionError::Invalid(vec![Diagnostic::new(
            Loc::new(&file, line, column),
            "encoding",
            "invalid UTF-8 (descriptions must be UTF-8)".into(),
        )])
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let markup = Markup::of(path, text);
    let node = match markup {
        Markup::Xml => xml::parse(text, &file)?,
        Markup::Yaml => yaml::parse(text, &file)?,
    };
    Ok((node, markup))
}

/// Read, include, upgrade and validate the description at `path` (a file or a directory).
pub fn load(path: &Path) -> Result<Description, DescriptionError> {
    let file = find(path)?;
    let (tree, markup) = read_tree(&file)?;
    Description::from_tree(tree, markup, &file)
}
