//! The element and attribute grammar of KIWI schema 8.5, and structural validation against it.
//!
//! The tables live in `schemas/kiwi-8.5.grammar.json`, generated from KIWI's `kiwi.rnc` by
//! `schemas/generate.py`; they are compiled into the binary and parsed once. Children and
//! attributes are checked for name, count and value; schematron rules that restrict an
//! attribute to some image, repository, packages or container types are checked too.

use super::Diagnostic;
use super::tree::Node;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const GRAMMAR_JSON: &str = include_str!("../../schemas/kiwi-8.5.grammar.json");

/// The whole grammar.
#[derive(Debug, Deserialize)]
pub struct Grammar {
    /// Every element of the schema, by name.
    pub elements: BTreeMap<String, ElementDef>,
    /// Schematron rules that tie an attribute to the types of an enclosing element.
    pub rules: Vec<Rule>,
    #[serde(skip)]
    patterns: BTreeMap<String, Regex>,
}

/// What one element may contain.
#[derive(Debug, Deserialize)]
pub struct ElementDef {
    /// Allowed attributes.
    pub attributes: BTreeMap<String, AttrDef>,
    /// Allowed children: (minimum, maximum) where the maximum is 1 or "n".
    pub children: BTreeMap<String, (u32, Max)>,
    /// Whether character data is allowed.
    pub text: bool,
    /// Whether any foreign content is allowed (`<extension>`).
    pub any: bool,
    /// What the text may be, where the schema restricts it (`<packagemanager>`: a list of
    /// names; `<rpm-excludedocs>`: a boolean); absent for free text.
    #[serde(default)]
    pub content: Option<Vec<ValueType>>,
}

/// Upper bound of a child count.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(untagged)]
pub enum Max {
    /// At most this many.
    Count(u32),
    /// Unbounded.
    Many(ManyMarker),
}

/// The literal `"n"`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
pub enum ManyMarker {
    /// Unbounded.
    #[serde(rename = "n")]
    N,
}

/// One attribute: whether it is required and the values it takes.
#[derive(Debug, Deserialize)]
pub struct AttrDef {
    /// 1 when required.
    pub min: u32,
    /// Alternatives; the value must match one.
    #[serde(rename = "type")]
    pub types: Vec<ValueType>,
}

/// One alternative for an attribute value.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ValueType {
    /// A fixed list of values.
    Values {
        /// The allowed values.
        values: Vec<String>,
    },
    /// An XSD datatype, optionally restricted by a pattern.
    Data {
        /// XSD type name (`string`, `token`, `boolean`, `nonNegativeInteger`, ...).
        data: String,
        /// XSD pattern (anchored).
        #[serde(default)]
        pattern: Option<String>,
    },
}

/// A schematron rule from the schema.
#[derive(Debug, Deserialize)]
pub struct Rule {
    /// The abstract pattern (`image_type`, `repo_type`, `container_type`, ...).
    pub kind: String,
    /// The element the rule is about.
    pub element: String,
    /// The attribute it restricts.
    #[serde(default)]
    pub attr: Option<String>,
    /// The types it allows or requires.
    #[serde(default)]
    pub types: Vec<String>,
}

/// The grammar, parsed once.
///
/// # Panics
///
/// If the compiled-in grammar is not valid JSON of this shape, which the unit tests rule out.
pub fn grammar() -> &'static Grammar {
    static G: OnceLock<Grammar> = OnceLock::new();
    G.get_or_init(|| {
        // The JSON is compiled in and checked by the tests, so a failure here is a build defect.
        let mut g: Grammar = match serde_json::from_str(GRAMMAR_JSON) {
            Ok(g) => g,
            Err(e) => panic!("schemas/kiwi-8.5.grammar.json is not a valid grammar: {e}"),
        };
        for e in g.elements.values() {
            for a in e.attributes.values() {
                for t in &a.types {
                    if let ValueType::Data {
                        pattern: Some(p), ..
                    } = t
                        && let Ok(re) = Regex::new(&format!("^(?:{p})$"))
                    {
                        g.patterns.insert(p.clone(), re);
                    }
                }
            }
        }
        g
    })
}

impl Grammar {
    /// Check `root` (an `<image>`) against the grammar; problems are appended to `out`.
    pub fn validate(&self, root: &Node, out: &mut Vec<Diagnostic>) {
        if root.name != "image" {
            out.push(Diagnostic::new(
                root.loc.clone(),
                &root.name,
                "the root element must be <image>".into(),
            ));
            return;
        }
        self.element(root, out);
        self.rules(root, None, out);
    }

    fn element(&self, n: &Node, out: &mut Vec<Diagnostic>) {
        if out.len() >= super::MAX_DIAGNOSTICS {
            return;
        }
        let Some(def) = self.elements.get(&n.name) else {
            return;
        };
        if def.any {
            return;
        }
        for a in &n.attrs {
            match def.attributes.get(&a.name) {
                None => out.push(Diagnostic::new(
                    a.loc.clone(),
                    &format!("{}@{}", n.name, a.written_name()),
                    format!(
                        "unknown attribute;{} <{}> takes: {}",
                        did_you_mean(a.written_name(), def.attributes.keys()),
                        n.name,
                        list(def.attributes.keys())
                    ),
                )),
                Some(ad) => {
                    if let Err(expected) = self.check_value(&a.value, &ad.types) {
                        out.push(Diagnostic::new(
                            a.loc.clone(),
                            &format!("{}@{}", n.name, a.written_name()),
                            format!(
                                "invalid value {:?};{} expected {expected}",
                                a.written_value(),
                                did_you_mean(a.written_value(), enumerated(&ad.types)),
                            ),
                        ));
                    }
                }
            }
        }
        for (name, ad) in &def.attributes {
            if ad.min > 0 && n.attr(name).is_none() {
                out.push(Diagnostic::new(
                    n.loc.clone(),
                    &n.name,
                    format!("required attribute {name} is missing"),
                ));
            }
        }
        if n.text.is_some() && !def.text {
            out.push(Diagnostic::new(
                n.loc.clone(),
                &n.name,
                "element takes no text content".into(),
            ));
        }
        if let (Some(text), Some(types)) = (&n.text, &def.content)
            && let Err(expected) = self.check_value(text, types)
        {
            out.push(Diagnostic::new(
                n.loc.clone(),
                &n.name,
                format!(
                    "invalid value {text:?};{} expected {expected}",
                    did_you_mean(text, enumerated(types)),
                ),
            ));
        }
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for c in &n.children {
            match def.children.get(&c.name) {
                None => out.push(Diagnostic::new(
                    c.loc.clone(),
                    &c.name,
                    if def.children.is_empty() {
                        format!("unknown element; <{}> takes no child elements", n.name)
                    } else {
                        format!(
                            "unknown element in <{}>;{} expected one of: {}",
                            n.name,
                            did_you_mean(&c.name, def.children.keys()),
                            list(def.children.keys())
                        )
                    },
                )),
                Some((_, max)) => {
                    let k = counts.entry(c.name.as_str()).or_insert(0);
                    *k += 1;
                    if let Max::Count(m) = max
                        && *k == m + 1
                    {
                        out.push(Diagnostic::new(
                            c.loc.clone(),
                            &c.name,
                            format!("<{}> takes at most {m} <{}>", n.name, c.name),
                        ));
                    }
                    self.element(c, out);
                }
            }
        }
        for (name, (min, _)) in &def.children {
            if *min > 0 && counts.get(name.as_str()).copied().unwrap_or(0) < *min {
                out.push(Diagnostic::new(
                    n.loc.clone(),
                    &n.name,
                    format!("required element <{name}> is missing"),
                ));
            }
        }
    }

    /// Ok, or a description of what was expected.
    pub fn check_value(&self, v: &str, types: &[ValueType]) -> Result<(), String> {
        let mut expected = Vec::new();
        for t in types {
            match t {
                ValueType::Values { values } => {
                    if values.iter().any(|x| x == v.trim()) {
                        return Ok(());
                    }
                    expected.push(format!("one of {}", values.join("|")));
                }
                ValueType::Data { data, pattern } => {
                    let tok = v.trim();
                    let type_ok = match data.as_str() {
                        "boolean" => matches!(tok, "true" | "false" | "1" | "0"),
                        "nonNegativeInteger" => {
                            !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit())
                        }
                        "positiveInteger" => tok.parse::<u64>().is_ok_and(|n| n > 0),
                        "integer" => tok.parse::<i64>().is_ok(),
                        "decimal" => tok.parse::<f64>().is_ok(),
                        _ => true,
                    };
                    let pat_ok = match pattern {
                        Some(p) => self.patterns.get(p).is_none_or(|re| re.is_match(tok)),
                        None => true,
                    };
                    if type_ok && pat_ok {
                        return Ok(());
                    }
                    expected.push(match pattern {
                        Some(p) => format!("a value matching {p}"),
                        None => format!("xsd:{data}"),
                    });
                }
            }
        }
        Err(expected.join(" or "))
    }

    /// Schematron rules restricting attributes to the types of the element or its parent.
    fn rules(&self, n: &Node, parent: Option<&Node>, out: &mut Vec<Diagnostic>) {
        if out.len() >= super::MAX_DIAGNOSTICS {
            return;
        }
        for r in self.rules.iter().filter(|r| r.element == n.name) {
            let Some(attr) = r.attr.as_deref() else {
                continue;
            };
            match r.kind.as_str() {
                "image_type" | "repo_type" | "packages_type" => {
                    let key = match r.kind.as_str() {
                        "image_type" => "image",
                        _ => "type",
                    };
                    if let Some(a) = n.attr(attr)
                        && self.attr_valid(n, key)
                    {
                        let ty =
                            n.get(key)
                                .unwrap_or(if r.kind == "repo_type" { "rpm-md" } else { "" });
                        if !r.types.iter().any(|t| t == ty) {
                            out.push(Diagnostic::new(
                                a.loc.clone(),
                                &format!("{}@{}", n.name, a.written_name()),
                                format!(
                                    "only available for the following {} types: {}",
                                    if r.kind == "image_type" {
                                        "image"
                                    } else if r.kind == "repo_type" {
                                        "repository"
                                    } else {
                                        "packages"
                                    },
                                    r.types.join(" ")
                                ),
                            ));
                        }
                    }
                }
                "image_type_requirement" => {
                    let ty = n.get("image").unwrap_or("");
                    if r.types.iter().any(|t| t == ty) && n.attr(attr).is_none() {
                        // (an invalid image value matches no type, so nothing cascades here)
                        out.push(Diagnostic::new(
                            n.loc.clone(),
                            &n.name,
                            format!(
                                "{attr} attribute must be set for the following image types: {}",
                                r.types.join(" ")
                            ),
                        ));
                    }
                }
                "container_type" => {
                    if let (Some(a), Some(p)) = (n.attr(attr), parent)
                        && self.attr_valid(p, "image")
                    {
                        let ty = p.get("image").unwrap_or("");
                        if !r.types.iter().any(|t| t == ty) {
                            out.push(Diagnostic::new(
                                a.loc.clone(),
                                &format!("containerconfig@{}", a.written_name()),
                                format!(
                                    "containerconfig({}) is only available for the following image types: {}",
                                    a.written_name(),
                                    r.types.join(" ")
                                ),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        if !self.elements.get(&n.name).is_some_and(|d| d.any) {
            for c in &n.children {
                self.rules(c, Some(n), out);
            }
        }
    }
}

impl Grammar {
    /// Whether `n`'s attribute `attr` is absent or has a value the grammar allows: rules that
    /// depend on a value already reported as invalid are not checked, so one typo gives one
    /// error.
    fn attr_valid(&self, n: &Node, attr: &str) -> bool {
        let Some(value) = n.get(attr) else {
            return true;
        };
        self.elements
            .get(&n.name)
            .and_then(|d| d.attributes.get(attr))
            .is_none_or(|ad| self.check_value(value, &ad.types).is_ok())
    }
}

/// The enumerated values among `types`.
fn enumerated(types: &[ValueType]) -> impl Iterator<Item = &String> {
    types.iter().flat_map(|t| match t {
        ValueType::Values { values } => values.as_slice(),
        ValueType::Data { .. } => &[],
    })
}

/// The candidate closest to `word`, when one is close enough to be a likely typo.
pub fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a String>,
) -> Option<&'a str> {
    let word = word.trim();
    if word.is_empty() {
        return None;
    }
    // A typo changes about one character in three at most (dokcer, pakages, imgae).
    let limit = word.chars().count().div_ceil(3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= limit && c.as_str() != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// ` did you mean `x`?` for the closest candidate, or nothing.
fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a String>) -> String {
    closest(word, candidates).map_or_else(String::new, |c| format!(" did you mean `{c}`?"))
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_loads_and_knows_the_container_elements() {
        let g = grammar();
        for e in [
            "image",
            "containerconfig",
            "entrypoint",
            "repository",
            "packages",
            "users",
        ] {
            assert!(g.elements.contains_key(e), "{e}");
        }
        let ty = &g.elements["type"];
        assert!(ty.attributes.contains_key("derived_from"));
        assert!(
            g.check_value("docker", &ty.attributes["image"].types)
                .is_ok()
        );
        assert!(
            g.check_value("dokcer", &ty.attributes["image"].types)
                .is_err()
        );
        let pm = g.elements["packagemanager"].content.as_ref().unwrap();
        assert!(g.check_value("apt", pm).is_ok());
        assert!(g.check_value("aptitude", pm).is_err());
        assert!(g.elements["author"].content.is_none());
        let port = &g.elements["port"].attributes["number"];
        assert!(g.check_value("80/tcp", &port.types).is_ok());
        assert!(g.check_value("80/sctp", &port.types).is_err());
    }

    #[test]
    fn suggests_only_close_candidates() {
        let names: Vec<String> = ["docker", "oci", "packages", "package", "image"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("dokcer", &names), Some("docker"));
        assert_eq!(closest("pakages", &names), Some("packages"));
        assert_eq!(closest("imgae", &names), Some("image"));
        assert_eq!(closest("docker", &names), None);
        assert_eq!(closest("zypper", &names), None);
        assert_eq!(closest("", &names), None);
    }
}
