//! Debian control-file (deb822) paragraphs: `Packages`, `Release`, `status` and `.deb` control files.
//!
//! Field names are case-insensitive and keep their first spelling; continuation lines (leading space
//! or tab) are joined with `\n` with that one leading blank removed, and a lone `.` continuation
//! stands for an empty line, as in dpkg.

use std::fmt;

/// A parse error, with the 1-based line it was found on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number in the parsed text.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// One paragraph: fields in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
    /// 1-based line where the paragraph starts.
    pub line: usize,
}

impl Paragraph {
    /// The value of `name` (case-insensitive), without surrounding whitespace.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Fields in file order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Set `name` to `value`, replacing an existing field of that name in place.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => *v = value,
            None => self.fields.push((name.to_string(), value)),
        }
    }

    /// True when the paragraph has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl fmt::Display for Paragraph {
    /// Writes the paragraph in deb822 form (no trailing blank line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.fields {
            let mut lines = v.split('\n');
            let first = lines.next().unwrap_or("");
            if first.is_empty() {
                writeln!(f, "{k}:")?;
            } else {
                writeln!(f, "{k}: {first}")?;
            }
            for l in lines {
                if l.is_empty() {
                    writeln!(f, " .")?;
                } else {
                    writeln!(f, " {l}")?;
                }
            }
        }
        Ok(())
    }
}

/// Parse every paragraph of `text`. Blank lines separate paragraphs; `#` comment lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, ParseError> {
    paragraphs(text)
        .map(|p| {
            let p = p?;
            Ok(Paragraph {
                fields: p
                    .fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.value().into_owned()))
                    .collect(),
                line: p.line,
            })
        })
        .collect()
}

/// A field value as it stands in the text: the first line's value and any continuation lines,
/// not yet joined. Borrowed, so reading a large index allocates only for folded values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawValue<'a> {
    text: &'a str,
}

impl<'a> RawValue<'a> {
    /// The value as [`Paragraph::get`] gives it: first line trimmed, then one `\n` per
    /// continuation line with its marker blank removed (`.` alone stands for an empty line).
    pub fn value(&self) -> std::borrow::Cow<'a, str> {
        let Some((first, rest)) = self.text.split_once('\n') else {
            return self.text.trim().into();
        };
        let mut value = first.trim().to_string();
        for line in rest.lines() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            // Only the first blank is the continuation marker: deeper indentation is content
            // (Description bullet lists) and must survive a rewrite of the status file.
            let cont = line[1..].trim_end();
            value.push('\n');
            if cont.trim() != "." {
                value.push_str(cont);
            }
        }
        value.into()
    }

    /// The first line of the value, trimmed (a `Description`'s synopsis).
    pub fn first_line(&self) -> &'a str {
        self.text.split('\n').next().unwrap_or("").trim()
    }
}

/// One paragraph borrowed from the text it was read from.
#[derive(Debug, Clone, Default)]
pub struct RawParagraph<'a> {
    /// Fields in file order.
    pub fields: Vec<(&'a str, RawValue<'a>)>,
    /// 1-based line where the paragraph starts.
    pub line: usize,
}

/// The paragraphs of `text`, one at a time and borrowed: the same rules as [`parse`] without
/// holding the whole file's paragraphs at once.
pub fn paragraphs(text: &str) -> Paragraphs<'_> {
    Paragraphs {
        text,
        pos: 0,
        lineno: 0,
    }
}

/// Iterator returned by [`paragraphs`].
#[derive(Debug, Clone)]
pub struct Paragraphs<'a> {
    text: &'a str,
    /// Byte offset of the next line.
    pos: usize,
    /// Lines consumed so far.
    lineno: usize,
}

impl<'a> Paragraphs<'a> {
    /// The next line (without its `\n`) and its 1-based number.
    fn next_line(&mut self) -> Option<(usize, &'a str)> {
        let rest = self.text.get(self.pos..).filter(|r| !r.is_empty())?;
        let line = match rest.find('\n') {
            Some(i) => &rest[..i],
            None => rest,
        };
        self.pos += (line.len() + 1).min(rest.len());
        self.lineno += 1;
        Some((self.lineno, line))
    }

    /// Stop after an error: a broken file has no further paragraphs.
    fn fail(&mut self, line: usize, message: String) -> Result<RawParagraph<'a>, ParseError> {
        self.pos = self.text.len();
        Err(ParseError { line, message })
    }

    /// Byte offset of `s`, a slice of the text.
    fn offset(&self, s: &str) -> usize {
        s.as_ptr() as usize - self.text.as_ptr() as usize
    }
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<RawParagraph<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut cur = RawParagraph::default();
        while let Some((lineno, raw)) = self.next_line() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                if !cur.fields.is_empty() {
                    return Some(Ok(cur));
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                let Some((_, value)) = cur.fields.last() else {
                    return Some(self.fail(lineno, "continuation line before any field".into()));
                };
                let (start, end) = (self.offset(value.text), self.offset(raw) + raw.len());
                let text = &self.text[start..end];
                if let Some((_, value)) = cur.fields.last_mut() {
                    value.text = text;
                }
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Some(self.fail(lineno, format!("expected 'Field: value', found {line:?}")));
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Some(self.fail(lineno, format!("bad field name {name:?}")));
            }
            if cur.fields.is_empty() {
                cur.line = lineno;
            }
            cur.fields.push((name, RawValue { text: value }));
        }
        (!cur.fields.is_empty()).then_some(Ok(cur))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_continuations() {
        let text = "Package: bash\nVersion: 5.2-1\nDescription: GNU shell\n first line\n .\n third\n\n\nPackage: dash\nessential: yes\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].get("package"), Some("bash"));
        assert_eq!(
            p[0].get("Description"),
            Some("GNU shell\nfirst line\n\nthird")
        );
        assert_eq!(p[1].get("Essential"), Some("yes"));
        assert_eq!(p[1].line, 9);
    }

    #[test]
    fn rejects_garbage_with_line() {
        let err = parse("Package: a\nnot a field\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse(" leading continuation\n").unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn display_round_trips() {
        let text = "Package: bash\nDescription: GNU shell\n first line\n .\n  - indented\n";
        let p = parse(text).unwrap();
        assert_eq!(p[0].to_string(), text);
        assert_eq!(parse(&p[0].to_string()).unwrap(), p);
    }

    #[test]
    fn borrowed_paragraphs_match_owned_parsing() {
        let text = "Package: a\r\nDepends: x,\r\n y\r\n# note\r\n z\r\nDescription: one\n two\n\nPackage: b\n";
        let raw: Vec<_> = paragraphs(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(raw.len(), 2);
        let (name, depends) = raw[0].fields[1];
        assert_eq!(name, "Depends");
        assert_eq!(depends.value(), "x,\ny\nz");
        assert_eq!(raw[0].fields[2].1.first_line(), "one");
        assert_eq!(raw[1].line, 9);
        let owned = parse(text).unwrap();
        assert_eq!(owned[0].get("depends"), Some("x,\ny\nz"));
        assert_eq!(owned[0].get("Description"), Some("one\ntwo"));
    }

    #[test]
    fn borrowed_paragraphs_stop_at_the_first_error() {
        let mut it = paragraphs("Package: a\n\nbroken\n\nPackage: c\n");
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next().unwrap().unwrap_err().line, 3);
        assert!(it.next().is_none());
    }
}
