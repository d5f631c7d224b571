//! Where the differences go: one section per part of the record (an output
//! tree, the environment, the mounts, the host, ...), each keeping its first
//! `limit` differences and counting the others, in the order people read them.

use std::collections::HashMap;

use super::{Change, Omitted};

/// The order of context sections in the output; a path belongs to the first
/// entry it starts with.
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

/// Whether `path` is `prefix` or lies under it (`prefix.x`, `prefix[x]`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The position of a path's section in the output.
pub(super) fn rank(path: &str) -> usize {
    ORDER.iter().position(|p| under(path, p)).unwrap_or(ORDER.len())
}

/// The section of a path found by the generic walk: the entry of [`ORDER`] it
/// lies under, else its first component (`determinism`, `exit`, `status`).
pub(super) fn section_of(path: &str) -> &str {
    match ORDER.iter().find(|p| under(path, p)) {
        Some(p) => p,
        None => path.split(['.', '[']).next().unwrap_or(path),
    }
}

struct Section {
    name: String,
    changes: Vec<Change>,
    omitted: u64,
}

/// The differences of one group (context or outcome), by section.
pub(super) struct Sections {
    limit: Option<usize>,
    list: Vec<Section>,
    index: HashMap<String, usize>,
}

impl Sections {
    pub(super) fn new(limit: Option<usize>) -> Self {
        Self { limit, list: Vec::new(), index: HashMap::new() }
    }

    /// Count a difference in `section`, and make it only while the section
    /// has room, so that differences past the limit cost nothing.
    pub(super) fn add(&mut self, section: &str, make: impl FnOnce() -> Change) {
        let i = match self.index.get(section) {
            Some(&i) => i,
            None => {
                self.list.push(Section { name: section.to_string(), changes: Vec::new(), omitted: 0 });
                self.index.insert(section.to_string(), self.list.len() - 1);
                self.list.len() - 1
            }
        };
        let s = &mut self.list[i];
        if self.limit.is_some_and(|n| s.changes.len() >= n) {
            s.omitted += 1;
            return;
        }
        let mut c = make();
        c.section = s.name.clone();
        s.changes.push(c);
    }

    /// [`add`](Self::add) in the section of `path`.
    pub(super) fn add_at(&mut self, path: &str, make: impl FnOnce() -> Change) {
        self.add(section_of(path), make)
    }

    /// Put the sections in [`ORDER`] (stable: a section's differences keep
    /// their order, and sections of equal rank the order they came in).
    pub(super) fn sort_by_rank(&mut self) {
        self.list.sort_by_key(|s| rank(&s.name));
    }

    /// The listed differences, in order; the counts of the rest go to `omitted`.
    pub(super) fn finish(self, group: &'static str, omitted: &mut Vec<Omitted>) -> Vec<Change> {
        let mut out = Vec::new();
        for s in self.list {
            if s.omitted > 0 {
                omitted.push(Omitted { group, section: s.name, count: s.omitted });
            }
            out.extend(s.changes);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_their_sections() {
        assert_eq!(section_of("spec.process.env.A"), "spec.process.env");
        assert_eq!(section_of("spec.process.cwd"), "spec.process");
        assert_eq!(section_of("spec.mounts[/out].source"), "spec.mounts");
        assert_eq!(section_of("spec.processes"), "spec");
        assert_eq!(section_of("determinism.pins[tz].value"), "determinism");
        assert_eq!(section_of("exit.code"), "exit");
        assert!(rank("image.layers[0]") < rank("inputs[/data]"));
        assert!(rank("inputs[/data]") < rank("host.kernel_release"));
        assert_eq!(rank("determinism"), ORDER.len());
    }

    #[test]
    fn a_section_keeps_its_first_differences_and_counts_the_rest() {
        use super::super::ChangeKind;
        use serde_json::Value;
        let mut s = Sections::new(Some(2));
        let mut made = 0;
        for i in 0..5 {
            s.add("outputs[/out]", || {
                made += 1;
                Change::new(format!("f{i}"), ChangeKind::Added, Value::Null, Value::Null, String::new())
            });
        }
        s.add_at("host.cpus_online", || {
            Change::new(
                "host.cpus_online".into(),
                ChangeKind::Changed,
                Value::Null,
                Value::Null,
                String::new(),
            )
        });
        assert_eq!(made, 2, "differences past the limit are never made");
        let mut omitted = Vec::new();
        let list = s.finish("outcome", &mut omitted);
        let paths: Vec<(&str, &str)> = list.iter().map(|c| (c.section.as_str(), c.path.as_str())).collect();
        assert_eq!(paths, [("outputs[/out]", "f0"), ("outputs[/out]", "f1"), ("host", "host.cpus_online")]);
        assert_eq!(omitted, [Omitted { group: "outcome", section: "outputs[/out]".into(), count: 3 }]);
    }
}
