//! Downloads: HTTP(S) through `ureq` and local `file:`/`dir:` sources, with bounded retries on
//! transient failures, verification into the [`Cache`], and a small thread pool for many packages.
//!
//! Retry policy: connection failures, timeouts, resets and HTTP 5xx/408/429 are retried with
//! exponential backoff; 404/410 and other client errors fail at once; a size or sha256 mismatch is
//! refused at once (it is not a transport problem and retrying would hide tampering).

use crate::apt::cache::{Cache, CacheError, CacheMode, Expected};
use base64::Engine as _;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Errors of downloads. Each names the URL and, when the download was going into the cache, the
/// cache path.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server (or local directory) does not have the file.
    #[error("{url}: not found{dest}")]
    NotFound {
        /// The URL.
        url: String,
        /// Where it was going.
        dest: Dest,
    },
    /// The server answered with an error status that is not worth retrying, or kept failing.
    #[error("{url}: HTTP status {status} after {attempts} attempt(s){dest}")]
    Status {
        /// The URL.
        url: String,
        /// The last HTTP status.
        status: u16,
        /// How many requests were made.
        attempts: u32,
        /// Where it was going.
        dest: Dest,
    },
    /// The connection failed (after the retries for transient failures).
    #[error("{url}: {message} after {attempts} attempt(s){dest}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong the last time.
        message: String,
        /// How many requests were made.
        attempts: u32,
        /// Where it was going.
        dest: Dest,
    },
    /// A local source file could not be read.
    #[error("{url}: {path}: {source}")]
    Local {
        /// The URL.
        url: String,
        /// The local path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The URL cannot be fetched (unknown scheme, malformed).
    #[error("{url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// More data than allowed arrived.
    #[error("{url}: larger than the allowed {limit} bytes{dest}")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
        /// Where it was going.
        dest: Dest,
    },
    /// Storing or verifying in the cache failed (the error names the URL and the cache path).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// imgbuild received a stop signal during the download.
    #[error("{url}: {source}")]
    Interrupted {
        /// The URL.
        url: String,
        /// The signal.
        source: crate::interrupt::Interrupted,
    },
}

/// Fails with [`FetchError::Interrupted`] for `url` once a stop signal was received.
fn check_interrupt(url: &str) -> Result<(), FetchError> {
    crate::interrupt::check().map_err(|source| FetchError::Interrupted {
        url: url.to_string(),
        source,
    })
}

impl FetchError {
    /// True when the server or directory said the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }
}

/// The cache path a download was meant for, printed as ` (cache path …)` when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dest(pub Option<PathBuf>);

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(p) => write!(f, " (cache path {})", p.display()),
            None => Ok(()),
        }
    }
}

/// User name and password for a repository (HTTP basic authentication).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    // Never print the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// How [`Fetcher::fetch_many`] reports progress. The library draws nothing itself: a caller
/// that shows progress passes an observer and renders its events.
#[derive(Clone, Default)]
pub enum Progress {
    /// Nothing.
    #[default]
    Quiet,
    /// Every event to this observer.
    To(Arc<dyn DownloadObserver>),
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Quiet => f.write_str("Quiet"),
            Progress::To(_) => f.write_str("To(..)"),
        }
    }
}

/// Hears what [`Fetcher::fetch_many`] does. Called from its download threads, so `&self` and
/// `Sync`; [`DownloadObserver::file_done`] calls come one at a time, in the order of their
/// `done` count.
pub trait DownloadObserver: Send + Sync {
    /// A batch starts: `files` files, `bytes` bytes in all (of those whose size is known).
    fn start(&self, files: usize, bytes: u64);
    /// `n` more bytes arrived from the network (any thread, any time during the batch).
    fn received(&self, n: u64);
    /// One more file of the batch is in the cache (fetched now or found there).
    fn file_done(&self, file: &FileDone<'_>);
    /// The batch ended, also after a failure: what it did.
    fn finish(&self, summary: &DownloadSummary);
}

/// A file of a [`Fetcher::fetch_many`] batch that is now in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDone<'a> {
    /// Where it came from (or would have).
    pub url: &'a str,
    /// Its size, when known.
    pub size: Option<u64>,
    /// True when the cache had it, so nothing was downloaded.
    pub cached: bool,
    /// Files of the batch done so far, this one included: 1, 2, … in call order.
    pub done: usize,
    /// Files in the batch.
    pub files: usize,
}

/// What a [`Fetcher::fetch_many`] batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownloadSummary {
    /// Files now in the cache (all of the batch unless it failed).
    pub files: usize,
    /// Their bytes (of those whose size is known).
    pub bytes: u64,
    /// Of those, the files that were downloaded (the rest were cached).
    pub fetched: usize,
    /// Their bytes (retries and hedged requests not counted).
    pub fetched_bytes: u64,
}

/// The totals of two batches.
impl std::ops::Add for DownloadSummary {
    type Output = DownloadSummary;

    fn add(self, other: DownloadSummary) -> DownloadSummary {
        DownloadSummary {
            files: self.files + other.files,
            bytes: self.bytes + other.bytes,
            fetched: self.fetched + other.fetched,
            fetched_bytes: self.fetched_bytes + other.fetched_bytes,
        }
    }
}

/// Download settings.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Connect timeout, and the longest silence while receiving.
    pub timeout: Duration,
    /// Downloads running at once in [`Fetcher::fetch_many`].
    pub concurrency: usize,
    /// Progress display for [`Fetcher::fetch_many`].
    pub progress: Progress,
    /// When a request has had no response for this long, send the same GET again on another
    /// connection and take whichever answers first; `None` never does.
    pub hedge_after: Option<Duration>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            retries: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
            concurrency: 8,
            progress: Progress::Quiet,
            // Mirrors and their caches now and then hold one request for seconds while
            // answering the next at once; a second GET for the same file is harmless.
            hedge_after: Some(Duration::from_secs(1)),
        }
    }
}

/// One file for [`Fetcher::fetch_many`].
#[derive(Debug, Clone)]
pub struct Download {
    /// Where to get it.
    pub url: String,
    /// What it must be.
    pub expected: Expected,
    /// Basic-auth credentials for its repository.
    pub credentials: Option<Credentials>,
}

/// Largest metadata file accepted by [`Fetcher::get_bytes`] callers by default (`InRelease` files of
/// large archives are a few hundred KiB).
pub const METADATA_LIMIT: u64 = 64 << 20;

/// Downloads files; cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    opts: FetchOptions,
}

enum Attempt<T> {
    Done(T),
    Retry(String, Option<u16>),
}

enum Source {
    Http,
    Local(PathBuf),
}

fn classify(url: &str) -> Result<Source, FetchError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Source::Http);
    }
    for scheme in ["file:", "dir:"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            // file:///srv/repo and file:/srv/repo both mean /srv/repo; a host part is not supported.
            let path = if let Some(r) = rest.strip_prefix("//") {
                if !r.starts_with('/') {
                    return Err(FetchError::BadUrl {
                        url: url.to_string(),
                        reason: "file URLs with a host name are not supported".into(),
                    });
                }
                r
            } else {
                rest
            };
            return Ok(Source::Local(PathBuf::from(path)));
        }
    }
    Err(FetchError::BadUrl {
        url: url.to_string(),
        reason: "unsupported scheme (use http, https, file or dir)".into(),
    })
}

impl Fetcher {
    /// A fetcher with `opts`.
    pub fn new(opts: FetchOptions) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(opts.timeout))
            .timeout_recv_response(Some(opts.timeout))
            .timeout_per_read(Some(opts.timeout))
            .user_agent(concat!("imgbuild/", env!("CARGO_PKG_VERSION")))
            // Repository files are compressed already and their digests are of the bytes served.
            .accept_encoding("identity")
            .build();
        Fetcher {
            agent: config.new_agent(),
            opts,
        }
    }

    /// The settings.
    pub fn options(&self) -> &FetchOptions {
        &self.opts
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.opts
            .backoff
            .saturating_mul(1u32 << attempt.min(6))
            .min(Duration::from_secs(30))
    }

    /// Open `url` for reading: `Done(reader)` or a transient failure to retry. Permanent failures
    /// are errors.
    fn open_http(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
        attempts: u32,
        dest: &Dest,
    ) -> Result<Attempt<ureq::Body>, FetchError> {
        match self.call_hedged(url, credentials) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match status {
                    200..=299 => Ok(Attempt::Done(resp.into_body())),
                    404 | 410 => Err(FetchError::NotFound {
                        url: url.to_string(),
                        dest: dest.clone(),
                    }),
                    408 | 429 | 500..=599 => Ok(Attempt::Retry(
                        format!("HTTP status {status}"),
                        Some(status),
                    )),
                    _ => Err(FetchError::Status {
                        url: url.to_string(),
                        status,
                        attempts,
                        dest: dest.clone(),
                    }),
                }
            }
            Err(e) => match e {
                ureq::Error::BadUri(_) | ureq::Error::Http(_) => Err(FetchError::BadUrl {
                    url: url.to_string(),
                    reason: e.to_string(),
                }),
                ureq::Error::HostNotFound => Err(FetchError::Transport {
                    url: url.to_string(),
                    message: e.to_string(),
                    attempts,
                    dest: dest.clone(),
                }),
                other => Ok(Attempt::Retry(other.to_string(), None)),
            },
        }
    }

    /// GET `url`. When no response has come after [`FetchOptions::hedge_after`], the same
    /// request goes out again on another connection, and the first answer wins; a failed answer
    /// waits for the other one. The losing request is dropped when it answers.
    fn call_hedged(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let request = || {
            let mut req = self.agent.get(url);
            if let Some(c) = credentials {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password));
                req = req.header("Authorization", format!("Basic {token}"));
            }
            req
        };
        let Some(delay) = self.opts.hedge_after else {
            return request().call();
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let send = |req: ureq::RequestBuilder<ureq::typestate::WithoutBody>| {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("imgbuild-fetch".into())
                .spawn(move || {
                    let _ = tx.send(req.call());
                })
                .is_ok()
        };
        if !send(request()) {
            return request().call();
        }
        match rx.recv_timeout(delay) {
            Ok(answer) => return answer,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return request().call(),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        let hedged = send(request());
        drop(tx);
        let first = rx.recv().unwrap_or_else(|_| request().call());
        match first {
            Err(_) if hedged => rx.recv().unwrap_or(first),
            answer => answer,
        }
    }

    /// Run `body` against a fresh reader of `url` until it succeeds, retrying transient failures.
    /// `body` returns `Ok(Err(msg))` for a transient failure while reading (reset, timeout).
    fn with_retries<T>(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
        dest: &Dest,
        mut body: impl FnMut(&mut dyn Read) -> Result<Result<T, String>, FetchError>,
    ) -> Result<T, FetchError> {
        let src = classify(url)?;
        if let Source::Local(path) = &src {
            let mut f = File::open(path).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    FetchError::NotFound {
                        url: url.to_string(),
                        dest: dest.clone(),
                    }
                } else {
                    FetchError::Local {
                        url: url.to_string(),
                        path: path.clone(),
                        source: e,
                    }
                }
            })?;
            return match body(&mut f)? {
                Ok(v) => Ok(v),
                Err(message) => Err(FetchError::Transport {
                    url: url.to_string(),
                    message,
                    attempts: 1,
                    dest: dest.clone(),
                }),
            };
        }
        let mut attempt = 0u32;
        loop {
            check_interrupt(url)?;
            attempt += 1;
            let (message, status) = match self.open_http(url, credentials, attempt, dest)? {
                Attempt::Done(b) => {
                    let mut reader = b.into_reader();
                    match body(&mut reader)? {
                        Ok(v) => return Ok(v),
                        Err(m) => (m, None),
                    }
                }
                Attempt::Retry(m, s) => (m, s),
            };
            if attempt > self.opts.retries {
                return Err(match status {
                    Some(status) => FetchError::Status {
                        url: url.to_string(),
                        status,
                        attempts: attempt,
                        dest: dest.clone(),
                    },
                    None => FetchError::Transport {
                        url: url.to_string(),
                        message,
                        attempts: attempt,
                        dest: dest.clone(),
                    },
                });
            }
            crate::interrupt::sleep(self.backoff(attempt - 1)).map_err(|source| {
                FetchError::Interrupted {
                    url: url.to_string(),
                    source,
                }
            })?;
        }
    }

    /// The whole content of `url` (at most `limit` bytes), for unpinned metadata such as `InRelease`.
    pub fn get_bytes(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
        limit: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let dest = Dest(None);
        self.with_retries(url, credentials, &dest, |r| {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                check_interrupt(url)?;
                let n = match r.read(&mut buf) {
                    Ok(0) => return Ok(Ok(out)),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Ok(Err(e.to_string())),
                };
                if out.len() as u64 + n as u64 > limit {
                    return Err(FetchError::TooLarge {
                        url: url.to_string(),
                        limit,
                        dest: dest.clone(),
                    });
                }
                out.extend_from_slice(&buf[..n]);
            }
        })
    }

    /// The verified cached file for `expected`, downloading it from `url` when absent (or corrupt).
    /// In offline mode a missing file is an error naming it. Content that does not match is refused
    /// and leaves nothing in the cache.
    pub fn fetch_to_cache(
        &self,
        cache: &Cache,
        url: &str,
        credentials: Option<&Credentials>,
        expected: &Expected,
    ) -> Result<PathBuf, FetchError> {
        self.fetch_to_cache_counting(cache, url, credentials, expected, &|_| {})
            .map(|(path, _)| path)
    }

    /// [`Fetcher::fetch_to_cache`], telling `on_bytes` of the bytes as they arrive; also says
    /// whether the file was in the cache already.
    fn fetch_to_cache_counting(
        &self,
        cache: &Cache,
        url: &str,
        credentials: Option<&Credentials>,
        expected: &Expected,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(PathBuf, bool), FetchError> {
        if let Some(p) = cache.get(expected)? {
            return Ok((p, true));
        }
        if cache.mode() == CacheMode::Offline {
            return Err(cache.missing(url, expected).into());
        }
        let _lock = cache.lock_blob(&expected.sha256)?;
        // Another build may have fetched it while we waited for the lock.
        if let Some(p) = cache.get(expected)? {
            return Ok((p, true));
        }
        let dest = Dest(Some(cache.blob_path(&expected.sha256)));
        let writer = self.with_retries(url, credentials, &dest, |r| {
            let mut w = cache.writer(url, *expected)?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                check_interrupt(url)?;
                let n = match r.read(&mut buf) {
                    // A body that ends early is a broken transfer, worth another attempt.
                    Ok(0) => match expected.size {
                        Some(size) if w.written() < size => {
                            return Ok(Err(format!(
                                "the transfer ended after {} of {size} bytes",
                                w.written()
                            )));
                        }
                        _ => return Ok(Ok(w)),
                    },
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Ok(Err(e.to_string())),
                };
                if let Some(size) = expected.size
                    && w.written() + n as u64 > size
                {
                    return Err(CacheError::SizeMismatch {
                        name: url.to_string(),
                        path: w.dest().to_path_buf(),
                        expected: size,
                        actual: w.written() + n as u64,
                    }
                    .into());
                }
                w.write_all(&buf[..n]).map_err(|source| CacheError::Io {
                    path: w.dest().to_path_buf(),
                    source,
                })?;
                on_bytes(n as u64);
            }
        })?;
        Ok((writer.commit()?, false))
    }

    /// Fetch every download into the cache, up to [`FetchOptions::concurrency`] at once. Returns the
    /// cache paths in the order given. On failure no further downloads start and the first failing
    /// item's error (in input order) is returned; files already verified stay cached.
    pub fn fetch_many(
        &self,
        cache: &Cache,
        items: &[Download],
    ) -> Result<Vec<PathBuf>, FetchError> {
        let tally = Tally::new(&self.opts.progress, items);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Mutex<Option<Result<PathBuf, FetchError>>>> =
            items.iter().map(|_| Mutex::new(None)).collect();
        let workers = self.opts.concurrency.clamp(1, items.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        if failed.load(Ordering::SeqCst) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(i) else { break };
                        let bytes = |n| tally.received(n);
                        let r = self.fetch_to_cache_counting(
                            cache,
                            &item.url,
                            item.credentials.as_ref(),
                            &item.expected,
                            &bytes,
                        );
                        let r = match r {
                            Ok((path, cached)) => {
                                tally.file_done(&item.url, item.expected.size, cached);
                                Ok(path)
                            }
                            Err(e) => {
                                failed.store(true, Ordering::SeqCst);
                                Err(e)
                            }
                        };
                        if let Ok(mut slot) = results[i].lock() {
                            *slot = Some(r);
                        }
                    }
                });
            }
        });
        tally.finish();
        let mut out = Vec::with_capacity(items.len());
        let mut not_started = None;
        for (i, slot) in results.into_iter().enumerate() {
            match slot
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                Some(Ok(p)) => out.push(p),
                // The first failure in input order, so the report does not depend on thread timing.
                Some(Err(e)) => return Err(e),
                None => {
                    not_started.get_or_insert(i);
                }
            }
        }
        // Items are skipped only after a failure, which returned above; kept for completeness.
        if let Some(i) = not_started {
            return Err(FetchError::Transport {
                url: items[i].url.clone(),
                message: "not fetched".into(),
                attempts: 0,
                dest: Dest(Some(cache.blob_path(&items[i].expected.sha256))),
            });
        }
        Ok(out)
    }
}

/// The progress of one [`Fetcher::fetch_many`] batch, told to its observer.
struct Tally<'a> {
    observer: Option<&'a dyn DownloadObserver>,
    files: usize,
    /// What is done so far. Counted and told to the observer under this one lock: counting
    /// first and telling after let a thread that counted 5 report after the one that counted 6,
    /// and the count shown went backwards.
    summary: Mutex<DownloadSummary>,
}

impl<'a> Tally<'a> {
    /// A batch of `items` starting now, told to `progress`'s observer.
    fn new(progress: &'a Progress, items: &[Download]) -> Tally<'a> {
        let observer = match progress {
            Progress::Quiet => None,
            Progress::To(o) => Some(&**o),
        };
        if let Some(o) = observer {
            o.start(
                items.len(),
                items.iter().filter_map(|d| d.expected.size).sum(),
            );
        }
        Tally {
            observer,
            files: items.len(),
            summary: Mutex::new(DownloadSummary::default()),
        }
    }

    fn received(&self, n: u64) {
        if let Some(o) = self.observer {
            o.received(n);
        }
    }

    fn file_done(&self, url: &str, size: Option<u64>, cached: bool) {
        let mut s = self.summary.lock().unwrap_or_else(PoisonError::into_inner);
        s.files += 1;
        s.bytes += size.unwrap_or(0);
        if !cached {
            s.fetched += 1;
            s.fetched_bytes += size.unwrap_or(0);
        }
        if let Some(o) = self.observer {
            o.file_done(&FileDone {
                url,
                size,
                cached,
                done: s.files,
                files: self.files,
            });
        }
    }

    fn finish(&self) {
        if let Some(o) = self.observer {
            o.finish(&self.summary.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the `done` count of every call, and whether two calls ever overlapped.
    #[derive(Default)]
    struct Recorder {
        done: Mutex<Vec<usize>>,
        inside: AtomicBool,
        overlapped: AtomicBool,
        summary: Mutex<Option<DownloadSummary>>,
    }

    impl DownloadObserver for Recorder {
        fn start(&self, _files: usize, _bytes: u64) {}
        fn received(&self, _n: u64) {}
        fn file_done(&self, file: &FileDone<'_>) {
            if self.inside.swap(true, Ordering::SeqCst) {
                self.overlapped.store(true, Ordering::SeqCst);
            }
            // Widens the window another call would overlap in, were calls not one at a time.
            std::thread::yield_now();
            self.done.lock().unwrap().push(file.done);
            self.inside.store(false, Ordering::SeqCst);
        }
        fn finish(&self, summary: &DownloadSummary) {
            *self.summary.lock().unwrap() = Some(*summary);
        }
    }

    fn item(i: usize) -> Download {
        Download {
            url: format!("file:///nonexistent/{i}"),
            expected: Expected {
                sha256: crate::apt::cache::Sha256Digest([0; 32]),
                size: Some(10),
            },
            credentials: None,
        }
    }

    #[test]
    fn the_done_count_reaches_the_observer_in_order_from_many_threads() {
        const THREADS: usize = 8;
        const EACH: usize = 2000;
        let recorder = Arc::new(Recorder::default());
        let progress = Progress::To(recorder.clone());
        let items: Vec<Download> = (0..THREADS * EACH).map(item).collect();
        let tally = Tally::new(&progress, &items);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let tally = &tally;
                s.spawn(move || {
                    for i in 0..EACH {
                        // Every third file counts as cached.
                        tally.file_done("u", Some(10), (t * EACH + i).is_multiple_of(3));
                    }
                });
            }
        });
        tally.finish();
        let done = recorder.done.lock().unwrap();
        assert!(!recorder.overlapped.load(Ordering::SeqCst));
        assert!(
            done.iter().copied().eq(1..=THREADS * EACH),
            "the count went backwards or skipped"
        );
        let n = THREADS * EACH;
        let cached = (0..n).filter(|i| i.is_multiple_of(3)).count();
        assert_eq!(
            *recorder.summary.lock().unwrap(),
            Some(DownloadSummary {
                files: n,
                bytes: 10 * n as u64,
                fetched: n - cached,
                fetched_bytes: 10 * (n - cached) as u64,
            })
        );
    }

    #[test]
    fn fetch_many_tells_fetched_from_cached_files() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let items: Vec<Download> = (0..20u8)
            .map(|i| {
                let data = vec![i; 100 + usize::from(i)];
                std::fs::write(src.join(i.to_string()), &data).unwrap();
                Download {
                    url: format!("dir:{}/{i}", src.display()),
                    expected: Expected {
                        sha256: crate::apt::cache::Sha256Digest::of(&data),
                        size: Some(data.len() as u64),
                    },
                    credentials: None,
                }
            })
            .collect();
        let cache = Cache::open(t.path().join("cache"), CacheMode::Online).unwrap();
        let bytes: u64 = (0..20).map(|i| 100 + i).sum();
        let run = |items: &[Download]| {
            let recorder = Arc::new(Recorder::default());
            let fetcher = Fetcher::new(FetchOptions {
                progress: Progress::To(recorder.clone()),
                ..FetchOptions::default()
            });
            fetcher.fetch_many(&cache, items).unwrap();
            let summary = recorder.summary.lock().unwrap().unwrap();
            assert!(
                recorder
                    .done
                    .lock()
                    .unwrap()
                    .iter()
                    .copied()
                    .eq(1..=items.len())
            );
            summary
        };
        // Five in the cache first: the batch fetches the other fifteen.
        run(&items[..5]);
        let s = run(&items);
        assert_eq!((s.files, s.bytes, s.fetched), (20, bytes, 15));
        assert_eq!(s.fetched_bytes, bytes - (100..105).sum::<u64>());
        // A warm run downloads nothing.
        let s = run(&items);
        assert_eq!(
            (s.files, s.bytes, s.fetched, s.fetched_bytes),
            (20, bytes, 0, 0)
        );
    }
}
