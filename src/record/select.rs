//! Choosing records: the filters of `exprun runs ls`, and what `exprun runs
//! prune` removes, never a record another one depends on unless forced.
//!
//! A record depends on another when it names it (`replay_of`: a replay needs
//! its original to be compared with, and to be replayed again), or when one of
//! its inputs or outputs lies in the other's directory `runs/<id>/` (a
//! replay's outputs, a fetched run's artifact) and is gone with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

use super::index::Listed;
use super::{RunRecord, Status};

/// When a record was created, from its RFC 3339 `time.created` (`None` if it
/// does not parse).
pub fn created(r: &RunRecord) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(&r.time.created).ok()
}

/// `runs ls` filters: all that are given must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Also the replays `exprun verify` made.
    pub all: bool,
    /// The image: a reference as given, the `name:tag` it resolved through, or
    /// its manifest digest (or the start of one).
    pub image: Option<String>,
    /// The run's `--name`; a `*` at the end matches any rest.
    pub name: Option<String>,
    /// How it ended.
    pub status: Option<Status>,
    /// Annotations of the run's spec, each `KEY=VALUE`.
    pub labels: Vec<(String, String)>,
    /// Created at or after.
    pub since: Option<SystemTime>,
}

impl Filter {
    /// Whether the run of index entry `e` is listed.
    pub fn matches(&self, e: &Listed<'_>) -> bool {
        (self.all || !e.by_verify)
            && self.image.as_deref().is_none_or(|want| image_matches(e, want))
            && self.name.as_deref().is_none_or(|want| name_matches(e.name.as_deref(), want))
            && self.status.is_none_or(|s| s == e.status)
            && self.labels.iter().all(|(k, v)| e.labels.get(k.as_str()).is_some_and(|have| **have == **v))
            && self
                .since
                .is_none_or(|t| humantime::parse_rfc3339_weak(&e.created).ok().is_some_and(|c| c >= t))
    }
}

fn image_matches(e: &Listed<'_>, want: &str) -> bool {
    let Some(i) = &e.image else { return false };
    let digest: &str = &i.manifest_digest;
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    let is_digest_prefix = |p: &str| p.len() >= 4 && p.bytes().all(|b| b.is_ascii_hexdigit());
    &*i.reference == want
        || i.name.as_deref() == Some(want)
        || i.name.as_deref().is_some_and(|n| !want.contains(':') && n == format!("{want}:latest"))
        || (want.contains(':') && digest.starts_with(want) && want.len() > "sha256:".len() + 3)
        || (is_digest_prefix(want) && hex.starts_with(want))
}

fn name_matches(name: Option<&str>, want: &str) -> bool {
    let Some(name) = name else { return false };
    match want.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == want,
    }
}

/// What `runs prune` removes: all that are given must hold.
#[derive(Debug, Clone, Default)]
pub struct Prune {
    /// Created before.
    pub older_than: Option<SystemTime>,
    /// Keep the newest N of the records considered.
    pub keep_last: Option<usize>,
    /// Consider replays only (records with `replay_of`).
    pub replays_only: bool,
}

/// Why one record needs another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    /// The record that needs it.
    pub run: String,
    /// How, in words: `replays it`, `reads its input /data from it`, ...
    pub how: String,
}

/// What `runs prune` does: records to remove, and records it keeps because
/// others depend on them, each with those others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// To remove, oldest first, with the records still there that depend on it
    /// (only with `force`).
    pub remove: Vec<(String, Vec<Dependent>)>,
    /// Selected but kept: records that stay depend on them.
    pub kept: Vec<(String, Vec<Dependent>)>,
}

/// Plan `p` over `records` (every record there is: dependents are looked for
/// among all of them) in `runs_dir`. Without `force`, a selected record that
/// a record staying depends on is kept, and then so is what it depends on.
pub fn plan_prune(records: &[RunRecord], runs_dir: &Path, p: &Prune, force: bool) -> PrunePlan {
    let mut considered: Vec<&RunRecord> =
        records.iter().filter(|r| !p.replays_only || r.replay_of.is_some()).collect();
    considered.sort_by(|a, b| a.time.created.cmp(&b.time.created).then(a.run_id.cmp(&b.run_id)));
    let keep_from = p.keep_last.map_or(considered.len(), |n| considered.len().saturating_sub(n));
    let mut selected: BTreeSet<&str> = considered[..keep_from]
        .iter()
        .filter(|r| p.older_than.is_none_or(|t| created(r).is_some_and(|c| c < t)))
        .map(|r| r.run_id.as_str())
        .collect();
    let needs = dependents(records, runs_dir);
    let staying = |sel: &BTreeSet<&str>, id: &str| -> Vec<Dependent> {
        needs
            .get(id)
            .map(|v| v.iter().filter(|d| !sel.contains(d.run.as_str())).cloned().collect())
            .unwrap_or_default()
    };
    let mut kept = BTreeMap::new();
    if !force {
        // Keeping one record may keep what it depends on: until nothing changes.
        loop {
            let hold: Vec<(String, Vec<Dependent>)> = selected
                .iter()
                .map(|id| (id.to_string(), staying(&selected, id)))
                .filter(|(_, d)| !d.is_empty())
                .collect();
            if hold.is_empty() {
                break;
            }
            for (id, d) in hold {
                selected.remove(id.as_str());
                kept.insert(id, d);
            }
        }
    }
    let order = |id: &str| considered.iter().position(|r| r.run_id == id).unwrap_or(usize::MAX);
    let mut remove: Vec<(String, Vec<Dependent>)> =
        selected.iter().map(|id| (id.to_string(), staying(&selected, id))).collect();
    remove.sort_by_key(|(id, _)| order(id));
    let mut kept: Vec<(String, Vec<Dependent>)> = kept.into_iter().collect();
    kept.sort_by_key(|(id, _)| order(id));
    PrunePlan { remove, kept }
}

/// For each run id, the records that depend on it.
pub fn dependents(records: &[RunRecord], runs_dir: &Path) -> BTreeMap<String, Vec<Dependent>> {
    let ids: BTreeSet<&str> = records.iter().map(|r| r.run_id.as_str()).collect();
    let mut out: BTreeMap<String, Vec<Dependent>> = BTreeMap::new();
    for r in records {
        let mut add = |of: &str, how: String| {
            if of != r.run_id && ids.contains(of) {
                out.entry(of.to_string()).or_default().push(Dependent { run: r.run_id.clone(), how });
            }
        };
        if let Some(of) = &r.replay_of {
            let by = if r.made_by_verify() { "verify's replay of it" } else { "a replay of it" };
            add(of, by.to_string());
        }
        for (kind, list) in [("input", &r.inputs), ("output", &r.outputs)] {
            for d in list {
                let Ok(rel) = d.source.strip_prefix(runs_dir) else { continue };
                if let Some(first) = rel.components().next() {
                    let how = format!("its {kind} {} is in that run's directory", d.destination.display());
                    add(&first.as_os_str().to_string_lossy(), how);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::index::Entry;
    use serde_json::json;

    fn rec(id: &str, created: &str, edit: impl FnOnce(&mut serde_json::Value)) -> RunRecord {
        let mut v = crate::record::diff::sample_record(id);
        v["time"]["created"] = json!(created);
        edit(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn ids(list: &[(String, Vec<Dependent>)]) -> Vec<&str> {
        list.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn prune_keeps_what_a_staying_record_needs_and_all_it_needs() {
        let runs = Path::new("/r/runs");
        let records = vec![
            rec("a", "2020-01-01T00:00:00Z", |_| {}),
            rec("b", "2020-01-02T00:00:00Z", |v| v["replay_of"] = json!("a")),
            rec("c", "2030-01-01T00:00:00Z", |v| {
                v["inputs"] =
                    json!([{"source": "/r/runs/b/outputs/out", "destination": "/data", "tree": null}]);
            }),
            rec("d", "2020-01-03T00:00:00Z", |_| {}),
        ];
        let old = Prune { older_than: created(&records[2]), ..Prune::default() };
        let p = plan_prune(&records, runs, &old, false);
        assert_eq!(ids(&p.remove), ["d"]);
        // b stays for c; then a stays for b.
        assert_eq!(ids(&p.kept), ["a", "b"]);
        assert_eq!(
            p.kept[1].1,
            [Dependent { run: "c".into(), how: "its input /data is in that run's directory".into() }]
        );
        assert_eq!(p.kept[0].1[0].how, "a replay of it");
        let p = plan_prune(&records, runs, &old, true);
        assert_eq!(ids(&p.remove), ["a", "b", "d"]);
        assert!(p.kept.is_empty() && p.remove[0].1.is_empty(), "a's replay goes with it: {p:?}");
        assert_eq!(p.remove[1].1[0].run, "c");

        let replays = Prune { replays_only: true, keep_last: Some(0), ..Prune::default() };
        assert_eq!(ids(&plan_prune(&records, runs, &replays, false).kept), ["b"]);
        let last = Prune { keep_last: Some(2), ..Prune::default() };
        let p = plan_prune(&records, runs, &last, false);
        assert_eq!((ids(&p.remove), ids(&p.kept)), (vec![], vec!["a", "b"]), "d and c are the newest two");
    }

    #[test]
    fn filters_all_must_match() {
        let r = rec("a", "2026-01-01T00:00:00Z", |v| {
            v["name"] = json!("train-1");
            v["spec"]["annotations"] = json!({"k": "v"});
        });
        let line = Entry::of(&r, &[]).line();
        let f = |edit: fn(&mut Filter)| {
            let mut f = Filter::default();
            edit(&mut f);
            f.matches(&serde_json::from_str(&line).unwrap())
        };
        assert!(f(|_| {}));
        assert!(f(|f| f.name = Some("train-*".into())));
        assert!(!f(|f| f.name = Some("train".into())));
        assert!(f(|f| f.image = Some("busybox".into())));
        assert!(!f(|f| f.image = Some("busy".into())));
        assert!(f(|f| f.labels = vec![("k".into(), "v".into())]));
        assert!(!f(|f| f.labels = vec![("k".into(), "v".into()), ("x".into(), "".into())]));
        assert!(!f(|f| f.status = Some(Status::Killed)));
        assert!(!f(|f| f.since = created(&rec("b", "2026-01-02T00:00:00Z", |_| {}))));
        let replay = rec("b", "2026-01-01T00:00:00Z", |v| {
            v["replay_of"] = json!("a");
            v["command_line"] = json!(["exprun", "verify", "a"]);
        });
        let replay = Entry::of(&replay, &[]).line();
        let replay: Listed<'_> = serde_json::from_str(&replay).unwrap();
        assert!(
            !Filter::default().matches(&replay) && Filter { all: true, ..Filter::default() }.matches(&replay)
        );
    }
}
