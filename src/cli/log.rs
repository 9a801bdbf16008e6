//! The stage log on stderr (`-q`, `-v`/`--verbose`, `--log-format text|json`): the CLI's
//! [`Reporter`].

use imgbuild::apt::fetch::Progress;
use imgbuild::ops::Reporter;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How stage lines are written on stderr.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `imgbuild: <stage> ...` and `imgbuild: <stage> done in <s> s`.
    #[default]
    Text,
    /// One JSON object per line: `{"stage":..,"event":"start|done","seconds":..}`.
    Json,
}

/// The global logging options (`-q`, `-v`, `--log-format`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSettings {
    /// No stage lines, no download progress.
    pub quiet: bool,
    /// Maintainer-script and hook output too.
    pub verbose: bool,
    /// Text or JSON lines.
    pub format: LogFormat,
}

/// Prints stage lines, notes and warnings to stderr as the logging options say, stage ends with
/// the time the stage took.
pub struct StageLog {
    start: Instant,
    settings: LogSettings,
}

impl StageLog {
    /// A log starting now.
    pub fn new(settings: LogSettings) -> Self {
        StageLog {
            start: Instant::now(),
            settings,
        }
    }

    fn emit(&self, stage: &str, event: &str, seconds: Option<f64>) {
        if self.settings.quiet {
            return;
        }
        match self.settings.format {
            LogFormat::Text => match seconds {
                Some(s) => eprintln!("imgbuild: {stage} done in {s:.1} s"),
                None => eprintln!("imgbuild: {stage} ..."),
            },
            LogFormat::Json => {
                let mut v = serde_json::json!({"stage": stage, "event": event});
                if let Some(s) = seconds {
                    // Milliseconds are plenty and keep the lines short.
                    v["seconds"] = serde_json::json!((s * 1000.0).round() / 1000.0);
                }
                eprintln!("{v}");
            }
        }
    }

    /// Seconds since the log started.
    pub fn total(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

impl Reporter for StageLog {
    fn stage_start(&self, stage: &str) {
        self.emit(stage, "start", None);
    }

    fn stage_done(&self, stage: &str, took: Duration) {
        self.emit(stage, "done", Some(took.as_secs_f64()));
    }

    /// Text: `imgbuild: <message>`; json: `{"event":"info",..}`.
    fn info(&self, message: &str) {
        if self.settings.quiet {
            return;
        }
        match self.settings.format {
            LogFormat::Text => eprintln!("imgbuild: {message}"),
            LogFormat::Json => {
                eprintln!(
                    "{}",
                    serde_json::json!({"event": "info", "message": message})
                );
            }
        }
    }

    /// Shown even with `-q` (text: `imgbuild: warning: <message>`; json:
    /// `{"event":"warning",..}`).
    fn warn(&self, message: &str) {
        match self.settings.format {
            LogFormat::Text => eprintln!("imgbuild: warning: {message}"),
            LogFormat::Json => {
                eprintln!(
                    "{}",
                    serde_json::json!({"event": "warning", "message": message})
                );
            }
        }
    }

    /// None with `-q`; a bar on a terminal, else one line per download.
    fn progress(&self) -> Progress {
        if self.settings.quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Auto
        } else {
            Progress::Lines
        }
    }

    fn verbose(&self) -> bool {
        self.settings.verbose
    }
}
