//! The architecture test: the module table in `docs/architecture.md` lists the top-level modules
//! in dependency order, foundations first, and a module may use only the modules listed above
//! it. This test reads that table (its only source) and every `.rs` file under `src/`, and fails
//! on each reference that goes against the order, naming the file, the line and the edge, so the
//! pipeline stays one-way and the document stays true.
//!
//! A reference is a path that reaches another top-level module: `crate::NAME`, a name inside
//! `use crate::{...}`, or enough `super::` to climb to the crate root; in the binary (`src/main.rs`
//! and `src/cli/`, the `cli` row) it is `imgbuild::NAME`. Files are tokenized, so comments
//! (doc comments included) and string literals never count, while paths inside macro calls do.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where the module table lives, relative to the package.
const DOC: &str = "docs/architecture.md";

/// This file: a test-only module, not part of the architecture it checks.
const SELF_MODULE: &str = "architecture_test";

/// The module the binary's files (`src/main.rs`, `src/cli/`) belong to.
const BINARY: &str = "cli";

/// One thing the checker found wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    /// The file, relative to the package (`src/...` or the document).
    file: String,
    /// The line, when the violation is one reference.
    line: Option<usize>,
    /// What is wrong.
    message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The result of a check: the violations, and how many cross-module references were seen (so a
/// scan that found nothing cannot pass unnoticed).
#[derive(Debug, Default)]
struct Report {
    violations: Vec<Violation>,
    references: usize,
}

/// The module names of the table in `doc`, in order: the table whose header's first cell is
/// `module`, each row's first cell a name in backticks.
fn table_order(doc: &str) -> Result<Vec<String>, String> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut lines = doc.lines();
    lines
        .find(|l| l.trim_start().starts_with('|') && cells(l)[0] == "module")
        .ok_or_else(|| format!("{DOC}: no table whose first column is `module`"))?;
    lines.next(); // the |---| line
    let mut order = Vec::new();
    for line in lines.take_while(|l| l.trim_start().starts_with('|')) {
        let first = &cells(line)[0];
        let name = first
            .strip_prefix('`')
            .and_then(|n| n.strip_suffix('`'))
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("{DOC}: row {line:?}: the module is not a `name`"))?;
        if order.iter().any(|o| o == name) {
            return Err(format!("{DOC}: module `{name}` is listed twice"));
        }
        order.push(name.to_string());
    }
    if order.is_empty() {
        return Err(format!("{DOC}: the module table has no rows"));
    }
    Ok(order)
}

/// Which top-level module a file under `src/` (path relative to `src/`) belongs to, whether it
/// is the binary's, and its module path inside its crate (for resolving `super::`). None for the
/// crate roots, which only declare the modules, and for this test.
fn owner(rel: &Path) -> Option<(String, bool, Vec<String>)> {
    let mut path: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = path.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if stem != "mod" {
        path.push(stem.to_string());
    }
    let top = path.first()?.clone();
    match top.as_str() {
        "lib" | SELF_MODULE => None,
        "main" => Some((BINARY.to_string(), true, Vec::new())),
        _ => Some((top.clone(), top == BINARY, path)),
    }
}

/// `tokens[i]` and `tokens[i + 1]` form `::`.
fn path_sep(tokens: &[TokenTree], i: usize) -> bool {
    match (tokens.get(i), tokens.get(i + 1)) {
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) => {
            a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
        }
        _ => false,
    }
}

fn ident_is(t: Option<&TokenTree>, name: &str) -> bool {
    matches!(t, Some(TokenTree::Ident(i)) if i == name)
}

/// The modules a path segment at `tokens[i]` names, with their lines: one name, or the first
/// name of each item of a `{...}` list.
fn named_at(tokens: &[TokenTree], i: usize, out: &mut Vec<(usize, String)>) {
    match tokens.get(i) {
        Some(TokenTree::Ident(id)) => {
            let name = id.to_string();
            if !matches!(name.as_str(), "self" | "super" | "crate") {
                out.push((id.span().start().line, name));
            }
        }
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
            let inner: Vec<TokenTree> = g.stream().into_iter().collect();
            let mut at_item_start = true;
            for (k, t) in inner.iter().enumerate() {
                if at_item_start {
                    named_at(&inner, k, out);
                }
                at_item_start = matches!(t, TokenTree::Punct(p) if p.as_char() == ',');
            }
        }
        _ => {}
    }
}

/// Collects the top-level modules `stream` refers to. `module` is the module path of the
/// tokens (it grows inside inline `mod NAME { ... }`); `binary` selects `imgbuild::` paths
/// instead of `crate::` and `super::` ones.
fn scan(
    stream: TokenStream,
    module: &mut Vec<String>,
    binary: bool,
    out: &mut Vec<(usize, String)>,
) {
    let tokens: Vec<TokenTree> = stream.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        if ident_is(tokens.get(i), "mod")
            && let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(body))) =
                (tokens.get(i + 1), tokens.get(i + 2))
            && body.delimiter() == Delimiter::Brace
        {
            module.push(name.to_string());
            scan(body.stream(), module, binary, out);
            module.pop();
            i += 3;
            continue;
        }
        // Only where a path starts: `a::crate` is no path of ours.
        let starts = i < 2 || !path_sep(&tokens, i - 2);
        if starts && path_sep(&tokens, i + 1) {
            if binary {
                if ident_is(tokens.get(i), "imgbuild") {
                    named_at(&tokens, i + 3, out);
                }
            } else if ident_is(tokens.get(i), "crate") {
                named_at(&tokens, i + 3, out);
            } else if ident_is(tokens.get(i), "super") {
                let mut j = i;
                let mut ups = 0;
                while ident_is(tokens.get(j), "super") && path_sep(&tokens, j + 1) {
                    ups += 1;
                    j += 3;
                }
                // Climbing exactly to the crate root: the next segment is a top-level module.
                if ups == module.len() {
                    named_at(&tokens, j, out);
                }
                i = j;
                continue;
            }
        }
        if let TokenTree::Group(g) = &tokens[i] {
            scan(g.stream(), module, binary, out);
        }
        i += 1;
    }
}

/// Checks `files` (paths relative to `src/`, with their text) against `order`, the module table.
fn check(order: &[String], files: &[(PathBuf, String)]) -> Report {
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut report = Report::default();
    let mut seen_modules = BTreeSet::new();
    let mut unlisted = BTreeSet::new();
    for (rel, text) in files {
        let Some((from, binary, mut module)) = owner(rel) else {
            continue;
        };
        let file = format!("src/{}", rel.display());
        seen_modules.insert(from.clone());
        if !rank.contains_key(from.as_str()) && unlisted.insert(from.clone()) {
            report.violations.push(Violation {
                file: file.clone(),
                line: None,
                message: format!("module `{from}` is not in the module table of {DOC}"),
            });
        }
        let stream = match TokenStream::from_str(text) {
            Ok(s) => s,
            Err(e) => {
                report.violations.push(Violation {
                    file,
                    line: None,
                    message: format!("cannot be tokenized: {e}"),
                });
                continue;
            }
        };
        let mut refs = Vec::new();
        scan(stream, &mut module, binary, &mut refs);
        for (line, to) in refs {
            if to == from {
                continue;
            }
            report.references += 1;
            let problem = match (rank.get(from.as_str()), rank.get(to.as_str())) {
                (_, None) => format!("`{to}` is not in the module table of {DOC}"),
                (Some(f), Some(t)) if t > f => {
                    format!("`{to}` is listed below `{from}` in {DOC}")
                }
                _ => continue,
            };
            report.violations.push(Violation {
                file: file.clone(),
                line: Some(line),
                message: format!("{from} -> {to}: {problem}"),
            });
        }
    }
    for m in order {
        if !seen_modules.contains(m) {
            report.violations.push(Violation {
                file: DOC.to_string(),
                line: None,
                message: format!("module `{m}` is in the table but src/ has no such module"),
            });
        }
    }
    report.violations.sort();
    report
}

/// Every `.rs` file under `dir`, relative to it, with its text, in path order.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path()).to_path_buf();
            (rel, text)
        })
        .collect()
}

#[test]
fn the_code_follows_the_documented_module_order() {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(package.join(DOC))
        .unwrap_or_else(|e| panic!("{}: {e}", package.join(DOC).display()));
    let order = table_order(&doc).unwrap_or_else(|e| panic!("{e}"));
    let report = check(&order, &sources(&package.join("src")));
    let listed: Vec<String> = report
        .violations
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    assert!(
        listed.is_empty(),
        "imports against the module order of {DOC} (a module may use only those listed above it):\n{}",
        listed.join("\n")
    );
    // A scan that found no references at all would pass anything.
    assert!(
        report.references > 100,
        "only {} references found",
        report.references
    );
}

#[test]
fn the_table_is_read_in_order() {
    let doc = "# A\n\ntext | not a table\n\n| module | what |\n|---|---|\n| `a` | x |\n| `b_2` | y |\n\nafter\n| `c` | z |\n";
    assert_eq!(table_order(doc).unwrap(), ["a", "b_2"]);
    assert!(table_order("| module | what |\n|---|---|\n| `a` | x |\n| `a` | y |\n").is_err());
    assert!(table_order("| module | what |\n|---|---|\n| a | x |\n").is_err());
    assert!(table_order("no table\n").is_err());
}

#[test]
fn a_back_edge_is_reported_and_decoys_are_not() {
    let order: Vec<String> = ["a", "b", "c", "cli"].map(String::from).into();
    let file = |p: &str, text: &str| (PathBuf::from(p), text.to_string());
    let clean = vec![
        file(
            "lib.rs",
            "pub mod a; pub mod b; pub mod c;\nuse crate::c as _;\n",
        ),
        file(
            "a.rs",
            concat!(
                "//! See [`crate::c`].\n",
                "// crate::c::x() would be a back edge\n",
                "/* crate::b */\n",
                "const S: &str = \"crate::c::y\";\n",
                "pub(crate) fn f() {}\n",
                "mod tests { use super::*; use super::super::a::f; }\n",
            ),
        ),
        file("b.rs", "use crate::a::f;\npub mod inner;\n"),
        file(
            "b/inner.rs",
            "fn g() { super::super::a::f(); super::x(); }\n",
        ),
        file(
            "c.rs",
            "use crate::{\n    a::f,\n    b::{self, inner},\n};\nfn h() { assert!(matches!(1, crate::b::X)); }\n",
        ),
        file(
            "main.rs",
            "mod cli;\nfn main() { imgbuild::c::h(); crate::cli::run(); }\n",
        ),
        file(
            "cli/mod.rs",
            "use imgbuild::{a, b::inner};\nuse super::main;\n",
        ),
    ];
    let report = check(&order, &clean);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    // b -> a; b/inner -> a; c -> a, b, b (in the macro); main -> c; cli -> a, b. The tests
    // module of a.rs climbs to `a` itself, which is no edge.
    assert_eq!(report.references, 8);

    let mut broken = clean.clone();
    // A back edge three ways: a plain path, inside a `use` list, and by climbing with super.
    broken[1].1.push_str("fn back() { crate::c::h(); }\n");
    broken[2].1.push_str("use crate::{a, cli};\n");
    broken[3]
        .1
        .push_str("fn up() {\n    super::super::c::h();\n}\n");
    // A module the table does not list, and one the source does not have.
    broken.push(file("d.rs", "use crate::a;\n"));
    broken.push(file("c/deep.rs", "use crate::d::x;\n"));
    broken.retain(|(p, _)| p != Path::new("main.rs") && p != Path::new("cli/mod.rs"));
    let got: Vec<String> = check(&order, &broken)
        .violations
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            format!("{DOC}: module `cli` is in the table but src/ has no such module"),
            format!("src/a.rs:7: a -> c: `c` is listed below `a` in {DOC}"),
            format!("src/b.rs:3: b -> cli: `cli` is listed below `b` in {DOC}"),
            format!("src/b/inner.rs:3: b -> c: `c` is listed below `b` in {DOC}"),
            format!("src/c/deep.rs:1: c -> d: `d` is not in the module table of {DOC}"),
            format!("src/d.rs: module `d` is not in the module table of {DOC}"),
        ]
    );
}
