//! Numeric comparison of structured outputs: which format a file is in, and the
//! accumulator shared by the JSON and CSV comparisons (numbers compared, the
//! worst deviation, the first failure).

use std::cmp::Ordering;

use super::tolerance::{fmt_sig, FileTolerance, Tol};
use super::{csv, json, Deviation, Mismatch, NumericFormat, NumericReport, ValueChange};

/// Compare two contents numerically if the file's format allows it and a
/// tolerance applies. `name` decides the format by extension; `sniff_csv` allows
/// recognising CSV-like content without one (streams, and files a rule names).
/// Warnings about rules go to `warnings`.
pub(crate) fn compare(
    name: &str,
    expected: &[u8],
    actual: &[u8],
    ft: &FileTolerance<'_>,
    stream: bool,
    warnings: &mut Vec<String>,
) -> Option<NumericReport> {
    if !ft.applies() {
        return None;
    }
    compare_format(name, expected, actual, ft, stream, warnings)
}

/// [`compare`] whether a tolerance applies or not: `None` only when the
/// format allows no numeric comparison.
pub(crate) fn compare_format(
    name: &str,
    expected: &[u8],
    actual: &[u8],
    ft: &FileTolerance<'_>,
    stream: bool,
    warnings: &mut Vec<String>,
) -> Option<NumericReport> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let by_ext = match ext.as_deref() {
        Some("json") => Some(NumericFormat::Json),
        Some("csv") => Some(NumericFormat::Csv),
        Some("tsv") => Some(NumericFormat::Tsv),
        _ => None,
    };
    let report = match by_ext {
        Some(NumericFormat::Json) => json::compare(name, expected, actual, ft, warnings),
        Some(f) => csv::compare(f, expected, actual, ft),
        None => {
            // Content sniffing: JSON when the original parses as a JSON object or
            // array; CSV-like only for streams and files a rule names.
            if json::looks_like_json(expected) {
                json::compare(name, expected, actual, ft, warnings)
            } else if stream || ft.has_rule() {
                let format = csv::sniff(expected)?;
                csv::compare(format, expected, actual, ft)
            } else {
                return None;
            }
        }
    };
    if report.format != NumericFormat::Json {
        for r in ft.rules.iter().filter(|r| r.path.is_some()) {
            warnings.push(format!(
                "--tolerance {}: a JSON path does not apply to {name}, which is not JSON",
                r.spec
            ));
        }
    }
    Some(report)
}

/// The most values that differ a report lists ([`NumericReport::changes`]).
pub(crate) const MAX_CHANGES: usize = 100;

/// What a numeric comparison found so far.
#[derive(Debug, Default)]
pub(crate) struct Acc {
    compared: u64,
    outside: u64,
    worst: Option<Deviation>,
    failure: Option<Mismatch>,
    changes: Vec<ValueChange>,
    changes_left_out: u64,
}

impl Acc {
    /// Record a failure (only the first one is kept as the failure; the first
    /// [`MAX_CHANGES`] go into the changes).
    pub fn fail(&mut self, location: impl FnOnce() -> String, reason: impl FnOnce() -> String) {
        let first = self.failure.is_none();
        let listed = self.changes.len() < MAX_CHANGES;
        if !first && !listed {
            self.changes_left_out += 1;
            return;
        }
        let m = Mismatch { location: location(), reason: reason() };
        if listed {
            self.changes.push(ValueChange {
                location: m.location.clone(),
                what: m.reason.clone(),
                within: false,
            });
        } else {
            self.changes_left_out += 1;
        }
        if first {
            self.failure = Some(m);
        }
    }

    fn changed(&mut self, location: &dyn Fn() -> String, what: impl FnOnce() -> String, within: bool) {
        if self.changes.len() < MAX_CHANGES {
            self.changes.push(ValueChange { location: location(), what: what(), within });
        } else {
            self.changes_left_out += 1;
        }
    }

    /// Compare one number: `e` original, `a` replay, `abs` their exact absolute
    /// difference (computed by the caller, exactly for integers), with the texts
    /// as written for messages.
    #[allow(clippy::too_many_arguments)]
    pub fn number(
        &mut self,
        location: &dyn Fn() -> String,
        e: f64,
        a: f64,
        abs: f64,
        e_text: &str,
        a_text: &str,
        tol: Tol<'_>,
    ) {
        self.compared += 1;
        if abs == 0.0 || (e.is_nan() && a.is_nan()) {
            return;
        }
        if !e.is_finite() || !a.is_finite() || !abs.is_finite() {
            self.outside += 1;
            self.fail(location, || format!("expected {e_text}, got {a_text}"));
            return;
        }
        let allowed = tol.allowed(e);
        self.changed(location, || format!("{e_text} -> {a_text}"), abs <= allowed);
        let rel = (e != 0.0).then(|| abs / e.abs());
        let dev = Deviation { location: location(), expected: e, actual: a, abs, rel, allowed };
        if abs > allowed {
            self.outside += 1;
            self.fail(
                || dev.location.clone(),
                || {
                    format!(
                        "expected {e_text}, got {a_text}: |difference| {} > {} allowed ({})",
                        fmt_sig(abs),
                        fmt_sig(allowed),
                        tol.source()
                    )
                },
            );
        }
        if self.worst.as_ref().is_none_or(|w| worse(&dev, w)) {
            self.worst = Some(dev);
        }
    }

    /// The report.
    pub fn finish(self, format: NumericFormat) -> NumericReport {
        NumericReport {
            format,
            compared: self.compared,
            outside: self.outside,
            worst: self.worst,
            failure: self.failure,
            changes: self.changes,
            changes_left_out: self.changes_left_out,
        }
    }
}

/// Whether `a` deviates more than `b`: by relative difference (an original of 0
/// counts as infinitely relative), then by absolute difference.
fn worse(a: &Deviation, b: &Deviation) -> bool {
    let key = |d: &Deviation| (d.rel.is_none(), d.rel.unwrap_or(0.0), d.abs);
    let (ka, kb) = (key(a), key(b));
    match ka.0.cmp(&kb.0) {
        Ordering::Equal => (ka.1, ka.2).partial_cmp(&(kb.1, kb.2)) == Some(Ordering::Greater),
        o => o == Ordering::Greater,
    }
}

/// Up to `max` characters of `s`, with an ellipsis when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
