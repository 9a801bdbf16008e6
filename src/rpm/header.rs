//! Reading `.rpm` files: the 96-byte lead, the signature header (padded to 8 bytes), the main
//! header and the position of the payload, as rpm's `format.md` and `tags.md` describe them.
//!
//! Packages come from repositories we do not control, so every count, offset, type and string
//! is checked before it is used: a header is refused when its index or data store is larger
//! than rpm itself accepts, when an entry's type is unknown or its data lies outside the store
//! or is misaligned, when a tag appears twice. Strings are checked for termination when they
//! are read (lazily, so that overlapping entries cannot make parsing quadratic).

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Size of the lead.
const LEAD_SIZE: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];
/// rpm's limits (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX`, `headerMaxbytes`): nothing it would
/// accept is refused, and no hostile count makes us allocate more.
const MAX_ENTRIES: usize = 0xffff;
const MAX_DATA: usize = 0x0fff_ffff;
const MAX_HEADER_BYTES: usize = 256 << 20;
/// Most values one tag may hold (other than binary data): far above the file count of any
/// real package, and low enough that widening integers or splitting strings stays bounded.
const MAX_VALUES: usize = 1 << 22;

// Header data types.
const T_CHAR: u32 = 1;
const T_INT8: u32 = 2;
const T_INT16: u32 = 3;
const T_INT32: u32 = 4;
const T_INT64: u32 = 5;
const T_STRING: u32 = 6;
const T_BIN: u32 = 7;
const T_STRING_ARRAY: u32 = 8;
const T_I18NSTRING: u32 = 9;

// Signature tags.
const SIG_SIZE: u32 = 1000;
const SIG_LONGSIZE: u32 = 270;
const SIG_SHA256: u32 = 273;

// Main header tags.
const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const ARCH: u32 = 1022;
const FILESIZES: u32 = 1028;
const FILEMODES: u32 = 1030;
const FILERDEVS: u32 = 1033;
const FILEMTIMES: u32 = 1034;
const FILEDIGESTS: u32 = 1035;
const FILELINKTOS: u32 = 1036;
const FILEFLAGS: u32 = 1037;
const FILEUSERNAME: u32 = 1039;
const FILEGROUPNAME: u32 = 1040;
const OLDFILENAMES: u32 = 1027;
const FILEDEVICES: u32 = 1095;
const FILEINODES: u32 = 1096;
const FILELANGS: u32 = 1097;
const DIRINDEXES: u32 = 1116;
const BASENAMES: u32 = 1117;
const DIRNAMES: u32 = 1118;
const PAYLOADFORMAT: u32 = 1124;
const PAYLOADCOMPRESSOR: u32 = 1125;
const LONGFILESIZES: u32 = 5008;
const FILECAPS: u32 = 5010;
const FILEDIGESTALGO: u32 = 5011;
const PAYLOADDIGEST: u32 = 5092;
const PAYLOADDIGESTALGO: u32 = 5093;

/// The three tags of a scriptlet: body, interpreter (`*PROG`) and flags.
const SCRIPTS: [(u32, u32, u32); 7] = [
    (1151, 1153, 5024), // pretrans
    (1023, 1085, 5020), // prein
    (1024, 1086, 5021), // postin
    (1152, 1154, 5025), // posttrans
    (1025, 1087, 5022), // preun
    (1026, 1088, 5023), // postun
    (1079, 1091, 5026), // verifyscript
];

/// The tags of one kind of trigger: name, version, flags, index, scripts, progs, script
/// flags, priorities.
struct TriggerTags {
    kind: TriggerKind,
    name: u32,
    version: u32,
    flags: u32,
    index: u32,
    scripts: u32,
    progs: u32,
    script_flags: u32,
    priorities: Option<u32>,
}

const TRIGGER_TAGS: [TriggerTags; 3] = [
    TriggerTags {
        kind: TriggerKind::Package,
        name: 1066,
        version: 1067,
        flags: 1068,
        index: 1069,
        scripts: 1065,
        progs: 1092,
        script_flags: 5027,
        priorities: None,
    },
    TriggerTags {
        kind: TriggerKind::File,
        name: 5069,
        version: 5071,
        flags: 5072,
        index: 5070,
        scripts: 5066,
        progs: 5067,
        script_flags: 5068,
        priorities: Some(5084),
    },
    TriggerTags {
        kind: TriggerKind::TransactionFile,
        name: 5079,
        version: 5081,
        flags: 5082,
        index: 5080,
        scripts: 5076,
        progs: 5077,
        script_flags: 5078,
        priorities: Some(5085),
    },
];

/// Which of the two header structures of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// The signature header (digests and signatures).
    Signature,
    /// The main header (the package's metadata).
    Main,
}

impl std::fmt::Display for HeaderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderKind::Signature => "signature header",
            HeaderKind::Main => "header",
        })
    }
}

/// Errors reading a `.rpm`; each names the file and the offset or tag involved.
#[derive(Debug, thiserror::Error)]
pub enum RpmFileError {
    /// Reading the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The package file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file's structure is not that of a package (lead, header framing, truncation).
    #[error("{}: at offset {offset}: {reason}", path.display())]
    Format {
        /// The package file.
        path: PathBuf,
        /// Byte offset in the file where the problem lies.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A tag's entry or value is malformed, or a required tag is missing.
    #[error("{}: {header} tag {tag}: {reason}", path.display())]
    Tag {
        /// The package file.
        path: PathBuf,
        /// Which header holds the tag.
        header: HeaderKind,
        /// The tag number.
        tag: u32,
        /// What is wrong.
        reason: String,
    },
    /// A digest of the package does not match its content.
    #[error("{}: {what} digest mismatch: expected {expected}, got {actual}", path.display())]
    Digest {
        /// The package file.
        path: PathBuf,
        /// What was digested (`header SHA256`, `payload`).
        what: &'static str,
        /// The digest the package states (hex).
        expected: String,
        /// The digest computed (hex).
        actual: String,
    },
}

/// A digest algorithm, by its OpenPGP number as rpm stores it (`FILEDIGESTALGO`,
/// `PAYLOADDIGESTALGO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgo {
    /// MD5 (1): the default of file digests when the tag is absent.
    Md5,
    /// SHA-1 (2).
    Sha1,
    /// SHA-224 (11).
    Sha224,
    /// SHA-256 (8).
    Sha256,
    /// SHA-384 (9).
    Sha384,
    /// SHA-512 (10).
    Sha512,
    /// Any other number.
    Other(u32),
}

impl DigestAlgo {
    /// The algorithm with OpenPGP number `n`.
    pub fn from_pgp(n: u32) -> DigestAlgo {
        match n {
            1 => DigestAlgo::Md5,
            2 => DigestAlgo::Sha1,
            8 => DigestAlgo::Sha256,
            9 => DigestAlgo::Sha384,
            10 => DigestAlgo::Sha512,
            11 => DigestAlgo::Sha224,
            n => DigestAlgo::Other(n),
        }
    }

    /// A hasher for the algorithm, for the SHA-2 family (the only ones rpm has written by
    /// default since 4.14; no MD5 or SHA-1 crate is a dependency).
    pub(crate) fn hasher(self) -> Option<Box<dyn sha2::digest::DynDigest + Send>> {
        Some(match self {
            DigestAlgo::Sha224 => Box::new(Sha224::new()),
            DigestAlgo::Sha256 => Box::new(Sha256::new()),
            DigestAlgo::Sha384 => Box::new(Sha384::new()),
            DigestAlgo::Sha512 => Box::new(Sha512::new()),
            _ => return None,
        })
    }
}

/// The virtual attributes of a file (`FILEFLAGS`, rpm's `RPMFILE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileFlags(pub u32);

impl FileFlags {
    /// `%config`.
    pub const CONFIG: u32 = 1;
    /// `%doc`.
    pub const DOC: u32 = 1 << 1;
    /// `%config(missingok)`.
    pub const MISSINGOK: u32 = 1 << 3;
    /// `%config(noreplace)`.
    pub const NOREPLACE: u32 = 1 << 4;
    /// `%ghost`: owned, not in the payload, never created.
    pub const GHOST: u32 = 1 << 6;
    /// `%license`.
    pub const LICENSE: u32 = 1 << 7;
    /// `%readme`.
    pub const README: u32 = 1 << 8;
    /// `%artifact`.
    pub const ARTIFACT: u32 = 1 << 12;

    fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
    /// `%config`.
    pub fn config(self) -> bool {
        self.has(Self::CONFIG)
    }
    /// `%doc`.
    pub fn doc(self) -> bool {
        self.has(Self::DOC)
    }
    /// `%config(missingok)`.
    pub fn missingok(self) -> bool {
        self.has(Self::MISSINGOK)
    }
    /// `%config(noreplace)`.
    pub fn noreplace(self) -> bool {
        self.has(Self::NOREPLACE)
    }
    /// `%ghost`.
    pub fn ghost(self) -> bool {
        self.has(Self::GHOST)
    }
    /// `%license`.
    pub fn license(self) -> bool {
        self.has(Self::LICENSE)
    }
}

/// One file of a package, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute path (`DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]`), as stored (not yet checked
    /// for `..`: the unpacker refuses those).
    pub path: String,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Size in bytes (for a symlink: the length of its target).
    pub size: u64,
    /// Owner's user name.
    pub user: String,
    /// Owner's group name.
    pub group: String,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Symlink target; empty for other files.
    pub link_target: String,
    /// Device number of a device file (as rpm stores it: `major << 8 | minor` for small ones).
    pub rdev: u32,
    /// Virtual attributes (`%config`, `%doc`, `%ghost`, …).
    pub flags: FileFlags,
    /// Hex digest of a regular file's content; empty for other files.
    pub digest: String,
    /// The algorithm of `digest`.
    pub digest_algo: DigestAlgo,
    /// Abstract inode number: regular files sharing `(device, inode)` are one hardlink set.
    pub inode: u32,
    /// Abstract device number (see `inode`).
    pub device: u32,
    /// File capabilities in `cap_to_text(3)` form (`cap_net_raw=ep`), if any.
    pub caps: Option<String>,
    /// Language of the file (man page translations), if any.
    pub lang: Option<String>,
}

impl FileEntry {
    /// The file type bits of `mode`.
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// One scriptlet: interpreter with arguments, body and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scriptlet {
    /// Interpreter and its arguments (`["/bin/sh"]`, `["<lua>"]`, `["/usr/bin/perl", "-w"]`);
    /// `["/bin/sh"]` when the package names none, as rpm defaults.
    pub prog: Vec<String>,
    /// The script text; `None` for `-p /prog` without a body.
    pub body: Option<String>,
    /// rpm's `RPMSCRIPT_FLAG_*` bits: 1 expand macros, 2 expand query format, 4 critical.
    pub flags: u32,
}

/// The package's install and erase scriptlets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scriptlets {
    /// `%pretrans`.
    pub pretrans: Option<Scriptlet>,
    /// `%pre`.
    pub pre: Option<Scriptlet>,
    /// `%post`.
    pub post: Option<Scriptlet>,
    /// `%posttrans`.
    pub posttrans: Option<Scriptlet>,
    /// `%preun`.
    pub preun: Option<Scriptlet>,
    /// `%postun`.
    pub postun: Option<Scriptlet>,
    /// `%verifyscript`.
    pub verifyscript: Option<Scriptlet>,
}

/// The kind of a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// A package trigger (`%triggerin -- pkg`): `name` is a package name.
    Package,
    /// A file trigger (`%filetriggerin -- /prefix`), run once per triggering package.
    File,
    /// A transaction file trigger (`%transfiletriggerin`), run once per transaction.
    TransactionFile,
}

/// One trigger condition with its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Package, file or transaction-file trigger.
    pub kind: TriggerKind,
    /// The package name or path prefix that triggers it.
    pub name: String,
    /// The version the condition compares with, if any.
    pub version: Option<String>,
    /// rpm's sense flags: the comparison bits and `RPMSENSE_TRIGGERIN` (1 << 16), `TRIGGERUN`
    /// (1 << 17), `TRIGGERPOSTUN` (1 << 18), `TRIGGERPREIN` (1 << 25).
    pub flags: u32,
    /// The script run.
    pub script: Scriptlet,
    /// Priority of a file trigger (higher runs first); `None` for package triggers.
    pub priority: Option<u32>,
}

/// One index entry, checked against the data store except for string termination.
#[derive(Debug, Clone, Copy)]
struct Entry {
    ty: u32,
    offset: usize,
    count: usize,
}

/// A parsed header structure: the bytes as stored and the checked index.
#[derive(Debug, Clone)]
struct Header {
    blob: Vec<u8>,
    data_start: usize,
    entries: BTreeMap<u32, Entry>,
}

/// A value could not be read; the caller adds the path and header.
type TagResult<T> = Result<T, (u32, String)>;

impl Header {
    /// Parse `blob` (intro, index and data store). Errors carry the offset within the blob.
    fn parse(blob: Vec<u8>) -> Result<Header, (usize, String)> {
        let (il, dl) = intro(&blob)?;
        let data_start = 16 + il * 16;
        if blob.len() != data_start + dl {
            return Err((
                0,
                format!(
                    "header is {} bytes, its intro says {}",
                    blob.len(),
                    data_start + dl
                ),
            ));
        }
        let mut entries = BTreeMap::new();
        for i in 0..il {
            let at = 16 + i * 16;
            let word = |k: usize| be32(&blob[at + 4 * k..]);
            let (tag, ty, offset, count) = (word(0), word(1), word(2), word(3));
            let bad = |reason: String| Err((at, format!("index entry {i} (tag {tag}): {reason}")));
            if !(T_CHAR..=T_I18NSTRING).contains(&ty) {
                return bad(format!("unknown data type {ty}"));
            }
            let (Ok(offset), Ok(count)) = (usize::try_from(offset), usize::try_from(count)) else {
                return bad("offset or count out of range".into());
            };
            if offset > dl || offset > MAX_DATA {
                return bad(format!(
                    "data offset {offset} outside the {dl}-byte data store"
                ));
            }
            if count == 0 || count > MAX_DATA || (ty != T_BIN && count > MAX_VALUES) {
                return bad(format!("bad count {count}"));
            }
            let size = match ty {
                T_INT16 => 2,
                T_INT32 => 4,
                T_INT64 => 8,
                _ => 1,
            };
            if offset % size != 0 {
                return bad(format!("offset {offset} not aligned for its type"));
            }
            match ty {
                T_STRING if count != 1 => return bad("string with count other than 1".into()),
                // Every string takes at least its terminator.
                T_STRING | T_STRING_ARRAY | T_I18NSTRING if count > dl - offset => {
                    return bad(format!("{count} strings cannot fit in the data store"));
                }
                T_STRING | T_STRING_ARRAY | T_I18NSTRING => {}
                _ => {
                    let end = count.checked_mul(size).and_then(|n| n.checked_add(offset));
                    if end.is_none_or(|e| e > dl) {
                        return bad(format!(
                            "{count} values at offset {offset} overrun the data store"
                        ));
                    }
                }
            }
            if entries.insert(tag, Entry { ty, offset, count }).is_some() {
                return bad("tag appears twice".into());
            }
        }
        Ok(Header {
            blob,
            data_start,
            entries,
        })
    }

    fn data(&self) -> &[u8] {
        &self.blob[self.data_start..]
    }

    fn has(&self, tag: u32) -> bool {
        self.entries.contains_key(&tag)
    }

    /// The strings of a string-typed tag, each checked for termination inside the store.
    fn strings(&self, tag: u32) -> TagResult<Option<Vec<&[u8]>>> {
        let Some(e) = self.entries.get(&tag) else {
            return Ok(None);
        };
        if !matches!(e.ty, T_STRING | T_STRING_ARRAY | T_I18NSTRING) {
            return Err((tag, format!("type {} where a string was expected", e.ty)));
        }
        let data = self.data();
        let mut pos = e.offset;
        let mut out = Vec::with_capacity(e.count.min(1 << 16));
        for n in 0..e.count {
            let rest = data.get(pos..).unwrap_or_default();
            let Some(len) = rest.iter().position(|&b| b == 0) else {
                return Err((
                    tag,
                    format!("string {n} at data offset {pos} is not terminated"),
                ));
            };
            out.push(&rest[..len]);
            pos += len + 1;
        }
        Ok(Some(out))
    }

    /// The values of an integer-typed tag, widened.
    fn ints(&self, tag: u32) -> TagResult<Option<Vec<u64>>> {
        let Some(e) = self.entries.get(&tag) else {
            return Ok(None);
        };
        let data = self.data();
        let size = match e.ty {
            T_CHAR | T_INT8 => 1,
            T_INT16 => 2,
            T_INT32 => 4,
            T_INT64 => 8,
            ty => return Err((tag, format!("type {ty} where an integer was expected"))),
        };
        // Bounds were checked by `parse`.
        let bytes = &data[e.offset..e.offset + e.count * size];
        Ok(Some(
            bytes
                .chunks_exact(size)
                .map(|c| c.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
                .collect(),
        ))
    }

    /// The bytes of a `BIN` tag.
    fn bin(&self, tag: u32) -> TagResult<Option<&[u8]>> {
        let Some(e) = self.entries.get(&tag) else {
            return Ok(None);
        };
        if e.ty != T_BIN {
            return Err((tag, format!("type {} where binary data was expected", e.ty)));
        }
        Ok(Some(&self.data()[e.offset..e.offset + e.count]))
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Check a header intro (magic, version 1) and return its entry count and data size.
fn intro(b: &[u8]) -> Result<(usize, usize), (usize, String)> {
    if b.len() < 16 {
        return Err((0, "truncated header intro".into()));
    }
    if b[..3] != HEADER_MAGIC || b[3] != 1 {
        return Err((0, "bad header magic".into()));
    }
    let il = be32(&b[8..]) as usize;
    let dl = be32(&b[12..]) as usize;
    if il == 0 || il > MAX_ENTRIES {
        return Err((
            8,
            format!("{il} index entries (1 to {MAX_ENTRIES} allowed)"),
        ));
    }
    if dl > MAX_DATA || 16 + il * 16 + dl > MAX_HEADER_BYTES {
        return Err((12, format!("data store of {dl} bytes is too large")));
    }
    Ok((il, dl))
}

/// An opened package: its two headers, checked, and where its payload starts.
#[derive(Debug, Clone)]
pub struct RpmFile {
    path: PathBuf,
    signature: Header,
    header: Header,
    payload_offset: u64,
    file_len: u64,
    name: String,
    epoch: Option<u32>,
    version: String,
    release: String,
    arch: String,
    source: bool,
}

impl RpmFile {
    /// Open `path`, check the lead and read both headers (the payload is not read).
    pub fn open(path: impl AsRef<Path>) -> Result<RpmFile, RpmFileError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| RpmFileError::Io {
            path: path.clone(),
            source,
        };
        let mut f = File::open(&path).map_err(io_err)?;
        let file_len = f.metadata().map_err(io_err)?.len();
        let format = |offset: u64, reason: String| RpmFileError::Format {
            path: path.clone(),
            offset,
            reason,
        };
        let mut lead = [0u8; LEAD_SIZE];
        read_exact(&mut f, &mut lead).map_err(|e| match e {
            Short::Eof => format(
                0,
                "file too short for an rpm lead; not an rpm package".into(),
            ),
            Short::Io(e) => io_err(e),
        })?;
        if lead[..4] != LEAD_MAGIC {
            return Err(format(0, "bad lead magic; not an rpm package".into()));
        }
        if lead[4] < 3 {
            return Err(format(
                4,
                format!(
                    "package format {}.{} is too old (3.0 or later expected)",
                    lead[4], lead[5]
                ),
            ));
        }
        if u16::from_be_bytes([lead[78], lead[79]]) != 5 {
            return Err(format(
                78,
                "signature type is not 5 (header-style signatures)".into(),
            ));
        }
        let source = u16::from_be_bytes([lead[6], lead[7]]) == 1;
        let mut offset = LEAD_SIZE as u64;
        let signature =
            read_header(&mut f, offset, file_len).map_err(|e| e.into_error(&path, io_err))?;
        offset += signature.blob.len() as u64;
        // The signature header is padded to a multiple of 8 bytes.
        let pad = (8 - offset % 8) % 8;
        offset += pad;
        let header =
            read_header(&mut f, offset, file_len).map_err(|e| e.into_error(&path, io_err))?;
        offset += header.blob.len() as u64;
        let mut rpm = RpmFile {
            path,
            signature,
            header,
            payload_offset: offset,
            file_len,
            name: String::new(),
            epoch: None,
            version: String::new(),
            release: String::new(),
            arch: String::new(),
            source,
        };
        rpm.name = rpm.required(NAME)?;
        rpm.version = rpm.required(VERSION)?;
        rpm.release = rpm.required(RELEASE)?;
        rpm.arch = rpm.text(ARCH)?.unwrap_or_default();
        rpm.epoch = match rpm.int(EPOCH)? {
            None => None,
            Some(e) => {
                Some(u32::try_from(e).map_err(|_| rpm.tag_err(EPOCH, "epoch out of range"))?)
            }
        };
        Ok(rpm)
    }

    fn tag_err(&self, tag: u32, reason: impl Into<String>) -> RpmFileError {
        RpmFileError::Tag {
            path: self.path.clone(),
            header: HeaderKind::Main,
            tag,
            reason: reason.into(),
        }
    }

    fn lift<T>(&self, kind: HeaderKind, r: TagResult<T>) -> Result<T, RpmFileError> {
        r.map_err(|(tag, reason)| RpmFileError::Tag {
            path: self.path.clone(),
            header: kind,
            tag,
            reason,
        })
    }

    fn required(&self, tag: u32) -> Result<String, RpmFileError> {
        self.text(tag)?
            .ok_or_else(|| self.tag_err(tag, "required tag is missing"))
    }

    /// The first string of a main-header tag, as UTF-8.
    fn text(&self, tag: u32) -> Result<Option<String>, RpmFileError> {
        Ok(self.texts(tag)?.and_then(|v| v.into_iter().next()))
    }

    fn texts(&self, tag: u32) -> Result<Option<Vec<String>>, RpmFileError> {
        let v = self.lift(HeaderKind::Main, self.header.strings(tag))?;
        v.map(|v| {
            v.into_iter()
                .map(|s| {
                    String::from_utf8(s.to_vec())
                        .map_err(|_| self.tag_err(tag, "string is not UTF-8"))
                })
                .collect()
        })
        .transpose()
    }

    fn int(&self, tag: u32) -> Result<Option<u64>, RpmFileError> {
        Ok(self
            .lift(HeaderKind::Main, self.header.ints(tag))?
            .and_then(|v| v.first().copied()))
    }

    /// The package file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `NAME`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `EPOCH`, when the package has one.
    pub fn epoch(&self) -> Option<u32> {
        self.epoch
    }

    /// `VERSION`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `RELEASE`.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// `ARCH` (`x86_64`, `noarch`, …); empty when absent.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The lead says this is a source package.
    pub fn is_source(&self) -> bool {
        self.source
    }

    /// `name-[epoch:]version-release.arch`, for messages.
    pub fn nevra(&self) -> String {
        let epoch = self.epoch.map(|e| format!("{e}:")).unwrap_or_default();
        format!(
            "{}-{epoch}{}-{}.{}",
            self.name, self.version, self.release, self.arch
        )
    }

    /// The main header exactly as stored in the file (magic, index and data store): what the
    /// header SHA256 digest covers. rpm's database stores it without the first 8 bytes
    /// (magic and reserved word).
    pub fn header_blob(&self) -> &[u8] {
        &self.header.blob
    }

    /// The signature header exactly as stored (without its padding).
    pub fn signature_blob(&self) -> &[u8] {
        &self.signature.blob
    }

    /// Byte offset of the (compressed) payload in the file.
    pub fn payload_offset(&self) -> u64 {
        self.payload_offset
    }

    /// Size of the (compressed) payload: the rest of the file.
    pub fn payload_len(&self) -> u64 {
        self.file_len - self.payload_offset
    }

    /// `PAYLOADCOMPRESSOR` (`gzip`, `xz`, `lzma`, `zstd`, `bzip2`); `None` when absent (an
    /// uncompressed payload, or a package older than the tag: gzip).
    pub fn payload_compressor(&self) -> Result<Option<String>, RpmFileError> {
        self.text(PAYLOADCOMPRESSOR)
    }

    /// `PAYLOADFORMAT` (`cpio`); `None` when absent (cpio).
    pub fn payload_format(&self) -> Result<Option<String>, RpmFileError> {
        self.text(PAYLOADFORMAT)
    }

    /// The strings of any main-header tag (dependencies, changelog, …), as UTF-8.
    pub fn tag_strings(&self, tag: u32) -> Result<Option<Vec<String>>, RpmFileError> {
        self.texts(tag)
    }

    /// The values of any integer main-header tag, widened to `u64`.
    pub fn tag_ints(&self, tag: u32) -> Result<Option<Vec<u64>>, RpmFileError> {
        self.lift(HeaderKind::Main, self.header.ints(tag))
    }

    /// The bytes of a binary main-header tag.
    pub fn tag_bin(&self, tag: u32) -> Result<Option<&[u8]>, RpmFileError> {
        self.lift(HeaderKind::Main, self.header.bin(tag))
    }

    /// The bytes of a binary signature-header tag (the OpenPGP header signature is
    /// `RSAHEADER`, 268).
    pub fn signature_tag_bin(&self, tag: u32) -> Result<Option<&[u8]>, RpmFileError> {
        self.lift(HeaderKind::Signature, self.signature.bin(tag))
    }

    /// Whether the main header has `tag`.
    pub fn has_tag(&self, tag: u32) -> bool {
        self.header.has(tag)
    }

    /// A per-file array: `None` when absent, an error when its length is not `n`.
    fn per_file<T>(
        &self,
        tag: u32,
        n: usize,
        v: Option<Vec<T>>,
    ) -> Result<Option<Vec<T>>, RpmFileError> {
        match v {
            Some(v) if v.len() != n => {
                Err(self.tag_err(tag, format!("{} values for {n} files", v.len())))
            }
            v => Ok(v),
        }
    }

    fn file_ints(&self, tag: u32, n: usize) -> Result<Option<Vec<u64>>, RpmFileError> {
        let v = self.tag_ints(tag)?;
        self.per_file(tag, n, v)
    }

    fn file_texts(&self, tag: u32, n: usize) -> Result<Option<Vec<String>>, RpmFileError> {
        let v = self.texts(tag)?;
        self.per_file(tag, n, v)
    }

    /// The file list, in header order (sorted by path, as rpmbuild writes it).
    pub fn files(&self) -> Result<Vec<FileEntry>, RpmFileError> {
        let paths = self.paths()?;
        let n = paths.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let modes = self
            .file_ints(FILEMODES, n)?
            .ok_or_else(|| self.tag_err(FILEMODES, "file modes are missing"))?;
        let sizes = match self.file_ints(LONGFILESIZES, n)? {
            Some(v) => v,
            None => self.file_ints(FILESIZES, n)?.unwrap_or_else(|| vec![0; n]),
        };
        let users = self.file_texts(FILEUSERNAME, n)?;
        let groups = self.file_texts(FILEGROUPNAME, n)?;
        let mtimes = self.file_ints(FILEMTIMES, n)?;
        let links = self.file_texts(FILELINKTOS, n)?;
        let rdevs = self.file_ints(FILERDEVS, n)?;
        let flags = self.file_ints(FILEFLAGS, n)?;
        let digests = self.file_texts(FILEDIGESTS, n)?;
        let inodes = self.file_ints(FILEINODES, n)?;
        let devices = self.file_ints(FILEDEVICES, n)?;
        let caps = self.file_texts(FILECAPS, n)?;
        let langs = self.file_texts(FILELANGS, n)?;
        let algo = self.int(FILEDIGESTALGO)?.map_or(DigestAlgo::Md5, |a| {
            DigestAlgo::from_pgp(u32::try_from(a).unwrap_or(u32::MAX))
        });
        let at = |v: &Option<Vec<u64>>, i: usize| v.as_ref().map_or(0, |v| v[i]);
        let text = |v: &Option<Vec<String>>, i: usize| {
            v.as_ref().map(|v| v[i].clone()).unwrap_or_default()
        };
        let narrow = |tag: u32, v: u64| {
            u32::try_from(v).map_err(|_| self.tag_err(tag, format!("value {v} out of range")))
        };
        let mut out = Vec::with_capacity(n);
        for (i, path) in paths.into_iter().enumerate() {
            let opt = |v: &Option<Vec<String>>| {
                v.as_ref().map(|v| v[i].clone()).filter(|s| !s.is_empty())
            };
            out.push(FileEntry {
                path,
                mode: narrow(FILEMODES, modes[i])?,
                size: sizes[i],
                user: users
                    .as_ref()
                    .map_or_else(|| "root".to_string(), |v| v[i].clone()),
                group: groups
                    .as_ref()
                    .map_or_else(|| "root".to_string(), |v| v[i].clone()),
                mtime: narrow(FILEMTIMES, at(&mtimes, i))?,
                link_target: text(&links, i),
                rdev: narrow(FILERDEVS, at(&rdevs, i))?,
                flags: FileFlags(narrow(FILEFLAGS, at(&flags, i))?),
                digest: text(&digests, i),
                digest_algo: algo,
                inode: narrow(FILEINODES, at(&inodes, i))?,
                device: narrow(FILEDEVICES, at(&devices, i))?,
                caps: opt(&caps),
                lang: opt(&langs),
            });
        }
        Ok(out)
    }

    /// File paths from `DIRNAMES`/`BASENAMES`/`DIRINDEXES` (or the old `OLDFILENAMES`).
    fn paths(&self) -> Result<Vec<String>, RpmFileError> {
        let Some(bases) = self.texts(BASENAMES)? else {
            return Ok(self.texts(OLDFILENAMES)?.unwrap_or_default());
        };
        let n = bases.len();
        let dirs = self
            .texts(DIRNAMES)?
            .ok_or_else(|| self.tag_err(DIRNAMES, "directory names are missing"))?;
        let idx = self
            .file_ints(DIRINDEXES, n)?
            .ok_or_else(|| self.tag_err(DIRINDEXES, "directory indexes are missing"))?;
        bases
            .into_iter()
            .zip(idx)
            .map(|(b, i)| {
                let d = usize::try_from(i)
                    .ok()
                    .and_then(|i| dirs.get(i))
                    .ok_or_else(|| {
                        self.tag_err(
                            DIRINDEXES,
                            format!("index {i} outside the {} directory names", dirs.len()),
                        )
                    })?;
                Ok(format!("{d}{b}"))
            })
            .collect()
    }

    /// A scriptlet from its body, prog and flags tags.
    fn scriptlet(
        &self,
        body: u32,
        prog: u32,
        flags: u32,
    ) -> Result<Option<Scriptlet>, RpmFileError> {
        let body = self.text(body)?;
        let prog = self.texts(prog)?;
        if body.is_none() && prog.is_none() {
            return Ok(None);
        }
        let flags = match self.int(flags)? {
            Some(f) => u32::try_from(f).map_err(|_| self.tag_err(flags, "flags out of range"))?,
            None => 0,
        };
        Ok(Some(Scriptlet {
            prog: prog
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into()]),
            body,
            flags,
        }))
    }

    /// The install and erase scriptlets.
    pub fn scriptlets(&self) -> Result<Scriptlets, RpmFileError> {
        let [pretrans, pre, post, posttrans, preun, postun, verifyscript] = SCRIPTS;
        let s = |(b, p, f): (u32, u32, u32)| self.scriptlet(b, p, f);
        Ok(Scriptlets {
            pretrans: s(pretrans)?,
            pre: s(pre)?,
            post: s(post)?,
            posttrans: s(posttrans)?,
            preun: s(preun)?,
            postun: s(postun)?,
            verifyscript: s(verifyscript)?,
        })
    }

    /// Package triggers, file triggers and transaction file triggers, in header order.
    pub fn triggers(&self) -> Result<Vec<Trigger>, RpmFileError> {
        let mut out = Vec::new();
        for t in &TRIGGER_TAGS {
            let Some(names) = self.texts(t.name)? else {
                continue;
            };
            let n = names.len();
            let versions = self.file_texts(t.version, n)?;
            let flags = self.file_ints(t.flags, n)?;
            let index = self
                .file_ints(t.index, n)?
                .ok_or_else(|| self.tag_err(t.index, "trigger indexes are missing"))?;
            let scripts = self.texts(t.scripts)?.unwrap_or_default();
            let m = scripts.len();
            let progs = self.file_texts(t.progs, m)?;
            let sflags = self.file_ints(t.script_flags, m)?;
            let prios = match t.priorities {
                Some(tag) => self.file_ints(tag, m)?,
                None => None,
            };
            for (i, name) in names.into_iter().enumerate() {
                let x = usize::try_from(index[i])
                    .ok()
                    .filter(|&x| x < m)
                    .ok_or_else(|| {
                        self.tag_err(
                            t.index,
                            format!("index {} outside the {m} trigger scripts", index[i]),
                        )
                    })?;
                let narrow = |tag: u32, v: u64| {
                    u32::try_from(v)
                        .map_err(|_| self.tag_err(tag, format!("value {v} out of range")))
                };
                out.push(Trigger {
                    kind: t.kind,
                    name,
                    version: versions
                        .as_ref()
                        .map(|v| v[i].clone())
                        .filter(|v| !v.is_empty()),
                    flags: narrow(t.flags, flags.as_ref().map_or(0, |f| f[i]))?,
                    script: Scriptlet {
                        prog: vec![
                            progs
                                .as_ref()
                                .map_or_else(|| "/bin/sh".to_string(), |p| p[x].clone()),
                        ],
                        body: Some(scripts[x].clone()).filter(|s| !s.is_empty()),
                        flags: narrow(t.script_flags, sflags.as_ref().map_or(0, |f| f[x]))?,
                    },
                    priority: match &prios {
                        Some(p) => Some(narrow(t.priorities.unwrap_or(0), p[x])?),
                        None => None,
                    },
                });
            }
        }
        Ok(out)
    }

    /// Check the digests the package carries, where present: the signature header's SHA256
    /// of the main header, the total size of header and payload, and the payload digest
    /// (`PAYLOADDIGEST`, over the compressed payload). MD5 and SHA-1 digests are not checked
    /// (rpm itself no longer trusts them).
    pub fn verify(&self) -> Result<(), RpmFileError> {
        let sig = &self.signature;
        let sig_err = |(tag, reason)| RpmFileError::Tag {
            path: self.path.clone(),
            header: HeaderKind::Signature,
            tag,
            reason,
        };
        if let Some(expected) = sig.strings(SIG_SHA256).map_err(sig_err)? {
            let expected = String::from_utf8_lossy(expected.first().copied().unwrap_or_default())
                .to_ascii_lowercase();
            let actual = hex::encode(Sha256::digest(&self.header.blob));
            if expected != actual {
                return Err(RpmFileError::Digest {
                    path: self.path.clone(),
                    what: "header SHA256",
                    expected,
                    actual,
                });
            }
        }
        let size = match sig.ints(SIG_LONGSIZE).map_err(sig_err)? {
            Some(v) => v.first().copied(),
            None => sig
                .ints(SIG_SIZE)
                .map_err(sig_err)?
                .and_then(|v| v.first().copied()),
        };
        let have = self.header.blob.len() as u64 + self.payload_len();
        if let Some(size) = size
            && size != have
        {
            return Err(RpmFileError::Format {
                path: self.path.clone(),
                offset: self.file_len,
                reason: format!(
                    "header and payload are {have} bytes, the signature header says {size}"
                ),
            });
        }
        let Some(expected) = self.texts(PAYLOADDIGEST)? else {
            return Ok(());
        };
        let expected = expected
            .first()
            .cloned()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let algo = self.int(PAYLOADDIGESTALGO)?.unwrap_or(8);
        let algo = DigestAlgo::from_pgp(u32::try_from(algo).unwrap_or(u32::MAX));
        let mut hasher = algo.hasher().ok_or_else(|| {
            self.tag_err(
                PAYLOADDIGESTALGO,
                format!("unsupported payload digest algorithm {algo:?}"),
            )
        })?;
        let io_err = |source| RpmFileError::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = File::open(&self.path).map_err(io_err)?;
        f.seek(SeekFrom::Start(self.payload_offset))
            .map_err(io_err)?;
        let mut f = f.take(self.payload_len());
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            hasher.update(&buf[..n]);
        }
        let actual = hex::encode(hasher.finalize());
        if expected != actual {
            return Err(RpmFileError::Digest {
                path: self.path.clone(),
                what: "payload",
                expected,
                actual,
            });
        }
        Ok(())
    }
}

enum Short {
    Eof,
    Io(io::Error),
}

fn read_exact(f: &mut impl Read, buf: &mut [u8]) -> Result<(), Short> {
    f.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Short::Eof
        } else {
            Short::Io(e)
        }
    })
}

/// A header that could not be read: where, and why.
enum ReadError {
    Io(io::Error),
    At(u64, String),
}

impl ReadError {
    fn into_error(
        self,
        path: &Path,
        io_err: impl FnOnce(io::Error) -> RpmFileError,
    ) -> RpmFileError {
        match self {
            ReadError::Io(e) => io_err(e),
            ReadError::At(offset, reason) => RpmFileError::Format {
                path: path.to_path_buf(),
                offset,
                reason,
            },
        }
    }
}

/// Read and parse the header structure at `offset`; its size is checked against the file's
/// length before anything is allocated for it.
fn read_header(f: &mut File, offset: u64, file_len: u64) -> Result<Header, ReadError> {
    f.seek(SeekFrom::Start(offset)).map_err(ReadError::Io)?;
    let mut head = [0u8; 16];
    read_exact(f, &mut head).map_err(|e| match e {
        Short::Eof => ReadError::At(offset, "file ends inside a header intro".into()),
        Short::Io(e) => ReadError::Io(e),
    })?;
    let (il, dl) = intro(&head).map_err(|(o, r)| ReadError::At(offset + o as u64, r))?;
    let total = 16 + il * 16 + dl;
    if offset + total as u64 > file_len {
        return Err(ReadError::At(
            offset,
            format!("header of {total} bytes runs past the end of the {file_len}-byte file"),
        ));
    }
    let mut blob = vec![0u8; total];
    blob[..16].copy_from_slice(&head);
    read_exact(f, &mut blob[16..]).map_err(|e| match e {
        Short::Eof => ReadError::At(offset, "file ends inside a header".into()),
        Short::Io(e) => ReadError::Io(e),
    })?;
    Header::parse(blob).map_err(|(o, r)| ReadError::At(offset + o as u64, r))
}

/// Builders of hand-made packages for the unit tests of this module and of the payload.
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
pub(crate) mod testpkg {
    use sha2::{Digest, Sha256};

    /// A tag value to store.
    #[allow(dead_code)]
    pub(crate) enum Val {
        Str(&'static str),
        Strs(Vec<String>),
        I16(Vec<u16>),
        I32(Vec<u32>),
        I64(Vec<u64>),
        Bin(Vec<u8>),
    }

    /// A header structure holding `entries` (tag, value), laid out as rpm lays it out
    /// (each value aligned for its type).
    pub(crate) fn header(entries: &[(u32, Val)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        for (tag, v) in entries {
            let (ty, align, count, bytes): (u32, usize, usize, Vec<u8>) = match v {
                Val::Str(s) => (6, 1, 1, [s.as_bytes(), b"\0"].concat()),
                Val::Strs(v) => (
                    8,
                    1,
                    v.len(),
                    v.iter()
                        .flat_map(|s| [s.as_bytes(), b"\0"].concat())
                        .collect(),
                ),
                Val::I16(v) => (
                    3,
                    2,
                    v.len(),
                    v.iter().flat_map(|x| x.to_be_bytes()).collect(),
                ),
                Val::I32(v) => (
                    4,
                    4,
                    v.len(),
                    v.iter().flat_map(|x| x.to_be_bytes()).collect(),
                ),
                Val::I64(v) => (
                    5,
                    8,
                    v.len(),
                    v.iter().flat_map(|x| x.to_be_bytes()).collect(),
                ),
                Val::Bin(b) => (7, 1, b.len(), b.clone()),
            };
            while !data.len().is_multiple_of(align) {
                data.push(0);
            }
            for w in [*tag, ty, data.len() as u32, count as u32] {
                index.extend_from_slice(&w.to_be_bytes());
            }
            data.extend_from_slice(&bytes);
        }
        let mut out = vec![0x8e, 0xad, 0xe8, 1, 0, 0, 0, 0];
        out.extend_from_slice(&((entries.len() as u32).to_be_bytes()));
        out.extend_from_slice(&((data.len() as u32).to_be_bytes()));
        out.extend_from_slice(&index);
        out.extend_from_slice(&data);
        out
    }

    /// A lead for package `name`.
    pub(crate) fn lead() -> Vec<u8> {
        let mut l = vec![0u8; 96];
        l[..4].copy_from_slice(&[0xed, 0xab, 0xee, 0xdb]);
        l[4] = 3;
        l[79] = 5;
        l
    }

    /// A whole package: lead, a signature header with the main header's SHA256, padding, the
    /// main header and `payload`.
    pub(crate) fn package(main: &[u8], payload: &[u8]) -> Vec<u8> {
        let digest = hex::encode(Sha256::digest(main));
        let digest: &'static str = Box::leak(digest.into_boxed_str());
        let sig = header(&[
            (273, Val::Str(digest)),
            (1000, Val::I32(vec![(main.len() + payload.len()) as u32])),
        ]);
        let mut out = lead();
        out.extend_from_slice(&sig);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        out.extend_from_slice(main);
        out.extend_from_slice(payload);
        out
    }

    /// The name tags every package needs.
    pub(crate) fn nevra() -> Vec<(u32, Val)> {
        vec![
            (1000, Val::Str("demo")),
            (1001, Val::Str("1.0")),
            (1002, Val::Str("1")),
            (1022, Val::Str("noarch")),
        ]
    }

    /// One file of a hand-made package.
    pub(crate) struct F {
        pub(crate) path: &'static str,
        pub(crate) mode: u16,
        pub(crate) size: u32,
        pub(crate) link: &'static str,
        pub(crate) flags: u32,
        pub(crate) inode: u32,
    }

    /// A regular file.
    pub(crate) fn reg(path: &'static str, size: u32, inode: u32) -> F {
        F {
            path,
            mode: 0o100_644,
            size,
            link: "",
            flags: 0,
            inode,
        }
    }

    /// The file-list tags for `files` (each in its own directory entry: simplest layout).
    pub(crate) fn file_tags(files: &[F]) -> Vec<(u32, Val)> {
        let mut dirs = Vec::new();
        let mut bases = Vec::new();
        for f in files {
            if let Some((d, b)) = f.path.rsplit_once('/') {
                dirs.push(format!("{d}/"));
                bases.push(b.to_string());
            } else {
                dirs.push(String::new());
                bases.push(f.path.to_string());
            }
        }
        let n = files.len();
        vec![
            (1028, Val::I32(files.iter().map(|f| f.size).collect())),
            (1030, Val::I16(files.iter().map(|f| f.mode).collect())),
            (1034, Val::I32(vec![1_000_000; n])),
            (
                1036,
                Val::Strs(files.iter().map(|f| f.link.to_string()).collect()),
            ),
            (1037, Val::I32(files.iter().map(|f| f.flags).collect())),
            (1039, Val::Strs(vec!["root".into(); n])),
            (1040, Val::Strs(vec!["root".into(); n])),
            (1095, Val::I32(vec![1; n])),
            (1096, Val::I32(files.iter().map(|f| f.inode).collect())),
            (1116, Val::I32((0..n as u32).collect())),
            (1117, Val::Strs(bases)),
            (1118, Val::Strs(dirs)),
        ]
    }

    /// A `newc` cpio member.
    pub(crate) fn newc(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    /// A stripped cpio member for file index `fx`.
    pub(crate) fn stripped(fx: u32, data: &[u8]) -> Vec<u8> {
        let mut out = format!("07070X{fx:08x}").into_bytes();
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    /// The cpio trailer.
    pub(crate) fn trailer() -> Vec<u8> {
        newc("TRAILER!!!", 0, b"")
    }
}

#[cfg(test)]
mod tests {
    use super::testpkg::{self, Val, reg};
    use super::*;

    fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
        let p = dir.join("t.rpm");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn open(bytes: &[u8]) -> Result<RpmFile, RpmFileError> {
        let dir = tempfile::tempdir().unwrap();
        RpmFile::open(write(dir.path(), bytes))
    }

    fn demo(extra: Vec<(u32, Val)>) -> Vec<u8> {
        let mut tags = testpkg::nevra();
        tags.extend(extra);
        testpkg::header(&tags)
    }

    #[test]
    fn reads_names_files_and_scripts() {
        let mut extra = testpkg::file_tags(&[reg("/usr/bin/a", 3, 1), reg("/etc/b", 0, 2)]);
        extra.push((1003, Val::I32(vec![2])));
        extra.push((1023, Val::Str("echo hi")));
        extra.push((1085, Val::Strs(vec!["/bin/sh".into(), "-e".into()])));
        extra.push((1024, Val::Str("print(1)")));
        extra.push((1086, Val::Str("<lua>")));
        extra.push((
            5010,
            Val::Strs(vec!["cap_net_raw=ep".into(), String::new()]),
        ));
        let rpm = open(&testpkg::package(&demo(extra), b"")).unwrap();
        assert_eq!(rpm.nevra(), "demo-2:1.0-1.noarch");
        let files = rpm.files().unwrap();
        assert_eq!(files[0].path, "/usr/bin/a");
        assert_eq!(files[0].size, 3);
        assert_eq!(files[0].caps.as_deref(), Some("cap_net_raw=ep"));
        assert_eq!(files[1].caps, None);
        assert_eq!(files[1].user, "root");
        let s = rpm.scriptlets().unwrap();
        let pre = s.pre.unwrap();
        assert_eq!(pre.prog, ["/bin/sh", "-e"]);
        assert_eq!(pre.body.as_deref(), Some("echo hi"));
        assert_eq!(s.post.unwrap().prog, ["<lua>"]);
        assert!(s.posttrans.is_none());
        rpm.verify().unwrap();
    }

    #[test]
    fn triggers_map_to_their_scripts() {
        let extra = vec![
            (1066, Val::Strs(vec!["glibc".into(), "bash".into()])),
            (1067, Val::Strs(vec!["2.0".into(), String::new()])),
            (1068, Val::I32(vec![1 << 16 | 8 | 4, 1 << 18])),
            (1069, Val::I32(vec![1, 0])),
            (1065, Val::Strs(vec!["echo a".into(), "echo b".into()])),
            (1092, Val::Strs(vec!["/bin/sh".into(), "/bin/bash".into()])),
            (5069, Val::Strs(vec!["/usr/lib/".into()])),
            (5070, Val::I32(vec![0])),
            (5066, Val::Strs(vec!["ldconfig".into()])),
            (5067, Val::Strs(vec!["/bin/sh".into()])),
            (5084, Val::I32(vec![100_000])),
        ];
        let rpm = open(&testpkg::package(&demo(extra), b"")).unwrap();
        let t = rpm.triggers().unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].name, "glibc");
        assert_eq!(t[0].version.as_deref(), Some("2.0"));
        assert_eq!(t[0].script.body.as_deref(), Some("echo b"));
        assert_eq!(t[0].script.prog, ["/bin/bash"]);
        assert_eq!(t[1].version, None);
        assert_eq!(t[1].script.body.as_deref(), Some("echo a"));
        assert_eq!(t[2].kind, TriggerKind::File);
        assert_eq!(t[2].priority, Some(100_000));
    }

    /// Every malformed index entry or intro is refused with the offset named.
    type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;

    #[test]
    fn hostile_headers_are_refused() {
        let good = demo(vec![]);
        let entry = |i: usize, word: usize| 16 + i * 16 + word * 4;
        let cases: Vec<(&str, Corrupt)> = vec![
            ("bad header magic", Box::new(|h| h[0] = 0)),
            (
                "index entries",
                Box::new(|h| h[8..12].copy_from_slice(&0x10000u32.to_be_bytes())),
            ),
            (
                "too large",
                Box::new(|h| h[12..16].copy_from_slice(&0x1000_0000u32.to_be_bytes())),
            ),
            (
                "unknown data type",
                Box::new(move |h| h[entry(0, 1) + 3] = 42),
            ),
            (
                "outside the",
                Box::new(move |h| {
                    h[entry(1, 2)..entry(1, 3)].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
                }),
            ),
            (
                "bad count",
                Box::new(move |h| h[entry(1, 3)..entry(1, 4)].copy_from_slice(&0u32.to_be_bytes())),
            ),
            (
                "bad count",
                Box::new(move |h| {
                    h[entry(1, 3)..entry(1, 4)].copy_from_slice(&((1u32 << 22) + 1).to_be_bytes());
                }),
            ),
            (
                "count other than 1",
                Box::new(move |h| h[entry(1, 3) + 3] = 2),
            ),
            (
                "appears twice",
                Box::new(move |h| {
                    h[entry(1, 0)..entry(1, 1)].copy_from_slice(&1000u32.to_be_bytes());
                }),
            ),
            ("runs past the end", Box::new(|h| h.truncate(h.len() - 1))),
        ];
        for (want, corrupt) in cases {
            let mut h = good.clone();
            corrupt(&mut h);
            let e = open(&testpkg::package(&h, b"")).unwrap_err();
            assert!(e.to_string().contains(want), "{want}: {e}");
            assert!(matches!(e, RpmFileError::Format { .. }), "{e}");
        }
    }

    #[test]
    fn values_overrunning_or_unterminated_are_refused() {
        // An int32 array whose count runs past the store.
        let mut h = demo(vec![(1034, Val::I32(vec![1]))]);
        let e = 16 + 4 * 16;
        h[e + 12..e + 16].copy_from_slice(&1000u32.to_be_bytes());
        let err = open(&testpkg::package(&h, b"")).unwrap_err();
        assert!(err.to_string().contains("overrun"), "{err}");
        // Misaligned int32.
        let mut h = demo(vec![(1034, Val::I32(vec![1]))]);
        let off = u32::from_be_bytes(h[e + 8..e + 12].try_into().unwrap()) + 1;
        h[e + 8..e + 12].copy_from_slice(&off.to_be_bytes());
        let err = open(&testpkg::package(&h, b"")).unwrap_err();
        assert!(err.to_string().contains("aligned"), "{err}");
        // The last string loses its terminator: found when read, naming the tag.
        let mut h = demo(vec![(1117, Val::Strs(vec!["x".into()]))]);
        *h.last_mut().unwrap() = b'y';
        let rpm = open(&testpkg::package(&h, b"")).unwrap();
        let err = rpm.files().unwrap_err();
        assert!(
            err.to_string().contains("tag 1117") && err.to_string().contains("not terminated"),
            "{err}"
        );
        // A directory index pointing past the names.
        let mut files = testpkg::file_tags(&[reg("/a", 0, 1)]);
        files[9] = (1116, Val::I32(vec![7]));
        let rpm = open(&testpkg::package(&demo(files), b"")).unwrap();
        let err = rpm.files().unwrap_err();
        assert!(err.to_string().contains("tag 1116"), "{err}");
        // A per-file array of the wrong length.
        let mut files = testpkg::file_tags(&[reg("/a", 0, 1)]);
        files[1] = (1030, Val::I16(vec![0o644, 0o644]));
        let rpm = open(&testpkg::package(&demo(files), b"")).unwrap();
        assert!(
            rpm.files()
                .unwrap_err()
                .to_string()
                .contains("2 values for 1 files")
        );
    }

    #[test]
    fn lead_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let e = RpmFile::open(write(dir.path(), b"short")).unwrap_err();
        assert!(e.to_string().contains("not an rpm"), "{e}");
        let mut bad = testpkg::package(&demo(vec![]), b"");
        bad[0] = 0;
        assert!(open(&bad).unwrap_err().to_string().contains("lead magic"));
        let full = testpkg::package(&demo(vec![]), b"");
        for cut in [100, 120, full.len() - 1] {
            let e = open(&full[..cut]).unwrap_err();
            assert!(matches!(e, RpmFileError::Format { .. }), "{cut}: {e}");
        }
        let e = RpmFile::open(dir.path().join("missing.rpm")).unwrap_err();
        assert!(e.to_string().contains("missing.rpm"), "{e}");
    }

    #[test]
    fn digests_are_checked() {
        let payload = b"payload bytes";
        let digest: &'static str = Box::leak(hex::encode(Sha256::digest(payload)).into_boxed_str());
        let main = demo(vec![
            (5092, Val::Strs(vec![digest.into()])),
            (5093, Val::I32(vec![8])),
        ]);
        let pkg = testpkg::package(&main, payload);
        let dir = tempfile::tempdir().unwrap();
        let open = |bytes: &[u8]| RpmFile::open(write(dir.path(), bytes));
        open(&pkg).unwrap().verify().unwrap();
        // The payload changed.
        let mut p = pkg.clone();
        *p.last_mut().unwrap() ^= 1;
        let e = open(&p).unwrap().verify().unwrap_err();
        assert!(
            matches!(
                e,
                RpmFileError::Digest {
                    what: "payload",
                    ..
                }
            ),
            "{e}"
        );
        // The header changed (the release string), the signature not.
        let mut p = pkg.clone();
        let at = p.windows(4).position(|w| w == b"demo").unwrap();
        p[at] = b'D';
        let e = open(&p).unwrap().verify().unwrap_err();
        assert!(
            matches!(
                e,
                RpmFileError::Digest {
                    what: "header SHA256",
                    ..
                }
            ),
            "{e}"
        );
        // Bytes appended: the signature's size no longer matches.
        let mut p = pkg;
        p.push(0);
        let e = open(&p).unwrap().verify().unwrap_err();
        assert!(e.to_string().contains("signature header says"), "{e}");
    }
}
