//! `push`: an image (or an image index) to a registry: its blobs in parallel — skipped when the
//! registry has them, mounted when another repository of the registry has them, uploaded
//! whole when small and in resumable chunks when large — then its manifest.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oci_spec::image::{ImageIndex, ImageManifest};

use super::blobinfo::{self, BlobLocations};
use super::upload::Started;
use super::{
    Client, Direction, OCI_MANIFEST, Reference, RegistryError, Result, TransferProgress, sha256,
};
use crate::storage::StoreInput;

/// The OCI image index media type.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The Docker manifest list media type.
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What [`push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The digest of the manifest (or index) pushed under the destination's tag.
    pub manifest_digest: String,
    /// Blobs uploaded (layers and configs).
    pub uploaded: Vec<String>,
    /// Blobs the registry had already.
    pub skipped: Vec<String>,
    /// Blobs mounted from another repository of the registry, with that repository.
    pub mounted: Vec<(String, String)>,
    /// Child manifests of an index, pushed by digest.
    pub children: Vec<String>,
}

/// How to push.
#[derive(Clone, Copy)]
pub struct PushOptions<'a> {
    /// Observes each blob.
    pub progress: &'a dyn TransferProgress,
    /// The store root whose `registry-blobs.json` says which repositories hold which blobs
    /// (mount sources), and is updated after the push; `None`: no mounts, no record.
    pub store_root: Option<&'a Path>,
    /// Blobs uploaded at once.
    pub threads: usize,
    /// Blobs up to this size go in one `PUT`; larger ones in chunks.
    pub monolithic_limit: u64,
    /// The size of a chunk (raised to the registry's `OCI-Chunk-Min-Length`).
    pub chunk_size: u64,
    /// Retries of a blob after a dropped connection.
    pub retries: u32,
    /// Blobs a pushed layout lacks because they are in a registry (a manifest list's images
    /// added from a registry): digest → the image holding them. The destination must have
    /// them already, or get them by a cross-repository mount when it is on the same registry;
    /// they are never uploaded.
    pub remote_blobs: Option<&'a BTreeMap<String, Reference>>,
}

impl std::fmt::Debug for PushOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("store_root", &self.store_root)
            .field("threads", &self.threads)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

impl<'a> PushOptions<'a> {
    /// Three blobs at once, one `PUT` up to 8 MiB, 16 MiB chunks above, four retries.
    pub fn new(progress: &'a dyn TransferProgress) -> Self {
        PushOptions {
            progress,
            store_root: None,
            threads: 3,
            monolithic_limit: 8 << 20,
            chunk_size: 16 << 20,
            retries: 4,
            remote_blobs: None,
        }
    }
}

/// An image to push: the store's form of it, plus the files its layers can be read again from
/// (to resume an upload at an offset, or start it over) where they are files.
#[derive(Debug)]
pub struct PushImage {
    /// Manifest, config and layer readers.
    pub input: StoreInput,
    /// Layer digest → the file holding exactly that blob.
    pub files: HashMap<String, PathBuf>,
}

impl From<StoreInput> for PushImage {
    fn from(input: StoreInput) -> Self {
        PushImage {
            input,
            files: HashMap::new(),
        }
    }
}

/// The manifest's own `mediaType`, else `default`.
fn media_type_of(manifest: &[u8], default: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| default.to_string())
}

/// Where a blob's bytes come from.
enum Source {
    /// Not here: in this image of a registry (mounted, never uploaded).
    Remote(Reference),
    /// In memory (configs, small blobs read whole).
    Bytes(Vec<u8>),
    /// A reader at offset 0, and the file to read again from if needed.
    Stream {
        reader: Box<dyn Read + Send>,
        file: Option<PathBuf>,
    },
}

/// One blob to push.
struct Job {
    digest: String,
    size: u64,
    source: Source,
}

/// What became of a blob.
enum Fate {
    Exists,
    Mounted(String),
    Uploaded,
}

/// Pushes `image` to `dest` through `client` (connected to its host): its layers and config in
/// parallel (see [`PushOptions`]), then its manifest byte for byte under the destination's tag
/// and/or digest (`latest` when it names neither). The manifest digest is therefore the image's
/// own; a destination digest that differs is refused before any request.
pub fn push(
    client: &Client,
    dest: &Reference,
    image: PushImage,
    opts: &PushOptions<'_>,
) -> Result<PushReport> {
    let PushImage { input, files } = image;
    let manifest_digest = sha256(&input.manifest);
    check_dest_digest(dest, &manifest_digest)?;
    let mut report = PushReport {
        manifest_digest,
        uploaded: Vec::new(),
        skipped: Vec::new(),
        mounted: Vec::new(),
        children: Vec::new(),
    };
    let jobs = image_jobs(
        input.manifest.as_slice(),
        input.config,
        input.layers,
        &files,
    )?;
    push_blobs(client, &dest.repository, jobs, opts, &mut report)?;
    put_tagged(
        client,
        dest,
        &media_type_of(&input.manifest, OCI_MANIFEST),
        &input.manifest,
    )?;
    Ok(report)
}

fn check_dest_digest(dest: &Reference, digest: &str) -> Result<()> {
    match &dest.digest {
        Some(d) if d != digest => Err(RegistryError::Image(format!(
            "the image's manifest is {digest}, not the digest {d} the destination names"
        ))),
        _ => Ok(()),
    }
}

/// The jobs of one image: its layers (checked against the manifest), then its config.
fn image_jobs(
    manifest_json: &[u8],
    config: Vec<u8>,
    layers: Vec<crate::storage::LayerBlob>,
    files: &HashMap<String, PathBuf>,
) -> Result<Vec<Job>> {
    let manifest: ImageManifest = serde_json::from_slice(manifest_json)
        .map_err(|e| RegistryError::Image(format!("the image's manifest cannot be read: {e}")))?;
    let config_digest = manifest.config().digest().to_string();
    if sha256(&config) != config_digest {
        return Err(RegistryError::Image(format!(
            "the image's config does not match its manifest's {config_digest}"
        )));
    }
    let mut jobs = Vec::with_capacity(layers.len() + 1);
    for layer in layers {
        let size = manifest
            .layers()
            .iter()
            .find(|d| d.digest().to_string() == layer.digest)
            .map(oci_spec::image::Descriptor::size)
            .ok_or_else(|| {
                RegistryError::Image(format!(
                    "layer {} is not in the image's manifest",
                    layer.digest
                ))
            })?;
        jobs.push(Job {
            size,
            source: Source::Stream {
                reader: layer.data,
                file: files.get(&layer.digest).cloned(),
            },
            digest: layer.digest,
        });
    }
    jobs.push(Job {
        digest: config_digest,
        size: config.len() as u64,
        source: Source::Bytes(config),
    });
    Ok(jobs)
}

/// Puts `manifest` under the destination's tag and, when it names one, its digest (or under
/// `latest` when it names neither).
fn put_tagged(client: &Client, dest: &Reference, media_type: &str, manifest: &[u8]) -> Result<()> {
    if let Some(tag) = &dest.tag {
        client.put_manifest(&dest.repository, tag, media_type, manifest)?;
    }
    if let Some(digest) = &dest.digest {
        client.put_manifest(&dest.repository, digest, media_type, manifest)?;
    }
    if dest.tag.is_none() && dest.digest.is_none() {
        client.put_manifest(&dest.repository, "latest", media_type, manifest)?;
    }
    Ok(())
}

/// Pushes `jobs` on up to `opts.threads` threads; the first error stops the others from
/// starting more blobs and is returned. Updates the blob record with what the registry holds.
fn push_blobs(
    client: &Client,
    repo: &str,
    jobs: Vec<Job>,
    opts: &PushOptions<'_>,
    report: &mut PushReport,
) -> Result<()> {
    let host = client
        .base()
        .split_once("://")
        .map_or(client.base(), |(_, h)| h);
    let locations = opts
        .store_root
        .map(|root| BlobLocations::load(root, host))
        .unwrap_or_default();
    let queue = Mutex::new(jobs.into_iter().rev().collect::<Vec<_>>());
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<(String, Result<Fate>)>> = Mutex::default();
    let threads = opts.threads.max(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let job = match queue.lock() {
                        Ok(mut q) => q.pop(),
                        Err(_) => None,
                    };
                    let Some(job) = job else { return };
                    let digest = job.digest.clone();
                    let fate = push_blob(client, repo, job, &locations, opts);
                    if fate.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut r) = results.lock() {
                        r.push((digest, fate));
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| RegistryError::Image("a blob upload thread panicked".into()))?;
    let mut held = Vec::new();
    let mut first_error = None;
    for (digest, fate) in results {
        match fate {
            Ok(Fate::Exists) => {
                held.push(digest.clone());
                report.skipped.push(digest);
            }
            Ok(Fate::Mounted(from)) => {
                held.push(digest.clone());
                report.mounted.push((digest, from));
            }
            Ok(Fate::Uploaded) => {
                held.push(digest.clone());
                report.uploaded.push(digest);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // The record is a hint for later mounts: one that cannot be written costs a mount, not
    // the push.
    if let Some(root) = opts.store_root {
        let _ = blobinfo::record(root, host, repo, &held);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One blob: HEAD, else a mount from a repository known to hold it, else an upload.
fn push_blob(
    client: &Client,
    repo: &str,
    job: Job,
    locations: &BlobLocations,
    opts: &PushOptions<'_>,
) -> Result<Fate> {
    let progress = opts.progress;
    if client.blob_exists(repo, &job.digest)? {
        progress.skipped(&job.digest, "already exists");
        return Ok(Fate::Exists);
    }
    if let Source::Remote(from) = &job.source {
        let fate = mount_remote(client, repo, &job.digest, from)?;
        progress.skipped(&job.digest, &format!("mounted from {}", from.repository));
        return Ok(fate);
    }
    let mut mount_from = locations.repositories(&job.digest, repo).into_iter().next();
    let mut upload = Upload::new(job, opts)?;
    let mut restarted = false;
    loop {
        let (location, min_chunk) =
            match client.start_upload(repo, &upload.digest, mount_from.as_deref())? {
                Started::Mounted => {
                    let from = mount_from.unwrap_or_default();
                    progress.skipped(&upload.digest, &format!("mounted from {from}"));
                    return Ok(Fate::Mounted(from));
                }
                Started::Upload {
                    location,
                    min_chunk,
                } => (location, min_chunk),
            };
        // A mount is tried once: the registry that answered 202 has started an upload.
        mount_from = None;
        if upload.started == 0 {
            progress.start(&upload.digest, upload.size, Direction::Upload, 0);
        }
        upload.started += 1;
        match upload.run(client, repo, location, min_chunk)? {
            Outcome::Done => {
                progress.done(&upload.digest);
                return Ok(Fate::Uploaded);
            }
            Outcome::Lost if !restarted => {
                restarted = true;
                progress.retry(
                    &upload.digest,
                    0,
                    "the registry no longer knows the upload; starting over",
                );
                upload.rewind(0)?;
            }
            Outcome::Lost => {
                return Err(RegistryError::Image(format!(
                    "the registry lost the upload of {} twice",
                    upload.digest
                )));
            }
        }
    }
}

/// A blob the layout lacks, held by the image `from`: mounted from its repository when that is
/// on the destination's registry, else an error naming the blob and where it is.
fn mount_remote(client: &Client, repo: &str, digest: &str, from: &Reference) -> Result<Fate> {
    let host = client
        .base()
        .split_once("://")
        .map_or(client.base(), |(_, h)| h);
    let shown = format!("{}/{}", from.host, from.repository);
    if from.host != host {
        return Err(RegistryError::Image(format!(
            "blob {digest} is not in {host}/{repo} and only in {shown}, another registry: \
             imgbuild does not copy blobs between registries; push that image to {host} first, \
             or add it from an OCI layout or oci-archive"
        )));
    }
    match client.start_upload(repo, digest, Some(&from.repository))? {
        Started::Mounted => Ok(Fate::Mounted(from.repository.clone())),
        Started::Upload { .. } => Err(RegistryError::Image(format!(
            "blob {digest} could not be mounted from {shown} into {host}/{repo} (the registry \
             started an upload instead; is the blob still in {shown}?)"
        ))),
    }
}

/// How an upload session ended.
enum Outcome {
    Done,
    /// The registry no longer knows the session (404): start a new one.
    Lost,
}

/// Whether an error is worth a retry: the connection dropped, or the registry failed on its side.
fn retryable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Transport { .. } => true,
        RegistryError::Status { status, .. } => *status >= 500 || *status == 416,
        _ => false,
    }
}

/// A blob being uploaded: its bytes, read in chunks, and where the reading stands.
struct Upload<'o> {
    digest: String,
    size: u64,
    opts: &'o PushOptions<'o>,
    /// The blob read whole (small blobs).
    whole: Option<Vec<u8>>,
    reader: Option<Box<dyn Read + Send>>,
    file: Option<PathBuf>,
    /// The reader's offset.
    pos: u64,
    /// The current chunk and its offset in the blob.
    chunk: Vec<u8>,
    chunk_start: u64,
    /// Upload sessions started.
    started: u32,
    retries: u32,
}

fn io_err(digest: &str, path: Option<&Path>, e: &std::io::Error) -> RegistryError {
    match path {
        Some(p) => RegistryError::Image(format!("{}: reading blob {digest}: {e}", p.display())),
        None => RegistryError::Image(format!("reading blob {digest}: {e}")),
    }
}

impl<'o> Upload<'o> {
    fn new(job: Job, opts: &'o PushOptions<'o>) -> Result<Self> {
        let mut up = Upload {
            digest: job.digest,
            size: job.size,
            opts,
            whole: None,
            reader: None,
            file: None,
            pos: 0,
            chunk: Vec::new(),
            chunk_start: 0,
            started: 0,
            retries: 0,
        };
        match job.source {
            Source::Remote(_) => {
                return Err(RegistryError::Image(format!(
                    "blob {} is not in the layout",
                    up.digest
                )));
            }
            Source::Bytes(b) => up.whole = Some(b),
            Source::Stream { mut reader, file } => {
                if job.size <= opts.monolithic_limit {
                    // Small: read whole, so that a retry sends it again from memory.
                    let mut b = Vec::with_capacity(usize::try_from(job.size).unwrap_or(0));
                    reader
                        .by_ref()
                        .take(job.size + 1)
                        .read_to_end(&mut b)
                        .map_err(|e| io_err(&up.digest, file.as_deref(), &e))?;
                    up.whole = Some(b);
                } else {
                    up.reader = Some(reader);
                    up.file = file;
                }
            }
        }
        if let Some(b) = &up.whole
            && b.len() as u64 != up.size
        {
            return Err(RegistryError::Image(format!(
                "blob {} has {} bytes, not the {} its manifest says",
                up.digest,
                b.len(),
                up.size
            )));
        }
        Ok(up)
    }

    /// Positions the reader at `offset`: forward by reading, backward by opening the file again.
    fn rewind(&mut self, offset: u64) -> Result<()> {
        self.chunk.clear();
        self.chunk_start = offset;
        if self.whole.is_some() || offset == self.pos {
            return Ok(());
        }
        if offset < self.pos {
            let Some(path) = self.file.clone() else {
                return Err(RegistryError::Image(format!(
                    "blob {} cannot be read again from byte {offset} (its source is not a file)",
                    self.digest
                )));
            };
            let mut f =
                std::fs::File::open(&path).map_err(|e| io_err(&self.digest, Some(&path), &e))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| io_err(&self.digest, Some(&path), &e))?;
            self.reader = Some(Box::new(f));
            self.pos = offset;
            return Ok(());
        }
        let skip = offset - self.pos;
        if let Some(r) = self.reader.as_mut() {
            let n = std::io::copy(&mut r.by_ref().take(skip), &mut std::io::sink())
                .map_err(|e| io_err(&self.digest, self.file.as_deref(), &e))?;
            self.pos += n;
        }
        Ok(())
    }

    /// Fills the chunk with up to `len` bytes from `chunk_start` (which the reader is at).
    fn read_chunk(&mut self, len: u64) -> Result<()> {
        self.chunk.clear();
        let Some(r) = self.reader.as_mut() else {
            return Ok(());
        };
        r.by_ref()
            .take(len)
            .read_to_end(&mut self.chunk)
            .map_err(|e| io_err(&self.digest, self.file.as_deref(), &e))?;
        self.pos += self.chunk.len() as u64;
        if (self.chunk.len() as u64) < len {
            return Err(RegistryError::Image(format!(
                "blob {} ends at byte {}, before the {} bytes its manifest says",
                self.digest, self.pos, self.size
            )));
        }
        Ok(())
    }

    /// Counts a failure; `Err` when the retries are used up.
    fn failed(&mut self, e: RegistryError) -> Result<()> {
        if !retryable(&e) || self.retries >= self.opts.retries {
            return Err(e);
        }
        self.retries += 1;
        // 0.25 s, 0.5 s, 1 s, 2 s…: a registry restarting gets time to come back.
        std::thread::sleep(Duration::from_millis(250 << (self.retries - 1).min(5)));
        Ok(())
    }

    /// Runs one upload session at `location` to the end, resuming it after dropped connections.
    fn run(
        &mut self,
        client: &Client,
        repo: &str,
        mut location: String,
        min_chunk: Option<u64>,
    ) -> Result<Outcome> {
        let progress = self.opts.progress;
        if let Some(whole) = &self.whole {
            let whole = whole.clone();
            let mut session = Some(location);
            loop {
                // A monolithic upload is not resumed: after a failure, a new session sent whole.
                let location = match session.take() {
                    Some(l) => l,
                    None => match client.start_upload(repo, &self.digest, None) {
                        Ok(Started::Upload { location, .. }) => location,
                        Ok(Started::Mounted) => return Ok(Outcome::Done),
                        Err(e) => {
                            self.failed(e)?;
                            continue;
                        }
                    },
                };
                let mut body = Counted {
                    inner: whole.as_slice(),
                    digest: &self.digest,
                    progress,
                };
                match client.finish_upload(repo, &location, &self.digest, &mut body, self.size) {
                    Ok(()) => return Ok(Outcome::Done),
                    Err(e) => {
                        let reason = e.to_string();
                        self.failed(e)?;
                        progress.retry(&self.digest, 0, &reason);
                    }
                }
            }
        }
        let chunk_size = self.opts.chunk_size.max(min_chunk.unwrap_or(0)).max(1);
        let mut offset = self.chunk_start;
        loop {
            if offset >= self.size {
                match client.finish_upload(repo, &location, &self.digest, &mut std::io::empty(), 0)
                {
                    Ok(()) => return Ok(Outcome::Done),
                    Err(e) => {
                        let reason = e.to_string();
                        self.failed(e)?;
                        // The commit may have happened before the connection dropped.
                        if client.blob_exists(repo, &self.digest).unwrap_or(false) {
                            return Ok(Outcome::Done);
                        }
                        match self.resume(client, repo, &location, &reason)? {
                            Some((next, l)) => {
                                location = l;
                                offset = next;
                                continue;
                            }
                            None => return Ok(Outcome::Lost),
                        }
                    }
                }
            }
            // The chunk holds the bytes from `offset` on, or is read now.
            let chunk_end = self.chunk_start + self.chunk.len() as u64;
            if self.chunk.is_empty() || offset < self.chunk_start || offset >= chunk_end {
                self.rewind(offset)?;
                self.read_chunk(chunk_size.min(self.size - offset))?;
            } else if offset > self.chunk_start {
                self.chunk
                    .drain(..usize::try_from(offset - self.chunk_start).unwrap_or(0));
                self.chunk_start = offset;
            }
            let len = self.chunk.len() as u64;
            let mut body = Counted {
                inner: self.chunk.as_slice(),
                digest: &self.digest,
                progress,
            };
            match client.upload_chunk(repo, &location, &self.digest, offset, &mut body, len) {
                Ok(l) => {
                    location = l;
                    offset += len;
                    self.chunk.clear();
                    self.chunk_start = offset;
                }
                Err(e) => {
                    let reason = e.to_string();
                    self.failed(e)?;
                    match self.resume(client, repo, &location, &reason)? {
                        Some((next, l)) => {
                            location = l;
                            offset = next;
                        }
                        None => return Ok(Outcome::Lost),
                    }
                }
            }
        }
    }

    /// Asks the registry where the upload stands (`GET` of its location), retrying while the
    /// registry cannot be reached. `None`: the registry lost the upload.
    fn resume(
        &mut self,
        client: &Client,
        repo: &str,
        location: &str,
        reason: &str,
    ) -> Result<Option<(u64, String)>> {
        loop {
            match client.upload_status(repo, location, &self.digest) {
                Ok(Some((next, l))) => {
                    if next > self.size {
                        return Err(RegistryError::Image(format!(
                            "{location}: the registry says it has {next} bytes of blob {}, which has {}",
                            self.digest, self.size
                        )));
                    }
                    self.opts.progress.retry(&self.digest, next, reason);
                    return Ok(Some((next, l)));
                }
                Ok(None) => return Ok(None),
                Err(e) => self.failed(e)?,
            }
        }
    }
}

/// A blob's reader that reports the bytes read as progress.
struct Counted<'a, R> {
    inner: R,
    digest: &'a str,
    progress: &'a dyn TransferProgress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(self.digest, n as u64);
        Ok(n)
    }
}

/// Reads the blobs of an OCI layout directory by digest.
struct Layout<'a> {
    dir: &'a Path,
}

impl Layout<'_> {
    fn err(&self, path: &Path, e: &dyn std::fmt::Display) -> RegistryError {
        let _ = self;
        RegistryError::Image(format!("{}: {e}", path.display()))
    }

    /// `blobs/sha256/HEX` of `digest` (only sha256 digests: nothing else can name a path).
    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                RegistryError::Image(format!(
                    "{}: unsupported digest {digest}",
                    self.dir.display()
                ))
            })?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// A small blob (manifest, index, config) read whole and checked against its digest.
    fn verified(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| self.err(&path, &e))?;
        if sha256(&bytes) != digest {
            return Err(self.err(&path, &format!("does not match its digest {digest}")));
        }
        Ok(bytes)
    }

    /// The jobs of the image whose manifest is `manifest_json` into `jobs` (a blob shared by
    /// several images once). Layers are streamed from their files; the registry checks their
    /// digests, so they are not read here.
    fn image_jobs(
        &self,
        manifest_json: &[u8],
        jobs: &mut BTreeMap<String, Job>,
        remote: Option<&BTreeMap<String, Reference>>,
    ) -> Result<()> {
        let manifest: ImageManifest = serde_json::from_slice(manifest_json).map_err(|e| {
            RegistryError::Image(format!(
                "{}: manifest {} cannot be read (nested indexes are not pushed): {e}",
                self.dir.display(),
                sha256(manifest_json)
            ))
        })?;
        let config_digest = manifest.config().digest().to_string();
        if !jobs.contains_key(&config_digest) {
            let config = self.verified(&config_digest)?;
            jobs.insert(
                config_digest.clone(),
                Job {
                    size: config.len() as u64,
                    source: Source::Bytes(config),
                    digest: config_digest,
                },
            );
        }
        for l in manifest.layers() {
            let d = l.digest().to_string();
            if jobs.contains_key(&d) {
                continue;
            }
            let path = self.blob_path(&d)?;
            if let Some(from) = remote.and_then(|r| r.get(&d))
                && !path.exists()
            {
                jobs.insert(
                    d.clone(),
                    Job {
                        digest: d,
                        size: l.size(),
                        source: Source::Remote(from.clone()),
                    },
                );
                continue;
            }
            let f = std::fs::File::open(&path).map_err(|e| self.err(&path, &e))?;
            jobs.insert(
                d.clone(),
                Job {
                    digest: d,
                    size: l.size(),
                    source: Source::Stream {
                        reader: Box::new(f),
                        file: Some(path),
                    },
                },
            );
        }
        Ok(())
    }
}

fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Pushes the OCI layout directory `dir`. One image (`index.json` names one manifest) is pushed
/// as [`push`] would, without reading its layers first (the registry checks their digests, and a
/// re-push then costs only the `HEAD`s). Several images (several manifests, or one image
/// index) are pushed as an index: every image by digest, then the index under the
/// destination's tag — the image index `index.json` names when it names exactly one, else
/// `index.json` itself. The report's digest is the one put under the tag.
pub fn push_layout(
    client: &Client,
    dest: &Reference,
    dir: &Path,
    opts: &PushOptions<'_>,
) -> Result<PushReport> {
    let layout = Layout { dir };
    let index_path = dir.join("index.json");
    let top_json = std::fs::read(&index_path).map_err(|e| layout.err(&index_path, &e))?;
    let top: ImageIndex = serde_json::from_slice(&top_json)
        .map_err(|e| layout.err(&index_path, &format!("invalid JSON: {e}")))?;
    let (tagged_json, tagged_type, children) = match top.manifests().as_slice() {
        [] => {
            return Err(layout.err(&index_path, &"names no image"));
        }
        [one] if !is_index_type(one.media_type().as_ref()) => {
            let bytes = layout.verified(one.digest().as_ref())?;
            let mt = media_type_of(&bytes, one.media_type().as_ref());
            (bytes, mt, Vec::new())
        }
        [one] => {
            let bytes = layout.verified(one.digest().as_ref())?;
            let mt = media_type_of(&bytes, one.media_type().as_ref());
            let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::Image(format!(
                    "the image index {} cannot be read: {e}",
                    one.digest()
                ))
            })?;
            let children = index.manifests().clone();
            (bytes, mt, children)
        }
        several => (
            top_json.clone(),
            media_type_of(&top_json, OCI_INDEX),
            several.to_vec(),
        ),
    };
    let tagged_digest = sha256(&tagged_json);
    check_dest_digest(dest, &tagged_digest)?;
    let mut report = PushReport {
        manifest_digest: tagged_digest,
        uploaded: Vec::new(),
        skipped: Vec::new(),
        mounted: Vec::new(),
        children: Vec::new(),
    };
    let mut jobs = BTreeMap::new();
    let mut manifests = Vec::new();
    if children.is_empty() {
        layout.image_jobs(&tagged_json, &mut jobs, opts.remote_blobs)?;
    }
    for child in &children {
        let digest = child.digest().to_string();
        let json = layout.verified(&digest)?;
        layout.image_jobs(&json, &mut jobs, opts.remote_blobs)?;
        let mt = media_type_of(&json, child.media_type().as_ref());
        manifests.push((digest, mt, json));
    }
    push_blobs(
        client,
        &dest.repository,
        jobs.into_values().collect(),
        opts,
        &mut report,
    )?;
    for (digest, mt, json) in manifests {
        client.put_manifest(&dest.repository, &digest, &mt, &json)?;
        report.children.push(digest);
    }
    put_tagged(client, dest, &tagged_type, &tagged_json)?;
    Ok(report)
}
