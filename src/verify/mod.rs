//! `exprun replay` and `exprun verify`: run a recorded run again, and compare what
//! it produced with the original.

pub mod check;
pub mod compare;
pub mod config;
pub mod render;
pub mod replay;
pub mod summary;
pub mod trust;
pub mod vary;
pub mod vary_facts;
mod verdict;

use std::path::PathBuf;

/// Replay and verify errors: why a run cannot be checked (exit status 125).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record has no request to replay.
    #[error("run {run} cannot be replayed: {why}")]
    NotReplayable {
        /// Run id (short).
        run: String,
        /// Why.
        why: String,
    },
    /// The recorded image is not in the store, and nothing is under its name.
    #[error("image {digest} ({name}) is not in the store; import it again (exprun image import) and retry")]
    ImageMissing {
        /// The recorded manifest digest.
        digest: String,
        /// The recorded name or reference.
        name: String,
    },
    /// A secret's value is needed again.
    #[error("the record holds only a digest of ${name}; export {name} in exprun's environment (its digest is checked against the record)")]
    SecretMissing {
        /// The variable.
        name: String,
    },
    /// An input cannot be digested.
    #[error("input {destination} from {host_path}: {error}; restore it, or replay elsewhere")]
    InputUnreadable {
        /// Mount point in the container.
        destination: PathBuf,
        /// Host path.
        host_path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The image, an input or a secret differs from the record.
    #[error("refusing to replay: what the run computes on has changed since it was recorded\n{table}(pass --allow-drift to replay anyway; the drift is recorded)")]
    Drift {
        /// The rendered drift table.
        table: String,
    },
    /// A fetched run's request asks for what nothing allows.
    #[error("refusing to replay run {run}: it was fetched from a registry, and its request asks for more than exprun gives a run it did not record:\n{list}")]
    Refused {
        /// Run id (short).
        run: String,
        /// Each refused finding, and the `--allow` flags that would permit them.
        list: String,
    },
    /// A recorded request holds what `exprun run` could not have written.
    #[error("run {run} cannot be replayed: its record's {field}: {why}")]
    BadRequest {
        /// Run id (short).
        run: String,
        /// The field(s), e.g. `request.volumes[0].destination`.
        field: String,
        /// What is wrong with it.
        why: String,
    },
    /// A fetched run's own copy of a file does not match its record.
    #[error("refusing to replay run {run}: its artifact's copy of {what} is not what its record digests (recorded {recorded}, the artifact has {found}): the artifact is corrupt or was altered; --allow-drift does not change this")]
    ArtifactMismatch {
        /// Run id (short).
        run: String,
        /// `input /data`.
        what: String,
        /// The recorded digest.
        recorded: String,
        /// What the copy digests to.
        found: String,
    },
    /// `--allow` names nothing that can be allowed.
    #[error("--allow {given:?}: {why}")]
    BadAllow {
        /// What was given.
        given: String,
        /// Why it is not understood.
        why: String,
    },
    /// `--input` names a destination the run has no input at.
    #[error("--input {destination}: the run has no input there (its inputs: {inputs})")]
    UnknownInput {
        /// The destination given.
        destination: PathBuf,
        /// The run's input destinations.
        inputs: String,
    },
    /// A comparison option is bad.
    #[error(transparent)]
    Compare(#[from] compare::Error),
    /// `--vary` names something unknown.
    #[error("--vary {given:?}: not a variation; one of: all, {known}")]
    UnknownVariation {
        /// What was given.
        given: String,
        /// The list.
        known: String,
    },
    /// The settings file does not parse.
    #[error("{path}: {why}; see `exprun verify --help` for its keys")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A setting (from the command line or the settings file) is bad.
    #[error("verify setting {what}: {why}")]
    Setting {
        /// The setting.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// A file operation of the verification failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}
