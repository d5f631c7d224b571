//! The parts of the context with a shape of their own: argv as a shell line,
//! the environment per variable, mounts by destination.

use std::collections::BTreeMap;

use serde_json::Value;

use super::sections::Sections;
use super::walk::{keyed, kind_of, shorten, show, union_keys, walk};
use super::{Change, ChangeKind};

/// argv as a shell would read it, shortened to `max` characters (a long argv
/// is not written out whole first).
fn shell_words(v: &Value, max: usize) -> String {
    let Some(list) = v.as_array() else { return show(v) };
    let mut line = String::new();
    for w in list {
        if line.chars().count() > max {
            break;
        }
        let w = match w.as_str() {
            Some(s) => shorten(s, max + 1),
            None => shorten(&w.to_string(), max + 1),
        };
        let plain =
            !w.is_empty() && w.bytes().all(|c| c.is_ascii_alphanumeric() || b"_./=:,+@%-".contains(&c));
        if !line.is_empty() {
            line.push(' ');
        }
        if plain {
            line.push_str(&w);
        } else {
            line.push_str(&format!("'{}'", w.replace('\'', "'\\''")));
        }
    }
    shorten(&line, max)
}

/// argv: one line with both command lines.
pub(super) fn argv_change(a: &Value, b: &Value, out: &mut Sections) {
    if a == b {
        return;
    }
    let path = "spec.process.args";
    out.add_at(path, || {
        Change::new(
            path.into(),
            kind_of(a, b),
            a.clone(),
            b.clone(),
            format!("argv: {} -> {}", shell_words(a, 160), shell_words(b, 160)),
        )
    });
}

/// Environment, per variable (first definition wins, as for getenv).
pub(super) fn env_changes(a: &Value, b: &Value, out: &mut Sections) {
    fn vars(v: &Value) -> BTreeMap<&str, &str> {
        let mut m = BTreeMap::new();
        for e in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
            let (k, val) = e.split_once('=').unwrap_or((e, ""));
            m.entry(k).or_insert(val);
        }
        m
    }
    let (va, vb) = (vars(a), vars(b));
    let mut keys: Vec<&str> = va.keys().chain(vb.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    for k in keys {
        let (x, y) = (va.get(k).copied(), vb.get(k).copied());
        let text = match (x, y) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => format!("env {k}: {} -> {}", shorten(x, 100), shorten(y, 100)),
            (None, Some(y)) => format!("env {k}: added ({k}={})", shorten(y, 100)),
            (Some(x), None) => format!("env {k}: removed (was {k}={})", shorten(x, 100)),
            (None, None) => continue,
        };
        out.add("spec.process.env", || {
            let val = |v: Option<&str>| v.map(|s| Value::String(s.to_string())).unwrap_or(Value::Null);
            let (a, b) = (val(x), val(y));
            Change::new(format!("spec.process.env.{k}"), kind_of(&a, &b), a, b, text)
        });
    }
}

/// Mounts, by destination.
pub(super) fn mount_changes(a: &Value, b: &Value, out: &mut Sections) {
    let list = |v| Value::as_array(v).map(Vec::as_slice).unwrap_or_default();
    let (ma, mb) = (keyed(list(a), "destination"), keyed(list(b), "destination"));
    for k in union_keys(&ma, &mb) {
        let path = format!("spec.mounts[{k}]");
        match (ma.get(k), mb.get(k)) {
            (Some(x), Some(y)) => walk(&path, x, y, out),
            (x, y) => out.add("spec.mounts", || {
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
                Change::new(path, change, a, b, format!("mount {k}: {verb} ({what})"))
            }),
        }
    }
}
