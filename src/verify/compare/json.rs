//! JSON outputs: structures must match exactly (keys, array lengths, strings,
//! booleans, nulls); numbers compare within the tolerance at their path.

use serde_json::{Number, Value};

use super::numeric::{clip, Acc};
use super::tolerance::{render_location, FileTolerance, Seg};
use super::{NumericFormat, NumericReport};

/// Whether content looks like a JSON document worth comparing numerically: an
/// object or array that parses.
pub(crate) fn looks_like_json(bytes: &[u8]) -> bool {
    let start = bytes.iter().find(|b| !b.is_ascii_whitespace());
    matches!(start, Some(b'{' | b'[')) && serde_json::from_slice::<Value>(bytes).is_ok()
}

/// Compare two JSON documents. A rule with a JSON path that selects nothing in
/// the original gets a warning (probably a typo).
pub(crate) fn compare(
    name: &str,
    expected: &[u8],
    actual: &[u8],
    ft: &FileTolerance<'_>,
    warnings: &mut Vec<String>,
) -> NumericReport {
    let mut acc = Acc::default();
    let e: Value = match serde_json::from_slice(expected) {
        Ok(v) => v,
        Err(err) => {
            acc.fail(|| "$".into(), || format!("the original is not valid JSON: {err}"));
            return acc.finish(NumericFormat::Json);
        }
    };
    for r in &ft.rules {
        if let Some(p) = r.path.as_ref().filter(|p| !p.selects_in(&e)) {
            warnings.push(format!("--tolerance {}: {p} selects nothing in {name}", r.spec));
        }
    }
    let a: Value = match serde_json::from_slice(actual) {
        Ok(v) => v,
        Err(err) => {
            acc.fail(|| "$".into(), || format!("the replay's output is not valid JSON: {err}"));
            return acc.finish(NumericFormat::Json);
        }
    };
    walk(&e, &a, &mut Vec::new(), ft, &mut acc);
    acc.finish(NumericFormat::Json)
}

/// Walk both documents in step (object keys in sorted order), recording every
/// number and the first failure.
fn walk<'v>(e: &'v Value, a: &'v Value, loc: &mut Vec<Seg<'v>>, ft: &FileTolerance<'_>, acc: &mut Acc) {
    let here = |loc: &[Seg<'_>]| render_location(loc);
    match (e, a) {
        (Value::Number(x), Value::Number(y)) => number(x, y, loc, ft, acc),
        (Value::Object(x), Value::Object(y)) => {
            if let Some(k) = x.keys().find(|k| !y.contains_key(*k)) {
                acc.fail(|| here(loc), || format!("key {k:?} is missing in the replay"));
            }
            if let Some(k) = y.keys().find(|k| !x.contains_key(*k)) {
                acc.fail(|| here(loc), || format!("key {k:?} was added in the replay"));
            }
            for (k, ev) in x {
                if let Some(av) = y.get(k) {
                    loc.push(Seg::Key(k));
                    walk(ev, av, loc, ft, acc);
                    loc.pop();
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                acc.fail(|| here(loc), || format!("expected {} elements, got {}", x.len(), y.len()));
            }
            for (i, (ev, av)) in x.iter().zip(y).enumerate() {
                loc.push(Seg::Index(i));
                walk(ev, av, loc, ft, acc);
                loc.pop();
            }
        }
        (x, y) if x == y => {}
        (x, y) if kind(x) == kind(y) => {
            acc.fail(|| here(loc), || format!("expected {}, got {}", show(x), show(y)));
        }
        (x, y) => {
            acc.fail(
                || here(loc),
                || format!("expected {} {}, got {} {}", kind(x), show(x), kind(y), show(y)),
            );
        }
    }
}

fn number(x: &Number, y: &Number, loc: &[Seg<'_>], ft: &FileTolerance<'_>, acc: &mut Acc) {
    let int = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    let (e, a) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
    // Integers compare exactly even beyond 2^53, where f64 would round.
    let abs = match (int(x), int(y)) {
        (Some(i), Some(j)) => (i - j).unsigned_abs() as f64,
        _ => (e - a).abs(),
    };
    let location = || render_location(loc);
    acc.number(&location, e, a, abs, &x.to_string(), &y.to_string(), ft.at(loc));
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    clip(&v.to_string(), 60)
}

#[cfg(test)]
mod tests {
    use super::super::Tolerances;
    use super::*;

    fn cmp(e: &str, a: &str, rtol: Option<&str>, rules: &[&str]) -> (NumericReport, Vec<String>) {
        let rules: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
        let t = Tolerances::parse(rtol, None, &rules).unwrap();
        let ft = t.for_file("m.json", None);
        let mut w = Vec::new();
        (compare("m.json", e.as_bytes(), a.as_bytes(), &ft, &mut w), w)
    }

    #[test]
    fn structure_must_match_numbers_within_tolerance() {
        let e = r#"{"a": 1.0, "b": [1, 2, {"c": 0.5}], "label": "cat", "n": null}"#;
        let (r, w) = cmp(
            e,
            r#"{"a": 1.0000001, "b": [1, 2, {"c": 0.5}], "label": "cat", "n": null}"#,
            Some("1e-6"),
            &[],
        );
        assert!(r.failure.is_none() && w.is_empty(), "{r:?}");
        assert_eq!(r.compared, 4);
        assert_eq!(r.worst.as_ref().unwrap().location, "$.a");
        let (r, _) =
            cmp(e, r#"{"a": 1.0, "b": [1, 2, {"c": 0.5}], "label": "dog", "n": null}"#, Some("1e300"), &[]);
        let f = r.failure.unwrap();
        assert_eq!((f.location.as_str(), f.reason.as_str()), ("$.label", r#"expected "cat", got "dog""#));
        let (r, _) = cmp(e, r#"{"a": 1.0, "b": [1, 2], "label": "cat", "n": null}"#, Some("1"), &[]);
        assert_eq!(r.failure.unwrap().reason, "expected 3 elements, got 2");
        let (r, _) = cmp(e, r#"{"a": 1.0, "b": [1, 2, {"c": 0.5}], "label": "cat"}"#, Some("1"), &[]);
        assert_eq!(r.failure.unwrap().reason, "key \"n\" is missing in the replay");
        let (r, _) =
            cmp(e, r#"{"a": "1.0", "b": [1, 2, {"c": 0.5}], "label": "cat", "n": null}"#, Some("1"), &[]);
        assert_eq!(r.failure.unwrap().reason, r#"expected a number 1.0, got a string "1.0""#);
        let (r, _) = cmp(
            e,
            r#"{"a": 1.0, "b": [1, 2, {"c": 0.75}], "label": "cat", "n": null}"#,
            None,
            &["m.json:$.a=1"],
        );
        let f = r.failure.unwrap();
        assert_eq!(f.location, "$.b[2].c");
        assert!(f.reason.contains("|difference| 0.25 > 0 allowed (no tolerance declared)"), "{}", f.reason);
    }

    #[test]
    fn neighbouring_doubles_differ_to_the_last_bit() {
        // Two doubles one bit apart; a parser that is not exact reads both as
        // the second.
        let (r, _) = cmp("[1.6047802727761427]", "[1.6047802727761429]", None, &["m.json=1e-30"]);
        let f = r.failure.expect("one bit apart is beyond 1e-30");
        assert_eq!(f.location, "$[0]");
        assert_eq!(r.outside, 1);
    }

    #[test]
    fn big_integers_compare_exactly() {
        let (r, _) = cmp("[9007199254740993]", "[9007199254740992]", None, &["m.json=0"]);
        assert!(r.failure.is_some());
        let (r, _) = cmp("[9007199254740993]", "[9007199254740992]", None, &["m.json=1"]);
        assert!(r.failure.is_none(), "{r:?}");
    }

    #[test]
    fn a_path_that_selects_nothing_warns() {
        let (_, w) = cmp(r#"{"accuracy": 1}"#, r#"{"accuracy": 1}"#, None, &["m.json:$.acuracy=1"]);
        assert_eq!(w, ["--tolerance m.json:$.acuracy=1: $.acuracy selects nothing in m.json"]);
    }
}
