//! The top-level error and the exit-status contract.
//!
//! `exprun run` exits with the command's own status, 128+N when the command was
//! killed by signal N, 126 when it could not be executed, 127 when it was not found,
//! and 125 when exprun itself failed (the same contract as `podman run`).
//! Every [`Error`] is an exprun failure, so it maps to 125.
//!
//! Errors name what they are about: run ids and names, paths, image
//! references, values from records, registries and command lines, any of
//! which may hold terminal escape sequences. They are escaped here, once, as
//! they are printed ([`Error::for_terminal`], [`print`]).

/// Exit status when exprun itself failed.
pub const EXIT_EXPRUN_FAILED: i32 = 125;
/// Exit status when the command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit status when the command is not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Any failure of exprun itself. Each module's error carries the path or field
/// and the operation; this enum only gathers them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image store refused or failed.
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    /// An option or the image config cannot make a runtime spec.
    #[error(transparent)]
    Spec(#[from] crate::spec::Error),
    /// The spec cannot be planned on this host.
    #[error(transparent)]
    Plan(#[from] crate::plan::Error),
    /// Starting or waiting for the container failed.
    #[error(transparent)]
    Spawn(#[from] crate::spawn::Error),
    /// The state directory.
    #[error(transparent)]
    State(#[from] crate::state::Error),
    /// A run record.
    #[error(transparent)]
    Record(#[from] crate::record::Error),
    /// A container of the runc-compatible lifecycle.
    #[error(transparent)]
    Container(#[from] crate::container::Error),
    /// A recorded run cannot be replayed or verified.
    #[error(transparent)]
    Verify(#[from] crate::verify::Error),
    /// A registry.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// `exprun build` refused or failed.
    #[error(transparent)]
    Build(#[from] crate::build::Error),
    /// An `--output` directory cannot be opened safely.
    #[error(transparent)]
    Output(#[from] crate::outputs::Error),
    /// The node configuration file.
    #[error(transparent)]
    Node(#[from] crate::node::Error),
    /// The command line is inconsistent in a way clap cannot see.
    #[error("{0}")]
    Usage(String),
    /// The command's own I/O, outside every module: the current directory,
    /// standard input, the terminal, a file named on the command line.
    #[error("{op}: {source}")]
    Io {
        /// What was being done, naming the file or stream.
        op: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A value cannot be written as JSON.
    #[error("{op}: {source}")]
    Json {
        /// What was being written.
        op: &'static str,
        /// serde_json's error.
        source: serde_json::Error,
    },
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        EXIT_EXPRUN_FAILED
    }

    /// The message as printed, on stderr and into `--log`: control and
    /// bidirectional characters escaped, the newlines of exprun's own
    /// multi-line messages kept.
    pub fn for_terminal(&self) -> String {
        crate::record::lines_for_terminal(&self.to_string()).into_owned()
    }
}

/// Print `exprun: MESSAGE` on stderr, escaped as [`Error::for_terminal`]
/// escapes: for errors that do not end the command (one record of many that
/// cannot be read).
pub fn print(message: &dyn std::fmt::Display) {
    eprintln!("exprun: {}", crate::record::lines_for_terminal(&message.to_string()));
}

/// Result with the top-level [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
