//! Debug output: `--debug` prints what exprun does and when, on exprun's own
//! stderr, with the milliseconds since exprun started (the step timings of a
//! run). A container's init, forked from exprun, gives its fd 2 to the
//! container: its debug lines still go to the stderr exprun was started with,
//! through a copy of it taken at start, never into the container's output. Errors also go
//! to `--log FILE` when given, as runc writes them: containerd's shim reports the
//! `msg` of the last `"level":"error"` line.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static DEBUG: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();
/// exprun's own stderr, duplicated (close-on-exec) when debug output is turned on.
static SINK: OnceLock<Option<File>> = OnceLock::new();

/// Turn debug output on or off; also fixes the time origin.
pub fn init(debug: bool) {
    START.get_or_init(Instant::now);
    DEBUG.store(debug, Ordering::Relaxed);
    if debug {
        SINK.get_or_init(|| std::io::stderr().as_fd().try_clone_to_owned().ok().map(File::from));
    }
}

/// Whether debug output is on.
pub fn enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Print a debug line (only with `--debug`).
pub fn debug(msg: impl FnOnce() -> String) {
    if enabled() {
        let ms = START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0;
        let line = format!("exprun: debug: {ms:8.3} ms  {}\n", msg());
        match SINK.get().and_then(Option::as_ref) {
            Some(mut f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None => eprint!("{line}"),
        }
    }
}

/// Append one error line to `path`: `{"level":"error","msg":...,"time":...}` with
/// `json`, else `time="..." level=error msg="..."`. Failing to log is not an error
/// of its own: the message is on stderr already.
pub fn append_error(path: &std::path::Path, json: bool, msg: &str) {
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
