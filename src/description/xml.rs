//! KIWI XML into the element tree, and the tree back out as XML.
//!
//! The text is first checked to be well-formed XML 1.0 (`wellformed`), then read with quick-xml.
//! Hostile input is refused rather than interpreted: a DOCTYPE (and with it every entity
//! declaration) is an error, entity references other than the five predefined ones and character
//! references to characters XML does not allow are errors, nesting and element counts are capped.

use super::tree::{Attr, LineIndex, Loc, Node};
use super::{DescriptionError, Diagnostic, MAX_ATTRS, MAX_DEPTH, MAX_NODES};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use std::path::Path;
use std::sync::Arc;

/// Check that `text` is well-formed XML 1.0 (without a DOCTYPE, which descriptions may not
/// have): the XML layer of reading a description, before any schema check. The error names
/// `file:line:col` of the first violation.
pub fn well_formed(text: &str, file: &Path) -> Result<(), DescriptionError> {
    super::wellformed::check(text).map_err(|v| {
        let (line, column) = LineIndex::new(text).position(v.offset);
        DescriptionError::Invalid(vec![Diagnostic::new(
            Loc::new(&Arc::from(file), line, column),
            "xml",
            v.message,
        )])
    })
}

/// Parse an XML document whose root must be `<image>` (checked by the caller).
pub(crate) fn parse(text: &str, file: &Arc<Path>) -> Result<Node, DescriptionError> {
    well_formed(text, file)?;
    let index = LineIndex::new(text);
    let at = |offset: usize| {
        let (l, c) = index.position(offset);
        Loc::new(file, l, c)
    };
    let fail = |offset: usize, subject: &str, message: String| {
        DescriptionError::Invalid(vec![Diagnostic::new(at(offset), subject, message)])
    };
    let base = text.as_ptr() as usize;
    let offset_of = |s: &[u8]| -> usize {
        let p = s.as_ptr() as usize;
        if p >= base && p <= base + text.len() {
            p - base
        } else {
            0
        }
    };

    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;

    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(0);
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let pos = usize::try_from(reader.error_position()).unwrap_or(before);
                return Err(fail(pos, "xml", format!("malformed XML: {e}")));
            }
        };
        match event {
            Event::DocType(_) => {
                return Err(fail(
                    before,
                    "xml",
                    "DOCTYPE declarations are not allowed (no DTDs or entities in descriptions)"
                        .into(),
                ));
            }
            Event::Start(ref s) | Event::Empty(ref s) => {
                let empty = matches!(event, Event::Empty(_));
                if root.is_some() {
                    return Err(fail(before, "xml", "content after the root element".into()));
                }
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(fail(
                        before,
                        "xml",
                        format!("more than {MAX_NODES} elements"),
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(fail(
                        before,
                        "xml",
                        format!("elements nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let node = start_node(s, &at, &offset_of, &fail)?;
                if empty {
                    attach(node, &mut stack, &mut root);
                } else {
                    stack.push(node);
                    texts.push(String::new());
                }
            }
            Event::End(_) => {
                let Some(mut node) = stack.pop() else {
                    return Err(fail(before, "xml", "unexpected closing tag".into()));
                };
                let t = texts.pop().unwrap_or_default();
                let t = t.trim();
                if !t.is_empty() {
                    node.text = Some(t.to_string());
                }
                attach(node, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                push_text(&mut texts, &s, before, &fail)?;
            }
            Event::CData(t) => {
                let s = t.xml10_content();
                push_text(&mut texts, &s, before, &fail)?;
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => return Err(fail(before, "xml", "invalid character reference".into())),
                    }
                } else {
                    let name = r.xml10_content();
                    match predefined(&name) {
                        Some(c) => c.to_string(),
                        None => {
                            return Err(fail(
                                before,
                                "xml",
                                format!(
                                    "entity reference &{name}; is not allowed (only the five predefined XML entities)"
                                ),
                            ));
                        }
                    }
                };
                push_text(&mut texts, &ch, before, &fail)?;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(DescriptionError::Invalid(vec![Diagnostic::new(
            open.loc.clone(),
            &open.name,
            "element is never closed".into(),
        )]));
    }
    root.ok_or_else(|| fail(0, "xml", "document has no root element".into()))
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

fn push_text(
    texts: &mut [String],
    s: &str,
    before: usize,
    fail: &dyn Fn(usize, &str, String) -> DescriptionError,
) -> Result<(), DescriptionError> {
    match texts.last_mut() {
        Some(t) => {
            t.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(fail(before, "xml", "text outside the root element".into())),
    }
}

fn attach(node: Node, stack: &mut [Node], root: &mut Option<Node>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
}

fn start_node(
    s: &BytesStart<'_>,
    at: &dyn Fn(usize) -> Loc,
    offset_of: &dyn Fn(&[u8]) -> usize,
    fail: &dyn Fn(usize, &str, String) -> DescriptionError,
) -> Result<Node, DescriptionError> {
    let raw_name = s.name();
    let raw: &str = raw_name.as_ref();
    let name_off = offset_of(raw.as_bytes());
    let name = raw.to_string();
    // the element starts at its '<', one byte before the name
    let mut node = Node::new(name.clone(), at(name_off.saturating_sub(1)));
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for attr in s.attributes() {
        let attr = attr.map_err(|e| fail(name_off, &name, format!("malformed attribute: {e}")))?;
        let raw_key: &str = attr.key.as_ref();
        let key_off = offset_of(raw_key.as_bytes());
        let key = raw_key.to_string();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| {
                fail(
                    key_off,
                    &format!("{name}@{key}"),
                    format!("bad attribute value: {e}"),
                )
            })?
            .into_owned();
        if !seen.insert(key.clone()) {
            return Err(fail(
                key_off,
                &format!("{name}@{key}"),
                "attribute given twice".into(),
            ));
        }
        if node.attrs.len() >= MAX_ATTRS {
            return Err(fail(
                key_off,
                &name,
                format!("more than {MAX_ATTRS} attributes on one element"),
            ));
        }
        node.attrs.push(Attr::new(key, value, at(key_off)));
    }
    Ok(node)
}

/// Write the tree as an indented XML document.
pub fn write(root: &Node) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    // the reader drops xmlns declarations; declare xsi again if an xsi: attribute is kept
    if root.attrs.iter().any(|a| a.name.starts_with("xsi:")) {
        let mut r = root.clone();
        r.attrs.insert(
            0,
            Attr::new(
                "xmlns:xsi",
                "http://www.w3.org/2001/XMLSchema-instance",
                r.loc.clone(),
            ),
        );
        write_node(&r, 0, &mut out);
    } else {
        write_node(root, 0, &mut out);
    }
    out
}

fn write_node(n: &Node, depth: usize, out: &mut String) {
    let pad = "    ".repeat(depth);
    out.push_str(&pad);
    out.push('<');
    out.push_str(&n.name);
    for a in &n.attrs {
        out.push(' ');
        out.push_str(&a.name);
        out.push_str("=\"");
        escape(&a.value, true, out);
        out.push('"');
    }
    match (&n.text, n.children.is_empty()) {
        (None, true) => out.push_str("/>\n"),
        (Some(t), true) => {
            out.push('>');
            escape(t, false, out);
            out.push_str("</");
            out.push_str(&n.name);
            out.push_str(">\n");
        }
        (text, false) => {
            out.push_str(">\n");
            if let Some(t) = text {
                out.push_str(&pad);
                out.push_str("    ");
                escape(t, false, out);
                out.push('\n');
            }
            for c in &n.children {
                write_node(c, depth + 1, out);
            }
            out.push_str(&pad);
            out.push_str("</");
            out.push_str(&n.name);
            out.push_str(">\n");
        }
    }
}

fn escape(s: &str, attr: bool, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<Path> {
        Arc::from(Path::new("t.xml"))
    }

    #[test]
    fn reads_positions_text_and_entities() {
        let src = "<?xml version=\"1.0\"?>\n<image name=\"a&amp;b\">\n  <version>1.&#50;</version>\n</image>\n";
        let n = parse(src, &file()).unwrap();
        assert_eq!(n.name, "image");
        assert_eq!((n.loc.line, n.loc.column), (2, 1));
        assert_eq!(n.get("name"), Some("a&b"));
        assert_eq!((n.attrs[0].loc.line, n.attrs[0].loc.column), (2, 8));
        let v = &n.children[0];
        assert_eq!(v.text.as_deref(), Some("1.2"));
        assert_eq!((v.loc.line, v.loc.column), (3, 3));
    }

    #[test]
    fn refuses_doctype_and_unknown_entities() {
        let bomb = "<!DOCTYPE image [<!ENTITY a \"aaaa\">]><image>&a;</image>";
        let e = parse(bomb, &file()).unwrap_err().to_string();
        assert!(e.contains("DOCTYPE"), "{e}");
        let e = parse("<image>&a;</image>", &file())
            .unwrap_err()
            .to_string();
        assert!(e.contains("&a;"), "{e}");
    }

    #[test]
    fn writes_back_what_it_reads() {
        let src = "<image name=\"x&quot;\"><a b=\"1\">t &lt; u</a><c/></image>";
        let n = parse(src, &file()).unwrap();
        let again = parse(&write(&n), &file()).unwrap();
        assert_eq!(again.get("name"), Some("x\""));
        assert_eq!(again.children[0].text.as_deref(), Some("t < u"));
        assert_eq!(again.children.len(), 2);
    }
}
