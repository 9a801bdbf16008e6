//! Unpacking an rpm's payload into a root tree: decompression (gzip, bzip2, xz, lzma, zstd or
//! none, as `PAYLOADCOMPRESSOR` says), the cpio archive in both of rpm's forms (SVR4 `newc`,
//! magic `070701`, and rpm ≥ 4.12's stripped form, magic `07070X`, which names an entry by its
//! index in the header's file list), and the writes, which all go through [`confine::unpack`].
//!
//! As in rpm, the header is authoritative: every payload entry must map to a file of the
//! header's list, and mode, owner, mtime, link target and device number come from the header,
//! never from the cpio fields; a regular file's content must match the header's SHA-2 digest
//! (`FILEDIGESTS`; the MD5 digests of old packages are not checked). A hardlink set (regular
//! files sharing the header's device/inode pair) carries its data once, on the set's last
//! member in file-index order; the other members precede it with no data. `%ghost` files are
//! not in the payload and are not created.
//!
//! The cpio stream is translated, entry by entry, into a tar stream that a second thread feeds
//! to [`confine::unpack`]: it refuses `..`, escapes through symlinks (also one this package
//! creates and then writes through), and applies owners, modes, mtimes (directories after
//! their content) and the `security.capability` attribute in the order the kernel needs.

use super::header::{FileEntry, RpmFile, RpmFileError};
use crate::confine::{self, ConfineError, Root, UnpackOptions};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::rc::Rc;

/// Longest cpio entry name rpm writes or reads (`CPIO_NAMESIZE_MAX`).
const MAX_NAME: usize = 4096;
/// Longest symlink target read from the payload (the header's target is the one used).
const MAX_LINK: u64 = 64 * 1024;

/// Errors unpacking a payload; each names the package.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The package's headers could not be read.
    #[error(transparent)]
    Rpm(#[from] RpmFileError),
    /// Reading or decompressing the payload failed.
    #[error("{}: {package}: reading the payload: {source}", rpm.display())]
    Io {
        /// The package file.
        rpm: PathBuf,
        /// The package, `name-version-release.arch`.
        package: String,
        /// The OS or decompression error.
        #[source]
        source: io::Error,
    },
    /// The payload is malformed or does not match the header.
    #[error("{}: {package}: payload: {reason}", rpm.display())]
    Format {
        /// The package file.
        rpm: PathBuf,
        /// The package.
        package: String,
        /// What is wrong.
        reason: String,
    },
    /// A file of the package was refused (a path not in the header, or leaving the root).
    #[error("{}: {package}: `{path}` refused: {reason}", rpm.display())]
    Refused {
        /// The package file.
        rpm: PathBuf,
        /// The package.
        package: String,
        /// The path as the payload or header names it.
        path: String,
        /// Why.
        reason: String,
    },
    /// Writing into the root failed or was refused by [`confine`].
    #[error("{}: {package}: {source}", rpm.display())]
    Unpack {
        /// The package file.
        rpm: PathBuf,
        /// The package.
        package: String,
        /// The error, naming the entry.
        #[source]
        source: ConfineError,
    },
}

/// Options for [`unpack`].
pub struct PayloadOptions<'a> {
    /// Maps a file's user and group names to the numeric ids of the root being installed
    /// (its `/etc/passwd` and `/etc/group`, as rpm maps them).
    pub owners: &'a dyn Fn(&str, &str) -> (u32, u32),
    /// Skip `%doc` files (`rpm --excludedocs`).
    pub exclude_docs: bool,
    /// Apply owners (needs root); without it files belong to the caller.
    pub chown: bool,
}

impl std::fmt::Debug for PayloadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadOptions")
            .field("exclude_docs", &self.exclude_docs)
            .field("chown", &self.chown)
            .finish_non_exhaustive()
    }
}

/// What [`unpack`] installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// The absolute paths written (directories, files, links, nodes), in payload order.
    pub files: Vec<String>,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// The payload's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// The legacy lzma container (`lzdio`).
    Lzma,
    /// zstd.
    Zstd,
}

impl Compressor {
    /// The compressor `PAYLOADCOMPRESSOR` names; `None` for a name rpm does not write.
    pub fn from_name(name: &str) -> Option<Compressor> {
        Some(match name {
            "gzip" => Compressor::Gzip,
            "bzip2" => Compressor::Bzip2,
            "xz" => Compressor::Xz,
            "lzma" => Compressor::Lzma,
            "zstd" => Compressor::Zstd,
            "identity" | "none" => Compressor::None,
            _ => return None,
        })
    }

    /// Wrap `r` in the matching decompressor.
    fn reader<'a>(self, r: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compressor::None => Box::new(r),
            Compressor::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compressor::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
            Compressor::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
            Compressor::Lzma => {
                let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX)
                    .map_err(io::Error::other)?;
                Box::new(liblzma::read::XzDecoder::new_stream(r, stream))
            }
            Compressor::Zstd => {
                let mut d = zstd::stream::read::Decoder::new(r)?;
                // rpm writes long-window streams for high levels (`w19T0.zstdio` and up).
                d.window_log_max(31)?;
                Box::new(d)
            }
        })
    }
}

/// Context for errors: the package file and its name.
#[derive(Clone)]
struct Pkg {
    rpm: PathBuf,
    package: String,
}

impl Pkg {
    fn of(rpm: &RpmFile) -> Pkg {
        Pkg {
            rpm: rpm.path().to_path_buf(),
            package: rpm.nevra(),
        }
    }
    fn io(&self, source: io::Error) -> PayloadError {
        PayloadError::Io {
            rpm: self.rpm.clone(),
            package: self.package.clone(),
            source,
        }
    }
    fn format(&self, reason: impl Into<String>) -> PayloadError {
        PayloadError::Format {
            rpm: self.rpm.clone(),
            package: self.package.clone(),
            reason: reason.into(),
        }
    }
    fn refused(&self, path: impl Into<String>, reason: impl Into<String>) -> PayloadError {
        PayloadError::Refused {
            rpm: self.rpm.clone(),
            package: self.package.clone(),
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The payload's compressor, from `PAYLOADCOMPRESSOR`; when the tag is absent, gzip if the
/// payload starts like gzip (packages older than the tag), else none (`w.ufdio`).
pub fn compressor(rpm: &RpmFile) -> Result<Compressor, PayloadError> {
    let pkg = Pkg::of(rpm);
    if let Some(name) = rpm.payload_compressor()? {
        return Compressor::from_name(&name)
            .ok_or_else(|| pkg.format(format!("unknown payload compressor {name:?}")));
    }
    let mut f = payload_file(rpm, &pkg)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| pkg.io(e))?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Compressor::Gzip
    } else {
        Compressor::None
    })
}

fn payload_file(rpm: &RpmFile, pkg: &Pkg) -> Result<File, PayloadError> {
    let mut f = File::open(rpm.path()).map_err(|e| pkg.io(e))?;
    f.seek(SeekFrom::Start(rpm.payload_offset()))
        .map_err(|e| pkg.io(e))?;
    Ok(f)
}

/// The decompressed payload (a cpio archive) of `rpm`.
pub fn payload_reader(rpm: &RpmFile) -> Result<Box<dyn Read + Send>, PayloadError> {
    let pkg = Pkg::of(rpm);
    if let Some(format) = rpm.payload_format()?
        && format != "cpio"
    {
        return Err(pkg.format(format!("unsupported payload format {format:?}")));
    }
    let c = compressor(rpm)?;
    let f = BufReader::with_capacity(128 * 1024, payload_file(rpm, &pkg)?);
    c.reader(f).map_err(|e| pkg.io(e))
}

/// One cpio header.
#[derive(Debug, PartialEq, Eq)]
enum CpioEntry {
    /// A `newc` entry: its name and data size.
    Named { name: Vec<u8>, size: u64 },
    /// A stripped entry: the index of its file in the header.
    Index(u32),
    /// The end of the archive.
    Trailer,
}

/// A cpio stream: headers and the data between them, with the 4-byte padding of both.
struct Cpio<R> {
    r: R,
    offset: u64,
    /// Data bytes of the current entry not read yet.
    left: u64,
}

fn bad(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

fn hex8(b: &[u8]) -> io::Result<u32> {
    let s = std::str::from_utf8(b).map_err(|_| bad("non-hex cpio field"))?;
    if s.len() != 8 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(format!("non-hex cpio field {s:?}")));
    }
    u32::from_str_radix(s, 16).map_err(|_| bad(format!("non-hex cpio field {s:?}")))
}

impl<R: Read> Cpio<R> {
    fn new(r: R) -> Self {
        Cpio {
            r,
            offset: 0,
            left: 0,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                bad(format!("payload truncated at cpio offset {}", self.offset))
            } else {
                e
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
            self.fill(&mut buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        self.skip((4 - self.offset % 4) % 4)
    }

    /// The next header; the current entry's unread data is skipped first.
    fn next(&mut self) -> io::Result<CpioEntry> {
        let left = std::mem::take(&mut self.left);
        self.skip(left)?;
        self.pad()?;
        let start = self.offset;
        let mut magic = [0u8; 6];
        self.fill(&mut magic)?;
        if &magic == b"07070X" {
            let mut fx = [0u8; 8];
            self.fill(&mut fx)?;
            let fx = hex8(&fx)?;
            self.pad()?;
            // rpm's reader also takes index -1 as the end.
            return Ok(if fx == u32::MAX {
                CpioEntry::Trailer
            } else {
                CpioEntry::Index(fx)
            });
        }
        if &magic != b"070701" && &magic != b"070702" {
            return Err(bad(format!("bad cpio magic at payload offset {start}")));
        }
        let mut h = [0u8; 104];
        self.fill(&mut h)?;
        let field = |i: usize| hex8(&h[i * 8..i * 8 + 8]);
        let size = u64::from(field(6)?);
        let namesize = field(11)? as usize;
        if namesize == 0 || namesize > MAX_NAME {
            return Err(bad(format!(
                "cpio name size {namesize} at payload offset {start}"
            )));
        }
        let mut name = vec![0u8; namesize];
        self.fill(&mut name)?;
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(bad(format!(
                "cpio name at payload offset {start} is not NUL-terminated"
            )));
        }
        self.pad()?;
        if name == b"TRAILER!!!" {
            return Ok(CpioEntry::Trailer);
        }
        self.left = size;
        Ok(CpioEntry::Named { name, size })
    }

    /// Set the data size of a stripped entry (known from the header).
    fn expect(&mut self, size: u64) {
        self.left = size;
    }
}

impl<R: Read> Read for Cpio<R> {
    /// The current entry's data; a short stream is an error, never a silent end.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let k = usize::try_from(self.left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = self.r.read(&mut buf[..k])?;
        if n == 0 {
            return Err(bad(format!(
                "payload truncated at cpio offset {}",
                self.offset
            )));
        }
        self.offset += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// The root-relative form of a header path, or why it is refused.
fn relative(path: &str) -> Result<&str, &'static str> {
    let Some(rel) = path.strip_prefix('/') else {
        return Err("not an absolute path");
    };
    for c in rel.split('/') {
        match c {
            ".." => return Err("has a `..` component"),
            "." => return Err("has a `.` component"),
            _ => {}
        }
    }
    Ok(rel.trim_matches('/'))
}

/// The header path a `newc` entry name stands for (`./usr/bin/x` or `/usr/bin/x`).
fn header_path(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if let Some(rest) = name.strip_prefix("./") {
        format!("/{rest}")
    } else if name.starts_with('/') {
        name.into_owned()
    } else {
        format!("/{name}")
    }
}

const S_IFMT: u32 = libc::S_IFMT;

/// What is known per header file before the payload is read.
struct Plan {
    files: Vec<FileEntry>,
    by_path: HashMap<String, usize>,
    owners: Vec<(u32, u32)>,
    caps: Vec<Option<Vec<u8>>>,
    /// For each member of a hardlink set (≥ 2 members): the set's members, by index.
    links: HashMap<usize, Rc<Vec<usize>>>,
    excluded: Vec<bool>,
}

fn plan(rpm: &RpmFile, opts: &PayloadOptions, pkg: &Pkg) -> Result<Plan, PayloadError> {
    let files = rpm.files()?;
    let mut by_path = HashMap::with_capacity(files.len());
    let mut owner_cache: HashMap<(&str, &str), (u32, u32)> = HashMap::new();
    let mut owners = Vec::with_capacity(files.len());
    let mut caps = Vec::with_capacity(files.len());
    let mut sets: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
    let mut excluded = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        relative(&f.path).map_err(|reason| pkg.refused(&f.path, reason))?;
        if by_path.insert(f.path.clone(), i).is_some() {
            return Err(pkg.format(format!("`{}` is listed twice in the header", f.path)));
        }
        let o = *owner_cache
            .entry((f.user.as_str(), f.group.as_str()))
            .or_insert_with(|| (opts.owners)(&f.user, &f.group));
        owners.push(o);
        let ty = f.mode & S_IFMT;
        caps.push(match &f.caps {
            Some(text) if ty == libc::S_IFREG => Some(
                capability_xattr(text, None)
                    .map_err(|e| pkg.refused(&f.path, format!("capabilities {text:?}: {e}")))?,
            ),
            _ => None,
        });
        if ty == libc::S_IFREG && !f.flags.ghost() && f.inode > 0 {
            sets.entry((f.device, f.inode)).or_default().push(i);
        }
        excluded.push(f.flags.ghost() || (opts.exclude_docs && f.flags.doc()));
    }
    let mut links = HashMap::new();
    for members in sets.into_values().filter(|m| m.len() > 1) {
        let members = Rc::new(members);
        for &m in members.iter() {
            links.insert(m, Rc::clone(&members));
        }
    }
    Ok(Plan {
        files,
        by_path,
        owners,
        caps,
        links,
        excluded,
    })
}

/// The data of one regular file on its way into the tar builder: read errors are kept, so
/// that they are reported as what they are rather than as write errors, and the content is
/// checked against the header's digest before its last bytes are handed on (so a file whose
/// content does not match is never completed).
struct Watched<'a, R> {
    inner: &'a mut R,
    error: &'a RefCell<Option<ReadFail>>,
    /// The hasher and the expected hex digest, when the header's algorithm is one we have.
    digest: Option<(Box<dyn sha2::digest::DynDigest + Send>, &'a str)>,
    size: u64,
    read: u64,
}

impl<R: Read> Watched<'_, R> {
    fn check(&mut self) -> io::Result<()> {
        let Some((hasher, want)) = self.digest.take() else {
            return Ok(());
        };
        let got = hex::encode(hasher.finalize());
        if got.eq_ignore_ascii_case(want) {
            return Ok(());
        }
        let why = format!("content digest mismatch: the header says {want}, the payload has {got}");
        *self.error.borrow_mut() = Some(ReadFail::Digest(why.clone()));
        Err(bad(why))
    }
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf).and_then(|n| {
            if let Some((h, _)) = self.digest.as_mut() {
                h.update(&buf[..n]);
            }
            self.read += n as u64;
            if n == 0 || self.read == self.size {
                self.check()?;
            }
            Ok(n)
        });
        r.inspect_err(|e| {
            let mut error = self.error.borrow_mut();
            if error.is_none() {
                *error = Some(ReadFail::Io(io::Error::new(e.kind(), e.to_string())));
            }
        })
    }
}

/// Why the data of a file could not be read.
enum ReadFail {
    /// Reading or decompressing failed.
    Io(io::Error),
    /// The content does not match the header's digest.
    Digest(String),
}

/// How the producer stopped.
enum Stop {
    /// A real error of the package.
    Payload(PayloadError),
    /// The tar stream could not be written: the consumer stopped (its error is the one).
    Pipe(io::Error),
}

/// Translates the cpio stream into the tar stream [`confine::unpack`] reads.
struct Producer<'p, W: Write> {
    plan: &'p Plan,
    pkg: &'p Pkg,
    tar: tar::Builder<W>,
    report: UnpackReport,
}

impl<W: Write> Producer<'_, W> {
    fn header(&self, i: usize, ty: tar::EntryType, size: u64) -> tar::Header {
        let f = &self.plan.files[i];
        let (uid, gid) = self.plan.owners[i];
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(f.mode & 0o7777);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(u64::from(f.mtime));
        h.set_size(size);
        h
    }

    /// The PAX header carrying `security.capability` for file `i`.
    fn pax_caps(&mut self, i: usize) -> Result<(), Stop> {
        let Some(value) = &self.plan.caps[i] else {
            return Ok(());
        };
        let record = pax_record("SCHILY.xattr.security.capability", value);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(record.len() as u64);
        self.tar
            .append_data(&mut h, "PaxHeader", record.as_slice())
            .map_err(Stop::Pipe)
    }

    fn rel(&self, i: usize) -> &str {
        // Checked by `plan`.
        relative(&self.plan.files[i].path).unwrap_or_default()
    }

    fn done(&mut self, i: usize) {
        self.report.files.push(self.plan.files[i].path.clone());
    }

    /// Write file `i` with `size` bytes of content from `data`.
    fn file<R: Read>(&mut self, i: usize, size: u64, data: &mut R) -> Result<(), Stop> {
        self.pax_caps(i)?;
        let mut header = self.header(i, tar::EntryType::Regular, size);
        let error = RefCell::new(None);
        let rel = self.rel(i).to_string();
        let f = &self.plan.files[i];
        let digest = f
            .digest_algo
            .hasher()
            .filter(|_| !f.digest.is_empty())
            .map(|hasher| (hasher, f.digest.as_str()));
        let r = self.tar.append_data(
            &mut header,
            &rel,
            Watched {
                inner: data,
                error: &error,
                digest,
                size,
                read: 0,
            },
        );
        if let Err(e) = r {
            return Err(match error.into_inner() {
                Some(ReadFail::Digest(why)) => Stop::Payload(self.pkg.refused(&f.path, why)),
                Some(ReadFail::Io(e)) => Stop::Payload(self.pkg.io(e)),
                None => Stop::Pipe(e),
            });
        }
        self.report.bytes += size;
        self.done(i);
        Ok(())
    }

    fn link(&mut self, i: usize, ty: tar::EntryType, target: &str) -> Result<(), Stop> {
        let mut h = self.header(i, ty, 0);
        let rel = self.rel(i).to_string();
        self.tar
            .append_link(&mut h, &rel, target)
            .map_err(Stop::Pipe)?;
        self.done(i);
        Ok(())
    }

    fn empty(&mut self, i: usize, ty: tar::EntryType, rdev: Option<u32>) -> Result<(), Stop> {
        let mut h = self.header(i, ty, 0);
        if let Some(rdev) = rdev {
            let dev = libc::dev_t::from(rdev);
            h.set_device_major(libc::major(dev))
                .and_then(|()| h.set_device_minor(libc::minor(dev)))
                .map_err(|e| Stop::Payload(self.pkg.io(e)))?;
        }
        let rel = self.rel(i).to_string();
        self.tar
            .append_data(&mut h, &rel, io::empty())
            .map_err(Stop::Pipe)?;
        self.done(i);
        Ok(())
    }

    /// Read the whole cpio archive, writing each entry as the header describes it.
    fn run<R: Read>(&mut self, cpio: &mut Cpio<R>, stripped_ok: bool) -> Result<(), Stop> {
        let plan = self.plan;
        let pkg = self.pkg;
        let payload = |e: PayloadError| Stop::Payload(e);
        let mut found = vec![false; plan.files.len()];
        loop {
            let entry = cpio.next().map_err(|e| payload(pkg.io(e)))?;
            let (i, cpio_size) = match entry {
                CpioEntry::Trailer => break,
                CpioEntry::Named { name, size } => {
                    let path = header_path(&name);
                    let Some(&i) = plan.by_path.get(&path) else {
                        return Err(payload(pkg.refused(
                            String::from_utf8_lossy(&name),
                            "not in the header's file list",
                        )));
                    };
                    (i, Some(size))
                }
                CpioEntry::Index(fx) => {
                    let i = fx as usize;
                    if !stripped_ok || i >= plan.files.len() {
                        return Err(payload(pkg.format(format!(
                            "stripped cpio entry for file index {fx} of {}",
                            plan.files.len()
                        ))));
                    }
                    (i, None)
                }
            };
            let f = &plan.files[i];
            if std::mem::replace(&mut found[i], true) {
                return Err(payload(
                    pkg.format(format!("`{}` appears twice in the payload", f.path)),
                ));
            }
            if f.flags.ghost() {
                // rpm < 4.11 sometimes put %ghost files in the payload; rpm skips them.
                cpio.expect(cpio_size.unwrap_or(0));
                continue;
            }
            let ty = f.mode & S_IFMT;
            let set = plan.links.get(&i);
            let expected = match ty {
                libc::S_IFREG if set.is_some_and(|s| s.last() != Some(&i)) => 0,
                libc::S_IFREG | libc::S_IFLNK => f.size,
                _ => 0,
            };
            if let Some(size) = cpio_size
                && size != expected
            {
                return Err(payload(pkg.format(format!(
                    "`{}` has {size} bytes in the payload, the header says {expected}",
                    f.path
                ))));
            }
            cpio.expect(expected);
            let excluded = plan.excluded[i];
            match ty {
                libc::S_IFREG => match set {
                    // Earlier members of a set: written with the content, on the last.
                    Some(s) if s.last() != Some(&i) => {}
                    Some(s) => {
                        let s = Rc::clone(s);
                        for &m in s.iter() {
                            if !found[m] {
                                return Err(payload(pkg.format(format!(
                                    "hardlink `{}` is missing before `{}` in the payload",
                                    plan.files[m].path, f.path
                                ))));
                            }
                        }
                        let mut kept = s.iter().copied().filter(|&m| !plan.excluded[m]);
                        if let Some(first) = kept.next() {
                            self.file(first, expected, cpio)?;
                            let target = self.rel(first).to_string();
                            for m in kept {
                                self.link(m, tar::EntryType::Link, &target)?;
                            }
                        }
                    }
                    None if excluded => {}
                    None => self.file(i, expected, cpio)?,
                },
                libc::S_IFLNK => {
                    if expected > MAX_LINK {
                        return Err(payload(pkg.format(format!(
                            "symlink `{}` has a {expected}-byte target",
                            f.path
                        ))));
                    }
                    if !excluded {
                        self.link(i, tar::EntryType::Symlink, &f.link_target)?;
                    }
                }
                // Excluded files of any kind are not written.
                _ if excluded && ty != libc::S_IFREG && ty != libc::S_IFLNK => {}
                // The root's own attributes belong to the image, not to a package.
                libc::S_IFDIR if self.rel(i).is_empty() => {}
                libc::S_IFDIR => self.empty(i, tar::EntryType::Directory, None)?,
                libc::S_IFCHR => self.empty(i, tar::EntryType::Char, Some(f.rdev))?,
                libc::S_IFBLK => self.empty(i, tar::EntryType::Block, Some(f.rdev))?,
                libc::S_IFIFO => self.empty(i, tar::EntryType::Fifo, None)?,
                _ => {
                    return Err(payload(
                        pkg.refused(&f.path, format!("unsupported file type {:o}", ty >> 12)),
                    ));
                }
            }
        }
        for (i, f) in plan.files.iter().enumerate() {
            if !found[i] && !f.flags.ghost() {
                return Err(payload(
                    pkg.format(format!("`{}` is missing from the payload", f.path)),
                ));
            }
        }
        Ok(())
    }
}

/// One PAX extended-header record, `"<len> <key>=<value>\n"`, where `<len>` counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Unpack the payload of `rpm` into `root`, as its header describes the files.
///
/// The header's file list is checked first (absolute paths without `..`, no duplicates,
/// capabilities that parse), so most refusals happen before anything is written. A payload
/// entry that is not in the list, a size that differs from the header's, a file missing from
/// the payload, or a write `confine` refuses stops the unpack with an error naming the package
/// and the path; what was written before stays (callers unpack into fresh or disposable trees).
pub fn unpack(
    rpm: &RpmFile,
    root: &Root,
    opts: &PayloadOptions,
) -> Result<UnpackReport, PayloadError> {
    let pkg = Pkg::of(rpm);
    let plan = plan(rpm, opts, &pkg)?;
    // Stripped entries are only valid in packages that have large files (rpm writes them
    // exactly when `LONGFILESIZES` is present).
    let stripped_ok = rpm.has_tag(5008);
    let mut cpio = Cpio::new(payload_reader(rpm)?);
    let (reader, writer) = io::pipe().map_err(|e| pkg.io(e))?;
    let confine_opts = UnpackOptions {
        preserve_owners: opts.chown,
        update_existing_dirs: true,
        keep_directory_symlinks: true,
        ..UnpackOptions::default()
    };
    let (produced, consumed) = std::thread::scope(|scope| {
        let consumer = scope.spawn(|| confine::unpack(root, reader, &confine_opts));
        let mut producer = Producer {
            plan: &plan,
            pkg: &pkg,
            tar: tar::Builder::new(writer),
            report: UnpackReport::default(),
        };
        let produced = producer
            .run(&mut cpio, stripped_ok)
            .and_then(|()| producer.tar.finish().map_err(Stop::Pipe))
            .map(|()| std::mem::take(&mut producer.report));
        // Closing the pipe ends the consumer (at the end, or early on an error).
        drop(producer);
        let consumed = consumer.join().unwrap_or_else(|_| {
            Err(ConfineError::Archive {
                after: None,
                source: io::Error::other("unpack thread panicked"),
            })
        });
        (produced, consumed)
    });
    let unpack_err = |source| PayloadError::Unpack {
        rpm: pkg.rpm.clone(),
        package: pkg.package.clone(),
        source,
    };
    match (produced, consumed) {
        (Err(Stop::Payload(e)), _) => Err(e),
        (_, Err(e)) => Err(unpack_err(e)),
        (Err(Stop::Pipe(e)), Ok(_)) => Err(pkg.io(e)),
        (Ok(report), Ok(_)) => Ok(report),
    }
}

/// Capability names in kernel order (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40).
const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The value of the `security.capability` attribute for capabilities in `cap_from_text(3)`
/// form (`cap_net_raw=ep`, `cap_setuid,cap_setgid+ep`, `= cap_sys_admin+ep`, `all=p`), as
/// the kernel reads it: `struct vfs_cap_data` revision 2 (20 bytes), or revision 3 (24
/// bytes, with the namespace's root uid) when `rootid` is given. The effective set of a file
/// is one bit: set when any capability is effective, which must then be permitted or
/// inheritable.
///
/// Written here because no maintained crate encodes file capabilities from their text (the
/// `caps` crate handles process capabilities only).
pub fn capability_xattr(text: &str, rootid: Option<u32>) -> Result<Vec<u8>, String> {
    const ALL: u64 = (1 << CAP_NAMES.len()) - 1;
    // effective, permitted, inheritable
    let mut sets = [0u64; 3];
    for clause in text.split_whitespace() {
        let split = clause
            .find(['=', '+', '-'])
            .ok_or_else(|| format!("clause {clause:?} has no operator"))?;
        let (names, mut ops) = clause.split_at(split);
        let mut mask = 0u64;
        if names.is_empty() {
            if !ops.starts_with('=') {
                return Err(format!("clause {clause:?} names no capability"));
            }
            mask = ALL;
        }
        for name in names
            .split(',')
            .filter(|n| !names.is_empty() || !n.is_empty())
        {
            let lower = name.to_ascii_lowercase();
            let bit = if lower == "all" {
                ALL
            } else if let Some(i) = lower
                .strip_prefix("cap_")
                .and_then(|n| CAP_NAMES.iter().position(|c| *c == n))
            {
                1 << i
            } else if let Ok(i) = lower.parse::<u32>()
                && (i as usize) < CAP_NAMES.len()
            {
                1 << i
            } else {
                return Err(format!("unknown capability {name:?}"));
            };
            mask |= bit;
        }
        while let Some(op) = ops.chars().next() {
            ops = &ops[1..];
            let end = ops.find(['=', '+', '-']).unwrap_or(ops.len());
            let (flags, rest) = ops.split_at(end);
            ops = rest;
            if op == '=' {
                for s in &mut sets {
                    *s &= !mask;
                }
            }
            for flag in flags.chars() {
                let set = match flag.to_ascii_lowercase() {
                    'e' => 0,
                    'p' => 1,
                    'i' => 2,
                    _ => return Err(format!("unknown capability flag {flag:?}")),
                };
                if op == '-' {
                    sets[set] &= !mask;
                } else {
                    sets[set] |= mask;
                }
            }
        }
    }
    let [eff, perm, inh] = sets;
    if eff & !(perm | inh) != 0 {
        return Err("effective capabilities that are neither permitted nor inheritable".into());
    }
    let revision: u32 = if rootid.is_some() {
        0x0300_0000
    } else {
        0x0200_0000
    };
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&(revision | u32::from(eff != 0)).to_le_bytes());
    for half in [0, 32] {
        // The low 32 capabilities first, then the high ones.
        #[allow(clippy::cast_possible_truncation)]
        let word = |v: u64| (v >> half) as u32;
        out.extend_from_slice(&word(perm).to_le_bytes());
        out.extend_from_slice(&word(inh).to_le_bytes());
    }
    if let Some(uid) = rootid {
        out.extend_from_slice(&uid.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpm::header::testpkg::{self, F, Val, newc, reg, stripped, trailer};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("root")).unwrap();
            Fixture { dir }
        }
        fn root(&self) -> PathBuf {
            self.dir.path().join("root")
        }
        fn unpack_with(
            &self,
            files: &[F],
            extra: Vec<(u32, Val)>,
            cpio: &[u8],
            exclude_docs: bool,
        ) -> Result<UnpackReport, PayloadError> {
            let mut tags = testpkg::nevra();
            tags.extend(testpkg::file_tags(files));
            tags.extend(extra);
            let pkg = testpkg::package(&testpkg::header(&tags), cpio);
            let path = self.dir.path().join("t.rpm");
            std::fs::write(&path, pkg).unwrap();
            let rpm = RpmFile::open(&path).unwrap();
            let root = Root::open(self.root()).unwrap();
            let owners = |_: &str, _: &str| (0, 0);
            unpack(
                &rpm,
                &root,
                &PayloadOptions {
                    owners: &owners,
                    exclude_docs,
                    chown: false,
                },
            )
        }
        fn unpack(&self, files: &[F], cpio: &[u8]) -> Result<UnpackReport, PayloadError> {
            self.unpack_with(files, vec![], cpio, false)
        }
        /// Everything below the fixture's directory except the package, sorted.
        fn tree(&self) -> Vec<String> {
            let mut out: Vec<String> = walkdir::WalkDir::new(self.dir.path())
                .min_depth(1)
                .into_iter()
                .map(|e| {
                    let e = e.unwrap();
                    e.path()
                        .strip_prefix(self.dir.path())
                        .unwrap()
                        .display()
                        .to_string()
                })
                .filter(|p| p != "t.rpm")
                .collect();
            out.sort();
            out
        }
    }

    fn dir(path: &'static str) -> F {
        F {
            mode: 0o40_750,
            ..reg(path, 0, 0)
        }
    }

    fn symlink(path: &'static str, target: &'static str) -> F {
        F {
            mode: 0o120_777,
            size: u32::try_from(target.len()).unwrap(),
            link: target,
            ..reg(path, 0, 0)
        }
    }

    fn cpio(members: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = members.concat();
        out.extend(trailer());
        out
    }

    #[test]
    fn files_dirs_links_and_hardlinks_as_the_header_says() {
        let fx = Fixture::new();
        let files = [
            dir("/d"),
            reg("/d/f", 3, 1),
            symlink("/d/l", "f"),
            reg("/h1", 0, 7),
            reg("/h2", 5, 7),
        ];
        let report = fx
            .unpack(
                &files,
                &cpio(&[
                    newc("./d", 0o40_700, b""),
                    newc("./d/f", 0o100_600, b"abc"),
                    newc("./d/l", 0o120_777, b"f"),
                    newc("./h1", 0o100_644, b""),
                    newc("./h2", 0o100_644, b"hello"),
                ]),
            )
            .unwrap();
        assert_eq!(report.files, ["/d", "/d/f", "/d/l", "/h1", "/h2"]);
        assert_eq!(report.bytes, 5 + 3);
        let r = fx.root();
        assert_eq!(std::fs::read(r.join("d/f")).unwrap(), b"abc");
        assert_eq!(std::fs::read_link(r.join("d/l")).unwrap(), Path::new("f"));
        let (m1, m2) = (
            r.join("h1").metadata().unwrap(),
            r.join("h2").metadata().unwrap(),
        );
        assert_eq!(m1.ino(), m2.ino());
        assert_eq!(std::fs::read(r.join("h1")).unwrap(), b"hello");
        // The header's modes and mtimes, not the cpio's.
        let d = r.join("d").metadata().unwrap();
        assert_eq!(d.mode() & 0o7777, 0o750);
        assert_eq!(d.mtime(), 1_000_000);
        assert_eq!(r.join("d/f").metadata().unwrap().mode() & 0o7777, 0o644);
    }

    #[test]
    fn stripped_cpio_maps_entries_by_index() {
        let fx = Fixture::new();
        let files = [
            reg("/a", 2, 1),
            reg("/b", 0, 2),
            reg("/c", 0, 3),
            reg("/d", 4, 3),
        ];
        let extra = vec![(5008, Val::I64(vec![2, 0, 0, 4]))];
        let data = cpio(&[
            stripped(0, b"aa"),
            stripped(1, b""),
            stripped(2, b""),
            stripped(3, b"dddd"),
        ]);
        fx.unpack_with(&files, extra, &data, false).unwrap();
        assert_eq!(std::fs::read(fx.root().join("a")).unwrap(), b"aa");
        assert_eq!(std::fs::read(fx.root().join("c")).unwrap(), b"dddd");
        // An index past the file list.
        let fx = Fixture::new();
        let extra = vec![(5008, Val::I64(vec![2, 0, 0, 4]))];
        let e = fx
            .unpack_with(&files, extra, &cpio(&[stripped(9, b"")]), false)
            .unwrap_err();
        assert!(e.to_string().contains("file index 9"), "{e}");
        // Stripped entries in a package without large files are refused.
        let fx = Fixture::new();
        let e = fx.unpack(&files, &cpio(&[stripped(0, b"aa")])).unwrap_err();
        assert!(e.to_string().contains("stripped"), "{e}");
    }

    #[test]
    fn payload_paths_outside_the_header_are_refused() {
        for name in ["../x", "./../x", "/../x", "./etc/other"] {
            let fx = Fixture::new();
            let e = fx
                .unpack(&[reg("/x", 1, 1)], &cpio(&[newc(name, 0o100_644, b"1")]))
                .unwrap_err();
            assert!(matches!(e, PayloadError::Refused { .. }), "{name}: {e}");
            assert!(e.to_string().contains("demo-1.0-1.noarch"), "{e}");
            assert!(e.to_string().contains("not in the header"), "{e}");
            assert_eq!(fx.tree(), ["root"], "{name}");
        }
    }

    #[test]
    fn header_paths_with_dotdot_are_refused_before_writing() {
        for path in ["/../x", "/a/./b", "relative"] {
            let fx = Fixture::new();
            let e = fx
                .unpack(
                    &[reg("/first", 1, 1), reg(path, 1, 2)],
                    &cpio(&[
                        newc("./first", 0o100_644, b"1"),
                        newc(path, 0o100_644, b"1"),
                    ]),
                )
                .unwrap_err();
            assert!(matches!(e, PayloadError::Refused { .. }), "{path}: {e}");
            assert!(e.to_string().contains(path), "{e}");
            assert_eq!(fx.tree(), ["root"], "{path}");
        }
    }

    #[test]
    fn writing_through_a_packaged_symlink_is_refused() {
        let fx = Fixture::new();
        let outside = fx.dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let target: &'static str = Box::leak(outside.display().to_string().into_boxed_str());
        let e = fx
            .unpack(
                &[symlink("/a", target), reg("/a/x", 1, 1)],
                &cpio(&[
                    newc("./a", 0o120_777, target.as_bytes()),
                    newc("./a/x", 0o100_644, b"1"),
                ]),
            )
            .unwrap_err();
        assert!(matches!(e, PayloadError::Unpack { .. }), "{e}");
        assert!(e.to_string().contains("a/x"), "{e}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // The same with a relative link climbing out.
        let fx = Fixture::new();
        let e = fx
            .unpack(
                &[symlink("/b", "../../.."), reg("/b/x", 1, 1)],
                &cpio(&[
                    newc("./b", 0o120_777, b"../../.."),
                    newc("./b/x", 0o100_644, b"1"),
                ]),
            )
            .unwrap_err();
        assert!(e.to_string().contains("b/x"), "{e}");
        assert_eq!(fx.tree(), ["root", "root/b"]);
    }

    #[test]
    fn truncated_mismatched_and_missing_payloads_are_errors() {
        let files = [reg("/a", 4, 1), reg("/b", 1, 2)];
        let full = cpio(&[
            newc("./a", 0o100_644, b"aaaa"),
            newc("./b", 0o100_644, b"b"),
        ]);
        for cut in [3, 112, 120, full.len() - 20] {
            let fx = Fixture::new();
            let e = fx.unpack(&files, &full[..cut]).unwrap_err();
            assert!(e.to_string().contains("truncated"), "{cut}: {e}");
        }
        let fx = Fixture::new();
        let e = fx
            .unpack(&files, &cpio(&[newc("./a", 0o100_644, b"aaa")]))
            .unwrap_err();
        assert!(e.to_string().contains("the header says 4"), "{e}");
        let fx = Fixture::new();
        let e = fx
            .unpack(&files, &cpio(&[newc("./a", 0o100_644, b"aaaa")]))
            .unwrap_err();
        assert!(e.to_string().contains("`/b` is missing"), "{e}");
        let fx = Fixture::new();
        let e = fx
            .unpack(
                &files,
                &cpio(&[
                    newc("./a", 0o100_644, b"aaaa"),
                    newc("./a", 0o100_644, b"aaaa"),
                ]),
            )
            .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let fx = Fixture::new();
        let mut bad = full.clone();
        bad[3] = b'9';
        let e = fx.unpack(&files, &bad).unwrap_err();
        assert!(e.to_string().contains("cpio magic"), "{e}");
    }

    #[test]
    fn contents_are_checked_against_the_header_digests() {
        use sha2::Digest;
        let files = [reg("/a", 4, 1), reg("/e", 0, 2)];
        let digests = |a: &[u8]| {
            vec![
                (
                    1035,
                    Val::Strs(vec![
                        hex::encode(sha2::Sha256::digest(a)),
                        hex::encode(sha2::Sha256::digest(b"")),
                    ]),
                ),
                (5011, Val::I32(vec![8])),
            ]
        };
        let data = cpio(&[newc("./a", 0o100_644, b"aaaa"), newc("./e", 0o100_644, b"")]);
        Fixture::new()
            .unpack_with(&files, digests(b"aaaa"), &data, false)
            .unwrap();
        let fx = Fixture::new();
        let e = fx
            .unpack_with(&files, digests(b"aaab"), &data, false)
            .unwrap_err();
        assert!(matches!(e, PayloadError::Refused { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("`/a` refused: content digest mismatch"),
            "{e}"
        );
        assert_ne!(
            std::fs::read(fx.root().join("a")).unwrap_or_default(),
            b"aaaa"
        );
    }

    #[test]
    fn ghosts_are_not_created_and_docs_can_be_excluded() {
        let fx = Fixture::new();
        let files = [
            F {
                flags: 1 << 6,
                ..reg("/var/log/g", 0, 1)
            },
            F {
                flags: 1 << 1,
                ..reg("/usr/share/doc/d", 1, 2)
            },
            reg("/usr/bin/x", 1, 3),
        ];
        let data = cpio(&[
            newc("./usr/share/doc/d", 0o100_644, b"d"),
            newc("./usr/bin/x", 0o100_644, b"x"),
        ]);
        let report = fx.unpack_with(&files, vec![], &data, true).unwrap();
        assert_eq!(report.files, ["/usr/bin/x"]);
        assert_eq!(
            fx.tree(),
            ["root", "root/usr", "root/usr/bin", "root/usr/bin/x"]
        );
    }

    #[test]
    fn capability_text_encodes_as_the_kernel_reads_it() {
        let v2 = |perm_lo: u32, eff: bool| {
            let mut v = (0x0200_0000u32 | u32::from(eff)).to_le_bytes().to_vec();
            for w in [perm_lo, 0, 0, 0] {
                v.extend_from_slice(&w.to_le_bytes());
            }
            v
        };
        assert_eq!(
            capability_xattr("cap_net_raw=ep", None).unwrap(),
            v2(1 << 13, true)
        );
        assert_eq!(
            capability_xattr("cap_net_raw=p", None).unwrap(),
            v2(1 << 13, false)
        );
        assert_eq!(
            capability_xattr("cap_setgid,cap_setuid+ep", None).unwrap(),
            v2(1 << 6 | 1 << 7, true)
        );
        assert_eq!(
            capability_xattr("= cap_chown+ep cap_kill=p", None).unwrap(),
            v2(1 | 1 << 5, true)
        );
        assert_eq!(
            capability_xattr("all=p cap_chown-p", None).unwrap()[4..8],
            (u32::MAX - 1).to_le_bytes()
        );
        let all = capability_xattr("=ep", None).unwrap();
        assert_eq!(all[12..16], 0x1ffu32.to_le_bytes());
        // Revision 3 carries the namespace root.
        let v3 = capability_xattr("cap_sys_admin=ep", Some(1000)).unwrap();
        assert_eq!(v3.len(), 24);
        assert_eq!(v3[..4], 0x0300_0001u32.to_le_bytes());
        assert_eq!(v3[20..], 1000u32.to_le_bytes());
        for bad in [
            "cap_bogus=ep",
            "cap_net_raw=x",
            "cap_net_raw+e",
            "cap_net_raw",
            "+ep",
            "cap_chown,,cap_kill=p",
        ] {
            assert!(capability_xattr(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let r = pax_record("k", b"v");
        assert_eq!(r, b"6 k=v\n");
        let long = vec![b'x'; 95];
        let r = pax_record("key", &long);
        assert_eq!(
            r.len().to_string(),
            String::from_utf8_lossy(&r[..r.iter().position(|&b| b == b' ').unwrap()])
        );
    }
}
