//! Layer blobs: one streaming pass from a root tree to a content-addressed, compressed tar.
//!
//! tar → sha256 (`diff_id`) → compressor → sha256 + size (blob digest) → temp file in the blobs
//! directory, renamed to its digest. Headers come from `lstat` only, mtimes are clamped to
//! `source_date_epoch`, and nothing else varies.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::image::MediaType;

use super::compress::{Compression, Encoder, HashingWriter};
use super::tarball::{self, EntryKind, TarEntry};
use super::walk::{self, Excludes, WalkEntry};
use super::{ImageError, Result, io_err};

/// How a layer is written.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// Files newer than this (seconds since the epoch) get this mtime.
    pub source_date_epoch: u64,
    /// What is left out of the tree.
    pub excludes: Excludes,
    /// Blob compression (`Xz` is not a layer format and is rejected).
    pub compression: Compression,
    /// Compression threads; 0 = every core. Output does not depend on it.
    pub threads: usize,
    /// Also keep the uncompressed tar in this directory, as `<diff_id hex>.tar`: a
    /// docker-archive holds layers uncompressed, and keeping the copy costs less than
    /// decompressing the blob again.
    pub keep_plain: Option<PathBuf>,
}

/// A layer written into a blobs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:<hex>` of the blob as stored (compressed).
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub tar_size: u64,
    /// OCI media type of the blob.
    pub media_type: MediaType,
    /// Where the blob is (`<blobs_dir>/<hex>`).
    pub path: PathBuf,
    /// The uncompressed copy, when [`LayerOptions::keep_plain`] asked for one.
    pub plain: Option<PathBuf>,
}

/// OCI layer media type for a compression.
pub fn layer_media_type(c: Compression) -> Result<MediaType> {
    match c {
        Compression::None => Ok(MediaType::ImageLayer),
        Compression::Gzip(_) => Ok(MediaType::ImageLayerGzip),
        Compression::Zstd(_) => Ok(MediaType::ImageLayerZstd),
        Compression::Xz(_) => Err(ImageError::Option {
            option: "layer compression".into(),
            reason: "xz is not an OCI layer format; use gzip, zstd or none".into(),
        }),
    }
}

/// Writes the whole tree under `root` as one layer blob into `blobs_dir` (an OCI
/// `blobs/sha256` directory, created if missing).
pub fn write_layer(root: &Path, blobs_dir: &Path, opts: &LayerOptions) -> Result<LayerBlob> {
    let mut emitter = TarEmitter::new(opts.source_date_epoch);
    write_tar_blob(blobs_dir, opts, |w| {
        walk::walk(root, &opts.excludes, |e| emitter.emit(w, e))
    })
}

/// Streams a tar produced by `body` (which writes entries, not the end marker) through hashing
/// and compression into a blob named by its digest.
pub(crate) fn write_tar_blob<F>(blobs_dir: &Path, opts: &LayerOptions, body: F) -> Result<LayerBlob>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let (compression, threads) = (opts.compression, opts.threads);
    let media_type = layer_media_type(compression)?;
    fs::create_dir_all(blobs_dir).map_err(io_err(blobs_dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-layer-")
        .tempfile_in(blobs_dir)
        .map_err(io_err(blobs_dir))?;
    let file = tmp.reopen().map_err(io_err(tmp.path()))?;
    let tmp_path = tmp.path().to_path_buf();
    let werr = |e: io::Error| ImageError::Io {
        path: tmp_path.clone(),
        source: e,
    };
    let blob = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let enc = Encoder::new(compression, blob, threads).map_err(|e| ImageError::Compress {
        path: tmp_path.clone(),
        format: compression.name(),
        message: e.to_string(),
    })?;
    let plain = match &opts.keep_plain {
        Some(dir) => {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            let t = tempfile::Builder::new()
                .prefix(".tmp-plain-")
                .tempfile_in(dir)
                .map_err(io_err(dir))?;
            let f = t.reopen().map_err(io_err(t.path()))?;
            Some((t, BufWriter::with_capacity(1 << 20, f)))
        }
        None => None,
    };
    let (plain_tmp, plain_file) = match plain {
        Some((t, f)) => (Some(t), Some(f)),
        None => (None, None),
    };
    let tee = Tee {
        blob: enc,
        plain: plain_file,
    };
    let mut tar = BufWriter::with_capacity(1 << 18, HashingWriter::new(tee));
    body(&mut tar)?;
    tarball::write_end(&mut tar).map_err(werr)?;
    let tar = tar.into_inner().map_err(|e| werr(e.into_error()))?;
    let (tee, diff_hex, tar_size) = tar.finish();
    let enc = tee.blob;
    let plain = match (plain_tmp, tee.plain, &opts.keep_plain) {
        (Some(t), Some(f), Some(dir)) => {
            let perr = |e: io::Error| ImageError::Io {
                path: t.path().to_path_buf(),
                source: e,
            };
            f.into_inner().map_err(|e| perr(e.into_error()))?;
            let dest = dir.join(format!("{diff_hex}.tar"));
            t.persist(&dest).map_err(|e| ImageError::Io {
                path: dest.clone(),
                source: e.error,
            })?;
            Some(dest)
        }
        _ => None,
    };
    let blob = enc.finish().map_err(|e| ImageError::Compress {
        path: tmp_path.clone(),
        format: compression.name(),
        message: e.to_string(),
    })?;
    let (buf, blob_hex, size) = blob.finish();
    buf.into_inner()
        .map_err(|e| werr(e.into_error()))?
        .flush()
        .map_err(werr)?;
    let path = blobs_dir.join(&blob_hex);
    tmp.persist(&path).map_err(|e| ImageError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    Ok(LayerBlob {
        digest: format!("sha256:{blob_hex}"),
        diff_id: format!("sha256:{diff_hex}"),
        size,
        tar_size,
        media_type,
        path,
        plain,
    })
}

/// The tar stream going to the compressor and, when asked, to an uncompressed copy as well.
struct Tee<W> {
    blob: W,
    plain: Option<BufWriter<File>>,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.blob.write_all(buf)?;
        if let Some(p) = &mut self.plain {
            p.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.blob.flush()?;
        if let Some(p) = &mut self.plain {
            p.flush()?;
        }
        Ok(())
    }
}

/// Turns walk entries into tar entries: hardlinks kept, xattrs sorted, mtimes clamped.
pub(crate) struct TarEmitter {
    epoch: u64,
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// Extended attributes never packed: SELinux labels belong to the build host, not the image.
const SKIPPED_XATTRS: &[&[u8]] = &[b"security.selinux"];

/// Reads the extended attributes of `path` (not following symlinks), sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = crate::confine::read_xattrs(path).map_err(io_err(path))?;
    out.retain(|(name, _)| !SKIPPED_XATTRS.contains(&name.as_slice()));
    Ok(out)
}

/// The tar type of an `lstat` result; `None` for sockets, which tar does not carry.
pub(crate) fn entry_kind(path: &Path, meta: &fs::Metadata) -> Result<Option<EntryKind>> {
    let ft = meta.file_type();
    let dev = || {
        let rdev = meta.rdev();
        (u64::from(libc::major(rdev)), u64::from(libc::minor(rdev)))
    };
    Ok(Some(if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        let t = fs::read_link(path).map_err(io_err(path))?;
        EntryKind::Symlink(t.as_os_str().as_bytes().to_vec())
    } else if ft.is_char_device() {
        let (a, b) = dev();
        EntryKind::Char(a, b)
    } else if ft.is_block_device() {
        let (a, b) = dev();
        EntryKind::Block(a, b)
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Ok(None);
    }))
}

impl TarEmitter {
    pub(crate) fn new(epoch: u64) -> Self {
        TarEmitter {
            epoch,
            links: HashMap::new(),
        }
    }

    /// Writes one walk entry (header and content).
    pub(crate) fn emit(&mut self, w: &mut dyn Write, e: &WalkEntry) -> Result<()> {
        let Some(mut kind) = entry_kind(&e.abs, &e.meta)? else {
            return Ok(());
        };
        let mut size = 0;
        if kind == EntryKind::File {
            size = e.meta.len();
            if e.meta.nlink() > 1 {
                let key = (e.meta.dev(), e.meta.ino());
                if let Some(first) = self.links.get(&key) {
                    kind = EntryKind::HardLink(first.clone());
                    size = 0;
                } else {
                    self.links.insert(key, e.rel.clone());
                }
            }
        }
        let xattrs = read_xattrs(&e.abs)?;
        let mtime = u64::try_from(e.meta.mtime()).unwrap_or(0).min(self.epoch);
        let entry = TarEntry {
            path: &e.rel,
            kind: kind.clone(),
            mode: e.meta.mode(),
            uid: u64::from(e.meta.uid()),
            gid: u64::from(e.meta.gid()),
            size,
            mtime,
            xattrs: &xattrs,
        };
        let werr = io_err(&e.abs);
        tarball::write_header(w, &entry).map_err(werr)?;
        if kind == EntryKind::File && size > 0 {
            let mut f = File::open(&e.abs).map_err(io_err(&e.abs))?;
            let n = io::copy(&mut (&mut f).take(size), w).map_err(io_err(&e.abs))?;
            if n != size {
                return Err(ImageError::FileChanged {
                    path: e.abs.clone(),
                    expected: size,
                });
            }
            tarball::write_padding(w, size).map_err(io_err(&e.abs))?;
        }
        Ok(())
    }

    /// Writes an empty regular file entry (whiteouts and opaque markers).
    pub(crate) fn emit_marker(w: &mut dyn Write, rel: &[u8]) -> Result<()> {
        let entry = TarEntry {
            path: rel,
            kind: EntryKind::File,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            xattrs: &[],
        };
        tarball::write_header(w, &entry)
            .map(|_| ())
            .map_err(io_err(PathBuf::from(std::ffi::OsStr::from_bytes(rel))))
    }
}
