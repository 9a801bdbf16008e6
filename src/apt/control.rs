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
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = cur.fields.last_mut() else {
                return Err(ParseError {
                    line: lineno,
                    message: "continuation line before any field".into(),
                });
            };
            // Only the first blank is the continuation marker: deeper indentation is content
            // (Description bullet lists) and must survive a rewrite of the status file.
            let cont = line[1..].trim_end();
            value.push('\n');
            if cont.trim() != "." {
                value.push_str(cont);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError {
                line: lineno,
                message: format!("expected 'Field: value', found {line:?}"),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ParseError {
                line: lineno,
                message: format!("bad field name {name:?}"),
            });
        }
        if cur.is_empty() {
            cur.line = lineno;
        }
        cur.fields
            .push((name.to_string(), value.trim().to_string()));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
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
}
