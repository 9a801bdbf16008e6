//! Records of a base tree and diff layers against them.
//!
//! A [`TreeSnapshot`] is taken when a base image is unpacked. After the build changed the tree,
//! [`write_diff_layer`] writes one layer with what is new or changed, `.wh.NAME` whiteouts for
//! deletions and `.wh..wh..opq` markers for directories none of whose base entries survive.
//! Entries are emitted in the same sorted order as a full layer, so the diff is deterministic.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rayon::prelude::*;

use super::compress::HashingWriter;
use super::layer::{LayerBlob, LayerOptions, TarEmitter, entry_kind, read_xattrs, write_tar_blob};
use super::tarball::EntryKind;
use super::walk::{self, Excludes, WalkEntry};
use super::{ImageError, Result, io_err};

/// What the snapshot knows of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// Type, with link target or device numbers.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of a regular file (0 otherwise).
    pub size: u64,
    /// Extended attributes, sorted.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Lowercase hex sha256 of a regular file's content.
    pub sha256: Option<String>,
}

/// A record of a tree: root-relative path → entry, in byte order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSnapshot {
    /// The entries, keyed by root-relative path bytes.
    pub entries: BTreeMap<Vec<u8>, SnapshotEntry>,
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut h).map_err(io_err(path))?;
    Ok(h.finish().1)
}

/// Metadata of a walk entry without the content hash.
fn describe(e: &WalkEntry) -> Result<Option<SnapshotEntry>> {
    let Some(kind) = entry_kind(&e.abs, &e.meta)? else {
        return Ok(None);
    };
    let size = if kind == EntryKind::File {
        e.meta.len()
    } else {
        0
    };
    Ok(Some(SnapshotEntry {
        kind,
        mode: e.meta.mode() & 0o7777,
        uid: e.meta.uid(),
        gid: e.meta.gid(),
        size,
        xattrs: read_xattrs(&e.abs)?,
        sha256: None,
    }))
}

impl TreeSnapshot {
    /// Records the tree under `root` (hashing regular files on every core), leaving out what
    /// `excludes` leaves out of layers.
    pub fn from_dir(root: &Path, excludes: &Excludes) -> Result<Self> {
        let mut entries = BTreeMap::new();
        walk::walk(root, excludes, |e| {
            if let Some(s) = describe(e)? {
                entries.insert(e.rel.clone(), s);
            }
            Ok(())
        })?;
        let hashes: Vec<(Vec<u8>, String)> = entries
            .par_iter()
            .filter(|(_, s)| s.kind == EntryKind::File)
            .map(|(rel, _)| {
                let abs = root.join(OsStr::from_bytes(rel));
                sha256_file(&abs).map(|h| (rel.clone(), h))
            })
            .collect::<Result<_>>()?;
        for (rel, h) in hashes {
            if let Some(s) = entries.get_mut(&rel) {
                s.sha256 = Some(h);
            }
        }
        Ok(TreeSnapshot { entries })
    }

    /// The entry at a root-relative path.
    pub fn get(&self, rel: &[u8]) -> Option<&SnapshotEntry> {
        self.entries.get(rel)
    }

    fn children(&self) -> HashMap<&[u8], Vec<&[u8]>> {
        let mut map: HashMap<&[u8], Vec<&[u8]>> = HashMap::new();
        for rel in self.entries.keys() {
            let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (&rel[..i], &rel[i + 1..]),
                None => (&rel[..0], &rel[..]),
            };
            map.entry(parent).or_default().push(name);
        }
        // Keys iterate in byte order, but "a/b" sorts after "a-" while its children come from
        // the same parent, so sort each list explicitly.
        for v in map.values_mut() {
            v.sort();
        }
        map
    }
}

/// Header line of the snapshot file format.
const SNAPSHOT_MAGIC: &str = "imgbuild-tree-snapshot 1";

fn unhex(field: &str, path: &Path, line: usize) -> Result<Vec<u8>> {
    hex::decode(field).map_err(|e| ImageError::BadBase {
        path: path.to_path_buf(),
        reason: format!("line {line}: {e}"),
    })
}

impl TreeSnapshot {
    /// Saves the snapshot as text (one entry per line, bytes hex-encoded), atomically, so a
    /// later `create` step can diff against the base recorded at `prepare` time.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut out = String::from(SNAPSHOT_MAGIC);
        out.push('\n');
        for (rel, e) in &self.entries {
            let (kind, link, dev) = match &e.kind {
                EntryKind::File => ("f", &b""[..], (0, 0)),
                EntryKind::Dir => ("d", &b""[..], (0, 0)),
                EntryKind::Symlink(t) => ("l", &t[..], (0, 0)),
                EntryKind::HardLink(t) => ("h", &t[..], (0, 0)),
                EntryKind::Char(a, b) => ("c", &b""[..], (*a, *b)),
                EntryKind::Block(a, b) => ("b", &b""[..], (*a, *b)),
                EntryKind::Fifo => ("p", &b""[..], (0, 0)),
            };
            let xattrs: Vec<String> = e
                .xattrs
                .iter()
                .map(|(k, v)| format!("{}={}", hex::encode(k), hex::encode(v)))
                .collect();
            out.push_str(&format!(
                "{} {kind} {:o} {} {} {} {} {} {} {} {}\n",
                hex::encode(rel),
                e.mode,
                e.uid,
                e.gid,
                e.size,
                if link.is_empty() {
                    "-".to_string()
                } else {
                    hex::encode(link)
                },
                dev.0,
                dev.1,
                e.sha256.as_deref().unwrap_or("-"),
                if xattrs.is_empty() {
                    "-".to_string()
                } else {
                    xattrs.join(",")
                },
            ));
        }
        let parent = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err(parent))?;
        tmp.write_all(out.as_bytes()).map_err(io_err(tmp.path()))?;
        tmp.persist(path).map_err(|e| ImageError::Io {
            path: path.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Loads a snapshot written by [`TreeSnapshot::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let bad = |line: usize, reason: &str| ImageError::BadBase {
            path: path.to_path_buf(),
            reason: format!("line {line}: {reason}"),
        };
        let mut lines = text.lines();
        if lines.next() != Some(SNAPSHOT_MAGIC) {
            return Err(bad(1, "not a tree snapshot"));
        }
        let mut entries = BTreeMap::new();
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 11 {
                return Err(bad(n, "expected 11 fields"));
            }
            let num = |s: &str| s.parse::<u64>().map_err(|_| bad(n, "bad number"));
            let link = if f[6] == "-" {
                Vec::new()
            } else {
                unhex(f[6], path, n)?
            };
            let kind = match f[1] {
                "f" => EntryKind::File,
                "d" => EntryKind::Dir,
                "l" => EntryKind::Symlink(link),
                "h" => EntryKind::HardLink(link),
                "c" => EntryKind::Char(num(f[7])?, num(f[8])?),
                "b" => EntryKind::Block(num(f[7])?, num(f[8])?),
                "p" => EntryKind::Fifo,
                _ => return Err(bad(n, "unknown type")),
            };
            let mut xattrs = Vec::new();
            if f[10] != "-" {
                for kv in f[10].split(',') {
                    let (k, v) = kv.split_once('=').ok_or_else(|| bad(n, "bad xattr"))?;
                    xattrs.push((unhex(k, path, n)?, unhex(v, path, n)?));
                }
            }
            let id = |s: &str| s.parse::<u32>().map_err(|_| bad(n, "bad id"));
            entries.insert(
                unhex(f[0], path, n)?,
                SnapshotEntry {
                    kind,
                    mode: u32::from_str_radix(f[2], 8).map_err(|_| bad(n, "bad mode"))?,
                    uid: id(f[3])?,
                    gid: id(f[4])?,
                    size: num(f[5])?,
                    xattrs,
                    sha256: (f[9] != "-").then(|| f[9].to_string()),
                },
            );
        }
        Ok(TreeSnapshot { entries })
    }
}

/// True if the entry at `e` differs from the snapshot's record of it.
fn changed(base: &SnapshotEntry, e: &WalkEntry, now: &SnapshotEntry) -> Result<bool> {
    let same_meta = base.kind == now.kind
        && base.mode == now.mode
        && base.uid == now.uid
        && base.gid == now.gid
        && base.size == now.size
        && base.xattrs == now.xattrs;
    if !same_meta {
        return Ok(true);
    }
    if now.kind == EntryKind::File {
        return Ok(base.sha256.as_deref() != Some(sha256_file(&e.abs)?.as_str()));
    }
    Ok(false)
}

struct Differ<'a> {
    root: &'a Path,
    excludes: &'a Excludes,
    base: &'a TreeSnapshot,
    children: HashMap<&'a [u8], Vec<&'a [u8]>>,
    emitter: TarEmitter,
}

impl Differ<'_> {
    fn base_children(&self, dir: &[u8]) -> Vec<&[u8]> {
        self.children.get(dir).cloned().unwrap_or_default()
    }

    /// Emits `dir`'s subtree as entirely new (no base below it).
    fn emit_all(&mut self, w: &mut dyn Write, dir: &[u8]) -> Result<()> {
        let abs = self.root.join(OsStr::from_bytes(dir));
        for name in walk::list_dir(&abs, dir, self.excludes)? {
            let rel = walk::join_rel(dir, &name);
            let e = walk::stat_entry(self.root, &rel)?;
            self.emitter.emit(w, &e)?;
            if e.meta.is_dir() {
                self.emit_all(w, &rel)?;
            }
        }
        Ok(())
    }

    /// Merges the base's and the tree's entries of `dir` (which exists as a directory in both).
    fn merge(&mut self, w: &mut dyn Write, dir: &[u8]) -> Result<()> {
        let abs = self.root.join(OsStr::from_bytes(dir));
        let now = walk::list_dir(&abs, dir, self.excludes)?;
        let before: Vec<Vec<u8>> = self
            .base_children(dir)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        let survivors = before.iter().filter(|n| now.contains(n)).count();
        if !before.is_empty() && survivors == 0 && !now.is_empty() {
            // Nothing of the base directory is left: one opaque marker replaces it.
            let marker = walk::join_rel(dir, b".wh..wh..opq");
            TarEmitter::emit_marker(w, &marker)?;
            return self.emit_all(w, dir);
        }
        let mut names: Vec<&Vec<u8>> = now.iter().chain(before.iter()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let rel = walk::join_rel(dir, name);
            let in_now = now.contains(name);
            let base = self.base.get(&rel);
            if !in_now {
                let mut wh = b".wh.".to_vec();
                wh.extend_from_slice(name);
                TarEmitter::emit_marker(w, &walk::join_rel(dir, &wh))?;
                continue;
            }
            let e = walk::stat_entry(self.root, &rel)?;
            let Some(desc) = describe(&e)? else {
                continue;
            };
            match base {
                None => {
                    self.emitter.emit(w, &e)?;
                    if e.meta.is_dir() {
                        self.emit_all(w, &rel)?;
                    }
                }
                Some(b) if b.kind == EntryKind::Dir && desc.kind == EntryKind::Dir => {
                    if changed(b, &e, &desc)? {
                        self.emitter.emit(w, &e)?;
                    }
                    self.merge(w, &rel)?;
                }
                Some(b) if b.kind != desc.kind => {
                    if b.kind == EntryKind::Dir {
                        // A directory became something else: hide its old contents too.
                        let mut wh = b".wh.".to_vec();
                        wh.extend_from_slice(name);
                        TarEmitter::emit_marker(w, &walk::join_rel(dir, &wh))?;
                    }
                    self.emitter.emit(w, &e)?;
                    if e.meta.is_dir() {
                        self.emit_all(w, &rel)?;
                    }
                }
                Some(b) => {
                    if changed(b, &e, &desc)? {
                        self.emitter.emit(w, &e)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes a layer holding the differences between `base` (the tree as unpacked) and the tree
/// now under `root`, into `blobs_dir`.
pub fn write_diff_layer(
    base: &TreeSnapshot,
    root: &Path,
    blobs_dir: &Path,
    opts: &LayerOptions,
) -> Result<LayerBlob> {
    let mut differ = Differ {
        root,
        excludes: &opts.excludes,
        base,
        children: base.children(),
        emitter: TarEmitter::new(opts.source_date_epoch),
    };
    write_tar_blob(blobs_dir, opts, |w| differ.merge(w, b""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Compression;
    use std::fs;
    use std::io::Read;

    fn layer_names(blob: &Path) -> Vec<String> {
        let mut data = Vec::new();
        crate::image::compress::decoder(io::BufReader::new(File::open(blob).unwrap()))
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn snapshot_file_round_trips_every_kind() {
        let mut snap = TreeSnapshot::default();
        let kinds = [
            EntryKind::File,
            EntryKind::Dir,
            EntryKind::Symlink(b"../t a\xff".to_vec()),
            EntryKind::HardLink(b"etc/x".to_vec()),
            EntryKind::Char(1, 3),
            EntryKind::Block(8, 1),
            EntryKind::Fifo,
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            snap.entries.insert(
                format!("p {i}\u{e9}").into_bytes(),
                SnapshotEntry {
                    sha256: (kind == EntryKind::File).then(|| "ab".repeat(32)),
                    kind,
                    mode: 0o4755,
                    uid: 1000,
                    gid: 7,
                    size: i as u64,
                    xattrs: vec![(b"security.capability".to_vec(), vec![0, 1, 2, 0xff])],
                },
            );
        }
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s");
        snap.save(&p).unwrap();
        assert_eq!(TreeSnapshot::load(&p).unwrap(), snap);
        fs::write(&p, "something else\n").unwrap();
        assert!(TreeSnapshot::load(&p).is_err());
    }

    #[test]
    fn diff_has_changes_whiteouts_and_opaque_dirs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        for d in ["etc", "gone/sub", "opq", "keep", "todir"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("etc/same"), "same").unwrap();
        fs::write(r.join("etc/edit"), "old").unwrap();
        fs::write(r.join("etc/del"), "x").unwrap();
        fs::write(r.join("gone/sub/f"), "x").unwrap();
        fs::write(r.join("opq/a"), "x").unwrap();
        fs::write(r.join("opq/b"), "x").unwrap();
        fs::write(r.join("keep/k"), "x").unwrap();
        fs::write(r.join("todir/f"), "x").unwrap();
        fs::write(r.join("tofile"), "x").unwrap();
        let ex = Excludes::default();
        let snap = TreeSnapshot::from_dir(&r, &ex).unwrap();
        assert_eq!(snap.entries.len(), 15);

        fs::write(r.join("etc/edit"), "new").unwrap();
        fs::remove_file(r.join("etc/del")).unwrap();
        fs::write(r.join("etc/added"), "new").unwrap();
        fs::remove_dir_all(r.join("gone")).unwrap();
        fs::remove_file(r.join("opq/a")).unwrap();
        fs::remove_file(r.join("opq/b")).unwrap();
        fs::write(r.join("opq/c"), "new").unwrap();
        fs::remove_dir_all(r.join("todir")).unwrap();
        fs::write(r.join("todir"), "now a file").unwrap();
        fs::remove_file(r.join("tofile")).unwrap();
        fs::create_dir(r.join("tofile")).unwrap();
        fs::write(r.join("tofile/inside"), "x").unwrap();

        let opts = LayerOptions {
            source_date_epoch: 1,
            compression: Compression::Gzip(6),
            ..LayerOptions::default()
        };
        let blobs = t.path().join("blobs");
        let l1 = write_diff_layer(&snap, &r, &blobs, &opts).unwrap();
        let names = layer_names(&l1.path);
        assert_eq!(
            names,
            [
                "etc/added",
                "etc/.wh.del",
                "etc/edit",
                ".wh.gone",
                "opq/.wh..wh..opq",
                "opq/c",
                ".wh.todir",
                "todir",
                "tofile/",
                "tofile/inside"
            ]
        );
        // Deterministic: the same again gives the same blob.
        // A saved and reloaded snapshot is the same record and gives the same layer.
        let saved = t.path().join("base.snapshot");
        snap.save(&saved).unwrap();
        let snap = TreeSnapshot::load(&saved).unwrap();
        let l2 = write_diff_layer(&snap, &r, &t.path().join("blobs2"), &opts).unwrap();
        assert_eq!(l1.digest, l2.digest);
        // No change, no entries.
        let same = TreeSnapshot::from_dir(&r, &ex).unwrap();
        let l3 = write_diff_layer(&same, &r, &blobs, &opts).unwrap();
        assert!(layer_names(&l3.path).is_empty());
    }
}
