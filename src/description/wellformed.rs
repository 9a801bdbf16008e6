//! XML 1.0 well-formedness, checked in one pass before the tree is built.
//!
//! quick-xml reads tags and text but leaves most of the well-formedness rules to its caller: the
//! `Char` and `Name` productions, `<` in attribute values, `]]>` in text, the place and form of
//! the XML declaration, reserved processing-instruction targets, `--` in comments and what may
//! follow the root element. This scanner checks the whole grammar of a document without a
//! document type declaration (descriptions may not have one), so a description imgbuild reads
//! is one every XML parser reads the same way. The first violation is reported with its byte
//! offset and a message in the user's words.

/// The first violation found: where (byte offset) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Byte offset of the offending character or construct.
    pub offset: usize,
    /// What is wrong, and how to write it instead where that helps.
    pub message: String,
}

type Result<T> = std::result::Result<T, Violation>;

/// Check that `text` is a well-formed XML 1.0 document without a DOCTYPE.
pub(crate) fn check(text: &str) -> Result<()> {
    let mut s = Scanner { text, pos: 0 };
    s.prolog()?;
    s.root()?;
    s.epilog()
}

/// The `Char` production: what may appear anywhere in a document, even as a reference.
pub(crate) fn is_xml_char(c: char) -> bool {
    // Rust chars are never surrogates, so the D800-DFFF gap needs no test.
    matches!(c, '\t' | '\n' | '\r') || ('\u{20}'..='\u{FFFD}').contains(&c) || c >= '\u{10000}'
}

fn is_name_start(c: char) -> bool {
    matches!(c, ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// How a character is shown in a message: printable ones quoted, others by code point.
fn shown(c: char) -> String {
    if c.is_control() || !is_xml_char(c) || c.is_whitespace() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("{c:?}")
    }
}

fn not_char(c: char) -> String {
    format!(
        "character {} is not allowed in XML (not even as a character reference)",
        shown(c)
    )
}

fn fail<T>(at: usize, message: impl Into<String>) -> Result<T> {
    Err(Violation {
        offset: at,
        message: message.into(),
    })
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn starts(&self, p: &str) -> bool {
        self.rest().starts_with(p)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.starts(p) {
            self.pos += p.len();
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// A `Name`; `what` says in the message what the name was for.
    fn name(&mut self, what: &str) -> Result<&'a str> {
        let start = self.pos;
        match self.peek() {
            Some(c) if is_name_start(c) => {
                self.bump();
            }
            Some(c) => {
                return fail(
                    start,
                    format!(
                        "{what} cannot start with {} (names start with a letter, '_' or ':')",
                        shown(c)
                    ),
                );
            }
            None => return fail(start, format!("the file ends where {what} was expected")),
        }
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        Ok(&self.text[start..self.pos])
    }

    /// Misc* before the root: the XML declaration (only at offset 0), comments, PIs, spaces.
    fn prolog(&mut self) -> Result<()> {
        if self.starts("<?xml") && self.text[5..].starts_with(|c: char| is_space(c) || c == '?') {
            self.xml_declaration()?;
        }
        loop {
            self.skip_space();
            if self.starts("<!--") {
                self.comment()?;
            } else if self.starts("<?") {
                self.pi()?;
            } else if self.starts("<!DOCTYPE") {
                return fail(
                    self.pos,
                    "DOCTYPE declarations are not allowed (no DTDs or entities in descriptions)",
                );
            } else if self.starts("<") {
                return Ok(());
            } else if self.peek().is_none() {
                return fail(self.pos, "document has no root element");
            } else {
                return fail(
                    self.pos,
                    "text before the root element (the file must start with '<')",
                );
            }
        }
    }

    fn xml_declaration(&mut self) -> Result<()> {
        let start = self.pos;
        self.pos += 5;
        let bad = |s: &Self, what: &str| {
            Err(Violation {
                offset: s.pos,
                message: format!(
                    "malformed XML declaration: {what} (write <?xml version=\"1.0\" encoding=\"utf-8\"?>)"
                ),
            })
        };
        let mut seen_version = false;
        let mut seen_encoding = false;
        loop {
            let spaced = self.skip_space();
            if self.eat("?>") {
                break;
            }
            if self.peek().is_none() {
                return fail(start, "the XML declaration is never closed with '?>'");
            }
            if !spaced {
                return bad(&*self, "expected a space before the next pseudo-attribute");
            }
            let at = self.pos;
            let key = self.name("a pseudo-attribute")?;
            let order_ok = match key {
                "version" => !seen_version,
                "encoding" => seen_version && !seen_encoding,
                "standalone" => seen_version,
                _ => false,
            };
            if !order_ok {
                self.pos = at;
                return bad(
                    self,
                    &format!("unexpected {key:?} (version, encoding, standalone in that order)"),
                );
            }
            self.skip_space();
            if !self.eat("=") {
                return bad(&*self, &format!("expected '=' after {key}"));
            }
            self.skip_space();
            let Some(q @ ('"' | '\'')) = self.peek() else {
                return bad(&*self, &format!("the value of {key} must be quoted"));
            };
            self.bump();
            let vstart = self.pos;
            let Some(len) = self.rest().find(q) else {
                return fail(start, "the XML declaration is never closed with '?>'");
            };
            let value = &self.text[vstart..vstart + len];
            let ok = match key {
                "version" => value
                    .strip_prefix("1.")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())),
                "encoding" => {
                    let mut cs = value.chars();
                    cs.next().is_some_and(|c| c.is_ascii_alphabetic())
                        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                }
                _ => matches!(value, "yes" | "no"),
            };
            if !ok {
                return bad(&*self, &format!("invalid {key} {value:?}"));
            }
            self.pos = vstart + len + 1;
            match key {
                "version" => seen_version = true,
                "encoding" => seen_encoding = true,
                _ => {}
            }
        }
        if !seen_version {
            self.pos = start;
            return bad(&*self, "version is missing");
        }
        Ok(())
    }

    /// `<!-- … -->` with no `--` inside and no `-` just before the end.
    fn comment(&mut self) -> Result<()> {
        let start = self.pos;
        self.pos += 4;
        loop {
            if self.starts("--") {
                if self.starts("-->") {
                    self.pos += 3;
                    return Ok(());
                }
                return fail(
                    self.pos,
                    "'--' is not allowed inside a comment (and a comment cannot end with '--->')",
                );
            }
            match self.bump() {
                Some(c) if is_xml_char(c) => {}
                Some(c) => return fail(self.pos - c.len_utf8(), not_char(c)),
                None => return fail(start, "comment is never closed with '-->'"),
            }
        }
    }

    /// `<?target …?>`; the target `xml` in any case is reserved (the declaration is handled
    /// before, at the very start only).
    fn pi(&mut self) -> Result<()> {
        let start = self.pos;
        self.pos += 2;
        let target = self.name("a processing instruction target")?;
        if target.eq_ignore_ascii_case("xml") {
            return fail(
                start,
                if target == "xml" {
                    "an XML declaration <?xml …?> is allowed only once, at the very start of the file"
                        .to_string()
                } else {
                    format!("processing instruction target {target:?} is reserved")
                },
            );
        }
        if self.eat("?>") {
            return Ok(());
        }
        if !self.skip_space() {
            return fail(
                self.pos,
                format!("expected a space or '?>' after processing instruction target {target}"),
            );
        }
        loop {
            if self.eat("?>") {
                return Ok(());
            }
            match self.bump() {
                Some(c) if is_xml_char(c) => {}
                Some(c) => return fail(self.pos - c.len_utf8(), not_char(c)),
                None => return fail(start, "processing instruction is never closed with '?>'"),
            }
        }
    }

    /// `&name;` or `&#…;`; only the five predefined entities exist without a DTD.
    fn reference(&mut self) -> Result<()> {
        let start = self.pos;
        self.pos += 1;
        let literal =
            "'&' must start an entity or character reference; write &amp; for a literal '&'";
        if self.eat("#") {
            let hex = self.eat("x");
            let dstart = self.pos;
            while self.peek().is_some_and(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            }) {
                self.pos += 1;
            }
            let digits = &self.text[dstart..self.pos];
            if digits.is_empty() || !self.eat(";") {
                return fail(
                    start,
                    "malformed character reference (write &#NNN; or &#xHHHH;)",
                );
            }
            let code = u32::from_str_radix(digits, if hex { 16 } else { 10 }).ok();
            if !code.and_then(char::from_u32).is_some_and(is_xml_char) {
                return fail(
                    start,
                    format!(
                        "character reference {} names no allowed XML character",
                        &self.text[start..self.pos]
                    ),
                );
            }
            return Ok(());
        }
        if !self.peek().is_some_and(is_name_start) {
            return fail(start, literal);
        }
        let name = self.name("an entity name")?;
        if !self.eat(";") {
            return fail(start, literal);
        }
        if !matches!(name, "amp" | "lt" | "gt" | "apos" | "quot") {
            return fail(
                start,
                format!("unknown entity &{name}; (only &amp; &lt; &gt; &apos; &quot; are defined)"),
            );
        }
        Ok(())
    }

    /// The root element and everything inside it.
    fn root(&mut self) -> Result<()> {
        // open elements: (name, offset of '<')
        let mut open: Vec<(&'a str, usize)> = Vec::new();
        let at = self.pos;
        if self.starts("</") {
            return fail(at, "closing tag before the root element");
        }
        self.tag_name_follows()?;
        self.pos += 1;
        let (name, empty) = self.start_tag()?;
        if empty {
            return Ok(());
        }
        open.push((name, at));
        loop {
            if self.starts("</") {
                let at = self.pos;
                self.pos += 2;
                let name = self.name("a closing tag's element name")?;
                self.skip_space();
                if !self.eat(">") {
                    return fail(at, format!("closing tag </{name}> has no '>'"));
                }
                match open.pop() {
                    Some((o, _)) if o == name => {}
                    Some((o, oat)) => {
                        return fail(
                            at,
                            format!(
                                "closing tag </{name}> does not match <{o}> (opened {})",
                                self.where_is(oat)
                            ),
                        );
                    }
                    None => {
                        return fail(at, format!("closing tag </{name}> without an opening tag"));
                    }
                }
            } else if self.starts("<!--") {
                self.comment()?;
            } else if self.starts("<![CDATA[") {
                let at = self.pos;
                self.pos += 9;
                let Some(len) = self.rest().find("]]>") else {
                    return fail(at, "CDATA section is never closed with ']]>'");
                };
                let end = self.pos + len;
                self.chars_until(end)?;
                self.pos = end + 3;
            } else if self.starts("<?") {
                self.pi()?;
            } else if self.starts("<!") {
                return fail(
                    self.pos,
                    "'<!' here must start a comment <!-- … --> or a <![CDATA[ … ]]> section",
                );
            } else if self.starts("<") {
                self.tag_name_follows()?;
                let at = self.pos;
                self.pos += 1;
                let (name, empty) = self.start_tag()?;
                if !empty {
                    open.push((name, at));
                }
            } else if self.starts("&") {
                self.reference()?;
            } else if let Some(c) = self.peek() {
                if self.starts("]]>") {
                    return fail(self.pos, "']]>' is not allowed in text; write ]]&gt;");
                }
                if !is_xml_char(c) {
                    return fail(self.pos, not_char(c));
                }
                self.pos += c.len_utf8();
            } else {
                return match open.last() {
                    Some((name, at)) => fail(
                        *at,
                        format!("element <{name}> is never closed (the file ends first)"),
                    ),
                    None => Ok(()),
                };
            }
            if open.is_empty() {
                return Ok(());
            }
        }
    }

    /// At a `<` that is not a comment, CDATA, PI or closing tag: a name must follow. A
    /// character that may be in a name but not start one is a bad name; anything else (space,
    /// `=`, a digit-free symbol) means a literal `<` was meant.
    fn tag_name_follows(&mut self) -> Result<()> {
        match self.rest()[1..].chars().next() {
            Some(c) if is_name_start(c) => Ok(()),
            Some(c) if is_name_char(c) => {
                self.pos += 1;
                self.name("an element name").map(|_| ())
            }
            _ => fail(
                self.pos,
                "'<' must start a tag; write &lt; for a literal '<'",
            ),
        }
    }

    /// Check every character up to `end` is a `Char`.
    fn chars_until(&mut self, end: usize) -> Result<()> {
        while self.pos < end {
            let Some(c) = self.bump() else { break };
            if !is_xml_char(c) {
                return fail(self.pos - c.len_utf8(), not_char(c));
            }
        }
        Ok(())
    }

    fn where_is(&self, offset: usize) -> String {
        let head = &self.text[..offset];
        let line = head.matches('\n').count() + 1;
        let col = head.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("at {line}:{col}")
    }

    /// After `<`: name, attributes, `>` or `/>`. Returns the name and whether it was `/>`.
    fn start_tag(&mut self) -> Result<(&'a str, bool)> {
        let name = self.name("an element name")?;
        let mut seen: Vec<&str> = Vec::new();
        loop {
            let spaced = self.skip_space();
            if self.eat(">") {
                return Ok((name, false));
            }
            if self.eat("/>") {
                return Ok((name, true));
            }
            match self.peek() {
                None => return fail(self.pos, format!("tag <{name}> is never closed with '>'")),
                Some(c) if is_name_start(c) => {
                    if !spaced {
                        return fail(
                            self.pos,
                            format!("attributes of <{name}> must be separated by a space"),
                        );
                    }
                }
                Some(c) => {
                    return fail(self.pos, format!("unexpected {} in tag <{name}>", shown(c)));
                }
            }
            let at = self.pos;
            let key = self.name("an attribute name")?;
            self.skip_space();
            if !self.eat("=") {
                return fail(
                    at,
                    format!("attribute {key} of <{name}> has no value; write {key}=\"…\""),
                );
            }
            self.skip_space();
            let Some(q @ ('"' | '\'')) = self.peek() else {
                return fail(
                    self.pos,
                    format!("the value of attribute {key} must be in quotes"),
                );
            };
            let vstart = self.pos;
            self.bump();
            loop {
                match self.peek() {
                    Some(c) if c == q => {
                        self.bump();
                        break;
                    }
                    Some('<') => {
                        return fail(
                            self.pos,
                            format!(
                                "'<' is not allowed in attribute values; write &lt; in {key}=…"
                            ),
                        );
                    }
                    Some('&') => self.reference()?,
                    Some(c) if is_xml_char(c) => {
                        self.bump();
                    }
                    Some(c) => return fail(self.pos, not_char(c)),
                    None => {
                        return fail(
                            vstart,
                            format!("the value of attribute {key} is never closed with {q}"),
                        );
                    }
                }
            }
            if seen.contains(&key) {
                return fail(at, format!("attribute {key} is given twice on <{name}>"));
            }
            seen.push(key);
        }
    }

    /// After the root: only comments, PIs and spaces.
    fn epilog(&mut self) -> Result<()> {
        loop {
            self.skip_space();
            if self.peek().is_none() {
                return Ok(());
            }
            if self.starts("<!--") {
                self.comment()?;
            } else if self.starts("<?") {
                self.pi()?;
            } else {
                return fail(
                    self.pos,
                    "content after the root element (a description has one root, <image>)",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> Violation {
        check(s).unwrap_err()
    }

    #[test]
    fn accepts_well_formed_documents() {
        for s in [
            "<a/>",
            "<?xml version=\"1.0\" encoding='utf-8' standalone=\"no\"?>\n<a/>\n",
            "<!-- c - d --><?pi x?><a b='\"&lt;' c=\">\">t &amp; &#65;&#x1F600; ]] <![CDATA[<&]]]></a ><!--e-->",
            "<a:b xmlns:a='u'><c\td = 'x'/></a:b>",
            "<?xml-stylesheet href='x'?><a/>",
        ] {
            assert_eq!(check(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn reports_each_defect_at_its_place() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "<a m=\"Team <t@x>\"/>",
                11,
                "'<' is not allowed in attribute values",
            ),
            ("<a>x\u{1}</a>", 4, "U+0001"),
            ("<a/><?xml version=\"1.0\"?>", 4, "only once"),
            (" <?xml version=\"1.0\"?><a/>", 1, "only once"),
            ("<a>1 < 2</a>", 5, "write &lt;"),
            ("<a b='1' b='2'/>", 9, "given twice"),
            ("<a>&</a>", 3, "&amp;"),
            ("<a>&nbsp;</a>", 3, "unknown entity &nbsp;"),
            ("<a>&#0;</a>", 3, "&#0;"),
            ("<a>&#xD800;</a>", 3, "&#xD800;"),
            ("<a><b></a>", 6, "does not match <b>"),
            ("<a><b>", 3, "never closed"),
            ("<a/><b/>", 4, "content after the root"),
            ("<a><!-- x -- y --></a>", 10, "'--'"),
            ("<a><?XmL x?></a>", 3, "reserved"),
            ("<a>]]></a>", 3, "']]>'"),
            ("<1a/>", 1, "cannot start with '1'"),
            ("<a b='1'c='2'/>", 8, "separated by a space"),
            ("<a b=1/>", 5, "quotes"),
        ];
        for (s, at, what) in cases {
            let e = err(s);
            assert_eq!(e.offset, *at, "{s}: {e:?}");
            assert!(e.message.contains(what), "{s}: {e:?}");
        }
    }
}
