//! `exprun runs diff`: what differs between two run records, context and outputs.
//!
//! The *context* is everything that went into a run: image, argv, environment,
//! mounts, inputs, limits, seccomp profile, exprun itself, the host, and any other
//! field of the record. It is compared on the records' JSON, so fields added to
//! [`RunRecord`] later are covered without changes here; only the fields that
//! differ on every run (ids, times, usage, forwarded signals) are ignored, and the
//! run id is blanked out of every string (cgroup paths, the container directory).
//!
//! The *outcome* is what the run produced: status, exit code or signal, stdout and
//! stderr digests, and the output trees file by file.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::files::{FileEntry, TreeDigest};
use super::RunRecord;

/// Fields never compared: they differ on every run, only name the run, or
/// restate what the compared fields hold (`command_line` and `request` are the
/// options as given; their effect is in `spec`, `cgroup`, `inputs`, ...; `drift`
/// is a replay's own comparison with its original). Dotted paths from the top of
/// the record.
pub const IGNORED: &[&str] = &[
    "run_id",
    "name",
    "command_line",
    "request",
    "replay_of",
    "drift",
    "time",
    "usage",
    "signals",
    "host.boot_id",
    "host.uptime_seconds",
];

/// What the run id is replaced with in every string before comparing.
const RUN_ID_PLACEHOLDER: &str = "<run-id>";

/// Lists whose order means nothing (compared as sets).
fn unordered(path: &str) -> bool {
    path.starts_with("spec.process.capabilities.") || path == "host.cgroup_controllers"
}

/// How one item differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// In both, different.
    Changed,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Where: a dotted path into the record; `[key]` selects a list element by
    /// its key (`spec.mounts[/out].source`, `outputs[/out].files[a.csv]`).
    pub path: String,
    /// Added, removed or changed.
    pub change: ChangeKind,
    /// The value in A (`null` when absent).
    pub a: Value,
    /// The value in B (`null` when absent).
    pub b: Value,
    /// One line for people.
    pub text: String,
}

/// The differences between two records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordDiff {
    /// Run id of A.
    pub a: String,
    /// Run id of B.
    pub b: String,
    /// What went into the runs.
    pub context: Vec<Change>,
    /// What the runs produced.
    pub outcome: Vec<Change>,
    /// No difference in context.
    pub same_context: bool,
    /// No difference in outcome.
    pub same_outcome: bool,
}

impl RecordDiff {
    /// The records agree in context and outcome.
    pub fn same(&self) -> bool {
        self.same_context && self.same_outcome
    }

    /// The human form: a header, then one line per difference, grouped; each
    /// line escaped for a terminal, as the records' values are anyone's.
    pub fn render(&self) -> String {
        use super::for_terminal as t;
        let mut s = format!("a: {}\nb: {}\n", t(&self.a), t(&self.b));
        for (label, list) in [("context", &self.context), ("outcome", &self.outcome)] {
            if list.is_empty() {
                s.push_str(&format!("no differences in {label}\n"));
            } else {
                s.push_str(&format!("{label}:\n"));
                for c in list {
                    s.push_str("  ");
                    s.push_str(&t(&c.text));
                    s.push('\n');
                }
            }
        }
        s
    }
}

/// Compare two records.
pub fn diff(a: &RunRecord, b: &RunRecord) -> Result<RecordDiff, serde_json::Error> {
    Ok(diff_values(&serde_json::to_value(a)?, &serde_json::to_value(b)?))
}

/// Compare two records given as JSON (any schema version: unknown fields are
/// compared generically).
pub fn diff_values(a: &Value, b: &Value) -> RecordDiff {
    let id = |v: &Value| v.get("run_id").and_then(Value::as_str).unwrap_or_default().to_string();
    let (id_a, id_b) = (id(a), id(b));
    let mut a = a.clone();
    let mut b = b.clone();
    blank_run_id(&mut a, &id_a);
    blank_run_id(&mut b, &id_b);
    for p in IGNORED {
        take(&mut a, p);
        take(&mut b, p);
    }

    // The outcome, taken out of the values so the context walk does not see it.
    let mut outcome = Vec::new();
    for key in ["status", "exit"] {
        walk(key, &take(&mut a, key), &take(&mut b, key), &mut outcome);
    }
    for key in ["stdout", "stderr"] {
        stream_change(key, &take(&mut a, key), &take(&mut b, key), &mut outcome);
    }
    let (outs_a, outs_b) = (take(&mut a, "outputs"), take(&mut b, "outputs"));
    data_changes("outputs", "output", &outs_a, &outs_b, &mut outcome);

    // The context: the parts with a shape of their own first, then the rest.
    let mut context = Vec::new();
    let args = (take(&mut a, "spec.process.args"), take(&mut b, "spec.process.args"));
    if args.0 != args.1 {
        context.push(Change {
            path: "spec.process.args".into(),
            change: kind_of(&args.0, &args.1),
            text: format!("argv: {} -> {}", shell_words(&args.0), shell_words(&args.1)),
            a: args.0,
            b: args.1,
        });
    }
    env_changes(&take(&mut a, "spec.process.env"), &take(&mut b, "spec.process.env"), &mut context);
    mount_changes(&take(&mut a, "spec.mounts"), &take(&mut b, "spec.mounts"), &mut context);
    let (ins_a, ins_b) = (take(&mut a, "inputs"), take(&mut b, "inputs"));
    data_changes("inputs", "input", &ins_a, &ins_b, &mut context);
    walk("", &a, &b, &mut context);
    context.sort_by_key(|c| rank(&c.path));

    RecordDiff {
        a: id_a,
        b: id_b,
        same_context: context.is_empty(),
        same_outcome: outcome.is_empty(),
        context,
        outcome,
    }
}

/// The order of context sections in the output.
fn rank(path: &str) -> usize {
    const ORDER: &[&str] = &[
        "schema",
        "image",
        "spec.process.args",
        "executable",
        "spec.process.env",
        "spec.process",
        "spec.hostname",
        "cgroup",
        "spec.mounts",
        "inputs",
        "seccomp_digest",
        "spec",
        "exprun",
        "host",
    ];
    ORDER
        .iter()
        .position(|p| path == *p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}[")))
        .unwrap_or(ORDER.len())
}

/// Replace the run id in every string (cgroup paths, the container directory).
fn blank_run_id(v: &mut Value, id: &str) {
    if id.is_empty() {
        return;
    }
    match v {
        Value::String(s) if s.contains(id) => *s = s.replace(id, RUN_ID_PLACEHOLDER),
        Value::Array(list) => list.iter_mut().for_each(|x| blank_run_id(x, id)),
        Value::Object(map) => map.values_mut().for_each(|x| blank_run_id(x, id)),
        _ => {}
    }
}

/// Remove the field at a dotted path and return it (`null` if absent).
fn take(v: &mut Value, path: &str) -> Value {
    let (parent, key) = match path.rsplit_once('.') {
        Some((p, k)) => (p.split('.').try_fold(v, |v, k| v.get_mut(k)), k),
        None => (Some(v), path),
    };
    parent.and_then(Value::as_object_mut).and_then(|m| m.remove(key)).unwrap_or(Value::Null)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn kind_of(a: &Value, b: &Value) -> ChangeKind {
    match (a.is_null(), b.is_null()) {
        (true, false) => ChangeKind::Added,
        (false, true) => ChangeKind::Removed,
        _ => ChangeKind::Changed,
    }
}

fn is_scalar(v: &Value) -> bool {
    !(v.is_array() || v.is_object())
}

/// A value on one line, shortened.
fn show(v: &Value) -> String {
    let s = match v {
        Value::Null => "none".to_string(),
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    shorten(&s, 120)
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

/// The generic walk: objects by key, lists of scalars as multisets (or sets),
/// other lists by index, scalars by value.
fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    let empty_map = Value::Object(Map::new());
    let empty_list = Value::Array(Vec::new());
    match (a, b) {
        (Value::Object(_), Value::Object(_))
        | (Value::Object(_), Value::Null)
        | (Value::Null, Value::Object(_)) => {
            let (ma, mb) = (a.as_object().or(empty_map.as_object()), b.as_object().or(empty_map.as_object()));
            let (Some(ma), Some(mb)) = (ma, mb) else { return };
            let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(
                    &join(path, k),
                    ma.get(k).unwrap_or(&Value::Null),
                    mb.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(_), Value::Array(_))
        | (Value::Array(_), Value::Null)
        | (Value::Null, Value::Array(_)) => {
            let la = a.as_array().or(empty_list.as_array()).map(Vec::as_slice).unwrap_or_default();
            let lb = b.as_array().or(empty_list.as_array()).map(Vec::as_slice).unwrap_or_default();
            if la.iter().chain(lb).all(is_scalar) {
                scalar_list(path, la, lb, out);
            } else if let Some(field) = list_key(la, lb) {
                let (ka, kb) = (keyed(a, field), keyed(b, field));
                for k in union_keys(&ka, &kb) {
                    element(
                        &format!("{path}[{k}]"),
                        ka.get(k).copied().unwrap_or(&Value::Null),
                        kb.get(k).copied().unwrap_or(&Value::Null),
                        out,
                    );
                }
            } else {
                for i in 0..la.len().max(lb.len()) {
                    element(
                        &format!("{path}[{i}]"),
                        la.get(i).unwrap_or(&Value::Null),
                        lb.get(i).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
        }
        _ => out.push(Change {
            path: path.to_string(),
            change: kind_of(a, b),
            text: format!("{path}: {} -> {}", show(a), show(b)),
            a: a.clone(),
            b: b.clone(),
        }),
    }
}

/// An element of a list: compared field by field when in both lists, one line
/// with the whole element when in one only.
fn element(path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    if a.is_null() == b.is_null() {
        return walk(path, a, b, out);
    }
    let change = kind_of(a, b);
    let (verb, v) = if change == ChangeKind::Added { ("added", b) } else { ("removed", a) };
    out.push(Change {
        path: path.to_string(),
        change,
        text: format!("{path}: {verb} {}", shorten(&v.to_string(), 160)),
        a: a.clone(),
        b: b.clone(),
    });
}

/// Fields that name the elements of a list of objects, in order of preference.
const LIST_KEYS: &[&str] = &["destination", "name", "type", "source", "path", "item"];

/// The field that names every element of both lists, uniquely within each,
/// so elements are matched by it (`spec.process.rlimits[RLIMIT_NOFILE].soft`,
/// `determinism.pins[tz].value`) rather than by position.
fn list_key(a: &[Value], b: &[Value]) -> Option<&'static str> {
    LIST_KEYS.iter().copied().find(|field| {
        [a, b].iter().all(|list| {
            let names: Vec<&str> =
                list.iter().filter_map(|x| x.get(*field).and_then(Value::as_str)).collect();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            names.len() == list.len() && unique.len() == names.len()
        })
    })
}

/// Lists of scalars: one line per element only in A or only in B; a line for a
/// changed order unless the order means nothing.
fn scalar_list(path: &str, a: &[Value], b: &[Value], out: &mut Vec<Change>) {
    let mut only_b: Vec<&Value> = b.iter().collect();
    let mut only_a = Vec::new();
    for x in a {
        match only_b.iter().position(|y| *y == x) {
            Some(i) => {
                only_b.remove(i);
            }
            None => only_a.push(x),
        }
    }
    if only_a.is_empty() && only_b.is_empty() {
        if !unordered(path) {
            out.push(Change {
                path: path.to_string(),
                change: ChangeKind::Changed,
                a: Value::Array(a.to_vec()),
                b: Value::Array(b.to_vec()),
                text: format!("{path}: order changed"),
            });
        }
        return;
    }
    for x in only_a {
        out.push(Change {
            path: path.to_string(),
            change: ChangeKind::Removed,
            a: x.clone(),
            b: Value::Null,
            text: format!("{path}: removed {}", show(x)),
        });
    }
    for x in only_b {
        out.push(Change {
            path: path.to_string(),
            change: ChangeKind::Added,
            a: Value::Null,
            b: x.clone(),
            text: format!("{path}: added {}", show(x)),
        });
    }
}

/// argv as a shell would read it.
fn shell_words(v: &Value) -> String {
    let Some(list) = v.as_array() else { return show(v) };
    let words: Vec<String> = list
        .iter()
        .map(|w| {
            let w = w.as_str().map(str::to_string).unwrap_or_else(|| w.to_string());
            let plain =
                !w.is_empty() && w.bytes().all(|c| c.is_ascii_alphanumeric() || b"_./=:,+@%-".contains(&c));
            if plain {
                w
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect();
    shorten(&words.join(" "), 160)
}

/// Environment, per variable (first definition wins, as for getenv).
fn env_changes(a: &Value, b: &Value, out: &mut Vec<Change>) {
    fn vars(v: &Value) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for e in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
            let (k, val) = e.split_once('=').unwrap_or((e, ""));
            m.entry(k.to_string()).or_insert_with(|| val.to_string());
        }
        m
    }
    let (va, vb) = (vars(a), vars(b));
    let mut keys: Vec<&String> = va.keys().chain(vb.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (x, y) = (va.get(k), vb.get(k));
        let text = match (x, y) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => format!("env {k}: {} -> {}", shorten(x, 100), shorten(y, 100)),
            (None, Some(y)) => format!("env {k}: added ({k}={})", shorten(y, 100)),
            (Some(x), None) => format!("env {k}: removed (was {k}={})", shorten(x, 100)),
            (None, None) => continue,
        };
        let val = |v: Option<&String>| v.map(|s| Value::String(s.clone())).unwrap_or(Value::Null);
        let (a, b) = (val(x), val(y));
        out.push(Change { path: format!("spec.process.env.{k}"), change: kind_of(&a, &b), a, b, text });
    }
}

/// A list of objects keyed by one of their string fields; a repeated key gets
/// ` #2`, ` #3`, ... so nothing is lost.
fn keyed<'a>(v: &'a Value, field: &str) -> BTreeMap<String, &'a Value> {
    let mut m = BTreeMap::new();
    for x in v.as_array().into_iter().flatten() {
        let base = x.get(field).and_then(Value::as_str).unwrap_or("?").to_string();
        let mut key = base.clone();
        let mut n = 1;
        while m.contains_key(&key) {
            n += 1;
            key = format!("{base} #{n}");
        }
        m.insert(key, x);
    }
    m
}

fn union_keys<'a, T>(a: &'a BTreeMap<String, T>, b: &'a BTreeMap<String, T>) -> Vec<&'a String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Mounts, by destination.
fn mount_changes(a: &Value, b: &Value, out: &mut Vec<Change>) {
    let (ma, mb) = (keyed(a, "destination"), keyed(b, "destination"));
    for k in union_keys(&ma, &mb) {
        let path = format!("spec.mounts[{k}]");
        match (ma.get(k), mb.get(k)) {
            (Some(x), Some(y)) => walk(&path, x, y, out),
            (x, y) => {
                let (a, b) = (
                    x.map(|v| (*v).clone()).unwrap_or_default(),
                    y.map(|v| (*v).clone()).unwrap_or_default(),
                );
                let m = if a.is_null() { &b } else { &a };
                let what = format!(
                    "{} {}",
                    m.get("type").and_then(Value::as_str).unwrap_or("?"),
                    m.get("source").and_then(Value::as_str).unwrap_or("?")
                );
                let change = kind_of(&a, &b);
                let verb = if change == ChangeKind::Added { "added" } else { "removed" };
                out.push(Change { text: format!("mount {k}: {verb} ({what})"), path, change, a, b });
            }
        }
    }
}

/// Inputs or outputs, by destination: per-file changes of their trees.
fn data_changes(field: &str, label: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    let (ma, mb) = (keyed(a, "destination"), keyed(b, "destination"));
    for k in union_keys(&ma, &mb) {
        let path = format!("{field}[{k}]");
        let (x, y) = (ma.get(k).copied(), mb.get(k).copied());
        let (Some(x), Some(y)) = (x, y) else {
            let (a, b) = (x.cloned().unwrap_or_default(), y.cloned().unwrap_or_default());
            let change = kind_of(&a, &b);
            let verb = if change == ChangeKind::Added { "only in b" } else { "only in a" };
            out.push(Change { text: format!("{label} {k}: {verb}"), path, change, a, b });
            continue;
        };
        let tree = |v: &Value| -> Option<TreeDigest> {
            v.get("tree").filter(|t| !t.is_null()).and_then(|t| serde_json::from_value(t.clone()).ok())
        };
        match (tree(x), tree(y)) {
            (Some(ta), Some(tb)) => {
                let files = tree_changes(&ta, &tb);
                if files.is_empty() && ta.digest != tb.digest {
                    out.push(Change {
                        path: format!("{path}.tree.digest"),
                        change: ChangeKind::Changed,
                        a: Value::String(ta.digest.to_string()),
                        b: Value::String(tb.digest.to_string()),
                        text: format!("{label} {k}: tree digest {} -> {}", ta.digest, tb.digest),
                    });
                }
                for f in files {
                    let to_value = |e: &Option<FileEntry>| {
                        e.as_ref().and_then(|e| serde_json::to_value(e).ok()).unwrap_or_default()
                    };
                    out.push(Change {
                        path: format!("{path}.files[{}]", f.path),
                        change: f.change,
                        a: to_value(&f.a),
                        b: to_value(&f.b),
                        text: format!("{label} {k}: {} {}", f.path, f.what),
                    });
                }
            }
            (ta, tb) => {
                let describe = |t: &Option<TreeDigest>, v: &Value| match t {
                    Some(t) => format!("{} ({} files)", t.digest.short(), t.files),
                    None => format!(
                        "no digest ({})",
                        v.get("error").and_then(Value::as_str).unwrap_or("not taken")
                    ),
                };
                let (da, db) = (describe(&ta, x), describe(&tb, y));
                if da != db {
                    out.push(Change {
                        path: format!("{path}.tree"),
                        change: ChangeKind::Changed,
                        a: x.get("tree").cloned().unwrap_or_default(),
                        b: y.get("tree").cloned().unwrap_or_default(),
                        text: format!("{label} {k}: {da} -> {db}"),
                    });
                }
            }
        }
    }
}

/// stdout or stderr: one line with size and digest.
fn stream_change(key: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
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
    out.push(Change {
        path: key.to_string(),
        change: kind_of(a, b),
        text: format!("{key}: {} -> {}", describe(a), describe(b)),
        a: a.clone(),
        b: b.clone(),
    });
}

fn size(n: u64) -> String {
    format!("{n} B")
}

/// `sha256:` and the first 12 hex characters.
fn short_digest(d: &str) -> String {
    match d.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", &hex[..12]),
        _ => d.to_string(),
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
    let ma: BTreeMap<&str, &FileEntry> = a.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mb: BTreeMap<&str, &FileEntry> = b.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut paths: Vec<&str> = ma.keys().chain(mb.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut out = Vec::new();
    for p in paths {
        let (x, y) = (ma.get(p).copied(), mb.get(p).copied());
        let (change, what) = match (x, y) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => (ChangeKind::Changed, entry_change(x, y)),
            (None, Some(y)) => (ChangeKind::Added, format!("added ({})", entry_summary(y))),
            (Some(x), None) => (ChangeKind::Removed, format!("removed (was {})", entry_summary(x))),
            (None, None) => continue,
        };
        out.push(FileChange { path: p.to_string(), change, a: x.cloned(), b: y.cloned(), what });
    }
    out
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
    parts.join(", ")
}

/// A complete record as JSON, for tests here and in `export`.
#[cfg(test)]
pub(crate) fn sample_record(id: &str) -> Value {
    use serde_json::json;
    let d = |s: &str| crate::digest::Digest::of_bytes(s.as_bytes()).to_string();
    let file = |path: &str, content: &str| json!({"path": path, "kind": "file", "size": content.len(), "digest": d(content), "mode": 0o644});
    json!({
        "schema": super::RECORD_SCHEMA,
        "run_id": id,
        "name": null,
        "status": "exited",
        "exprun": {"version": "0.1.0", "binary_digest": d("exprun")},
        "command_line": ["exprun", "run", "-e", "A=1", "busybox:latest", "--", "sh", "-c", "echo 1 > /out/a"],
        "image": {
            "reference": "busybox:latest",
            "name": "busybox:latest",
            "manifest_digest": d("manifest"),
            "config_digest": d("config"),
            "platform": "linux/amd64",
            "layers": [{"digest": d("layer"), "diff_id": d("diff"), "media_type": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 10}]
        },
        "executable": "/bin/sh",
        "spec": {
            "ociVersion": "1.2.0",
            "root": {"path": format!("/r/containers/{id}/rootfs"), "readonly": false},
            "hostname": "exprun",
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": ["sh", "-c", "echo 1 > /out/a"],
                "env": ["PATH=/bin", "A=1", "HF_TOKEN=<redacted sha256:1>"],
                "cwd": "/",
                "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"]}
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/in", "options": ["rbind", "ro"]},
                {"destination": "/out", "type": "bind", "source": "/tmp/o1", "options": ["rbind", "rw"]}
            ]
        },
        "inputs": [{"source": "/in", "destination": "/data", "tree": {
            "digest": d("in-tree"), "files": 1, "bytes": 4, "entries": [file("x.csv", "1,2\n")]}}],
        "outputs": [{"source": "/tmp/o1", "destination": "/out", "tree": {
            "digest": d("out-tree"), "files": 2, "bytes": 4,
            "entries": [file("a", "1\n"), file("b", "x\n"), {"path": "sub", "kind": "dir", "mode": 0o755}]}}],
        "cgroup": {
            "version": "v2",
            "dirs": {"unified": format!("/sys/fs/cgroup/exprun-{id}")},
            "limits": {"memory_bytes": null, "cpu_quota_us": null, "pids_max": 100}
        },
        "host": {
            "kernel_release": "6.1.0", "kernel_version": "#1 SMP", "arch": "x86_64", "cpu_model": "Example CPU",
            "cpu_flags_digest": d("flags"), "cpus_online": 2, "memory_bytes": 1024, "os": "Debian",
            "cgroup_mode": "v2", "cgroup_controllers": ["cpu", "memory"]
        },
        "time": {"created": "2026-01-01T00:00:00Z", "started": "2026-01-01T00:00:01Z",
                 "ended": "2026-01-01T00:00:02Z", "wall_seconds": 0.1},
        "usage": {"peak_memory_bytes": 1, "oom_kills": 0, "cpu_user_us": 5, "cpu_system_us": 6,
                  "pids_limit_hits": 0, "init_max_rss_kib": 7},
        "exit": {"code": 0, "signal": null, "oom_killed": false},
        "stdout": {"digest": d(""), "bytes": 0},
        "stderr": {"digest": d("warning\n"), "bytes": 8},
        "signals": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(path: &str, content: &str, mode: u32) -> Value {
        json!({
            "path": path, "kind": "file", "size": content.len(),
            "digest": crate::digest::Digest::of_bytes(content.as_bytes()).to_string(), "mode": mode
        })
    }

    fn tree(entries: Vec<Value>) -> Value {
        // The tree digest only needs to differ when the entries do.
        let d = crate::digest::Digest::of_bytes(Value::Array(entries.clone()).to_string().as_bytes());
        json!({"digest": d.to_string(), "files": entries.len(), "bytes": 0, "entries": entries})
    }

    fn record(id: &str) -> Value {
        sample_record(id)
    }

    fn texts(list: &[Change]) -> Vec<&str> {
        list.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn a_record_equals_itself_and_run_specific_fields_are_ignored() {
        let a = record("1111");
        let mut b = record("2222");
        b["time"]["wall_seconds"] = json!(7.5);
        b["usage"]["peak_memory_bytes"] = json!(99);
        b["signals"] = json!([{"signal": "SIGTERM"}]);
        b["name"] = json!("other");
        b["command_line"] = json!(["exprun", "--root", "/elsewhere", "run", "img"]);
        b["host"]["boot_id"] = json!("abc");
        b["replay_of"] = json!("1111");
        // Sets serialised in any order.
        b["spec"]["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN", "CAP_KILL"]);
        b["host"]["cgroup_controllers"] = json!(["memory", "cpu"]);
        let d = diff_values(&a, &b);
        assert!(d.same(), "{}", d.render());
        assert_eq!((d.a.as_str(), d.b.as_str()), ("1111", "2222"));
        assert!(d.render().contains("no differences in context"));
        assert!(d.render().contains("no differences in outcome"));
    }

    #[test]
    fn context_differences_are_named_one_line_each() {
        let a = record("1111");
        let mut b = record("2222");
        b["spec"]["process"]["args"] = json!(["sh", "-c", "echo 2 > /out/a"]);
        b["spec"]["process"]["env"] = json!(["PATH=/bin", "A=2", "NEW=x", "HF_TOKEN=<redacted sha256:2>"]);
        b["spec"]["process"]["cwd"] = json!("/work");
        b["spec"]["mounts"][2]["source"] = json!("/tmp/o2");
        b["spec"]["mounts"][2]["options"] = json!(["rbind", "ro"]);
        let other = crate::digest::Digest::of_bytes(b"other");
        b["image"]["manifest_digest"] = json!(other.to_string());
        b["host"]["kernel_release"] = json!("6.18.0");
        b["cgroup"]["limits"]["memory_bytes"] = json!(1048576);
        b["inputs"][0]["tree"] = tree(vec![file("x.csv", "1,3\n", 0o644)]);
        b["determinism"] = json!({"pins": {"SOURCE_DATE_EPOCH": "0"}});
        let d = diff_values(&a, &b);
        let t = texts(&d.context);
        for want in [
            "image.manifest_digest: sha256:",
            "argv: sh -c 'echo 1 > /out/a' -> sh -c 'echo 2 > /out/a'",
            "env A: 1 -> 2",
            "env NEW: added (NEW=x)",
            "env HF_TOKEN: <redacted sha256:1> -> <redacted sha256:2>",
            "spec.process.cwd: / -> /work",
            "cgroup.limits.memory_bytes: none -> 1048576",
            "spec.mounts[/out].source: /tmp/o1 -> /tmp/o2",
            "spec.mounts[/out].options: removed rw",
            "spec.mounts[/out].options: added ro",
            "input /data: x.csv changed (4 B, sha256:",
            "host.kernel_release: 6.1.0 -> 6.18.0",
            "determinism.pins.SOURCE_DATE_EPOCH: none -> 0",
        ] {
            assert!(t.iter().any(|l| l.starts_with(want)), "missing {want:?} in {t:#?}");
        }
        // Grouped: the image first, the host after the spec.
        assert!(t[0].starts_with("image."), "{t:#?}");
        let pos = |p: &str| t.iter().position(|l| l.starts_with(p)).unwrap_or(usize::MAX);
        assert!(pos("argv") < pos("env A") && pos("env A") < pos("host."), "{t:#?}");
        assert!(d.outcome.is_empty() && !d.same_context && d.same_outcome);
        let env = d.context.iter().find(|c| c.path == "spec.process.env.A").unwrap();
        assert_eq!((env.change, &env.a, &env.b), (ChangeKind::Changed, &json!("1"), &json!("2")));
        // The JSON form parses back with the documented keys.
        let j = serde_json::to_value(&d).unwrap();
        for k in ["a", "b", "context", "outcome", "same_context", "same_outcome"] {
            assert!(j.get(k).is_some(), "{k}");
        }
        assert_eq!(j["context"][0]["change"], "changed");
    }

    #[test]
    fn outcome_differences_per_output_file() {
        let a = record("1111");
        let mut b = record("2222");
        b["outputs"][0]["tree"] = tree(vec![file("a", "10\n", 0o600), file("c", "new\n", 0o644)]);
        b["status"] = json!("killed");
        b["exit"] = json!({"code": 137, "signal": "SIGKILL", "oom_killed": true});
        b["stdout"] = json!({"digest": "sha256:53c234e5e8472b6ac51c1ae1cab3fe06fad053beb8ebfd8977b010655bfdd3c3", "bytes": 2});
        let d = diff_values(&a, &b);
        let t = texts(&d.outcome);
        for want in [
            "status: exited -> killed",
            "exit.code: 0 -> 137",
            "exit.signal: none -> SIGKILL",
            "exit.oom_killed: false -> true",
            "stdout: 0 B sha256:e3b0c44298fc -> 2 B sha256:53c234e5e847",
            "output /out: a changed (2 B -> 3 B), mode 0644 -> 0600",
            "output /out: b removed (was 2 B)",
            "output /out: c added (4 B)",
        ] {
            assert!(t.contains(&want), "missing {want:?} in {t:#?}");
        }
        assert!(d.same_context && !d.same_outcome && !d.same());
        let c = d.outcome.iter().find(|c| c.path == "outputs[/out].files[c]").unwrap();
        assert_eq!(c.change, ChangeKind::Added);
        assert_eq!(c.b["size"], 4);
        assert!(c.a.is_null());
    }

    #[test]
    fn missing_trees_and_mounts_on_one_side() {
        let a = record("1111");
        let mut b = record("2222");
        b["outputs"][0]["tree"] = Value::Null;
        b["outputs"][0]["error"] = json!("permission denied");
        b["spec"]["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/v", "type": "bind", "source": "/h"}));
        b["inputs"] = json!([]);
        let d = diff_values(&a, &b);
        let all: Vec<&str> = texts(&d.context).into_iter().chain(texts(&d.outcome)).collect();
        assert!(
            all.iter()
                .any(|l| l.starts_with("output /out: ") && l.ends_with("no digest (permission denied)")),
            "{all:#?}"
        );
        assert!(all.contains(&"mount /v: added (bind /h)"), "{all:#?}");
        assert!(all.contains(&"input /data: only in a"), "{all:#?}");
    }

    #[test]
    fn typed_records_diff_through_serde() {
        let ra: RunRecord = serde_json::from_value(record("1111")).unwrap();
        let mut vb = record("2222");
        vb["host"]["cpus_online"] = json!(64);
        let rb: RunRecord = serde_json::from_value(vb).unwrap();
        assert!(diff(&ra, &ra).unwrap().same());
        let d = diff(&ra, &rb).unwrap();
        assert_eq!(texts(&d.context), ["host.cpus_online: 2 -> 64"], "{}", d.render());
        assert!(d.same_outcome);
        let ta: TreeDigest = serde_json::from_value(tree(vec![file("a", "1", 0o644)])).unwrap();
        assert!(tree_changes(&ta, &ta.clone()).is_empty());
    }

    #[test]
    fn lists_of_named_objects_are_matched_by_name() {
        let mut a = record("1111");
        a["determinism"] =
            json!({"pins": [{"name": "tz", "value": "TZ=UTC"}, {"name": "umask", "value": "022"}]});
        a["spec"]["process"]["rlimits"] =
            json!([{"type": "RLIMIT_CORE", "soft": 0}, {"type": "RLIMIT_NOFILE", "soft": 1024}]);
        let mut b = record("2222");
        b["determinism"] = a["determinism"].clone();
        b["determinism"]["pins"] =
            json!([{"name": "umask", "value": "077"}, {"name": "tz", "value": "TZ=UTC"}]);
        b["spec"]["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 4096}]);
        b["request"] = json!({"name": "other"});
        b["drift"] = json!([{"item": "host.kernel_release"}]);
        let d = diff_values(&a, &b);
        assert_eq!(
            texts(&d.context),
            [
                r#"spec.process.rlimits[RLIMIT_CORE]: removed {"soft":0,"type":"RLIMIT_CORE"}"#,
                "spec.process.rlimits[RLIMIT_NOFILE].soft: 1024 -> 4096",
                "determinism.pins[umask].value: 022 -> 077",
            ]
        );
    }

    #[test]
    fn take_and_blank() {
        let mut v = json!({"a": {"b": 1, "c": "x-123-y"}, "d": ["123"]});
        assert_eq!(take(&mut v, "a.b"), json!(1));
        assert_eq!(take(&mut v, "a.zz"), Value::Null);
        assert_eq!(take(&mut v, "q.r"), Value::Null);
        blank_run_id(&mut v, "123");
        assert_eq!(v, json!({"a": {"c": "x-<run-id>-y"}, "d": ["<run-id>"]}));
    }
}
