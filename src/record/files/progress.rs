//! The progress line of an input's digest on stderr: nothing for an input
//! digested within [`AFTER`]; then `exprun: hashing input /data: 1.2 GiB of
//! 2.0 GiB, 1023 of 2000 files`, rewritten in place on a terminal, or a plain
//! line every [`EVERY`] otherwise (a log); and a last line with the totals.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::size_text;

/// How long a digest runs before its progress shows.
pub const AFTER: Duration = Duration::from_secs(1);
/// How often a terminal's line is rewritten.
const REDRAW: Duration = Duration::from_millis(200);
/// How often a plain line is written when stderr is not a terminal.
pub const EVERY: Duration = Duration::from_secs(10);

/// The counts of one input's digest, and where they are shown.
pub struct Progress {
    label: String,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    listed: AtomicBool,
    out: Mutex<Box<dyn Write + Send>>,
    tty: bool,
    after: Duration,
    every: Duration,
    start: Instant,
}

impl Progress {
    /// Progress of the digest of `label` (`input /data`) on stderr.
    pub fn stderr(label: &str) -> Progress {
        let tty = std::io::stderr().is_terminal();
        Progress::to(Box::new(std::io::stderr()), tty, label, AFTER, if tty { REDRAW } else { EVERY })
    }

    /// Progress written to `out` (a terminal when `tty`), first after
    /// `after`, then every `every`.
    pub fn to(
        out: Box<dyn Write + Send>,
        tty: bool,
        label: &str,
        after: Duration,
        every: Duration,
    ) -> Progress {
        Progress {
            label: crate::record::for_terminal(label).into_owned(),
            files_total: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            listed: AtomicBool::new(false),
            out: Mutex::new(out),
            tty,
            after,
            every,
            start: Instant::now(),
        }
    }

    /// The walk found a file of `bytes`.
    pub fn listed(&self, bytes: u64) {
        self.files_total.fetch_add(1, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The walk is over: the totals are final.
    pub fn listed_all(&self) {
        self.listed.store(true, Ordering::Relaxed);
    }

    /// `bytes` more were hashed (or found in the cache).
    pub fn hashed(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One more file is done.
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }

    /// The line as it stands.
    pub fn line(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let more = if self.listed.load(Ordering::Relaxed) { "" } else { " (still listing)" };
        format!(
            "exprun: hashing {}: {} of {}, {} of {} files{more}",
            self.label,
            size_text(load(&self.bytes_done)),
            size_text(load(&self.bytes_total)),
            load(&self.files_done),
            load(&self.files_total),
        )
    }

    fn last_line(&self) -> String {
        format!(
            "exprun: hashed {}: {}, {} files in {:.1} s",
            self.label,
            size_text(self.bytes_total.load(Ordering::Relaxed)),
            self.files_total.load(Ordering::Relaxed),
            self.start.elapsed().as_secs_f64()
        )
    }

    fn write(&self, line: &str, end: bool) {
        let text = match (self.tty, end) {
            (true, false) => format!("\r{line}\x1b[K"),
            (true, true) => format!("\r{line}\x1b[K\n"),
            (false, _) => format!("{line}\n"),
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }

    /// Show the progress until `stop` is dropped (the digest ended): silent
    /// when that happens within the first `after`.
    pub fn report(&self, stop: Receiver<()>) {
        let mut wait = self.after.saturating_sub(self.start.elapsed());
        let mut shown = false;
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
            self.write(&self.line(), false);
            shown = true;
            wait = self.every;
        }
        if shown {
            self.write(&self.last_line(), true);
        }
    }
}
