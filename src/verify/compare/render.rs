//! Human rendering of comparison reports.

use std::fmt::Write as _;

use super::tolerance::{fmt_num, fmt_sig};
use super::{FileReport, TreeReport, Verdict};
use crate::record::files::size_text;

/// At most this many entries are rendered per tree; the JSON report has all.
const MAX_RENDERED: usize = 200;

impl TreeReport {
    /// Render for people: a summary line, one line per entry that is not
    /// bit-identical (with details and diff excerpts indented below), then warnings.
    pub fn render(&self, out: &mut String) {
        let verdict = if self.reproduced() {
            "reproduced"
        } else if self
            .files
            .iter()
            .all(|f| f.verdict == Verdict::CouldNotCompare || !f.verdict.is_difference())
        {
            "could not compare"
        } else {
            "differs"
        };
        let entries =
            if self.entries == 1 { "1 entry".to_string() } else { format!("{} entries", self.entries) };
        let _ = write!(out, "output {}: {verdict} ({entries}", self.destination);
        if self.expected_digest == self.actual_digest && self.identical == self.entries {
            out.push_str(", bit-identical");
        } else {
            let _ = write!(out, ": {} bit-identical", self.identical);
            if self.within_tolerance > 0 {
                let _ = write!(out, ", {} within tolerance", self.within_tolerance);
            }
            if self.differing > 0 {
                let _ = write!(out, ", {} differ", self.differing);
            }
        }
        out.push_str(")\n");
        let prefix = self.destination.trim_start_matches('/');
        for f in self.files.iter().take(MAX_RENDERED) {
            let shown = match f.path.as_str() {
                "." => prefix.to_string(),
                p if prefix.is_empty() => p.to_string(),
                p => format!("{}/{p}", prefix.trim_end_matches('/')),
            };
            f.render_as(&shown, out);
        }
        if self.files.len() > MAX_RENDERED {
            let _ = writeln!(out, "  ... and {} more (see the JSON report)", self.files.len() - MAX_RENDERED);
        }
        for w in &self.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
    }
}

impl FileReport {
    /// Render for people under its own path (e.g. a stream's name).
    pub fn render(&self, out: &mut String) {
        self.render_as(&self.path, out);
    }

    /// Render under the path `shown`: `  out/metrics.json  differs  12 B -> 12 B,
    /// first difference at byte 9`, then details and the diff excerpt indented.
    pub fn render_as(&self, shown: &str, out: &mut String) {
        let _ = write!(out, "  {shown}  {}  ", self.verdict.as_str());
        let size = |s: Option<u64>| s.map_or_else(|| "?".into(), size_text);
        let mut parts: Vec<String> = Vec::new();
        match self.verdict {
            Verdict::Missing | Verdict::Added => {
                let kind = self.expected_kind.as_ref().or(self.actual_kind.as_ref());
                let mut s = kind.cloned().unwrap_or_default();
                if let Some(n) = self.expected_size.or(self.actual_size) {
                    let _ = write!(s, ", {}", size_text(n));
                }
                parts.push(s);
            }
            Verdict::KindChanged => parts.push(format!(
                "{} -> {}",
                self.expected_kind.as_deref().unwrap_or("?"),
                self.actual_kind.as_deref().unwrap_or("?")
            )),
            Verdict::SymlinkTargetChanged => parts.push(format!(
                "target {:?} -> {:?}",
                self.expected_target.as_deref().unwrap_or(""),
                self.actual_target.as_deref().unwrap_or("")
            )),
            Verdict::Differs | Verdict::WithinTolerance | Verdict::ModeChanged | Verdict::CouldNotCompare => {
            }
        }
        if self.expected_mode.is_some() || self.actual_mode.is_some() {
            let mode = |m: Option<u32>| m.map_or_else(|| "?".into(), |m| format!("{m:04o}"));
            parts.push(format!("mode {} -> {}", mode(self.expected_mode), mode(self.actual_mode)));
        }
        if !matches!(self.verdict, Verdict::Missing | Verdict::Added | Verdict::KindChanged)
            && (self.expected_size.is_some() || self.actual_size.is_some())
        {
            parts.push(format!("{} -> {}", size(self.expected_size), size(self.actual_size)));
        }
        if let Some(off) = self.first_difference {
            parts.push(format!("first difference at byte {off}"));
        }
        if self.entries_inside > 0 {
            parts.push(format!("and {} entries inside", self.entries_inside));
        }
        out.push_str(&parts.join(", "));
        out.push('\n');
        if let Some(n) = &self.numeric {
            if let Some(m) = &n.failure {
                let at = if m.location.is_empty() { String::new() } else { format!("{}: ", m.location) };
                let _ = writeln!(out, "    {at}{}", m.reason);
            }
            if let Some(w) = &n.worst {
                let rel = w.rel.map_or_else(|| "inf".into(), fmt_sig);
                let _ = writeln!(
                    out,
                    "    worst deviation of {} numbers: {}: {} -> {} (abs {}, rel {rel}, allowed {})",
                    n.compared,
                    w.location,
                    fmt_num(w.expected),
                    fmt_num(w.actual),
                    fmt_sig(w.abs),
                    fmt_sig(w.allowed)
                );
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "    {note}");
        }
        let numbers_passed = self.numeric.as_ref().is_some_and(|n| n.passed());
        if let Some(d) = self.diff.as_ref().filter(|_| !numbers_passed) {
            for line in d.text.lines() {
                let _ = writeln!(out, "    {line}");
            }
            if d.truncated {
                out.push_str("    ... (diff cut)\n");
            }
        }
    }
}
