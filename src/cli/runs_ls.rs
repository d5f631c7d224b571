//! `exprun runs ls`: the runs in the index, filtered, oldest first, as a
//! table or JSON. A sweep lists 100,000 runs: the entries borrow from the
//! index as read, and the table is written cell by cell into one buffer.

use std::path::Path;

use super::runs::print_json;
use crate::error::Result;
use crate::record::{for_terminal, index, select, Status};

/// List the runs in `runs` that `filter` and `pods` select.
pub(super) fn ls(runs: &Path, filter: &select::Filter, pods: &PodFilter, json: bool) -> Result<i32> {
    let mut bufs = index::Buffers::default();
    let listing = index::load(runs, &mut bufs)?;
    for (_, e) in &listing.unreadable {
        crate::error::print(e);
    }
    let mut runs: Vec<&index::Listed<'_>> = Vec::with_capacity(listing.entries.len());
    let mut hidden = 0;
    for e in listing.entries.iter().filter(|e| pods.matches(e)) {
        if filter.matches(e) {
            runs.push(e);
        } else if e.by_verify && (select::Filter { all: true, ..filter.clone() }).matches(e) {
            hidden += 1;
        }
    }
    runs.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    if hidden > 0 && !json {
        eprintln!("exprun: {hidden} replay(s) made by `exprun verify` not listed (--all lists them)");
    }
    if json {
        let rows: Vec<serde_json::Value> = runs.iter().map(|e| summary_json(e)).collect();
        print_json(&serde_json::Value::Array(rows));
    } else {
        // One write for the whole table: a sweep lists 100,000 runs.
        let mut table = String::with_capacity(128 * (runs.len() + 1));
        table.push_str(&format!(
            "{:<12}  {:<16}  {:<24}  {:<10}  {:>4}  {:<20}  COMMAND\n",
            "RUN", "NAME", "IMAGE", "STATUS", "EXIT", "CREATED"
        ));
        for e in &runs {
            table_row(&mut table, e);
        }
        super::out::write(&table);
    }
    Ok(0)
}

/// `runs ls --pod/--namespace/--container`: all that are given must match.
pub(super) struct PodFilter {
    pub(super) pod: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) container: Option<String>,
}

impl PodFilter {
    fn matches(&self, e: &index::Listed<'_>) -> bool {
        if self.pod.is_none() && self.namespace.is_none() && self.container.is_none() {
            return true;
        }
        let Some(k) = &e.kubernetes else { return false };
        let is = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        is(&self.pod, &k.pod) && is(&self.namespace, &k.namespace) && is(&self.container, &k.container)
    }
}

/// One row of `runs ls`: the columns of the header, each padded to its
/// width by the characters of what the record says and written with control
/// characters escaped ([`for_terminal`]), as if the row were formatted whole
/// and then escaped.
fn table_row(out: &mut String, e: &index::Listed<'_>) {
    let image = e.image.as_ref().map_or("-", |i| i.name.as_deref().unwrap_or_else(|| i.short_digest()));
    cell(out, e.id.get(..12).unwrap_or(&e.id), 12);
    cell(out, e.name.as_deref().unwrap_or("-"), 16);
    cell(out, image, 24);
    let status = status_name(e.status);
    out.push_str(status);
    let status_len = if e.oom_killed {
        out.push_str(",oom");
        status.len() + 4
    } else {
        status.len()
    };
    pad(out, status_len, 10);
    match e.exit_code {
        Some(c) => {
            use std::fmt::Write;
            let _ = write!(out, "{c:>4}  ");
        }
        None => out.push_str("   -  "),
    }
    cell(out, &e.created, 20);
    for (i, word) in e.command.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        shown(out, word);
    }
    out.push('\n');
}

/// `s` escaped for a terminal, padded to `width` characters (counted
/// before escaping), then the two spaces between columns.
fn cell(out: &mut String, s: &str, width: usize) {
    shown(out, s);
    pad(out, if s.is_ascii() { s.len() } else { s.chars().count() }, width);
}

fn pad(out: &mut String, len: usize, width: usize) {
    for _ in len..width {
        out.push(' ');
    }
    out.push_str("  ");
}

/// `s` escaped for a terminal: as is when it is printable ASCII.
fn shown(out: &mut String, s: &str) {
    if s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        out.push_str(s);
    } else {
        out.push_str(&for_terminal(s));
    }
}

pub(super) fn status_name(status: Status) -> &'static str {
    match status {
        Status::Exited => "exited",
        Status::Killed => "killed",
        Status::NotStarted => "not-started",
        Status::Failed => "failed",
        Status::Lost => "lost",
        Status::Supervised => "supervised",
    }
}

fn summary_json(e: &index::Listed<'_>) -> serde_json::Value {
    serde_json::json!({
        "run_id": e.id,
        "name": e.name,
        "image": e.image.as_ref().map(|i| &i.reference),
        "manifest_digest": e.image.as_ref().map(|i| &i.manifest_digest),
        "status": e.status,
        "exit_code": e.exit_code,
        "oom_killed": e.oom_killed,
        "created": e.created,
        "wall_seconds": e.wall_seconds,
        "command": e.command,
        "kubernetes": e.kubernetes,
        "replay_of": e.replay_of,
        "made_by": e.made_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row as `runs ls` made it before it wrote cells: formatted whole,
    /// then escaped.
    fn formatted_whole(e: &index::Listed<'_>) -> String {
        let image = e.image.as_ref().map_or("-", |i| i.name.as_deref().unwrap_or_else(|| i.short_digest()));
        let status = format!("{}{}", status_name(e.status), if e.oom_killed { ",oom" } else { "" });
        let line = format!(
            "{:<12}  {:<16}  {:<24}  {:<10}  {:>4}  {:<20}  {}",
            e.id.get(..12).unwrap_or(&e.id),
            e.name.as_deref().unwrap_or("-"),
            image,
            status,
            e.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            &*e.created,
            e.command.iter().map(|w| &**w).collect::<Vec<_>>().join(" ")
        );
        format!("{}\n", for_terminal(&line))
    }

    #[test]
    fn a_row_is_what_formatting_it_whole_and_escaping_it_made() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let lines = [
            format!(
                r#"{{"id":"{}","name":"train-1","image":{{"reference":"busybox","name":"busybox:latest","manifest_digest":"{digest}"}},"status":"exited","exit_code":0,"created":"2026-12-07T20:27:02Z","command":["true","x y"]}}"#,
                "a1".repeat(16)
            ),
            format!(
                r#"{{"id":"b\u00e9","name":"n\u00e9\u202e\tx\u0007-a-name-longer-than-sixteen","image":{{"reference":"r","manifest_digest":"{digest}"}},"status":"killed","oom_killed":true,"created":"2026-12-07","command":["sh","-c","echo \u001b[31m \u65e5\n"]}}"#
            ),
            r#"{"id":"c3","status":"not-started","exit_code":-123456,"created":"x","command":[]}"#
                .to_string(),
            format!(
                r#"{{"id":"{}","image":{{"reference":"r","name":"an-image-name-longer-than-24:tag","manifest_digest":"{digest}"}},"status":"supervised","exit_code":137,"created":"2026-12-07T20:27:03Z","command":["\u65e5\u672c"]}}"#,
                "\u{e9}".repeat(20)
            ),
        ];
        for line in &lines {
            let e: index::Listed<'_> = serde_json::from_str(line).unwrap();
            let mut row = String::new();
            table_row(&mut row, &e);
            assert_eq!(row, formatted_whole(&e), "{line}");
        }
    }
}
