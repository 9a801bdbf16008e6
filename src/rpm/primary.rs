//! Streaming readers of an rpm-md repository's `primary.xml` (the packages and their
//! dependencies) and `filelists.xml` (every file of every package), decompressed on the fly
//! (gzip, xz, zstd, bzip2 or plain, recognised by their magic bytes).

use super::deps::requirement_from_entry;
use super::package::{Checksum, Dep, Package, Requirement};
use super::repomd::{
    Counted, MAX_DEPTH, MAX_EVENT, attr, check_relative, checksum, local_name, push_text,
};
use super::version::Evr;
use crate::apt::deb::Compression;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Largest decompressed `primary.xml` accepted (a large distribution's is a few hundred MiB).
pub const PRIMARY_LIMIT: u64 = 2 << 30;

/// Largest decompressed `filelists.xml` accepted (a large distribution's is about 1 GiB).
pub const FILELISTS_LIMIT: u64 = 8 << 30;

/// Most memory the xz decoder may use (`xz -9` needs 65 MiB).
const DECODER_MEMORY: u64 = 256 << 20;

/// Largest zstd window accepted (2^27 = 128 MiB, zstd's own default limit).
const DECODER_WINDOW_LOG: u32 = 27;

/// Longest text of one element kept (names, summaries, file paths).
const MAX_TEXT: usize = 64 << 10;

/// Errors reading primary.xml or filelists.xml. Each names the URL and, for content, the line.
#[derive(Debug, thiserror::Error)]
pub enum PrimaryError {
    /// The file could not be opened or read.
    #[error("{url}: {path}: {source}")]
    Io {
        /// The metadata URL.
        url: String,
        /// The cached file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not in a compression imgbuild reads.
    #[error("{url}: {message}")]
    Compression {
        /// The metadata URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The content is not well-formed XML, could not be decompressed, or is too large.
    #[error("{url}: line {line}: malformed metadata: {message}")]
    Xml {
        /// The metadata URL.
        url: String,
        /// The line where reading stopped.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A package's field is missing or bad.
    #[error("{url}: line {line}: package {package}: {field}: {message}")]
    Field {
        /// The metadata URL.
        url: String,
        /// The line where the problem was found.
        line: u64,
        /// The package (its name, or `(unnamed)`).
        package: String,
        /// The element or attribute.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Open the metadata file at `path` (fetched from `url`), decompressed according to its magic
/// bytes. A name ending in `.gz`, `.xz`, `.zst` or `.bz2` must hold that compression; zchunk
/// (`.zck`) is refused.
pub fn open_decompressed(path: &Path, url: &str) -> Result<Box<dyn BufRead + Send>, PrimaryError> {
    let io_err = |source| PrimaryError::Io {
        url: url.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut file = BufReader::with_capacity(128 << 10, file);
    let head = file.fill_buf().map_err(io_err)?;
    let found = Compression::from_magic(head);
    if head.starts_with(b"\0ZCK1") || url.to_ascii_lowercase().ends_with(".zck") {
        return Err(PrimaryError::Compression {
            url: url.to_string(),
            message: "zchunk metadata is not supported (the repository's gzip, xz or zstd form is)"
                .into(),
        });
    }
    let named = [
        (".gz", Compression::Gzip),
        (".xz", Compression::Xz),
        (".zst", Compression::Zstd),
        (".bz2", Compression::Bzip2),
    ]
    .into_iter()
    .find(|(ext, _)| url.ends_with(ext));
    if let Some((ext, want)) = named
        && want != found
    {
        return Err(PrimaryError::Compression {
            url: url.to_string(),
            message: format!("the name ends in {ext} but the content is not in that format"),
        });
    }
    // Decoder memory is capped: metadata never needs the windows a hostile stream could ask for.
    let reader: Box<dyn io::Read + Send> = match found {
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                DECODER_MEMORY,
                liblzma::stream::CONCATENATED,
            )
            .map_err(|e| io_err(e.into()))?;
            Box::new(liblzma::read::XzDecoder::new_stream(file, stream))
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(file).map_err(io_err)?;
            d.window_log_max(DECODER_WINDOW_LOG).map_err(io_err)?;
            Box::new(d)
        }
        other => other.reader(file).map_err(io_err)?,
    };
    Ok(Box::new(BufReader::with_capacity(128 << 10, reader)))
}

/// Which dependency list an `<rpm:entry>` belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DepList {
    Provides,
    Requires,
    Conflicts,
    Obsoletes,
    Recommends,
    Suggests,
    Supplements,
    Enhances,
}

impl DepList {
    fn from_name(name: &str) -> Option<DepList> {
        Some(match name {
            "provides" => DepList::Provides,
            "requires" => DepList::Requires,
            "conflicts" => DepList::Conflicts,
            "obsoletes" => DepList::Obsoletes,
            "recommends" => DepList::Recommends,
            "suggests" => DepList::Suggests,
            "supplements" => DepList::Supplements,
            "enhances" => DepList::Enhances,
            _ => return None,
        })
    }
}

/// A `<package>` being read.
#[derive(Default)]
struct Partial {
    name: String,
    arch: String,
    evr: Option<Evr>,
    checksum: Option<Checksum>,
    location: Option<String>,
    location_base: Option<String>,
    size: u64,
    installed_size: u64,
    summary: String,
    license: String,
    vendor: String,
    url: Option<String>,
    sourcerpm: String,
    buildtime: u64,
    provides: Vec<Dep>,
    requires: Vec<Requirement>,
    conflicts: Vec<Dep>,
    obsoletes: Vec<Dep>,
    recommends: Vec<Requirement>,
    suggests: Vec<Requirement>,
    supplements: Vec<Requirement>,
    enhances: Vec<Requirement>,
    files: Vec<String>,
}

/// Shared state of one XML read: the reader over the counted input and error helpers.
struct Xml<R: BufRead> {
    reader: Reader<Counted<R>>,
    url: String,
}

impl<R: BufRead> Xml<R> {
    fn new(input: R, url: &str, limit: u64) -> Xml<R> {
        let mut reader = Reader::from_reader(Counted::new(input, limit));
        reader.config_mut().check_end_names = true;
        Xml {
            reader,
            url: url.to_string(),
        }
    }

    fn line(&self) -> u64 {
        self.reader.get_ref().line()
    }

    fn err(&self, message: impl Into<String>) -> PrimaryError {
        PrimaryError::Xml {
            url: self.url.clone(),
            line: self.line(),
            message: message.into(),
        }
    }

    fn field(&self, package: &str, field: &str, message: impl Into<String>) -> PrimaryError {
        PrimaryError::Field {
            url: self.url.clone(),
            line: self.line(),
            package: if package.is_empty() {
                "(unnamed)".into()
            } else {
                package.to_string()
            },
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn next<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Event<'b>, PrimaryError> {
        buf.clear();
        self.reader.get_mut().start_event();
        match self.reader.read_event_into(buf) {
            Ok(Event::DocType(_)) => Err(self.err("DOCTYPE declarations are not allowed")),
            Ok(e) => Ok(e),
            Err(e) => {
                let c = self.reader.get_ref();
                let message = if c.exceeded {
                    format!("larger than the allowed {} bytes (decompressed)", c.limit)
                } else if c.event_exceeded {
                    format!(
                        "one XML item (tag, text or comment) is larger than the allowed {MAX_EVENT} bytes"
                    )
                } else {
                    e.to_string()
                };
                Err(self.err(message))
            }
        }
    }
}

/// Check the root element and the nesting depth as elements open and close.
struct Depth {
    stack: Vec<String>,
    root: &'static str,
    seen_root: bool,
}

impl Depth {
    fn new(root: &'static str) -> Depth {
        Depth {
            stack: Vec::new(),
            root,
            seen_root: false,
        }
    }

    /// An element opens (`empty`: and closes at once).
    fn open<R: BufRead>(
        &mut self,
        xml: &Xml<R>,
        name: &str,
        empty: bool,
    ) -> Result<(), PrimaryError> {
        if self.stack.is_empty() {
            if self.seen_root {
                return Err(xml.err("content after the root element"));
            }
            if name != self.root {
                return Err(xml.err(format!("the root element is <{name}>, not <{}>", self.root)));
            }
            self.seen_root = true;
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(xml.err(format!("elements nested deeper than {MAX_DEPTH} levels")));
        }
        if !empty {
            self.stack.push(name.to_string());
        }
        Ok(())
    }

    fn close<R: BufRead>(&mut self, xml: &Xml<R>) -> Result<String, PrimaryError> {
        self.stack
            .pop()
            .ok_or_else(|| xml.err("unexpected closing tag"))
    }

    fn parent(&self) -> Option<&str> {
        self.stack.last().map(String::as_str)
    }

    fn finish<R: BufRead>(&self, xml: &Xml<R>) -> Result<(), PrimaryError> {
        if let Some(open) = self.stack.last() {
            return Err(xml.err(format!(
                "element <{open}> is never closed (truncated file?)"
            )));
        }
        if !self.seen_root {
            return Err(xml.err(format!("no <{}> element", self.root)));
        }
        Ok(())
    }
}

/// Parse `primary.xml` from `input` (decompressed) into packages of repository `repo`. More than
/// `limit` bytes of XML are refused.
pub fn parse_primary<R: BufRead>(
    input: R,
    url: &str,
    repo: usize,
    limit: u64,
) -> Result<Vec<Package>, PrimaryError> {
    let mut xml = Xml::new(input, url, limit);
    let mut depth = Depth::new("metadata");
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut pkg: Option<Partial> = None;
    // The element whose text is being collected, and the text so far.
    let mut text: Option<(String, String)> = None;
    loop {
        let event = xml.next(&mut buf)?;
        match event {
            Event::Start(ref s) | Event::Empty(ref s) => {
                let empty = matches!(event, Event::Empty(_));
                let name = local_name(s);
                let parent = depth.parent().map(str::to_string);
                depth.open(&xml, &name, empty)?;
                match (parent.as_deref(), name.as_str(), pkg.as_mut()) {
                    (Some("metadata"), "package", _) => {
                        if attr(s, "type").map_err(|m| xml.err(m))?.as_deref() == Some("rpm")
                            || attr(s, "type").map_err(|m| xml.err(m))?.is_none()
                        {
                            pkg = Some(Partial::default());
                        }
                        if empty {
                            pkg = None;
                        }
                    }
                    (Some("package"), "version", Some(p)) => {
                        p.evr = Some(package_evr(&xml, s, &p.name)?);
                    }
                    (Some("package"), "checksum", Some(p)) => {
                        let kind = attr(s, "type")
                            .map_err(|m| xml.field(&p.name, "checksum@type", m))?
                            .unwrap_or_default();
                        text = Some((format!("checksum {kind}"), String::new()));
                    }
                    (Some("package"), "location", Some(p)) => {
                        let href = attr(s, "href")
                            .map_err(|m| xml.field(&p.name, "location@href", m))?
                            .ok_or_else(|| xml.field(&p.name, "location@href", "missing"))?;
                        p.location = Some(href);
                        p.location_base = attr(s, "xml:base")
                            .map_err(|m| xml.field(&p.name, "location@xml:base", m))?
                            .filter(|b| !b.is_empty());
                    }
                    (Some("package"), "size", Some(p)) => {
                        p.size = number_attr(&xml, s, &p.name, "size", "package")?;
                        p.installed_size = number_attr(&xml, s, &p.name, "size", "installed")?;
                    }
                    (Some("package"), "time", Some(p)) => {
                        p.buildtime = number_attr(&xml, s, &p.name, "time", "build")?;
                    }
                    (Some("package"), "name" | "arch" | "summary" | "url", Some(_))
                    | (Some("format"), "license" | "vendor" | "sourcerpm" | "file", Some(_)) => {
                        text = Some((name.clone(), String::new()));
                    }
                    (Some(l), "entry", Some(p)) => {
                        if let Some(which) = DepList::from_name(l) {
                            add_entry(&xml, s, p, which)?;
                        }
                    }
                    _ => {}
                }
                if empty && let Some((field, t)) = text.take() {
                    store_text(&xml, pkg.as_mut(), &field, &t)?;
                }
            }
            Event::End(_) => {
                let name = depth.close(&xml)?;
                if let Some((field, t)) = text.take() {
                    store_text(&xml, pkg.as_mut(), &field, &t)?;
                }
                if name == "package"
                    && depth.parent() == Some("metadata")
                    && let Some(p) = pkg.take()
                {
                    out.push(finish_package(&xml, p, repo)?);
                }
            }
            ref e @ (Event::Text(_) | Event::CData(_) | Event::GeneralRef(_)) => {
                if let Some((_, t)) = text.as_mut() {
                    push_text(t, e).map_err(|m| xml.err(m))?;
                    if t.len() > MAX_TEXT {
                        return Err(xml.err(format!("element text longer than {MAX_TEXT} bytes")));
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    depth.finish(&xml)?;
    Ok(out)
}

/// Store the collected text of element `field` in the package.
fn store_text<R: BufRead>(
    xml: &Xml<R>,
    pkg: Option<&mut Partial>,
    field: &str,
    text: &str,
) -> Result<(), PrimaryError> {
    let Some(p) = pkg else { return Ok(()) };
    let t = text.trim();
    match field {
        "name" => p.name = t.to_string(),
        "arch" => p.arch = t.to_string(),
        "summary" => p.summary = t.to_string(),
        "url" => p.url = (!t.is_empty()).then(|| t.to_string()),
        "license" => p.license = t.to_string(),
        "vendor" => p.vendor = t.to_string(),
        "sourcerpm" => p.sourcerpm = t.to_string(),
        "file" => {
            if !t.is_empty() {
                p.files.push(t.to_string());
            }
        }
        f => {
            if let Some(kind) = f.strip_prefix("checksum ") {
                p.checksum =
                    Some(checksum(kind, t).map_err(|m| xml.field(&p.name, "checksum", m))?);
            }
        }
    }
    Ok(())
}

/// A package's `<version epoch ver rel>`.
fn package_evr<R: BufRead>(
    xml: &Xml<R>,
    s: &BytesStart<'_>,
    pkg: &str,
) -> Result<Evr, PrimaryError> {
    let get = |a: &str| attr(s, a).map_err(|m| xml.field(pkg, &format!("version@{a}"), m));
    let epoch = get("epoch")?
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.parse::<u32>()
                .map_err(|_| xml.field(pkg, "version@epoch", format!("{e:?} is not a number")))
        })
        .transpose()?;
    let version = get("ver")?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| xml.field(pkg, "version@ver", "missing"))?;
    Ok(Evr {
        epoch,
        version,
        release: get("rel")?.filter(|r| !r.is_empty()),
    })
}

/// A numeric attribute (0 when absent).
fn number_attr<R: BufRead>(
    xml: &Xml<R>,
    s: &BytesStart<'_>,
    pkg: &str,
    element: &str,
    name: &str,
) -> Result<u64, PrimaryError> {
    let field = format!("{element}@{name}");
    match attr(s, name).map_err(|m| xml.field(pkg, &field, m))? {
        None => Ok(0),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| xml.field(pkg, &field, format!("{v:?} is not a number"))),
    }
}

/// Add one `<rpm:entry>` to the package's list `which`.
fn add_entry<R: BufRead>(
    xml: &Xml<R>,
    s: &BytesStart<'_>,
    p: &mut Partial,
    which: DepList,
) -> Result<(), PrimaryError> {
    let get = |a: &str| attr(s, a).map_err(|m| xml.field(&p.name, &format!("entry@{a}"), m));
    let name = get("name")?.ok_or_else(|| xml.field(&p.name, "entry@name", "missing"))?;
    let flags = get("flags")?;
    let epoch = get("epoch")?;
    let ver = get("ver")?;
    let rel = get("rel")?;
    let pre = matches!(get("pre")?.as_deref(), Some("1" | "true"));
    let req = requirement_from_entry(
        &name,
        flags.as_deref(),
        epoch.as_deref(),
        ver.as_deref(),
        rel.as_deref(),
        pre,
    )
    .map_err(|e| xml.field(&p.name, "entry", e.to_string()))?;
    let simple = |req: Requirement| match req {
        Requirement::Simple(d) => Ok(d),
        Requirement::Rich(_) => Err(xml.field(
            &p.name,
            "entry",
            format!("{name:?}: a rich dependency cannot be provided, conflicted with or obsoleted"),
        )),
    };
    match which {
        DepList::Provides => p.provides.push(simple(req)?),
        DepList::Conflicts => p.conflicts.push(simple(req)?),
        DepList::Obsoletes => p.obsoletes.push(simple(req)?),
        DepList::Requires => p.requires.push(req),
        DepList::Recommends => p.recommends.push(req),
        DepList::Suggests => p.suggests.push(req),
        DepList::Supplements => p.supplements.push(req),
        DepList::Enhances => p.enhances.push(req),
    }
    Ok(())
}

/// Check a complete `<package>` and turn it into a [`Package`].
fn finish_package<R: BufRead>(
    xml: &Xml<R>,
    p: Partial,
    repo: usize,
) -> Result<Package, PrimaryError> {
    if p.name.is_empty() {
        return Err(xml.field("", "name", "missing"));
    }
    if p.arch.is_empty() {
        return Err(xml.field(&p.name, "arch", "missing"));
    }
    let evr = p
        .evr
        .ok_or_else(|| xml.field(&p.name, "version", "missing"))?;
    let checksum = p
        .checksum
        .ok_or_else(|| xml.field(&p.name, "checksum", "missing"))?;
    let location = p
        .location
        .ok_or_else(|| xml.field(&p.name, "location", "missing"))?;
    check_relative(&location).map_err(|m| xml.field(&p.name, "location@href", m))?;
    Ok(Package {
        name: p.name,
        arch: p.arch,
        evr,
        checksum,
        location,
        location_base: p.location_base,
        size: p.size,
        installed_size: p.installed_size,
        summary: p.summary,
        license: p.license,
        vendor: p.vendor,
        url: p.url,
        sourcerpm: p.sourcerpm,
        buildtime: p.buildtime,
        provides: p.provides,
        requires: p.requires,
        conflicts: p.conflicts,
        obsoletes: p.obsoletes,
        recommends: p.recommends,
        suggests: p.suggests,
        supplements: p.supplements,
        enhances: p.enhances,
        files: p.files,
        repo,
    })
}

/// Read `filelists.xml` from `input` (decompressed), calling `on_file(pkgid, path)` for every
/// file of every package (`pkgid` is the package's checksum hex, as in primary). More than
/// `limit` bytes of XML are refused.
pub fn parse_filelists<R: BufRead>(
    input: R,
    url: &str,
    limit: u64,
    on_file: &mut dyn FnMut(&str, &str),
) -> Result<(), PrimaryError> {
    let mut xml = Xml::new(input, url, limit);
    let mut depth = Depth::new("filelists");
    let mut buf = Vec::new();
    let mut pkgid: Option<String> = None;
    let mut text: Option<String> = None;
    loop {
        let event = xml.next(&mut buf)?;
        match event {
            Event::Start(ref s) | Event::Empty(ref s) => {
                let empty = matches!(event, Event::Empty(_));
                let name = local_name(s);
                let parent = depth.parent().map(str::to_string);
                depth.open(&xml, &name, empty)?;
                match (parent.as_deref(), name.as_str()) {
                    (Some("filelists"), "package") => {
                        let name_attr = attr(s, "name").map_err(|m| xml.err(m))?;
                        let id = attr(s, "pkgid").map_err(|m| xml.err(m))?.ok_or_else(|| {
                            xml.field(
                                name_attr.as_deref().unwrap_or_default(),
                                "package@pkgid",
                                "missing",
                            )
                        })?;
                        pkgid = Some(id.to_ascii_lowercase());
                    }
                    (Some("package"), "file") if !empty => text = Some(String::new()),
                    _ => {}
                }
            }
            Event::End(_) => {
                let name = depth.close(&xml)?;
                if name == "file" {
                    if let (Some(t), Some(id)) = (text.take(), pkgid.as_deref()) {
                        let t = t.trim();
                        if !t.is_empty() {
                            on_file(id, t);
                        }
                    }
                } else if name == "package" {
                    pkgid = None;
                }
            }
            ref e @ (Event::Text(_) | Event::CData(_) | Event::GeneralRef(_)) => {
                if let Some(t) = text.as_mut() {
                    push_text(t, e).map_err(|m| xml.err(m))?;
                    if t.len() > MAX_TEXT {
                        return Err(xml.err(format!("element text longer than {MAX_TEXT} bytes")));
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    depth.finish(&xml)
}

/// Read all of `input` decompressed according to `compression`: used by tests and small files.
#[cfg(test)]
fn decompress_all(compression: Compression, data: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    compression
        .reader(data)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpm::package::Cmp;
    use std::io::Write;

    pub(crate) const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>hello</name>
  <arch>noarch</arch>
  <version epoch="2" ver="1.0" rel="1"/>
  <checksum type="sha256" pkgid="YES">20EE75d500186392f3595dfa4e49880b08a8e38038d671819a6ca27e2cff88d0</checksum>
  <summary>say &quot;hi&quot; &amp; more</summary>
  <description>x</description>
  <packager></packager>
  <url></url>
  <time file="1796022353" build="1796022354"/>
  <size package="6498" installed="6" archive="396"/>
  <location href="Packages/hello-1.0-1.noarch.rpm"/>
  <format>
    <rpm:license>MIT</rpm:license>
    <rpm:vendor>Example</rpm:vendor>
    <rpm:group>Unspecified</rpm:group>
    <rpm:buildhost>vm</rpm:buildhost>
    <rpm:sourcerpm>hello-1.0-1.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="4504" end="6377"/>
    <rpm:provides>
      <rpm:entry name="greeting" flags="EQ" epoch="0" ver="1.0"/>
      <rpm:entry name="hello" flags="EQ" epoch="2" ver="1.0" rel="1"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="/bin/sh"/>
      <rpm:entry name="coreutils" flags="GE" epoch="0" ver="8.0" pre="1"/>
    </rpm:requires>
    <rpm:conflicts>
      <rpm:entry name="oldhello" flags="LT" epoch="0" ver="1.0"/>
    </rpm:conflicts>
    <rpm:obsoletes>
      <rpm:entry name="hello-legacy"/>
    </rpm:obsoletes>
    <rpm:recommends>
      <rpm:entry name="baz"/>
    </rpm:recommends>
    <rpm:suggests><rpm:entry name="s"/></rpm:suggests>
    <rpm:supplements><rpm:entry name="sup"/></rpm:supplements>
    <rpm:enhances><rpm:entry name="enh"/></rpm:enhances>
    <file>/usr/bin/hello</file>
    <file type="dir">/etc/hello</file>
  </format>
</package>
<package type="rpm">
  <name>base</name>
  <arch>x86_64</arch>
  <version ver="3" rel="2.fc40"/>
  <checksum type="sha512" pkgid="YES">aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</checksum>
  <summary><![CDATA[the <base>]]></summary>
  <url>https://example.invalid/base</url>
  <location xml:base="https://mirror.invalid/os/" href="b/base-3-2.fc40.x86_64.rpm"/>
  <format/>
</package>
</metadata>
"#;

    fn parse(text: &str) -> Result<Vec<Package>, PrimaryError> {
        parse_primary(text.as_bytes(), "http://r/repodata/p.xml", 3, PRIMARY_LIMIT)
    }

    #[test]
    fn parses_every_field() {
        let pkgs = parse(PRIMARY).unwrap();
        assert_eq!(pkgs.len(), 2);
        let h = &pkgs[0];
        assert_eq!(h.nevra(), "hello-2:1.0-1.noarch");
        assert_eq!(h.evr.epoch, Some(2));
        assert_eq!(h.checksum.kind, "sha256");
        assert!(h.checksum.hex.starts_with("20ee75"));
        assert_eq!(h.location, "Packages/hello-1.0-1.noarch.rpm");
        assert_eq!(h.location_base, None);
        assert_eq!(
            (h.size, h.installed_size, h.buildtime),
            (6498, 6, 1_796_022_354)
        );
        assert_eq!(h.summary, "say \"hi\" & more");
        assert_eq!((h.license.as_str(), h.vendor.as_str()), ("MIT", "Example"));
        assert_eq!(h.url, None);
        assert_eq!(h.sourcerpm, "hello-1.0-1.src.rpm");
        assert_eq!(h.provides.len(), 2);
        assert_eq!(h.provides[1].to_string(), "hello = 2:1.0-1");
        assert_eq!(h.provides[0].version.as_ref().unwrap().1.epoch, Some(0));
        assert_eq!(h.requires.len(), 2);
        let Requirement::Simple(cu) = &h.requires[1] else {
            panic!("simple")
        };
        assert!(cu.pre);
        assert_eq!(cu.version.as_ref().unwrap().0, Cmp::Ge);
        assert_eq!(h.requires[0], Requirement::Simple(Dep::named("/bin/sh")));
        assert_eq!(h.conflicts[0].version.as_ref().unwrap().0, Cmp::Lt);
        assert_eq!(h.obsoletes, vec![Dep::named("hello-legacy")]);
        assert_eq!(h.recommends, vec![Requirement::Simple(Dep::named("baz"))]);
        assert_eq!(h.suggests.len() + h.supplements.len() + h.enhances.len(), 3);
        assert_eq!(h.files, vec!["/usr/bin/hello", "/etc/hello"]);
        assert_eq!(h.repo, 3);
        let b = &pkgs[1];
        assert_eq!(b.evr.epoch, None);
        assert_eq!(b.evr.release.as_deref(), Some("2.fc40"));
        assert_eq!(b.checksum.kind, "sha512");
        assert_eq!(b.summary, "the <base>");
        assert_eq!(b.url.as_deref(), Some("https://example.invalid/base"));
        assert_eq!(
            b.location_base.as_deref(),
            Some("https://mirror.invalid/os/")
        );
        assert!(b.provides.is_empty() && b.files.is_empty());
    }

    #[test]
    fn rich_entries() {
        let text = PRIMARY.replace(
            "<rpm:entry name=\"/bin/sh\"/>",
            "<rpm:entry name=\"(foo or /usr/bin/bar)\"/>",
        );
        let pkgs = parse(&text).unwrap();
        assert!(matches!(pkgs[0].requires[0], Requirement::Rich(_)));
    }

    #[test]
    fn malformed_input_names_url_line_and_package() {
        let e = parse(&PRIMARY.replace("</rpm:requires>", "</rpm:require>"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http://r/repodata/p.xml: line 29:"), "{e}");
        let e = parse(&PRIMARY.replace("<name>base</name>", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("package (unnamed): name: missing"), "{e}");
        let e = parse(&PRIMARY.replace("ver=\"3\"", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("package base: version@ver: missing"), "{e}");
        let e = parse(&PRIMARY.replace("installed=\"6\"", "installed=\"-6\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("package hello: size@installed"), "{e}");
        let e = parse(&PRIMARY.replace("b/base-3", "../../base-3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("location@href") && e.contains(".."), "{e}");
        let e = parse(&PRIMARY.replace("type=\"sha512\"", "type=\"sha256\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("package base: checksum"), "{e}");
        let e = parse(&PRIMARY.replace("flags=\"GE\"", "flags=\"XX\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("package hello: entry"), "{e}");
        let e = parse(&PRIMARY[..PRIMARY.len() - 20])
            .unwrap_err()
            .to_string();
        assert!(e.contains("never closed") || e.contains("malformed"), "{e}");
        let e = parse("<filelists/>").unwrap_err().to_string();
        assert!(e.contains("not <metadata>"), "{e}");
        assert!(parse("").is_err());
        assert!(parse("<metadata/><metadata/>").is_err());
        let e = parse("<!DOCTYPE m [<!ENTITY x \"y\">]><metadata/>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("DOCTYPE"), "{e}");
        let e = parse("<metadata><package><name>a&foo;</name></package></metadata>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown entity"), "{e}");
        let deep = format!("<metadata>{}", "<x>".repeat(100));
        assert!(
            parse(&deep)
                .unwrap_err()
                .to_string()
                .contains("nested deeper")
        );
    }

    #[test]
    fn size_cap() {
        let e = parse_primary(PRIMARY.as_bytes(), "u", 0, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the allowed 1000 bytes"), "{e}");
        let mut files = 0;
        let e = parse_filelists(FILELISTS.as_bytes(), "u", 100, &mut |_, _| files += 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the allowed 100 bytes"), "{e}");
    }

    #[test]
    fn one_huge_item_is_refused_before_it_is_buffered() {
        let huge = format!(
            "<metadata><package><description>{}</description></package></metadata>",
            "x".repeat(usize::try_from(MAX_EVENT).unwrap() + 10)
        );
        let e = parse(&huge).unwrap_err().to_string();
        assert!(e.contains("one XML item"), "{e}");
    }

    const FILELISTS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<filelists xmlns="http://linux.duke.edu/metadata/filelists" packages="2">
<package pkgid="20EE75d500186392f3595dfa4e49880b08a8e38038d671819a6ca27e2cff88d0" name="hello" arch="noarch">
  <version epoch="2" ver="1.0" rel="1"/>
  <file>/usr/bin/hello</file>
  <file type="dir">/usr/share/hello</file>
  <file>/usr/share/hello/a&amp;b</file>
</package>
<package pkgid="ab" name="base" arch="x86_64"><version ver="3"/><file/></package>
</filelists>
"#;

    #[test]
    fn parses_filelists() {
        let mut seen = Vec::new();
        parse_filelists(FILELISTS.as_bytes(), "u", FILELISTS_LIMIT, &mut |id, f| {
            seen.push((id.to_string(), f.to_string()));
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen[0].0.starts_with("20ee75"));
        assert_eq!(seen[2].1, "/usr/share/hello/a&b");
        let bad = FILELISTS.replace(" pkgid=\"ab\"", "");
        let e = parse_filelists(bad.as_bytes(), "u", FILELISTS_LIMIT, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("package base: package@pkgid: missing"), "{e}");
        let e = parse_filelists(
            b"<metadata/>".as_slice(),
            "u",
            FILELISTS_LIMIT,
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not <filelists>"), "{e}");
    }

    fn compressed(c: Compression) -> Vec<u8> {
        let data = PRIMARY.as_bytes();
        match c {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            Compression::Xz => {
                let mut w = liblzma::write::XzEncoder::new(Vec::new(), 1);
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
            Compression::Bzip2 => {
                let mut w = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
        }
    }

    #[test]
    fn compressed_forms() {
        let dir = tempfile::tempdir().unwrap();
        for (c, ext) in [
            (Compression::None, ""),
            (Compression::Gzip, ".gz"),
            (Compression::Xz, ".xz"),
            (Compression::Zstd, ".zst"),
            (Compression::Bzip2, ".bz2"),
        ] {
            let data = compressed(c);
            assert_eq!(decompress_all(c, &data), PRIMARY.as_bytes());
            let path = dir.path().join(format!("primary.xml{ext}"));
            std::fs::write(&path, &data).unwrap();
            let url = format!("http://r/repodata/x-primary.xml{ext}");
            let r = open_decompressed(&path, &url).unwrap();
            let pkgs = parse_primary(r, &url, 0, PRIMARY_LIMIT).unwrap();
            assert_eq!(pkgs.len(), 2, "{ext}");
            // A name that promises another compression is refused.
            if !ext.is_empty() {
                let url = format!(
                    "http://r/repodata/x-primary.xml{}",
                    if ext == ".gz" { ".xz" } else { ".gz" }
                );
                let e = open_decompressed(&path, &url).err().unwrap().to_string();
                assert!(e.contains("not in that format"), "{e}");
            }
        }
        // Truncated compressed data fails with the URL and a line.
        let gz = compressed(Compression::Gzip);
        let path = dir.path().join("cut.gz");
        std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let r = open_decompressed(&path, "http://r/cut.gz").unwrap();
        let e = parse_primary(r, "http://r/cut.gz", 0, PRIMARY_LIMIT)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http://r/cut.gz: line "), "{e}");
        let path = dir.path().join("p.zck");
        std::fs::write(&path, b"\0ZCK1rest").unwrap();
        let e = open_decompressed(&path, "http://r/p.xml.zck")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("zchunk"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        let alphabet: Vec<char> = "<>/=\"' &;#x0a-_:rpmentyfils\n".chars().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
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
            let _ = parse(&s);
            let _ = parse(&format!(
                "<metadata><package><name>{s}</name><format>{s}</format></package></metadata>"
            ));
            let _ = parse_filelists(
                format!("<filelists>{s}</filelists>").as_bytes(),
                "u",
                1 << 20,
                &mut |_, _| {},
            );
        }
    }
}
