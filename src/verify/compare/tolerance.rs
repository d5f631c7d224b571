//! Declared numeric tolerances: the general `--rtol`/`--atol` and per-file
//! `--tolerance FILE[:JSONPATH]=TOLERANCE` rules, parsed, and resolved for one
//! file and one location inside it.

use std::fmt;

use super::Error;
use crate::glob::{Glob, Syntax};

/// What a `--tolerance` rule looks like, for error messages.
const RULE_FORM: &str = "expected FILE[:JSONPATH]=TOLERANCE, e.g. metrics.json:$.accuracy=1e-6, \
     metrics.json=1e-6 or results/*.csv=1e-3";

/// The declared tolerances of one verification.
///
/// Numbers `a` (replay) and `b` (original) are equal when
/// `|a - b| <= atol + rtol * |b|`. Both default to 0: exact. A per-file rule
/// gives an absolute tolerance (its rtol is 0) that replaces the general one
/// wherever it applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tolerances {
    /// General relative tolerance.
    pub rtol: f64,
    /// General absolute tolerance.
    pub atol: f64,
    /// Per-file rules, in the order given (a later rule wins a tie).
    pub rules: Vec<Rule>,
}

/// One `--tolerance FILE[:JSONPATH]=TOLERANCE` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule as given on the command line.
    pub spec: String,
    /// The file pattern: relative to the output root, or absolute under the
    /// output's mount point (`/out/metrics.json`), or `stdout`/`stderr`.
    pub file: String,
    glob: Glob,
    /// The JSON path the rule is limited to, if any (it covers everything below it).
    pub path: Option<JsonPath>,
    /// The absolute tolerance.
    pub tolerance: f64,
}

impl Tolerances {
    /// Parse the `--rtol`, `--atol` and `--tolerance` options. Errors name the
    /// option, the value and the form expected. Negative and NaN tolerances are
    /// refused.
    pub fn parse(rtol: Option<&str>, atol: Option<&str>, rules: &[String]) -> Result<Tolerances, Error> {
        let general = |option: &'static str, value: Option<&str>| match value {
            None => Ok(0.0),
            Some(v) => parse_tolerance(v).map_err(|why| Error::invalid(option, v, why)),
        };
        let rtol = general("--rtol", rtol)?;
        let atol = general("--atol", atol)?;
        let rules = rules.iter().map(|r| Rule::parse(r)).collect::<Result<_, _>>()?;
        Ok(Tolerances { rtol, atol, rules })
    }

    /// No general tolerance and no rules: every comparison is bit-exact.
    pub fn is_exact(&self) -> bool {
        self.rtol == 0.0 && self.atol == 0.0 && self.rules.is_empty()
    }

    /// Whether the general rtol/atol is set.
    pub(crate) fn has_general(&self) -> bool {
        self.rtol != 0.0 || self.atol != 0.0
    }

    /// The tolerances that apply to one file: `rel` is its path relative to the
    /// output root (or a stream's name), `abs` its path in the container.
    pub(crate) fn for_file(&self, rel: &str, abs: Option<&str>) -> FileTolerance<'_> {
        let rules = self.rules.iter().filter(|r| r.matches(rel, abs)).collect();
        FileTolerance { general: self, rules }
    }
}

/// What `--ignore` leaves out of the comparison: `stdout`, `stderr`, or output
/// files by pattern (as a tolerance rule's file: relative to the output root,
/// or absolute under its mount point; `*`, `?`, `**`).
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<(String, Glob)>,
}

impl Ignore {
    /// Parse the patterns; an empty one is refused.
    pub fn parse(given: &[String]) -> Result<Ignore, Error> {
        let mut patterns = Vec::new();
        for g in given {
            if g.trim().is_empty() {
                return Err(Error::invalid(
                    "--ignore",
                    g,
                    "empty; give stdout, stderr or an output file pattern such as logs/*.log".into(),
                ));
            }
            let glob = Glob::parse(g, Syntax::PATHS)
                .map_err(|why| Error::invalid("--ignore", g, format!("the file pattern {why}")))?;
            patterns.push((g.clone(), glob));
        }
        Ok(Ignore { patterns })
    }

    /// Whether the stream `name` (`stdout`, `stderr`) is left out.
    pub fn stream(&self, name: &str) -> bool {
        self.patterns.iter().any(|(p, _)| p == name)
    }

    /// Whether an output file is left out: `rel` is its path relative to the
    /// output root (a single-file output's own name), `abs` its path in the
    /// container.
    pub fn file(&self, rel: &str, abs: &str) -> bool {
        self.patterns.iter().any(|(p, g)| if p.starts_with('/') { g.matches(abs) } else { g.matches(rel) })
    }
}

impl Rule {
    /// Parse one `FILE[:JSONPATH]=TOLERANCE`.
    pub fn parse(spec: &str) -> Result<Rule, Error> {
        let err = |why: String| Error::invalid("--tolerance", spec, why);
        let Some((target, tol)) = spec.rsplit_once('=') else {
            return Err(err(RULE_FORM.to_string()));
        };
        let tolerance = parse_tolerance(tol).map_err(|why| err(format!("{why}; {RULE_FORM}")))?;
        let (file, path) = match target.find(":$") {
            Some(i) => (&target[..i], Some(&target[i + 1..])),
            None => (target, None),
        };
        if file.is_empty() {
            return Err(err(format!("the file is missing; {RULE_FORM}")));
        }
        let path = match path {
            Some(p) => Some(JsonPath::parse(p).map_err(&err)?),
            None => None,
        };
        let glob = Glob::parse(file, Syntax::PATHS).map_err(|why| err(format!("the file pattern {why}")))?;
        Ok(Rule { spec: spec.to_string(), file: file.to_string(), glob, path, tolerance })
    }

    /// Whether the rule's file pattern matches a file: absolute patterns match
    /// `abs`, relative ones `rel`.
    pub(crate) fn matches(&self, rel: &str, abs: Option<&str>) -> bool {
        if self.file.starts_with('/') {
            abs.is_some_and(|a| self.glob.matches(a))
        } else {
            self.glob.matches(rel)
        }
    }

    /// Whether the rule names a stream rather than a file of an output tree.
    pub(crate) fn is_stream_rule(&self) -> bool {
        matches!(self.file.as_str(), "stdout" | "stderr")
    }

    /// Most specific first: a JSON path beats none, more concrete path segments
    /// beat fewer, a literal file beats a glob.
    fn specificity(&self) -> (bool, usize, usize, bool) {
        let (concrete, len) = match &self.path {
            Some(p) => (p.segs.iter().filter(|s| !matches!(s, PathSeg::Any)).count(), p.segs.len()),
            None => (0, 0),
        };
        (self.path.is_some(), concrete, len, self.glob.is_literal())
    }
}

fn parse_tolerance(v: &str) -> Result<f64, String> {
    let x: f64 =
        v.trim().parse().map_err(|_| format!("{v:?} is not a number; expected a number such as 1e-6"))?;
    if x.is_nan() {
        return Err("a tolerance cannot be NaN".into());
    }
    if x < 0.0 {
        return Err("a tolerance cannot be negative".into());
    }
    Ok(x)
}

/// The tolerance applying at one place: `|a-b| <= atol + rtol*|b|`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tol<'t> {
    pub atol: f64,
    pub rtol: f64,
    /// The rule it comes from; None for the general rtol/atol.
    pub rule: Option<&'t Rule>,
}

impl Tol<'_> {
    /// The largest difference allowed against original value `b`.
    pub fn allowed(&self, b: f64) -> f64 {
        self.atol + self.rtol * b.abs()
    }

    /// Where the tolerance comes from, for messages.
    pub fn source(&self) -> String {
        match self.rule {
            Some(r) => format!("--tolerance {}", r.spec),
            None if self.atol == 0.0 && self.rtol == 0.0 => "no tolerance declared".into(),
            None => format!("--rtol {} --atol {}", fmt_num(self.rtol), fmt_num(self.atol)),
        }
    }
}

/// The tolerances that apply to one file.
#[derive(Debug, Clone)]
pub(crate) struct FileTolerance<'t> {
    general: &'t Tolerances,
    /// The rules whose file pattern matches, in the order given.
    pub rules: Vec<&'t Rule>,
}

impl<'t> FileTolerance<'t> {
    /// Whether a numeric comparison is to be tried at all.
    pub fn applies(&self) -> bool {
        !self.rules.is_empty() || self.general.has_general()
    }

    /// Whether a rule (not just the general tolerance) matches the file.
    pub fn has_rule(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The tolerance at a JSON location: the most specific matching rule, else the
    /// general one.
    pub fn at(&self, loc: &[Seg<'_>]) -> Tol<'t> {
        let best = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.path.as_ref().is_none_or(|p| p.covers(loc)))
            .max_by_key(|(i, r)| (r.specificity(), *i));
        self.pick(best.map(|(_, r)| *r))
    }

    /// The tolerance for a whole file without structure (CSV): rules without a
    /// JSON path only.
    pub fn whole(&self) -> Tol<'t> {
        let best = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.path.is_none())
            .max_by_key(|(i, r)| (r.specificity(), *i));
        self.pick(best.map(|(_, r)| *r))
    }

    fn pick(&self, rule: Option<&'t Rule>) -> Tol<'t> {
        match rule {
            Some(r) => Tol { atol: r.tolerance, rtol: 0.0, rule: Some(r) },
            None => Tol { atol: self.general.atol, rtol: self.general.rtol, rule: None },
        }
    }
}

/// One step of a concrete location inside a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg<'v> {
    Key(&'v str),
    Index(usize),
}

/// Render a location as a JSON path: `$.runs[0].loss`, `$['a b']`.
pub(crate) fn render_location(loc: &[Seg<'_>]) -> String {
    let mut s = String::from("$");
    for seg in loc {
        match seg {
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
            Seg::Key(k) if is_identifier(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Key(k) => {
                s.push_str("['");
                for c in k.chars() {
                    if c == '\'' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push_str("']");
            }
        }
    }
    s
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// A JSON path pattern: `$` followed by `.key`, `['key']`, `[index]`, `[*]` or `.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    segs: Vec<PathSeg>,
}

#[derive(Debug, Clone, PartialEq)]
enum PathSeg {
    Key(String),
    Index(usize),
    Any,
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// Parse a JSON path; the error says where and what was expected.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        const FORM: &str = "a JSON path is $ followed by .key, ['key'], [index] or [*]";
        let bad = |at: &str, what: &str| format!("JSON path {text:?}: {what} at {at:?}; {FORM}");
        let Some(mut rest) = text.strip_prefix('$') else {
            return Err(format!("JSON path {text:?} does not start with $; {FORM}"));
        };
        let mut segs = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let key = &r[..end];
                match key {
                    "" => return Err(bad(rest, "expected a key after '.'")),
                    "*" => segs.push(PathSeg::Any),
                    k => segs.push(PathSeg::Key(k.to_string())),
                }
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                if let Some(q) = r.chars().next().filter(|c| *c == '\'' || *c == '"') {
                    let (key, after) =
                        quoted(&r[1..], q).ok_or_else(|| bad(rest, "unterminated quoted key"))?;
                    let after = after
                        .strip_prefix(']')
                        .ok_or_else(|| bad(rest, "expected ] after the quoted key"))?;
                    segs.push(PathSeg::Key(key));
                    rest = after;
                } else {
                    let end = r.find(']').ok_or_else(|| bad(rest, "expected ]"))?;
                    match &r[..end] {
                        "*" => segs.push(PathSeg::Any),
                        n => match n.parse() {
                            Ok(i) => segs.push(PathSeg::Index(i)),
                            Err(_) => return Err(bad(rest, "expected [index], [*] or ['key']")),
                        },
                    }
                    rest = &r[end + 1..];
                }
            } else {
                return Err(bad(rest, "expected . or ["));
            }
        }
        Ok(JsonPath { text: text.to_string(), segs })
    }

    /// Whether the pattern covers a location: it matches the location or one of
    /// its ancestors.
    pub(crate) fn covers(&self, loc: &[Seg<'_>]) -> bool {
        self.segs.len() <= loc.len()
            && self.segs.iter().zip(loc).all(|(p, l)| match (p, l) {
                (PathSeg::Any, _) => true,
                (PathSeg::Key(k), Seg::Key(l)) => k == l,
                (PathSeg::Index(i), Seg::Index(l)) => i == l,
                _ => false,
            })
    }

    /// Whether the pattern selects anything in `v`.
    pub(crate) fn selects_in(&self, v: &serde_json::Value) -> bool {
        fn go(segs: &[PathSeg], v: &serde_json::Value) -> bool {
            use serde_json::Value;
            let Some((first, rest)) = segs.split_first() else { return true };
            match (first, v) {
                (PathSeg::Key(k), Value::Object(m)) => m.get(k).is_some_and(|v| go(rest, v)),
                (PathSeg::Index(i), Value::Array(a)) => a.get(*i).is_some_and(|v| go(rest, v)),
                (PathSeg::Any, Value::Object(m)) => m.values().any(|v| go(rest, v)),
                (PathSeg::Any, Value::Array(a)) => a.iter().any(|v| go(rest, v)),
                _ => false,
            }
        }
        go(&self.segs, v)
    }
}

/// A quoted key up to the closing `q`, with `\` escaping; the key and the rest.
fn quoted(s: &str, q: char) -> Option<(String, &str)> {
    let mut key = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            key.push(chars.next()?.1);
        } else if c == q {
            return Some((key, &s[i + c.len_utf8()..]));
        } else {
            key.push(c);
        }
    }
    None
}

/// A number for messages: plain for ordinary magnitudes, scientific otherwise
/// (`1e-6`, not `0.000001`).
pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-4..1e6).contains(&a) || !a.is_finite() {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// A measured difference for messages: four significant digits.
pub(crate) fn fmt_sig(x: f64) -> String {
    fmt_num(format!("{x:.3e}").parse().unwrap_or(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        let r = Rule::parse("metrics.json:$.accuracy=1e-6").unwrap();
        assert_eq!((r.file.as_str(), r.tolerance), ("metrics.json", 1e-6));
        assert_eq!(r.path.unwrap().to_string(), "$.accuracy");
        let r = Rule::parse("results/*.csv=1e-3").unwrap();
        assert!(r.path.is_none() && r.matches("results/x.csv", None));
        let r = Rule::parse("/out/m.json:$['a b'][2][*].c=0").unwrap();
        assert!(r.matches("other", Some("/out/m.json")));
        assert!(!r.matches("/out/m.json", None));
        let p = r.path.unwrap();
        assert!(p.covers(&[Seg::Key("a b"), Seg::Index(2), Seg::Index(7), Seg::Key("c"), Seg::Key("d")]));
        assert!(!p.covers(&[Seg::Key("a b"), Seg::Index(1), Seg::Index(7), Seg::Key("c")]));
    }

    #[test]
    fn parse_errors_name_option_value_and_form() {
        let err = |rt: Option<&str>, at: Option<&str>, rules: &[&str]| {
            let rules: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
            Tolerances::parse(rt, at, &rules).unwrap_err().to_string()
        };
        let e = err(None, None, &["metrics.json"]);
        assert!(e.contains("--tolerance") && e.contains("\"metrics.json\""), "{e}");
        assert!(e.contains("expected FILE[:JSONPATH]=TOLERANCE, e.g. metrics.json:$.accuracy=1e-6"), "{e}");
        let e = err(None, None, &["m.json=abc"]);
        assert!(e.contains("\"abc\" is not a number") && e.contains("FILE[:JSONPATH]"), "{e}");
        let e = err(None, None, &["m.json:$.a[x]=1"]);
        assert!(e.contains("JSON path \"$.a[x]\"") && e.contains("[index]"), "{e}");
        let e = err(None, None, &["m.json:$..a=1"]);
        assert!(e.contains("expected a key"), "{e}");
        let e = err(None, None, &[":$.a=1"]);
        assert!(e.contains("file is missing"), "{e}");
        let e = err(None, None, &["m.json=-1"]);
        assert!(e.contains("negative"), "{e}");
        let e = err(Some("-0.1"), None, &[]);
        assert!(e.starts_with("--rtol \"-0.1\"") && e.contains("negative"), "{e}");
        let e = err(None, Some("NaN"), &[]);
        assert!(e.starts_with("--atol \"NaN\"") && e.contains("NaN"), "{e}");
        let e = err(None, Some("x"), &[]);
        assert!(e.contains("expected a number such as 1e-6"), "{e}");
        let t = Tolerances::parse(Some("1e-3"), Some("0"), &["a=1".into()]).unwrap();
        assert_eq!((t.rtol, t.atol, t.rules.len()), (1e-3, 0.0, 1));
        assert!(Tolerances::parse(None, None, &[]).unwrap().is_exact());
    }

    #[test]
    fn most_specific_rule_wins() {
        let rules: Vec<String> =
            ["m.json=1", "*.json:$.a=2", "m.json:$.a=3", "m.json:$[*].b=4", "m.json:$.a.b=5"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let t = Tolerances::parse(Some("0.5"), None, &rules).unwrap();
        let ft = t.for_file("m.json", None);
        assert_eq!(ft.at(&[Seg::Key("z")]).atol, 1.0);
        assert_eq!(ft.at(&[Seg::Key("a")]).atol, 3.0);
        assert_eq!(ft.at(&[Seg::Key("a"), Seg::Key("c")]).atol, 3.0);
        assert_eq!(ft.at(&[Seg::Key("a"), Seg::Key("b")]).atol, 5.0);
        assert_eq!(ft.at(&[Seg::Key("x"), Seg::Key("b")]).atol, 4.0);
        assert_eq!(ft.whole().atol, 1.0);
        let other = t.for_file("n.csv", None);
        assert!(!other.has_rule());
        assert_eq!((other.whole().rtol, other.whole().rule.is_none()), (0.5, true));
        assert_eq!(
            render_location(&[Seg::Key("a b"), Seg::Index(3), Seg::Key("it's")]),
            "$['a b'][3]['it\\'s']"
        );
        assert_eq!(fmt_num(1e-6), "1e-6");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(
            (fmt_sig(9.999999717180685e-10), fmt_sig(0.123456), fmt_sig(2.5e-6)),
            ("1e-9".into(), "0.1235".into(), "2.5e-6".into())
        );
    }
}
