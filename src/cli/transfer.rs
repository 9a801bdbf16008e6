//! The progress of blob transfers (push, pull): a bar per blob on a terminal, a plain line per
//! finished, skipped or retried blob otherwise (CI logs), nothing with `--quiet`.

use imgbuild::registry::{Direction, TransferProgress};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};

/// Draws or prints blob transfers on stderr.
pub struct TransferLog {
    quiet: bool,
    /// Bars on a terminal; `None` prints lines.
    bars: Option<MultiProgress>,
    state: Mutex<HashMap<String, Blob>>,
}

struct Blob {
    size: u64,
    direction: Direction,
    bar: Option<ProgressBar>,
}

/// `sha256:0123456789ab` — enough of a digest to tell the blobs of one image apart.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

impl TransferLog {
    /// A log on stderr: bars when it is a terminal, lines otherwise; silent when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        TransferLog {
            quiet,
            bars,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<String, Blob>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

impl TransferProgress for TransferLog {
    fn start(&self, digest: &str, size: u64, direction: Direction, resumed_at: u64) {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(size));
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("Copying blob {}", short(digest)));
            bar.set_position(resumed_at);
            bar
        });
        self.state().insert(
            digest.to_string(),
            Blob {
                size,
                direction,
                bar,
            },
        );
    }

    fn advance(&self, digest: &str, bytes: u64) {
        if let Some(Blob { bar: Some(bar), .. }) = self.state().get(digest) {
            bar.inc(bytes);
        }
    }

    fn skipped(&self, digest: &str, how: &str) {
        if let Some(Blob { bar: Some(bar), .. }) = self.state().remove(digest) {
            bar.finish_and_clear();
        }
        self.line(&format!("Copying blob {digest} skipped: {how}"));
    }

    fn done(&self, digest: &str) {
        let blob = self.state().remove(digest);
        let (size, direction) = match blob {
            Some(Blob {
                size,
                direction,
                bar,
            }) => {
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                (Some(size), Some(direction))
            }
            None => (None, None),
        };
        let verb = match direction {
            Some(Direction::Download) => " (verified)",
            _ => "",
        };
        match size {
            Some(size) => self.line(&format!(
                "Copying blob {digest} done {}{verb}",
                HumanBytes(size)
            )),
            None => self.line(&format!("Copying blob {digest} done")),
        }
    }

    fn retry(&self, digest: &str, resumed_at: u64, reason: &str) {
        if let Some(Blob { bar: Some(bar), .. }) = self.state().get(digest) {
            bar.set_position(resumed_at);
        }
        self.line(&format!(
            "Copying blob {digest}: {reason}; resuming at byte {resumed_at}"
        ));
    }
}
