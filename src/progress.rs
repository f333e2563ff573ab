//! Progress bars for long runs on a terminal (indicatif), nothing elsewhere.
//!
//! A [`Progress`] is either a bar on stderr (when stderr is a terminal and
//! the user did not ask for `--quiet`) or nothing; code that reports progress
//! never needs to know which. When stderr is not a terminal, the log lines
//! are the record of progress.
//!
//! Every bar lives in one [`MultiProgress`], and every line reprofile writes
//! to stderr while bars may be drawn goes through [`Stderr`] (the log lines)
//! or [`suspend`] (the CLI's own lines): the bars are taken off the screen,
//! the line is written, and the bars are drawn again below it, so a log line
//! never lands on a bar. A bar is cleared when its work ends, also when the
//! work ends early (the last handle dropped), so none is left at 0/N.
//!
//! The bars are drawn through [`BarTerminal`], indicatif's terminal less one
//! thing: the cursor stays just after the last bar, where indicatif would fill
//! the line with spaces to the right edge. At the edge the terminal's echo of
//! a typed Ctrl-C (`^C`) opens a line indicatif does not count, and the
//! clearing that follows took that line for the bar's and left the bar in the
//! scrollback.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The one display every bar is drawn in.
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| {
        MultiProgress::with_draw_target(ProgressDrawTarget::term_like_with_hz(
            Box::new(BarTerminal(console::Term::buffered_stderr())),
            20,
        ))
    })
}

/// Standard error as indicatif draws on it, except for the spaces indicatif
/// writes after the last bar to put the cursor at the right edge. There, the
/// next character the terminal prints (the `^C` it echoes when Ctrl-C is
/// typed) goes to a new line that indicatif does not know of: the next
/// clearing moves up from that line, clears it and leaves the bar above it.
/// Without the spaces the echo lands on the bar's own line and goes with it.
/// (Nothing else of reprofile writes to the terminal while a bar is drawn:
/// every other write is [`suspend`]ed.)
#[derive(Debug)]
struct BarTerminal(console::Term);

impl TermLike for BarTerminal {
    fn width(&self) -> u16 {
        self.0.size().1
    }

    fn height(&self) -> u16 {
        self.0.size().0
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        if is_edge_filler(s) {
            return Ok(());
        }
        self.0.write_str(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }

    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Whether indicatif writes `s` only to fill the last bar's line to the
/// right edge: spaces alone (a bar's own text never is).
fn is_edge_filler(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b' ')
}

/// Turns progress bars on for this process when stderr is a terminal (the CLI
/// calls this once, unless `--quiet`).
pub fn enable_on_terminal() {
    ENABLED.store(std::io::stderr().is_terminal(), Ordering::SeqCst);
}

/// Runs `write` (which writes to stderr) with the bars off the screen.
pub fn suspend<T>(write: impl FnOnce() -> T) -> T {
    if ENABLED.load(Ordering::SeqCst) {
        multi().suspend(write)
    } else {
        write()
    }
}

/// Standard error for the log: each write goes out with the bars off the
/// screen (a log event is formatted whole, then written at once).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

/// A bar, cleared when the last handle to it goes.
#[derive(Debug)]
struct Bar(ProgressBar);

impl Drop for Bar {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            self.0.finish_and_clear();
        }
        multi().remove(&self.0);
    }
}

/// A progress bar, or nothing.
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<Arc<Bar>>);

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
        let bar = multi().add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(message.to_string());
        Self(Some(Arc::new(Bar(bar))))
    }

    /// No bar.
    pub fn none() -> Self {
        Self(None)
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.0.inc(n);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.0.finish_and_clear();
        }
    }
}
