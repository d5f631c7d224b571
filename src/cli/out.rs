//! stdout for the commands that print lists and records. Rust's `print!`
//! panics when stdout's reader has gone (EPIPE: `exprun runs ls | head -1`),
//! and exprun aborts on a panic (status 134); these end exprun quietly with
//! status 0 instead, as grep and ripgrep do. Any other write error is
//! reported, with status 125.

use std::io::{self, Write};

/// Write `text` to stdout, flushed.
pub fn write(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("exprun: error: writing to stdout: {e}");
        std::process::exit(crate::error::EXIT_EXPRUN_FAILED);
    }
}

/// `println!` through [`write`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::write(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(&format!($($arg)*))
    };
}

pub(crate) use {out, outln};
