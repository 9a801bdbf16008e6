//! Downloads: HTTP(S) through `ureq` and local `file:`/`dir:` sources, with bounded retries on
//! transient failures, verification into the [`Cache`], and a small thread pool for many packages.
//!
//! Retry policy: connection failures, timeouts, resets and HTTP 5xx/408/429 are retried with
//! exponential backoff; 404/410 and other client errors fail at once; a size or sha256 mismatch is
//! refused at once (it is not a transport problem and retrying would hide tampering).

use crate::apt::cache::{Cache, CacheError, CacheMode, Expected};
use base64::Engine as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// One plain line per finished download on stderr.
    Lines,
    /// Nothing.
    Quiet,
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
            progress: Progress::Auto,
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
    }

    fn fetch_to_cache_counting(
        &self,
        cache: &Cache,
        url: &str,
        credentials: Option<&Credentials>,
        expected: &Expected,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<PathBuf, FetchError> {
        if let Some(p) = cache.get(expected)? {
            return Ok(p);
        }
        if cache.mode() == CacheMode::Offline {
            return Err(cache.missing(url, expected).into());
        }
        let _lock = cache.lock_blob(&expected.sha256)?;
        // Another build may have fetched it while we waited for the lock.
        if let Some(p) = cache.get(expected)? {
            return Ok(p);
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
        Ok(writer.commit()?)
    }

    /// Fetch every download into the cache, up to [`FetchOptions::concurrency`] at once. Returns the
    /// cache paths in the order given. On failure no further downloads start and the first failing
    /// item's error (in input order) is returned; files already verified stay cached.
    pub fn fetch_many(
        &self,
        cache: &Cache,
        items: &[Download],
    ) -> Result<Vec<PathBuf>, FetchError> {
        let total: u64 = items.iter().filter_map(|d| d.expected.size).sum();
        let reporter = Reporter::new(self.opts.progress, total, items.len());
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
                        let bytes = |n| reporter.add_bytes(n);
                        let r = self.fetch_to_cache_counting(
                            cache,
                            &item.url,
                            item.credentials.as_ref(),
                            &item.expected,
                            &bytes,
                        );
                        match &r {
                            Ok(_) => reporter.done(&item.url, item.expected.size),
                            Err(_) => failed.store(true, Ordering::SeqCst),
                        }
                        if let Ok(mut slot) = results[i].lock() {
                            *slot = Some(r);
                        }
                    }
                });
            }
        });
        reporter.finish();
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

/// Progress output for [`Fetcher::fetch_many`].
struct Reporter {
    bar: Option<ProgressBar>,
    lines: bool,
    done: AtomicUsize,
    count: usize,
}

impl Reporter {
    fn new(mode: Progress, total: u64, count: usize) -> Reporter {
        let tty = io::stderr().is_terminal();
        // `Auto` prints lines, as `Lines` does, only when stderr is not a terminal.
        #[allow(clippy::match_same_arms)]
        let (bar, lines) = match mode {
            Progress::Quiet => (None, false),
            Progress::Lines => (None, true),
            Progress::Auto if tty => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(format!("0/{count} files"));
                (Some(bar), false)
            }
            Progress::Auto => (None, true),
        };
        Reporter {
            bar,
            lines,
            done: AtomicUsize::new(0),
            count,
        }
    }

    fn add_bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    fn done(&self, url: &str, size: Option<u64>) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(b) = &self.bar {
            b.set_message(format!("{done}/{} files", self.count));
        } else if self.lines {
            let size = size.map(|s| format!(" ({s} bytes)")).unwrap_or_default();
            let _ = writeln!(io::stderr().lock(), "[{done}/{}] {url}{size}", self.count);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
