//! KIWI's YAML form (the xmltodict convention) into the element tree, and the tree back out.
//!
//! Attributes are keys prefixed `@`, element text is `#text`, repeated elements are lists and a
//! text-only element may be a plain scalar. Plain `true`/`True`/`TRUE` (and false) read as
//! `true`/`false`; numbers keep the spelling they were written with. Aliases are refused, so an
//! anchor bomb cannot expand; depth and node counts are capped.

use super::tree::{Attr, Loc, Node};
use super::{DescriptionError, Diagnostic, MAX_ATTRS, MAX_DEPTH, MAX_NODES};
use std::path::Path;
use std::sync::Arc;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

enum Y {
    Null(Loc),
    Str(String, Loc),
    Seq(Vec<Y>, Loc),
    Map(Vec<(String, Loc, Y)>, Loc),
}

impl Y {
    fn loc(&self) -> &Loc {
        match self {
            Y::Null(l) | Y::Str(_, l) | Y::Seq(_, l) | Y::Map(_, l) => l,
        }
    }
}

fn loc_of(file: &Arc<Path>, m: &Marker) -> Loc {
    let line = u32::try_from(m.line()).unwrap_or(u32::MAX);
    let col = u32::try_from(m.col() + 1).unwrap_or(u32::MAX);
    Loc::new(file, line.max(1), col)
}

fn err(loc: Loc, subject: &str, message: String) -> DescriptionError {
    DescriptionError::Invalid(vec![Diagnostic::new(loc, subject, message)])
}

/// Parse a YAML document whose single top-level key is the root element (`image`).
pub(crate) fn parse(text: &str, file: &Arc<Path>) -> Result<Node, DescriptionError> {
    let doc = read_events(text, file)?;
    let Some(doc) = doc else {
        return Err(err(
            Loc::new(file, 1, 1),
            "yaml",
            "document is empty".into(),
        ));
    };
    match doc {
        Y::Map(entries, loc) => {
            let mut it = entries.into_iter();
            match (it.next(), it.next()) {
                (Some((k, kloc, v)), None) => element(k, kloc, v),
                _ => Err(err(
                    loc,
                    "yaml",
                    "the document must be a mapping with the single key `image`".into(),
                )),
            }
        }
        other => Err(err(
            other.loc().clone(),
            "yaml",
            "the document must be a mapping with the single key `image`".into(),
        )),
    }
}

enum Frame {
    Seq(Vec<Y>, Loc),
    Map(
        Vec<(String, Loc, Y)>,
        Loc,
        Option<(String, Loc)>,
        std::collections::HashSet<String>,
    ),
}

fn read_events(text: &str, file: &Arc<Path>) -> Result<Option<Y>, DescriptionError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut result: Option<Y> = None;
    let mut nodes = 0usize;
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            err(
                loc_of(file, e.marker()),
                "yaml",
                format!("malformed YAML: {}", e.info()),
            )
        })?;
        let loc = loc_of(file, &mark);
        let value = match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(err(loc, "yaml", "only one YAML document is allowed".into()));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(err(
                    loc,
                    "yaml",
                    "YAML aliases are not allowed in descriptions (write the value out)".into(),
                ));
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                nodes += 1;
                if stack.len() >= 2 * MAX_DEPTH || nodes > MAX_NODES {
                    return Err(err(
                        loc,
                        "yaml",
                        format!(
                            "document nested deeper than {} levels or larger than {MAX_NODES} nodes",
                            2 * MAX_DEPTH
                        ),
                    ));
                }
                if matches!(event, Event::SequenceStart(..)) {
                    stack.push(Frame::Seq(Vec::new(), loc));
                } else {
                    stack.push(Frame::Map(
                        Vec::new(),
                        loc,
                        None,
                        std::collections::HashSet::default(),
                    ));
                }
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(items, l)) => Y::Seq(items, l),
                Some(Frame::Map(entries, l, _, _)) => Y::Map(entries, l),
                None => return Err(err(loc, "yaml", "unbalanced collection".into())),
            },
            Event::Scalar(s, style, _, _) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(err(loc, "yaml", format!("more than {MAX_NODES} nodes")));
                }
                scalar(s, style, loc)
            }
        };
        match stack.last_mut() {
            None => result = Some(value),
            Some(Frame::Seq(items, _)) => items.push(value),
            Some(Frame::Map(entries, _, pending, keys)) => match pending.take() {
                None => match value {
                    Y::Str(k, kl) => {
                        if !keys.insert(k.clone()) {
                            return Err(err(kl, &k, "key given twice in one mapping".into()));
                        }
                        *pending = Some((k, kl));
                    }
                    Y::Null(kl) => *pending = Some((String::new(), kl)),
                    other => {
                        return Err(err(
                            other.loc().clone(),
                            "yaml",
                            "mapping keys must be plain strings".into(),
                        ));
                    }
                },
                Some((k, kl)) => entries.push((k, kl, value)),
            },
        }
    }
    Ok(result)
}

fn scalar(s: String, style: TScalarStyle, loc: Loc) -> Y {
    if style == TScalarStyle::Plain {
        match s.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => return Y::Null(loc),
            "true" | "True" | "TRUE" => return Y::Str("true".into(), loc),
            "false" | "False" | "FALSE" => return Y::Str("false".into(), loc),
            _ => {}
        }
    }
    Y::Str(s, loc)
}

fn element(name: String, loc: Loc, value: Y) -> Result<Node, DescriptionError> {
    if name.is_empty() || name.starts_with(['@', '#']) {
        return Err(err(loc, &name, "expected an element name here".into()));
    }
    let mut node = Node::new(name, loc);
    match value {
        Y::Null(_) => {}
        Y::Str(s, _) => node.text = non_empty(&s),
        Y::Seq(_, l) => {
            return Err(err(
                l,
                &node.name,
                "a list of lists is not a description element".into(),
            ));
        }
        Y::Map(entries, _) => {
            for (k, kl, v) in entries {
                if let Some(attr) = k.strip_prefix('@') {
                    if node.attrs.len() >= MAX_ATTRS {
                        return Err(err(
                            kl,
                            &node.name,
                            format!("more than {MAX_ATTRS} attributes on one element"),
                        ));
                    }
                    let value = match v {
                        Y::Null(_) => String::new(),
                        Y::Str(s, _) => s,
                        other => {
                            return Err(err(
                                other.loc().clone(),
                                &format!("{}@{attr}", node.name),
                                "an attribute value must be a scalar".into(),
                            ));
                        }
                    };
                    node.attrs.push(Attr::new(attr, value, kl));
                } else if k == "#text" {
                    match v {
                        Y::Null(_) => {}
                        Y::Str(s, _) => node.text = non_empty(&s),
                        other => {
                            return Err(err(
                                other.loc().clone(),
                                &node.name,
                                "#text must be a scalar".into(),
                            ));
                        }
                    }
                } else if let Y::Seq(items, _) = v {
                    for item in items {
                        // a mapping item is located at its first key, where the reader's eye is
                        let l = match &item {
                            Y::Map(entries, l) => entries.first().map_or(l, |e| &e.1).clone(),
                            other => other.loc().clone(),
                        };
                        node.children.push(element(k.clone(), l, item)?);
                    }
                } else {
                    node.children.push(element(k, kl, v)?);
                }
            }
        }
    }
    Ok(node)
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

/// Write the tree in KIWI's YAML convention: children grouped by name in order of first
/// appearance, lists for repeats, every scalar double-quoted so no value changes type.
pub fn write(root: &Node) -> String {
    let mut out = String::new();
    out.push_str(&root.name);
    out.push(':');
    match block(root) {
        Block::Scalar(s) => {
            out.push(' ');
            out.push_str(&s);
            out.push('\n');
        }
        Block::Lines(l) => {
            out.push('\n');
            indent(&l, "  ", "  ", &mut out);
        }
    }
    out
}

enum Block {
    Scalar(String),
    Lines(String),
}

fn block(n: &Node) -> Block {
    if n.attrs.is_empty() && n.children.is_empty() {
        let mut s = String::new();
        match &n.text {
            Some(t) => quote(t, &mut s),
            None => s.push_str("null"),
        }
        return Block::Scalar(s);
    }
    let mut out = String::new();
    for a in &n.attrs {
        out.push_str("'@");
        out.push_str(&a.name);
        out.push_str("': ");
        quote(&a.value, &mut out);
        out.push('\n');
    }
    if let Some(t) = &n.text {
        out.push_str("'#text': ");
        quote(t, &mut out);
        out.push('\n');
    }
    let mut names: Vec<&str> = Vec::new();
    for c in &n.children {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
    }
    for name in names {
        let group: Vec<&Node> = n.children_named(name).collect();
        out.push_str(name);
        out.push(':');
        if let [single] = group.as_slice() {
            match block(single) {
                Block::Scalar(s) => {
                    out.push(' ');
                    out.push_str(&s);
                    out.push('\n');
                }
                Block::Lines(l) => {
                    out.push('\n');
                    indent(&l, "  ", "  ", &mut out);
                }
            }
        } else {
            out.push('\n');
            for c in group {
                match block(c) {
                    Block::Scalar(s) => {
                        out.push_str("- ");
                        out.push_str(&s);
                        out.push('\n');
                    }
                    Block::Lines(l) => indent(&l, "- ", "  ", &mut out),
                }
            }
        }
    }
    Block::Lines(out)
}

fn indent(lines: &str, first: &str, rest: &str, out: &mut String) {
    for (i, line) in lines.lines().enumerate() {
        out.push_str(if i == 0 { first } else { rest });
        out.push_str(line);
        out.push('\n');
    }
}

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<Path> {
        Arc::from(Path::new("t.yaml"))
    }

    #[test]
    fn reads_the_xmltodict_convention() {
        let src = "image:\n  '@name': x\n  '@schemaversion': 8.5\n  preferences:\n    version: 1.10\n    rpm-check-signatures: False\n  packages:\n  - '@type': image\n    package:\n    - '@name': a\n    - '@name': b\n  - '@type': bootstrap\n";
        let n = parse(src, &file()).unwrap();
        assert_eq!(n.get("schemaversion"), Some("8.5"));
        let prefs = n.child("preferences").unwrap();
        assert_eq!(prefs.child_text("version"), Some("1.10"));
        assert_eq!(prefs.child_text("rpm-check-signatures"), Some("false"));
        let pk: Vec<_> = n.children_named("packages").collect();
        assert_eq!(pk.len(), 2);
        assert_eq!(pk[0].children.len(), 2);
        assert_eq!(
            (pk[0].children[1].loc.line, pk[0].children[1].loc.column),
            (11, 7)
        );
    }

    #[test]
    fn refuses_aliases() {
        let src = "image:\n  a: &x [1, 2]\n  b: [*x, *x]\n";
        let e = parse(src, &file()).unwrap_err().to_string();
        assert!(e.contains("aliases"), "{e}");
    }

    #[test]
    fn round_trips_through_the_writer() {
        let src = "image:\n  '@name': \"q\\\"\"\n  a: [x, y]\n  b:\n    '@k': v\n    '#text': t\n  c: {'@k': '1'}\n  c2: ~\n";
        let n = parse(src, &file()).unwrap();
        let again = parse(&write(&n), &file()).unwrap();
        let strip = |n: &Node| crate::description::xml::write(n);
        assert_eq!(strip(&n), strip(&again));
    }
}
