//! `repodata/repomd.xml`: the index of an rpm-md repository, naming each metadata file
//! (`primary`, `filelists`, `other`, …) with its location, checksums and sizes. Also the small
//! XML helpers the metadata readers share (line counting, size caps, text with entities).

use super::package::Checksum;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use std::io::{self, BufRead, Read};

/// Largest `repomd.xml` accepted (real ones are a few KiB).
pub const REPOMD_LIMIT: u64 = 4 << 20;

/// Largest single XML item (tag, text, comment) accepted: the reader buffers one whole item,
/// so this bounds its memory whatever the file's size. Real items are a few KiB.
pub(crate) const MAX_EVENT: u64 = 16 << 20;

/// Deepest element nesting accepted in any metadata file (real files nest four levels).
pub(crate) const MAX_DEPTH: usize = 32;

/// Errors reading `repomd.xml`. Each names the URL and the line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RepomdError {
    /// The file is not well-formed XML (or is too large, or nests too deep).
    #[error("{url}: line {line}: malformed XML: {message}")]
    Xml {
        /// The repomd.xml URL.
        url: String,
        /// The line where reading stopped.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A field is missing or has a bad value.
    #[error("{url}: line {line}: {field}: {message}")]
    Field {
        /// The repomd.xml URL.
        url: String,
        /// The line of the element.
        line: u64,
        /// The element or attribute (`data[primary]/checksum@type`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// One `<data type=…>` entry of repomd.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataFile {
    /// `type`: `primary`, `filelists`, `other`, `primary_db`, `updateinfo`, ….
    pub kind: String,
    /// `<location href>`: path relative to the repository root (checked: no `..`, not absolute).
    pub location: String,
    /// `<checksum>` of the file as stored (compressed).
    pub checksum: Checksum,
    /// `<open-checksum>` of the decompressed content, when given.
    pub open_checksum: Option<Checksum>,
    /// `<size>` of the file as stored, when given.
    pub size: Option<u64>,
    /// `<open-size>` of the decompressed content, when given.
    pub open_size: Option<u64>,
    /// `<timestamp>`, when given.
    pub timestamp: Option<u64>,
}

/// A parsed `repomd.xml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepoMd {
    /// `<revision>`, when given.
    pub revision: Option<String>,
    /// The `<data>` entries, in file order.
    pub data: Vec<MetadataFile>,
}

impl RepoMd {
    /// Parse repomd.xml; `url` names it in errors.
    pub fn parse(data: &[u8], url: &str) -> Result<RepoMd, RepomdError> {
        let mut reader = Reader::from_reader(Counted::new(data, REPOMD_LIMIT));
        reader.config_mut().check_end_names = true;
        let xml_err = |r: &Reader<Counted<&[u8]>>, message: String| RepomdError::Xml {
            url: url.to_string(),
            line: r.get_ref().line(),
            message,
        };
        let mut buf = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        let mut out = RepoMd::default();
        let mut cur: Option<PartialData> = None;
        let mut text: Option<String> = None;
        let mut seen_root = false;
        loop {
            let event = match reader.read_event_into(&mut buf) {
                Ok(e) => e,
                Err(e) => return Err(xml_err(&reader, reader_message(&reader, &e.to_string()))),
            };
            let line = reader.get_ref().line();
            let field_err = |field: String, message: String| RepomdError::Field {
                url: url.to_string(),
                line,
                field,
                message,
            };
            match event {
                Event::DocType(_) => {
                    return Err(xml_err(
                        &reader,
                        "DOCTYPE declarations are not allowed".into(),
                    ));
                }
                Event::Start(ref s) | Event::Empty(ref s) => {
                    let empty = matches!(event, Event::Empty(_));
                    let name = local_name(s);
                    if stack.is_empty() && seen_root {
                        return Err(xml_err(&reader, "content after the root element".into()));
                    }
                    if stack.is_empty() && name != "repomd" {
                        return Err(field_err(
                            name,
                            "not an rpm-md repomd.xml (the root element must be <repomd>)".into(),
                        ));
                    }
                    seen_root = true;
                    if stack.len() >= MAX_DEPTH {
                        return Err(xml_err(
                            &reader,
                            format!("elements nested deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    let parent = stack.last().map(String::as_str);
                    match (parent, name.as_str()) {
                        (Some("repomd"), "data") => {
                            let kind = attr(s, "type")
                                .map_err(|m| field_err("data@type".into(), m))?
                                .ok_or_else(|| {
                                    field_err("data@type".into(), "attribute missing".into())
                                })?;
                            cur = Some(PartialData::new(kind, line));
                        }
                        (Some("repomd"), "revision") => text = Some(String::new()),
                        (Some("data"), "location") => {
                            if let Some(d) = cur.as_mut() {
                                let f = format!("data[{}]/location@href", d.kind);
                                let href = attr(s, "href")
                                    .map_err(|m| field_err(f.clone(), m))?
                                    .ok_or_else(|| field_err(f.clone(), "missing".into()))?;
                                check_relative(&href).map_err(|m| field_err(f, m))?;
                                d.location = Some(href);
                            }
                        }
                        (Some("data"), "checksum" | "open-checksum") => {
                            if let Some(d) = cur.as_mut() {
                                let f = format!("data[{}]/{name}@type", d.kind);
                                let t = attr(s, "type")
                                    .map_err(|m| field_err(f.clone(), m))?
                                    .ok_or_else(|| field_err(f, "missing".into()))?;
                                d.checksum_type = Some(t);
                                text = Some(String::new());
                            }
                        }
                        (Some("data"), "size" | "open-size" | "timestamp") => {
                            text = Some(String::new());
                        }
                        _ => {}
                    }
                    if empty {
                        end_element(&name, &mut cur, &mut text, &mut out, url, line)?;
                    } else {
                        stack.push(name);
                    }
                }
                Event::End(_) => {
                    let Some(name) = stack.pop() else {
                        return Err(xml_err(&reader, "unexpected closing tag".into()));
                    };
                    if name == "revision" && stack.last().is_some_and(|p| p == "repomd") {
                        out.revision = text.take().map(|t| t.trim().to_string());
                    } else {
                        end_element(&name, &mut cur, &mut text, &mut out, url, line)?;
                    }
                }
                ref e @ (Event::Text(_) | Event::CData(_) | Event::GeneralRef(_)) => {
                    if let Some(t) = text.as_mut() {
                        push_text(t, e).map_err(|m| xml_err(&reader, m))?;
                        if t.len() > 4096 {
                            return Err(xml_err(&reader, "element text too long".into()));
                        }
                    }
                }
                Event::Eof => break,
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            }
            buf.clear();
        }
        if let Some(open) = stack.last() {
            return Err(RepomdError::Xml {
                url: url.to_string(),
                line: reader.get_ref().line(),
                message: format!("element <{open}> is never closed"),
            });
        }
        if !seen_root {
            return Err(RepomdError::Xml {
                url: url.to_string(),
                line: reader.get_ref().line(),
                message: "no <repomd> element".into(),
            });
        }
        Ok(out)
    }

    /// The entry of type `kind` (`primary`, `filelists`), if the repository has one.
    pub fn get(&self, kind: &str) -> Option<&MetadataFile> {
        self.data.iter().find(|d| d.kind == kind)
    }
}

/// A `<data>` element being read.
struct PartialData {
    kind: String,
    line: u64,
    location: Option<String>,
    checksum_type: Option<String>,
    checksum: Option<Checksum>,
    open_checksum: Option<Checksum>,
    size: Option<u64>,
    open_size: Option<u64>,
    timestamp: Option<u64>,
}

impl PartialData {
    fn new(kind: String, line: u64) -> PartialData {
        PartialData {
            kind,
            line,
            location: None,
            checksum_type: None,
            checksum: None,
            open_checksum: None,
            size: None,
            open_size: None,
            timestamp: None,
        }
    }
}

/// Close element `name`: store the text collected for it in the `<data>` being read, or finish
/// that `<data>`.
fn end_element(
    name: &str,
    cur: &mut Option<PartialData>,
    text: &mut Option<String>,
    out: &mut RepoMd,
    url: &str,
    line: u64,
) -> Result<(), RepomdError> {
    let Some(d) = cur.as_mut() else {
        return Ok(());
    };
    let field_err = |field: String, message: String| RepomdError::Field {
        url: url.to_string(),
        line,
        field,
        message,
    };
    let field = format!("data[{}]/{name}", d.kind);
    let number = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| field_err(field.clone(), format!("{:?} is not a number", t.trim())))
    };
    match name {
        "checksum" | "open-checksum" => {
            let t = text.take().unwrap_or_default();
            let kind = d.checksum_type.take().unwrap_or_default();
            let c = checksum(&kind, &t).map_err(|m| field_err(field.clone(), m))?;
            if name == "checksum" {
                d.checksum = Some(c);
            } else {
                d.open_checksum = Some(c);
            }
        }
        "size" => d.size = Some(number(&text.take().unwrap_or_default())?),
        "open-size" => d.open_size = Some(number(&text.take().unwrap_or_default())?),
        "timestamp" => {
            // Some generators write fractional timestamps; the whole seconds are enough.
            let t = text.take().unwrap_or_default();
            let whole = t.trim().split('.').next().unwrap_or_default().to_string();
            d.timestamp = Some(number(&whole)?);
        }
        "data" => {
            let Some(d) = cur.take() else {
                return Ok(());
            };
            let at = |field: &str, message: &str| RepomdError::Field {
                url: url.to_string(),
                line: d.line,
                field: format!("data[{}]/{field}", d.kind),
                message: message.to_string(),
            };
            let location = d.location.ok_or_else(|| at("location", "missing"))?;
            let checksum = d.checksum.ok_or_else(|| at("checksum", "missing"))?;
            if out.data.iter().any(|o| o.kind == d.kind) {
                return Err(at("", "given twice"));
            }
            out.data.push(MetadataFile {
                kind: d.kind,
                location,
                checksum,
                open_checksum: d.open_checksum,
                size: d.size,
                open_size: d.open_size,
                timestamp: d.timestamp,
            });
        }
        _ => {}
    }
    Ok(())
}

/// A checksum from its `type` attribute and hex text: the type normalised (`sha` is `sha1`, as
/// yum wrote it) and the hex checked for the type's length.
pub(crate) fn checksum(kind: &str, hex_text: &str) -> Result<Checksum, String> {
    let kind = match kind.to_ascii_lowercase().as_str() {
        "sha" => "sha1".to_string(),
        k => k.to_string(),
    };
    let len = match kind.as_str() {
        "md5" => 32,
        "sha1" => 40,
        "sha224" => 56,
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unknown checksum type {kind:?}")),
    };
    let hex_text = hex_text.trim().to_ascii_lowercase();
    if hex_text.len() != len || !hex_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{hex_text:?} is not a {kind} checksum ({len} hex digits)"
        ));
    }
    Ok(Checksum {
        kind,
        hex: hex_text,
    })
}

/// Refuse a location that could leave the repository: absolute, with a scheme, or with `..`.
pub(crate) fn check_relative(href: &str) -> Result<(), String> {
    if href.is_empty() {
        return Err("empty location".into());
    }
    if href.starts_with('/') || href.contains("://") || href.contains('\\') {
        return Err(format!("{href:?} is not a path relative to the repository"));
    }
    if href.split('/').any(|c| c == "..") {
        return Err(format!("{href:?} leaves the repository (contains ..)"));
    }
    if href.chars().any(char::is_control) {
        return Err(format!("{href:?} contains control characters"));
    }
    Ok(())
}

/// The local name of an element (`rpm:entry` → `entry`).
pub(crate) fn local_name(s: &BytesStart<'_>) -> String {
    let n = s.local_name();
    let n: &str = n.as_ref();
    n.to_string()
}

/// The value of attribute `name` (matched on its full name, `xml:base` included).
pub(crate) fn attr(s: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    for a in s.attributes() {
        let a = a.map_err(|e| format!("malformed attribute: {e}"))?;
        let key: &str = a.key.as_ref();
        if key == name {
            return a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| Some(v.into_owned()))
                .map_err(|e| format!("bad value of attribute {name}: {e}"));
        }
    }
    Ok(None)
}

/// Append the text of a text, CDATA or entity-reference event to `out`. Only the five
/// predefined entities and character references exist (no DTDs).
pub(crate) fn push_text(out: &mut String, event: &Event<'_>) -> Result<(), String> {
    match event {
        Event::Text(t) => out.push_str(&t.xml10_content()),
        Event::CData(t) => out.push_str(&t.xml10_content()),
        Event::GeneralRef(r) => {
            if r.is_char_ref() {
                match r.resolve_char_ref() {
                    Ok(Some(c)) => out.push(c),
                    _ => return Err("invalid character reference".into()),
                }
            } else {
                let name = r.xml10_content();
                let c = match name.as_ref() {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "apos" => '\'',
                    "quot" => '"',
                    other => return Err(format!("unknown entity &{other};")),
                };
                out.push(c);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The message for a reader error: the size cap when that is what stopped it.
pub(crate) fn reader_message<R>(reader: &Reader<Counted<R>>, message: &str) -> String {
    let c = reader.get_ref();
    if c.exceeded {
        format!("larger than the allowed {} bytes", c.limit)
    } else if c.event_exceeded {
        format!("one XML item (tag, text or comment) is larger than the allowed {MAX_EVENT} bytes")
    } else {
        message.to_string()
    }
}

/// A buffered reader that counts the lines consumed (for error messages) and refuses to hand
/// out more than `limit` bytes.
pub(crate) struct Counted<R> {
    inner: R,
    /// Bytes consumed so far.
    pub(crate) bytes: u64,
    newlines: u64,
    /// The most bytes handed out.
    pub(crate) limit: u64,
    /// Set once the limit was reached.
    pub(crate) exceeded: bool,
    /// Where the item being read started.
    event_start: u64,
    /// Set once one item was larger than [`MAX_EVENT`].
    pub(crate) event_exceeded: bool,
}

impl<R> Counted<R> {
    /// Wrap `inner`, allowing `limit` bytes.
    pub(crate) fn new(inner: R, limit: u64) -> Counted<R> {
        Counted {
            inner,
            bytes: 0,
            newlines: 0,
            limit,
            exceeded: false,
            event_start: 0,
            event_exceeded: false,
        }
    }

    /// The next item starts here (see [`MAX_EVENT`]).
    pub(crate) fn start_event(&mut self) {
        self.event_start = self.bytes;
    }

    /// The 1-based line of the next byte to be consumed.
    pub(crate) fn line(&self) -> u64 {
        self.newlines + 1
    }
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let buf = self.fill_buf()?;
            let n = buf.len().min(out.len());
            out[..n].copy_from_slice(&buf[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        // Hand out at most one byte beyond each cap, so a reader that takes whole buffers
        // still stops there; the next call fails instead of returning an empty (EOF) buffer.
        let total_room = (self.limit + 1).saturating_sub(self.bytes);
        let event_room = (MAX_EVENT + 1).saturating_sub(self.bytes - self.event_start);
        if total_room == 0 {
            self.exceeded = true;
            return Err(io::Error::other(format!(
                "larger than the allowed {} bytes",
                self.limit
            )));
        }
        if event_room == 0 {
            self.event_exceeded = true;
            return Err(io::Error::other("XML item too large"));
        }
        let room = usize::try_from(total_room.min(event_room)).unwrap_or(usize::MAX);
        let buf = self.inner.fill_buf()?;
        Ok(&buf[..buf.len().min(room)])
    }

    // Newlines are few per buffer; a plain count is fast enough here.
    #[allow(clippy::naive_bytecount)]
    fn consume(&mut self, amt: usize) {
        // The buffer is still there (BufRead::consume follows fill_buf), so this reads no input.
        if let Ok(buf) = self.inner.fill_buf() {
            let n = amt.min(buf.len());
            self.newlines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        self.bytes = self.bytes.saturating_add(amt as u64);
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1796022353</revision>
  <data type="primary">
    <checksum type="sha256">0E63ebf83a40da88061725918008cc61c281c72320d87c899af95ca42ce23b2e</checksum>
    <open-checksum type="sha256">78bd92f24a1d6aa2db4f6ce43734a89d64600c9115aabaf39086c6b8ada72301</open-checksum>
    <location href="repodata/0e63-primary.xml.gz"/>
    <timestamp>1796022353</timestamp>
    <size>683</size>
    <open-size>1563</open-size>
  </data>
  <data type="filelists">
    <checksum type="sha">35b0ba0c29c7da06a3eeaa6d62bb7d4d88172864</checksum>
    <location href="repodata/fl.xml.zst"/>
    <timestamp>1796022353.5</timestamp>
  </data>
</repomd>
"#;

    #[test]
    fn parses_repomd() {
        let r = RepoMd::parse(REPOMD.as_bytes(), "u").unwrap();
        assert_eq!(r.revision.as_deref(), Some("1796022353"));
        let p = r.get("primary").unwrap();
        assert_eq!(p.location, "repodata/0e63-primary.xml.gz");
        assert_eq!(p.checksum.kind, "sha256");
        assert!(p.checksum.hex.starts_with("0e63"));
        assert_eq!(p.open_checksum.as_ref().unwrap().hex.len(), 64);
        assert_eq!(
            (p.size, p.open_size, p.timestamp),
            (Some(683), Some(1563), Some(1_796_022_353))
        );
        let f = r.get("filelists").unwrap();
        assert_eq!(f.checksum.kind, "sha1");
        assert_eq!((f.size, f.timestamp), (None, Some(1_796_022_353)));
        assert!(r.get("other").is_none());
    }

    #[test]
    fn errors_name_url_line_and_field() {
        let bad = REPOMD.replace("<size>683</size>", "<size>many</size>");
        let e = RepoMd::parse(bad.as_bytes(), "http://r/repodata/repomd.xml").unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("http://r/repodata/repomd.xml: line 9:"),
            "{s}"
        );
        assert!(s.contains("data[primary]/size"), "{s}");

        let bad = REPOMD.replace("repodata/fl.xml.zst", "../../etc/passwd");
        let e = RepoMd::parse(bad.as_bytes(), "u").unwrap_err().to_string();
        assert!(e.contains("location@href") && e.contains(".."), "{e}");
        let bad = REPOMD.replace("repodata/fl.xml.zst", "/etc/passwd");
        assert!(RepoMd::parse(bad.as_bytes(), "u").is_err());

        let bad = REPOMD.replace("type=\"sha\"", "type=\"crc32\"");
        let e = RepoMd::parse(bad.as_bytes(), "u").unwrap_err().to_string();
        assert!(e.contains("unknown checksum type"), "{e}");
        let bad = REPOMD.replace("35b0ba0c29", "35b0ba0c2");
        assert!(RepoMd::parse(bad.as_bytes(), "u").is_err());

        let bad = REPOMD.replace("<location href=\"repodata/fl.xml.zst\"/>", "");
        let e = RepoMd::parse(bad.as_bytes(), "u").unwrap_err().to_string();
        assert!(e.contains("data[filelists]/location: missing"), "{e}");

        let bad = REPOMD.replace("</data>\n</repomd>", "</dta>\n</repomd>");
        let e = RepoMd::parse(bad.as_bytes(), "u").unwrap_err();
        assert!(matches!(e, RepomdError::Xml { line: 16, .. }), "{e}");

        let e = RepoMd::parse(b"<metadata/>", "u").unwrap_err().to_string();
        assert!(e.contains("root element must be <repomd>"), "{e}");
        assert!(RepoMd::parse(b"", "u").is_err());
        assert!(RepoMd::parse(b"<repomd>", "u").is_err());
        let e = RepoMd::parse(b"<!DOCTYPE x [<!ENTITY a \"b\">]><repomd/>", "u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("DOCTYPE"), "{e}");
    }

    #[test]
    fn size_cap() {
        let mut big = String::from("<repomd>");
        while big.len() as u64 <= REPOMD_LIMIT {
            big.push_str("<!-- padding padding padding padding padding padding -->\n");
        }
        big.push_str("</repomd>");
        let e = RepoMd::parse(big.as_bytes(), "u").unwrap_err().to_string();
        assert!(e.contains("larger than the allowed"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        let alphabet: Vec<char> = "<>/=\"' &;#x0a-_:rpmdatlocsz\n".chars().collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let len = usize::try_from(x % 80).unwrap();
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[usize::try_from(x % alphabet.len() as u64).unwrap()]
                })
                .collect();
            let _ = RepoMd::parse(s.as_bytes(), "u");
            let _ = RepoMd::parse(
                format!("<repomd><data type=\"p\">{s}</data></repomd>").as_bytes(),
                "u",
            );
        }
    }
}
