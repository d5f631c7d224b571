//! The copy of a record that `push --run` shares: what identifies the host
//! and its users is replaced, unless `--keep-host-details`.
//!
//! Replaced, wherever a string of the record holds it (the spec's mounts and
//! root, the request, the command line, error messages):
//!
//! - the host path of each input, output and volume: by
//!   `/exprun-withheld/input/DEST` (`output`, `volume`), DEST its path in the
//!   container;
//! - the state root and the live-runs directory: `/exprun-withheld/root`,
//!   `/exprun-withheld/runtime`;
//! - the caller's home directories (not `/root`): `/exprun-withheld/home`;
//! - a seccomp profile's file: `/exprun-withheld/seccomp.json` (its content stays);
//! - exprun's own path (the command line's first word): `exprun`;
//! - the cgroup's directories: `/exprun-withheld/cgroup/CONTROLLER`.
//!
//! Kept, because a replay or a comparison needs them: digests, the image, the
//! request's options, host facts that drift reports use (kernel, arch, CPU
//! model and flags digest, CPUs, memory, OS, cgroup mode), times, usage. Kept
//! too, because the command saw them and a replay must give them again: the
//! environment, the command and its arguments; a user name or host name found
//! there is named in the listing, not changed. Paths in the trees' listings
//! (relative, and part of their digests) are never touched.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Error;
use crate::record::RunRecord;

/// Where every placeholder path starts. Only root can make `/exprun-withheld`,
/// so a placeholder never reads another user's files by accident.
pub const WITHHELD: &str = "/exprun-withheld";

/// Whether `p` is a placeholder put in place of a host path by `push --run`.
pub fn is_withheld(p: &Path) -> bool {
    p.starts_with(WITHHELD)
}

/// A record reduced for sharing.
#[derive(Debug)]
pub struct Reduced {
    /// The bytes to upload.
    pub bytes: Vec<u8>,
    /// What was replaced, for the listing (`3 host paths`, ...).
    pub replaced: Vec<String>,
    /// Where the record still names the caller or the host (JSON pointer and
    /// what it names).
    pub mentions: Vec<String>,
}

/// Where the host paths of a run were: the state root, and where live runs go.
#[derive(Debug, Clone)]
pub struct HostDirs {
    /// The state root.
    pub root: PathBuf,
    /// Live runs (`containers/`' parent): the root, or a rootless caller's
    /// runtime directory.
    pub runtime: PathBuf,
    /// The caller's home directories (`$HOME`, and those of the real,
    /// effective and `sudo` users), not `/root`.
    pub homes: Vec<PathBuf>,
    /// Names that identify the caller and the host (user names, host name).
    pub names: Vec<String>,
}

impl HostDirs {
    /// This caller's, for the state root `root` with live runs under `runtime`.
    pub fn of_caller(root: &Path, runtime: &Path) -> Self {
        let mut names = Vec::new();
        let mut homes: Vec<PathBuf> = std::env::var_os("HOME").map(PathBuf::from).into_iter().collect();
        let mut users: Vec<nix::unistd::User> = [nix::unistd::getuid(), nix::unistd::geteuid()]
            .into_iter()
            .filter_map(|uid| nix::unistd::User::from_uid(uid).ok().flatten())
            .collect();
        if let Some(Ok(Some(u))) = std::env::var("SUDO_USER").ok().map(|n| nix::unistd::User::from_name(&n)) {
            users.push(u);
        }
        for u in users {
            names.push(u.name);
            homes.push(u.dir);
        }
        for var in ["SUDO_USER", "USER", "LOGNAME"] {
            if let Some(v) = std::env::var_os(var) {
                names.push(v.to_string_lossy().into_owned());
            }
        }
        if let Ok(h) = nix::unistd::gethostname() {
            names.push(h.to_string_lossy().into_owned());
        }
        let generic = ["", "root", "localhost", "exprun", "nobody"];
        names.retain(|n| !generic.contains(&n.as_str()));
        names.sort();
        names.dedup();
        homes.retain(|h| h.is_absolute() && h.components().count() > 1 && h != Path::new("/root"));
        homes.sort();
        homes.dedup();
        Self { root: root.to_path_buf(), runtime: runtime.to_path_buf(), homes, names }
    }
}

/// `record` (whose file holds `bytes`) with host details replaced.
pub fn reduce(record: &RunRecord, bytes: &[u8], dirs: &HostDirs) -> Result<Reduced, Error> {
    let mut doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid { what: "the run's record.json".into(), why: e.to_string() })?;
    let table = substitutions(record, dirs);
    let mut replaced = std::collections::BTreeSet::new();
    replace_in(&mut doc, "", &table, &mut replaced);
    if let Some(first) = doc.pointer_mut("/command_line/0") {
        if first.as_str().is_some_and(|s| s != "exprun") {
            *first = Value::from("exprun");
            replaced.insert("exprun's path on the command line".to_string());
        }
    }
    if let Some(Value::Object(dirs)) = doc.pointer_mut("/cgroup/dirs") {
        for (controller, dir) in dirs.iter_mut() {
            *dir = Value::from(format!("{WITHHELD}/cgroup/{controller}"));
        }
        if !dirs.is_empty() {
            replaced.insert("cgroup directories".to_string());
        }
    }
    if let Some(Value::Array(enable_in)) = doc.pointer_mut("/cgroup/enable_in") {
        enable_in.clear();
    }
    let mut found = Vec::new();
    find_names(&doc, "", &dirs.names, &mut found);
    let mentions = dirs
        .names
        .iter()
        .filter_map(|n| {
            let at: Vec<&str> = found.iter().filter(|(name, _)| name == n).map(|(_, p)| p.as_str()).collect();
            const SHOWN: usize = 5;
            let more = at.len().saturating_sub(SHOWN);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            (!at.is_empty()).then(|| format!("{n:?} at {}{more}", at[..at.len().min(SHOWN)].join(", ")))
        })
        .collect();
    let mut out = serde_json::to_vec_pretty(&doc)
        .map_err(|e| Error::Invalid { what: "the run's record.json".into(), why: e.to_string() })?;
    out.push(b'\n');
    Ok(Reduced { bytes: out, replaced: replaced.into_iter().collect(), mentions })
}

/// (host path, placeholder, what it is), longest paths first so that a path
/// under another is replaced as itself.
fn substitutions(record: &RunRecord, dirs: &HostDirs) -> Vec<(String, String, &'static str)> {
    let mut t: Vec<(String, String, &'static str)> = Vec::new();
    let mut add = |from: &Path, to: String, what: &'static str| {
        let from = from.to_string_lossy().trim_end_matches('/').to_string();
        if from.len() > 1 && from.starts_with('/') && !t.iter().any(|(f, _, _)| *f == from) {
            t.push((from, to, what));
        }
    };
    let dest = |d: &Path| d.to_string_lossy().trim_start_matches('/').to_string();
    for d in &record.inputs {
        add(&d.source, format!("{WITHHELD}/input/{}", dest(&d.destination)), "input paths");
    }
    for d in &record.outputs {
        add(&d.source, format!("{WITHHELD}/output/{}", dest(&d.destination)), "output paths");
    }
    if let Some(req) = &record.request {
        for (kind, what, mounts) in [
            ("input", "input paths", &req.inputs),
            ("output", "output paths", &req.outputs),
            ("volume", "volume paths", &req.volumes),
        ] {
            for m in mounts {
                add(&m.source, format!("{WITHHELD}/{kind}/{}", dest(&m.destination)), what);
            }
        }
        if let crate::spec::options::SeccompChoice::File { path, .. } = &req.seccomp {
            add(path, format!("{WITHHELD}/seccomp.json"), "the seccomp profile's path");
        }
    }
    add(&dirs.root, format!("{WITHHELD}/root"), "the state root");
    add(&dirs.runtime, format!("{WITHHELD}/runtime"), "the state root");
    for home in &dirs.homes {
        add(home, format!("{WITHHELD}/home"), "the home directory");
    }
    t.sort_by_key(|(from, _, _)| std::cmp::Reverse(from.len()));
    t
}

/// Parts of the record whose strings stay as they are: what the command saw
/// (a replay gives it again), paths inside the container (a host path may be
/// spelled the same), and the trees' listings (part of their digests).
fn kept_as_is(pointer: &str) -> bool {
    const KEPT: &[&str] = &[
        "/request/env",
        "/request/command",
        "/request/entrypoint",
        "/request/workdir",
        "/spec/process",
        "/determinism",
        "/executable",
        "/drift",
    ];
    if KEPT.iter().any(|k| pointer == *k || pointer.starts_with(&format!("{k}/"))) {
        return true;
    }
    if pointer.rsplit('/').next() == Some("destination") {
        return true;
    }
    let mut parts = pointer.split('/').skip(1);
    matches!((parts.next(), parts.next(), parts.next()), (Some("inputs" | "outputs"), Some(_), Some("tree")))
}

fn replace_in(
    v: &mut Value,
    pointer: &str,
    table: &[(String, String, &'static str)],
    replaced: &mut std::collections::BTreeSet<String>,
) {
    if kept_as_is(pointer) {
        return;
    }
    match v {
        Value::String(s) => {
            for (from, to, what) in table {
                if let Some(new) = replace_path(s, from, to) {
                    *s = new;
                    replaced.insert((*what).to_string());
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                replace_in(x, &format!("{pointer}/{i}"), table, replaced);
            }
        }
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                replace_in(x, &format!("{pointer}/{}", escape(k)), table, replaced);
            }
        }
        _ => {}
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A character that continues a path (so `from` followed or preceded by it is
/// part of a longer name, not `from` itself).
fn path_char(c: char) -> bool {
    c.is_alphanumeric() || "._-~+@%".contains(c)
}

/// `s` with every occurrence of the path `from` (a whole path: not part of a
/// longer name) replaced by `to`; `None` when there is none.
fn replace_path(s: &str, from: &str, to: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    let mut changed = false;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        // After `:` it is the container's side of `SRC:DST`.
        let whole =
            !before.is_some_and(|c| path_char(c) || c == '/' || c == ':') && !after.is_some_and(path_char);
        out.push_str(&rest[..i]);
        if whole {
            out.push_str(to);
            changed = true;
        } else {
            out.push_str(from);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Where a string of the record holds one of `names` as a word: (name,
/// JSON pointer).
fn find_names(v: &Value, pointer: &str, names: &[String], out: &mut Vec<(String, String)>) {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    match v {
        Value::String(s) => {
            for n in names {
                let hit = s.match_indices(n.as_str()).any(|(i, _)| {
                    let before = s[..i].chars().next_back();
                    let after = s[i + n.len()..].chars().next();
                    !before.is_some_and(word) && !after.is_some_and(word)
                });
                if hit {
                    out.push((n.clone(), pointer.to_string()));
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                find_names(x, &format!("{pointer}/{i}"), names, out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                find_names(x, &format!("{pointer}/{}", escape(k)), names, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_paths_are_replaced_and_longer_names_are_not() {
        let r = |s: &str| replace_path(s, "/home/alice/data", "/W/input/in");
        assert_eq!(r("/home/alice/data").as_deref(), Some("/W/input/in"));
        assert_eq!(r("--input=/home/alice/data:/in").as_deref(), Some("--input=/W/input/in:/in"));
        assert_eq!(r("/home/alice/data/x.csv").as_deref(), Some("/W/input/in/x.csv"));
        assert_eq!(
            r("a /home/alice/data b /home/alice/data").as_deref(),
            Some("a /W/input/in b /W/input/in")
        );
        assert_eq!(r("/home/alice/data2"), None);
        assert_eq!(r("/home/alice/data.bak"), None);
        assert_eq!(r("/mnt/home/alice/data"), None);
        assert_eq!(
            r("-v /home/alice/data:/home/alice/data").as_deref(),
            Some("-v /W/input/in:/home/alice/data")
        );
    }

    #[test]
    fn what_the_command_saw_and_tree_listings_are_kept() {
        assert!(kept_as_is("/request/env/3/1"));
        assert!(kept_as_is("/spec/process/args/0"));
        assert!(kept_as_is("/outputs/0/tree/entries/2/target"));
        assert!(!kept_as_is("/outputs/0/source"));
        assert!(!kept_as_is("/spec/mounts/3/source"));
        assert!(!kept_as_is("/command_line/4"));
        assert!(!kept_as_is("/request/environment"));
        assert!(kept_as_is("/request/inputs/0/destination"));
        assert!(kept_as_is("/spec/mounts/9/destination"));
        assert!(kept_as_is("/determinism/pins/4/value"));
    }

    #[test]
    fn names_are_found_as_words() {
        let doc = serde_json::json!({"a": ["alice", "malice", "x alice-y", "alice_z"], "b": "bob"});
        let mut out = Vec::new();
        find_names(&doc, "", &["alice".to_string()], &mut out);
        let at: Vec<&str> = out.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(at, ["/a/0", "/a/2"]);
    }
}
