//! The download cache: files stored by their sha256 under `blobs/sha256/<hex>`, verified when written
//! and again when reused, written atomically, and shared safely between concurrent builds.
//!
//! Layout of a cache directory:
//! - `blobs/sha256/<hex>`: content, named by its sha256 (packages, index files, signed Release files);
//! - `packed/sha256/<hex>`: the packed form of the `Packages` index whose sha256 is `<hex>`
//!   ([`super::packed`]), made on first use so later builds neither parse nor hold the index;
//! - `refs/<sha256 of the URL>`: the digest last seen at a URL whose content is not pinned elsewhere
//!   (`InRelease`, Release, Release.gpg), so an offline build can find it again;
//! - `locks/<hex>.lock`: one lock per blob while it is being downloaded, so two builds fetching the
//!   same file download it once;
//! - `release-dates/<sha256 of the URL>`: the newest signed Release `Date` seen for a repository
//!   (keyed by the directory URL holding its `InRelease`), so an older Release served later is
//!   recognised as going back in time; `release-dates/<hex>.lock` serialises its updates;
//! - `lock`: held shared by every open [`Cache`], exclusively by [`Cache::clear`].

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The default cache directory (`--cache-dir`).
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/imgbuild";

/// Errors of the download cache. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Content did not have the size the repository metadata promised.
    #[error(
        "{name}: size {actual} does not match the expected {expected}; refused, nothing written to {path}"
    )]
    SizeMismatch {
        /// What was fetched (usually its URL).
        name: String,
        /// The cache path the content was meant for.
        path: PathBuf,
        /// The size the metadata gives.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// Content did not have the sha256 the repository metadata promised.
    #[error(
        "{name}: sha256 {actual} does not match the expected {expected}; refused, nothing written to {path}"
    )]
    DigestMismatch {
        /// What was fetched (usually its URL).
        name: String,
        /// The cache path the content was meant for.
        path: PathBuf,
        /// The digest the metadata gives.
        expected: Sha256Digest,
        /// The digest of what was received.
        actual: Sha256Digest,
    },
    /// Offline mode and the file is not in the cache.
    #[error("offline: {name} is not in the cache (looked for {path})")]
    Missing {
        /// What was wanted (usually its URL).
        name: String,
        /// Where it would be in the cache.
        path: PathBuf,
    },
}

/// A text that is not a sha256 digest in hex.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a sha256 digest (64 hex digits): {value:?}")]
pub struct DigestParseError {
    /// The text given.
    pub value: String,
}

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(data).into())
    }

    /// Lower-case hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DigestParseError {
            value: s.to_string(),
        };
        let hexpart = s.strip_prefix("sha256:").unwrap_or(s);
        if hexpart.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hexpart, &mut out).map_err(|_| err())?;
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// The directory of the packed indexes.
const PACKED: &str = "packed/sha256";

/// The directory of the remembered Release dates.
const RELEASE_DATES: &str = "release-dates";

/// A Release file's `Date`: seconds since the epoch, and the text as the file gives it (for
/// messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseDate {
    /// Seconds since the epoch.
    pub epoch: i64,
    /// The `Date` field as written in the Release file.
    pub text: String,
}

/// What a file must be: its sha256 and, when the metadata gives it, its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The sha256 the content must have.
    pub sha256: Sha256Digest,
    /// The size the content must have, when known.
    pub size: Option<u64>,
}

/// Whether the cache may be filled from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Missing files are downloaded.
    #[default]
    Online,
    /// Only cached files are used; a missing file is an error naming it.
    Offline,
}

/// An open cache directory. Holds a shared lock on `<dir>/lock` for its lifetime.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    mode: CacheMode,
    _lock: File,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Cache {
    /// Open (creating when needed) the cache at `root`.
    pub fn open(root: impl Into<PathBuf>, mode: CacheMode) -> Result<Cache, CacheError> {
        let root = root.into();
        for sub in ["blobs/sha256", PACKED, "refs", "locks", RELEASE_DATES] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let lock_path = root.join("lock");
        let lock = open_lock_file(&lock_path)?;
        // When nobody else has the cache open, temporary files are leftovers of a killed build:
        // remove them. Otherwise they may be another build's writes in progress.
        if fs4::FileExt::try_lock(&lock).is_ok() {
            for sub in ["blobs/sha256", PACKED, "refs", RELEASE_DATES] {
                remove_temp_files(&root.join(sub))?;
            }
            fs4::FileExt::unlock(&lock).map_err(io_err(&lock_path))?;
        }
        fs4::FileExt::lock_shared(&lock).map_err(io_err(&lock_path))?;
        Ok(Cache {
            root,
            mode,
            _lock: lock,
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Online or offline.
    pub fn mode(&self) -> CacheMode {
        self.mode
    }

    /// Where the blob with `digest` lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.to_hex())
    }

    /// Where the packed form of the `Packages` index with sha256 `digest` lives (whether or not
    /// it is present).
    pub fn packed_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join(PACKED).join(digest.to_hex())
    }

    /// The verified cached file for `expected`, or `None` when absent. A cached file whose size or
    /// sha256 is wrong (disk corruption, an interrupted foreign write) is removed and reported absent,
    /// so the caller fetches it again.
    pub fn get(&self, expected: &Expected) -> Result<Option<PathBuf>, CacheError> {
        let path = self.blob_path(&expected.sha256);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let (digest, size) = hash_reader(&mut file).map_err(io_err(&path))?;
        let size_ok = expected.size.is_none_or(|s| s == size);
        if digest == expected.sha256 && size_ok {
            return Ok(Some(path));
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Read the verified cached content for `expected`, if present.
    pub fn read(&self, expected: &Expected) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.blob_path(&expected.sha256);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let size_ok = expected.size.is_none_or(|s| s == data.len() as u64);
        if size_ok && Sha256Digest::of(&data) == expected.sha256 {
            return Ok(Some(data));
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The error an offline lookup of `name` reports when the blob is missing.
    pub fn missing(&self, name: &str, expected: &Expected) -> CacheError {
        CacheError::Missing {
            name: name.to_string(),
            path: self.blob_path(&expected.sha256),
        }
    }

    /// Take the per-blob download lock for `digest`: while held, no other [`Cache`] (thread or
    /// process) downloads the same blob. Check [`Cache::get`] again after taking it.
    pub fn lock_blob(&self, digest: &Sha256Digest) -> Result<BlobLock, CacheError> {
        let path = self
            .root
            .join("locks")
            .join(format!("{}.lock", digest.to_hex()));
        let file = open_lock_file(&path)?;
        fs4::FileExt::lock(&file).map_err(io_err(&path))?;
        Ok(BlobLock { _file: file })
    }

    /// Start writing a blob that must match `expected`. `name` (usually the URL) appears in errors.
    /// Nothing is visible in the cache until [`BlobWriter::commit`] succeeds.
    pub fn writer(&self, name: &str, expected: Expected) -> Result<BlobWriter, CacheError> {
        let dir = self.root.join("blobs/sha256");
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        Ok(BlobWriter {
            name: name.to_string(),
            dest: self.blob_path(&expected.sha256),
            expected,
            tmp,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Store `data` (already fully received) as a blob and return its digest and path. Used for files
    /// no other metadata pins (`InRelease`); their digest is what they are.
    pub fn insert_bytes(
        &self,
        name: &str,
        data: &[u8],
    ) -> Result<(Sha256Digest, PathBuf), CacheError> {
        let expected = Expected {
            sha256: Sha256Digest::of(data),
            size: Some(data.len() as u64),
        };
        if let Some(p) = self.get(&expected)? {
            return Ok((expected.sha256, p));
        }
        let mut w = self.writer(name, expected)?;
        w.write_all(data).map_err(io_err(&w.dest.clone()))?;
        let path = w.commit()?;
        Ok((expected.sha256, path))
    }

    fn ref_path(&self, url: &str) -> PathBuf {
        self.root
            .join("refs")
            .join(Sha256Digest::of(url.as_bytes()).to_hex())
    }

    /// Remember that `url` last served the blob `digest` (atomically replaced).
    pub fn set_ref(&self, url: &str, digest: &Sha256Digest) -> Result<(), CacheError> {
        let path = self.ref_path(url);
        let dir = self.root.join("refs");
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        writeln!(tmp, "{}\n{}", digest.to_hex(), url).map_err(io_err(tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        tmp.persist(&path).map_err(|e| io_err(&path)(e.error))?;
        Ok(())
    }

    /// The content `url` last served, from the cache (for offline mode). `None` when never fetched or
    /// no longer present.
    pub fn read_ref(&self, url: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.ref_path(url);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let Some(Ok(digest)) = text.lines().next().map(Sha256Digest::from_str) else {
            return Ok(None);
        };
        self.read(&Expected {
            sha256: digest,
            size: None,
        })
    }

    /// Where the blob recorded for `url` would be (for error messages).
    pub fn ref_location(&self, url: &str) -> PathBuf {
        self.ref_path(url)
    }

    fn release_date_path(&self, dist_url: &str) -> PathBuf {
        self.root
            .join(RELEASE_DATES)
            .join(Sha256Digest::of(dist_url.as_bytes()).to_hex())
    }

    /// The newest Release `Date` remembered for the repository whose `InRelease` lives under
    /// `dist_url`; `None` when none was remembered.
    pub fn release_date(&self, dist_url: &str) -> Result<Option<ReleaseDate>, CacheError> {
        read_release_date(&self.release_date_path(dist_url))
    }

    /// Compare `date` with the newest Release `Date` remembered for `dist_url` and remember it
    /// when it is newer (never older: the remembered date only moves forward). Returns the
    /// remembered date when `date` is older than it, else `None`. The comparison and the update
    /// hold a per-repository lock, so two builds seeing different dates cannot move it back.
    pub fn remember_release_date(
        &self,
        dist_url: &str,
        date: &ReleaseDate,
    ) -> Result<Option<ReleaseDate>, CacheError> {
        let path = self.release_date_path(dist_url);
        let lock_path = path.with_extension("lock");
        let lock = open_lock_file(&lock_path)?;
        fs4::FileExt::lock(&lock).map_err(io_err(&lock_path))?;
        match read_release_date(&path)? {
            Some(newest) if newest.epoch > date.epoch => return Ok(Some(newest)),
            Some(newest) if newest.epoch == date.epoch => return Ok(None),
            _ => {}
        }
        let dir = self.root.join(RELEASE_DATES);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        // One line each, so a URL or date can never be mistaken for another field.
        let text = date.text.replace(['\n', '\r'], " ");
        writeln!(tmp, "{}\n{}\n{}", date.epoch, text, dist_url).map_err(io_err(tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        tmp.persist(&path).map_err(|e| io_err(&path)(e.error))?;
        // Make the rename durable: a crash must not bring back an older date.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
        Ok(None)
    }

    /// Remove every blob, packed index and ref. The remembered Release dates stay: they are what protects the
    /// next build from older metadata, not cached content. Waits until no other build has the
    /// cache open.
    pub fn clear(self) -> Result<(), CacheError> {
        let Cache {
            root,
            mode: _,
            _lock: shared,
        } = self;
        drop(shared);
        let lock_path = root.join("lock");
        let lock = open_lock_file(&lock_path)?;
        fs4::FileExt::lock(&lock).map_err(io_err(&lock_path))?;
        for sub in ["blobs", "packed", "refs", "locks"] {
            let d = root.join(sub);
            match fs::remove_dir_all(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&d)(e)),
            }
        }
        Ok(())
    }
}

/// Read a remembered Release date. The file is only ever replaced whole (written beside it and
/// renamed), so a killed build cannot leave it torn; a file that still does not parse (damaged
/// outside imgbuild) counts as absent and is replaced by the next date seen.
fn read_release_date(path: &Path) -> Result<Option<ReleaseDate>, CacheError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut lines = text.lines();
    let (Some(Ok(epoch)), Some(date)) = (lines.next().map(str::parse::<i64>), lines.next()) else {
        return Ok(None);
    };
    Ok(Some(ReleaseDate {
        epoch,
        text: date.to_string(),
    }))
}

fn remove_temp_files(dir: &Path) -> Result<(), CacheError> {
    let rd = fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in rd {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let p = entry.path();
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
    }
    Ok(())
}

fn open_lock_file(path: &Path) -> Result<File, CacheError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

/// sha256 and length of everything `r` yields.
pub fn hash_reader(r: &mut impl Read) -> io::Result<(Sha256Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Sha256Digest(hasher.finalize().into()), total))
}

/// Held while one blob is being downloaded; released on drop.
#[derive(Debug)]
pub struct BlobLock {
    _file: File,
}

/// A blob being written: content goes to a temporary file in the blob directory while it is hashed.
/// Dropping it without [`BlobWriter::commit`] removes the temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    name: String,
    dest: PathBuf,
    expected: Expected,
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The path the blob will have once committed.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Verify size and sha256, fsync, and move the file into place. On mismatch the temporary file is
    /// removed and the error names the content and the cache path.
    pub fn commit(self) -> Result<PathBuf, CacheError> {
        let BlobWriter {
            name,
            dest,
            expected,
            tmp,
            hasher,
            written,
        } = self;
        if let Some(size) = expected.size
            && size != written
        {
            return Err(CacheError::SizeMismatch {
                name,
                path: dest,
                expected: size,
                actual: written,
            });
        }
        let actual = Sha256Digest(hasher.finalize().into());
        if actual != expected.sha256 {
            return Err(CacheError::DigestMismatch {
                name,
                path: dest,
                expected: expected.sha256,
                actual,
            });
        }
        tmp.as_file().sync_all().map_err(io_err(&dest))?;
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        // Make the rename itself durable.
        if let Some(dir) = dest.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(dest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Refuse early once more arrives than promised, so a hostile server cannot fill the disk.
        if let Some(size) = self.expected.size
            && self.written + buf.len() as u64 > size
        {
            return Err(io::Error::other(format!(
                "{}: more than the expected {size} bytes received",
                self.name
            )));
        }
        let n = self.tmp.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected_for(data: &[u8]) -> Expected {
        Expected {
            sha256: Sha256Digest::of(data),
            size: Some(data.len() as u64),
        }
    }

    fn blob_count(cache: &Cache) -> usize {
        fs::read_dir(cache.root().join("blobs/sha256"))
            .unwrap()
            .count()
    }

    #[test]
    fn digest_parses_and_prints() {
        let d = Sha256Digest::of(b"abc");
        let hex = d.to_hex();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex.parse::<Sha256Digest>().unwrap(), d);
        assert_eq!(format!("sha256:{hex}").parse::<Sha256Digest>().unwrap(), d);
        assert!("abc".parse::<Sha256Digest>().is_err());
        assert!("zz".repeat(32).parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn write_commit_and_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheMode::Online).unwrap();
        let data = b"hello blob";
        let exp = expected_for(data);
        assert!(cache.get(&exp).unwrap().is_none());
        let mut w = cache.writer("test://x", exp).unwrap();
        w.write_all(data).unwrap();
        let p = w.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), data);
        assert_eq!(cache.get(&exp).unwrap(), Some(p));
        assert_eq!(blob_count(&cache), 1);
    }

    #[test]
    fn mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheMode::Online).unwrap();
        let exp = expected_for(b"good");
        let mut w = cache.writer("test://bad", exp).unwrap();
        w.write_all(b"evil").unwrap();
        let err = w.commit().unwrap_err();
        assert!(matches!(err, CacheError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains("test://bad"));
        assert_eq!(blob_count(&cache), 0);

        let mut w = cache.writer("test://long", exp).unwrap();
        assert!(w.write_all(b"too long").is_err());
        drop(w);
        assert_eq!(blob_count(&cache), 0);
    }

    #[test]
    fn corrupt_blob_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheMode::Online).unwrap();
        let data = b"payload";
        let (d, p) = cache.insert_bytes("x", data).unwrap();
        assert_eq!(d, Sha256Digest::of(data));
        fs::write(&p, b"paylo4d").unwrap();
        assert!(cache.get(&expected_for(data)).unwrap().is_none());
        assert!(!p.exists());
    }

    #[test]
    fn refs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheMode::Offline).unwrap();
        assert!(cache.read_ref("http://h/InRelease").unwrap().is_none());
        let (d, _) = cache.insert_bytes("x", b"release text").unwrap();
        cache.set_ref("http://h/InRelease", &d).unwrap();
        assert_eq!(
            cache.read_ref("http://h/InRelease").unwrap().as_deref(),
            Some(&b"release text"[..])
        );
    }

    fn date(epoch: i64) -> ReleaseDate {
        ReleaseDate {
            epoch,
            text: format!("date {epoch}"),
        }
    }

    #[test]
    fn release_date_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheMode::Online).unwrap();
        let url = "http://h/debian/dists/stable/";
        assert_eq!(cache.release_date(url).unwrap(), None);
        assert_eq!(cache.remember_release_date(url, &date(100)).unwrap(), None);
        assert_eq!(cache.release_date(url).unwrap(), Some(date(100)));
        // The same date again, and a newer one, are fine; the newer one is remembered.
        assert_eq!(cache.remember_release_date(url, &date(100)).unwrap(), None);
        assert_eq!(cache.remember_release_date(url, &date(200)).unwrap(), None);
        assert_eq!(cache.release_date(url).unwrap(), Some(date(200)));
        // An older one is reported with the newest, and does not replace it.
        assert_eq!(
            cache.remember_release_date(url, &date(150)).unwrap(),
            Some(date(200))
        );
        assert_eq!(cache.release_date(url).unwrap(), Some(date(200)));
        // Each repository has its own date.
        let other = "http://h/debian/dists/testing/";
        assert_eq!(cache.remember_release_date(other, &date(1)).unwrap(), None);
        assert_eq!(cache.release_date(other).unwrap(), Some(date(1)));
        // Kept across opening the cache again, and by clear (they are not cached content).
        drop(cache);
        let cache = Cache::open(dir.path(), CacheMode::Offline).unwrap();
        assert_eq!(cache.release_date(url).unwrap(), Some(date(200)));
        cache.clear().unwrap();
        let cache = Cache::open(dir.path(), CacheMode::Online).unwrap();
        assert_eq!(cache.release_date(url).unwrap(), Some(date(200)));
    }

    #[test]
    fn damaged_release_date_counts_as_absent_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), CacheMode::Online).unwrap();
        let url = "http://h/r/";
        cache.remember_release_date(url, &date(500)).unwrap();
        let path = cache.release_date_path(url);
        for damage in [&b""[..], b"not a number\nx\n", b"12", b"\xff\xfe\n"] {
            fs::write(&path, damage).unwrap();
            assert_eq!(cache.release_date(url).unwrap(), None, "{damage:?}");
            assert_eq!(cache.remember_release_date(url, &date(7)).unwrap(), None);
            assert_eq!(cache.release_date(url).unwrap(), Some(date(7)));
        }
        // A leftover temporary file of a killed write is removed by the next sole user.
        let leftover = dir.path().join("release-dates/.tmp-killed");
        fs::write(&leftover, b"99").unwrap();
        drop(cache);
        let cache = Cache::open(dir.path(), CacheMode::Online).unwrap();
        assert!(!leftover.exists());
        assert_eq!(cache.release_date(url).unwrap(), Some(date(7)));
    }

    #[test]
    fn concurrent_release_dates_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://h/r/dists/x/";
        std::thread::scope(|s| {
            for t in 0..4i64 {
                let root = dir.path().to_path_buf();
                s.spawn(move || {
                    let cache = Cache::open(&root, CacheMode::Online).unwrap();
                    for i in 0..50i64 {
                        cache
                            .remember_release_date(url, &date((i * 7 + t * 13) % 100))
                            .unwrap();
                    }
                });
            }
        });
        let cache = Cache::open(dir.path(), CacheMode::Online).unwrap();
        let newest = (0..4i64)
            .flat_map(|t| (0..50i64).map(move |i| (i * 7 + t * 13) % 100))
            .max()
            .unwrap();
        assert_eq!(cache.release_date(url).unwrap(), Some(date(newest)));
    }
}
