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
mod report;
#[cfg(test)]
mod tests;
mod text;
mod tolerance;
mod values;

pub use report::*;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
