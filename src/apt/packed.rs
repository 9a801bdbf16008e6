//! The packed index cache: a parsed `Packages` index kept on disk in a compact form, so a build
//! whose indexes have not changed neither parses them again nor holds them in memory.
//!
//! A packed index is named by the sha256 of the `Packages` file it was made from (the digest the
//! signed Release pins) and lives in the download cache under `packed/sha256/<hex>`. It is
//! written whole (beside, synced, renamed); when used, its tables are memory-mapped and each
//! package's fields are read when the package is first decoded. It holds, per package,
//! the few fields every package of a universe needs (name, architecture, version, priority,
//! `Essential`, `Multi-Arch`, the names it provides) in a table read at load, and the values of
//! every field [`Package::from_fields`] reads, decoded only for the packages the solver
//! touches (a few hundred of ~60 000 for a minimal image).
//!
//! The layout is our own, all integers little-endian:
//!
//! | bytes | content |
//! |---|---|
//! | header ([`HEADER_LEN`]) | magic, format version, package count, the `Packages` sha256, file length, crc32 of everything after the header, the lengths of the regions below |
//! | records | per package 14 `u32`: (offset, length) of name, architecture, version and priority in *heads* (priority offset `u32::MAX`: none), (first, count) of its provides in *provides*, (offset, length) of its fields in *fields*, the line its paragraph starts on, flags (bit 0 `Essential`, bits 1–2 `Multi-Arch`) |
//! | provides | per provided name an (offset, length) in *heads* |
//! | heads | the strings of the records and provides |
//! | fields | per package a run of (`u8` field number in [`super::index::FIELDS`], `u32` length, UTF-8 value) |
//!
//! A file that is short, long, of another version or key, fails its checksum or holds an
//! offset outside its regions (the cache directory may be shared, so its content is not
//! trusted) is removed and built again from the `Packages` file.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cache::{Cache, CacheError, Expected, Sha256Digest};
use super::control;
use super::index::{
    IndexError, MultiArch, Package, PackageFields, paragraph_fields, split_at_paragraphs,
};

/// Start of every packed index.
const MAGIC: &[u8; 8] = b"imgbpkd\n";
/// The layout version; a file of another version is rebuilt.
const FORMAT: u32 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = 80;
/// `u32`s per record.
const RECORD_WORDS: usize = 14;
const RECORD_LEN: usize = RECORD_WORDS * 4;
/// Priority offset meaning "no `Priority` field".
const NONE: u32 = u32::MAX;

/// Why a packed index could not be used or made.
#[derive(Debug, thiserror::Error)]
pub enum PackedError {
    /// Reading the `Packages` file or writing the packed index failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The `Packages` file does not parse.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The `Packages` file is neither packed nor (verified) in the cache.
    #[error(
        "{name}: the Packages index is not in the cache (looked for {path}); run the build again to fetch it"
    )]
    Missing {
        /// The index URL.
        name: String,
        /// Where the cache would hold it.
        path: PathBuf,
    },
    /// A packed index too large for 32-bit offsets.
    #[error("{name}: the Packages index is too large to pack ({what} exceeds 4 GiB)")]
    TooLarge {
        /// The index URL.
        name: String,
        /// Which region overflowed.
        what: &'static str,
    },
}

/// Why a packed index file was refused (it is then built again).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("packed index: {0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// The bytes of a packed index: from the cache, the header, records, provides and heads mapped
/// and the file kept open to read fields from; or the whole index held in memory when the cache
/// could not store it.
enum Bytes {
    Map(memmap2::Mmap, File),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m, _) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A validated packed index.
pub struct PackedIndex {
    bytes: Bytes,
    count: usize,
    /// Start of the provides table, of the heads and of the fields.
    provides: usize,
    heads: (usize, usize),
    fields: (usize, usize),
}

impl std::fmt::Debug for PackedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedIndex")
            .field("count", &self.count)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

/// Where the regions of a packed index are, from its header.
struct Layout {
    count: usize,
    prov_count: usize,
    provides: usize,
    heads: usize,
    heads_len: usize,
    fields: usize,
    fields_len: usize,
    crc: u32,
}

impl Layout {
    /// Read and check the header of a packed index of `total` bytes made from the `Packages`
    /// file with sha256 `key`.
    fn of(header: &[u8], total: usize, key: &Sha256Digest) -> Result<Layout, Invalid> {
        let header = header
            .get(..HEADER_LEN)
            .ok_or_else(|| invalid("shorter than its header"))?;
        if &header[..8] != MAGIC {
            return Err(invalid("not a packed index"));
        }
        let word = |at| u32_at(header, at).map_or(0, |w| w as usize);
        if word(8) != FORMAT as usize {
            return Err(invalid(format!("format {} (expected {FORMAT})", word(8))));
        }
        if word(60) != 0 || word(76) != 0 {
            return Err(invalid("reserved header words are not zero"));
        }
        if header[16..48] != key.0[..] {
            return Err(invalid("made from another Packages file"));
        }
        let len = u64_at(header, 48).unwrap_or(0);
        if len != total as u64 {
            return Err(invalid(format!("{total} bytes, its header says {len}")));
        }
        let count = word(12);
        let (prov_count, heads_len, fields_len) = (word(64), word(68), word(72));
        let provides = count
            .checked_mul(RECORD_LEN)
            .and_then(|r| r.checked_add(HEADER_LEN))
            .ok_or_else(|| invalid("record count overflows"))?;
        let heads = provides + prov_count * 8;
        let fields = heads + heads_len;
        if fields + fields_len != total {
            return Err(invalid("region lengths do not add up to the file length"));
        }
        Ok(Layout {
            count,
            prov_count,
            provides,
            heads,
            heads_len,
            fields,
            fields_len,
            crc: u32_at(header, 56).unwrap_or(0),
        })
    }
}

impl PackedIndex {
    /// Check `bytes` (the whole index, or with [`Bytes::Map`] all but the fields) against
    /// `layout`: every offset of the records and provides table.
    fn validate(bytes: Bytes, layout: &Layout) -> Result<PackedIndex, Invalid> {
        let want = match bytes {
            Bytes::Map(..) => layout.fields,
            Bytes::Owned(_) => layout.fields + layout.fields_len,
        };
        if bytes.len() != want {
            return Err(invalid("truncated"));
        }
        let idx = PackedIndex {
            bytes,
            count: layout.count,
            provides: layout.provides,
            heads: (layout.heads, layout.heads_len),
            fields: (layout.fields, layout.fields_len),
        };
        for p in 0..layout.prov_count {
            let (off, len) = idx.pair(layout.provides + p * 8);
            idx.head_str(off, len)
                .ok_or_else(|| invalid(format!("provides entry {p}: bad string")))?;
        }
        for r in 0..layout.count {
            let bad = |what: &str| invalid(format!("record {r}: bad {what}"));
            let rec = idx.record_at(r);
            for (what, i) in [("name", 0), ("architecture", 2), ("version", 4)] {
                idx.head_str(rec[i], rec[i + 1]).ok_or_else(|| bad(what))?;
            }
            if rec[6] != NONE {
                idx.head_str(rec[6], rec[7])
                    .ok_or_else(|| bad("priority"))?;
            }
            if rec[8]
                .checked_add(rec[9])
                .is_none_or(|end| end as usize > layout.prov_count)
            {
                return Err(bad("provides range"));
            }
            if rec[10]
                .checked_add(rec[11])
                .is_none_or(|end| end as usize > layout.fields_len)
            {
                return Err(bad("fields range"));
            }
            if rec[13] >> 3 != 0 {
                return Err(bad("flags"));
            }
        }
        Ok(idx)
    }

    /// Open and check the packed index at `path` for the `Packages` file with sha256 `key`.
    /// The checksum is computed through a small buffer and the fields are read with `pread` when
    /// a record is decoded, not mapped: the solver decodes a few hundred records spread over
    /// the whole region, and every page fault of a mapping brings its neighbours in too, so a
    /// mapped fields region ends up resident almost whole.
    pub fn open(path: &Path, key: &Sha256Digest) -> Result<PackedIndex, OpenError> {
        use std::os::unix::fs::FileExt as _;
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let (crc, total) = checksum_after_header(&mut file).map_err(io)?;
        let total = usize::try_from(total).map_err(|_| OpenError::Invalid(invalid("too large")))?;
        let mut header = [0u8; HEADER_LEN];
        if total < HEADER_LEN {
            return Err(OpenError::Invalid(invalid("shorter than its header")));
        }
        file.read_exact_at(&mut header, 0).map_err(io)?;
        let layout = Layout::of(&header, total, key).map_err(OpenError::Invalid)?;
        if crc != layout.crc {
            return Err(OpenError::Invalid(invalid("checksum mismatch")));
        }
        // SAFETY: cache files are replaced by rename, never rewritten in place, so the mapped
        // inode does not change under us; every read of the map is bounds-checked.
        let map =
            unsafe { memmap2::MmapOptions::new().len(layout.fields).map(&file) }.map_err(io)?;
        PackedIndex::validate(Bytes::Map(map, file), &layout).map_err(OpenError::Invalid)
    }

    /// Check `bytes` (a packed index held in memory) for the `Packages` file with sha256 `key`.
    pub fn from_bytes(bytes: Vec<u8>, key: &Sha256Digest) -> Result<PackedIndex, Invalid> {
        let layout = Layout::of(&bytes, bytes.len(), key)?;
        if crc32fast::hash(&bytes[HEADER_LEN..]) != layout.crc {
            return Err(invalid("checksum mismatch"));
        }
        PackedIndex::validate(Bytes::Owned(bytes), &layout)
    }

    /// Number of packages.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the index lists no package.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn pair(&self, at: usize) -> (u32, u32) {
        (
            u32_at(&self.bytes, at).unwrap_or(0),
            u32_at(&self.bytes, at + 4).unwrap_or(0),
        )
    }

    fn record_at(&self, r: usize) -> [u32; RECORD_WORDS] {
        let at = HEADER_LEN + r * RECORD_LEN;
        std::array::from_fn(|i| u32_at(&self.bytes, at + i * 4).unwrap_or(0))
    }

    fn head_str(&self, off: u32, len: u32) -> Option<&str> {
        let (start, hlen) = self.heads;
        let end = (off as usize).checked_add(len as usize)?;
        if end > hlen {
            return None;
        }
        std::str::from_utf8(self.bytes.get(start + off as usize..start + end)?).ok()
    }

    /// The light view of package `r` (`0..len()`); an out-of-range `r` gives empty values.
    pub fn head(&self, r: usize) -> Head<'_> {
        if r >= self.count {
            return Head::default();
        }
        let rec = self.record_at(r);
        let s = |i: usize| self.head_str(rec[i], rec[i + 1]).unwrap_or("");
        Head {
            name: s(0),
            architecture: s(2),
            version: s(4),
            priority: (rec[6] != NONE).then(|| s(6)),
            essential: rec[13] & 1 != 0,
            multi_arch: match (rec[13] >> 1) & 3 {
                1 => MultiArch::Same,
                2 => MultiArch::Foreign,
                3 => MultiArch::Allowed,
                _ => MultiArch::No,
            },
        }
    }

    /// The names package `r` provides.
    pub fn provides(&self, r: usize) -> impl Iterator<Item = &str> {
        let rec = if r < self.count {
            self.record_at(r)
        } else {
            [0; RECORD_WORDS]
        };
        (rec[8]..rec[8].saturating_add(rec[9])).map(move |p| {
            let (off, len) = self.pair(self.provides + p as usize * 8);
            self.head_str(off, len).unwrap_or("")
        })
    }

    /// The whole record of package `r`, decoded and checked as the `Packages` parser checks it;
    /// `repo` is stored in it.
    pub fn package(&self, r: usize, repo: usize) -> Result<Package, Invalid> {
        if r >= self.count {
            return Err(invalid(format!("record {r} of {}", self.count)));
        }
        let rec = self.record_at(r);
        let (start, flen) = self.fields;
        let (off, len) = (rec[10] as usize, rec[11] as usize);
        let out_of_range = || invalid(format!("record {r}: fields out of range"));
        let end = off
            .checked_add(len)
            .filter(|&e| e <= flen)
            .ok_or_else(out_of_range)?;
        let run: Cow<'_, [u8]> = match &self.bytes {
            Bytes::Owned(b) => {
                Cow::Borrowed(b.get(start + off..start + end).ok_or_else(out_of_range)?)
            }
            Bytes::Map(_, file) => {
                use std::os::unix::fs::FileExt as _;
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, (start + off) as u64)
                    .map_err(|e| invalid(format!("record {r}: reading its fields: {e}")))?;
                Cow::Owned(buf)
            }
        };
        let found =
            decode_fields(&run).ok_or_else(|| invalid(format!("record {r}: bad fields")))?;
        Package::from_fields(&found, rec[12] as usize, repo)
            .map_err(|e| invalid(format!("record {r}: {e}")))
    }
}

/// Why [`PackedIndex::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The packed index file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a sound packed index for the key.
    #[error(transparent)]
    Invalid(Invalid),
}

/// crc32 of everything after the header, read through a small buffer, and the file's length.
fn checksum_after_header(file: &mut File) -> io::Result<(u32, u64)> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut skip = HEADER_LEN;
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        let from = skip.min(n);
        skip -= from;
        hasher.update(&buf[from..n]);
    }
    Ok((hasher.finalize(), total))
}

fn decode_fields(mut run: &[u8]) -> Option<PackageFields<'_>> {
    let mut found: PackageFields<'_> = Default::default();
    while let Some((&field, rest)) = run.split_first() {
        let len = u32_at(rest, 0)? as usize;
        let value = rest.get(4..4usize.checked_add(len)?)?;
        let slot = found.get_mut(field as usize)?;
        *slot = Some(Cow::Borrowed(std::str::from_utf8(value).ok()?));
        run = &rest[4 + len..];
    }
    Some(found)
}

/// What every package of a universe needs, read from a packed index without decoding the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head<'a> {
    /// Package name.
    pub name: &'a str,
    /// `Architecture`.
    pub architecture: &'a str,
    /// `Version` as written.
    pub version: &'a str,
    /// `Priority`.
    pub priority: Option<&'a str>,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Multi-Arch`.
    pub multi_arch: MultiArch,
}

/// The regions of (part of) a packed index being built; offsets are relative to the part.
#[derive(Default)]
struct Part {
    records: Vec<[u32; RECORD_WORDS]>,
    provides: Vec<(u32, u32)>,
    heads: Vec<u8>,
    fields: Vec<u8>,
}

/// Offsets are checked against `u32` when the parts are joined; within a part they only grow,
/// so a truncated one is caught there.
#[allow(clippy::cast_possible_truncation)]
fn push_str(heads: &mut Vec<u8>, s: &str) -> (u32, u32) {
    let off = heads.len() as u32;
    heads.extend_from_slice(s.as_bytes());
    (off, s.len() as u32)
}

#[allow(clippy::cast_possible_truncation)]
fn pack_one(part: &mut Part, fields: &PackageFields<'_>, p: &Package, line: usize) {
    let (name, arch, version) = (
        push_str(&mut part.heads, &p.name),
        push_str(&mut part.heads, &p.architecture),
        push_str(&mut part.heads, p.version.as_str()),
    );
    let prio = p
        .priority
        .as_deref()
        .map_or((NONE, 0), |s| push_str(&mut part.heads, s));
    let first_prov = part.provides.len() as u32;
    for prov in &p.provides {
        let s = push_str(&mut part.heads, &prov.name);
        part.provides.push(s);
    }
    let fields_off = part.fields.len() as u32;
    for (i, v) in fields.iter().enumerate() {
        if let Some(v) = v {
            part.fields.push(i as u8);
            part.fields
                .extend_from_slice(&(v.len() as u32).to_le_bytes());
            part.fields.extend_from_slice(v.as_bytes());
        }
    }
    let ma = match p.multi_arch {
        MultiArch::No => 0,
        MultiArch::Same => 1,
        MultiArch::Foreign => 2,
        MultiArch::Allowed => 3,
    };
    part.records.push([
        name.0,
        name.1,
        arch.0,
        arch.1,
        version.0,
        version.1,
        prio.0,
        prio.1,
        first_prov,
        p.provides.len() as u32,
        fields_off,
        part.fields.len() as u32 - fields_off,
        line as u32,
        u32::from(p.essential) | (ma << 1),
    ]);
}

/// Parse `text` (a `Packages` file whose sha256 is `key`; `name` for errors) into its packed
/// form. Paragraphs are parsed in parallel as [`super::index::parse_packages`] parses them (the
/// same errors, with the same lines); each record is packed as soon as it is parsed, so the
/// parsed index is never held whole.
pub fn pack(text: &str, key: &Sha256Digest, name: &str) -> Result<Vec<u8>, PackedError> {
    let pieces = rayon::current_num_threads() * 4;
    let chunks = split_at_paragraphs(text, pieces);
    let parts: Vec<Result<Part, IndexError>> = chunks
        .par_iter()
        .map(|&(first_line, chunk)| {
            let offset = first_line - 1;
            let mut part = Part::default();
            for p in control::paragraphs(chunk) {
                let p = p.map_err(|mut e| {
                    e.line += offset;
                    e
                })?;
                let line = p.line + offset;
                let fields = paragraph_fields(&p);
                let pkg = Package::from_fields(&fields, line, 0)?;
                pack_one(&mut part, &fields, &pkg, line);
            }
            Ok(part)
        })
        .collect();
    let mut all = Part::default();
    let too_large = |what| PackedError::TooLarge {
        name: name.to_string(),
        what,
    };
    for part in parts {
        let part = part?;
        let fit = |n: usize, what| u32::try_from(n).map_err(|_| too_large(what));
        let (h, pr, f) = (
            fit(all.heads.len(), "heads")?,
            fit(all.provides.len(), "provides")?,
            fit(all.fields.len(), "fields")?,
        );
        fit(all.heads.len() + part.heads.len(), "heads")?;
        fit(all.fields.len() + part.fields.len(), "fields")?;
        fit(all.provides.len() + part.provides.len(), "provides")?;
        all.provides
            .extend(part.provides.iter().map(|&(o, l)| (o + h, l)));
        all.records.extend(part.records.iter().map(|r| {
            let mut r = *r;
            r[0] += h;
            r[2] += h;
            r[4] += h;
            if r[6] != NONE {
                r[6] += h;
            }
            r[8] += pr;
            r[10] += f;
            r
        }));
        all.heads.extend_from_slice(&part.heads);
        all.fields.extend_from_slice(&part.fields);
    }
    let count = u32::try_from(all.records.len()).map_err(|_| too_large("records"))?;
    let total = HEADER_LEN
        + all.records.len() * RECORD_LEN
        + all.provides.len() * 8
        + all.heads.len()
        + all.fields.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&(total as u64).to_le_bytes());
    out.extend_from_slice(&[0; 8]); // crc32 and a reserved word, filled in below
    #[allow(clippy::cast_possible_truncation)] // each checked against u32 above
    for n in [all.provides.len(), all.heads.len(), all.fields.len(), 0] {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    debug_assert_eq!(out.len(), HEADER_LEN);
    for r in &all.records {
        for w in r {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    for (o, l) in &all.provides {
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&l.to_le_bytes());
    }
    out.extend_from_slice(&all.heads);
    out.extend_from_slice(&all.fields);
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[56..60].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The packed form of the `Packages` file `expected` pins (`name`, its URL, for messages): the
/// cached one when it is sound, else made from the verified `Packages` file in the cache and
/// stored for the next build (kept in memory when the cache cannot store it).
pub fn open_or_pack(
    cache: &Cache,
    expected: &Expected,
    name: &str,
) -> Result<PackedIndex, PackedError> {
    let path = cache.packed_path(&expected.sha256);
    match PackedIndex::open(&path, &expected.sha256) {
        Ok(idx) => return Ok(idx),
        Err(OpenError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        // Damaged, of another format, or unreadable: made again below, replacing it.
        Err(_) => remove(&path)?,
    }
    let Some(data) = cache.read(expected)? else {
        return Err(PackedError::Missing {
            name: name.to_string(),
            path: cache.blob_path(&expected.sha256),
        });
    };
    let packed = {
        let text = String::from_utf8_lossy(&data);
        pack(&text, &expected.sha256, name)?
    };
    drop(data);
    if store(&path, &packed).is_ok()
        && let Ok(idx) = PackedIndex::open(&path, &expected.sha256)
    {
        return Ok(idx);
    }
    // A read-only or full cache still builds: the packed form stays in memory.
    PackedIndex::from_bytes(packed, &expected.sha256).map_err(|e| {
        PackedError::Cache(CacheError::Io {
            path,
            source: io::Error::other(e),
        })
    })
}

/// True when the cache holds a sound packed index for the `Packages` file with sha256 `key`.
pub fn is_packed(cache: &Cache, key: &Sha256Digest) -> bool {
    PackedIndex::open(&cache.packed_path(key), key).is_ok()
}

fn remove(path: &Path) -> Result<(), CacheError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CacheError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write `data` to `path` whole: a temporary file beside it (named as the cache sweeps
/// leftovers), synced, renamed over it.
fn store(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = crate::atomic::parent_dir(path);
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::cache::CacheMode;
    use crate::apt::index::parse_packages;

    const TEXT: &str = "\
Package: libfoo1\nSource: foo (1.2-3)\nVersion: 1:1.2-3+b1\nArchitecture: amd64\n\
Multi-Arch: same\nPriority: optional\nSection: libs\nInstalled-Size: 42\n\
Pre-Depends: libc6 (>= 2.36)\nDepends: bar | baz:any (<< 2~) [amd64], qux\n\
Recommends: r\nProvides: libfoo (= 1.2), foo-api\nConflicts: c\nBreaks: old (<< 1)\n\
Replaces: old\nFilename: pool/f/foo.deb\nSize: 1000\nSHA256: ABCD\nDescription: a lib\n long text\n\n\
Package: sh\nVersion: 1\nArchitecture: all\nEssential: yes\nPriority: required\n\n\
Package: mawk\nVersion: 1.3.4\nArchitecture: amd64\nMulti-Arch: foreign\nProvides: awk\n";

    fn key(text: &str) -> Sha256Digest {
        Sha256Digest::of(text.as_bytes())
    }

    fn packed(text: &str) -> Vec<u8> {
        pack(text, &key(text), "test").unwrap()
    }

    /// Every record of `idx`, decoded, as `repo`.
    fn decoded(idx: &PackedIndex, repo: usize) -> Vec<Package> {
        (0..idx.len())
            .map(|r| idx.package(r, repo).unwrap())
            .collect()
    }

    #[test]
    fn round_trip_equals_the_parsed_index() {
        let idx = PackedIndex::from_bytes(packed(TEXT), &key(TEXT)).unwrap();
        let parsed = parse_packages(TEXT, 7).unwrap();
        assert_eq!(decoded(&idx, 7), parsed);
        for (r, p) in parsed.iter().enumerate() {
            let h = idx.head(r);
            assert_eq!(h.name, p.name);
            assert_eq!(h.architecture, p.architecture);
            assert_eq!(h.version, p.version.as_str());
            assert_eq!(h.priority, p.priority.as_deref());
            assert_eq!(h.essential, p.essential);
            assert_eq!(h.multi_arch, p.multi_arch);
            let provides: Vec<&str> = idx.provides(r).collect();
            let want: Vec<&str> = p.provides.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(provides, want);
        }
        assert_eq!(idx.head(99), Head::default());
        assert!(idx.package(99, 0).is_err());
    }

    #[test]
    fn round_trip_of_many_chunks_keeps_order_and_lines() {
        let mut text = String::new();
        for i in 0..30_000 {
            text.push_str(&format!(
                "Package: p{i}\nVersion: 1.{i}\nArchitecture: all\nProvides: v{}\nDescription: x\n long\n\n",
                i % 7
            ));
        }
        let bytes = packed(&text);
        // Deterministic: the same text packs to the same bytes however the threads ran.
        assert_eq!(bytes, packed(&text));
        let idx = PackedIndex::from_bytes(bytes, &key(&text)).unwrap();
        assert_eq!(decoded(&idx, 0), parse_packages(&text, 0).unwrap());
        // Errors name the line of the original file, as the parser's do.
        let bad = text.replacen("Version: 1.25000\n", "Version: x\n", 1);
        let e = pack(&bad, &key(&bad), "t").unwrap_err();
        assert!(
            matches!(
                e,
                PackedError::Index(IndexError::BadVersion { line: 175_001, .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn damaged_bytes_are_refused() {
        let good = packed(TEXT);
        let k = key(TEXT);
        // Every truncation, and one byte more.
        for n in 0..good.len() {
            assert!(
                PackedIndex::from_bytes(good[..n].to_vec(), &k).is_err(),
                "{n}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(PackedIndex::from_bytes(longer, &k).is_err());
        // Any flipped bit, in the header or after it.
        for at in (0..good.len()).step_by(7) {
            let mut b = good.clone();
            b[at] ^= 0x10;
            assert!(PackedIndex::from_bytes(b, &k).is_err(), "byte {at}");
        }
        // Another key or format version.
        assert!(PackedIndex::from_bytes(good.clone(), &key("other")).is_err());
        let mut b = good.clone();
        b[8] = 2;
        let e = PackedIndex::from_bytes(b, &k).unwrap_err();
        assert!(e.0.contains("format 2"), "{e}");
    }

    /// `bytes` with the checksum recomputed: what a hostile writer of a shared cache can make.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[56..60].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn offsets_are_validated_even_under_a_good_checksum() {
        let good = packed(TEXT);
        let k = key(TEXT);
        let rec0 = HEADER_LEN;
        let set = |b: &mut Vec<u8>, word: usize, v: u32| {
            b[rec0 + word * 4..rec0 + word * 4 + 4].copy_from_slice(&v.to_le_bytes());
        };
        for (word, value) in [
            (0, u32::MAX),     // name offset
            (1, 1 << 30),      // name length
            (5, u32::MAX - 1), // version length overflowing offset + length
            (6, 1 << 20),      // priority offset
            (8, 1000),         // provides start
            (9, u32::MAX),     // provides count
            (10, 1 << 28),     // fields offset
            (11, u32::MAX),    // fields length
            (13, 0xff),        // flags
        ] {
            let mut b = good.clone();
            set(&mut b, word, value);
            let e = PackedIndex::from_bytes(resealed(b), &k).unwrap_err();
            assert!(e.0.contains("record 0"), "word {word}: {e}");
        }
        // A record count larger than the file.
        let mut b = good.clone();
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(PackedIndex::from_bytes(resealed(b), &k).is_err());
        // A provides entry pointing outside the heads.
        let mut b = good.clone();
        let count = u32_at(&good, 12).unwrap() as usize;
        let prov0 = HEADER_LEN + count * RECORD_LEN;
        b[prov0..prov0 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(PackedIndex::from_bytes(resealed(b), &k).is_err());
        // Field runs are checked when decoded: a bad one is an error, not a panic.
        let mut b = good.clone();
        let fields_at = good.len() - u32_at(&good, 72).unwrap() as usize;
        b[fields_at] = 200; // no such field number
        let idx = PackedIndex::from_bytes(resealed(b), &k).unwrap();
        assert!(idx.package(0, 0).is_err());
        let mut b = good.clone();
        b[fields_at + 1..fields_at + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        let idx = PackedIndex::from_bytes(resealed(b), &k).unwrap();
        assert!(idx.package(0, 0).is_err());
    }

    fn cache_with(text: &str) -> (tempfile::TempDir, Cache, Expected) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheMode::Offline).unwrap();
        let (sha256, _) = cache.insert_bytes("Packages", text.as_bytes()).unwrap();
        let expected = Expected {
            sha256,
            size: Some(text.len() as u64),
        };
        (dir, cache, expected)
    }

    #[test]
    fn packed_once_then_reused_and_damage_rebuilt() {
        let (_dir, cache, expected) = cache_with(TEXT);
        let path = cache.packed_path(&expected.sha256);
        assert!(!is_packed(&cache, &expected.sha256));
        let idx = open_or_pack(&cache, &expected, "u").unwrap();
        assert_eq!(decoded(&idx, 0), parse_packages(TEXT, 0).unwrap());
        assert!(is_packed(&cache, &expected.sha256));
        let written = fs::read(&path).unwrap();

        // Reused: the Packages file is not needed any more.
        fs::remove_file(cache.blob_path(&expected.sha256)).unwrap();
        let idx = open_or_pack(&cache, &expected, "u").unwrap();
        assert_eq!(decoded(&idx, 0), parse_packages(TEXT, 0).unwrap());
        drop(idx);

        // Truncated or corrupted: detected and made again from the Packages file.
        cache.insert_bytes("Packages", TEXT.as_bytes()).unwrap();
        for damage in [written[..written.len() / 2].to_vec(), Vec::new(), {
            let mut b = written.clone();
            let last = b.len() - 1;
            b[last] ^= 1;
            b
        }] {
            fs::write(&path, &damage).unwrap();
            assert!(!is_packed(&cache, &expected.sha256));
            let idx = open_or_pack(&cache, &expected, "u").unwrap();
            assert_eq!(decoded(&idx, 0), parse_packages(TEXT, 0).unwrap());
            assert_eq!(fs::read(&path).unwrap(), written);
        }
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

        // Damaged and no Packages file to make it from: an error naming the index.
        fs::write(&path, b"junk").unwrap();
        fs::remove_file(cache.blob_path(&expected.sha256)).unwrap();
        let e = open_or_pack(&cache, &expected, "http://x/Packages").unwrap_err();
        assert!(matches!(e, PackedError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("http://x/Packages"), "{e}");
    }

    #[test]
    fn a_packages_file_that_does_not_parse_is_not_packed() {
        let text = "Package: a\nVersion: x\nArchitecture: all\n";
        let (_dir, cache, expected) = cache_with(text);
        let e = open_or_pack(&cache, &expected, "u").unwrap_err();
        assert!(matches!(e, PackedError::Index(_)), "{e}");
        assert!(!cache.packed_path(&expected.sha256).exists());
    }
}

#[cfg(test)]
mod damage_tests {
    use super::*;
    use crate::apt::solver::{Request, Universe};

    /// A record that passes the load checks but does not decode (a shared cache altered with
    /// the checksum recomputed) is never taken for a real package: the universe reports it.
    #[test]
    fn an_undecodable_record_is_reported_by_the_universe() {
        let text = "Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b\n\n\
Package: b\nVersion: 1\nArchitecture: amd64\n";
        let key = Sha256Digest::of(text.as_bytes());
        let mut bytes = pack(text, &key, "t").unwrap();
        let fields_len = u32_at(&bytes, 72).unwrap() as usize;
        let fields_at = bytes.len() - fields_len;
        bytes[fields_at] = 200; // record 0's first field number: no such field
        let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[56..60].copy_from_slice(&crc.to_le_bytes());
        let idx = PackedIndex::from_bytes(bytes, &key).unwrap();
        let u = Universe::from_packed(vec![(idx, 0)], &[500], "amd64", &[]);
        assert!(u.damage().is_none(), "nothing decoded yet");
        let _ = u.solve(&Request::install(&["a"]).unwrap());
        let (index, message) = u.damage().expect("damage reported");
        assert_eq!(index, 0);
        assert!(message.contains("record 0"), "{message}");
    }
}
