//! Reading `.deb` packages: the ar container, the control tarball (kept in memory: it is small)
//! and the data tarball, streamed into a [`Root`] through [`confine::unpack`] without temporary
//! files.
//!
//! Member order is checked as dpkg-deb checks it: `debian-binary` (format 2.x) first, then
//! `control.tar*`, then `data.tar*`; members starting with `_` are skipped anywhere.

use crate::apt::control::{self, Paragraph};
use crate::confine::{self, ConfineError, Root, UnpackOptions, UnpackReport};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;

/// Names of the control members dpkg knows (others are kept too).
pub const CONTROL_MEMBERS: &[&str] = &[
    "control",
    "preinst",
    "postinst",
    "prerm",
    "postrm",
    "config",
    "templates",
    "conffiles",
    "md5sums",
    "shlibs",
    "symbols",
    "triggers",
];

/// A control member larger than this is refused: real ones are kilobytes, and the whole
/// control tarball is held in memory.
const MAX_CONTROL_BYTES: u64 = 64 << 20;

/// Errors reading a `.deb`; every variant names the file and, where there is one, the member.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// Reading the file or a member failed.
    #[error("{}{}: {source}", path.display(), member_suffix(member.as_deref()))]
    Io {
        /// The `.deb`.
        path: PathBuf,
        /// The ar member being read, if any.
        member: Option<String>,
        /// The OS or decompression error.
        #[source]
        source: io::Error,
    },
    /// The package does not have the structure of a binary package.
    #[error("{}{}: {reason}", path.display(), member_suffix(member.as_deref()))]
    Format {
        /// The `.deb`.
        path: PathBuf,
        /// The member involved, if any.
        member: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The `control` file does not parse.
    #[error("{}: control.tar member `control`: {source}", path.display())]
    Control {
        /// The `.deb`.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: control::ParseError,
    },
    /// Unpacking the data tarball failed or was refused.
    #[error("{}: {member}: {source}", path.display())]
    Unpack {
        /// The `.deb`.
        path: PathBuf,
        /// The data member.
        member: String,
        /// The unpack error.
        #[source]
        source: ConfineError,
    },
}

fn member_suffix(member: Option<&str>) -> String {
    member
        .map(|m| format!(": member `{m}`"))
        .unwrap_or_default()
}

/// Compression of a tar member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
    /// bzip2 (data members only, as in dpkg).
    Bzip2,
}

impl Compression {
    /// The compression named by a member's suffix after `prefix` (`control.tar`, `data.tar`).
    fn from_member(name: &str, prefix: &str, bzip2: bool) -> Option<Compression> {
        match name.strip_prefix(prefix)? {
            "" => Some(Compression::None),
            ".gz" => Some(Compression::Gzip),
            ".xz" => Some(Compression::Xz),
            ".zst" => Some(Compression::Zstd),
            ".bz2" if bzip2 => Some(Compression::Bzip2),
            _ => None,
        }
    }

    /// The compression of a stream starting with `head` (its magic bytes); plain tar otherwise.
    pub fn from_magic(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => Compression::Bzip2,
            _ => Compression::None,
        }
    }

    /// Wrap `r` in the matching decompressor.
    pub fn reader<'a>(self, r: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::None => Box::new(BufReader::with_capacity(128 * 1024, r)),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::new(r)?;
                // Accept `zstd --long` streams (dpkg-deb may write them), as dpkg does.
                d.window_log_max(31)?;
                Box::new(d)
            }
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        })
    }
}

/// When the package at `path` was built: the modification time `dpkg-deb` gave its first ar
/// member (`debian-binary`), which reproducible builds set to the changelog date.
pub fn built(path: &Path) -> Result<u64, DebError> {
    let io_err = |source| DebError::Io {
        path: path.to_path_buf(),
        member: None,
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut ar = ar::Archive::new(BufReader::new(file));
    match ar.next_entry() {
        Some(entry) => Ok(entry.map_err(io_err)?.header().mtime()),
        None => Err(DebError::Format {
            path: path.to_path_buf(),
            member: None,
            reason: "empty archive; not a Debian binary package".into(),
        }),
    }
}

/// An opened binary package.
#[derive(Debug, Clone)]
pub struct Deb {
    path: PathBuf,
    version: String,
    control: Paragraph,
    members: BTreeMap<String, Vec<u8>>,
    data_member: String,
    data_index: usize,
    data_compression: Compression,
}

fn member_name(raw: &[u8]) -> String {
    // Members may be written in the GNU form (`name/`) or padded with spaces.
    let s = String::from_utf8_lossy(raw);
    s.trim_end_matches(' ').trim_end_matches('/').to_string()
}

impl Deb {
    /// Open `path`, check its structure and format version, and read the control members.
    pub fn open(path: impl AsRef<Path>) -> Result<Deb, DebError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |member: Option<&str>| {
            let path = path.clone();
            let member = member.map(str::to_string);
            move |source| DebError::Io {
                path,
                member,
                source,
            }
        };
        let format = |member: Option<&str>, reason: String| DebError::Format {
            path: path.clone(),
            member: member.map(str::to_string),
            reason,
        };
        let file = File::open(&path).map_err(io_err(None))?;
        let mut ar = ar::Archive::new(BufReader::new(file));
        let mut version = None;
        let mut control = None;
        let mut data = None;
        let mut index = 0usize;
        while let Some(entry) = ar.next_entry() {
            let mut entry = entry.map_err(io_err(None))?;
            let name = member_name(entry.header().identifier());
            let this = index;
            index += 1;
            if name.starts_with('_') {
                continue;
            }
            if version.is_none() {
                if name != "debian-binary" {
                    return Err(format(
                        Some(&name),
                        "first member is not `debian-binary`; not a Debian binary package".into(),
                    ));
                }
                let mut text = String::new();
                entry
                    .by_ref()
                    .take(64)
                    .read_to_string(&mut text)
                    .map_err(io_err(Some(&name)))?;
                let v = text.lines().next().unwrap_or("").trim().to_string();
                let ok = v.split_once('.').is_some_and(|(maj, min)| {
                    maj == "2" && !min.is_empty() && min.bytes().all(|b| b.is_ascii_digit())
                });
                if !ok {
                    return Err(format(
                        Some(&name),
                        format!("unsupported format version {v:?} (2.x expected)"),
                    ));
                }
                version = Some(v);
                continue;
            }
            if control.is_none() {
                let Some(c) = Compression::from_member(&name, "control.tar", false) else {
                    return Err(format(
                        Some(&name),
                        "expected a `control.tar[.gz|.xz|.zst]` member".into(),
                    ));
                };
                control = Some(read_control_tar(&path, &name, c, &mut entry)?);
                continue;
            }
            let Some(c) = Compression::from_member(&name, "data.tar", true) else {
                return Err(format(
                    Some(&name),
                    "expected a `data.tar[.gz|.xz|.zst|.bz2]` member".into(),
                ));
            };
            data = Some((name, this, c));
            break;
        }
        let version = version
            .ok_or_else(|| format(None, "empty archive; not a Debian binary package".into()))?;
        let members = control.ok_or_else(|| format(None, "no control.tar member".into()))?;
        let (data_member, data_index, data_compression) =
            data.ok_or_else(|| format(None, "no data.tar member".into()))?;
        let text = members
            .get("control")
            .ok_or_else(|| format(Some("control.tar"), "has no `control` file".into()))?;
        let text = std::str::from_utf8(text)
            .map_err(|_| format(Some("control.tar"), "`control` is not UTF-8".into()))?;
        let mut paras = control::parse(text).map_err(|source| DebError::Control {
            path: path.clone(),
            source,
        })?;
        if paras.len() != 1 {
            return Err(format(
                Some("control.tar"),
                format!("`control` has {} paragraphs, expected 1", paras.len()),
            ));
        }
        let control = paras.remove(0);
        if control.get("Package").is_none() {
            return Err(format(
                Some("control.tar"),
                "`control` has no Package field".into(),
            ));
        }
        Ok(Deb {
            path,
            version,
            control,
            members,
            data_member,
            data_index,
            data_compression,
        })
    }

    /// The `.deb` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version from `debian-binary` (e.g. `2.0`).
    pub fn format_version(&self) -> &str {
        &self.version
    }

    /// The control paragraph.
    pub fn control(&self) -> &Paragraph {
        &self.control
    }

    /// The content of control member `name` (`postinst`, `md5sums`, …), if the package has it.
    pub fn control_member(&self, name: &str) -> Option<&[u8]> {
        self.members.get(name).map(Vec::as_slice)
    }

    /// Every control member, sorted by name.
    pub fn control_members(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The data member's name (`data.tar.xz`, …).
    pub fn data_member(&self) -> &str {
        &self.data_member
    }

    /// The data member's compression.
    pub fn data_compression(&self) -> Compression {
        self.data_compression
    }

    /// Stream the data tarball into `root`.
    pub fn unpack_data(&self, root: &Root, opts: &UnpackOptions) -> Result<UnpackReport, DebError> {
        self.with_data(|r| confine::unpack(root, r, opts))
            .and_then(|r| {
                r.map_err(|source| DebError::Unpack {
                    path: self.path.clone(),
                    member: self.data_member.clone(),
                    source,
                })
            })
    }

    /// Run `f` on the decompressed data tarball stream. Decompression runs on its own thread,
    /// a few chunks ahead of `f`, so that inflating and writing the tree overlap (as dpkg-deb's
    /// decompressor process and tar extractor do).
    pub fn with_data<T>(&self, f: impl FnOnce(&mut dyn Read) -> T) -> Result<T, DebError> {
        let io_err = |source| DebError::Io {
            path: self.path.clone(),
            member: Some(self.data_member.clone()),
            source,
        };
        let file = File::open(&self.path).map_err(io_err)?;
        let mut ar = ar::Archive::new(file);
        let entry = ar.jump_to_entry(self.data_index).map_err(io_err)?;
        let reader = self.data_compression.reader(entry).map_err(io_err)?;
        Ok(std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
            scope.spawn(move || produce(reader, &tx));
            let mut pipe = ChunkReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
                done: false,
            };
            // Dropping the receiver (also when `f` stops early) ends the producer.
            f(&mut pipe)
        }))
    }
}

const CHUNK: usize = 1 << 20;

/// Read `r` in chunks into `tx` until EOF, an error, or the receiver hangs up.
fn produce(mut r: impl Read, tx: &mpsc::SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        buf.truncate(filled);
        if tx.send(Ok(buf)).is_err() {
            return;
        }
    }
}

/// The consuming end of [`produce`].
struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The producer finished (EOF).
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Read every regular file of the control tarball into memory, by bare name.
fn read_control_tar(
    path: &Path,
    member: &str,
    c: Compression,
    r: &mut (dyn Read + Send),
) -> Result<BTreeMap<String, Vec<u8>>, DebError> {
    let io_err = |source| DebError::Io {
        path: path.to_path_buf(),
        member: Some(member.to_string()),
        source,
    };
    let format = |reason: String| DebError::Format {
        path: path.to_path_buf(),
        member: Some(member.to_string()),
        reason,
    };
    let mut out = BTreeMap::new();
    let mut tar = tar::Archive::new(c.reader(r).map_err(io_err)?);
    for entry in tar.entries().map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let etype = entry.header().entry_type();
        if etype.is_dir() {
            continue;
        }
        let p = entry.path().map_err(io_err)?.into_owned();
        let mut comps = p.components().filter(|c| !matches!(c, Component::CurDir));
        let (Some(Component::Normal(name)), None) = (comps.next(), comps.next()) else {
            return Err(format(format!(
                "unexpected path `{}` in control tarball",
                p.display()
            )));
        };
        let name = name.to_string_lossy().into_owned();
        if !etype.is_file() {
            return Err(format(format!(
                "control member `{name}` is not a regular file"
            )));
        }
        if entry.size() > MAX_CONTROL_BYTES {
            return Err(format(format!(
                "control member `{name}` is {} bytes, over the limit",
                entry.size()
            )));
        }
        let mut buf = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry
            .take(MAX_CONTROL_BYTES)
            .read_to_end(&mut buf)
            .map_err(io_err)?;
        out.insert(name, buf);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_trimmed() {
        assert_eq!(member_name(b"debian-binary/"), "debian-binary");
        assert_eq!(member_name(b"control.tar.gz  "), "control.tar.gz");
    }

    #[test]
    fn compression_from_suffix() {
        assert_eq!(
            Compression::from_member("data.tar.xz", "data.tar", true),
            Some(Compression::Xz)
        );
        assert_eq!(
            Compression::from_member("data.tar.bz2", "data.tar", true),
            Some(Compression::Bzip2)
        );
        assert_eq!(
            Compression::from_member("control.tar.bz2", "control.tar", false),
            None
        );
        assert_eq!(
            Compression::from_member("data.tar.lz", "data.tar", true),
            None
        );
    }
}
