//! Comparing a replay's outputs with the original run's: bit-exact first, then declared numeric tolerances.
//!
//! Pure library code: the caller runs the replay, digests its outputs, and calls
//! [`compare_tree`] for each output and [`compare_stream`] for stdout and stderr.
//! Every file whose digest matches is the same; every other one gets a
//! [`FileReport`] with a [`Verdict`]. A file whose bytes differ but whose numbers
//! (JSON, CSV, TSV) are all within the declared [`Tolerances`] is
//! [`Verdict::WithinTolerance`] and does not count as a difference.
//!
//! The original's output directory on the host may have changed since the run:
//! its files are used for content comparison (offsets, diffs, numbers) only when
//! their sha256 still equals the recorded digest.

mod csv;
mod json;
mod numeric;
mod render;
#[cfg(test)]
mod tests;
mod text;
mod tolerance;
mod values;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingReader};
use crate::record::files::{FileEntry, TreeDigest};
use tolerance::FileTolerance;
pub use tolerance::{Ignore, JsonPath, Rule, Tolerances};
pub use values::{read_unchanged, value_changes, ValueChange};

/// Files larger than this are compared by digest and first differing byte
/// only: no numbers, no diff.
const MAX_CONTENT: u64 = 64 << 20;
/// Texts larger than this get no diff excerpt.
const MAX_DIFF: usize = 8 << 20;

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
    fn invalid(option: &'static str, value: &str, why: String) -> Error {
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

    fn new(path: &str, verdict: Verdict) -> FileReport {
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

/// Compare the replay's output tree with the original's.
///
/// - `expected`: the original's recorded tree digest.
/// - `expected_dir`: the original output's path on the host (the directory, or
///   the file of a single-file output), if still there; a file in it is used
///   only if its sha256 still equals the recorded digest.
/// - `actual`, `actual_dir`: the replay's tree digest and output path.
/// - `destination`: the output's mount point in the container (e.g. `/out`),
///   for rules written with it (`/out/metrics.json:$.accuracy=1e-6`) and for display.
pub fn compare_tree(
    expected: &TreeDigest,
    expected_dir: Option<&Path>,
    actual: &TreeDigest,
    actual_dir: &Path,
    destination: &Path,
    tol: &Tolerances,
) -> TreeReport {
    let dest = destination.to_string_lossy().into_owned();
    let names = Names { dest: &dest };
    let exp: BTreeMap<&str, &FileEntry> = expected.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let act: BTreeMap<&str, &FileEntry> = actual.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut paths: Vec<&str> = exp.keys().chain(act.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();

    let mut report = TreeReport {
        destination: dest.clone(),
        expected_digest: expected.digest.clone(),
        actual_digest: actual.digest.clone(),
        entries: paths.len() as u64,
        identical: 0,
        within_tolerance: 0,
        differing: 0,
        files: Vec::new(),
        warnings: Vec::new(),
        unmatched_rules: Vec::new(),
    };
    let mut warnings = Vec::new();
    for r in &tol.rules {
        let matched = exp
            .values()
            .chain(act.values())
            .any(|e| e.kind == "file" && r.matches(&names.rel(&e.path), Some(&names.abs(&e.path))));
        if !matched && !r.is_stream_rule() {
            report.unmatched_rules.push(r.spec.clone());
            warnings.push(format!("--tolerance {} matches no file in the output at {dest}", r.spec));
        }
    }

    // An incomplete tree (a bound of the output digest was hit) is never the
    // same as another, even one cut short the same way.
    let cut: Vec<String> = [("original", expected), ("replay", actual)]
        .iter()
        .filter_map(|(side, t)| t.listing_cut().map(|why| format!("{side}: {why}")))
        .collect();
    let whole_same =
        expected.digest == actual.digest && expected.incomplete.is_none() && actual.incomplete.is_none();
    if !cut.is_empty() {
        let mut f = FileReport::new(".", Verdict::CouldNotCompare);
        f.notes = cut;
        report.files.push(f);
    }

    // Directories reported missing or added, by path: entries below them are
    // counted there instead of reported one by one.
    let mut collapsed: HashMap<&str, usize> = HashMap::new();
    for path in paths {
        let (e, a) = (exp.get(path).copied(), act.get(path).copied());
        if whole_same {
            report.identical += 1;
            continue;
        }
        let unread: Vec<String> = [("original", e), ("replay", a)]
            .iter()
            .filter_map(|(side, x)| x.and_then(|x| x.unread.as_ref()).map(|why| format!("{side}: {why}")))
            .collect();
        if !unread.is_empty() {
            let mut f = FileReport::new(path, Verdict::CouldNotCompare);
            (f.expected_size, f.actual_size) = (e.and_then(|e| e.size), a.and_then(|a| a.size));
            f.notes = unread;
            report.files.push(f);
            continue;
        }
        if e.is_none() || a.is_none() {
            if let Some(i) = ancestors(path).find_map(|p| collapsed.get(p).copied()) {
                if let Some(f) = report.files.get_mut(i) {
                    f.entries_inside += 1;
                }
                continue;
            }
        }
        let file = match (e, a) {
            (Some(e), Some(a)) => compare_entry(e, expected_dir, a, actual_dir, &names, tol, &mut warnings),
            (Some(e), None) => Some(one_sided(e, Verdict::Missing)),
            (None, Some(a)) => Some(one_sided(a, Verdict::Added)),
            (None, None) => None,
        };
        match file {
            None => report.identical += 1,
            Some(f) => {
                if matches!(f.verdict, Verdict::Missing | Verdict::Added | Verdict::KindChanged)
                    && (e.is_some_and(|e| e.kind == "dir") || a.is_some_and(|a| a.kind == "dir"))
                {
                    collapsed.insert(path, report.files.len());
                }
                if f.verdict == Verdict::CouldNotCompare {
                } else if f.verdict.is_difference() {
                    report.differing += 1;
                } else {
                    report.within_tolerance += 1;
                }
                report.files.push(f);
            }
        }
    }
    for w in warnings {
        if !report.warnings.contains(&w) {
            report.warnings.push(w);
        }
    }
    report
}

/// The proper ancestors of a relative path, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut p = path;
    std::iter::from_fn(move || {
        let (parent, _) = p.rsplit_once('/')?;
        p = parent;
        Some(parent)
    })
}

/// How an entry's path reads for rules and format detection.
struct Names<'a> {
    dest: &'a str,
}

impl Names<'_> {
    /// Relative to the output root; a single-file output's own name.
    fn rel(&self, path: &str) -> String {
        if path == "." {
            Path::new(self.dest).file_name().map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned())
        } else {
            path.to_string()
        }
    }

    /// In the container, under the mount point.
    fn abs(&self, path: &str) -> String {
        if path == "." {
            self.dest.to_string()
        } else {
            format!("{}/{path}", self.dest.trim_end_matches('/'))
        }
    }
}

fn one_sided(e: &FileEntry, verdict: Verdict) -> FileReport {
    let mut f = FileReport::new(&e.path, verdict);
    if verdict == Verdict::Missing {
        (f.expected_kind, f.expected_size) = (Some(e.kind.clone()), e.size);
    } else {
        (f.actual_kind, f.actual_size) = (Some(e.kind.clone()), e.size);
    }
    f
}

/// Compare one entry present in both trees; None when identical.
fn compare_entry(
    e: &FileEntry,
    expected_dir: Option<&Path>,
    a: &FileEntry,
    actual_dir: &Path,
    names: &Names<'_>,
    tol: &Tolerances,
    warnings: &mut Vec<String>,
) -> Option<FileReport> {
    let mut f = FileReport::new(&e.path, Verdict::Differs);
    if e.kind != a.kind {
        f.verdict = Verdict::KindChanged;
        (f.expected_kind, f.actual_kind) = (Some(e.kind.clone()), Some(a.kind.clone()));
        (f.expected_size, f.actual_size) = (e.size, a.size);
        return Some(f);
    }
    let mode_changed = e.mode != a.mode;
    if mode_changed {
        (f.expected_mode, f.actual_mode) = (e.mode, a.mode);
    }
    let content_verdict = match e.kind.as_str() {
        "symlink" if e.target != a.target => {
            (f.expected_target, f.actual_target) = (e.target.clone(), a.target.clone());
            Verdict::SymlinkTargetChanged
        }
        "file" if e.digest != a.digest => {
            (f.expected_size, f.actual_size) = (e.size, a.size);
            let large = e.size.max(a.size).unwrap_or(0) > MAX_CONTENT;
            let exp = match (expected_dir, &e.digest) {
                (Some(dir), Some(d)) => match load(dir, &e.path, d, large) {
                    Ok(c) => c,
                    Err(Unreadable::Changed) => {
                        Content::Unavailable("original content not available (changed since the run)".into())
                    }
                    Err(Unreadable::Io(err)) => {
                        Content::Unavailable(format!("original content not available ({err})"))
                    }
                },
                _ => Content::Unavailable("original content not available (no original directory)".into()),
            };
            let act = match &a.digest {
                Some(d) => match load(actual_dir, &a.path, d, large) {
                    Ok(c) => c,
                    Err(Unreadable::Changed) => {
                        Content::Unavailable("replay content changed after it was digested".into())
                    }
                    Err(Unreadable::Io(err)) => {
                        Content::Unavailable(format!("replay content not readable: {err}"))
                    }
                },
                None => Content::Unavailable("replay content has no digest".into()),
            };
            let ft = tol.for_file(&names.rel(&e.path), Some(&names.abs(&e.path)));
            compare_content(&mut f, &names.rel(&e.path), exp, act, &ft, false, warnings)
        }
        _ if mode_changed => Verdict::ModeChanged,
        _ => return None,
    };
    f.verdict = match content_verdict {
        Verdict::WithinTolerance if mode_changed => Verdict::ModeChanged,
        v => v,
    };
    Some(f)
}

/// `dir` joined with a tree path (`.` is the root itself).
fn under(root: &Path, path: &str) -> PathBuf {
    if path == "." {
        root.to_path_buf()
    } else {
        root.join(path)
    }
}

/// Content for comparison, loaded only when its digest checks out.
enum Content<'a> {
    /// In memory.
    Bytes(Cow<'a, [u8]>),
    /// Verified, too large to load: compared by streaming.
    Large(PathBuf),
    /// Not available; the note says why.
    Unavailable(String),
}

enum Unreadable {
    Changed,
    Io(io::Error),
}

/// Load the file at tree path `rel` of `dir` if it is still a regular file
/// with the recorded digest. It is opened beneath `dir` without following a
/// symlink anywhere on the way: a tree from elsewhere (a fetched artifact's
/// outputs) may hold links to this host's files, and what they hold is none
/// of the comparison's business.
fn load(dir: &Path, rel: &str, digest: &Digest, large: bool) -> Result<Content<'static>, Unreadable> {
    let changed_or = |e: io::Error| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ELOOP | libc::EXDEV | libc::ENOTDIR) => Unreadable::Changed,
        _ => Unreadable::Io(e),
    };
    let nofollow = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).clone();
    let top = nofollow.open(dir).map_err(changed_or)?;
    // A single-file output is its tree's root, `.`.
    let mut file = match rel {
        "." => top,
        _ => fs::File::from(
            crate::sys::open_beneath(top.as_fd(), Path::new(rel), libc::O_RDONLY | libc::O_NOFOLLOW)
                .map_err(changed_or)?,
        ),
    };
    if !file.metadata().map_err(Unreadable::Io)?.is_file() {
        return Err(Unreadable::Changed);
    }
    let mut reader = HashingReader::new(&mut file);
    let mut bytes = Vec::new();
    if large {
        io::copy(&mut reader, &mut io::sink()).map_err(Unreadable::Io)?;
    } else {
        reader.read_to_end(&mut bytes).map_err(Unreadable::Io)?;
    }
    if reader.finish().0 != *digest {
        return Err(Unreadable::Changed);
    }
    Ok(if large { Content::Large(under(dir, rel)) } else { Content::Bytes(Cow::Owned(bytes)) })
}

/// Compare two differing contents: offset, numbers, diff. Returns
/// [`Verdict::WithinTolerance`] or [`Verdict::Differs`].
fn compare_content(
    f: &mut FileReport,
    name: &str,
    exp: Content<'_>,
    act: Content<'_>,
    ft: &FileTolerance<'_>,
    stream: bool,
    warnings: &mut Vec<String>,
) -> Verdict {
    match (exp, act) {
        (Content::Bytes(e), Content::Bytes(a)) => {
            f.first_difference = text::first_difference(&e, &a);
            f.numeric = numeric::compare(name, &e, &a, ft, stream, warnings);
            if text::is_text(&e) && text::is_text(&a) {
                if e.len().max(a.len()) <= MAX_DIFF {
                    let (es, as_) = (String::from_utf8_lossy(&e), String::from_utf8_lossy(&a));
                    f.diff = Some(text::diff_excerpt(&es, &as_));
                } else {
                    f.notes.push("too large for a diff excerpt".into());
                }
            }
            if f.numeric.as_ref().is_some_and(NumericReport::passed) {
                Verdict::WithinTolerance
            } else {
                Verdict::Differs
            }
        }
        (Content::Large(e), Content::Large(a)) => {
            match text::first_difference_files(&e, &a) {
                Ok(off) => f.first_difference = off,
                Err(err) => f.notes.push(format!("could not read both contents: {err}")),
            }
            f.notes.push(format!(
                "larger than {}: compared by digest and first difference only",
                crate::record::files::size_text(MAX_CONTENT)
            ));
            Verdict::Differs
        }
        (e, a) => {
            for c in [e, a] {
                if let Content::Unavailable(note) = c {
                    f.notes.push(note);
                }
            }
            if ft.applies() {
                f.notes.push("the declared tolerance could not be checked".into());
            }
            Verdict::Differs
        }
    }
}

/// Compare a replay's stream (stdout, stderr) with the original's; None when
/// identical.
///
/// `expected` is the original's content if kept; it is used only if it matches
/// `expected_digest`. Numeric tolerance applies through rules whose file is the
/// stream's `name`, and the general rtol/atol, when the stream is JSON or
/// CSV-like; otherwise the comparison is bit-exact, with a diff excerpt.
pub fn compare_stream(
    name: &str,
    expected_digest: &Digest,
    expected_size: u64,
    expected: Option<&[u8]>,
    actual: &[u8],
    tol: &Tolerances,
) -> Option<FileReport> {
    if Digest::of_bytes(actual) == *expected_digest {
        return None;
    }
    let mut f = FileReport::new(name, Verdict::Differs);
    (f.expected_size, f.actual_size) = (Some(expected_size), Some(actual.len() as u64));
    let exp = match expected {
        Some(b) if Digest::of_bytes(b) == *expected_digest => Content::Bytes(Cow::Borrowed(b)),
        Some(_) => Content::Unavailable(
            "original content not available (it does not match the recorded digest)".into(),
        ),
        None => Content::Unavailable("original content not available (not kept)".into()),
    };
    let ft = tol.for_file(name, None);
    // A stream's report has no warning list: notes carry them (e.g. a JSON path
    // that selects nothing in it).
    let mut warnings = Vec::new();
    f.verdict =
        compare_content(&mut f, name, exp, Content::Bytes(Cow::Borrowed(actual)), &ft, true, &mut warnings);
    f.notes.extend(warnings);
    Some(f)
}
