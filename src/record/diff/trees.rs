//! Inputs and outputs: per-file changes of their trees, found by a merge of the
//! two sorted listings as they lie in the parsed records (nothing is copied);
//! and stdout and stderr, by size and digest.

use std::cmp::Ordering;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::sections::Sections;
use super::walk::{keyed_by, kind_of, union_keys};
use super::{Change, ChangeKind};
use crate::record::files::{FileEntry, TreeDigest};
use crate::record::DataRecord;

/// Inputs or outputs from a record given as JSON; an element that is not a
/// data record counts as one without a digest.
pub(super) fn from_value(v: Value) -> Vec<DataRecord> {
    let Value::Array(list) = v else { return Vec::new() };
    list.into_iter()
        .map(|mut x| {
            let text = |x: &Value, k: &str| x.get(k).and_then(Value::as_str).map(str::to_string);
            let tree = x.get_mut("tree").map(Value::take).and_then(|t| serde_json::from_value(t).ok());
            DataRecord {
                source: PathBuf::from(text(&x, "source").unwrap_or_default()),
                destination: PathBuf::from(text(&x, "destination").unwrap_or_else(|| "?".into())),
                tree,
                error: text(&x, "error"),
            }
        })
        .collect()
}

/// What a tree is, in a few fields, for a [`Change`] (never the listing).
fn tree_summary(d: &DataRecord) -> Value {
    match &d.tree {
        Some(t) => json!({"digest": t.digest, "files": t.files, "bytes": t.bytes}),
        None => json!({"error": d.error}),
    }
}

/// An input or output in a few fields, for a [`Change`].
fn data_summary(d: &DataRecord) -> Value {
    json!({"source": d.source, "destination": d.destination, "tree": tree_summary(d)})
}

/// Inputs or outputs, by destination: per-file changes of their trees. Each
/// destination is a section (`outputs[/out]`).
pub(super) fn data_changes(field: &str, label: &str, a: &[DataRecord], b: &[DataRecord], out: &mut Sections) {
    fn by_destination(list: &[DataRecord]) -> std::collections::BTreeMap<String, &DataRecord> {
        keyed_by(list.iter().map(|d| (d.destination.to_string_lossy().into_owned(), d)))
    }
    let (ma, mb) = (by_destination(a), by_destination(b));
    for k in union_keys(&ma, &mb) {
        let path = format!("{field}[{k}]");
        let (x, y) = (ma.get(k).copied(), mb.get(k).copied());
        let (Some(x), Some(y)) = (x, y) else {
            out.add(&path, || {
                let (a, b) =
                    (x.map(data_summary).unwrap_or_default(), y.map(data_summary).unwrap_or_default());
                let change = kind_of(&a, &b);
                let verb = if change == ChangeKind::Added { "only in b" } else { "only in a" };
                Change::new(path.clone(), change, a, b, format!("{label} {k}: {verb}"))
            });
            continue;
        };
        match (&x.tree, &y.tree) {
            (Some(ta), Some(tb)) => {
                let mut files = 0u64;
                for_each_tree_change(ta, tb, |p, ea, eb, change| {
                    files += 1;
                    out.add(&path, || {
                        let value = |e: Option<&FileEntry>| {
                            e.and_then(|e| serde_json::to_value(e).ok()).unwrap_or_default()
                        };
                        let what = describe(ea, eb);
                        Change::new(
                            format!("{path}.files[{p}]"),
                            change,
                            value(ea),
                            value(eb),
                            format!("{label} {k}: {p} {what}"),
                        )
                    });
                });
                // Entries alike under two schemes (a record from before Merkle
                // digests) are the same tree.
                if files == 0 && ta.scheme == tb.scheme && ta.digest != tb.digest {
                    out.add(&path, || {
                        Change::new(
                            format!("{path}.tree.digest"),
                            ChangeKind::Changed,
                            Value::String(ta.digest.to_string()),
                            Value::String(tb.digest.to_string()),
                            format!("{label} {k}: tree digest {} -> {}", ta.digest, tb.digest),
                        )
                    });
                }
            }
            (ta, tb) => {
                let describe = |t: &Option<TreeDigest>, d: &DataRecord| match t {
                    Some(t) => format!("{} ({} files)", t.digest.short(), t.files),
                    None => format!("no digest ({})", d.error.as_deref().unwrap_or("not taken")),
                };
                let (da, db) = (describe(ta, x), describe(tb, y));
                if da != db {
                    out.add(&path, || {
                        Change::new(
                            format!("{path}.tree"),
                            ChangeKind::Changed,
                            tree_summary(x),
                            tree_summary(y),
                            format!("{label} {k}: {da} -> {db}"),
                        )
                    });
                }
            }
        }
    }
}

/// A tree's entries in path order: as they are when sorted, as the record
/// keeps them; sorted here (references only) when a record is not.
fn in_order(t: &TreeDigest) -> Vec<&FileEntry> {
    let mut v: Vec<&FileEntry> = t.entries.iter().collect();
    if !v.is_sorted_by(|x, y| x.path <= y.path) {
        v.sort_by(|x, y| x.path.cmp(&y.path));
    }
    v
}

/// Call `f` for each entry that differs between two trees, in path order:
/// a merge of the two sorted listings.
fn for_each_tree_change<'a>(
    a: &'a TreeDigest,
    b: &'a TreeDigest,
    mut f: impl FnMut(&'a str, Option<&'a FileEntry>, Option<&'a FileEntry>, ChangeKind),
) {
    let (la, lb) = (in_order(a), in_order(b));
    let (mut i, mut j) = (0, 0);
    loop {
        let (x, y) = (la.get(i).copied(), lb.get(j).copied());
        let order = match (x, y) {
            (None, None) => return,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.path.cmp(&y.path),
        };
        match (order, x, y) {
            (Ordering::Less, Some(x), _) => {
                f(&x.path, Some(x), None, ChangeKind::Removed);
                i += 1;
            }
            (Ordering::Greater, _, Some(y)) => {
                f(&y.path, None, Some(y), ChangeKind::Added);
                j += 1;
            }
            (_, Some(x), Some(y)) => {
                if x != y {
                    f(&x.path, Some(x), Some(y), ChangeKind::Changed);
                }
                i += 1;
                j += 1;
            }
            _ => return,
        }
    }
}

/// One file that differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Path relative to the tree's root.
    pub path: String,
    /// Added, removed or changed.
    pub change: ChangeKind,
    /// The entry in A.
    pub a: Option<FileEntry>,
    /// The entry in B.
    pub b: Option<FileEntry>,
    /// What changed, for people: `added (3 B)`, `changed (120 B -> 121 B)`,
    /// `mode 0644 -> 0600`.
    pub what: String,
}

/// The files that differ between two trees, sorted by path.
pub fn tree_changes(a: &TreeDigest, b: &TreeDigest) -> Vec<FileChange> {
    let mut out = Vec::new();
    for_each_tree_change(a, b, |path, x, y, change| {
        out.push(FileChange {
            path: path.to_string(),
            change,
            a: x.cloned(),
            b: y.cloned(),
            what: describe(x, y),
        });
    });
    out
}

/// What happened to one entry.
fn describe(x: Option<&FileEntry>, y: Option<&FileEntry>) -> String {
    match (x, y) {
        (Some(x), Some(y)) => entry_change(x, y),
        (None, Some(y)) => format!("added ({})", entry_summary(y)),
        (Some(x), None) => format!("removed (was {})", entry_summary(x)),
        (None, None) => String::new(),
    }
}

fn entry_summary(e: &FileEntry) -> String {
    match e.kind.as_str() {
        "file" => size(e.size.unwrap_or(0)),
        "dir" => "directory".into(),
        "symlink" => format!("symlink -> {}", e.target.as_deref().unwrap_or("?")),
        other => other.to_string(),
    }
}

fn entry_change(x: &FileEntry, y: &FileEntry) -> String {
    if x.kind != y.kind {
        return format!("changed ({} -> {})", entry_summary(x), entry_summary(y));
    }
    let mut parts = Vec::new();
    if x.digest != y.digest || x.size != y.size {
        let (sa, sb) = (x.size.unwrap_or(0), y.size.unwrap_or(0));
        if sa != sb {
            parts.push(format!("changed ({} -> {})", size(sa), size(sb)));
        } else {
            let d = |e: &FileEntry| {
                e.digest.as_ref().map(|d| format!("sha256:{}", d.short())).unwrap_or_default()
            };
            parts.push(format!("changed ({}, {} -> {})", size(sa), d(x), d(y)));
        }
    }
    if x.target != y.target {
        parts.push(format!(
            "symlink target {} -> {}",
            x.target.as_deref().unwrap_or("?"),
            y.target.as_deref().unwrap_or("?")
        ));
    }
    if x.mode != y.mode {
        let m = |m: Option<u32>| m.map(|m| format!("{m:04o}")).unwrap_or_else(|| "none".into());
        parts.push(format!("mode {} -> {}", m(x.mode), m(y.mode)));
    }
    match (&x.unread, &y.unread) {
        (None, Some(why)) => parts.push(format!("not digested in b ({why})")),
        (Some(why), None) => parts.push(format!("not digested in a ({why})")),
        (Some(p), Some(q)) if p != q => parts.push(format!("not digested ({p} -> {q})")),
        _ => {}
    }
    if parts.is_empty() {
        parts.push("changed".into());
    }
    parts.join(", ")
}

/// stdout or stderr: one line with size and digest.
pub(super) fn stream_change(key: &str, a: &Value, b: &Value, out: &mut Sections) {
    if a == b {
        return;
    }
    let describe = |v: &Value| {
        if v.is_null() {
            return "none".to_string();
        }
        let bytes = v.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        let digest = v.get("digest").and_then(Value::as_str).unwrap_or("?");
        format!("{} {}", size(bytes), short_digest(digest))
    };
    out.add(key, || {
        Change::new(
            key.to_string(),
            kind_of(a, b),
            a.clone(),
            b.clone(),
            format!("{key}: {} -> {}", describe(a), describe(b)),
        )
    });
}

fn size(n: u64) -> String {
    format!("{n} B")
}

/// `sha256:` and the first 12 hex characters.
fn short_digest(d: &str) -> String {
    match d.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 && hex.is_char_boundary(12) => format!("sha256:{}", &hex[..12]),
        _ => d.to_string(),
    }
}
