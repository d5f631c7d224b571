//! Debug output: `--debug` prints what exprun does and when, on stderr, with the
//! milliseconds since exprun started (the step timings of a run). Errors also go
//! to `--log FILE` when given, as runc writes them: containerd's shim reports the
//! `msg` of the last `"level":"error"` line.

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

/// Append one error line to `path`: `{"level":"error","msg":...,"time":...}` with
/// `json`, else `time="..." level=error msg="..."`. Failing to log is not an error
/// of its own: the message is on stderr already.
pub fn append_error(path: &std::path::Path, json: bool, msg: &str) {
    use std::io::Write;
    let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let line = if json {
        serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
    } else {
        format!("time={time:?} level=error msg={msg:?}")
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}
