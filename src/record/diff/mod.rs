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
//!
//! Memory: the input and output trees, nearly all of a large record (a million
//! files make 250 MB of JSON), are compared where they lie in the parsed records,
//! by a merge of their sorted listings; only the rest of each record becomes a
//! JSON value. Each section of the result (an output tree, the environment, the
//! mounts, ...) keeps its first `limit` differences and counts the others, so
//! the result is bounded however much two records differ.

mod context;
mod sections;
#[cfg(test)]
mod tests;
mod trees;
mod values;
mod walk;

use serde::Serialize;
use serde_json::Value;

use super::{DataRecord, RunRecord};
use sections::Sections;
#[cfg(test)]
pub(crate) use tests::sample_record;
pub use trees::{tree_changes, FileChange};
pub use values::{output_values, Place, Values};

/// Fields never compared: they differ on every run, only name the run, or
/// restate what the compared fields hold (`command_line` and `request` are the
/// options as given; their effect is in `spec`, `cgroup`, `inputs`, ...; `drift`
/// is a replay's own comparison with its original; `kubernetes` names the pod,
/// whose annotations are in `spec`). Dotted paths from the top of
/// the record.
pub const IGNORED: &[&str] = &[
    "run_id",
    "name",
    "command_line",
    "request",
    "replay_of",
    "made_by",
    "drift",
    "kubernetes",
    "time",
    "usage",
    "signals",
    "host.boot_id",
    "host.uptime_seconds",
];

/// How many differences each section shows unless told otherwise.
pub const DEFAULT_LIMIT: usize = 100;

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
    /// The section it is counted in: `outputs[/out]`, `inputs[/data]`,
    /// `spec.process.env`, `spec.mounts`, `host`, ...
    pub section: String,
    /// Added, removed or changed.
    pub change: ChangeKind,
    /// The value in A (`null` when absent).
    pub a: Value,
    /// The value in B (`null` when absent).
    pub b: Value,
    /// One line for people.
    pub text: String,
    /// For an output file of JSON, CSV or TSV: the values that changed
    /// ([`RecordDiff::add_values`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Values>,
}

impl Change {
    /// A change whose section the collecting [`Sections`] fills in.
    fn new(path: String, change: ChangeKind, a: Value, b: Value, text: String) -> Self {
        Self { path, section: String::new(), change, a, b, text, values: None }
    }
}

/// Differences of one section that are not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Omitted {
    /// `context` or `outcome`.
    pub group: &'static str,
    /// The section, as in [`Change::section`].
    pub section: String,
    /// How many differences of it are not listed.
    pub count: u64,
}

/// The differences between two records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordDiff {
    /// Run id of A.
    pub a: String,
    /// Run id of B.
    pub b: String,
    /// What went into the runs: the first differences of each section.
    pub context: Vec<Change>,
    /// What the runs produced: the first differences of each section.
    pub outcome: Vec<Change>,
    /// The sections with more differences than were listed, and how many more.
    pub omitted: Vec<Omitted>,
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

    /// The human form: a header, then one line per difference, grouped, and
    /// after a section's last line how many more it has; each line escaped for
    /// a terminal, as the records' values are anyone's.
    pub fn render(&self) -> String {
        use super::for_terminal as t;
        let mut s = format!("a: {}\nb: {}\n", t(&self.a), t(&self.b));
        for (group, list) in [("context", &self.context), ("outcome", &self.outcome)] {
            if list.is_empty() {
                s.push_str(&format!("no differences in {group}\n"));
                continue;
            }
            s.push_str(&format!("{group}:\n"));
            for (i, c) in list.iter().enumerate() {
                s.push_str("  ");
                s.push_str(&t(&c.text));
                s.push('\n');
                if let Some(v) = &c.values {
                    values::render(v, &mut s);
                }
                let last_of_section = list.get(i + 1).is_none_or(|next| next.section != c.section);
                let more = self.omitted.iter().find(|o| o.group == group && o.section == c.section);
                if let (true, Some(o)) = (last_of_section, more) {
                    s.push_str(&format!(
                        "  ... {} more in {} (--limit all lists them)\n",
                        o.count,
                        t(&o.section)
                    ));
                }
            }
        }
        s
    }
}

/// Compare two records, listing at most `limit` differences per section
/// (`None`: all). The records are taken apart: their trees are compared in
/// place and the rest is turned into JSON.
pub fn diff(
    mut a: RunRecord,
    mut b: RunRecord,
    limit: Option<usize>,
) -> Result<RecordDiff, serde_json::Error> {
    let data = |r: &mut RunRecord| (std::mem::take(&mut r.inputs), std::mem::take(&mut r.outputs));
    let (data_a, data_b) = (data(&mut a), data(&mut b));
    let (va, vb) = (serde_json::to_value(&a)?, serde_json::to_value(&b)?);
    drop((a, b));
    Ok(compare(va, vb, (&data_a.0, &data_a.1), (&data_b.0, &data_b.1), limit))
}

/// Compare two records given as JSON: fields unknown to [`RunRecord`] are
/// compared generically, and inputs or outputs that do not parse count as
/// having no digest.
pub fn diff_values(a: &Value, b: &Value, limit: Option<usize>) -> RecordDiff {
    let (mut a, mut b) = (a.clone(), b.clone());
    let (ins_a, outs_a) =
        (trees::from_value(walk::take(&mut a, "inputs")), trees::from_value(walk::take(&mut a, "outputs")));
    let (ins_b, outs_b) =
        (trees::from_value(walk::take(&mut b, "inputs")), trees::from_value(walk::take(&mut b, "outputs")));
    compare(a, b, (&ins_a, &outs_a), (&ins_b, &outs_b), limit)
}

/// The comparison proper: `a` and `b` are the records without their inputs and
/// outputs, which come separately as (inputs, outputs).
fn compare(
    mut a: Value,
    mut b: Value,
    data_a: (&[DataRecord], &[DataRecord]),
    data_b: (&[DataRecord], &[DataRecord]),
    limit: Option<usize>,
) -> RecordDiff {
    let id = |v: &Value| v.get("run_id").and_then(Value::as_str).unwrap_or_default().to_string();
    let (id_a, id_b) = (id(&a), id(&b));
    walk::blank_run_id(&mut a, &id_a);
    walk::blank_run_id(&mut b, &id_b);
    for p in IGNORED.iter().chain(&["inputs", "outputs"]) {
        walk::take(&mut a, p);
        walk::take(&mut b, p);
    }

    // The outcome, taken out of the values so the context walk does not see it.
    let mut outcome = Sections::new(limit);
    for key in ["status", "exit"] {
        walk::walk(key, &walk::take(&mut a, key), &walk::take(&mut b, key), &mut outcome);
    }
    for key in ["stdout", "stderr"] {
        trees::stream_change(key, &walk::take(&mut a, key), &walk::take(&mut b, key), &mut outcome);
    }
    trees::data_changes("outputs", "output", data_a.1, data_b.1, &mut outcome);

    // The context: the parts with a shape of their own first, then the rest.
    let mut context = Sections::new(limit);
    let args = (walk::take(&mut a, "spec.process.args"), walk::take(&mut b, "spec.process.args"));
    context::argv_change(&args.0, &args.1, &mut context);
    let env = (walk::take(&mut a, "spec.process.env"), walk::take(&mut b, "spec.process.env"));
    context::env_changes(&env.0, &env.1, &mut context);
    let mounts = (walk::take(&mut a, "spec.mounts"), walk::take(&mut b, "spec.mounts"));
    context::mount_changes(&mounts.0, &mounts.1, &mut context);
    trees::data_changes("inputs", "input", data_a.0, data_b.0, &mut context);
    walk::walk("", &a, &b, &mut context);
    context.sort_by_rank();

    let mut omitted = Vec::new();
    let context = context.finish("context", &mut omitted);
    let outcome = outcome.finish("outcome", &mut omitted);
    let same = |group: &str, list: &[Change]| list.is_empty() && !omitted.iter().any(|o| o.group == group);
    RecordDiff {
        a: id_a,
        b: id_b,
        same_context: same("context", &context),
        same_outcome: same("outcome", &outcome),
        context,
        outcome,
        omitted,
    }
}
