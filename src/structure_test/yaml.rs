//! A YAML (or JSON) document read into a small tree that remembers the line of every node, so
//! that a config error can name the line and field. Aliases are refused (an anchor bomb cannot
//! expand), and nesting and size are capped.

use yaml_rust2::parser::{Event, Parser};

/// Deepest nesting accepted; a structure-test config needs five levels.
const MAX_DEPTH: usize = 64;
/// Most nodes accepted in one document.
const MAX_NODES: usize = 1_000_000;

/// A node of the document and the 1-based line it starts on.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) line: usize,
    pub(crate) value: Value,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// `~`, `null`, or nothing.
    Null,
    /// Any scalar, as written (quoted or not).
    Scalar(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, keys in document order (duplicates refused).
    Map(Vec<(String, Node)>),
}

enum Frame {
    Seq(Vec<Node>, usize),
    Map(Vec<(String, Node)>, usize, Option<(String, usize)>),
}

/// Parse `text`; `Err((line, message))` when it is not one well-formed document.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, (usize, String)> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut result = None;
    let mut documents = 0;
    let mut nodes = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            (
                e.marker().line().max(1),
                format!("malformed YAML: {}", e.info()),
            )
        })?;
        let line = mark.line().max(1);
        let node = match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err((line, "only one YAML document is allowed".into()));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err((
                    line,
                    "YAML aliases are not allowed (write the value out)".into(),
                ));
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                nodes += 1;
                if stack.len() >= MAX_DEPTH || nodes > MAX_NODES {
                    return Err((line, "document nested too deep or too large".into()));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(Vec::new(), line)
                } else {
                    Frame::Map(Vec::new(), line, None)
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, l)) => Node {
                    line: l,
                    value: Value::Seq(items),
                },
                _ => return Err((line, "malformed YAML: unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(entries, l, None)) => Node {
                    line: l,
                    value: Value::Map(entries),
                },
                _ => return Err((line, "malformed YAML: unbalanced mapping".into())),
            },
            Event::Scalar(text, style, _, tag) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err((line, "document too large".into()));
                }
                let plain = style == yaml_rust2::scanner::TScalarStyle::Plain && tag.is_none();
                let null = plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                Node {
                    line,
                    value: if null {
                        Value::Null
                    } else {
                        Value::Scalar(text)
                    },
                }
            }
        };
        match stack.last_mut() {
            None => result = Some(node),
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, _, pending)) => match pending.take() {
                None => {
                    let key = match node.value {
                        Value::Scalar(k) => k,
                        Value::Null => String::new(),
                        _ => return Err((node.line, "mapping keys must be scalars".into())),
                    };
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err((node.line, format!("duplicate key `{key}`")));
                    }
                    *pending = Some((key, node.line));
                }
                Some((key, _)) => entries.push((key, node)),
            },
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept() {
        let n = parse("a: 1\nb:\n  - x\n  - ~\n").unwrap().unwrap();
        let Value::Map(entries) = n.value else {
            panic!()
        };
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[0].1.line, 1);
        let Value::Seq(items) = &entries[1].1.value else {
            panic!()
        };
        assert_eq!(items[1].line, 4);
        assert!(matches!(items[1].value, Value::Null));
    }

    #[test]
    fn json_aliases_and_duplicates() {
        assert!(parse(r#"{"schemaVersion": "2.0.0", "commandTests": []}"#).is_ok());
        assert_eq!(parse("a: &x 1\nb: *x\n").unwrap_err().0, 2);
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.0, 2);
        assert!(e.1.contains("duplicate"), "{}", e.1);
        assert!(parse("").unwrap().is_none());
        assert!(parse("a: [1\n").is_err());
    }
}
