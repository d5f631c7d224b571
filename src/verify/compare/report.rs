//! What a comparison reports: per file, per numeric value, per output tree,
//! and the verdicts and errors of a comparison.

use serde::{Deserialize, Serialize};

use super::ValueChange;
use crate::digest::Digest;

/// Comparison errors: only bad tolerance options; problems reading files become
/// notes in the report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A `--rtol`, `--atol` or `--tolerance` value does not parse.
    #[error("{option} {value:?}: {why}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is wrong and what form is expected.
        why: String,
    },
}

impl Error {
    pub(super) fn invalid(option: &'static str, value: &str, why: String) -> Error {
        Error::Invalid { option, value: value.to_string(), why }
    }
}

/// What became of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The content differs (beyond any declared tolerance).
    Differs,
    /// The bytes differ but every number is within the declared tolerance: not a difference.
    WithinTolerance,
    /// In the original, not in the replay.
    Missing,
    /// In the replay only.
    Added,
    /// A file became a directory, a symlink, ...
    KindChanged,
    /// Same content (or within tolerance), different permission bits.
    ModeChanged,
    /// A symlink points elsewhere.
    SymlinkTargetChanged,
    /// A side was not digested in full (a bound of the output digest was hit):
    /// neither equal nor different.
    CouldNotCompare,
}

impl Verdict {
    /// The kebab-case name, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Differs => "differs",
            Verdict::WithinTolerance => "within-tolerance",
            Verdict::Missing => "missing",
            Verdict::Added => "added",
            Verdict::KindChanged => "kind-changed",
            Verdict::ModeChanged => "mode-changed",
            Verdict::SymlinkTargetChanged => "symlink-target-changed",
            Verdict::CouldNotCompare => "could-not-compare",
        }
    }

    /// Whether this verdict means the output was not reproduced.
    pub fn is_difference(self) -> bool {
        self != Verdict::WithinTolerance
    }
}

/// One entry (or stream) that is not bit-identical.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileReport {
    /// Path relative to the output root, as in the tree digest (`.` for a
    /// single-file output), or the stream's name (`stdout`, `stderr`).
    pub path: String,
    /// What became of it.
    pub verdict: Verdict,
    /// Kind in the original (`file`, `dir`, `symlink`, `other`), when it differs or is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_kind: Option<String>,
    /// Kind in the replay, when it differs or was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_kind: Option<String>,
    /// Size in the original (files and streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_size: Option<u64>,
    /// Size in the replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_size: Option<u64>,
    /// Permission bits in the original, when they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_mode: Option<u32>,
    /// Permission bits in the replay, when they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_mode: Option<u32>,
    /// Symlink target in the original, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_target: Option<String>,
    /// Symlink target in the replay, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_target: Option<String>,
    /// Offset of the first differing byte, when both contents were available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<u64>,
    /// The numeric comparison, when a tolerance applied and the format allowed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericReport>,
    /// A unified diff excerpt, for text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<DiffExcerpt>,
    /// For a missing or added directory (or a kind change from or to one): how
    /// many entries below it are missing or added too (not reported one by one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entries_inside: u64,
    /// What could not be compared and why, e.g. "original content not available
    /// (changed since the run)".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FileReport {
    /// A stream or file known to differ only by its digest (its content was not
    /// kept): sizes and a note, nothing more.
    pub fn by_digest(path: &str, expected_size: u64, actual_size: u64) -> FileReport {
        let mut f = FileReport::new(path, Verdict::Differs);
        (f.expected_size, f.actual_size) = (Some(expected_size), Some(actual_size));
        f.notes.push("content not kept in full (larger than the capture limit): compared by digest".into());
        f
    }

    pub(super) fn new(path: &str, verdict: Verdict) -> FileReport {
        FileReport {
            path: path.to_string(),
            verdict,
            expected_kind: None,
            actual_kind: None,
            expected_size: None,
            actual_size: None,
            expected_mode: None,
            actual_mode: None,
            expected_target: None,
            actual_target: None,
            first_difference: None,
            numeric: None,
            diff: None,
            entries_inside: 0,
            notes: Vec::new(),
        }
    }
}

/// The format a numeric comparison read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NumericFormat {
    /// A JSON document.
    Json,
    /// Comma-separated values.
    Csv,
    /// Tab-separated values.
    Tsv,
}

/// The result of comparing numbers within tolerances.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumericReport {
    /// The format read.
    pub format: NumericFormat,
    /// How many numbers were compared.
    pub compared: u64,
    /// How many of them were beyond their tolerance.
    pub outside: u64,
    /// The largest deviation (by relative, then absolute difference), if any number differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst: Option<Deviation>,
    /// The first failure in document order; None when the comparison passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Mismatch>,
    /// Every value that differs, within its tolerance or not, in document
    /// order: the first hundred.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ValueChange>,
    /// How many more values differ than [`Self::changes`] lists.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub changes_left_out: u64,
}

impl NumericReport {
    /// Whether every number was within tolerance and everything else equal.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// How far one number moved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deviation {
    /// A JSON path (`$.runs[0].loss`) or a CSV cell (`row 3, column 2 (loss)`).
    pub location: String,
    /// The original's value.
    pub expected: f64,
    /// The replay's value.
    pub actual: f64,
    /// `|actual - expected|`.
    pub abs: f64,
    /// `abs / |expected|`; None when the original is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel: Option<f64>,
    /// The largest difference the tolerance allowed there.
    pub allowed: f64,
}

/// Where a numeric comparison failed and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mismatch {
    /// A JSON path or CSV cell; empty for the whole file (e.g. a row count).
    pub location: String,
    /// e.g. `expected "cat", got "dog"` or `expected 0.91, got 0.92: |difference| 0.01 > 1e-6 allowed (...)`.
    pub reason: String,
}

/// A capped unified diff excerpt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiffExcerpt {
    /// Hunks in unified format, without file headers.
    pub text: String,
    /// Whether hunks or lines were left out.
    pub truncated: bool,
}

/// The comparison of one output tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TreeReport {
    /// The output's mount point in the container, e.g. `/out`.
    pub destination: String,
    /// The original's tree digest.
    pub expected_digest: Digest,
    /// The replay's tree digest.
    pub actual_digest: Digest,
    /// Entries in either tree.
    pub entries: u64,
    /// Entries bit-identical (same kind, content, mode, target).
    pub identical: u64,
    /// Files whose bytes differ within the declared tolerances.
    pub within_tolerance: u64,
    /// Entries reported as differences (collapsed entries inside a missing or
    /// added directory not counted).
    pub differing: u64,
    /// Every entry not bit-identical, in path order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileReport>,
    /// Probable mistakes in the tolerances, e.g. a rule that matched no file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The `--tolerance` rules (as given) whose file pattern matched no file of
    /// this tree; see [`unmatched_in_all`] when there are several outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched_rules: Vec<String>,
}

impl TreeReport {
    /// Whether the output was reproduced: nothing differs beyond tolerance.
    pub fn reproduced(&self) -> bool {
        self.files.iter().all(|f| !f.verdict.is_difference())
    }
}

/// The rules unmatched in every one of several outputs' reports: with more
/// than one output, only these are probably typos.
pub fn unmatched_in_all(trees: &[TreeReport]) -> Vec<String> {
    let Some((first, rest)) = trees.split_first() else { return Vec::new() };
    first
        .unmatched_rules
        .iter()
        .filter(|r| rest.iter().all(|t| t.unmatched_rules.contains(r)))
        .cloned()
        .collect()
}
