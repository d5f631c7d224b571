//! The values that differ in a JSON, CSV or TSV output file, for `exprun runs
//! diff`: the numeric comparison verify makes, whether a tolerance applies or
//! not, on contents read as verify reads them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{load, numeric, Content, NumericReport, Tolerances};
use crate::digest::Digest;

/// One value that differs between two JSON, CSV or TSV contents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValueChange {
    /// A JSON path (`$.runs[0].loss`) or a CSV cell (`row 3, column 2 (loss)`).
    pub location: String,
    /// The change: `0.91 -> 0.92` for a number, else what differs
    /// (`expected "cat", got "dog"`, `key "n" is missing in the replay`).
    pub what: String,
    /// A number within its tolerance.
    pub within: bool,
}

/// The values that differ between two contents of one output file, under the
/// tolerances at `rel` (relative to the output root) and `abs` (its path in
/// the container), whether a tolerance applies or not (`exprun runs diff`).
/// `None` when the file is not JSON, CSV or TSV by its name, nor JSON by its
/// content.
pub fn value_changes(
    rel: &str,
    abs: &str,
    expected: &[u8],
    actual: &[u8],
    tol: &Tolerances,
) -> Option<NumericReport> {
    let ft = tol.for_file(rel, Some(abs));
    numeric::compare_format(rel, expected, actual, &ft, false, &mut Vec::new())
}

/// The content of tree path `rel` under `dir` (`.`: `dir` itself, a
/// single-file output), if it is still a regular file with `digest`; opened as
/// [`compare_tree`] opens it, never through a symlink.
pub fn read_unchanged(dir: &Path, rel: &str, digest: &Digest) -> Option<Vec<u8>> {
    match load(dir, rel, digest, false) {
        Ok(Content::Bytes(b)) => Some(b.into_owned()),
        _ => None,
    }
}
