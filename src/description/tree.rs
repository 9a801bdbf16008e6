//! The generic element tree both readers produce: every element and attribute with its source
//! position, so validation and later stages can point at `file:line:col`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A position in a description file (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    /// The file the item was read from (an included file keeps its own path).
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
}

impl Loc {
    /// A position in `file`.
    pub fn new(file: &Arc<Path>, line: u32, column: u32) -> Self {
        Loc {
            file: Arc::clone(file),
            line,
            column,
        }
    }

    /// `file:line:col` of an optional location, empty when there is none: what errors that
    /// point into a description print.
    pub fn describe(loc: &Option<Loc>) -> String {
        loc.as_ref().map(Loc::to_string).unwrap_or_default()
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One attribute with where its name starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Attribute name as written (a prefix such as `xsi:` is kept).
    pub name: String,
    /// The value, entity references resolved.
    pub value: String,
    /// Where the attribute is.
    pub loc: Loc,
    /// The name and value the user wrote, when a schema upgrade rewrote them
    /// (`additionaltags="a"` became `additionalnames=":a"`); messages name these.
    pub written: Option<(String, String)>,
}

impl Attr {
    /// A new attribute as written.
    pub fn new(name: impl Into<String>, value: impl Into<String>, loc: Loc) -> Self {
        Attr {
            name: name.into(),
            value: value.into(),
            loc,
            written: None,
        }
    }

    /// The name as the user wrote it.
    pub fn written_name(&self) -> &str {
        self.written.as_ref().map_or(&self.name, |(n, _)| n)
    }

    /// The value as the user wrote it.
    pub fn written_value(&self) -> &str {
        self.written.as_ref().map_or(&self.value, |(_, v)| v)
    }
}

/// One element: name, attributes in source order, children in source order, trimmed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Element name.
    pub name: String,
    /// Where the element starts.
    pub loc: Loc,
    /// Attributes in source order.
    pub attrs: Vec<Attr>,
    /// Child elements in source order.
    pub children: Vec<Node>,
    /// Character data with surrounding whitespace trimmed; `None` when empty.
    pub text: Option<String>,
}

impl Node {
    /// A new empty element.
    pub fn new(name: impl Into<String>, loc: Loc) -> Self {
        Node {
            name: name.into(),
            loc,
            attrs: Vec::new(),
            children: Vec::new(),
            text: None,
        }
    }

    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attr(name).map(|a| a.value.as_str())
    }

    /// Mutable access to attribute `name`.
    pub fn attr_mut(&mut self, name: &str) -> Option<&mut Attr> {
        self.attrs.iter_mut().find(|a| a.name == name)
    }

    /// Remove attribute `name`, returning it.
    pub fn remove_attr(&mut self, name: &str) -> Option<Attr> {
        let i = self.attrs.iter().position(|a| a.name == name)?;
        Some(self.attrs.remove(i))
    }

    /// Child elements called `name`, in order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child called `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).and_then(|c| c.text.as_deref())
    }

    /// Visit this element and all descendants, depth first.
    pub fn walk_mut(&mut self, f: &mut dyn FnMut(&mut Node)) {
        f(self);
        for c in &mut self.children {
            c.walk_mut(f);
        }
    }

    /// Number of elements in this subtree.
    pub fn count(&self) -> usize {
        1 + self.children.iter().map(Node::count).sum::<usize>()
    }
}

/// Line starts of a text, to turn byte offsets into 1-based line and column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// Last answer (offset, line index, column) so that increasing offsets on one long line
    /// cost only the distance moved, not the whole line each time.
    last: std::cell::Cell<(usize, usize, usize)>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            text,
            starts,
            last: std::cell::Cell::new((0, 0, 0)),
        }
    }

    /// 1-based (line, column) of byte `offset`; the column counts characters.
    pub(crate) fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self
            .starts
            .partition_point(|s| *s <= offset)
            .saturating_sub(1);
        let start = self.starts.get(line).copied().unwrap_or(0);
        let (last_off, last_line, last_col) = self.last.get();
        let (from, base) = if last_line == line && last_off >= start && last_off <= offset {
            (last_off, last_col)
        } else {
            (start, 0)
        };
        let col = base
            + self
                .text
                .get(from..offset)
                .map_or(offset - from, |s| s.chars().count());
        self.last.set((offset, line, col));
        (clamp(line + 1), clamp(col + 1))
    }
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// 1-based (line, column) of byte `offset` in `bytes` that may not be valid UTF-8 past `offset`.
pub(crate) fn byte_position(bytes: &[u8], offset: usize) -> (u32, u32) {
    let head = &bytes[..offset.min(bytes.len())];
    // One count over a description file: not worth the `bytecount` crate.
    #[allow(clippy::naive_bytecount)]
    let line = head.iter().filter(|b| **b == b'\n').count() + 1;
    let start = head.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&head[start..]).chars().count() + 1;
    (clamp(line), clamp(col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let idx = LineIndex::new("ab\nçd\n");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(3), (2, 1));
        assert_eq!(idx.position(5), (2, 2));
        assert_eq!(byte_position(b"a\nb\xff", 3), (2, 2));
    }
}
