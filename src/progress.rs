//! Progress bars for long runs on a terminal (indicatif), nothing elsewhere.
//!
//! A [`Progress`] is either a bar on stderr (when stderr is a terminal and
//! the user did not ask for `--quiet`) or nothing; code that reports progress
//! never needs to know which. When stderr is not a terminal, the log lines
//! are the record of progress.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns progress bars on for this process when stderr is a terminal (the CLI
/// calls this once, unless `--quiet`).
pub fn enable_on_terminal() {
    ENABLED.store(std::io::stderr().is_terminal(), Ordering::SeqCst);
}

/// A progress bar, or nothing.
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<ProgressBar>);

impl PartialEq for Progress {
    /// Progress is not part of what a value means.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for Progress {}

impl Progress {
    /// A bar of `total` steps with a message, when bars are enabled.
    pub fn bar(total: u64, message: &str) -> Self {
        if !ENABLED.load(Ordering::SeqCst) || total == 0 {
            return Self(None);
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(message.to_string());
        Self(Some(bar))
    }

    /// No bar.
    pub fn none() -> Self {
        Self(None)
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
