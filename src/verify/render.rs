//! The verdict of `exprun verify`, for a terminal: the replays and what
//! differs in each, what differs on a plain replay, and each variation's
//! outcome (changes the result, does not, or could not be tested and why).

use super::check::{difference_key, ReplayReport, Verdict};
use super::replay;

/// The verdict, for a terminal.
pub fn render(v: &Verdict) -> String {
    let mut out = format!(
        "verify {}: {}\n",
        v.run.get(..12).unwrap_or(&v.run),
        match v.verdict.as_str() {
            "reproduced" => "REPRODUCED",
            "could-not-compare" => "COULD NOT COMPARE (outputs not digested in full)",
            _ => "DIFFERS",
        }
    );
    if let Some(c) = &v.settings.config {
        out.push_str(&format!("settings from {} ({}, {})\n", c.path.display(), c.found, c.digest));
    }
    if !v.drift.is_empty() {
        out.push_str(&replay::render_drift(&v.drift));
    }
    for (i, r) in v.replays.iter().enumerate() {
        render_replay(&format!("replay {}", i + 1), r, &mut out);
    }
    if !v.unstable.is_empty() {
        out.push_str(&format!(
            "differs on a plain replay (depends on the wall clock, randomness or scheduling): {}\n",
            v.unstable.join(", ")
        ));
    }
    if !v.varied.is_empty() {
        out.push_str(&format!("varied: {}\n", v.varied.join(", ")));
        if !v.unstable.is_empty() {
            out.push_str(&format!(
                "  (judged on what a plain replay reproduces; not on {}, which differs without a variation)\n",
                v.unstable.join(", ")
            ));
        }
        for o in &v.variations {
            let applied = o.applied.as_ref().map(|a| format!(" [{a}]")).unwrap_or_default();
            match o.outcome.as_str() {
                "changes-result" => {
                    let with = if o.with.is_empty() {
                        String::new()
                    } else {
                        format!(" (only together with {})", o.with.join(", "))
                    };
                    out.push_str(&format!(
                        "  {}: CHANGES the result{with}: {}{applied}\n",
                        o.variation,
                        o.changes.join(", ")
                    ));
                }
                "not-tested" => out.push_str(&format!(
                    "  {}: COULD NOT BE TESTED: {}\n",
                    o.variation,
                    o.why.as_deref().unwrap_or_default()
                )),
                _ => out.push_str(&format!("  {}: does not change the result{applied}\n", o.variation)),
            }
        }
        for a in &v.attributions {
            let shown = v.variation_replays.iter().find(|r| r.variation.join("+") == a.variation);
            if let Some(r) = shown {
                out.push_str(&format!("  {} changes:\n", a.variation));
                render_details(&only(r, &a.changes), &mut out);
            }
        }
        let modes: Vec<String> = v
            .variation_replays
            .iter()
            .filter(|r| !r.mode_changes.is_empty())
            .map(|r| format!("{} ({})", r.variation.join("+"), r.mode_changes.join(", ")))
            .collect();
        if !modes.is_empty() {
            out.push_str(&format!(
                "  permission bits only (not a difference without --compare modes) under: {}\n",
                modes.join("; ")
            ));
        }
    }
    for r in &v.unmatched_rules {
        out.push_str(&format!("warning: --tolerance {r} matches no output file\n"));
    }
    out
}

/// `r` with only the differences named in `keep`.
fn only(r: &ReplayReport, keep: &[String]) -> ReplayReport {
    let mut r = r.clone();
    r.streams.retain(|s| keep.contains(&s.path));
    for t in &mut r.outputs {
        let dest = t.destination.clone();
        t.files.retain(|f| keep.contains(&difference_key(&dest, &f.path)));
    }
    if !keep.iter().any(|k| k == "exit") {
        r.actual_exit = r.expected_exit;
    }
    r
}

fn render_replay(title: &str, r: &ReplayReport, out: &mut String) {
    let state = match (r.differs.is_empty(), r.not_compared.is_empty()) {
        (true, true) => "same",
        (true, false) => "could not compare",
        (false, _) => "differs",
    };
    out.push_str(&format!("{title} (run {}): {state}\n", r.run_id.get(..12).unwrap_or(&r.run_id)));
    let shown: Vec<String> = r.differs.iter().chain(&r.not_compared).cloned().collect();
    render_details(&only(r, &shown), out);
    if !r.differs.is_empty() && !r.gpus.is_empty() {
        out.push_str(&format!(
            "    the difference may come from the GPU or its driver: {}\n",
            crate::record::for_terminal(&r.gpus.join("; "))
        ));
    }
    if !r.mode_changes.is_empty() {
        out.push_str(&format!(
            "    same content, other permission bits (compared only with --compare modes): {}\n",
            r.mode_changes.join(", ")
        ));
    }
    if !r.ignored.is_empty() {
        out.push_str(&format!("    differs, ignored (--ignore): {}\n", r.ignored.join(", ")));
    }
}

fn render_details(r: &ReplayReport, out: &mut String) {
    if r.expected_exit != r.actual_exit {
        let s = |c: Option<i32>| c.map_or("-".to_string(), |c| c.to_string());
        out.push_str(&format!("    exit status {} -> {}\n", s(r.expected_exit), s(r.actual_exit)));
    }
    let mut text = String::new();
    for s in &r.streams {
        s.render(&mut text);
    }
    for t in &r.outputs {
        if !t.files.is_empty() {
            t.render(&mut text);
        }
    }
    for line in text.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
}
