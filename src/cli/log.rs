//! The stage log on stderr (`-q`, `-v`/`--verbose`, `--log-format text|json`): the CLI's
//! [`Reporter`], the download progress it draws, and the last line of a failed command.
//!
//! Text: a line when a stage starts and one when it ends, with its time and, for a stage that
//! downloaded, how many files and bytes (and how many of them came from the network); a bar
//! while downloading when stderr is a terminal; a line per file only with `--verbose`. Json:
//! the same events as one object per line and nothing else (docs/sbom.md lists the shapes).

use imgbuild::apt::fetch::{DownloadObserver, DownloadSummary, FileDone, Progress};
use imgbuild::interrupt::Interrupted;
use imgbuild::ops::Reporter;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How stage lines are written on stderr.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `imgbuild: <stage> ...` and `imgbuild: <stage> done in <s> s`.
    #[default]
    Text,
    /// One JSON object per line (stages, downloads, notes, warnings, the final error).
    Json,
}

/// The global logging options (`-q`, `-v`, `--log-format`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSettings {
    /// No stage lines, no download progress.
    pub quiet: bool,
    /// A line per downloaded file, and (text only) maintainer-script and hook output.
    pub verbose: bool,
    /// Text or JSON lines.
    pub format: LogFormat,
}

/// Prints stage lines, notes and warnings to stderr as the logging options say, stage ends with
/// the time the stage took.
pub struct StageLog {
    start: Instant,
    settings: LogSettings,
    downloads: Arc<DownloadLog>,
    /// The architecture of one build of a multi-architecture build: its lines say it (text:
    /// `imgbuild: [aarch64] …`; json: an `arch` field).
    arch: Option<String>,
}

impl StageLog {
    /// A log starting now.
    pub fn new(settings: LogSettings) -> Self {
        StageLog {
            start: Instant::now(),
            settings,
            downloads: Arc::new(DownloadLog {
                settings,
                bar: settings.format == LogFormat::Text
                    && !settings.verbose
                    && std::io::stderr().is_terminal(),
                state: Mutex::default(),
                arch: None,
            }),
            arch: None,
        }
    }

    /// The log of one architecture's build among several running at once: its lines name the
    /// architecture, and downloads draw no bar (bars of concurrent builds would overwrite
    /// each other).
    pub fn for_arch(settings: LogSettings, arch: &str) -> Self {
        let mut log = StageLog::new(settings);
        log.arch = Some(arch.to_string());
        log.downloads = Arc::new(DownloadLog {
            settings,
            bar: false,
            state: Mutex::default(),
            arch: Some(arch.to_string()),
        });
        log
    }

    /// `imgbuild: `, with the architecture when the log has one.
    fn prefix(&self) -> String {
        text_prefix(self.arch.as_deref())
    }

    /// A JSON event, with the architecture when the log has one.
    fn json(&self, v: serde_json::Value) -> serde_json::Value {
        with_arch(v, self.arch.as_deref())
    }

    /// Seconds since the log started.
    pub fn total(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

fn text_prefix(arch: Option<&str>) -> String {
    match arch {
        Some(a) => format!("imgbuild: [{a}] "),
        None => "imgbuild: ".to_string(),
    }
}

fn with_arch(mut v: serde_json::Value, arch: Option<&str>) -> serde_json::Value {
    if let Some(a) = arch {
        v["arch"] = a.into();
    }
    v
}

/// Rounded to milliseconds, which are plenty and keep the lines short.
fn json_seconds(took: Duration) -> serde_json::Value {
    serde_json::json!((took.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// `110 files, 45.21 MiB (3 downloaded, 1.20 MiB)`, or `(all cached)`.
fn summary_text(s: &DownloadSummary) -> String {
    let fetched = if s.fetched == 0 {
        "all cached".to_string()
    } else {
        format!("{} downloaded, {}", s.fetched, HumanBytes(s.fetched_bytes))
    };
    format!("{} files, {} ({fetched})", s.files, HumanBytes(s.bytes))
}

/// `[5/110] URL (2894408 bytes, cached)`: a file of a download in text.
fn file_line(f: &FileDone<'_>) -> String {
    let notes: Vec<String> = f
        .size
        .map(|s| format!("{s} bytes"))
        .into_iter()
        .chain(f.cached.then(|| "cached".to_string()))
        .collect();
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    format!("[{}/{}] {}{notes}", f.done, f.files, f.url)
}

impl Reporter for StageLog {
    fn stage_start(&self, stage: &str) {
        if self.settings.quiet {
            return;
        }
        match self.settings.format {
            LogFormat::Text => eprintln!("{}{stage} ...", self.prefix()),
            LogFormat::Json => {
                eprintln!(
                    "{}",
                    self.json(serde_json::json!({"stage": stage, "event": "start"}))
                );
            }
        }
    }

    /// With the download summary of the stage, when it downloaded.
    fn stage_done(&self, stage: &str, took: Duration) {
        let summary = self.downloads.take_summary();
        if self.settings.quiet {
            return;
        }
        match self.settings.format {
            LogFormat::Text => {
                let s = took.as_secs_f64();
                match summary {
                    Some(d) => {
                        eprintln!(
                            "{}{stage} done in {s:.1} s: {}",
                            self.prefix(),
                            summary_text(&d)
                        );
                    }
                    None => eprintln!("{}{stage} done in {s:.1} s", self.prefix()),
                }
            }
            LogFormat::Json => {
                let mut v = serde_json::json!({
                    "stage": stage,
                    "event": "done",
                    "seconds": json_seconds(took),
                });
                if let Some(d) = summary {
                    v["files"] = d.files.into();
                    v["bytes"] = d.bytes.into();
                    v["fetched_files"] = d.fetched.into();
                    v["fetched_bytes"] = d.fetched_bytes.into();
                }
                eprintln!("{}", self.json(v));
            }
        }
    }

    /// Text: `imgbuild: <message>`; json: `{"event":"info",..}`.
    fn info(&self, message: &str) {
        if self.settings.quiet {
            return;
        }
        match self.settings.format {
            LogFormat::Text => eprintln!("{}{message}", self.prefix()),
            LogFormat::Json => {
                eprintln!(
                    "{}",
                    self.json(serde_json::json!({"event": "info", "message": message}))
                );
            }
        }
    }

    /// Shown even with `-q` (text: `imgbuild: warning: <message>`; json:
    /// `{"event":"warning",..}`).
    fn warn(&self, message: &str) {
        match self.settings.format {
            LogFormat::Text => eprintln!("{}warning: {message}", self.prefix()),
            LogFormat::Json => {
                eprintln!(
                    "{}",
                    self.json(serde_json::json!({"event": "warning", "message": message}))
                );
            }
        }
    }

    /// None with `-q`; else the events go to the download log.
    fn progress(&self) -> Progress {
        if self.settings.quiet {
            Progress::Quiet
        } else {
            Progress::To(self.downloads.clone())
        }
    }

    /// Script output is raw text, so only in the text format.
    fn verbose(&self) -> bool {
        self.settings.verbose && self.settings.format == LogFormat::Text
    }
}

/// The download progress of a [`StageLog`]: a bar on a terminal, a line (or object) per file
/// with `--verbose`, and the totals kept for the end of the stage.
struct DownloadLog {
    settings: LogSettings,
    /// Draw a bar (text on a terminal, not verbose).
    bar: bool,
    state: Mutex<DownloadState>,
    /// As [`StageLog`]'s.
    arch: Option<String>,
}

#[derive(Default)]
struct DownloadState {
    bar: Option<ProgressBar>,
    /// What the batches of the running stage did.
    summary: Option<DownloadSummary>,
}

impl DownloadLog {
    fn state(&self) -> std::sync::MutexGuard<'_, DownloadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The totals since the last call.
    fn take_summary(&self) -> Option<DownloadSummary> {
        self.state().summary.take()
    }
}

impl DownloadObserver for DownloadLog {
    fn start(&self, files: usize, bytes: u64) {
        if !self.bar {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("0/{files} files"));
        self.state().bar = Some(bar);
    }

    fn received(&self, n: u64) {
        if let Some(bar) = &self.state().bar {
            bar.inc(n);
        }
    }

    fn file_done(&self, f: &FileDone<'_>) {
        if let Some(bar) = &self.state().bar {
            if f.cached {
                bar.inc(f.size.unwrap_or(0));
            }
            bar.set_message(format!("{}/{} files", f.done, f.files));
            return;
        }
        if !self.settings.verbose {
            return;
        }
        match self.settings.format {
            LogFormat::Text => {
                eprintln!("{}{}", text_prefix(self.arch.as_deref()), file_line(f));
            }
            LogFormat::Json => eprintln!(
                "{}",
                with_arch(
                    serde_json::json!({
                        "event": "download",
                        "url": f.url,
                        "bytes": f.size,
                        "cached": f.cached,
                        "done": f.done,
                        "files": f.files,
                    }),
                    self.arch.as_deref()
                )
            ),
        }
    }

    fn finish(&self, summary: &DownloadSummary) {
        let mut state = self.state();
        if let Some(bar) = state.bar.take() {
            bar.finish_and_clear();
        }
        let total = state.summary.unwrap_or_default() + *summary;
        state.summary = Some(total);
    }
}

/// The last line of a failed command: text `imgbuild: error: <message>`, json
/// `{"event":"error","message":..}`.
pub fn error(format: LogFormat, message: &str) {
    for problem in super::error::problems(message) {
        match format {
            LogFormat::Text => eprintln!("imgbuild: error: {problem}"),
            LogFormat::Json => eprintln!(
                "{}",
                serde_json::json!({"event": "error", "message": problem})
            ),
        }
    }
}

/// The last line of a command stopped by a signal, as [`stopped_line`] words it.
pub fn stopped(format: LogFormat, stop: Interrupted) {
    match format {
        LogFormat::Text => eprintln!("imgbuild: {stop}"),
        LogFormat::Json => eprint!("{}", json_stopped_line(stop)),
    }
}

/// [`stopped`] in json, with its newline: `{"event":"error","message":"interrupted by
/// SIGINT","signal":"SIGINT"}`; also what the stop watcher prints if it must end the process.
pub fn json_stopped_line(stop: Interrupted) -> String {
    let v = serde_json::json!({
        "event": "error",
        "message": stop.to_string(),
        "signal": imgbuild::interrupt::signal_name(stop.signal),
    });
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_say_files_bytes_and_what_was_downloaded() {
        let mut s = DownloadSummary {
            files: 110,
            bytes: 47_400_000,
            fetched: 0,
            fetched_bytes: 0,
        };
        assert_eq!(summary_text(&s), "110 files, 45.20 MiB (all cached)");
        s.fetched = 3;
        s.fetched_bytes = 1_258_291;
        assert_eq!(
            summary_text(&s),
            "110 files, 45.20 MiB (3 downloaded, 1.20 MiB)"
        );
    }

    #[test]
    fn file_lines_say_count_url_size_and_cached() {
        let mut f = FileDone {
            url: "http://m/a.deb",
            size: Some(12),
            cached: true,
            done: 5,
            files: 110,
        };
        assert_eq!(file_line(&f), "[5/110] http://m/a.deb (12 bytes, cached)");
        f.cached = false;
        assert_eq!(file_line(&f), "[5/110] http://m/a.deb (12 bytes)");
        f.size = None;
        assert_eq!(file_line(&f), "[5/110] http://m/a.deb");
    }

    #[test]
    fn a_stage_takes_the_totals_of_its_batches_once() {
        let log = StageLog::new(LogSettings {
            quiet: true,
            ..LogSettings::default()
        });
        let one = DownloadSummary {
            files: 2,
            bytes: 10,
            fetched: 1,
            fetched_bytes: 4,
        };
        log.downloads.finish(&one);
        log.downloads.finish(&one);
        assert_eq!(log.downloads.take_summary(), Some(one + one));
        assert_eq!(log.downloads.take_summary(), None);
    }

    #[test]
    fn json_stop_lines_are_one_object() {
        let line = json_stopped_line(Interrupted {
            signal: libc::SIGTERM,
        });
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "error");
        assert_eq!(v["signal"], "SIGTERM");
        assert_eq!(v["message"], "interrupted by SIGTERM");
    }
}
