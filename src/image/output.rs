//! Result files: OCI layout directory, oci-archive, docker-archive and rootfs tarball, each
//! appearing atomically (temp + rename; a failure leaves nothing), plus `.sha256` files.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{ANNOTATION_REF_NAME, DescriptorBuilder, ImageIndexBuilder, MediaType};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::compress::{self, Compression, Encoder, HashingWriter};
use super::config::{BuiltImage, canonical_json};
use super::layer::TarEmitter;
use super::tarball::{self, EntryKind, TarEntry};
use super::walk::{self, Excludes};
use super::{ImageError, Result, io_err};

/// A result file that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Lowercase hex sha256 of its bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

pub(super) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `index.json` of a layout holding `image`, canonical.
pub fn index_json(image: &BuiltImage) -> Result<Vec<u8>> {
    let mut ann = std::collections::HashMap::new();
    ann.insert(ANNOTATION_REF_NAME.to_string(), image.ref_name.clone());
    let m = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(image.manifest.digest().clone())
        .size(image.manifest.size())
        .annotations(ann)
        .build()
        .map_err(|e| ImageError::Spec {
            field: "index.json".into(),
            message: e.to_string(),
        })?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![m])
        .build()
        .map_err(|e| ImageError::Spec {
            field: "index.json".into(),
            message: e.to_string(),
        })?;
    canonical_json(&index, "index.json")
}

/// Digests of every blob of the image, sorted and without duplicates.
fn blob_hexes(image: &BuiltImage) -> Vec<String> {
    let mut v: Vec<String> = vec![
        image.manifest.digest().digest().to_string(),
        image.config.digest().digest().to_string(),
    ];
    v.extend(
        image
            .layers
            .iter()
            .map(|l| l.descriptor.digest().digest().to_string()),
    );
    v.sort();
    v.dedup();
    v
}

/// Writes the image as an OCI image layout directory at `dest` (replacing an existing one
/// only once the new one is complete). Blobs are hardlinked where possible.
pub fn write_oci_layout(image: &BuiltImage, dest: &Path) -> Result<()> {
    let parent = crate::atomic::parent_dir(dest);
    fs::create_dir_all(parent).map_err(io_err(&parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-oci-")
        .tempdir_in(parent)
        .map_err(io_err(&parent))?;
    let blobs = tmp.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    for h in blob_hexes(image) {
        let src = image.blobs_dir.join(&h);
        let dst = blobs.join(&h);
        if fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst).map_err(io_err(&src))?;
        }
    }
    let p = tmp.path().join("oci-layout");
    fs::write(&p, OCI_LAYOUT).map_err(io_err(&p))?;
    let p = tmp.path().join("index.json");
    fs::write(&p, index_json(image)?).map_err(io_err(&p))?;
    replace_dir(&tmp.keep(), dest)
}

fn replace_dir(new: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        let old = dest.with_extension("old-imgbuild");
        let _ = fs::remove_dir_all(&old);
        fs::rename(dest, &old).map_err(io_err(dest))?;
        if let Err(e) = fs::rename(new, dest) {
            let _ = fs::rename(&old, dest);
            let _ = fs::remove_dir_all(new);
            return Err(io_err(dest)(e));
        }
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
        Ok(())
    } else {
        fs::rename(new, dest).map_err(|e| {
            let _ = fs::remove_dir_all(new);
            io_err(dest)(e)
        })
    }
}

type ArchiveSink = BufWriter<HashingWriter<Encoder<HashingWriter<BufWriter<File>>>>>;

/// An archive file being written to a temp file next to its destination.
struct AtomicArchive {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    compression: Compression,
    w: ArchiveSink,
}

impl AtomicArchive {
    fn create(dest: &Path, compression: Compression, threads: usize) -> Result<Self> {
        let parent = crate::atomic::parent_dir(dest);
        fs::create_dir_all(parent).map_err(io_err(&parent))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-archive-")
            .tempfile_in(parent)
            .map_err(io_err(&parent))?;
        let file = tmp.reopen().map_err(io_err(tmp.path()))?;
        let out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let enc = Encoder::new(compression, out, threads).map_err(|e| ImageError::Compress {
            path: dest.to_path_buf(),
            format: compression.name(),
            message: e.to_string(),
        })?;
        Ok(AtomicArchive {
            tmp,
            dest: dest.to_path_buf(),
            compression,
            w: BufWriter::with_capacity(1 << 18, HashingWriter::new(enc)),
        })
    }

    fn finish(self) -> Result<OutputFile> {
        let dest = self.dest;
        let mut w = self.w;
        tarball::write_end(&mut w).map_err(io_err(&dest))?;
        let h = w.into_inner().map_err(|e| io_err(&dest)(e.into_error()))?;
        let (enc, _, _) = h.finish();
        let out = enc.finish().map_err(|e| ImageError::Compress {
            path: dest.clone(),
            format: self.compression.name(),
            message: e.to_string(),
        })?;
        let (buf, sha256, size) = out.finish();
        let mut f = buf
            .into_inner()
            .map_err(|e| io_err(&dest)(e.into_error()))?;
        f.flush().map_err(io_err(&dest))?;
        self.tmp.persist(&dest).map_err(|e| ImageError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(OutputFile {
            path: dest,
            sha256,
            size,
        })
    }
}

fn dir_entry(w: &mut ArchiveSink, path: &[u8], mtime: u64) -> io::Result<u64> {
    let e = TarEntry {
        path,
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime,
        xattrs: &[],
    };
    tarball::write_header(w, &e)
}

fn file_entry(w: &mut ArchiveSink, path: &[u8], src: &Path, mtime: u64) -> Result<()> {
    let mut f = File::open(src).map_err(io_err(src))?;
    let size = f.metadata().map_err(io_err(src))?.len();
    stream_entry(w, path, &mut f, size, mtime, src)
}

fn stream_entry(
    w: &mut ArchiveSink,
    path: &[u8],
    r: &mut dyn Read,
    size: u64,
    mtime: u64,
    src: &Path,
) -> Result<()> {
    let e = TarEntry {
        path,
        kind: EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size,
        mtime,
        xattrs: &[],
    };
    tarball::write_header(w, &e).map_err(io_err(src))?;
    let n = io::copy(&mut r.take(size), w).map_err(io_err(src))?;
    if n != size {
        return Err(ImageError::FileChanged {
            path: src.to_path_buf(),
            expected: size,
        });
    }
    tarball::write_padding(w, size).map_err(io_err(src))?;
    Ok(())
}

/// Writes an oci-archive (a tar of the OCI layout) at `dest`, optionally compressed as a whole.
pub fn write_oci_archive(
    image: &BuiltImage,
    dest: &Path,
    compression: Compression,
    threads: usize,
    mtime: u64,
) -> Result<OutputFile> {
    let index = index_json(image)?;
    let blobs: Vec<(String, PathBuf)> = blob_hexes(image)
        .into_iter()
        .map(|h| {
            let p = image.blobs_dir.join(&h);
            (h, p)
        })
        .collect();
    write_layout_archive(dest, &blobs, &index, compression, threads, mtime)
}

/// Writes an oci-archive of `index` (the `index.json`) and `blobs` (sorted hex digest, file),
/// entries in that order with a fixed owner and `mtime`, so the same blobs give the same bytes.
pub(super) fn write_layout_archive(
    dest: &Path,
    blobs: &[(String, PathBuf)],
    index: &[u8],
    compression: Compression,
    threads: usize,
    mtime: u64,
) -> Result<OutputFile> {
    let mut a = AtomicArchive::create(dest, compression, threads)?;
    let r: Result<()> = (|| {
        let w = &mut a.w;
        dir_entry(w, b"blobs", mtime).map_err(io_err(dest))?;
        dir_entry(w, b"blobs/sha256", mtime).map_err(io_err(dest))?;
        for (h, path) in blobs {
            let name = format!("blobs/sha256/{h}");
            file_entry(w, name.as_bytes(), path, mtime)?;
        }
        tarball::append_bytes(w, b"index.json", index, mtime).map_err(io_err(dest))?;
        tarball::append_bytes(w, b"oci-layout", OCI_LAYOUT, mtime).map_err(io_err(dest))?;
        Ok(())
    })();
    r?;
    a.finish()
}

/// Size of a layer's uncompressed tar, by reading it through.
fn uncompressed_size(path: &Path) -> Result<u64> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut r = compress::decoder(BufReader::new(f)).map_err(io_err(path))?;
    io::copy(&mut r, &mut io::sink()).map_err(io_err(path))
}

/// Writes a docker-archive (as `docker save`/skopeo write it: `manifest.json`, `repositories`,
/// `<config-hex>.json`, one uncompressed `<diff_id-hex>.tar` per layer) at `dest`.
pub fn write_docker_archive(
    image: &BuiltImage,
    dest: &Path,
    compression: Compression,
    threads: usize,
    mtime: u64,
) -> Result<OutputFile> {
    let mut a = AtomicArchive::create(dest, compression, threads)?;
    let config_hex = image.config.digest().digest().to_string();
    let mut layer_names: Vec<String> = Vec::new();
    let r: Result<()> = (|| {
        let w = &mut a.w;
        let mut written = std::collections::BTreeSet::new();
        for l in &image.layers {
            let diff_hex = l
                .diff_id
                .strip_prefix("sha256:")
                .unwrap_or(&l.diff_id)
                .to_string();
            let name = format!("{diff_hex}.tar");
            layer_names.push(name.clone());
            if !written.insert(diff_hex.clone()) {
                continue;
            }
            let (src, mut r): (PathBuf, Box<dyn Read>) = if let Some(p) = &l.plain {
                let f = File::open(p).map_err(io_err(p))?;
                (p.clone(), Box::new(f))
            } else {
                let src = image.blob_path(l.descriptor.digest());
                let f = File::open(&src).map_err(io_err(&src))?;
                let r = compress::decoder(BufReader::new(f)).map_err(io_err(&src))?;
                (src, r)
            };
            let size = match l.tar_size {
                Some(n) => n,
                None => uncompressed_size(&src)?,
            };
            // Hash while streaming so a layer that does not match its diff_id is never shipped.
            let mut hr = HashingReader::new(&mut r);
            stream_entry(w, name.as_bytes(), &mut hr, size, mtime, &src)?;
            let got = hr.hex();
            if got != diff_hex {
                return Err(ImageError::DigestMismatch {
                    path: src.display().to_string(),
                    expected: l.diff_id.clone(),
                    actual: format!("sha256:{got}"),
                });
            }
        }
        let cfg = image.blob_path(image.config.digest());
        file_entry(w, format!("{config_hex}.json").as_bytes(), &cfg, mtime)?;
        let manifest = json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": image.repo_tags,
            "Layers": layer_names,
        }]);
        let manifest = canonical_json(&manifest, "manifest.json")?;
        tarball::append_bytes(w, b"manifest.json", &manifest, mtime).map_err(io_err(dest))?;
        let top = image
            .layers
            .last()
            .map(|l| l.diff_id.trim_start_matches("sha256:").to_string())
            .unwrap_or_default();
        let mut repos = serde_json::Map::new();
        for t in &image.repo_tags {
            if let Some((n, tag)) = t.rsplit_once(':')
                && let Some(o) = repos
                    .entry(n.to_string())
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
            {
                o.insert(tag.to_string(), json!(top));
            }
        }
        let repos = canonical_json(&repos, "repositories")?;
        tarball::append_bytes(w, b"repositories", &repos, mtime).map_err(io_err(dest))?;
        Ok(())
    })();
    r?;
    a.finish()
}

struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
}

impl<'a> HashingReader<'a> {
    fn new(inner: &'a mut dyn Read) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }
    fn hex(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes the tree under `root` as a rootfs tarball (KIWI's `tbz` type) at `dest`, with the
/// same entries a layer would hold, compressed with `compression` (xz in KIWI).
pub fn write_rootfs_tarball(
    root: &Path,
    dest: &Path,
    excludes: &Excludes,
    source_date_epoch: u64,
    compression: Compression,
    threads: usize,
) -> Result<OutputFile> {
    let mut a = AtomicArchive::create(dest, compression, threads)?;
    let mut emitter = TarEmitter::new(source_date_epoch);
    walk::walk(root, excludes, |e| emitter.emit(&mut a.w, e))?;
    a.finish()
}

/// Writes `<file>.sha256` containing `<hex>  <file name>\n` (atomically) and returns the hex.
pub fn write_sha256_file(file: &Path) -> Result<String> {
    let mut f = File::open(file).map_err(io_err(file))?;
    let mut h = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut h).map_err(io_err(file))?;
    let (_, hexd, _) = h.finish();
    write_sha256_line(file, &hexd)?;
    Ok(hexd)
}

/// Write `<file>.sha256` for a file whose sha256 (lowercase hex) is already known, as it is
/// for every file imgbuild hashed while writing it.
pub fn write_sha256_line(file: &Path, hexd: &str) -> Result<()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut dest = file.as_os_str().to_owned();
    dest.push(".sha256");
    let dest = PathBuf::from(dest);
    let parent = crate::atomic::parent_dir(&dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-sha256-")
        .tempfile_in(parent)
        .map_err(io_err(&parent))?;
    writeln!(tmp, "{hexd}  {name}").map_err(io_err(tmp.path()))?;
    tmp.persist(&dest).map_err(|e| ImageError::Io {
        path: dest.clone(),
        source: e.error,
    })?;
    Ok(())
}
