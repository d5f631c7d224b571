//! The values that changed in small JSON, CSV and TSV outputs: the numeric
//! comparison `exprun verify` makes ([`crate::verify::compare`]), with its
//! tolerance rules, on the two runs' files where they still lie with the
//! digests their records give. Unlike the rest of the diff, this reads files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::trees::{self, FileChange};
use super::{ChangeKind, RecordDiff};
use crate::record::{DataRecord, RunRecord};
use crate::verify::compare::{self, Tolerances, ValueChange};

/// Files larger than this (either side) get no values: "small" outputs only.
pub const MAX_VALUES_BYTES: u64 = 1 << 20;

/// The values that changed in one output file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Values {
    /// Every value that differs, within its tolerance or not, in document order.
    pub changes: Vec<ValueChange>,
    /// How many more differ than are listed.
    pub left_out: u64,
    /// A tolerance applies to the file and every value is within it.
    pub within_tolerance: bool,
    /// Why the values could not be shown, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// Where a run's outputs can be read: their host paths for a local run; for
/// a fetched one, only what lies in its artifact.
pub struct Place<'a> {
    /// The record.
    pub record: &'a RunRecord,
    /// `runs/<id>/artifact` for a fetched run.
    pub artifact: Option<PathBuf>,
}

impl Place<'_> {
    fn dir(&self, d: &DataRecord) -> Option<PathBuf> {
        match &self.artifact {
            Some(a) if !d.source.starts_with(a) => None,
            _ => Some(d.source.clone()),
        }
    }
}

/// For each output file changed between `a` and `b` that is JSON, CSV or TSV
/// and at most [`MAX_VALUES_BYTES`] on both sides, its values, keyed by the
/// path of its change in the diff (`outputs[/out].files[metrics.json]`).
pub fn output_values(a: &Place<'_>, b: &Place<'_>, tol: &Tolerances) -> BTreeMap<String, Values> {
    let mut out = BTreeMap::new();
    for x in &a.record.outputs {
        let Some(y) = b.record.outputs.iter().find(|y| y.destination == x.destination) else { continue };
        let (Some(ta), Some(tb)) = (&x.tree, &y.tree) else { continue };
        for c in trees::tree_changes(ta, tb) {
            if let Some(v) = file_values(&c, (a.dir(x), b.dir(y)), &x.destination, tol) {
                let key = format!("outputs[{}].files[{}]", x.destination.display(), c.path);
                out.insert(key, v);
            }
        }
    }
    out
}

fn file_values(
    c: &FileChange,
    (dir_a, dir_b): (Option<PathBuf>, Option<PathBuf>),
    destination: &Path,
    tol: &Tolerances,
) -> Option<Values> {
    let (ChangeKind::Changed, Some(ea), Some(eb)) = (c.change, &c.a, &c.b) else { return None };
    if ea.kind != "file" || eb.kind != "file" || ea.digest == eb.digest {
        return None;
    }
    let small = |s: Option<u64>| s.is_some_and(|s| s <= MAX_VALUES_BYTES);
    if !small(ea.size) || !small(eb.size) {
        return None;
    }
    let rel = match c.path.as_str() {
        "." => destination.file_name().map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned()),
        p => p.to_string(),
    };
    let abs = match c.path.as_str() {
        "." => destination.display().to_string(),
        p => format!("{}/{p}", destination.display().to_string().trim_end_matches('/')),
    };
    if !by_name(&rel) {
        return None;
    }
    let read = |dir: Option<PathBuf>, e: &crate::record::files::FileEntry| {
        dir.zip(e.digest.as_ref()).and_then(|(d, digest)| compare::read_unchanged(&d, &c.path, digest))
    };
    let (Some(xa), Some(xb)) = (read(dir_a, ea), read(dir_b, eb)) else {
        return Some(Values {
            changes: Vec::new(),
            left_out: 0,
            within_tolerance: false,
            unavailable: Some(
                "values not shown: a run's file is gone or changed since it was recorded".into(),
            ),
        });
    };
    let report = compare::value_changes(&rel, &abs, &xa, &xb, tol)?;
    let applies = !tol.is_exact();
    Some(Values {
        within_tolerance: applies && report.passed(),
        changes: report.changes,
        left_out: report.changes_left_out,
        unavailable: None,
    })
}

/// JSON, CSV or TSV by the file's name.
fn by_name(rel: &str) -> bool {
    let ext = rel.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    matches!(ext.as_deref(), Some("json" | "csv" | "tsv"))
}

impl RecordDiff {
    /// Put `values` on the outcome changes they belong to, at most `limit`
    /// values each (`None`: all).
    pub fn add_values(&mut self, mut values: BTreeMap<String, Values>, limit: Option<usize>) {
        for c in &mut self.outcome {
            if let Some(mut v) = values.remove(&c.path) {
                if let Some(n) = limit.filter(|n| v.changes.len() > *n) {
                    v.left_out += (v.changes.len() - n) as u64;
                    v.changes.truncate(n);
                }
                c.values = Some(v);
            }
        }
    }
}

/// The lines under a file's change: one per value, then how many more.
pub(super) fn render(v: &Values, out: &mut String) {
    use crate::record::for_terminal as t;
    if let Some(why) = &v.unavailable {
        out.push_str(&format!("    ({})\n", t(why)));
    }
    for c in &v.changes {
        let within = if c.within { " (within tolerance)" } else { "" };
        out.push_str(&format!("    {}: {}{within}\n", t(&c.location), t(&c.what)));
    }
    if v.left_out > 0 {
        out.push_str(&format!("    ... {} more values differ\n", v.left_out));
    }
    if v.within_tolerance {
        out.push_str("    every value within the declared tolerance\n");
    }
}
