//! Debug output: `--debug` prints what exprun does and when, on stderr, with the
//! milliseconds since exprun started (the step timings of a run).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static DEBUG: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();

/// Turn debug output on or off; also fixes the time origin.
pub fn init(debug: bool) {
    START.get_or_init(Instant::now);
    DEBUG.store(debug, Ordering::Relaxed);
}

/// Whether debug output is on.
pub fn enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Print a debug line (only with `--debug`).
pub fn debug(msg: impl FnOnce() -> String) {
    if enabled() {
        let ms = START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0;
        eprintln!("exprun: debug: {ms:8.3} ms  {}", msg());
    }
}
