//! The generic comparison of two JSON values: objects by key, lists of scalars
//! as multisets (or sets), lists of named objects by name, other lists by
//! index, scalars by value. Every step is linear or n log n in the size of the
//! values, whatever a record holds (repeated names, long lists).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io;

use serde_json::{Map, Value};

use super::sections::Sections;
use super::{Change, ChangeKind};

/// What the run id is replaced with in every string before comparing.
const RUN_ID_PLACEHOLDER: &str = "<run-id>";

/// Lists whose order means nothing (compared as sets).
fn unordered(path: &str) -> bool {
    path.starts_with("spec.process.capabilities.") || path == "host.cgroup_controllers"
}

/// Replace the run id in every string (cgroup paths, the container directory).
pub(super) fn blank_run_id(v: &mut Value, id: &str) {
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
pub(super) fn take(v: &mut Value, path: &str) -> Value {
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

pub(super) fn kind_of(a: &Value, b: &Value) -> ChangeKind {
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
pub(super) fn show(v: &Value) -> String {
    match v {
        Value::Null => "none".to_string(),
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => shorten(s, 120),
        other => preview(other, 120),
    }
}

/// The first `max` characters of `s`, and `…` when there were more.
pub(super) fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// A value as compact JSON, shortened to `max` characters, without writing
/// out more of it than that (an element may be large).
pub(super) fn preview(v: &Value, max: usize) -> String {
    /// A writer that takes a few bytes and then refuses.
    struct Bounded(Vec<u8>, usize);
    impl io::Write for Bounded {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let room = self.1.saturating_sub(self.0.len());
            if room == 0 {
                return Err(io::Error::other("enough"));
            }
            let n = b.len().min(room);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    // At most 4 bytes a character: enough bytes for max + 1 characters.
    let mut w = Bounded(Vec::new(), 4 * (max + 1));
    let _ = serde_json::to_writer(&mut w, v);
    shorten(&String::from_utf8_lossy(&w.0), max)
}

/// The generic walk: objects by key, lists of scalars as multisets (or sets),
/// other lists by name or index, scalars by value.
pub(super) fn walk(path: &str, a: &Value, b: &Value, out: &mut Sections) {
    if a == b {
        return;
    }
    let empty_map = Map::new();
    match (a, b) {
        (Value::Object(_), Value::Object(_))
        | (Value::Object(_), Value::Null)
        | (Value::Null, Value::Object(_)) => {
            let (ma, mb) = (a.as_object().unwrap_or(&empty_map), b.as_object().unwrap_or(&empty_map));
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
            let la = a.as_array().map(Vec::as_slice).unwrap_or_default();
            let lb = b.as_array().map(Vec::as_slice).unwrap_or_default();
            if la.iter().chain(lb).all(is_scalar) {
                scalar_list(path, la, lb, out);
            } else if let Some(field) = list_key(la, lb) {
                let (ka, kb) = (keyed(la, field), keyed(lb, field));
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
        _ => out.add_at(path, || {
            Change::new(
                path.to_string(),
                kind_of(a, b),
                a.clone(),
                b.clone(),
                format!("{path}: {} -> {}", show(a), show(b)),
            )
        }),
    }
}

/// An element of a list: compared field by field when in both lists, one line
/// with the whole element when in one only.
fn element(path: &str, a: &Value, b: &Value, out: &mut Sections) {
    if a.is_null() == b.is_null() {
        return walk(path, a, b, out);
    }
    let change = kind_of(a, b);
    let (verb, v) = if change == ChangeKind::Added { ("added", b) } else { ("removed", a) };
    out.add_at(path, || {
        Change::new(
            path.to_string(),
            change,
            a.clone(),
            b.clone(),
            format!("{path}: {verb} {}", preview(v, 160)),
        )
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
            let mut names: Vec<&str> =
                list.iter().filter_map(|x| x.get(*field).and_then(Value::as_str)).collect();
            let all_named = names.len() == list.len();
            names.sort_unstable();
            names.dedup();
            all_named && names.len() == list.len()
        })
    })
}

/// A list of objects keyed by one of their string fields.
pub(super) fn keyed<'a>(list: &'a [Value], field: &str) -> BTreeMap<String, &'a Value> {
    keyed_by(list.iter().map(|x| (x.get(field).and_then(Value::as_str).unwrap_or("?").to_string(), x)))
}

/// Items keyed by a name; a repeated name gets ` #2`, ` #3`, ... so nothing is
/// lost (counted per name, so a thousand repeats cost a thousand steps).
pub(super) fn keyed_by<'a, T: ?Sized>(
    items: impl Iterator<Item = (String, &'a T)>,
) -> BTreeMap<String, &'a T> {
    let mut m = BTreeMap::new();
    let mut repeats: HashMap<String, usize> = HashMap::new();
    for (base, x) in items {
        let mut key = base.clone();
        if m.contains_key(&key) {
            let n = repeats.entry(base.clone()).or_insert(1);
            while m.contains_key(&key) {
                *n += 1;
                key = format!("{base} #{n}");
            }
        }
        m.insert(key, x);
    }
    m
}

pub(super) fn union_keys<'a, T>(a: &'a BTreeMap<String, T>, b: &'a BTreeMap<String, T>) -> Vec<&'a String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A scalar's sort key: its type, then its text (equal keys for equal values).
fn scalar_key(v: &Value) -> (u8, Cow<'_, str>) {
    match v {
        Value::Null => (0, Cow::Borrowed("")),
        Value::Bool(b) => (1, Cow::Owned(b.to_string())),
        Value::Number(n) => (2, Cow::Owned(n.to_string())),
        Value::String(s) => (3, Cow::Borrowed(s)),
        other => (4, Cow::Owned(other.to_string())),
    }
}

/// Which elements of `a` and of `b` have no equal partner in the other list
/// (as multisets), in their lists' order: by a merge of the sorted lists.
fn unmatched(a: &[Value], b: &[Value]) -> (Vec<usize>, Vec<usize>) {
    type Keyed<'a> = (Vec<(u8, Cow<'a, str>)>, Vec<usize>);
    fn sorted(list: &[Value]) -> Keyed<'_> {
        let keys: Vec<(u8, Cow<'_, str>)> = list.iter().map(scalar_key).collect();
        let mut order: Vec<usize> = (0..list.len()).collect();
        order.sort_by(|&x, &y| keys[x].cmp(&keys[y]).then(x.cmp(&y)));
        (keys, order)
    }
    let ((ka, oa), (kb, ob)) = (sorted(a), sorted(b));
    let (mut matched_a, mut matched_b) = (vec![false; a.len()], vec![false; b.len()]);
    let (mut i, mut j) = (0, 0);
    while i < oa.len() && j < ob.len() {
        match ka[oa[i]].cmp(&kb[ob[j]]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                matched_a[oa[i]] = true;
                matched_b[ob[j]] = true;
                i += 1;
                j += 1;
            }
        }
    }
    let left = |m: Vec<bool>| m.iter().enumerate().filter(|(_, m)| !**m).map(|(i, _)| i).collect();
    (left(matched_a), left(matched_b))
}

/// Lists of scalars: one line per element only in A or only in B; a line for a
/// changed order unless the order means nothing.
fn scalar_list(path: &str, a: &[Value], b: &[Value], out: &mut Sections) {
    let (only_a, only_b) = unmatched(a, b);
    if only_a.is_empty() && only_b.is_empty() {
        if !unordered(path) {
            out.add_at(path, || {
                Change::new(
                    path.to_string(),
                    ChangeKind::Changed,
                    Value::Array(a.to_vec()),
                    Value::Array(b.to_vec()),
                    format!("{path}: order changed"),
                )
            });
        }
        return;
    }
    for i in only_a {
        let x = &a[i];
        out.add_at(path, || {
            Change::new(
                path.to_string(),
                ChangeKind::Removed,
                x.clone(),
                Value::Null,
                format!("{path}: removed {}", show(x)),
            )
        });
    }
    for i in only_b {
        let x = &b[i];
        out.add_at(path, || {
            Change::new(
                path.to_string(),
                ChangeKind::Added,
                Value::Null,
                x.clone(),
                format!("{path}: added {}", show(x)),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn take_and_blank() {
        let mut v = json!({"a": {"b": 1, "c": "x-123-y"}, "d": ["123"]});
        assert_eq!(take(&mut v, "a.b"), json!(1));
        assert_eq!(take(&mut v, "a.zz"), Value::Null);
        assert_eq!(take(&mut v, "q.r"), Value::Null);
        blank_run_id(&mut v, "123");
        assert_eq!(v, json!({"a": {"c": "x-<run-id>-y"}, "d": ["<run-id>"]}));
    }

    #[test]
    fn scalar_lists_are_multisets_in_their_order() {
        let a = [json!("x"), json!(1), json!("y"), json!("x"), json!(true)];
        let b = [json!("y"), json!("x"), json!("z"), json!(1.0), json!(true)];
        let (only_a, only_b) = unmatched(&a, &b);
        assert_eq!(only_a, [1, 3], "the number 1 and the second x");
        assert_eq!(only_b, [2, 3], "z and the number 1.0");
    }

    #[test]
    fn long_lists_and_repeated_names_take_linear_steps() {
        // A hostile record: 200,000 scalars in reverse order, 50,000 elements
        // with the same name. Quadratic steps would take minutes here.
        let a: Vec<Value> = (0..200_000).map(|i| json!(i)).collect();
        let b: Vec<Value> = a.iter().rev().cloned().collect();
        let t = std::time::Instant::now();
        assert_eq!(unmatched(&a, &b), (vec![], vec![]));
        let same: Vec<Value> = (0..50_000).map(|_| json!({"name": "n"})).collect();
        let k = keyed(&same, "name");
        assert_eq!(k.len(), 50_000);
        assert!(k.contains_key("n #50000"));
        assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
    }

    #[test]
    fn previews_stop_early() {
        let big = json!({"list": vec!["0123456789"; 100_000]});
        let p = preview(&big, 30);
        assert_eq!(p.chars().count(), 31, "{p}");
        assert!(p.starts_with(r#"{"list":["0123456789","#) && p.ends_with('…'), "{p}");
        assert_eq!(preview(&json!({"a": 1}), 30), r#"{"a":1}"#);
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("ééé", 3), "ééé");
    }
}
